//! With the `mimalloc` feature and mimalloc as the inner allocator, the
//! `allocmeter_inner_*{allocator="mimalloc"}` figures follow what
//! `mi_process_info` reports.
#![cfg(feature = "mimalloc")]

mod inner_common;

use allocmeter::Instrumented;
use inner_common::{HELD, assert_held, hold, scrape};
use mimalloc::MiMalloc;

#[global_allocator]
static GLOBAL: Instrumented<MiMalloc> = Instrumented::new(MiMalloc);

const MIMALLOC: &str = "mimalloc";

#[test]
fn mimalloc_figures_follow_memory_held() {
    let before = scrape();
    let held = hold(HELD, 1 << 20);
    let during = scrape();
    assert_held(
        &before,
        &during,
        MIMALLOC,
        &[
            "allocmeter_inner_resident_bytes",
            "allocmeter_inner_committed_bytes",
        ],
    );
    // Peaks are at least the current figures, and the process's peak resident
    // size covers the pages just touched.
    let committed = during.inner("allocmeter_inner_committed_bytes", MIMALLOC);
    let peak_committed = during.inner("allocmeter_inner_peak_committed_bytes", MIMALLOC);
    assert!(
        committed <= peak_committed,
        "{committed} > peak {peak_committed}"
    );
    let peak_resident = during.inner("allocmeter_inner_peak_resident_bytes", MIMALLOC);
    assert!(
        peak_resident >= 0.9 * HELD as f64,
        "peak resident {peak_resident} while {HELD} bytes are touched"
    );
    // A counter.
    let faults_before = before.inner("allocmeter_inner_page_faults_total", MIMALLOC);
    let faults_during = during.inner("allocmeter_inner_page_faults_total", MIMALLOC);
    assert!(faults_before <= faults_during);
    drop(held);
}
