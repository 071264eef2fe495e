//! allocmeter's figures through the [`metrics`](::metrics) facade (feature
//! `metrics`), for a service whose metrics go through a `metrics` recorder:
//! `metrics-exporter-prometheus`, StatsD, Datadog, or any other.
//!
//! Shaped like `metrics-process`: a [`Collector`] whose
//! [`describe`](Collector::describe) is called once, after the recorder is
//! installed, and whose [`collect`](Collector::collect) is called before
//! each render of the recorder (or on a timer, for a recorder that pushes).
//! Each collect reads allocmeter's counters fresh and records them; between
//! two collects the recorder shows the figures of the last.
//!
//! ```no_run
//! use std::alloc::System;
//! use allocmeter::Instrumented;
//! use allocmeter_exporter::adapters::metrics::Collector;
//!
//! #[global_allocator]
//! static GLOBAL: Instrumented<System> = Instrumented::new(System);
//!
//! fn main() {
//!     let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
//!     let handle = recorder.handle();
//!     metrics::set_global_recorder(recorder).expect("no recorder installed yet");
//!
//!     let collector = Collector::new(); // or Collector::for_exporter(&exporter)
//!     collector.describe();
//!     // In the service's /metrics handler:
//!     collector.collect();
//!     let body = handle.render();
//!     # drop(body);
//! }
//! ```
//!
//! # Names
//!
//! Every counter and gauge has the name, help text and labels it has on
//! allocmeter's own `/metrics` (`allocmeter_alloc_bytes_total`,
//! `allocmeter_heap_live_bytes`, `allocmeter_reallocs_total{kind}`, …):
//! counters are set with [`absolute`](::metrics::Counter::absolute), gauges
//! with [`set`](::metrics::Gauge::set). The unit is described as
//! [`Unit::Bytes`] for the families whose name ends in `_bytes` (or
//! `_bytes_total`), as [`Unit::Count`] for the others but
//! `allocmeter_heap_live_bytes_peak` (none), so a recorder that adds unit
//! suffixes leaves every name as it is.
//!
//! The facade's histograms take one observation at a time, and the
//! Prometheus recorder turns them into summaries, so the two size
//! histograms (`allocmeter_alloc_size_bytes`, `allocmeter_free_size_bytes`)
//! are carried as one counter per size class instead, non-cumulative,
//! under names that no histogram series of `/metrics` has:
//!
//! | counter | what |
//! |---|---|
//! | [`ALLOCS_BY_SIZE`] `{size_class="…"}` | the service's allocations whose requested size is in the class |
//! | [`FREES_BY_SIZE`] `{size_class="…"}` | the service's frees whose size is in the class |
//!
//! The [`SIZE_CLASS_LABEL`] label is the class's inclusive upper bound in
//! bytes, `8`, `16`, … `4294967296`, and `+Inf` for the class above 4 GiB;
//! a class holds the sizes above the previous bound. The histogram's
//! buckets are the running sums of these over the bounds, and its `_sum`
//! is `allocmeter_alloc_bytes_total` (`allocmeter_free_bytes_total`).
//!
//! Without an exporter the families that only an exporter has
//! (`allocmeter_heap_live_bytes_peak`, `allocmeter_profile_sites`,
//! `allocmeter_profile_sites_overflow_total`, the per-site series) are
//! left out; `allocmeter_exporter_panics_total` is 0. A per-site series
//! (an exporter's opt-in top sites) that leaves the top keeps its last
//! value in the recorder until the recorder forgets it
//! (`PrometheusBuilder::idle_timeout`), where `/metrics` drops it at once.

use std::fmt;
use std::sync::LazyLock;

use ::metrics::{KeyName, SharedString, Unit, counter, gauge, with_recorder};
use allocmeter::size_class::{NUM_SIZE_CLASSES, upper_bound};
use prometheus::proto::MetricType;

use super::{base_name, bucket_counts, for_each_family};
use crate::Exporter;
use crate::render::prometheus::AllocCollector;
use crate::render::prometheus::families::{Family, Series};

/// The per-class counter of the service's allocations by requested size,
/// labelled [`SIZE_CLASS_LABEL`]: the `allocmeter_alloc_size_bytes`
/// histogram's counts, class by class.
pub const ALLOCS_BY_SIZE: &str = "allocmeter_allocs_by_size_total";

/// The per-class counter of the service's frees by size, labelled
/// [`SIZE_CLASS_LABEL`]: the `allocmeter_free_size_bytes` histogram's
/// counts, class by class.
pub const FREES_BY_SIZE: &str = "allocmeter_frees_by_size_total";

/// The label of the per-class counters: the class's inclusive upper bound
/// in bytes (`64` holds the sizes 33 to 64), `+Inf` for the top class.
pub const SIZE_CLASS_LABEL: &str = "size_class";

/// The label value of each size class: its inclusive upper bound in bytes,
/// `+Inf` for the open-ended top class. Made once.
static CLASS_LABELS: LazyLock<[String; NUM_SIZE_CLASSES]> = LazyLock::new(|| {
    std::array::from_fn(|class| match upper_bound(class) {
        Some(bound) => bound.to_string(),
        None => "+Inf".to_string(),
    })
});

