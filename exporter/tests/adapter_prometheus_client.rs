//! The `prometheus-client` adapter in the official client's `Registry`:
//! encoded to OpenMetrics text and to Prometheus text, the same names, help
//! and types as allocmeter's own `/metrics` (histograms included), every
//! value within what `allocmeter::stats_split` read just before and just
//! after the encoding, the size histograms bucket by bucket, and `promtool
//! check metrics` on the text.

mod adapter_common;

use std::alloc::System;
use std::time::Duration;

use adapter_common::*;
use allocmeter::Instrumented;
use allocmeter::size_class::{NUM_SIZE_CLASSES, upper_bound};
use allocmeter_exporter::adapters::prometheus_client::Collector;
use allocmeter_test_support::exporter::start_exporter;
use allocmeter_test_support::watchdog::watchdog;
use prometheus_client::registry::Registry;

#[global_allocator]
static GLOBAL: Instrumented<System> = Instrumented::new(System);

/// The bucket's cumulative count as its bounds read before and after.
fn cumulative(
    stats: &allocmeter::MemStats,
    upto: usize,
    of: fn(&allocmeter::SizeClassStats) -> u64,
) -> u64 {
    stats.by_size[..=upto].iter().map(of).sum()
}

#[test]
fn the_registry_carries_allocmeters_figures_and_whole_histograms() {
    let _dog = watchdog("adapter_prometheus_client", Duration::from_secs(120));
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Collector::new()));

    let base = allocmeter::stats_split().program;
    let kept = workload();
    let own_before = parse(&own_metrics_text());
    let before = allocmeter::stats_split();
    let mut openmetrics = String::new();
    prometheus_client::encoding::text::encode(&mut openmetrics, &registry).expect("encode");
    let mut text = String::new();
    prometheus_client::encoding::prometheus_text::encode(&mut text, &registry).expect("encode");
    let after = allocmeter::stats_split();
    let own_after_text = own_metrics_text();
    let own_after = parse(&own_after_text);
    drop(kept);
    let (b, a) = (&before.program, &after.program);

    // Prometheus text: every family of allocmeter's own, by the same name,
    // help and type, histograms included, and no other.
    let own = descriptors(&own_after_text);
    let mine = descriptors(&text);
    assert_eq!(mine, own, "HELP and TYPE as on allocmeter's own /metrics");
    // OpenMetrics: counters named without _total, their samples with it;
    // bytes declared as the unit; the end marked.
    assert!(openmetrics.ends_with("# EOF\n"), "{openmetrics}");
    assert!(openmetrics.contains("# TYPE allocmeter_alloc_bytes counter\n"));
    assert!(openmetrics.contains("# UNIT allocmeter_alloc_bytes bytes\n"));
    assert!(openmetrics.contains("# TYPE allocmeter_alloc_size_bytes histogram\n"));

    for (which, body) in [("OpenMetrics", &openmetrics), ("Prometheus text", &text)] {
        let got = parse(body);
        // Every counter series of /metrics within its reads before and after,
        // and the figures against stats_split() by name.
        counters_within(which, &got, &own, &own_before, &own_after);
        figures_within(&got, &before, &after);
        let read = |name: &str| value(&got, name, &[]);
        assert!(read("allocmeter_heap_live_bytes") >= (BLOCKS * BLOCK) as f64);

        // The histograms bucket by bucket: cumulative counts over the
        // classes up to each bound, +Inf and _count all of them, _sum the
        // bytes.
        type Of = fn(&allocmeter::SizeClassStats) -> u64;
        for (family, of, sum_lo, sum_hi) in [
            (
                "allocmeter_alloc_size_bytes",
                (|c| c.allocs) as Of,
                b.alloc_bytes,
                a.alloc_bytes,
            ),
            (
                "allocmeter_free_size_bytes",
                (|c| c.frees) as Of,
                b.free_bytes,
                a.free_bytes,
            ),
        ] {
            let bucket = format!("{family}_bucket");
            let buckets: Vec<&Sample> = got.iter().filter(|s| s.name == bucket).collect();
            assert_eq!(
                buckets.len(),
                NUM_SIZE_CLASSES,
                "{which}: {family}: 30 bounds and +Inf"
            );
            let mut previous = 0.0;
            for class in 0..NUM_SIZE_CLASSES {
                let want = upper_bound(class).map_or(f64::INFINITY, |u| u as f64);
                let s = buckets
                    .iter()
                    .find(|s| {
                        s.labels["le"]
                            .replace("+Inf", "inf")
                            .parse::<f64>()
                            .unwrap()
                            == want
                    })
                    .unwrap_or_else(|| panic!("{which}: {family} has le={want}"));
                between(
                    &format!("{which}: {family} le={want}"),
                    cumulative(b, class, of),
                    s.value,
                    cumulative(a, class, of),
                );
                assert!(s.value >= previous, "cumulative");
                previous = s.value;
            }
            let count = value(&got, &format!("{family}_count"), &[]);
            assert_eq!(
                count, previous,
                "{which}: {family}: _count is the +Inf bucket"
            );
            between(
                &format!("{family}_sum"),
                sum_lo,
                value(&got, &format!("{family}_sum"), &[]),
                sum_hi,
            );
        }
        // The workload is in its buckets: 1000 of (64, 128], 10 of (512 KiB, 1 MiB].
        let le = |family: &str, bound: f64| {
            got.iter()
                .find(|s| s.name == family && s.labels["le"].parse::<f64>().ok() == Some(bound))
                .map(|s| s.value)
                .unwrap()
        };
        let in_128 = le("allocmeter_alloc_size_bytes_bucket", 128.0)
            - le("allocmeter_alloc_size_bytes_bucket", 64.0);
        assert!(
            in_128 >= (base.by_size[4].allocs + BLOCKS as u64) as f64,
            "{which}: {in_128}"
        );
        let in_1m = le("allocmeter_free_size_bytes_bucket", 1048576.0)
            - le("allocmeter_free_size_bytes_bucket", 524288.0);
        assert!(
            in_1m >= (base.by_size[17].frees + BIGS as u64) as f64,
            "{which}: {in_1m}"
        );
    }

    // promtool's `check metrics` reads the Prometheus text format only (an
    // OpenMetrics counter's family, named without _total, has no samples
    // there): it checks that encoding; Python's strict OpenMetrics parser
    // checks the other.
    if let Some(said) = promtool_check("Prometheus text", &text) {
        println!("promtool check metrics on the Prometheus text: ok {said}");
    }
    if let Some(families) = openmetrics_check(&openmetrics) {
        assert_eq!(
            families,
            own.len(),
            "the OpenMetrics parser read every family"
        );
        println!("OpenMetrics parser: {families} families");
    }
    // From an exporter: its own figures too (the peak, the site table),
    // the families exactly those of its /metrics.
    let (exporter, _) = start_exporter(Duration::from_millis(50));
    let mut with_exporter = Registry::default();
    with_exporter.register_collector(Box::new(Collector::for_exporter(&exporter)));
    let served = render_until_positive("allocmeter_heap_live_bytes_peak", || {
        let mut text = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut text, &with_exporter)
            .expect("encode");
        text
    });
    assert_eq!(
        descriptors(&served),
        descriptors(&collector_text(exporter.collector())),
        "with an exporter, the families of its /metrics"
    );
    assert!(served.contains("\nallocmeter_profile_sites "), "{served}");
    drop(with_exporter);
    drop(exporter);

    let excerpt: Vec<&str> = openmetrics
        .lines()
        .filter(|l| {
            l.starts_with("allocmeter_alloc_bytes")
                || l.ends_with(" allocmeter_alloc_bytes bytes")
                || l.contains("TYPE allocmeter_alloc_bytes ")
                || (l.contains("allocmeter_alloc_size_bytes")
                    && (l.starts_with("# TYPE")
                        || l.starts_with("# UNIT")
                        || l.contains("le=\"64.0\"")
                        || l.contains("le=\"128.0\"")
                        || l.contains("+Inf")
                        || l.contains("_count")
                        || l.contains("_sum")))
                || *l == "# EOF"
        })
        .collect();
    println!("--- OpenMetrics excerpt ---\n{}", excerpt.join("\n"));
}
