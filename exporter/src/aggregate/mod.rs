//! The aggregator stage: the exporter's only consumer of the allocator's
//! sample rings, and the owner of everything built from them and from the
//! counters.
//!
//! A thread ([`run`]) drains the rings into the site table every
//! [`drain_every`] (once the rings have been quiet for an interval, at the
//! snapshots only) and, once per interval, reads every slot's counters
//! ([`allocmeter::stats_split`]: the program's share, without allocmeter's
//! own) into a [`Snapshot`] for the bounded history and the spike detector
//! ([`Aggregator::tick`]).
//!
//! | file | owns |
//! |---|---|
//! | `sites.rs` | the site table: sampled allocations by raw stack |
//! | `history.rs` | snapshots of the statistics, the bounded history |
//! | `detector.rs` | the pure spike detector |
//! | `detector_props.rs` | property tests of the detector's guarantees (tests only) |
//! | `spikes.rs` | the spike log: records and what allocated during each |
//! | `evidence.rs` | what each site's sampled blocks did over a sliding window, for the hints |
//! | `peak.rs` | the live heap's high-water marks (since start, and over a window) and the sites as they stood there |
//!
//! [`Aggregator`] owns all of them behind private locks; renderers get
//! copies through its methods and never take its locks. It reads with
//! [`allocmeter::stats_split`] and [`allocmeter::profile::drain`], which take no
//! lock an allocating thread could wait on; its own locks are taken only by
//! exporter threads, and in one order: the spike log, then the site table,
//! then the peak log (in [`Aggregator::tick`]); no other two are ever held
//! together.
//!
//! Must not touch: symbolization, rendering, HTTP (all downstream).

pub(crate) mod detector;
#[cfg(test)]
mod detector_props;
pub(crate) mod evidence;
pub(crate) mod history;
pub(crate) mod peak;
pub(crate) mod sites;
pub(crate) mod spikes;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime};

use parking_lot::Mutex;

use detector::{Point, SpikeConfig};
use history::{History, HistoryPoint, Snapshot};
use peak::{Peak, PeakLog, Tick};
use sites::{EvidenceCopy, RawSite, SiteTable, SiteValues, WindowMark};
use spikes::{SpikeLog, SpikeRecord, SpikeStatus};

/// How often the rings are drained at most: [`allocmeter::profile::drain_interval`],
/// which shortens down to 1 ms while the rings fill fast and lengthens to
/// 50 ms when they are quiet (and once they have been empty for an
/// interval, [`run`] waits for its next snapshot instead: [`next_wait`]). A
/// thread whose ring is half full anyway (a burst) unparks the aggregator
/// at once (see [`allocmeter::profile::register_drainer`]).
fn drain_every() -> Duration {
    allocmeter::profile::drain_interval()
}

/// The site table's own figures, for one scrape.
#[derive(Clone, Copy, Debug)]
pub(crate) struct TableFigures {
    /// Stacks in the table.
    pub sites: usize,
    /// Samples merged into "(other)" because the table was full.
    pub overflowed: u64,
}

/// The aggregator's state: the site table, the history and the spike log.
/// Shared (in an `Arc`) by the aggregator
/// thread, the renderers and the handle; every field is private, every lock
/// taken here.
pub(crate) struct Aggregator {
    sites: Mutex<SiteTable>,
    history: Mutex<History>,
    peaks: Mutex<PeakLog>,
    spikes: Mutex<SpikeLog>,
    started: Instant,
    /// How often [`Aggregator::tick`] runs.
    interval: Duration,
    /// Bytes the snapshot history holds, as last stored (read without the
    /// history's lock).
    history_bytes: AtomicUsize,
    /// Bytes the spike detector and records hold (same reason).
    spikes_bytes: AtomicUsize,
    /// Panics the aggregator thread caught and survived (draining,
    /// snapshotting, spike detection).
    panics: AtomicU64,
    /// The evidence window of the hints (its generations are half as long).
    hints_window: Duration,
}

