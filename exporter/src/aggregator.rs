//! The aggregator thread: drains the sample rings into the site table every
//! [`drain_every`], and reads every slot once per interval into a snapshot
//! for the bounded history.
//!
//! It reads with [`allocmeter::stats`] and [`allocmeter::profile::drain`],
//! which take no lock an allocating thread could wait on; the locks here are
//! taken only by exporter threads.

use std::cell::Cell;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;

use crate::collector::ProfileFigures;
use crate::sites::{self, Site, SiteReport, SiteTable, SortBy};
use crate::snapshot::{History, HistoryPoint, Snapshot};
use crate::spikes::{self, Point, SpikeConfig, SpikeLog, SpikeReport, SpikeStatus};
use crate::symbolize::Symbolizer;

/// How often the rings are drained at most: [`allocmeter::profile::drain_interval`],
/// which shortens down to 1 ms while the rings fill fast and lengthens to
/// 50 ms when they are quiet. A thread whose ring is half full anyway (a
/// burst) unparks the aggregator at once (see
/// [`allocmeter::profile::register_drainer`]).
fn drain_every() -> Duration {
    allocmeter::profile::drain_interval()
}

/// The most sites the opt-in per-site Prometheus gauges may cover.
pub const MAX_SITE_METRICS: usize = 50;

/// What the exporter allocates while it serves (requests, and renders asked
/// for in process), so that the spike detector can leave it out: the first
/// symbolization alone loads the binary's debug info, which would otherwise
/// show as a spike each time someone first opens the page.
///
/// Each render runs inside [`OwnAllocations::account`], which measures the
/// thread's own allocations exactly ([`allocmeter::measure`]) and adds them
/// up. A render still running has allocated bytes the process's counters
/// show and these totals do not yet, so the aggregator only reads the two
/// together when no render is in progress ([`OwnAllocations::read_quiescent`]).
#[derive(Default)]
pub(crate) struct OwnAllocations {
    started: AtomicU64,
    finished: AtomicU64,
    bytes: AtomicU64,
    allocs: AtomicU64,
}

thread_local! {
    /// Whether this thread is inside [`OwnAllocations::account`] (renders
    /// nest: `/metrics` renders the collector, which ranks sites).
    static ACCOUNTING: Cell<bool> = const { Cell::new(false) };
}

/// Marks the end of an accounted render, even if it panicked.
struct Finished<'a>(&'a OwnAllocations);

impl Drop for Finished<'_> {
    fn drop(&mut self) {
        self.0.finished.fetch_add(1, Ordering::SeqCst);
        ACCOUNTING.set(false);
    }
}

impl OwnAllocations {
    /// Runs `f`, adding what this thread allocated meanwhile to the totals
    /// (unless this thread is already inside `account`).
    pub fn account<R>(&self, f: impl FnOnce() -> R) -> R {
        if ACCOUNTING.get() {
            return f();
        }
        ACCOUNTING.set(true);
        self.started.fetch_add(1, Ordering::SeqCst);
        let finished = Finished(self);
        let (result, used) = allocmeter::measure(f);
        self.bytes.fetch_add(used.alloc_bytes, Ordering::SeqCst);
        self.allocs.fetch_add(used.allocs, Ordering::SeqCst);
        drop(finished);
        result
    }

    /// Calls `read` (which reads the process's counters) and returns its
    /// result with the bytes and allocations accounted so far, if no render
    /// was in progress from before the call until after it: only then are
    /// the two consistent.
    pub fn read_quiescent<R>(&self, read: impl FnOnce() -> R) -> (R, Option<(u64, u64)>) {
        // A render adds its totals before it counts as finished, and its
        // allocations precede both; so with `finished` read first, the
        // counters read next include everything a finished render added.
        let started = self.started.load(Ordering::SeqCst);
        let finished = self.finished.load(Ordering::SeqCst);
        let result = read();
        let totals = (
            self.bytes.load(Ordering::SeqCst),
            self.allocs.load(Ordering::SeqCst),
        );
        let quiet = started == finished
            && self.started.load(Ordering::SeqCst) == started
            && self.finished.load(Ordering::SeqCst) == finished;
        (result, quiet.then_some(totals))
    }
}

