//! What heap sampling costs in `allocmeter::Instrumented<System>`, next to
//! `System` (and to `Instrumented<System>` with sampling off) in the same run.
//!
//! Seven kinds of benchmarks:
//!
//! - `sample_cost/depth_D`: the cost of one sample. At `set_sample_rate(1)`
//!   every allocation is sampled; a 64 B alloc+free pair runs `D` calls deep
//!   (D = 4, 16, 64; stack depth 64) on a thread spawned for the purpose, with
//!   each capture method forced in turn (frame-pointer walk, DWARF unwind).
//!   The same pair at rate 0 is the baseline; the difference, divided by the
//!   samples per pair (1), is the cost of one sample: stack capture, table
//!   insert and ring push on the allocation, table remove and ring push on the
//!   free. Pairs are timed in chunks of [`CHUNK_SAMPLED`]; between chunks,
//!   outside the timed region, the benchmark thread drains the rings (as the
//!   exporter would), so that no sample is dropped for a full ring. The pair
//!   reuses one address, so the table's and the filter's lines stay in cache:
//!   `amortized` gives the effective cost of a sample in a real workload.
//! - `unsampled_free/batch_1024_mixed`: the sampled-pointer check that every
//!   free makes. Batches of 1024 allocations of mixed sizes (16 B to 4 KiB),
//!   then 1024 frees, so each batch frees ~1000 distinct addresses, all at
//!   rate 0: through `System`; through `System` behind a replica of the check
//!   (the allocator's filter hash and a 16 KiB filter that stays empty); and
//!   through `Instrumented<System>` with no sampled block live, and with
//!   [`LIVE_SAMPLED`] and [`LIVE_SAMPLED_MANY`] sampled blocks live
//!   (allocated at rate 1 beforehand and kept), whose filter bits make some
//!   frees look up the table for nothing. The false-positive rate is measured
//!   by hashing the freed addresses with a replica of the filter's hash.
//! - `amortized/*`: realistic workloads at rate 0, 8 KiB, 64 KiB and 512 KiB
//!   (the default) against `System`: the mixed 16 B to 4 KiB pairs of
//!   `pairs.rs` on each thread count of `ALLOCMETER_BENCH_THREADS` (1 and 2
//!   by default), and building and dropping a `Vec<String>` and a `HashMap` (std collections through a switchable
//!   global allocator, see [`Switch`]). Timed in chunks of about a thousand
//!   allocator calls, with a drain between chunks, outside the timed region.
//! - `sampled_free/64B` and `sampled_realloc/64B_to_128B`: what a free, and
//!   a `realloc` to 128 B, of a sampled 64 B block cost next to the same
//!   call on an unsampled block. Blocks are allocated in chunks of
//!   [`CHUNK_SAMPLED`] at rate 1 (sampled) or with sampling suspended (not
//!   sampled), untimed, with a drain; then the chunk's frees or reallocs are
//!   timed with sampling suspended on the thread, so that the realloc takes
//!   no new sample of its own: the difference is the tracked block's own
//!   path (its table removal, and its free or resize record; for a realloc,
//!   its re-insertion at the new address).
//! - `realloc_chain/64B_to_8KiB`: a block allocated at 64 B and doubled by
//!   `realloc` to 8 KiB (7 reallocs), then freed, at rate 0 and at rate 1
//!   (every call sampled, each realloc of a tracked block followed through
//!   to the next): the whole chain's cost.
//! - `clock/profile::clock_ns`: one reading of the clock those paths read.
//! - `cross_thread/*`: two threads run the mixed pairs, one sampling at 0,
//!   8 KiB, 64 KiB or 512 KiB, the other with sampling suspended; the time is
//!   the non-sampling thread's, so it shows what one thread's sampling costs
//!   the others through the cache lines they share.
//!
//! Besides criterion's times, each benchmark records samples taken and
//! dropped, frees lost, captured frames, drain time, and false positives to
//! `target/criterion/allocmeter-extra/`; `benches/report.py` prints both.
//!
//! Run with `cargo bench -p allocmeter-benches --bench sampling`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Barrier, LazyLock};
use std::thread;
use std::time::{Duration, Instant};

use allocmeter::Instrumented;
use allocmeter::profile::{self, SampleEvent};
use allocmeter::stack::{self, Method};
use allocmeter_benches::write_extra;
use allocmeter_benches::{
    ALIGN, RING, TABLE_LEN, alloc, assert_default_sample_rate, thread_counts, threads_name,
    time_on_threads,
};
use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion, criterion_group, criterion_main};

