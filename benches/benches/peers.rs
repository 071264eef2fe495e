//! allocmeter next to its peers: what each instrumented allocator costs per
//! operation, against the bare allocator it wraps, in the same run.
//!
//! Every allocator is a `static` called through the [`GlobalAlloc`] trait
//! (none is the process's `#[global_allocator]`, which stays `System`), so all
//! variants run exactly the same loops and differ only in the allocator:
//!
//! - the inner allocators bare: `System`, `MiMalloc`, `Jemalloc`
//!   (tikv-jemallocator);
//! - each wrapped in `allocmeter::Instrumented` with sampling off, at the
//!   default 512 KiB and at 64 KiB;
//! - the peers, each declared as its README declares its
//!   `#[global_allocator]` and wrapping `System` where it wraps anything:
//!   stats_alloc, cap, peak_alloc, heapster, re_memory's
//!   `AccountingAllocator` (call-stack tracking off, then on),
//!   tracking-allocator (with a counting tracker installed and tracking
//!   enabled), pprof-alloc (pprof sampling at its default 512 KiB, and its
//!   counters) and dhat (heap mode, with a `dhat::Profiler` running).
//!   `benches/peers.md` tells what each records, how it is set up here, and
//!   the figures of a run.
//!
//! Three workloads, each on every thread count in `ALLOCMETER_BENCH_THREADS`
//! (a comma-separated list, default `1,2`):
//!
//! - `64B`: allocate 64 B and free it at once (one op = one pair);
//! - `mixed_16B-64KiB`: sizes from 16 B to 64 KiB, log-uniform from a
//!   precomputed table, with a ring of [`allocmeter_benches::RING`] live blocks, each freed
//!   [`allocmeter_benches::RING`] steps after it was allocated (one op = one pair);
//! - `realloc_8B-1MiB`: a vector grown from 8 B to 1 MiB by doubling
//!   reallocations, each grown part written as `Vec::push` would, then freed
//!   (one op = the whole growth: 1 alloc, 17 reallocs, 1 free).
//!
//! Each sample runs on threads spawned for it; after a short untimed warm-up
//! every thread runs `iters` ops, and the slowest thread's time is returned,
//! so criterion's figure is the time per op per thread.
//!
//! Some switches are process-wide and are set just before a variant's runs and
//! restored after them: allocmeter's sample rate, re_memory's call-stack
//! tracking, tracking-allocator's tracking, and dhat's profiler (which exists
//! only around the dhat runs). As in `pairs.rs`, a drainer thread empties
//! allocmeter's sample rings, as the exporter would.
//!
//! After each variant's runs, while its switches are still on, the benchmark
//! reads what the instrumentation recorded (allocations counted, live bytes,
//! samples or stacks) over the runs and around a probe allocation of
//! [`PROBE_SIZE`], prints it, and records it with
//! [`allocmeter_benches::write_extra`], so a peer that recorded nothing would
//! show.
//!
//! Then the 64 B and mixed pairs once more, outside criterion: `System`,
//! allocmeter at the default rate and every peer interleaved in slices of
//! about half a millisecond, the threads running each slice together
//! ([`peers_interleaved`]). Its per-round added costs are what the report
//! checks the peers targets against, on a host whose speed swings faster
//! than criterion's measurements last.
//!
//! Run with `cargo bench -p allocmeter-benches --bench peers`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::LazyLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use allocmeter::Instrumented;
use allocmeter_benches::{
    ALIGN, SIZES_TO_64KIB, SpinBarrier, Workload, alloc, interleaved_pair_workloads,
    interleaved_rounds, on_threads, ops_run, reset_ops, rotated_rounds, run_threads, start_drainer,
    thread_counts, threads_name,
};
use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion, criterion_group, criterion_main};
use mimalloc::MiMalloc;
use tikv_jemallocator::Jemalloc;
use tracking_allocator::{AllocationGroupId, AllocationRegistry, AllocationTracker};

// The inner allocators, bare and wrapped.
static SYSTEM: System = System;
static INSTRUMENTED_SYSTEM: Instrumented<System> = Instrumented::new(System);
static MIMALLOC: MiMalloc = MiMalloc;
static INSTRUMENTED_MIMALLOC: Instrumented<MiMalloc> = Instrumented::new(MiMalloc);
static JEMALLOC: Jemalloc = Jemalloc;
static INSTRUMENTED_JEMALLOC: Instrumented<Jemalloc> = Instrumented::new(Jemalloc);