/// The per-class counter that carries a histogram family, and its help.
fn per_class(histogram: &str) -> Option<(&'static str, &'static str)> {
    match histogram {
        "allocmeter_alloc_size_bytes" => Some((
            ALLOCS_BY_SIZE,
            "The service's allocations by requested size class, one series per class: size_class is the class's inclusive upper bound in bytes (the class holds the sizes above the previous bound), +Inf above 4 GiB. Not cumulative. A realloc counts its new size; allocmeter's own left out. The allocmeter_alloc_size_bytes histogram of allocmeter's /metrics, class by class.",
        )),
        "allocmeter_free_size_bytes" => Some((
            FREES_BY_SIZE,
            "The service's frees by size class, one series per class: size_class is the class's inclusive upper bound in bytes (the class holds the sizes above the previous bound), +Inf above 4 GiB. Not cumulative. A realloc counts its old size; allocmeter's own left out. The allocmeter_free_size_bytes histogram of allocmeter's /metrics, class by class.",
        )),
        _ => None,
    }
}

/// The unit a family is described with.
fn unit(family: &Family) -> Option<Unit> {
    match base_name(family) {
        (_, true) => Some(Unit::Bytes),
        (_, false) if family.name.contains("_bytes") => None,
        _ => Some(Unit::Count),
    }
}

/// Records allocmeter's counters and gauges through the `metrics` facade,
/// into whichever recorder is installed (global, or local with
/// [`metrics::with_local_recorder`](::metrics::with_local_recorder)) when
/// [`describe`](Collector::describe) and [`collect`](Collector::collect)
/// run. See the [module docs](self) for the names.
pub struct Collector {
    source: AllocCollector,
}

impl Collector {
    /// A collector of the figures [`allocmeter::stats_split`] and
    /// [`allocmeter::profile::sampling_stats`] read: no exporter needed.
    pub fn new() -> Self {
        Collector {
            source: AllocCollector::new(),
        }
    }

    /// A collector that adds `exporter`'s own figures (the live heap's
    /// peak, the site table, caught panics, the per-site series if turned
    /// on). It keeps the exporter's state alive, not its threads.
    pub fn for_exporter(exporter: &Exporter) -> Self {
        Collector {
            source: exporter.collector(),
        }
    }

    /// Describes every family to the recorder: help text and unit. Call it
    /// once, after the recorder is installed.
    pub fn describe(&self) {
        with_recorder(|recorder| {
            for family in super::FAMILIES.iter() {
                let name = KeyName::from_const_str(family.name);
                let help = SharedString::const_str(family.help);
                match family.kind {
                    MetricType::COUNTER => recorder.describe_counter(name, unit(family), help),
                    MetricType::HISTOGRAM => {
                        if let Some((counter, help)) = per_class(family.name) {
                            recorder.describe_counter(
                                KeyName::from_const_str(counter),
                                Some(Unit::Count),
                                SharedString::const_str(help),
                            );
                        }
                    }
                    _ => recorder.describe_gauge(name, unit(family), help),
                }
            }
        });
    }

    /// Reads allocmeter's figures now and records them: counters with
    /// `absolute`, gauges with `set`, each size class's count as its own
    /// counter. Call it before each render of the recorder, or on a timer.
    pub fn collect(&self) {
        let recorded: Result<(), std::convert::Infallible> =
            for_each_family(&self.source, |family, samples| {
                for sample in samples {
                    record(family, sample);
                }
                Ok(())
            });
        let Ok(()) = recorded;
    }
}

/// Records one sample of `family`.
fn record(family: &'static Family, sample: &Series) {
    let name = family.name;
    match sample {
        Series::Plain(label, value) => {
            let labels: Vec<(&'static str, String)> = match (family.label, label) {
                (Some(key), Some(value)) => vec![(key, value.clone())],
                _ => Vec::new(),
            };
            if family.kind == MetricType::COUNTER {
                // Counters are whole numbers; an estimate (the per-site
                // series) is rounded.
                counter!(name, &labels).absolute(value.max(0.0).round() as u64);
            } else {
                gauge!(name, &labels).set(*value);
            }
        }
        Series::Histogram(h) => {
            let Some((counter, _)) = per_class(name) else {
                return;
            };
            for ((_, count), class) in bucket_counts(h).zip(CLASS_LABELS.iter()) {
                counter!(counter, SIZE_CLASS_LABEL => class.as_str()).absolute(count);
            }
        }
    }
}

impl Default for Collector {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for Collector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Collector").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::prometheus::families::FAMILIES;

    #[test]
    fn every_histogram_family_has_per_class_counters_that_clash_with_nothing() {
        for family in FAMILIES.iter() {
            if family.kind != MetricType::HISTOGRAM {
                continue;
            }
            let (counter, _) = per_class(family.name)
                .unwrap_or_else(|| panic!("{} needs its per-class counters", family.name));
            for other in FAMILIES.iter() {
                for suffix in ["", "_bucket", "_sum", "_count"] {
                    assert_ne!(format!("{}{suffix}", other.name), counter);
                }
            }
        }
    }

    #[test]
    fn class_labels_are_the_inclusive_upper_bounds() {
        assert_eq!(CLASS_LABELS[0], "8");
        assert_eq!(CLASS_LABELS[4], "128");
        assert_eq!(CLASS_LABELS[NUM_SIZE_CLASSES - 2], "4294967296");
        assert_eq!(CLASS_LABELS[NUM_SIZE_CLASSES - 1], "+Inf");
    }

    #[test]
    fn units_by_name() {
        let named = |name: &str| FAMILIES.iter().find(|f| f.name == name).unwrap();
        assert_eq!(
            unit(named("allocmeter_alloc_bytes_total")),
            Some(Unit::Bytes)
        );
        assert_eq!(unit(named("allocmeter_heap_live_bytes")), Some(Unit::Bytes));
        assert_eq!(unit(named("allocmeter_allocs_total")), Some(Unit::Count));
        assert_eq!(unit(named("allocmeter_heap_live_bytes_peak")), None);
    }
}
