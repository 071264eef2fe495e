//! The render stage: what the aggregator holds, turned into what people and
//! tools read.
//!
//! | file | owns |
//! |---|---|
//! | `mod.rs` | [`Renderer`]: the one symbolizer, and the renders every format shares (merged sites, spike reports) |
//! | `sites.rs` | call sites trimmed, merged, ranked and symbolized: [`SiteReport`](sites::SiteReport), [`SortBy`](sites::SortBy) |
//! | `spikes.rs` | spike records as [`SpikeReport`](spikes::SpikeReport)s |
//! | `prometheus/` | [`AllocCollector`](prometheus::AllocCollector) and the metric families |
//! | `adapters/` | the metric families in other crates' models: the `metrics` facade, `prometheus-client` (features of those names) |
//! | `pprof/` | gzipped `profile.proto` heap profiles |
//! | `hints/` | optimisation hints: the rules, and the report of sites judged by them |
//! | `json.rs` | every body of the JSON API |
//!
//! Renderers read the aggregator through its methods (copies, taken under
//! its locks and released before anything is symbolized); the only lock
//! they take themselves is the symbolizer's, which they own. That lock is
//! fork-safe: in a forked child (another process id) the renderer abandons
//! the symbolizer and its lock, which a thread that did not come along may
//! hold, and starts a fresh one. The symbolizer's parsed state is released
//! after [`DEFAULT_SYMBOLS_IDLE`] without a lookup
//! ([`Renderer::release_idle_symbols`], called by the aggregator's thread
//! at each tick). Every render
//! runs inside [`Renderer::account`], so what it allocates is allocmeter's,
//! exactly, not the service's, and with sampling suspended, so that
//! symbolizing stays out of the profiles it produces.
//!
//! Must not touch: the rings (the aggregator drains them), HTTP.

// The adapters into other telemetry crates' models (features `metrics`,
// `prometheus-client`).
#[cfg(any(feature = "metrics", feature = "prometheus-client"))]
pub mod adapters;
pub(crate) mod hints;
pub(crate) mod json;
pub(crate) mod pprof;
pub(crate) mod prometheus;
pub(crate) mod sites;
pub(crate) mod spikes;

use std::ops::{Deref, DerefMut};
use std::sync::Arc;
use std::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};
use std::time::Duration;

use parking_lot::{Mutex, MutexGuard};

use crate::aggregate::peak::Peak;
use crate::aggregate::sites::SiteValues;
use crate::aggregate::{Aggregator, TableFigures};
use crate::health::HttpCounters;
use crate::symbols::Symbolizer;
use prometheus::{MAX_SITE_METRICS, Panics};
use sites::{Site, SiteReport, SortBy};
use spikes::SpikeReport;

/// How many addresses the symbolizer caches at most (its bytes are bounded
/// separately).
const SYMBOL_CACHE_ENTRIES: usize = 64 * 1024;

/// How long the symbolizer keeps its parsed debug info and mapped files
/// after its last lookup, unless told otherwise.
pub const DEFAULT_SYMBOLS_IDLE: Duration = Duration::from_secs(60);

/// The symbolizer and its lock, made by the process `pid`.
struct SymbolCell {
    pid: u32,
    lock: Mutex<Symbolizer>,
}

impl SymbolCell {
    /// A fresh cell of this process, boxed and leaked into a raw pointer
    /// (freed by [`Renderer`]'s drop, or abandoned in a forked child).
    fn new_raw(enabled: bool) -> *mut SymbolCell {
        let symbolizer = if enabled {
            Symbolizer::new(SYMBOL_CACHE_ENTRIES)
        } else {
            Symbolizer::disabled()
        };
        Box::into_raw(Box::new(SymbolCell {
            pid: std::process::id(),
            lock: Mutex::new(symbolizer),
        }))
    }
}