// The peers, each as its README declares it.
static STATS_ALLOC: &stats_alloc::StatsAlloc<System> = &stats_alloc::INSTRUMENTED_SYSTEM;
static CAP: cap::Cap<System> = cap::Cap::new(System, usize::MAX);
static PEAK_ALLOC: peak_alloc::PeakAlloc = peak_alloc::PeakAlloc;
static HEAPSTER: heapster::Heapster<System> = heapster::Heapster::new(System);
static RE_MEMORY: re_memory::AccountingAllocator<System> =
    re_memory::AccountingAllocator::new(System);
static TRACKING_ALLOCATOR: tracking_allocator::Allocator<System> =
    tracking_allocator::Allocator::system();
static PPROF_ALLOC: pprof_alloc::PprofAlloc =
    pprof_alloc::PprofAlloc::new().with_pprof().with_stats();
static DHAT: dhat::Alloc = dhat::Alloc;

/// The probe allocation made after each variant's runs: large enough for
/// re_memory to track it fully (at least 1 MiB) and for the samplers to take
/// it almost surely.
const PROBE_SIZE: usize = 2 << 20;

/// What an allocator's instrumentation reports, read through its own API.
/// `None`: it keeps no such figure.
#[derive(Clone, Copy, Default)]
struct Observed {
    /// Allocations counted since it started (allocmeter and pprof-alloc count
    /// a realloc as one free and one allocation, dhat as one more block,
    /// tracking-allocator's default realloc is an allocation and a free;
    /// heapster and stats_alloc count reallocs apart).
    allocs: Option<u64>,
    /// Bytes allocated and not freed.
    live_bytes: Option<i64>,
    /// What the call-site profiler recorded: samples taken (allocmeter),
    /// allocations its samples stand for (pprof-alloc's `alloc_objects`
    /// estimate), live blocks tracked with a stack (re_memory with call
    /// stacks on).
    stacks: Option<u64>,
}

fn delta(after: Option<u64>, before: Option<u64>) -> f64 {
    match (after, before) {
        (Some(a), Some(b)) => a.wrapping_sub(b) as f64,
        _ => f64::NAN,
    }
}

fn delta_i(after: Option<i64>, before: Option<i64>) -> f64 {
    match (after, before) {
        (Some(a), Some(b)) => (a - b) as f64,
        _ => f64::NAN,
    }
}

fn observe_none() -> Observed {
    Observed::default()
}

fn observe_allocmeter() -> Observed {
    let stats = allocmeter::stats();
    Observed {
        allocs: Some(stats.allocs),
        live_bytes: Some(stats.live_bytes as i64),
        stacks: Some(allocmeter::profile::sampling_stats().samples),
    }
}

fn observe_stats_alloc() -> Observed {
    let stats = STATS_ALLOC.stats();
    Observed {
        allocs: Some(stats.allocations as u64),
        live_bytes: Some(stats.bytes_allocated as i64 - stats.bytes_deallocated as i64),
        stacks: None,
    }
}

fn observe_cap() -> Observed {
    Observed {
        live_bytes: Some(CAP.allocated() as i64),
        ..Observed::default()
    }
}

fn observe_peak_alloc() -> Observed {
    Observed {
        live_bytes: Some(PEAK_ALLOC.current_usage() as i64),
        ..Observed::default()
    }
}

fn observe_heapster() -> Observed {
    Observed {
        allocs: Some(HEAPSTER.alloc_count()),
        live_bytes: Some(HEAPSTER.use_curr() as i64),
        stacks: None,
    }
}

fn observe_re_memory() -> Observed {
    let live = re_memory::accounting_allocator::global_allocs().map_or(0, |c| c.size);
    let tracked = re_memory::accounting_allocator::tracking_stats()
        .map(|s| (s.fully_tracked.count + s.stochastically_tracked.count) as u64);
    Observed {
        allocs: None,
        live_bytes: Some(live as i64),
        stacks: tracked,
    }
}

/// tracking-allocator's tracker: counts, as its README's example prints.
struct CountingTracker;

static TRACKED_ALLOCS: AtomicU64 = AtomicU64::new(0);
static TRACKED_ALLOC_BYTES: AtomicU64 = AtomicU64::new(0);
static TRACKED_FREES: AtomicU64 = AtomicU64::new(0);
static TRACKED_FREE_BYTES: AtomicU64 = AtomicU64::new(0);

