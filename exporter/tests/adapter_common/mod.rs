//! What the adapters' tests share: a known workload, a parser of the text
//! the other crates render, allocmeter's own `/metrics` text to compare
//! with, bounds, and `promtool check metrics`.

#![allow(dead_code)] // each test binary uses its own part

use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Command, Stdio};

use allocmeter::{MemStats, StatsSplit};

/// One sample line: name, labels, value.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// Every sample of a text exposition (Prometheus 0.0.4 or OpenMetrics).
pub fn parse(text: &str) -> Vec<Sample> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|line| {
            let (series, value) = line.rsplit_once(' ').expect("a sample line has a value");
            let value = match value {
                "+Inf" => f64::INFINITY,
                v => v
                    .parse::<f64>()
                    .unwrap_or_else(|_| panic!("value of {line:?}")),
            };
            let (name, labels) = match series.split_once('{') {
                None => (series.to_string(), BTreeMap::new()),
                Some((name, rest)) => {
                    let body = rest.strip_suffix('}').expect("labels end with }");
                    let labels = body
                        .split(',')
                        .filter(|pair| !pair.is_empty())
                        .map(|pair| {
                            let (k, v) = pair.split_once('=').expect("label is k=\"v\"");
                            (k.to_string(), v.trim_matches('"').to_string())
                        })
                        .collect();
                    (name.to_string(), labels)
                }
            };
            Sample {
                name,
                labels,
                value,
            }
        })
        .collect()
}

/// The value of the one sample named `name` with exactly `labels`.
pub fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    let want: BTreeMap<String, String> = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let found: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.name == name && s.labels == want)
        .collect();
    assert_eq!(
        found.len(),
        1,
        "one sample {name}{labels:?}, found {found:?}"
    );
    found[0].value
}

/// `# HELP` and `# TYPE` of every family: name → (help, type).
pub fn descriptors(text: &str) -> BTreeMap<String, (String, String)> {
    let mut out: BTreeMap<String, (String, String)> = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap_or((rest, ""));
            out.entry(name.to_string()).or_default().0 = help.to_string();
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("TYPE has a type");
            out.entry(name.to_string()).or_default().1 = kind.to_string();
        }
    }
    out
}

/// allocmeter's own `/metrics` text for the families read from the
/// counters alone: an [`allocmeter_exporter::AllocCollector`] without an
/// exporter, encoded as the exporter serves it.
pub fn own_metrics_text() -> String {
    collector_text(allocmeter_exporter::AllocCollector::new())
}

/// What `collector` serves on allocmeter's own `/metrics`, as text.
pub fn collector_text(collector: allocmeter_exporter::AllocCollector) -> String {
    use prometheus::Encoder;
    let registry = prometheus::Registry::new();
    registry.register(Box::new(collector)).expect("register");
    let mut out = Vec::new();
    prometheus::TextEncoder::new()
        .encode(&registry.gather(), &mut out)
        .expect("encode");
    String::from_utf8(out).expect("utf-8")
}

/// How many blocks the workload keeps of [`BLOCK`] bytes.
pub const BLOCKS: usize = 1000;
/// Their size: class 4, `(64, 128]`, whose bound is 128.
pub const BLOCK: usize = 100;
/// Blocks of [`BIG`] bytes the workload allocates and frees.
pub const BIGS: usize = 10;
/// Their size: class 17, `(512 KiB, 1 MiB]`.
pub const BIG: usize = 1 << 20;

/// A known workload: [`BLOCKS`] blocks of [`BLOCK`] bytes kept, [`BIGS`]
/// of [`BIG`] allocated and freed, and 100 vectors grown by realloc.
pub fn workload() -> Vec<Vec<u8>> {
    let mut kept: Vec<Vec<u8>> = Vec::with_capacity(BLOCKS);
    for i in 0..BLOCKS {
        kept.push(vec![i as u8; BLOCK]);
    }
    for i in 0..BIGS {
        let big = std::hint::black_box(vec![i as u8; BIG]);
        drop(big);
    }
    for i in 0..100 {
        let mut grown: Vec<u8> = Vec::with_capacity(8);
        for j in 0..200u8 {
            grown.push(j.wrapping_add(i));
        }
        drop(std::hint::black_box(grown));
    }
    kept
}

/// Asserts `lo <= v <= hi`.
pub fn between(what: &str, lo: u64, v: f64, hi: u64) {
    assert!(
        lo as f64 <= v && v <= hi as f64,
        "{what}: {v} not within [{lo}, {hi}] (read before and after)"
    );
}

/// The live figures' bounds between two reads: at least what was
/// allocated by the first less what was freed by the second, at most what
/// was allocated by the second less what was freed by the first.
pub fn live_between(what: &str, before: &MemStats, v: f64, after: &MemStats) {
    let bytes = what.ends_with("bytes");
    let (a0, f0, a1, f1) = if bytes {
        (
            before.alloc_bytes,
            before.free_bytes,
            after.alloc_bytes,
            after.free_bytes,
        )
    } else {
        (before.allocs, before.frees, after.allocs, after.frees)
    };
    between(what, a0.saturating_sub(f1), v, a1 - f0);
}

/// Asserts that every counter series of allocmeter's own `/metrics`
/// (`own` its families' help and type, `own_before` and `own_after` two
/// scrapes around the adapter's reading) lies in `got` within its two
/// scraped values; `which` names the rendering in a failure. At least 20
/// series must be compared.
pub fn counters_within(
    which: &str,
    got: &[Sample],
    own: &BTreeMap<String, (String, String)>,
    own_before: &[Sample],
    own_after: &[Sample],
) {
    let mut counters = 0;
    for s in own_after {
        let Some((_, kind)) = own.get(&s.name) else {
            continue; // a histogram's _bucket, _sum or _count
        };
        if kind != "counter" {
            continue;
        }
        let labels: Vec<(&str, &str)> = s
            .labels
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let lo = value(own_before, &s.name, &labels);
        let v = value(got, &s.name, &labels);
        assert!(
            lo <= v && v <= s.value,
            "{which}: {} {labels:?}: {v} not within [{lo}, {}]",
            s.name,
            s.value
        );
        counters += 1;
    }
    assert!(
        counters >= 20,
        "{which}: {counters} counter series compared"
    );
}

