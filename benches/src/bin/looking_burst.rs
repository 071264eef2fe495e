//! A sampling burst on oversubscribed cores: does the exporter keep every
//! sample when its drainer gets the CPU late?
//!
//! One thread allocates and frees 48 KiB blocks as fast as it can from a
//! 30-frame-deep stack, at the default 512 KiB sample rate, while four
//! threads per core spin. An exporter (without HTTP) drains the rings; after
//! each burst the site's `alloc_space` estimate is compared with the bytes
//! the thread allocated. Prints one JSON object on stdout:
//!
//! ```text
//! cargo run --release -p allocmeter-benches --bin looking_burst [-- RUNS [GIB]]
//! ```
//!
//! `RUNS` bursts (default 3) of `GIB` GiB each (default 2: about 3,900
//! samples, relative s.d. of one estimate 1.5 %).

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use allocmeter_exporter::{Exporter, SortBy};

#[global_allocator]
static GLOBAL: allocmeter::Instrumented<std::alloc::System> =
    allocmeter::Instrumented::new(std::alloc::System);

const BLOCK: usize = 48 * 1024;
const DEPTH: u32 = 30;

/// One frame of the deep stack.
#[inline(never)]
fn deep(level: u32, blocks: usize) -> usize {
    if level == 0 {
        return looking_burst_leaf(blocks);
    }
    black_box(deep(black_box(level - 1), blocks)) + black_box(0)
}

/// The burst: `blocks` blocks of [`BLOCK`] bytes allocated and freed.
#[inline(never)]
fn looking_burst_leaf(blocks: usize) -> usize {
    for _ in 0..blocks {
        drop(black_box(Vec::<u8>::with_capacity(BLOCK)));
    }
    blocks
}

/// The site's allocated estimate so far.
fn site_bytes(exporter: &Exporter) -> f64 {
    exporter
        .top_sites(10_000, SortBy::AllocSpace)
        .iter()
        .filter(|s| s.function.ends_with("looking_burst_leaf"))
        .map(|s| s.alloc_space)
        .sum()
}

fn main() {
    let mut args = std::env::args().skip(1);
    let runs: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(3);
    let gib: f64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(2.0);
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let spinners = 4 * cores;
    let blocks = (gib * (1u64 << 30) as f64) as usize / BLOCK;

    let exporter = Exporter::builder()
        .serve_http(false)
        .sample_rate(allocmeter::DEFAULT_SAMPLE_RATE)
        .start()
        .expect("exporter starts");
    let stop = Arc::new(AtomicBool::new(false));
    let spinning: Vec<_> = (0..spinners)
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut x = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    x = black_box(x.wrapping_add(1));
                }
            })
        })
        .collect();
    std::thread::sleep(std::time::Duration::from_millis(200));

    let mut results = Vec::new();
    let mut worst = 0.0f64;
    for _ in 0..runs {
        let before = allocmeter::profile::sampling_stats();
        let estimated_before = site_bytes(&exporter);
        let started = Instant::now();
        let allocated = std::thread::spawn(move || deep(DEPTH, blocks) * BLOCK)
            .join()
            .expect("burst thread") as f64;
        let seconds = started.elapsed().as_secs_f64();
        let estimated = site_bytes(&exporter) - estimated_before;
        let after = allocmeter::profile::sampling_stats();
        let error = estimated / allocated - 1.0;
        worst = worst.max(error.abs());
        results.push(serde_json::json!({
            "expected_bytes": allocated,
            "estimated_bytes": estimated.round(),
            "relative_error": error,
            "samples_taken": after.samples - before.samples,
            "samples_dropped": after.dropped - before.dropped,
            "samples_carried": after.carried - before.carried,
            "burst_seconds": seconds,
        }));
    }
    stop.store(true, Ordering::Relaxed);
    for s in spinning {
        let _ = s.join();
    }
    let sampling = allocmeter::profile::sampling_stats();
    let out = serde_json::json!({
        "workload": "48 KiB alloc+free from a 30-frame stack, one thread, 512 KiB rate",
        "cores": cores,
        "spinning_threads": spinners,
        "runs": results,
        "worst_relative_error": worst,
        "ring_bytes_peak": sampling.ring_bytes_peak,
        "ring_bytes_after": sampling.ring_bytes,
    });
    println!("{out}");
}