impl AllocationTracker for CountingTracker {
    fn allocated(
        &self,
        _addr: usize,
        object_size: usize,
        _wrapped_size: usize,
        _group_id: AllocationGroupId,
    ) {
        TRACKED_ALLOCS.fetch_add(1, Ordering::Relaxed);
        TRACKED_ALLOC_BYTES.fetch_add(object_size as u64, Ordering::Relaxed);
    }

    fn deallocated(
        &self,
        _addr: usize,
        object_size: usize,
        _wrapped_size: usize,
        _source_group_id: AllocationGroupId,
        _current_group_id: AllocationGroupId,
    ) {
        TRACKED_FREES.fetch_add(1, Ordering::Relaxed);
        TRACKED_FREE_BYTES.fetch_add(object_size as u64, Ordering::Relaxed);
    }
}

fn observe_tracking_allocator() -> Observed {
    // Frees before allocations, so live never reads below the truth.
    let free_bytes = TRACKED_FREE_BYTES.load(Ordering::Relaxed) as i64;
    let alloc_bytes = TRACKED_ALLOC_BYTES.load(Ordering::Relaxed) as i64;
    Observed {
        allocs: Some(TRACKED_ALLOCS.load(Ordering::Relaxed)),
        live_bytes: Some(alloc_bytes - free_bytes),
        stacks: None,
    }
}

fn observe_pprof_alloc() -> Observed {
    // Flushes the calling thread's counters; the benchmark's threads flushed
    // theirs when they exited.
    let stats = pprof_alloc::allocation_stats();
    Observed {
        allocs: Some(stats.allocations),
        live_bytes: Some(stats.allocated as i64 - stats.freed as i64),
        stacks: Some(pprof_alloc::snapshot().pprof.alloc_objects),
    }
}

fn observe_dhat() -> Observed {
    // Only called while the dhat variant's profiler runs.
    let stats = dhat::HeapStats::get();
    Observed {
        allocs: Some(stats.total_blocks),
        live_bytes: Some(stats.curr_bytes as i64),
        stacks: None,
    }
}

/// A process-wide switch a variant needs, set before its runs and restored
/// after them.
#[derive(Clone, Copy)]
enum Setup {
    /// Nothing to set.
    Plain,
    /// allocmeter's sample rate, in bytes (0: off).
    SampleRate(u64),
    /// re_memory's call-stack tracking.
    ReMemoryCallstacks(bool),
    /// tracking-allocator's tracking (the tracker is installed at start).
    Tracking,
    /// A running dhat heap profiler.
    DhatProfiler,
}

/// A [`Setup`] in force; dropping it restores what it changed.
struct Active {
    setup: Setup,
    old_rate: u64,
    profiler: Option<dhat::Profiler>,
}

impl Setup {
    fn enter(self) -> Active {
        let old_rate = allocmeter::sample_rate();
        let mut profiler = None;
        match self {
            Setup::Plain => {}
            Setup::SampleRate(rate) => allocmeter::set_sample_rate(rate),
            Setup::ReMemoryCallstacks(on) => {
                re_memory::accounting_allocator::set_tracking_callstacks(on);
            }
            Setup::Tracking => AllocationRegistry::enable_tracking(),
            Setup::DhatProfiler => {
                let file = allocmeter_benches::criterion_dir().join("peers-dhat-heap.json");
                profiler = Some(dhat::Profiler::builder().file_name(file).build());
            }
        }
        Active {
            setup: self,
            old_rate,
            profiler,
        }
    }
}

impl Drop for Active {
    fn drop(&mut self) {
        match self.setup {
            Setup::Plain | Setup::DhatProfiler => {}
            Setup::SampleRate(_) => allocmeter::set_sample_rate(self.old_rate),
            Setup::ReMemoryCallstacks(_) => {
                re_memory::accounting_allocator::set_tracking_callstacks(false);
            }
            Setup::Tracking => AllocationRegistry::disable_tracking(),
        }
        // Stops dhat's profiler, which writes its profile.
        drop(self.profiler.take());
    }
}

