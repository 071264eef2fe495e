//! Snapshots of the statistics and the bounded history the aggregator keeps.

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
    /// The statistics.
    pub stats: MemStats,
}

/// The most recent snapshots, oldest first, at most `capacity` of them.
#[derive(Debug)]
pub(crate) struct History {
    snapshots: VecDeque<Snapshot>,
    capacity: usize,
}

impl History {
    /// An empty history that keeps at most `capacity` (at least 1) snapshots.
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        History {
            snapshots: VecDeque::with_capacity(capacity),
            capacity,
        }
    }

    /// Appends `snapshot`, dropping the oldest one when full. Never grows the
    /// buffer past `capacity`, so it never allocates after the first fill.
    pub fn push(&mut self, snapshot: Snapshot) {
        if self.snapshots.len() == self.capacity {
            self.snapshots.pop_front();
        }
        self.snapshots.push_back(snapshot);
    }

    /// Bytes the snapshots kept so far occupy (the buffer is reserved for
    /// `capacity` at the start, but its pages are only touched as it fills).
    pub fn bytes(&self) -> usize {
        self.snapshots.len() * core::mem::size_of::<Snapshot>()
    }

    /// The newest snapshot.
    pub fn latest(&self) -> Option<&Snapshot> {
        self.snapshots.back()
    }

    /// All snapshots, oldest first.
    pub fn to_vec(&self) -> Vec<Snapshot> {
        self.snapshots.iter().copied().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_only_the_newest_capacity_snapshots() {
        let mut h = History::new(3);
        for i in 0..10u64 {
            h.push(Snapshot {
                taken_at: SystemTime::UNIX_EPOCH,
                uptime: Duration::from_secs(i),
                stats: allocmeter::stats(),
            });
        }
        let all = h.to_vec();
        assert_eq!(all.len(), 3);
        assert_eq!(
            all.iter().map(|s| s.uptime.as_secs()).collect::<Vec<_>>(),
            [7, 8, 9]
        );
        assert_eq!(h.latest().unwrap().uptime.as_secs(), 9);
    }
}
