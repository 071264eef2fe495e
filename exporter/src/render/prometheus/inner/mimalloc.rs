//! mimalloc's process figures through `mi_process_info` (feature
//! `mimalloc`).

use std::ptr::null_mut;

use super::{
    COMMITTED, InnerFamily, PAGE_FAULTS, PEAK_COMMITTED, PEAK_RESIDENT, RESIDENT, Reading,
};

/// The families mimalloc reports, in the order [`read`] reads them.
pub(super) const READS: [&InnerFamily; 5] = [
    &RESIDENT,
    &PEAK_RESIDENT,
    &COMMITTED,
    &PEAK_COMMITTED,
    &PAGE_FAULTS,
];

/// mimalloc's figures.
pub(super) fn read() -> Vec<Reading> {
    let mut current_rss = 0usize;
    let mut peak_rss = 0usize;
    let mut current_commit = 0usize;
    let mut peak_commit = 0usize;
    let mut page_faults = 0usize;
    // SAFETY: `mi_process_info` writes one `size_t` through each non-null
    // pointer and skips null ones (the times, which the process
    // collector already exports). Every non-null pointer is to a distinct,
    // aligned, writable `usize` local to this frame, alive for the whole
    // call, and `usize` is `size_t`. The function is thread-safe (it reads
    // atomics and `getrusage`) and works before mimalloc's first
    // allocation.
    unsafe {
        libmimalloc_sys::mi_process_info(
            null_mut(),
            null_mut(),
            null_mut(),
            &mut current_rss,
            &mut peak_rss,
            &mut current_commit,
            &mut peak_commit,
            &mut page_faults,
        );
    }
    READS
        .into_iter()
        .zip([
            current_rss,
            peak_rss,
            current_commit,
            peak_commit,
            page_faults,
        ])
        .map(|(family, value)| Reading {
            family: family.name,
            allocator: "mimalloc",
            value: value as f64,
        })
        .collect()
}