/// One allocator to measure.
struct Variant {
    /// The benchmark's function name.
    name: &'static str,
    /// The allocator, for the probe allocation.
    alloc: &'static (dyn GlobalAlloc + Sync),
    /// `run_threads` on this allocator, monomorphised like the bare ones.
    run: fn(Workload, usize, u64) -> Duration,
    /// A workload's ops on this allocator on the calling thread (the
    /// interleaved measurement).
    ops: fn(Workload, u64) -> Duration,
    setup: Setup,
    observe: fn() -> Observed,
}

macro_rules! variant {
    ($name:expr, $alloc:path, $setup:expr, $observe:expr) => {
        Variant {
            name: $name,
            alloc: &$alloc,
            run: |work, threads, iters| run_threads(&$alloc, work, threads, iters),
            ops: |work, n| work.run(&$alloc, n),
            setup: $setup,
            observe: $observe,
        }
    };
}

fn variants() -> Vec<Variant> {
    use Setup::{DhatProfiler, Plain, ReMemoryCallstacks, SampleRate, Tracking};
    let default = allocmeter::DEFAULT_SAMPLE_RATE;
    let rate_64k = 64 * 1024;
    vec![
        variant!("System", SYSTEM, Plain, observe_none),
        variant!(
            "Instrumented<System> (sampling off)",
            INSTRUMENTED_SYSTEM,
            SampleRate(0),
            observe_allocmeter
        ),
        variant!(
            "Instrumented<System>",
            INSTRUMENTED_SYSTEM,
            SampleRate(default),
            observe_allocmeter
        ),
        variant!(
            "Instrumented<System> (64 KiB)",
            INSTRUMENTED_SYSTEM,
            SampleRate(rate_64k),
            observe_allocmeter
        ),
        variant!("MiMalloc", MIMALLOC, Plain, observe_none),
        variant!(
            "Instrumented<MiMalloc> (sampling off)",
            INSTRUMENTED_MIMALLOC,
            SampleRate(0),
            observe_allocmeter
        ),
        variant!(
            "Instrumented<MiMalloc>",
            INSTRUMENTED_MIMALLOC,
            SampleRate(default),
            observe_allocmeter
        ),
        variant!(
            "Instrumented<MiMalloc> (64 KiB)",
            INSTRUMENTED_MIMALLOC,
            SampleRate(rate_64k),
            observe_allocmeter
        ),
        variant!("Jemalloc", JEMALLOC, Plain, observe_none),
        variant!(
            "Instrumented<Jemalloc> (sampling off)",
            INSTRUMENTED_JEMALLOC,
            SampleRate(0),
            observe_allocmeter
        ),
        variant!(
            "Instrumented<Jemalloc>",
            INSTRUMENTED_JEMALLOC,
            SampleRate(default),
            observe_allocmeter
        ),
        variant!(
            "Instrumented<Jemalloc> (64 KiB)",
            INSTRUMENTED_JEMALLOC,
            SampleRate(rate_64k),
            observe_allocmeter
        ),
        variant!(
            "stats_alloc StatsAlloc<System>",
            STATS_ALLOC,
            Plain,
            observe_stats_alloc
        ),
        variant!("cap Cap<System>", CAP, Plain, observe_cap),
        variant!(
            "peak_alloc PeakAlloc",
            PEAK_ALLOC,
            Plain,
            observe_peak_alloc
        ),
        variant!(
            "heapster Heapster<System>",
            HEAPSTER,
            Plain,
            observe_heapster
        ),
        variant!(
            "re_memory AccountingAllocator<System>",
            RE_MEMORY,
            ReMemoryCallstacks(false),
            observe_re_memory
        ),
        variant!(
            "re_memory AccountingAllocator<System> (callstacks on)",
            RE_MEMORY,
            ReMemoryCallstacks(true),
            observe_re_memory
        ),
        variant!(
            "tracking-allocator Allocator<System>",
            TRACKING_ALLOCATOR,
            Tracking,
            observe_tracking_allocator
        ),
        variant!(
            "pprof-alloc PprofAlloc (System)",
            PPROF_ALLOC,
            Plain,
            observe_pprof_alloc
        ),
        variant!("dhat Alloc (heap)", DHAT, DhatProfiler, observe_dhat),
    ]
}

