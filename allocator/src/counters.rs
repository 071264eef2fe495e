//! The counters every slot holds, as atomics ([`CounterCells`]) and as a plain
//! value read out of them ([`Counters`]), and the operations the allocator
//! records into them ([`Op`]: [`Alloc`], [`Free`], [`Realloc`], [`Failure`]).
//!
//! # Writers
//!
//! A slot owned by one thread is written only by that thread, with a load and a
//! store ([`Owned`]): no read-modify-write, so no `lock`-prefixed instruction
//! and no cache line shared with another writer. The shared fallback slot is
//! written by any thread and uses `fetch_add` ([`Shared`]).
//!
//! Stores use `Release` ordering. On x86-64 a `Release` store is the same plain
//! `mov` as a `Relaxed` one; it buys a guarantee for readers (see below).
//!
//! # Readers
//!
//! Every counter only ever grows (wrapping after 2^64, which no process reaches),
//! and a reader sees each one grow monotonically. There is no snapshot across
//! counters: a reader may see a thread's byte counter already bumped and its
//! size-class counter not yet. What readers *can* rely on is this: the free side
//! of all slots is read first, with `Acquire`, and the allocation side after.
//! A free of a block always happens after its allocation (in program order on
//! one thread, or through whatever synchronisation handed the pointer to the
//! freeing thread), so a reader that sees a free also sees the allocation that
//! preceded it, and `allocated - freed` never goes below zero.

use core::sync::atomic::{AtomicU64, Ordering};

pub(crate) use crate::lockfree::bump::{Bump, Owned, Shared};

use crate::size_class::{CELLS, NUM_SIZE_CLASSES, cell_of, class_of_cell, first_cell_of_class};

/// A plain copy of one set of counters. `wrapping_sub` gives deltas.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Counters {
    pub alloc_bytes: u64,
    pub free_bytes: u64,
    pub alloc_by_class: [u64; NUM_SIZE_CLASSES],
    pub free_by_class: [u64; NUM_SIZE_CLASSES],
    pub grown_in_place: u64,
    pub shrunk_in_place: u64,
    pub moved: u64,
    pub grown_bytes: u64,
    pub shrunk_bytes: u64,
    pub failures: u64,
}

impl Counters {
    /// Allocations: the sum over the size classes.
    pub fn allocs(&self) -> u64 {
        self.alloc_by_class
            .iter()
            .fold(0, |a, b| a.wrapping_add(*b))
    }

    /// Frees: the sum over the size classes.
    pub fn frees(&self) -> u64 {
        self.free_by_class.iter().fold(0, |a, b| a.wrapping_add(*b))
    }

    /// `self - earlier`, field by field (wrapping, so it cannot panic).
    pub fn wrapping_sub(&self, earlier: &Counters) -> Counters {
        let mut out = *self;
        out.zip_with(earlier, u64::wrapping_sub);
        out
    }

    fn zip_with(&mut self, other: &Counters, f: fn(u64, u64) -> u64) {
        let pairs = [
            (&mut self.alloc_bytes, other.alloc_bytes),
            (&mut self.free_bytes, other.free_bytes),
            (&mut self.grown_in_place, other.grown_in_place),
            (&mut self.shrunk_in_place, other.shrunk_in_place),
            (&mut self.moved, other.moved),
            (&mut self.grown_bytes, other.grown_bytes),
            (&mut self.shrunk_bytes, other.shrunk_bytes),
            (&mut self.failures, other.failures),
        ];
        for (a, b) in pairs {
            *a = f(*a, b);
        }
        for (a, b) in self.alloc_by_class.iter_mut().zip(other.alloc_by_class) {
            *a = f(*a, b);
        }
        for (a, b) in self.free_by_class.iter_mut().zip(other.free_by_class) {
            *a = f(*a, b);
        }
    }
}

