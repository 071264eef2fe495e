//! The sampled-pointer table: which live blocks were sampled, so that their
//! frees can be reported and in-use estimates fall when they are freed.
//!
//! Every free asks [`maybe_sampled`] first. That is a few shifts and one
//! load from a 16 KiB bit filter that only changes when a sampled block is
//! allocated or freed, so on the common path the filter's cache lines are
//! shared read-only by all cores and nothing is written. The bit is the
//! address in 16-byte units modulo 2^17 (with higher address bits folded in,
//! see [`filter_bit`]), so neighbouring blocks share a filter line: the
//! filter's cache footprint follows the heap's working set (one 64-byte
//! filter line covers 8 KiB of addresses) instead of touching a random line
//! per free. A clear bit means
//! "not sampled", for certain. A set bit means "perhaps": the table is
//! consulted under its shard's lock (a short, bounded try-lock that never
//! waits long and never allocates).
//!
//! Layout: a pointer hashes to a filter bit `b`; `b` picks the shard and the
//! home bucket inside it (linear probing, deletion by backward shift, so no
//! tombstones). All blocks whose bit is `b` therefore live in one probe run
//! of one shard, and a removal can tell whether `b` must stay set by scanning
//! that run. Every table access happens under the shard lock; only the
//! filter is read without it.
//!
//! Each shard's buckets come from the system allocator and grow with the
//! shard: 4 buckets (one cache line) on its first insert, doubled (and
//! rehashed, under the lock) whenever it passes 75 % load, up to [`BUCKETS`].
//! At the default rate a service has a few hundred sampled blocks live, so
//! the table costs a few KiB rather than the megabyte its largest size would;
//! it never shrinks.

#[cfg(not(loom))]
use core::alloc::{GlobalAlloc, Layout};
#[cfg(not(loom))]
use std::alloc::System;

use super::sync::{AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Ordering};

use super::padded::Padded;
use super::try_lock::TryLock;

/// log2 of the number of filter bits. (Under Miri, whose borrow tracker
/// retags the whole array on each access, 32 times fewer; under loom, one
/// word.)
const FILTER_BITS_LOG2: u32 = if cfg!(loom) {
    6
} else if cfg!(miri) {
    12
} else {
    17
};
const FILTER_WORDS: usize = 1 << (FILTER_BITS_LOG2 - 6);
/// Number of shards (a power of two).
const SHARDS: usize = 64;
// The fork handlers keep one bit per shard in a `u64`, and a shard's filter
// bits are one bit position of every filter word.
const _: () = assert!(SHARDS == 64);
/// Buckets per shard at most (a power of two; 8 under loom).
const BUCKETS: usize = if cfg!(loom) { 8 } else { 1024 };
/// Buckets a shard starts with (a power of two).
const FIRST_BUCKETS: usize = 4;
/// A shard grows, or at its largest refuses inserts, beyond 75 % load, so
/// probe runs stay short.
const fn max_load(buckets: usize) -> usize {
    buckets * 3 / 4
}
const MAX_PER_SHARD: usize = max_load(BUCKETS);

/// How many sampled blocks can be live at once (the weight of further
/// samples is carried by the thread's next sample that fits).
pub(crate) const CAPACITY: usize = SHARDS * MAX_PER_SHARD;

#[cfg(not(loom))]
static FILTER: Padded<[AtomicU64; FILTER_WORDS]> =
    Padded([const { AtomicU64::new(0) }; FILTER_WORDS]);

struct Entry {
    /// The block's address; 0 = empty bucket.
    ptr: AtomicUsize,
    /// The sample's id.
    id: AtomicU64,
}

/// One shard. `len`, `buckets` and `entries` are read and written only under
/// `lock` (they are atomics so that the `static` is `Sync` without `unsafe`).
/// The table holds each shard [`Padded`], so that threads working on
/// neighbouring shards do not share a cache line.
struct Shard {
    lock: TryLock,
    len: AtomicUsize,
    /// Buckets in `entries` (0 before the first insert, else a power of two).
    buckets: AtomicUsize,
    /// `buckets` entries from the system allocator; null before the first
    /// insert.
    entries: AtomicPtr<Entry>,
}

