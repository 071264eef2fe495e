//! The live heap's peak end to end: a workload builds a known structure at
//! one site, holds it over a few ticks, releases it, then keeps a smaller
//! one at another site. The peak profile (`/debug/pprof/peak`) and
//! `/api/peak` name the first site as the one that held the heap at its
//! peak, with about the structure's bytes; the current heap profile names
//! the second; `/metrics` has the high-water mark.
//!
//! One test in its own binary: the peak is the whole process's live heap.

use std::alloc::System;
use std::collections::HashMap;
use std::hint::black_box;
use std::time::Duration;

use allocmeter::Instrumented;
use allocmeter_exporter::profile_proto;
use allocmeter_test_support::exporter::{get_json, gunzip, loopback, start_built};
use allocmeter_test_support::http::{fetch, fetch_bytes};
use prost::Message;

#[global_allocator]
static GLOBAL: Instrumented<System> = Instrumented::new(System);

const INTERVAL: Duration = Duration::from_millis(100);
const BLOCK: usize = 4096;
/// 32 MiB at the peak, 4 MiB after it.
const PEAK_BLOCKS: usize = 8192;
const AFTER_BLOCKS: usize = 1024;

#[inline(never)]
fn peak_structure_is_built_here() -> Vec<Vec<u8>> {
    (0..PEAK_BLOCKS)
        .map(|i| black_box(vec![i as u8; BLOCK]))
        .collect()
}

#[inline(never)]
fn after_the_peak_this_is_kept() -> Vec<Vec<u8>> {
    (0..AFTER_BLOCKS)
        .map(|i| black_box(vec![i as u8; BLOCK]))
        .collect()
}

/// Estimated in-use bytes by function (the innermost frame of each
/// sample's leaf location), from a heap profile.
fn inuse_by_function(body: &[u8]) -> HashMap<String, i64> {
    let p = profile_proto::Profile::decode(gunzip(body).as_slice()).expect("decodes");
    let s = |i: i64| p.string_table[i as usize].clone();
    let names: HashMap<u64, String> = p.function.iter().map(|f| (f.id, s(f.name))).collect();
    let leaf: HashMap<u64, String> = p
        .location
        .iter()
        .filter_map(|l| Some((l.id, names[&l.line.first()?.function_id].clone())))
        .collect();
    let inuse = p
        .sample_type
        .iter()
        .position(|t| s(t.r#type) == "inuse_space")
        .unwrap();
    let mut out = HashMap::new();
    for sample in &p.sample {
        if let Some(f) = sample.location_id.first().and_then(|id| leaf.get(id)) {
            *out.entry(f.clone()).or_insert(0) += sample.value[inuse];
        }
    }
    out
}

fn top(by: &HashMap<String, i64>) -> (&str, i64) {
    by.iter()
        .max_by_key(|(_, v)| **v)
        .map(|(k, v)| (k.as_str(), *v))
        .unwrap()
}

#[test]
fn the_peak_profile_names_what_held_the_heap_at_its_peak() {
    let (_exporter, addr) = start_built(loopback().interval(INTERVAL).sample_rate(16 * 1024));
    let structure = peak_structure_is_built_here();
    // Held over several ticks, then released.
    std::thread::sleep(INTERVAL * 5);
    drop(structure);
    let kept = after_the_peak_this_is_kept();
    std::thread::sleep(INTERVAL * 5);

    let peak = fetch_bytes(addr, "GET", "/debug/pprof/peak");
    assert_eq!(peak.status, 200);
    let at_peak = inuse_by_function(&peak.body);
    let (function, bytes) = top(&at_peak);
    let exact = (PEAK_BLOCKS * BLOCK) as f64;
    println!("at the peak: {function} held {bytes} bytes (built {exact})");
    assert!(
        function.contains("peak_structure_is_built_here"),
        "{at_peak:?}"
    );
    // 32 MiB at a 16 KiB rate: about 2,000 samples, ±4.4 % at 95 %.
    assert!(
        (bytes as f64 / exact - 1.0).abs() < 0.10,
        "{bytes} vs {exact}"
    );
    assert!(
        !at_peak
            .keys()
            .any(|f| f.contains("after_the_peak_this_is_kept")),
        "the later site was not there yet: {at_peak:?}"
    );

    // Now: the later site, and the structure gone.
    let now = inuse_by_function(&fetch_bytes(addr, "GET", "/debug/pprof/heap").body);
    assert!(
        top(&now).0.contains("after_the_peak_this_is_kept"),
        "{now:?}"
    );
    assert!(
        now.get(function).copied().unwrap_or(0) < bytes / 10,
        "{now:?}"
    );

    // The JSON and the metric agree with the profile.
    let api = get_json(addr, "/api/peak", 200);
    let since = &api["since_start"];
    let live = since["live_bytes"].as_u64().unwrap();
    assert!(live as f64 >= exact, "{api:#}");
    let first = &since["sites"][0];
    assert!(
        first["function"]
            .as_str()
            .unwrap()
            .contains("peak_structure_is_built_here"),
        "{api:#}"
    );
    assert!(api["window"]["live_bytes"].as_u64().unwrap() >= live);
    let metrics = fetch(addr, "GET", "/metrics").body;
    let line = metrics
        .lines()
        .find(|l| l.starts_with("allocmeter_heap_live_bytes_peak "))
        .unwrap_or_else(|| panic!("no peak in /metrics"));
    let value: f64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    assert_eq!(value as u64, live, "{line}");
    // The legacy text form, and the window's, answer too; a bad window is
    // refused.
    let text = fetch(addr, "GET", "/debug/pprof/peak?debug=1&window=1");
    assert_eq!(text.status, 200);
    assert!(text.body.starts_with("heap profile: "));
    assert_eq!(fetch(addr, "GET", "/debug/pprof/peak?window=2").status, 400);
    assert_eq!(
        fetch(addr, "GET", "/debug/pprof/peak?seconds=5").status,
        400
    );
    drop(kept);
}
