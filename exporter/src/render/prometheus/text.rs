//! The Prometheus text exposition format (0.0.4), written straight into the
//! response body: the bytes `prometheus::TextEncoder` writes, without its
//! allocations (a `String` per value, per bucket bound and per family's type
//! name, each formatted and then copied).
//!
//! Owns: [`encode`]. Reads only the families it is given.

use std::io::Write;

use prometheus::proto::{LabelPair, Metric, MetricFamily, MetricType};

/// The label of a histogram bucket's upper bound.
const BUCKET_LABEL: &str = "le";
/// The label of a summary's quantile.
const QUANTILE_LABEL: &str = "quantile";

/// Appends `families` to `out` in the text format, byte for byte as
/// `prometheus::TextEncoder` encodes them, allocating nothing but the growth
/// of `out`.
///
/// Fails, as the `prometheus` encoder does, on a family without metrics or
/// without a name; and on an untyped family, which that encoder does not
/// support either (it panics). What was appended before the failure stays.
pub(crate) fn encode(families: &[MetricFamily], out: &mut Vec<u8>) -> prometheus::Result<()> {
    for family in families {
        if family.get_metric().is_empty() {
            return Err(prometheus::Error::Msg(format!(
                "MetricFamily has no metrics: {family:?}"
            )));
        }
        if family.name().is_empty() {
            return Err(prometheus::Error::Msg(format!(
                "MetricFamily has no name: {family:?}"
            )));
        }
        let name = family.name();
        let help = family.help();
        if !help.is_empty() {
            out.extend_from_slice(b"# HELP ");
            out.extend_from_slice(name.as_bytes());
            out.push(b' ');
            escape(help, false, out);
            out.push(b'\n');
        }
        let kind = match family.get_field_type() {
            MetricType::COUNTER => "counter",
            MetricType::GAUGE => "gauge",
            MetricType::SUMMARY => "summary",
            MetricType::HISTOGRAM => "histogram",
            MetricType::UNTYPED => {
                return Err(prometheus::Error::Msg(format!(
                    "MetricFamily {name} is untyped, which the text encoder does not support"
                )));
            }
        };
        out.extend_from_slice(b"# TYPE ");
        out.extend_from_slice(name.as_bytes());
        out.push(b' ');
        out.extend_from_slice(kind.as_bytes());
        out.push(b'\n');
        for metric in family.get_metric() {
            let line = |suffix: &str, extra: Option<(&str, Bound)>, value: f64, out: &mut _| {
                sample(out, name, suffix, metric, extra, value)
            };
            match family.get_field_type() {
                MetricType::COUNTER => line("", None, metric.get_counter().get_value(), out),
                MetricType::GAUGE => line("", None, metric.get_gauge().get_value(), out),
                MetricType::HISTOGRAM => {
                    let h = metric.get_histogram();
                    let mut inf_seen = false;
                    for bucket in h.get_bucket() {
                        let bound = bucket.upper_bound();
                        line(
                            "_bucket",
                            Some((BUCKET_LABEL, Bound::Number(bound))),
                            bucket.cumulative_count() as f64,
                            out,
                        );
                        inf_seen |= bound.is_sign_positive() && bound.is_infinite();
                    }
                    if !inf_seen {
                        line(
                            "_bucket",
                            Some((BUCKET_LABEL, Bound::PositiveInfinity)),
                            h.get_sample_count() as f64,
                            out,
                        );
                    }
                    line("_sum", None, h.get_sample_sum(), out);
                    line("_count", None, h.get_sample_count() as f64, out);
                }
                MetricType::SUMMARY => {
                    let s = metric.get_summary();
                    for q in s.get_quantile() {
                        line(
                            "",
                            Some((QUANTILE_LABEL, Bound::Number(q.quantile()))),
                            q.value(),
                            out,
                        );
                    }
                    line("_sum", None, s.sample_sum(), out);
                    line("_count", None, s.sample_count() as f64, out);
                }
                MetricType::UNTYPED => unreachable!("refused above"),
            }
        }
    }
    Ok(())
}