#[cfg(not(loom))]
static SHARDS_TABLE: [Padded<Shard>; SHARDS] = [const {
    Padded(Shard {
        lock: TryLock::new(),
        len: AtomicUsize::new(0),
        buckets: AtomicUsize::new(0),
        entries: AtomicPtr::new(core::ptr::null_mut()),
    })
}; SHARDS];

/// Bytes of buckets allocated by all shards.
#[cfg(not(loom))]
static TABLE_BYTES: AtomicUsize = AtomicUsize::new(0);

// Under loom the globals are made afresh for each execution of a model.
#[cfg(loom)]
loom::lazy_static! {
    static ref FILTER: Padded<[AtomicU64; FILTER_WORDS]> =
        Padded(core::array::from_fn(|_| AtomicU64::new(0)));
    static ref SHARDS_TABLE: [Padded<Shard>; SHARDS] = core::array::from_fn(|_| Padded(Shard {
        lock: TryLock::new(),
        len: AtomicUsize::new(0),
        buckets: AtomicUsize::new(0),
        entries: AtomicPtr::new(core::ptr::null_mut()),
    }));
    static ref TABLE_BYTES: AtomicUsize = AtomicUsize::new(0);
    static ref LIVE: Padded<AtomicUsize> = Padded(AtomicUsize::new(0));
    static ref TOUCHED: Padded<AtomicBool> = Padded(AtomicBool::new(false));
}

impl Shard {
    /// The shard's buckets. Caller holds the lock.
    fn entries(&self) -> &[Entry] {
        let p = self.entries.load(Ordering::Relaxed);
        let n = self.buckets.load(Ordering::Relaxed);
        if p.is_null() {
            return &[];
        }
        // SAFETY: `entries` and `buckets` are set together, under the lock
        // the caller holds, to an array of `buckets` initialised entries
        // from the system allocator, which is freed only when replaced under
        // that same lock; the returned borrow ends before the lock is
        // released (it cannot escape `with_shard`'s closure).
        unsafe { core::slice::from_raw_parts(p, n) }
    }

    /// Replaces the buckets with an array twice as big (or the first one),
    /// rehashing every entry. `false` if the shard is at its largest or the
    /// system allocator refused. Caller holds the lock.
    fn grow(&self) -> bool {
        let old = self.entries();
        let buckets = if old.is_empty() {
            FIRST_BUCKETS
        } else {
            old.len() * 2
        };
        if buckets > BUCKETS {
            return false;
        }
        let Some(fresh) = alloc_buckets(buckets) else {
            return false;
        };
        // SAFETY: `fresh` holds `buckets` initialised (empty) entries and
        // nobody else can see it yet.
        let new = unsafe { core::slice::from_raw_parts(fresh, buckets) };
        for e in old {
            let p = e.ptr.load(Ordering::Relaxed);
            if p != 0 {
                let mut i = home_of(filter_bit(p), buckets);
                while new[i].ptr.load(Ordering::Relaxed) != 0 {
                    i = (i + 1) & (buckets - 1);
                }
                new[i]
                    .id
                    .store(e.id.load(Ordering::Relaxed), Ordering::Relaxed);
                new[i].ptr.store(p, Ordering::Relaxed);
            }
        }
        let old_ptr = self.entries.load(Ordering::Relaxed);
        let (old_len, old_bytes) = (old.len(), core::mem::size_of_val(old));
        self.entries.store(fresh, Ordering::Relaxed);
        self.buckets.store(buckets, Ordering::Relaxed);
        TABLE_BYTES.fetch_add(buckets * core::mem::size_of::<Entry>(), Ordering::Relaxed);
        if !old_ptr.is_null() {
            // SAFETY: `old_ptr` came from `alloc_buckets(old_len)`, and no
            // reference to it is left: the only one, `old`, is not used past
            // this point.
            unsafe { free_buckets(old_ptr, old_len) };
            TABLE_BYTES.fetch_sub(old_bytes, Ordering::Relaxed);
        }
        true
    }
}

/// `n` empty buckets from the system allocator (`None` if it refuses).
#[cfg(not(loom))]
fn alloc_buckets(n: usize) -> Option<*mut Entry> {
    let layout = Layout::array::<Entry>(n).ok()?;
    // SAFETY: the layout has a non-zero size (callers ask for at least
    // `FIRST_BUCKETS`). All-zero bytes are a valid `Entry` (two zero
    // atomics: an empty bucket).
    let p = unsafe { System.alloc_zeroed(layout) }.cast::<Entry>();
    (!p.is_null()).then_some(p)
}

