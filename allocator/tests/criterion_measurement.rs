//! `allocmeter::criterion`: the two measurements driven by hand
//! (start/end/add/zero/to_f64 and the formatters), then through real
//! criterion runs whose saved samples (`sample.json`, `estimates.json` under
//! a directory of the test's own) must hold the exact per-iteration counts
//! at every sample.
//!
//! Run with `cargo test -p allocmeter --features criterion --test criterion_measurement`.

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::Duration;

use allocmeter::criterion::{AllocatedBytes, Allocations, ZERO_STAND_IN};
use criterion::measurement::Measurement;
use criterion::{BatchSize, Criterion, Throughput};

#[global_allocator]
static GLOBAL: allocmeter::Instrumented<std::alloc::System> =
    allocmeter::Instrumented::new(std::alloc::System);

/// Three blocks, each used, so the optimiser cannot remove them.
fn three_boxes() -> (Box<u64>, Box<u32>, Box<[u8; 24]>) {
    black_box((Box::new(1u64), Box::new(2u32), Box::new([3u8; 24])))
}

#[test]
fn allocations_by_hand() {
    let m = Allocations;
    let start = m.start();
    let kept = three_boxes();
    let count = m.end(start);
    assert_eq!(count, 3);
    drop(kept);

    // Frees are not allocations; a realloc that moves or grows is one.
    let mut v: Vec<u64> = black_box(Vec::with_capacity(4));
    let start = m.start();
    v.extend_from_slice(&[1, 2, 3, 4, 5]); // grows 4 -> 8: one realloc
    drop(black_box(v));
    assert_eq!(m.end(start), 1);

    // Nothing in between: the measurement's own reads allocate nothing.
    let start = m.start();
    assert_eq!(m.end(start), 0);

    assert_eq!(m.zero(), 0);
    assert_eq!(m.add(&3, &4), 7);
    assert_eq!(m.add(&u64::MAX, &1), u64::MAX);
    assert_eq!(m.to_f64(&3), 3.0);
    assert_eq!(m.to_f64(&0), ZERO_STAND_IN);
}

#[test]
fn allocated_bytes_by_hand() {
    let m = AllocatedBytes;
    let start = m.start();
    let v: Vec<u64> = black_box(Vec::with_capacity(1000));
    assert_eq!(m.end(start), 8000);
    drop(v);

    let start = m.start();
    let kept = three_boxes();
    assert_eq!(m.end(start), 8 + 4 + 24);
    drop(kept);

    // A realloc adds its new size; the free of the old block takes nothing off.
    let mut v: Vec<u8> = black_box(Vec::with_capacity(100));
    let start = m.start();
    v.reserve_exact(300);
    let grown = m.end(start);
    assert_eq!(grown, 300);
    drop(v);

    assert_eq!(m.zero(), 0);
    assert_eq!(m.add(&8000, &8000), 16000);
    assert_eq!(m.to_f64(&8000), 8000.0);
    assert_eq!(m.to_f64(&0), ZERO_STAND_IN);
}

