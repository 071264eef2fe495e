//! Sampling on the hot path: what gets sampled, the events the rings carry,
//! and switching sampling off and on at run time.

use std::alloc::System;
use std::collections::HashMap;
use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use allocmeter::Instrumented;
use allocmeter::profile::{
    FreeEnd, Origin, ReallocKind, SampleEvent, clock_ns, drain, sampling_stats,
};
use allocmeter_test_support::runner;

#[global_allocator]
static GLOBAL: Instrumented<System> = Instrumented::new(System);

/// A drained event, owned.
#[derive(Debug)]
enum Event {
    Alloc {
        id: u64,
        address: usize,
        size: u64,
        weight: f64,
        stack: Vec<usize>,
        time_ns: u64,
        origin: Origin,
        parent: Option<u64>,
        thread: usize,
        size_allocs: u64,
    },
    Free(u64, FreeEnd, u64, usize, u64),
    Resize {
        id: u64,
        address: usize,
        new_size: u64,
        kind: ReallocKind,
        time_ns: u64,
    },
}

fn drain_all() -> Vec<Event> {
    let mut out = Vec::new();
    drain(|e| {
        out.push(match e {
            SampleEvent::Alloc(a) => Event::Alloc {
                id: a.id,
                address: a.address,
                size: a.size,
                weight: a.weight(),
                stack: a.stack.to_vec(),
                time_ns: a.time_ns,
                origin: a.origin,
                parent: a.parent,
                thread: a.thread,
                size_allocs: a.size_allocs,
            },
            SampleEvent::Free {
                id,
                time_ns,
                thread,
                end,
                size_allocs,
            } => Event::Free(id, end, time_ns, thread, size_allocs),
            SampleEvent::Resize {
                id,
                address,
                new_size,
                kind,
                time_ns,
                ..
            } => Event::Resize {
                id,
                address,
                new_size,
                kind,
                time_ns,
            },
        })
    })
    .expect("no other drainer");
    out
}

#[inline(never)]
fn allocate_here(size: usize) -> Vec<u8> {
    black_box(Vec::with_capacity(size))
}

fn symbol_names(stack: &[usize]) -> Vec<String> {
    let mut names = Vec::new();
    for &ip in stack {
        backtrace::resolve(ip.saturating_sub(1) as *mut std::ffi::c_void, |s| {
            if let Some(n) = s.name() {
                names.push(n.to_string());
            }
        });
    }
    names
}

fn rate_one_samples_every_allocation_and_reports_its_free() {
    drain_all();
    allocmeter::set_sample_rate(1);
    let blocks: Vec<Vec<u8>> = (1..=50).map(|i| allocate_here(i * 1000)).collect();
    let addresses: HashMap<usize, usize> = blocks
        .iter()
        .map(|b| (b.as_ptr() as usize, b.capacity()))
        .collect();
    allocmeter::set_sample_rate(0);
    let events = drain_all();
    let mut ids = HashMap::new();
    for e in &events {
        if let Event::Alloc {
            id,
            address,
            size,
            weight,
            stack,
            origin,
            parent,
            ..
        } = e
            && let Some(&cap) = addresses.get(address)
        {
            assert_eq!(*size, cap as u64);
            assert_eq!(*weight, 1.0, "rate 1 weighs exactly one");
            assert_eq!((*origin, *parent), (Origin::Alloc, None));
            let names = symbol_names(stack);
            assert!(
                names.iter().any(|n| n.contains("allocate_here")),
                "stack names the allocating function: {names:?}"
            );
            ids.insert(*id, *address);
        }
    }
    assert_eq!(ids.len(), 50, "every block was sampled once");
    drop(blocks);
    let frees: Vec<u64> = drain_all()
        .into_iter()
        .filter_map(|e| match e {
            Event::Free(id, FreeEnd::Freed, ..) if ids.contains_key(&id) => Some(id),
            _ => None,
        })
        .collect();
    assert_eq!(frees.len(), 50, "every sampled block's free was reported");
    println!("stack capture method: {:?}", allocmeter::stack::method());
}

