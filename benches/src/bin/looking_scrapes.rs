//! Scrapes while clients stall on large reports: an exporter over a service
//! with a few thousand call sites, `--clients` clients (40) that ask for the
//! 1000-site report (`/api/sites?top=1000`) and read none of it, and a
//! scrape of `/metrics` every 100 ms for `--seconds` (30). Prints one JSON
//! object: the scrapes' latency (p50, p99, max), the scrapes not answered
//! 200, the reports refused, the process's RSS before and at its peak
//! (sampled every 2 ms, from a heap trimmed after a first report), and the
//! response budget.
//!
//! `cargo run -p allocmeter-benches --bin looking_scrapes [-- --seconds N --clients N]`
//!
//! In the dev profile: there the call-site generator's stacks stay a few
//! thousand sites once merged by frames, a report of 5 to 9 MB. A release
//! build folds its calls into a few dozen sites (a report of about 200 kB),
//! which holds nothing of the budget.

use std::alloc::System;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use allocmeter::Instrumented;
use allocmeter_exporter::limits::{MAX_BUFFERED_RESPONSE_BYTES, SCRAPE_RESERVED_BYTES};
use allocmeter_test_support::exporter::{loopback, start_built};
use allocmeter_test_support::http::{checked_get, connect_small_window, parse_response};
use allocmeter_test_support::process::{peak_rss, rss_bytes};
use allocmeter_test_support::workers::many_call_sites;

#[global_allocator]
static GLOBAL: Instrumented<System> = Instrumented::new(System);

const SITES: &str = "/api/sites?top=1000";

/// `--name N` from the command line, or `default`.
fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.windows(2)
        .find(|w| w[0] == name)
        .map_or(default, |w| w[1].parse().expect("a whole number"))
}

/// One scrape: its status (0 for no response) and how long it took.
fn scrape(addr: SocketAddr) -> (u16, Duration) {
    let t = Instant::now();
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_secs(10)) else {
        return (0, t.elapsed());
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let _ = write!(stream, "GET /metrics HTTP/1.1\r\nHost: {addr}\r\n\r\n");
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw);
    let status = parse_response(&raw).map_or(0, |r| r.status);
    (status, t.elapsed())
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1e3
}

fn main() {
    let seconds = arg("--seconds", 30);
    let clients = arg("--clients", 40) as usize;
    let (exporter, addr) = start_built(loopback().sample_rate(1024));
    let keep = many_call_sites();
    std::thread::sleep(Duration::from_millis(1500)); // the aggregator drains
    let report_bytes = checked_get(addr, SITES).body.len();
    // The first report's free memory back to the system, so that what the
    // stalled clients cost is measured from what is in use.
    // SAFETY: malloc_trim has no preconditions.
    unsafe { libc::malloc_trim(0) };
    let rss_before = rss_bytes();
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = peak_rss(&stop);
    let stalled: Vec<TcpStream> = (0..clients)
        .map(|_| {
            let mut s = connect_small_window(addr);
            write!(s, "GET {SITES} HTTP/1.1\r\nHost: x\r\n\r\n").expect("send");
            s
        })
        .collect();
    let mut latencies = Vec::new();
    let mut failures = 0;
    let end = Instant::now() + Duration::from_secs(seconds);
    while Instant::now() < end {
        let (status, took) = scrape(addr);
        failures += usize::from(status != 200);
        latencies.push(took);
        std::thread::sleep(Duration::from_millis(100));
    }
    stop.store(true, Ordering::Relaxed);
    let rss_peak = sampler.join().expect("sampler");
    let stats = exporter.http_stats().expect("the server runs");
    latencies.sort();
    let out = serde_json::json!({
        "clients": clients,
        "seconds": seconds,
        "report_bytes": report_bytes,
        "scrapes": latencies.len(),
        "scrape_failures": failures,
        "scrape_latency_ms": {
            "p50": percentile(&latencies, 0.50),
            "p99": percentile(&latencies, 0.99),
            "max": percentile(&latencies, 1.0),
        },
        "refused_503": stats.busy,
        "rss_before_bytes": rss_before,
        "rss_peak_bytes": rss_peak,
        "rss_growth_bytes": rss_peak.saturating_sub(rss_before),
        "budget_bytes": MAX_BUFFERED_RESPONSE_BYTES,
        "scrape_reserved_bytes": SCRAPE_RESERVED_BYTES,
    });
    println!("{out}");
    drop(stalled);
    drop(keep);
}
