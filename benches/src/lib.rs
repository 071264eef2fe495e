//! Helpers shared by the benchmarks in `benches/`.
//!
//! Criterion records times only. The benchmarks also record a few counts per
//! benchmark (samples taken and dropped, stack frames captured, false
//! positives...) with [`write_extra`], next to criterion's own results, for
//! `benches/report.py` to print with the times.

use std::alloc::{GlobalAlloc, Layout, handle_alloc_error};
use std::fmt::Write as _;
use std::hint::black_box;
use std::path::PathBuf;
use std::sync::Barrier;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

/// Allocates `layout` with `a`; never returns null (aborts through
/// `handle_alloc_error` instead). The pointer goes through `black_box`, so a
/// benchmark's alloc+free pair cannot be elided.
#[inline(always)]
pub fn alloc<A: GlobalAlloc + ?Sized>(a: &A, layout: Layout) -> *mut u8 {
    assert!(layout.size() > 0, "benchmarks allocate non-empty blocks");
    // SAFETY: the layout has a non-zero size (checked above).
    let p = unsafe { a.alloc(layout) };
    if p.is_null() {
        handle_alloc_error(layout);
    }
    black_box(p)
}

/// Runs `run(warm_up)` then, once all threads are ready, `run(iters)` on each
/// of `threads` new threads, and returns the slowest thread's timed run: the
/// per-thread figure of a multi-threaded benchmark.
pub fn run_on_threads(
    threads: usize,
    warm_up: u64,
    iters: u64,
    run: impl Fn(u64) -> Duration + Sync,
) -> Duration {
    let barrier = Barrier::new(threads);
    thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    run(warm_up);
                    barrier.wait();
                    run(iters)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("benchmark thread panicked"))
            .max()
            .unwrap_or_default()
    })
}

/// Starts a thread that drains allocmeter's sample rings as the exporter's
/// aggregator does: every [`allocmeter::profile::drain_interval`], and when
/// woken by a thread whose ring is half full. It runs until the process
/// exits. Without it the rings
/// fill after a few hundred samples and later samples take the cheap "ring
/// full" path, hiding sampling's cost.
pub fn start_drainer() {
    let drainer = thread::Builder::new()
        .name("sample-drainer".into())
        .spawn(|| {
            loop {
                let _ = allocmeter::profile::drain(|_| {});
                thread::park_timeout(allocmeter::profile::drain_interval());
            }
        })
        .expect("cannot start the drainer thread");
    allocmeter::profile::register_drainer(drainer.thread().clone());
}

/// Runs `iters` alloc+free pairs of 64 bytes through `a` and returns how long
/// they took.
#[inline(never)]
pub fn fixed_64<A: GlobalAlloc>(a: &A, iters: u64) -> Duration {
    let layout = Layout::new::<[u64; 8]>();
    let start = Instant::now();
    for _ in 0..iters {
        // The size is opaque, as it is behind `__rust_alloc`, so that no
        // per-size work can be hoisted out of the loop.
        let layout = black_box(layout);
        let p = alloc(a, layout);
        // SAFETY: `p` was just allocated by `a` with `layout`.
        unsafe { a.dealloc(p, layout) };
    }
    start.elapsed()
}

pub mod workload;

/// The thread counts the multi-threaded benchmarks run, from the
/// comma-separated `ALLOCMETER_BENCH_THREADS` (default `1,2`; `run_all.py
/// --threads` sets it). Panics on a malformed list: a benchmark run with the
/// wrong thread counts would be worse than none.
pub fn thread_counts() -> Vec<usize> {
    let Ok(list) = std::env::var("ALLOCMETER_BENCH_THREADS") else {
        return vec![1, 2];
    };
    let counts: Vec<usize> =
        list.split(',')
            .map(|n| {
                n.trim().parse().ok().filter(|&n| n > 0).unwrap_or_else(|| {
                    panic!("ALLOCMETER_BENCH_THREADS: bad count {n:?} in {list:?}")
                })
            })
            .collect();
    assert!(!counts.is_empty(), "ALLOCMETER_BENCH_THREADS is empty");
    counts
}

/// How a thread count appears in benchmark names: `1thread`, `2threads`.
pub fn threads_name(threads: usize) -> String {
    let plural = if threads == 1 { "" } else { "s" };
    format!("{threads}thread{plural}")
}

/// Entries in the table of mixed sizes (a power of two, so indexing is a mask).
pub const TABLE_LEN: usize = 4096;

/// How many blocks the mixed workloads keep live: each block is freed this
/// many steps after it was allocated.
pub const RING: usize = 8;

/// Alignment of every block the benchmarks allocate (that of a `u64`).
pub const ALIGN: usize = 8;

/// Sizes from 16 B to `2^max_log2` B, log-uniform, from a fixed-seed
/// xorshift64, so that every run, benchmark and allocator sees the same
/// sequence.
pub fn log_uniform_sizes(max_log2: u32) -> [u32; TABLE_LEN] {
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut table = [0u32; TABLE_LEN];
    for entry in &mut table {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        // Uniform in [0, 1) from the top 53 bits.
        let u = (state >> 11) as f64 / (1u64 << 53) as f64;
        // 2^(4 + (max_log2 - 4) u): log2 uniform in [4, max_log2].
        let size = (4.0 + f64::from(max_log2 - 4) * u).exp2().round() as u32;
        *entry = size.clamp(16, 1 << max_log2);
    }
    table
}

/// Sizes from 16 B to 4 KiB, log-uniform (see [`log_uniform_sizes`]).
pub fn mixed_sizes() -> [u32; TABLE_LEN] {
    log_uniform_sizes(12)
}

