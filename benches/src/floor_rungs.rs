//! The floor's wrappers: `System` recording what one rung of a ladder
//! records, each rung one more thing than the last, in plain thread-local
//! cells: no slot, no registry, no reader, nothing kept when the thread exits
//! and no check that it has not. They are lower bounds, not usable
//! allocators: their counts die with their thread and no other thread can
//! read them. `benches/benches/floor.rs` times them beside `System` and
//! `Instrumented<System>`; the `instr_ops_floor_*` binaries count their
//! instructions per operation under valgrind (`benches/instructions.py`).
//!
//! The rungs ([`Floor<R>`] with `R` one of the consts below; each adds to
//! the one before it, except [`EXACT_CLOCK_CHECK`]):
//!
//! - [`COUNTS`]: one count per allocation and per free;
//! - [`BYTES`]: and the bytes of each (what stats_alloc and cap record,
//!   without their shared atomics);
//! - [`CLASSES_CLOCK`]: counts by size class instead (allocmeter's
//!   `ceil(log2(size))` cell: one `lea`, one `bsr`), bytes, and the sampling
//!   clock (a thread-local countdown from 512 KiB; a sampling point only
//!   re-arms it);
//! - [`CLASSES_CLOCK_CHECK`]: and the check every free makes before it can
//!   know whether the block was sampled: allocmeter's filter hash and a load
//!   from a 16 KiB bit filter (here always clear). On allocs and frees this
//!   rung records what allocmeter's hot path records, but for the null check
//!   that counts refused requests;
//! - [`EXACT_CLOCK_CHECK`]: one counter per exact size up to 1 KiB (it
//!   gives both count and bytes), classes and bytes above, the clock and the
//!   check: the cheapest layout found for the 64 B pair, at the price of a
//!   size-dependent branch;
//! - [`REALLOC_KINDS`]: [`CLASSES_CLOCK_CHECK`], and on a realloc also its
//!   kind and its byte delta, after a null check (a refused realloc is no
//!   move), kept as allocmeter keeps them: a count and a signed delta sum
//!   picked by the realloc's way (moved, not grown), with no branch. On
//!   reallocs too, what allocmeter records.
//!
//! - [`ALIGNED_GATE`]: [`REALLOC_KINDS`], with the filter check made only
//!   for a block at a multiple of [`GATE_ALIGN`] (256 B): what the check
//!   would cost if every sampled block were served at that alignment (the
//!   gate is sound only then; allocmeter does not do it). Not a floor of
//!   what allocmeter does: a measure of what that idea would save.
//!
//! Every rung is written as allocmeter's hot path is, where that is
//! cheaper: a free or realloc the filter does not rule out goes to a cold
//! function in tail position that does the whole call.
//!
//! A realloc forwards to `System.realloc` in every rung (so that a block
//! grows in place where glibc can) and counts as the allocation of the new
//! block and the free of the old one, as allocmeter counts it: counts
//! ([`COUNTS`]), and bytes ([`BYTES`]); classes of both sizes, bytes and
//! the clock, advanced by the new size ([`CLASSES_CLOCK`]); and the filter
//! check of the old address before the call ([`CLASSES_CLOCK_CHECK`] and
//! above). allocmeter counts a realloc's kind and byte delta too: only
//! [`REALLOC_KINDS`] does, so the difference between the two rungs is what
//! the kind costs.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};

/// Rung: one count per allocation and per free.
pub const COUNTS: u8 = 0;
/// Rung: counts, and the bytes of each allocation and free.
pub const BYTES: u8 = 1;
/// Rung: counts by size class, bytes, and the sampling clock.
pub const CLASSES_CLOCK: u8 = 2;
/// Rung: [`CLASSES_CLOCK`], and the sampled-block check of every free.
pub const CLASSES_CLOCK_CHECK: u8 = 3;
/// Rung: exact counters up to [`EXACT_MAX`], classes above, the clock and
/// the check.
pub const EXACT_CLOCK_CHECK: u8 = 4;
/// Rung: [`CLASSES_CLOCK_CHECK`], and each realloc's kind and byte delta.
pub const REALLOC_KINDS: u8 = 5;
/// Rung: [`REALLOC_KINDS`] with the filter check gated by the address's
/// alignment ([`GATE_ALIGN`]).
pub const ALIGNED_GATE: u8 = 6;