static SYSTEM: System = System;
static INSTRUMENTED: Instrumented<System> = Instrumented::new(System);
static REPLICA: ReplicaCheck = ReplicaCheck;

/// The process's global allocator: `System`, or `Instrumented<System>` on a
/// thread that asked for it (see [`Switch`]).
#[global_allocator]
static GLOBAL: Switch = Switch;

/// Pairs per timed chunk at rate 1: 32 samples of at most 9 + 64 words plus
/// 32 free records of 4 words stay far below the ring's 8192 words. Also the
/// chains per chunk of `realloc_chain`: 32 chains of 8 samples (two stacks,
/// each repeated), 7 resize records of 6 words and a free take at most
/// 32 × (2 × 73 + 6 × 9 + 7 × 6 + 4) = 7872 words.
const CHUNK_SAMPLED: u64 = 32;
/// Pairs per timed chunk in the amortized workloads (the exporter's drain
/// interval, in allocations, is of this order).
const CHUNK_AMORTIZED: u64 = 1024;
/// Iterations of the collections workload per timed chunk (~1000 calls).
const CHUNK_COLLECTIONS: u64 = 8;
/// Sampled blocks kept live for `unsampled_free`.
const LIVE_SAMPLED: usize = 2000;
/// Sampled blocks kept live for the variant that measures what one false
/// positive costs (about 15 % of frees hit one).
const LIVE_SAMPLED_MANY: usize = 20_000;
/// Allocations per batch in `unsampled_free`.
const BATCH: usize = 1024;
/// Untimed pairs each benchmark thread runs first (claims the allocmeter
/// slot, looks up the thread's stack bounds, warms the inner allocator).
const WARM_UP_PAIRS: u64 = 256;
/// The allocator's filter: `1 << FILTER_BITS_LOG2` bits, indexed by the
/// address in 16-byte units with the address bits from 17 up folded in
/// (replicates `allocator/src/lockfree/sampled/`).
const FILTER_BITS_LOG2: u32 = 17;
const FILTER_WORDS: usize = 1 << (FILTER_BITS_LOG2 - 6);

/// Sizes from 16 B to 4 KiB, log-uniform (shared with the other benchmarks).
static SIZES: LazyLock<[u32; TABLE_LEN]> = LazyLock::new(allocmeter_benches::mixed_sizes);

fn layout_at(i: usize) -> Layout {
    Layout::from_size_align(SIZES[i % TABLE_LEN] as usize, ALIGN).expect("sizes are small")
}

// ---------------------------------------------------------------------------
// Allocators.

thread_local! {
    /// Whether this thread's global allocations go through `Instrumented`.
    static ROUTE_INSTRUMENTED: Cell<bool> = const { Cell::new(false) };
}

/// Routes the global allocator through `Instrumented<System>` on the calling
/// thread while `on`, through `System` otherwise. Both routes pay the same
/// thread-local read, so comparing them isolates allocmeter's cost.
fn route_instrumented(on: bool) {
    ROUTE_INSTRUMENTED.with(|r| r.set(on));
}

/// The global allocator: `System`, or `Instrumented<System>` on threads that
/// called [`route_instrumented`]. Lets std collections run through either in
/// the same process.
struct Switch;

impl Switch {
    #[inline(always)]
    fn instrumented() -> bool {
        ROUTE_INSTRUMENTED.try_with(Cell::get).unwrap_or(false)
    }
}

// SAFETY: both routes end in `System`: `Instrumented<System>` forwards every
// call to `System` unchanged. A block allocated through one route and freed
// through the other (never done on purpose here) is therefore still freed by
// the allocator that allocated it, with its layout.
unsafe impl GlobalAlloc for Switch {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller upholds `alloc`'s contract; passed on unchanged.
        unsafe {
            if Self::instrumented() {
                INSTRUMENTED.alloc(layout)
            } else {
                System.alloc(layout)
            }
        }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as for `alloc`.
        unsafe {
            if Self::instrumented() {
                INSTRUMENTED.alloc_zeroed(layout)
            } else {
                System.alloc_zeroed(layout)
            }
        }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller upholds `dealloc`'s contract; both routes free
        // with `System` (see the impl's comment).
        unsafe {
            if Self::instrumented() {
                INSTRUMENTED.dealloc(ptr, layout)
            } else {
                System.dealloc(ptr, layout)
            }
        }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as for `dealloc`.
        unsafe {
            if Self::instrumented() {
                INSTRUMENTED.realloc(ptr, layout, new_size)
            } else {
                System.realloc(ptr, layout, new_size)
            }
        }
    }
}

