//! Allocation-rate spikes, detected in process, and what allocated during
//! each one.
//!
//! [`Detector`] is a small state machine fed one [`Point`] (time and the
//! cumulative allocation counters) per aggregator tick. The rate of the
//! latest interval is compared with the *baseline*: the time-weighted mean
//! allocation rate over the previous `baseline` window of intervals that were
//! not part of a spike. A spike starts when the rate is above `k` × baseline
//! and above a floor (`min_rate`); it ends at the first interval whose rate
//! falls back to `k` × baseline or below. The baseline is frozen while a
//! spike lasts, so a long spike does not raise its own bar. A spike that
//! lasts longer than the baseline window ends there: the new level is then
//! the normal one, and becomes the baseline.
//!
//! [`SpikeLog`] keeps a record of each spike (at most [`MAX_SPIKES`]): the
//! exact counter deltas over its intervals, its peak rate and baseline, and
//! the call sites that allocated most during it. For the latter it keeps a
//! copy of every raw site's allocated estimates as of the latest quiet tick
//! (the start of a spike's first interval, once one begins), and at each
//! tick inside the spike ranks the raw sites by what they allocated since.
//! It keeps the stacks of the top [`MAX_RAW_SITES`] raw sites; symbolizing
//! and merging them (into at most [`MAX_TOP_SITES`] sites) waits until a
//! renderer asks, so the aggregator never symbolizes.

use std::collections::VecDeque;
use std::time::Duration;

use crate::sites::{self, AllocTotals, RawSite, SiteTable, SiteValues, SortBy};
use crate::symbolize::{Frame, Symbolizer};

/// Spike records kept; the oldest is dropped beyond this.
pub const MAX_SPIKES: usize = 32;

/// Sites reported per spike.
pub const MAX_TOP_SITES: usize = 10;

/// Raw stacks kept per spike, from which its top sites are merged (several
/// raw stacks can become one site once allocation machinery is trimmed).
pub(crate) const MAX_RAW_SITES: usize = 32;

/// Intervals the baseline must have seen before a spike can fire.
pub(crate) const MIN_BASELINE_INTERVALS: usize = 3;

/// The most intervals the baseline window holds, whatever the interval (it
/// then covers less than the configured window).
pub(crate) const MAX_BASELINE_INTERVALS: usize = 3600;

/// Default spike factor `k`.
pub const DEFAULT_SPIKE_FACTOR: f64 = 4.0;

/// Default floor: a rate below this is never a spike (1 MiB/s).
pub const DEFAULT_SPIKE_MIN_RATE: u64 = 1 << 20;

/// Default baseline window.
pub const DEFAULT_SPIKE_BASELINE: Duration = Duration::from_secs(60);

/// The detector's settings.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct SpikeConfig {
    /// A spike is a rate above `k` × the baseline.
    pub k: f64,
    /// ... and above this many bytes per second.
    pub min_rate: u64,
    /// The window the baseline averages over.
    pub baseline: Duration,
}

impl Default for SpikeConfig {
    fn default() -> Self {
        SpikeConfig {
            k: DEFAULT_SPIKE_FACTOR,
            min_rate: DEFAULT_SPIKE_MIN_RATE,
            baseline: DEFAULT_SPIKE_BASELINE,
        }
    }
}

/// One tick's reading of the cumulative counters.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Point {
    /// Monotonic time (time since the exporter started).
    pub at: Duration,
    /// Wall clock, milliseconds since the Unix epoch.
    pub unix_ms: u64,
    /// Bytes allocated since the process started.
    pub alloc_bytes: u64,
    /// Allocations since the process started.
    pub allocs: u64,
}

/// A spike in progress, or just ended.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Active {
    /// The baseline when it started (frozen).
    pub baseline: f64,
    /// The point before its first interval: the spike starts here.
    pub start: Point,
    /// The end of its latest interval above the threshold.
    pub last: Point,
    /// The highest interval rate so far, bytes per second.
    pub peak: f64,
}

