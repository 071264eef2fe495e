//! allocmeter's figures as OpenTelemetry metrics: observable instruments
//! whose callbacks read [`allocmeter::stats()`] when the SDK collects.
//!
//! ```text
//! cargo run --release -p allocmeter-otel-example              # three collections, printed
//! cargo run --release -p allocmeter-otel-example -- --self-check
//! ```
//!
//! | instrument | kind | unit | from [`allocmeter::MemStats`] |
//! |---|---|---|---|
//! | `allocmeter.allocs` | observable counter | `{allocation}` | `allocs` |
//! | `allocmeter.frees` | observable counter | `{free}` | `frees` |
//! | `allocmeter.alloc.bytes` | observable counter | `By` | `alloc_bytes` |
//! | `allocmeter.free.bytes` | observable counter | `By` | `free_bytes` |
//! | `allocmeter.heap.live.bytes` | observable gauge | `By` | `live_bytes` |
//! | `allocmeter.heap.live.objects` | observable gauge | `{object}` | `live_objects` |
//! | `allocmeter.size_class.allocs` | observable counter, one point per `size_class` | `{allocation}` | `by_size[i].allocs` |
//! | `allocmeter.size_class.frees` | observable counter, one point per `size_class` | `{free}` | `by_size[i].frees` |
//!
//! `size_class` is the class's largest request size in bytes (`"8"` …
//! `"4294967296"`), `"+Inf"` for the open top class, as Prometheus's `le`.
//! OpenTelemetry has no asynchronous histogram, so the size distribution is
//! these per-class counters rather than a histogram.
//!
//! The readings go to an exporter of this file's own ([`Captured`]) through
//! the SDK's [`PeriodicReader`]; a service puts `opentelemetry-otlp`'s
//! exporter there instead (docs/opentelemetry.md). With `--self-check` it
//! collects while a thread allocates, and checks every exported value
//! against `allocmeter::stats()` read just before and just after the
//! collection: each counter between the two; each gauge within what the
//! counters allow (`live` between `alloc before - free after` and
//! `alloc after - free before`). It exits 1 with what differs otherwise.

use std::alloc::System;
use std::collections::BTreeMap;
use std::hint::black_box;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use allocmeter::{Instrumented, MemStats};
use opentelemetry::KeyValue;
use opentelemetry::metrics::{Meter, MeterProvider as _};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData, ResourceMetrics};
use opentelemetry_sdk::metrics::exporter::PushMetricExporter;
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider, Temporality};

#[global_allocator]
static GLOBAL: Instrumented<System> = Instrumented::new(System);

/// The attribute that tells the size classes apart.
const SIZE_CLASS: &str = "size_class";

/// Registers allocmeter's instruments on `meter`. Each callback reads
/// [`allocmeter::stats()`] (no lock, no allocation, a few hundred loads)
/// when the SDK collects; the instruments live as long as the meter
/// provider. Each callback reads the statistics on its own, so two
/// instruments of one collection can differ by what was allocated between
/// their callbacks.
fn register(meter: &Meter) {
    type Field = fn(&MemStats) -> u64;
    let counters: [(&str, &str, &str, Field); 4] = [
        (
            "allocmeter.allocs",
            "{allocation}",
            "Blocks allocated since the process started (each realloc adds one)",
            |s| s.allocs,
        ),
        (
            "allocmeter.frees",
            "{free}",
            "Blocks freed since the process started (each realloc adds one)",
            |s| s.frees,
        ),
        (
            "allocmeter.alloc.bytes",
            "By",
            "Bytes allocated since the process started, freed or not",
            |s| s.alloc_bytes,
        ),
        (
            "allocmeter.free.bytes",
            "By",
            "Bytes freed since the process started",
            |s| s.free_bytes,
        ),
    ];
    for (name, unit, description, field) in counters {
        meter
            .u64_observable_counter(name)
            .with_unit(unit)
            .with_description(description)
            .with_callback(move |observer| observer.observe(field(&allocmeter::stats()), &[]))
            .build();
    }
    let gauges: [(&str, &str, &str, Field); 2] = [
        (
            "allocmeter.heap.live.bytes",
            "By",
            "Bytes in blocks allocated and not yet freed",
            |s| s.live_bytes,
        ),
        (
            "allocmeter.heap.live.objects",
            "{object}",
            "Blocks allocated and not yet freed",
            |s| s.live_objects,
        ),
    ];
    for (name, unit, description, field) in gauges {
        meter
            .u64_observable_gauge(name)
            .with_unit(unit)
            .with_description(description)
            .with_callback(move |observer| observer.observe(field(&allocmeter::stats()), &[]))
            .build();
    }
    // The size distribution: OpenTelemetry has no asynchronous histogram,
    // so one counter point per size class, all from one reading.
    type ClassField = fn(&allocmeter::SizeClassStats) -> u64;
    let classes: [(&str, &str, &str, ClassField); 2] = [
        (
            "allocmeter.size_class.allocs",
            "{allocation}",
            "Allocations per size class (size_class: the largest request size in it, bytes)",
            |c| c.allocs,
        ),
        (
            "allocmeter.size_class.frees",
            "{free}",
            "Frees per size class (size_class: the largest request size in it, bytes)",
            |c| c.frees,
        ),
    ];
    for (name, unit, description, field) in classes {
        meter
            .u64_observable_counter(name)
            .with_unit(unit)
            .with_description(description)
            .with_callback(move |observer| {
                for class in allocmeter::stats().by_size.iter() {
                    observer.observe(
                        field(class),
                        &[KeyValue::new(SIZE_CLASS, class_label(class))],
                    );
                }
            })
            .build();
    }
}