/// The hints' evidence at one moment: every site's, over the window, with
/// the program's exact totals over the same window.
#[derive(Clone, Debug)]
pub(crate) struct EvidenceSnapshot {
    /// Now ([`allocmeter::profile::clock_ns`]).
    pub now: WindowMark,
    /// When the window began.
    pub start: WindowMark,
    /// The sites with evidence.
    pub sites: Vec<EvidenceCopy>,
}

impl EvidenceSnapshot {
    /// The window's length in seconds (at least a millisecond).
    pub fn window_secs(&self) -> f64 {
        (self.now.time_ns.saturating_sub(self.start.time_ns) as f64 / 1e9).max(1e-3)
    }
}

/// The program's exact totals now, for the evidence window.
fn window_mark() -> WindowMark {
    let program = allocmeter::stats_split().program;
    WindowMark {
        time_ns: allocmeter::profile::clock_ns(),
        allocs: program.allocs,
        bytes: program.alloc_bytes,
    }
}

impl Aggregator {
    /// An aggregator keeping up to `max_sites` stacks and `history_len`
    /// snapshots, ticking every `interval`.
    pub fn new(
        max_sites: usize,
        history_len: usize,
        interval: Duration,
        spikes: SpikeConfig,
        hints_window: Duration,
        peak_window: Duration,
    ) -> Self {
        let mut table = SiteTable::new(max_sites);
        table.start_evidence(window_mark());
        Aggregator {
            sites: Mutex::new(table),
            history: Mutex::new(History::new(history_len)),
            peaks: Mutex::new(PeakLog::new(peak_window)),
            spikes: Mutex::new(SpikeLog::new(spikes)),
            started: Instant::now(),
            interval,
            history_bytes: AtomicUsize::new(0),
            spikes_bytes: AtomicUsize::new(0),
            panics: AtomicU64::new(0),
            hints_window,
        }
    }

    /// Drains, then copies the hints' evidence out of the table.
    pub fn evidence(&self) -> EvidenceSnapshot {
        let mut table = self.sites.lock();
        table.drain();
        let now = window_mark();
        EvidenceSnapshot {
            now,
            start: table.window_started(),
            sites: table.evidence_now(now.time_ns),
        }
    }

    /// Drains pending samples into the table; returns how many events.
    pub fn drain(&self) -> usize {
        self.sites.lock().drain().unwrap_or(0)
    }

    /// Drains, then copies every site with samples out of the table, for a
    /// renderer to work on outside the lock. Renders drain first so that
    /// what they show is as fresh as the rings.
    pub fn sites_now(&self) -> Vec<RawSite> {
        let mut table = self.sites.lock();
        table.drain();
        table.copy_sites()
    }

    /// Drains, then every site's estimates and samples by index: the
    /// baseline of a delta profile.
    pub fn site_values_now(&self) -> Vec<(SiteValues, u64)> {
        let mut table = self.sites.lock();
        table.drain();
        table.values_by_index()
    }

    /// Drains, then copies what every site allocated since `baseline`
    /// ([`Aggregator::site_values_now`]), for a delta profile.
    pub fn sites_since(&self, baseline: &[(SiteValues, u64)]) -> Vec<RawSite> {
        let mut table = self.sites.lock();
        table.drain();
        table.copy_sites_since(baseline)
    }

    /// A peak's figures and its sites as they stood at it: since start, or
    /// (`window`) over the peak window. `None` before the first tick.
    pub fn peak(&self, window: bool) -> Option<(Peak, Vec<RawSite>)> {
        let peak = {
            let log = self.peaks.lock();
            let p = if window {
                log.in_window()
            } else {
                log.since_start()
            };
            if !p.is_set() {
                return None;
            }
            p.clone()
        };
        let sites = self.sites.lock().copy_sites_as(&peak.sites);
        Some((peak, sites))
    }

