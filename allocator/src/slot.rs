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

use core::sync::atomic::{AtomicPtr, AtomicU32, AtomicU64, AtomicUsize, Ordering};

use crate::counters::{Bump, CounterCells, Counters};
use crate::lockfree::ownership::{self, FREE};
use crate::lockfree::ring::{self, Ring};

/// How many threads can own a slot at the same time. Further threads record
/// into the shared fallback slot.
pub const MAX_SLOTS: usize = 1024;

/// One thread's counters, padded to its own cache lines (128 bytes: x86-64
/// prefetches lines in pairs) so that neighbours never share a line.
///
/// The alignment is the type's own rather than a
/// [`Padded`](crate::lockfree::padded::Padded) wrapper (the same 128, for the
/// same reason): the registry is an array of slots that hands out `&Slot`
/// everywhere and finds a slot's index from its address and the size of a
/// `Slot`, so the padding belongs to the slot itself. `repr(C)` keeps the
/// counters first.
#[repr(C, align(128))]
pub(crate) struct Slot {
    /// The counters, written by the owner (or anyone, for the fallback slot).
    pub counters: CounterCells,
    /// The counters' values when the current owner claimed the slot, so that
    /// [`crate::thread_stats`] reports this thread's own work. Written and read
    /// only by the owner.
    pub baseline: CounterCells,
    /// Sampling counters, written like `counters`.
    pub sampling: SamplingCells,
    /// The slot's sample ring, allocated on its first sample; null before.
    /// Written by the owner (Release), read by the drainer (Acquire).
    ring: AtomicPtr<Ring>,
    /// The least ring size (words) this slot needs, raised by
    /// [`Slot::want_bigger_ring`] (by the owner or the drainer, hence
    /// `fetch_max`), so that a thread that samples faster than the drainer
    /// keeps up, or than it should poll, gets a bigger ring.
    ring_words_wanted: AtomicUsize,
    /// `FREE` or `OWNED`.
    state: AtomicU32,
}

/// Per-slot sampling counters.
pub(crate) struct SamplingCells {
    /// Allocations sampled and handed to the ring.
    pub taken: AtomicU64,
    /// Samples lost: ring full, sampled-pointer table full or busy.
    pub dropped: AtomicU64,
    /// Frees of sampled blocks that could not be reported (ring full, table
    /// busy): their in-use estimate stays up.
    pub frees_lost: AtomicU64,
}

impl SamplingCells {
    const fn new() -> Self {
        SamplingCells {
            taken: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            frees_lost: AtomicU64::new(0),
        }
    }

    /// Adds one to `cell` with writer `B`.
    #[inline]
    pub fn bump<B: Bump>(cell: &AtomicU64) {
        B::add(cell, 1);
    }
}

impl Slot {
    const fn new() -> Self {
        Slot {
            counters: CounterCells::new(),
            baseline: CounterCells::new(),
            sampling: SamplingCells::new(),
            ring: AtomicPtr::new(core::ptr::null_mut()),
            ring_words_wanted: AtomicUsize::new(0),
            state: AtomicU32::new(FREE),
        }
    }

    /// Gives the slot back. Called by its owner at thread exit.
    pub fn release(&self) {
        ownership::release(&self.state);
    }

    /// The slot's ring, if it has one.
    pub fn ring(&self) -> Option<&'static Ring> {
        // SAFETY: the pointer is null or points to a ring that is never freed.
        unsafe { self.ring.load(Ordering::Acquire).as_ref() }
    }

    /// The slot's ring for sampling at `rate` bytes, allocating it on first
    /// use. Owner only.
    ///
    /// A ring smaller than [`ring::words_for_rate`] asks for (the rate was
    /// lowered since it was allocated), or than [`Slot::want_bigger_ring`] asked
    /// for, is replaced by a bigger one once it is empty. The old ring is
    /// left alone, never freed, since the drainer may still be looking at it
    /// (it finds it empty); sizes at least double, so a slot leaves at most
    /// three such rings behind in its life.
    pub fn ring_for_rate(&self, rate: u64) -> Option<&'static Ring> {
        let want = ring::words_for_rate(rate).max(self.ring_words_wanted.load(Ordering::Relaxed));
        let current = self.ring();
        if let Some(ring) = current
            && (ring.capacity() >= want || !ring.is_empty())
        {
            return Some(ring);
        }
        let Some(fresh) = Ring::allocate(want) else {
            return current;
        };
        // Release: the drainer that loads the pointer sees the ring's fields.
        self.ring
            .store(fresh as *const Ring as *mut Ring, Ordering::Release);
        RING_BYTES.fetch_add(fresh.bytes(), Ordering::Relaxed);
        Some(fresh)
    }

    /// Asks for a ring twice as big as the current one (up to the largest
    /// size), which the owner puts in place at its next sample once the
    /// current ring is empty. The owner asks when a sample was dropped
    /// because the ring was full; the drainer asks when the ring fills so
    /// fast that it would have to drain it more often than
    /// [`crate::drainer::RING_GROWTH_INTERVAL`]. Any thread.
    pub fn want_bigger_ring(&self) {
        if let Some(ring) = self.ring() {
            let bigger = (ring.capacity() * 2).min(ring::MAX_RING_WORDS);
            self.ring_words_wanted.fetch_max(bigger, Ordering::Relaxed);
        }
    }

    /// The ring of a slot with many producers (the fallback slot), of the
    /// largest size, allocated on first use by whoever wins the race: a loser
    /// frees nothing, it just leaks its ring, which happens at most once per
    /// racing thread.
    pub fn shared_ring(&self) -> Option<&'static Ring> {
        if let Some(ring) = self.ring() {
            return Some(ring);
        }
        let ring = Ring::allocate(ring::MAX_RING_WORDS)?;
        let fresh = ring as *const Ring as *mut Ring;
        RING_BYTES.fetch_add(ring.bytes(), Ordering::Relaxed);
        match self.ring.compare_exchange(
            core::ptr::null_mut(),
            fresh,
            Ordering::AcqRel,
            Ordering::Acquire,
        ) {
            Ok(_) => Some(ring),
            // SAFETY: as in `ring`.
            Err(existing) => unsafe { existing.as_ref() },
        }
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