/// A size class's `size_class` attribute: its largest size, or `+Inf`.
fn class_label(class: &allocmeter::SizeClassStats) -> String {
    class
        .max_size
        .map_or_else(|| "+Inf".to_string(), |m| m.to_string())
}

/// The `size_class` attribute among `attributes`, or "".
fn class_of<'a>(mut attributes: impl Iterator<Item = &'a KeyValue>) -> String {
    attributes
        .find(|kv| kv.key.as_str() == SIZE_CLASS)
        .map(|kv| kv.value.as_str().into_owned())
        .unwrap_or_default()
}

/// What one instrument exported in one collection.
#[derive(Clone, Debug)]
struct Reading {
    /// `counter` (a monotonic cumulative sum), `gauge`, or what else the
    /// SDK produced (the self-check refuses it).
    kind: &'static str,
    /// Its unit.
    unit: String,
    /// The `size_class` attribute (empty for the unattributed), and the
    /// value.
    points: Vec<(String, u64)>,
}

/// An exporter that keeps the latest collection in memory: the SDK's
/// [`PeriodicReader`] hands it what it collected, as it would hand it to an
/// OTLP exporter.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<BTreeMap<String, Reading>>>);

impl Captured {
    /// The latest collection, by instrument name.
    fn take(&self) -> BTreeMap<String, Reading> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|e| e.into_inner()))
    }

    fn capture(&self, metrics: &ResourceMetrics) {
        let mut kept = self.0.lock().unwrap_or_else(|e| e.into_inner());
        for scope in metrics.scope_metrics() {
            for metric in scope.metrics() {
                let (kind, points) = match metric.data() {
                    AggregatedMetrics::U64(MetricData::Sum(sum))
                        if sum.is_monotonic() && sum.temporality() == Temporality::Cumulative =>
                    {
                        let points = sum
                            .data_points()
                            .map(|p| (class_of(p.attributes()), p.value()))
                            .collect();
                        ("counter", points)
                    }
                    AggregatedMetrics::U64(MetricData::Gauge(gauge)) => {
                        let points = gauge
                            .data_points()
                            .map(|p| (class_of(p.attributes()), p.value()))
                            .collect();
                        ("gauge", points)
                    }
                    other => (
                        match other {
                            AggregatedMetrics::U64(_) => "another u64 aggregation",
                            _ => "not u64",
                        },
                        Vec::new(),
                    ),
                };
                let mut points: Vec<(String, u64)> = points;
                // Size classes smallest first, `+Inf` last.
                points.sort_by_key(|p| p.0.parse::<u64>().unwrap_or(u64::MAX));
                kept.insert(
                    metric.name().to_string(),
                    Reading {
                        kind,
                        unit: metric.unit().to_string(),
                        points,
                    },
                );
            }
        }
    }
}

impl PushMetricExporter for Captured {
    fn export(
        &self,
        metrics: &ResourceMetrics,
    ) -> impl std::future::Future<Output = OTelSdkResult> + Send {
        self.capture(metrics);
        std::future::ready(Ok(()))
    }

