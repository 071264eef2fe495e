//! The counters every slot holds, as atomics ([`CounterCells`]) and as a plain
//! value read out of them ([`Counters`]).
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

pub(crate) use crate::bump::{Bump, Owned, Shared};

use crate::size_class::{NUM_SIZE_CLASSES, class_of, upper_bound};

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

/// Requests of up to this many bytes are counted by their exact size.
///
/// One counter per size holds both the count and, multiplied by the size
/// when read, the bytes: the hot path bumps one counter per allocation or
/// free, where a byte total and a size-class counter took two, and it needs
/// no `bsr` to find the class. On this project's machine that took a 64 B
/// alloc+free pair on glibc from 37 to 36 cycles (`benches/`, the
/// interleaved 64 B pair; the same build with size classes for every size
/// stayed at 37). Larger requests, rarer and slower anyway, are counted by
/// size class with a byte total, off the straight path.
///
/// 128 B covers most of what Rust programs allocate (boxed values, small
/// strings and vectors, map nodes) and keeps each array at 1 KiB: a slot is
/// 3.3 KiB. Counting up to 512 B (4 KiB arrays) put allocmeter's own memory
/// at 1.56 % of the producer/consumer whole-program benchmark's peak RSS
/// (9 MiB, six threads), over the 1 % it is held to.
pub(crate) const EXACT_MAX: usize = 128;
const EXACT_SIZES: usize = EXACT_MAX + 1;

/// The atomic counters of one slot.
///
/// The allocation side and the free side each sit in their own run of words
/// (1.5 KiB apart for the exact sizes). An earlier layout put each class's
/// allocation and free counts side by side in one 16-byte pair; the free's
/// read-modify-write of the word next to the one the allocation had just
/// stored cost 0.6 ns per 64 B pair and 1.2 ns per mixed-size pair on this
/// project's machine (an A/B harness, 21 alternating rounds), presumably the
/// CPU ordering the load behind that recent store.
#[repr(C)]
pub(crate) struct CounterCells {
    allocs_by_size: [AtomicU64; EXACT_SIZES],
    classes: ClassCells,
    frees_by_size: [AtomicU64; EXACT_SIZES],
}

/// Counts by size class, byte totals and the rest: the part of
/// [`CounterCells`] for requests above [`EXACT_MAX`] bytes (and for the
/// realloc kinds and failures), and, on its own, a stored [`Counters`] (a
/// slot's baseline).
#[repr(C)]
pub(crate) struct ClassCells {
    alloc_bytes: AtomicU64,
    allocs_by_class: [AtomicU64; NUM_SIZE_CLASSES],
    free_bytes: AtomicU64,
    frees_by_class: [AtomicU64; NUM_SIZE_CLASSES],
    grown_in_place: AtomicU64,
    shrunk_in_place: AtomicU64,
    moved: AtomicU64,
    grown_bytes: AtomicU64,
    shrunk_bytes: AtomicU64,
    failures: AtomicU64,
}

