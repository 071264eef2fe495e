//! Forty clients that ask for the largest report and read none of it can
//! neither make the server hold more than its response budget nor delay or
//! refuse a scrape: `/metrics` keeps a share of the budget and a worker of
//! its own; and neither can more stalled clients than the server keeps
//! connections, with others asking for the reports as fast as they are
//! answered. Its own binary: the call-site report is made large from this
//! process's samples, and the tests measure the process's RSS, one at a
//! time.

use std::alloc::System;
use std::io::Write;
use std::net::SocketAddr;
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use allocmeter::Instrumented;
use allocmeter_exporter::limits::{MAX_BUFFERED_RESPONSE_BYTES, MAX_CONNECTIONS};
use allocmeter_test_support::exporter::{loopback, start_built};
use allocmeter_test_support::http::{checked_get, connect_small_window, exchange, parse_response};
use allocmeter_test_support::process::{peak_rss, raise_fd_limit, rss_bytes};
use allocmeter_test_support::watchdog::watchdog;
use allocmeter_test_support::workers::many_call_sites;

#[global_allocator]
static GLOBAL: Instrumented<System> = Instrumented::new(System);

const SITES: &str = "/api/sites?top=1000";
const CLIENTS: usize = 40;

/// The tests of this binary run one at a time: each measures the process.
fn one_at_a_time() -> MutexGuard<'static, ()> {
    static ONE: Mutex<()> = Mutex::new(());
    ONE.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[test]
