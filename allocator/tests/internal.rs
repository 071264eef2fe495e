//! allocmeter's own share ([`allocmeter::stats_split`]): internal scopes and
//! threads marked internal are split from the program's figures exactly, to
//! the byte and the allocation, across nesting, thread exit and `fork()`.
//!
//! `harness = false`: exact process-wide figures need the process to
//! themselves (the runner's watchdog thread only sleeps).

use std::alloc::System;
use std::cell::RefCell;
use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use allocmeter::profile::{account_internal, internal_scope, mark_thread_internal};
use allocmeter::{Instrumented, InternalStats, MemStats, stats_split};
use allocmeter_test_support::{fork, runner};

#[global_allocator]
static GLOBAL: Instrumented<System> = Instrumented::new(System);

/// (alloc bytes, allocs, free bytes, frees) of the program's share.
fn program(s: &MemStats) -> (u64, u64, u64, u64) {
    (s.alloc_bytes, s.allocs, s.free_bytes, s.frees)
}

/// The same of allocmeter's share.
fn internal(s: &InternalStats) -> (u64, u64, u64, u64) {
    (s.alloc_bytes, s.allocs, s.free_bytes, s.frees)
}

fn delta(a: (u64, u64, u64, u64), b: (u64, u64, u64, u64)) -> (u64, u64, u64, u64) {
    (b.0 - a.0, b.1 - a.1, b.2 - a.2, b.3 - a.3)
}

/// Inside a scope, every allocation and free is allocmeter's; outside, the
/// program's; nested scopes change nothing; the shares add up to the total.
fn scopes_split_exactly_and_nest() {
    let before = stats_split();
    let kept = account_internal(|| {
        let a = black_box(vec![1u8; 1000]);
        let inner = account_internal(|| black_box(vec![2u8; 300]));
        let scope = internal_scope();
        let b = black_box(Vec::<u8>::with_capacity(50));
        drop(scope);
        drop(a);
        drop(b);
        inner
    });
    let inside = stats_split();
    assert_eq!(
        delta(internal(&before.internal), internal(&inside.internal)),
        (1350, 3, 1050, 2),
        "the scope's work is allocmeter's"
    );
    assert_eq!(program(&before.program), program(&inside.program));
    assert_eq!(inside.internal.live_bytes - before.internal.live_bytes, 300);
    // Outside the scope: the program's again.
    let mine = black_box(vec![3u8; 700]);
    let outside = stats_split();
    assert_eq!(
        delta(program(&inside.program), program(&outside.program)),
        (700, 1, 0, 0)
    );
    assert_eq!(internal(&inside.internal), internal(&outside.internal));
    // The shares add up to the process's counters (none of which moved
    // between these two reads: this thread is the only one allocating).
    let total = allocmeter::stats();
    let split = stats_split();
    assert_eq!(
        split.program.alloc_bytes + split.internal.alloc_bytes,
        total.alloc_bytes
    );
    assert_eq!(split.program.allocs + split.internal.allocs, total.allocs);
    assert_eq!(
        split.program.live_bytes + split.internal.live_bytes,
        total.live_bytes
    );
    // A block allocated inside and freed outside crosses: allocmeter's live
    // figure keeps it, the program's drops by it.
    let before = stats_split();
    drop(kept);
    let after = stats_split();
    assert_eq!(before.program.live_bytes - after.program.live_bytes, 300);
    assert_eq!(after.internal.live_bytes, before.internal.live_bytes);
    drop(mine);
}

thread_local! {
    static HELD: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
}

/// A named thread spawned inside a scope and marked internal first thing (as
/// the exporter's are) is allocmeter's from its spawn to its join, std's
/// start-up and thread-local destructors included; the next thread in its
/// slot is the program's.
fn a_marked_thread_is_allocmeter_s_from_spawn_to_join() {
    let (stop, go) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicBool::new(false)),
    );
    let before = stats_split();
    let thread = account_internal(|| {
        let (stop, go) = (stop.clone(), go.clone());
        // Named: std's start-up copies the name on the new thread.
        std::thread::Builder::new()
            .name("allocmeter-test-internal".into())
            .spawn(move || {
                mark_thread_internal();
                HELD.with(|h| h.borrow_mut().push(black_box(vec![0u8; 5000])));
                go.store(true, Ordering::Release);
                while !stop.load(Ordering::Acquire) {
                    std::thread::sleep(Duration::from_millis(1));
                }
                // The block in `HELD` is freed at exit, by a thread-local
                // destructor.
            })
            .unwrap()
    });
    while !go.load(Ordering::Acquire) {
        std::thread::sleep(Duration::from_millis(1));
    }
    let running = stats_split();
    assert_eq!(program(&before.program), program(&running.program));
    // The 5000 bytes and the vector in `HELD`, at least.
    assert!(running.internal.live_bytes - before.internal.live_bytes >= 5000 + 24);
    stop.store(true, Ordering::Release);
    account_internal(|| thread.join()).unwrap();
    let after = stats_split();
    assert_eq!(
        program(&before.program),
        program(&after.program),
        "the program did nothing meanwhile"
    );
    assert_eq!(after.internal.live_bytes, before.internal.live_bytes);
    assert_eq!(after.internal.live_objects, before.internal.live_objects);
    assert!(after.internal.allocs >= before.internal.allocs + 3);
    // The next thread is the program's, even in the same slot.
    let again = stats_split();
    let n = std::thread::spawn(|| black_box(vec![0u8; 123]).len())
        .join()
        .unwrap();
    assert_eq!(n, 123);
    let last = stats_split();
    assert_eq!(internal(&again.internal), internal(&last.internal));
    assert!(last.program.alloc_bytes >= again.program.alloc_bytes + 123);
    assert_eq!(last.program.live_bytes, again.program.live_bytes);
}

