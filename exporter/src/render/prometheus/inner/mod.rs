//! What the inner allocator itself knows: its own statistics, read through
//! its own API, for the `allocmeter_inner_*` families.
//!
//! allocmeter counts what the program asked for; the inner allocator knows
//! what that cost it (pages touched, memory mapped, free space it keeps).
//! The two side by side tell a leak from fragmentation. Each source is behind
//! a cargo feature of this crate and compiled only when asked for:
//!
//! | feature | source | read with |
//! |---|---|---|
//! | `jemalloc` | jemalloc (tikv-jemallocator 0.6) | `mallctl("stats.*")` after one `epoch` advance |
//! | `mimalloc` | mimalloc (the `mimalloc` 0.1 crate) | `mi_process_info` |
//! | `glibc` | glibc's malloc (Linux, glibc ≥ 2.33) | `mallinfo2` |
//!
//! Each family is declared once here ([`InnerFamily`]); each source's file
//! lists the families it reads beside its reader, by these constants, and a
//! family is exported only when a compiled-in source reads it.
//!
//! A reading is cheap but not free (jemalloc refreshes its statistics by
//! merging every arena's; `mallinfo2` locks each arena and walks its free
//! lists), so readings are taken at most once per [`MIN_REFRESH`] and shared
//! by every scrape in between.

#[cfg(inner_glibc)]
mod glibc;
#[cfg(feature = "jemalloc")]
mod jemalloc;
#[cfg(feature = "mimalloc")]
mod mimalloc;

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use prometheus::proto::MetricType;

/// Readings are refreshed at most this often, however often `/metrics` is
/// scraped; a scrape within this time of the last refresh gets the same
/// figures.
pub(crate) const MIN_REFRESH: Duration = Duration::from_millis(100);

/// One `allocmeter_inner_*` metric family: what the figure means, for every
/// allocator that reports it.
#[derive(Debug, PartialEq)]
pub(crate) struct InnerFamily {
    /// The family's name.
    pub name: &'static str,
    /// Its help text: the meaning, then each allocator's source of it.
    pub help: &'static str,
    /// Gauge, or counter for `_total`.
    pub kind: MetricType,
}

/// `allocmeter_inner_allocated_bytes`.
pub(crate) const ALLOCATED: InnerFamily = InnerFamily {
    name: "allocmeter_inner_allocated_bytes",
    help: "Bytes in blocks the inner allocator has handed out and not taken back, by its own count (its size classes, allocations outside allocmeter included). jemalloc: stats.allocated. glibc: mallinfo2 uordblks, arenas only (blocks served by mmap are in allocmeter_inner_mapped_bytes).",
    kind: MetricType::GAUGE,
};

/// `allocmeter_inner_active_bytes`.
pub(crate) const ACTIVE: InnerFamily = InnerFamily {
    name: "allocmeter_inner_active_bytes",
    help: "Bytes in the inner allocator's pages that hold allocated blocks (whole pages, so at least allocmeter_inner_allocated_bytes). jemalloc: stats.active.",
    kind: MetricType::GAUGE,
};

/// `allocmeter_inner_resident_bytes`.
pub(crate) const RESIDENT: InnerFamily = InnerFamily {
    name: "allocmeter_inner_resident_bytes",
    help: "Bytes of physical memory the inner allocator holds, by its own estimate. jemalloc: stats.resident (metadata, active and dirty unused pages; untouched pages may be counted). mimalloc: mi_process_info current_rss (the OS's working set on Windows and macOS; elsewhere mimalloc's committed bytes).",
    kind: MetricType::GAUGE,
};

/// `allocmeter_inner_peak_resident_bytes`.
pub(crate) const PEAK_RESIDENT: InnerFamily = InnerFamily {
    name: "allocmeter_inner_peak_resident_bytes",
    help: "Peak physical memory of the whole process as the inner allocator reports it. mimalloc: mi_process_info peak_rss (getrusage ru_maxrss on Unix, the peak working set on Windows).",
    kind: MetricType::GAUGE,
};

