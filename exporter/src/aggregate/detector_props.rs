//! Property tests of the spike detector's two guarantees (see
//! `detector.rs`): steps, climbs and bursts at arbitrary phases against the
//! tick, quiet stretches of any length from three intervals up, noise on the
//! quiet rate, checked both ways.
//!
//! A case is a rate over continuous time, sampled every 1/64 s: the ticks
//! fall every second, so a change at a time that is not a whole second falls
//! inside an interval (the partial interval). Noise multiplies the rate by a
//! factor drawn per half second. Each property runs `PROPTEST_CASES` cases
//! (proptest's default, 256, unless the variable says otherwise; `.ci/fuzz.sh`
//! runs more).

use std::time::Duration;

use proptest::prelude::*;

use super::detector::{Active, Detector, Point, SpikeConfig, Step};

/// Samples of the rate per second (the ticks fall every second).
const PER_SEC: usize = 64;
/// Noise draws per second.
const NOISE_PER_SEC: usize = 2;
const MIB: f64 = (1 << 20) as f64;
const K: f64 = 4.0;

fn config(window_secs: u64) -> SpikeConfig {
    SpikeConfig {
        k: K,
        min_rate: 1 << 20,
        baseline: Duration::from_secs(window_secs),
    }
}

/// Feeds one point per second, from 0, with the bytes the rate samples add
/// up to; returns the step of each interval (`steps[i]` for the interval
/// from second `i` to `i + 1`).
fn run(config: SpikeConfig, rates: &[f64]) -> Vec<Step> {
    let mut detector = Detector::new(config);
    let point = |second: usize, bytes: f64| Point {
        at: Duration::from_secs(second as u64),
        unix_ms: 1_000_000 + second as u64 * 1000,
        alloc_bytes: bytes as u64,
        allocs: (bytes / 100.0) as u64,
    };
    assert_eq!(detector.step(point(0, 0.0)), Step::NoInterval);
    let mut bytes = 0.0;
    rates
        .chunks(PER_SEC)
        .enumerate()
        .map(|(i, second)| {
            bytes += second.iter().sum::<f64>() / PER_SEC as f64;
            detector.step(point(i + 1, bytes))
        })
        .collect()
}

/// The intervals that started a spike, with the spike.
fn started(steps: &[Step]) -> Vec<(usize, Active)> {
    steps
        .iter()
        .enumerate()
        .filter_map(|(i, s)| match s {
            Step::Started(a) => Some((i, *a)),
            _ => None,
        })
        .collect()
}

/// A noise factor in `[1, 1 + eps]` per half second, from raw draws.
fn noise(draws: &[u16], eps: f64, sample: usize) -> f64 {
    let draw = draws[(sample * NOISE_PER_SEC / PER_SEC) % draws.len()];
    1.0 + eps * f64::from(draw) / f64::from(u16::MAX)
}

/// The interval that a change at sample `at` falls in, and the first whole
/// interval after it.
fn intervals_of(at: usize) -> (usize, usize) {
    (at / PER_SEC, at.div_ceil(PER_SEC))
}

/// Whole seconds of samples, padding with `rate` to the next tick.
fn pad(rates: &mut Vec<f64>, rate: f64) {
    while !rates.len().is_multiple_of(PER_SEC) {
        rates.push(rate);
    }
}

/// A step up that a spike must report: a quiet stretch, then a rise to
/// `factor` x the quiet level for `len` samples from sample `at`.
#[derive(Clone, Debug)]
struct StepCase {
    window_secs: u64,
    quiet_secs: usize,
    phase: usize,
    len: usize,
    after_secs: usize,
    level: f64,
    eps: f64,
    factor: f64,
    draws: Vec<u16>,
}

fn step_case() -> impl Strategy<Value = StepCase> {
    (
        prop_oneof![Just(3u64), Just(10), Just(60)],
        3usize..120,
        0..PER_SEC,
        (2 * PER_SEC)..(40 * PER_SEC),
        1usize..10,
        21.0f64..30.0,
        0.0f64..1.0,
        0.001f64..10.0,
        proptest::collection::vec(any::<u16>(), 1..400),
    )
        .prop_map(
            |(window_secs, quiet_secs, phase, len, after_secs, log2, eps, margin, draws)| {
                StepCase {
                    window_secs,
                    quiet_secs,
                    phase,
                    len,
                    after_secs,
                    level: log2.exp2(),
                    eps,
                    // Over k times the quiet level at its noisiest.
                    factor: K * (1.0 + eps) * (1.0 + margin),
                    draws,
                }
            },
        )
}

