//! [`AllocCollector`]: allocmeter's statistics as Prometheus metric families.

use std::collections::HashMap;
use std::sync::Arc;

use allocmeter::MemStats;
use allocmeter::profile::SamplingStats;
use prometheus::core::{Collector, Desc};
use prometheus::proto::{self, MetricType};

use crate::aggregator::ProfileState;

// The inner allocator's own statistics, when a feature compiles a source in.
// Only the collector reads them, hence a private submodule (kept in its own
// file, src/inner.rs).
#[cfg(any(
    feature = "jemalloc",
    feature = "mimalloc",
    all(feature = "glibc", target_os = "linux", target_env = "gnu")
))]
#[path = "inner.rs"]
mod inner;

/// What one scrape renders: the statistics, read fresh, and what the
/// exporter's site table knows (absent for a collector used on its own).
pub(crate) struct Inputs {
    pub stats: MemStats,
    pub sampling: SamplingStats,
    pub profile: Option<ProfileFigures>,
    /// What the inner allocator itself reports (see `inner`).
    #[cfg(any(
        feature = "jemalloc",
        feature = "mimalloc",
        all(feature = "glibc", target_os = "linux", target_env = "gnu")
    ))]
    pub inner: Vec<inner::Reading>,
}

/// The site table's figures for one scrape.
pub(crate) struct ProfileFigures {
    /// Sites in the table.
    pub sites: usize,
    /// Samples merged into "(other)" because the table was full.
    pub overflowed: u64,
    /// Bytes the site table, symbol cache, snapshot history and spike
    /// records hold.
    pub table_bytes: usize,
    /// The opt-in top-K sites: short function name, in-use bytes, allocated
    /// bytes (estimates). Empty unless enabled.
    pub top: Vec<(String, f64, f64)>,
    /// Panics caught in the aggregator thread and while rendering.
    pub panics: (u64, u64),
}

/// One metric family this collector exports: name, help, type, and how to
/// build its samples. A family with no samples is left out of the scrape.
struct Family {
    name: &'static str,
    help: &'static str,
    kind: MetricType,
    /// The variable label, if the family has one (`kind` of realloc, …).
    label: Option<&'static str>,
    samples: fn(&Inputs) -> Vec<Sample>,
}

/// One sample of a family: a label value (if the family has a label) and a value.
enum Sample {
    Plain(Option<String>, f64),
    Histogram(proto::Histogram),
}

fn one(v: u64) -> Vec<Sample> {
    vec![Sample::Plain(None, v as f64)]
}

fn labelled(label: &str, v: u64) -> Sample {
    Sample::Plain(Some(label.to_string()), v as f64)
}

/// One figure the inner allocator reports, for the JSON API: the metric
/// family it is served as on `/metrics`, its help text, and its value.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct InnerFigure {
    /// The allocator that reported it (`jemalloc`, `mimalloc`, `glibc`).
    pub allocator: &'static str,
    /// The family's name, such as `allocmeter_inner_resident_bytes`.
    pub name: &'static str,
    /// The family's help text.
    pub help: &'static str,
    /// The value, in the family's unit.
    pub value: f64,
}

/// What the inner allocator reports now (at most `inner::MIN_REFRESH` old),
/// in `/metrics` order; empty when no feature compiles a source in.
pub(crate) fn inner_figures() -> Vec<InnerFigure> {
    #[cfg(any(
        feature = "jemalloc",
        feature = "mimalloc",
        all(feature = "glibc", target_os = "linux", target_env = "gnu")
    ))]
    {
        let readings = inner::read();
        FAMILIES
            .iter()
            .flat_map(|family| {
                readings
                    .iter()
                    .filter(|r| r.family == family.name)
                    .map(|r| InnerFigure {
                        allocator: r.allocator,
                        name: family.name,
                        help: family.help,
                        value: r.value,
                    })
            })
            .collect()
    }
    #[cfg(not(any(
        feature = "jemalloc",
        feature = "mimalloc",
        all(feature = "glibc", target_os = "linux", target_env = "gnu")
    )))]
    {
        Vec::new()
    }
}

