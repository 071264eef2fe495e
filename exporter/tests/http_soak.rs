//! 10,000 sequential requests leave the exporter's threads and memory flat,
//! and shutdown with connections open leaves no thread behind: serving
//! holds nothing per request, so a long-lived service cannot be worn down.
//! Its own binary with a single test, so that no other test's threads or
//! allocations are counted.

use std::alloc::System;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use allocmeter::Instrumented;
use allocmeter_test_support::exporter::{loopback, start_built};
use allocmeter_test_support::http::{checked_request, exchange};
use allocmeter_test_support::process::{rss_bytes, thread_names, threads};
use allocmeter_test_support::watchdog::watchdog;

#[global_allocator]
static GLOBAL: Instrumented<System> = Instrumented::new(System);

const REQUESTS: usize = 10_000;

/// The requests cycled through: the endpoints a scraper and the page use, a
/// 404, a HEAD, a 405 and a malformed one.
fn one_request(addr: std::net::SocketAddr, i: usize) {
    match i % 8 {
        0 | 1 => assert_eq!(checked_request(addr, "GET", "/metrics", "").status, 200),
        2 => assert_eq!(
            checked_request(addr, "GET", "/api/snapshot", "").status,
            200
        ),
        3 => assert_eq!(checked_request(addr, "GET", "/api/history", "").status, 200),
        4 => assert_eq!(checked_request(addr, "GET", "/nope", "").status, 404),
        5 => assert_eq!(checked_request(addr, "HEAD", "/", "").status, 200),
        6 => assert_eq!(checked_request(addr, "POST", "/metrics", "").status, 405),
        _ => {
            let got = exchange(addr, b"\x00\x01junk\r\n\r\n", Duration::from_secs(10));
            assert_eq!(got.status(), Some(400));
        }
    }
}

#[test]
fn ten_thousand_requests_leave_threads_and_memory_flat_and_shutdown_leaves_no_thread() {
    let _dog = watchdog("soak test", Duration::from_secs(300));
    let threads_before_start = threads();
    let (exporter, addr) = start_built(
        loopback()
            // A full history from the start: its growth is not the server's.
            .history(4)
            .interval(Duration::from_millis(250)),
    );
    // Warm up: the first scrape loads what it keeps (the process
    // collector, caches); the history fills.
    for i in 0..800 {
        one_request(addr, i);
    }
    std::thread::sleep(Duration::from_secs(1));
    let threads_1 = threads();
    let live_1 = allocmeter::stats().live_bytes;
    let rss_1 = rss_bytes();
    let t = Instant::now();
    let mut most_threads = threads_1;
    for i in 0..REQUESTS {
        one_request(addr, i);
        if i % 500 == 0 {
            most_threads = most_threads.max(threads());
        }
    }
    let took = t.elapsed();
    std::thread::sleep(Duration::from_millis(500)); // lingering sockets close
    let threads_2 = threads();
    let live_2 = allocmeter::stats().live_bytes;
    let rss_2 = rss_bytes();
    let stats = exporter.http_stats().unwrap();
    eprintln!(
        "soak: {REQUESTS} requests in {took:?} ({:.0}/s); threads {threads_1} -> {threads_2} \
         (at most {most_threads}); allocmeter live bytes {live_1} -> {live_2} ({:+}); \
         RSS {rss_1} -> {rss_2} ({:+}); {stats:?}",
        REQUESTS as f64 / took.as_secs_f64(),
        live_2 as i64 - live_1 as i64,
        rss_2 as i64 - rss_1 as i64,
    );
    assert_eq!(threads_2, threads_1, "thread count flat");
    assert_eq!(most_threads, threads_1, "no thread per connection, ever");
    assert!(
        live_2 < live_1 + 256 * 1024,
        "live heap grew by {} bytes",
        live_2 as i64 - live_1 as i64
    );
    assert!(
        rss_2 < rss_1 + 8 * 1024 * 1024,
        "RSS grew by {} bytes",
        rss_2 as i64 - rss_1 as i64
    );

    // Shutdown with idle connections and an unfinished head open.
    let idle: Vec<TcpStream> = (0..50).map(|_| TcpStream::connect(addr).unwrap()).collect();
    let names = thread_names();
    assert_eq!(
        names
            .iter()
            .filter(|n| n.starts_with("allocmeter-http"))
            .count(),
        4,
        "the I/O thread and three workers (scrapes, cheap responses, profiles): {names:?}"
    );
    let t = Instant::now();
    exporter.shutdown();
    let took = t.elapsed();
    let after = threads();
    eprintln!(
        "soak: shutdown took {took:?}; threads {threads_before_start} before start, {after} after shutdown"
    );
    assert!(took < Duration::from_secs(2));
    assert_eq!(after, threads_before_start, "every exporter thread ended");
    drop(idle);
}