/// The alignment [`ALIGNED_GATE`] gates the filter check with: only a
/// block at a multiple of it is looked up.
pub const GATE_ALIGN: usize = 256;

/// The largest size with its own counter in [`EXACT_CLOCK_CHECK`].
pub const EXACT_MAX: usize = 1024;

/// The bytes between sampling points: allocmeter's default rate.
pub const SAMPLE_BYTES: i64 = 512 * 1024;

/// What a rung records.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Rung {
    Counts,
    Bytes,
    ClassesClock,
    ClassesClockCheck,
    ExactClockCheck,
    ReallocKinds,
    AlignedGate,
}

/// One thread's cells, for every rung (each uses its own part).
struct Cells {
    allocs: Cell<u64>,
    frees: Cell<u64>,
    alloc_bytes: Cell<u64>,
    free_bytes: Cell<u64>,
    alloc_cells: [Cell<u64>; 64],
    free_cells: [Cell<u64>; 64],
    exact_allocs: [Cell<u64>; EXACT_MAX + 1],
    exact_frees: [Cell<u64>; EXACT_MAX + 1],
    bytes_to_sample: Cell<i64>,
    /// Reallocs by way, as allocmeter's `ReallocWay`: moved (bit 1), not
    /// grown (bit 0).
    reallocs_by_way: [Cell<u64>; 4],
    /// The sum of `new - old` by way (wrapping: the ways that do not grow
    /// hold their negated sums).
    delta_by_way: [Cell<u64>; 4],
}

thread_local! {
    static CELLS: Cells = const {
        Cells {
            allocs: Cell::new(0),
            frees: Cell::new(0),
            alloc_bytes: Cell::new(0),
            free_bytes: Cell::new(0),
            alloc_cells: [const { Cell::new(0) }; 64],
            free_cells: [const { Cell::new(0) }; 64],
            exact_allocs: [const { Cell::new(0) }; EXACT_MAX + 1],
            exact_frees: [const { Cell::new(0) }; EXACT_MAX + 1],
            bytes_to_sample: Cell::new(SAMPLE_BYTES),
            reallocs_by_way: [const { Cell::new(0) }; 4],
            delta_by_way: [const { Cell::new(0) }; 4],
        }
    };
}

/// A 16 KiB bit filter, as allocmeter's sampled-block filter; never set here.
static FILTER: [AtomicU64; 2048] = [const { AtomicU64::new(0) }; 2048];

/// allocmeter's filter check: the address hashed to a bit, one load, one test.
#[inline(always)]
fn maybe_sampled(ptr: *mut u8) -> bool {
    let a = ptr as usize;
    let bit = ((a ^ (a >> 13)) >> 4) & ((1 << 17) - 1);
    // Relaxed, as allocmeter's filter check: a hint that only says whether
    // to look further; nothing is read through it (and it is never set).
    FILTER[bit / 64].load(Ordering::Relaxed) & (1 << (bit % 64)) != 0
}

/// allocmeter's counter cell of a size: `ceil(log2(size))`.
#[inline(always)]
fn cell_of(size: usize) -> usize {
    let x = size.wrapping_mul(2).wrapping_sub(1) | 1;
    (usize::BITS - 1 - x.leading_zeros()) as usize
}

#[inline(always)]
fn bump(cell: &Cell<u64>, by: u64) {
    cell.set(cell.get().wrapping_add(by));
}

