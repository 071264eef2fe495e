//! Adapters: allocmeter's metric families rendered into the model of
//! another telemetry crate, for a service that already uses one, each
//! behind its own cargo feature.
//!
//! | module | feature | renders into |
//! |---|---|---|
//! | [`metrics`] | `metrics` | the `metrics` facade (0.24): counters set with `absolute`, gauges, the size histograms as per-class counters |
//! | [`prometheus_client`] | `prometheus-client` | the official `prometheus-client` crate's `Registry` (0.26): a collector, the size histograms as histograms |
//!
//! Both read what [`AllocCollector`](crate::AllocCollector) reads, from the
//! same family table (names, help texts, types, labels), so a series has
//! the same name and value whichever way it leaves the process. Without an
//! exporter they read [`allocmeter::stats_split`] and
//! [`allocmeter::profile::sampling_stats`] alone, so a service that does
//! not run allocmeter's HTTP server can use them; built from an
//! [`Exporter`](crate::Exporter) they add its own figures (the live heap's
//! peak, the site table, caught panics, the opt-in per-site series). The
//! exporter's constant labels are not applied: the other crate's own
//! (a recorder's global labels, a registry's labels) are.
//!
//! Like the collector, each reads the counters fresh when it runs (no lock
//! an allocating thread could wait on), with the reading counted as
//! allocmeter's own allocation ([`allocmeter::profile::account_internal`]);
//! what it hands the other crate (label values, samples) is the service's.
//!
//! Must not touch: the aggregator's state, HTTP.

use prometheus::proto::{self, MetricType};

use super::prometheus::AllocCollector;
use super::prometheus::families::{FAMILIES, Family, Series};

#[cfg(feature = "metrics")]
pub mod metrics;
#[cfg(feature = "prometheus-client")]
pub mod prometheus_client;