    fn force_flush(&self) -> OTelSdkResult {
        Ok(())
    }

    fn shutdown_with_timeout(&self, _timeout: Duration) -> OTelSdkResult {
        Ok(())
    }

    fn temporality(&self) -> Temporality {
        Temporality::Cumulative
    }
}

/// A meter provider with allocmeter's instruments registered, whose only
/// reader exports to `captured`, collecting when flushed (its own period,
/// an hour, never comes in this program).
fn provider(captured: &Captured) -> SdkMeterProvider {
    let reader = PeriodicReader::builder(captured.clone())
        .with_interval(Duration::from_secs(3600))
        .build();
    let provider = SdkMeterProvider::builder().with_reader(reader).build();
    register(&provider.meter("allocmeter"));
    provider
}

/// A thread running [`churn`] until [`Churn::stop`].
struct Churn {
    stop: Arc<AtomicBool>,
    worker: thread::JoinHandle<()>,
}

impl Churn {
    fn start() -> Churn {
        let stop = Arc::new(AtomicBool::new(false));
        let worker = {
            let stop = Arc::clone(&stop);
            thread::spawn(move || churn(&stop))
        };
        Churn { stop, worker }
    }

    /// Tells the thread to stop and waits for it.
    fn stop(self) {
        // Relaxed: see `churn`; the join waits for the thread.
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.worker.join();
    }
}

/// Some allocation while the collection runs: vectors of sizes across the
/// classes, kept a while and dropped.
fn churn(stop: &AtomicBool) {
    let mut kept: Vec<Vec<u8>> = Vec::new();
    let mut i = 0usize;
    // Relaxed: the flag carries no data; a late look allocates a little more.
    while !stop.load(Ordering::Relaxed) {
        kept.push(black_box(vec![0u8; 16 << (i % 12)]));
        if kept.len() > 64 {
            kept.remove(0);
        }
        i += 1;
        if i.is_multiple_of(256) {
            thread::sleep(Duration::from_micros(200));
        }
    }
}

/// The instruments `register` makes: name, kind, unit, whether per class.
const EXPECTED: [(&str, &str, &str, bool); 8] = [
    ("allocmeter.allocs", "counter", "{allocation}", false),
    ("allocmeter.frees", "counter", "{free}", false),
    ("allocmeter.alloc.bytes", "counter", "By", false),
    ("allocmeter.free.bytes", "counter", "By", false),
    ("allocmeter.heap.live.bytes", "gauge", "By", false),
    ("allocmeter.heap.live.objects", "gauge", "{object}", false),
    (
        "allocmeter.size_class.allocs",
        "counter",
        "{allocation}",
        true,
    ),
    ("allocmeter.size_class.frees", "counter", "{free}", true),
];

/// The bounds a value exported between the readings `a` and `b` must lie
/// in, for the instrument `name` (and size class `class`).
fn bounds(name: &str, class: &str, a: &MemStats, b: &MemStats) -> Option<(u64, u64)> {
    let per_class = |f: fn(&allocmeter::SizeClassStats) -> u64| {
        let i = a.by_size.iter().position(|c| class_label(c) == class)?;
        Some((f(&a.by_size[i]), f(&b.by_size[i])))
    };
    Some(match name {
        "allocmeter.allocs" => (a.allocs, b.allocs),
        "allocmeter.frees" => (a.frees, b.frees),
        "allocmeter.alloc.bytes" => (a.alloc_bytes, b.alloc_bytes),
        "allocmeter.free.bytes" => (a.free_bytes, b.free_bytes),
        // live = alloc - free, each of which only grows between a and b.
        "allocmeter.heap.live.bytes" => (
            a.alloc_bytes.saturating_sub(b.free_bytes),
            b.alloc_bytes.saturating_sub(a.free_bytes),
        ),
        "allocmeter.heap.live.objects" => (
            a.allocs.saturating_sub(b.frees),
            b.allocs.saturating_sub(a.frees),
        ),
        "allocmeter.size_class.allocs" => per_class(|c| c.allocs)?,
        "allocmeter.size_class.frees" => per_class(|c| c.frees)?,
        _ => return None,
    })
}

