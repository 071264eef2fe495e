//! Allocations by `tracing` span (feature `tracing`): the figures per span
//! name are exact (allocmeter's per-thread counts are), nesting is
//! inclusive (with each span's own share beside) and recursion counted
//! once, filtered spans are not counted,
//! an async span counts each poll on the thread that polls and work handed
//! to another thread is not counted, callsites beyond the table's bound go to the overflow entry, and
//! `/metrics` and `/api/spans` serve the same figures over HTTP.
//!
//! One process-wide table and one global subscriber, so the checks run in
//! order in one binary, each comparing the table before and after its own
//! work (the first with no layer made yet).

use std::alloc::System;
use std::collections::BTreeMap;
use std::hint::black_box;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Barrier, OnceLock};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use allocmeter::Instrumented;
use allocmeter_exporter::Exporter;
use allocmeter_exporter::spans::{self, SpanFigures, SpanLayer, SpansSnapshot};
use allocmeter_test_support::exporter::{get_json, start_default_exporter};
use allocmeter_test_support::http::fetch;
use allocmeter_test_support::prometheus_text::parse_samples;
use allocmeter_test_support::runner;
use tracing::{Instrument, info_span};
use tracing_subscriber::filter::filter_fn;
use tracing_subscriber::prelude::*;

#[global_allocator]
static GLOBAL: Instrumented<System> = Instrumented::new(System);

/// The table's bound in this process: small, so the overflow check fills it.
const MAX_NAMES: usize = 8;
const THREADS: usize = 4;
const ROUNDS: u64 = 50;

static EXPORTER: OnceLock<(Exporter, SocketAddr)> = OnceLock::new();

fn addr() -> SocketAddr {
    EXPORTER.get_or_init(start_default_exporter).1
}

/// The span `target::name` in `s` (all zero if absent).
fn figures(s: &SpansSnapshot, name: &str) -> SpanFigures {
    let span = format!("spans::{name}");
    s.spans
        .iter()
        .find(|f| f.span == span)
        .cloned()
        .unwrap_or(SpanFigures {
            span,
            name: "",
            target: "",
            enters: 0,
            allocs: 0,
            alloc_bytes: 0,
            frees: 0,
            free_bytes: 0,
            net_bytes: 0,
            self_allocs: 0,
            self_alloc_bytes: 0,
        })
}

/// `(enters, allocs, alloc_bytes, frees, free_bytes, net_bytes)` added
/// between `before` and `after`.
fn delta(before: &SpanFigures, after: &SpanFigures) -> (u64, u64, u64, u64, u64, i64) {
    (
        after.enters - before.enters,
        after.allocs - before.allocs,
        after.alloc_bytes - before.alloc_bytes,
        after.frees - before.frees,
        after.free_bytes - before.free_bytes,
        after.net_bytes - before.net_bytes,
    )
}

/// `(self_allocs, self_alloc_bytes)` added between `before` and `after`.
fn self_delta(before: &SpanFigures, after: &SpanFigures) -> (u64, u64) {
    (
        after.self_allocs - before.self_allocs,
        after.self_alloc_bytes - before.self_alloc_bytes,
    )
}

fn snap() -> SpansSnapshot {
    spans::snapshot().expect("a layer was made")
}

/// Before any layer: no span families on /metrics, and /api/spans is a
/// 404 that says what to add.
fn without_a_layer_nothing_is_served() {
    assert!(spans::snapshot().is_none());
    let metrics = fetch(addr(), "GET", "/metrics");
    assert_eq!(metrics.status, 200);
    assert!(
        !metrics.body.contains("allocmeter_span_"),
        "span families before any layer:\n{}",
        metrics.body
    );
    let body = get_json(addr(), "/api/spans", 404);
    let message = body["error"].as_str().expect("an error message");
    assert!(message.contains("SpanLayer"), "{message}");
}

/// Installs the layer (bound [`MAX_NAMES`], spans named `ignored` filtered
/// out) as the global subscriber.
fn install() {
    let layer = SpanLayer::builder()
        .max_names(MAX_NAMES)
        .build()
        .with_filter(filter_fn(|m| m.name() != "ignored"));
    tracing_subscriber::registry().with(layer).init();
}

/// One round of a thread's work: `parse` allocates 3 blocks of 100 bytes
/// and hands them out; `render` allocates and frees 5 of 1000 bytes and
/// frees parse's 3.
fn round() {
    let parsed = info_span!("parse").in_scope(|| {
        (
            black_box(vec![1u8; 100]),
            black_box(vec![2u8; 100]),
            black_box(vec![3u8; 100]),
        )
    });
    info_span!("render").in_scope(|| {
        for i in 0..5 {
            drop(black_box(vec![i as u8; 1000]));
        }
        drop(black_box(parsed));
    });
}