/// The atomic counters of one slot.
///
/// The allocation side (bytes, then counts by size-class cell) and the free
/// side each sit in their own run of words: a free writing next to the word
/// an allocation had just stored was measurably slower (see ARCHITECTURE.md,
/// "Measurements behind the hot path's shape"). The reallocs by
/// [`ReallocWay`] come after both (read with the allocation side), so the
/// two runs keep the offsets they had before those words existed.
///
/// A realloc's kind and byte delta take two words, both indexed by its
/// [`ReallocWay`] (so no branch picks them): its count, and the sum of
/// `new - old` over the reallocs of that way. The way says the delta's sign,
/// so each delta word only ever moves one way: up for the growing ways, down
/// (wrapping: it holds the negated sum) for the others; each is one word,
/// read in one load, so every figure derived from them grows monotonically.
#[repr(C)]
pub(crate) struct CounterCells {
    alloc_bytes: AtomicU64,
    allocs_by_cell: [AtomicU64; CELLS],
    free_bytes: AtomicU64,
    frees_by_cell: [AtomicU64; CELLS],
    reallocs_by_way: [AtomicU64; WAYS],
    realloc_delta_by_way: [AtomicU64; WAYS],
    failures: AtomicU64,
}

/// The number of [`ReallocWay`]s.
const WAYS: usize = 4;

/// How a successful `realloc` was served, as the counters index it: whether
/// the block moved (bit 1) and whether it did not grow (bit 0). Its
/// [`ReallocKind`] follows ([`ReallocWay::kind`]), and the sign of its byte
/// delta: ways 0 and 2 grew, 1 and 3 did not.
///
/// | way | moved | new size | kind |
/// |---|---|---|---|
/// | 0 | no | larger | grown in place |
/// | 1 | no | same or smaller | shrunk in place |
/// | 2 | yes | larger | moved |
/// | 3 | yes | same or smaller | moved |
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ReallocWay(u8);

impl ReallocWay {
    /// The way of a realloc from `old` to `new` bytes that `moved` the block
    /// or not: two compares and an add, no branch.
    #[inline(always)]
    pub fn of(moved: bool, old: usize, new: usize) -> Self {
        ReallocWay(((moved as u8) << 1) | (new <= old) as u8)
    }

    /// The kind the public counters report.
    #[inline]
    pub fn kind(self) -> ReallocKind {
        match self.0 {
            0 => ReallocKind::GrownInPlace,
            1 => ReallocKind::ShrunkInPlace,
            _ => ReallocKind::Moved,
        }
    }

    #[inline(always)]
    fn index(self) -> usize {
        usize::from(self.0) & (WAYS - 1)
    }
}

/// How a successful `realloc` was served.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReallocKind {
    /// Same address, larger size.
    GrownInPlace,
    /// Same address, same or smaller size.
    ShrunkInPlace,
    /// The block moved to a new address.
    Moved,
}

impl CounterCells {
    /// All zero; usable in a `static`.
    pub const fn new() -> Self {
        CounterCells {
            alloc_bytes: AtomicU64::new(0),
            allocs_by_cell: [const { AtomicU64::new(0) }; CELLS],
            reallocs_by_way: [const { AtomicU64::new(0) }; WAYS],
            realloc_delta_by_way: [const { AtomicU64::new(0) }; WAYS],
            free_bytes: AtomicU64::new(0),
            frees_by_cell: [const { AtomicU64::new(0) }; CELLS],
            failures: AtomicU64::new(0),
        }
    }

    /// One allocation of `size` bytes.
    #[inline(always)]
    pub fn alloc<B: Bump>(&self, size: usize) {
        B::add(&self.alloc_bytes, size as u64);
        if let Some(cell) = self.allocs_by_cell.get(cell_of(size)) {
            B::add(cell, 1);
        }
    }

    /// How many allocations of `size`'s cell these counters hold: read by
    /// the owner of the slot on the sampled path (a sampled block's
    /// neighbours of its size), so a relaxed load of its own store.
    pub fn allocs_in_cell_of(&self, size: usize) -> u64 {
        self.allocs_by_cell
            .get(cell_of(size))
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }

    /// One free of `size` bytes.
    #[inline(always)]
    pub fn free<B: Bump>(&self, size: usize) {
        B::add(&self.free_bytes, size as u64);
        if let Some(cell) = self.frees_by_cell.get(cell_of(size)) {
            B::add(cell, 1);
        }
    }