    /// The highest live heap seen at a tick since start, and when (ms
    /// since the Unix epoch).
    pub fn peak_mark(&self) -> (u64, u64) {
        let log = self.peaks.lock();
        let p = log.since_start();
        (p.live_bytes, p.unix_ms)
    }

    /// The peak window.
    pub fn peak_window(&self) -> Duration {
        self.peaks.lock().window()
    }

    /// The site table's figures now.
    pub fn table_figures(&self) -> TableFigures {
        let table = self.sites.lock();
        TableFigures {
            sites: table.len(),
            overflowed: table.overflowed(),
        }
    }

    /// Reads the statistics now, feeds the spike detector (with the site
    /// table, drained now, so that its estimates cover the same interval as
    /// the counters) and records the snapshot.
    ///
    /// The snapshot and the detector see the program's share of the
    /// counters ([`allocmeter::StatsSplit::program`]): what the exporter
    /// allocates (its threads, its renders on the program's threads) is
    /// allocmeter's, exactly, so that looking never shows as a spike.
    pub fn tick(&self) {
        let split = allocmeter::stats_split();
        let snapshot = Snapshot {
            taken_at: SystemTime::now(),
            uptime: self.started.elapsed(),
            stats: split.program,
        };
        let point = Point {
            at: snapshot.uptime,
            unix_ms: history::unix_ms(snapshot.taken_at),
            alloc_bytes: split.program.alloc_bytes,
            allocs: split.program.allocs,
        };
        let (in_spike, spike_bytes) = {
            let mut log = self.spikes.lock();
            // Lock order: the spike log, then the site table.
            let mut table = self.sites.lock();
            table.drain();
            let in_spike = log.observe(point, &table);
            let mark = WindowMark {
                time_ns: allocmeter::profile::clock_ns(),
                allocs: split.program.allocs,
                bytes: split.program.alloc_bytes,
            };
            let half = self.hints_window.as_nanos() as u64 / 2;
            if mark
                .time_ns
                .saturating_sub(table.generation_started().time_ns)
                >= half
            {
                table.rotate_evidence(mark);
            }
            // Lock order: the spike log, the site table, the peak log.
            self.peaks.lock().observe(
                Instant::now(),
                &Tick {
                    live_bytes: split.program.live_bytes,
                    live_objects: split.program.live_objects,
                    unix_ms: point.unix_ms,
                    uptime_ms: point.at.as_millis() as u64,
                },
                &table,
            );
            drop(table);
            (in_spike, log.approximate_bytes())
        };
        self.spikes_bytes.store(spike_bytes, Ordering::Relaxed);
        let bytes = {
            let mut history = self.history.lock();
            history.push(snapshot, in_spike);
            history.bytes()
        };
        self.history_bytes.store(bytes, Ordering::Relaxed);
    }

    /// The newest snapshot.
    pub fn latest(&self) -> Snapshot {
        *self
            .history
            .lock()
            .latest()
            .expect("the history holds the snapshot taken at start")
    }

    /// The history points taken after `since_unix_ms` (all without it).
    pub fn history_points(&self, since_unix_ms: Option<u64>) -> Vec<HistoryPoint> {
        self.history.lock().points(since_unix_ms)
    }

    /// How many points the history keeps.
    pub fn history_capacity(&self) -> usize {
        self.history.lock().capacity()
    }

    /// How often [`Aggregator::tick`] runs.
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// Time since the aggregator was made (the exporter's uptime).
    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    /// The spike detector's state now.
    pub fn spike_status(&self) -> SpikeStatus {
        self.spikes.lock().status()
    }

    /// A copy of the spike records, oldest first, for rendering outside the
    /// lock.
    pub fn spike_records(&self) -> Vec<SpikeRecord> {
        self.spikes.lock().records()
    }