/// The site table and what renderers need from it.
///
/// Two locks, never held together by the aggregator: draining takes only
/// `sites` (briefly, and never symbolizes), so a slow symbolization in a
/// renderer (the first one loads the binary's debug info) cannot stall the
/// rings.
pub(crate) struct ProfileState {
    pub sites: Mutex<SiteTable>,
    pub symbolizer: Mutex<Symbolizer>,
    /// How many top sites get Prometheus series (0 = none).
    pub site_metrics: usize,
    /// Bytes the snapshot history holds (kept here, next to the other
    /// exporter memory, so the collector can report it without the history's
    /// lock).
    pub history_bytes: AtomicUsize,
    /// Bytes the spike detector and records hold (same reason).
    pub spikes_bytes: AtomicUsize,
    /// What the exporter allocated while serving.
    pub own: OwnAllocations,
    /// Panics the aggregator thread caught and survived (draining,
    /// snapshotting, spike detection).
    pub aggregator_panics: AtomicU64,
    /// The HTTP server's counters (its panics among them), once it runs.
    pub http: std::sync::OnceLock<Arc<crate::http::HttpCounters>>,
}

impl ProfileState {
    pub fn new(max_sites: usize, site_metrics: usize) -> Self {
        ProfileState {
            sites: Mutex::new(SiteTable::new(max_sites)),
            symbolizer: Mutex::new(Symbolizer::new(64 * 1024)),
            site_metrics: site_metrics.min(MAX_SITE_METRICS),
            history_bytes: AtomicUsize::new(0),
            spikes_bytes: AtomicUsize::new(0),
            own: OwnAllocations::default(),
            aggregator_panics: AtomicU64::new(0),
            http: std::sync::OnceLock::new(),
        }
    }

    /// The most [`ProfileState::own_bytes`] can come to, besides the
    /// history (`history_max` bytes at most), with `slots_used` thread
    /// slots feeding the site table.
    pub fn max_own_bytes(&self, slots_used: usize, history_max: usize) -> usize {
        let max_sites = self.sites.lock().max_sites();
        SiteTable::max_bytes(max_sites, slots_used)
            + Symbolizer::max_bytes()
            + SpikeLog::max_bytes(max_sites)
            + history_max
    }

    /// Bytes the exporter itself holds: the site table, the symbol cache,
    /// the snapshot history and the spike records (approximate: element
    /// sizes times counts).
    pub fn own_bytes(&self) -> usize {
        let table = self.sites.lock().approximate_bytes();
        let symbols = self.symbolizer.lock().approximate_bytes();
        table + symbols + self.bookkeeping_bytes()
    }

    /// Bytes of the history and the spike records, as last stored.
    fn bookkeeping_bytes(&self) -> usize {
        self.history_bytes.load(Ordering::Relaxed) + self.spikes_bytes.load(Ordering::Relaxed)
    }

    /// Drains pending samples into the table; returns how many events.
    pub fn drain(&self) -> usize {
        self.sites.lock().drain().unwrap_or(0)
    }

    /// Drains, then returns the current sites, trimmed and merged. Holds the
    /// symbolizer lock while it symbolizes, not the table's.
    ///
    /// Renderers may run on a caller's thread (an in-process `top_sites`, or
    /// the collector in a user's registry): they suspend sampling there, so
    /// that symbolizing (which allocates, a lot on first use) stays out of
    /// the profiles it produces.
    pub fn current_sites(&self) -> Vec<Site> {
        let _quiet = allocmeter::profile::suspend_sampling();
        let raw = {
            let mut table = self.sites.lock();
            table.drain();
            table.snapshot()
        };
        sites::merge_sites(&raw, &mut self.symbolizer.lock())
    }

    /// The `n` sites with the largest `by`, symbolized.
    pub fn top_sites(&self, n: usize, by: SortBy) -> Vec<SiteReport> {
        self.own.account(|| {
            let _quiet = allocmeter::profile::suspend_sampling();
            let top = sites::top(self.current_sites(), n, by);
            sites::report(&top, &mut self.symbolizer.lock())
        })
    }

    /// The figures one scrape reports.
    pub fn figures(&self) -> ProfileFigures {
        self.own.account(|| self.figures_now())
    }

    fn figures_now(&self) -> ProfileFigures {
        let _quiet = allocmeter::profile::suspend_sampling();
        let mut top: Vec<(String, f64, f64)> = Vec::new();
        if self.site_metrics > 0 {
            let ranked = sites::top(self.current_sites(), self.site_metrics, SortBy::InuseSpace);
            let mut symbolizer = self.symbolizer.lock();
            for site in ranked {
                let values = site.values;
                let name = match site.stack.first() {
                    Some(&address) => short_name(&symbolizer.resolve(address).frames),
                    None => "(other)".to_string(),
                };
                // Sites sharing a short name share a series.
                match top.iter_mut().find(|(n, ..)| *n == name) {
                    Some(entry) => {
                        entry.1 += values.inuse_bytes;
                        entry.2 += values.alloc_bytes;
                    }
                    None => top.push((name, values.inuse_bytes, values.alloc_bytes)),
                }
            }
        }
        let table = self.sites.lock();
        ProfileFigures {
            sites: table.len(),
            overflowed: table.overflowed,
            table_bytes: table.approximate_bytes()
                + self.symbolizer.lock().approximate_bytes()
                + self.bookkeeping_bytes(),
            top,
            panics: (
                self.aggregator_panics.load(Ordering::Relaxed),
                self.http
                    .get()
                    .map_or(0, |c| c.panics.load(Ordering::Relaxed)),
            ),
        }
    }
}

