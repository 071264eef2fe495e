//! Allocation budgets: `allocs_per_run` with Go's semantics, and the `runs`
//! report (means, least and most per run, peak live bytes), exact for known
//! closures; and budget mode leaving the thread's sampling as it would have
//! been.
//!
//! The Go figures quoted were printed by `testing.AllocsPerRun` (go1.2x) on
//! the same patterns, each allocation a `new([64]byte)` escaping to a
//! package-level sink.

use std::alloc::System;
use std::cell::Cell;
use std::hint::black_box;
use std::sync::OnceLock;
use std::time::Duration;

use allocmeter::Instrumented;
use allocmeter_test_support::panics::expected_panic;
use allocmeter_test_support::runner;

#[global_allocator]
static GLOBAL: Instrumented<System> = Instrumented::new(System);

fn one_box() {
    black_box(Box::new(black_box([0u8; 64])));
}

fn nothing_is_zero() {
    let mut x = 0u64;
    assert_eq!(allocmeter::allocs_per_run(100, || x = black_box(x + 1)), 0);
    let r = allocmeter::runs(100, || x = black_box(x + 1));
    assert_eq!(r.runs, 100);
    for f in [
        r.allocs,
        r.alloc_bytes,
        r.frees,
        r.free_bytes,
        r.reallocs,
        r.peak_live_bytes,
    ] {
        assert_eq!((f.total, f.min, f.max, f.mean), (0, 0, 0, 0.0));
    }
}

fn one_allocation_is_one() {
    // Go: AllocsPerRun(10, func() { sink = new([64]byte) }) == 1.
    assert_eq!(allocmeter::allocs_per_run(10, one_box), 1);
    let r = allocmeter::runs(10, one_box);
    assert_eq!((r.allocs.min, r.allocs.max, r.allocs.total), (1, 1, 10));
    assert_eq!(r.allocs.mean, 1.0);
    assert_eq!((r.alloc_bytes.min, r.alloc_bytes.max), (64, 64));
    assert_eq!((r.frees.total, r.free_bytes.total), (10, 640));
    assert_eq!(r.reallocs.total, 0);
    assert_eq!((r.peak_live_bytes.min, r.peak_live_bytes.max), (64, 64));
    assert_eq!((r.allocs_per_run(), r.bytes_per_run()), (1, 64));
}

/// A `Vec<u64>` grown by five pushes: 4 elements (32 bytes) at the first,
/// then one realloc to 8 (64 bytes), then freed.
fn vec_grown_by_push() {
    let push5 = || {
        let mut v = Vec::new();
        for i in 0..5u64 {
            v.push(black_box(i));
        }
        black_box(&v);
    };
    assert_eq!(allocmeter::allocs_per_run(7, push5), 2);
    let r = allocmeter::runs(7, push5);
    assert_eq!(
        (r.allocs.min, r.allocs.max),
        (2, 2),
        "the first block and the realloc"
    );
    assert_eq!((r.alloc_bytes.min, r.alloc_bytes.max), (96, 96), "32 + 64");
    assert_eq!(
        (r.frees.min, r.frees.max),
        (2, 2),
        "the realloc's old block and the drop"
    );
    assert_eq!(r.free_bytes.max, 96);
    assert_eq!((r.reallocs.min, r.reallocs.max), (1, 1));
    assert_eq!(
        r.grown_in_place.total + r.moved.total,
        7,
        "each realloc grew in place or moved"
    );
    assert_eq!(r.shrunk_in_place.total, 0);
    // Requested sizes: 32 live, then 64 once the realloc is counted.
    assert_eq!((r.peak_live_bytes.min, r.peak_live_bytes.max), (64, 64));
}

/// Frees of blocks another thread allocated: no allocation, one free each.
fn free_of_a_block_from_another_thread() {
    let blocks: Vec<Box<[u8; 200]>> =
        std::thread::spawn(|| (0..12).map(|_| Box::new([1u8; 200])).collect())
            .join()
            .unwrap();
    let mut blocks = blocks.into_iter();
    // 1 warm-up + 5 runs, then 1 warm-up + 5 runs.
    assert_eq!(allocmeter::allocs_per_run(5, || drop(blocks.next())), 0);
    let r = allocmeter::runs(5, || drop(blocks.next()));
    assert_eq!((r.allocs.total, r.alloc_bytes.total), (0, 0));
    assert_eq!((r.frees.min, r.frees.max), (1, 1));
    assert_eq!(r.free_bytes.total, 1000);
    assert_eq!(r.peak_live_bytes.max, 0, "live bytes only went down");
    // What is left: the iterator's own buffer is freed here, outside.
    assert_eq!(blocks.len(), 0);
}