/// `allocmeter_inner_mapped_bytes`.
pub(crate) const MAPPED: InnerFamily = InnerFamily {
    name: "allocmeter_inner_mapped_bytes",
    help: "Bytes the inner allocator has mapped from the OS, as it counts them. jemalloc: stats.mapped (active extents, at least allocmeter_inner_active_bytes; retained extents excluded). glibc: mallinfo2 hblkhd (blocks too large for the arenas, each served by its own mmap).",
    kind: MetricType::GAUGE,
};

/// `allocmeter_inner_retained_bytes`.
pub(crate) const RETAINED: InnerFamily = InnerFamily {
    name: "allocmeter_inner_retained_bytes",
    help: "Bytes of address space the inner allocator keeps mapped for reuse instead of unmapping it, usually without physical memory behind it. jemalloc: stats.retained.",
    kind: MetricType::GAUGE,
};

/// `allocmeter_inner_metadata_bytes`.
pub(crate) const METADATA: InnerFamily = InnerFamily {
    name: "allocmeter_inner_metadata_bytes",
    help: "Bytes the inner allocator uses for its own bookkeeping. jemalloc: stats.metadata.",
    kind: MetricType::GAUGE,
};

/// `allocmeter_inner_committed_bytes`.
pub(crate) const COMMITTED: InnerFamily = InnerFamily {
    name: "allocmeter_inner_committed_bytes",
    help: "Bytes the inner allocator has committed (made readable and writable) from the OS. mimalloc: mi_process_info current_commit.",
    kind: MetricType::GAUGE,
};

/// `allocmeter_inner_peak_committed_bytes`.
pub(crate) const PEAK_COMMITTED: InnerFamily = InnerFamily {
    name: "allocmeter_inner_peak_committed_bytes",
    help: "The most bytes the inner allocator has had committed at once since the process started. mimalloc: mi_process_info peak_commit.",
    kind: MetricType::GAUGE,
};

/// `allocmeter_inner_arena_bytes`.
pub(crate) const ARENA: InnerFamily = InnerFamily {
    name: "allocmeter_inner_arena_bytes",
    help: "Bytes the inner allocator's arenas hold from the OS (brk for the main arena, mmap'd heaps for the others), in use or free; blocks served by their own mmap excluded. glibc: mallinfo2 arena.",
    kind: MetricType::GAUGE,
};

/// `allocmeter_inner_free_bytes`.
pub(crate) const FREE: InnerFamily = InnerFamily {
    name: "allocmeter_inner_free_bytes",
    help: "Bytes free inside the inner allocator's arenas: held from the OS, in no block. glibc: mallinfo2 fordblks.",
    kind: MetricType::GAUGE,
};

/// `allocmeter_inner_releasable_bytes`.
pub(crate) const RELEASABLE: InnerFamily = InnerFamily {
    name: "allocmeter_inner_releasable_bytes",
    help: "Free bytes at the top of the inner allocator's main heap, which it could give back to the OS (malloc_trim). glibc: mallinfo2 keepcost.",
    kind: MetricType::GAUGE,
};

/// `allocmeter_inner_page_faults_total`.
pub(crate) const PAGE_FAULTS: InnerFamily = InnerFamily {
    name: "allocmeter_inner_page_faults_total",
    help: "Hard (major) page faults of the whole process since it started, as the inner allocator reports them. mimalloc: mi_process_info page_faults (getrusage ru_majflt on Unix).",
    kind: MetricType::COUNTER,
};

/// Every inner family, in exposition order.
const ALL: [&InnerFamily; 13] = [
    &ALLOCATED,
    &ACTIVE,
    &RESIDENT,
    &PEAK_RESIDENT,
    &MAPPED,
    &RETAINED,
    &METADATA,
    &COMMITTED,
    &PEAK_COMMITTED,
    &ARENA,
    &FREE,
    &RELEASABLE,
    &PAGE_FAULTS,
];

/// The families some compiled-in source reads, in exposition order.
pub(crate) fn declared() -> Vec<&'static InnerFamily> {
    let reads: &[&[&InnerFamily]] = &[
        #[cfg(feature = "jemalloc")]
        &jemalloc::READS,
        #[cfg(feature = "mimalloc")]
        &mimalloc::READS,
        #[cfg(inner_glibc)]
        &glibc::READS,
    ];
    ALL.into_iter()
        .filter(|family| reads.iter().any(|r| r.contains(family)))
        .collect()
}

