//! The spike detector: a small, pure state machine fed one [`Point`] (time
//! and the cumulative allocation counters) per aggregator tick.
//!
//! The rate of the latest interval is compared with the *baseline*: the
//! median rate of the intervals in the trailing `baseline` window that were
//! not part of a spike (the window always keeps the latest
//! [`MIN_BASELINE_INTERVALS`], however short it is). A spike starts when the
//! rate is above `k` × baseline and above a floor (`min_rate`); it ends at
//! the first interval whose rate falls back to `k` × baseline or below. The
//! baseline is frozen while a spike lasts, so a long spike does not raise its
//! own bar. A spike that lasts longer than the baseline window ends there:
//! the new level is then the normal one, and a new baseline is learnt from
//! it (the window starts again).
//!
//! Why a median: an interval that a step falls inside runs at a rate between
//! the old level and the new, under the bar; a mean would take it in and
//! lift the bar over the step (a 5× step after 8 quiet intervals was missed
//! that way, its partial interval at 3.8×). A median moves only when most of
//! the window has moved: partial intervals, single outliers and short bursts
//! below the bar cannot drag it, and a level that holds for more than half
//! the window becomes the baseline. Two guarantees follow, and are tested as
//! properties (`detector_props.rs`):
//!
//! - *No miss*: an interval above the floor and above `k` times a rate that
//!   at least as many of the window's intervals stayed at or under as went
//!   over is a spike. So a rise to more than `k` × a rate that lasts two
//!   intervals (and so has a whole interval at the new level, wherever it
//!   falls against the tick) is reported by that interval if, before it, at
//!   least three of the window's intervals and two thirds of them ran at or
//!   under that rate: the interval the rise begins in, and one quiet
//!   interval leaving the window meanwhile, cannot turn that majority. A
//!   climb over several intervals is caught the same way while the window
//!   holds at least as many intervals from before it as from its climb.
//! - *No false alarm*: an interval at most `k` times every rate in the window
//!   is never a spike; rates that stay within a factor of `k` of one another
//!   never fire.
//!
//! Owns: the detector's settings and window. Touches nothing else: it sees
//! only the points it is given (the spike log in `spikes.rs` feeds it).

use std::collections::VecDeque;
use std::time::Duration;

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

/// One interval of the baseline window.
#[derive(Clone, Copy, Debug)]
struct Interval {
    end: Duration,
    /// Bytes per second.
    rate: f64,
}

/// The spike detector. Pure: it sees only the points it is given.
#[derive(Debug)]
pub(crate) struct Detector {
    config: SpikeConfig,
    previous: Option<Point>,
    window: VecDeque<Interval>,
    /// The median of the window's rates, kept up to date as it changes.
    median: f64,
    /// Room to find the median in, reused from tick to tick.
    scratch: Vec<f64>,
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
            median: 0.0,
            scratch: Vec::new(),
            active: None,
            current: 0.0,
        }
    }

    pub fn config(&self) -> SpikeConfig {
        self.config
    }

    /// The median rate of the baseline window (frozen during a spike),
    /// bytes per second; 0 before any interval.
    pub fn baseline(&self) -> f64 {
        match &self.active {
            Some(a) => a.baseline,
            None => self.median,
        }
    }

    /// The rate of the latest interval, bytes per second.
    pub fn current(&self) -> f64 {
        self.current
    }

    /// Whether a spike is in progress.
    pub fn active(&self) -> bool {
        self.active.is_some()
    }

    /// The most [`Detector::approximate_bytes`] can be: the window and the
    /// scratch room at their longest (twice, for amortised growth).
    pub fn max_bytes() -> usize {
        core::mem::size_of::<Self>()
            + 2 * MAX_BASELINE_INTERVALS
                * (core::mem::size_of::<Interval>() + core::mem::size_of::<f64>())
    }

    /// Bytes the detector holds, roughly.
    pub fn approximate_bytes(&self) -> usize {
        core::mem::size_of::<Self>()
            + self.window.capacity() * core::mem::size_of::<Interval>()
            + self.scratch.capacity() * core::mem::size_of::<f64>()
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
            rate,
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
            if too_long {
                // The level that outlasted the window is the normal one now:
                // the baseline is learnt again from it, not from the
                // intervals before the spike.
                self.window.clear();
            }
            self.push(interval);
            return Step::Ended(active);
        }
        self.evict(point.at);
        self.update_median();
        let baseline = self.median;
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

    /// Drops intervals that ended before the window that ends at `now`,
    /// keeping the latest [`MIN_BASELINE_INTERVALS`].
    fn evict(&mut self, now: Duration) {
        while self.window.len() > MIN_BASELINE_INTERVALS {
            match self.window.front() {
                Some(first) if first.end + self.config.baseline <= now => {
                    self.window.pop_front();
                }
                _ => break,
            }
        }
    }

    fn push(&mut self, interval: Interval) {
        if self.window.len() == MAX_BASELINE_INTERVALS {
            self.window.pop_front();
        }
        self.window.push_back(interval);
        self.evict(interval.end);
        self.update_median();
    }

    /// Sets `median` to the window's lower median: the rate that at least as
    /// many intervals are at or under as are over (the middle one of an odd
    /// count, the lower middle one of an even count). Linear time.
    fn update_median(&mut self) {
        self.scratch.clear();
        // As much room as the window has (a no-op once there): the scratch
        // then grows only when the window does, by doubling, and not by one
        // each time the window holds one more interval than ever before.
        self.scratch.reserve_exact(self.window.capacity());
        self.scratch.extend(self.window.iter().map(|i| i.rate));
        if self.scratch.is_empty() {
            self.median = 0.0;
            return;
        }
        let middle = (self.scratch.len() - 1) / 2;
        let (_, median, _) = self.scratch.select_nth_unstable_by(middle, f64::total_cmp);
        self.median = *median;
    }
}