/// What one point did.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Step {
    /// The first point, or one no later than the previous: no interval.
    NoInterval,
    /// The interval was not part of a spike.
    Quiet,
    /// The interval is the first of a spike.
    Started(Active),
    /// The interval continues a spike.
    Continues(Active),
    /// The interval fell back: the spike ended at its previous point
    /// (`Active::last`). This interval itself is quiet.
    Ended(Active),
}

impl Step {
    /// Whether the interval that ended at this point was part of a spike.
    pub fn in_spike(&self) -> bool {
        matches!(self, Step::Started(_) | Step::Continues(_))
    }
}

/// One quiet interval in the baseline window.
#[derive(Clone, Copy, Debug)]
struct Interval {
    end: Duration,
    secs: f64,
    bytes: u64,
}

/// The spike detector. Pure: it sees only the points it is given.
#[derive(Debug)]
pub(crate) struct Detector {
    config: SpikeConfig,
    previous: Option<Point>,
    window: VecDeque<Interval>,
    active: Option<Active>,
    /// The rate of the latest interval, bytes per second.
    current: f64,
}

impl Detector {
    pub fn new(config: SpikeConfig) -> Self {
        Detector {
            config,
            previous: None,
            window: VecDeque::new(),
            active: None,
            current: 0.0,
        }
    }

    pub fn config(&self) -> SpikeConfig {
        self.config
    }

    /// The mean rate over the baseline window (frozen during a spike), bytes
    /// per second; 0 before any interval.
    pub fn baseline(&self) -> f64 {
        if let Some(a) = &self.active {
            return a.baseline;
        }
        let secs: f64 = self.window.iter().map(|i| i.secs).sum();
        let bytes: u64 = self.window.iter().map(|i| i.bytes).sum();
        if secs > 0.0 { bytes as f64 / secs } else { 0.0 }
    }

    /// The rate of the latest interval, bytes per second.
    pub fn current(&self) -> f64 {
        self.current
    }

    /// Whether a spike is in progress.
    pub fn active(&self) -> bool {
        self.active.is_some()
    }

    /// Bytes the detector holds, roughly.
    pub fn approximate_bytes(&self) -> usize {
        core::mem::size_of::<Self>() + self.window.capacity() * core::mem::size_of::<Interval>()
    }

    /// Feeds the next point.
    pub fn step(&mut self, point: Point) -> Step {
        let previous = match self.previous {
            Some(p) if point.at > p.at => p,
            Some(_) => return Step::NoInterval,
            None => {
                self.previous = Some(point);
                return Step::NoInterval;
            }
        };
        self.previous = Some(point);
        let secs = (point.at - previous.at).as_secs_f64();
        let bytes = point.alloc_bytes.saturating_sub(previous.alloc_bytes);
        let rate = bytes as f64 / secs;
        self.current = rate;
        let interval = Interval {
            end: point.at,
            secs,
            bytes,
        };
        if let Some(mut active) = self.active {
            let too_long = point.at.saturating_sub(active.start.at) > self.config.baseline;
            if rate > self.config.k * active.baseline && !too_long {
                active.last = point;
                active.peak = active.peak.max(rate);
                self.active = Some(active);
                return Step::Continues(active);
            }
            self.active = None;
            self.push(interval);
            return Step::Ended(active);
        }
        self.evict(point.at);
        let baseline = self.baseline();
        if self.window.len() >= MIN_BASELINE_INTERVALS
            && rate > self.config.k * baseline
            && rate > self.config.min_rate as f64
        {
            let active = Active {
                baseline,
                start: previous,
                last: point,
                peak: rate,
            };
            self.active = Some(active);
            return Step::Started(active);
        }
        self.push(interval);
        Step::Quiet
    }

    /// Drops intervals that ended before the window that ends at `now`.
    fn evict(&mut self, now: Duration) {
        while let Some(first) = self.window.front() {
            if first.end + self.config.baseline <= now {
                self.window.pop_front();
            } else {
                break;
            }
        }
    }

    fn push(&mut self, interval: Interval) {
        self.evict(interval.end);
        if self.window.len() == MAX_BASELINE_INTERVALS {
            self.window.pop_front();
        }
        self.window.push_back(interval);
    }
}

