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
