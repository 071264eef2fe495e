//! What the exporter allocates while it serves, kept apart so that the
//! service's own figures (the spike detector's input) leave it out.
//!
//! Owns: [`OwnAllocations`]. Touches nothing else; renderers wrap their work
//! in [`OwnAllocations::account`] (through the aggregator), and the
//! aggregator reads the totals with [`OwnAllocations::read_quiescent`].

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};

/// What the exporter allocates while it serves (requests, and renders asked
/// for in process), so that the spike detector can leave it out: the first
/// symbolization alone loads the binary's debug info, which would otherwise
/// show as a spike each time someone first opens the page.
///
/// Each render runs inside [`OwnAllocations::account`], which measures the
/// thread's own allocations exactly ([`allocmeter::measure`]) and adds them
/// up. A render still running has allocated bytes the process's counters
/// show and these totals do not yet, so the aggregator only reads the two
/// together when no render is in progress ([`OwnAllocations::read_quiescent`]).
#[derive(Default)]
pub(crate) struct OwnAllocations {
    started: AtomicU64,
    finished: AtomicU64,
    bytes: AtomicU64,
    allocs: AtomicU64,
}

thread_local! {
    /// Whether this thread is inside [`OwnAllocations::account`] (renders
    /// nest: `/metrics` renders the collector, which ranks sites).
    static ACCOUNTING: Cell<bool> = const { Cell::new(false) };
}

/// Marks the end of an accounted render, even if it panicked.
struct Finished<'a>(&'a OwnAllocations);

impl Drop for Finished<'_> {
    fn drop(&mut self) {
        self.0.finished.fetch_add(1, Ordering::SeqCst);
        ACCOUNTING.set(false);
    }
}

impl OwnAllocations {
    /// Runs `f`, adding what this thread allocated meanwhile to the totals
    /// (unless this thread is already inside `account`).
    pub fn account<R>(&self, f: impl FnOnce() -> R) -> R {
        if ACCOUNTING.get() {
            return f();
        }
        ACCOUNTING.set(true);
        self.started.fetch_add(1, Ordering::SeqCst);
        let finished = Finished(self);
        let (result, used) = allocmeter::measure(f);
        self.bytes.fetch_add(used.alloc_bytes, Ordering::SeqCst);
        self.allocs.fetch_add(used.allocs, Ordering::SeqCst);
        drop(finished);
        result
    }

    /// Calls `read` (which reads the process's counters) and returns its
    /// result with the bytes and allocations accounted so far, if no render
    /// was in progress from before the call until after it: only then are
    /// the two consistent.
    pub fn read_quiescent<R>(&self, read: impl FnOnce() -> R) -> (R, Option<(u64, u64)>) {
        // A render adds its totals before it counts as finished, and its
        // allocations precede both; so with `finished` read first, the
        // counters read next include everything a finished render added.
        let started = self.started.load(Ordering::SeqCst);
        let finished = self.finished.load(Ordering::SeqCst);
        let result = read();
        let totals = (
            self.bytes.load(Ordering::SeqCst),
            self.allocs.load(Ordering::SeqCst),
        );
        let quiet = started == finished
            && self.started.load(Ordering::SeqCst) == started
            && self.finished.load(Ordering::SeqCst) == finished;
        (result, quiet.then_some(totals))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_allocations_are_read_only_when_no_render_is_in_progress() {
        // (This test binary's allocator is not instrumented, so the totals
        // stay 0; tests/spikes.rs checks what they leave out.)
        let own = OwnAllocations::default();
        assert_eq!(own.read_quiescent(|| 1), (1, Some((0, 0))));
        own.account(|| {
            own.account(|| {
                assert_eq!(own.read_quiescent(|| 2), (2, None), "nested");
            });
            assert_eq!(own.read_quiescent(|| 3), (3, None), "in progress");
        });
        assert_eq!(own.read_quiescent(|| 4), (4, Some((0, 0))));
        // A render that panics still ends.
        let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            own.account(|| panic!("render failed"))
        }));
        assert!(caught.is_err());
        assert_eq!(own.read_quiescent(|| 5), (5, Some((0, 0))));
        own.account(|| assert_eq!(own.read_quiescent(|| 6).1, None, "flag reset"));
    }
}