/// Benchmarks one variant on one workload and thread count, then reports
/// what its instrumentation recorded meanwhile and around a probe allocation.
fn bench_one(
    group: &mut BenchmarkGroup<'_, WallTime>,
    group_name: &str,
    v: &Variant,
    work: Workload,
    threads: usize,
) {
    let active = v.setup.enter();
    let rate = allocmeter::sample_rate();
    reset_ops();
    let sampling_before = allocmeter::profile::sampling_stats();
    let before = (v.observe)();
    group.bench_function(v.name, |b| {
        b.iter_custom(|iters| (v.run)(work, threads, iters))
    });
    let ops = ops_run();
    if ops == 0 {
        return; // filtered out
    }
    let after = (v.observe)();
    let sampling_after = allocmeter::profile::sampling_stats();

    // The probe: one block through the allocator, observed while it lives.
    let layout = Layout::from_size_align(PROBE_SIZE, ALIGN).expect("2 MiB");
    let probe_before = (v.observe)();
    let p = alloc(v.alloc, layout);
    let probe_during = (v.observe)();
    // SAFETY: `p` was just allocated by `v.alloc` with `layout`.
    unsafe { v.alloc.dealloc(p, layout) };
    drop(active);

    let allocs = delta(after.allocs, before.allocs);
    let stacks = delta(after.stacks, before.stacks);
    let probe_allocs = delta(probe_during.allocs, probe_before.allocs);
    let probe_live = delta_i(probe_during.live_bytes, probe_before.live_bytes);
    let probe_stacks = delta(probe_during.stacks, probe_before.stacks);
    let is_instrumented = v.name.starts_with("Instrumented");
    let (samples, dropped) = if is_instrumented {
        (
            (sampling_after.samples - sampling_before.samples) as f64,
            (sampling_after.dropped - sampling_before.dropped) as f64,
        )
    } else {
        (f64::NAN, f64::NAN)
    };
    let seen = probe_allocs >= 1.0 || probe_live == PROBE_SIZE as f64;
    let verdict = if probe_before.allocs.is_none() && probe_before.live_bytes.is_none() {
        "not instrumented"
    } else if seen {
        "recorded the probe"
    } else {
        "DID NOT record the probe"
    };
    eprintln!(
        "  {group_name}/{}: {ops} ops; over the runs: allocs {allocs}, stacks or samples \
         {stacks}; probe of {PROBE_SIZE} B: allocs {probe_allocs}, live {probe_live}, \
         stacks {probe_stacks}: {verdict}",
        v.name
    );
    let mut fields = vec![
        ("ops", ops as f64),
        ("recorded_allocs", allocs),
        ("recorded_stacks", stacks),
        ("probe_allocs", probe_allocs),
        ("probe_live_bytes", probe_live),
        ("probe_stacks", probe_stacks),
    ];
    if is_instrumented {
        fields.extend([
            ("rate", rate as f64),
            ("samples", samples),
            ("dropped", dropped),
        ]);
    }
    allocmeter_benches::write_extra(group_name, v.name, &fields);
}

fn peers(c: &mut Criterion) {
    LazyLock::force(&SIZES_TO_64KIB);
    AllocationRegistry::set_global_tracker(CountingTracker)
        .expect("no other tracking-allocator tracker is set");
    start_drainer();
    let variants = variants();
    let workloads = [
        Workload::Fixed64,
        Workload::Mixed64KiB,
        Workload::ReallocGrowth,
    ];
    for work in workloads {
        for threads in thread_counts() {
            let group_name = format!("peers/{}/{}", work.name(), threads_name(threads));
            let mut group = c.benchmark_group(&group_name);
            for v in &variants {
                bench_one(&mut group, &group_name, v, work, threads);
            }
            group.finish();
        }
    }
}

/// How long one slice of the interleaved measurement runs, about (its
/// pairs are set per variant from a calibration run).
const SLICE: Duration = Duration::from_micros(500);

/// Whether variant `v` takes part in the interleaved measurement: `System`,
/// `Instrumented<System>` at the default rate, and every peer (they all wrap
/// `System`).
fn interleaved_variant(v: &Variant) -> bool {
    v.name == "System" || v.name == "Instrumented<System>" || !inner_or_ours(v.name)
}

/// An inner allocator, bare or in allocmeter.
fn inner_or_ours(name: &str) -> bool {
    name.starts_with("Instrumented<") || ["System", "MiMalloc", "Jemalloc"].contains(&name)
}

