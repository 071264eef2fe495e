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
//!
//! A slot also owns its sample rings (a [`Chain`]), and what the sampled
//! path keeps between two samples: the window that decides when a grown ring
//! goes back down, the stack of its last record, and the weight it carries.
//! The rings' memory is bounded: a slot's rings of up to 64 KiB come to at
//! most [`MAX_SLOT_STEADY_BYTES`] (about 121 KiB); rings grown for bursts
//! (128 KiB to 1 MiB each) come to at most [`MAX_BURST_RING_BYTES`]
//! (16 MiB) over all slots together, and [`MAX_SLOT_CHAIN_BYTES`] (4 MiB)
//! for one slot.

use core::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};

use crate::counters::{Bump, CounterCells, Counters};
use crate::lockfree::ownership::{self, FREE};
use crate::lockfree::chain::Chain;
use crate::lockfree::ring::{self, Ring};
use crate::record::StackMemo;

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
    /// The slot's sample rings: the owner's, and those the drainer has not
    /// finished. The first is allocated on the slot's first sample.
    rings: Chain,
    /// The least ring size (words) this slot needs, raised by
    /// [`Slot::want_bigger_ring`] (by the drainer, hence `fetch_max`), so
    /// that a thread that samples faster than the drainer should poll gets a
    /// bigger ring.
    ring_words_wanted: AtomicUsize,
    /// Bytes of this slot's rings of up to [`ring::MAX_RING_WORDS`] not yet
    /// freed (the owner adds, the drainer subtracts).
    steady_bytes: AtomicUsize,
    /// The owner's state between two samples. Owner only.
    pub producer: ProducerCells,
    /// What the weight of samples that could not be handed over adds up to,
    /// until a record carries it. Owner only.
    pub carry: Carry,
    /// `FREE` or `OWNED`.
    state: AtomicU32,
}

/// Per-slot sampling counters.
pub(crate) struct SamplingCells {
    /// Allocations sampled and handed to the ring.
    pub taken: AtomicU64,
    /// Samples lost outright, neither handed over nor carried. Nothing
    /// bumps it now (what cannot be handed over is carried); it stays so
    /// that `dropped` keeps one meaning wherever it is read.
    pub dropped: AtomicU64,
    /// Frees of sampled blocks that could not be reported (ring full, table
    /// busy): their in-use estimate stays up.
    pub frees_lost: AtomicU64,
    /// Samples that could not be handed over themselves (every ring full at
    /// its bound, the sampled-pointer table full or busy), whose weight a
    /// later record of the slot carries (see [`Carry`]).
    pub carried: AtomicU64,
}

/// The owner's state for its current ring, kept between two samples.
/// Written and read only by the slot's owner (relaxed loads and stores).
pub(crate) struct ProducerCells {
    /// Allocation records pushed into the current ring since the window
    /// began.
    window_pushes: AtomicUsize,
    /// The most words the current ring held after a push in this window.
    window_peak: AtomicUsize,
    /// A hash of the stack of the last allocation record pushed into the
    /// current ring, with its length; 0: none since the ring was installed.
    pub last_stack: AtomicU64,
}

/// Allocation records after which the owner looks at how full its ring got:
/// a ring grown for a burst that stayed under an eighth full for this many
/// samples is replaced by a smaller one.
pub(crate) const SHRINK_WINDOW: usize = 32;

/// The weight of samples that could not be handed over, kept by the slot
/// until its next record carries it. Owner only: relaxed loads and stores.
pub(crate) struct Carry {
    samples: AtomicU64,
    /// Estimated allocations, as `f64` bits.
    objects: AtomicU64,
    /// Estimated bytes, as `f64` bits.
    bytes: AtomicU64,
}

impl Carry {
    const fn new() -> Self {
        Carry {
            samples: AtomicU64::new(0),
            objects: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
        }
    }