/// What a raw site allocated during a spike (estimates).
#[derive(Clone, Debug)]
struct RawDelta {
    stack: Vec<usize>,
    totals: AllocTotals,
}

/// One spike as the aggregator records it: raw stacks, not yet symbolized.
#[derive(Clone, Debug)]
pub(crate) struct SpikeRecord {
    id: u64,
    active: bool,
    spike: Active,
    top: Vec<RawDelta>,
}

/// The detector's state, as `/api/snapshot` reports it.
#[derive(Clone, Copy, Debug, serde::Serialize)]
pub struct SpikeStatus {
    /// The factor: a spike is a rate above `k` × the baseline.
    pub k: f64,
    /// The floor: a rate at or below this (bytes per second) is never a spike.
    pub min_bytes_per_sec: u64,
    /// The baseline window, seconds.
    pub baseline_secs: f64,
    /// The baseline now (frozen during a spike), bytes per second: the mean
    /// allocation rate over the window's quiet intervals.
    pub baseline_bytes_per_sec: f64,
    /// The allocation rate of the latest interval, bytes per second.
    pub current_bytes_per_sec: f64,
    /// Whether a spike is in progress.
    pub active: bool,
}

/// A call site's share of a spike, as `/api/spikes` reports it.
#[derive(Clone, Debug, serde::Serialize)]
pub struct SpikeSite {
    /// The program function that allocated (the leaf once the allocation
    /// machinery is trimmed), or `(other)`.
    pub function: String,
    /// Its source file, if known.
    pub file: Option<String>,
    /// Its line, if known.
    pub line: Option<u32>,
    /// Estimated bytes it allocated during the spike.
    pub alloc_space: f64,
    /// Estimated allocations it made during the spike.
    pub alloc_objects: f64,
    /// Samples behind the estimates, taken during the spike.
    pub samples: u64,
    /// The call stack, innermost first.
    pub stack: Vec<Frame>,
}

/// One detected spike, as `/api/spikes` and [`crate::Exporter::spikes`]
/// report it.
#[derive(Clone, Debug, serde::Serialize)]
pub struct SpikeReport {
    /// Numbered from 1 in the order detected.
    pub id: u64,
    /// Whether it is still in progress.
    pub active: bool,
    /// When its first interval began (the tick before it), ms since the
    /// Unix epoch.
    pub start_unix_ms: u64,
    /// When its last interval above the threshold ended; `None` while active.
    pub end_unix_ms: Option<u64>,
    /// The baseline it was measured against, bytes per second.
    pub baseline_bytes_per_sec: f64,
    /// Its highest interval rate, bytes per second.
    pub peak_bytes_per_sec: f64,
    /// Bytes allocated from start to end (to the latest tick while active):
    /// the exact difference of the counters.
    pub alloc_bytes: u64,
    /// Allocations in the same span, exact.
    pub allocs: u64,
    /// The sites that allocated most during it, by estimated bytes, at most
    /// [`MAX_TOP_SITES`].
    pub top_sites: Vec<SpikeSite>,
}

/// The detector, the per-site marks and the spike records.
pub(crate) struct SpikeLog {
    detector: Detector,
    /// Each raw site's allocated totals at the latest quiet tick; frozen
    /// while a spike lasts (its start).
    mark: Vec<AllocTotals>,
    records: VecDeque<SpikeRecord>,
    next_id: u64,
}

impl SpikeLog {
    pub fn new(config: SpikeConfig) -> Self {
        SpikeLog {
            detector: Detector::new(config),
            mark: Vec::new(),
            records: VecDeque::with_capacity(MAX_SPIKES),
            next_id: 1,
        }
    }