/// A bucket's or a quantile's bound, as its label value.
#[derive(Clone, Copy)]
enum Bound {
    /// Written as `f64`'s `Display` writes it (as `to_string` would).
    Number(f64),
    /// `+Inf`, the bucket the encoder adds when the histogram has none.
    PositiveInfinity,
}

/// One line: `name{labels} value[ timestamp]`.
fn sample(
    out: &mut Vec<u8>,
    name: &str,
    suffix: &str,
    metric: &Metric,
    extra: Option<(&str, Bound)>,
    value: f64,
) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(suffix.as_bytes());
    labels(metric.get_label(), extra, out);
    out.push(b' ');
    number(value, out);
    let timestamp = metric.timestamp_ms();
    if timestamp != 0 {
        out.push(b' ');
        // Writing into a `Vec` cannot fail.
        let _ = write!(out, "{timestamp}");
    }
    out.push(b'\n');
}

/// `{name="value",...}`, values escaped; nothing without any label.
fn labels(pairs: &[LabelPair], extra: Option<(&str, Bound)>, out: &mut Vec<u8>) {
    if pairs.is_empty() && extra.is_none() {
        return;
    }
    let mut separator = b'{';
    for pair in pairs {
        out.push(separator);
        out.extend_from_slice(pair.name().as_bytes());
        out.extend_from_slice(b"=\"");
        escape(pair.value(), true, out);
        out.push(b'"');
        separator = b',';
    }
    if let Some((name, bound)) = extra {
        out.push(separator);
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b"=\"");
        // A number's text has nothing to escape.
        match bound {
            Bound::Number(v) => number(v, out),
            Bound::PositiveInfinity => out.extend_from_slice(b"+Inf"),
        }
        out.push(b'"');
    }
    out.push(b'}');
}

/// `value` as `f64`'s `Display` writes it.
fn number(value: f64, out: &mut Vec<u8>) {
    // Writing into a `Vec` cannot fail.
    let _ = write!(out, "{value}");
}

