//! Forty clients that ask for the largest report and read none of it can
//! neither make the server hold more than its response budget nor delay or
//! refuse a scrape: `/metrics` keeps a share of the budget and a worker of
//! its own. Its own binary: the call-site report is made large from this
//! process's samples, and the test measures the process's RSS.

use std::alloc::System;
use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use allocmeter::Instrumented;
use allocmeter_exporter::limits::MAX_BUFFERED_RESPONSE_BYTES;
use allocmeter_test_support::exporter::{loopback, start_built};
use allocmeter_test_support::http::{checked_get, connect_small_window};
use allocmeter_test_support::process::rss_bytes;
use allocmeter_test_support::watchdog::watchdog;
use allocmeter_test_support::workers::many_call_sites;

#[global_allocator]
static GLOBAL: Instrumented<System> = Instrumented::new(System);

const SITES: &str = "/api/sites?top=1000";
const CLIENTS: usize = 40;

#[test]
fn stalled_clients_on_large_reports_hold_the_budget_and_never_refuse_a_scrape() {
    let _dog = watchdog("budget test", Duration::from_secs(120));
    let (exporter, addr) = start_built(loopback().sample_rate(1024));
    let keep = many_call_sites();
    std::thread::sleep(Duration::from_millis(1500)); // the aggregator drains
    let body = checked_get(addr, SITES).body.len();
    assert!(body > 2 << 20, "the report is {body} bytes");
    let rss_before = rss_bytes();

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
    let (mut slowest, mut scrapes, mut most_rss) = (Duration::ZERO, 0, rss_before);
    let end = Instant::now() + Duration::from_secs(30);
    while Instant::now() < end {
        let t = Instant::now();
        let reply = checked_get(addr, "/metrics");
        let took = t.elapsed();
        assert_eq!(reply.status, 200, "scrape {scrapes} refused after {took:?}");
        slowest = slowest.max(took);
        scrapes += 1;
        most_rss = most_rss.max(rss_bytes());
        std::thread::sleep(Duration::from_millis(100));
    }
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
    // The budget, plus the reports being built (the profiles' worker builds
    // one at a time; its JSON tree is a few times the body) and the
    // scrapes' own.
    let bound = MAX_BUFFERED_RESPONSE_BYTES + 6 * body + (16 << 20);
    assert!(
        grew < bound as u64,
        "RSS grew by {grew} bytes, more than the budget's bound of {bound}"
    );
    drop(stalled);
    drop(keep);
}