/// The sampling point: re-arms the clock (it takes no sample).
#[cold]
#[inline(never)]
fn sampling_point(cells: &Cells) {
    cells.bytes_to_sample.set(SAMPLE_BYTES);
}

/// A filter hit: never happens here (the filter stays clear).
#[cold]
#[inline(never)]
fn filter_hit(ptr: *mut u8) {
    black_box(ptr);
}

/// A size with no exact counter.
#[cold]
#[inline(always)]
fn not_exact() {}

/// A refused realloc: nothing to record.
#[cold]
#[inline(always)]
fn refused() {}

/// Counts one allocation or free of `size` bytes in its `exact` counter, or
/// above [`EXACT_MAX`] in its class counter of `cells` and in `bytes`.
#[inline(always)]
fn count_sized(exact: &[Cell<u64>], cells: &[Cell<u64>], bytes: &Cell<u64>, size: usize) {
    if let Some(c) = exact.get(size) {
        bump(c, 1);
    } else {
        not_exact();
        bump(&cells[cell_of(size) & 63], 1);
        bump(bytes, size as u64);
    }
}

/// `System`, recording what rung `R` records (one of [`COUNTS`],
/// [`BYTES`], [`CLASSES_CLOCK`], [`CLASSES_CLOCK_CHECK`],
/// [`EXACT_CLOCK_CHECK`], [`REALLOC_KINDS`], [`ALIGNED_GATE`]).
pub struct Floor<const R: u8>;

impl<const R: u8> Floor<R> {
    const RUNG: Rung = match R {
        COUNTS => Rung::Counts,
        BYTES => Rung::Bytes,
        CLASSES_CLOCK => Rung::ClassesClock,
        CLASSES_CLOCK_CHECK => Rung::ClassesClockCheck,
        EXACT_CLOCK_CHECK => Rung::ExactClockCheck,
        REALLOC_KINDS => Rung::ReallocKinds,
        ALIGNED_GATE => Rung::AlignedGate,
        _ => panic!("no such rung"),
    };