/// How a successful `realloc` was served.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ReallocKind {
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
            allocs_by_size: [const { AtomicU64::new(0) }; EXACT_SIZES],
            classes: ClassCells::new(),
            frees_by_size: [const { AtomicU64::new(0) }; EXACT_SIZES],
        }
    }

    /// One allocation of `size` bytes.
    #[inline(always)]
    pub fn alloc<B: Bump>(&self, size: usize) {
        match self.allocs_by_size.get(size) {
            Some(cell) => {
                B::add(cell, 1);
            }
            None => {
                unlikely_path();
                self.classes.alloc::<B>(size)
            }
        }
    }

    /// One free of `size` bytes.
    #[inline(always)]
    pub fn free<B: Bump>(&self, size: usize) {
        match self.frees_by_size.get(size) {
            Some(cell) => {
                B::add(cell, 1);
            }
            None => {
                unlikely_path();
                self.classes.free::<B>(size)
            }
        }
    }

    /// One successful realloc from `old` to `new` bytes. It counts as the
    /// allocation of the new block and the free of the old one (as growing a
    /// slice does in Go), plus its kind and byte delta. The allocation side is
    /// written first, so a reader that sees the free also sees the allocation.
    #[inline(always)]
    pub fn realloc<B: Bump>(&self, old: usize, new: usize, kind: ReallocKind) {
        self.alloc::<B>(new);
        let c = &self.classes;
        let kind_cell = match kind {
            ReallocKind::GrownInPlace => &c.grown_in_place,
            ReallocKind::ShrunkInPlace => &c.shrunk_in_place,
            ReallocKind::Moved => &c.moved,
        };
        let delta_cell = if new >= old {
            &c.grown_bytes
        } else {
            &c.shrunk_bytes
        };
        B::add(kind_cell, 1);
        B::add(delta_cell, new.abs_diff(old) as u64);
        self.free::<B>(old);
    }

    /// One request the inner allocator refused (returned null).
    #[inline(always)]
    pub fn failure<B: Bump>(&self) {
        B::add(&self.classes.failures, 1);
    }

    /// Adds the free side of these cells into `out` (`Acquire`; see module docs).
    pub fn read_free_side(&self, out: &mut Counters) {
        self.classes.read_free_side(out);
        read_exact(
            &self.frees_by_size,
            &mut out.free_bytes,
            &mut out.free_by_class,
        );
    }

    /// Adds everything but the free side into `out` (`Acquire`).
    pub fn read_alloc_side(&self, out: &mut Counters) {
        self.classes.read_alloc_side(out);
        read_exact(
            &self.allocs_by_size,
            &mut out.alloc_bytes,
            &mut out.alloc_by_class,
        );
    }

    /// A copy of these cells (free side first).
    pub fn read(&self) -> Counters {
        let mut out = Counters::default();
        self.read_free_side(&mut out);
        self.read_alloc_side(&mut out);
        out
    }
}

/// Marks the branch that calls it as the unlikely one, so the compiler lays
/// the other out as the straight path (`core::hint::cold_path` is newer than
/// this crate's minimum Rust). Inlined, it leaves no code.
#[cold]
#[inline(always)]
fn unlikely_path() {}

/// Adds exact-size counts (`cells[size]`) into a byte total and class counts,
/// one class's run of sizes at a time.
fn read_exact(cells: &[AtomicU64; EXACT_SIZES], bytes: &mut u64, by_class: &mut [u64]) {
    let mut first = 0;
    for (class, out) in by_class.iter_mut().enumerate() {
        if first > EXACT_MAX {
            break;
        }
        let last = upper_bound(class).map_or(EXACT_MAX, |b| (b as usize).min(EXACT_MAX));
        let (mut n, mut b) = (0u64, 0u64);
        for (size, c) in (first..).zip(&cells[first..=last]) {
            let count = c.load(Ordering::Acquire);
            n = n.wrapping_add(count);
            b = b.wrapping_add(count.wrapping_mul(size as u64));
        }
        *out = out.wrapping_add(n);
        *bytes = bytes.wrapping_add(b);
        first = last + 1;
    }
}

impl ClassCells {
    /// All zero; usable in a `static`.
    pub const fn new() -> Self {
        ClassCells {
            alloc_bytes: AtomicU64::new(0),
            allocs_by_class: [const { AtomicU64::new(0) }; NUM_SIZE_CLASSES],
            free_bytes: AtomicU64::new(0),
            frees_by_class: [const { AtomicU64::new(0) }; NUM_SIZE_CLASSES],
            grown_in_place: AtomicU64::new(0),
            shrunk_in_place: AtomicU64::new(0),
            moved: AtomicU64::new(0),
            grown_bytes: AtomicU64::new(0),
            shrunk_bytes: AtomicU64::new(0),
            failures: AtomicU64::new(0),
        }
    }

    /// One allocation of `size` bytes, by size class.
    #[inline(always)]
    fn alloc<B: Bump>(&self, size: usize) {
        B::add(&self.alloc_bytes, size as u64);
        if let Some(cell) = self.allocs_by_class.get(class_of(size)) {
            B::add(cell, 1);
        }
    }

    /// One free of `size` bytes, by size class.
    #[inline(always)]
    fn free<B: Bump>(&self, size: usize) {
        B::add(&self.free_bytes, size as u64);
        if let Some(cell) = self.frees_by_class.get(class_of(size)) {
            B::add(cell, 1);
        }
    }

