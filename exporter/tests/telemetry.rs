//! allocmeter's own memory stays under its documented bound
//! ([`Exporter::telemetry_bound`], [`allocmeter::telemetry_bound`]) with many
//! threads and more call sites than the site table takes.
//!
//! Three waves of 48 threads each (144 threads, 48 alive at once) allocate
//! from 328 distinct call stacks (8 leaf functions under 0 to 40 levels of
//! recursion) at a 1 KiB sampling rate (so every thread gets the largest
//! ring), keep blocks live, and free them at the end of their wave; clients
//! symbolize every site, fetch the heap profile and the spike records
//! meanwhile. The telemetry figure is read throughout and must never exceed
//! the bound; the site table must stop at its limit.

use std::alloc::System;
use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use allocmeter::Instrumented;
use allocmeter_test_support::exporter::{loopback, start_built};
use allocmeter_test_support::http;

#[global_allocator]
static GLOBAL: Instrumented<System> = Instrumented::new(System);

const WAVES: usize = 3;
const THREADS_PER_WAVE: usize = 48;
const MAX_SITES: usize = 300;
const DEPTHS: usize = 41;
const LEAVES: usize = 8;

#[inline(never)]
fn leaf<const K: usize>(size: usize) -> Vec<u8> {
    black_box(Vec::with_capacity(size + K))
}

/// A block allocated under `depth` frames of this function, by leaf `k`:
/// each (depth, k) is its own call stack.
#[inline(never)]
fn descend(depth: usize, k: usize, size: usize) -> Vec<u8> {
    if depth == 0 {
        return match k % LEAVES {
            0 => leaf::<0>(size),
            1 => leaf::<1>(size),
            2 => leaf::<2>(size),
            3 => leaf::<3>(size),
            4 => leaf::<4>(size),
            5 => leaf::<5>(size),
            6 => leaf::<6>(size),
            _ => leaf::<7>(size),
        };
    }
    // Used after the call, so the recursion is not a tail call.
    black_box(descend(depth - 1, k, size))
}

/// One thread's work: blocks from every call stack, a few rounds, half kept.
fn work(seed: usize) -> Vec<Vec<u8>> {
    let mut kept = Vec::new();
    for round in 0..6 {
        for depth in 0..DEPTHS {
            for k in 0..LEAVES {
                let size = 64 + (seed * 31 + depth * 7 + k * 131 + round) % 4000;
                let b = descend(depth, k, size);
                if (depth + k + round) % 2 == 0 {
                    kept.push(b);
                }
            }
        }
    }
    kept
}

#[test]
fn telemetry_stays_under_its_bound_with_many_threads_and_call_sites() {
    allocmeter::set_sample_rate(1024);
    let (exporter, addr) = start_built(
        loopback()
            .interval(Duration::from_millis(50))
            .max_sites(MAX_SITES)
            .history(100),
    );
    let exporter = Arc::new(exporter);
    let stop = Arc::new(AtomicBool::new(false));

    // Clients that make the exporter symbolize everything and keep profiles.
    let client = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut most_sites = 0;
            while !stop.load(Ordering::Relaxed) {
                let reply = http::fetch(addr, "GET", "/api/sites?top=1000&by=alloc_space");
                assert_eq!(reply.status, 200);
                let v: serde_json::Value = serde_json::from_str(&reply.body).unwrap();
                most_sites = most_sites.max(v["sites"].as_array().unwrap().len());
                let reply = http::fetch_bytes(addr, "GET", "/debug/pprof/heap");
                assert_eq!(reply.status, 200);
                let reply = http::fetch(addr, "GET", "/api/spikes");
                assert_eq!(reply.status, 200);
            }
            most_sites
        })
    };
    // The telemetry figure, read all along.
    let watcher = {
        let (stop, exporter) = (stop.clone(), exporter.clone());
        std::thread::spawn(move || {
            let (mut peak, mut peak_bound, mut reads) = (0, 0, 0u64);
            while !stop.load(Ordering::Relaxed) {
                let (used, bound) = (exporter.telemetry_bytes(), exporter.telemetry_bound());
                let s = allocmeter::stats();
                assert!(
                    s.telemetry_bytes <= allocmeter::telemetry_bound(s.slots_used),
                    "allocator share {} over its bound {} ({} slots)",
                    s.telemetry_bytes,
                    allocmeter::telemetry_bound(s.slots_used),
                    s.slots_used
                );
                assert!(used <= bound, "telemetry {used} B over its bound {bound} B");
                if used > peak {
                    (peak, peak_bound) = (used, bound);
                }
                reads += 1;
                std::thread::sleep(Duration::from_millis(5));
            }
            (peak, peak_bound, reads)
        })
    };

    for wave in 0..WAVES {
        let threads: Vec<_> = (0..THREADS_PER_WAVE)
            .map(|t| std::thread::spawn(move || work(wave * THREADS_PER_WAVE + t)))
            .collect();
        let kept: Vec<Vec<Vec<u8>>> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        // Let the aggregator drain and the clients symbolize with it all live.
        std::thread::sleep(Duration::from_millis(300));
        drop(kept);
    }
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    let most_sites = client.join().expect("client: see its assertion");
    let (peak, peak_bound, reads) = watcher.join().expect("watcher: see its assertion");
    let s = allocmeter::stats();
    let sampling = allocmeter::profile::sampling_stats();
    println!(
        "telemetry: peak {:.2} MiB against a bound of {:.2} MiB ({reads} reads); {} slots used, {} samples, {} dropped; at most {most_sites} sites listed",
        peak as f64 / (1 << 20) as f64,
        peak_bound as f64 / (1 << 20) as f64,
        s.slots_used,
        sampling.samples,
        sampling.dropped
    );
    assert!(reads > 50, "the watcher ran");
    assert!(
        sampling.samples > 20_000,
        "sampled a lot: {}",
        sampling.samples
    );
    // Threads come and go; slots are reused, so the allocator's share
    // depends on how many were alive at once, not on the 144 started.
    assert!(s.slots_used < (WAVES * THREADS_PER_WAVE) as u64);
    // More stacks than the table takes: it stopped at its limit ("(other)"
    // takes the rest; the listed sites are merged after trimming, so at most
    // as many).
    assert!(most_sites <= MAX_SITES + 1, "{most_sites} sites listed");
    assert!(most_sites > 50, "the clients saw the sites: {most_sites}");
    allocmeter::set_sample_rate(allocmeter::DEFAULT_SAMPLE_RATE);
}
