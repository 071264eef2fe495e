//! Allocations and bytes allocated per iteration as
//! [criterion](https://docs.rs/criterion) measurements: [`Allocations`] and
//! [`AllocatedBytes`] (feature `criterion`). Rust's answer to Go's
//! `go test -bench . -benchmem` (its `allocs/op` and `B/op` columns).
//!
//! Owns: the two [`Measurement`]s and their formatters. They read the
//! calling thread's counters through [`thread_stats`](crate::thread_stats);
//! nothing here runs on the allocation path.
//!
//! # Why
//!
//! A criterion benchmark tells how long an iteration takes; how many times
//! it allocated, and how many bytes, is what to cut when the time goes to
//! the allocator, and what to pin down once cut. allocmeter counts every
//! allocation of every thread exactly, so the figures here are exact counts,
//! not estimates: an iteration that allocates three blocks shows 3 allocs
//! at every sample, on every machine, in every run.
//!
//! # How
//!
//! Install allocmeter as the bench binary's global allocator and give
//! criterion the measurement instead of wall time:
//!
//! ```no_run
//! use std::hint::black_box;
//! use criterion::Criterion;
//! use allocmeter::criterion::{AllocatedBytes, Allocations};
//!
//! #[global_allocator]
//! static GLOBAL: allocmeter::Instrumented<std::alloc::System> =
//!     allocmeter::Instrumented::new(std::alloc::System);
//!
//! fn collect(c: &mut Criterion<Allocations>) {
//!     c.bench_function("collect", |b| b.iter(|| black_box((0..1000u64).collect::<Vec<_>>())));
//! }
//!
//! fn main() {
//!     let mut c = Criterion::default().with_measurement(Allocations).configure_from_args();
//!     collect(&mut c);
//!     // The same bench again, in bytes: `Criterion<AllocatedBytes>`.
//!     let mut c = Criterion::default().with_measurement(AllocatedBytes).configure_from_args();
//!     c.bench_function("collect_bytes", |b| {
//!         b.iter(|| black_box((0..1000u64).collect::<Vec<_>>()))
//!     });
//!     c.final_summary();
//! }
//! ```
//!
//! With `criterion_group!`, name the measurement in the group's config:
//! `criterion_group!(name = benches; config = Criterion::default().with_measurement(Allocations); targets = collect);`.
//! Allocation counts do not vary from run to run, so a sample size of 10
//! and short warm-up and measurement times (say 100 ms each) are plenty.
//!
//! # Reading the output
//!
//! criterion labels its line `time:` whatever it measures; the unit says
//! what the figures are: `allocs` (allocations per iteration; `K allocs`,
//! `M allocs` past 10,000 and 10 million) or `B` (bytes allocated per
//! iteration; `KiB`, `MiB`, `GiB` past 10 KiB, 10 MiB, 10 GiB). The three
//! figures are criterion's confidence interval; for code that allocates the
//! same every iteration all three are that exact count, for example
//! `time: [3.0000 allocs 3.0000 allocs 3.0000 allocs]`. A fraction means
//! the count differs between iterations: a buffer that grows now and then,
//! a cache filled on the first call. Go prints `allocs/op` and `B/op` as
//! whole numbers (the total divided by the iterations, rounded down);
//! criterion keeps the fraction.
//!
//! With [`Throughput`] set, the figures are also given per element
//! (`allocs/elem`, `B/elem`) or per input byte or bit (`allocs/B`,
//! `B/input B`): a parser that allocates 0.5 allocs/elem allocates once
//! for every two records it parses.
//!
//! The values criterion saves (`<output>/<bench>/new/sample.json`:
//! `times[i] / iters[i]` per sample; `estimates.json`) are in allocations
//! or bytes, unscaled.
//!
//! # What is counted
//!
//! - What the calling thread allocates between criterion's `start` and
//!   `end` calls: each allocation (each `alloc` and `alloc_zeroed`, and each
//!   `realloc`, as Go counts a slice grown by `append`) and its requested
//!   size in bytes. Frees are not counted.
//! - [`Bencher::iter`](criterion::Bencher::iter) runs the routine on the
//!   calling thread between the two calls; dropping its result is inside
//!   too, which frees and allocates nothing (unless a `Drop` allocates).
//! - [`Bencher::iter_batched`](criterion::Bencher::iter_batched) and
//!   `iter_batched_ref` (and `iter_with_setup`, `iter_with_large_drop`) run
//!   the setup, and allocate the vectors of inputs and outputs, outside the
//!   measured region: setup allocations are excluded, only the routine's
//!   are counted.
//! - [`Bencher::iter_custom`](criterion::Bencher::iter_custom) takes the
//!   routine's own figure: return what [`measure`](crate::measure) says
//!   about the part to count, `allocs` for [`Allocations`] or `alloc_bytes`
//!   for [`AllocatedBytes`].
//!
//! # Pitfalls
//!
//! - Pass results through [`std::hint::black_box`]: the optimiser may
//!   remove an allocation whose block is never used, and the bench then
//!   reports 0 for code that allocates in the program.
//! - Only the calling thread is counted: work the routine hands to other
//!   threads (a thread pool, `std::thread::spawn`, an async runtime's
//!   workers) is not. An async bench counts what runs inside `block_on`
//!   on the calling thread.
//! - A routine that allocates nothing shows 0. criterion refuses a
//!   measurement of exactly 0 ("took zero time per iteration"), so a sample
//!   of 0 allocations is handed to it as [`ZERO_STAND_IN`] (10⁻⁹ of an
//!   allocation, or of a byte, over the whole sample): nowhere near a digit
//!   criterion prints. Divided by each sample's iteration count it differs
//!   between samples, so for such a routine the outliers criterion finds and
//!   the change it reports against the last run are about the stand-in, not
//!   the code: read the `0.0000`.
//! - criterion's statistics are built for noisy timings. Exact counts have
//!   no noise: the interval's three figures are equal, and a comparison with
//!   the last run says "No change in performance detected" (with `p = NaN`)
//!   when the count is the same, and otherwise the real change in counts.
//! - Using either measurement when allocmeter is not the global allocator
//!   panics, saying how to install it (every count would be 0, and a bench
//!   would report "allocates nothing" whatever the code does); check
//!   [`is_installed`](crate::is_installed) first to choose another
//!   measurement.