    /// The rung's name in the reports: `floor: ` and what it records.
    pub const LABEL: &'static str = match R {
        COUNTS => "floor: counts",
        BYTES => "floor: counts, bytes",
        CLASSES_CLOCK => "floor: classes, bytes, clock",
        CLASSES_CLOCK_CHECK => "floor: classes, bytes, clock, free check",
        EXACT_CLOCK_CHECK => "floor: exact sizes, clock, free check",
        REALLOC_KINDS => "floor: classes, bytes, clock, free check, realloc kinds",
        ALIGNED_GATE => "floor: realloc kinds, check gated by a 256 B alignment",
        _ => panic!("no such rung"),
    };

    /// The wrapper (it has no state: its cells are thread-locals).
    pub const fn new() -> Self {
        // Names the rung, so that a bad `R` fails to compile.
        let _ = Self::RUNG;
        Floor
    }

    /// Whether this rung checks the filter before a free (or a realloc).
    const CHECKS: bool = matches!(
        Self::RUNG,
        Rung::ClassesClockCheck | Rung::ExactClockCheck | Rung::ReallocKinds | Rung::AlignedGate
    );

    /// Whether a realloc records its kind and delta.
    const KINDS: bool = matches!(Self::RUNG, Rung::ReallocKinds | Rung::AlignedGate);

    /// Records an allocation of `size` bytes.
    #[inline(always)]
    fn record_alloc(c: &Cells, size: usize) {
        match Self::RUNG {
            Rung::Counts => bump(&c.allocs, 1),
            Rung::Bytes => {
                bump(&c.allocs, 1);
                bump(&c.alloc_bytes, size as u64);
            }
            Rung::ClassesClock
            | Rung::ClassesClockCheck
            | Rung::ExactClockCheck
            | Rung::ReallocKinds
            | Rung::AlignedGate => {
                if Self::RUNG == Rung::ExactClockCheck {
                    count_sized(&c.exact_allocs, &c.alloc_cells, &c.alloc_bytes, size);
                } else {
                    bump(&c.alloc_cells[cell_of(size) & 63], 1);
                    bump(&c.alloc_bytes, size as u64);
                }
                let left = c.bytes_to_sample.get().wrapping_sub(size as i64);
                c.bytes_to_sample.set(left);
                if left < 0 {
                    sampling_point(c);
                }
            }
        }
    }

    /// Records a free of `size` bytes (the filter check is the caller's).
    #[inline(always)]
    fn record_free(c: &Cells, size: usize) {
        match Self::RUNG {
            Rung::Counts => bump(&c.frees, 1),
            Rung::Bytes => {
                bump(&c.frees, 1);
                bump(&c.free_bytes, size as u64);
            }
            Rung::ExactClockCheck => {
                count_sized(&c.exact_frees, &c.free_cells, &c.free_bytes, size);
            }
            Rung::ClassesClock
            | Rung::ClassesClockCheck
            | Rung::ReallocKinds
            | Rung::AlignedGate => {
                bump(&c.free_cells[cell_of(size) & 63], 1);
                bump(&c.free_bytes, size as u64);
            }
        }
    }

    /// The filter check a free or a realloc makes before it hands `ptr` back,
    /// in the rungs that make it: `true` if the filter does not rule the
    /// block out (then, as in allocmeter, the whole call goes to a cold
    /// function in tail position).
    #[inline(always)]
    fn hit(ptr: *mut u8) -> bool {
        if Self::RUNG == Rung::AlignedGate {
            // Sound only if every sampled block sat at a multiple of
            // `GATE_ALIGN`: a measure of what the gate would save, not a
            // design (see the module docs).
            return (ptr as usize) & (GATE_ALIGN - 1) == 0 && maybe_sampled(ptr);
        }
        Self::CHECKS && maybe_sampled(ptr)
    }

    /// A realloc once the check is passed: `System`'s, then the new block,
    /// the way and delta, the old block, in allocmeter's order.
    ///
    /// # Safety
    /// As `GlobalAlloc::realloc`.
    #[inline(always)]
    unsafe fn realloc_unchecked(ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller guarantees `ptr` came from this allocator, so
        // from `System`, with `layout`, and that `new_size` is valid for
        // `layout.align()`.
        let new_ptr = unsafe { System.realloc(ptr, layout, new_size) };
        let old = layout.size();
        CELLS.with(|c| {
            if Self::KINDS && new_ptr.is_null() {
                refused();
                return;
            }
            Self::record_alloc(c, new_size);
            if Self::KINDS {
                // allocmeter's `ReallocWay`: moved (bit 1), not grown (bit 0).
                let way = (usize::from(new_ptr != ptr) << 1) | usize::from(new_size <= old);
                bump(&c.reallocs_by_way[way], 1);
                bump(
                    &c.delta_by_way[way],
                    (new_size as u64).wrapping_sub(old as u64),
                );
            }
            Self::record_free(c, old);
        });
        new_ptr
    }
}

/// A free the filter did not rule out: the whole call, out of line.
///
/// # Safety
/// As `GlobalAlloc::dealloc`.
#[cold]
#[inline(never)]
unsafe fn dealloc_hit<const R: u8>(ptr: *mut u8, layout: Layout) {
    filter_hit(ptr);
    CELLS.with(|c| Floor::<R>::record_free(c, layout.size()));
    // SAFETY: as the caller promises.
    unsafe { System.dealloc(ptr, layout) }
}

/// A realloc the filter did not rule out: the whole call, out of line.
///
/// # Safety
/// As `GlobalAlloc::realloc`.
#[cold]
#[inline(never)]
unsafe fn realloc_hit<const R: u8>(ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
    filter_hit(ptr);
    // SAFETY: as the caller promises.
    unsafe { Floor::<R>::realloc_unchecked(ptr, layout, new_size) }
}

