//! Looking does not move the service's figures: everything the exporter
//! allocates (its threads, the renders it does on a service's thread, its
//! start) is allocmeter's, exactly, and shown in families of its own.
//!
//! The service here is this process's main thread: it builds a known heap,
//! starts the exporter, and then stays quiescent. The looking is done by a
//! child process (this binary again, in client mode), so that none of the
//! client's allocations land in the service's counters. While the child
//! scrapes, looks hard and scrapes again, the main thread only waits on a
//! pipe and on the child (no allocation: checked with its own counters), and
//! no other thread of the service allocates (the runner's watchdog only
//! sleeps). So the service's counters cannot move between the scrapes, and
//! the figures must be identical to the byte: any difference is the
//! exporter's allocations counted as the service's.
//!
//! `harness = false`: the service must have the process to itself.

use std::alloc::System;
use std::collections::BTreeMap;
use std::hint::black_box;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

use allocmeter::Instrumented;
use allocmeter_exporter::SortBy;
use allocmeter_test_support::exporter::{loopback, start_built};
use allocmeter_test_support::http;
use allocmeter_test_support::prometheus_text::parse_samples;
use allocmeter_test_support::runner;

#[global_allocator]
static GLOBAL: Instrumented<System> = Instrumented::new(System);

/// The child's environment variable: the exporter's address, and where to
/// write what it scraped.
const CHILD_ENV: &str = "ALLOCMETER_OWN_ACCOUNTING_CHILD";

/// The service's families that must not move while someone looks.
const SERVICE_FAMILIES: &[&str] = &[
    "allocmeter_heap_live_bytes",
    "allocmeter_heap_live_objects",
    "allocmeter_alloc_bytes_total",
    "allocmeter_allocs_total",
    "allocmeter_free_bytes_total",
    "allocmeter_frees_total",
    "allocmeter_alloc_size_bytes_count",
    "allocmeter_alloc_size_bytes_sum",
    "allocmeter_free_size_bytes_count",
];

/// The exporter's own families: its live heap and what it allocated.
const EXPORTER_LIVE: &str = "allocmeter_exporter_heap_live_bytes";
const EXPORTER_ALLOC: &str = "allocmeter_exporter_alloc_bytes_total";
const EXPORTER_ALLOCS: &str = "allocmeter_exporter_allocs_total";

/// The service's heap: blocks of many sizes from a few call sites, kept.
#[inline(never)]
fn build_heap() -> Vec<Vec<u8>> {
    let mut kept = Vec::new();
    for i in 0..4000usize {
        let size = 32 + (i * 977) % 8000;
        kept.push(black_box(vec![i as u8; size]));
    }
    kept
}

/// What one scrape of `/metrics` and `/api/snapshot` read.
#[derive(Debug)]
struct Reading {
    metrics: BTreeMap<String, f64>,
    snapshot: serde_json::Value,
    spikes: serde_json::Value,
}

fn read(addr: SocketAddr) -> Reading {
    let metrics = http::fetch(addr, "GET", "/metrics");
    assert_eq!(metrics.status, 200);
    let snapshot = http::fetch(addr, "GET", "/api/snapshot");
    assert_eq!(snapshot.status, 200);
    let spikes = http::fetch(addr, "GET", "/api/spikes");
    assert_eq!(spikes.status, 200);
    Reading {
        metrics: parse_samples(&metrics.body),
        snapshot: serde_json::from_str(&snapshot.body).expect("snapshot JSON"),
        spikes: serde_json::from_str(&spikes.body).expect("spikes JSON"),
    }
}

/// Looks hard: profiles, every site, the page, many small requests, and
/// slow readers holding large bodies.
fn look_hard(addr: SocketAddr) {
    let slow: Vec<_> = (0..6)
        .map(|i| {
            let mut s = http::connect_small_window(addr);
            let path = if i % 2 == 0 {
                "/api/sites?top=1000"
            } else {
                "/debug/pprof/heap"
            };
            write!(
                s,
                "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
            )
            .unwrap();
            s
        })
        .collect();
    for round in 0..4 {
        for path in [
            "/debug/pprof/heap",
            "/debug/pprof/allocs",
            "/api/sites?top=1000",
            "/api/sites?top=1000&by=alloc_space",
            "/api/spikes",
            "/api/history",
            "/",
            "/app.js",
            "/metrics",
        ] {
            let reply = http::fetch_bytes(addr, "GET", path);
            assert_eq!(reply.status, 200, "{path} in round {round}");
        }
    }
    std::thread::sleep(Duration::from_millis(300));
    // The slow readers read their bodies at last, then go.
    for s in slow {
        let got = http::read_until_end(s, Duration::from_secs(30));
        assert_eq!(got.status(), Some(200));
    }
}