    /// One successful realloc from `old` to `new` bytes, served `way`. It
    /// counts as the allocation of the new block and the free of the old one
    /// (as growing a slice does in Go), plus its way and byte delta. The
    /// allocation side is written first, so a reader that sees the free also
    /// sees the allocation.
    #[inline(always)]
    pub fn realloc<B: Bump>(&self, old: usize, new: usize, way: ReallocWay) {
        self.alloc::<B>(new);
        let w = way.index();
        B::add(&self.reallocs_by_way[w], 1);
        B::add(&self.realloc_delta_by_way[w], (new as u64).wrapping_sub(old as u64));
        self.free::<B>(old);
    }

    /// One request the inner allocator refused (returned null).
    #[inline(always)]
    pub fn failure<B: Bump>(&self) {
        B::add(&self.failures, 1);
    }

    /// Adds the free side of these cells into `out` (`Acquire`; see module docs).
    pub fn read_free_side(&self, out: &mut Counters) {
        let ld = |c: &AtomicU64| c.load(Ordering::Acquire);
        out.free_bytes = out.free_bytes.wrapping_add(ld(&self.free_bytes));
        for (cell, c) in self.frees_by_cell.iter().enumerate() {
            let o = &mut out.free_by_class[class_of_cell(cell)];
            *o = o.wrapping_add(ld(c));
        }
    }

    /// Adds everything but the free side into `out` (`Acquire`).
    pub fn read_alloc_side(&self, out: &mut Counters) {
        let ld = |c: &AtomicU64| c.load(Ordering::Acquire);
        out.alloc_bytes = out.alloc_bytes.wrapping_add(ld(&self.alloc_bytes));
        for (cell, c) in self.allocs_by_cell.iter().enumerate() {
            let o = &mut out.alloc_by_class[class_of_cell(cell)];
            *o = o.wrapping_add(ld(c));
        }
        let [grown, shrunk, moved_up, moved_down] = self.reallocs_by_way.each_ref().map(ld);
        let [up, down, moved_up_delta, moved_down_delta] =
            self.realloc_delta_by_way.each_ref().map(ld);
        let add = |o: &mut u64, v: u64| *o = o.wrapping_add(v);
        add(&mut out.grown_in_place, grown);
        add(&mut out.shrunk_in_place, shrunk);
        add(&mut out.moved, moved_up.wrapping_add(moved_down));
        add(&mut out.grown_bytes, up.wrapping_add(moved_up_delta));
        // The non-growing ways' words hold their negated sums.
        add(
            &mut out.shrunk_bytes,
            0u64.wrapping_sub(down).wrapping_sub(moved_down_delta),
        );
        out.failures = out.failures.wrapping_add(ld(&self.failures));
    }

    /// The four totals of these cells (allocations, bytes allocated, frees,
    /// bytes freed), without the per-class copy [`read`](Self::read) makes.
    ///
    /// Owner only: the calling thread must own the slot these cells belong
    /// to (its counters are written by no other thread, see [`Owned`]). It
    /// then reads its own stores, which it sees in program order whatever
    /// the ordering, so the loads are plain, not atomic: a sum the compiler
    /// can vectorise (each side's 64 cells in a few dozen instructions
    /// rather than 64 loads and 64 dependent adds).
    pub fn own_totals(&self) -> [u64; 4] {
        let ld = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let sum = |cells: &[AtomicU64; CELLS]| {
            // SAFETY: `AtomicU64` has the size and bit validity of `u64` and
            // at least its alignment, so `[AtomicU64; CELLS]` can be read as
            // `[u64; CELLS]`. The plain read races with no write: only the
            // owning thread, the caller, writes these cells (owned slots are
            // bumped by their owner alone; the shared fallback slot, which
            // any thread bumps, is never passed here), and reads by other
            // threads do not conflict with a read.
            let plain = unsafe { cells.as_ptr().cast::<[u64; CELLS]>().read() };
            plain.iter().fold(0u64, |a, b| a.wrapping_add(*b))
        };
        [
            sum(&self.allocs_by_cell),
            ld(&self.alloc_bytes),
            sum(&self.frees_by_cell),
            ld(&self.free_bytes),
        ]
    }

    /// A copy of these cells (free side first).
    pub fn read(&self) -> Counters {
        let mut out = Counters::default();
        self.read_free_side(&mut out);
        self.read_alloc_side(&mut out);
        out
    }

