//! Helpers shared by the benchmarks in `benches/`, one module per job:
//!
//! - [`loops`]: the measured loops (what one op of a [`Workload`] is) and
//!   the tables of sizes they draw from;
//! - [`threads`]: how many threads, and running a loop on them at once;
//! - [`instr_ops`](mod@instr_ops): the body of the `instr_ops_*` binaries (instructions
//!   per allocator operation, counted by valgrind);
//! - [`floor_rungs`]: the floor's wrappers around `System`, recording in
//!   bare thread-locals (timed by the `floor` bench, counted by the
//!   `instr_ops_floor_*` binaries);
//! - [`interleaved`]: the rounds, figures and report of the interleaved
//!   measurements (every variant in short slices, rotated each round);
//! - [`extras`]: the counts a benchmark records next to criterion's times;
//! - [`workload`]: the whole-program workloads of the `wp_*` binaries.
//!
//! Criterion records times only. The benchmarks also record a few counts per
//! benchmark (samples taken and dropped, stack frames captured, false
//! positives...) with [`write_extra`], next to criterion's own results, for
//! `benches/report.py` to print with the times.

use std::thread;

pub mod extras;
pub mod floor_rungs;
pub mod instr_ops;
pub mod interleaved;
pub mod loops;
pub mod threads;
pub mod workload;

pub use extras::{criterion_dir, write_extra};
pub use interleaved::{
    SliceTimes, field, interleaved_figures, interleaved_pair_workloads, interleaved_rounds,
    on_threads, report_interleaved, report_rotated, rotated_rounds,
};
pub use loops::{
    ALIGN, GROWTH_FIRST, GROWTH_LAST, RING, SIZES_TO_4KIB, SIZES_TO_64KIB, TABLE_LEN, Workload,
    alloc, fixed_64, log_uniform_sizes, mixed, mixed_sizes, realloc_growth,
};
pub use threads::{
    SpinBarrier, ops_run, reset_ops, run_threads, thread_counts, threads_name, time_on_threads,
};

/// Starts a thread that drains allocmeter's sample rings as the exporter's
/// aggregator does: every [`allocmeter::profile::drain_interval`], and when
/// woken by a thread whose ring is half full. It runs until the process
/// exits. Without it the rings
/// fill after a few hundred samples and later samples take the cheap "ring
/// full" path, hiding sampling's cost.
pub fn start_drainer() {
    let drainer = thread::Builder::new()
        .name("sample-drainer".into())
        .spawn(|| {
            loop {
                let _ = allocmeter::profile::drain(|_| {});
                thread::park_timeout(allocmeter::profile::drain_interval());
            }
        })
        .expect("cannot start the drainer thread");
    allocmeter::profile::register_drainer(drainer.thread().clone());
}

/// Panics with the message `what` unless allocmeter samples at its default
/// rate, [`allocmeter::DEFAULT_SAMPLE_RATE`], which a benchmark's figures
/// assume.
pub fn assert_default_sample_rate(what: &str) {
    assert_eq!(
        allocmeter::sample_rate(),
        allocmeter::DEFAULT_SAMPLE_RATE,
        "{what}"
    );
}

/// A positive count from the environment variable `var`, or `default` if it
/// is unset; panics on anything else (a benchmark run with the wrong counts
/// would be worse than none).
pub fn count_from_env(var: &str, default: usize) -> usize {
    match std::env::var(var) {
        Ok(n) => n
            .trim()
            .parse()
            .ok()
            .filter(|&n| n > 0)
            .unwrap_or_else(|| panic!("{var}: bad count {n:?}")),
        Err(_) => default,
    }
}

/// Whether a measurement run outside criterion's groups, named `group`,
/// should run: yes unless the command line names criterion filters and none
/// of them is part of `group` (as criterion would filter a group of it).
pub fn selected(group: &str) -> bool {
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    filters.is_empty() || filters.iter().any(|f| group.contains(f.as_str()))
}
