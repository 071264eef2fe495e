//! Allocations per run of a closure: [`allocs_per_run`] (Go's
//! `testing.AllocsPerRun`, exactly) and the fuller [`runs`] report.

use crate::counters::Counters;
use crate::slot::Slot;
use crate::{installed, local};

use super::recorder::{BudgetMode, Recorder};

/// The calling thread's slot, refusing as [`measure`](crate::measure) does
/// when allocmeter is not installed, or when the thread has no slot.
#[track_caller]
fn own_slot(what: &str) -> &'static Slot {
    installed::require(what);
    match local::current_slot() {
        Some(slot) => slot,
        None => panic!(
            "allocmeter::{what}: this thread has no counting slot of its own (all {} are \
             taken), so its allocations cannot be counted exactly",
            crate::MAX_SLOTS
        ),
    }
}

#[track_caller]
fn require_runs(what: &str, runs: usize) {
    assert!(
        runs > 0,
        "allocmeter::{what}: runs must be at least 1 (the mean of no runs is undefined; \
         Go's AllocsPerRun divides by zero)"
    );
}

/// The average number of allocations the calling thread makes per call of
/// `f`, with the semantics of Go's `testing.AllocsPerRun`: `f` is called
/// once as a warm-up, not counted, then `runs` times, and the result is the
/// total number of allocations over those calls divided by `runs` in
/// integer division, so that a test can ask `== 1` rather than `< 2`.
///
/// ```
/// # use std::alloc::System;
/// # #[global_allocator]
/// # static GLOBAL: allocmeter::Instrumented<System> = allocmeter::Instrumented::new(System);
/// use std::hint::black_box;
///
/// let boxed = allocmeter::allocs_per_run(100, || {
///     black_box(Box::new(black_box(7u64)));
/// });
/// assert_eq!(boxed, 1);
///
/// let mut buf = Vec::with_capacity(64);
/// let reused = allocmeter::allocs_per_run(100, || {
///     buf.clear();
///     buf.extend_from_slice(black_box(b"no allocation here"));
/// });
/// assert_eq!(reused, 0);
/// ```
///
/// What counts is what [`measure`](crate::measure) counts: the calling
/// thread's allocations (each realloc is one), exactly, read from its own
/// slot. Other threads (the test harness's, a parallel test's) are not
/// counted, and neither is work `f` hands to other threads (see
/// [`measure_spawned`](crate::measure_spawned)). Go counts the whole
/// process (`MemStats.Mallocs`), with `GOMAXPROCS` set to 1 meanwhile.
///
/// The warm-up call keeps one-time work out of the figure, as in Go: a lazy
/// static initialised in the first call allocates only in the warm-up.
///
/// Costs nothing beyond `f` itself: two reads of the thread's counters.
///
/// # Panics
///
/// If `runs` is 0 (before calling `f`: the mean of no runs is undefined;
/// Go's `AllocsPerRun` panics too, dividing by zero after its warm-up), if
/// allocmeter is not the program's global allocator (as
/// [`measure`](crate::measure) does), and if the thread records into the
/// shared fallback slot (all [`MAX_SLOTS`](crate::MAX_SLOTS) taken).
#[track_caller]
pub fn allocs_per_run(runs: usize, mut f: impl FnMut()) -> u64 {
    require_runs("allocs_per_run", runs);
    let slot = own_slot("allocs_per_run");
    f();
    let before = slot.counters.read().allocs();
    for _ in 0..runs {
        f();
    }
    let after = slot.counters.read().allocs();
    after.wrapping_sub(before) / runs as u64
}

/// One figure over the runs of a [`RunsReport`]: its mean per run, and the
/// least and most any one run had.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct PerRun {
    /// The total over the runs divided by their number (not rounded).
    pub mean: f64,
    /// The least in one run.
    pub min: u64,
    /// The most in one run.
    pub max: u64,
    /// The total over the runs.
    pub total: u64,
}

impl PerRun {
    fn add(&mut self, first: bool, value: u64) {
        if first {
            self.min = value;
            self.max = value;
        } else {
            self.min = self.min.min(value);
            self.max = self.max.max(value);
        }
        self.total = self.total.wrapping_add(value);
    }

    fn finish(&mut self, runs: usize) {
        self.mean = self.total as f64 / runs as f64;
    }
}

