//! Snapshots of the statistics and the bounded history the aggregator keeps.
//!
//! Owns: [`Snapshot`] (the statistics at one tick), [`HistoryPoint`] (a
//! snapshot with its rates, as `/api/history` serves it) and the bounded
//! [`History`]. Pure data: it reads no counter and takes no lock (the
//! aggregator holds the history's).

use std::collections::VecDeque;
use std::time::{Duration, SystemTime};

use allocmeter::MemStats;

/// The statistics at one moment.
#[derive(Clone, Copy, Debug)]
pub struct Snapshot {
    /// When the statistics were read (wall clock).
    pub taken_at: SystemTime,
    /// Time since the exporter started.
    pub uptime: Duration,
    /// The service's statistics: [`allocmeter::StatsSplit::program`], what
    /// the exporter allocates left out.
    pub stats: MemStats,
}

/// One point of the history as `/api/history` serves it: the counters and
/// gauges at one tick, and the rates over the interval that ended there.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct HistoryPoint {
    /// When the statistics were read, ms since the Unix epoch.
    pub unix_ms: u64,
    /// Time since the exporter started, ms.
    pub uptime_ms: u64,
    /// Bytes allocated since the process started (cumulative).
    pub alloc_bytes: u64,
    /// Allocations since the process started (cumulative).
    pub allocs: u64,
    /// Bytes freed since the process started (cumulative).
    pub free_bytes: u64,
    /// Frees since the process started (cumulative).
    pub frees: u64,
    /// Bytes live on the heap (gauge).
    pub live_bytes: u64,
    /// Blocks live on the heap (gauge).
    pub live_objects: u64,
    /// Bytes allocated per second since the previous point (0 for the first
    /// point ever taken).
    pub alloc_bytes_per_sec: f64,
    /// Allocations per second since the previous point.
    pub allocs_per_sec: f64,
    /// Bytes freed per second since the previous point.
    pub free_bytes_per_sec: f64,
    /// Frees per second since the previous point.
    pub frees_per_sec: f64,
    /// Whether the interval that ended at this point was part of a detected
    /// allocation-rate spike.
    pub spike: bool,
}

