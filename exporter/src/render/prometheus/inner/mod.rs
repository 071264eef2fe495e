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
//! A reading is cheap but not free (jemalloc refreshes its statistics by
//! merging every arena's; `mallinfo2` locks each arena and walks its free
//! lists), so readings are taken at most once per [`MIN_REFRESH`] and shared
//! by every scrape in between.

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Readings are refreshed at most this often, however often `/metrics` is
/// scraped; a scrape within this time of the last refresh gets the same
/// figures.
pub(crate) const MIN_REFRESH: Duration = Duration::from_millis(100);

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

/// jemalloc's statistics through `mallctl`.
#[cfg(feature = "jemalloc")]
mod jemalloc {
    use super::Reading;
    use tikv_jemalloc_ctl::{epoch, stats};

    /// Reads one `stats.*` figure from the current snapshot.
    type Read = fn() -> tikv_jemalloc_ctl::Result<usize>;

    /// jemalloc's figures, all from one refresh of its statistics.
    pub(super) fn read() -> Vec<Reading> {
        // jemalloc's `stats.*` are a snapshot that only advancing the epoch
        // refreshes: advance it once, then read every figure from the same
        // snapshot, so that they are consistent with each other.
        if epoch::advance().is_err() {
            return Vec::new();
        }
        let figures: [(&'static str, Read); 6] = [
            ("allocmeter_inner_allocated_bytes", stats::allocated::read),
            ("allocmeter_inner_active_bytes", stats::active::read),
            ("allocmeter_inner_resident_bytes", stats::resident::read),
            ("allocmeter_inner_mapped_bytes", stats::mapped::read),
            ("allocmeter_inner_retained_bytes", stats::retained::read),
            ("allocmeter_inner_metadata_bytes", stats::metadata::read),
        ];
        figures
            .into_iter()
            .filter_map(|(family, read)| {
                let value = read().ok()? as f64;
                Some(Reading {
                    family,
                    allocator: "jemalloc",
                    value,
                })
            })
            .collect()
    }
}

/// mimalloc's process figures through `mi_process_info`.
#[cfg(feature = "mimalloc")]
mod mimalloc {
    use std::ptr::null_mut;

    use super::Reading;

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
        [
            ("allocmeter_inner_resident_bytes", current_rss),
            ("allocmeter_inner_peak_resident_bytes", peak_rss),
            ("allocmeter_inner_committed_bytes", current_commit),
            ("allocmeter_inner_peak_committed_bytes", peak_commit),
            ("allocmeter_inner_page_faults_total", page_faults),
        ]
        .into_iter()
        .map(|(family, value)| Reading {
            family,
            allocator: "mimalloc",
            value: value as f64,
        })
        .collect()
    }
}

/// glibc malloc's figures through `mallinfo2`.
#[cfg(inner_glibc)]
mod glibc {
    use super::Reading;

    /// glibc's figures, summed over all its arenas.
    pub(super) fn read() -> Vec<Reading> {
        // SAFETY: `mallinfo2` (glibc 2.33 and later) takes no arguments and
        // returns a plain struct of `size_t`s by value, which the libc crate
        // declares with glibc's layout. It is thread-safe: it locks each
        // arena while summing it. It does not allocate, so calling it from
        // inside a scrape cannot re-enter the global allocator.
        let info = unsafe { libc::mallinfo2() };
        [
            ("allocmeter_inner_arena_bytes", info.arena),
            ("allocmeter_inner_mapped_bytes", info.hblkhd),
            ("allocmeter_inner_allocated_bytes", info.uordblks),
            ("allocmeter_inner_free_bytes", info.fordblks),
            ("allocmeter_inner_releasable_bytes", info.keepcost),
        ]
        .into_iter()
        .map(|(family, value)| Reading {
            family,
            allocator: "glibc",
            value: value as f64,
        })
        .collect()
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