/// `n` empty buckets (loom's atomics must be made by their constructor).
#[cfg(loom)]
fn alloc_buckets(n: usize) -> Option<*mut Entry> {
    let buckets: Box<[Entry]> = (0..n)
        .map(|_| Entry {
            ptr: AtomicUsize::new(0),
            id: AtomicU64::new(0),
        })
        .collect();
    Some(Box::into_raw(buckets).cast::<Entry>())
}

/// Frees buckets that [`alloc_buckets`] made.
///
/// # Safety
/// `p` came from `alloc_buckets(n)` and nothing refers to it any more.
#[cfg(not(loom))]
unsafe fn free_buckets(p: *mut Entry, n: usize) {
    if let Ok(layout) = Layout::array::<Entry>(n) {
        // SAFETY: the caller guarantees `p` came from `alloc_buckets(n)`,
        // i.e. `System.alloc_zeroed` with this layout, and is unused.
        unsafe { System.dealloc(p.cast(), layout) };
    }
}

/// Frees buckets that [`alloc_buckets`] made.
///
/// # Safety
/// `p` came from `alloc_buckets(n)` and nothing refers to it any more.
#[cfg(loom)]
unsafe fn free_buckets(p: *mut Entry, n: usize) {
    // SAFETY: `p` and `n` are the boxed slice `alloc_buckets` leaked.
    drop(unsafe { Box::from_raw(core::ptr::slice_from_raw_parts_mut(p, n)) });
}

/// Live entries in all shards. Written on every sampled insert and remove, so
/// kept off the filter's lines.
#[cfg(not(loom))]
static LIVE: Padded<AtomicUsize> = Padded(AtomicUsize::new(0));

/// Whether any entry was ever inserted (until then the table's pages are
/// untouched and cost no memory). Written once.
#[cfg(not(loom))]
static TOUCHED: Padded<AtomicBool> = Padded(AtomicBool::new(false));

/// The filter bit of `ptr`: its address in 16-byte units (the smallest
/// alignment of any allocator's blocks worth telling apart), with the
/// address bits from 17 up folded in, modulo the filter size. With `n`
/// sampled blocks live, about `n / 2^17` of frees find their bit set without
/// being sampled.
///
/// The fold is for allocators that carve every thread's blocks out of
/// regions aligned alike: glibc's thread arenas are 64 MiB-aligned heaps, so
/// the blocks two threads allocate first sit at the same offset in each, and
/// without the fold they share a bit. Then every sample one thread takes makes
/// the other thread's frees take the table's lock until it is freed (see
/// ARCHITECTURE.md, "Measurements behind the hot path's shape"). Folding in
/// bits 17 and up moves regions that differ from bit 26 on
/// into different filter lines. Within an aligned 8 KiB run of addresses the
/// folded bits are constant, so that run still maps to one 64-byte filter
/// line.
#[inline(always)]
fn filter_bit(ptr: usize) -> usize {
    ((ptr ^ (ptr >> 13)) >> 4) & ((1 << FILTER_BITS_LOG2) - 1)
}

fn shard_of(bit: usize) -> usize {
    bit % SHARDS
}

/// The home bucket of filter bit `bit` in a shard of `buckets` buckets.
fn home_of(bit: usize, buckets: usize) -> usize {
    (bit / SHARDS) & (buckets - 1)
}

/// Whether `ptr` may be a live sampled block. `false` is certain.
#[inline(always)]
pub(crate) fn maybe_sampled(ptr: *mut u8) -> bool {
    let bit = filter_bit(ptr as usize);
    // Relaxed suffices: a block is inserted (and its bit set) before the
    // allocation returns it, and whoever frees it got the pointer through
    // the program's own synchronisation, which orders the bit's store
    // before this load.
    let word = FILTER[bit / 64].load(Ordering::Relaxed);
    word & (1 << (bit % 64)) != 0
}

/// Runs `f` with the shard locked; `None` if the lock could not be had in a
/// bounded number of spins (then the caller drops what it was doing).
fn with_shard<R>(shard: &Shard, f: impl FnOnce(&Shard) -> R) -> Option<R> {
    shard.lock.with(100, 10_000, || f(shard))
}