/// The samples of one `allocmeter_inner_*` family: one per allocator that
/// reported it, labelled `allocator`.
#[cfg(any(
    feature = "jemalloc",
    feature = "mimalloc",
    all(feature = "glibc", target_os = "linux", target_env = "gnu")
))]
fn inner_samples(i: &Inputs, family: &str) -> Vec<Sample> {
    i.inner
        .iter()
        .filter(|r| r.family == family)
        .map(|r| Sample::Plain(Some(r.allocator.to_string()), r.value))
        .collect()
}

/// A histogram over the size classes, using `count(class)` per class and
/// `sum` for `_sum`. The `+Inf` bucket is added by the encoder from the
/// sample count, which is the sum over all classes (the top class included),
/// so `_count` and the `+Inf` bucket always agree.
fn size_histogram(
    s: &MemStats,
    count: fn(&allocmeter::SizeClassStats) -> u64,
    sum: u64,
) -> Vec<Sample> {
    let mut cumulative = 0u64;
    let mut buckets = Vec::with_capacity(s.by_size.len());
    for class in &s.by_size {
        cumulative += count(class);
        if let Some(le) = class.max_size {
            let mut b = proto::Bucket::default();
            b.set_upper_bound(le as f64);
            b.set_cumulative_count(cumulative);
            buckets.push(b);
        }
    }
    let mut h = proto::Histogram::default();
    h.set_bucket(buckets);
    h.set_sample_count(cumulative);
    h.set_sample_sum(sum as f64);
    vec![Sample::Histogram(h)]
}

