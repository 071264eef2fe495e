//! Failure: when the inner allocator returns null, the caller gets null, the
//! failure is counted, and nothing else moves.

use std::alloc::{GlobalAlloc, Layout, System};
use std::time::Duration;

use allocmeter::{Instrumented, MemStats};
use allocmeter_test_support::runner;

/// Requests of exactly this many bytes fail.
const REFUSED: usize = 777_777;

/// `System`, except that it refuses every request for [`REFUSED`] bytes.
struct Refusing;

// SAFETY: forwards to `System` unchanged except for returning null, which
// every `GlobalAlloc` method may do to signal failure.
unsafe impl GlobalAlloc for Refusing {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if layout.size() == REFUSED {
            return std::ptr::null_mut();
        }
        // SAFETY: the caller's contract is passed on unchanged.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if layout.size() == REFUSED {
            return std::ptr::null_mut();
        }
        // SAFETY: as above.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if new_size == REFUSED {
            return std::ptr::null_mut();
        }
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Instrumented<Refusing> = Instrumented::new(Refusing);

/// `after` equals `before` except for `failures`, which grew by `n`.
fn only_failures_moved(before: &MemStats, after: &MemStats, n: u64) {
    assert_eq!(after.failures - before.failures, n, "failures");
    let mut a = *after;
    a.failures = before.failures;
    assert_eq!(&a, before, "nothing but failures moved");
}

fn null_from_alloc_and_alloc_zeroed_is_returned_and_counted() {
    let layout = Layout::from_size_align(REFUSED, 8).unwrap();
    let before = allocmeter::stats();
    let thread_before = allocmeter::thread_stats();
    // SAFETY: a valid non-zero layout; a null result is not dereferenced.
    let (p, z) = unsafe { (GLOBAL.alloc(layout), GLOBAL.alloc_zeroed(layout)) };
    let thread_after = allocmeter::thread_stats();
    let after = allocmeter::stats();
    assert!(p.is_null() && z.is_null());
    only_failures_moved(&before, &after, 2);
    assert_eq!(thread_after.failures - thread_before.failures, 2);
    assert_eq!(thread_after.allocs, thread_before.allocs);
}

fn null_from_realloc_keeps_the_old_block_and_counts_nothing_else() {
    let old = Layout::from_size_align(64, 8).unwrap();
    // SAFETY: valid layout; the block is freed below with the same layout.
    let p = unsafe { GLOBAL.alloc(old) };
    assert!(!p.is_null());
    // SAFETY: `p` is a live 64-byte block.
    unsafe { p.write_bytes(0xAB, 64) };
    let before = allocmeter::stats();
    // SAFETY: `p` came from GLOBAL with `old`; REFUSED is a valid size.
    let q = unsafe { GLOBAL.realloc(p, old, REFUSED) };
    let after = allocmeter::stats();
    assert!(q.is_null());
    only_failures_moved(&before, &after, 1);
    // SAFETY: a failed realloc leaves `p` allocated and unchanged.
    assert!((0..64).all(|i| unsafe { *p.add(i) } == 0xAB));
    // SAFETY: `p` is still live with layout `old`.
    unsafe { GLOBAL.dealloc(p, old) };
}

fn try_reserve_sees_an_error_not_an_abort() {
    let before = allocmeter::stats();
    let mut v: Vec<u8> = Vec::new();
    let result = v.try_reserve_exact(REFUSED);
    let after = allocmeter::stats();
    assert!(result.is_err(), "the refusal reached the caller");
    only_failures_moved(&before, &after, 1);
    // The service goes on allocating normally afterwards.
    let ok: Vec<u8> = Vec::with_capacity(REFUSED + 1);
    assert_eq!(ok.capacity(), REFUSED + 1);
}

fn main() {
    runner::run(
        &[
            (
                "null_from_alloc_and_alloc_zeroed_is_returned_and_counted",
                null_from_alloc_and_alloc_zeroed_is_returned_and_counted,
            ),
            (
                "null_from_realloc_keeps_the_old_block_and_counts_nothing_else",
                null_from_realloc_keeps_the_old_block_and_counts_nothing_else,
            ),
            (
                "try_reserve_sees_an_error_not_an_abort",
                try_reserve_sees_an_error_not_an_abort,
            ),
        ],
        Duration::from_secs(60),
    );
}
