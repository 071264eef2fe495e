//! Allocation budgets as assertions: `assert_allocs!`, `assert_no_allocs!`
//! and `check_allocs` pass within the budget, and a failure names the
//! budget, the counts, and the function that allocated, first among the
//! frames of its stack.

use std::alloc::System;
use std::hint::black_box;
use std::time::Duration;

use allocmeter::{Instrumented, assert_allocs, assert_no_allocs};
use allocmeter_test_support::panics::expected_panic;
use allocmeter_test_support::runner;

#[global_allocator]
static GLOBAL: Instrumented<System> = Instrumented::new(System);

/// The allocation a failing budget must point at.
#[inline(never)]
fn zebra_offender_allocates(n: usize) -> Vec<u32> {
    let mut v = Vec::with_capacity(black_box(n));
    v.push(black_box(7));
    v
}

/// Calls the offender, so that its caller is in the stack too.
#[inline(never)]
fn handler_calling_the_offender() -> usize {
    black_box(zebra_offender_allocates(3)).len() + black_box(String::from("x")).len()
}

fn within_the_budget_gives_the_value() {
    let v = assert_allocs!(at_most = 1, zebra_offender_allocates(4));
    assert_eq!(v, [7]);
    let n = assert_allocs!(at_most = 2, handler_calling_the_offender());
    assert_eq!(n, 2);
    let mut buf = Vec::with_capacity(16);
    assert_no_allocs!(buf.extend_from_slice(&[1u8, 2, 3]));
    // Frees are allowed under a budget of allocations.
    assert_no_allocs!(drop(black_box(buf)));
    assert_eq!(
        allocmeter::assert_allocs_at_most(1, || zebra_offender_allocates(1).len()),
        1
    );
}

fn failure_names_the_offending_function() {
    let message = expected_panic(|| {
        assert_allocs!(at_most = 1, handler_calling_the_offender());
    });
    assert!(
        message.contains("`handler_calling_the_offender()` made 2 allocations, at most 1 allowed"),
        "{message}"
    );
    assert!(
        message.contains("allocated 2 blocks (13 bytes)"),
        "{message}"
    );
    assert!(message.contains("zebra_offender_allocates"), "{message}");

    let err = allocmeter::check_allocs(1, handler_calling_the_offender).unwrap_err();
    assert_eq!(
        (err.allocs, err.alloc_bytes, err.frees, err.free_bytes),
        (2, 13, 2, 13)
    );
    assert_eq!(err.stacks.len(), 2, "two stacks: {err}");
    // The first frame shown is the program's: the offender, then its caller.
    let first = &err.stacks[0];
    assert_eq!((first.count, first.bytes), (1, 12));
    assert!(
        first.frames[0].contains("zebra_offender_allocates"),
        "{err}"
    );
    assert!(
        first.frames[1].contains("handler_calling_the_offender"),
        "{err}"
    );
    assert!(first.trimmed > 0, "allocator frames trimmed: {err}");
    // The second: a String made in the handler itself, `String::from` and
    // the `alloc` code under it trimmed.
    assert!(
        err.stacks[1].frames[0].contains("handler_calling_the_offender"),
        "{err}"
    );
    for stack in &err.stacks {
        for frame in &stack.frames {
            assert!(!frame.starts_with("allocmeter::"), "{err}");
            assert!(!frame.starts_with("core::ops::function"), "{err}");
        }
    }
    assert_eq!(err.not_kept, 0);
}

fn no_allocs_failure_lists_reallocs_and_frees() {
    let mut v: Vec<u8> = Vec::with_capacity(1);
    v.push(1);
    let message = expected_panic(|| {
        assert_no_allocs!(v.extend_from_slice(black_box(&[2u8; 100])));
    });
    assert!(
        message.contains("made 1 allocations, at most 0 allowed"),
        "{message}"
    );
    assert!(message.contains("reallocs 1"), "{message}");
}

/// Only the first stacks are kept; the rest are counted.
fn stacks_are_bounded() {
    let err = allocmeter::check_allocs(0, || {
        for _ in 0..100 {
            black_box(zebra_offender_allocates(1));
        }
    })
    .unwrap_err();
    let kept: u64 = err.stacks.iter().map(|s| s.count).sum();
    assert_eq!(kept, allocmeter::budget_max_stacks() as u64);
    assert_eq!(err.not_kept, 100 - kept);
    // All from one place: merged into one stack.
    assert_eq!(err.stacks.len(), 1, "{err}");
    assert!(err.to_string().contains("and 68 more allocations"), "{err}");
}

fn budgets_do_not_nest() {
    let message = expected_panic(|| {
        allocmeter::runs(1, || {
            let _ = allocmeter::check_allocs(0, || ());
        });
    });
    assert!(message.contains("budgets do not nest"), "{message}");
    // And budget mode ended with the panic.
    assert_eq!(allocmeter::allocs_per_run(3, || ()), 0);
    assert!(allocmeter::check_allocs(0, || ()).is_ok());
}

fn main() {
    runner::run(
        &[
            (
                "within_the_budget_gives_the_value",
                within_the_budget_gives_the_value,
            ),
            (
                "failure_names_the_offending_function",
                failure_names_the_offending_function,
            ),
            (
                "no_allocs_failure_lists_reallocs_and_frees",
                no_allocs_failure_lists_reallocs_and_frees,
            ),
            ("stacks_are_bounded", stacks_are_bounded),
            ("budgets_do_not_nest", budgets_do_not_nest),
        ],
        Duration::from_secs(120),
    );
}