/// Every family, in exposition order. Names follow DESIGN.md: Go-shaped, base
/// units, `_total` on counters.
const FAMILIES: &[Family] = &[
    Family {
        name: "allocmeter_alloc_bytes_total",
        help: "Bytes allocated since the process started, freed or not (requested sizes; a realloc adds its new size). Go: go_memstats_alloc_bytes_total.",
        kind: MetricType::COUNTER,
        label: None,
        samples: |i| one(i.stats.alloc_bytes),
    },
    Family {
        name: "allocmeter_allocs_total",
        help: "Heap blocks allocated since the process started (a realloc counts one). Go: go_memstats_mallocs_total.",
        kind: MetricType::COUNTER,
        label: None,
        samples: |i| one(i.stats.allocs),
    },
    Family {
        name: "allocmeter_frees_total",
        help: "Heap blocks freed since the process started (a realloc counts one). Go: go_memstats_frees_total.",
        kind: MetricType::COUNTER,
        label: None,
        samples: |i| one(i.stats.frees),
    },
    Family {
        name: "allocmeter_free_bytes_total",
        help: "Bytes freed since the process started (requested sizes; a realloc adds its old size).",
        kind: MetricType::COUNTER,
        label: None,
        samples: |i| one(i.stats.free_bytes),
    },
    Family {
        name: "allocmeter_heap_live_bytes",
        help: "Bytes in heap blocks allocated and not yet freed (requested sizes). Go: go_memstats_heap_alloc_bytes.",
        kind: MetricType::GAUGE,
        label: None,
        samples: |i| one(i.stats.live_bytes),
    },
    Family {
        name: "allocmeter_heap_live_objects",
        help: "Heap blocks allocated and not yet freed. Go: go_memstats_heap_objects.",
        kind: MetricType::GAUGE,
        label: None,
        samples: |i| one(i.stats.live_objects),
    },
    Family {
        name: "allocmeter_reallocs_total",
        help: "Reallocations by how they were served: grown_in_place, shrunk_in_place (same address), moved (new address).",
        kind: MetricType::COUNTER,
        label: Some("kind"),
        samples: |i| {
            let r = &i.stats.reallocs;
            vec![
                labelled("grown_in_place", r.grown_in_place),
                labelled("shrunk_in_place", r.shrunk_in_place),
                labelled("moved", r.moved),
            ]
        },
    },
    Family {
        name: "allocmeter_realloc_delta_bytes_total",
        help: "Bytes by which reallocations grew (direction=grow) or shrank (direction=shrink) their blocks, in place or moved.",
        kind: MetricType::COUNTER,
        label: Some("direction"),
        samples: |i| {
            let r = &i.stats.reallocs;
            vec![
                labelled("grow", r.grown_bytes),
                labelled("shrink", r.shrunk_bytes),
            ]
        },
    },
    Family {
        name: "allocmeter_alloc_failures_total",
        help: "Allocation requests the inner allocator refused (returned null to the caller).",
        kind: MetricType::COUNTER,
        label: None,
        samples: |i| one(i.stats.failures),
    },
    Family {
        name: "allocmeter_alloc_size_bytes",
        help: "Allocations by requested size in bytes (power-of-two buckets; a realloc counts its new size). Go: go_gc_heap_allocs_by_size_bytes.",
        kind: MetricType::HISTOGRAM,
        label: None,
        samples: |i| size_histogram(&i.stats, |c| c.allocs, i.stats.alloc_bytes),
    },
    Family {
        name: "allocmeter_free_size_bytes",
        help: "Frees by requested size in bytes (power-of-two buckets; a realloc counts its old size). Go: go_gc_heap_frees_by_size_bytes.",
        kind: MetricType::HISTOGRAM,
        label: None,
        samples: |i| size_histogram(&i.stats, |c| c.frees, i.stats.free_bytes),
    },
    Family {
        name: "allocmeter_threads",
        help: "Threads that currently record into their own allocmeter slot.",
        kind: MetricType::GAUGE,
        label: None,
        samples: |i| one(i.stats.threads),
    },
    Family {
        name: "allocmeter_telemetry_bytes",
        help: "Bytes of memory allocmeter itself holds: per-thread slots, sample rings, the sampled-pointer table, and the exporter's site table, symbol cache, snapshot history and spike records. Go: go_memstats_buck_hash_sys_bytes.",
        kind: MetricType::GAUGE,
        label: None,
        samples: |i| {
            let extra = i.profile.as_ref().map_or(0, |p| p.table_bytes as u64);
            one(i.stats.telemetry_bytes + extra)
        },
    },
    Family {
        name: "allocmeter_exporter_panics_total",
        help: "Panics the exporter caught and survived, by where: the aggregator thread (it carries on with the next drain) or rendering a response (answered with 500). Any is a bug to report.",
        kind: MetricType::COUNTER,
        label: Some("where"),
        samples: |i| {
            let (aggregator, render) = i.profile.as_ref().map_or((0, 0), |p| p.panics);
            vec![
                labelled("aggregator", aggregator),
                labelled("render", render),
            ]
        },
    },
    Family {
        name: "allocmeter_profile_rate_bytes",
        help: "Mean bytes allocated between two sampled allocations (0: sampling off, 1: every allocation). Go: runtime.MemProfileRate.",
        kind: MetricType::GAUGE,
        label: None,
        samples: |i| one(i.sampling.rate),
    },
    Family {
        name: "allocmeter_profile_samples_total",
        help: "Allocations sampled with their call stack since the process started.",
        kind: MetricType::COUNTER,
        label: None,
        samples: |i| one(i.sampling.samples),
    },
    Family {
        name: "allocmeter_profile_samples_dropped_total",
        help: "Samples lost because a sample ring or the sampled-pointer table was full or busy; a steady rise means profiles under-count.",
        kind: MetricType::COUNTER,
        label: None,
        samples: |i| one(i.sampling.dropped),
    },
    Family {
        name: "allocmeter_profile_frees_lost_total",
        help: "Frees of sampled blocks that could not be reported; those blocks keep counting as in use in the heap profile.",
        kind: MetricType::COUNTER,
        label: None,
        samples: |i| one(i.sampling.frees_lost),
    },
    Family {
        name: "allocmeter_profile_live_samples",
        help: "Sampled blocks not yet freed.",
        kind: MetricType::GAUGE,
        label: None,
        samples: |i| one(i.sampling.live_samples),
    },
    Family {
        name: "allocmeter_profile_sites",
        help: "Call sites in the exporter's site table.",
        kind: MetricType::GAUGE,
        label: None,
        samples: |i| {
            i.profile
                .as_ref()
                .map_or(Vec::new(), |p| one(p.sites as u64))
        },
    },
    Family {
        name: "allocmeter_profile_sites_overflow_total",
        help: "Samples merged into the (other) site because the site table was full.",
        kind: MetricType::COUNTER,
        label: None,
        samples: |i| i.profile.as_ref().map_or(Vec::new(), |p| one(p.overflowed)),
    },
    Family {
        name: "allocmeter_site_inuse_bytes",
        help: "Estimated bytes in use, by allocating function, for the top call sites only (opt-in, capped).",
        kind: MetricType::GAUGE,
        label: Some("function"),
        samples: |i| {
            let top = i.profile.as_ref().map_or(&[][..], |p| &p.top[..]);
            top.iter()
                .map(|(f, inuse, _)| Sample::Plain(Some(f.clone()), *inuse))
                .collect()
        },
    },
    Family {
        name: "allocmeter_site_alloc_bytes_total",
        help: "Estimated bytes allocated since sampling started, by allocating function, for the top call sites only (opt-in, capped).",
        kind: MetricType::COUNTER,
        label: Some("function"),
        samples: |i| {
            let top = i.profile.as_ref().map_or(&[][..], |p| &p.top[..]);
            top.iter()
                .map(|(f, _, alloc)| Sample::Plain(Some(f.clone()), *alloc))
                .collect()
        },
    },
    // What the inner allocator itself reports, beside what allocmeter counts
    // (cargo features `jemalloc`, `mimalloc`, `glibc`; see src/inner.rs). A
    // family is declared only when a source of it is compiled in, and carries
    // one sample per allocator that reports it.
    #[cfg(any(
        feature = "jemalloc",
        all(feature = "glibc", target_os = "linux", target_env = "gnu")
    ))]
    Family {
        name: "allocmeter_inner_allocated_bytes",
        help: "Bytes in blocks the inner allocator has handed out and not taken back, by its own count (its size classes, allocations outside allocmeter included). jemalloc: stats.allocated. glibc: mallinfo2 uordblks, arenas only (blocks served by mmap are in allocmeter_inner_mapped_bytes).",
        kind: MetricType::GAUGE,
        label: Some("allocator"),
        samples: |i| inner_samples(i, "allocmeter_inner_allocated_bytes"),
    },
    #[cfg(feature = "jemalloc")]
    Family {
        name: "allocmeter_inner_active_bytes",
        help: "Bytes in the inner allocator's pages that hold allocated blocks (whole pages, so at least allocmeter_inner_allocated_bytes). jemalloc: stats.active.",
        kind: MetricType::GAUGE,
        label: Some("allocator"),
        samples: |i| inner_samples(i, "allocmeter_inner_active_bytes"),
    },
    #[cfg(any(feature = "jemalloc", feature = "mimalloc"))]
    Family {
        name: "allocmeter_inner_resident_bytes",
        help: "Bytes of physical memory the inner allocator holds, by its own estimate. jemalloc: stats.resident (metadata, active and dirty unused pages; untouched pages may be counted). mimalloc: mi_process_info current_rss (the OS's working set on Windows and macOS; elsewhere mimalloc's committed bytes).",
        kind: MetricType::GAUGE,
        label: Some("allocator"),
        samples: |i| inner_samples(i, "allocmeter_inner_resident_bytes"),
    },
    #[cfg(feature = "mimalloc")]
    Family {
        name: "allocmeter_inner_peak_resident_bytes",
        help: "Peak physical memory of the whole process as the inner allocator reports it. mimalloc: mi_process_info peak_rss (getrusage ru_maxrss on Unix, the peak working set on Windows).",
        kind: MetricType::GAUGE,
        label: Some("allocator"),
        samples: |i| inner_samples(i, "allocmeter_inner_peak_resident_bytes"),
    },
    #[cfg(any(
        feature = "jemalloc",
        all(feature = "glibc", target_os = "linux", target_env = "gnu")
    ))]
    Family {
        name: "allocmeter_inner_mapped_bytes",
        help: "Bytes the inner allocator has mapped from the OS, as it counts them. jemalloc: stats.mapped (active extents, at least allocmeter_inner_active_bytes; retained extents excluded). glibc: mallinfo2 hblkhd (blocks too large for the arenas, each served by its own mmap).",
        kind: MetricType::GAUGE,
        label: Some("allocator"),
        samples: |i| inner_samples(i, "allocmeter_inner_mapped_bytes"),
    },
    #[cfg(feature = "jemalloc")]
    Family {
        name: "allocmeter_inner_retained_bytes",
        help: "Bytes of address space the inner allocator keeps mapped for reuse instead of unmapping it, usually without physical memory behind it. jemalloc: stats.retained.",
        kind: MetricType::GAUGE,
        label: Some("allocator"),
        samples: |i| inner_samples(i, "allocmeter_inner_retained_bytes"),
    },
    #[cfg(feature = "jemalloc")]
    Family {
        name: "allocmeter_inner_metadata_bytes",
        help: "Bytes the inner allocator uses for its own bookkeeping. jemalloc: stats.metadata.",
        kind: MetricType::GAUGE,
        label: Some("allocator"),
        samples: |i| inner_samples(i, "allocmeter_inner_metadata_bytes"),
    },
    #[cfg(feature = "mimalloc")]
    Family {
        name: "allocmeter_inner_committed_bytes",
        help: "Bytes the inner allocator has committed (made readable and writable) from the OS. mimalloc: mi_process_info current_commit.",
        kind: MetricType::GAUGE,
        label: Some("allocator"),
        samples: |i| inner_samples(i, "allocmeter_inner_committed_bytes"),
    },
    #[cfg(feature = "mimalloc")]
    Family {
        name: "allocmeter_inner_peak_committed_bytes",
        help: "The most bytes the inner allocator has had committed at once since the process started. mimalloc: mi_process_info peak_commit.",
        kind: MetricType::GAUGE,
        label: Some("allocator"),
        samples: |i| inner_samples(i, "allocmeter_inner_peak_committed_bytes"),
    },
    #[cfg(all(feature = "glibc", target_os = "linux", target_env = "gnu"))]
    Family {
        name: "allocmeter_inner_arena_bytes",
        help: "Bytes the inner allocator's arenas hold from the OS (brk for the main arena, mmap'd heaps for the others), in use or free; blocks served by their own mmap excluded. glibc: mallinfo2 arena.",
        kind: MetricType::GAUGE,
        label: Some("allocator"),
        samples: |i| inner_samples(i, "allocmeter_inner_arena_bytes"),
    },
    #[cfg(all(feature = "glibc", target_os = "linux", target_env = "gnu"))]
    Family {
        name: "allocmeter_inner_free_bytes",
        help: "Bytes free inside the inner allocator's arenas: held from the OS, in no block. glibc: mallinfo2 fordblks.",
        kind: MetricType::GAUGE,
        label: Some("allocator"),
        samples: |i| inner_samples(i, "allocmeter_inner_free_bytes"),
    },
    #[cfg(all(feature = "glibc", target_os = "linux", target_env = "gnu"))]
    Family {
        name: "allocmeter_inner_releasable_bytes",
        help: "Free bytes at the top of the inner allocator's main heap, which it could give back to the OS (malloc_trim). glibc: mallinfo2 keepcost.",
        kind: MetricType::GAUGE,
        label: Some("allocator"),
        samples: |i| inner_samples(i, "allocmeter_inner_releasable_bytes"),
    },
    #[cfg(feature = "mimalloc")]
    Family {
        name: "allocmeter_inner_page_faults_total",
        help: "Hard (major) page faults of the whole process since it started, as the inner allocator reports them. mimalloc: mi_process_info page_faults (getrusage ru_majflt on Unix).",
        kind: MetricType::COUNTER,
        label: Some("allocator"),
        samples: |i| inner_samples(i, "allocmeter_inner_page_faults_total"),
    },
];

