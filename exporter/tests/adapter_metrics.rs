//! The `metrics` adapter through a real `metrics-exporter-prometheus`
//! recorder: the same names, help and types as allocmeter's own
//! `/metrics`, every value within what `allocmeter::stats_split` read just
//! before and just after the collect, the size histograms as per-class
//! counters, and `promtool check metrics` on the rendered text.

mod adapter_common;

use std::alloc::System;
use std::time::Duration;

use adapter_common::*;
use allocmeter::Instrumented;
use allocmeter::size_class::NUM_SIZE_CLASSES;
use allocmeter_exporter::adapters::metrics::{
    ALLOCS_BY_SIZE, Collector, FREES_BY_SIZE, SIZE_CLASS_LABEL,
};
use allocmeter_test_support::exporter::start_exporter;
use allocmeter_test_support::watchdog::watchdog;
use metrics_exporter_prometheus::PrometheusBuilder;

#[global_allocator]
static GLOBAL: Instrumented<System> = Instrumented::new(System);

#[test]
fn the_facade_carries_allocmeters_figures_under_its_own_names() {
    let _dog = watchdog("adapter_metrics", Duration::from_secs(120));
    let recorder = PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    metrics::set_global_recorder(recorder).expect("the only recorder");

    let collector = Collector::new();
    collector.describe();

    let base = allocmeter::stats_split().program;
    let kept = workload();
    let own_before = parse(&own_metrics_text());
    let before = allocmeter::stats_split();
    collector.collect();
    let after = allocmeter::stats_split();
    let own_after_text = own_metrics_text();
    let own_after = parse(&own_after_text);
    let text = handle.render();
    drop(kept);
    let got = parse(&text);
    let (b, a) = (&before.program, &after.program);
    println!(
        "the collect allocated {} blocks, {} bytes on the service's side",
        a.allocs - b.allocs,
        a.alloc_bytes - b.alloc_bytes
    );

    // Names, help and types: every family of allocmeter's own text but the
    // histograms, exactly as there; the histograms as per-class counters.
    let own = descriptors(&own_after_text);
    let mine = descriptors(&text);
    for (name, (help, kind)) in &own {
        if kind == "histogram" {
            assert!(!mine.contains_key(name), "{name} is not carried whole");
            continue;
        }
        assert_eq!(
            mine.get(name),
            Some(&(help.clone(), kind.clone())),
            "{name}: HELP and TYPE as on allocmeter's own /metrics"
        );
    }
    for name in [ALLOCS_BY_SIZE, FREES_BY_SIZE] {
        let (help, kind) = mine.get(name).unwrap_or_else(|| panic!("{name} described"));
        assert_eq!(kind, "counter", "{name}");
        assert!(!help.is_empty(), "{name} has help");
        assert!(
            !own.contains_key(name),
            "{name} clashes with nothing of /metrics"
        );
        for suffix in ["_bucket", "_sum", "_count"] {
            assert!(!own.contains_key(&format!("{name}{suffix}")));
        }
    }
    let extra: Vec<&String> = mine
        .keys()
        .filter(|n| !own.contains_key(*n) && ![ALLOCS_BY_SIZE, FREES_BY_SIZE].contains(&n.as_str()))
        .collect();
    assert!(
        extra.is_empty(),
        "families /metrics does not have: {extra:?}"
    );

    // Every counter series of /metrics, within its reads before and after,
    // and the figures against stats_split() by name.
    counters_within("metrics", &got, &own, &own_before, &own_after);
    figures_within(&got, &before, &after);
    let read = |name: &str| value(&got, name, &[]);
    // The workload is in them.
    assert!(read("allocmeter_allocs_total") >= (base.allocs + BLOCKS as u64) as f64);
    assert!(read("allocmeter_heap_live_bytes") >= (BLOCKS * BLOCK) as f64);
    assert!(
        value(&got, "allocmeter_reallocs_total", &[("kind", "moved")])
            >= (base.reallocs.moved + 100) as f64
            || value(
                &got,
                "allocmeter_reallocs_total",
                &[("kind", "grown_in_place")]
            ) >= (base.reallocs.grown_in_place + 100) as f64
    );

    // The size classes, one counter each, against by_size.
    let mut classes = 0;
    for (i, (cb, ca)) in b.by_size.iter().zip(&a.by_size).enumerate() {
        let label = class_label(i);
        let allocs = value(&got, ALLOCS_BY_SIZE, &[(SIZE_CLASS_LABEL, &label)]);
        let frees = value(&got, FREES_BY_SIZE, &[(SIZE_CLASS_LABEL, &label)]);
        between(
            &format!("allocs in class {label}"),
            cb.allocs,
            allocs,
            ca.allocs,
        );
        between(
            &format!("frees in class {label}"),
            cb.frees,
            frees,
            ca.frees,
        );
        classes += 1;
    }
    assert_eq!(classes, NUM_SIZE_CLASSES);
    let class_128 = value(&got, ALLOCS_BY_SIZE, &[(SIZE_CLASS_LABEL, "128")]);
    assert!(
        class_128 >= (base.by_size[4].allocs + BLOCKS as u64) as f64,
        "{class_128}"
    );
    let class_1m = value(&got, FREES_BY_SIZE, &[(SIZE_CLASS_LABEL, "1048576")]);
    assert!(
        class_1m >= (base.by_size[17].frees + BIGS as u64) as f64,
        "{class_1m}"
    );
    // Nothing else under those names.
    for name in [ALLOCS_BY_SIZE, FREES_BY_SIZE] {
        assert_eq!(
            got.iter().filter(|s| s.name == name).count(),
            NUM_SIZE_CLASSES
        );
    }

    // A second collect moves the counters forward, never back.
    let _more = workload();
    collector.collect();
    let again = parse(&handle.render());
    let allocs_again = value(&again, "allocmeter_allocs_total", &[]);
    assert!(allocs_again >= read("allocmeter_allocs_total") + BLOCKS as f64);

    // From an exporter: its own figures too (the peak, the site table),
    // described and named as on its /metrics.
    let (exporter, _) = start_exporter(Duration::from_millis(50));
    let with_exporter = Collector::for_exporter(&exporter);
    with_exporter.describe();
    let served = render_until_positive("allocmeter_heap_live_bytes_peak", || {
        with_exporter.collect();
        handle.render()
    });
    let own = descriptors(&collector_text(exporter.collector()));
    let mine = descriptors(&served);
    for name in [
        "allocmeter_heap_live_bytes_peak",
        "allocmeter_profile_sites",
        "allocmeter_profile_sites_overflow_total",
    ] {
        assert_eq!(mine.get(name), own.get(name), "{name}");
        assert!(mine.contains_key(name), "{name} with an exporter");
    }
    drop(with_exporter);
    drop(exporter);

    if let Some(said) = promtool_check("the metrics recorder's text", &text) {
        println!("promtool check metrics: ok {said}");
    }
    let excerpt: Vec<&str> = text
        .lines()
        .filter(|l| {
            l.starts_with("allocmeter_alloc_bytes_total ")
                || l.starts_with("# TYPE allocmeter_alloc_bytes_total ")
                || l.starts_with("allocmeter_reallocs_total")
                || l.starts_with("# TYPE allocmeter_allocs_by_size_total ")
                || l.starts_with("allocmeter_allocs_by_size_total{size_class=\"64\"}")
                || l.starts_with("allocmeter_allocs_by_size_total{size_class=\"128\"}")
                || l.starts_with("allocmeter_allocs_by_size_total{size_class=\"+Inf\"}")
        })
        .collect();
    println!("--- excerpt ---\n{}", excerpt.join("\n"));
}
