//! `measure_spawned`: the calling thread and the threads it starts inside
//! the scope are counted exactly; threads running before the scope are not,
//! whatever they allocate meanwhile; a thread outliving the scope is
//! counted up to its end.

use std::alloc::System;
use std::hint::black_box;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::time::Duration;

use allocmeter::{Instrumented, SpawnedStats};
use allocmeter_test_support::panics::expected_panic;
use allocmeter_test_support::runner;

#[global_allocator]
static GLOBAL: Instrumented<System> = Instrumented::new(System);

const THREADS: usize = 4;

/// `THREADS` threads, each making `extra` allocations of 1000 bytes (freed)
/// beyond what starting and joining it takes: joined with `join` (counted
/// to their exit), or in a `std::thread::scope`.
fn threads(extra: usize, scoped: bool) -> SpawnedStats {
    let work = move || {
        for _ in 0..extra {
            black_box(vec![0u8; 1000]);
        }
    };
    allocmeter::measure_spawned(|| {
        if scoped {
            std::thread::scope(|s| {
                for _ in 0..THREADS {
                    s.spawn(work);
                }
            })
        } else {
            let handles: Vec<_> = (0..THREADS).map(|_| std::thread::spawn(work)).collect();
            for handle in handles {
                handle.join().unwrap();
            }
        }
    })
    .1
}

/// A thread started before the scope, allocating all the while.
fn noisy_neighbour() -> (Arc<AtomicBool>, std::thread::JoinHandle<()>) {
    let stop = Arc::new(AtomicBool::new(false));
    let (ready, started) = mpsc::channel();
    let handle = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            black_box(vec![0u8; 1]);
            ready.send(()).unwrap();
            while !stop.load(Ordering::Relaxed) {
                black_box(vec![0u8; 77]);
            }
        })
    };
    started.recv().unwrap();
    (stop, handle)
}

fn spawned_threads_are_counted_exactly() {
    let (stop, neighbour) = noisy_neighbour();
    let quiet = threads(0, false);
    let busy = threads(25, false);
    assert_eq!(busy.threads, THREADS as u64, "{busy:?}");
    assert_eq!(busy.allocs - quiet.allocs, (THREADS * 25) as u64);
    assert_eq!(
        busy.alloc_bytes - quiet.alloc_bytes,
        (THREADS * 25_000) as u64
    );
    assert_eq!(busy.frees - quiet.frees, (THREADS * 25) as u64);
    assert_eq!(
        busy.free_bytes - quiet.free_bytes,
        (THREADS * 25_000) as u64
    );
    // Joined threads are counted to their last free: every block that
    // starting them took is back.
    assert_eq!(
        (quiet.allocs, quiet.alloc_bytes),
        (quiet.frees, quiet.free_bytes),
        "{quiet:?}"
    );
    assert_eq!(
        (busy.allocs, busy.alloc_bytes),
        (busy.frees, busy.free_bytes),
        "{busy:?}"
    );
    // The neighbour's 77-byte blocks never count: the same scope measures
    // the same however long it ran beside them.
    for _ in 0..5 {
        assert_eq!(threads(0, false), quiet);
        assert_eq!(threads(25, false), busy);
    }
    // Scoped threads: the allocations are exact (their teardown, after the
    // scope may have returned, only frees).
    for _ in 0..5 {
        let quiet = threads(0, true);
        let busy = threads(25, true);
        assert_eq!(busy.allocs - quiet.allocs, (THREADS * 25) as u64);
        assert_eq!(
            busy.alloc_bytes - quiet.alloc_bytes,
            (THREADS * 25_000) as u64
        );
        assert!(busy.frees >= (THREADS * 25) as u64);
    }
    stop.store(true, Ordering::Relaxed);
    neighbour.join().unwrap();
}

/// The calling thread's own allocations count, as in `measure`.
fn the_calling_thread_counts() {
    let (v, used) = allocmeter::measure_spawned(|| black_box(vec![0u8; 4321]));
    assert_eq!(
        (used.allocs, used.alloc_bytes, used.frees, used.threads),
        (1, 4321, 0, 0)
    );
    drop(v);
}

/// A thread that outlives the scope counts up to the scope's end.
fn a_thread_outliving_the_scope_counts_until_the_end() {
    let (go_on, wait) = mpsc::channel::<()>();
    let (done, in_scope) = mpsc::channel::<()>();
    let (handle, used) = allocmeter::measure_spawned(|| {
        let handle = std::thread::spawn(move || {
            black_box(vec![0u8; 100_003]);
            done.send(()).unwrap();
            wait.recv().unwrap();
            black_box(vec![0u8; 7_777_777]);
        });
        in_scope.recv().unwrap();
        handle
    });
    go_on.send(()).unwrap();
    handle.join().unwrap();
    assert_eq!(used.threads, 1);
    assert!(used.alloc_bytes >= 100_003, "{used:?}");
    assert!(used.alloc_bytes < 7_777_777, "{used:?}");
}

fn scopes_do_not_nest() {
    let message =
        expected_panic(|| allocmeter::measure_spawned(|| allocmeter::measure_spawned(|| ())));
    assert!(message.contains("do not nest"), "{message}");
    // The outer scope ended with the panic: a new one works.
    assert_eq!(
        allocmeter::measure_spawned(|| ()).1,
        SpawnedStats::default()
    );
}

fn main() {
    runner::run(
        &[
            (
                "spawned_threads_are_counted_exactly",
                spawned_threads_are_counted_exactly,
            ),
            ("the_calling_thread_counts", the_calling_thread_counts),
            (
                "a_thread_outliving_the_scope_counts_until_the_end",
                a_thread_outliving_the_scope_counts_until_the_end,
            ),
            ("scopes_do_not_nest", scopes_do_not_nest),
        ],
        Duration::from_secs(120),
    );
}
