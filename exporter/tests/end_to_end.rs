//! End to end: a real exporter on a real port, scraped over real HTTP.

use std::alloc::System;
use std::hint::black_box;
use std::net::TcpListener;

use allocmeter::Instrumented;
use allocmeter_exporter::{Exporter, METRICS_CONTENT_TYPE, StartError};
use allocmeter_test_support::exporter::start_default_exporter;
use allocmeter_test_support::http::fetch;
use allocmeter_test_support::prometheus_text::parse_samples;

#[global_allocator]
static GLOBAL: Instrumented<System> = Instrumented::new(System);

const COUNTERS: &[&str] = &[
    "allocmeter_alloc_bytes_total",
    "allocmeter_allocs_total",
    "allocmeter_frees_total",
    "allocmeter_free_bytes_total",
    "allocmeter_alloc_failures_total",
];

#[test]
fn scraped_counters_move_by_at_least_what_a_thread_allocated() {
    let (_exporter, addr) = start_default_exporter();
    assert!(addr.ip().is_loopback());
    assert_ne!(addr.port(), 0);

    let before = parse_samples(&fetch(addr, "GET", "/metrics").body);

    const BLOCK: usize = 1 << 20;
    const BLOCKS: usize = 16;
    let worker = std::thread::spawn(|| {
        let (blocks, used) = allocmeter::measure(|| {
            (0..BLOCKS)
                .map(|_| black_box(vec![1u8; BLOCK]))
                .collect::<Vec<_>>()
        });
        assert_eq!(used.allocs, BLOCKS as u64 + 1);
        blocks
    });
    let blocks = worker.join().unwrap();

    let reply = fetch(addr, "GET", "/metrics");
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("content-type"), Some(METRICS_CONTENT_TYPE));
    let after = parse_samples(&reply.body);

    let moved = |name: &str| after[name] - before[name];
    let known = (BLOCK * BLOCKS) as f64;
    assert!(
        moved("allocmeter_alloc_bytes_total") >= known,
        "alloc bytes moved {}",
        moved("allocmeter_alloc_bytes_total")
    );
    assert!(moved("allocmeter_allocs_total") >= BLOCKS as f64);
    assert!(
        after["allocmeter_heap_live_bytes"] >= known,
        "the blocks are still held"
    );
    // The size histogram saw the 1 MiB blocks in the (512 KiB, 1 MiB] bucket.
    let le_1m = "allocmeter_alloc_size_bytes_bucket{le=\"1048576\"}";
    let le_512k = "allocmeter_alloc_size_bytes_bucket{le=\"524288\"}";
    let in_bucket = |s: &std::collections::BTreeMap<String, f64>| s[le_1m] - s[le_512k];
    assert!(in_bucket(&after) - in_bucket(&before) >= BLOCKS as f64);
    assert_eq!(
        after["allocmeter_alloc_size_bytes_count"],
        after["allocmeter_alloc_size_bytes_bucket{le=\"+Inf\"}"],
        "_count equals the +Inf bucket"
    );
    // Process metrics are served beside ours.
    assert!(after.contains_key("process_resident_memory_bytes"));
    assert!(after.contains_key("process_start_time_seconds"));
    drop(blocks);
}

#[test]
fn counters_never_go_down_between_scrapes() {
    let (_exporter, addr) = start_default_exporter();
    let churn = std::thread::spawn(|| {
        for i in 0..2000usize {
            let v: Vec<u64> = black_box((0..(i % 300)).map(|x| x as u64).collect());
            let mut s = String::new();
            for _ in 0..(i % 50) {
                s.push('x');
            }
            drop(black_box((v, s)));
        }
    });
    let mut previous = parse_samples(&fetch(addr, "GET", "/metrics").body);
    for _ in 0..25 {
        let current = parse_samples(&fetch(addr, "GET", "/metrics").body);
        for (series, value) in &current {
            let monotonic = COUNTERS.iter().any(|c| series.starts_with(c))
                || series.starts_with("allocmeter_reallocs_total")
                || series.starts_with("allocmeter_realloc_delta_bytes_total")
                || series.starts_with("allocmeter_alloc_size_bytes")
                || series.starts_with("allocmeter_free_size_bytes");
            if monotonic {
                let before = previous.get(series).copied().unwrap_or(0.0);
                assert!(value >= &before, "{series} went down: {before} -> {value}");
            }
        }
        previous = current;
    }
    churn.join().unwrap();
}

#[test]
fn unknown_paths_and_methods_get_clear_errors() {
    let (_exporter, addr) = start_default_exporter();
    assert_eq!(fetch(addr, "GET", "/nope").status, 404);
    let post = fetch(addr, "POST", "/metrics");
    assert_eq!(post.status, 405);
    assert_eq!(post.header("allow"), Some("GET, HEAD"));
    let page = fetch(addr, "GET", "/");
    assert_eq!(page.status, 200);
    assert!(
        page.header("content-type")
            .unwrap()
            .starts_with("text/html")
    );
    assert_eq!(
        page.body,
        allocmeter_dashboard::INDEX_HTML,
        "the page is dashboard/index.html"
    );
    // Still serving after the errors.
    assert_eq!(fetch(addr, "GET", "/metrics?x=1").status, 200);
}