/// The shared slot for threads without one of their own while they count as
/// allocmeter's (see [`crate::internal`]).
static INTERNAL_FALLBACK: Slot = Slot::new();

/// In a forked child (one thread, no allocation): gives back every slot but
/// `own` (the forking thread's), since their owners do not exist here, and
/// unlocks the fallback ring's producer lock. Their counts stay (the
/// child's statistics start from the parent's at the fork); the child's new
/// threads reuse the slots.
pub(crate) fn reset_in_child(own: *const Slot) {
    for slot in &REGISTRY.slots {
        if !core::ptr::eq(slot, own) && ownership::is_owned(&slot.state) {
            slot.release();
        }
    }
    if let Some(ring) = FALLBACK.ring() {
        ring.force_unlock_producer();
    }
}

/// The shared slot for threads without one of their own.
#[inline]
pub(crate) fn fallback() -> &'static Slot {
    &FALLBACK
}

/// The shared slot for threads without one of their own, on allocmeter's
/// side or on the program's (see [`crate::internal`]).
#[inline]
pub(crate) fn fallback_for(internal: bool) -> &'static Slot {
    if internal { &INTERNAL_FALLBACK } else { &FALLBACK }
}

/// The shared slot of allocmeter's side.
pub(crate) fn internal_fallback() -> &'static Slot {
    &INTERNAL_FALLBACK
}

/// Claims the lowest free slot for the calling thread, or `None` if all
/// [`MAX_SLOTS`] are taken. Never allocates, never blocks.
pub(crate) fn claim() -> Option<&'static Slot> {
    for (index, slot) in REGISTRY.slots.iter().enumerate() {
        if ownership::try_claim(&slot.state) {
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

/// Bytes of all rings allocated so far.
static RING_BYTES: AtomicUsize = AtomicUsize::new(0);

/// Calls `f` on every slot that was ever claimed, then on the fallback slots.
pub(crate) fn for_each_used(mut f: impl FnMut(&Slot)) {
    let used = REGISTRY.high_water.load(Ordering::Acquire);
    for slot in REGISTRY.slots.iter().take(used) {
        f(slot);
    }
    f(&FALLBACK);
    f(&INTERNAL_FALLBACK);
}

/// The sum of every slot's counters, the fallback slots included.
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
        .filter(|s| ownership::is_owned(&s.state))
        .count();
    Occupancy { live, used }
}

/// Bytes of memory the registry has touched: the slots ever claimed plus the
/// fallback slot, the sample rings allocated, and the sampled-pointer table.
pub(crate) fn touched_bytes() -> usize {
    (occupancy().used + 1) * core::mem::size_of::<Slot>()
        + RING_BYTES.load(Ordering::Relaxed)
        + crate::lockfree::sampled::bytes()
}

/// The most ring bytes one slot can come to hold: ring sizes at least double
/// when a ring is replaced (see [`Slot::ring_for_rate`]) and stay within
/// [`ring::MIN_RING_WORDS`]..=[`ring::MAX_RING_WORDS`], so a slot's rings are
/// at most one of each power of two in between.
const MAX_RING_BYTES_PER_SLOT: usize = {
    let mut words = ring::MIN_RING_WORDS;
    let mut bytes = 0;
    while words <= ring::MAX_RING_WORDS {
        bytes += words * 8 + core::mem::size_of::<Ring>();
        words *= 2;
    }
    bytes
};

/// The most [`touched_bytes`] can be with `slots_used` slots ever claimed.
pub(crate) fn max_touched_bytes(slots_used: usize) -> usize {
    (slots_used.min(MAX_SLOTS) + 1) * (core::mem::size_of::<Slot>() + MAX_RING_BYTES_PER_SLOT)
        + crate::lockfree::sampled::MAX_BYTES
}

/// The index of `slot` in the registry (`MAX_SLOTS` for the fallback slot).
pub(crate) fn index_of(slot: &Slot) -> usize {
    let base = REGISTRY.slots.as_ptr() as usize;
    let offset = (slot as *const Slot as usize).wrapping_sub(base);
    let index = offset / core::mem::size_of::<Slot>();
    index.min(MAX_SLOTS)
}

/// Sampling totals over every slot: (taken, dropped, frees lost).
pub(crate) fn sampling_sum() -> (u64, u64, u64) {
    let mut t = (0u64, 0u64, 0u64);
    for_each_used(|s| {
        let ld = |c: &AtomicU64| c.load(Ordering::Relaxed);
        t.0 = t.0.wrapping_add(ld(&s.sampling.taken));
        t.1 = t.1.wrapping_add(ld(&s.sampling.dropped));
        t.2 = t.2.wrapping_add(ld(&s.sampling.frees_lost));
    });
    t
}
