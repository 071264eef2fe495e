//! Samples are not lost when the machine is busy: one thread allocates and
//! frees 48 KiB blocks as fast as it can, from a 30-frame-deep stack, at the
//! default 512 KiB sample rate, while eight threads spin (four per core on a
//! 2-core machine), so that the exporter's aggregator, the rings' only
//! drainer, gets the CPU late. The site's estimate must still come out
//! within ±10 % of the bytes the thread allocated, with no sample dropped.
//!
//! The test makes its own load, so it does not depend on what else the
//! machine runs; more background load only starves the drainer further.
//!
//! `harness = false`: the sample counters and the rate are process-wide,
//! so the check runs alone on the main thread (with a deadlock watchdog).

use std::alloc::System;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use allocmeter::Instrumented;
use allocmeter_exporter::{SiteReport, SortBy};
use allocmeter_test_support::exporter::{loopback, start_built};
use allocmeter_test_support::http;
use allocmeter_test_support::prometheus_text::parse_samples;
use allocmeter_test_support::runner;
use allocmeter_test_support::workers::{BURST_BLOCK, deep_burst, spinning};

#[global_allocator]
static GLOBAL: Instrumented<System> = Instrumented::new(System);

/// Bytes the burst allocates: 4,096 samples expected at 512 KiB. Each
/// 48 KiB block is sampled with probability p = 1 - exp(-48/512) = 0.0895
/// and a sample weighs 1/p, so over N = 43,690 blocks the estimate's
/// relative standard deviation is sqrt((1/p - 1) / N) = 1.5 %: ±10 % is
/// over six standard deviations (a false failure about once in 10^9 runs).
const BURST_BYTES: usize = 2 << 30;

/// Threads that keep the cores busy: four per core on a 2-core machine.
const SPINNERS: usize = 8;

/// The frames between the thread's entry and the allocating loop.
const DEPTH: u32 = 30;

/// The sites whose allocating function is `function`, added up.
fn find(sites: &[SiteReport], function: &str) -> (f64, u64) {
    sites
        .iter()
        .filter(|s| s.function.ends_with(function))
        .fold((0.0, 0), |(bytes, samples), s| {
            (bytes + s.alloc_space, samples + s.samples)
        })
}

/// The value of the one sample of `name` in a `/metrics` body.
fn metric(body: &str, name: &str) -> Option<f64> {
    parse_samples(body)
        .into_iter()
        .find(|(series, _)| series == name || series.starts_with(&format!("{name}{{")))
        .map(|(_, value)| value)
}

fn a_burst_on_oversubscribed_cores_keeps_its_samples() {
    allocmeter::set_sample_rate(allocmeter::DEFAULT_SAMPLE_RATE);
    let (exporter, addr) = start_built(loopback());
    let before = allocmeter::profile::sampling_stats();
    let stop = Arc::new(AtomicBool::new(false));
    let spinners = spinning(SPINNERS, &stop);
    // Let the spinners take the cores before the burst starts.
    std::thread::sleep(Duration::from_millis(200));
    let blocks = BURST_BYTES / BURST_BLOCK;
    let allocated = std::thread::spawn(move || deep_burst(DEPTH, blocks))
        .join()
        .unwrap() as f64;
    stop.store(true, Ordering::Relaxed);
    for s in spinners {
        s.join().unwrap();
    }
    // top_sites drains what the rings still hold.
    let sites = exporter.top_sites(1000, SortBy::AllocSpace);
    let after = allocmeter::profile::sampling_stats();
    let (estimate, samples) = find(&sites, "burst_leaf");
    let dropped = after.dropped - before.dropped;
    let taken = after.samples - before.samples;
    let carried = after.carried - before.carried;
    let p = -(-(BURST_BLOCK as f64) / allocmeter::DEFAULT_SAMPLE_RATE as f64).exp_m1();
    let expected_samples = blocks as f64 * p;
    let error = estimate / allocated - 1.0;
    println!(
        "  allocated {allocated:.0} B, estimated {estimate:.0} B ({:+.1} %); \
         samples at the site {samples} (expected about {expected_samples:.0}), \
         taken {taken}, dropped {dropped}, carried {carried}; ring bytes at peak {}",
        error * 100.0,
        after.ring_bytes_peak
    );
    assert_eq!(dropped, 0, "samples dropped");
    // The whole burst fits in the rings' bounds even if the drainer never
    // ran during it (about 3,900 records of 6 words and their frees of 2:
    // 31,000 words, and a 1 MiB ring holds 131,072), so no weight needs
    // carrying either.
    assert_eq!(carried, 0, "samples carried");
    // The rings' memory stays within allocmeter's stated bound.
    let stats = allocmeter::stats();
    assert!(
        stats.telemetry_bytes <= allocmeter::telemetry_bound(stats.slots_used),
        "telemetry bytes {} over their bound",
        stats.telemetry_bytes
    );
    assert!(
        error.abs() <= 0.10,
        "the estimate is off by {:+.1} %",
        error * 100.0
    );
    // The page's data and /metrics report the carried samples too.
    let body = http::fetch(addr, "GET", "/metrics").body;
    assert_eq!(
        metric(&body, "allocmeter_profile_samples_carried_total"),
        Some(after.carried as f64),
        "carried samples in /metrics"
    );
    let snapshot = http::fetch(addr, "GET", "/api/snapshot").body;
    assert!(
        snapshot.contains("\"carried\""),
        "carried samples in /api/snapshot: {snapshot}"
    );
    drop(exporter);
}

fn main() {
    runner::run(
        &[(
            "a_burst_on_oversubscribed_cores_keeps_its_samples",
            a_burst_on_oversubscribed_cores_keeps_its_samples,
        )],
        Duration::from_secs(300),
    );
}