    /// Feeds one tick: the counters, and the site table as of the same
    /// moment (drained). Returns whether the interval ending now was part
    /// of a spike.
    pub fn observe(&mut self, point: Point, table: &SiteTable) -> bool {
        let step = self.detector.step(point);
        match step {
            Step::Started(spike) => {
                if self.records.len() == MAX_SPIKES {
                    self.records.pop_front();
                }
                let id = self.next_id;
                self.next_id += 1;
                self.records.push_back(SpikeRecord {
                    id,
                    active: true,
                    spike,
                    top: Vec::new(),
                });
                self.rank(table);
            }
            Step::Continues(spike) => {
                if let Some(record) = self.records.back_mut() {
                    record.spike = spike;
                }
                self.rank(table);
            }
            Step::Ended(spike) => {
                // The top sites stay as ranked at the spike's last tick, the
                // same span as its counters.
                if let Some(record) = self.records.back_mut() {
                    record.spike = spike;
                    record.active = false;
                }
                table.copy_alloc_totals(&mut self.mark);
            }
            Step::Quiet | Step::NoInterval => table.copy_alloc_totals(&mut self.mark),
        }
        step.in_spike()
    }

    /// Ranks the raw sites by bytes allocated since the mark into the
    /// newest record.
    fn rank(&mut self, table: &SiteTable) {
        let Some(record) = self.records.back_mut() else {
            return;
        };
        let mut deltas: Vec<(usize, AllocTotals)> = table
            .alloc_totals()
            .enumerate()
            .filter_map(|(i, now)| {
                let then = self.mark.get(i).copied().unwrap_or_default();
                let d = now.minus(&then);
                (d.samples > 0 && d.bytes > 0.0).then_some((i, d))
            })
            .collect();
        let by_bytes =
            |a: &(usize, AllocTotals), b: &(usize, AllocTotals)| b.1.bytes.total_cmp(&a.1.bytes);
        if deltas.len() > MAX_RAW_SITES {
            deltas.select_nth_unstable_by(MAX_RAW_SITES - 1, by_bytes);
            deltas.truncate(MAX_RAW_SITES);
        }
        deltas.sort_by(by_bytes);
        record.top.clear();
        record
            .top
            .extend(deltas.into_iter().map(|(i, totals)| RawDelta {
                stack: table.raw_stack(i).to_vec(),
                totals,
            }));
    }

    /// The detector's state now.
    pub fn status(&self) -> SpikeStatus {
        let config = self.detector.config();
        SpikeStatus {
            k: config.k,
            min_bytes_per_sec: config.min_rate,
            baseline_secs: config.baseline.as_secs_f64(),
            baseline_bytes_per_sec: self.detector.baseline(),
            current_bytes_per_sec: self.detector.current(),
            active: self.detector.active(),
        }
    }

    /// A copy of the records, oldest first, for rendering outside the lock.
    pub fn records(&self) -> Vec<SpikeRecord> {
        self.records.iter().cloned().collect()
    }

    /// The most [`SpikeLog::approximate_bytes`] can be with a site table of
    /// at most `max_sites` stacks: the detector's window at its longest,
    /// a mark per site and [`MAX_SPIKES`] records of [`MAX_RAW_SITES`]
    /// stacks of the deepest capture (twice each, for amortised growth).
    pub fn max_bytes(max_sites: usize) -> usize {
        let detector = core::mem::size_of::<Detector>()
            + 2 * MAX_BASELINE_INTERVALS * core::mem::size_of::<Interval>();
        let marks = 2 * (max_sites + 1) * core::mem::size_of::<AllocTotals>();
        let record = core::mem::size_of::<SpikeRecord>()
            + 2 * MAX_RAW_SITES
                * (core::mem::size_of::<RawDelta>()
                    + allocmeter::stack::MAX_DEPTH * core::mem::size_of::<usize>());
        detector + marks + 2 * MAX_SPIKES * record
    }

    /// Bytes held: the detector's window, the marks and the records.
    pub fn approximate_bytes(&self) -> usize {
        let records: usize = self
            .records
            .iter()
            .map(|r| {
                core::mem::size_of::<SpikeRecord>()
                    + r.top.capacity() * core::mem::size_of::<RawDelta>()
                    + r.top
                        .iter()
                        .map(|t| t.stack.capacity() * core::mem::size_of::<usize>())
                        .sum::<usize>()
            })
            .sum();
        self.detector.approximate_bytes()
            + self.mark.capacity() * core::mem::size_of::<AllocTotals>()
            + self.records.capacity() * core::mem::size_of::<SpikeRecord>()
            + records
    }
}

