//! A test binary whose global allocator is the system's, not allocmeter's:
//! the measuring functions must refuse instead of reporting zeros (an
//! "allocates at most N times" test would otherwise pass whatever the code
//! does).

use std::hint::black_box;

#[test]
fn is_installed_says_no() {
    assert!(!allocmeter::is_installed());
    // The answer is kept: the same again.
    assert!(!allocmeter::is_installed());
}

#[test]
fn measure_refuses_and_says_how_to_install() {
    let refusal = std::panic::catch_unwind(|| allocmeter::measure(|| black_box(vec![1u64; 1000])))
        .expect_err("measure must refuse");
    let message = refusal
        .downcast_ref::<String>()
        .expect("a formatted message");
    assert!(
        message
            .starts_with("allocmeter::measure: allocmeter is not this program's global allocator"),
        "{message}"
    );
    assert!(message.contains("#[global_allocator]"), "{message}");
    assert!(
        message.contains("allocmeter::Instrumented::new(std::alloc::System)"),
        "{message}"
    );
}

#[test]
fn thread_stats_refuses() {
    let refusal = std::panic::catch_unwind(allocmeter::thread_stats).expect_err("must refuse");
    let message = refusal.downcast_ref::<String>().unwrap();
    assert!(
        message.starts_with("allocmeter::thread_stats: "),
        "{message}"
    );
}

#[test]
fn try_measure_runs_the_closure_and_says_none() {
    let (v, used) = allocmeter::try_measure(|| black_box(vec![1u64; 1000]));
    assert_eq!(v.len(), 1000);
    assert!(used.is_none());
}

/// The cheap reading never panics: `None`, nothing exact to read.
#[test]
fn thread_totals_says_none() {
    assert_eq!(allocmeter::thread_totals(), None);
}

#[cfg(feature = "criterion")]
#[test]
fn criterion_measurements_refuse() {
    use criterion::measurement::Measurement;
    let refusals = [
        std::panic::catch_unwind(|| allocmeter::criterion::Allocations.start()).unwrap_err(),
        std::panic::catch_unwind(|| allocmeter::criterion::AllocatedBytes.end(0)).unwrap_err(),
    ];
    for (refusal, what) in refusals.iter().zip(["Allocations", "AllocatedBytes"]) {
        let message = refusal.downcast_ref::<String>().unwrap();
        assert!(
            message.starts_with(&format!("allocmeter::criterion::{what}: allocmeter is not")),
            "{message}"
        );
        assert!(message.contains("#[global_allocator]"), "{message}");
    }
}
