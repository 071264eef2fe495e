//! Exactness: a known sequence of operations moves every counter by exactly
//! the expected amount, per thread and process-wide.

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::time::Duration;

use allocmeter::size_class::{NUM_SIZE_CLASSES, class_of};
use allocmeter::{Instrumented, MemStats, Reallocs, ThreadStats};
use allocmeter_test_support::runner;

#[global_allocator]
static GLOBAL: Instrumented<System> = Instrumented::new(System);

/// Expected per-class counts, built up operation by operation.
#[derive(Default)]
struct Expect {
    alloc_bytes: u64,
    free_bytes: u64,
    allocs: [u64; NUM_SIZE_CLASSES],
    frees: [u64; NUM_SIZE_CLASSES],
    reallocs: Reallocs,
}

impl Expect {
    fn alloc(&mut self, size: usize) {
        self.alloc_bytes += size as u64;
        self.allocs[class_of(size)] += 1;
    }
    fn free(&mut self, size: usize) {
        self.free_bytes += size as u64;
        self.frees[class_of(size)] += 1;
    }
    fn realloc(&mut self, old: usize, new: usize, same_address: bool) {
        self.alloc(new);
        self.free(old);
        match (same_address, new > old) {
            (false, _) => self.reallocs.moved += 1,
            (true, true) => self.reallocs.grown_in_place += 1,
            (true, false) => self.reallocs.shrunk_in_place += 1,
        }
        if new >= old {
            self.reallocs.grown_bytes += (new - old) as u64;
        } else {
            self.reallocs.shrunk_bytes += (old - new) as u64;
        }
    }

    fn check_thread(&self, got: &ThreadStats) {
        assert_eq!(got.alloc_bytes, self.alloc_bytes, "alloc_bytes");
        assert_eq!(got.free_bytes, self.free_bytes, "free_bytes");
        assert_eq!(got.allocs, self.allocs.iter().sum::<u64>(), "allocs");
        assert_eq!(got.frees, self.frees.iter().sum::<u64>(), "frees");
        assert_eq!(got.reallocs, self.reallocs, "reallocs");
        assert_eq!(got.failures, 0, "failures");
        for (i, class) in got.by_size.iter().enumerate() {
            assert_eq!(class.allocs, self.allocs[i], "allocs in class {i}");
            assert_eq!(class.frees, self.frees[i], "frees in class {i}");
        }
    }

    fn check_global(&self, before: &MemStats, after: &MemStats) {
        let d = |a: u64, b: u64| a.wrapping_sub(b);
        assert_eq!(d(after.alloc_bytes, before.alloc_bytes), self.alloc_bytes);
        assert_eq!(d(after.free_bytes, before.free_bytes), self.free_bytes);
        assert_eq!(
            d(after.allocs, before.allocs),
            self.allocs.iter().sum::<u64>()
        );
        assert_eq!(d(after.frees, before.frees), self.frees.iter().sum::<u64>());
        assert_eq!(
            after.live_bytes as i128 - before.live_bytes as i128,
            self.alloc_bytes as i128 - self.free_bytes as i128
        );
        let r = (&after.reallocs, &before.reallocs);
        assert_eq!(
            d(r.0.grown_in_place, r.1.grown_in_place),
            self.reallocs.grown_in_place
        );
        assert_eq!(
            d(r.0.shrunk_in_place, r.1.shrunk_in_place),
            self.reallocs.shrunk_in_place
        );
        assert_eq!(d(r.0.moved, r.1.moved), self.reallocs.moved);
        assert_eq!(
            d(r.0.grown_bytes, r.1.grown_bytes),
            self.reallocs.grown_bytes
        );
        assert_eq!(
            d(r.0.shrunk_bytes, r.1.shrunk_bytes),
            self.reallocs.shrunk_bytes
        );
        assert_eq!(after.failures, before.failures);
        for i in 0..NUM_SIZE_CLASSES {
            let (a, b) = (&after.by_size[i], &before.by_size[i]);
            assert_eq!(
                d(a.allocs, b.allocs),
                self.allocs[i],
                "global allocs in class {i}"
            );
            assert_eq!(
                d(a.frees, b.frees),
                self.frees[i],
                "global frees in class {i}"
            );
        }
    }
}

