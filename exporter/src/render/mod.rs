//! The render stage: what the aggregator holds, turned into what people and
//! tools read.
//!
//! | file | owns |
//! |---|---|
//! | `mod.rs` | [`Renderer`]: the one symbolizer, and the renders every format shares (merged sites, spike reports) |
//! | `sites.rs` | call sites trimmed, merged, ranked and symbolized: [`SiteReport`](sites::SiteReport), [`SortBy`](sites::SortBy) |
//! | `spikes.rs` | spike records as [`SpikeReport`](spikes::SpikeReport)s |
//! | `prometheus/` | [`AllocCollector`](prometheus::AllocCollector) and the metric families |
//! | `pprof/` | gzipped `profile.proto` heap profiles |
//! | `json.rs` | every body of the JSON API |
//!
//! Renderers read the aggregator through its methods (copies, taken under
//! its locks and released before anything is symbolized); the only lock
//! they take themselves is the symbolizer's, which they own. Every render
//! runs inside [`Renderer::account`], so what it allocates is allocmeter's,
//! exactly, not the service's, and with sampling suspended, so that
//! symbolizing stays out of the profiles it produces.
//!
//! Must not touch: the rings (the aggregator drains them), HTTP.

pub(crate) mod json;
pub(crate) mod pprof;
pub(crate) mod prometheus;
pub(crate) mod sites;
pub(crate) mod spikes;

use std::ops::{Deref, DerefMut};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use parking_lot::{Mutex, MutexGuard};

use crate::aggregate::{Aggregator, TableFigures};
use crate::health::HttpCounters;
use crate::symbols::Symbolizer;
use prometheus::{MAX_SITE_METRICS, Panics};
use sites::{Site, SiteReport, SortBy};
use spikes::SpikeReport;

/// How many addresses the symbolizer caches at most (its bytes are bounded
/// separately).
const SYMBOL_CACHE_ENTRIES: usize = 64 * 1024;

/// What every renderer reads from: the aggregator, the symbolizer, and the
/// HTTP server's counters. Shared (in an `Arc`) by the HTTP routes, the
/// collector and the handle.
pub(crate) struct Renderer {
    aggregator: Arc<Aggregator>,
    symbolizer: Mutex<Symbolizer>,
    /// The symbolizer's bytes as of its last use, so that a scrape reads
    /// them without waiting for a render that holds the symbolizer.
    symbol_bytes: AtomicUsize,
    http: Arc<HttpCounters>,
    /// How many top sites get Prometheus series (0 = none).
    site_metrics: usize,
}

impl Renderer {
    /// A renderer over `aggregator`, with per-site series for the top
    /// `site_metrics` sites (at most [`MAX_SITE_METRICS`]).
    pub fn new(aggregator: Arc<Aggregator>, http: Arc<HttpCounters>, site_metrics: usize) -> Self {
        Renderer {
            aggregator,
            symbolizer: Mutex::new(Symbolizer::new(SYMBOL_CACHE_ENTRIES)),
            symbol_bytes: AtomicUsize::new(0),
            http,
            site_metrics: site_metrics.min(MAX_SITE_METRICS),
        }
    }

    /// The aggregator this renders.
    pub fn aggregator(&self) -> &Aggregator {
        &self.aggregator
    }

