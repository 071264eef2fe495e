//! Power-of-two size classes for the allocation and free histograms.
//!
//! Class 0 holds requests of 0–8 bytes, class `k` (for `1 <= k < NUM_SIZE_CLASSES - 1`)
//! holds requests in `(2^(k+2), 2^(k+3)]`, and the last class holds everything above
//! 4 GiB. The upper bounds are inclusive, which is exactly what a Prometheus
//! histogram bucket `le` means, so the exporter can publish them unchanged.
//!
//! Computing a class is a `leading_zeros` and two compares: no table, no branch
//! that can mispredict for a steady workload, and no way to panic.

/// Number of size classes, the open-ended top class included.
pub const NUM_SIZE_CLASSES: usize = 31;

/// log2 of the upper bound of class 0 (8 bytes).
const FIRST_SHIFT: u32 = 3;

/// Counter cells per slot: one per value of `ceil(log2(size))` for a 64-bit
/// size. The hot path indexes cells without clamping: every request size maps
/// to one of these. Cells 0 to 3 (sizes 1 to 8) are all class 0; sizes
/// beyond 4 GiB, and the impossible size 0 (cell 63), land above the last
/// class and are folded into it when read.
pub(crate) const CELLS: usize = usize::BITS as usize;

/// The counter cell of a request of `size` bytes: `floor(log2(2 * size - 1))`,
/// which is `ceil(log2(size))`, unclamped. That is one `lea` and one `bsr`,
/// and the cell's address folds into the counter's `inc`:
///
/// - `2 * size - 1` is odd, so never zero, and `leading_zeros` needs no zero
///   check (the compiler sees the low bit);
/// - the result is below [`CELLS`], so it needs no bounds clamp;
/// - it is computed in `usize`, so no 32-bit offset has to be formed first.
///
/// An earlier form took one instruction more per allocation and per free
/// (see ARCHITECTURE.md, "Measurements behind the hot path's shape").
/// `2 * size` wraps only for sizes above `isize::MAX`, which no `Layout` has;
/// such a size would still land in a valid cell (a wrong one).
#[inline(always)]
pub(crate) const fn cell_of(size: usize) -> usize {
    let x = size.wrapping_mul(2).wrapping_sub(1) | 1;
    (usize::BITS - 1 - x.leading_zeros()) as usize
}

/// Cells 0 to this one (sizes 1 to 8) all count class 0; cell `c` from this
/// one on counts class `c - FIRST_CLASS_CELL`.
const FIRST_CLASS_CELL: usize = FIRST_SHIFT as usize;

/// The size class counted by cell `cell`.
pub(crate) const fn class_of_cell(cell: usize) -> usize {
    let class = cell.saturating_sub(FIRST_CLASS_CELL);
    if class < NUM_SIZE_CLASSES {
        class
    } else {
        NUM_SIZE_CLASSES - 1
    }
}

/// The lowest cell counted into class `class`.
pub(crate) const fn first_cell_of_class(class: usize) -> usize {
    if class == 0 {
        0
    } else {
        class + FIRST_CLASS_CELL
    }
}

/// Returns the size class that a request of `size` bytes falls into.
///
/// ```
/// use allocmeter::size_class::{class_of, NUM_SIZE_CLASSES};
/// assert_eq!(class_of(0), 0);
/// assert_eq!(class_of(8), 0);
/// assert_eq!(class_of(9), 1);
/// assert_eq!(class_of(16), 1);
/// assert_eq!(class_of(17), 2);
/// assert_eq!(class_of(usize::MAX), NUM_SIZE_CLASSES - 1);
/// ```
#[inline(always)]
pub const fn class_of(size: usize) -> usize {
    // For size >= 2, ceil(log2(size)) = floor(log2(size - 1)) + 1. Or-ing in
    // the bits below the first class bound folds sizes 0..=8 into class 0
    // and keeps the operand non-zero, so `leading_zeros` compiles to a bare
    // `bsr`/`lzcnt` with no zero check.
    let x = size.saturating_sub(1) | ((1 << FIRST_SHIFT) - 1);
    let floor_log2 = usize::BITS - 1 - x.leading_zeros();
    let class = (floor_log2 + 1 - FIRST_SHIFT) as usize;
    if class < NUM_SIZE_CLASSES {
        class
    } else {
        NUM_SIZE_CLASSES - 1
    }
}

/// The inclusive upper bound in bytes of class `class`, or `None` for the
/// open-ended top class (and for out-of-range indices).
///
/// ```
/// use allocmeter::size_class::{upper_bound, NUM_SIZE_CLASSES};
/// assert_eq!(upper_bound(0), Some(8));
/// assert_eq!(upper_bound(1), Some(16));
/// assert_eq!(upper_bound(NUM_SIZE_CLASSES - 2), Some(1 << 32));
/// assert_eq!(upper_bound(NUM_SIZE_CLASSES - 1), None);
/// ```
pub const fn upper_bound(class: usize) -> Option<u64> {
    if class + 1 < NUM_SIZE_CLASSES {
        Some(1u64 << (class as u32 + FIRST_SHIFT))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_size_lands_in_the_class_whose_bounds_hold_it() {
        let mut sizes: Vec<usize> = (0..5000).collect();
        for shift in 0..usize::BITS {
            let p = 1usize << shift;
            sizes.extend([p - 1, p, p.saturating_add(1)]);
        }
        sizes.push(usize::MAX);
        for size in sizes {
            let class = class_of(size);
            assert!(class < NUM_SIZE_CLASSES);
            if let Some(hi) = upper_bound(class) {
                assert!(
                    size as u64 <= hi,
                    "size {size} above class {class} bound {hi}"
                );
            }
            if class > 0 {
                let lo = upper_bound(class - 1).unwrap();
                assert!(
                    size as u64 > lo,
                    "size {size} not above class {class} floor {lo}"
                );
            }
        }
    }

    #[test]
    fn cells_fold_into_classes() {
        let top = if cfg!(miri) { 5_000 } else { 100_000 };
        for size in (1..top).chain([usize::MAX, 1 << 40, (1 << 32) + 1, 1 << 32]) {
            let cell = cell_of(size);
            assert!(cell < CELLS);
            assert_eq!(class_of_cell(cell), class_of(size), "size {size}");
        }
        assert!(cell_of(0) < CELLS, "size 0 cannot index out of bounds");
        // Sizes up to isize::MAX (the most a Layout holds) are classed right.
        for size in [isize::MAX as usize, (isize::MAX as usize) / 2 + 1] {
            assert!(cell_of(size) < CELLS);
            assert_eq!(class_of_cell(cell_of(size)), class_of(size), "size {size}");
        }
        for size in 1..=8 {
            assert_eq!(class_of_cell(cell_of(size)), 0, "size {size}");
        }
        for class in 0..NUM_SIZE_CLASSES {
            assert_eq!(class_of_cell(first_cell_of_class(class)), class);
        }
        assert_eq!(first_cell_of_class(class_of(64)), cell_of(64));
    }

    #[test]
    fn bounds_are_strictly_increasing_powers_of_two() {
        for class in 1..NUM_SIZE_CLASSES - 1 {
            let (a, b) = (upper_bound(class - 1).unwrap(), upper_bound(class).unwrap());
            assert_eq!(b, a * 2);
        }
    }
}