/// Takes every shard lock, waiting for each as an insert would; returns the
/// shards taken, one bit each (a holder that does not let go in time, such
/// as a thread stopped in a debugger, keeps its shard). For the fork handler
/// that runs before `fork()`, so that the child inherits consistent shards.
pub(crate) fn lock_all_for_fork() -> u64 {
    let mut taken = 0u64;
    for (i, shard) in SHARDS_TABLE.iter().enumerate() {
        if shard.lock.acquire(100, 10_000) {
            taken |= 1 << i;
        }
    }
    taken
}

/// Releases the shard locks [`lock_all_for_fork`] took (in the parent).
pub(crate) fn unlock_after_fork(taken: u64) {
    for (i, shard) in SHARDS_TABLE.iter().enumerate() {
        if taken & (1 << i) != 0 {
            shard.lock.release();
        }
    }
}

/// In a forked child (one thread, no allocation): releases every shard lock.
/// A shard whose lock the fork handler could not take was being changed by a
/// thread that does not exist here, and may be half-changed: it is emptied,
/// with its filter bits, so its blocks' frees go unreported in the child.
pub(crate) fn reset_in_child(taken: u64) {
    for (i, shard) in SHARDS_TABLE.iter().enumerate() {
        if taken & (1 << i) == 0 {
            // `entries` wants the lock held: nobody else exists to hold it.
            for e in shard.entries() {
                e.ptr.store(0, Ordering::Relaxed);
                e.id.store(0, Ordering::Relaxed);
            }
            LIVE.fetch_sub(shard.len.swap(0, Ordering::Relaxed), Ordering::Relaxed);
            // Filter bit `b` belongs to shard `b % SHARDS`: bit `i` of each
            // word (`SHARDS` is 64, the word size).
            for word in FILTER.0.iter() {
                word.fetch_and(!(1 << i), Ordering::Relaxed);
            }
        }
        shard.lock.force_unlock();
    }
}

/// Why a block could not be inserted.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum InsertError {
    /// The shard is at its load limit.
    Full,
    /// The shard lock could not be had in time.
    Busy,
}

/// Records that `ptr` is a sampled block with `id`.
///
/// If the table still holds `ptr` (its free was not seen: it happened inside
/// the sampler, from a signal handler), the stale entry is replaced and its
/// id returned, so the caller can report that block as freed.
pub(crate) fn insert(ptr: *mut u8, id: u64) -> Result<Option<u64>, InsertError> {
    let addr = ptr as usize;
    let bit = filter_bit(addr);
    let shard = &SHARDS_TABLE[shard_of(bit)];
    with_shard(shard, |s| {
        if let Some(i) = find(s.entries(), addr, bit) {
            return Ok(Some(s.entries()[i].id.swap(id, Ordering::Relaxed)));
        }
        let len = s.len.load(Ordering::Relaxed);
        if len >= max_load(s.entries().len()) && !s.grow() {
            return Err(InsertError::Full);
        }
        let entries = s.entries();
        let mask = entries.len() - 1;
        let mut i = home_of(bit, entries.len());
        // The load limit keeps an empty bucket, so this ends.
        while entries[i].ptr.load(Ordering::Relaxed) != 0 {
            i = (i + 1) & mask;
        }
        let e = &entries[i];
        e.id.store(id, Ordering::Relaxed);
        e.ptr.store(addr, Ordering::Relaxed);
        s.len.store(len + 1, Ordering::Relaxed);
        LIVE.fetch_add(1, Ordering::Relaxed);
        FILTER[bit / 64].fetch_or(1 << (bit % 64), Ordering::Relaxed);
        if !TOUCHED.load(Ordering::Relaxed) {
            TOUCHED.store(true, Ordering::Relaxed);
        }
        Ok(None)
    })
    .unwrap_or(Err(InsertError::Busy))
}

