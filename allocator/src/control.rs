//! The knobs a program turns: the sample rate and stack depth, process-wide,
//! and whether the calling thread is sampled at all.
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

/// Marks the calling thread as internal: its allocations are still counted,
/// but never sampled, so that a profiler's own work (aggregating, encoding,
/// serving) does not show up in the profiles it serves or feed back into
/// them. The exporter marks its threads this way.
pub fn mark_thread_internal() {
    let _ = local::set_internal(true);
}