/// A [`prometheus::core::Collector`] over [`allocmeter::stats`].
///
/// Every scrape reads the counters fresh (a read never blocks an allocating
/// thread), so `/metrics` is never an interval behind. The exporter registers
/// one in its own registry; register another into your service's registry to
/// serve allocmeter's metrics from your own endpoint:
///
/// ```
/// let registry = prometheus::Registry::new();
/// registry
///     .register(Box::new(allocmeter_exporter::AllocCollector::new()))
///     .unwrap();
/// let families = registry.gather();
/// assert!(families.iter().any(|f| f.name() == "allocmeter_alloc_bytes_total"));
/// ```
pub struct AllocCollector {
    descs: Vec<Desc>,
    const_labels: Vec<proto::LabelPair>,
    profile: Option<Arc<ProfileState>>,
}

impl AllocCollector {
    /// A collector with no constant labels.
    pub fn new() -> Self {
        Self::with_const_labels(HashMap::new())
            .expect("built-in metric names and no labels are valid")
    }

    /// A collector whose every sample carries `labels` (for example
    /// `service="checkout"`). Fails if a label name is not a valid
    /// Prometheus label name.
    pub fn with_const_labels(labels: HashMap<String, String>) -> prometheus::Result<Self> {
        let mut descs = Vec::with_capacity(FAMILIES.len());
        for f in FAMILIES {
            let variable = f.label.map(|l| vec![l.to_string()]).unwrap_or_default();
            descs.push(Desc::new(
                f.name.to_string(),
                f.help.to_string(),
                variable,
                labels.clone(),
            )?);
        }
        let mut const_labels: Vec<proto::LabelPair> = labels
            .into_iter()
            .map(|(name, value)| {
                let mut pair = proto::LabelPair::default();
                pair.set_name(name);
                pair.set_value(value);
                pair
            })
            .collect();
        const_labels.sort_by(|a, b| a.name().cmp(b.name()));
        Ok(AllocCollector {
            descs,
            const_labels,
            profile: None,
        })
    }