/// A short, bounded label for a site: the last two path segments of its
/// program function, at most 64 characters.
fn short_name(frames: &[crate::symbolize::Frame]) -> String {
    let Some(frame) = crate::symbolize::program_frames(frames).first() else {
        return "(unknown)".to_string();
    };
    // `<demo::Report as core::fmt::Display>::fmt` → `demo::Report::fmt`.
    let mut name = frame.function.clone();
    if name.starts_with('<')
        && let Some(end) = matching_bracket(&name)
    {
        let inner = &name[1..end];
        let ty = inner.split(" as ").next().unwrap_or(inner);
        name = format!("{ty}{}", &name[end + 1..]);
    }
    // Drop generic arguments, then keep `type::function` or `module::function`.
    let mut depth = 0usize;
    let base: String = name
        .chars()
        .filter(|&c| {
            match c {
                '<' => depth += 1,
                '>' => depth = depth.saturating_sub(1),
                _ => return depth == 0,
            }
            false
        })
        .collect();
    let parts: Vec<&str> = base.rsplit("::").take(2).collect();
    let short = parts.into_iter().rev().collect::<Vec<_>>().join("::");
    short.chars().take(64).collect()
}

/// The index of the `>` closing the `<` at index 0.
fn matching_bracket(s: &str) -> Option<usize> {
    let mut depth = 0usize;
    for (i, c) in s.char_indices() {
        match c {
            '<' => depth += 1,
            '>' => {
                depth -= 1;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => {}
        }
    }
    None
}

/// State shared between the aggregator, the HTTP thread and the handle.
pub(crate) struct Shared {
    pub history: Mutex<History>,
    /// The spike detector and records. Lock order: `spikes`, then the site
    /// table; never together with the symbolizer.
    pub spikes: Mutex<SpikeLog>,
    pub started: Instant,
    /// How often [`Shared::tick`] runs.
    pub interval: Duration,
    pub profile: Arc<ProfileState>,
}

impl Shared {
    pub fn new(
        history_len: usize,
        interval: Duration,
        spikes: SpikeConfig,
        profile: Arc<ProfileState>,
    ) -> Self {
        Shared {
            history: Mutex::new(History::new(history_len)),
            spikes: Mutex::new(SpikeLog::new(spikes)),
            started: Instant::now(),
            interval,
            profile,
        }
    }

    /// Reads the statistics now, feeds the spike detector (with the site
    /// table, drained now, so that its estimates cover the same interval as
    /// the counters) and records the snapshot.
    ///
    /// The detector sees the service's allocations: the process's counters
    /// less what the exporter allocated while serving. A tick that falls
    /// while the exporter renders something is not fed to it (the next one
    /// is, over the longer interval).
    pub fn tick(&self) {
        let (snapshot, own) = self.profile.own.read_quiescent(|| Snapshot {
            taken_at: SystemTime::now(),
            uptime: self.started.elapsed(),
            stats: allocmeter::stats(),
        });
        let (in_spike, spike_bytes) = {
            let mut log = self.spikes.lock();
            let in_spike = match own {
                Some((own_bytes, own_allocs)) => {
                    let point = Point {
                        at: snapshot.uptime,
                        unix_ms: snapshot
                            .taken_at
                            .duration_since(UNIX_EPOCH)
                            .map_or(0, |d| d.as_millis() as u64),
                        alloc_bytes: snapshot.stats.alloc_bytes.saturating_sub(own_bytes),
                        allocs: snapshot.stats.allocs.saturating_sub(own_allocs),
                    };
                    let mut table = self.profile.sites.lock();
                    table.drain();
                    log.observe(point, &table)
                }
                None => log.status().active,
            };
            (in_spike, log.approximate_bytes())
        };
        self.profile
            .spikes_bytes
            .store(spike_bytes, Ordering::Relaxed);
        let bytes = {
            let mut history = self.history.lock();
            history.push(snapshot, in_spike);
            history.bytes()
        };
        self.profile.history_bytes.store(bytes, Ordering::Relaxed);
    }

    /// The history points taken after `since_unix_ms` (all without it).
    pub fn history_points(&self, since_unix_ms: Option<u64>) -> Vec<HistoryPoint> {
        self.history.lock().points(since_unix_ms)
    }

    /// The spike detector's state now.
    pub fn spike_status(&self) -> SpikeStatus {
        self.spikes.lock().status()
    }

    /// The spike records, oldest first, with their top sites symbolized.
    /// Copies the records out of the lock before symbolizing.
    pub fn spike_reports(&self) -> Vec<SpikeReport> {
        self.profile.own.account(|| {
            let _quiet = allocmeter::profile::suspend_sampling();
            let records = self.spikes.lock().records();
            let mut symbolizer = self.profile.symbolizer.lock();
            records
                .iter()
                .map(|r| spikes::report(r, &mut symbolizer))
                .collect()
        })
    }
}

/// Drains every [`drain_every`] (sooner when a thread's ring fills up and
/// unparks this thread) and snapshots every `interval`, until `stop` is set
/// (and the thread unparked).
///
/// A panic in a drain or a snapshot (a bug of the exporter's) is caught: the
/// default hook has printed it, `allocmeter_exporter_panics_total` counts
/// it, and the thread carries on with the next drain and the next snapshot
/// (its locks do not poison; what the panicking step was doing is lost). It
/// never reaches a thread of the service: they only ever push into rings.
pub(crate) fn run(shared: Arc<Shared>, interval: Duration, stop: Arc<AtomicBool>) {
    allocmeter::profile::mark_thread_internal();
    let mut next_snapshot = Instant::now() + interval;
    loop {
        let step = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            crate::fault::point("aggregator.drain");
            shared.profile.drain();
            if Instant::now() >= next_snapshot {
                // Moved on first, so that a snapshot that panics every time
                // is retried at the interval, not in a loop.
                next_snapshot += interval;
                if next_snapshot < Instant::now() {
                    next_snapshot = Instant::now() + interval;
                }
                crate::fault::point("aggregator.tick");
                shared.tick();
            }
        }));
        let mut wait = drain_every().min(next_snapshot.saturating_duration_since(Instant::now()));
        if step.is_err() {
            shared
                .profile
                .aggregator_panics
                .fetch_add(1, Ordering::Relaxed);
            // Not faster than this if every drain panics.
            wait = wait.max(Duration::from_millis(100));
        }
        if stop.load(Ordering::Acquire) {
            break;
        }
        std::thread::park_timeout(wait);
        if stop.load(Ordering::Acquire) {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::symbolize::Frame;

    #[test]
    fn the_spike_log_counts_in_the_exporter_s_own_bytes() {
        let profile = Arc::new(ProfileState::new(100, 0));
        let shared = Shared::new(
            10,
            Duration::from_millis(10),
            SpikeConfig::default(),
            profile.clone(),
        );
        assert_eq!(profile.spikes_bytes.load(Ordering::Relaxed), 0);
        shared.tick();
        shared.tick();
        let spikes = profile.spikes_bytes.load(Ordering::Relaxed);
        assert_eq!(spikes, shared.spikes.lock().approximate_bytes());
        assert!(spikes > 0);
        let history = profile.history_bytes.load(Ordering::Relaxed);
        assert!(history > 0);
        assert!(profile.own_bytes() >= spikes + history);
    }

    #[test]
    fn own_allocations_are_read_only_when_no_render_is_in_progress() {
        // (This test binary's allocator is not instrumented, so the totals
        // stay 0; tests/spikes.rs checks what they leave out.)
        let own = OwnAllocations::default();
        assert_eq!(own.read_quiescent(|| 1), (1, Some((0, 0))));
        own.account(|| {
            own.account(|| {
                assert_eq!(own.read_quiescent(|| 2), (2, None), "nested");
            });
            assert_eq!(own.read_quiescent(|| 3), (3, None), "in progress");
        });
        assert_eq!(own.read_quiescent(|| 4), (4, Some((0, 0))));
        // A render that panics still ends.
        let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            own.account(|| panic!("render failed"))
        }));
        assert!(caught.is_err());
        assert_eq!(own.read_quiescent(|| 5), (5, Some((0, 0))));
        own.account(|| assert_eq!(own.read_quiescent(|| 6).1, None, "flag reset"));
    }

    #[test]
    fn short_names_are_bounded_and_drop_generics() {
        let f = |name: &str| Frame {
            function: name.to_string(),
            file: None,
            line: None,
        };
        assert_eq!(
            short_name(&[f("demo::orders::build_report")]),
            "orders::build_report"
        );
        assert_eq!(short_name(&[f("main")]), "main");
        assert_eq!(
            short_name(&[
                f("alloc::vec::Vec<T>::with_capacity"),
                f("svc::Handler<T>::run")
            ]),
            "Handler::run"
        );
        assert_eq!(
            short_name(&[f("<demo::Report as core::fmt::Display>::fmt")]),
            "Report::fmt"
        );
        assert_eq!(short_name(&[f(&"x".repeat(500))]).len(), 64);
        assert_eq!(short_name(&[]), "(unknown)");
    }
}
