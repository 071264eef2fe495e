//! # allocmeter
//!
//! An instrumented global allocator: put it around the allocator your service
//! already uses and read exact allocation statistics, shaped like Go's
//! `runtime.MemStats`, while the service runs.
//!
//! ## Why
//!
//! "How much does this service allocate, how fast, in what sizes, and is the
//! heap growing?" Go answers that out of the box; Rust services usually answer
//! it with a heap profiler run once on a laptop. allocmeter answers it in
//! production: its per-operation cost is a thread-local read and a few plain
//! stores into the calling thread's own cache lines, cheap enough to leave on.
//! The companion crate `allocmeter-exporter` serves the numbers to Prometheus.
//!
//! ## Setting it up
//!
//! ```
//! use std::alloc::System;
//! use allocmeter::Instrumented;
//!
//! #[global_allocator]
//! static GLOBAL: Instrumented<System> = Instrumented::new(System);
//!
//! fn main() {
//!     let names: Vec<String> = (0..100).map(|i| i.to_string()).collect();
//!     let s = allocmeter::stats();
//!     println!("{} bytes live in {} blocks", s.live_bytes, s.live_objects);
//!     # assert!(s.allocs >= 101);
//!     # drop(names);
//! }
//! ```
//!
//! Any [`GlobalAlloc`](core::alloc::GlobalAlloc) can be the inner allocator:
//! `System`, `mimalloc::MiMalloc`, `tikv_jemallocator::Jemalloc`.
//!
//! ## Reading the numbers
//!
//! - [`stats`](fn@stats) gives process-wide [`MemStats`]: live bytes and objects,
//!   cumulative allocations and frees (count and bytes), reallocs by kind,
//!   failures, and a histogram by power-of-two [size class](size_class).
//! - [`thread_stats`] and [`measure`] give the calling thread's own exact
//!   numbers, for tests such as "this request path allocates at most N times".
//!   [`thread_totals`] is the cheap reading of its four totals, for code that
//!   brackets work many times a second (the exporter's `tracing` span layer).
//! - [`allocs_per_run`] (Go's `testing.AllocsPerRun`), [`runs`] (per-run
//!   means, least and most, and peak live bytes), [`assert_allocs!`] and
//!   [`assert_no_allocs!`] (a failure shows the stacks of the allocations)
//!   and [`measure_spawned`] (the threads a scope starts) pin allocation
//!   budgets down in tests; the repository's `docs/budgets.md` has the Go
//!   equivalents and the pitfalls.
//! - [`stats_split`] gives the same figures split exactly into the program's
//!   and allocmeter's own (the exporter's threads and the renders it does
//!   on the program's threads, see [`profile::internal_scope`]), so that
//!   looking at the numbers does not move them.
//!
//! - About one allocation per [`sample_rate`] bytes (512 KiB by default, as in
//!   Go) is sampled with its call stack, Go-style; [`profile::drain`] reads
//!   the samples and [`sample_weight`] says what each stands for. The
//!   `allocmeter-exporter` crate turns them into pprof heap profiles.
//!
//! All sizes are requested sizes (`Layout::size`). A `realloc` counts as a free
//! of the old block plus an allocation of the new one, and is also counted by
//! kind (grown in place, shrunk in place, moved).
//!
//! ## Allocation budgets
//!
//! Measure, cut, then pin the win down (the example of the repository's `docs/budgets.md`):
//!
//! ```
//! # #[global_allocator]
//! # static GLOBAL: allocmeter::Instrumented<std::alloc::System> =
//! #     allocmeter::Instrumented::new(std::alloc::System);
//! use allocmeter::{assert_allocs, assert_no_allocs};
//! use std::hint::black_box;
//!
//! fn render(name: &str, out: &mut String) {
//!     out.clear();
//!     out.push_str("hello, ");
//!     out.push_str(name);
//! }
//!
//! // Go: testing.AllocsPerRun(100, func() { render("world", &out) }) == 0
//! let mut out = String::with_capacity(64);
//! assert_eq!(allocmeter::allocs_per_run(100, || render(black_box("world"), &mut out)), 0);
//!
//! let report = allocmeter::runs(100, || drop(black_box(vec![0u8; 100])));
//! assert_eq!((report.allocs.mean, report.alloc_bytes.max), (1.0, 100));
//! assert_eq!(report.peak_live_bytes.max, 100);
//!
//! let greeting = assert_allocs!(at_most = 1, format!("hello, {}", black_box("world")));
//! assert_eq!(greeting, "hello, world");
//! assert_no_allocs!(render(black_box("again"), &mut out));
//! ```
//!
//! ## How it works, and what it promises
//!
//! - Each thread records into its own cache-padded *slot*, claimed on its first
//!   allocation from a fixed registry of [`MAX_SLOTS`] and released when
//!   the thread exits. The next thread reuses the slot and keeps adding to the
//!   same totals, so no count is lost when threads exit and memory is bounded by
//!   the peak number of concurrent threads.
//! - Threads beyond that, and allocations made during a thread's teardown after
//!   its slot was released, go to one shared fallback slot (atomic
//!   read-modify-writes: slower, still exact).
//! - A null from the inner allocator goes back to the caller and is counted in
//!   [`MemStats::failures`]; the allocator never panics, aborts or unwinds.
//! - Readers never stop writers. Each counter is exact and monotonic, but a
//!   read is not a snapshot across counters (see [`MemStats`]).
//!
//! ## Pitfalls
//!
//! - Build with frame pointers (`-C force-frame-pointers=yes`) for cheap
//!   stack capture; without them samples are taken by DWARF unwinding, which
//!   costs several microseconds each (see [`stack`]).
//! - The optimiser may remove an allocation whose result is never used, so
//!   tests that count allocations should pass values through
//!   [`std::hint::black_box`].
//! - All [`Instrumented`] values share one set of counters; install one, as the
//!   `#[global_allocator]`.
//! - Memory allocated by C code through `malloc` does not pass through a Rust
//!   global allocator and is not counted.
//!
//! ## Platform
//!
//! Linux only: allocmeter hooks `fork` with `pthread_atfork`, reads the clock
//! with `clock_gettime` and its companion exporter reads `/proc` and walks
//! the loaded objects with `dl_iterate_phdr`. On any other target the build
//! stops with one error that says so. Rust 1.88 or newer.

