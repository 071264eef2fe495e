//! The calling thread's state: which slot it records into.
//!
//! This is the only thread-local the hot path touches. It is `const`-initialised
//! and has no destructor, so `thread_local!` compiles it to a bare TLS slot: no
//! lazy-init check, no destructor registration, never "destroyed", and reading
//! it can neither allocate nor panic (rust-lang/rust `thread_local/native`).
//!
//! Releasing the slot at thread exit needs a destructor, which lives in a
//! second thread-local, [`GUARD`]. It is registered once per thread, from the
//! slow path of the thread's first allocation, after the slot is already in
//! place: an allocation made while registering (glibc's
//! `__cxa_thread_atexit_impl` callocs; std's fallback list may allocate)
//! therefore records into the new slot like any other, instead of recursing
//! into the claim path. The [`State::Claiming`] state covers the instant
//! before that.

use core::cell::Cell;
use core::ptr;

use crate::counters::{Bump, CounterCells, Owned, Shared};
use crate::slot::{self, Slot};

/// Where a thread is in its life, as far as recording goes.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum State {
    /// Has not allocated yet: the next allocation claims a slot.
    Unclaimed,
    /// Claiming a slot right now; a reentrant allocation records into the
    /// fallback slot rather than claiming again.
    Claiming,
    /// Owns the slot in [`Local::slot`].
    Owner,
    /// Records into the fallback slot for the rest of its life: the registry
    /// was full, or the thread's slot was released at thread exit.
    Fallback,
}

/// The per-thread record.
pub(crate) struct Local {
    /// The owned slot, or null unless `state == Owner`.
    slot: Cell<*const Slot>,
    state: Cell<State>,
}

thread_local! {
    static LOCAL: Local = const {
        Local { slot: Cell::new(ptr::null()), state: Cell::new(State::Unclaimed) }
    };
}

/// Releases the thread's slot when the thread exits.
struct SlotGuard;

impl Drop for SlotGuard {
    fn drop(&mut self) {
        // `LOCAL` has no destructor, so it is still accessible here.
        let _ = LOCAL.try_with(|local| {
            let slot = local.slot.replace(ptr::null());
            local.state.set(State::Fallback);
            // SAFETY: a non-null `slot` always points into the `static`
            // registry (set only in `claim_slot`), so it is valid for 'static.
            if let Some(slot) = unsafe { slot.as_ref() } {
                slot.release();
            }
        });
    }
}

thread_local! {
    static GUARD: SlotGuard = const { SlotGuard };
}

/// One recording operation, generic over how counters are bumped.
pub(crate) trait Op {
    /// Applies the operation to `cells`.
    fn apply<B: Bump>(self, cells: &CounterCells);
}

/// Applies `op` to the calling thread's slot, claiming a slot first if the
/// thread has none yet, or to the shared fallback slot. Never allocates,
/// blocks or panics.
#[inline(always)]
pub(crate) fn record<O: Op>(op: O) {
    let slot = LOCAL
        .try_with(|local| local.slot.get())
        .unwrap_or(ptr::null());
    // SAFETY: `Local::slot` is non-null only while this thread owns that slot,
    // and every slot lives in a `static`, so the reference is valid.
    match unsafe { slot.as_ref() } {
        Some(slot) => op.apply::<Owned>(&slot.counters),
        None => record_slow(op),
    }
}

#[cold]
#[inline(never)]
fn record_slow<O: Op>(op: O) {
    match current_slot() {
        Some(slot) => op.apply::<Owned>(&slot.counters),
        None => op.apply::<Shared>(&slot::fallback().counters),
    }
}

/// The calling thread's own slot, claiming one if it has never had one.
/// `None` if it records into the fallback slot.
pub(crate) fn current_slot() -> Option<&'static Slot> {
    LOCAL
        .try_with(|local| match local.state.get() {
            // SAFETY: non-null while `Owner` (see `record`); slots are static.
            State::Owner => unsafe { local.slot.get().as_ref() },
            State::Unclaimed => claim_slot(local),
            State::Claiming | State::Fallback => None,
        })
        .ok()
        .flatten()
}

#[cold]
fn claim_slot(local: &Local) -> Option<&'static Slot> {
    local.state.set(State::Claiming);
    let Some(slot) = slot::claim() else {
        local.state.set(State::Fallback);
        return None;
    };
    local.slot.set(slot);
    local.state.set(State::Owner);
    // Register the exit guard. Allocations it makes record into `slot`.
    if GUARD.try_with(|_| ()).is_err() {
        // The thread is already tearing its thread-locals down, so the guard
        // would never run: give the slot back now rather than leak it.
        local.slot.set(ptr::null());
        local.state.set(State::Fallback);
        slot.release();
        return None;
    }
    Some(slot)
}