/// The filter bit of `ptr`, as `allocator/src/lockfree/sampled/` computes it.
fn filter_bit(ptr: usize) -> usize {
    ((ptr ^ (ptr >> 13)) >> 4) & ((1 << FILTER_BITS_LOG2) - 1)
}

/// A filter like the allocator's, for [`ReplicaCheck`]; always empty.
static REPLICA_FILTER: [AtomicU64; FILTER_WORDS] = [const { AtomicU64::new(0) }; FILTER_WORDS];

/// The filter bits of the sampled blocks kept live by `unsampled_free`, to
/// tell which frees are false positives.
static LIVE_BITS: [AtomicU64; FILTER_WORDS] = [const { AtomicU64::new(0) }; FILTER_WORDS];

fn bit_is_set(filter: &[AtomicU64; FILTER_WORDS], bit: usize) -> bool {
    filter[bit / 64].load(Ordering::Relaxed) & (1 << (bit % 64)) != 0
}

/// `System` with a replica of `Instrumented`'s sampled-pointer check on every
/// free (hash, one load from a 16 KiB filter, a never-taken branch), and no
/// other instrumentation: what the check alone adds to a free.
struct ReplicaCheck;

#[cold]
#[inline(never)]
fn replica_hit(ptr: *mut u8) {
    black_box(ptr);
}

// SAFETY: forwards every call to `System` unchanged; the check only reads a
// static filter.
unsafe impl GlobalAlloc for ReplicaCheck {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller upholds `alloc`'s contract; passed on unchanged.
        unsafe { System.alloc(layout) }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if bit_is_set(&REPLICA_FILTER, filter_bit(ptr as usize)) {
            replica_hit(ptr);
        }
        // SAFETY: the caller upholds `dealloc`'s contract; `ptr` came from
        // `System` through `alloc` above.
        unsafe { System.dealloc(ptr, layout) }
    }
}

// ---------------------------------------------------------------------------
// Tallies: counts gathered while one benchmark runs, written as its extras.

static PAIRS: AtomicU64 = AtomicU64::new(0);
static TIMED_ITERS: AtomicU64 = AtomicU64::new(0);
static EVENTS: AtomicU64 = AtomicU64::new(0);
static ALLOC_EVENTS: AtomicU64 = AtomicU64::new(0);
static FRAMES: AtomicU64 = AtomicU64::new(0);
static DRAIN_NS: AtomicU64 = AtomicU64::new(0);
static FP_CHECKED: AtomicU64 = AtomicU64::new(0);
static FP_HITS: AtomicU64 = AtomicU64::new(0);
static CALLS_PER_ITER: AtomicU64 = AtomicU64::new(0);

fn reset_tallies() {
    for t in [
        &PAIRS,
        &TIMED_ITERS,
        &EVENTS,
        &ALLOC_EVENTS,
        &FRAMES,
        &DRAIN_NS,
        &FP_CHECKED,
        &FP_HITS,
        &CALLS_PER_ITER,
    ] {
        t.store(0, Ordering::Relaxed);
    }
}

fn tally(t: &AtomicU64) -> f64 {
    t.load(Ordering::Relaxed) as f64
}

/// Drains every ring, as the exporter would, counting events and frames.
/// `None`-returning calls (another thread is draining) count nothing.
fn drain() {
    let start = Instant::now();
    let (mut allocs, mut frames) = (0u64, 0u64);
    let events = profile::drain(|e| {
        if let SampleEvent::Alloc(s) = e {
            allocs += 1;
            frames += s.stack.len() as u64;
        }
    });
    if let Some(events) = events {
        let ns = start.elapsed().as_nanos() as u64;
        EVENTS.fetch_add(events as u64, Ordering::Relaxed);
        ALLOC_EVENTS.fetch_add(allocs, Ordering::Relaxed);
        FRAMES.fetch_add(frames, Ordering::Relaxed);
        DRAIN_NS.fetch_add(ns, Ordering::Relaxed);
    }
}