fn layout(size: usize, align: usize) -> Layout {
    Layout::from_size_align(size, align).unwrap()
}

/// The known sequence: allocs, a zeroed alloc, growing and shrinking reallocs,
/// an over-aligned block, a large block, frees. Runs without any allocation of
/// its own besides the ones it makes on purpose.
fn known_sequence(e: &mut Expect) {
    // SAFETY: every pointer below comes from GLOBAL with the layout it is
    // later freed or reallocated with; none is used after being freed.
    unsafe {
        let a = GLOBAL.alloc(layout(100, 8));
        assert!(!a.is_null());
        e.alloc(100);

        let z = GLOBAL.alloc_zeroed(layout(5000, 8));
        assert!(!z.is_null());
        assert!((0..5000).all(|i| *z.add(i) == 0));
        e.alloc(5000);

        let b = GLOBAL.realloc(a, layout(100, 8), 300);
        assert!(!b.is_null());
        e.realloc(100, 300, b == a);

        let c = GLOBAL.realloc(b, layout(300, 8), 40);
        assert!(!c.is_null());
        e.realloc(300, 40, c == b);

        let big = GLOBAL.alloc(layout(3 << 20, 8));
        assert!(!big.is_null());
        e.alloc(3 << 20);
        let big2 = GLOBAL.realloc(big, layout(3 << 20, 8), 5 << 20);
        assert!(!big2.is_null());
        e.realloc(3 << 20, 5 << 20, big2 == big);

        let aligned = GLOBAL.alloc(layout(64, 4096));
        assert!(!aligned.is_null());
        assert_eq!(aligned as usize % 4096, 0, "over-aligned layout honoured");
        e.alloc(64);

        let one = GLOBAL.alloc(layout(1, 1));
        e.alloc(1);

        GLOBAL.dealloc(one, layout(1, 1));
        e.free(1);
        GLOBAL.dealloc(aligned, layout(64, 4096));
        e.free(64);
        GLOBAL.dealloc(big2, layout(5 << 20, 8));
        e.free(5 << 20);
        GLOBAL.dealloc(c, layout(40, 8));
        e.free(40);
        GLOBAL.dealloc(z, layout(5000, 8));
        e.free(5000);
    }
}

fn thread_and_global_counters_move_by_exactly_the_sequence() {
    let mut e = Expect::default();
    let global_before = allocmeter::stats();
    let thread_before = allocmeter::thread_stats();
    known_sequence(&mut e);
    let thread_after = allocmeter::thread_stats();
    let global_after = allocmeter::stats();

    let mut delta = thread_after;
    delta.alloc_bytes -= thread_before.alloc_bytes;
    delta.free_bytes -= thread_before.free_bytes;
    delta.allocs -= thread_before.allocs;
    delta.frees -= thread_before.frees;
    delta.reallocs.grown_in_place -= thread_before.reallocs.grown_in_place;
    delta.reallocs.shrunk_in_place -= thread_before.reallocs.shrunk_in_place;
    delta.reallocs.moved -= thread_before.reallocs.moved;
    delta.reallocs.grown_bytes -= thread_before.reallocs.grown_bytes;
    delta.reallocs.shrunk_bytes -= thread_before.reallocs.shrunk_bytes;
    delta.failures -= thread_before.failures;
    for (d, b) in delta.by_size.iter_mut().zip(thread_before.by_size) {
        d.allocs -= b.allocs;
        d.frees -= b.frees;
    }
    e.check_thread(&delta);
    e.check_global(&global_before, &global_after);
    // The sequence freed what it allocated.
    assert_eq!(global_after.live_bytes, global_before.live_bytes);
    assert_eq!(global_after.live_objects, global_before.live_objects);
}

fn measure_reports_exactly_the_sequence() {
    let mut e = Expect::default();
    let global_before = allocmeter::stats();
    let ((), used) = allocmeter::measure(|| known_sequence(&mut e));
    let global_after = allocmeter::stats();
    e.check_thread(&used);
    e.check_global(&global_before, &global_after);
    // Installed here: try_measure measures the same.
    assert!(allocmeter::is_installed());
    let mut again = Expect::default();
    let ((), used) = allocmeter::try_measure(|| known_sequence(&mut again));
    again.check_thread(&used.expect("installed"));
}