use ::criterion::Throughput;
use ::criterion::measurement::{Measurement, ValueFormatter};

/// What criterion is given for a sample in which nothing was allocated:
/// criterion refuses a measurement of exactly 0. It is far below the
/// precision criterion prints (four decimals), and below one allocation or
/// one byte divided by any iteration count criterion uses.
pub const ZERO_STAND_IN: f64 = 1e-9;

/// Allocations per iteration on the calling thread, as a criterion
/// [`Measurement`]: Go's `allocs/op`.
///
/// Each allocation counts once: `alloc`, `alloc_zeroed` and `realloc`
/// (which allocates the new block). See the [module docs](self) for what is
/// counted, how to read the output and the pitfalls.
///
/// # Panics
///
/// [`start`](Measurement::start) and [`end`](Measurement::end) panic, saying
/// how to install allocmeter, if it is not the program's global allocator.
#[derive(Clone, Copy, Debug, Default)]
pub struct Allocations;

/// Bytes allocated per iteration on the calling thread, as a criterion
/// [`Measurement`]: Go's `B/op`.
///
/// The sizes the program requested (`Layout::size`), summed over every
/// allocation: a `realloc` adds its new size, a free takes nothing off. See
/// the [module docs](self).
///
/// # Panics
///
/// [`start`](Measurement::start) and [`end`](Measurement::end) panic, saying
/// how to install allocmeter, if it is not the program's global allocator.
#[derive(Clone, Copy, Debug, Default)]
pub struct AllocatedBytes;

/// The calling thread's counters, or a panic naming `what` when allocmeter
/// is not installed.
#[track_caller]
fn thread_counts(what: &str) -> crate::ThreadStats {
    crate::installed::require(what);
    crate::thread_stats()
}

/// The value criterion analyses for a total of `count` over a sample.
fn sample_to_f64(count: u64) -> f64 {
    if count == 0 {
        ZERO_STAND_IN
    } else {
        count as f64
    }
}