/// Runs one benchmark: sets the sample rate (if given) and restores it after,
/// and writes the benchmark's extras. `run(iters)` returns the time of
/// `iters` iterations (per thread: the slowest thread's).
fn bench(
    group: &mut BenchmarkGroup<'_, WallTime>,
    group_name: &str,
    name: &str,
    rate: Option<u64>,
    run: impl Fn(u64) -> Duration,
) {
    let old_rate = allocmeter::sample_rate();
    if let Some(rate) = rate {
        allocmeter::set_sample_rate(rate);
    }
    drain();
    reset_tallies();
    let before = profile::sampling_stats();
    group.bench_function(name, |b| {
        b.iter_custom(|iters| {
            TIMED_ITERS.fetch_add(iters, Ordering::Relaxed);
            run(iters)
        })
    });
    drain();
    let after = profile::sampling_stats();
    allocmeter::set_sample_rate(old_rate);
    if PAIRS.load(Ordering::Relaxed) == 0 {
        return; // filtered out
    }
    let alloc_events = tally(&ALLOC_EVENTS);
    let events = tally(&EVENTS);
    let extras = [
        ("rate", rate.map_or(f64::NAN, |r| r as f64)),
        ("ops", tally(&PAIRS)),
        ("timed_iters", tally(&TIMED_ITERS)),
        ("samples", (after.samples - before.samples) as f64),
        ("dropped", (after.dropped - before.dropped) as f64),
        ("frees_lost", (after.frees_lost - before.frees_lost) as f64),
        ("live_samples", after.live_samples as f64),
        ("events", events),
        ("alloc_events", alloc_events),
        ("frames_mean", tally(&FRAMES) / alloc_events),
        ("drain_ns_per_event", tally(&DRAIN_NS) / events),
        ("drain_ns_total", tally(&DRAIN_NS)),
        ("fp_checked", tally(&FP_CHECKED)),
        ("fp_hits", tally(&FP_HITS)),
        ("calls_per_iter", tally(&CALLS_PER_ITER) / 1000.0),
    ];
    write_extra(group_name, name, &extras);
    eprintln!(
        "  {group_name}/{name}: {} ops, {} samples taken, {} dropped, {} frees lost, \
         {:.1} frames/sample",
        tally(&PAIRS),
        after.samples - before.samples,
        after.dropped - before.dropped,
        after.frees_lost - before.frees_lost,
        tally(&FRAMES) / alloc_events,
    );
}

// ---------------------------------------------------------------------------
// sample_cost

/// Recurses `depth` calls deep, then runs [`pairs_64b`].
#[inline(never)]
fn at_depth(depth: usize, iters: u64) -> Duration {
    if depth == 0 {
        pairs_64b(iters)
    } else {
        // `black_box` on the result keeps this from being a tail call, so
        // every level keeps its frame.
        black_box(at_depth(black_box(depth - 1), iters))
    }
}

/// `iters` 64 B alloc+free pairs through `Instrumented<System>`, timed in
/// chunks of [`CHUNK_SAMPLED`] with an untimed drain after each chunk.
#[inline(never)]
fn pairs_64b(iters: u64) -> Duration {
    let layout = Layout::new::<[u64; 8]>();
    let mut total = Duration::ZERO;
    let mut left = iters;
    while left > 0 {
        let n = left.min(CHUNK_SAMPLED);
        let start = Instant::now();
        for _ in 0..n {
            let layout = black_box(layout);
            let p = alloc(&INSTRUMENTED, layout);
            // SAFETY: `p` was just allocated by `INSTRUMENTED` with `layout`.
            unsafe { INSTRUMENTED.dealloc(p, layout) };
        }
        total += start.elapsed();
        left -= n;
        drain();
    }
    PAIRS.fetch_add(iters, Ordering::Relaxed);
    total
}

fn sample_cost(c: &mut Criterion) {
    let probed = stack::method();
    let old_depth = allocmeter::stack_depth();
    allocmeter::set_stack_depth(64);
    for depth in [4usize, 16, 64] {
        let group_name = format!("sample_cost/depth_{depth}");
        let mut group = c.benchmark_group(&group_name);
        let run = |iters| {
            time_on_threads(1, |_| {
                at_depth(depth, WARM_UP_PAIRS);
                at_depth(depth, iters)
            })
        };
        bench(&mut group, &group_name, "rate 0", Some(0), run);
        stack::force_method(Method::FramePointers);
        bench(
            &mut group,
            &group_name,
            "rate 1, frame pointers",
            Some(1),
            run,
        );
        stack::force_method(Method::Unwind);
        bench(&mut group, &group_name, "rate 1, unwind", Some(1), run);
        stack::force_method(probed);
        group.finish();
    }
    allocmeter::set_stack_depth(old_depth);
    assert_eq!(stack::method(), probed);
}

// ---------------------------------------------------------------------------
// unsampled_free