/// Calls `each` with every family and its samples now, in exposition
/// order (families with no sample included: `each` decides), and stops at
/// its first error.
///
/// The reading of the counters is allocmeter's own allocation; the samples
/// (label values, histograms) are built on the caller's side, as the
/// collector builds the families it hands a registry.
fn for_each_family<E>(
    source: &AllocCollector,
    mut each: impl FnMut(&'static Family, &[Series]) -> Result<(), E>,
) -> Result<(), E> {
    let scrape = allocmeter::profile::account_internal(|| source.scrape());
    let mut samples = Vec::new();
    let mut result = Ok(());
    for family in FAMILIES.iter() {
        samples.clear();
        family.samples(&scrape, &mut samples);
        result = each(family, &samples);
        if result.is_err() {
            break;
        }
    }
    drop(samples);
    allocmeter::profile::account_internal(move || drop(scrape));
    result
}

/// A family's name without the unit and the `_total` that the name
/// carries, and whether the unit is bytes: `allocmeter_alloc_bytes_total`
/// → (`allocmeter_alloc`, true); `allocmeter_allocs_total` →
/// (`allocmeter_allocs`, false). OpenMetrics names a family by its base,
/// with the unit declared apart.
fn base_name(family: &Family) -> (&'static str, bool) {
    let name = family.name;
    let name = if family.kind == MetricType::COUNTER {
        name.strip_suffix("_total").unwrap_or(name)
    } else {
        name
    };
    match name.strip_suffix("_bytes") {
        Some(base) => (base, true),
        None => (name, false),
    }
}

/// One histogram's per-bucket counts (not cumulative), the `+Inf` bucket
/// last: `(upper bound, count in that bucket alone)`. Over allocmeter's
/// size histograms, one entry per size class.
fn bucket_counts(h: &proto::Histogram) -> impl Iterator<Item = (f64, u64)> + '_ {
    let mut previous = 0u64;
    let buckets = h.get_bucket().iter().map(move |b| {
        let count = b.cumulative_count().saturating_sub(previous);
        previous = b.cumulative_count();
        (b.upper_bound(), count)
    });
    let last = h.get_bucket().last().map_or(0, |b| b.cumulative_count());
    buckets.chain(std::iter::once((
        f64::INFINITY,
        h.get_sample_count().saturating_sub(last),
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use allocmeter::size_class::{NUM_SIZE_CLASSES, upper_bound};

    #[test]
    fn counters_end_in_total_and_base_names_drop_the_unit() {
        for family in FAMILIES.iter() {
            if family.kind == MetricType::COUNTER {
                assert!(family.name.ends_with("_total"), "{}", family.name);
            }
        }
        let named = |name: &str| FAMILIES.iter().find(|f| f.name == name).unwrap();
        assert_eq!(
            base_name(named("allocmeter_alloc_bytes_total")),
            ("allocmeter_alloc", true)
        );
        assert_eq!(
            base_name(named("allocmeter_allocs_total")),
            ("allocmeter_allocs", false)
        );
        assert_eq!(
            base_name(named("allocmeter_alloc_size_bytes")),
            ("allocmeter_alloc_size", true)
        );
        assert_eq!(
            base_name(named("allocmeter_heap_live_bytes_peak")),
            ("allocmeter_heap_live_bytes_peak", false)
        );
    }

    #[test]
    fn bucket_counts_undo_the_cumulation_and_end_at_inf() {
        let mut stats = allocmeter::stats();
        for (i, class) in stats.by_size.iter_mut().enumerate() {
            class.allocs = i as u64 + 1;
        }
        let mut h = proto::Histogram::default();
        let mut cumulative = 0;
        let mut buckets = Vec::new();
        for class in &stats.by_size {
            cumulative += class.allocs;
            if let Some(le) = class.max_size {
                let mut b = proto::Bucket::default();
                b.set_upper_bound(le as f64);
                b.set_cumulative_count(cumulative);
                buckets.push(b);
            }
        }
        h.set_bucket(buckets);
        h.set_sample_count(cumulative);
        let counts: Vec<(f64, u64)> = bucket_counts(&h).collect();
        assert_eq!(counts.len(), NUM_SIZE_CLASSES);
        for (i, (bound, count)) in counts.iter().enumerate() {
            assert_eq!(*count, i as u64 + 1);
            assert_eq!(*bound, upper_bound(i).map_or(f64::INFINITY, |u| u as f64));
        }
    }

    /// The code blocks between "```" + `opening` and "```" in `text`,
    /// with `prefix` stripped from each line and rustdoc's hidden lines
    /// (`# …`) left out.
    fn code_blocks(text: &str, prefix: &str, opening: &str) -> Vec<String> {
        let mut blocks = Vec::new();
        let mut block: Option<String> = None;
        for line in text.lines() {
            let Some(line) = line.strip_prefix(prefix) else {
                continue;
            };
            // `//! code` → `code`; a page's lines are as they are.
            let line = match prefix {
                "" => line,
                _ => line.strip_prefix(' ').unwrap_or(line),
            };
            match &mut block {
                None if line == format!("```{opening}") => block = Some(String::new()),
                None => {}
                Some(b) if line == "```" => {
                    blocks.push(std::mem::take(b));
                    block = None;
                }
                Some(_) if line.trim_start().starts_with("# ") => {}
                Some(b) => {
                    b.push_str(line);
                    b.push('\n');
                }
            }
        }
        blocks
    }

    #[test]
    fn the_integrations_page_shows_the_doctests_examples() {
        let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
        let Ok(page) = std::fs::read_to_string(format!("{root}/docs/integrations.md")) else {
            return; // a packaged crate, without the repository's docs
        };
        let source = |file: &str| {
            std::fs::read_to_string(format!("{root}/exporter/src/render/adapters/{file}"))
                .expect("the adapter's source")
        };
        let mut doctests = code_blocks(&source("metrics.rs"), "//!", "no_run");
        doctests.extend(code_blocks(
            &source("prometheus_client.rs"),
            "//!",
            "no_run",
        ));
        assert_eq!(doctests.len(), 2);
        assert_eq!(code_blocks(&page, "", "rust"), doctests);
    }
}