    /// The symbolizer, locked; its bytes are noted when the lock is released.
    fn symbolizer(&self) -> SymbolizerGuard<'_> {
        SymbolizerGuard {
            symbolizer: self.symbolizer.lock(),
            bytes: &self.symbol_bytes,
        }
    }

    /// Runs `f` with the symbolizer (its lock held meanwhile; no other lock
    /// is taken while it is held).
    pub fn with_symbolizer<R>(&self, f: impl FnOnce(&mut Symbolizer) -> R) -> R {
        f(&mut self.symbolizer())
    }

    /// Runs `f` (a render) with what it allocates and frees on this thread
    /// counted as allocmeter's own, exactly
    /// ([`allocmeter::profile::account_internal`]; on the exporter's
    /// threads, marked internal, it changes nothing). A render on a
    /// program's thread hands the program a copy made outside (see
    /// `Exporter`), so that no block crosses.
    pub fn account<R>(&self, f: impl FnOnce() -> R) -> R {
        allocmeter::profile::account_internal(f)
    }

    /// How many top sites get Prometheus series.
    pub fn site_metrics(&self) -> usize {
        self.site_metrics
    }

    /// The site table's figures now.
    pub fn table_figures(&self) -> TableFigures {
        self.aggregator.table_figures()
    }

    /// Panics caught so far, by where.
    pub fn panics(&self) -> Panics {
        Panics {
            aggregator: self.aggregator.panics(),
            render: self.http.read().panics,
        }
    }

    /// Roughly what the exporter's long-lived structures hold: the
    /// aggregator's (site table, history, spike records) and the symbol
    /// cache (as of its last use: a scrape never waits for a render to
    /// release it). A breakdown of part of the exporter's heap, which is
    /// counted exactly ([`allocmeter::StatsSplit::internal`]); never added
    /// to it.
    pub fn own_bytes(&self) -> usize {
        self.aggregator.own_bytes() + self.symbol_bytes.load(Ordering::Relaxed)
    }

    /// The most [`Renderer::own_bytes`] can come to with `slots_used` thread
    /// slots feeding the site table.
    pub fn max_own_bytes(&self, slots_used: usize) -> usize {
        self.aggregator.max_own_bytes(slots_used) + Symbolizer::max_bytes()
    }

    /// The current sites (drained now), trimmed and merged. Holds the
    /// symbolizer lock while it symbolizes, not the table's.
    ///
    /// Renderers may run on a caller's thread (an in-process `top_sites`, or
    /// the collector in a user's registry): they suspend sampling there, so
    /// that symbolizing (which allocates, a lot on first use) stays out of
    /// the profiles it produces.
    pub fn sites(&self) -> Vec<Site> {
        let _quiet = allocmeter::profile::suspend_sampling();
        let raw = self.aggregator.sites_now();
        sites::merge_sites(&raw, &mut self.symbolizer())
    }

    /// The `n` sites with the largest `by`, symbolized; stacks that read the
    /// same are one site.
    pub fn top_sites(&self, n: usize, by: SortBy) -> Vec<SiteReport> {
        self.account(|| {
            let _quiet = allocmeter::profile::suspend_sampling();
            let sites = self.sites();
            let mut symbolizer = self.symbolizer();
            let top = sites::top(sites::merge_same_frames(sites, &mut symbolizer), n, by);
            sites::site_reports(&top, &mut symbolizer)
        })
    }

    /// The spike records, oldest first, with their top sites symbolized.
    /// The records are copied out of the aggregator before symbolizing.
    pub fn spike_reports(&self) -> Vec<SpikeReport> {
        self.account(|| {
            let _quiet = allocmeter::profile::suspend_sampling();
            let records = self.aggregator.spike_records();
            let mut symbolizer = self.symbolizer();
            records
                .iter()
                .map(|r| spikes::spike_report(r, &mut symbolizer))
                .collect()
        })
    }
}

/// The locked symbolizer; notes its bytes in [`Renderer`]'s
/// `symbol_bytes` when released.
struct SymbolizerGuard<'a> {
    symbolizer: MutexGuard<'a, Symbolizer>,
    bytes: &'a AtomicUsize,
}

impl Deref for SymbolizerGuard<'_> {
    type Target = Symbolizer;

    fn deref(&self) -> &Symbolizer {
        &self.symbolizer
    }
}

impl DerefMut for SymbolizerGuard<'_> {
    fn deref_mut(&mut self) -> &mut Symbolizer {
        &mut self.symbolizer
    }
}

impl Drop for SymbolizerGuard<'_> {
    fn drop(&mut self) {
        self.bytes
            .store(self.symbolizer.approximate_bytes(), Ordering::Relaxed);
    }
}