/// What the calling thread allocated per run of a closure, from [`runs`].
///
/// Every figure is exact per run (nothing is sampled), with its mean, least
/// and most over the runs. A free counts whoever allocated the block; a
/// realloc counts as one allocation and one free, and in `reallocs` and its
/// kind.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct RunsReport {
    /// Runs counted (the warm-up call not included).
    pub runs: usize,
    /// Allocations (each realloc is one).
    pub allocs: PerRun,
    /// Bytes allocated (each realloc adds its new size).
    pub alloc_bytes: PerRun,
    /// Frees (each realloc is one).
    pub frees: PerRun,
    /// Bytes freed (each realloc adds its old size).
    pub free_bytes: PerRun,
    /// Reallocs of any kind.
    pub reallocs: PerRun,
    /// Reallocs that grew the block where it was.
    pub grown_in_place: PerRun,
    /// Reallocs that shrank the block (or kept its size) where it was.
    pub shrunk_in_place: PerRun,
    /// Reallocs that moved the block.
    pub moved: PerRun,
    /// The peak live bytes of a run: the highest the thread's bytes
    /// allocated minus bytes freed went above their level at the run's
    /// start (0 for a run that allocates nothing).
    pub peak_live_bytes: PerRun,
}

impl RunsReport {
    /// Allocations per run as Go's `AllocsPerRun` gives them: the total
    /// divided by the runs in integer division.
    pub fn allocs_per_run(&self) -> u64 {
        self.allocs.total / self.runs.max(1) as u64
    }

    /// Bytes per run as Go's `-benchmem` gives them (`B/op`): the total
    /// divided by the runs in integer division.
    pub fn bytes_per_run(&self) -> u64 {
        self.alloc_bytes.total / self.runs.max(1) as u64
    }
}

/// Runs `f` once as a warm-up (not counted, as in [`allocs_per_run`]), then
/// `runs` times, and reports what the calling thread allocated, freed and
/// reallocated per run, with the peak of its live bytes in each run.
///
/// ```
/// # use std::alloc::System;
/// # #[global_allocator]
/// # static GLOBAL: allocmeter::Instrumented<System> = allocmeter::Instrumented::new(System);
/// use std::hint::black_box;
///
/// let report = allocmeter::runs(10, || {
///     let a = black_box(vec![0u8; 1000]);
///     drop(a);
///     let b = black_box(vec![0u8; 300]);
///     drop(b);
/// });
/// assert_eq!(report.allocs.mean, 2.0);
/// assert_eq!(report.alloc_bytes.max, 1300);
/// // Never more than the first vector live at once.
/// assert_eq!(report.peak_live_bytes.max, 1000);
/// ```
///
/// The peak costs the allocation hot path nothing: while the runs go on,
/// every allocation of the calling thread takes allocmeter's cold path
/// (the one sampled allocations take), which reads the thread's counters
/// to note the live bytes. Each allocation then costs about 170 ns more
/// (a 64-byte box and its free: 11 ns, and 180 ns in budget mode, in a
/// release build), on this thread only. The thread's sampling carries on as it would have: the same
/// allocations are sampled, with the same weights, and its sampling clock
/// is where it would be afterwards. Frees are not slowed (a peak is only
/// ever reached by an allocation).
///
/// # Panics
///
/// As [`allocs_per_run`]; also when called inside another budget function
/// on the same thread.
#[track_caller]
pub fn runs(runs: usize, mut f: impl FnMut()) -> RunsReport {
    require_runs("runs", runs);
    own_slot("runs");
    f();
    let recorder = Recorder::new(false);
    let mut report = RunsReport {
        runs,
        ..RunsReport::default()
    };
    {
        let mode = BudgetMode::enter(&recorder, "runs");
        let slot = mode.slot();
        for i in 0..runs {
            recorder.start_run(slot);
            let before = slot.counters.read();
            f();
            let after = slot.counters.read();
            add_run(&mut report, i == 0, &after.wrapping_sub(&before), recorder.peak());
        }
    }
    for figure in [
        &mut report.allocs,
        &mut report.alloc_bytes,
        &mut report.frees,
        &mut report.free_bytes,
        &mut report.reallocs,
        &mut report.grown_in_place,
        &mut report.shrunk_in_place,
        &mut report.moved,
        &mut report.peak_live_bytes,
    ] {
        figure.finish(runs);
    }
    report
}

fn add_run(report: &mut RunsReport, first: bool, run: &Counters, peak: u64) {
    report.allocs.add(first, run.allocs());
    report.alloc_bytes.add(first, run.alloc_bytes);
    report.frees.add(first, run.frees());
    report.free_bytes.add(first, run.free_bytes);
    report
        .reallocs
        .add(first, run.grown_in_place + run.shrunk_in_place + run.moved);
    report.grown_in_place.add(first, run.grown_in_place);
    report.shrunk_in_place.add(first, run.shrunk_in_place);
    report.moved.add(first, run.moved);
    report.peak_live_bytes.add(first, peak);
}