/// `text` with `\` as `\\` and a newline as `\n`, and with `quotes` a `"`
/// as `\"`.
fn escape(text: &str, quotes: bool, out: &mut Vec<u8>) {
    let mut rest = text.as_bytes();
    while let Some(at) = rest
        .iter()
        .position(|&b| b == b'\\' || b == b'\n' || (quotes && b == b'"'))
    {
        out.extend_from_slice(&rest[..at]);
        out.extend_from_slice(match rest[at] {
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            _ => b"\\\"",
        });
        rest = &rest[at + 1..];
    }
    out.extend_from_slice(rest);
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use prometheus::core::Collector;
    use prometheus::proto::{Bucket, Counter, Gauge, Histogram, Quantile, Summary};
    use prometheus::{Encoder, TextEncoder};

    use super::super::AllocCollector;
    use super::*;

    /// What `prometheus::TextEncoder` writes for `families`.
    fn reference(families: &[MetricFamily]) -> String {
        let mut out = Vec::new();
        TextEncoder::new().encode(families, &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    fn ours(families: &[MetricFamily]) -> String {
        let mut out = Vec::new();
        encode(families, &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    fn pair(name: &str, value: &str) -> LabelPair {
        let mut p = LabelPair::default();
        p.set_name(name.to_string());
        p.set_value(value.to_string());
        p
    }

    fn family(name: &str, help: &str, kind: MetricType, metrics: Vec<Metric>) -> MetricFamily {
        let mut f = MetricFamily::default();
        f.set_name(name.to_string());
        f.set_help(help.to_string());
        f.set_field_type(kind);
        f.set_metric(metrics);
        f
    }

    #[test]
    fn the_collector_s_families_encode_as_the_prometheus_encoder_encodes_them() {
        let labels = HashMap::from([
            ("service".to_string(), "check\"out\\ \n".to_string()),
            ("instance".to_string(), "eu-1".to_string()),
        ]);
        for collector in [
            AllocCollector::new(),
            AllocCollector::with_const_labels(labels).unwrap(),
        ] {
            let families = collector.collect();
            assert_eq!(ours(&families), reference(&families));
        }
        #[cfg(target_os = "linux")]
        {
            let process = prometheus::process_collector::ProcessCollector::for_self().collect();
            assert_eq!(ours(&process), reference(&process));
        }
    }

    #[test]
    fn every_type_value_and_escape_encodes_as_the_prometheus_encoder_encodes_it() {
        let value_metric = |v: f64, kind: MetricType, ts: i64, labels: Vec<LabelPair>| {
            let mut m = Metric::default();
            if kind == MetricType::COUNTER {
                let mut c = Counter::default();
                c.set_value(v);
                m.set_counter(c);
            } else {
                let mut g = Gauge::default();
                g.set_value(v);
                m.set_gauge(g);
            }
            m.set_timestamp_ms(ts);
            m.set_label(labels);
            m
        };
        let values = [
            0.0,
            -0.0,
            1.0,
            0.1,
            1e21,
            1.5e-7,
            123456789.0,
            u64::MAX as f64,
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::MIN_POSITIVE,
        ];
        let counters = values
            .iter()
            .enumerate()
            .map(|(i, &v)| {
                value_metric(
                    v,
                    MetricType::COUNTER,
                    i as i64 * 1_000 - 3_000,
                    vec![pair("a", "x\\y"), pair("b", &format!("\"{i}\"\n"))],
                )
            })
            .collect();
        let gauges = values
            .iter()
            .map(|&v| value_metric(v, MetricType::GAUGE, 0, Vec::new()))
            .collect();
        let histogram = |bounds: &[f64], labels: Vec<LabelPair>| {
            let mut h = Histogram::default();
            h.set_bucket(
                bounds
                    .iter()
                    .enumerate()
                    .map(|(i, &b)| {
                        let mut bucket = Bucket::default();
                        bucket.set_upper_bound(b);
                        bucket.set_cumulative_count(i as u64 * 7);
                        bucket
                    })
                    .collect(),
            );
            h.set_sample_count(99);
            h.set_sample_sum(0.25);
            let mut m = Metric::default();
            m.set_histogram(h);
            m.set_label(labels);
            m
        };
        let mut summary = Summary::default();
        summary.set_quantile(
            [0.5, 0.99]
                .iter()
                .map(|&q| {
                    let mut quantile = Quantile::default();
                    quantile.set_quantile(q);
                    quantile.set_value(q * 3.0);
                    quantile
                })
                .collect(),
        );
        summary.set_sample_count(3);
        summary.set_sample_sum(1.5);
        let mut summary_metric = Metric::default();
        summary_metric.set_summary(summary);
        summary_metric.set_label(vec![pair("q", "")]);
        let families = vec![
            family(
                "c_total",
                "help \\ with\nnewline \"quoted\"",
                MetricType::COUNTER,
                counters,
            ),
            family("g", "", MetricType::GAUGE, gauges),
            family(
                "h",
                "h",
                MetricType::HISTOGRAM,
                vec![
                    histogram(&[0.5, 8.0, 1e9], Vec::new()),
                    histogram(&[1.0, f64::INFINITY], vec![pair("k", "v")]),
                    histogram(&[], vec![pair("k", "w")]),
                ],
            ),
            family("s", "summary", MetricType::SUMMARY, vec![summary_metric]),
        ];
        assert_eq!(ours(&families), reference(&families));
    }

    #[test]
    fn what_the_prometheus_encoder_refuses_is_an_error() {
        let empty = family("e", "h", MetricType::GAUGE, Vec::new());
        let mut out = Vec::new();
        assert!(encode(&[empty], &mut out).is_err());
        let mut m = Metric::default();
        m.set_gauge(Gauge::default());
        let nameless = family("", "h", MetricType::GAUGE, vec![m.clone()]);
        assert!(encode(&[nameless], &mut out).is_err());
        let untyped = family("u", "h", MetricType::UNTYPED, vec![m]);
        assert!(encode(&[untyped], &mut out).is_err());
    }
}
