//! What recording costs at least: a ladder of stripped-down wrappers around
//! `System`, each recording one more thing than the last, measured
//! interleaved with `System` and `Instrumented<System>` (sampling at the
//! default rate, and suspended) on the 64 B and mixed 16 B–64 KiB pairs.
//!
//! Why: the 64 B pair's target is at most 1.10× `System`, about 3 cycles over
//! glibc's 29 to 31 per pair on this project's machine. This benchmark shows
//! how much of allocmeter's cost is what it records and how much is how it
//! records it, by timing wrappers that keep everything in plain thread-local
//! cells: no slot, no registry, no reader, nothing kept when the thread exits
//! and no check that it has not. They are lower bounds, not usable
//! allocators: their counts die with their thread and no other thread can
//! read them.
//!
//! The rungs and what each records are [`allocmeter_benches::floor_rungs`]'s
//! (the `instr_ops_floor_*` binaries count the same wrappers' instructions
//! per operation); the realloc rung is not timed here, as the pairs do not
//! realloc and on allocs and frees it is `classes, bytes, clock, free check`.
//!
//! What it showed on this project's machine (AMD EPYC, 2 vCPUs, glibc 2.36;
//! `BENCHMARKS.md` of 2026-12-04), on the 64 B pair: the rung that records
//! what allocmeter records ran at 1.16× to 1.20× `System`, and allocmeter
//! itself at 1.20× to 1.23× in the same binary; without the free check,
//! 1.13× to 1.17×; counts and bytes alone, 1.03× to 1.07×; exact sizes,
//! 1.10× to 1.13×, and 0.5 to 2.6 ns more than classes on the mixed pair. Each
//! figure moves by about a cycle (0.27 ns) with code placement between builds.
//!
//! Written as extras (`allocmeter-extra/`) of the groups
//! `floor_<workload>_interleaved/<threads>`, with the figures of
//! [`allocmeter_benches::interleaved_figures`]; `run_all.py` prints them.
//!
//! Run with `cargo bench -p allocmeter-benches --bench floor`.

use std::alloc::System;
use std::sync::LazyLock;
use std::time::Duration;

use allocmeter::Instrumented;
use allocmeter_benches::floor_rungs::{
    BYTES, CLASSES_CLOCK, CLASSES_CLOCK_CHECK, COUNTS, EXACT_CLOCK_CHECK, Floor, SAMPLE_BYTES,
};
use allocmeter_benches::{
    SIZES_TO_64KIB, SpinBarrier, Workload, interleaved_pair_workloads, interleaved_rounds,
    on_threads, report_rotated, rotated_rounds, start_drainer, thread_counts, threads_name,
};

static SYSTEM: System = System;
static INSTRUMENTED_SYSTEM: Instrumented<System> = Instrumented::new(System);

static FLOOR_COUNTS: Floor<COUNTS> = Floor::new();
static FLOOR_BYTES: Floor<BYTES> = Floor::new();
static FLOOR_CLASSES_CLOCK: Floor<CLASSES_CLOCK> = Floor::new();
static FLOOR_CLASSES_CLOCK_CHECK: Floor<CLASSES_CLOCK_CHECK> = Floor::new();
static FLOOR_EXACT_CLOCK_CHECK: Floor<EXACT_CLOCK_CHECK> = Floor::new();

/// The variants, in report order; the first is the base of every ratio.
/// `(sampling suspended)` counts but takes no samples on the measuring
/// thread ([`allocmeter::profile::suspend_sampling`]), as the floor's clock
/// takes none: on mixed sizes a sampling point comes about every 70 pairs,
/// and the stacks it captures cost more than the rest.
const VARIANTS: [&str; 8] = [
    "System",
    "Instrumented<System>",
    "Instrumented<System> (sampling suspended)",
    Floor::<COUNTS>::LABEL,
    Floor::<BYTES>::LABEL,
    Floor::<CLASSES_CLOCK>::LABEL,
    Floor::<CLASSES_CLOCK_CHECK>::LABEL,
    Floor::<EXACT_CLOCK_CHECK>::LABEL,
];

/// The index of `Instrumented<System> (sampling suspended)` in [`VARIANTS`].
const SUSPENDED: usize = 2;

/// Pairs per slice of `work`: about 0.2 ms on this project's machine.
fn slice_pairs(work: Workload) -> u64 {
    match work {
        Workload::Fixed64 => 20_000,
        Workload::Mixed4KiB | Workload::Mixed64KiB => 4_000,
        Workload::ReallocGrowth => unreachable!("the floor measures pairs only"),
    }
}

/// Runs `pairs` pairs of `work` through variant `v` (monomorphised, no
/// dynamic dispatch).
fn run_variant(v: usize, work: Workload, pairs: u64) -> Duration {
    match v {
        0 => work.run(&SYSTEM, pairs),
        1 | 2 => work.run(&INSTRUMENTED_SYSTEM, pairs),
        3 => work.run(&FLOOR_COUNTS, pairs),
        4 => work.run(&FLOOR_BYTES, pairs),
        5 => work.run(&FLOOR_CLASSES_CLOCK, pairs),
        6 => work.run(&FLOOR_CLASSES_CLOCK_CHECK, pairs),
        _ => work.run(&FLOOR_EXACT_CLOCK_CHECK, pairs),
    }
}

/// Every variant interleaved in slices, rounds rotated, threads running
/// each slice together (as `interleaved` in `peers.rs`); the first round
/// warms up and is not counted.
fn interleaved(work: Workload, threads: usize, rounds: usize) {
    let group = format!(
        "floor_{}_interleaved/{}",
        work.name(),
        threads_name(threads)
    );
    let n = VARIANTS.len();
    let pairs = slice_pairs(work);
    let barrier = SpinBarrier::new(threads);
    let times = on_threads(threads, || {
        rotated_rounds(n, rounds, |v| {
            barrier.wait();
            let guard = (v == SUSPENDED).then(allocmeter::profile::suspend_sampling);
            let took = run_variant(v, work, pairs);
            drop(guard);
            took.as_nanos() as f64 / pairs as f64
        })
    });
    report_rotated(&group, VARIANTS, &times, rounds, |_| pairs);
}

fn main() {
    let workloads = interleaved_pair_workloads("floor");
    if workloads.is_empty() {
        return;
    }
    assert_eq!(
        allocmeter::sample_rate(),
        SAMPLE_BYTES as u64,
        "the floor's clock runs at allocmeter's default rate"
    );
    LazyLock::force(&SIZES_TO_64KIB);
    start_drainer();
    // About 2 s per workload and thread count.
    let rounds = interleaved_rounds("ALLOCMETER_FLOOR_ROUNDS", 1_000, 5);
    for work in workloads {
        for threads in thread_counts() {
            interleaved(work, threads, rounds);
        }
    }
}
