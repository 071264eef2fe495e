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
    fn bounds_are_strictly_increasing_powers_of_two() {
        for class in 1..NUM_SIZE_CLASSES - 1 {
            let (a, b) = (upper_bound(class - 1).unwrap(), upper_bound(class).unwrap());
            assert_eq!(b, a * 2);
        }
    }
}