/// `iters` pairs in batches of [`BATCH`]: allocate a batch, then free it in
/// allocation order. Then, untimed, one more batch whose addresses are
/// checked against [`LIVE_BITS`] to count false positives.
#[inline(never)]
fn batches<A: GlobalAlloc>(a: &A, iters: u64) -> Duration {
    let mut blocks: Vec<(*mut u8, Layout)> = Vec::with_capacity(BATCH);
    let run_batch = |n: usize, blocks: &mut Vec<(*mut u8, Layout)>| {
        for i in 0..n {
            let layout = layout_at(i);
            blocks.push((alloc(a, layout), layout));
        }
        for (p, layout) in blocks.drain(..) {
            // SAFETY: `p` was allocated by `a` with `layout` just above, and
            // is freed once.
            unsafe { a.dealloc(p, layout) };
        }
    };
    run_batch(BATCH, &mut blocks); // warm-up
    let start = Instant::now();
    let mut left = iters as usize;
    while left > 0 {
        let n = left.min(BATCH);
        run_batch(n, &mut blocks);
        left -= n;
    }
    let elapsed = start.elapsed();
    // The false-positive census, on the addresses this thread frees.
    for i in 0..BATCH {
        let layout = layout_at(i);
        blocks.push((alloc(a, layout), layout));
    }
    let hits = blocks
        .iter()
        .filter(|(p, _)| bit_is_set(&LIVE_BITS, filter_bit(*p as usize)))
        .count();
    FP_CHECKED.fetch_add(BATCH as u64, Ordering::Relaxed);
    FP_HITS.fetch_add(hits as u64, Ordering::Relaxed);
    for (p, layout) in blocks.drain(..) {
        // SAFETY: as above.
        unsafe { a.dealloc(p, layout) };
    }
    PAIRS.fetch_add(iters, Ordering::Relaxed);
    elapsed
}

/// Allocates `n` 64 B blocks at rate 1 through `Instrumented<System>` and
/// keeps them: `n` sampled blocks live, their bits set in the filter.
fn keep_sampled_blocks(n: usize) -> Vec<usize> {
    let layout = Layout::new::<[u64; 8]>();
    // A thread's first allocation claims its allocmeter slot and is never
    // sampled: make it here, unsampled, so that all `n` below are.
    let first = alloc(&INSTRUMENTED, layout);
    // SAFETY: `first` was just allocated by `INSTRUMENTED` with `layout`.
    unsafe { INSTRUMENTED.dealloc(first, layout) };
    let live_before = profile::sampling_stats().live_samples;
    allocmeter::set_sample_rate(1);
    let mut kept = Vec::with_capacity(n);
    for i in 0..n {
        let p = alloc(&INSTRUMENTED, layout) as usize;
        kept.push(p);
        let bit = filter_bit(p);
        LIVE_BITS[bit / 64].fetch_or(1 << (bit % 64), Ordering::Relaxed);
        if i % 32 == 31 {
            drain();
        }
    }
    allocmeter::set_sample_rate(0);
    drain();
    let live = profile::sampling_stats().live_samples - live_before;
    eprintln!("  unsampled_free: {live} sampled blocks live (wanted {n})");
    kept
}

fn free_sampled_blocks(kept: Vec<usize>) {
    let layout = Layout::new::<[u64; 8]>();
    for p in kept {
        // SAFETY: every `p` was allocated by `INSTRUMENTED` with `layout` in
        // `keep_sampled_blocks` and is freed once, here.
        unsafe { INSTRUMENTED.dealloc(p as *mut u8, layout) };
    }
    for w in &LIVE_BITS {
        w.store(0, Ordering::Relaxed);
    }
    drain();
}

fn unsampled_free(c: &mut Criterion) {
    let group_name = "unsampled_free/batch_1024_mixed";
    let mut group = c.benchmark_group(group_name);
    let on_one = |f: fn(u64) -> Duration| move |iters| time_on_threads(1, |_| f(iters));
    bench(
        &mut group,
        group_name,
        "System",
        Some(0),
        on_one(|iters| batches(&SYSTEM, iters)),
    );
    bench(
        &mut group,
        group_name,
        "System + replica filter check",
        Some(0),
        on_one(|iters| batches(&REPLICA, iters)),
    );
    bench(
        &mut group,
        group_name,
        "Instrumented<System> (no sampled blocks)",
        Some(0),
        on_one(|iters| batches(&INSTRUMENTED, iters)),
    );
    let old_rate = allocmeter::sample_rate();
    for live in [LIVE_SAMPLED, LIVE_SAMPLED_MANY] {
        let kept = keep_sampled_blocks(live);
        bench(
            &mut group,
            group_name,
            &format!("Instrumented<System> ({live} sampled blocks live)"),
            Some(0),
            on_one(|iters| batches(&INSTRUMENTED, iters)),
        );
        free_sampled_blocks(kept);
    }
    allocmeter::set_sample_rate(old_rate);
    group.finish();
}

