//! The read API: [`stats`], [`stats_split`], [`thread_stats`], [`thread_totals`] and [`measure`].

use crate::counters::Counters;
use crate::size_class::{NUM_SIZE_CLASSES, upper_bound};
use crate::{installed, internal, local, slot};

/// Reallocations, by how the inner allocator served them.
///
/// Each successful `realloc` is also counted as one free of the old block and
/// one allocation of the new one in the other counters (as growing a slice is
/// in Go), so live bytes and objects stay exact. These fields say how the
/// reallocs went.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Reallocs {
    /// Reallocs that returned the same address with a larger size.
    pub grown_in_place: u64,
    /// Reallocs that returned the same address with the same or a smaller size.
    pub shrunk_in_place: u64,
    /// Reallocs that returned a different address (the inner allocator copied
    /// the block).
    pub moved: u64,
    /// Bytes added by reallocs that grew a block (in place or moved): the sum of
    /// `new_size - old_size` over them.
    pub grown_bytes: u64,
    /// Bytes given back by reallocs that shrank a block (in place or moved): the
    /// sum of `old_size - new_size` over them.
    pub shrunk_bytes: u64,
}

impl Reallocs {
    /// All reallocs, whatever their kind.
    pub const fn total(&self) -> u64 {
        self.grown_in_place + self.shrunk_in_place + self.moved
    }
}

/// Allocations and frees in one size class.
///
/// Go analogue: one entry of `runtime.MemStats.BySize`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SizeClassStats {
    /// Largest request size (bytes, inclusive) in this class; `None` for the
    /// open-ended top class. The previous class's bound, exclusive, is the
    /// floor. Go: `BySize[i].Size`.
    pub max_size: Option<u64>,
    /// Allocations (including the new block of each realloc) in this class.
    /// Go: `BySize[i].Mallocs`.
    pub allocs: u64,
    /// Frees (including the old block of each realloc) in this class.
    /// Go: `BySize[i].Frees`.
    pub frees: u64,
}

impl Reallocs {
    fn from_counters(c: &Counters) -> Self {
        Reallocs {
            grown_in_place: c.grown_in_place,
            shrunk_in_place: c.shrunk_in_place,
            moved: c.moved,
            grown_bytes: c.grown_bytes,
            shrunk_bytes: c.shrunk_bytes,
        }
    }
}

fn by_size(c: &Counters) -> [SizeClassStats; NUM_SIZE_CLASSES] {
    core::array::from_fn(|i| SizeClassStats {
        max_size: upper_bound(i),
        allocs: c.alloc_by_class[i],
        frees: c.free_by_class[i],
    })
}

/// Process-wide allocation statistics, like Go's `runtime.MemStats`.
///
/// Sizes are the sizes programs *requested* (`Layout::size`), not what the
/// inner allocator rounded them up to. Every counter only grows; the live
/// figures are derived from them.
///
/// Consistency: each field is exact for the operations it has seen, but the
/// fields are read one after another while other threads keep allocating, so
/// two fields may be a few operations apart (for example `allocs` and the sum
/// of `by_size`). Frees are read before allocations, so `live_bytes` and
/// `live_objects` are never below the truth at any moment during the read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemStats {
    /// Bytes in blocks allocated and not yet freed: `alloc_bytes - free_bytes`.
    /// Go: `HeapAlloc` (and `Alloc`).
    pub live_bytes: u64,
    /// Blocks allocated and not yet freed: `allocs - frees`. Go: `HeapObjects`.
    pub live_objects: u64,
    /// Bytes allocated since the process started, freed or not (each realloc
    /// adds its new size). Go: `TotalAlloc`.
    pub alloc_bytes: u64,
    /// Blocks allocated since the process started (each realloc adds one).
    /// Go: `Mallocs`.
    pub allocs: u64,
    /// Blocks freed since the process started (each realloc adds one).
    /// Go: `Frees`.
    pub frees: u64,
    /// Bytes freed since the process started (each realloc adds its old size).
    /// Go has no field; `TotalAlloc - HeapAlloc` is the same quantity.
    pub free_bytes: u64,
    /// Reallocations by kind. No Go analogue (Go has no realloc).
    pub reallocs: Reallocs,
    /// Requests the inner allocator refused (returned null). The caller got
    /// null; nothing else was counted. No Go analogue (Go aborts).
    pub failures: u64,
    /// Allocations and frees per power-of-two size class. Go: `BySize`.
    pub by_size: [SizeClassStats; NUM_SIZE_CLASSES],
    /// Threads that own a slot now. Threads that never allocated, or that
    /// record into the shared fallback slot, are not counted.
    pub threads: u64,
    /// Slots ever claimed: the peak number of threads that owned a slot at the
    /// same time (slots are reused, never freed).
    pub slots_used: u64,
    /// Bytes of memory the instrumentation itself holds outside the counted
    /// heap (slots in use, sample rings, the sampled-pointer table; none of
    /// it allocated through the global allocator). Go's closest field is
    /// `BuckHashSys`. What allocmeter's own code allocates on the heap is in
    /// [`StatsSplit::internal`].
    pub telemetry_bytes: u64,
}

