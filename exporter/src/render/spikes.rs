//! Spike records as reports: each record's raw stacks symbolized, trimmed
//! and merged into its top call sites.
//!
//! Owns: the public report types of `/api/spikes` and
//! [`crate::Exporter::spikes`]. Reads records the aggregator copied out;
//! takes none of its locks.

use crate::aggregate::sites::{RawSite, SiteValues};
use crate::aggregate::spikes::SpikeRecord;
use crate::symbols::{Frame, Symbolizer};

use super::sites::{self, SortBy};

/// Sites reported per spike.
pub const MAX_TOP_SITES: usize = 10;

/// A call site's share of a spike, as `/api/spikes` reports it.
#[derive(Clone, Debug, serde::Serialize)]
pub struct SpikeSite {
    /// The program function that allocated (the leaf once the allocation
    /// machinery is trimmed), or `(other)`.
    pub function: String,
    /// Its source file, if known.
    pub file: Option<String>,
    /// Its line, if known.
    pub line: Option<u32>,
    /// Estimated bytes it allocated during the spike.
    pub alloc_space: f64,
    /// Estimated allocations it made during the spike.
    pub alloc_objects: f64,
    /// Samples behind the estimates, taken during the spike.
    pub samples: u64,
    /// The call stack, innermost first.
    pub stack: Vec<Frame>,
}

/// One detected spike, as `/api/spikes` and [`crate::Exporter::spikes`]
/// report it.
#[derive(Clone, Debug, serde::Serialize)]
pub struct SpikeReport {
    /// Numbered from 1 in the order detected.
    pub id: u64,
    /// Whether it is still in progress.
    pub active: bool,
    /// When its first interval began (the tick before it), ms since the
    /// Unix epoch.
    pub start_unix_ms: u64,
    /// When its last interval above the threshold ended; `None` while active.
    pub end_unix_ms: Option<u64>,
    /// The baseline it was measured against, bytes per second.
    pub baseline_bytes_per_sec: f64,
    /// Its highest interval rate, bytes per second.
    pub peak_bytes_per_sec: f64,
    /// Bytes allocated from start to end (to the latest tick while active):
    /// the exact difference of the counters.
    pub alloc_bytes: u64,
    /// Allocations in the same span, exact.
    pub allocs: u64,
    /// The sites that allocated most during it, by estimated bytes, at most
    /// [`MAX_TOP_SITES`].
    pub top_sites: Vec<SpikeSite>,
}

/// Symbolizes and merges one record's raw stacks into its report.
pub(crate) fn spike_report(record: &SpikeRecord, symbolizer: &mut Symbolizer) -> SpikeReport {
    let raw: Vec<RawSite> = record
        .top
        .iter()
        .map(|t| RawSite {
            stack: t.stack.clone(),
            values: SiteValues {
                alloc_objects: t.totals.objects,
                alloc_space: t.totals.bytes,
                ..SiteValues::default()
            },
            samples: t.totals.samples,
        })
        .collect();
    let merged = sites::merge_same_frames(sites::merge_sites(&raw, symbolizer), symbolizer);
    let top = sites::top(merged, MAX_TOP_SITES, SortBy::AllocSpace);
    let top_sites = sites::site_reports(&top, symbolizer)
        .into_iter()
        .map(|s| SpikeSite {
            function: s.function,
            file: s.file,
            line: s.line,
            alloc_space: s.alloc_space,
            alloc_objects: s.alloc_objects,
            samples: s.samples,
            stack: s.stack,
        })
        .collect();
    let spike = &record.spike;
    SpikeReport {
        id: record.id,
        active: record.active,
        start_unix_ms: spike.start.unix_ms,
        end_unix_ms: (!record.active).then_some(spike.last.unix_ms),
        baseline_bytes_per_sec: spike.baseline,
        peak_bytes_per_sec: spike.peak,
        alloc_bytes: spike
            .last
            .alloc_bytes
            .saturating_sub(spike.start.alloc_bytes),
        allocs: spike.last.allocs.saturating_sub(spike.start.allocs),
        top_sites,
    }
}
