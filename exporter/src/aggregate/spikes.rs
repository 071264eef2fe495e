//! The spike log: a record of each allocation-rate spike the [`Detector`]
//! finds (at most [`MAX_SPIKES`]), with the exact counter deltas over its
//! intervals, its peak rate and baseline, and the call sites that allocated
//! most during it.
//!
//! For the latter it keeps a copy of every raw site's allocated estimates as
//! of the latest quiet tick (the start of a spike's first interval, once one
//! begins), and at each tick inside the spike ranks the raw sites by what they
//! allocated since. It keeps the stacks of the top [`MAX_RAW_SITES`] raw
//! sites; symbolizing and merging them waits until a renderer asks
//! (`render::spikes`), so the aggregator never symbolizes.
//!
//! Owns: the detector, the marks and the records. Reads the site table it is
//! handed; touches no lock (its owner, the aggregator, holds them).

use std::collections::VecDeque;

use super::detector::{Active, Detector, Point, SpikeConfig, Step};
use super::sites::{AllocTotals, SiteTable};

/// Spike records kept; the oldest is dropped beyond this.
pub const MAX_SPIKES: usize = 32;

/// Raw stacks kept per spike, from which its top sites are merged (several
/// raw stacks can become one site once allocation machinery is trimmed).
pub(crate) const MAX_RAW_SITES: usize = 32;

/// What a raw site allocated during a spike (estimates).
#[derive(Clone, Debug)]
pub(crate) struct RawDelta {
    /// The raw stack, as sampled.
    pub stack: Vec<usize>,
    /// What it allocated during the spike.
    pub totals: AllocTotals,
}

/// One spike as the aggregator records it: raw stacks, not yet symbolized.
#[derive(Clone, Debug)]
pub(crate) struct SpikeRecord {
    /// Numbered from 1 in the order detected.
    pub id: u64,
    /// Whether it is still in progress.
    pub active: bool,
    /// Its span, baseline and peak.
    pub spike: Active,
    /// The raw sites that allocated most during it, most bytes first.
    pub top: Vec<RawDelta>,
}

/// The detector's state, as `/api/snapshot` reports it.
#[derive(Clone, Copy, Debug, serde::Serialize)]
pub struct SpikeStatus {
    /// The factor: a spike is a rate above `k` × the baseline.
    pub k: f64,
    /// The floor: a rate at or below this (bytes per second) is never a spike.
    pub min_bytes_per_sec: u64,
    /// The baseline window, seconds.
    pub baseline_secs: f64,
    /// The baseline now (frozen during a spike), bytes per second: the median
    /// allocation rate of the window's intervals that were not part of a
    /// spike.
    pub baseline_bytes_per_sec: f64,
    /// The allocation rate of the latest interval, bytes per second.
    pub current_bytes_per_sec: f64,
    /// Whether a spike is in progress.
    pub active: bool,
}

/// The detector, the per-site marks and the spike records.
pub(crate) struct SpikeLog {
    detector: Detector,
    /// Each raw site's allocated totals at the latest quiet tick; frozen
    /// while a spike lasts (its start).
    mark: Vec<AllocTotals>,
    records: VecDeque<SpikeRecord>,
    next_id: u64,
}

impl SpikeLog {
    pub fn new(config: SpikeConfig) -> Self {
        SpikeLog {
            detector: Detector::new(config),
            mark: Vec::new(),
            records: VecDeque::with_capacity(MAX_SPIKES),
            next_id: 1,
        }
    }

    /// Feeds one tick: the counters, and the site table as of the same
    /// moment (drained). Returns whether the interval ending now was part
    /// of a spike.
    pub fn observe(&mut self, point: Point, table: &SiteTable) -> bool {
        let step = self.detector.step(point);
        match step {
            Step::Started(spike) => {
                if self.records.len() == MAX_SPIKES {
                    self.records.pop_front();
                }
                let id = self.next_id;
                self.next_id += 1;
                self.records.push_back(SpikeRecord {
                    id,
                    active: true,
                    spike,
                    top: Vec::new(),
                });
                self.rank(table);
            }
            Step::Continues(spike) => {
                if let Some(record) = self.records.back_mut() {
                    record.spike = spike;
                }
                self.rank(table);
            }
            Step::Ended(spike) => {
                // The top sites stay as ranked at the spike's last tick, the
                // same span as its counters.
                if let Some(record) = self.records.back_mut() {
                    record.spike = spike;
                    record.active = false;
                }
                table.copy_alloc_totals(&mut self.mark);
            }
            Step::Quiet | Step::NoInterval => table.copy_alloc_totals(&mut self.mark),
        }
        step.in_spike()
    }

    /// Ranks the raw sites by bytes allocated since the mark into the
    /// newest record.
    fn rank(&mut self, table: &SiteTable) {
        let Some(record) = self.records.back_mut() else {
            return;
        };
        let mut deltas: Vec<(usize, AllocTotals)> = table
            .alloc_totals()
            .enumerate()
            .filter_map(|(i, now)| {
                let then = self.mark.get(i).copied().unwrap_or_default();
                let d = now.minus(&then);
                (d.samples > 0 && d.bytes > 0.0).then_some((i, d))
            })
            .collect();
        let by_bytes =
            |a: &(usize, AllocTotals), b: &(usize, AllocTotals)| b.1.bytes.total_cmp(&a.1.bytes);
        if deltas.len() > MAX_RAW_SITES {
            deltas.select_nth_unstable_by(MAX_RAW_SITES - 1, by_bytes);
            deltas.truncate(MAX_RAW_SITES);
        }
        deltas.sort_by(by_bytes);
        record.top.clear();
        record
            .top
            .extend(deltas.into_iter().map(|(i, totals)| RawDelta {
                stack: table.raw_stack(i).to_vec(),
                totals,
            }));
    }

