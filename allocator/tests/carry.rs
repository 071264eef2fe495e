//! The last resort: when a thread's ring is full and may not grow (here: no
//! drainer is registered, so nothing would read a bigger ring), the samples
//! that do not fit are not dropped: the thread keeps their weight and its
//! next record carries it, so the allocated estimate stays unbiased.
//!
//! `harness = false`: the sample counters and the rate are process-wide, so
//! the check runs alone on the main thread (with a deadlock watchdog). No
//! drainer is ever registered in this process.

use std::alloc::System;
use std::hint::black_box;
use std::time::Duration;

use allocmeter::Instrumented;
use allocmeter::profile::{SampleEvent, drain, sampling_stats};
use allocmeter_test_support::runner;

#[global_allocator]
static GLOBAL: Instrumented<System> = Instrumented::new(System);

const BLOCK: usize = 48 * 1024;

/// Allocates and frees `blocks` blocks of [`BLOCK`] bytes.
#[inline(never)]
fn burst(blocks: usize) {
    for _ in 0..blocks {
        drop(black_box(Vec::<u8>::with_capacity(BLOCK)));
    }
}

/// The allocated estimate of every drained sample (with what it carries):
/// (bytes, samples, samples carried).
fn drain_estimate() -> (f64, u64, u64) {
    let (mut bytes, mut samples, mut carried) = (0.0, 0, 0);
    drain(|e| {
        if let SampleEvent::Alloc(a) = e {
            bytes += a.weight() * a.size as f64 + a.carried.bytes;
            samples += 1;
            carried += a.carried.samples;
        }
    })
    .expect("no other drainer");
    (bytes, samples, carried)
}

fn a_full_ring_that_may_not_grow_carries_the_weight_of_what_it_cannot_take() {
    allocmeter::set_sample_rate(allocmeter::DEFAULT_SAMPLE_RATE);
    drain_estimate();
    let before = sampling_stats();
    // 1 GiB in 48 KiB blocks, never drained meanwhile: about 1,950 samples
    // (p = 1 - exp(-48/512) per block), and the thread's 8 KiB ring takes
    // about a hundred. Relative s.d. of the estimate over N = 21,845 blocks:
    // sqrt((1/p - 1) / N) = 2.2 %, so ±10 % is over four standard
    // deviations.
    let blocks = (1usize << 30) / BLOCK;
    burst(blocks);
    let mid = sampling_stats();
    assert!(
        mid.ring_bytes <= before.ring_bytes.max(64 << 10) + (1 << 10),
        "no drainer: the rings did not grow ({} -> {} bytes)",
        before.ring_bytes,
        mid.ring_bytes
    );
    let (mut estimate, mut samples, mut carried) = drain_estimate();
    // The carried weight rides on the thread's next sample: allocate until
    // one is taken (at most a few MiB more, counted in the truth).
    let mut extra = 0;
    while sampling_stats().samples == mid.samples {
        burst(1);
        extra += 1;
        assert!(extra < 100_000, "no further sample");
    }
    let (e, s, c) = drain_estimate();
    (estimate, samples, carried) = (estimate + e, samples + s, carried + c);
    let after = sampling_stats();
    let truth = ((blocks + extra) * BLOCK) as f64;
    let error = estimate / truth - 1.0;
    println!(
        "  allocated {truth:.0} B, estimated {estimate:.0} B ({:+.1} %); \
         {samples} samples drained carrying {carried} more; counted carried {}, dropped {}",
        error * 100.0,
        after.carried - before.carried,
        after.dropped - before.dropped
    );
    assert_eq!(after.dropped, before.dropped, "nothing dropped outright");
    assert!(carried > 1000, "most samples were carried: {carried}");
    assert_eq!(
        carried,
        after.carried - before.carried,
        "every carried sample arrived"
    );
    assert!(
        error.abs() <= 0.10,
        "estimate off by {:+.1} %",
        error * 100.0
    );
    allocmeter::set_sample_rate(0);
}

fn main() {
    runner::run(
        &[(
            "a_full_ring_that_may_not_grow_carries_the_weight_of_what_it_cannot_take",
            a_full_ring_that_may_not_grow_carries_the_weight_of_what_it_cannot_take,
        )],
        Duration::from_secs(120),
    );
}