fn stalled_clients_on_large_reports_hold_the_budget_and_never_refuse_a_scrape() {
    let _one = one_at_a_time();
    let _dog = watchdog("budget test", Duration::from_secs(120));
    let (exporter, addr) = start_built(loopback().sample_rate(1024));
    let keep = many_call_sites();
    std::thread::sleep(Duration::from_millis(1500)); // the aggregator drains
    let body = checked_get(addr, SITES).body.len();
    assert!(body > 2 << 20, "the report is {body} bytes");
    // The first report's free memory back to the system, so that what the
    // stalled clients cost is measured from what is in use.
    // SAFETY: malloc_trim has no preconditions.
    unsafe { libc::malloc_trim(0) };
    let rss_before = rss_bytes();
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = peak_rss(&stop);

    // Forty clients ask for the report and read nothing of it.
    let stalled: Vec<TcpStream> = (0..CLIENTS)
        .map(|_| {
            let mut s = connect_small_window(addr);
            write!(s, "GET {SITES} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
            s
        })
        .collect();

    // Meanwhile, a scraper every 100 ms, for as long as the reports take
    // to render (the profiles' worker renders them one after another, about
    // one a second in a debug build).
    let (mut slowest, mut scrapes) = (Duration::ZERO, 0);
    let end = Instant::now() + Duration::from_secs(30);
    while Instant::now() < end {
        let t = Instant::now();
        let reply = checked_get(addr, "/metrics");
        let took = t.elapsed();
        assert_eq!(reply.status, 200, "scrape {scrapes} refused after {took:?}");
        slowest = slowest.max(took);
        scrapes += 1;
        std::thread::sleep(Duration::from_millis(100));
    }
    stop.store(true, Ordering::Relaxed);
    let most_rss = sampler.join().unwrap();
    let stats = exporter.http_stats().unwrap();
    let grew = most_rss.saturating_sub(rss_before);
    eprintln!(
        "budget: report {body} bytes; {CLIENTS} stalled clients; {scrapes} scrapes, slowest \
         {slowest:?}; RSS {rss_before} -> at most {most_rss} (+{grew}); {stats:?}"
    );
    assert!(
        slowest < Duration::from_secs(1),
        "a scrape took {slowest:?}"
    );
    assert!(stats.busy > 0, "reports beyond the budget were refused");
    // What the design allows: the whole budget held for the stalled clients;
    // one report in construction (the profiles' worker builds one at a
    // time: its ranked, symbolized sites, about 1.2 times the body, and the
    // body itself, written once at its reserved size); and 4 MiB of slack
    // for the scrapes' bodies, this test's threads and the allocator's
    // rounding.
    let bound = MAX_BUFFERED_RESPONSE_BYTES + 5 * body / 2 + (4 << 20);
    assert!(
        grew < bound as u64,
        "RSS grew by {grew} bytes, more than the budget's bound of {bound}"
    );
    drop(stalled);
    drop(keep);
}

/// A scrape every 100 ms for `period`: how many, the statuses that were not
/// 200 (0 for no response at all), and the slowest.
fn scrape_for(addr: SocketAddr, period: Duration) -> (usize, Vec<u16>, Duration) {
    let (mut scrapes, mut failed, mut slowest) = (0, Vec::new(), Duration::ZERO);
    let end = Instant::now() + period;
    while Instant::now() < end {
        let t = Instant::now();
        let request = format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\n\r\n");
        let reply = exchange(addr, request.as_bytes(), Duration::from_secs(10));
        slowest = slowest.max(t.elapsed());
        let status = parse_response(&reply.received).map_or(0, |r| r.status);
        if status != 200 {
            failed.push(status);
        }
        scrapes += 1;
        std::thread::sleep(Duration::from_millis(100));
    }
    (scrapes, failed, slowest)
}

/// The routes other than `/metrics` that clients in these tests ask for.
const REPORTS: [&str; 5] = [
    SITES,
    "/api/sites?top=100",
    "/debug/pprof/heap",
    "/api/spikes",
    "/",
];

#[test]
fn more_stalled_clients_than_connections_and_a_flood_on_the_reports_never_refuse_a_scrape() {
    let _one = one_at_a_time();
    let _dog = watchdog("scrape reserve test", Duration::from_secs(120));
    let limit = raise_fd_limit();
    assert!(
        limit >= 2000,
        "needs ~1,500 descriptors, the limit is {limit}"
    );
    let (exporter, addr) = start_built(loopback().sample_rate(1024));
    let keep = many_call_sites();
    std::thread::sleep(Duration::from_millis(1500)); // the aggregator drains
    assert_eq!(checked_get(addr, SITES).status, 200);
    let stop = Arc::new(AtomicBool::new(false));
    // More clients than the server keeps connections, each asking for a
    // report and reading none of it: as fast as they connect up to the
    // limit and beyond, then one more every 10 ms.
    let stalled = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut held = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let mut s = connect_small_window(addr);
                let path = REPORTS[held.len() % REPORTS.len()];
                let _ = write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n");
                held.push(s);
                let pause = if held.len() < MAX_CONNECTIONS + 64 {
                    1
                } else {
                    10
                };
                std::thread::sleep(Duration::from_millis(pause));
            }
            held.len()
        })
    };
    // And clients that ask for the reports, the profile and the page as
    // fast as they are answered (mostly 503, the budget being held).
    let flood: Vec<_> = (0..6)
        .map(|i| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut asked = 0usize;
                while !stop.load(Ordering::Relaxed) {
                    let path = REPORTS[(i + asked) % REPORTS.len()];
                    let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n");
                    let _ = exchange(addr, request.as_bytes(), Duration::from_secs(10));
                    asked += 1;
                }
                asked
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(1500)); // the connections fill up
    let (scrapes, failed, slowest) = scrape_for(addr, Duration::from_secs(20));
    stop.store(true, Ordering::Relaxed);
    let held = stalled.join().unwrap();
    let asked: usize = flood.into_iter().map(|f| f.join().unwrap()).sum();
    let stats = exporter.http_stats().unwrap();
    eprintln!(
        "scrape reserve: {held} stalled clients, {asked} flooding requests; {scrapes} scrapes, \
         not 200: {failed:?}, slowest {slowest:?}; {stats:?}"
    );
    assert!(
        held > MAX_CONNECTIONS,
        "more stalled clients than connections"
    );
    assert!(
        stats.evicted > 0,
        "the connection limit was reached: {stats:?}"
    );
    assert!(failed.is_empty(), "scrapes not answered 200: {failed:?}");
    // A liveness bound, not a speed claim.
    assert!(
        slowest < Duration::from_secs(1),
        "a scrape took {slowest:?}"
    );
    drop(keep);
}