    /// Overwrites every cell with `value`. Only the owner of the cells may call
    /// this (used for a slot's baseline, which only its owner reads).
    pub fn store(&self, value: &Counters) {
        let st = |c: &AtomicU64, v: u64| c.store(v, Ordering::Relaxed);
        st(&self.alloc_bytes, value.alloc_bytes);
        st(&self.free_bytes, value.free_bytes);
        // Each class goes into its first cell; the others get zero (`read`
        // folds every cell into its class).
        for (cell, (a, f)) in self
            .allocs_by_cell
            .iter()
            .zip(&self.frees_by_cell)
            .enumerate()
        {
            let class = class_of_cell(cell);
            let first = cell == first_cell_of_class(class);
            let class = first.then_some(class);
            st(a, class.map_or(0, |i| value.alloc_by_class[i]));
            st(f, class.map_or(0, |i| value.free_by_class[i]));
        }
        // Each figure goes into one way's words; the others get zero.
        let ways = [
            (value.grown_in_place, value.grown_bytes),
            (value.shrunk_in_place, 0u64.wrapping_sub(value.shrunk_bytes)),
            (value.moved, 0),
            (0, 0),
        ];
        for ((count, delta), (c, d)) in ways
            .into_iter()
            .zip(self.reallocs_by_way.iter().zip(&self.realloc_delta_by_way))
        {
            st(c, count);
            st(d, delta);
        }
        st(&self.failures, value.failures);
    }
}

/// One counting operation, generic over how counters are bumped.
pub(crate) trait Op: Copy {
    /// Applies the operation to `cells`.
    fn apply<B: Bump>(self, cells: &CounterCells);

    /// How the block it hands out came to be, for a sample taken at it.
    #[inline(always)]
    fn origin(self) -> crate::record::Origin {
        crate::record::Origin::Alloc
    }
}

/// An allocation of this many bytes.
#[derive(Clone, Copy)]
pub(crate) struct Alloc(pub usize);
impl Op for Alloc {
    #[inline(always)]
    fn apply<B: Bump>(self, cells: &CounterCells) {
        cells.alloc::<B>(self.0);
    }
}

/// A free of this many bytes.
#[derive(Clone, Copy)]
pub(crate) struct Free(pub usize);
impl Op for Free {
    #[inline(always)]
    fn apply<B: Bump>(self, cells: &CounterCells) {
        cells.free::<B>(self.0);
    }
}

/// A successful realloc from `old` to `new` bytes.
#[derive(Clone, Copy)]
pub(crate) struct Realloc {
    pub old: usize,
    pub new: usize,
    pub way: ReallocWay,
}
impl Op for Realloc {
    #[inline(always)]
    fn apply<B: Bump>(self, cells: &CounterCells) {
        cells.realloc::<B>(self.old, self.new, self.way);
    }

    #[inline(always)]
    fn origin(self) -> crate::record::Origin {
        crate::record::Origin::Realloc {
            old_size: self.old as u64,
            kind: self.way.kind(),
        }
    }
}