    /// Adds a sample of `weight` allocations of `size` bytes.
    pub fn add(&self, weight: f64, size: u64) {
        let add = |cell: &AtomicU64, v: f64| {
            let sum = f64::from_bits(cell.load(Ordering::Relaxed)) + v;
            cell.store(sum.to_bits(), Ordering::Relaxed);
        };
        self.samples
            .store(self.samples.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
        add(&self.objects, weight);
        add(&self.bytes, weight * size as f64);
    }

    /// What is carried now: (samples, allocations, bytes).
    pub fn get(&self) -> (u64, f64, f64) {
        (
            self.samples.load(Ordering::Relaxed),
            f64::from_bits(self.objects.load(Ordering::Relaxed)),
            f64::from_bits(self.bytes.load(Ordering::Relaxed)),
        )
    }

    /// Forgets what was carried: a record took it.
    pub fn clear(&self) {
        self.samples.store(0, Ordering::Relaxed);
        self.objects.store(0, Ordering::Relaxed);
        self.bytes.store(0, Ordering::Relaxed);
    }
}

impl SamplingCells {
    const fn new() -> Self {
        SamplingCells {
            taken: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            frees_lost: AtomicU64::new(0),
            carried: AtomicU64::new(0),
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
            rings: Chain::new(),
            ring_words_wanted: AtomicUsize::new(0),
            steady_bytes: AtomicUsize::new(0),
            producer: ProducerCells {
                window_pushes: AtomicUsize::new(0),
                window_peak: AtomicUsize::new(0),
                last_stack: AtomicU64::new(0),
            },
            carry: Carry::new(),
            state: AtomicU32::new(FREE),
        }
    }

    /// Gives the slot back. Called by its owner at thread exit.
    pub fn release(&self) {
        ownership::release(&self.state);
    }

    /// The ring the owner pushes into, if it has one. Owner only (or the
    /// fallback slot's producers).
    pub fn ring(&self) -> Option<&'static Ring> {
        self.rings.producer()
    }

