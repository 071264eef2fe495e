//! `fork()` while other threads allocate and sample: the child can allocate,
//! free, sample, drain, start threads and exit, and its own work is counted
//! exactly (see the `fork` module docs for what the child inherits).
//!
//! Each child reports through its exit status; the parent waits with a
//! deadline, so a child stuck on a lock held by a thread that did not come
//! along fails the test instead of hanging it.

use std::alloc::System;
use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use allocmeter::Instrumented;
use allocmeter_test_support::{fork, runner};

#[global_allocator]
static GLOBAL: Instrumented<System> = Instrumented::new(System);

const FORKS: usize = 40;
const WORKERS: usize = 4;
/// Blocks each child allocates (and frees) in its measured work.
const CHILD_BLOCKS: u64 = 3_000;
/// How long a child may take before the parent calls it hung.
const CHILD_DEADLINE: Duration = Duration::from_secs(20);

/// Allocates, grows and frees blocks of pseudo-random sizes until `stop`.
fn churn(stop: &AtomicBool, seed: u64) {
    let mut x = seed | 1;
    let mut keep: Vec<Vec<u8>> = Vec::with_capacity(64);
    while !stop.load(Ordering::Relaxed) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let mut v = Vec::<u8>::with_capacity(1 + (x % 3000) as usize);
        if x.is_multiple_of(5) {
            v.reserve_exact(5000);
        }
        if keep.len() == 64 {
            keep.swap_remove((x % 64) as usize);
        }
        keep.push(black_box(v));
    }
}

/// The child's checks. Returns the first failure, as a message.
fn child_checks() -> Result<(), String> {
    let started = Instant::now();
    // Only this thread came along: the others' slots were given back.
    let threads = allocmeter::stats().threads;
    if threads != 1 {
        return Err(format!("{threads} threads recorded in the child, not 1"));
    }
    // A drain the parent's drainer was in the middle of does not block ours.
    if allocmeter::profile::drain(|_| {}).is_none() {
        return Err("drain() refused in the child: the drain flag is stuck".into());
    }
    let before = allocmeter::profile::sampling_stats();
    let ((), used) = allocmeter::measure(|| {
        let mut blocks = Vec::with_capacity(CHILD_BLOCKS as usize);
        for i in 0..CHILD_BLOCKS {
            blocks.push(black_box(vec![i as u8; 16 + (i as usize * 37) % 4000]));
            if i % 100 == 99 {
                // Keep the ring drained (every allocation is sampled).
                let _ = allocmeter::profile::drain(|_| {});
            }
        }
        // Freed a hundred at a time, the ring drained between (each free
        // of a sampled block is a record too), then `blocks` itself (one
        // allocation: it had the capacity).
        while !blocks.is_empty() {
            blocks.truncate(blocks.len().saturating_sub(100));
            let _ = allocmeter::profile::drain(|_| {});
        }
        drop(blocks);
    });
    let after = allocmeter::profile::sampling_stats();
    // Exact: the blocks, plus `blocks`' own buffer (one allocation, grown
    // never: it had the capacity), and nothing else on this thread.
    if used.allocs != CHILD_BLOCKS + 1 || used.frees != CHILD_BLOCKS + 1 {
        return Err(format!(
            "child counted {} allocs and {} frees, expected {} each",
            used.allocs,
            used.frees,
            CHILD_BLOCKS + 1
        ));
    }
    if used.alloc_bytes != used.free_bytes {
        return Err(format!(
            "child allocated {} bytes and freed {}",
            used.alloc_bytes, used.free_bytes
        ));
    }
    let taken = after.samples - before.samples;
    let dropped = after.dropped - before.dropped;
    if taken < CHILD_BLOCKS || dropped != 0 {
        return Err(format!(
            "child sampled {taken} of {} allocations and dropped {dropped}: a lock held at the fork?",
            CHILD_BLOCKS + 1
        ));
    }
    if after.frees_lost != before.frees_lost {
        return Err("child lost the frees of sampled blocks".into());
    }
    // The child's own threads get slots (the parent's were given back).
    let t = std::thread::spawn(|| allocmeter::measure(|| black_box(vec![1u8; 100])).1.allocs);
    match t.join() {
        Ok(1) => {}
        Ok(n) => return Err(format!("a child thread counted {n} allocations, not 1")),
        Err(_) => return Err("a child thread panicked".into()),
    }
    if started.elapsed() > Duration::from_secs(10) {
        return Err(format!("child took {:?}", started.elapsed()));
    }
    Ok(())
}

/// Forks and runs `child_checks` in the child; returns its outcome.
fn fork_and_check() -> Result<(), String> {
    // SAFETY: the child runs only `child_checks`, which allocates through
    // this crate's allocator (made fork-safe by its handlers) and glibc's
    // (fork-safe), spawns and joins one thread, then `_exit`s without
    // running the parent's atexit handlers or destructors.
    let status = unsafe { fork::fork_and_wait(child_checks, CHILD_DEADLINE) }?;
    match (libc::WIFEXITED(status), libc::WEXITSTATUS(status)) {
        (true, 0) => Ok(()),
        (true, 1) => Err("a check failed in the child (message above)".into()),
        _ => Err(format!("child ended abnormally (status {status:#x})")),
    }
}

fn children_forked_while_threads_sample_allocate_free_and_exit() {
    // Every allocation sampled: the shard locks, the rings and the drain
    // flag are as busy as they get.
    allocmeter::set_sample_rate(1);
    let stop = Arc::new(AtomicBool::new(false));
    let drainer = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let _ = allocmeter::profile::drain(|_| {});
                std::thread::sleep(Duration::from_micros(200));
            }
        })
    };
    let workers: Vec<_> = (0..WORKERS as u64)
        .map(|i| {
            let stop = stop.clone();
            std::thread::spawn(move || churn(&stop, 0x9E37_79B9 + i))
        })
        .collect();
    std::thread::sleep(Duration::from_millis(50));
    let mut failures = Vec::new();
    for i in 0..FORKS {
        if let Err(e) = fork_and_check() {
            failures.push(format!("fork {i}: {e}"));
        }
    }
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.join().expect("worker panicked");
    }
    drainer.join().expect("drainer panicked");
    allocmeter::set_sample_rate(allocmeter::DEFAULT_SAMPLE_RATE);
    // The parent goes on: its shard locks were released after each fork.
    let ((), used) = allocmeter::measure(|| drop(black_box(vec![0u8; 64])));
    assert_eq!((used.allocs, used.frees), (1, 1));
    assert!(
        failures.is_empty(),
        "{} of {FORKS} forks failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

fn main() {
    runner::run(
        &[(
            "children_forked_while_threads_sample_allocate_free_and_exit",
            children_forked_while_threads_sample_allocate_free_and_exit,
        )],
        Duration::from_secs(300),
    );
}