impl MemStats {
    fn from_counters(c: &Counters) -> Self {
        let (allocs, frees) = (c.allocs(), c.frees());
        let occ = slot::occupancy();
        MemStats {
            live_bytes: c.alloc_bytes.saturating_sub(c.free_bytes),
            live_objects: allocs.saturating_sub(frees),
            alloc_bytes: c.alloc_bytes,
            allocs,
            frees,
            free_bytes: c.free_bytes,
            reallocs: Reallocs::from_counters(c),
            failures: c.failures,
            by_size: by_size(c),
            threads: occ.live as u64,
            slots_used: occ.used as u64,
            telemetry_bytes: (slot::touched_bytes() + internal::bytes(occ.used)) as u64,
        }
    }
}

/// allocmeter's own share of the heap figures: what threads marked with
/// [`mark_thread_internal`](crate::profile::mark_thread_internal) (the
/// exporter's) and [`internal_scope`](crate::profile::internal_scope)s on the
/// program's threads (renders done in process, the exporter's start)
/// allocated and freed. Exact, like every count; from [`stats_split`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct InternalStats {
    /// Bytes allocmeter's code allocated and has not freed:
    /// `alloc_bytes - free_bytes`, or 0 if a block the program allocated
    /// was freed by allocmeter's code and made that negative.
    pub live_bytes: u64,
    /// Blocks allocmeter's code allocated and has not freed: `allocs - frees`
    /// (at least 0, as `live_bytes`).
    pub live_objects: u64,
    /// Bytes allocmeter's code allocated, freed or not (each realloc adds
    /// its new size).
    pub alloc_bytes: u64,
    /// Blocks allocmeter's code allocated (each realloc adds one).
    pub allocs: u64,
    /// Bytes allocmeter's code freed (each realloc adds its old size).
    pub free_bytes: u64,
    /// Blocks allocmeter's code freed (each realloc adds one).
    pub frees: u64,
}

impl InternalStats {
    fn from_counters(c: &Counters) -> Self {
        let (allocs, frees) = (c.allocs(), c.frees());
        InternalStats {
            live_bytes: c.alloc_bytes.saturating_sub(c.free_bytes),
            live_objects: allocs.saturating_sub(frees),
            alloc_bytes: c.alloc_bytes,
            allocs,
            free_bytes: c.free_bytes,
            frees,
        }
    }
}

/// The process's heap figures split into the program's and allocmeter's
/// own, from [`stats_split`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StatsSplit {
    /// The program's share: everything but allocmeter's own. Its counters
    /// (allocations, frees, bytes, reallocs, failures, the size classes)
    /// and live figures leave out what allocmeter's code allocated and freed;
    /// `threads`, `slots_used` and `telemetry_bytes` are the process's, as
    /// in [`stats`].
    pub program: MemStats,
    /// allocmeter's own share.
    pub internal: InternalStats,
}

/// Reads the process-wide statistics split exactly into the program's share
/// and allocmeter's own ([`StatsSplit`]): what the exporter's threads and the
/// renders it does on the program's threads allocate is allocmeter's, so
/// that looking at the figures does not move the program's.
///
/// The two shares always add up to the process's counters, and each share's
/// counters only grow. Like [`stats`], it takes no lock, never allocates and
/// never blocks an allocating thread. It reads every slot twice over, and
/// reads again if a thread entered or left allocmeter's side meanwhile
/// (which happens at most at the start and end of each render).
///
/// A block allocated on one side and freed on the other stays in the
/// allocating side's live figures and comes off the freeing side's (which
/// stop at 0); the exporter hands nothing across (see
/// [`internal_scope`](crate::profile::internal_scope)).
///
/// ```
/// let split = allocmeter::stats_split();
/// assert_eq!(
///     split.program.live_bytes,
///     split.program.alloc_bytes - split.program.free_bytes
/// );
/// assert!(split.program.alloc_bytes + split.internal.alloc_bytes <= allocmeter::stats().alloc_bytes);
/// ```
pub fn stats_split() -> StatsSplit {
    let split = internal::split();
    StatsSplit {
        program: MemStats::from_counters(&split.total.wrapping_sub(&split.internal)),
        internal: InternalStats::from_counters(&split.internal),
    }
}