/// Symbolizes and merges one record's raw stacks into its report.
pub(crate) fn report(record: &SpikeRecord, symbolizer: &mut Symbolizer) -> SpikeReport {
    let raw: Vec<RawSite> = record
        .top
        .iter()
        .map(|t| RawSite {
            stack: t.stack.clone(),
            values: SiteValues {
                alloc_objects: t.totals.objects,
                alloc_bytes: t.totals.bytes,
                ..SiteValues::default()
            },
            samples: t.totals.samples,
        })
        .collect();
    let merged = sites::merge_sites(&raw, symbolizer);
    let top = sites::top(merged, MAX_TOP_SITES, SortBy::AllocSpace);
    let top_sites = sites::report(&top, symbolizer)
        .into_iter()
        .map(|s| SpikeSite {
            function: s.function,
            file: s.file,
            line: s.line,
            alloc_space: s.alloc_space,
            alloc_objects: s.alloc_objects,
            samples: s.samples,
            stack: s.stack,
        })
        .collect();
    let spike = &record.spike;
    SpikeReport {
        id: record.id,
        active: record.active,
        start_unix_ms: spike.start.unix_ms,
        end_unix_ms: (!record.active).then_some(spike.last.unix_ms),
        baseline_bytes_per_sec: spike.baseline,
        peak_bytes_per_sec: spike.peak,
        alloc_bytes: spike
            .last
            .alloc_bytes
            .saturating_sub(spike.start.alloc_bytes),
        allocs: spike.last.allocs.saturating_sub(spike.start.allocs),
        top_sites,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: f64 = (1 << 20) as f64;

    fn config() -> SpikeConfig {
        SpikeConfig {
            k: 4.0,
            min_rate: 1 << 20,
            baseline: Duration::from_secs(10),
        }
    }

    /// Feeds one point per second with the given rates (bytes per second,
    /// one per interval); returns the steps, one per rate.
    struct Feed {
        detector: Detector,
        second: u64,
        bytes: u64,
    }

    impl Feed {
        fn new(config: SpikeConfig) -> Self {
            let mut detector = Detector::new(config);
            assert_eq!(detector.step(point(0, 0)), Step::NoInterval);
            Feed {
                detector,
                second: 0,
                bytes: 0,
            }
        }

        fn run(&mut self, rates: impl IntoIterator<Item = f64>) -> Vec<Step> {
            rates
                .into_iter()
                .map(|r| {
                    self.second += 1;
                    self.bytes += r as u64;
                    self.detector.step(point(self.second, self.bytes))
                })
                .collect()
        }
    }

    fn point(second: u64, bytes: u64) -> Point {
        Point {
            at: Duration::from_secs(second),
            unix_ms: 1_000_000 + second * 1000,
            alloc_bytes: bytes,
            allocs: bytes / 100,
        }
    }

    fn fired(steps: &[Step]) -> Vec<usize> {
        steps
            .iter()
            .enumerate()
            .filter(|(_, s)| matches!(s, Step::Started(_)))
            .map(|(i, _)| i)
            .collect()
    }

    #[test]
    fn steady_load_never_fires() {
        let mut feed = Feed::new(config());
        // 5 MiB/s with ±30 % wobble, for ten minutes.
        let steps =
            feed.run((0..600).map(|i| 5.0 * MIB * (1.0 + 0.3 * ((i % 7) as f64 - 3.0) / 3.0)));
        assert!(steps.iter().all(|s| *s == Step::Quiet), "{steps:?}");
        let baseline = feed.detector.baseline();
        assert!((baseline / (5.0 * MIB) - 1.0).abs() < 0.1, "{baseline}");
    }

    #[test]
    fn a_tenfold_step_fires_at_its_first_interval_and_ends_when_it_falls_back() {
        let mut feed = Feed::new(config());
        let quiet = feed.run(std::iter::repeat_n(2.0 * MIB, 20));
        assert!(quiet.iter().all(|s| *s == Step::Quiet));
        let spike = feed.run(std::iter::repeat_n(20.0 * MIB, 5));
        let after = feed.run(std::iter::repeat_n(2.0 * MIB, 5));
        let Step::Started(started) = spike[0] else {
            panic!("the first interval at 10x starts a spike: {spike:?}");
        };
        assert_eq!(started.baseline, 2.0 * MIB);
        assert_eq!(
            started.start.at,
            Duration::from_secs(20),
            "the tick before it"
        );
        assert!(spike[1..].iter().all(|s| matches!(s, Step::Continues(_))));
        let Step::Ended(ended) = after[0] else {
            panic!("the first interval back at 1x ends it: {after:?}");
        };
        assert_eq!(ended.start, started.start);
        assert_eq!(ended.last.at, Duration::from_secs(25), "its last interval");
        assert_eq!(
            ended.last.alloc_bytes - ended.start.alloc_bytes,
            (5.0 * 20.0 * MIB) as u64,
            "exact bytes of its five intervals"
        );
        assert_eq!(ended.peak, 20.0 * MIB);
        assert!(after[1..].iter().all(|s| *s == Step::Quiet), "{after:?}");
        assert!(!feed.detector.active());
    }

    #[test]
    fn a_slow_ramp_never_fires() {
        let mut feed = Feed::new(config());
        let mut steps = feed.run(std::iter::repeat_n(2.0 * MIB, 10));
        // From 2 MiB/s to 2 GiB/s at 5 % per second: the baseline follows.
        steps.extend(feed.run((0..142).map(|i| 2.0 * MIB * 1.05f64.powi(i))));
        assert_eq!(fired(&steps), Vec::<usize>::new());
        assert!(feed.detector.current() > 1000.0 * MIB);
    }

    #[test]
    fn a_jump_below_the_floor_never_fires() {
        let mut feed = Feed::new(config());
        feed.run(std::iter::repeat_n(10_000.0, 20));
        // 50x the baseline, but 500 kB/s is under the 1 MiB/s floor.
        let steps = feed.run(std::iter::repeat_n(500_000.0, 5));
        assert!(steps.iter().all(|s| *s == Step::Quiet), "{steps:?}");
        // Over the floor it fires.
        let steps = feed.run([2.0 * MIB]);
        assert!(matches!(steps[0], Step::Started(_)), "{steps:?}");
    }

    #[test]
    fn nothing_fires_before_the_baseline_has_a_few_intervals() {
        let mut feed = Feed::new(config());
        let steps = feed.run([1.0, 1.0, 100.0 * MIB]);
        assert_eq!(fired(&steps), Vec::<usize>::new());
        // Once the burst has left the 10 s window, the same burst fires.
        let steps = feed.run(std::iter::repeat_n(1.0, 12).chain([100.0 * MIB]));
        assert_eq!(fired(&steps), vec![12]);
    }

    #[test]
    fn the_baseline_is_frozen_during_a_spike() {
        let mut feed = Feed::new(config());
        feed.run(std::iter::repeat_n(2.0 * MIB, 10));
        // A spike that sags to 5x: still above 4x the frozen baseline,
        // though a baseline that took in the spike would have ended it.
        let steps = feed.run([40.0 * MIB, 40.0 * MIB, 10.0 * MIB, 10.0 * MIB]);
        assert!(matches!(steps[0], Step::Started(_)));
        assert!(
            steps[1..].iter().all(|s| matches!(s, Step::Continues(_))),
            "{steps:?}"
        );
        assert_eq!(feed.detector.baseline(), 2.0 * MIB);
        // Back at 7 MiB/s (3.5x): ended. The window (the last 10 s) now
        // holds the quiet intervals ending at seconds 6 to 10 and this one,
        // not the spike's.
        let steps = feed.run([7.0 * MIB]);
        assert!(matches!(steps[0], Step::Ended(_)));
        let expected = (2.0 * 5.0 + 7.0) * MIB / 6.0;
        assert!((feed.detector.baseline() - expected).abs() < 1.0);
    }

    #[test]
    fn a_spike_longer_than_the_window_becomes_the_baseline() {
        let mut feed = Feed::new(config());
        feed.run(std::iter::repeat_n(2.0 * MIB, 10));
        let steps = feed.run(std::iter::repeat_n(40.0 * MIB, 30));
        assert!(matches!(steps[0], Step::Started(_)));
        let ended = steps.iter().position(|s| matches!(s, Step::Ended(_)));
        assert_eq!(
            ended,
            Some(10),
            "ended once it lasted the window: {steps:?}"
        );
        assert!(steps[11..].iter().all(|s| *s == Step::Quiet), "{steps:?}");
        assert_eq!(feed.detector.baseline(), 40.0 * MIB);
    }

    #[test]
    fn the_window_is_bounded() {
        let mut detector = Detector::new(SpikeConfig {
            baseline: Duration::from_secs(1_000_000),
            ..config()
        });
        for i in 0..(2 * MAX_BASELINE_INTERVALS as u64) {
            detector.step(point(i, i * 100));
        }
        assert_eq!(detector.window.len(), MAX_BASELINE_INTERVALS);
    }

    fn table_with(samples: &[(u64, u64, &[usize])]) -> SiteTable {
        let mut t = SiteTable::new(100);
        for &(id, size, stack) in samples {
            t.add_for_test(id, size, stack);
        }
        t
    }

    #[test]
    fn the_log_ranks_sites_by_what_they_allocated_during_the_spike() {
        let mut log = SpikeLog::new(config());
        let busy_before: &[usize] = &[0x100];
        let busy_during: &[usize] = &[0x200];
        // Before: site A allocated a lot.
        let mut table = table_with(&[(1, 50_000_000, busy_before)]);
        let mut bytes = 0u64;
        for s in 0..=10 {
            bytes += (2.0 * MIB) as u64;
            assert!(!log.observe(point(s, bytes), &table));
        }
        // During: B allocates 3 MB, A 1 MB.
        table.add_for_test(2, 3_000_000, busy_during);
        table.add_for_test(3, 1_000_000, busy_before);
        bytes += (40.0 * MIB) as u64;
        assert!(log.observe(point(11, bytes), &table));
        table.add_for_test(4, 500_000, busy_during);
        bytes += (40.0 * MIB) as u64;
        assert!(log.observe(point(12, bytes), &table));
        assert!(log.status().active);
        // After: A allocates again, which must not count.
        table.add_for_test(5, 9_000_000, busy_before);
        bytes += (2.0 * MIB) as u64;
        assert!(!log.observe(point(13, bytes), &table));
        let records = log.records();
        assert_eq!(records.len(), 1);
        let r = &records[0];
        assert!(!r.active);
        assert_eq!(r.top.len(), 2);
        assert_eq!(r.top[0].stack, busy_during);
        assert_eq!(r.top[0].totals.bytes, 3_500_000.0);
        assert_eq!(r.top[0].totals.samples, 2);
        assert_eq!(r.top[1].stack, busy_before);
        assert_eq!(r.top[1].totals.bytes, 1_000_000.0);
        let report = report(r, &mut Symbolizer::new(100));
        assert_eq!(report.id, 1);
        assert_eq!(report.alloc_bytes, (80.0 * MIB) as u64);
        assert_eq!(report.start_unix_ms, point(10, 0).unix_ms);
        assert_eq!(report.end_unix_ms, Some(point(12, 0).unix_ms));
        assert_eq!(report.top_sites.len(), 2);
        assert_eq!(report.top_sites[0].alloc_space, 3_500_000.0);
        assert!(log.approximate_bytes() > 0);
    }

    #[test]
    fn the_log_keeps_the_newest_spikes() {
        let mut log = SpikeLog::new(SpikeConfig {
            k: 2.0,
            min_rate: 0,
            ..config()
        });
        let table = SiteTable::new(10);
        let mut bytes = 0u64;
        let mut second = 0;
        for _ in 0..(MAX_SPIKES + 8) {
            for rate in [1000, 1000, 1000, 1000, 100_000] {
                second += 1;
                bytes += rate;
                log.observe(point(second, bytes), &table);
            }
        }
        let records = log.records();
        assert_eq!(records.len(), MAX_SPIKES);
        assert_eq!(records.last().unwrap().id, MAX_SPIKES as u64 + 8);
        assert_eq!(records[0].id, 9);
    }
}