    /// The same collector, also reporting the exporter's site table.
    pub(crate) fn with_profile(mut self, profile: Arc<ProfileState>) -> Self {
        self.profile = Some(profile);
        self
    }

    /// The metric families for `inputs`. Families without samples are left out.
    fn families(&self, inputs: &Inputs) -> Vec<proto::MetricFamily> {
        FAMILIES
            .iter()
            .filter_map(|f| {
                let samples = (f.samples)(inputs);
                if samples.is_empty() {
                    return None;
                }
                let metrics = samples
                    .into_iter()
                    .map(|sample| {
                        let mut m = proto::Metric::default();
                        let mut labels = self.const_labels.clone();
                        match sample {
                            Sample::Plain(label_value, value) => {
                                if let (Some(name), Some(value)) = (f.label, label_value) {
                                    let mut pair = proto::LabelPair::default();
                                    pair.set_name(name.to_string());
                                    pair.set_value(value);
                                    labels.push(pair);
                                }
                                if f.kind == MetricType::COUNTER {
                                    let mut c = proto::Counter::default();
                                    c.set_value(value);
                                    m.set_counter(c);
                                } else {
                                    let mut g = proto::Gauge::default();
                                    g.set_value(value);
                                    m.set_gauge(g);
                                }
                            }
                            Sample::Histogram(h) => m.set_histogram(h),
                        }
                        m.set_label(labels);
                        m
                    })
                    .collect();
                let mut mf = proto::MetricFamily::default();
                mf.set_name(f.name.to_string());
                mf.set_help(f.help.to_string());
                mf.set_field_type(f.kind);
                mf.set_metric(metrics);
                Some(mf)
            })
            .collect()
    }

