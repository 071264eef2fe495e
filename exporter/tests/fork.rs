//! `fork()` of a service with a running exporter: what the child has.
//!
//! The child has the parent's statistics up to the fork (and goes on
//! counting its own work), but not the parent's exporter threads: it must not
//! use the parent's `Exporter` handle (it leaves it alone and `_exit`s, so no
//! destructor runs), and it can start an exporter of its own on another port,
//! which serves `/metrics` and a heap profile and shuts down cleanly. The
//! parent's exporter serves on. Five children, forked while two threads
//! allocate with sampling on; each must exit 0 within 30 s.
//!
//! A fork at any instant of a render is safe too: children forked at times
//! swept across the parent's first symbolization (a site report of a few
//! thousand call sites, which maps and parses the binary's debug info) each
//! start their own exporter and answer `/metrics` and a heap profile within
//! 5 s, though the parent's symbolizer lock may be held at the fork.

use std::alloc::System;
use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use allocmeter::Instrumented;
use allocmeter_exporter::SortBy;
use allocmeter_test_support::exporter::{loopback, start_exporter, try_start_built};
use allocmeter_test_support::fork;
use allocmeter_test_support::http::{fetch, fetch_bytes};
use allocmeter_test_support::prometheus_text::parse_samples;
use allocmeter_test_support::workers;

#[global_allocator]
static GLOBAL: Instrumented<System> = Instrumented::new(System);

const CHILDREN: usize = 5;
const CHILD_DEADLINE: Duration = Duration::from_secs(30);

fn alloc_bytes_total(addr: std::net::SocketAddr) -> Result<f64, String> {
    let reply = fetch(addr, "GET", "/metrics");
    if reply.status != 200 {
        return Err(format!("/metrics answered {}", reply.status));
    }
    parse_samples(&reply.body)
        .get("allocmeter_alloc_bytes_total")
        .copied()
        .ok_or_else(|| "no allocmeter_alloc_bytes_total".to_string())
}

/// The child's checks (its only thread is the one that forked).
fn child_checks(at_fork: u64) -> Result<(), String> {
    let s = allocmeter::stats();
    if s.alloc_bytes < at_fork {
        return Err(format!(
            "the child's counters start below the parent's: {} < {at_fork}",
            s.alloc_bytes
        ));
    }
    if s.threads != 1 {
        return Err(format!("{} threads recorded in the child", s.threads));
    }
    let (own, addr) = try_start_built(loopback().interval(Duration::from_millis(20)))
        .map_err(|e| format!("the child's own exporter: {e}"))?;
    let before = alloc_bytes_total(addr)?;
    if before < at_fork as f64 {
        return Err(format!(
            "child /metrics below the fork: {before} < {at_fork}"
        ));
    }
    black_box(vec![0u8; 1 << 20]);
    let after = alloc_bytes_total(addr)?;
    if after < before + (1 << 20) as f64 {
        return Err(format!(
            "the child's 1 MiB is not counted: {before} -> {after}"
        ));
    }
    let profile = fetch_bytes(addr, "GET", "/debug/pprof/heap");
    if profile.status != 200 || profile.body.get(..2) != Some(&[0x1f, 0x8b][..]) {
        return Err(format!(
            "the child's heap profile: status {}",
            profile.status
        ));
    }
    let t = Instant::now();
    own.shutdown();
    if t.elapsed() > Duration::from_secs(5) {
        return Err(format!(
            "the child's exporter took {:?} to stop",
            t.elapsed()
        ));
    }
    Ok(())
}

fn fork_child(at_fork: u64) -> Result<(), String> {
    // SAFETY: the child runs `child_checks` (allocmeter's fork handlers
    // made the allocator's state consistent; it starts and joins threads of
    // its own) and `_exit`s without running the parent's destructors, so
    // the parent's exporter handle, whose threads are not in the child, is
    // never touched there.
    let status = unsafe { fork::fork_and_wait(|| child_checks(at_fork), CHILD_DEADLINE) }?;
    match (libc::WIFEXITED(status), libc::WEXITSTATUS(status)) {
        (true, 0) => Ok(()),
        _ => Err(format!(
            "child ended with status {status:#x} (message above)"
        )),
    }
}