    /// The slot's ring for sampling at `rate` bytes, allocating it on first
    /// use. Owner only.
    ///
    /// The owner switches to a new ring ([`Chain::switch`]; the drainer
    /// finishes the old one and frees it) when its ring is smaller than
    /// [`ring::words_for_rate`] asks for (the rate was lowered) or than
    /// [`Slot::want_bigger_ring`] asked for, and when a ring grown for a
    /// burst ([`Slot::grow_ring`]) stayed under an eighth full for
    /// [`SHRINK_WINDOW`] samples: then to one that its fullest moment in
    /// that window would have filled to a quarter at most. Where the bounds
    /// refuse a new ring, the current one goes on.
    pub fn ring_for_rate(&self, rate: u64) -> Option<&'static Ring> {
        let want = ring::words_for_rate(rate).max(self.ring_words_wanted.load(Ordering::Relaxed));
        let Some(ring) = self.ring() else {
            return self.switch_to(want);
        };
        let capacity = ring.capacity();
        if capacity < want {
            return self.switch_to(want).or(Some(ring));
        }
        let p = &self.producer;
        if capacity > want && p.window_pushes.load(Ordering::Relaxed) >= SHRINK_WINDOW {
            let peak = p.window_peak.load(Ordering::Relaxed);
            p.window_pushes.store(0, Ordering::Relaxed);
            p.window_peak.store(0, Ordering::Relaxed);
            let smaller = (peak * 4).next_power_of_two().max(want);
            if peak * 8 < capacity && smaller < capacity {
                return self.switch_to(smaller).or(Some(ring));
            }
        }
        Some(ring)
    }

    /// Switches at once to a ring four times as big as the current one (at
    /// least `need` words, at least 128 KiB, at most
    /// [`ring::BURST_RING_WORDS`]), for a record of `need` words that does
    /// not fit: the drainer is behind. Such rings count against the burst
    /// budget ([`MAX_BURST_RING_BYTES`]), never against the slot's steady
    /// bytes, which the rings it left behind may still fill. `None` if the
    /// ring is as big as it gets or the bounds refuse. Owner only.
    pub fn grow_ring(&self, need: usize) -> Option<&'static Ring> {
        let capacity = self.ring().map_or(0, Ring::capacity);
        let bigger = (capacity * 4)
            .max(need.next_power_of_two())
            .clamp(ring::MAX_RING_WORDS * 2, ring::BURST_RING_WORDS);
        if bigger <= capacity {
            return None;
        }
        self.switch_to(bigger)
    }

    /// Notes that `used` words of the current ring were in use after a push
    /// of an allocation record. Owner only.
    pub fn note_push(&self, used: usize) {
        let p = &self.producer;
        p.window_pushes
            .store(p.window_pushes.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
        if used > p.window_peak.load(Ordering::Relaxed) {
            p.window_peak.store(used, Ordering::Relaxed);
        }
    }

    /// Allocates a ring of `words` words, if the bounds allow it, and
    /// switches to it. Owner only.
    fn switch_to(&self, words: usize) -> Option<&'static Ring> {
        let words = words.clamp(1, ring::BURST_RING_WORDS).next_power_of_two();
        let bytes = ring_bytes(words);
        if self.rings.bytes() + bytes > MAX_SLOT_CHAIN_BYTES {
            return None;
        }
        let burst = words > ring::MAX_RING_WORDS;
        if burst {
            // Relaxed: a budget, ordered with nothing else. Reserved before
            // the allocation, so that racing owners cannot overshoot it.
            if BURST_BYTES.fetch_add(bytes, Ordering::Relaxed) + bytes > MAX_BURST_RING_BYTES {
                BURST_BYTES.fetch_sub(bytes, Ordering::Relaxed);
                return None;
            }
        } else if self.steady_bytes.load(Ordering::Relaxed) + bytes > MAX_SLOT_STEADY_BYTES {
            return None;
        }
        let Some(fresh) = Ring::allocate(words) else {
            if burst {
                BURST_BYTES.fetch_sub(bytes, Ordering::Relaxed);
            }
            return None;
        };
        if !burst {
            // Relaxed: only the owner adds, and reads it only as a bound.
            self.steady_bytes.fetch_add(bytes, Ordering::Relaxed);
        }
        // The first record in a new ring carries its whole stack, and the
        // window starts again.
        self.producer.last_stack.store(0, Ordering::Relaxed);
        self.producer.window_pushes.store(0, Ordering::Relaxed);
        self.producer.window_peak.store(0, Ordering::Relaxed);
        self.rings.switch(fresh);
        let total = RING_BYTES.fetch_add(bytes, Ordering::Relaxed) + bytes;
        RING_BYTES_PEAK.fetch_max(total, Ordering::Relaxed);
        Some(fresh)
    }

    /// Asks for a ring twice as big as `capacity` words, the size of the
    /// ring the drainer found filling too fast (up to
    /// [`ring::MAX_RING_WORDS`]), which the owner switches to at its next
    /// sample. The drainer asks when the ring fills so fast that it would
    /// have to drain it more often than
    /// [`crate::drainer::RING_GROWTH_INTERVAL`].
    pub fn want_bigger_ring(&self, capacity: usize) {
        let bigger = (capacity * 2).min(ring::MAX_RING_WORDS);
        self.ring_words_wanted.fetch_max(bigger, Ordering::Relaxed);
    }

    /// Reads the slot's rings (see [`Chain::drain`]): `visit` pops a ring
    /// until it is empty. Rings the owner has left are freed. Drainer only.
    pub fn drain_rings(&self, visit: impl FnMut(&Ring)) {
        self.rings.drain(visit, |ring| {
            let bytes = ring.bytes();
            // Relaxed: budgets and figures, see `switch_to`.
            if ring.capacity() > ring::MAX_RING_WORDS {
                BURST_BYTES.fetch_sub(bytes, Ordering::Relaxed);
            } else {
                self.steady_bytes.fetch_sub(bytes, Ordering::Relaxed);
            }
            RING_BYTES.fetch_sub(bytes, Ordering::Relaxed);
        });
    }

    /// The drainer's memory of the last whole stack read from this slot's
    /// rings. Drainer only. Kept beside the registry, not in the slot, so
    /// that the slots the hot path writes stay as small as they were.
    pub fn memo(&self) -> &'static StackMemo {
        &MEMOS[index_of(self)]
    }

    /// The ring a drain starts with (the oldest one not finished). Drainer
    /// only.
    pub fn drain_ring(&self) -> Option<&'static Ring> {
        self.rings.consumer()
    }

    /// The ring of a slot with many producers (the fallback slot), of the
    /// largest steady size, allocated on first use by whoever wins the race
    /// (a loser frees its own).
    pub fn shared_ring(&self) -> Option<&'static Ring> {
        if let Some(ring) = self.ring() {
            return Some(ring);
        }
        let fresh = Ring::allocate(ring::MAX_RING_WORDS)?;
        let (ring, installed) = self.rings.install_shared(fresh);
        if installed {
            let bytes = ring.bytes();
            // Relaxed: figures, see `switch_to`.
            self.steady_bytes.fetch_add(bytes, Ordering::Relaxed);
            let total = RING_BYTES.fetch_add(bytes, Ordering::Relaxed) + bytes;
            RING_BYTES_PEAK.fetch_max(total, Ordering::Relaxed);
        } else if !core::ptr::eq(ring, fresh) {
            // SAFETY: `fresh` was never shared: the race was lost.
            unsafe { Ring::free(fresh) };
        }
        Some(ring)
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

/// The drain's memory of each slot's last whole stack, by slot index (the
/// fallback slot's last). Untouched entries cost address space only.
static MEMOS: [StackMemo; MAX_SLOTS + 1] = [const { StackMemo::new() }; MAX_SLOTS + 1];

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
        slot.rings.repair_in_child();
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