#![warn(missing_docs)]
// Built with `--cfg loom` (`.ci/loom.sh`), the crate is reduced to the parts
// that loom model-checks; the rest uses `static`s that loom's atomics cannot
// initialise.
#![cfg_attr(loom, allow(dead_code, unused_imports))]

// One clear error off Linux, instead of one per missing libc item: every
// module below is left out there (`outside_loom!` and `mod lockfree` carry
// the same condition), so this is all the compiler reports.
#[cfg(not(target_os = "linux"))]
compile_error!(
    "allocmeter supports Linux only (it hooks fork() with pthread_atfork, and \
     allocmeter-exporter reads /proc and walks the loaded objects with \
     dl_iterate_phdr): build for a *-linux-* target"
);

// The README's example, compiled and run as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctest;

/// The items inside are left out of a `--cfg loom` build (and off Linux,
/// where the `compile_error!` above is the only thing built).
macro_rules! outside_loom {
    ($($item:item)*) => { $( #[cfg(all(not(loom), target_os = "linux"))] $item )* };
}

// The modules in the order data flows through them. Each one's `//!` docs say
// what it owns and what it must not touch.

// The lock-free parts, model-checked by loom: all a `--cfg loom` build has
// (the sample ring and a slot's chain of rings, the sampled-pointer table,
// slot ownership, the try-lock, the counter bumps, `Padded`).
#[cfg(target_os = "linux")]
mod lockfree;

outside_loom! {
    // The hot path: the `GlobalAlloc` wrapper, and the calling thread's state
    // it records through (its slot, its sampling clock).
    mod instrumented;
    mod local;
    // Where the counts go: the per-thread slots and their counter cells, by
    // size class.
    mod slot;
    mod counters;
    pub mod size_class;
    // The sampled path: which allocations are sampled, their stacks, and the
    // record each sample becomes in its thread's ring.
    mod sampler;
    pub mod stack;
    mod record;
    // The consumers: `stats()` sums the slots (`internal` splits them into
    // the program's and allocmeter's own); the drainer reads the rings
    // through `profile`.
    mod internal;
    mod installed;
    mod stats;
    mod drainer;
    pub mod profile;
    #[cfg(feature = "criterion")] pub mod criterion; // allocs and bytes per iteration in criterion
    // The program's knobs, and what `fork()` needs put right.
    mod control;
    mod fork;
    // Allocation budgets for tests and benches, over the counts and the
    // sampled path.
    mod budget;

    #[doc(hidden)]
    pub use budget::assert::check as budget_check;
    pub use budget::assert::{
        BudgetExceeded, assert_allocs_at_most, budget_max_stacks, check_allocs,
    };
    pub use budget::per_run::{PerRun, RunsReport, allocs_per_run, runs};
    pub use budget::spawned::{SpawnedStats, measure_spawned};
    pub use budget::stacks::AllocationStack;
    pub use control::{set_sample_rate, set_stack_depth};
    pub use installed::is_installed;
    pub use instrumented::Instrumented;
    pub use sampler::{
        DEFAULT_SAMPLE_RATE, DEFAULT_STACK_DEPTH, sample_rate, sample_weight, stack_depth,
    };
    pub use slot::MAX_SLOTS;
    pub use stats::{
        InternalStats, MemStats, Reallocs, SizeClassStats, StatsSplit, ThreadStats, ThreadTotals,
        measure, stats, stats_split, telemetry_bound, thread_stats, thread_totals, try_measure,
    };
}
