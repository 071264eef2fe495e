//! [`Instrumented`], the `GlobalAlloc` wrapper: the hot path's entry.
//!
//! It forwards each call to the inner allocator and records it through
//! [`crate::local`] (the counting operations are in [`crate::counters`]); a
//! free first asks the sampled-pointer table whether its block was sampled.
//! It knows nothing of the consumers of what it records.

use core::alloc::{GlobalAlloc, Layout};

use crate::counters::{Alloc, Failure, Free, Realloc, ReallocWay};
use crate::local;
use crate::lockfree::sampled;

/// A global allocator that forwards every request to `A` and records it.
///
/// Put it around the allocator the service already uses:
///
/// ```
/// use std::alloc::System;
/// use allocmeter::Instrumented;
///
/// #[global_allocator]
/// static GLOBAL: Instrumented<System> = Instrumented::new(System);
///
/// let v = vec![0u8; 1000];
/// assert!(allocmeter::stats().alloc_bytes >= 1000);
/// # drop(v);
/// ```
///
/// Every `GlobalAlloc` method goes to the inner allocator's method of the same
/// name: `realloc` stays a `realloc` (so in-place growth survives) and
/// `alloc_zeroed` stays `alloc_zeroed` (so calloc's zero pages survive). Blocks
/// carry no header: the inner allocator sees exactly the layouts the program
/// asked for.
///
/// What is recorded, into the calling thread's own slot (see [`crate::stats`](fn@crate::stats)):
/// each allocation and free with its requested size and size class, each
/// realloc by kind, and each null the inner allocator returned. Recording costs
/// one thread-local read and a few plain stores; it never locks, allocates,
/// makes a system call or panics. About one allocation per
/// [`sample_rate`](crate::sample_rate) bytes is also sampled with its call
/// stack (see [`crate::profile`]).
///
/// All `Instrumented` values in a process record into the same counters, so a
/// process should have one, as its `#[global_allocator]`.
#[derive(Debug, Default)]
pub struct Instrumented<A> {
    inner: A,
}

impl<A> Instrumented<A> {
    /// Wraps `inner`. `const`, so it can initialise a `static`.
    pub const fn new(inner: A) -> Self {
        Instrumented { inner }
    }

    /// The wrapped allocator, for allocator-specific calls (statistics,
    /// tuning) that `GlobalAlloc` does not have.
    pub const fn inner(&self) -> &A {
        &self.inner
    }
}

/// Records an allocation of `size` bytes at `ptr`, or a failure if null.
#[inline(always)]
fn after_alloc(ptr: *mut u8, size: usize) {
    if ptr.is_null() {
        local::record(Failure);
    } else {
        local::record_alloc(Alloc(size), ptr, size);
    }
}

/// If `ptr` is a sampled block, removes it from the sampled-pointer table and
/// returns its sample id. Must run before the block goes back to the inner
/// allocator, which could hand the address to another thread at once.
#[inline(always)]
fn take_if_sampled(ptr: *mut u8) -> Option<u64> {
    if local::busy() {
        // A free from inside the sampler (or a signal handler interrupting
        // it): looking the table up could wait on a lock this thread holds.
        return None;
    }
    sampled::remove(ptr).ok().flatten()
}