/// The shared slot of allocmeter's side. It never has a sample ring (its
/// threads are counted, never sampled, and a free of a sampled block is
/// reported through [`fallback`]'s), so the drain's per-slot memory, which
/// gives both fallback slots the index [`MAX_SLOTS`], is only ever the
/// program's fallback slot's.
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

/// Bytes of all rings not freed.
static RING_BYTES: AtomicUsize = AtomicUsize::new(0);

/// The most [`RING_BYTES`] has been.
static RING_BYTES_PEAK: AtomicUsize = AtomicUsize::new(0);

/// Bytes of rings over [`ring::MAX_RING_WORDS`] (grown for bursts) not freed.
static BURST_BYTES: AtomicUsize = AtomicUsize::new(0);

/// The most bytes rings grown for bursts (over 64 KiB) take over all slots
/// together: 16 MiB, a 1 MiB burst ring for 16 threads at once (an eighth
/// under Miri). A thread whose ring would go beyond carries the weight of
/// the samples that do not fit instead (see [`Carry`]).
pub(crate) const MAX_BURST_RING_BYTES: usize = if cfg!(miri) { 2 << 20 } else { 16 << 20 };

/// The most bytes one slot's rings take (all sizes), so that one thread
/// cannot take the whole burst budget: 4 MiB (a burst that starts from the
/// smallest ring and finds the drainer absent throughout goes through
/// 128 KiB, 512 KiB and 1 MiB: 1.6 MiB).
pub(crate) const MAX_SLOT_CHAIN_BYTES: usize = 4 * ring_bytes(ring::BURST_RING_WORDS);

/// The most bytes one slot's rings of up to 64 KiB take: one of each power
/// of two from 8 KiB to 64 KiB (about 121 KiB), which holds the one in use
/// and one or more the drainer has not finished.
pub(crate) const MAX_SLOT_STEADY_BYTES: usize = {
    let mut words = ring::MIN_RING_WORDS;
    let mut bytes = 0;
    while words <= ring::MAX_RING_WORDS {
        bytes += ring_bytes(words);
        words *= 2;
    }
    bytes
};

/// Bytes of a ring of `words` words, its header included.
const fn ring_bytes(words: usize) -> usize {
    words * 8 + core::mem::size_of::<Ring>()
}

/// Bytes of every ring not freed now, and the most there have been.
pub(crate) fn ring_bytes_now_and_peak() -> (usize, usize) {
    (
        RING_BYTES.load(Ordering::Relaxed),
        RING_BYTES_PEAK.load(Ordering::Relaxed),
    )
}

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
    (occupancy().used + 1) * (core::mem::size_of::<Slot>() + core::mem::size_of::<StackMemo>())
        + RING_BYTES.load(Ordering::Relaxed)
        + crate::lockfree::sampled::bytes()
}

/// The most [`touched_bytes`] can be with `slots_used` slots ever claimed:
/// each slot with its rings of up to 64 KiB ([`MAX_SLOT_STEADY_BYTES`]), the
/// rings grown for bursts ([`MAX_BURST_RING_BYTES`]), and the
/// sampled-pointer table.
pub(crate) fn max_touched_bytes(slots_used: usize) -> usize {
    (slots_used.min(MAX_SLOTS) + 1)
        * (core::mem::size_of::<Slot>() + core::mem::size_of::<StackMemo>() + MAX_SLOT_STEADY_BYTES)
        + MAX_BURST_RING_BYTES
        + crate::lockfree::sampled::MAX_BYTES
}

/// The index of `slot` in the registry (`MAX_SLOTS` for the fallback slot).
pub(crate) fn index_of(slot: &Slot) -> usize {
    let base = REGISTRY.slots.as_ptr() as usize;
    let offset = (slot as *const Slot as usize).wrapping_sub(base);
    let index = offset / core::mem::size_of::<Slot>();
    index.min(MAX_SLOTS)
}

/// Sampling totals over every slot: (taken, dropped, frees lost, carried).
pub(crate) fn sampling_sum() -> (u64, u64, u64, u64) {
    let mut t = (0u64, 0u64, 0u64, 0u64);
    for_each_used(|s| {
        let ld = |c: &AtomicU64| c.load(Ordering::Relaxed);
        t.0 = t.0.wrapping_add(ld(&s.sampling.taken));
        t.1 = t.1.wrapping_add(ld(&s.sampling.dropped));
        t.2 = t.2.wrapping_add(ld(&s.sampling.frees_lost));
        t.3 = t.3.wrapping_add(ld(&s.sampling.carried));
    });
    t
}
