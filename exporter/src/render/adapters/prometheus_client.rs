//! allocmeter's figures in the official [`prometheus_client`](::prometheus_client)
//! crate's `Registry` (feature `prometheus-client`), for a service that
//! serves its metrics with it.
//!
//! A [`Collector`] registered once with `Registry::register_collector`:
//! every encoding of the registry reads allocmeter's counters fresh, so
//! nothing needs calling before a scrape.
//!
//! ```no_run
//! use std::alloc::System;
//! use allocmeter::Instrumented;
//! use allocmeter_exporter::adapters::prometheus_client::Collector;
//! use prometheus_client::registry::Registry;
//!
//! #[global_allocator]
//! static GLOBAL: Instrumented<System> = Instrumented::new(System);
//!
//! fn main() -> Result<(), std::fmt::Error> {
//!     let mut registry = Registry::default();
//!     // Or Collector::for_exporter(&exporter).
//!     registry.register_collector(Box::new(Collector::new()));
//!     // In the service's /metrics handler:
//!     let mut body = String::new();
//!     prometheus_client::encoding::text::encode(&mut body, &registry)?;
//!     # drop(body);
//!     Ok(())
//! }
//! ```
//!
//! # Names
//!
//! Every series has the name, help text, type and labels it has on
//! allocmeter's own `/metrics`, the two size histograms
//! (`allocmeter_alloc_size_bytes`, `allocmeter_free_size_bytes`) included,
//! whole: one bucket per size class (`le` = the class's inclusive upper
//! bound in bytes, 8 to 4 GiB, then `+Inf`), `_sum` and `_count`. Written
//! as the client writes every family:
//!
//! - OpenMetrics text (`encoding::text`): a counter's family is named
//!   without `_total` (`# TYPE allocmeter_alloc_bytes counter`), its sample
//!   with it (`allocmeter_alloc_bytes_total`); families in bytes declare
//!   `# UNIT … bytes`; the text ends with `# EOF`.
//! - Prometheus text 0.0.4 (`encoding::prometheus_text`): the names as on
//!   `/metrics`.
//!
//! The client writes a bucket bound as a float (`le="64.0"`, where
//! allocmeter's own `/metrics` writes `le="64"`): the same bound to
//! Prometheus 3, a different label value to Prometheus 2. A registry
//! prefix (`Registry::with_prefix`) goes before every name.
//!
//! Without an exporter the families that only an exporter has
//! (`allocmeter_heap_live_bytes_peak`, `allocmeter_profile_sites`,
//! `allocmeter_profile_sites_overflow_total`, the per-site series) are
//! left out; `allocmeter_exporter_panics_total` is 0.

use std::fmt;

use ::prometheus_client::collector::Collector as ClientCollector;
use ::prometheus_client::encoding::{DescriptorEncoder, MetricEncoder, NoLabelSet};
use ::prometheus_client::metrics::MetricType as ClientType;
use ::prometheus_client::registry::Unit;
use prometheus::proto::MetricType;

use super::{base_name, bucket_counts, for_each_family};
use crate::Exporter;
use crate::render::prometheus::AllocCollector;
use crate::render::prometheus::families::Series;

/// The unit of the families in bytes.
static BYTES: Unit = Unit::Bytes;

/// A collector for `prometheus_client::registry::Registry`: allocmeter's
/// metric families, read fresh at each encoding. See the
/// [module docs](self) for the names.
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

impl ClientCollector for Collector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        for_each_family(&self.source, |family, samples| {
            if samples.is_empty() {
                return Ok(());
            }
            let (name, bytes) = base_name(family);
            let kind = match family.kind {
                MetricType::COUNTER => ClientType::Counter,
                MetricType::GAUGE => ClientType::Gauge,
                MetricType::HISTOGRAM => ClientType::Histogram,
                _ => ClientType::Unknown,
            };
            let unit = bytes.then_some(&BYTES);
            let mut metric = encoder.encode_descriptor(name, family.help, unit, kind)?;
            for sample in samples {
                match (sample, family.label) {
                    (Series::Plain(Some(value), v), Some(label)) => {
                        let labels = [(label, value.as_str())];
                        plain(&mut metric.encode_family(&labels)?, kind, *v)?;
                    }
                    (Series::Plain(_, v), _) => plain(&mut metric, kind, *v)?,
                    (Series::Histogram(h), _) => {
                        let buckets: Vec<(f64, u64)> = bucket_counts(h).collect();
                        metric.encode_histogram::<NoLabelSet>(
                            h.get_sample_sum(),
                            h.get_sample_count(),
                            &buckets,
                            None,
                        )?;
                    }
                }
            }
            Ok(())
        })
    }
}

/// `value` as an integer if it is one (every counter read from
/// allocmeter's counters is), so that it is written without a decimal point.
fn integral(value: f64) -> Option<u64> {
    (value >= 0.0 && value.fract() == 0.0 && value < u64::MAX as f64).then_some(value as u64)
}

/// Encodes one counter or gauge value, as an integer when it is one.
fn plain(metric: &mut MetricEncoder<'_>, kind: ClientType, value: f64) -> Result<(), fmt::Error> {
    match (kind, integral(value)) {
        (ClientType::Counter, Some(n)) => metric.encode_counter::<NoLabelSet, _, u64>(&n, None),
        (ClientType::Counter, None) => metric.encode_counter::<NoLabelSet, _, f64>(&value, None),
        (_, Some(n)) => metric.encode_gauge(&n),
        (_, None) => metric.encode_gauge(&value),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integral_values_only() {
        assert_eq!(integral(3.0), Some(3));
        assert_eq!(integral(0.0), Some(0));
        assert_eq!(integral(2.5), None);
        assert_eq!(integral(-1.0), None);
        assert_eq!(integral(f64::NAN), None);
    }
}