/// Sets the one switch that differs between the interleaved variants:
/// re_memory's call-stack tracking, on only for its variant that wants it.
/// (The others stay as [`peers_interleaved`] set them for the whole
/// measurement: allocmeter at its default rate, tracking-allocator's tracking
/// on, a dhat profiler running; each concerns only its own allocator.)
fn enter_interleaved(v: &Variant) {
    let on = matches!(v.setup, Setup::ReMemoryCallstacks(true));
    re_memory::accounting_allocator::set_tracking_callstacks(on);
}

/// One pair workload (64 B, or mixed sizes) through `System`, allocmeter and
/// every peer, interleaved at a fine grain, on `threads` threads at once: the
/// figures the peers targets are checked against.
///
/// Why: criterion measures one variant for seconds, then the next, and on a
/// host whose speed swings every few hundred milliseconds (see
/// `interleaved` in `pairs.rs`) allocmeter's added cost came out at 5.9 ns
/// there against 1.9 ns interleaved, which made every factor against the
/// peers three times too small. Here every round runs each variant for one
/// slice of about [`SLICE`] (a calibrated number of pairs: about 50,000
/// 64 B pairs for `System`, a few hundred for dhat), in an order rotated
/// each round; the
/// threads run each slice together, between two spinning barriers
/// ([`SpinBarrier`]), so that a
/// variant's process-wide switch is in force on all of them. A variant's
/// added cost is the median over the threads' rounds of its slice's ns per
/// pair minus `System`'s in the same round. The first round warms up and is
/// not counted.
///
/// Written as extras (`allocmeter-extra/`) of the group
/// `peers_<workload>_interleaved/<threads>`: per variant the figures of
/// [`allocmeter_benches::interleaved_figures`], the rounds, the slice's pairs
/// and the report's order.
fn interleaved(
    work: Workload,
    variants: &[&Variant],
    slice_pairs: &[u64],
    threads: usize,
    rounds: usize,
) {
    let group = format!(
        "peers_{}_interleaved/{}",
        work.name(),
        threads_name(threads)
    );
    let n = variants.len();
    let barrier = SpinBarrier::new(threads);
    let times = on_threads(threads, || {
        rotated_rounds(n, rounds, |v| {
            if barrier.wait() {
                enter_interleaved(variants[v]);
            }
            barrier.wait();
            let took = (variants[v].ops)(work, slice_pairs[v]);
            took.as_nanos() as f64 / slice_pairs[v] as f64
        })
    });
    re_memory::accounting_allocator::set_tracking_callstacks(false);
    let names = variants.iter().map(|v| v.name);
    allocmeter_benches::report_rotated(&group, names, &times, rounds, |v| slice_pairs[v]);
}

/// The interleaved measurement of the 64 B and mixed pairs for each thread
/// count, unless a criterion filter on the command line leaves it out.
fn peers_interleaved(_: &mut Criterion) {
    let workloads = interleaved_pair_workloads("peers");
    if workloads.is_empty() {
        return;
    }
    LazyLock::force(&SIZES_TO_64KIB);
    let all = variants();
    let variants: Vec<&Variant> = all.iter().filter(|v| interleaved_variant(v)).collect();
    let old_rate = allocmeter::sample_rate();
    allocmeter::set_sample_rate(allocmeter::DEFAULT_SAMPLE_RATE);
    AllocationRegistry::enable_tracking();
    let dhat_file = allocmeter_benches::criterion_dir().join("peers-interleaved-dhat-heap.json");
    let profiler = dhat::Profiler::builder().file_name(dhat_file).build();
    // About 6 s per workload and thread count.
    let rounds = interleaved_rounds("ALLOCMETER_PEERS_INTERLEAVED_ROUNDS", 1_000, 5);
    for work in workloads {
        // Pairs per slice: what runs about `SLICE` on one thread, after a
        // warm-up.
        let slice_pairs: Vec<u64> = variants
            .iter()
            .map(|v| {
                enter_interleaved(v);
                (v.ops)(work, 1024);
                let took = (v.ops)(work, 2000).as_nanos().max(1) as f64 / 2000.0;
                ((SLICE.as_nanos() as f64 / took) as u64).clamp(50, 100_000)
            })
            .collect();
        for threads in thread_counts() {
            interleaved(work, &variants, &slice_pairs, threads, rounds);
        }
    }
    drop(profiler);
    AllocationRegistry::disable_tracking();
    allocmeter::set_sample_rate(old_rate);
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_millis(1500))
        .sample_size(10);
    targets = peers, peers_interleaved
}
criterion_main!(benches);
