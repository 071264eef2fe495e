//! The Prometheus renderer: [`AllocCollector`], allocmeter's statistics as
//! metric families for a `prometheus::Registry`.
//!
//! | file | owns |
//! |---|---|
//! | `mod.rs` | the collector, one scrape's inputs ([`Scrape`]), the opt-in per-site series and their short names |
//! | `families.rs` | the family table: name, help, type and reader of every metric |
//! | `text.rs` | the text exposition format, written into the response body without allocating |
//! | `inner/` | the inner allocator's own figures (jemalloc, mimalloc, glibc), behind features |
//! | `spans.rs` | the `allocmeter_span_*` families (feature `tracing`) |
//!
//! Reads the counters ([`allocmeter::stats_split`]: the service's share, and
//! allocmeter's own in families of their own) and, inside an exporter, the
//! renderer's figures; takes no lock of another stage.

pub(crate) mod families;
mod text;
// The inner allocator's own statistics, when a feature compiles a source in
// (the `inner_stats` cfg, set by build.rs). Only the collector reads them.
#[cfg(inner_stats)]
mod inner;
// The span layer's families (feature `tracing`).
#[cfg(feature = "tracing")]
mod spans;

use std::collections::HashMap;
use std::sync::Arc;

use allocmeter::profile::SamplingStats;
use allocmeter::{InternalStats, MemStats};
use prometheus::core::{Collector, Desc};
use prometheus::proto::{self, MetricType};

use super::Renderer;
use super::sites::{self, SortBy};
use crate::symbols::{Frame, program_frames};
use families::{FAMILIES, Series};
pub(crate) use text::encode as encode_text;

/// The most sites the opt-in per-site Prometheus series may cover.
pub const MAX_SITE_METRICS: usize = 50;

/// What one scrape renders: the statistics, read fresh, and what the
/// exporter's renderer knows (absent for a collector used on its own).
pub(crate) struct Scrape {
    /// The service's share of the counters (allocmeter's own left out).
    pub stats: MemStats,
    /// allocmeter's own share: what the exporter allocated and freed.
    pub internal: InternalStats,
    pub sampling: SamplingStats,
    pub profile: Option<ProfileFigures>,
    /// What the inner allocator itself reports (see `inner`).
    #[cfg(inner_stats)]
    pub inner: Vec<inner::Reading>,
    /// What each span name allocated, read once for all the span families
    /// (feature `tracing`; `None` until a span layer is made).
    #[cfg(feature = "tracing")]
    pub spans: Option<crate::spans::SpansSnapshot>,
}

/// The exporter's own figures for one scrape.
pub(crate) struct ProfileFigures {
    /// Sites in the table.
    pub sites: usize,
    /// Samples merged into "(other)" because the table was full.
    pub overflowed: u64,
    /// The opt-in top-K sites' series. Empty unless enabled.
    pub top: Vec<SiteSeries>,
    /// Panics caught and survived.
    pub panics: Panics,
    /// The highest live heap seen at a tick since start.
    pub peak_live_bytes: u64,
}

/// One opt-in per-site series: a short function name and its estimates.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct SiteSeries {
    /// The `function` label: [`short_name`] of the site's program function.
    pub function: String,
    /// Estimated bytes in use.
    pub inuse_space: f64,
    /// Estimated bytes allocated.
    pub alloc_space: f64,
}

/// Panics the exporter caught and survived, by where.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct Panics {
    /// In the aggregator thread (it carries on with the next drain).
    pub aggregator: u64,
    /// Rendering a response (answered with 500).
    pub render: u64,
}