fn both_capture_methods_name_the_allocating_function() {
    let probed = allocmeter::stack::method();
    for method in [allocmeter::stack::Method::Unwind, probed] {
        allocmeter::stack::force_method(method);
        drain_all();
        allocmeter::set_sample_rate(1);
        let block = allocate_here(12345);
        allocmeter::set_sample_rate(0);
        let address = block.as_ptr() as usize;
        let stack = drain_all()
            .into_iter()
            .find_map(|e| match e {
                Event::Alloc {
                    address: a, stack, ..
                } if a == address => Some(stack),
                _ => None,
            })
            .expect("block sampled");
        let names = symbol_names(&stack);
        assert!(
            names.iter().any(|n| n.contains("allocate_here")),
            "{method:?}: {names:?}"
        );
        assert!(
            names
                .iter()
                .any(|n| n.contains("both_capture_methods_name_the_allocating_function")),
            "{method:?} reaches the caller: {names:?}"
        );
        drop(block);
    }
    assert_eq!(allocmeter::stack::method(), probed);
}

fn a_sampled_realloc_continues_the_chain_it_takes_over() {
    drain_all();
    allocmeter::set_sample_rate(1);
    let mut v: Vec<u8> = allocate_here(64);
    let first = v.as_ptr() as usize;
    v.reserve_exact(1 << 20); // moves: a new, much larger block
    let second = v.as_ptr() as usize;
    allocmeter::set_sample_rate(0);
    let events = drain_all();
    let first_id = events.iter().find_map(|e| match e {
        Event::Alloc { id, address, .. } if *address == first => Some(*id),
        _ => None,
    });
    let first_id = first_id.expect("first block sampled");
    let resized = events.iter().find_map(|e| match e {
        Event::Resize {
            id,
            address,
            new_size,
            kind,
            ..
        } if *id == first_id => Some((*address, *new_size, *kind)),
        _ => None,
    });
    assert_eq!(
        resized,
        Some((second, 1 << 20, ReallocKind::Moved)),
        "{events:?}"
    );
    // At rate 1 the realloc is sampled too: the new sample continues the
    // chain, whose tracking ends there (no free comes for it).
    let continued = events.iter().find_map(|e| match e {
        Event::Alloc {
            id,
            address,
            origin,
            parent,
            ..
        } if *address == second => Some((*id, *origin, *parent)),
        _ => None,
    });
    let (second_id, origin, parent) = continued.expect("the realloc was sampled");
    assert_eq!(
        origin,
        Origin::Realloc {
            old_size: 64,
            kind: ReallocKind::Moved
        }
    );
    assert_eq!(parent, Some(first_id));
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, Event::Free(id, ..) if *id == first_id))
    );
    drop(v);
    let frees: Vec<u64> = drain_all()
        .into_iter()
        .filter_map(|e| match e {
            Event::Free(id, FreeEnd::Freed, ..) => Some(id),
            _ => None,
        })
        .collect();
    assert!(frees.contains(&second_id), "{frees:?}");
}

#[inline(never)]
fn grow_by_pushing(v: &mut Vec<u64>, n: u64) {
    for i in 0..n {
        v.push(black_box(i));
    }
}

fn a_tracked_block_is_followed_through_its_reallocs_to_its_free_on_another_thread() {
    drain_all();
    allocmeter::set_sample_rate(1);
    let mut v: Vec<u64> = Vec::with_capacity(4);
    // No more samples on this thread: the reallocs that follow are seen
    // only because the block is tracked.
    allocmeter::set_sample_rate(1 << 60);
    let before_grow = clock_ns();
    grow_by_pushing(&mut v, 1000);
    let address = v.as_ptr() as usize;
    std::thread::sleep(Duration::from_millis(30));
    let own = drain_all();
    let (id, thread, born) = own
        .iter()
        .find_map(|e| match e {
            Event::Alloc {
                id,
                size: 32,
                thread,
                time_ns,
                origin: Origin::Alloc,
                ..
            } => Some((*id, *thread, *time_ns)),
            _ => None,
        })
        .expect("the first block was sampled");
    assert!(born <= before_grow);
    let sizes: Vec<u64> = own
        .iter()
        .filter_map(|e| match e {
            Event::Resize {
                id: i,
                new_size,
                time_ns,
                ..
            } if *i == id => {
                assert!(*time_ns >= born);
                Some(*new_size)
            }
            _ => None,
        })
        .collect();
    // Doubling from 4 elements of 8 bytes to 1024: 8 reallocs.
    assert_eq!(
        sizes,
        [64, 128, 256, 512, 1024, 2048, 4096, 8192],
        "{own:?}"
    );
    let freer = std::thread::spawn(move || {
        drop(v);
        allocmeter::profile::clock_ns()
    });
    let freed_at = freer.join().unwrap();
    allocmeter::set_sample_rate(0);
    let end = drain_all().into_iter().find_map(|e| match e {
        Event::Free(i, end, time_ns, freed_by, _) if i == id => Some((end, time_ns, freed_by)),
        _ => None,
    });
    let (end, time_ns, freed_by) = end.expect("its free was reported");
    assert_eq!(end, FreeEnd::Freed);
    assert_ne!(freed_by, thread, "freed on another thread");
    assert!(time_ns <= freed_at);
    assert!(
        time_ns - born >= 30_000_000,
        "lived at least the 30 ms slept: {} ns",
        time_ns - born
    );
    let _ = address;
}

