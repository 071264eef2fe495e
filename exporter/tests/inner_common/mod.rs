//! Scrapes and a workload for the `allocmeter_inner_*` tests (one test binary
//! per inner allocator, since each needs its own `#[global_allocator]`).
#![allow(dead_code)] // each test binary uses a different part

use std::hint::black_box;
use std::time::Duration;

use allocmeter_exporter::AllocCollector;
use prometheus::proto::{MetricFamily, MetricType};

/// How much each test holds live.
pub const HELD: usize = 64 << 20;

/// One scrape of an [`AllocCollector`] through a `prometheus::Registry`.
pub struct Scrape(Vec<MetricFamily>);

/// Scrapes, after waiting long enough that the collector reads the inner
/// allocator afresh (it refreshes those figures at most every 100 ms).
pub fn scrape() -> Scrape {
    std::thread::sleep(Duration::from_millis(150));
    let registry = prometheus::Registry::new();
    registry
        .register(Box::new(AllocCollector::new()))
        .expect("the collector registers");
    Scrape(registry.gather())
}

impl Scrape {
    /// The value of `family{allocator="<allocator>"}`.
    ///
    /// # Panics
    ///
    /// Unless the scrape has exactly one such sample.
    pub fn inner(&self, family: &str, allocator: &str) -> f64 {
        let f = self
            .0
            .iter()
            .find(|f| f.name() == family)
            .unwrap_or_else(|| panic!("no family {family} in the scrape"));
        let mut values = f.get_metric().iter().filter_map(|m| {
            let label = m.get_label().iter().find(|l| l.name() == "allocator")?;
            (label.value() == allocator).then(|| match f.get_field_type() {
                MetricType::COUNTER => m.get_counter().get_value(),
                _ => m.get_gauge().get_value(),
            })
        });
        let value = values
            .next()
            .unwrap_or_else(|| panic!("no {family}{{allocator=\"{allocator}\"}} in the scrape"));
        assert!(values.next().is_none(), "{family} has {allocator} twice");
        value
    }

    /// `allocmeter_heap_live_bytes`: what allocmeter counts as live.
    pub fn live(&self) -> f64 {
        let f = self
            .0
            .iter()
            .find(|f| f.name() == "allocmeter_heap_live_bytes")
            .expect("allocmeter_heap_live_bytes in the scrape");
        f.get_metric()[0].get_gauge().get_value()
    }
}

/// `total` bytes in blocks of `block` bytes, every byte written (so every
/// page is touched: `vec![0; n]` would ask for zeroed memory, which the OS
/// may leave untouched).
pub fn hold(total: usize, block: usize) -> Vec<Vec<u8>> {
    (0..total / block)
        .map(|_| black_box(vec![0xa5u8; block]))
        .collect()
}

/// Asserts that each of `families{allocator}` and allocmeter's own live
/// bytes moved up by at least 90 % of [`HELD`] from `before` to `during`.
#[track_caller]
pub fn assert_held(before: &Scrape, during: &Scrape, allocator: &str, families: &[&str]) {
    for family in families {
        assert_moved_up(
            family,
            before.inner(family, allocator),
            during.inner(family, allocator),
            HELD,
        );
    }
    assert_moved_up(
        "allocmeter_heap_live_bytes",
        before.live(),
        during.live(),
        HELD,
    );
}

/// Asserts that each of `families{allocator}` and allocmeter's own live
/// bytes are back within 10 % of [`HELD`] of `before` in `after`.
#[track_caller]
pub fn assert_released(before: &Scrape, after: &Scrape, allocator: &str, families: &[&str]) {
    for family in families {
        assert_back(
            family,
            before.inner(family, allocator),
            after.inner(family, allocator),
            HELD,
        );
    }
    assert_back(
        "allocmeter_heap_live_bytes",
        before.live(),
        after.live(),
        HELD,
    );
}

/// Asserts that `to - from` is at least 90 % of `expected`.
#[track_caller]
pub fn assert_moved_up(what: &str, from: f64, to: f64, expected: usize) {
    let moved = to - from;
    println!(
        "{what}: +{moved} bytes for {expected} held ({:.1} %)",
        100.0 * moved / expected as f64
    );
    assert!(
        moved >= 0.9 * expected as f64,
        "{what} moved by {moved} bytes ({from} -> {to}), expected at least 90 % of {expected}"
    );
}

/// Asserts that `now` is back within 10 % of `expected` of `before`, or below.
#[track_caller]
pub fn assert_back(what: &str, before: f64, now: f64, expected: usize) {
    assert!(
        now <= before + 0.1 * expected as f64,
        "{what} is {now} bytes after freeing, was {before} before allocating {expected}"
    );
}