/// The figures one scrape reports, read from `renderer` (accounted as the
/// exporter's own allocation).
fn profile_figures(renderer: &Renderer) -> ProfileFigures {
    renderer.account(|| {
        let _quiet = allocmeter::profile::suspend_sampling();
        let mut top: Vec<SiteSeries> = Vec::new();
        if renderer.site_metrics() > 0 {
            let ranked = sites::top(
                renderer.sites(),
                renderer.site_metrics(),
                SortBy::InuseSpace,
            );
            renderer.with_symbolizer(|symbolizer| {
                for site in ranked {
                    let values = site.values;
                    let function = match site.stack.first() {
                        Some(&address) => short_name(&symbolizer.resolve(address).frames),
                        None => "(other)".to_string(),
                    };
                    // Sites sharing a short name share a series.
                    match top.iter_mut().find(|s| s.function == function) {
                        Some(series) => {
                            series.inuse_space += values.inuse_space;
                            series.alloc_space += values.alloc_space;
                        }
                        None => top.push(SiteSeries {
                            function,
                            inuse_space: values.inuse_space,
                            alloc_space: values.alloc_space,
                        }),
                    }
                }
            });
        }
        let table = renderer.table_figures();
        ProfileFigures {
            sites: table.sites,
            overflowed: table.overflowed,
            top,
            panics: renderer.panics(),
            peak_live_bytes: renderer.aggregator().peak_mark().0,
        }
    })
}

/// A short, bounded label for a site: the last two path segments of its
/// program function, at most 64 characters.
fn short_name(frames: &[Frame]) -> String {
    let Some(frame) = program_frames(frames).first() else {
        return "(unknown)".to_string();
    };
    // `<demo::Report as core::fmt::Display>::fmt` → `demo::Report::fmt`.
    let mut name = frame.function.clone();
    if name.starts_with('<')
        && let Some(end) = matching_bracket(&name)
    {
        let inner = &name[1..end];
        let ty = inner.split(" as ").next().unwrap_or(inner);
        name = format!("{ty}{}", &name[end + 1..]);
    }
    // Drop generic arguments, then keep `type::function` or `module::function`.
    let mut depth = 0usize;
    let base: String = name
        .chars()
        .filter(|&c| {
            match c {
                '<' => depth += 1,
                '>' => depth = depth.saturating_sub(1),
                _ => return depth == 0,
            }
            false
        })
        .collect();
    let parts: Vec<&str> = base.rsplit("::").take(2).collect();
    let short = parts.into_iter().rev().collect::<Vec<_>>().join("::");
    short.chars().take(64).collect()
}