/// The blocks of its size a thread allocated while a sampled block was
/// alive: the difference of the counts its sample and its free carry.
fn a_free_on_the_same_thread_tells_how_many_blocks_of_its_size_came_meanwhile() {
    drain_all();
    allocmeter::set_sample_rate(1);
    let first = allocate_here(4000);
    let address = first.as_ptr() as usize;
    let others: Vec<Vec<u8>> = (0..3).map(|_| allocate_here(4000)).collect();
    let smaller = allocate_here(100);
    drop(first);
    allocmeter::set_sample_rate(0);
    let events = drain_all();
    let (id, at_sample) = events
        .iter()
        .find_map(|e| match e {
            Event::Alloc {
                id,
                address: a,
                size_allocs,
                ..
            } if *a == address => Some((*id, *size_allocs)),
            _ => None,
        })
        .expect("sampled");
    let at_free = events
        .iter()
        .find_map(|e| match e {
            Event::Free(i, FreeEnd::Freed, _, _, count) if *i == id => Some(*count),
            _ => None,
        })
        .expect("its free");
    assert_eq!(
        at_free - at_sample,
        3,
        "three more of its size, not the smaller one"
    );
    drop((others, smaller));
}

fn switching_sampling_off_and_on_while_threads_allocate() {
    drain_all();
    allocmeter::set_sample_rate(4096);
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..3)
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let v: Vec<u64> = black_box(vec![n; 64]);
                    n += v.len() as u64;
                }
            })
        })
        .collect();
    let samples = || sampling_stats().samples;
    let count_for = |d: Duration| {
        let start = samples();
        let t = Instant::now();
        while t.elapsed() < d {
            drain_all();
            std::thread::sleep(Duration::from_millis(5));
        }
        samples() - start
    };
    let on = count_for(Duration::from_millis(200));
    assert!(on > 100, "sampling on: {on} samples");
    allocmeter::set_sample_rate(0);
    std::thread::sleep(Duration::from_millis(50)); // each thread's pending countdown ends
    let off = count_for(Duration::from_millis(200));
    assert_eq!(off, 0, "sampling off: no samples");
    allocmeter::set_sample_rate(4096);
    let again = count_for(Duration::from_millis(200));
    assert!(again > 100, "sampling back on: {again} samples");
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.join().unwrap();
    }
    allocmeter::set_sample_rate(0);
    drain_all();
}

fn main() {
    runner::run(
        &[
            (
                "rate_one_samples_every_allocation_and_reports_its_free",
                rate_one_samples_every_allocation_and_reports_its_free,
            ),
            (
                "both_capture_methods_name_the_allocating_function",
                both_capture_methods_name_the_allocating_function,
            ),
            (
                "a_sampled_realloc_continues_the_chain_it_takes_over",
                a_sampled_realloc_continues_the_chain_it_takes_over,
            ),
            (
                "a_tracked_block_is_followed_through_its_reallocs_to_its_free_on_another_thread",
                a_tracked_block_is_followed_through_its_reallocs_to_its_free_on_another_thread,
            ),
            (
                "a_free_on_the_same_thread_tells_how_many_blocks_of_its_size_came_meanwhile",
                a_free_on_the_same_thread_tells_how_many_blocks_of_its_size_came_meanwhile,
            ),
            (
                "switching_sampling_off_and_on_while_threads_allocate",
                switching_sampling_off_and_on_while_threads_allocate,
            ),
        ],
        Duration::from_secs(120),
    );
}
