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

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use allocmeter_exporter::{Exporter, SortBy};
use allocmeter_test_support::workers::{BURST_BLOCK, deep_burst, spinning};

#[global_allocator]
static GLOBAL: allocmeter::Instrumented<std::alloc::System> =
    allocmeter::Instrumented::new(std::alloc::System);

const DEPTH: u32 = 30;

/// The site's allocated estimate so far.
fn site_bytes(exporter: &Exporter) -> f64 {
    exporter
        .top_sites(10_000, SortBy::AllocSpace)
        .iter()
        .filter(|s| s.function.ends_with("burst_leaf"))
        .map(|s| s.alloc_space)
        .sum()
}

fn main() {
    let mut args = std::env::args().skip(1);
    let runs: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(3);
    let gib: f64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(2.0);
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let spinners = 4 * cores;
    let blocks = (gib * (1u64 << 30) as f64) as usize / BURST_BLOCK;

    let exporter = Exporter::builder()
        .serve_http(false)
        .sample_rate(allocmeter::DEFAULT_SAMPLE_RATE)
        .start()
        .expect("exporter starts");
    let stop = Arc::new(AtomicBool::new(false));
    let spinning = spinning(spinners, &stop);
    std::thread::sleep(std::time::Duration::from_millis(200));

    let mut results = Vec::new();
    let mut worst = 0.0f64;
    for _ in 0..runs {
        let before = allocmeter::profile::sampling_stats();
        let estimated_before = site_bytes(&exporter);
        let started = Instant::now();
        let allocated = std::thread::spawn(move || deep_burst(DEPTH, blocks))
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
