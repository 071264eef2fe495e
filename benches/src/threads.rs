//! Threads for the benchmarks: how many ([`thread_counts`]), how a count
//! reads in a benchmark's name, running a timed loop on new threads at once
//! and returning the slowest thread's time ([`time_on_threads`],
//! [`run_threads`], which also counts the ops it runs), and a spinning
//! barrier for the interleaved measurements.
//!
//! What a loop does is [`crate::loops`]'s; what is reported is the caller's.

use std::alloc::GlobalAlloc;
use std::sync::Barrier;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::thread;
use std::time::Duration;

use crate::loops::Workload;

/// The thread counts the multi-threaded benchmarks run, from the
/// comma-separated `ALLOCMETER_BENCH_THREADS` (default `1,2`; `run_all.py
/// --threads` sets it). Panics on a malformed list: a benchmark run with the
/// wrong thread counts would be worse than none.
pub fn thread_counts() -> Vec<usize> {
    let Ok(list) = std::env::var("ALLOCMETER_BENCH_THREADS") else {
        return vec![1, 2];
    };
    let counts: Vec<usize> =
        list.split(',')
            .map(|n| {
                n.trim().parse().ok().filter(|&n| n > 0).unwrap_or_else(|| {
                    panic!("ALLOCMETER_BENCH_THREADS: bad count {n:?} in {list:?}")
                })
            })
            .collect();
    assert!(!counts.is_empty(), "ALLOCMETER_BENCH_THREADS is empty");
    counts
}

/// How a thread count appears in benchmark names: `1thread`, `2threads`.
pub fn threads_name(threads: usize) -> String {
    let plural = if threads == 1 { "" } else { "s" };
    format!("{threads}thread{plural}")
}

/// Runs `work` on each of `threads` new threads and returns the slowest
/// thread's time: the per-thread figure of a multi-threaded benchmark.
/// `work` gets the barrier to wait on between its warm-up and its timed
/// part.
pub fn time_on_threads(threads: usize, work: impl Fn(&Barrier) -> Duration + Sync) -> Duration {
    let barrier = Barrier::new(threads);
    thread::scope(|s| {
        let handles: Vec<_> = (0..threads).map(|_| s.spawn(|| work(&barrier))).collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("benchmark thread panicked"))
            .max()
            .unwrap_or_default()
    })
}

/// Ops run (warm-up included) by [`run_threads`] since the last
/// [`reset_ops`], on all threads.
static OPS: AtomicU64 = AtomicU64::new(0);

/// Sets the count [`ops_run`] returns to zero (before a benchmark's runs).
pub fn reset_ops() {
    OPS.store(0, Ordering::Relaxed);
}

/// The ops (warm-up included) [`run_threads`] ran on all threads since the
/// last [`reset_ops`]: zero if criterion's filter left the benchmark out.
pub fn ops_run() -> u64 {
    OPS.load(Ordering::Relaxed)
}

/// Runs `iters` ops of `work` through `a` on each of `threads` new threads,
/// after an untimed warm-up of [`Workload::warm_up_ops`] ops, started
/// together once all threads are warm, and returns the slowest thread's
/// time. Counts the ops for [`ops_run`].
pub fn run_threads<A: GlobalAlloc + Sync>(
    a: &A,
    work: Workload,
    threads: usize,
    iters: u64,
) -> Duration {
    let warm_up = work.warm_up_ops();
    OPS.fetch_add((warm_up + iters) * threads as u64, Ordering::Relaxed);
    time_on_threads(threads, |barrier| {
        work.run(a, warm_up);
        barrier.wait();
        work.run(a, iters)
    })
}

/// A barrier whose waiters spin: they leave it within a fraction of a
/// microsecond of the last arrival, where `std::sync::Barrier` wakes them
/// through the kernel tens of microseconds later. The interleaved
/// measurements use it so that threads run each slice together, from its
/// first pair, and a variant's contention between threads is measured as it
/// is. A waiter that has spun for long (more threads than cores) yields.
pub struct SpinBarrier {
    threads: usize,
    arrived: AtomicUsize,
    generation: AtomicUsize,
}

impl SpinBarrier {
    /// A barrier for `threads` threads.
    pub fn new(threads: usize) -> Self {
        SpinBarrier {
            threads,
            arrived: AtomicUsize::new(0),
            generation: AtomicUsize::new(0),
        }
    }

    /// Waits until all threads have called `wait`; returns `true` on exactly
    /// one of them (the last to arrive).
    pub fn wait(&self) -> bool {
        let generation = self.generation.load(Ordering::Acquire);
        if self.arrived.fetch_add(1, Ordering::AcqRel) + 1 == self.threads {
            // Reset before the release, so that a thread that sees the new
            // generation and comes back counts from zero.
            self.arrived.store(0, Ordering::Relaxed);
            self.generation.fetch_add(1, Ordering::Release);
            return true;
        }
        let mut spins = 0u32;
        while self.generation.load(Ordering::Acquire) == generation {
            spins = spins.saturating_add(1);
            if spins > 100_000 {
                thread::yield_now();
            } else {
                std::hint::spin_loop();
            }
        }
        false
    }
}