/// Removes `ptr` if it is a sampled block and returns its id.
///
/// `Err(())` if the shard lock could not be had in time: the caller cannot
/// tell, and the free goes unreported.
pub(crate) fn remove(ptr: *mut u8) -> Result<Option<u64>, ()> {
    let addr = ptr as usize;
    if addr == 0 {
        return Ok(None);
    }
    let bit = filter_bit(addr);
    let shard = &SHARDS_TABLE[shard_of(bit)];
    with_shard(shard, |s| {
        let entries = s.entries();
        let found = find(entries, addr, bit)?;
        let id = entries[found].id.load(Ordering::Relaxed);
        backward_shift_delete(entries, found);
        s.len
            .store(s.len.load(Ordering::Relaxed) - 1, Ordering::Relaxed);
        LIVE.fetch_sub(1, Ordering::Relaxed);
        // Clear the filter bit unless another live block shares it; such a
        // block lies in the probe run starting at the same home bucket.
        let mask = entries.len() - 1;
        let mut j = home_of(bit, entries.len());
        let mut shared = false;
        loop {
            let p = entries[j].ptr.load(Ordering::Relaxed);
            if p == 0 {
                break;
            }
            if filter_bit(p) == bit {
                shared = true;
                break;
            }
            j = (j + 1) & mask;
        }
        if !shared {
            FILTER[bit / 64].fetch_and(!(1 << (bit % 64)), Ordering::Relaxed);
        }
        Some(id)
    })
    .ok_or(())
}

/// Whether the block at `addr` is in the table with sample id `id`; `None`
/// if the shard lock could not be had in time.
pub(crate) fn holds(addr: usize, id: u64) -> Option<bool> {
    if addr == 0 {
        return Some(false);
    }
    let bit = filter_bit(addr);
    let shard = &SHARDS_TABLE[shard_of(bit)];
    with_shard(shard, |s| {
        let entries = s.entries();
        find(entries, addr, bit).is_some_and(|i| entries[i].id.load(Ordering::Relaxed) == id)
    })
}

/// The bucket holding `addr` (whose filter bit is `bit`) in `entries`, if any.
fn find(entries: &[Entry], addr: usize, bit: usize) -> Option<usize> {
    if entries.is_empty() {
        return None;
    }
    let mask = entries.len() - 1;
    let mut i = home_of(bit, entries.len());
    // The load limit keeps an empty bucket, so this ends.
    loop {
        let p = entries[i].ptr.load(Ordering::Relaxed);
        if p == addr {
            return Some(i);
        }
        if p == 0 {
            return None;
        }
        i = (i + 1) & mask;
    }
}

/// Empties bucket `hole` and moves later entries of its probe run back so
/// that every entry stays reachable from its home bucket.
fn backward_shift_delete(entries: &[Entry], mut hole: usize) {
    let (n, mask) = (entries.len(), entries.len() - 1);
    let mut i = hole;
    loop {
        i = (i + 1) & mask;
        let p = entries[i].ptr.load(Ordering::Relaxed);
        if p == 0 {
            break;
        }
        let home = home_of(filter_bit(p), n);
        // The entry at `i` may move into `hole` if its home is not in the
        // cyclic range (hole, i].
        let dist_home = i.wrapping_sub(home) & mask;
        let dist_hole = i.wrapping_sub(hole) & mask;
        if dist_home >= dist_hole {
            let id = entries[i].id.load(Ordering::Relaxed);
            entries[hole].id.store(id, Ordering::Relaxed);
            entries[hole].ptr.store(p, Ordering::Relaxed);
            hole = i;
        }
    }
    entries[hole].ptr.store(0, Ordering::Relaxed);
}

/// Sampled blocks live now.
pub(crate) fn live() -> usize {
    LIVE.load(Ordering::Relaxed)
}

/// The most [`bytes`] can be: the filter, the shards and every shard at its
/// largest.
pub(crate) const MAX_BYTES: usize = core::mem::size_of::<[AtomicU64; FILTER_WORDS]>()
    + core::mem::size_of::<[Padded<Shard>; SHARDS]>()
    + SHARDS * BUCKETS * core::mem::size_of::<Entry>();

/// Bytes the filter and the table occupy once used (0 before the first
/// sample: the filter's and the shards' pages are untouched then).
pub(crate) fn bytes() -> usize {
    if TOUCHED.load(Ordering::Relaxed) {
        core::mem::size_of::<[AtomicU64; FILTER_WORDS]>()
            + core::mem::size_of::<[Padded<Shard>; SHARDS]>()
            + TABLE_BYTES.load(Ordering::Relaxed)
    } else {
        0
    }
}

#[cfg(all(test, not(loom)))]
mod tests;