// ---------------------------------------------------------------------------
// sampled_free, sampled_realloc, realloc_chain

/// What [`tracked_ops`] times on each block.
#[derive(Clone, Copy)]
enum TrackedOp {
    /// Its free.
    Free,
    /// Its `realloc` from 64 B to 128 B.
    Grow,
}

/// `iters` blocks of 64 B, in chunks of [`CHUNK_SAMPLED`]: each chunk is
/// allocated untimed (at the rate in force if `sampled`, else with sampling
/// suspended) and drained; then `op` on each block of the chunk is timed,
/// with sampling suspended so that a realloc takes no sample of its own;
/// then, untimed, the grown blocks are freed and the rings drained.
#[inline(never)]
fn tracked_ops(iters: u64, sampled: bool, op: TrackedOp) -> Duration {
    let small = Layout::new::<[u64; 8]>();
    let grown = Layout::new::<[u64; 16]>();
    let mut blocks = [std::ptr::null_mut::<u8>(); CHUNK_SAMPLED as usize];
    let mut total = Duration::ZERO;
    let mut left = iters;
    while left > 0 {
        let n = left.min(CHUNK_SAMPLED) as usize;
        {
            let _unsampled = (!sampled).then(profile::suspend_sampling);
            for b in &mut blocks[..n] {
                *b = alloc(&INSTRUMENTED, small);
            }
        }
        drain();
        let suspended = profile::suspend_sampling();
        let start = Instant::now();
        match op {
            TrackedOp::Free => {
                for &b in &blocks[..n] {
                    // SAFETY: `b` was allocated by `INSTRUMENTED` with
                    // `small` above and is freed once, here.
                    unsafe { INSTRUMENTED.dealloc(black_box(b), small) };
                }
            }
            TrackedOp::Grow => {
                for b in &mut blocks[..n] {
                    // SAFETY: `*b` was allocated by `INSTRUMENTED` with
                    // `small` above; the new size is non-zero.
                    let p = unsafe { INSTRUMENTED.realloc(black_box(*b), small, grown.size()) };
                    if p.is_null() {
                        std::alloc::handle_alloc_error(grown);
                    }
                    *b = p;
                }
            }
        }
        total += start.elapsed();
        if let TrackedOp::Grow = op {
            for &b in &blocks[..n] {
                // SAFETY: `b` is the block `realloc` returned with `grown`'s
                // size (same alignment), freed once, here.
                unsafe { INSTRUMENTED.dealloc(b, grown) };
            }
        }
        drop(suspended);
        drain();
        left -= n as u64;
    }
    PAIRS.fetch_add(iters, Ordering::Relaxed);
    total
}

/// Reallocs from 64 B to 8 KiB by doubling in [`realloc_chain`].
const CHAIN_REALLOCS: u32 = 7;

/// `iters` chains: a 64 B block doubled by `realloc` to 8 KiB, then freed
/// (9 allocator calls), timed in chunks of [`CHUNK_SAMPLED`] chains with an
/// untimed drain after each chunk.
#[inline(never)]
fn realloc_chains(iters: u64) -> Duration {
    let mut total = Duration::ZERO;
    let mut left = iters;
    while left > 0 {
        let n = left.min(CHUNK_SAMPLED);
        let start = Instant::now();
        for _ in 0..n {
            let mut layout = black_box(Layout::new::<[u64; 8]>());
            let mut p = alloc(&INSTRUMENTED, layout);
            for _ in 0..CHAIN_REALLOCS {
                let size = layout.size() * 2;
                // SAFETY: `p` was allocated by `INSTRUMENTED` with `layout`
                // (or returned by the last realloc to its size); the new
                // size is non-zero.
                p = unsafe { INSTRUMENTED.realloc(p, layout, size) };
                layout = Layout::from_size_align(size, layout.align()).expect("at most 8 KiB");
                if p.is_null() {
                    std::alloc::handle_alloc_error(layout);
                }
            }
            // SAFETY: `p` is the last realloc's block, of `layout`'s size.
            unsafe { INSTRUMENTED.dealloc(p, layout) };
        }
        total += start.elapsed();
        left -= n;
        drain();
    }
    PAIRS.fetch_add(iters, Ordering::Relaxed);
    total
}

