//! The process's table of span callsites and what was allocated inside
//! each: fixed-size, lock-free, keyed by the callsite's `&'static Metadata`.
//!
//! Owns: the table ([`Table`]), its bound, the overflow entry, and the
//! per-entry counters ([`Cells`]). Written by every thread that exits a
//! counted span; read by [`super::snapshot`].

use std::ptr;
use std::sync::atomic::{AtomicPtr, AtomicU64, AtomicUsize, Ordering};

use allocmeter::ThreadTotals;
use tracing_core::Metadata;

/// The counters of one callsite (or of the overflow entry). One cache line
/// each, so that threads exiting different spans do not write the same line.
#[repr(align(64))]
#[derive(Default)]
pub(crate) struct Cells {
    enters: AtomicU64,
    allocs: AtomicU64,
    alloc_bytes: AtomicU64,
    frees: AtomicU64,
    free_bytes: AtomicU64,
    self_allocs: AtomicU64,
    self_alloc_bytes: AtomicU64,
}

/// A plain copy of one entry's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Counts {
    pub enters: u64,
    pub used: ThreadTotals,
    /// Allocations and bytes allocated outside the counted spans nested
    /// inside.
    pub own: (u64, u64),
}

impl Cells {
    /// One counted enter/exit pair that allocated and freed `used`, of
    /// which `own` (allocations, bytes) outside the counted spans nested
    /// in it.
    ///
    /// Relaxed: independent counters, each exact on its own; a reader may see
    /// one pair's allocations before its frees (as `allocmeter::stats`
    /// documents for its own counters), never a torn value.
    ///
    /// A counter with nothing to add is not written: a span that allocated
    /// and freed nothing costs one read-modify-write, not seven.
    pub fn add(&self, used: &ThreadTotals, own: (u64, u64)) {
        self.enters.fetch_add(1, Ordering::Relaxed);
        if own.0 != 0 {
            self.self_allocs.fetch_add(own.0, Ordering::Relaxed);
            self.self_alloc_bytes.fetch_add(own.1, Ordering::Relaxed);
        }
        if used.allocs != 0 {
            self.allocs.fetch_add(used.allocs, Ordering::Relaxed);
            self.alloc_bytes
                .fetch_add(used.alloc_bytes, Ordering::Relaxed);
        }
        if used.frees != 0 {
            self.frees.fetch_add(used.frees, Ordering::Relaxed);
            self.free_bytes
                .fetch_add(used.free_bytes, Ordering::Relaxed);
        }
    }

    /// The counters now (Relaxed: see [`Cells::add`]).
    pub fn read(&self) -> Counts {
        let ld = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Counts {
            enters: ld(&self.enters),
            used: ThreadTotals {
                allocs: ld(&self.allocs),
                alloc_bytes: ld(&self.alloc_bytes),
                frees: ld(&self.frees),
                free_bytes: ld(&self.free_bytes),
            },
            own: (ld(&self.self_allocs), ld(&self.self_alloc_bytes)),
        }
    }
}

/// The callsites seen so far, at most `max` of them, each with its
/// [`Cells`]; the callsites beyond `max` share [`Table::overflow`].
///
/// Open addressing over twice the bound (rounded up to a power of two), so
/// a probe always ends at the callsite's key or at an empty key within a
/// few steps. A key, once set, never changes: entries are never removed.
pub(crate) struct Table {
    keys: Box<[AtomicPtr<Metadata<'static>>]>,
    cells: Box<[Cells]>,
    /// Keys set so far; at most `max`.
    claimed: AtomicUsize,
    max: usize,
    /// The callsites that found the table full.
    pub overflow: Cells,
}

impl Table {
    /// An empty table for at most `max` callsites (at least 1).
    pub fn new(max: usize) -> Table {
        let max = max.max(1);
        let len = (2 * max).next_power_of_two();
        Table {
            keys: (0..len).map(|_| AtomicPtr::new(ptr::null_mut())).collect(),
            cells: (0..len).map(|_| Cells::default()).collect(),
            claimed: AtomicUsize::new(0),
            max,
            overflow: Cells::default(),
        }
    }

    /// The most callsites the table holds.
    pub fn max(&self) -> usize {
        self.max
    }

    /// The counters of `meta`'s callsite, taking an entry for it if it has
    /// none and the table has room; the overflow entry otherwise. Lock-free
    /// and allocation-free: a few loads, and one compare-and-swap the first
    /// time a callsite is seen.
    pub fn cells(&self, meta: &'static Metadata<'static>) -> &Cells {
        let key = ptr::from_ref(meta).cast_mut();
        let mask = self.keys.len() - 1;
        // Fibonacci hashing of the address (metadata are statics, at least
        // 8-byte aligned: the low bits say nothing).
        let mut i = ((key as usize >> 3).wrapping_mul(0x9E37_79B9_7F4A_7C15_u64 as usize)
            >> (usize::BITS - self.keys.len().trailing_zeros()))
            & mask;
        for _ in 0..self.keys.len() {
            // Acquire pairs with the Release of the compare-and-swap below;
            // the key is a `&'static` whose pointee needs no publishing, so
            // this only orders the callsite's counters after their zeroing,
            // which the table's construction already did.
            let found = self.keys[i].load(Ordering::Acquire);
            if found == key {
                return &self.cells[i];
            }
            if found.is_null() {
                // Relaxed: the count only bounds the entries taken; the key
                // itself is published by the compare-and-swap.
                let room = self
                    .claimed
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |c| {
                        (c < self.max).then_some(c + 1)
                    });
                if room.is_err() {
                    return &self.overflow;
                }
                match self.keys[i].compare_exchange(
                    ptr::null_mut(),
                    key,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                ) {
                    Ok(_) => return &self.cells[i],
                    Err(other) => {
                        // Another thread took this key first: give the
                        // entry back, and look on (it may be ours).
                        self.claimed.fetch_sub(1, Ordering::Relaxed);
                        if other == key {
                            return &self.cells[i];
                        }
                    }
                }
            }
            i = (i + 1) & mask;
        }
        &self.overflow
    }

    /// Every callsite with an entry, and its counters now.
    pub fn entries(&self) -> impl Iterator<Item = (&'static Metadata<'static>, Counts)> + '_ {
        self.keys
            .iter()
            .zip(self.cells.iter())
            .filter_map(|(k, c)| {
                // Acquire: see `cells`.
                let key = k.load(Ordering::Acquire);
                // SAFETY: a non-null key was stored from a `&'static Metadata`
                // in `cells` and is never changed or freed.
                let meta = unsafe { key.cast_const().as_ref() }?;
                Some((meta, c.read()))
            })
    }
}
