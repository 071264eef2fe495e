//! glibc malloc's figures through `mallinfo2` (feature `glibc`, on Linux
//! with glibc: the `inner_glibc` cfg).

use super::{ALLOCATED, ARENA, FREE, InnerFamily, MAPPED, RELEASABLE, Reading};

/// The families glibc reports, in the order [`read`] reads them.
pub(super) const READS: [&InnerFamily; 5] = [&ARENA, &MAPPED, &ALLOCATED, &FREE, &RELEASABLE];

/// glibc's figures, summed over all its arenas.
pub(super) fn read() -> Vec<Reading> {
    // SAFETY: `mallinfo2` (glibc 2.33 and later) takes no arguments and
    // returns a plain struct of `size_t`s by value, which the libc crate
    // declares with glibc's layout. It is thread-safe: it locks each
    // arena while summing it. It does not allocate, so calling it from
    // inside a scrape cannot re-enter the global allocator.
    let info = unsafe { libc::mallinfo2() };
    READS
        .into_iter()
        .zip([
            info.arena,
            info.hblkhd,
            info.uordblks,
            info.fordblks,
            info.keepcost,
        ])
        .map(|(family, value)| Reading {
            family: family.name,
            allocator: "glibc",
            value: value as f64,
        })
        .collect()
}