/// The index of the `>` closing the `<` at index 0.
fn matching_bracket(s: &str) -> Option<usize> {
    let mut depth = 0usize;
    for (i, c) in s.char_indices() {
        match c {
            '<' => depth += 1,
            '>' => {
                depth -= 1;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => {}
        }
    }
    None
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
    #[cfg(inner_stats)]
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
    #[cfg(not(inner_stats))]
    {
        Vec::new()
    }
}

/// A [`prometheus::core::Collector`] over [`allocmeter::stats_split`].
///
/// Every scrape reads the counters fresh (a read never blocks an allocating
/// thread), so `/metrics` is never an interval behind. The service's
/// families leave allocmeter's own allocations out, exactly; those are in
/// the `allocmeter_exporter_*` families. A scrape's own work counts as
/// allocmeter's, on whatever thread it runs; only the families it returns
/// (which the registry encodes and frees) are the caller's. The exporter registers
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
    renderer: Option<Arc<Renderer>>,
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
        for f in FAMILIES.iter() {
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
            renderer: None,
        })
    }

    /// The collector an exporter serves and hands out: `labels` on every
    /// series, and the exporter's own figures from `renderer`.
    pub(crate) fn for_exporter(
        labels: &[(String, String)],
        renderer: Arc<Renderer>,
    ) -> prometheus::Result<Self> {
        let mut collector = Self::with_const_labels(labels.iter().cloned().collect())?;
        collector.renderer = Some(renderer);
        Ok(collector)
    }

    /// The metric families for `scrape`. Families without samples are left out.
    ///
    /// Allocates only what it hands over (the families, their names, help
    /// texts, series and label pairs), each at its final size: one `Vec` of
    /// samples serves every family, and each series' labels are allocated
    /// with room for the variable one.
    fn families(&self, scrape: &Scrape) -> Vec<proto::MetricFamily> {
        let mut families = Vec::with_capacity(FAMILIES.len());
        let mut samples = Vec::new();
        for f in FAMILIES.iter() {
            f.samples(scrape, &mut samples);
            if samples.is_empty() {
                continue;
            }
            let metrics = samples
                .drain(..)
                .map(|sample| {
                    let mut m = proto::Metric::default();
                    let mut labels = Vec::with_capacity(
                        self.const_labels.len() + usize::from(f.label.is_some()),
                    );
                    labels.extend_from_slice(&self.const_labels);
                    match sample {
                        Series::Plain(label_value, value) => {
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
                        Series::Histogram(h) => m.set_histogram(h),
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
            families.push(mf);
        }
        families
    }

    /// The counters now, and the exporter's figures if this collector has
    /// an exporter's (the adapters read them too).
    pub(crate) fn scrape(&self) -> Scrape {
        let split = allocmeter::stats_split();
        Scrape {
            stats: split.program,
            internal: split.internal,
            sampling: allocmeter::profile::sampling_stats(),
            profile: self.renderer.as_deref().map(profile_figures),
            #[cfg(inner_stats)]
            inner: inner::read(),
            #[cfg(feature = "tracing")]
            spans: crate::spans::snapshot(),
        }
    }
}

impl Drop for AllocCollector {
    fn drop(&mut self) {
        // The exporter's renderer, if this is the last reference to it (the
        // exporter itself gone), is freed on allocmeter's side, where it was
        // allocated; the collector's own fields are its owner's.
        if let Some(renderer) = self.renderer.take() {
            allocmeter::profile::account_internal(move || drop(renderer));
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
        // The scrape is allocmeter's work, on allocmeter's side from its
        // start to its drop; the families are built outside, for the
        // registry that frees them, so that no block crosses.
        let scrape = allocmeter::profile::account_internal(|| self.scrape());
        let families = self.families(&scrape);
        allocmeter::profile::account_internal(move || drop(scrape));
        families
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_count_equals_the_sum_of_all_classes_and_buckets_are_cumulative() {
        let collector = AllocCollector::new();
        let mut inputs = collector.scrape();
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
        // Without an exporter's aggregator, the site families and the
        // peak (the exporter's ticks keep it) are left out.
        let exporter_only = FAMILIES
            .iter()
            .filter(|f| f.name.contains("site") || f.name.ends_with("_peak"))
            .count();
        assert_eq!(exporter_only, 5);
        // Nor, until a span layer is made (feature `tracing`), the span families.
        let span_families = FAMILIES
            .iter()
            .filter(|f| f.name.starts_with("allocmeter_span_"));
        assert_eq!(
            families.len(),
            FAMILIES.len() - exporter_only - span_families.count()
        );
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

    #[cfg(inner_stats)]
    #[test]
    fn every_inner_reading_is_exported_once_labelled_with_its_allocator() {
        let collector = AllocCollector::new();
        let inputs = collector.scrape();
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

    #[cfg(not(inner_stats))]
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

    #[test]
    fn short_names_are_bounded_and_drop_generics() {
        let f = |name: &str| Frame {
            function: name.to_string(),
            file: None,
            line: None,
            system_name: None,
        };
        assert_eq!(
            short_name(&[f("demo::orders::build_report")]),
            "orders::build_report"
        );
        assert_eq!(short_name(&[f("main")]), "main");
        assert_eq!(
            short_name(&[
                f("alloc::vec::Vec<T>::with_capacity"),
                f("svc::Handler<T>::run")
            ]),
            "Handler::run"
        );
        assert_eq!(
            short_name(&[f("<demo::Report as core::fmt::Display>::fmt")]),
            "Report::fmt"
        );
        assert_eq!(short_name(&[f(&"x".repeat(500))]).len(), 64);
        assert_eq!(short_name(&[]), "(unknown)");
    }
}