    /// The detector's state now.
    pub fn status(&self) -> SpikeStatus {
        let config = self.detector.config();
        SpikeStatus {
            k: config.k,
            min_bytes_per_sec: config.min_rate,
            baseline_secs: config.baseline.as_secs_f64(),
            baseline_bytes_per_sec: self.detector.baseline(),
            current_bytes_per_sec: self.detector.current(),
            active: self.detector.active(),
        }
    }

    /// A copy of the records, oldest first, for rendering outside the lock.
    pub fn records(&self) -> Vec<SpikeRecord> {
        self.records.iter().cloned().collect()
    }

    /// The most [`SpikeLog::approximate_bytes`] can be with a site table of
    /// at most `max_sites` stacks: the detector's window at its longest,
    /// a mark per site and [`MAX_SPIKES`] records of [`MAX_RAW_SITES`]
    /// stacks of the deepest capture (twice each, for amortised growth).
    pub fn max_bytes(max_sites: usize) -> usize {
        let detector = Detector::max_bytes();
        let marks = 2 * (max_sites + 1) * core::mem::size_of::<AllocTotals>();
        let record = core::mem::size_of::<SpikeRecord>()
            + 2 * MAX_RAW_SITES
                * (core::mem::size_of::<RawDelta>()
                    + allocmeter::stack::MAX_DEPTH * core::mem::size_of::<usize>());
        detector + marks + 2 * MAX_SPIKES * record
    }

    /// Bytes held: the detector's window, the marks and the records.
    pub fn approximate_bytes(&self) -> usize {
        let records: usize = self
            .records
            .iter()
            .map(|r| {
                core::mem::size_of::<SpikeRecord>()
                    + r.top.capacity() * core::mem::size_of::<RawDelta>()
                    + r.top
                        .iter()
                        .map(|t| t.stack.capacity() * core::mem::size_of::<usize>())
                        .sum::<usize>()
            })
            .sum();
        self.detector.approximate_bytes()
            + self.mark.capacity() * core::mem::size_of::<AllocTotals>()
            + self.records.capacity() * core::mem::size_of::<SpikeRecord>()
            + records
    }
}

#[cfg(test)]
mod tests {
    use super::super::detector::test_points::*;
    use super::*;
    use crate::render::spikes::spike_report;
    use crate::symbols::Symbolizer;

    fn table_with(samples: &[(u64, u64, &[usize])]) -> SiteTable {
        let mut t = SiteTable::new(100);
        for &(id, size, stack) in samples {
            t.add_for_test(id, size, stack);
        }
        t
    }

    #[test]
    fn the_log_ranks_sites_by_what_they_allocated_during_the_spike() {
        let mut log = SpikeLog::new(config());
        let busy_before: &[usize] = &[0x100];
        let busy_during: &[usize] = &[0x200];
        // Before: site A allocated a lot.
        let mut table = table_with(&[(1, 50_000_000, busy_before)]);
        let mut bytes = 0u64;
        for s in 0..=10 {
            bytes += (2.0 * MIB) as u64;
            assert!(!log.observe(point(s, bytes), &table));
        }
        // During: B allocates 3 MB, A 1 MB.
        table.add_for_test(2, 3_000_000, busy_during);
        table.add_for_test(3, 1_000_000, busy_before);
        bytes += (40.0 * MIB) as u64;
        assert!(log.observe(point(11, bytes), &table));
        table.add_for_test(4, 500_000, busy_during);
        bytes += (40.0 * MIB) as u64;
        assert!(log.observe(point(12, bytes), &table));
        assert!(log.status().active);
        // After: A allocates again, which must not count.
        table.add_for_test(5, 9_000_000, busy_before);
        bytes += (2.0 * MIB) as u64;
        assert!(!log.observe(point(13, bytes), &table));
        let records = log.records();
        assert_eq!(records.len(), 1);
        let r = &records[0];
        assert!(!r.active);
        assert_eq!(r.top.len(), 2);
        assert_eq!(r.top[0].stack, busy_during);
        assert_eq!(r.top[0].totals.bytes, 3_500_000.0);
        assert_eq!(r.top[0].totals.samples, 2);
        assert_eq!(r.top[1].stack, busy_before);
        assert_eq!(r.top[1].totals.bytes, 1_000_000.0);
        let report = spike_report(r, &mut Symbolizer::new(100));
        assert_eq!(report.id, 1);
        assert_eq!(report.alloc_bytes, (80.0 * MIB) as u64);
        assert_eq!(report.start_unix_ms, point(10, 0).unix_ms);
        assert_eq!(report.end_unix_ms, Some(point(12, 0).unix_ms));
        assert_eq!(report.top_sites.len(), 2);
        assert_eq!(report.top_sites[0].alloc_space, 3_500_000.0);
        assert!(log.approximate_bytes() > 0);
    }

    #[test]
    fn the_log_keeps_the_newest_spikes() {
        let mut log = SpikeLog::new(SpikeConfig {
            k: 2.0,
            min_rate: 0,
            ..config()
        });
        let table = SiteTable::new(10);
        let mut bytes = 0u64;
        let mut second = 0;
        for _ in 0..(MAX_SPIKES + 8) {
            for rate in [1000, 1000, 1000, 1000, 100_000] {
                second += 1;
                bytes += rate;
                log.observe(point(second, bytes), &table);
            }
        }
        let records = log.records();
        assert_eq!(records.len(), MAX_SPIKES);
        assert_eq!(records.last().unwrap().id, MAX_SPIKES as u64 + 8);
        assert_eq!(records[0].id, 9);
    }
}
