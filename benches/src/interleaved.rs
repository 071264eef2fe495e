//! The interleaved measurements' common parts: their rounds (a warm-up
//! round, then rounds running every variant once in an order rotated each
//! round), their threads, and their figures and report (each variant's
//! slices against its base's slices of the same round).
//!
//! What a slice runs, and the barriers its threads share, are the caller's.

use std::thread;

use crate::extras::write_extra;
use crate::loops::Workload;
use crate::{count_from_env, selected};

/// Rounds of an interleaved measurement: `test_rounds` under criterion's
/// `--test` (a smoke run), else the count in `var`, or `default`.
pub fn interleaved_rounds(var: &str, default: usize, test_rounds: usize) -> usize {
    if std::env::args().any(|a| a == "--test") {
        return test_rounds;
    }
    count_from_env(var, default)
}

/// The pair workloads of the interleaved measurements of `bench` (`peers`,
/// `floor`): the 64 B pair and the mixed 16 B to 64 KiB pair, each unless a
/// criterion filter on the command line leaves out its groups
/// `<bench>_<workload>_interleaved/<threads>`.
pub fn interleaved_pair_workloads(bench: &str) -> Vec<Workload> {
    [Workload::Fixed64, Workload::Mixed64KiB]
        .into_iter()
        .filter(|w| selected(&format!("{bench}_{}_interleaved", w.name())))
        .collect()
}

/// Runs `measure` on `threads` new threads at once and collects what each
/// returns (its times by variant and round) into the measurement's
/// [`SliceTimes`].
pub fn on_threads(threads: usize, measure: impl Fn() -> Vec<Vec<f64>> + Sync) -> SliceTimes {
    thread::scope(|s| {
        let handles: Vec<_> = (0..threads).map(|_| s.spawn(&measure)).collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("interleaved benchmark thread panicked"))
            .collect()
    })
}

/// One thread's part of an interleaved measurement of `n` variants: one
/// warm-up round, then `rounds` counted ones, each running every variant once
/// in an order rotated by one each round. `slice(v)` runs variant `v`'s slice
/// (waiting at whatever barriers the caller's threads share) and returns its
/// ns per op. Returns the thread's times by variant and round.
pub fn rotated_rounds(
    n: usize,
    rounds: usize,
    mut slice: impl FnMut(usize) -> f64,
) -> Vec<Vec<f64>> {
    let mut t = vec![Vec::with_capacity(rounds); n];
    for round in 0..=rounds {
        for i in 0..n {
            let v = (i + round) % n;
            let ns = slice(v);
            if round > 0 {
                t[v].push(ns);
            }
        }
    }
    t
}

/// Reports every variant of an interleaved measurement against variant 0
/// (see [`report_interleaved`]), with its `rounds`, its `slice_pairs` and
/// its place in `names` as the report's order.
pub fn report_rotated<'a>(
    group: &str,
    names: impl IntoIterator<Item = &'a str>,
    times: &SliceTimes,
    rounds: usize,
    slice_pairs: impl Fn(usize) -> u64,
) {
    for (v, name) in names.into_iter().enumerate() {
        let mut fields = interleaved_figures(times, v, 0);
        fields.extend([
            ("rounds", rounds as f64),
            ("slice_pairs", slice_pairs(v) as f64),
            ("order", v as f64),
        ]);
        report_interleaved(group, name, &fields);
    }
}

/// Prints variant `name`'s figures of an interleaved measurement (`fields`,
/// from [`interleaved_figures`] and the caller's own) and writes them as the
/// extras of `group`.
pub fn report_interleaved(group: &str, name: &str, fields: &[(&str, f64)]) {
    let get = |key| field(fields, key);
    eprintln!(
        "  {group}/{name}: median {:.3} ns, added {:+.3} ns, ratio {:.4} (quartiles {:.4} to {:.4})",
        get("median_ns"),
        get("added_ns"),
        get("ratio"),
        get("ratio_p25"),
        get("ratio_p75"),
    );
    write_extra(group, name, fields);
}

/// The times of an interleaved measurement, ns per op:
/// `times[thread][variant][round]`.
pub type SliceTimes = Vec<Vec<Vec<f64>>>;

/// The figures of variant `v` of an interleaved measurement, against variant
/// `base` (its inner allocator), as extras: the median and 10th percentile
/// of its slices over all threads and rounds (`median_ns`, `p10_ns`); the
/// median and quartiles over the threads' rounds of its slice's time divided
/// by `base`'s slice in the same round (`ratio`, `ratio_p25`, `ratio_p75`)
/// and minus it (`added_ns`, `added_p25`, `added_p75`). Pairing each slice
/// with `base`'s slice of the same round, a fraction of a millisecond away,
/// cancels what the host's speed does over longer spans.
pub fn interleaved_figures(times: &SliceTimes, v: usize, base: usize) -> Vec<(&'static str, f64)> {
    // The `q` quantile of `sorted`, which is sorted (NaN if empty).
    let quantile = |sorted: &[f64], q: f64| {
        if sorted.is_empty() {
            return f64::NAN;
        }
        sorted[((sorted.len() - 1) as f64 * q).round() as usize]
    };
    let per_round = |f: fn(f64, f64) -> f64| {
        let mut all: Vec<f64> = times
            .iter()
            .flat_map(|t| t[v].iter().zip(&t[base]).map(move |(&x, &b)| f(x, b)))
            .collect();
        all.sort_by(f64::total_cmp);
        all
    };
    let mut all: Vec<f64> = times.iter().flat_map(|t| t[v].iter().copied()).collect();
    all.sort_by(f64::total_cmp);
    let ratios = per_round(|x, b| x / b);
    let added = per_round(|x, b| x - b);
    vec![
        ("median_ns", quantile(&all, 0.5)),
        ("p10_ns", quantile(&all, 0.1)),
        ("ratio", quantile(&ratios, 0.5)),
        ("ratio_p25", quantile(&ratios, 0.25)),
        ("ratio_p75", quantile(&ratios, 0.75)),
        ("added_ns", quantile(&added, 0.5)),
        ("added_p25", quantile(&added, 0.25)),
        ("added_p75", quantile(&added, 0.75)),
    ]
}

/// The value of `key` in `fields` (NaN if absent).
pub fn field(fields: &[(&str, f64)], key: &str) -> f64 {
    fields
        .iter()
        .find(|(k, _)| *k == key)
        .map_or(f64::NAN, |f| f.1)
}