#[test]
fn a_forked_child_counts_on_and_serves_with_its_own_exporter() {
    allocmeter::set_sample_rate(4096);
    let (exporter, addr) = start_exporter(Duration::from_millis(20));
    let stop = Arc::new(AtomicBool::new(false));
    let workers = workers::allocating(2, &stop);
    assert!(alloc_bytes_total(addr).expect("parent serves") > 0.0);
    let mut failures = Vec::new();
    for i in 0..CHILDREN {
        // /metrics shows the service's share, the exporter's left out.
        let at_fork = allocmeter::stats_split().program.alloc_bytes;
        if let Err(e) = fork_child(at_fork) {
            failures.push(format!("child {i}: {e}"));
        }
    }
    // The parent's exporter serves on.
    let a = alloc_bytes_total(addr).expect("parent still serves");
    std::thread::sleep(Duration::from_millis(100));
    let b = alloc_bytes_total(addr).expect("parent still serves");
    assert!(b > a, "the parent's counters move: {a} -> {b}");
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.join().unwrap();
    }
    exporter.shutdown();
    allocmeter::set_sample_rate(allocmeter::DEFAULT_SAMPLE_RATE);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// How long a child forked during a render may take to start its exporter
/// and answer `/metrics` and a heap profile.
const SERVE_DEADLINE: Duration = Duration::from_secs(5);

/// The checks of a child forked while the parent symbolizes: its own
/// exporter answers `/metrics` and a heap profile that names a site.
fn child_serves() -> Result<(), String> {
    let (own, addr) = try_start_built(loopback().interval(Duration::from_millis(20)))
        .map_err(|e| format!("the child's own exporter: {e}"))?;
    alloc_bytes_total(addr)?;
    let profile = fetch_bytes(addr, "GET", "/debug/pprof/heap");
    if profile.status != 200 || profile.body.get(..2) != Some(&[0x1f, 0x8b][..]) {
        return Err(format!(
            "the child's heap profile: status {}",
            profile.status
        ));
    }
    let sites = fetch(addr, "GET", "/api/sites");
    if sites.status != 200 {
        return Err(format!("the child's /api/sites: status {}", sites.status));
    }
    own.shutdown();
    Ok(())
}

#[test]
fn a_fork_at_any_instant_of_the_first_symbolization_leaves_the_child_serving() {
    allocmeter::set_sample_rate(1024);
    let mut failures = Vec::new();
    let mut render_times = Vec::new();
    for delay_ms in [0u64, 1, 2, 5, 10, 20, 40, 80] {
        // A fresh exporter each time, so that its symbolizer starts cold:
        // the render maps and parses, and resolves every address anew.
        let (exporter, _addr) = start_exporter(Duration::from_millis(20));
        let keep = workers::many_call_sites();
        let started = Instant::now();
        std::thread::scope(|scope| {
            let render = scope.spawn(|| exporter.top_sites(usize::MAX, SortBy::AllocSpace).len());
            std::thread::sleep(Duration::from_millis(delay_ms));
            let forked_at = started.elapsed();
            // SAFETY: the child runs `child_serves` (allocmeter's fork
            // handlers made the allocator consistent; it starts and joins
            // threads of its own) and `_exit`s; it never touches the
            // parent's exporter, whose threads did not come along.
            match unsafe { fork::fork_and_wait(child_serves, SERVE_DEADLINE) } {
                Ok(status) if libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0 => {}
                Ok(status) => failures.push(format!(
                    "forked {forked_at:?} into the render: child ended with status {status:#x}"
                )),
                Err(e) => failures.push(format!("forked {forked_at:?} into the render: {e}")),
            }
            let sites = render.join().expect("the parent's render");
            render_times.push((delay_ms, sites, started.elapsed()));
        });
        drop(keep);
        exporter.shutdown();
    }
    allocmeter::set_sample_rate(allocmeter::DEFAULT_SAMPLE_RATE);
    eprintln!("  parent renders (delay ms, sites, time to finish): {render_times:?}");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