/// The child: scrape, look hard, scrape; say `ready` and wait for the
/// parent's `go` (it renders in process meanwhile); scrape again. Writes the
/// three readings as JSON to `out`.
fn child(addr: SocketAddr, out: &str) {
    let before = read(addr);
    look_hard(addr);
    let after_looking = read(addr);
    let mut stdout = std::io::stdout();
    stdout.write_all(b"ready\n").unwrap();
    stdout.flush().unwrap();
    let mut go = [0u8; 3];
    std::io::stdin().read_exact(&mut go).unwrap();
    assert_eq!(&go, b"go\n");
    let after_in_process = read(addr);
    let all: Vec<serde_json::Value> = [before, after_looking, after_in_process]
        .into_iter()
        .map(|r| serde_json::json!({"metrics": r.metrics, "snapshot": r.snapshot, "spikes": r.spikes}))
        .collect();
    std::fs::write(out, serde_json::to_vec(&all).unwrap()).unwrap();
}

fn metric(reading: &serde_json::Value, name: &str) -> f64 {
    reading["metrics"][name]
        .as_f64()
        .unwrap_or_else(|| panic!("{name} missing from the scrape"))
}

fn assert_service_unmoved(a: &serde_json::Value, b: &serde_json::Value, what: &str) {
    let mut moved = Vec::new();
    for name in SERVICE_FAMILIES {
        let (x, y) = (metric(a, name), metric(b, name));
        if x != y {
            moved.push(format!("{name}: {x} -> {y} ({:+})", y - x));
        }
    }
    for field in [
        "live_bytes",
        "live_objects",
        "alloc_bytes",
        "allocs",
        "free_bytes",
        "frees",
    ] {
        let (x, y) = (
            &a["snapshot"]["stats"][field],
            &b["snapshot"]["stats"][field],
        );
        if x != y {
            moved.push(format!("/api/snapshot stats.{field}: {x} -> {y}"));
        }
    }
    assert!(
        moved.is_empty(),
        "{what}: the service's figures moved:\n  {}",
        moved.join("\n  ")
    );
}

/// A quiescent service, looked at hard from outside and rendered in
/// process: its figures stay identical to the byte, and the exporter's own
/// families show what it allocated.
fn looking_does_not_move_the_service_s_figures() {
    allocmeter::set_sample_rate(4096);
    let heap = build_heap();
    let (exporter, addr) = start_built(
        loopback()
            .interval(Duration::from_millis(100))
            .spike_factor(2.0)
            // Above what spawning the client allocates in an interval, far
            // below what looking hard allocates.
            .spike_min_rate(1 << 20),
    );
    let out = std::env::temp_dir().join(format!("own_accounting_{}.json", std::process::id()));
    let mut child = Command::new(std::env::current_exe().unwrap())
        .env(CHILD_ENV, format!("{addr} {}", out.display()))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn the client");
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = child.stdout.take().unwrap();

    // From here until the child has exited, this thread allocates nothing
    // but what `top_sites` hands back (checked below).
    let quiet = allocmeter::thread_stats();
    let mut ready = [0u8; 6];
    stdout.read_exact(&mut ready).expect("the child looked");
    assert_eq!(&ready, b"ready\n");
    let waited = allocmeter::thread_stats();
    // An in-process render on the service's thread: the exporter's, but for
    // the copy it hands back, which the service holds and frees.
    let sites = exporter.top_sites(1000, SortBy::InuseSpace);
    let handed_back = sites.len();
    // What the copy handed back allocated: what a clone of it allocates.
    let (copy, cloned) = allocmeter::measure(|| black_box(sites.clone()));
    drop(copy);
    drop(sites);
    let rendered = allocmeter::thread_stats();
    stdin.write_all(b"go\n").unwrap();
    let status = child.wait().unwrap();
    let end = allocmeter::thread_stats();
    assert!(status.success(), "the client failed: {status}");
    assert_eq!(quiet, waited, "the service thread allocated while waiting");
    assert_eq!(rendered, end, "the service thread allocated while waiting");
    assert!(handed_back >= 1, "top_sites listed the heap: {handed_back}");

    let readings: Vec<serde_json::Value> =
        serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    let _ = std::fs::remove_file(&out);
    let (before, looked, in_process) = (&readings[0], &readings[1], &readings[2]);
    assert_service_unmoved(before, looked, "looking hard");

    // The exporter's families moved instead, by what it allocated.
    for r in [before, looked, in_process] {
        assert!(metric(r, EXPORTER_LIVE) > 0.0);
        assert!(
            metric(r, "allocmeter_telemetry_bytes") >= metric(r, EXPORTER_LIVE),
            "the exporter's heap is in allocmeter_telemetry_bytes"
        );
    }
    assert!(metric(looked, EXPORTER_ALLOC) > metric(before, EXPORTER_ALLOC) + 1e6);
    assert!(metric(looked, EXPORTER_ALLOCS) > metric(before, EXPORTER_ALLOCS) + 1000.0);

    // In process: the live heap is unmoved (the copy was freed), and what the
    // service allocated is exactly the copy `top_sites` handed back and the
    // test's clone of it, which allocate the same.
    for name in ["allocmeter_heap_live_bytes", "allocmeter_heap_live_objects"] {
        assert_eq!(metric(looked, name), metric(in_process, name), "{name}");
    }
    let (rendered_bytes, rendered_allocs) = (
        metric(in_process, "allocmeter_alloc_bytes_total")
            - metric(looked, "allocmeter_alloc_bytes_total"),
        metric(in_process, "allocmeter_allocs_total") - metric(looked, "allocmeter_allocs_total"),
    );
    assert_eq!(
        (rendered_bytes as u64, rendered_allocs as u64),
        (2 * cloned.alloc_bytes, 2 * cloned.allocs),
        "the service allocated the copy handed back and its clone, nothing else"
    );
    assert!(metric(in_process, EXPORTER_ALLOC) > metric(looked, EXPORTER_ALLOC));

    // The spike detector saw no spike while the service was looked at
    // (read by the child after looking; the in-process renders after it
    // allocate the copies handed back, which may well be a spike).
    let spikes = &looked["spikes"];
    assert_eq!(spikes["spikes"].as_array().unwrap().len(), 0, "{spikes}");
    drop(exporter);
    drop(heap);
    allocmeter::set_sample_rate(allocmeter::DEFAULT_SAMPLE_RATE);
}