/// What every renderer reads from: the aggregator, the symbolizer, and the
/// HTTP server's counters. Shared (in an `Arc`) by the HTTP routes, the
/// collector and the handle.
pub(crate) struct Renderer {
    aggregator: Arc<Aggregator>,
    /// The symbolizer's cell of this process: never null; replaced (and the
    /// old one abandoned, never freed) only in a forked child.
    symbols: AtomicPtr<SymbolCell>,
    /// Whether addresses are symbolized at all.
    symbolize: bool,
    /// How long the symbolizer's state is kept after its last lookup.
    symbols_idle: Duration,
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
            symbols: AtomicPtr::new(SymbolCell::new_raw(true)),
            symbolize: true,
            symbols_idle: DEFAULT_SYMBOLS_IDLE,
            symbol_bytes: AtomicUsize::new(0),
            http,
            site_metrics: site_metrics.min(MAX_SITE_METRICS),
        }
    }

    /// The aggregator this renders.
    pub fn aggregator(&self) -> &Aggregator {
        &self.aggregator
    }

    /// This renderer with symbolization on or off (`false`: profiles and
    /// reports carry addresses only, and nothing is mapped or parsed), and
    /// the symbolizer's state released after `idle` without a lookup.
    pub fn with_symbols(mut self, symbolize: bool, idle: Duration) -> Self {
        self.symbolize = symbolize;
        self.symbols_idle = idle;
        let old = self
            .symbols
            .swap(SymbolCell::new_raw(symbolize), Ordering::AcqRel);
        // SAFETY: `old` came from `SymbolCell::new_raw` and, with `self`
        // owned here, nothing else can hold a reference to it.
        drop(unsafe { Box::from_raw(old) });
        self
    }

    /// The symbolizer's cell of this process. In a forked child the first
    /// call finds the parent's cell (its lock perhaps held by a thread that
    /// did not come along) and puts a fresh one in its place; the parent's
    /// is abandoned, never locked or freed.
    fn cell(&self) -> &SymbolCell {
        let pid = std::process::id();
        loop {
            // Acquire: pairs with the release of the exchange below, so a
            // cell installed by another thread is seen initialised.
            let current = self.symbols.load(Ordering::Acquire);
            // SAFETY: `symbols` always holds a cell from `new_raw`; a cell
            // is freed only when the renderer drops (not while `&self`
            // lives) and a replaced one is never freed.
            let cell = unsafe { &*current };
            if cell.pid == pid {
                return cell;
            }
            let fresh = SymbolCell::new_raw(self.symbolize);
            // AcqRel: publishes the fresh cell (release) and, on failure,
            // reads the cell another thread installed (acquire).
            match self
                .symbols
                .compare_exchange(current, fresh, Ordering::AcqRel, Ordering::Acquire)
            {
                // The parent's cell is abandoned: leaked, never locked.
                // Relaxed: a figure for reports.
                Ok(_) => self.symbol_bytes.store(0, Ordering::Relaxed),
                // SAFETY: `fresh` was never shared; another thread of this
                // process installed its own first.
                Err(_) => drop(unsafe { Box::from_raw(fresh) }),
            }
        }
    }

    /// The symbolizer, locked; its bytes are noted when the lock is released.
    fn symbolizer(&self) -> SymbolizerGuard<'_> {
        SymbolizerGuard {
            symbolizer: self.cell().lock.lock(),
            bytes: &self.symbol_bytes,
        }
    }

    /// Releases the symbolizer's cache, parsed debug info and mapped files
    /// if it made no lookup for the idle period. Never waits: if a render
    /// holds the symbolizer, it is not idle. Called at every aggregator
    /// tick.
    pub fn release_idle_symbols(&self) {
        if let Some(mut symbolizer) = self.cell().lock.try_lock()
            && symbolizer.release_if_idle(self.symbols_idle)
        {
            // Relaxed: a figure for reports, as in `SymbolizerGuard`'s drop.
            self.symbol_bytes
                .store(symbolizer.approximate_bytes(), Ordering::Relaxed);
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
    /// aggregator's (site table, history, spike records) and the
    /// symbolizer's (its cache and parsed debug info, as of its last use: a scrape never waits for a render to
    /// release it). A breakdown of part of the exporter's heap, which is
    /// counted exactly ([`allocmeter::StatsSplit::internal`]); never added
    /// to it.
    pub fn own_bytes(&self) -> usize {
        // Relaxed: a figure noted on its own, read on its own.
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

    /// What every site allocated since `baseline`
    /// ([`Aggregator::site_values_now`]), trimmed and merged as
    /// [`Renderer::sites`] are: a delta profile's sites.
    pub fn sites_since(&self, baseline: &[(SiteValues, u64)]) -> Vec<Site> {
        let _quiet = allocmeter::profile::suspend_sampling();
        let raw = self.aggregator.sites_since(baseline);
        sites::merge_sites(&raw, &mut self.symbolizer())
    }

    /// A peak's figures and its sites as they stood at it, trimmed and
    /// merged as [`Renderer::sites`] are: since start, or (`window`) over
    /// the peak window.
    pub fn peak_sites(&self, window: bool) -> Option<(Peak, Vec<Site>)> {
        let _quiet = allocmeter::profile::suspend_sampling();
        let (peak, raw) = self.aggregator.peak(window)?;
        Some((peak, sites::merge_sites(&raw, &mut self.symbolizer())))
    }

    /// A peak's figures and its `n` sites with the most in use then,
    /// symbolized (for `/api/peak`).
    pub fn peak_report(&self, window: bool, n: usize) -> Option<(Peak, Vec<SiteReport>)> {
        self.account(|| {
            let (peak, sites) = self.peak_sites(window)?;
            let mut symbolizer = self.symbolizer();
            let top = sites::top(
                sites::merge_same_frames(sites, &mut symbolizer),
                n,
                SortBy::InuseSpace,
            );
            Some((peak, sites::site_reports(&top, &mut symbolizer)))
        })
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

    /// The optimisation hints now (drained now), symbolized. The evidence is
    /// copied out of the aggregator before symbolizing.
    pub fn hints(&self) -> hints::HintsReport {
        self.account(|| {
            let _quiet = allocmeter::profile::suspend_sampling();
            let evidence = self.aggregator.evidence();
            hints::report(&evidence, &mut self.symbolizer())
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
        self.symbolizer.end_use();
        // Relaxed: a figure for reports; no other memory is published with it.
        self.bytes
            .store(self.symbolizer.approximate_bytes(), Ordering::Relaxed);
    }
}

impl Drop for Renderer {
    fn drop(&mut self) {
        let cell = *self.symbols.get_mut();
        // SAFETY: the cell came from `SymbolCell::new_raw` and nothing
        // borrows it once the renderer is dropped (references to it live
        // no longer than `&self`).
        drop(unsafe { Box::from_raw(cell) });
    }
}