/// The most memory allocmeter's own structures can hold
/// ([`MemStats::telemetry_bytes`]) once `slots_used` thread slots have been
/// claimed ([`MemStats::slots_used`]: the peak number of threads alive at
/// once, at most [`MAX_SLOTS`](crate::MAX_SLOTS)): per slot its counters
/// and at most one sample ring of each size from 8 KiB to 64 KiB (about
/// 122 KiB), plus the rings grown for bursts (16 MiB over all slots) and
/// the sampled-block filter and table at their largest (about 1 MiB). It
/// does not grow with the number of threads ever started, with the
/// allocation rate or with the number of call sites.
///
/// ```
/// let s = allocmeter::stats();
/// assert!(s.telemetry_bytes <= allocmeter::telemetry_bound(s.slots_used));
/// // A thousand threads alive at once: about 140 MiB at most.
/// assert!(allocmeter::telemetry_bound(1000) < 145 << 20);
/// ```
pub fn telemetry_bound(slots_used: u64) -> u64 {
    let slots = usize::try_from(slots_used).unwrap_or(usize::MAX);
    (slot::max_touched_bytes(slots) + internal::bytes(slots)) as u64
}

/// Reads the process-wide statistics.
///
/// Cheap enough to call often: it reads the slots of the threads that have
/// allocated (about a hundred plain loads per slot), takes no lock, never
/// allocates and never blocks an allocating thread. Works whether or not the
/// exporter runs. Go: `runtime.ReadMemStats`, minus the stop-the-world.
///
/// The numbers count only what went through an [`Instrumented`](crate::Instrumented)
/// allocator; without one installed they stay zero. Unlike the per-thread
/// measuring functions ([`measure`] and those built on it), this process-wide
/// reading does not refuse then: it serves monitoring code that runs either
/// way. Check [`is_installed`](crate::is_installed) to tell a quiet program
/// from one that is not counted.
///
/// ```
/// let before = allocmeter::stats();
/// let after = allocmeter::stats();
/// assert!(after.alloc_bytes >= before.alloc_bytes);
/// assert_eq!(after.live_bytes, after.alloc_bytes - after.free_bytes);
/// ```
pub fn stats() -> MemStats {
    MemStats::from_counters(&slot::sum())
}

/// What one thread allocated and freed, from [`thread_stats`] or [`measure`].
///
/// Exact: nothing is sampled or estimated, and a thread's own operations are
/// always visible to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ThreadStats {
    /// Bytes allocated (each realloc adds its new size).
    pub alloc_bytes: u64,
    /// Blocks allocated (each realloc adds one).
    pub allocs: u64,
    /// Bytes freed (each realloc adds its old size). Blocks this thread frees
    /// may have been allocated by another thread.
    pub free_bytes: u64,
    /// Blocks freed (each realloc adds one).
    pub frees: u64,
    /// Reallocations by kind.
    pub reallocs: Reallocs,
    /// Requests the inner allocator refused.
    pub failures: u64,
    /// Allocations and frees per size class.
    pub by_size: [SizeClassStats; NUM_SIZE_CLASSES],
}

impl ThreadStats {
    fn from_counters(c: &Counters) -> Self {
        ThreadStats {
            alloc_bytes: c.alloc_bytes,
            allocs: c.allocs(),
            free_bytes: c.free_bytes,
            frees: c.frees(),
            reallocs: Reallocs::from_counters(c),
            failures: c.failures,
            by_size: by_size(c),
        }
    }

    /// Bytes allocated minus bytes freed: how much this thread's work grew
    /// (positive) or shrank (negative) the heap.
    pub const fn net_bytes(&self) -> i128 {
        self.alloc_bytes as i128 - self.free_bytes as i128
    }
}

/// What the calling thread has allocated and freed since it started.
///
/// The thread gets its own slot if it has none yet, so the numbers are exact
/// from this call on. The exception is a thread that finds all
/// [`MAX_SLOTS`](crate::MAX_SLOTS) slots taken: it records into the shared
/// fallback slot and this returns zeros.
///
/// # Panics
///
/// If allocmeter is not the program's global allocator
/// ([`is_installed`](crate::is_installed)): its figures would all be 0.
#[track_caller]
pub fn thread_stats() -> ThreadStats {
    installed::require("thread_stats");
    let counters = match local::current_slot() {
        Some(slot) => slot.since_claim(),
        None => Counters::default(),
    };
    ThreadStats::from_counters(&counters)
}

