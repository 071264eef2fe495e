//! The knobs a program turns: the sample rate and stack depth, process-wide,
//! whether the calling thread is sampled at all, and whether what it counts
//! is allocmeter's own ([`internal_scope`], [`mark_thread_internal`]).
//!
//! They sit above the recording: a knob stores its value (the rate and depth
//! live in [`crate::sampler`]) and tells the calling thread's state in
//! [`crate::local`]; nothing on the recording path calls back up here.

use crate::{local, sampler};

/// Sets the mean sampling distance in bytes: 0 turns sampling off, 1 samples
/// every allocation. Takes effect at once on the calling thread, and on every
/// other thread at its next sampling point: after a mean of the old rate's
/// bytes, or 256 KiB when sampling was off. (Like Go's
/// `MemProfileRate`, it is best set once, early.)
///
/// ```
/// allocmeter::set_sample_rate(64 * 1024);
/// assert_eq!(allocmeter::sample_rate(), 64 * 1024);
/// allocmeter::set_sample_rate(allocmeter::DEFAULT_SAMPLE_RATE);
/// ```
pub fn set_sample_rate(bytes: u64) {
    sampler::store_sample_rate(bytes);
    local::restart_sampling_clock();
}

/// Sets how many return addresses a sample captures (1 to 128; default 64).
pub fn set_stack_depth(frames: usize) {
    sampler::store_stack_depth(frames);
}

/// Stops sampling on the calling thread until the returned guard is dropped
/// (allocations are still counted). For profiling tools that do their work
/// on the caller's thread, such as symbolizing for a profile requested
/// in-process, so that their own allocations do not end up in the profile.
/// Guards nest.
///
/// ```
/// let guard = allocmeter::profile::suspend_sampling();
/// let scratch = vec![0u8; 1 << 20]; // counted, never sampled
/// drop(guard);
/// # drop(scratch);
/// ```
#[must_use = "sampling resumes when the guard is dropped"]
pub fn suspend_sampling() -> SamplingSuspended {
    SamplingSuspended {
        was_internal: local::set_internal(true),
    }
}

/// Returned by [`suspend_sampling`]; resumes sampling on drop.
#[derive(Debug)]
pub struct SamplingSuspended {
    was_internal: bool,
}

impl Drop for SamplingSuspended {
    fn drop(&mut self) {
        local::set_internal(self.was_internal);
    }
}

/// Marks the calling thread as internal for the rest of its life: its
/// allocations are still counted, but never sampled, and they are
/// allocmeter's own, not the program's ([`crate::stats_split`]), so that a
/// profiler's own work (aggregating, encoding, serving) neither shows up in
/// the profiles it serves nor moves the program's figures. The exporter
/// marks its threads this way, first thing in each, and spawns them inside
/// an [`internal_scope`], so that a thread is allocmeter's from its spawn to
/// its join.
///
/// What the thread counts from its start (its first allocation or free)
/// until it exits (its thread-local destructors included) is allocmeter's:
/// std's start-up on a new thread frees the block its spawner allocated and
/// copies a named thread's name before the thread runs its code. So call it
/// first thing in the thread: what a thread counted before the mark moves
/// from the program's side to allocmeter's, and a reader in between saw it
/// on the program's (for a thread marked first thing, a few microseconds
/// and two or three blocks).
pub fn mark_thread_internal() {
    let _ = local::set_internal(true);
    local::enter_internal_for_life();
}

/// Counts what the calling thread allocates and frees from now until the
/// returned guard is dropped as allocmeter's own, not the program's
/// ([`crate::stats_split`]), and suspends sampling meanwhile (as
/// [`suspend_sampling`] does). For work a profiling tool does on a
/// program's thread, such as a profile rendered in process. Scopes nest;
/// only the outermost one changes sides, and a scope on a thread marked
/// with [`mark_thread_internal`] changes nothing.
///
/// Exact: the thread's own counters are read when the outermost scope
/// starts and ends, so the split is exact to the byte and the allocation,
/// and nothing is added to the allocation path. A block allocated inside a
/// scope and freed outside it (or the other way round) is charged to the
/// side that allocated it and credited to the side that freed it: hand the
/// program a copy made outside the scope instead.
///
/// ```
/// # use std::alloc::System;
/// # #[global_allocator]
/// # static GLOBAL: allocmeter::Instrumented<System> = allocmeter::Instrumented::new(System);
/// let before = allocmeter::stats_split();
/// let scope = allocmeter::profile::internal_scope();
/// let scratch = std::hint::black_box(vec![0u8; 4096]); // allocmeter's
/// drop(scratch);
/// drop(scope);
/// let after = allocmeter::stats_split();
/// assert_eq!(after.internal.alloc_bytes - before.internal.alloc_bytes, 4096);
/// assert_eq!(after.internal.live_bytes, before.internal.live_bytes);
/// ```
#[must_use = "the scope ends when the guard is dropped"]
pub fn internal_scope() -> InternalScope {
    let sampling = suspend_sampling();
    local::enter_internal();
    InternalScope {
        _sampling: sampling,
        _thread: core::marker::PhantomData,
    }
}

/// Runs `f` in an [`internal_scope`]: what it allocates and frees on the
/// calling thread is allocmeter's own. Give the program a copy of what `f`
/// returns, made outside, if the program frees it (see [`internal_scope`]).
pub fn account_internal<R>(f: impl FnOnce() -> R) -> R {
    let _scope = internal_scope();
    f()
}

/// Returned by [`internal_scope`]; ends the scope on drop, on the thread
/// that started it (it cannot be sent to another).
#[derive(Debug)]
pub struct InternalScope {
    /// Resumes sampling (as it was) when dropped, after the scope ends.
    _sampling: SamplingSuspended,
    /// Not `Send`: a scope ends on the thread it started on.
    _thread: core::marker::PhantomData<*const ()>,
}

impl Drop for InternalScope {
    fn drop(&mut self) {
        local::leave_internal();
    }
}
