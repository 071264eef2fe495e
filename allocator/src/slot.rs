//! Per-thread slots and the registry that hands them out.
//!
//! The registry is a fixed array of [`MAX_SLOTS`] cache-padded slots in a
//! `static`: it is never freed, so a reader can walk it at any time without
//! hazard pointers, and a thread that dies leaves nothing dangling. Untouched
//! slots cost address space only (they sit in `.bss`, and the kernel backs a
//! page with memory when it is first written).
//!
//! A thread claims the lowest free slot on its first allocation (a CAS per
//! candidate, once per thread) and releases it when it exits. The next thread
//! that claims it keeps adding to the same counters, so totals never go down
//! and nothing is lost when threads come and go; the number of slots ever used
//! is the peak number of threads alive at once, not the number ever started.
//!
//! Threads that find no free slot, and allocations made after a thread's slot
//! was released during its teardown, are recorded in one shared [`fallback`]
//! slot with atomic read-modify-writes: slower, but nothing is lost.

use core::sync::atomic::{AtomicU32, AtomicUsize, Ordering};

use crate::counters::{CounterCells, Counters};

/// How many threads can own a slot at the same time. Further threads record
/// into the shared fallback slot.
pub const MAX_SLOTS: usize = 1024;

const FREE: u32 = 0;
const LIVE: u32 = 1;

/// One thread's counters, padded to its own cache lines (128 bytes: x86-64
/// prefetches lines in pairs) so that neighbours never share a line.
#[repr(C, align(128))]
pub(crate) struct Slot {
    /// The counters, written by the owner (or anyone, for the fallback slot).
    pub counters: CounterCells,
    /// The counters' values when the current owner claimed the slot, so that
    /// [`crate::thread_stats`] reports this thread's own work. Written and read
    /// only by the owner.
    pub baseline: CounterCells,
    /// `FREE` or `LIVE`.
    state: AtomicU32,
}

impl Slot {
    const fn new() -> Self {
        Slot {
            counters: CounterCells::new(),
            baseline: CounterCells::new(),
            state: AtomicU32::new(FREE),
        }
    }

    /// Gives the slot back. Called by its owner at thread exit.
    pub fn release(&self) {
        // Release: the next owner's Acquire CAS in `claim` then sees every count
        // this owner stored, so its load + store increments continue from them.
        self.state.store(FREE, Ordering::Release);
    }

    /// This thread's counters since it claimed the slot. Owner only.
    pub fn since_claim(&self) -> Counters {
        self.counters.read().wrapping_sub(&self.baseline.read())
    }
}

/// `Sync` wrapper for the array, so it can live in a `static`.
struct Registry {
    slots: [Slot; MAX_SLOTS],
    /// One past the highest slot index ever claimed. Readers walk `0..high_water`.
    high_water: AtomicUsize,
}

static REGISTRY: Registry = Registry {
    slots: [const { Slot::new() }; MAX_SLOTS],
    high_water: AtomicUsize::new(0),
};

static FALLBACK: Slot = Slot::new();

/// The shared slot for threads without one of their own.
#[inline]
pub(crate) fn fallback() -> &'static Slot {
    &FALLBACK
}

/// Claims the lowest free slot for the calling thread, or `None` if all
/// [`MAX_SLOTS`] are taken. Never allocates, never blocks.
pub(crate) fn claim() -> Option<&'static Slot> {
    for (index, slot) in REGISTRY.slots.iter().enumerate() {
        // Acquire pairs with `release`: see there. Relaxed on failure: we only
        // move on to the next candidate.
        if slot
            .state
            .compare_exchange(FREE, LIVE, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
        {
            // Publish the slot to readers before its first count is stored
            // (Release pairs with the Acquire load in `for_each_used`). A slot
            // beyond the old mark was never used, so a reader that misses it
            // misses only zeros.
            REGISTRY.high_water.fetch_max(index + 1, Ordering::Release);
            let counters = slot.counters.read();
            slot.baseline.store(&counters);
            return Some(slot);
        }
    }
    None
}

/// Calls `f` on every slot that was ever claimed, then on the fallback slot.
fn for_each_used(mut f: impl FnMut(&Slot)) {
    let used = REGISTRY.high_water.load(Ordering::Acquire);
    for slot in REGISTRY.slots.iter().take(used) {
        f(slot);
    }
    f(&FALLBACK);
}

/// The sum of every slot's counters, the fallback included.
///
/// All free sides are read before all allocation sides (see
/// [`crate::counters`]), so the result never shows more freed than allocated.
pub(crate) fn sum() -> Counters {
    let mut out = Counters::default();
    for_each_used(|s| s.counters.read_free_side(&mut out));
    for_each_used(|s| s.counters.read_alloc_side(&mut out));
    out
}

/// Registry occupancy at one moment.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Occupancy {
    /// Slots owned by a live thread now.
    pub live: usize,
    /// Slots ever claimed (the registry's high-water mark).
    pub used: usize,
}

/// How many slots are owned now and how many were ever used.
pub(crate) fn occupancy() -> Occupancy {
    let used = REGISTRY.high_water.load(Ordering::Acquire);
    let live = REGISTRY
        .slots
        .iter()
        .take(used)
        .filter(|s| s.state.load(Ordering::Relaxed) == LIVE)
        .count();
    Occupancy { live, used }
}

/// Bytes of memory the registry has touched: the slots ever claimed plus the
/// fallback slot.
pub(crate) fn touched_bytes() -> usize {
    (occupancy().used + 1) * core::mem::size_of::<Slot>()
}