    /// Panics the aggregator thread caught and survived.
    pub fn panics(&self) -> u64 {
        self.panics.load(Ordering::Relaxed)
    }

    /// Bytes the aggregator's structures hold: the site table, the snapshot
    /// history and the spike records (approximate: element sizes times
    /// counts). A breakdown only: the exporter's heap is counted exactly
    /// (`allocmeter_exporter_heap_live_bytes`).
    pub fn own_bytes(&self) -> usize {
        let table = self.sites.lock().approximate_bytes();
        table
            + self.peaks.lock().approximate_bytes()
            + self.history_bytes.load(Ordering::Relaxed)
            + self.spikes_bytes.load(Ordering::Relaxed)
    }

    /// The most [`Aggregator::own_bytes`] can come to with `slots_used`
    /// thread slots feeding the site table.
    pub fn max_own_bytes(&self, slots_used: usize) -> usize {
        let max_sites = self.sites.lock().max_sites();
        let history_max = self.history.lock().max_bytes();
        SiteTable::max_bytes(max_sites, slots_used)
            + SpikeLog::max_bytes(max_sites)
            + PeakLog::max_bytes(max_sites)
            + history_max
    }
}

/// How long the aggregator sleeps before its next drain: [`drain_every`],
/// but not past the next snapshot (`to_snapshot` away); once the drains have
/// found nothing for a whole `interval` (`quiet`: for how long they have),
/// until the next snapshot. An idle service then costs one wake-up per
/// interval, not one per drain interval (20 a second at its longest, 50
/// ms). Samples that come meanwhile wait in their rings until that drain,
/// or until a render drains, or wake the aggregator at once by filling a
/// ring halfway; the first drain that finds events returns to
/// [`drain_every`].
fn next_wait(
    quiet: Option<Duration>,
    interval: Duration,
    drain_every: Duration,
    to_snapshot: Duration,
) -> Duration {
    match quiet {
        Some(quiet) if quiet >= interval => to_snapshot,
        _ => drain_every.min(to_snapshot),
    }
}