/// Collects once while a thread allocates and checks every value against
/// the statistics read around the collection. Returns the problems found.
fn self_check() -> Vec<String> {
    let mut problems = Vec::new();
    if !allocmeter::is_installed() {
        return vec!["allocmeter is not the global allocator: every figure would be 0".into()];
    }
    let captured = Captured::default();
    let provider = provider(&captured);
    let churn = Churn::start();
    thread::sleep(Duration::from_millis(50));
    let before = allocmeter::stats();
    let flushed = provider.force_flush();
    let after = allocmeter::stats();
    churn.stop();
    if let Err(e) = flushed {
        problems.push(format!("the collection failed: {e}"));
    }
    // Taken before the shutdown, which collects and exports once more.
    let exported = captured.take();
    let _ = provider.shutdown();

    let mut points = 0;
    for (name, kind, unit, per_class) in EXPECTED {
        let Some(reading) = exported.get(name) else {
            problems.push(format!("{name}: not exported"));
            continue;
        };
        if reading.kind != kind || reading.unit != unit {
            problems.push(format!(
                "{name}: exported as {} in {:?}, expected a {kind} in {unit:?}",
                reading.kind, reading.unit
            ));
        }
        let expected_points = if per_class { before.by_size.len() } else { 1 };
        if reading.points.len() != expected_points {
            problems.push(format!(
                "{name}: {} points, expected {expected_points}",
                reading.points.len()
            ));
        }
        for (class, value) in &reading.points {
            points += 1;
            let what = if class.is_empty() {
                name.to_string()
            } else {
                format!("{name}{{size_class={class}}}")
            };
            match bounds(name, class, &before, &after) {
                Some((low, high)) if (low..=high).contains(value) => {}
                Some((low, high)) => problems.push(format!(
                    "{what}: exported {value}, outside [{low}, {high}] (allocmeter::stats() before and after the collection)"
                )),
                None => problems.push(format!("{what}: an attribute allocmeter has no class for")),
            }
        }
    }
    for name in exported.keys() {
        if !EXPECTED.iter().any(|e| e.0 == name) {
            problems.push(format!(
                "{name}: exported, but not one of allocmeter's instruments"
            ));
        }
    }
    // Not vacuous: the process allocated, and the collection saw it.
    if before.allocs == 0
        || exported
            .get("allocmeter.allocs")
            .is_none_or(|r| r.points.iter().all(|p| p.1 == 0))
    {
        problems.push("allocmeter.allocs is 0: nothing was counted".into());
    }
    if problems.is_empty() {
        println!(
            "otel: self-check passed: {} instruments, {points} points, each within allocmeter::stats() read around the collection \
             (allocmeter.allocs: {} <= {} <= {}; {} allocations happened during it)",
            EXPECTED.len(),
            before.allocs,
            exported["allocmeter.allocs"].points[0].1,
            after.allocs,
            after.allocs - before.allocs
        );
    }
    problems
}

/// Collects three times, a second apart, and prints what was exported.
fn show() {
    let captured = Captured::default();
    let provider = provider(&captured);
    let churn = Churn::start();
    for round in 1..=3 {
        thread::sleep(Duration::from_secs(1));
        if let Err(e) = provider.force_flush() {
            eprintln!("otel: the collection failed: {e}");
        }
        println!("collection {round}:");
        for (name, reading) in captured.take() {
            let points: Vec<String> = reading
                .points
                .iter()
                .filter(|p| p.1 > 0)
                .map(|(class, value)| {
                    if class.is_empty() {
                        value.to_string()
                    } else {
                        format!("{class}:{value}")
                    }
                })
                .collect();
            println!(
                "  {name:<30} {:<7} {:<12} {}",
                reading.kind,
                reading.unit,
                points.join(" ")
            );
        }
    }
    churn.stop();
    let _ = provider.shutdown();
}

fn main() -> ExitCode {
    match std::env::args().nth(1).as_deref() {
        None => {
            show();
            ExitCode::SUCCESS
        }
        Some("--self-check") => {
            let problems = self_check();
            for p in &problems {
                eprintln!("otel: self-check FAILED: {p}");
            }
            if problems.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Some(other) => {
            eprintln!("otel: unknown argument {other:?}; usage: otel [--self-check]");
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    /// The self-check under `cargo test` too: every exported point within
    /// `allocmeter::stats()` read around the collection.
    #[test]
    fn exported_values_lie_between_the_readings_around_the_collection() {
        let problems = super::self_check();
        assert!(problems.is_empty(), "{}", problems.join("\n"));
    }
}
