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
//! The rungs (each adds to the one before it, except the last):
//!
//! - `counts`: one count per allocation and per free;
//! - `counts, bytes`: and the bytes of each (what stats_alloc and cap record,
//!   without their shared atomics);
//! - `classes, bytes, clock`: counts by size class instead (allocmeter's
//!   `ceil(log2(size))` cell: one `lea`, one `bsr`), bytes, and the sampling
//!   clock (a thread-local countdown from 512 KiB; a sampling point only
//!   re-arms it);
//! - `classes, bytes, clock, free check`: and the check every free makes
//!   before it can know whether the block was sampled: allocmeter's filter
//!   hash and a load from a 16 KiB bit filter (here always clear). This rung
//!   records what allocmeter's hot path records, but for the null check that
//!   counts refused requests;
//! - `exact sizes, clock, free check`: one counter per exact size up to
//!   1 KiB (it gives both count and bytes), classes and bytes above, the
//!   clock and the check: the cheapest layout found for the 64 B pair, at
//!   the price of a size-dependent branch.
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

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::hint::black_box;
use std::sync::LazyLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use allocmeter::Instrumented;
use allocmeter_benches::{
    SIZES_TO_64KIB, SpinBarrier, Workload, interleaved_pair_workloads, interleaved_rounds,
    on_threads, report_rotated, rotated_rounds, start_drainer, thread_counts, threads_name,
};

static SYSTEM: System = System;
static INSTRUMENTED_SYSTEM: Instrumented<System> = Instrumented::new(System);

/// What a rung records.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Rung {
    Counts,
    Bytes,
    ClassesClock,
    ClassesClockCheck,
    ExactClockCheck,
}

/// The largest size with its own counter in [`Rung::ExactClockCheck`].
const EXACT_MAX: usize = 1024;

/// The bytes between sampling points: allocmeter's default rate.
const SAMPLE_BYTES: i64 = 512 * 1024;

/// One thread's cells, for every rung (each uses its own part).
struct Cells {
    allocs: Cell<u64>,
    frees: Cell<u64>,
    alloc_bytes: Cell<u64>,
    free_bytes: Cell<u64>,
    alloc_cells: [Cell<u64>; 64],
    free_cells: [Cell<u64>; 64],
    exact_allocs: [Cell<u64>; EXACT_MAX + 1],
    exact_frees: [Cell<u64>; EXACT_MAX + 1],
    bytes_to_sample: Cell<i64>,
}

thread_local! {
    static CELLS: Cells = const {
        Cells {
            allocs: Cell::new(0),
            frees: Cell::new(0),
            alloc_bytes: Cell::new(0),
            free_bytes: Cell::new(0),
            alloc_cells: [const { Cell::new(0) }; 64],
            free_cells: [const { Cell::new(0) }; 64],
            exact_allocs: [const { Cell::new(0) }; EXACT_MAX + 1],
            exact_frees: [const { Cell::new(0) }; EXACT_MAX + 1],
            bytes_to_sample: Cell::new(SAMPLE_BYTES),
        }
    };
}

/// A 16 KiB bit filter, as allocmeter's sampled-block filter; never set here.
static FILTER: [AtomicU64; 2048] = [const { AtomicU64::new(0) }; 2048];

/// allocmeter's filter check: the address hashed to a bit, one load, one test.
#[inline(always)]
fn maybe_sampled(ptr: *mut u8) -> bool {
    let a = ptr as usize;
    let bit = ((a ^ (a >> 13)) >> 4) & ((1 << 17) - 1);
    FILTER[bit / 64].load(Ordering::Relaxed) & (1 << (bit % 64)) != 0
}

/// allocmeter's counter cell of a size: `ceil(log2(size))`.
#[inline(always)]
fn cell_of(size: usize) -> usize {
    let x = size.wrapping_mul(2).wrapping_sub(1) | 1;
    (usize::BITS - 1 - x.leading_zeros()) as usize
}

#[inline(always)]
fn bump(cell: &Cell<u64>, by: u64) {
    cell.set(cell.get().wrapping_add(by));
}

/// The sampling point: re-arms the clock (it takes no sample).
#[cold]
#[inline(never)]
fn sampling_point(cells: &Cells) {
    cells.bytes_to_sample.set(SAMPLE_BYTES);
}

/// A filter hit: never happens here (the filter stays clear).
#[cold]
#[inline(never)]
fn filter_hit(ptr: *mut u8) {
    black_box(ptr);
}