/// `at` in milliseconds since the Unix epoch (0 before it).
pub(crate) fn unix_ms(at: SystemTime) -> u64 {
    at.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The most recent points, oldest first, at most `capacity` of them, and
/// the newest snapshot whole.
///
/// A point keeps the counters and gauges `/api/history` serves (about 100
/// bytes), not the whole statistics (about 1.2 KiB with the size classes):
/// the buffer is reserved for `capacity` points at the start and counts in
/// allocmeter's own memory from then on.
#[derive(Debug)]
pub(crate) struct History {
    points: VecDeque<HistoryPoint>,
    /// The newest snapshot: what `latest` returns, and what the next
    /// point's rates are taken against (to the nanosecond).
    latest: Option<Snapshot>,
    capacity: usize,
}

impl History {
    /// An empty history that keeps at most `capacity` (at least 1) points.
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        History {
            points: VecDeque::with_capacity(capacity),
            latest: None,
            capacity,
        }
    }

    /// How many points it keeps at most.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Appends the point of `snapshot`, with its rates over the interval
    /// since the previous snapshot and whether that interval was part of a
    /// spike, dropping the oldest point when full; `snapshot` becomes the
    /// latest. Never grows the buffer past `capacity`, so it never
    /// allocates after the start.
    pub fn push(&mut self, snapshot: Snapshot, spike: bool) {
        let rates = match &self.latest {
            Some(previous) if snapshot.uptime > previous.uptime => {
                let secs = (snapshot.uptime - previous.uptime).as_secs_f64();
                let (a, b) = (&previous.stats, &snapshot.stats);
                let per_sec = |then: u64, now: u64| now.saturating_sub(then) as f64 / secs;
                [
                    per_sec(a.alloc_bytes, b.alloc_bytes),
                    per_sec(a.allocs, b.allocs),
                    per_sec(a.free_bytes, b.free_bytes),
                    per_sec(a.frees, b.frees),
                ]
            }
            _ => [0.0; 4],
        };
        if self.points.len() == self.capacity {
            self.points.pop_front();
        }
        let s = &snapshot.stats;
        self.points.push_back(HistoryPoint {
            unix_ms: unix_ms(snapshot.taken_at),
            uptime_ms: snapshot.uptime.as_millis() as u64,
            alloc_bytes: s.alloc_bytes,
            allocs: s.allocs,
            free_bytes: s.free_bytes,
            frees: s.frees,
            live_bytes: s.live_bytes,
            live_objects: s.live_objects,
            alloc_bytes_per_sec: rates[0],
            allocs_per_sec: rates[1],
            free_bytes_per_sec: rates[2],
            frees_per_sec: rates[3],
            spike,
        });
        self.latest = Some(snapshot);
    }

    /// The most [`History::bytes`] can be: every place taken.
    pub fn max_bytes(&self) -> usize {
        self.capacity * core::mem::size_of::<HistoryPoint>()
    }

    /// Bytes the points kept so far occupy (the buffer is reserved for
    /// `capacity` at the start, but its pages are only touched as it fills).
    pub fn bytes(&self) -> usize {
        self.points.len() * core::mem::size_of::<HistoryPoint>()
    }

    /// The newest snapshot.
    pub fn latest(&self) -> Option<&Snapshot> {
        self.latest.as_ref()
    }

    /// The points taken strictly after `since_unix_ms` (all of them without
    /// it), oldest first.
    pub fn points(&self, since_unix_ms: Option<u64>) -> Vec<HistoryPoint> {
        self.points
            .iter()
            .filter(|p| since_unix_ms.is_none_or(|since| p.unix_ms > since))
            .copied()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_only_the_newest_capacity_snapshots() {
        let mut h = History::new(3);
        for i in 0..10u64 {
            h.push(
                Snapshot {
                    taken_at: SystemTime::UNIX_EPOCH,
                    uptime: Duration::from_secs(i),
                    stats: allocmeter::stats(),
                },
                false,
            );
        }
        let all = h.points(None);
        assert_eq!(all.len(), 3);
        assert_eq!(
            all.iter().map(|p| p.uptime_ms / 1000).collect::<Vec<_>>(),
            [7, 8, 9]
        );
        assert_eq!(h.latest().unwrap().uptime.as_secs(), 9);
    }

    /// The history is reserved whole when the exporter starts, and counts
    /// in allocmeter's own memory from then on: a point per tick must stay
    /// small, not a copy of the statistics with their 31 size classes.
    #[test]
    fn a_full_default_history_takes_under_64_kib() {
        // `Builder::history`'s docs give this size.
        assert_eq!(core::mem::size_of::<HistoryPoint>(), 104);
        let h = History::new(crate::DEFAULT_HISTORY);
        assert!(
            h.max_bytes() < 64 << 10,
            "{} bytes for {} points",
            h.max_bytes(),
            h.capacity()
        );
    }
}

#[cfg(test)]
mod point_tests {
    use super::*;

    fn at(secs: u64, alloc_bytes: u64, allocs: u64) -> Snapshot {
        let mut stats = allocmeter::stats();
        stats.alloc_bytes = alloc_bytes;
        stats.allocs = allocs;
        stats.free_bytes = alloc_bytes / 2;
        stats.frees = allocs / 2;
        Snapshot {
            taken_at: SystemTime::UNIX_EPOCH + Duration::from_secs(1_000 + secs),
            uptime: Duration::from_secs(secs),
            stats,
        }
    }

    #[test]
    fn points_carry_rates_since_the_previous_snapshot_and_filter_by_time() {
        let mut h = History::new(3);
        h.push(at(0, 1_000, 10), false);
        h.push(at(2, 5_000, 30), true);
        h.push(at(3, 5_500, 31), false);
        h.push(at(5, 6_500, 41), false);
        let all = h.points(None);
        assert_eq!(all.len(), 3);
        assert_eq!(all[0].unix_ms, 1_002_000);
        assert_eq!(all[0].uptime_ms, 2_000);
        assert_eq!(all[0].alloc_bytes_per_sec, 2_000.0, "since the dropped one");
        assert_eq!(all[0].allocs_per_sec, 10.0);
        assert_eq!(all[0].free_bytes_per_sec, 1_000.0);
        assert_eq!(all[0].frees_per_sec, 5.0);
        assert!(all[0].spike);
        assert_eq!(all[1].alloc_bytes_per_sec, 500.0);
        assert_eq!(all[2].alloc_bytes_per_sec, 500.0);
        assert!(!all[2].spike);
        let since = h.points(Some(1_003_000));
        assert_eq!(since, all[2..]);
        assert!(h.points(Some(1_005_000)).is_empty());

        let mut first = History::new(3);
        first.push(at(7, 100, 1), false);
        assert_eq!(first.points(None)[0].alloc_bytes_per_sec, 0.0);
    }
}