/// A lazy static initialised on the first call allocates in the warm-up
/// only: 0, as Go's (AllocsPerRun of a func whose first call allocates is 0).
fn lazy_init_allocates_only_in_the_warm_up() {
    static TABLE: OnceLock<Vec<u64>> = OnceLock::new();
    let lookup = || {
        black_box(TABLE.get_or_init(|| vec![1, 2, 3]).len());
    };
    // One run: without the warm-up the lazy allocation would be 1 / 1.
    assert_eq!(allocmeter::allocs_per_run(1, lookup), 0);
    assert_eq!(allocmeter::allocs_per_run(10, lookup), 0);
    static OTHER: OnceLock<String> = OnceLock::new();
    let r = allocmeter::runs(1, || {
        black_box(OTHER.get_or_init(|| "lazy".repeat(3)).len());
    });
    assert_eq!(r.allocs.max, 0);
    // The warm-up is the only difference: checked once, it is one.
    static THIRD: OnceLock<String> = OnceLock::new();
    let err = allocmeter::check_allocs(0, || {
        black_box(THIRD.get_or_init(|| "lazy".repeat(3)).len());
    })
    .unwrap_err();
    assert_eq!((err.allocs, err.alloc_bytes), (1, 12));
}

/// Three allocations on odd calls, none on even ones, over 5 runs.
fn odd_calls_allocate_three_as_in_go() {
    let three = || {
        for _ in 0..3 {
            one_box();
        }
    };
    // Calls 1..=6 (the first the warm-up): odd calls 3 and 5 count, 6 / 5.
    // Go: `AllocsPerRun(5, odd3)` with calls counted from 1: 1.
    let calls = Cell::new(0u64);
    let odd3 = || {
        calls.set(calls.get() + 1);
        if calls.get() % 2 == 1 {
            three();
        }
    };
    assert_eq!(allocmeter::allocs_per_run(5, odd3), 1);
    calls.set(0);
    let r = allocmeter::runs(5, odd3);
    assert_eq!((r.allocs.total, r.allocs.min, r.allocs.max), (6, 0, 3));
    assert_eq!(r.allocs.mean, 1.2);
    assert_eq!(r.allocs_per_run(), 1);
    // The warm-up an even call: calls 3, 5 and 7 count, 9 / 5. Go: 1.
    calls.set(1);
    assert_eq!(allocmeter::allocs_per_run(5, odd3), 1);
    calls.set(1);
    let r = allocmeter::runs(5, odd3);
    assert_eq!((r.allocs.total, r.allocs.mean), (9, 1.8));
    // Each box is freed before the next: 64 live at most; 0 in runs
    // without allocations.
    assert_eq!((r.peak_live_bytes.min, r.peak_live_bytes.max), (0, 64));
}

/// The peak is the highest the live bytes went above the run's start.
fn peak_live_bytes_is_the_high_water_mark() {
    let r = allocmeter::runs(3, || {
        let a = black_box(vec![0u8; 100]);
        let b = black_box(vec![0u8; 200]);
        drop(a);
        let c = black_box(vec![0u8; 50]);
        drop((b, c));
        let d = black_box(vec![0u8; 1000]);
        drop(d);
    });
    assert_eq!((r.peak_live_bytes.min, r.peak_live_bytes.max), (1000, 1000));
    let kept = Cell::new(Vec::<u8>::new());
    let r = allocmeter::runs(4, || {
        // Frees what the previous run left (300 bytes) before allocating
        // 100, then leaves 300 again: the live bytes never go above the
        // run's start, so the peak is 0 (not 100, nor 300).
        let mut v = kept.take();
        v.clear();
        drop(v);
        let a = black_box(vec![0u8; 100]);
        drop(a);
        kept.set(black_box(Vec::with_capacity(300)));
    });
    assert_eq!((r.peak_live_bytes.min, r.peak_live_bytes.max), (0, 0));
    assert_eq!((r.allocs.max, r.frees.max), (2, 2));
    drop(kept);
}