#[test]
fn formatters_scale_and_name_the_units() {
    let a = Allocations.formatter();
    assert_eq!(a.format_value(3.0), "3.0000 allocs");
    assert_eq!(a.format_value(ZERO_STAND_IN), "0.0000 allocs");
    assert_eq!(a.format_value(9999.0), "9999.0 allocs");
    assert_eq!(a.format_value(25_000.0), "25.000 K allocs");
    assert_eq!(a.format_value(3.5e7), "35.000 M allocs");
    assert_eq!(a.format_value(2e10), "20.000 G allocs");
    let mut values = [1000.0, 2000.0];
    assert_eq!(a.scale_for_machines(&mut values), "allocs");
    assert_eq!(values, [1000.0, 2000.0]);

    let b = AllocatedBytes.formatter();
    assert_eq!(b.format_value(8000.0), "8000.0 B");
    assert_eq!(b.format_value(16352.0), "15.969 KiB");
    assert_eq!(b.format_value(64.0 * 1024.0 * 1024.0), "64.000 MiB");
    assert_eq!(
        b.format_value(20.0 * 1024.0 * 1024.0 * 1024.0),
        "20.000 GiB"
    );
    let mut values = [8000.0];
    assert_eq!(b.scale_for_machines(&mut values), "B");
    assert_eq!(values, [8000.0]);

    // Throughput: per element, per input byte or bit.
    assert_eq!(
        a.format_throughput(&Throughput::Elements(100), 9.0),
        "0.0900 allocs/elem"
    );
    assert_eq!(
        a.format_throughput(&Throughput::Bytes(2), 1.0),
        "0.5000 allocs/B"
    );
    assert_eq!(
        a.format_throughput(&Throughput::Bits(4), 1.0),
        "0.2500 allocs/bit"
    );
    assert_eq!(
        b.format_throughput(&Throughput::Elements(1000), 8000.0),
        "8.0000 B/elem"
    );
    assert_eq!(
        b.format_throughput(&Throughput::BytesDecimal(4000), 8000.0),
        "2.0000 B/input B"
    );
    assert_eq!(
        b.format_throughput(
            &Throughput::ElementsAndBytes {
                elements: 10,
                bytes: 80
            },
            8000.0
        ),
        "800.00 B/elem"
    );
    // A throughput of 0 cannot divide: the figure stays per iteration.
    assert_eq!(
        b.format_throughput(&Throughput::Elements(0), 8000.0),
        "8000.0 B"
    );
}

/// A criterion of the test's own: 10 samples, short warm-up and measurement,
/// no plots, its results under `dir`.
fn quick<M: Measurement>(m: M, dir: &Path) -> Criterion<M> {
    Criterion::default()
        .with_measurement(m)
        .output_directory(dir)
        .sample_size(10)
        .warm_up_time(Duration::from_millis(20))
        .measurement_time(Duration::from_millis(50))
        .without_plots()
}

/// A directory for one test's criterion results, emptied.
fn fresh_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("criterion_measurement")
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The samples criterion saved for `bench`: (iterations, measured total) each.
fn samples(dir: &Path, bench: &str) -> Vec<(f64, f64)> {
    let path = dir.join(bench).join("new").join("sample.json");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("criterion saved no samples at {}: {e}", path.display()));
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    let column = |name: &str| -> Vec<f64> {
        json[name]
            .as_array()
            .unwrap_or_else(|| panic!("no {name} in {text}"))
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect()
    };
    let (iters, totals) = (column("iters"), column("times"));
    assert_eq!(iters.len(), totals.len());
    assert!(iters.len() >= 10, "{text}");
    iters.into_iter().zip(totals).collect()
}

/// criterion's point estimate of the per-iteration mean for `bench`.
fn mean_estimate(dir: &Path, bench: &str) -> f64 {
    let path = dir.join(bench).join("new").join("estimates.json");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("criterion saved no estimates at {}: {e}", path.display()));
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    json["mean"]["point_estimate"].as_f64().unwrap()
}

/// Every sample of `bench` holds exactly `per_iter` per iteration, and so
/// does criterion's estimate of the mean.
fn assert_exact(dir: &Path, bench: &str, per_iter: f64) {
    for (iters, total) in samples(dir, bench) {
        assert!(iters >= 1.0);
        assert_eq!(
            total / iters,
            per_iter,
            "{bench}: {total} over {iters} iterations"
        );
    }
    assert_eq!(mean_estimate(dir, bench), per_iter, "{bench}");
}

#[test]
fn criterion_run_counts_three_allocations_per_iteration() {
    let dir = fresh_dir("three");
    quick(Allocations, &dir).bench_function("three_boxes", |b| b.iter(three_boxes));
    assert_exact(&dir, "three_boxes", 3.0);
}

