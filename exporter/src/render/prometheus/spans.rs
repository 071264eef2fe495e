//! The `allocmeter_span_*` families (feature `tracing`): what each span
//! name allocated, from the scrape's one [`crate::spans::snapshot`],
//! labelled `span`.
//!
//! Owns: these families' rows. They have no samples, and so are left out of
//! the scrape, until a [`crate::spans::SpanLayer`] is made: opt-in.

use prometheus::proto::MetricType;

use super::Scrape;
use super::families::{Family, Samples, Series};
use crate::spans::SpanFigures;

/// One sample per span name and one for the overflow entry of the
/// scrape's reading, valued by `value`.
fn per_span(scrape: &Scrape, out: &mut Vec<Series>, value: fn(&SpanFigures) -> f64) {
    if let Some(s) = &scrape.spans {
        out.extend(
            s.spans
                .iter()
                .chain([&s.overflow])
                .map(|f| Series::Plain(Some(f.span.clone()), value(f))),
        );
    }
}

/// The span families, in exposition order.
pub(super) const FAMILIES: &[Family] = &[
    Family {
        name: "allocmeter_span_enters_total",
        help: "Enter/exit pairs of spans of this name that the span layer counted (for an async span, its polls). The span label is target::name; (overflow) holds the names beyond the layer's bound.",
        kind: MetricType::COUNTER,
        label: Some("span"),
        samples: Samples::Of(|i, out| per_span(i, out, |f| f.enters as f64)),
    },
    Family {
        name: "allocmeter_span_allocs_total",
        help: "Heap blocks allocated inside spans of this name, exactly, by the thread that entered them (a realloc counts one; a span's figures include its children's).",
        kind: MetricType::COUNTER,
        label: Some("span"),
        samples: Samples::Of(|i, out| per_span(i, out, |f| f.allocs as f64)),
    },
    Family {
        name: "allocmeter_span_alloc_bytes_total",
        help: "Bytes allocated inside spans of this name, exactly, by the thread that entered them (requested sizes; a realloc adds its new size; a span's figures include its children's).",
        kind: MetricType::COUNTER,
        label: Some("span"),
        samples: Samples::Of(|i, out| per_span(i, out, |f| f.alloc_bytes as f64)),
    },
    Family {
        name: "allocmeter_span_self_allocs_total",
        help: "Of allocmeter_span_allocs_total, the blocks allocated outside the counted spans nested inside (the span's own share, as self time in a profile).",
        kind: MetricType::COUNTER,
        label: Some("span"),
        samples: Samples::Of(|i, out| per_span(i, out, |f| f.self_allocs as f64)),
    },
    Family {
        name: "allocmeter_span_self_alloc_bytes_total",
        help: "Of allocmeter_span_alloc_bytes_total, the bytes allocated outside the counted spans nested inside (the span's own share).",
        kind: MetricType::COUNTER,
        label: Some("span"),
        samples: Samples::Of(|i, out| per_span(i, out, |f| f.self_alloc_bytes as f64)),
    },
    Family {
        name: "allocmeter_span_frees_total",
        help: "Heap blocks freed inside spans of this name by the thread that entered them, whoever allocated them (a realloc counts one).",
        kind: MetricType::COUNTER,
        label: Some("span"),
        samples: Samples::Of(|i, out| per_span(i, out, |f| f.frees as f64)),
    },
    Family {
        name: "allocmeter_span_free_bytes_total",
        help: "Bytes freed inside spans of this name by the thread that entered them, whoever allocated them (a realloc adds its old size).",
        kind: MetricType::COUNTER,
        label: Some("span"),
        samples: Samples::Of(|i, out| per_span(i, out, |f| f.free_bytes as f64)),
    },
    Family {
        name: "allocmeter_span_net_bytes",
        help: "allocmeter_span_alloc_bytes_total minus allocmeter_span_free_bytes_total: what spans of this name left allocated (negative if they freed more than they allocated).",
        kind: MetricType::GAUGE,
        label: Some("span"),
        samples: Samples::Of(|i, out| per_span(i, out, |f| f.net_bytes as f64)),
    },
];
