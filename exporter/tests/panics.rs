//! A panic in the exporter's aggregator thread never reaches the service's
//! threads; the exporter counts it and keeps draining, snapshotting and
//! serving.
//!
//! The panics are real, injected through the debug-build fault points
//! (`ALLOCMETER_EXPORTER_FAULTS`, see `exporter/src/fault.rs`): every second
//! snapshot, every seventh drain and every second response rendered panics. The test re-runs its own binary
//! as a child with the variable set (setting it in this process while other
//! threads may read the environment would be a data race), and the child
//! asserts.

use std::alloc::System;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use allocmeter::Instrumented;
use allocmeter_test_support::exporter::start_exporter;
use allocmeter_test_support::http::fetch;
use allocmeter_test_support::prometheus_text::parse_samples;
use allocmeter_test_support::workers;

#[global_allocator]
static GLOBAL: Instrumented<System> = Instrumented::new(System);

const CHILD_ENV: &str = "ALLOCMETER_PANICS_CHILD";
const TEST: &str = "panics_in_the_aggregator_are_counted_and_survived";

/// The panics counted so far, (aggregator, render). Every second render
/// panics (answered 500), so this asks again after one.
fn panics_seen(addr: std::net::SocketAddr) -> (f64, f64) {
    let mut refused = 0;
    loop {
        let reply = fetch(addr, "GET", "/metrics");
        if reply.status == 500 {
            refused += 1;
            assert!(refused < 5, "every render panics?");
            continue;
        }
        assert_eq!(reply.status, 200, "/metrics answers");
        let samples = parse_samples(&reply.body);
        let get = |w: &str| {
            *samples
                .get(&format!(
                    "allocmeter_exporter_panics_total{{where=\"{w}\"}}"
                ))
                .expect("the panics counter is exported")
        };
        return (get("aggregator"), get("render"));
    }
}

/// Runs in the child, with the faults set.
fn child() {
    allocmeter::set_sample_rate(4096);
    let (exporter, addr) = start_exporter(Duration::from_millis(50));
    let stop = Arc::new(AtomicBool::new(false));
    let workers = workers::allocating(2, &stop);
    // Waits (20 s at most: a loaded machine) until the aggregator has
    // survived more panics than `after`, and some render panicked too.
    let wait_for = |after: f64| {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let seen = panics_seen(addr);
            if (seen.0 > after && seen.1 >= 1.0) || Instant::now() > deadline {
                return seen;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    let first = wait_for(0.0);
    let points_first = exporter.history_points(None).len();
    let second = wait_for(first.0);
    // A snapshot that does not panic comes within a few intervals.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut points_second = exporter.history_points(None).len();
    while points_second <= points_first && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
        points_second = exporter.history_points(None).len();
    }
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        let n = w.join().expect("a service thread saw a panic");
        assert!(n > 1000, "the service threads kept allocating: {n}");
    }
    // Counted, and still happening: the thread survived its panics.
    assert!(first.0 >= 1.0, "aggregator panics counted: {first:?}");
    assert!(
        second.0 > first.0,
        "the aggregator went on (and panicked again): {first:?} -> {second:?}"
    );
    // Renders that panicked were answered 500 and counted; the server
    // went on serving (these very requests).
    assert!(second.1 >= 1.0, "render panics counted: {second:?}");
    // Snapshots between the panicking ones were taken...
    assert!(
        points_second > points_first,
        "history grew: {points_first} -> {points_second}"
    );
    // ...and the rings were drained into the site table.
    let mut reply = fetch(addr, "GET", "/api/sites?top=5");
    if reply.status == 500 {
        reply = fetch(addr, "GET", "/api/sites?top=5");
    }
    let v: serde_json::Value = serde_json::from_str(&reply.body).unwrap();
    assert!(
        !v["sites"].as_array().unwrap().is_empty(),
        "samples still reach the site table"
    );
    println!(
        "child: {} aggregator and {} render panics survived, {points_second} snapshots",
        second.0, second.1
    );
}

#[test]
fn panics_in_the_aggregator_are_counted_and_survived() {
    if std::env::var_os(CHILD_ENV).is_some() {
        child();
        return;
    }
    if !cfg!(debug_assertions) {
        // The fault points exist only in debug builds.
        eprintln!("skipped: fault injection needs a debug build");
        return;
    }
    let start = Instant::now();
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", TEST, "--nocapture"])
        .env(CHILD_ENV, "1")
        // The panic hook's backtraces are slow to print in a debug build and
        // tell nothing here; the messages are enough.
        .env("RUST_BACKTRACE", "0")
        .env(
            "ALLOCMETER_EXPORTER_FAULTS",
            "aggregator.tick:2,aggregator.drain:7,render:2",
        )
        .output()
        .expect("child runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "child failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    assert!(stdout.contains("panics survived"), "child ran: {stdout}");
    assert!(stderr.contains("injected fault at render"), "{stderr}");
    // The panics were real ones, reported by the default hook.
    assert!(
        stderr.contains("injected fault at aggregator.tick"),
        "{stderr}"
    );
    assert!(start.elapsed() < Duration::from_secs(60));
}
