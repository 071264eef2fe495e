//! What the span layer (`allocmeter_exporter::spans::SpanLayer`) adds to a
//! span's enter and exit, in instructions, under cachegrind or callgrind,
//! where instruction counts are exact and wall time on a shared machine is
//! not:
//!
//! ```sh
//! cargo build --release -p allocmeter-benches --features tracing --bin span_cost
//! valgrind --tool=cachegrind --cache-sim=no --cachegrind-out-file=/dev/null \
//!     target/release/span_cost layer 200000     # and 100000; bare
//! ```
//!
//! The first argument picks the subscriber: `bare` (a `tracing_subscriber`
//! registry alone) or `layer` (the registry with the span layer). The
//! second is the number of enter/exit pairs of one span, entered with
//! `Span::enter` and exited when the guard drops, nothing allocated inside.
//! Instructions per pair are the difference between two runs of different
//! lengths divided by the difference in pairs, which cancels the process's
//! start and exit; the layer's cost is `layer` minus `bare`
//! (`benches/sections/span_layer.md` gives the figures). With a third
//! argument `time`, it prints the wall-clock nanoseconds per pair instead
//! (outside valgrind).

use std::alloc::System;
use std::hint::black_box;
use std::time::Instant;

use allocmeter::Instrumented;
use allocmeter_exporter::spans::SpanLayer;
use tracing_subscriber::prelude::*;

#[global_allocator]
static GLOBAL: Instrumented<System> = Instrumented::new(System);

#[inline(never)]
fn pairs(span: &tracing::Span, n: u64) {
    for _ in 0..n {
        let entered = span.enter();
        black_box(&entered);
        drop(entered);
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: span_cost <bare|layer> <pairs> [time]";
    let (Some(which), Some(n)) = (args.get(1), args.get(2)) else {
        eprintln!("{usage}");
        std::process::exit(2);
    };
    let Ok(n) = n.parse::<u64>() else {
        eprintln!("{usage}: <pairs> is a count, not {n:?}");
        std::process::exit(2);
    };
    match which.as_str() {
        "bare" => tracing_subscriber::registry().init(),
        "layer" => tracing_subscriber::registry().with(SpanLayer::new()).init(),
        other => {
            eprintln!("{usage}: unknown subscriber {other:?}");
            std::process::exit(2);
        }
    }
    let span = tracing::info_span!("bench");
    // The first enter claims the thread's slot, the registry's stack of
    // current spans and the layer's table entry: not in the loop.
    pairs(&span, 1);
    let start = Instant::now();
    pairs(&span, n);
    let elapsed = start.elapsed();
    if args.get(3).is_some_and(|a| a == "time") {
        println!(
            "span_cost {which}: {:.1} ns per enter/exit pair",
            elapsed.as_nanos() as f64 / n as f64
        );
    }
    if which == "layer" {
        let s = allocmeter_exporter::spans::snapshot().expect("a layer was made");
        let bench = s.spans.iter().find(|f| f.name == "bench").expect("counted");
        assert_eq!(bench.enters, n + 1, "every pair counted");
        assert_eq!(bench.allocs, 0, "nothing allocated inside");
    }
}
