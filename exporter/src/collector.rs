//! [`AllocCollector`]: allocmeter's statistics as Prometheus metric families.

use std::collections::HashMap;

use allocmeter::MemStats;
use prometheus::core::{Collector, Desc};
use prometheus::proto::{self, MetricType};

/// One metric family this collector exports: name, help, type, and how to
/// build its samples from a [`MemStats`].
struct Family {
    name: &'static str,
    help: &'static str,
    kind: MetricType,
    /// The variable label, if the family has one (`kind` of realloc, …).
    label: Option<&'static str>,
    samples: fn(&MemStats) -> Vec<Sample>,
}

/// One sample of a family: a label value (if the family has a label) and a value.
enum Sample {
    Plain(Option<&'static str>, f64),
    Histogram(proto::Histogram),
}

fn one(v: u64) -> Vec<Sample> {
    vec![Sample::Plain(None, v as f64)]
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
        samples: |s| one(s.alloc_bytes),
    },
    Family {
        name: "allocmeter_allocs_total",
        help: "Heap blocks allocated since the process started (a realloc counts one). Go: go_memstats_mallocs_total.",
        kind: MetricType::COUNTER,
        label: None,
        samples: |s| one(s.allocs),
    },
    Family {
        name: "allocmeter_frees_total",
        help: "Heap blocks freed since the process started (a realloc counts one). Go: go_memstats_frees_total.",
        kind: MetricType::COUNTER,
        label: None,
        samples: |s| one(s.frees),
    },
    Family {
        name: "allocmeter_free_bytes_total",
        help: "Bytes freed since the process started (requested sizes; a realloc adds its old size).",
        kind: MetricType::COUNTER,
        label: None,
        samples: |s| one(s.free_bytes),
    },
    Family {
        name: "allocmeter_heap_live_bytes",
        help: "Bytes in heap blocks allocated and not yet freed (requested sizes). Go: go_memstats_heap_alloc_bytes.",
        kind: MetricType::GAUGE,
        label: None,
        samples: |s| one(s.live_bytes),
    },
    Family {
        name: "allocmeter_heap_live_objects",
        help: "Heap blocks allocated and not yet freed. Go: go_memstats_heap_objects.",
        kind: MetricType::GAUGE,
        label: None,
        samples: |s| one(s.live_objects),
    },
    Family {
        name: "allocmeter_reallocs_total",
        help: "Reallocations by how they were served: grown_in_place, shrunk_in_place (same address), moved (new address).",
        kind: MetricType::COUNTER,
        label: Some("kind"),
        samples: |s| {
            vec![
                Sample::Plain(Some("grown_in_place"), s.reallocs.grown_in_place as f64),
                Sample::Plain(Some("shrunk_in_place"), s.reallocs.shrunk_in_place as f64),
                Sample::Plain(Some("moved"), s.reallocs.moved as f64),
            ]
        },
    },
    Family {
        name: "allocmeter_realloc_delta_bytes_total",
        help: "Bytes by which reallocations grew (direction=grow) or shrank (direction=shrink) their blocks, in place or moved.",
        kind: MetricType::COUNTER,
        label: Some("direction"),
        samples: |s| {
            vec![
                Sample::Plain(Some("grow"), s.reallocs.grown_bytes as f64),
                Sample::Plain(Some("shrink"), s.reallocs.shrunk_bytes as f64),
            ]
        },
    },
    Family {
        name: "allocmeter_alloc_failures_total",
        help: "Allocation requests the inner allocator refused (returned null to the caller).",
        kind: MetricType::COUNTER,
        label: None,
        samples: |s| one(s.failures),
    },
    Family {
        name: "allocmeter_alloc_size_bytes",
        help: "Allocations by requested size in bytes (power-of-two buckets; a realloc counts its new size). Go: go_gc_heap_allocs_by_size_bytes.",
        kind: MetricType::HISTOGRAM,
        label: None,
        samples: |s| size_histogram(s, |c| c.allocs, s.alloc_bytes),
    },
    Family {
        name: "allocmeter_free_size_bytes",
        help: "Frees by requested size in bytes (power-of-two buckets; a realloc counts its old size). Go: go_gc_heap_frees_by_size_bytes.",
        kind: MetricType::HISTOGRAM,
        label: None,
        samples: |s| size_histogram(s, |c| c.frees, s.free_bytes),
    },
    Family {
        name: "allocmeter_threads",
        help: "Threads that currently record into their own allocmeter slot.",
        kind: MetricType::GAUGE,
        label: None,
        samples: |s| one(s.threads),
    },
    Family {
        name: "allocmeter_telemetry_bytes",
        help: "Bytes of memory allocmeter itself holds for its counters (slots in use). Go: go_memstats_buck_hash_sys_bytes.",
        kind: MetricType::GAUGE,
        label: None,
        samples: |s| one(s.telemetry_bytes),
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
        })
    }

    /// The metric families for `stats`, as [`Collector::collect`] returns them
    /// for the current statistics.
    pub fn families(&self, stats: &MemStats) -> Vec<proto::MetricFamily> {
        FAMILIES
            .iter()
            .map(|f| {
                let metrics = (f.samples)(stats)
                    .into_iter()
                    .map(|sample| {
                        let mut m = proto::Metric::default();
                        let mut labels = self.const_labels.clone();
                        match sample {
                            Sample::Plain(label_value, value) => {
                                if let (Some(name), Some(value)) = (f.label, label_value) {
                                    let mut pair = proto::LabelPair::default();
                                    pair.set_name(name.to_string());
                                    pair.set_value(value.to_string());
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
                mf
            })
            .collect()
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
        self.families(&allocmeter::stats())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_count_equals_the_sum_of_all_classes_and_buckets_are_cumulative() {
        let mut s = allocmeter::stats();
        for (i, class) in s.by_size.iter_mut().enumerate() {
            class.allocs = i as u64 + 1;
        }
        let families = AllocCollector::new().families(&s);
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
        assert_eq!(families.len(), FAMILIES.len());
        for f in &families {
            assert!(f.name().starts_with("allocmeter_"));
            assert!(!f.help().is_empty());
            assert!(!f.get_metric().is_empty());
            if f.get_field_type() == MetricType::COUNTER {
                assert!(f.name().ends_with("_total"), "{}", f.name());
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

    #[test]
    fn bad_const_label_names_are_an_error() {
        let r = AllocCollector::with_const_labels(HashMap::from([(
            "bad-name".to_string(),
            "x".to_string(),
        )]));
        assert!(r.is_err());
    }
}