// SAFETY: every method forwards to the inner allocator's method of the same
// name with the caller's arguments unchanged and returns its result unchanged,
// so `Instrumented<A>` upholds exactly the contract `A` upholds. Recording
// touches only memory this crate owns (thread-locals, `static` slots and
// tables, rings from the system allocator); it never unwinds or blocks.
//
// `inline(always)`: each method is small once its cold paths are out of line,
// and whether plain `inline` inlines it depends on the body's size (a build
// in which it did not inline cost a cycle per pair: see ARCHITECTURE.md,
// "Measurements behind the hot path's shape").
//
// `dealloc` and `realloc` hand everything but their common case (a block the
// sampled-pointer filter rules out, on a thread with its own slot) to a cold
// function in tail position, which does the whole call: so the common case
// keeps nothing across a call of its own and needs no registers saved.
unsafe impl<A: GlobalAlloc> GlobalAlloc for Instrumented<A> {
    #[inline(always)]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract for
        // `layout`, which is what the inner allocator requires.
        let ptr = unsafe { self.inner.alloc(layout) };
        after_alloc(ptr, layout.size());
        ptr
    }

    #[inline(always)]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as for `alloc`.
        let ptr = unsafe { self.inner.alloc_zeroed(layout) };
        after_alloc(ptr, layout.size());
        ptr
    }

    #[inline(always)]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // Recorded before the block is handed back, so that no other thread
        // can be given the same address and record it before this free.
        if sampled::maybe_sampled(ptr) || !local::record_owned(Free(layout.size())) {
            // SAFETY: the caller's guarantees, passed on unchanged.
            return unsafe { dealloc_cold(&self.inner, ptr, layout) };
        }
        // SAFETY: the caller guarantees `ptr` was allocated by this allocator
        // (hence by the inner one, which served it) with `layout`.
        unsafe { self.inner.dealloc(ptr, layout) }
    }

    #[inline(always)]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if sampled::maybe_sampled(ptr) {
            // SAFETY: the caller's guarantees, passed on unchanged.
            return unsafe { realloc_cold(&self.inner, ptr, layout, new_size) };
        }
        // SAFETY: the caller upholds `GlobalAlloc::realloc`'s contract: `ptr`
        // came from this allocator (so from the inner one) with `layout`, and
        // `new_size` is valid for `layout.align()`.
        let new_ptr = unsafe { self.inner.realloc(ptr, layout, new_size) };
        if new_ptr.is_null() {
            // The old block is untouched and still the caller's.
            local::record(Failure);
        } else {
            let old = layout.size();
            record_realloc(new_ptr, old, new_size, ReallocWay::of(new_ptr != ptr, old, new_size));
        }
        new_ptr
    }
}

/// Records a successful realloc of a block of `old` bytes to `new_ptr`,
/// `new_size` bytes, served `way`.
#[inline(always)]
fn record_realloc(new_ptr: *mut u8, old: usize, new_size: usize, way: ReallocWay) {
    let op = Realloc {
        old,
        new: new_size,
        way,
    };
    local::record_alloc(op, new_ptr, new_size);
}

/// `dealloc` of a block the filter could not rule out as sampled, or on a
/// thread without a slot of its own: the whole call, out of line.
///
/// # Safety
/// As `GlobalAlloc::dealloc` of `inner`.
#[cold]
#[inline(never)]
unsafe fn dealloc_cold<A: GlobalAlloc>(inner: &A, ptr: *mut u8, layout: Layout) {
    if sampled::maybe_sampled(ptr)
        && let Some(id) = take_if_sampled(ptr)
    {
        local::report_sampled_free(id, layout.size());
    }
    local::record(Free(layout.size()));
    // SAFETY: as the caller promises.
    unsafe { inner.dealloc(ptr, layout) }
}

/// `realloc` of a block the filter could not rule out as sampled: the whole
/// call, out of line.
///
/// # Safety
/// As `GlobalAlloc::realloc` of `inner`.
#[cold]
#[inline(never)]
unsafe fn realloc_cold<A: GlobalAlloc>(
    inner: &A,
    ptr: *mut u8,
    layout: Layout,
    new_size: usize,
) -> *mut u8 {
    // A sampled block leaves the table before the inner realloc can free
    // its address, and goes back in at the address that comes back.
    // That block is also a new allocation for sampling.
    let sampled_id = take_if_sampled(ptr);
    // SAFETY: as the caller promises.
    let new_ptr = unsafe { inner.realloc(ptr, layout, new_size) };
    if new_ptr.is_null() {
        // The old block is untouched and still the caller's: put it back.
        if let Some(id) = sampled_id {
            restore_sampled(ptr, id);
        }
        local::record(Failure);
    } else {
        let old = layout.size();
        let way = ReallocWay::of(new_ptr != ptr, old, new_size);
        if let Some(id) = sampled_id {
            // The block stays tracked at its new address and size.
            local::report_sampled_resize(id, new_ptr, new_size, way.kind());
        }
        record_realloc(new_ptr, old, new_size, way);
    }
    new_ptr
}

/// Puts a sampled block back after a failed realloc. If the table cannot take
/// it back (full, or busy), the end of its tracking is reported instead (as
/// a free is, for its in-use estimate, which then errs low rather than
/// staying up forever; its lifetime is censored there).
#[cold]
fn restore_sampled(ptr: *mut u8, id: u64) {
    match sampled::insert(ptr, id) {
        Ok(None) => {}
        Ok(Some(stale)) => local::report_sampled_untracked(stale),
        Err(_) => local::report_sampled_untracked(id),
    }
}
