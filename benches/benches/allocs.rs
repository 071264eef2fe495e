//! Allocations per operation, measured, cut and measured again: the
//! techniques that take allocations out of hot code, each as a before/after
//! pair, with [`allocmeter::criterion`]'s measurements ([`Allocations`]:
//! Go's `allocs/op`; [`AllocatedBytes`]: `B/op`) and criterion's wall time.
//!
//! - `vec_1000`: a `Vec<u64>` grown by `push` to 1000 elements, against one
//!   made `Vec::with_capacity(1000)` first.
//! - `format_100`: 100 lines made with `format!` (a new `String` each),
//!   against `write!` into one `String` cleared before each line.
//! - `hashmap_1000`: a `HashMap<u64, u64>` of 1000 entries filled from
//!   `HashMap::new()`, against `HashMap::with_capacity(1000)`.
//!
//! Groups `allocs_per_op/<pair>`, `bytes_per_op/<pair>` and
//! `ns_per_op/<pair>`, each with the functions `before` and `after`.
//! Allocation counts are exact and the same every run, so those groups take
//! 10 samples over 0.1 s; the wall-time group takes 20 over 0.5 s.
//!
//! Run with `cargo bench -p allocmeter-benches --bench allocs`
//! (`-- --test` runs each once and measures nothing).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::hint::black_box;
use std::time::Duration;

use allocmeter::Instrumented;
use allocmeter::criterion::{AllocatedBytes, Allocations};
use criterion::Criterion;
use criterion::measurement::{Measurement, WallTime};

#[global_allocator]
static GLOBAL: Instrumented<std::alloc::System> = Instrumented::new(std::alloc::System);

const VEC_LEN: u64 = 1000;
const LINES: usize = 100;
const MAP_LEN: u64 = 1000;

/// The items `format_100` writes a line for.
fn items() -> Vec<(u32, &'static str, f64)> {
    (0..LINES as u32)
        .map(|i| {
            (
                i,
                ["apple", "pear", "plum"][i as usize % 3],
                f64::from(i) * 0.25,
            )
        })
        .collect()
}

fn vec_push() -> Vec<u64> {
    let mut v = Vec::new();
    for i in 0..VEC_LEN {
        v.push(black_box(i));
    }
    v
}

fn vec_with_capacity() -> Vec<u64> {
    let mut v = Vec::with_capacity(VEC_LEN as usize);
    for i in 0..VEC_LEN {
        v.push(black_box(i));
    }
    v
}

/// The bytes of every line, so that the lines are used.
fn format_each(items: &[(u32, &str, f64)]) -> usize {
    let mut total = 0;
    for (id, name, price) in items {
        let line = format!("{id:>4} {name:<8} {price:>8.2}\n");
        total += black_box(line).len();
    }
    total
}

fn write_reused(items: &[(u32, &str, f64)]) -> usize {
    let mut line = String::new();
    let mut total = 0;
    for (id, name, price) in items {
        line.clear();
        // Writing to a String cannot fail.
        let _ = writeln!(line, "{id:>4} {name:<8} {price:>8.2}");
        total += black_box(&line).len();
    }
    total
}

fn map_new() -> HashMap<u64, u64> {
    let mut m = HashMap::new();
    for i in 0..MAP_LEN {
        m.insert(black_box(i), i);
    }
    m
}

fn map_with_capacity() -> HashMap<u64, u64> {
    let mut m = HashMap::with_capacity(MAP_LEN as usize);
    for i in 0..MAP_LEN {
        m.insert(black_box(i), i);
    }
    m
}

/// Every pair, before and after, under the measurement `c` was made with,
/// in groups `<prefix>/<pair>`.
fn pairs<M: Measurement>(c: &mut Criterion<M>, prefix: &str) {
    let mut group = c.benchmark_group(format!("{prefix}/vec_1000"));
    group.bench_function("before", |b| b.iter(vec_push));
    group.bench_function("after", |b| b.iter(vec_with_capacity));
    group.finish();

    let items = items();
    let mut group = c.benchmark_group(format!("{prefix}/format_100"));
    group.bench_function("before", |b| b.iter(|| format_each(black_box(&items))));
    group.bench_function("after", |b| b.iter(|| write_reused(black_box(&items))));
    group.finish();

    let mut group = c.benchmark_group(format!("{prefix}/hashmap_1000"));
    group.bench_function("before", |b| b.iter(map_new));
    group.bench_function("after", |b| b.iter(map_with_capacity));
    group.finish();
}

/// A criterion for exact counts: few samples, short times.
fn counting<M: Measurement>(m: M) -> Criterion<M> {
    Criterion::default()
        .with_measurement(m)
        .sample_size(10)
        .warm_up_time(Duration::from_millis(50))
        .measurement_time(Duration::from_millis(100))
        .configure_from_args()
}

fn main() {
    // The two versions of each pair do the same work.
    assert_eq!(vec_push(), vec_with_capacity());
    assert_eq!(format_each(&items()), write_reused(&items()));
    assert_eq!(map_new(), map_with_capacity());

    pairs(&mut counting(Allocations), "allocs_per_op");
    pairs(&mut counting(AllocatedBytes), "bytes_per_op");
    let mut c = Criterion::default()
        .with_measurement(WallTime)
        .sample_size(20)
        .warm_up_time(Duration::from_millis(200))
        .measurement_time(Duration::from_millis(500))
        .configure_from_args();
    pairs(&mut c, "ns_per_op");
    c.final_summary();
}