/// The calling thread's running totals, from [`thread_totals`]: a cheap
/// reading for code that brackets a stretch of work (a `tracing` span, a
/// request) many times a second.
///
/// Only the difference between two readings taken on the same thread means
/// something ([`ThreadTotals::since`]); a single reading's origin is not
/// defined (as with `std::time::Instant`). Exact, like [`ThreadStats`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ThreadTotals {
    /// Blocks allocated (each realloc adds one).
    pub allocs: u64,
    /// Bytes allocated (each realloc adds its new size).
    pub alloc_bytes: u64,
    /// Blocks freed (each realloc adds one).
    pub frees: u64,
    /// Bytes freed (each realloc adds its old size).
    pub free_bytes: u64,
}

impl ThreadTotals {
    /// What the thread allocated and freed between `earlier` and `self`
    /// (field by field, wrapping, so it never panics).
    pub const fn since(&self, earlier: &ThreadTotals) -> ThreadTotals {
        ThreadTotals {
            allocs: self.allocs.wrapping_sub(earlier.allocs),
            alloc_bytes: self.alloc_bytes.wrapping_sub(earlier.alloc_bytes),
            frees: self.frees.wrapping_sub(earlier.frees),
            free_bytes: self.free_bytes.wrapping_sub(earlier.free_bytes),
        }
    }
}

/// The calling thread's four running totals ([`ThreadTotals`]), for
/// differences: several times cheaper than [`thread_stats`], which copies
/// every size class and the slot's baseline. It never panics and never
/// allocates (but for the one-time probe of [`is_installed`](crate::is_installed)
/// and the thread's first claim of a slot, both before the reading).
///
/// `None` when allocmeter is not the global allocator, when the thread
/// records into the shared fallback slot (all [`MAX_SLOTS`](crate::MAX_SLOTS)
/// taken), or while the thread is being torn down: there is nothing exact to
/// read then.
///
/// ```
/// # use std::alloc::System;
/// # #[global_allocator]
/// # static GLOBAL: allocmeter::Instrumented<System> = allocmeter::Instrumented::new(System);
/// let before = allocmeter::thread_totals().unwrap();
/// let v = std::hint::black_box(vec![0u8; 100]);
/// drop(v);
/// let used = allocmeter::thread_totals().unwrap().since(&before);
/// assert_eq!((used.allocs, used.alloc_bytes, used.frees, used.free_bytes), (1, 100, 1, 100));
/// ```
pub fn thread_totals() -> Option<ThreadTotals> {
    if !crate::is_installed() {
        return None;
    }
    let [allocs, alloc_bytes, frees, free_bytes] = local::current_slot()?.counters.own_totals();
    Some(ThreadTotals {
        allocs,
        alloc_bytes,
        frees,
        free_bytes,
    })
}

/// Runs `f` and returns its result with what the calling thread allocated and
/// freed while it ran. Exact, so it can serve tests:
///
/// ```
/// # use std::alloc::System;
/// # #[global_allocator]
/// # static GLOBAL: allocmeter::Instrumented<System> = allocmeter::Instrumented::new(System);
/// let (v, used) = allocmeter::measure(|| {
///     let mut v = Vec::with_capacity(10);
///     v.push(1u64);
///     v
/// });
/// assert_eq!(used.allocs, 1);
/// assert_eq!(used.alloc_bytes, 80);
/// assert_eq!(used.frees, 0);
/// # drop(v);
/// ```
///
/// Only the calling thread is measured: work `f` hands to other threads is not
/// included (measure it there). The compiler may remove allocations whose
/// result is unused; pass such values through [`std::hint::black_box`].
///
/// # Panics
///
/// If allocmeter is not the program's global allocator
/// ([`is_installed`](crate::is_installed)): its figures would all be 0,
/// and a test that bounds them would pass whatever the code does.
/// [`try_measure`] returns `None` instead.
#[track_caller]
pub fn measure<R>(f: impl FnOnce() -> R) -> (R, ThreadStats) {
    installed::require("measure");
    measure_installed(f)
}

/// [`measure`], for code that runs whether or not allocmeter is the global
/// allocator: `None` when it is not, instead of a panic.
pub fn try_measure<R>(f: impl FnOnce() -> R) -> (R, Option<ThreadStats>) {
    if !crate::is_installed() {
        return (f(), None);
    }
    let (result, used) = measure_installed(f);
    (result, Some(used))
}

fn measure_installed<R>(f: impl FnOnce() -> R) -> (R, ThreadStats) {
    let slot = local::current_slot();
    let before = slot.map(|s| s.counters.read()).unwrap_or_default();
    let result = f();
    let after = slot.map(|s| s.counters.read()).unwrap_or_default();
    (
        result,
        ThreadStats::from_counters(&after.wrapping_sub(&before)),
    )
}