/// One figure from an inner allocator.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Reading {
    /// The metric family it belongs to, such as `allocmeter_inner_resident_bytes`.
    pub family: &'static str,
    /// The allocator that reported it, the value of the `allocator` label.
    pub allocator: &'static str,
    /// The figure, in the family's unit (bytes, or a count).
    pub value: f64,
}

/// The readings of every compiled-in source, at most [`MIN_REFRESH`] old.
/// A source that cannot be read contributes nothing.
pub(crate) fn read() -> Vec<Reading> {
    static CACHE: Cache = Cache::new();
    CACHE.get(Instant::now(), read_now)
}

/// Reads every compiled-in source, now.
fn read_now() -> Vec<Reading> {
    let sources: &[fn() -> Vec<Reading>] = &[
        #[cfg(feature = "jemalloc")]
        jemalloc::read,
        #[cfg(feature = "mimalloc")]
        mimalloc::read,
        #[cfg(inner_glibc)]
        glibc::read,
    ];
    sources.iter().flat_map(|read| read()).collect()
}

/// The last readings and when they were taken.
struct Cache {
    last: Mutex<Option<(Instant, Vec<Reading>)>>,
}

impl Cache {
    const fn new() -> Self {
        Cache {
            last: Mutex::new(None),
        }
    }

    /// The cached readings if they were taken less than [`MIN_REFRESH`]
    /// before `now`, else `fresh()`, which then becomes the cached readings.
    /// Concurrent scrapes wait for one refresh rather than each doing one.
    fn get(&self, now: Instant, fresh: impl FnOnce() -> Vec<Reading>) -> Vec<Reading> {
        // A panic while the lock was held left either the old readings or
        // none: both are fine to use.
        let mut last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((at, readings)) = last.as_ref()
            && now.saturating_duration_since(*at) < MIN_REFRESH
        {
            return readings.clone();
        }
        let readings = fresh();
        *last = Some((now, readings.clone()));
        readings
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reading(value: f64) -> Vec<Reading> {
        vec![Reading {
            family: "allocmeter_inner_test_bytes",
            allocator: "test",
            value,
        }]
    }

    #[test]
    fn readings_are_refreshed_at_most_once_per_min_refresh() {
        let cache = Cache::new();
        let t0 = Instant::now();
        let mut refreshes = 0;
        let mut get = |at: Instant, value: f64| {
            cache.get(at, || {
                refreshes += 1;
                reading(value)
            })
        };
        assert_eq!(get(t0, 1.0), reading(1.0));
        // Scraped again sooner than MIN_REFRESH: the same figures, no refresh.
        assert_eq!(get(t0 + MIN_REFRESH / 2, 2.0), reading(1.0));
        assert_eq!(
            get(t0 + MIN_REFRESH - Duration::from_millis(1), 3.0),
            reading(1.0)
        );
        // Once MIN_REFRESH has passed: fresh figures, and the window restarts.
        assert_eq!(get(t0 + MIN_REFRESH, 4.0), reading(4.0));
        assert_eq!(get(t0 + MIN_REFRESH * 3 / 2, 5.0), reading(4.0));
        assert_eq!(get(t0 + MIN_REFRESH * 2, 6.0), reading(6.0));
        // A clock read earlier than the cached one (another thread's scrape
        // got the lock first) counts as no time passed.
        assert_eq!(get(t0, 7.0), reading(6.0));
        assert_eq!(refreshes, 3);
    }

    #[test]
    fn every_source_compiled_in_reports_every_figure_once() {
        let readings = read_now();
        let mut expected = 0;
        if cfg!(feature = "jemalloc") {
            expected += 6;
        }
        if cfg!(feature = "mimalloc") {
            expected += 5;
        }
        if cfg!(inner_glibc) {
            expected += 5;
        }
        assert_eq!(readings.len(), expected, "{readings:?}");
        for (i, a) in readings.iter().enumerate() {
            assert!(a.family.starts_with("allocmeter_inner_"), "{a:?}");
            assert!(a.value.is_finite() && a.value >= 0.0, "{a:?}");
            for b in &readings[i + 1..] {
                assert!(
                    (a.family, a.allocator) != (b.family, b.allocator),
                    "{a:?} twice"
                );
            }
        }
    }
}