/// `Measurement` for `$ty`: the calling thread's `$field` counter, read
/// when a sample starts and ends, shown with `$formatter`. Both
/// measurements differ only in these.
macro_rules! thread_counter_measurement {
    ($ty:ident, $field:ident, $formatter:ident, $what:literal) => {
        impl Measurement for $ty {
            #[doc = concat!("The thread's `", stringify!($field), "` when the sample started.")]
            type Intermediate = u64;
            #[doc = concat!("`", stringify!($field), "` over the sample's iterations.")]
            type Value = u64;

            #[track_caller]
            fn start(&self) -> u64 {
                thread_counts($what).$field
            }

            #[track_caller]
            fn end(&self, start: u64) -> u64 {
                // The thread's count only grows; wrapping (after 2^64) keeps
                // the difference right.
                thread_counts($what).$field.wrapping_sub(start)
            }

            fn add(&self, a: &u64, b: &u64) -> u64 {
                a.saturating_add(*b)
            }

            fn zero(&self) -> u64 {
                0
            }

            fn to_f64(&self, value: &u64) -> f64 {
                sample_to_f64(*value)
            }

            fn formatter(&self) -> &dyn ValueFormatter {
                &$formatter
            }
        }
    };
}

thread_counter_measurement!(Allocations, allocs, ALLOCS, "criterion::Allocations");
thread_counter_measurement!(
    AllocatedBytes,
    alloc_bytes,
    BYTES,
    "criterion::AllocatedBytes"
);

/// Divides every value by `by` (one step of scaling).
fn divide(values: &mut [f64], by: f64) {
    for v in values {
        *v /= by;
    }
}

/// Per element, input byte or input bit: the values divided by what one
/// iteration processes, with the unit `units` names for that throughput
/// (elements, bytes, bits). A throughput of 0 leaves the values per
/// iteration, with the unit `per_iteration`.
fn per_throughput(
    throughput: &Throughput,
    values: &mut [f64],
    per_iteration: &'static str,
    units: [&'static str; 3],
) -> &'static str {
    let (n, unit) = match *throughput {
        Throughput::Elements(n) | Throughput::ElementsAndBytes { elements: n, .. } => (n, units[0]),
        Throughput::Bytes(n) | Throughput::BytesDecimal(n) => (n, units[1]),
        Throughput::Bits(n) => (n, units[2]),
    };
    if n == 0 {
        return per_iteration;
    }
    divide(values, n as f64);
    unit
}

/// How one measurement's values are shown: a unit for their size, and per
/// element, input byte or input bit.
struct Units {
    /// `(below, by, unit)`, smallest first: values whose typical value is
    /// under `below` are divided by `by` and shown in `unit`. The first unit
    /// is the unscaled one (per iteration, and for machines).
    scales: [(f64, f64, &'static str); 4],
    /// The units per element, per input byte and per input bit.
    per_throughput: [&'static str; 3],
}

/// Allocation counts: `allocs`, then `K allocs`, `M allocs` and `G allocs`
/// from 10,000, 10 million and 10 billion (four significant digits at
/// least).
static ALLOCS: Units = Units {
    scales: [
        (1e4, 1.0, "allocs"),
        (1e7, 1e3, "K allocs"),
        (1e10, 1e6, "M allocs"),
        (f64::INFINITY, 1e9, "G allocs"),
    ],
    per_throughput: ["allocs/elem", "allocs/B", "allocs/bit"],
};

const KIB: f64 = 1024.0;

/// Allocated bytes: `B`, then `KiB`, `MiB` and `GiB` from 10 KiB, 10 MiB
/// and 10 GiB.
static BYTES: Units = Units {
    scales: [
        (10.0 * KIB, 1.0, "B"),
        (10.0 * KIB * KIB, KIB, "KiB"),
        (10.0 * KIB * KIB * KIB, KIB * KIB, "MiB"),
        (f64::INFINITY, KIB * KIB * KIB, "GiB"),
    ],
    per_throughput: ["B/elem", "B/input B", "B/input bit"],
};

impl ValueFormatter for Units {
    fn scale_values(&self, typical: f64, values: &mut [f64]) -> &'static str {
        let last = self.scales[self.scales.len() - 1];
        let (_, by, unit) = self
            .scales
            .iter()
            .copied()
            .find(|&(below, _, _)| typical < below)
            .unwrap_or(last);
        divide(values, by);
        unit
    }

    fn scale_throughputs(
        &self,
        _typical: f64,
        throughput: &Throughput,
        values: &mut [f64],
    ) -> &'static str {
        per_throughput(throughput, values, self.scales[0].2, self.per_throughput)
    }

    fn scale_for_machines(&self, _values: &mut [f64]) -> &'static str {
        self.scales[0].2
    }
}