/// Many threads entering and leaving scopes while another reads: every read
/// adds up, and the program's counters never go back.
fn reads_stay_exact_while_threads_change_sides() {
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..3)
        .map(|i| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let v = account_internal(|| black_box(vec![i as u8; 64 + (n % 512) as usize]));
                    drop(account_internal(|| v));
                    n += 1;
                }
                n
            })
        })
        .collect();
    let mut last = stats_split();
    for _ in 0..20_000 {
        let s = stats_split();
        for (a, b) in [
            (last.program.alloc_bytes, s.program.alloc_bytes),
            (last.program.allocs, s.program.allocs),
            (last.program.frees, s.program.frees),
            (last.internal.alloc_bytes, s.internal.alloc_bytes),
            (last.internal.frees, s.internal.frees),
        ] {
            assert!(b >= a, "a counter went back: {a} -> {b}");
        }
        last = s;
    }
    stop.store(true, Ordering::Relaxed);
    let rounds: u64 = workers.into_iter().map(|w| w.join().unwrap()).sum();
    assert!(rounds > 100, "the workers ran: {rounds}");
}

/// In a forked child, a thread that was inside a scope in the parent (and
/// did not come along) leaves its share as it stood; the child's own work
/// is the program's, and its scopes allocmeter's.
fn a_fork_child_keeps_the_split() {
    let (inside, release) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicBool::new(false)),
    );
    let (inside2, release2) = (inside.clone(), release.clone());
    let holder = std::thread::spawn(move || {
        account_internal(|| {
            let held = black_box(vec![0u8; 10_000]);
            inside2.store(true, Ordering::Release);
            while !release2.load(Ordering::Acquire) {
                std::thread::sleep(Duration::from_millis(1));
            }
            drop(held);
        });
    });
    while !inside.load(Ordering::Acquire) {
        std::thread::sleep(Duration::from_millis(1));
    }
    let at_fork = stats_split();
    let child = move || -> Result<(), String> {
        let child = stats_split();
        // The holder's slot left allocmeter's side where it stood.
        if internal(&child.internal) != internal(&at_fork.internal) {
            return Err(format!(
                "{:?} at the fork, {:?} in the child",
                at_fork.internal, child.internal
            ));
        }
        let before = stats_split();
        let v = black_box(vec![0u8; 4096]);
        let w = account_internal(|| black_box(vec![0u8; 512]));
        let after = stats_split();
        let program = delta(program(&before.program), program(&after.program));
        let internal = delta(internal(&before.internal), internal(&after.internal));
        drop((v, w));
        if program != (4096, 1, 0, 0) || internal != (512, 1, 0, 0) {
            return Err(format!("program {program:?}, allocmeter {internal:?}"));
        }
        Ok(())
    };
    // SAFETY: the child only reads the statistics and allocates through
    // this process's allocator; it touches nothing the holder thread owns.
    let status = unsafe { fork::fork_and_wait(child, Duration::from_secs(20)) };
    release.store(true, Ordering::Release);
    holder.join().unwrap();
    let status = status.expect("fork and wait");
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "the child failed (its message is above): {status}"
    );
}

fn main() {
    runner::run(
        &[
            (
                "scopes_split_exactly_and_nest",
                scopes_split_exactly_and_nest,
            ),
            (
                "a_marked_thread_is_allocmeter_s_from_spawn_to_join",
                a_marked_thread_is_allocmeter_s_from_spawn_to_join,
            ),
            (
                "reads_stay_exact_while_threads_change_sides",
                reads_stay_exact_while_threads_change_sides,
            ),
            ("a_fork_child_keeps_the_split", a_fork_child_keeps_the_split),
        ],
        Duration::from_secs(120),
    );
}
