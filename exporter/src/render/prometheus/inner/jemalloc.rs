//! jemalloc's statistics through `mallctl` (feature `jemalloc`).

use tikv_jemalloc_ctl::{epoch, stats};

use super::{ACTIVE, ALLOCATED, InnerFamily, MAPPED, METADATA, RESIDENT, RETAINED, Reading};

/// Reads one `stats.*` figure from the current snapshot.
type Read = fn() -> tikv_jemalloc_ctl::Result<usize>;

/// Each family jemalloc reports, with the `stats.*` figure it is read from.
const FIGURES: [(&InnerFamily, Read); 6] = [
    (&ALLOCATED, stats::allocated::read),
    (&ACTIVE, stats::active::read),
    (&RESIDENT, stats::resident::read),
    (&MAPPED, stats::mapped::read),
    (&RETAINED, stats::retained::read),
    (&METADATA, stats::metadata::read),
];

/// The families jemalloc reports.
pub(super) const READS: [&InnerFamily; 6] = [
    FIGURES[0].0,
    FIGURES[1].0,
    FIGURES[2].0,
    FIGURES[3].0,
    FIGURES[4].0,
    FIGURES[5].0,
];

/// jemalloc's figures, all from one refresh of its statistics.
pub(super) fn read() -> Vec<Reading> {
    // jemalloc's `stats.*` are a snapshot that only advancing the epoch
    // refreshes: advance it once, then read every figure from the same
    // snapshot, so that they are consistent with each other.
    if epoch::advance().is_err() {
        return Vec::new();
    }
    FIGURES
        .into_iter()
        .filter_map(|(family, read)| {
            let value = read().ok()? as f64;
            Some(Reading {
                family: family.name,
                allocator: "jemalloc",
                value,
            })
        })
        .collect()
}