/// Every render the handle does on a service's thread (profiles, spike
/// reports, site reports, a scrape of the collector in the service's own
/// registry) is allocmeter's: once the service has dropped what it got
/// back, its live heap is where it was, to the byte and the block, and the
/// exporter's allocations moved instead.
fn in_process_renders_leave_the_service_s_heap_as_it_was() {
    allocmeter::set_sample_rate(4096);
    let heap = build_heap();
    let exporter = loopback()
        .serve_http(false)
        .const_label("service", "checkout")
        .start()
        .expect("exporter starts");
    let registry = prometheus::Registry::new();
    registry.register(Box::new(exporter.collector())).unwrap();
    type Render<'a> = (&'a str, Box<dyn Fn() + 'a>);
    let renders: Vec<Render> = vec![
        (
            "top_sites",
            Box::new(|| drop(black_box(exporter.top_sites(1000, SortBy::AllocSpace)))),
        ),
        (
            "heap_profile",
            Box::new(|| drop(black_box(exporter.heap_profile()))),
        ),
        ("spikes", Box::new(|| drop(black_box(exporter.spikes())))),
        (
            "collector",
            Box::new(|| {
                let families = registry.gather();
                assert!(
                    families
                        .iter()
                        .any(|f| f.name() == "allocmeter_heap_live_bytes")
                );
                drop(families);
            }),
        ),
    ];
    for round in 0..2 {
        for (name, render) in &renders {
            let before = allocmeter::stats_split();
            render();
            let after = allocmeter::stats_split();
            let (b, a) = (before.program, after.program);
            assert_eq!(
                (b.live_bytes, b.live_objects),
                (a.live_bytes, a.live_objects),
                "{name} (round {round}) moved the service's live heap"
            );
            // (The spike report, with no spike, and the collector's scrape,
            // with no per-site series, may allocate nothing.)
            let renders_something = matches!(*name, "top_sites" | "heap_profile");
            assert!(
                after.internal.alloc_bytes > before.internal.alloc_bytes || !renders_something,
                "{name}: the render is allocmeter's"
            );
        }
    }
    drop(renders);
    drop(registry);
    drop(exporter);
    drop(heap);
    allocmeter::set_sample_rate(allocmeter::DEFAULT_SAMPLE_RATE);
}

fn main() {
    if let Ok(arg) = std::env::var(CHILD_ENV) {
        let (addr, out) = arg.split_once(' ').expect("ADDR OUT");
        child(addr.parse().expect("an address"), out);
        return;
    }
    runner::run(
        &[
            (
                "looking_does_not_move_the_service_s_figures",
                looking_does_not_move_the_service_s_figures,
            ),
            (
                "in_process_renders_leave_the_service_s_heap_as_it_was",
                in_process_renders_leave_the_service_s_heap_as_it_was,
            ),
        ],
        Duration::from_secs(240),
    );
}
