//! The metric families allocmeter exports, one declarative row each: name,
//! help, type, label, and how to read its samples from one [`Scrape`].
//!
//! Owns: the family table and the helpers that build samples. Reads only the
//! scrape it is given.

use std::sync::LazyLock;

use allocmeter::MemStats;
use prometheus::proto::{self, MetricType};

use super::Scrape;

/// One metric family this collector exports: name, help, type, and how to
/// build its samples. A family with no samples is left out of the scrape.
#[derive(Clone)]
pub(crate) struct Family {
    pub name: &'static str,
    pub help: &'static str,
    pub kind: MetricType,
    /// The variable label, if the family has one (`kind` of realloc, …).
    pub label: Option<&'static str>,
    pub samples: Samples,
}

/// Where a family's samples come from.
#[derive(Clone, Copy)]
pub(crate) enum Samples {
    /// Read from the scrape by this function, which appends them to the
    /// `Vec` it is given (one reused for every family of a scrape, rather
    /// than a `Vec` per family).
    Of(fn(&Scrape, &mut Vec<Series>)),
    /// The inner allocator's readings of this family, one per allocator
    /// that reports it, labelled `allocator`.
    #[cfg(inner_stats)]
    Inner,
}

impl Family {
    /// Appends this family's samples in `scrape` to `out`.
    pub fn samples(&self, scrape: &Scrape, out: &mut Vec<Series>) {
        match self.samples {
            Samples::Of(read) => read(scrape, out),
            #[cfg(inner_stats)]
            Samples::Inner => inner_samples(scrape, self.name, out),
        }
    }
}

/// One sample of a family: a label value (if the family has a label) and a value.
pub(crate) enum Series {
    Plain(Option<String>, f64),
    Histogram(proto::Histogram),
}

fn one(v: u64) -> Series {
    Series::Plain(None, v as f64)
}

fn labelled(label: &str, v: u64) -> Series {
    Series::Plain(Some(label.to_string()), v as f64)
}

/// The samples of one `allocmeter_inner_*` family: one per allocator that
/// reported it, labelled `allocator`.
#[cfg(inner_stats)]
fn inner_samples(i: &Scrape, family: &str, out: &mut Vec<Series>) {
    out.extend(
        i.inner
            .iter()
            .filter(|r| r.family == family)
            .map(|r| Series::Plain(Some(r.allocator.to_string()), r.value)),
    );
}

/// A histogram over the size classes, using `count(class)` per class and
/// `sum` for `_sum`. The `+Inf` bucket is added by the encoder from the
/// sample count, which is the sum over all classes (the top class included),
/// so `_count` and the `+Inf` bucket always agree.
fn size_histogram(s: &MemStats, count: fn(&allocmeter::SizeClassStats) -> u64, sum: u64) -> Series {
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
    Series::Histogram(h)
}

/// Every family, in exposition order: the built-in ones, then the inner
/// allocator's that a compiled-in source reads (see `inner/`).
pub(crate) static FAMILIES: LazyLock<Vec<Family>> = LazyLock::new(|| {
    #[cfg_attr(not(inner_stats), allow(unused_mut))]
    let mut families: Vec<Family> = BUILT_IN.to_vec();
    #[cfg(inner_stats)]
    families.extend(super::inner::declared().into_iter().map(|f| Family {
        name: f.name,
        help: f.help,
        kind: f.kind,
        label: Some("allocator"),
        samples: Samples::Inner,
    }));
    #[cfg(feature = "tracing")]
    families.extend_from_slice(super::spans::FAMILIES);
    families
});

