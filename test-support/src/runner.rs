//! A minimal test runner for tests that need the process to themselves.
//!
//! Exact process-wide counts need a process where nothing else allocates, so
//! these test binaries use `harness = false`: each check runs on the main
//! thread, one after another, with no test-harness threads around.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::{Duration, Instant};

/// Runs each named check in order, prints one line per check and a closing
/// `N passed, N failed` line, and exits non-zero if any check failed.
///
/// A check that runs longer than `watchdog` aborts the process: a hang in an
/// allocator test is a deadlock, and must fail rather than stall CI.
pub fn run(checks: &[(&str, fn())], watchdog: Duration) {
    let deadline = Instant::now() + watchdog;
    // The watchdog signals once it runs, so that its thread's start-up
    // allocations are over before the first check measures anything.
    let started = std::sync::Arc::new(std::sync::Barrier::new(2));
    let signal = started.clone();
    std::thread::spawn(move || {
        signal.wait();
        drop(signal);
        while Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        eprintln!("watchdog: tests still running after {watchdog:?}; deadlock? aborting");
        std::process::abort();
    });
    started.wait();
    // Free the barrier here, before any check: if the watchdog thread dropped
    // the last reference, the free could land inside a check's window (seen
    // on a loaded machine: one object of 56 bytes).
    while std::sync::Arc::strong_count(&started) > 1 {
        std::thread::yield_now();
    }
    drop(started);
    let (mut passed, mut failed) = (0, 0);
    for (name, check) in checks {
        match catch_unwind(AssertUnwindSafe(check)) {
            Ok(()) => {
                println!("test {name} ... ok");
                passed += 1;
            }
            Err(_) => {
                println!("test {name} ... FAILED");
                failed += 1;
            }
        }
    }
    println!("{passed} passed, {failed} failed");
    if failed > 0 {
        std::process::exit(1);
    }
}