proptest! {
    /// No miss: a step to more than k x the quiet level (at its noisiest),
    /// lasting two intervals or more, after three quiet intervals or more,
    /// wherever it falls against the tick, is reported as one spike, no
    /// later than its first whole interval and no earlier than the interval
    /// it begins in.
    #[test]
    fn every_step_over_the_bar_is_reported_once_at_its_first_whole_interval(c in step_case()) {
        let at = c.quiet_secs * PER_SEC + c.phase;
        let end = at + c.len;
        let total = end + c.after_secs * PER_SEC;
        let mut rates: Vec<f64> = (0..total)
            .map(|s| {
                let level = if (at..end).contains(&s) { c.factor * c.level } else { c.level };
                level * noise(&c.draws, c.eps, s)
            })
            .collect();
        pad(&mut rates, c.level);
        let steps = run(config(c.window_secs), &rates);
        let spikes = started(&steps);
        let (first, whole) = intervals_of(at);
        prop_assert_eq!(spikes.len(), 1, "{:?}", steps);
        let (i, spike) = spikes[0];
        prop_assert!(first <= i && i <= whole, "spike at {} for a step in {}..={}", i, first, whole);
        prop_assert!(
            c.level <= spike.baseline && spike.baseline <= c.level * (1.0 + c.eps),
            "baseline {} for a quiet level {} (+{} noise)", spike.baseline, c.level, c.eps
        );
    }

    /// No miss, for a rise that climbs: a linear climb over up to 20 s to
    /// more than k x the quiet level, then at least two intervals there,
    /// after a quiet stretch longer than the climb (so that the window holds
    /// more quiet intervals than climbing ones), is reported no later than
    /// its first whole interval at the top, and not before it begins.
    #[test]
    fn a_climb_shorter_than_the_quiet_before_it_is_reported(
        c in step_case(),
        climb in 1usize..(20 * PER_SEC),
        extra_quiet in 0usize..60,
    ) {
        let climb_secs = climb.div_ceil(PER_SEC);
        let quiet_secs = climb_secs + 2 + extra_quiet;
        let at = quiet_secs * PER_SEC + c.phase;
        let top = at + climb;
        let end = top + c.len;
        let mut rates: Vec<f64> = (0..end + PER_SEC)
            .map(|s| {
                let level = if s < at || s >= end {
                    c.level
                } else if s < top {
                    c.level * (1.0 + (c.factor - 1.0) * (s - at) as f64 / climb as f64)
                } else {
                    c.factor * c.level
                };
                level * noise(&c.draws, c.eps, s)
            })
            .collect();
        pad(&mut rates, c.level);
        let steps = run(config(60), &rates);
        let spikes = started(&steps);
        let (first, _) = intervals_of(at);
        let (_, whole) = intervals_of(top);
        prop_assert!(!spikes.is_empty(), "{:?}", steps);
        let (i, _) = spikes[0];
        prop_assert!(first <= i && i <= whole, "spike at {} for a climb from {} to {}", i, first, whole);
    }

    /// Bursts shorter than an interval and a half, of any height, separated
    /// by six seconds or more of quiet, and a start-up burst in the first
    /// interval, do not drag the baseline: a step that follows is still
    /// reported at its first whole interval, against the quiet level.
    #[test]
    fn bursts_do_not_drag_the_baseline(
        c in step_case(),
        startup in proptest::option::of(1.0f64..1000.0),
        bursts in proptest::collection::vec(
            ((6 * PER_SEC)..(20 * PER_SEC), 1usize..(3 * PER_SEC / 2), 1.0f64..100.0),
            1..6,
        ),
    ) {
        let level = |s: usize| c.level * noise(&c.draws, c.eps, s);
        let mut rates: Vec<f64> = (0..c.quiet_secs * PER_SEC + c.phase).map(level).collect();
        if let Some(height) = startup {
            for r in &mut rates[..PER_SEC / 2] {
                *r *= height;
            }
        }
        for &(gap, len, height) in &bursts {
            let from = rates.len() + gap;
            while rates.len() < from {
                rates.push(level(rates.len()));
            }
            for _ in 0..len {
                rates.push(height * level(rates.len()));
            }
        }
        let at = rates.len() + 6 * PER_SEC + c.phase;
        while rates.len() < at {
            rates.push(level(rates.len()));
        }
        for _ in 0..c.len {
            rates.push(c.factor * level(rates.len()));
        }
        pad(&mut rates, c.level);
        let steps = run(config(60), &rates);
        let (first, whole) = intervals_of(at);
        let step = started(&steps).into_iter().find(|(i, _)| *i >= first);
        let Some((i, spike)) = step else {
            return Err(TestCaseError::fail(format!("the step was missed: {steps:?}")));
        };
        prop_assert!(i <= whole, "spike at {} for a step in {}..={}", i, first, whole);
        prop_assert!(
            c.level <= spike.baseline && spike.baseline <= c.level * (1.0 + c.eps),
            "baseline {} for a quiet level {} (+{} noise)", spike.baseline, c.level, c.eps
        );
    }

    /// No miss, as docs/spikes.md states it: a step to more than k x a rate
    /// that at least three of the window's intervals, and at least two
    /// thirds of them, ran at or under, lasting two intervals or more, is
    /// reported at its first whole interval or earlier. The other third ran at any rate
    /// under the bar, anywhere in the window, and earlier intervals too.
    #[test]
    fn a_step_over_a_window_two_thirds_quiet_is_reported(
        c in step_case(),
        heights in proptest::collection::vec(proptest::option::weighted(0.25, 0.0f64..1.0), 3..120),
    ) {
        // The other third: up to just under the bar, noise included.
        let top = K * 0.99 / (1.0 + c.eps);
        let mut heights: Vec<Option<f64>> =
            heights.iter().map(|h| h.map(|u| 1.0 + u * (top - 1.0))).collect();
        // The window when the step begins: the intervals that ended within
        // the last `window_secs` of the end of the one it begins in, the
        // latest three at least.
        let n = heights.len();
        let held = n.min((c.window_secs as usize - 1).max(3));
        // Quieten the window's latest raised intervals until it is two
        // thirds quiet, three intervals at least.
        let ok = |h: &[Option<f64>]| {
            let above = h.iter().filter(|h| h.is_some()).count();
            3 * above <= h.len() && h.len() - above >= 3
        };
        let mut i = n;
        while !ok(&heights[n - held..]) {
            i -= 1;
            heights[i] = None;
        }
        let mut rates: Vec<f64> = heights
            .iter()
            .enumerate()
            .flat_map(|(i, h)| {
                let factor = h.unwrap_or(1.0);
                (i * PER_SEC..(i + 1) * PER_SEC).map(move |s| (s, factor))
            })
            .map(|(s, factor)| factor * c.level * noise(&c.draws, c.eps, s))
            .collect();
        let at = rates.len() + c.phase;
        while rates.len() < at {
            rates.push(c.level * noise(&c.draws, c.eps, rates.len()));
        }
        for _ in 0..c.len {
            rates.push(c.factor * c.level * noise(&c.draws, c.eps, rates.len()));
        }
        pad(&mut rates, c.level);
        let steps = run(config(c.window_secs), &rates);
        let spikes = started(&steps);
        let (first, whole) = intervals_of(at);
        prop_assert_eq!(spikes.len(), 1, "{:?}", steps);
        let (i, _) = spikes[0];
        prop_assert!(first <= i && i <= whole, "spike at {} for a step in {}..={}", i, first, whole);
    }

    /// No false alarm: rates that stay within a factor of k of every rate in
    /// the window (noise of up to k x, and ramps up or down slow enough that
    /// noise and ramp together stay within k x over a window) never fire,
    /// from the first interval on.
    #[test]
    fn rates_within_a_factor_of_k_never_fire(
        window_secs in prop_oneof![Just(3u64), Just(10), Just(60)],
        secs in 10usize..400,
        log2 in 21.0f64..30.0,
        noise_share in 0.0f64..1.0,
        rising in any::<bool>(),
        alternate in any::<bool>(),
        draws in proptest::collection::vec(any::<u16>(), 1..400),
    ) {
        // Noise and ramp share a budget just under k: the noise a factor of
        // up to `budget^share`, the ramp the rest over the longest span an
        // interval is compared across (the window, three intervals at
        // least, and the interval itself and one more for rounding).
        let budget = K * 0.999;
        let eps = budget.powf(noise_share) - 1.0;
        let span = window_secs.max(3) as f64 + 2.0;
        let per_sec = budget.powf(1.0 - noise_share).ln() / span;
        let growth = if rising { per_sec } else { -per_sec };
        let rates: Vec<f64> = (0..secs * PER_SEC)
            .map(|s| {
                let t = s as f64 / PER_SEC as f64;
                let n = if alternate {
                    if (s * NOISE_PER_SEC / PER_SEC).is_multiple_of(2) { 1.0 } else { 1.0 + eps }
                } else {
                    noise(&draws, eps, s)
                };
                log2.exp2() * (growth * t).exp() * n
            })
            .collect();
        let steps = run(config(window_secs), &rates);
        prop_assert_eq!(started(&steps), vec![], "{:?}", steps);
    }
}

#[test]
fn a_long_climb_becomes_the_baseline_and_is_not_a_spike() {
    // The other side of the climb's condition: climbing for longer than half
    // the window moves the median along, so a rise that takes minutes is a
    // trend, not a spike.
    let level = 4.0 * MIB;
    let mut rates = vec![level; 60 * PER_SEC];
    let climb = 600 * PER_SEC;
    rates.extend((0..climb).map(|s| level * (1.0 + 7.0 * s as f64 / climb as f64)));
    rates.extend(std::iter::repeat_n(8.0 * level, 30 * PER_SEC));
    let steps = run(config(60), &rates);
    assert_eq!(started(&steps), vec![], "{steps:?}");
}