    /// Adds the free side of these cells into `out` (`Acquire`; see module docs).
    pub fn read_free_side(&self, out: &mut Counters) {
        let ld = |c: &AtomicU64| c.load(Ordering::Acquire);
        out.free_bytes = out.free_bytes.wrapping_add(ld(&self.free_bytes));
        for (o, c) in out.free_by_class.iter_mut().zip(&self.frees_by_class) {
            *o = o.wrapping_add(ld(c));
        }
    }

    /// Adds everything but the free side into `out` (`Acquire`).
    pub fn read_alloc_side(&self, out: &mut Counters) {
        let ld = |c: &AtomicU64| c.load(Ordering::Acquire);
        out.alloc_bytes = out.alloc_bytes.wrapping_add(ld(&self.alloc_bytes));
        for (o, c) in out.alloc_by_class.iter_mut().zip(&self.allocs_by_class) {
            *o = o.wrapping_add(ld(c));
        }
        out.grown_in_place = out.grown_in_place.wrapping_add(ld(&self.grown_in_place));
        out.shrunk_in_place = out.shrunk_in_place.wrapping_add(ld(&self.shrunk_in_place));
        out.moved = out.moved.wrapping_add(ld(&self.moved));
        out.grown_bytes = out.grown_bytes.wrapping_add(ld(&self.grown_bytes));
        out.shrunk_bytes = out.shrunk_bytes.wrapping_add(ld(&self.shrunk_bytes));
        out.failures = out.failures.wrapping_add(ld(&self.failures));
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
        for (c, v) in self.allocs_by_class.iter().zip(value.alloc_by_class) {
            st(c, v);
        }
        for (c, v) in self.frees_by_class.iter().zip(value.free_by_class) {
            st(c, v);
        }
        st(&self.grown_in_place, value.grown_in_place);
        st(&self.shrunk_in_place, value.shrunk_in_place);
        st(&self.moved, value.moved);
        st(&self.grown_bytes, value.grown_bytes);
        st(&self.shrunk_bytes, value.shrunk_bytes);
        st(&self.failures, value.failures);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owned_and_shared_writers_count_the_same() {
        let (a, b) = (CounterCells::new(), CounterCells::new());
        for size in [1usize, 8, 9, 100, 4096, 1 << 20, 1 << 40, usize::MAX] {
            a.alloc::<Owned>(size);
            b.alloc::<Shared>(size);
            a.free::<Owned>(size);
            b.free::<Shared>(size);
        }
        a.realloc::<Owned>(10, 20, ReallocKind::GrownInPlace);
        b.realloc::<Shared>(10, 20, ReallocKind::GrownInPlace);
        a.failure::<Owned>();
        b.failure::<Shared>();
        assert_eq!(a.read(), b.read());
    }

    #[test]
    fn exact_sizes_and_classes_give_the_same_totals_as_a_plain_sum() {
        let c = CounterCells::new();
        let mut want = Counters::default();
        let top = if cfg!(miri) { 1_100 } else { 5_000 };
        let sizes = (0..top).chain([EXACT_MAX - 1, EXACT_MAX, EXACT_MAX + 1, 1 << 40]);
        for (i, size) in sizes.enumerate() {
            // Every size allocated i % 3 + 1 times, freed once.
            for _ in 0..i % 3 + 1 {
                c.alloc::<Owned>(size);
                want.alloc_bytes += size as u64;
                want.alloc_by_class[class_of(size)] += 1;
            }
            c.free::<Owned>(size);
            want.free_bytes += size as u64;
            want.free_by_class[class_of(size)] += 1;
        }
        assert_eq!(c.read(), want);
    }

    #[test]
    fn realloc_is_a_free_of_the_old_and_an_alloc_of_the_new_block() {
        let c = CounterCells::new();
        c.realloc::<Owned>(100, 40, ReallocKind::Moved);
        c.realloc::<Owned>(40, 50, ReallocKind::GrownInPlace);
        c.realloc::<Owned>(50, 50, ReallocKind::ShrunkInPlace);
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
    fn store_then_read_round_trips_and_sub_subtracts() {
        let c = ClassCells::new();
        let mut v = Counters {
            alloc_bytes: 7,
            failures: 3,
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
