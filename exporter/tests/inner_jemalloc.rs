//! With the `jemalloc` feature and jemalloc as the inner allocator, the
//! `allocmeter_inner_*{allocator="jemalloc"}` gauges follow what jemalloc
//! itself counts.
#![cfg(all(feature = "jemalloc", not(target_env = "msvc")))]

mod inner_common;

use allocmeter::Instrumented;
use inner_common::{HELD, assert_held, assert_released, hold, scrape};
use tikv_jemallocator::Jemalloc;

#[global_allocator]
static GLOBAL: Instrumented<Jemalloc> = Instrumented::new(Jemalloc);

const JEMALLOC: &str = "jemalloc";

#[test]
fn jemalloc_figures_follow_memory_held_and_freed() {
    let before = scrape();
    for family in [
        "allocmeter_inner_allocated_bytes",
        "allocmeter_inner_active_bytes",
        "allocmeter_inner_resident_bytes",
        "allocmeter_inner_mapped_bytes",
        "allocmeter_inner_retained_bytes",
        "allocmeter_inner_metadata_bytes",
    ] {
        // Present, and jemalloc needs some bookkeeping and some pages
        // already (the test harness has allocated), except that nothing
        // need have been retained yet.
        let value = before.inner(family, JEMALLOC);
        if family != "allocmeter_inner_retained_bytes" {
            assert!(value > 0.0, "{family} is {value}");
        }
    }

    // 1 MiB blocks: jemalloc's large size classes, no thread cache.
    let held = hold(HELD, 1 << 20);
    let during = scrape();
    // Held by the program, so allocmeter counts it live too: the two grow
    // together, as they do in a leak.
    assert_held(
        &before,
        &during,
        JEMALLOC,
        &[
            "allocmeter_inner_allocated_bytes",
            "allocmeter_inner_active_bytes",
            "allocmeter_inner_resident_bytes",
            "allocmeter_inner_mapped_bytes",
        ],
    );
    // jemalloc's figures are ordered as its documentation says.
    let allocated = during.inner("allocmeter_inner_allocated_bytes", JEMALLOC);
    let active = during.inner("allocmeter_inner_active_bytes", JEMALLOC);
    let resident = during.inner("allocmeter_inner_resident_bytes", JEMALLOC);
    assert!(
        allocated <= active,
        "allocated {allocated} > active {active}"
    );
    assert!(active <= resident, "active {active} > resident {resident}");

    drop(held);
    let after = scrape();
    // What jemalloc hands out drops back at once; its resident pages need
    // not (they are purged after a decay time), which is what fragmentation
    // looks like: the inner figures stay up while allocmeter's live bytes
    // fall.
    assert_released(
        &before,
        &after,
        JEMALLOC,
        &[
            "allocmeter_inner_allocated_bytes",
            "allocmeter_inner_active_bytes",
        ],
    );
}
