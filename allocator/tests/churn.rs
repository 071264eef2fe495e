//! Thread churn: 10,000 short-lived threads, a few at a time, each doing known
//! allocations. No count is lost when threads exit and their slots are reused,
//! and the registry grows with peak concurrency, not with threads ever started.

use std::hint::black_box;
use std::time::Duration;

use allocmeter::Instrumented;
use allocmeter::size_class::class_of;
use allocmeter_test_support::runner;

#[global_allocator]
static GLOBAL: Instrumented<System> = Instrumented::new(System);
use std::alloc::System;

const THREADS: usize = 10_000;
const AT_ONCE: usize = 4;

/// Sizes in one size class, (256 KiB, 512 KiB], that nothing but this test's
/// workers allocates, so the class counts can be compared exactly.
const SIZES: [usize; 3] = [300_000, 300_001, 310_000];
const GROWN: usize = 400_000;

/// What each worker does: three blocks, one grown by realloc, all freed.
/// Returns what `measure` saw.
fn worker() -> allocmeter::ThreadStats {
    let ((), used) = allocmeter::measure(|| {
        let mut blocks: [Vec<u8>; 3] = SIZES.map(Vec::with_capacity);
        blocks[0].reserve_exact(GROWN);
        black_box(&mut blocks);
    });
    used
}

fn ten_thousand_threads_lose_no_count_and_reuse_slots() {
    // Warm-up: let std initialise whatever it caches on the first spawn.
    std::thread::spawn(worker).join().unwrap();

    let class = class_of(SIZES[0]);
    assert_eq!(class, class_of(GROWN));
    assert!(SIZES.iter().all(|&s| class_of(s) == class));

    let before = allocmeter::stats();
    let mut measured_bytes = 0u64;
    let mut started = 0;
    while started < THREADS {
        let batch: Vec<_> = (0..AT_ONCE).map(|_| std::thread::spawn(worker)).collect();
        started += batch.len();
        for handle in batch {
            let used = handle.join().expect("worker panicked");
            // Exact per thread: three allocs and one realloc (alloc + free).
            assert_eq!(used.allocs, 4);
            assert_eq!(used.frees, 4);
            assert_eq!(used.by_size[class].allocs, 4);
            assert_eq!(used.by_size[class].frees, 4);
            let expect = (SIZES.iter().sum::<usize>() + GROWN) as u64;
            assert_eq!(used.alloc_bytes, expect);
            assert_eq!(used.free_bytes, expect);
            measured_bytes += used.alloc_bytes;
        }
    }
    let after = allocmeter::stats();

    // Process-wide, the workers' class moved by exactly their operations.
    let n = THREADS as u64;
    let c = (&after.by_size[class], &before.by_size[class]);
    assert_eq!(
        c.0.allocs - c.1.allocs,
        4 * n,
        "allocs in the workers' class"
    );
    assert_eq!(c.0.frees - c.1.frees, 4 * n, "frees in the workers' class");
    assert_eq!(after.reallocs.total() - before.reallocs.total(), n);
    // Every byte the workers allocated is in the total, and everything every
    // thread allocated (the spawn machinery included) was freed again.
    assert!(after.alloc_bytes - before.alloc_bytes >= measured_bytes);
    assert_eq!(after.live_objects, before.live_objects, "live objects");
    assert_eq!(after.live_bytes, before.live_bytes, "live bytes");

    // Slots are reused: at most AT_ONCE more than before were ever needed.
    assert!(
        after.slots_used <= before.slots_used + AT_ONCE as u64,
        "slots used grew from {} to {} over {THREADS} threads",
        before.slots_used,
        after.slots_used
    );
    assert_eq!(
        after.threads, before.threads,
        "exited threads gave their slots back"
    );
}

fn main() {
    runner::run(
        &[(
            "ten_thousand_threads_lose_no_count_and_reuse_slots",
            ten_thousand_threads_lose_no_count_and_reuse_slots,
        )],
        Duration::from_secs(300),
    );
}
