//! Spikes end to end: a real exporter ticking every 100 ms on a real port,
//! a real burst of allocations from a function with a distinctive name, and
//! the JSON API read over real HTTP.
//!
//! One test in its own binary: the spike detector sees the whole process's
//! allocation rate, so nothing else may allocate in bulk meanwhile.

use std::alloc::System;
use std::hint::black_box;
use std::time::{Duration, Instant};

use allocmeter::Instrumented;
use allocmeter_test_support::exporter::{
    get_json, json_f64 as f, json_u64 as u, loopback, start_built, unix_ms_now,
};
use allocmeter_test_support::http::fetch;
use serde_json::Value;

#[global_allocator]
static GLOBAL: Instrumented<System> = Instrumented::new(System);

const INTERVAL: Duration = Duration::from_millis(100);
const K: f64 = 4.0;
/// The floor: over this test's own small allocations (parsing the JSON it
/// fetches, about 1 MB/s at most), under the burst (GB/s) and under what
/// the exporter's first symbolization allocates (about 80 MB in half a
/// second here), which must not count.
const MIN_RATE: u64 = 16 << 20;
const BLOCK: usize = 1 << 20;

/// The burst: `blocks` blocks of 1 MiB, each freed at once.
#[inline(never)]
fn spike_burst_allocates_here(blocks: usize) {
    for _ in 0..blocks {
        drop(black_box(Vec::<u8>::with_capacity(BLOCK)));
    }
}