fn tracked(c: &mut Criterion) {
    let on_one = |sampled: bool, op: TrackedOp| {
        move |iters| {
            time_on_threads(1, |_| {
                tracked_ops(WARM_UP_PAIRS, sampled, op);
                tracked_ops(iters, sampled, op)
            })
        }
    };
    for (group_name, op) in [
        ("sampled_free/64B", TrackedOp::Free),
        ("sampled_realloc/64B_to_128B", TrackedOp::Grow),
    ] {
        let mut group = c.benchmark_group(group_name);
        for (name, sampled) in [("unsampled block", false), ("sampled block", true)] {
            bench(&mut group, group_name, name, Some(1), on_one(sampled, op));
        }
        group.finish();
    }

    let group_name = "realloc_chain/64B_to_8KiB";
    let mut group = c.benchmark_group(group_name);
    let run = |iters| {
        time_on_threads(1, |_| {
            realloc_chains(WARM_UP_PAIRS);
            realloc_chains(iters)
        })
    };
    bench(&mut group, group_name, "rate 0", Some(0), run);
    bench(&mut group, group_name, "rate 1", Some(1), run);
    group.finish();

    // The clock every sample, sampled free and resize reads.
    let mut group = c.benchmark_group("clock");
    group.bench_function("profile::clock_ns", |b| {
        b.iter(|| black_box(profile::clock_ns()))
    });
    group.finish();
}

// ---------------------------------------------------------------------------
// amortized

/// The mixed pairs of `pairs.rs` (sizes from [`SIZES`], each block freed
/// [`RING`] steps after its allocation), timed in chunks of
/// [`CHUNK_AMORTIZED`] pairs with an untimed drain after each chunk.
#[inline(never)]
fn mixed_drained<A: GlobalAlloc>(a: &A, iters: u64) -> Duration {
    mixed_chunked(a, iters, true)
}

/// [`mixed_drained`], draining between chunks only if `drains`.
#[inline(never)]
fn mixed_chunked<A: GlobalAlloc>(a: &A, iters: u64, drains: bool) -> Duration {
    let mut ring: [(*mut u8, Layout); RING] = core::array::from_fn(|i| {
        let layout = layout_at(i);
        (alloc(a, layout), layout)
    });
    let mut total = Duration::ZERO;
    let iters = iters as usize;
    let mut i = 0;
    while i < iters {
        let end = iters.min(i + CHUNK_AMORTIZED as usize);
        let start = Instant::now();
        while i < end {
            let layout = layout_at(i + RING);
            let p = alloc(a, layout);
            let (old, old_layout) = core::mem::replace(&mut ring[i % RING], (p, layout));
            // SAFETY: `old` was allocated by `a` with `old_layout` (in the
            // prefill or RING steps ago) and is freed once, here.
            unsafe { a.dealloc(old, old_layout) };
            i += 1;
        }
        total += start.elapsed();
        if drains {
            drain();
        }
    }
    for (p, layout) in ring {
        // SAFETY: the blocks still in the ring came from `a` with `layout`.
        unsafe { a.dealloc(p, layout) };
    }
    PAIRS.fetch_add(iters as u64, Ordering::Relaxed);
    total
}

/// Builds a `Vec<String>` of 64 names of varying length (formatting and
/// `push_str` growing them), indexes them in a `HashMap`, and drops both.
#[inline(never)]
fn collections_once(seed: u64) -> usize {
    let mut names: Vec<String> = Vec::new();
    for i in 0..64u64 {
        let mut s = String::new();
        let _ = write!(s, "user-{seed}-{i}");
        for _ in 0..(seed + i) % 5 {
            s.push_str("-suffix");
        }
        names.push(s);
    }
    let mut index: HashMap<&str, usize> = HashMap::new();
    for (i, name) in names.iter().enumerate() {
        index.insert(name.as_str(), i);
    }
    black_box(&index).len()
}