/// Four threads, each a warm-up round and then [`ROUNDS`] counted ones:
/// the figures of `parse` and `render` are exact.
fn spans_on_threads_are_exact() {
    let ready = Barrier::new(THREADS + 1);
    let go = Barrier::new(THREADS + 1);
    let before = std::thread::scope(|s| {
        for _ in 0..THREADS {
            s.spawn(|| {
                round();
                ready.wait();
                go.wait();
                for _ in 0..ROUNDS {
                    round();
                }
            });
        }
        ready.wait();
        let before = snap();
        go.wait();
        before
    });
    let after = snap();
    let n = THREADS as u64 * ROUNDS;
    assert_eq!(
        delta(&figures(&before, "parse"), &figures(&after, "parse")),
        (n, 3 * n, 300 * n, 0, 0, 300 * n as i64),
        "parse"
    );
    assert_eq!(
        delta(&figures(&before, "render"), &figures(&after, "render")),
        (n, 5 * n, 5000 * n, 8 * n, 5300 * n, -300 * n as i64),
        "render"
    );
    for name in ["parse", "render"] {
        let (b, a) = (figures(&before, name), figures(&after, name));
        assert_eq!(
            self_delta(&b, &a),
            (a.allocs - b.allocs, a.alloc_bytes - b.alloc_bytes),
            "{name} has no counted spans inside: all its own"
        );
    }
    let parse = figures(&after, "parse");
    assert_eq!((parse.name, parse.target), ("parse", "spans"));
}

#[inline(never)]
fn recurse(depth: u32) {
    let span = info_span!("recurse");
    let _entered = span.enter();
    black_box(vec![0u8; 32]);
    if depth > 1 {
        recurse(depth - 1);
    }
}

/// `outer` allocates 64 bytes and holds `inner`, which allocates two
/// blocks of 128: `outer` counts all three, `inner` its two. `recurse`
/// enters its own callsite three deep: counted once, with all three blocks.
fn nesting_is_inclusive_and_recursion_counted_once() {
    let scenario = || {
        info_span!("outer").in_scope(|| {
            black_box(vec![0u8; 64]);
            info_span!("inner").in_scope(|| {
                black_box(vec![0u8; 128]);
                black_box(vec![0u8; 128]);
            });
        });
        recurse(3);
    };
    // Warm-up: the registry's first span on this thread, nested this deep.
    scenario();
    let before = snap();
    scenario();
    let after = snap();
    let d = |name| delta(&figures(&before, name), &figures(&after, name));
    assert_eq!(d("outer"), (1, 3, 320, 3, 320, 0), "outer");
    assert_eq!(d("inner"), (1, 2, 256, 2, 256, 0), "inner");
    assert_eq!(d("recurse"), (1, 3, 96, 3, 96, 0), "recurse");
    // Their own shares: `outer` without `inner`'s; recursion is one span.
    let own = |name| self_delta(&figures(&before, name), &figures(&after, name));
    assert_eq!(own("outer"), (1, 64), "outer's own");
    assert_eq!(own("inner"), (2, 256), "inner's own");
    assert_eq!(own("recurse"), (3, 96), "recurse's own");
}

/// A span the layer's filter leaves out is not in the table.
fn filtered_spans_are_not_counted() {
    info_span!("ignored").in_scope(|| black_box(vec![0u8; 10]));
    let s = snap();
    assert!(s.spans.iter().all(|f| f.name != "ignored"), "{s:?}");
}

/// A future that allocates `blocks` blocks of 48 bytes at each poll and
/// is ready at its second.
struct TwoPolls {
    polls: u32,
    blocks: u64,
}

