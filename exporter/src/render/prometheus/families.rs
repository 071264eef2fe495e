//! The metric families allocmeter exports, one declarative row each: name,
//! help, type, label, and how to read its samples from one [`Scrape`].
//!
//! Owns: the family table and the helpers that build samples. Reads only the
//! scrape it is given.

use allocmeter::MemStats;
use prometheus::proto::{self, MetricType};

use super::Scrape;

/// One metric family this collector exports: name, help, type, and how to
/// build its samples. A family with no samples is left out of the scrape.
pub(super) struct Family {
    pub name: &'static str,
    pub help: &'static str,
    pub kind: MetricType,
    /// The variable label, if the family has one (`kind` of realloc, …).
    pub label: Option<&'static str>,
    pub samples: fn(&Scrape) -> Vec<Series>,
}

/// One sample of a family: a label value (if the family has a label) and a value.
pub(super) enum Series {
    Plain(Option<String>, f64),
    Histogram(proto::Histogram),
}

fn one(v: u64) -> Vec<Series> {
    vec![Series::Plain(None, v as f64)]
}

fn labelled(label: &str, v: u64) -> Series {
    Series::Plain(Some(label.to_string()), v as f64)
}

/// The samples of one `allocmeter_inner_*` family: one per allocator that
/// reported it, labelled `allocator`.
#[cfg(inner_stats)]
fn inner_samples(i: &Scrape, family: &str) -> Vec<Series> {
    i.inner
        .iter()
        .filter(|r| r.family == family)
        .map(|r| Series::Plain(Some(r.allocator.to_string()), r.value))
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
) -> Vec<Series> {
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
    vec![Series::Histogram(h)]
}

/// Every family, in exposition order. Names are Go-shaped (`go_memstats_*`
/// and `runtime.MemStats` fields, see each help text), in base units, with
/// `_total` on counters.
pub(super) const FAMILIES: &[Family] = &[
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
            let panics = i.profile.as_ref().map(|p| p.panics).unwrap_or_default();
            vec![
                labelled("aggregator", panics.aggregator),
                labelled("render", panics.render),
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
                .map(|s| Series::Plain(Some(s.function.clone()), s.inuse_space))
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
                .map(|s| Series::Plain(Some(s.function.clone()), s.alloc_space))
                .collect()
        },
    },
    // What the inner allocator itself reports, beside what allocmeter counts
    // (cargo features `jemalloc`, `mimalloc`, `glibc`; see `inner/`). A
    // family is declared only when a source of it is compiled in, and carries
    // one sample per allocator that reports it.
    #[cfg(any(feature = "jemalloc", inner_glibc))]
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
    #[cfg(any(feature = "jemalloc", inner_glibc))]
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
    #[cfg(inner_glibc)]
    Family {
        name: "allocmeter_inner_arena_bytes",
        help: "Bytes the inner allocator's arenas hold from the OS (brk for the main arena, mmap'd heaps for the others), in use or free; blocks served by their own mmap excluded. glibc: mallinfo2 arena.",
        kind: MetricType::GAUGE,
        label: Some("allocator"),
        samples: |i| inner_samples(i, "allocmeter_inner_arena_bytes"),
    },
    #[cfg(inner_glibc)]
    Family {
        name: "allocmeter_inner_free_bytes",
        help: "Bytes free inside the inner allocator's arenas: held from the OS, in no block. glibc: mallinfo2 fordblks.",
        kind: MetricType::GAUGE,
        label: Some("allocator"),
        samples: |i| inner_samples(i, "allocmeter_inner_free_bytes"),
    },
    #[cfg(inner_glibc)]
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