/// `iters` runs of [`collections_once`] through the global allocator routed
/// to `Instrumented<System>` or `System`, timed in chunks of
/// [`CHUNK_COLLECTIONS`] with an untimed drain after each chunk.
fn collections(instrumented: bool, iters: u64) -> Duration {
    route_instrumented(instrumented);
    // Warm-up, which also counts the allocator calls of one run.
    for seed in 0..8 {
        black_box(collections_once(seed));
    }
    if instrumented {
        let before = allocmeter::thread_stats();
        black_box(collections_once(8));
        let after = allocmeter::thread_stats();
        let reallocs = |s: &allocmeter::ThreadStats| {
            s.reallocs.grown_in_place + s.reallocs.shrunk_in_place + s.reallocs.moved
        };
        // allocs and frees each include every realloc once.
        let calls = (after.allocs - before.allocs) + (after.frees - before.frees)
            - (reallocs(&after) - reallocs(&before));
        CALLS_PER_ITER.store(calls * 1000, Ordering::Relaxed);
    }
    let mut total = Duration::ZERO;
    let mut done = 0;
    while done < iters {
        let n = (iters - done).min(CHUNK_COLLECTIONS);
        let start = Instant::now();
        for k in 0..n {
            black_box(collections_once(done + k));
        }
        total += start.elapsed();
        done += n;
        drain();
    }
    route_instrumented(false);
    PAIRS.fetch_add(iters, Ordering::Relaxed);
    total
}

/// Sample rates for the amortized and cross-thread benchmarks: off, the
/// default, a rate eight times as dense, and a dense rate (8 KiB) at which
/// sampling's cost stands well above the noise, to estimate one sample's
/// effective cost.
const RATES: [(&str, u64); 4] = [
    ("rate 0", 0),
    ("rate 8 KiB", 8 * 1024),
    ("rate 64 KiB", 64 * 1024),
    ("rate 512 KiB", 512 * 1024),
];

fn amortized(c: &mut Criterion) {
    for threads in thread_counts() {
        let group_name = format!("amortized/mixed_16B-4KiB_{}", threads_name(threads));
        let mut group = c.benchmark_group(&group_name);
        let run = |a: fn(u64) -> Duration| {
            move |iters| {
                time_on_threads(threads, |barrier| {
                    a(WARM_UP_PAIRS);
                    barrier.wait();
                    a(iters)
                })
            }
        };
        bench(
            &mut group,
            &group_name,
            "System",
            None,
            run(|iters| mixed_drained(&SYSTEM, iters)),
        );
        for (rate_name, rate) in RATES {
            bench(
                &mut group,
                &group_name,
                &format!("Instrumented<System> {rate_name}"),
                Some(rate),
                run(|iters| mixed_drained(&INSTRUMENTED, iters)),
            );
        }
        group.finish();
    }

    let group_name = "amortized/collections_1thread";
    let mut group = c.benchmark_group(group_name);
    bench(&mut group, group_name, "System", None, |iters| {
        time_on_threads(1, |_| collections(false, iters))
    });
    for (rate_name, rate) in RATES {
        bench(
            &mut group,
            group_name,
            &format!("Instrumented<System> {rate_name}"),
            Some(rate),
            |iters| time_on_threads(1, |_| collections(true, iters)),
        );
    }
    group.finish();
}

/// Two threads run the mixed pairs through `Instrumented<System>`: one
/// samples at the rate in force (and drains), the other has sampling
/// suspended and never samples. Returns the non-sampling thread's time: what
/// another thread's sampling costs a thread that takes no samples itself
/// (shared lines the sampler writes: filter words, table shards, counters).
fn bystander(iters: u64) -> Duration {
    let barrier = Barrier::new(2);
    thread::scope(|s| {
        let sampler = s.spawn(|| {
            mixed_chunked(&INSTRUMENTED, WARM_UP_PAIRS, true);
            barrier.wait();
            mixed_chunked(&INSTRUMENTED, iters, true)
        });
        let quiet = s.spawn(|| {
            let _suspended = profile::suspend_sampling();
            mixed_chunked(&INSTRUMENTED, WARM_UP_PAIRS, false);
            barrier.wait();
            mixed_chunked(&INSTRUMENTED, iters, false)
        });
        sampler.join().expect("benchmark thread panicked");
        quiet.join().expect("benchmark thread panicked")
    })
}

fn cross_thread(c: &mut Criterion) {
    let group_name = "cross_thread/mixed_16B-4KiB_non-sampling_thread";
    let mut group = c.benchmark_group(group_name);
    for (rate_name, rate) in RATES {
        bench(
            &mut group,
            group_name,
            &format!("other thread at {rate_name}"),
            Some(rate),
            bystander,
        );
    }
    group.finish();
}

fn setup(c: &mut Criterion) {
    LazyLock::force(&SIZES);
    assert_default_sample_rate("sampling should start at the default rate");
    eprintln!("stack capture method probed: {:?}", stack::method());
    let _ = c;
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2))
        .sample_size(20);
    targets = setup, sample_cost, unsampled_free, tracked, amortized, cross_thread
}
criterion_main!(benches);
