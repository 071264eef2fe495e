//! Process exit while threads still allocate and the exporter is serving.
//!
//! The test re-runs its own binary as a child (`ALLOCMETER_EXIT_CHILD` set),
//! which starts an exporter, four threads that allocate and free without
//! pause, and two clients fetching `/metrics` and the heap profile in a loop,
//! then ends the process in the middle of all that: by `std::process::exit`
//! from the main thread, or by returning from the test function (the harness
//! then exits). The parent runs each way 10 times and asserts that every
//! child exited with status 0, by itself, within 20 s: no crash in an
//! allocation racing the exit, no hang on a lock the exit needs.

use std::alloc::System;
use std::hint::black_box;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use allocmeter::Instrumented;
use allocmeter_test_support::exporter::start_exporter;
use allocmeter_test_support::http;

#[global_allocator]
static GLOBAL: Instrumented<System> = Instrumented::new(System);

const CHILD_ENV: &str = "ALLOCMETER_EXIT_CHILD";
const RUNS_EACH: usize = 10;
const CHILD_DEADLINE: Duration = Duration::from_secs(20);

/// Responses the child's clients got.
static SERVED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// The child's work; ends the process while everything runs.
fn child(how: &str) {
    allocmeter::set_sample_rate(4096);
    let (exporter, addr) = start_exporter(Duration::from_millis(20));
    for t in 0..4u64 {
        std::thread::spawn(move || {
            let mut x = 0x9E37_79B9 + t;
            let mut keep: Vec<Vec<u8>> = Vec::new();
            loop {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                keep.push(black_box(vec![0u8; 1 + (x % 20_000) as usize]));
                if keep.len() > 100 {
                    keep.drain(..50);
                }
            }
        });
    }
    for path in ["/metrics", "/debug/pprof/heap"] {
        std::thread::spawn(move || {
            loop {
                let reply = http::fetch_bytes(addr, "GET", path);
                if reply.status == 200 {
                    SERVED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            }
        });
    }
    // Busy: at least one response served (the first profile symbolizes,
    // which takes a while), then a little more of everything at once.
    let start = Instant::now();
    while SERVED.load(std::sync::atomic::Ordering::Relaxed) == 0
        && start.elapsed() < Duration::from_secs(10)
    {
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(100));
    // Proof for the parent that the exit happens mid-flight.
    let s = allocmeter::stats();
    eprintln!(
        "busy: {} threads, {} allocations, {} scrapes so far",
        s.threads,
        s.allocs,
        SERVED.load(std::sync::atomic::Ordering::Relaxed)
    );
    match how {
        // Leaves the exporter running: its threads die with the process.
        "exit" => std::process::exit(0),
        _ => std::mem::forget(exporter),
    }
}

/// Runs the child `how` and waits for it, with a deadline.
fn run_child(how: &str) -> Result<(), String> {
    let mut child = Command::new(std::env::current_exe().expect("own path"))
        .args([
            "--exact",
            "a_process_exits_cleanly_while_threads_allocate_and_the_exporter_serves",
            "--nocapture",
        ])
        .env(CHILD_ENV, how)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("spawn: {e}"))?;
    let deadline = Instant::now() + CHILD_DEADLINE;
    loop {
        match child.try_wait().map_err(|e| format!("wait: {e}"))? {
            Some(status) => {
                let mut err = String::new();
                if let Some(mut e) = child.stderr.take() {
                    let _ = std::io::Read::read_to_string(&mut e, &mut err);
                }
                if !status.success() {
                    return Err(format!("child ({how}) ended with {status}: {err}"));
                }
                // The exit came while the child was busy: threads running,
                // allocating, and its clients being served.
                let busy = err.lines().find(|l| l.starts_with("busy: "));
                let Some(line) = busy else {
                    return Err(format!("child ({how}) exited before it got busy: {err}"));
                };
                let scrapes: u64 = line
                    .split(", ")
                    .find_map(|p| p.strip_suffix(" scrapes so far"))
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(0);
                if scrapes == 0 {
                    return Err(format!(
                        "child ({how}) served nothing before the exit: {line}"
                    ));
                }
                return Ok(());
            }
            None if Instant::now() > deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "child ({how}) still running after {CHILD_DEADLINE:?}: hung at exit"
                ));
            }
            None => std::thread::sleep(Duration::from_millis(10)),
        }
    }
}

#[test]
fn a_process_exits_cleanly_while_threads_allocate_and_the_exporter_serves() {
    if let Ok(how) = std::env::var(CHILD_ENV) {
        child(&how);
        return;
    }
    let mut failures = Vec::new();
    for how in ["exit", "return"] {
        for _ in 0..RUNS_EACH {
            if let Err(e) = run_child(how) {
                failures.push(e);
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} exits failed:\n{}",
        failures.len(),
        2 * RUNS_EACH,
        failures.join("\n")
    );
}
