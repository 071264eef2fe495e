//! Threads for the benchmarks: how many ([`thread_counts`]), how a count
//! reads in a benchmark's name, running a timed loop on new threads at once
//! and returning the slowest thread's time ([`time_on_threads`],
//! [`run_threads`], which also counts the ops it runs), and a barrier for
//! the interleaved measurements that spins where each thread has a core.
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
/// is. A waiter that has spun for long yields.
///
/// With more threads than cores (`--threads 16` on a small machine) threads
/// cannot run a slice together anyway, and spinning waiters would take the
/// cores from the threads still running theirs (on 2 cores, 16 threads of
/// the floor's 64 B pairs spent four fifths of their CPU time spinning):
/// there the waiters sleep in a `std::sync::Barrier` instead.
pub struct SpinBarrier {
    threads: usize,
    arrived: AtomicUsize,
    generation: AtomicUsize,
    /// The sleeping barrier, with more threads than cores.
    sleeping: Option<Barrier>,
}

impl SpinBarrier {
    /// A barrier for `threads` threads; they spin if the machine has a core
    /// for each ([`std::thread::available_parallelism`]), else they sleep.
    pub fn new(threads: usize) -> Self {
        let cores = thread::available_parallelism().map_or(1, |n| n.get());
        SpinBarrier {
            threads,
            arrived: AtomicUsize::new(0),
            generation: AtomicUsize::new(0),
            sleeping: (threads > cores).then(|| Barrier::new(threads)),
        }
    }

    /// Waits until all threads have called `wait`; returns `true` on exactly
    /// one of them (the last to arrive, when they spin).
    pub fn wait(&self) -> bool {
        if let Some(barrier) = &self.sleeping {
            return barrier.wait().is_leader();
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// This thread's CPU time.
    fn thread_cpu() -> Duration {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `ts` is a valid, writable timespec.
        let r = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
        assert_eq!(r, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID)");
        Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
    }

    fn cores() -> usize {
        thread::available_parallelism().map_or(2, |n| n.get())
    }

    /// One leader per round, nobody leaving a round early, at 1, 2, the
    /// cores' and four times the cores' threads.
    fn one_leader_per_round_at_every_thread_count() {
        for threads in [1, 2, cores(), cores() * 4] {
            let barrier = SpinBarrier::new(threads);
            let rounds = 200;
            let leaders = AtomicUsize::new(0);
            let passed = AtomicUsize::new(0);
            thread::scope(|s| {
                for _ in 0..threads {
                    s.spawn(|| {
                        for round in 0..rounds {
                            // Nobody leaves a round before everyone is in it.
                            passed.fetch_add(1, Ordering::Relaxed);
                            if barrier.wait() {
                                leaders.fetch_add(1, Ordering::Relaxed);
                            }
                            assert!(passed.load(Ordering::Relaxed) >= (round + 1) * threads);
                            barrier.wait();
                        }
                    });
                }
            });
            assert_eq!(leaders.into_inner(), rounds, "{threads} threads");
        }
    }

    /// One test, so that the CPU check runs while no other test of this
    /// module competes for the cores.
    #[test]
    fn barrier() {
        oversubscribed_waiters_leave_the_cores_to_the_others();
        one_leader_per_round_at_every_thread_count();
    }

    /// With more threads than cores, waiting threads must leave the cores to
    /// the threads still working: spinning ones would use the cores for the
    /// whole wait, `cores × hold` of CPU.
    fn oversubscribed_waiters_leave_the_cores_to_the_others() {
        let cores = cores();
        let threads = cores * 4;
        let barrier = SpinBarrier::new(threads);
        let hold = Duration::from_millis(300);
        let used: Duration = thread::scope(|s| {
            let waiters: Vec<_> = (1..threads)
                .map(|_| {
                    s.spawn(|| {
                        let start = thread_cpu();
                        barrier.wait();
                        thread_cpu() - start
                    })
                })
                .collect();
            thread::sleep(hold);
            barrier.wait();
            waiters.into_iter().map(|h| h.join().unwrap()).sum()
        });
        let spinning = hold * cores as u32;
        assert!(
            used < hold / 4,
            "{} waiters used {used:?} of CPU while one thread held the barrier for \
             {hold:?} ({cores} cores: spinning uses up to {spinning:?})",
            threads - 1
        );
    }
}