#[test]
fn criterion_run_counts_the_bytes_of_a_vec_with_capacity() {
    let dir = fresh_dir("bytes");
    quick(AllocatedBytes, &dir).bench_function("with_capacity_1000", |b| {
        b.iter(|| black_box(Vec::<u64>::with_capacity(1000)))
    });
    assert_exact(&dir, "with_capacity_1000", 8000.0);

    // Grown by push from empty: 4, 8, ..., 1024 elements of 8 bytes
    // (16,352 bytes).
    let mut c = quick(AllocatedBytes, &dir);
    let mut group = c.benchmark_group("push");
    group.bench_function("1000", |b| {
        b.iter(|| {
            let mut v = Vec::new();
            for i in 0..1000u64 {
                v.push(black_box(i));
            }
            v
        })
    });
    group.finish();
    assert_exact(
        &dir,
        "push/1000",
        (8 * (2..=10).map(|k| 1u64 << k).sum::<u64>()) as f64,
    );
    let mut c = quick(Allocations, &dir);
    let mut group = c.benchmark_group("push_count");
    group.bench_function("1000", |b| {
        b.iter(|| {
            let mut v = Vec::new();
            for i in 0..1000u64 {
                v.push(black_box(i));
            }
            v
        })
    });
    group.finish();
    // One allocation of 4, then 8 reallocs up to 1024.
    assert_exact(&dir, "push_count/1000", 9.0);
}

#[test]
fn criterion_run_of_a_routine_that_allocates_nothing_says_zero() {
    let dir = fresh_dir("zero");
    let data: Vec<u64> = (0..64).collect();
    for bench in ["sum_allocs", "sum_bytes"] {
        let routine = |data: &[u64]| black_box(data).iter().sum::<u64>();
        if bench == "sum_allocs" {
            quick(Allocations, &dir).bench_function(bench, |b| b.iter(|| routine(&data)));
        } else {
            quick(AllocatedBytes, &dir).bench_function(bench, |b| b.iter(|| routine(&data)));
        }
        // criterion analysed it (it refuses samples of exactly 0 and saves
        // nothing): every sample is the stand-in for 0.
        for (iters, total) in samples(&dir, bench) {
            assert!(iters >= 1.0);
            assert_eq!(total, ZERO_STAND_IN, "{bench}");
        }
        let mean = mean_estimate(&dir, bench);
        assert!((0.0..=ZERO_STAND_IN).contains(&mean), "{bench}: {mean}");
        // What criterion prints for it.
        assert_eq!(Allocations.formatter().format_value(mean), "0.0000 allocs");
    }
}

#[test]
fn iter_batched_leaves_the_setup_out() {
    let dir = fresh_dir("batched");
    for (name, size) in [
        ("small_input", BatchSize::SmallInput),
        ("per_iteration", BatchSize::PerIteration),
        ("batches_of_7", BatchSize::NumBatches(7)),
    ] {
        // The setup allocates two blocks (the vector, then its growth); the
        // routine one, the box.
        quick(Allocations, &dir).bench_function(name, |b| {
            b.iter_batched(
                || {
                    let mut v = vec![1u64; 4];
                    v.push(5);
                    v
                },
                |v| Box::new(black_box(v).len()),
                size,
            )
        });
        assert_exact(&dir, name, 1.0);
    }
    // iter_batched_ref likewise.
    quick(AllocatedBytes, &dir).bench_function("ref", |b| {
        b.iter_batched_ref(
            || vec![0u8; 100],
            |v| {
                v.reserve_exact(400); // a realloc to 500 bytes
                black_box(v.len())
            },
            BatchSize::SmallInput,
        )
    });
    assert_exact(&dir, "ref", 500.0);
}

#[test]
fn iter_custom_takes_what_measure_says() {
    let dir = fresh_dir("custom");
    quick(Allocations, &dir).bench_function("custom", |b| {
        b.iter_custom(|iters| {
            let (_, used) = allocmeter::measure(|| {
                for _ in 0..iters {
                    black_box(three_boxes());
                }
            });
            used.allocs
        })
    });
    assert_exact(&dir, "custom", 3.0);
}

#[test]
fn a_second_run_compares_with_the_first() {
    // Exact counts have no variance: the comparison with the saved baseline
    // must neither panic nor lose the new samples.
    let dir = fresh_dir("again");
    for _ in 0..2 {
        quick(Allocations, &dir).bench_function("three_boxes", |b| b.iter(three_boxes));
        assert_exact(&dir, "three_boxes", 3.0);
        quick(Allocations, &dir).bench_function("nothing", |b| b.iter(|| black_box(1u64 + 1)));
    }
    assert!(
        dir.join("three_boxes")
            .join("base")
            .join("sample.json")
            .exists()
    );
}