    fn inputs(&self) -> Inputs {
        Inputs {
            stats: allocmeter::stats(),
            sampling: allocmeter::profile::sampling_stats(),
            profile: self.profile.as_ref().map(|p| p.figures()),
            #[cfg(any(
                feature = "jemalloc",
                feature = "mimalloc",
                all(feature = "glibc", target_os = "linux", target_env = "gnu")
            ))]
            inner: inner::read(),
        }
    }
}

impl Default for AllocCollector {
    fn default() -> Self {
        Self::new()
    }
}

impl Collector for AllocCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<proto::MetricFamily> {
        self.families(&self.inputs())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_count_equals_the_sum_of_all_classes_and_buckets_are_cumulative() {
        let collector = AllocCollector::new();
        let mut inputs = collector.inputs();
        for (i, class) in inputs.stats.by_size.iter_mut().enumerate() {
            class.allocs = i as u64 + 1;
        }
        let s = inputs.stats;
        let families = collector.families(&inputs);
        let f = families
            .iter()
            .find(|f| f.name() == "allocmeter_alloc_size_bytes")
            .unwrap();
        let h = f.get_metric()[0].get_histogram();
        let n = s.by_size.len() as u64;
        assert_eq!(h.get_sample_count(), n * (n + 1) / 2);
        let buckets = h.get_bucket();
        assert_eq!(
            buckets.len(),
            s.by_size.len() - 1,
            "+Inf is left to the encoder"
        );
        assert_eq!(buckets[0].upper_bound(), 8.0);
        assert_eq!(buckets[0].cumulative_count(), 1);
        assert_eq!(buckets[1].cumulative_count(), 3);
        assert!(
            buckets
                .windows(2)
                .all(|w| w[0].upper_bound() < w[1].upper_bound())
        );
    }