/// Asserts that the figures in `got` named after `allocmeter::stats_split`'s
/// fields lie within its two reads `before` and `after` the adapter's: the
/// program's bytes, blocks, frees, failures, live heap, reallocs by kind
/// and grown bytes, threads, the exporter's own allocations, and the
/// sample rate.
pub fn figures_within(got: &[Sample], before: &StatsSplit, after: &StatsSplit) {
    let (b, a) = (&before.program, &after.program);
    let read = |name: &str| value(got, name, &[]);
    for (name, lo, hi) in [
        ("allocmeter_alloc_bytes_total", b.alloc_bytes, a.alloc_bytes),
        ("allocmeter_allocs_total", b.allocs, a.allocs),
        ("allocmeter_frees_total", b.frees, a.frees),
        ("allocmeter_free_bytes_total", b.free_bytes, a.free_bytes),
        ("allocmeter_alloc_failures_total", b.failures, a.failures),
        (
            "allocmeter_threads",
            b.threads.min(a.threads),
            b.threads.max(a.threads),
        ),
        (
            "allocmeter_exporter_allocs_total",
            before.internal.allocs,
            after.internal.allocs,
        ),
    ] {
        between(name, lo, read(name), hi);
    }
    for name in ["allocmeter_heap_live_bytes", "allocmeter_heap_live_objects"] {
        live_between(name, b, read(name), a);
    }
    for (kind, lo, hi) in [
        (
            "grown_in_place",
            b.reallocs.grown_in_place,
            a.reallocs.grown_in_place,
        ),
        (
            "shrunk_in_place",
            b.reallocs.shrunk_in_place,
            a.reallocs.shrunk_in_place,
        ),
        ("moved", b.reallocs.moved, a.reallocs.moved),
    ] {
        let v = value(got, "allocmeter_reallocs_total", &[("kind", kind)]);
        between(kind, lo, v, hi);
    }
    between(
        "grow",
        b.reallocs.grown_bytes,
        value(
            got,
            "allocmeter_realloc_delta_bytes_total",
            &[("direction", "grow")],
        ),
        a.reallocs.grown_bytes,
    );
    assert_eq!(
        read("allocmeter_profile_rate_bytes"),
        allocmeter::sample_rate() as f64
    );
}

/// The label value of size class `class`: its inclusive upper bound in
/// bytes, `+Inf` for the top class.
pub fn class_label(class: usize) -> String {
    match allocmeter::size_class::upper_bound(class) {
        Some(bound) => bound.to_string(),
        None => "+Inf".to_string(),
    }
}

/// Runs `program` with `args`, `text` on its standard input, and waits for
/// its output; an error only if it could not be started or fed.
fn piped(program: &str, args: &[&str], text: &str) -> std::io::Result<std::process::Output> {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    child
        .stdin
        .take()
        .expect("stdin was piped")
        .write_all(text.as_bytes())?;
    child.wait_with_output()
}

/// Runs `promtool check metrics` on `text` (skipped, and said so, if
/// promtool is not installed); returns its output.
pub fn promtool_check(what: &str, text: &str) -> Option<String> {
    let out = match piped("promtool", &["check", "metrics"], text) {
        Ok(out) => out,
        Err(e) => {
            eprintln!("promtool not run on {what} ({e}): install Debian's prometheus package");
            return None;
        }
    };
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "promtool check metrics failed on {what} ({}):\n{said}\n--- text ---\n{text}",
        out.status
    );
    Some(said)
}

/// The strict OpenMetrics parser of Python's `prometheus_client` (Debian's
/// python3-prometheus-client), run on `text`: it refuses what the
/// OpenMetrics 1.0 text format does not allow (a counter sample without
/// `_total`, a histogram without `+Inf`, buckets that fall, a missing
/// `# EOF`). Returns the number of families it read, or `None` (said so)
/// if the parser is not installed.
pub fn openmetrics_check(text: &str) -> Option<usize> {
    const SCRIPT: &str = "
import sys
try:
    from prometheus_client.openmetrics.parser import text_string_to_metric_families
except ImportError as e:
    print(e)
    sys.exit(2)
print(len(list(text_string_to_metric_families(sys.stdin.read()))))
";
    let out = match piped("/usr/bin/python3", &["-c", SCRIPT], text) {
        Ok(out) => out,
        Err(e) => {
            eprintln!("OpenMetrics parser not run ({e}): /usr/bin/python3 missing");
            return None;
        }
    };
    let stdout = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if out.status.code() == Some(2) {
        eprintln!(
            "OpenMetrics parser not run ({stdout}): install Debian's python3-prometheus-client"
        );
        return None;
    }
    assert!(
        out.status.success(),
        "the OpenMetrics parser refused the text ({}):\n{}\n--- text ---\n{text}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    Some(stdout.parse().expect("a count of families"))
}

/// Calls `render` until what it returns has `name` above 0 (an exporter's
/// figure set at its first tick), and returns that text; panics after 30 s.
pub fn render_until_positive(name: &str, mut render: impl FnMut() -> String) -> String {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let text = render();
        if parse(&text).iter().any(|s| s.name == name && s.value > 0.0) {
            return text;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{name} still not above 0 after 30 s:\n{text}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}