impl<const R: u8> Default for Floor<R> {
    fn default() -> Self {
        Self::new()
    }
}

// SAFETY: every method forwards to `System` with the caller's arguments and
// returns its result; the recording touches only this thread's cells.
unsafe impl<const R: u8> GlobalAlloc for Floor<R> {
    #[inline(always)]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller upholds `alloc`'s contract for `layout`.
        let ptr = unsafe { System.alloc(layout) };
        CELLS.with(|c| Self::record_alloc(c, layout.size()));
        ptr
    }

    #[inline(always)]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller upholds `alloc_zeroed`'s contract for `layout`.
        let ptr = unsafe { System.alloc_zeroed(layout) };
        CELLS.with(|c| Self::record_alloc(c, layout.size()));
        ptr
    }

    #[inline(always)]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if Self::hit(ptr) {
            // SAFETY: the caller's guarantees, passed on.
            return unsafe { dealloc_hit::<R>(ptr, layout) };
        }
        CELLS.with(|c| Self::record_free(c, layout.size()));
        // SAFETY: the caller guarantees `ptr` came from this allocator, so
        // from `System`, with `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }

    #[inline(always)]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // Checked before the call, as allocmeter's: once `System` has the
        // block, its address may be another thread's.
        if Self::hit(ptr) {
            // SAFETY: the caller's guarantees, passed on.
            return unsafe { realloc_hit::<R>(ptr, layout, new_size) };
        }
        // SAFETY: the caller's guarantees, passed on.
        unsafe { Self::realloc_unchecked(ptr, layout, new_size) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What this thread's cells hold, for the fields a realloc touches.
    #[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
    struct Seen {
        allocs: u64,
        frees: u64,
        alloc_bytes: u64,
        free_bytes: u64,
        alloc_cell: u64,
        free_cell: u64,
        clock: i64,
        kinds: [u64; 3],
        grown_bytes: u64,
        shrunk_bytes: u64,
    }

    fn seen(new: usize, old: usize) -> Seen {
        CELLS.with(|c| Seen {
            allocs: c.allocs.get(),
            frees: c.frees.get(),
            alloc_bytes: c.alloc_bytes.get(),
            free_bytes: c.free_bytes.get(),
            alloc_cell: c.alloc_cells[cell_of(new)].get(),
            free_cell: c.free_cells[cell_of(old)].get(),
            clock: c.bytes_to_sample.get(),
            kinds: {
                let w = c.reallocs_by_way.each_ref().map(Cell::get);
                [w[0], w[1], w[2] + w[3]]
            },
            grown_bytes: {
                let d = c.delta_by_way.each_ref().map(Cell::get);
                d[0].wrapping_add(d[2])
            },
            shrunk_bytes: {
                let d = c.delta_by_way.each_ref().map(Cell::get);
                0u64.wrapping_sub(d[1]).wrapping_sub(d[3])
            },
        })
    }

    /// The realloc kinds, as `instr_ops` makes glibc do them: (old size,
    /// new size).
    const GROWN: (usize, usize) = (33, 40);
    const SHRUNK: (usize, usize) = (1024, 960);
    const MOVED: (usize, usize) = (64, 4096);

    /// Reallocs a new block of `old` bytes to `new` through `a`, a 48 B
    /// block allocated right after it (and freed after); returns whether
    /// the block moved, and what the cells gained.
    fn realloc_once<const R: u8>(a: &Floor<R>, (old, new): (usize, usize)) -> (bool, Seen) {
        let from = Layout::from_size_align(old, 8).unwrap();
        let guard = Layout::from_size_align(48, 8).unwrap();
        // SAFETY: non-zero sizes; every block is freed once, with its layout,
        // by the allocator it came from.
        unsafe {
            let p = a.alloc(from);
            let g = System.alloc(guard);
            assert!(!p.is_null() && !g.is_null());
            let before = seen(new, old);
            let q = a.realloc(p, from, new);
            let after = seen(new, old);
            assert!(!q.is_null());
            a.dealloc(q, Layout::from_size_align(new, 8).unwrap());
            System.dealloc(g, guard);
            let d = Seen {
                allocs: after.allocs - before.allocs,
                frees: after.frees - before.frees,
                alloc_bytes: after.alloc_bytes - before.alloc_bytes,
                free_bytes: after.free_bytes - before.free_bytes,
                alloc_cell: after.alloc_cell - before.alloc_cell,
                free_cell: after.free_cell - before.free_cell,
                clock: before.clock - after.clock,
                kinds: [0, 1, 2].map(|k| after.kinds[k] - before.kinds[k]),
                grown_bytes: after.grown_bytes - before.grown_bytes,
                shrunk_bytes: after.shrunk_bytes - before.shrunk_bytes,
            };
            (q != p, d)
        }
    }

    #[test]
    fn realloc_forwards_to_system_and_stays_in_place_where_it_can() {
        let a = Floor::<COUNTS>::new();
        // glibc serves 33 B from a chunk with 40 usable bytes, and shrinks
        // in place; a realloc that went through alloc, copy and free (the
        // default `GlobalAlloc::realloc`) would move both.
        assert!(!realloc_once(&a, GROWN).0, "33 B -> 40 B moved");
        assert!(!realloc_once(&a, SHRUNK).0, "1024 B -> 960 B moved");
    }

    #[test]
    fn realloc_counts_one_alloc_and_one_free() {
        for sizes in [GROWN, SHRUNK, MOVED] {
            let (_, d) = realloc_once(&Floor::<COUNTS>::new(), sizes);
            assert_eq!((d.allocs, d.frees, d.alloc_bytes), (1, 1, 0), "{sizes:?}");
            let (_, d) = realloc_once(&Floor::<BYTES>::new(), sizes);
            assert_eq!(
                (d.allocs, d.frees, d.alloc_bytes, d.free_bytes),
                (1, 1, sizes.1 as u64, sizes.0 as u64),
                "{sizes:?}"
            );
        }
    }

    #[test]
    fn realloc_records_classes_bytes_and_the_clock() {
        for sizes in [GROWN, SHRUNK, MOVED] {
            let (_, d) = realloc_once(&Floor::<CLASSES_CLOCK_CHECK>::new(), sizes);
            let (old, new) = (sizes.0 as u64, sizes.1 as u64);
            assert_eq!(
                (d.alloc_cell, d.free_cell, d.alloc_bytes, d.free_bytes),
                (1, 1, new, old),
                "{sizes:?}"
            );
            // The clock runs down by the new size (it starts at 512 KiB
            // and no test here allocates that much on one thread).
            assert_eq!(d.clock, new as i64, "{sizes:?}");
            assert_eq!(
                d.kinds,
                [0, 0, 0],
                "only the realloc_kinds rung counts kinds"
            );
        }
    }

    #[test]
    fn realloc_kinds_records_each_kind_and_its_delta() {
        let a = Floor::<REALLOC_KINDS>::new();
        let (_, d) = realloc_once(&a, GROWN);
        assert_eq!((d.kinds, d.grown_bytes, d.shrunk_bytes), ([1, 0, 0], 7, 0));
        let (_, d) = realloc_once(&a, SHRUNK);
        assert_eq!((d.kinds, d.grown_bytes, d.shrunk_bytes), ([0, 1, 0], 0, 64));
        // Moved, as a rule: the 48 B block after it stops it growing in
        // place (unless glibc placed that block elsewhere).
        let (moved, d) = realloc_once(&a, MOVED);
        let kinds = if moved { [0, 0, 1] } else { [1, 0, 0] };
        assert_eq!((d.kinds, d.grown_bytes, d.shrunk_bytes), (kinds, 4032, 0));
        assert_eq!((d.alloc_cell, d.free_cell, d.clock), (1, 1, 4096));
    }
}