/// The families read from allocmeter and the exporter, in exposition order. Names are Go-shaped (`go_memstats_*`
/// and `runtime.MemStats` fields, see each help text), in base units, with
/// `_total` on counters.
const BUILT_IN: &[Family] = &[
    Family {
        name: "allocmeter_alloc_bytes_total",
        help: "Bytes the service allocated since the process started, freed or not (requested sizes; a realloc adds its new size). allocmeter's own allocations are left out, exactly (allocmeter_exporter_alloc_bytes_total). Go: go_memstats_alloc_bytes_total.",
        kind: MetricType::COUNTER,
        label: None,
        samples: Samples::Of(|i, out| out.push(one(i.stats.alloc_bytes))),
    },
    Family {
        name: "allocmeter_allocs_total",
        help: "Heap blocks the service allocated since the process started (a realloc counts one); allocmeter's own are in allocmeter_exporter_allocs_total. Go: go_memstats_mallocs_total.",
        kind: MetricType::COUNTER,
        label: None,
        samples: Samples::Of(|i, out| out.push(one(i.stats.allocs))),
    },
    Family {
        name: "allocmeter_frees_total",
        help: "Heap blocks the service freed since the process started (a realloc counts one); allocmeter's own are in allocmeter_exporter_frees_total. Go: go_memstats_frees_total.",
        kind: MetricType::COUNTER,
        label: None,
        samples: Samples::Of(|i, out| out.push(one(i.stats.frees))),
    },
    Family {
        name: "allocmeter_free_bytes_total",
        help: "Bytes the service freed since the process started (requested sizes; a realloc adds its old size); allocmeter's own are in allocmeter_exporter_free_bytes_total.",
        kind: MetricType::COUNTER,
        label: None,
        samples: Samples::Of(|i, out| out.push(one(i.stats.free_bytes))),
    },
    Family {
        name: "allocmeter_heap_live_bytes",
        help: "Bytes in heap blocks the service allocated and has not freed (requested sizes). The exporter's own heap is left out, exactly (allocmeter_exporter_heap_live_bytes), so looking does not move it. Go: go_memstats_heap_alloc_bytes.",
        kind: MetricType::GAUGE,
        label: None,
        samples: Samples::Of(|i, out| out.push(one(i.stats.live_bytes))),
    },
    Family {
        name: "allocmeter_heap_live_objects",
        help: "Heap blocks the service allocated and has not freed; the exporter's own are in allocmeter_exporter_heap_live_objects. Go: go_memstats_heap_objects.",
        kind: MetricType::GAUGE,
        label: None,
        samples: Samples::Of(|i, out| out.push(one(i.stats.live_objects))),
    },
    Family {
        name: "allocmeter_heap_live_bytes_peak",
        help: "The highest allocmeter_heap_live_bytes seen at the exporter's ticks since it started (a peak that rises and falls between two ticks is not seen); /debug/pprof/peak has the call sites as they stood then. Falls only when the process restarts. Exported with an exporter only.",
        kind: MetricType::GAUGE,
        label: None,
        samples: Samples::Of(|i, out| {
            out.extend(i.profile.as_ref().map(|p| one(p.peak_live_bytes)))
        }),
    },
    Family {
        name: "allocmeter_reallocs_total",
        help: "The service's reallocations by how they were served: grown_in_place, shrunk_in_place (same address), moved (new address).",
        kind: MetricType::COUNTER,
        label: Some("kind"),
        samples: Samples::Of(|i, out| {
            let r = &i.stats.reallocs;
            out.extend([
                labelled("grown_in_place", r.grown_in_place),
                labelled("shrunk_in_place", r.shrunk_in_place),
                labelled("moved", r.moved),
            ]);
        }),
    },
    Family {
        name: "allocmeter_realloc_delta_bytes_total",
        help: "Bytes by which the service's reallocations grew (direction=grow) or shrank (direction=shrink) their blocks, in place or moved.",
        kind: MetricType::COUNTER,
        label: Some("direction"),
        samples: Samples::Of(|i, out| {
            let r = &i.stats.reallocs;
            out.extend([
                labelled("grow", r.grown_bytes),
                labelled("shrink", r.shrunk_bytes),
            ]);
        }),
    },
    Family {
        name: "allocmeter_alloc_failures_total",
        help: "The service's allocation requests the inner allocator refused (returned null to the caller).",
        kind: MetricType::COUNTER,
        label: None,
        samples: Samples::Of(|i, out| out.push(one(i.stats.failures))),
    },
    Family {
        name: "allocmeter_alloc_size_bytes",
        help: "The service's allocations by requested size in bytes (power-of-two buckets; a realloc counts its new size; allocmeter's own left out). Go: go_gc_heap_allocs_by_size_bytes.",
        kind: MetricType::HISTOGRAM,
        label: None,
        samples: Samples::Of(|i, out| {
            out.push(size_histogram(&i.stats, |c| c.allocs, i.stats.alloc_bytes))
        }),
    },
    Family {
        name: "allocmeter_free_size_bytes",
        help: "The service's frees by requested size in bytes (power-of-two buckets; a realloc counts its old size; allocmeter's own left out). Go: go_gc_heap_frees_by_size_bytes.",
        kind: MetricType::HISTOGRAM,
        label: None,
        samples: Samples::Of(|i, out| {
            out.push(size_histogram(&i.stats, |c| c.frees, i.stats.free_bytes))
        }),
    },
    Family {
        name: "allocmeter_threads",
        help: "Threads that currently record into their own allocmeter slot.",
        kind: MetricType::GAUGE,
        label: None,
        samples: Samples::Of(|i, out| out.push(one(i.stats.threads))),
    },
    Family {
        name: "allocmeter_telemetry_bytes",
        help: "Bytes of memory allocmeter itself holds: the allocator's structures outside the heap (per-thread slots, sample rings, the sampled-pointer table) plus the exporter's heap, counted exactly (allocmeter_exporter_heap_live_bytes: site table, symbolizer, history, spike records, HTTP buffers and bodies). Go: go_memstats_buck_hash_sys_bytes.",
        kind: MetricType::GAUGE,
        label: None,
        samples: Samples::Of(|i, out| {
            out.push(one(i.stats.telemetry_bytes + i.internal.live_bytes))
        }),
    },
    Family {
        name: "allocmeter_exporter_heap_live_bytes",
        help: "Bytes in heap blocks allocmeter's own code allocated and has not freed: the exporter's threads, and its renders and start on the service's threads. Exact; left out of allocmeter_heap_live_bytes, included in allocmeter_telemetry_bytes.",
        kind: MetricType::GAUGE,
        label: None,
        samples: Samples::Of(|i, out| out.push(one(i.internal.live_bytes))),
    },
    Family {
        name: "allocmeter_exporter_heap_live_objects",
        help: "Heap blocks allocmeter's own code allocated and has not freed (the exporter's; left out of allocmeter_heap_live_objects).",
        kind: MetricType::GAUGE,
        label: None,
        samples: Samples::Of(|i, out| out.push(one(i.internal.live_objects))),
    },
    Family {
        name: "allocmeter_exporter_alloc_bytes_total",
        help: "Bytes allocmeter's own code allocated since the process started, freed or not: what serving, rendering and aggregating cost (left out of allocmeter_alloc_bytes_total).",
        kind: MetricType::COUNTER,
        label: None,
        samples: Samples::Of(|i, out| out.push(one(i.internal.alloc_bytes))),
    },
    Family {
        name: "allocmeter_exporter_allocs_total",
        help: "Heap blocks allocmeter's own code allocated since the process started (left out of allocmeter_allocs_total).",
        kind: MetricType::COUNTER,
        label: None,
        samples: Samples::Of(|i, out| out.push(one(i.internal.allocs))),
    },
    Family {
        name: "allocmeter_exporter_free_bytes_total",
        help: "Bytes allocmeter's own code freed since the process started (left out of allocmeter_free_bytes_total).",
        kind: MetricType::COUNTER,
        label: None,
        samples: Samples::Of(|i, out| out.push(one(i.internal.free_bytes))),
    },
    Family {
        name: "allocmeter_exporter_frees_total",
        help: "Heap blocks allocmeter's own code freed since the process started (left out of allocmeter_frees_total).",
        kind: MetricType::COUNTER,
        label: None,
        samples: Samples::Of(|i, out| out.push(one(i.internal.frees))),
    },
    Family {
        name: "allocmeter_exporter_panics_total",
        help: "Panics the exporter caught and survived, by where: the aggregator thread (it carries on with the next drain) or rendering a response (answered with 500). Any is a bug to report.",
        kind: MetricType::COUNTER,
        label: Some("where"),
        samples: Samples::Of(|i, out| {
            let panics = i.profile.as_ref().map(|p| p.panics).unwrap_or_default();
            out.extend([
                labelled("aggregator", panics.aggregator),
                labelled("render", panics.render),
            ]);
        }),
    },
    Family {
        name: "allocmeter_profile_rate_bytes",
        help: "Mean bytes allocated between two sampled allocations (0: sampling off, 1: every allocation). Go: runtime.MemProfileRate.",
        kind: MetricType::GAUGE,
        label: None,
        samples: Samples::Of(|i, out| out.push(one(i.sampling.rate))),
    },
    Family {
        name: "allocmeter_profile_samples_total",
        help: "Allocations sampled with their call stack since the process started.",
        kind: MetricType::COUNTER,
        label: None,
        samples: Samples::Of(|i, out| out.push(one(i.sampling.samples))),
    },
    Family {
        name: "allocmeter_profile_samples_dropped_total",
        help: "Samples lost outright: neither handed to the exporter nor carried by a later sample (see allocmeter_profile_samples_carried_total); a rise means profiles under-count.",
        kind: MetricType::COUNTER,
        label: None,
        samples: Samples::Of(|i, out| out.push(one(i.sampling.dropped))),
    },
    Family {
        name: "allocmeter_profile_samples_carried_total",
        help: "Samples a thread could not hand over on their own (its sample rings full at their bound, or the sampled-pointer table full or busy), whose weight a later sample of the same thread carries: allocated totals stay unbiased, but that weight is shown at the later sample's site and in no in-use figure.",
        kind: MetricType::COUNTER,
        label: None,
        samples: Samples::Of(|i, out| out.push(one(i.sampling.carried))),
    },
    Family {
        name: "allocmeter_profile_frees_lost_total",
        help: "Frees of sampled blocks that could not be reported; those blocks keep counting as in use in the heap profile.",
        kind: MetricType::COUNTER,
        label: None,
        samples: Samples::Of(|i, out| out.push(one(i.sampling.frees_lost))),
    },
    Family {
        name: "allocmeter_profile_live_samples",
        help: "Sampled blocks not yet freed.",
        kind: MetricType::GAUGE,
        label: None,
        samples: Samples::Of(|i, out| out.push(one(i.sampling.live_samples))),
    },
    Family {
        name: "allocmeter_profile_sites",
        help: "Call sites in the exporter's site table.",
        kind: MetricType::GAUGE,
        label: None,
        samples: Samples::Of(|i, out| out.extend(i.profile.as_ref().map(|p| one(p.sites as u64)))),
    },
    Family {
        name: "allocmeter_profile_sites_overflow_total",
        help: "Samples merged into the (other) site because the site table was full.",
        kind: MetricType::COUNTER,
        label: None,
        samples: Samples::Of(|i, out| out.extend(i.profile.as_ref().map(|p| one(p.overflowed)))),
    },
    Family {
        name: "allocmeter_site_inuse_bytes",
        help: "Estimated bytes in use, by allocating function, for the top call sites only (opt-in, capped).",
        kind: MetricType::GAUGE,
        label: Some("function"),
        samples: Samples::Of(|i, out| {
            let top = i.profile.as_ref().map_or(&[][..], |p| &p.top[..]);
            out.extend(
                top.iter()
                    .map(|s| Series::Plain(Some(s.function.clone()), s.inuse_space)),
            );
        }),
    },
    Family {
        name: "allocmeter_site_alloc_bytes_total",
        help: "Estimated bytes allocated since sampling started, by allocating function, for the top call sites only (opt-in, capped).",
        kind: MetricType::COUNTER,
        label: Some("function"),
        samples: Samples::Of(|i, out| {
            let top = i.profile.as_ref().map_or(&[][..], |p| &p.top[..]);
            out.extend(
                top.iter()
                    .map(|s| Series::Plain(Some(s.function.clone()), s.alloc_space)),
            );
        }),
    },
];