/// A size with no exact counter.
#[cold]
#[inline(always)]
fn not_exact() {}

/// `System`, recording what rung `R` records.
struct Floor<const R: u8>;

impl<const R: u8> Floor<R> {
    const RUNG: Rung = match R {
        0 => Rung::Counts,
        1 => Rung::Bytes,
        2 => Rung::ClassesClock,
        3 => Rung::ClassesClockCheck,
        _ => Rung::ExactClockCheck,
    };
}

/// Counts one allocation or free of `size` bytes in its `exact` counter, or
/// above [`EXACT_MAX`] in its class counter of `cells` and in `bytes`.
#[inline(always)]
fn count_sized(exact: &[Cell<u64>], cells: &[Cell<u64>], bytes: &Cell<u64>, size: usize) {
    if let Some(c) = exact.get(size) {
        bump(c, 1);
    } else {
        not_exact();
        bump(&cells[cell_of(size) & 63], 1);
        bump(bytes, size as u64);
    }
}

// SAFETY: both methods forward to `System` with the caller's arguments and
// return its result; the recording touches only this thread's cells.
unsafe impl<const R: u8> GlobalAlloc for Floor<R> {
    #[inline(always)]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller upholds `alloc`'s contract for `layout`.
        let ptr = unsafe { System.alloc(layout) };
        let size = layout.size();
        CELLS.with(|c| match Self::RUNG {
            Rung::Counts => bump(&c.allocs, 1),
            Rung::Bytes => {
                bump(&c.allocs, 1);
                bump(&c.alloc_bytes, size as u64);
            }
            Rung::ClassesClock | Rung::ClassesClockCheck | Rung::ExactClockCheck => {
                if Self::RUNG == Rung::ExactClockCheck {
                    count_sized(&c.exact_allocs, &c.alloc_cells, &c.alloc_bytes, size);
                } else {
                    bump(&c.alloc_cells[cell_of(size) & 63], 1);
                    bump(&c.alloc_bytes, size as u64);
                }
                let left = c.bytes_to_sample.get().wrapping_sub(size as i64);
                c.bytes_to_sample.set(left);
                if left < 0 {
                    sampling_point(c);
                }
            }
        });
        ptr
    }

    #[inline(always)]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if matches!(Self::RUNG, Rung::ClassesClockCheck | Rung::ExactClockCheck)
            && maybe_sampled(ptr)
        {
            filter_hit(ptr);
        }
        let size = layout.size();
        CELLS.with(|c| match Self::RUNG {
            Rung::Counts => bump(&c.frees, 1),
            Rung::Bytes => {
                bump(&c.frees, 1);
                bump(&c.free_bytes, size as u64);
            }
            Rung::ExactClockCheck => {
                count_sized(&c.exact_frees, &c.free_cells, &c.free_bytes, size);
            }
            Rung::ClassesClock | Rung::ClassesClockCheck => {
                bump(&c.free_cells[cell_of(size) & 63], 1);
                bump(&c.free_bytes, size as u64);
            }
        });
        // SAFETY: the caller guarantees `ptr` came from this allocator, so
        // from `System`, with `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }
}

static COUNTS: Floor<0> = Floor;
static BYTES: Floor<1> = Floor;
static CLASSES_CLOCK: Floor<2> = Floor;
static CLASSES_CLOCK_CHECK: Floor<3> = Floor;
static EXACT_CLOCK_CHECK: Floor<4> = Floor;

/// The variants, in report order; the first is the base of every ratio.
/// `(sampling suspended)` counts but takes no samples on the measuring
/// thread ([`allocmeter::profile::suspend_sampling`]), as the floor's clock
/// takes none: on mixed sizes a sampling point comes about every 70 pairs,
/// and the stacks it captures cost more than the rest.
const VARIANTS: [&str; 8] = [
    "System",
    "Instrumented<System>",
    "Instrumented<System> (sampling suspended)",
    "floor: counts",
    "floor: counts, bytes",
    "floor: classes, bytes, clock",
    "floor: classes, bytes, clock, free check",
    "floor: exact sizes, clock, free check",
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
        3 => work.run(&COUNTS, pairs),
        4 => work.run(&BYTES, pairs),
        5 => work.run(&CLASSES_CLOCK, pairs),
        6 => work.run(&CLASSES_CLOCK_CHECK, pairs),
        _ => work.run(&EXACT_CLOCK_CHECK, pairs),
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