impl Future for TwoPolls {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<()> {
        for _ in 0..self.blocks {
            black_box(vec![0u8; 48]);
        }
        self.polls += 1;
        if self.polls == 2 {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

/// An instrumented future polled once on each of two threads: each poll is
/// an enter/exit pair counted on the thread that polled, exactly. A thread
/// spawned inside a span allocates 1 MiB there: not counted in the span.
fn async_polls_and_other_threads() {
    let before = snap();
    let mut task = Box::pin(
        TwoPolls {
            polls: 0,
            blocks: 3,
        }
        .instrument(info_span!("polled")),
    );
    let mut cx = Context::from_waker(Waker::noop());
    assert!(task.as_mut().poll(&mut cx).is_pending());
    std::thread::scope(|s| {
        s.spawn(|| {
            let mut cx = Context::from_waker(Waker::noop());
            assert!(task.as_mut().poll(&mut cx).is_ready());
        });
    });
    let after = snap();
    assert_eq!(
        delta(&figures(&before, "polled"), &figures(&after, "polled")),
        (2, 6, 288, 6, 288, 0),
        "polled"
    );

    const HANDED_OFF: usize = 1 << 20;
    let before = snap();
    info_span!("hands_off").in_scope(|| {
        std::thread::scope(|s| {
            s.spawn(|| black_box(vec![0u8; HANDED_OFF]));
        });
    });
    let after = snap();
    let (enters, _, bytes, ..) = delta(
        &figures(&before, "hands_off"),
        &figures(&after, "hands_off"),
    );
    assert_eq!(enters, 1);
    // The span counts the spawn's own allocations (the thread's handle,
    // its closure), a few hundred bytes; not the block allocated there.
    assert!(
        bytes < HANDED_OFF as u64,
        "{bytes} bytes counted in hands_off"
    );
}

macro_rules! numbered_span {
    ($name:literal, $blocks:expr) => {
        info_span!($name).in_scope(|| {
            for _ in 0..$blocks {
                black_box(vec![0u8; 16]);
            }
        })
    };
}

/// Six new callsites where the table has room for one: `extra_a` gets its
/// own entry, `extra_b` to `extra_f` are counted together in the overflow
/// entry, exactly.
fn callsites_beyond_the_bound_go_to_overflow() {
    let before = snap();
    assert_eq!(
        before.callsites, 7,
        "parse, render, outer, inner, recurse, polled, hands_off"
    );
    numbered_span!("extra_a", 1);
    numbered_span!("extra_b", 2);
    numbered_span!("extra_c", 3);
    numbered_span!("extra_d", 4);
    numbered_span!("extra_e", 5);
    numbered_span!("extra_f", 6);
    let after = snap();
    assert_eq!((after.callsites, after.max_names), (MAX_NAMES, MAX_NAMES));
    assert_eq!(after.spans.len(), MAX_NAMES);
    let d = delta(&figures(&before, "extra_a"), &figures(&after, "extra_a"));
    assert_eq!(d, (1, 1, 16, 1, 16, 0), "extra_a");
    assert!(after.spans.iter().all(|f| !matches!(
        f.name,
        "extra_b" | "extra_c" | "extra_d" | "extra_e" | "extra_f"
    )));
    assert_eq!(after.overflow.span, "(overflow)");
    assert_eq!(
        delta(&before.overflow, &after.overflow),
        (5, 20, 320, 20, 320, 0),
        "overflow"
    );
}

/// `/metrics` has every span name's figures, and `/api/spans` the
/// snapshot, over HTTP (nothing enters a span meanwhile).
fn metrics_and_api_serve_them() {
    let s = snap();
    let metrics = fetch(addr(), "GET", "/metrics");
    assert_eq!(metrics.status, 200);
    let samples = parse_samples(&metrics.body);
    let mut expected = BTreeMap::new();
    for f in s.spans.iter().chain([&s.overflow]) {
        let label = format!("{{span=\"{}\"}}", f.span);
        for (family, v) in [
            ("allocmeter_span_enters_total", f.enters as f64),
            ("allocmeter_span_allocs_total", f.allocs as f64),
            ("allocmeter_span_alloc_bytes_total", f.alloc_bytes as f64),
            ("allocmeter_span_frees_total", f.frees as f64),
            ("allocmeter_span_free_bytes_total", f.free_bytes as f64),
            ("allocmeter_span_net_bytes", f.net_bytes as f64),
            ("allocmeter_span_self_allocs_total", f.self_allocs as f64),
            (
                "allocmeter_span_self_alloc_bytes_total",
                f.self_alloc_bytes as f64,
            ),
        ] {
            expected.insert(format!("{family}{label}"), v);
        }
    }
    let served: BTreeMap<String, f64> = samples
        .into_iter()
        .filter(|(k, _)| k.starts_with("allocmeter_span_"))
        .collect();
    assert_eq!(served, expected);
    assert!(served["allocmeter_span_alloc_bytes_total{span=\"spans::render\"}"] > 0.0);

    let body = get_json(addr(), "/api/spans", 200);
    let mut want = serde_json::to_value(&s).unwrap();
    want["version"] = 1.into();
    assert_eq!(body, want);
    assert_eq!(body["max_names"], MAX_NAMES);
}

fn main() {
    runner::run(
        &[
            (
                "without_a_layer_nothing_is_served",
                without_a_layer_nothing_is_served,
            ),
            ("install", install),
            ("spans_on_threads_are_exact", spans_on_threads_are_exact),
            (
                "nesting_is_inclusive_and_recursion_counted_once",
                nesting_is_inclusive_and_recursion_counted_once,
            ),
            (
                "filtered_spans_are_not_counted",
                filtered_spans_are_not_counted,
            ),
            (
                "async_polls_and_other_threads",
                async_polls_and_other_threads,
            ),
            (
                "callsites_beyond_the_bound_go_to_overflow",
                callsites_beyond_the_bound_go_to_overflow,
            ),
            ("metrics_and_api_serve_them", metrics_and_api_serve_them),
        ],
        Duration::from_secs(120),
    );
}
