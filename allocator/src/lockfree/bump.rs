//! How a counter is bumped: by the one thread that owns it (a load and a
//! store) or by any thread (a read-modify-write). See [`crate::counters`]
//! for what readers can rely on. Model-checked with loom (`.ci/loom.sh`):
//! an owner's increments survive the slot changing hands.

use super::sync::{AtomicU64, Ordering};

/// How a counter is bumped: by its single owner, or by anyone.
pub(crate) trait Bump {
    /// Adds `v` to `cell` and returns the cell's new value.
    fn add(cell: &AtomicU64, v: u64) -> u64;
}

/// The owner of a slot: load + store, never a read-modify-write.
pub(crate) struct Owned;

impl Bump for Owned {
    #[inline(always)]
    fn add(cell: &AtomicU64, v: u64) -> u64 {
        // Only the owning thread stores to this cell, so no increment can be lost
        // between the load and the store. Release: see [`crate::counters`].
        let new = cell.load(Ordering::Relaxed).wrapping_add(v);
        cell.store(new, Ordering::Release);
        new
    }
}

/// Any thread, on the shared fallback slot: an atomic read-modify-write.
pub(crate) struct Shared;

impl Bump for Shared {
    #[inline(always)]
    fn add(cell: &AtomicU64, v: u64) -> u64 {
        cell.fetch_add(v, Ordering::Release).wrapping_add(v)
    }
}
