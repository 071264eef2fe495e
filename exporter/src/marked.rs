//! The exporter's threads count as allocmeter's from their start: each
//! marks itself first thing ([`mark_this_thread`]). What a new thread
//! counted before its mark (std's start-up on it, a few blocks) moves from
//! the program's side to allocmeter's at the mark, so a reader in between
//! would see the program's figures go back. [`Builder::start`] waits for its
//! threads' marks ([`wait_for`]) so that, once it returns, the program's
//! figures only grow.
//!
//! [`Builder::start`]: crate::Builder::start

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Exporter threads marked so far, in the process.
static MARKED: AtomicUsize = AtomicUsize::new(0);

/// Marks the calling exporter thread allocmeter's, and counts it.
pub(crate) fn mark_this_thread() {
    allocmeter::profile::mark_thread_internal();
    // Release: a `start` that sees the count sees the mark before it.
    MARKED.fetch_add(1, Ordering::Release);
}

/// Exporter threads marked so far.
pub(crate) fn count() -> usize {
    // Acquire: pairs with the Release in `mark_this_thread`.
    MARKED.load(Ordering::Acquire)
}

/// Waits until `n` more threads than `from` have marked themselves, or
/// `limit` has passed (a thread the scheduler has not run yet is not worth
/// failing a start for). Exporters starting at once in one process count
/// each other's threads: the wait may then end early, never late.
pub(crate) fn wait_for(from: usize, n: usize, limit: Duration) {
    let deadline = Instant::now() + limit;
    while count().wrapping_sub(from) < n && Instant::now() < deadline {
        std::thread::sleep(Duration::from_micros(200));
    }
}