/// Runs `iters` mixed alloc+free pairs through `a`: each step allocates the
/// next size from `sizes` and frees the block allocated [`RING`] steps
/// earlier. Returns how long the timed steps took.
#[inline(never)]
pub fn mixed<A: GlobalAlloc>(a: &A, sizes: &[u32; TABLE_LEN], iters: u64) -> Duration {
    let layout_at = |i: usize| {
        Layout::from_size_align(sizes[i % TABLE_LEN] as usize, ALIGN).expect("sizes are small")
    };
    let mut ring: [(*mut u8, Layout); RING] = core::array::from_fn(|i| {
        let layout = layout_at(i);
        (alloc(a, layout), layout)
    });
    let start = Instant::now();
    for i in 0..iters as usize {
        let layout = layout_at(i + RING);
        let p = alloc(a, layout);
        let (old, old_layout) = core::mem::replace(&mut ring[i % RING], (p, layout));
        // SAFETY: `old` was allocated by `a` with `old_layout` (in the ring
        // prefill or RING steps ago) and is freed exactly once, here.
        unsafe { a.dealloc(old, old_layout) };
    }
    let elapsed = start.elapsed();
    for (p, layout) in ring {
        // SAFETY: the blocks still in the ring came from `a` with `layout`.
        unsafe { a.dealloc(p, layout) };
    }
    elapsed
}

/// A positive count from the environment variable `var`, or `default` if it
/// is unset; panics on anything else (a benchmark run with the wrong counts
/// would be worse than none).
pub fn count_from_env(var: &str, default: usize) -> usize {
    match std::env::var(var) {
        Ok(n) => n
            .trim()
            .parse()
            .ok()
            .filter(|&n| n > 0)
            .unwrap_or_else(|| panic!("{var}: bad count {n:?}")),
        Err(_) => default,
    }
}

/// A barrier whose waiters spin: they leave it within a fraction of a
/// microsecond of the last arrival, where `std::sync::Barrier` wakes them
/// through the kernel tens of microseconds later. The interleaved
/// measurements use it so that threads run each slice together, from its
/// first pair, and a variant's contention between threads is measured as it
/// is. A waiter that has spun for long (more threads than cores) yields.
pub struct SpinBarrier {
    threads: usize,
    arrived: AtomicUsize,
    generation: AtomicUsize,
}

impl SpinBarrier {
    /// A barrier for `threads` threads.
    pub fn new(threads: usize) -> Self {
        SpinBarrier {
            threads,
            arrived: AtomicUsize::new(0),
            generation: AtomicUsize::new(0),
        }
    }

    /// Waits until all threads have called `wait`; returns `true` on exactly
    /// one of them (the last to arrive).
    pub fn wait(&self) -> bool {
        let generation = self.generation.load(Ordering::Acquire);
        if self.arrived.fetch_add(1, Ordering::AcqRel) + 1 == self.threads {
            // Reset before the release, so that a thread that sees the new
            // generation and comes back counts from zero.
            self.arrived.store(0, Ordering::Relaxed);
            self.generation.fetch_add(1, Ordering::Release);
            return true;
        }
        let mut spins = 0u32;
        while self.generation.load(Ordering::Acquire) == generation {
            spins = spins.saturating_add(1);
            if spins > 100_000 {
                thread::yield_now();
            } else {
                std::hint::spin_loop();
            }
        }
        false
    }
}

/// Rounds of an interleaved measurement: `test_rounds` under criterion's
/// `--test` (a smoke run), else the count in `var`, or `default`.
pub fn interleaved_rounds(var: &str, default: usize, test_rounds: usize) -> usize {
    if std::env::args().any(|a| a == "--test") {
        return test_rounds;
    }
    count_from_env(var, default)
}

/// Whether a measurement run outside criterion's groups, named `group`,
/// should run: yes unless the command line names criterion filters and none
/// of them is part of `group` (as criterion would filter a group of it).
pub fn selected(group: &str) -> bool {
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    filters.is_empty() || filters.iter().any(|f| group.contains(f.as_str()))
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

/// Where criterion writes its results: `$CRITERION_HOME`, else
/// `$CARGO_TARGET_DIR/criterion`, else the workspace's `target/criterion`.
pub fn criterion_dir() -> PathBuf {
    if let Some(home) = std::env::var_os("CRITERION_HOME") {
        return PathBuf::from(home);
    }
    if let Some(target) = std::env::var_os("CARGO_TARGET_DIR") {
        return PathBuf::from(target).join("criterion");
    }
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../target/criterion"))
}

/// Writes `fields` for one benchmark to
/// `<criterion dir>/allocmeter-extra/<group>__<function>.json`, replacing the
/// file of an earlier run. Errors are printed, not raised: the times matter
/// more than the extras.
pub fn write_extra(group: &str, function: &str, fields: &[(&str, f64)]) {
    let dir = criterion_dir().join("allocmeter-extra");
    let file_name: String = format!("{group}__{function}")
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    let mut json = format!(
        "{{\"group\": \"{}\", \"function\": \"{}\"",
        escape(group),
        escape(function)
    );
    for (key, value) in fields {
        let value = if value.is_finite() {
            value.to_string()
        } else {
            "null".to_string()
        };
        let _ = write!(json, ", \"{}\": {value}", escape(key));
    }
    json.push_str("}\n");
    let written = std::fs::create_dir_all(&dir)
        .and_then(|()| std::fs::write(dir.join(format!("{file_name}.json")), json));
    if let Err(e) = written {
        eprintln!("allocmeter-benches: cannot write extras to {dir:?}: {e}");
    }
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}