/// The cheap reading, `thread_totals`, moves by exactly the sequence's
/// four totals (every size class summed, reallocs as an allocation and a
/// free), as `thread_stats` does.
fn thread_totals_move_by_exactly_the_sequence() {
    let mut e = Expect::default();
    let before = allocmeter::thread_totals().expect("installed, own slot");
    known_sequence(&mut e);
    let used = allocmeter::thread_totals()
        .expect("installed, own slot")
        .since(&before);
    assert_eq!(
        (used.allocs, used.alloc_bytes, used.frees, used.free_bytes),
        (
            e.allocs.iter().sum::<u64>(),
            e.alloc_bytes,
            e.frees.iter().sum::<u64>(),
            e.free_bytes
        )
    );
}

fn measure_counts_ordinary_collections() {
    // Vec::with_capacity(n) of u32: one block of 4n bytes; pushing past the
    // capacity reallocs (amortised doubling: 4n -> 8n bytes).
    let (v, used) = allocmeter::measure(|| {
        let mut v: Vec<u32> = Vec::with_capacity(16);
        v.extend(0..17);
        black_box(v)
    });
    assert_eq!(used.allocs, 2, "one alloc and one realloc");
    assert_eq!(used.frees, 1, "the realloc's old block");
    assert_eq!(used.alloc_bytes, 64 + 128);
    assert_eq!(used.free_bytes, 64);
    assert_eq!(used.reallocs.total(), 1);
    assert_eq!(used.reallocs.grown_bytes, 64);
    let ((), freed) = allocmeter::measure(|| drop(black_box(v)));
    assert_eq!((freed.allocs, freed.frees, freed.free_bytes), (0, 1, 128));
    assert_eq!(freed.net_bytes(), -128);

    // A String built from 1000 pushes: allocs == 1 + reallocs, and the bytes
    // net to the final capacity.
    let (s, used) = allocmeter::measure(|| {
        let mut s = String::new();
        for _ in 0..1000 {
            s.push('x');
        }
        black_box(s)
    });
    assert_eq!(used.allocs, 1 + used.reallocs.total());
    assert_eq!(used.frees, used.reallocs.total());
    assert_eq!(used.net_bytes(), s.capacity() as i128);
    drop(s);
}

fn frees_on_another_thread_balance_the_live_count() {
    let before = allocmeter::stats();
    let blocks: Vec<Box<[u8; 1000]>> = (0..100).map(|_| Box::new([7u8; 1000])).collect();
    let mid = allocmeter::stats();
    assert!(mid.live_bytes >= before.live_bytes + 100 * 1000);
    let freer = std::thread::spawn(move || {
        let ((), used) = allocmeter::measure(|| drop(blocks));
        used
    });
    let used = freer.join().unwrap();
    assert_eq!(used.frees, 101, "100 boxes and the Vec holding them");
    assert_eq!(used.free_bytes, 100 * 1000 + 100 * 8);
    let after = allocmeter::stats();
    assert_eq!(
        after.live_objects, before.live_objects,
        "everything allocated here was freed (on the other thread)"
    );
    assert_eq!(after.live_bytes, before.live_bytes);
    assert!(after.live_bytes == after.alloc_bytes - after.free_bytes);
}

fn main() {
    runner::run(
        &[
            (
                "thread_and_global_counters_move_by_exactly_the_sequence",
                thread_and_global_counters_move_by_exactly_the_sequence,
            ),
            (
                "measure_reports_exactly_the_sequence",
                measure_reports_exactly_the_sequence,
            ),
            (
                "thread_totals_move_by_exactly_the_sequence",
                thread_totals_move_by_exactly_the_sequence,
            ),
            (
                "measure_counts_ordinary_collections",
                measure_counts_ordinary_collections,
            ),
            (
                "frees_on_another_thread_balance_the_live_count",
                frees_on_another_thread_balance_the_live_count,
            ),
        ],
        Duration::from_secs(120),
    );
}
