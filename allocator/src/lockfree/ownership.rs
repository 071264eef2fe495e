//! How a slot changes hands: a thread claims a free slot with a
//! compare-and-swap and gives it back with a store. Model-checked with loom
//! (`.ci/loom.sh`) together with [`crate::lockfree::bump::Owned`]: every
//! count the previous owner stored is seen by the next one, which continues
//! from it.

use super::sync::{AtomicU32, Ordering};

/// Nobody owns the slot.
pub(crate) const FREE: u32 = 0;
/// A thread owns the slot.
pub(crate) const OWNED: u32 = 1;

/// Takes a free slot (its `state`): `true` if this thread now owns it.
#[inline]
pub(crate) fn try_claim(state: &AtomicU32) -> bool {
    // Acquire pairs with the Release store in `release`: the new owner sees
    // every count the previous owner stored, so its load + store increments
    // continue from them. Relaxed on failure: the caller only moves on.
    state
        .compare_exchange(FREE, OWNED, Ordering::Acquire, Ordering::Relaxed)
        .is_ok()
}

/// Gives the slot back. Called by its owner.
#[inline]
pub(crate) fn release(state: &AtomicU32) {
    // Release: see `try_claim`.
    state.store(FREE, Ordering::Release);
}

/// Whether a thread owns the slot now (a reader's view; it may change at
/// once).
#[inline]
pub(crate) fn is_owned(state: &AtomicU32) -> bool {
    state.load(Ordering::Relaxed) == OWNED
}