/// Drains every [`drain_every`] (sooner when a thread's ring fills up and
/// unparks this thread; at the snapshots only once the drains have found
/// nothing for an interval, see [`next_wait`]) and snapshots every
/// `interval`, until `stop` is set (and the thread unparked). `after_tick` runs after each snapshot (the
/// builder's housekeeping of later stages, which this module does not know).
///
/// A panic in a drain or a snapshot (a bug of the exporter's) is caught: the
/// default hook has printed it, `allocmeter_exporter_panics_total` counts
/// it, and the thread carries on with the next drain and the next snapshot
/// (its locks do not poison; what the panicking step was doing is lost). It
/// never reaches a thread of the service: they only ever push into rings.
pub(crate) fn run(aggregator: Arc<Aggregator>, stop: Arc<AtomicBool>, after_tick: impl Fn()) {
    let interval = aggregator.interval();
    crate::marked::mark_this_thread();
    let mut next_snapshot = Instant::now() + interval;
    // When the drains began to find nothing; `None` while they find events.
    let mut quiet_since: Option<Instant> = None;
    loop {
        let mut found = 0;
        let step = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            crate::fault::point("aggregator.drain");
            found = aggregator.drain();
            if Instant::now() >= next_snapshot {
                // Moved on first, so that a snapshot that panics every time
                // is retried at the interval, not in a loop.
                next_snapshot += interval;
                if next_snapshot < Instant::now() {
                    next_snapshot = Instant::now() + interval;
                }
                crate::fault::point("aggregator.tick");
                aggregator.tick();
                after_tick();
            }
        }));
        let now = Instant::now();
        quiet_since = if found > 0 {
            None
        } else {
            Some(quiet_since.unwrap_or(now))
        };
        let mut wait = next_wait(
            quiet_since.map(|since| now - since),
            interval,
            drain_every(),
            next_snapshot.saturating_duration_since(now),
        );
        if step.is_err() {
            aggregator.panics.fetch_add(1, Ordering::Relaxed);
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

    #[test]
    fn the_wait_stretches_to_the_snapshot_after_a_quiet_interval() {
        let ms = Duration::from_millis;
        let interval = ms(1000);
        // Events found, or quiet for less than an interval: the drain
        // interval, but not past the snapshot.
        assert_eq!(next_wait(None, interval, ms(50), ms(700)), ms(50));
        assert_eq!(next_wait(Some(ms(0)), interval, ms(50), ms(700)), ms(50));
        assert_eq!(next_wait(Some(ms(999)), interval, ms(50), ms(700)), ms(50));
        assert_eq!(next_wait(None, interval, ms(50), ms(20)), ms(20));
        // Quiet for an interval: until the snapshot.
        assert_eq!(
            next_wait(Some(ms(1000)), interval, ms(50), ms(700)),
            ms(700)
        );
        assert_eq!(next_wait(Some(ms(5000)), interval, ms(1), ms(0)), ms(0));
    }

    /// The voluntary context switches of thread `tid` of this process: one
    /// each time it sleeps, so one per wake-up.
    fn sleeps_of(tid: i32) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/self/task/{tid}/status"))
            .expect("the thread's status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
            .and_then(|v| v.trim().parse().ok())
            .expect("voluntary_ctxt_switches")
    }

    /// Nothing is sampled in this process (allocmeter is not its global
    /// allocator), so every drain finds nothing: once a whole interval has
    /// passed so, the aggregator wakes for its ticks only, not at the
    /// allocator's drain interval (50 ms when the rings are quiet).
    #[test]
    fn an_idle_aggregator_wakes_once_per_interval() {
        let interval = Duration::from_millis(200);
        let aggregator = Arc::new(Aggregator::new(
            100,
            10,
            interval,
            SpikeConfig::default(),
            Duration::from_secs(120),
            Duration::from_secs(3600),
        ));
        let stop = Arc::new(AtomicBool::new(false));
        let (tid_tx, tid_rx) = std::sync::mpsc::channel();
        let thread = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                // SAFETY: gettid has no preconditions.
                tid_tx.send(unsafe { libc::gettid() }).unwrap();
                run(aggregator, stop, || {});
            })
        };
        let tid = tid_rx.recv().unwrap();
        // A whole interval of empty drains first.
        std::thread::sleep(3 * interval);
        let before = sleeps_of(tid);
        let window = 10 * interval;
        std::thread::sleep(window);
        let wakeups = sleeps_of(tid) - before;
        // Release: the flag is seen by the thread's Acquire load once it
        // wakes.
        stop.store(true, Ordering::Release);
        thread.thread().unpark();
        thread.join().unwrap();
        // 10 ticks in the window (one more if the window's ends straddle
        // two); polling every 50 ms would be 40. Late wake-ups on a busy
        // machine only make fewer.
        assert!(
            wakeups <= 10 + 2,
            "{wakeups} wake-ups in {window:?} with a tick every {interval:?}"
        );
    }

    #[test]
    fn the_spike_log_counts_in_the_exporter_s_own_bytes() {
        let aggregator = Aggregator::new(
            100,
            10,
            Duration::from_millis(10),
            SpikeConfig::default(),
            Duration::from_secs(120),
            Duration::from_secs(3600),
        );
        assert_eq!(aggregator.spikes_bytes.load(Ordering::Relaxed), 0);
        aggregator.tick();
        aggregator.tick();
        let spikes = aggregator.spikes_bytes.load(Ordering::Relaxed);
        assert_eq!(spikes, aggregator.spikes.lock().approximate_bytes());
        assert!(spikes > 0);
        let history = aggregator.history_bytes.load(Ordering::Relaxed);
        assert!(history > 0);
        assert!(aggregator.own_bytes() >= spikes + history);
    }
}