#[test]
fn a_real_spike_is_detected_attributed_and_served() {
    let (exporter, addr) = start_built(
        loopback()
            .interval(INTERVAL)
            .history(600)
            .spike_factor(K)
            .spike_min_rate(MIN_RATE)
            .spike_baseline(Duration::from_secs(3)),
    );

    // A quiet second: the baseline.
    std::thread::sleep(Duration::from_secs(1));
    assert!(!exporter.spike_status().active);

    // One second at several GB/s.
    let dropped_before = allocmeter::profile::sampling_stats().dropped;
    let burst_start_ms = unix_ms_now();
    // The service's share: what the spike detector and /api/snapshot see.
    let before = allocmeter::stats_split().program;
    let mut blocks = 0usize;
    let deadline = Instant::now() + Duration::from_secs(1);
    while Instant::now() < deadline {
        spike_burst_allocates_here(4);
        blocks += 4;
        std::thread::sleep(Duration::from_millis(1));
    }
    let after = allocmeter::stats_split().program;
    let burst_end_ms = unix_ms_now();
    let dropped = allocmeter::profile::sampling_stats().dropped - dropped_before;
    let burst_bytes = (blocks * BLOCK) as u64;

    // Wait (in process, without symbolizing) until the spike has ended.
    let wait = Instant::now() + Duration::from_secs(10);
    loop {
        let quiet_since_burst = exporter
            .history_points(Some(burst_end_ms + 3 * INTERVAL.as_millis() as u64))
            .len()
            >= 2;
        if quiet_since_burst && !exporter.spike_status().active {
            break;
        }
        assert!(Instant::now() < wait, "the spike never ended");
        std::thread::sleep(INTERVAL);
    }

    // /api/spikes: the one spike overlapping the burst.
    let body = get_json(addr, "/api/spikes", 200);
    assert_eq!(f(&body, "k"), K);
    assert_eq!(u(&body, "min_bytes_per_sec"), MIN_RATE);
    assert_eq!(f(&body, "baseline_secs"), 3.0);
    let all = body["spikes"].as_array().unwrap();
    let overlapping: Vec<&Value> = all
        .iter()
        .filter(|s| {
            u(s, "start_unix_ms") < burst_end_ms
                && s["end_unix_ms"]
                    .as_u64()
                    .is_none_or(|end| end >= burst_start_ms)
        })
        .collect();
    assert_eq!(overlapping.len(), 1, "one spike over the burst: {body}");
    let spike = overlapping[0];
    assert_eq!(spike["active"], false, "{spike}");
    let start_ms = u(spike, "start_unix_ms");
    let end_ms = u(spike, "end_unix_ms");
    assert!(start_ms < end_ms);
    assert!(
        start_ms <= burst_start_ms + INTERVAL.as_millis() as u64 + 50,
        "starts with the burst: {start_ms} vs {burst_start_ms}"
    );
    let baseline = f(spike, "baseline_bytes_per_sec");
    let peak = f(spike, "peak_bytes_per_sec");
    assert!(peak > K * baseline && peak > MIN_RATE as f64, "{spike}");

    // Its counters are exact: the difference of the history's counters at
    // its start and end points.
    let history = get_json(addr, "/api/history", 200);
    assert_eq!(u(&history, "interval_ms"), 100);
    assert_eq!(u(&history, "capacity"), 600);
    let points = history["points"].as_array().unwrap();
    let at = |ms: u64| {
        points
            .iter()
            .position(|p| u(p, "unix_ms") == ms)
            .unwrap_or_else(|| panic!("no history point at {ms}"))
    };
    let (first, last) = (at(start_ms), at(end_ms));
    for field in ["alloc_bytes", "allocs"] {
        assert_eq!(
            u(spike, field),
            u(&points[last], field) - u(&points[first], field),
            "{field}"
        );
    }
    // The points inside the spike, and only they, are marked.
    for (i, p) in points.iter().enumerate() {
        let inside = i > first && i <= last;
        let near = i + 3 > first && i < last + 3;
        if inside || near {
            assert_eq!(p["spike"], inside, "point {i} ({first}..={last}): {p}");
        }
    }
    // And they agree with the counters read around the burst: what the
    // spike left out or took in at either edge is an interval under the
    // threshold, at most `threshold × interval` bytes each.
    let longest_gap = points
        .windows(2)
        .map(|w| u(&w[1], "uptime_ms") - u(&w[0], "uptime_ms"))
        .max()
        .unwrap() as f64
        / 1000.0;
    let slack = 2.0 * (K * baseline).max(MIN_RATE as f64) * (longest_gap + 0.001);
    let counted = (after.alloc_bytes - before.alloc_bytes) as f64;
    let got = u(spike, "alloc_bytes") as f64;
    assert!(counted >= burst_bytes as f64);
    assert!(
        (got - counted).abs() <= slack,
        "spike {got} B vs {counted} B counted around the burst (slack {slack})"
    );
    assert!(got >= burst_bytes as f64 - slack);

    // The top site is the burst's function, with an estimate near the
    // bytes it allocated (1 MiB blocks at the default 512 KiB rate are
    // nearly all sampled; a dropped sample loses about one block).
    let top = spike["top_sites"].as_array().unwrap();
    assert!(!top.is_empty() && top.len() <= 10, "{spike}");
    let function = top[0]["function"].as_str().unwrap();
    assert!(
        function.ends_with("spike_burst_allocates_here"),
        "top site {function}: {spike}"
    );
    let estimate = f(&top[0], "alloc_space");
    let tolerance = 0.1 * burst_bytes as f64 + 1.2 * (dropped as f64) * BLOCK as f64;
    assert!(
        (estimate - burst_bytes as f64).abs() <= tolerance,
        "estimated {estimate} B, allocated {burst_bytes} B, {dropped} samples dropped"
    );
    assert!(u(&top[0], "samples") > 100);
    assert!(f(&top[0], "alloc_objects") > 0.0);
    let stack = top[0]["stack"].as_array().unwrap();
    assert!(
        stack[0]["function"]
            .as_str()
            .unwrap()
            .ends_with("spike_burst_allocates_here")
    );
    assert!(
        stack.iter().any(|frame| frame["function"]
            .as_str()
            .unwrap()
            .ends_with("a_real_spike_is_detected_attributed_and_served")),
        "the stack goes up to the test: {stack:?}"
    );
    // In process, the same record.
    let in_process = exporter.spikes();
    let same = in_process
        .iter()
        .find(|s| s.id == u(spike, "id"))
        .expect("the same spike in process");
    assert_eq!(same.alloc_bytes, u(spike, "alloc_bytes"));
    assert_eq!(same.top_sites[0].function, function);

    // /api/history: each rate is its counter's difference over the time
    // between the points (uptime_ms is rounded to the ms, hence the
    // tolerance of one ms in the interval).
    for w in points.windows(2) {
        let dt_ms = (u(&w[1], "uptime_ms") - u(&w[0], "uptime_ms")) as f64;
        assert!(dt_ms >= 50.0, "{w:?}");
        for (counter, rate) in [
            ("alloc_bytes", "alloc_bytes_per_sec"),
            ("allocs", "allocs_per_sec"),
            ("free_bytes", "free_bytes_per_sec"),
            ("frees", "frees_per_sec"),
        ] {
            let delta = (u(&w[1], counter) - u(&w[0], counter)) as f64;
            let from_rate = f(&w[1], rate) * dt_ms / 1000.0;
            assert!(
                (from_rate - delta).abs() <= delta / (dt_ms - 1.0) + 1e-6,
                "{rate}: {from_rate} vs {delta} over {dt_ms} ms"
            );
        }
        assert!(u(&w[1], "unix_ms") > u(&w[0], "unix_ms"));
        assert_eq!(
            u(&w[1], "live_bytes"),
            u(&w[1], "alloc_bytes") - u(&w[1], "free_bytes")
        );
    }
    assert_eq!(
        f(&points[0], "alloc_bytes_per_sec"),
        0.0,
        "first point ever"
    );

    // ?since_ms= returns exactly the points after it.
    let since = u(&points[last], "unix_ms");
    let newer = get_json(addr, &format!("/api/history?since_ms={since}"), 200);
    let newer = newer["points"].as_array().unwrap();
    assert!(!newer.is_empty());
    assert!(newer.iter().all(|p| u(p, "unix_ms") > since));
    let expected = &points[last + 1..];
    assert_eq!(&newer[..expected.len()], expected);
    let future = get_json(addr, &format!("/api/history?since_ms={}", u64::MAX), 200);
    assert_eq!(future["points"].as_array().unwrap().len(), 0);

    // Bad queries: 400, as JSON, without echoing the input.
    for bad in [
        "/api/history?since_ms=soon",
        "/api/history?since_ms=-1",
        "/api/history?since=1",
        "/api/history?%3Cscript%3E=1",
        "/api/history?<b>=1",
    ] {
        let err = get_json(addr, bad, 400);
        let message = err["error"].as_str().unwrap();
        assert!(
            !message.contains('<') && !message.contains("script"),
            "{message}"
        );
        assert!(!message.contains("soon"), "{message}");
    }

    // /api/snapshot, and /api/stats with the same fields.
    let snapshot = get_json(addr, "/api/snapshot", 200);
    let stats = get_json(addr, "/api/stats", 200);
    let keys = |v: &Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
    assert_eq!(keys(&snapshot), keys(&stats));
    assert_eq!(keys(&snapshot["stats"]), keys(&stats["stats"]));
    assert!(u(&snapshot, "unix_ms") >= burst_end_ms);
    assert!(u(&snapshot, "uptime_ms") >= 2000);
    assert!(u(&snapshot["stats"], "alloc_bytes") >= after.alloc_bytes);
    let inner_compiled_in = cfg!(any(
        feature = "jemalloc",
        feature = "mimalloc",
        all(feature = "glibc", target_os = "linux", target_env = "gnu")
    ));
    if inner_compiled_in {
        // One allocator's figures, the allocmeter_inner_* families of /metrics.
        let inner = &snapshot["inner"];
        let allocator = inner["allocator"].as_str().unwrap();
        assert!(
            ["jemalloc", "mimalloc", "glibc"].contains(&allocator),
            "{inner}"
        );
        let figures = inner["figures"].as_array().unwrap();
        assert!(!figures.is_empty(), "{inner}");
        for figure in figures {
            assert!(
                figure["name"]
                    .as_str()
                    .unwrap()
                    .starts_with("allocmeter_inner_")
            );
            assert!(!figure["help"].as_str().unwrap().is_empty());
            assert!(f(figure, "value") >= 0.0);
        }
    } else {
        assert!(snapshot["inner"].is_null(), "no inner-allocator feature");
    }
    let status = &snapshot["spike"];
    assert_eq!(f(status, "k"), K);
    assert_eq!(u(status, "min_bytes_per_sec"), MIN_RATE);
    assert_eq!(f(status, "baseline_secs"), 3.0);
    assert_eq!(status["active"], false);
    assert!(f(status, "baseline_bytes_per_sec") >= 0.0);
    assert!(f(status, "current_bytes_per_sec") >= 0.0);
    for field in ["rate", "samples", "dropped", "frees_lost", "live_samples"] {
        u(&snapshot["sampling"], field);
    }

    // /api/sites keeps its shape and version.
    let sites = get_json(addr, "/api/sites?top=3&by=alloc_space", 200);
    assert_eq!(sites["by"], "alloc_space");
    assert!(sites["sites"].as_array().unwrap().len() <= 3);

    // What the exporter allocated while serving all this (the first
    // symbolization loaded the binary's debug info: many MB in one
    // interval) is left out of the rate the detector sees: the burst's was
    // the only spike.
    std::thread::sleep(6 * INTERVAL);
    assert!(!exporter.spike_status().active);
    let seen = exporter.spikes();
    let ids: Vec<u64> = seen.iter().map(|s| s.id).collect();
    let summary: Vec<_> = seen
        .iter()
        .map(|s| {
            (
                s.id,
                s.start_unix_ms,
                s.end_unix_ms,
                s.alloc_bytes,
                s.peak_bytes_per_sec,
            )
        })
        .collect();
    assert_eq!(
        ids,
        [u(spike, "id")],
        "no spike but the burst's: {summary:?}"
    );

    // The page and its assets, as embedded.
    for (path, body, content_type) in [
        (
            "/",
            allocmeter_dashboard::INDEX_HTML,
            "text/html; charset=utf-8",
        ),
        (
            "/index.html",
            allocmeter_dashboard::INDEX_HTML,
            "text/html; charset=utf-8",
        ),
        (
            "/app.js",
            allocmeter_dashboard::APP_JS,
            "text/javascript; charset=utf-8",
        ),
        (
            "/style.css",
            allocmeter_dashboard::STYLE_CSS,
            "text/css; charset=utf-8",
        ),
    ] {
        let reply = fetch(addr, "GET", path);
        assert_eq!(reply.status, 200, "{path}");
        assert_eq!(reply.header("content-type"), Some(content_type), "{path}");
        assert_eq!(reply.body, body, "{path}");
    }
}