/// A request the inner allocator refused.
#[derive(Clone, Copy)]
pub(crate) struct Failure;
impl Op for Failure {
    #[inline(always)]
    fn apply<B: Bump>(self, cells: &CounterCells) {
        cells.failure::<B>();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::size_class::class_of;

    #[test]
    fn owned_and_shared_writers_count_the_same() {
        let (a, b) = (CounterCells::new(), CounterCells::new());
        for size in [1usize, 8, 9, 100, 4096, 1 << 20, 1 << 40, usize::MAX] {
            a.alloc::<Owned>(size);
            b.alloc::<Shared>(size);
            a.free::<Owned>(size);
            b.free::<Shared>(size);
        }
        for (moved, old, new) in [(false, 10, 20), (true, 20, 10), (false, 7, 7), (true, 1, 9)] {
            a.realloc::<Owned>(old, new, ReallocWay::of(moved, old, new));
            b.realloc::<Shared>(old, new, ReallocWay::of(moved, old, new));
        }
        a.failure::<Owned>();
        b.failure::<Shared>();
        assert_eq!(a.read(), b.read());
    }

    #[test]
    fn realloc_is_a_free_of_the_old_and_an_alloc_of_the_new_block() {
        let c = CounterCells::new();
        c.realloc::<Owned>(100, 40, ReallocWay::of(true, 100, 40));
        c.realloc::<Owned>(40, 50, ReallocWay::of(false, 40, 50));
        c.realloc::<Owned>(50, 50, ReallocWay::of(false, 50, 50));
        let r = c.read();
        assert_eq!(r.alloc_bytes, 40 + 50 + 50);
        assert_eq!(r.free_bytes, 100 + 40 + 50);
        assert_eq!((r.moved, r.grown_in_place, r.shrunk_in_place), (1, 1, 1));
        assert_eq!((r.grown_bytes, r.shrunk_bytes), (10, 60));
        // 40 and 50 share the class (32, 64]; 100 is in (64, 128].
        assert_eq!(class_of(40), class_of(50));
        assert_eq!(r.alloc_by_class[class_of(40)], 3);
        assert_eq!(r.alloc_by_class.iter().sum::<u64>(), 3);
        assert_eq!(r.free_by_class[class_of(100)], 1);
        assert_eq!(r.free_by_class[class_of(50)], 2);
    }

    #[test]
    fn each_way_counts_its_kind_and_the_sign_of_its_delta() {
        let cases = [
            // (moved, old, new, kind, grown bytes, shrunk bytes)
            (false, 40, 50, ReallocKind::GrownInPlace, 10, 0),
            (false, 50, 50, ReallocKind::ShrunkInPlace, 0, 0),
            (false, 1000, 960, ReallocKind::ShrunkInPlace, 0, 40),
            (true, 64, 4096, ReallocKind::Moved, 4032, 0),
            (true, 4096, 64, ReallocKind::Moved, 0, 4032),
            (true, 64, 64, ReallocKind::Moved, 0, 0),
            (true, 1, usize::MAX >> 1, ReallocKind::Moved, (u64::MAX >> 1) - 1, 0),
        ];
        let all = CounterCells::new();
        let mut want = Counters::default();
        for (moved, old, new, kind, grown, shrunk) in cases {
            let way = ReallocWay::of(moved, old, new);
            assert_eq!(way.kind(), kind, "{moved} {old} -> {new}");
            let one = CounterCells::new();
            one.realloc::<Owned>(old, new, way);
            all.realloc::<Owned>(old, new, way);
            let r = one.read();
            let kinds = (r.grown_in_place, r.shrunk_in_place, r.moved);
            let expected = match kind {
                ReallocKind::GrownInPlace => (1, 0, 0),
                ReallocKind::ShrunkInPlace => (0, 1, 0),
                ReallocKind::Moved => (0, 0, 1),
            };
            assert_eq!(kinds, expected, "{moved} {old} -> {new}");
            assert_eq!((r.grown_bytes, r.shrunk_bytes), (grown, shrunk), "{old} -> {new}");
            assert_eq!((r.alloc_bytes, r.free_bytes), (new as u64, old as u64));
            assert_eq!((r.allocs(), r.frees()), (1, 1));
            want.grown_in_place += expected.0;
            want.shrunk_in_place += expected.1;
            want.moved += expected.2;
            want.grown_bytes += grown;
            want.shrunk_bytes += shrunk;
        }
        let r = all.read();
        assert_eq!(
            (r.grown_in_place, r.shrunk_in_place, r.moved, r.grown_bytes, r.shrunk_bytes),
            (
                want.grown_in_place,
                want.shrunk_in_place,
                want.moved,
                want.grown_bytes,
                want.shrunk_bytes
            )
        );
        // A baseline stored from what was read reads back the same.
        let copy = CounterCells::new();
        copy.store(&r);
        assert_eq!(copy.read(), r);
    }

    #[test]
    fn store_then_read_round_trips_and_sub_subtracts() {
        let c = CounterCells::new();
        let mut v = Counters {
            alloc_bytes: 7,
            failures: 3,
            grown_in_place: 5,
            shrunk_in_place: 6,
            moved: 7,
            grown_bytes: 1 << 40,
            shrunk_bytes: u64::MAX - 1,
            ..Counters::default()
        };
        v.alloc_by_class[4] = 9;
        v.free_by_class[NUM_SIZE_CLASSES - 1] = u64::MAX;
        c.store(&v);
        assert_eq!(c.read(), v);
        assert_eq!(v.wrapping_sub(&v), Counters::default());
        assert_eq!(v.wrapping_sub(&Counters::default()), v);
    }
}