#[test]
fn a_taken_port_is_an_error_naming_the_address() {
    let holder = TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = holder.local_addr().unwrap().to_string();
    let err = Exporter::builder()
        .bind(taken.clone())
        .start()
        .expect_err("port is taken");
    match &err {
        StartError::Bind { addr, source } => {
            assert_eq!(addr, &taken);
            assert_eq!(source.kind(), std::io::ErrorKind::AddrInUse);
        }
        other => panic!("expected a bind error, got {other:?}"),
    }
    let message = err.to_string();
    assert!(message.contains(&taken), "{message}");
    assert!(message.contains("already in use"), "{message}");
}

#[test]
fn an_unparsable_address_is_an_error_naming_it() {
    for bad in ["nonsense", "127.0.0.1:notaport", "300.1.1.1:80"] {
        let err = Exporter::builder()
            .bind(bad)
            .start()
            .expect_err("address is invalid");
        assert!(
            matches!(err, StartError::InvalidAddress { .. }),
            "{bad}: {err:?}"
        );
        assert!(err.to_string().contains(bad), "{}", err);
    }
}

#[test]
fn shutdown_stops_serving_and_frees_the_port() {
    let (exporter, addr) = start_default_exporter();
    assert_eq!(fetch(addr, "GET", "/metrics").status, 200);
    let history = exporter.history_points(None);
    assert!(!history.is_empty());
    assert!(exporter.snapshot().stats.alloc_bytes > 0);
    exporter.shutdown();
    // The port can be bound again at once: shutdown joined the server's
    // threads, and the listener went with them.
    let again = Exporter::builder()
        .bind(addr.to_string())
        .start()
        .unwrap_or_else(|e| panic!("port still taken after shutdown returned: {e}"));
    assert_eq!(again.local_addr(), addr);
    // And the old address no longer answers with the old exporter's data:
    // the new one serves it.
    assert_eq!(fetch(addr, "GET", "/metrics").status, 200);
}

#[test]
fn the_aggregator_keeps_a_bounded_history() {
    let exporter = Exporter::builder()
        .bind("127.0.0.1:0")
        .interval(std::time::Duration::from_millis(10))
        .history(5)
        .start()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let history = exporter.history_points(None);
    assert_eq!(history.len(), 5, "history is full and no longer");
    assert!(
        // Two ticks can fall within one millisecond when one ran late.
        history.windows(2).all(|w| w[0].uptime_ms <= w[1].uptime_ms),
        "oldest first"
    );
    assert!(
        history
            .windows(2)
            .all(|w| w[0].alloc_bytes <= w[1].alloc_bytes)
    );
}

#[test]
fn api_stats_agrees_with_the_process_own_stats() {
    let (_exporter, addr) = start_default_exporter();
    // Kept alive across both reads, so the live figures must include it.
    let block = black_box(vec![7u8; 3 << 20]);
    // The body has the service's share: the exporter's own allocations,
    // serving this request among them, are left out.
    let before = allocmeter::stats_split().program;
    let reply = fetch(addr, "GET", "/api/stats");
    let after = allocmeter::stats_split().program;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("content-type"), Some("application/json"));
    let v: serde_json::Value = serde_json::from_str(&reply.body).expect("valid JSON");
    assert_eq!(v["version"], 1);
    assert!(v["unix_ms"].as_u64().unwrap() > 1_600_000_000_000);
    let s = &v["stats"];
    let field = |name: &str| s[name].as_u64().unwrap_or_else(|| panic!("no {name}"));
    // Counters read by the handler lie between two reads made around it.
    for (name, lo, hi) in [
        ("alloc_bytes", before.alloc_bytes, after.alloc_bytes),
        ("allocs", before.allocs, after.allocs),
        ("frees", before.frees, after.frees),
        ("free_bytes", before.free_bytes, after.free_bytes),
        ("failures", before.failures, after.failures),
    ] {
        let got = field(name);
        assert!(lo <= got && got <= hi, "{name}: {got} not in [{lo}, {hi}]");
    }
    assert_eq!(
        field("live_bytes"),
        field("alloc_bytes") - field("free_bytes")
    );
    assert!(field("live_bytes") >= block.len() as u64);
    let by_size = s["by_size"].as_array().unwrap();
    assert_eq!(by_size.len(), allocmeter::size_class::NUM_SIZE_CLASSES);
    let class_allocs: u64 = by_size.iter().map(|c| c["allocs"].as_u64().unwrap()).sum();
    assert_eq!(class_allocs, field("allocs"));
    assert_eq!(by_size[0]["max_size"], 8);
    assert!(by_size.last().unwrap()["max_size"].is_null());
    assert_eq!(v["sampling"]["rate"], allocmeter::sample_rate());
    drop(block);
}