fn zero_runs_is_refused_before_calling() {
    let called = Cell::new(false);
    let message = expected_panic(|| allocmeter::allocs_per_run(0, || called.set(true)));
    assert!(message.contains("runs must be at least 1"), "{message}");
    assert!(!called.get(), "refused before calling");
    assert!(expected_panic(|| allocmeter::runs(0, || ())).contains("runs must be at least 1"));
}

fn sampling_totals() -> u64 {
    let s = allocmeter::profile::sampling_stats();
    s.samples + s.carried + s.dropped
}

/// At a rate of 1 byte every 64-byte allocation is sampled (a distance
/// above 64 bytes has probability e^-64): budget mode must take exactly
/// those samples, no more and no fewer.
fn budget_mode_takes_the_samples_the_thread_would_have() {
    allocmeter::set_sample_rate(1);
    let before = sampling_totals();
    let r = allocmeter::runs(50, one_box);
    let taken = sampling_totals() - before;
    let before = sampling_totals();
    assert!(allocmeter::check_allocs(5, || (0..5).for_each(|_| one_box())).is_ok());
    let taken_checking = sampling_totals() - before;
    allocmeter::set_sample_rate(0);
    // The warm-up's allocation is sampled too.
    assert_eq!(r.allocs.total, 50);
    assert_eq!(taken, 51);
    // And the buffer the check allocates for its stacks, before the code
    // under budget runs.
    assert_eq!(taken_checking, 5 + 1);
    // Sampling off: none.
    let before = sampling_totals();
    allocmeter::runs(50, one_box);
    assert!(allocmeter::check_allocs(0, one_box).is_err());
    assert_eq!(sampling_totals(), before);
    allocmeter::set_sample_rate(allocmeter::DEFAULT_SAMPLE_RATE);
}

/// After a budget, the thread's clock is where it would be: with a rate of
/// 1 TiB, a thousand allocations after `runs` (or a budget that passes)
/// take no sample; a clock left at zero would take one at the first.
fn budget_mode_restores_the_sampling_clock() {
    allocmeter::set_sample_rate(1 << 40);
    let budgets: [&dyn Fn(); 3] = [
        &|| assert_eq!(allocmeter::runs(10, one_box).allocs.max, 1),
        &|| assert!(allocmeter::check_allocs(1, one_box).is_ok()),
        &|| assert_eq!(allocmeter::allocs_per_run(10, one_box), 1),
    ];
    for (i, budget) in budgets.iter().enumerate() {
        budget();
        let before = sampling_totals();
        for _ in 0..1000 {
            one_box();
        }
        assert_eq!(sampling_totals(), before, "after budget {i}");
    }
    allocmeter::set_sample_rate(allocmeter::DEFAULT_SAMPLE_RATE);
}

/// Other threads allocating meanwhile are not counted.
fn other_threads_are_not_counted() {
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let noisy = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                one_box();
            }
        })
    };
    for _ in 0..20 {
        assert_eq!(allocmeter::allocs_per_run(1000, one_box), 1);
        let r = allocmeter::runs(100, one_box);
        assert_eq!(
            (r.allocs.max, r.frees.max, r.peak_live_bytes.max),
            (1, 1, 64)
        );
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    noisy.join().unwrap();
}

fn main() {
    runner::run(
        &[
            ("nothing_is_zero", nothing_is_zero),
            ("one_allocation_is_one", one_allocation_is_one),
            ("vec_grown_by_push", vec_grown_by_push),
            (
                "free_of_a_block_from_another_thread",
                free_of_a_block_from_another_thread,
            ),
            (
                "lazy_init_allocates_only_in_the_warm_up",
                lazy_init_allocates_only_in_the_warm_up,
            ),
            (
                "odd_calls_allocate_three_as_in_go",
                odd_calls_allocate_three_as_in_go,
            ),
            (
                "peak_live_bytes_is_the_high_water_mark",
                peak_live_bytes_is_the_high_water_mark,
            ),
            (
                "zero_runs_is_refused_before_calling",
                zero_runs_is_refused_before_calling,
            ),
            (
                "budget_mode_takes_the_samples_the_thread_would_have",
                budget_mode_takes_the_samples_the_thread_would_have,
            ),
            (
                "budget_mode_restores_the_sampling_clock",
                budget_mode_restores_the_sampling_clock,
            ),
            (
                "other_threads_are_not_counted",
                other_threads_are_not_counted,
            ),
        ],
        Duration::from_secs(120),
    );
}