#[cfg(test)]
pub(crate) mod test_points {
    //! Points and settings shared by the detector's and the spike log's tests.

    use super::*;

    pub(crate) const MIB: f64 = (1 << 20) as f64;

    pub(crate) fn config() -> SpikeConfig {
        SpikeConfig {
            k: 4.0,
            min_rate: 1 << 20,
            baseline: Duration::from_secs(10),
        }
    }

    pub(crate) fn point(second: u64, bytes: u64) -> Point {
        Point {
            at: Duration::from_secs(second),
            unix_ms: 1_000_000 + second * 1000,
            alloc_bytes: bytes,
            allocs: bytes / 100,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::test_points::*;
    use super::*;

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
        // The window now holds that burst, but a median of three ignores it:
        // the same burst fires at once.
        assert_eq!(feed.detector.baseline(), 1.0);
        let steps = feed.run([100.0 * MIB]);
        assert_eq!(fired(&steps), vec![0]);
    }

    /// The first interval after the start holds the program's start-up,
    /// often a burst: it is part of the baseline like any other, and moves
    /// its median no more than any single interval does.
    #[test]
    fn a_start_up_burst_does_not_lift_the_baseline() {
        let mut feed = Feed::new(config());
        let steps = feed.run([400.0 * MIB, 20.0 * MIB, 20.0 * MIB]);
        assert_eq!(fired(&steps), Vec::<usize>::new());
        assert_eq!(feed.detector.baseline(), 20.0 * MIB);
        let steps = feed.run([100.0 * MIB, 100.0 * MIB]);
        assert_eq!(fired(&steps), vec![0]);
    }

    /// A service at 120 MB/s for 8 s, then 5x: the interval the switch
    /// falls in runs at 3.8x, under the bar. It must not lift the baseline
    /// over the step (a mean of the window did, to about 150 MB/s, and the
    /// step at 600 MB/s stayed under its bar of 615 MB/s).
    #[test]
    fn a_step_is_caught_at_its_first_whole_interval_after_a_partial_one() {
        let mb = 1e6;
        let mut feed = Feed::new(SpikeConfig {
            baseline: Duration::from_secs(60),
            ..config()
        });
        let quiet = feed.run(std::iter::repeat_n(120.0 * mb, 8));
        assert!(quiet.iter().all(|s| *s == Step::Quiet), "{quiet:?}");
        let steps = feed.run([453.0 * mb, 600.0 * mb, 604.0 * mb]);
        assert_eq!(steps[0], Step::Quiet, "the partial interval is under 4x");
        let Step::Started(spike) = steps[1] else {
            panic!("the first whole interval at 5x starts a spike: {steps:?}");
        };
        assert_eq!(spike.baseline, 120.0 * mb);
        assert!(matches!(steps[2], Step::Continues(_)), "{steps:?}");
    }

    /// One outlier above the bar is a spike of its own; outliers under it,
    /// however many, move the baseline only once they are most of the
    /// window.
    #[test]
    fn outliers_under_the_bar_move_the_baseline_only_as_a_majority() {
        let mut feed = Feed::new(config());
        feed.run(std::iter::repeat_n(2.0 * MIB, 5));
        // Four intervals at 3.5x among five quiet ones: the median stays.
        let steps = feed.run(std::iter::repeat_n(7.0 * MIB, 4));
        assert!(steps.iter().all(|s| *s == Step::Quiet), "{steps:?}");
        assert_eq!(feed.detector.baseline(), 2.0 * MIB);
        // A fifth: 5 of 10 (an even count, the lower middle): still quiet.
        feed.run([7.0 * MIB]);
        assert_eq!(feed.detector.baseline(), 2.0 * MIB);
        // A sixth, and 3.5x is the normal now; 8x the old level is not a
        // spike any more.
        feed.run([7.0 * MIB]);
        assert_eq!(feed.detector.baseline(), 7.0 * MIB);
        let steps = feed.run([16.0 * MIB]);
        assert_eq!(steps[0], Step::Quiet, "{steps:?}");
    }

    #[test]
    fn a_window_shorter_than_three_intervals_keeps_three() {
        let mut feed = Feed::new(SpikeConfig {
            baseline: Duration::from_secs(1),
            ..config()
        });
        feed.run(std::iter::repeat_n(2.0 * MIB, 10));
        assert_eq!(feed.detector.window.len(), MIN_BASELINE_INTERVALS);
        let steps = feed.run([10.0 * MIB]);
        assert!(matches!(steps[0], Step::Started(_)), "{steps:?}");
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
        // not the spike's: its median is still 2 MiB/s.
        let steps = feed.run([7.0 * MIB]);
        assert!(matches!(steps[0], Step::Ended(_)));
        assert_eq!(feed.detector.window.len(), 6);
        assert_eq!(feed.detector.baseline(), 2.0 * MIB);
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
        // The baseline was learnt again from the new level: the window holds
        // only intervals since the spike ended.
        assert_eq!(feed.detector.window.len(), 10);
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
}