    #[test]
    fn every_family_has_help_a_valid_name_and_a_sample() {
        let collector = AllocCollector::with_const_labels(HashMap::from([(
            "service".to_string(),
            "test".to_string(),
        )]))
        .unwrap();
        let families = collector.collect();
        // Without an exporter's site table, the site families are left out.
        let site_families = FAMILIES.iter().filter(|f| f.name.contains("site")).count();
        assert_eq!(site_families, 4);
        assert_eq!(families.len(), FAMILIES.len() - site_families);
        for f in &families {
            assert!(f.name().starts_with("allocmeter_"));
            assert!(!f.help().is_empty());
            assert!(!f.get_metric().is_empty());
            if f.get_field_type() == MetricType::COUNTER {
                assert!(f.name().ends_with("_total"), "{}", f.name());
            } else {
                assert!(!f.name().ends_with("_total"), "{}", f.name());
            }
            for m in f.get_metric() {
                assert!(
                    m.get_label()
                        .iter()
                        .any(|l| l.name() == "service" && l.value() == "test")
                );
            }
        }
    }

    #[cfg(any(
        feature = "jemalloc",
        feature = "mimalloc",
        all(feature = "glibc", target_os = "linux", target_env = "gnu")
    ))]
    #[test]
    fn every_inner_reading_is_exported_once_labelled_with_its_allocator() {
        let collector = AllocCollector::new();
        let inputs = collector.inputs();
        assert!(!inputs.inner.is_empty());
        let families = collector.families(&inputs);
        for r in &inputs.inner {
            let declared = FAMILIES.iter().find(|f| f.name == r.family);
            let declared = declared.unwrap_or_else(|| panic!("{} is not declared", r.family));
            assert_eq!(declared.label, Some("allocator"));
            let f = families.iter().find(|f| f.name() == r.family).unwrap();
            let mut values = f.get_metric().iter().filter_map(|m| {
                let label = m.get_label().iter().find(|l| l.name() == "allocator")?;
                (label.value() == r.allocator).then(|| match f.get_field_type() {
                    MetricType::COUNTER => m.get_counter().get_value(),
                    _ => m.get_gauge().get_value(),
                })
            });
            assert_eq!(values.next(), Some(r.value), "{r:?}");
            assert_eq!(values.next(), None, "{r:?} twice");
        }
        // No inner family is declared that no compiled-in source reports.
        for f in FAMILIES
            .iter()
            .filter(|f| f.name.starts_with("allocmeter_inner_"))
        {
            assert!(
                inputs.inner.iter().any(|r| r.family == f.name),
                "{} has no source",
                f.name
            );
        }
    }

    #[cfg(not(any(
        feature = "jemalloc",
        feature = "mimalloc",
        all(feature = "glibc", target_os = "linux", target_env = "gnu")
    )))]
    #[test]
    fn without_an_inner_allocator_feature_no_inner_family_is_declared() {
        assert!(
            !FAMILIES
                .iter()
                .any(|f| f.name.starts_with("allocmeter_inner_"))
        );
        let collector = AllocCollector::new();
        let names: Vec<String> = collector.desc().iter().map(|d| d.fq_name.clone()).collect();
        assert!(!names.iter().any(|n| n.starts_with("allocmeter_inner_")));
    }

    #[test]
    fn bad_const_label_names_are_an_error() {
        let r = AllocCollector::with_const_labels(HashMap::from([(
            "bad-name".to_string(),
            "x".to_string(),
        )]));
        assert!(r.is_err());
    }
}
