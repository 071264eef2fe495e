//! The sampled path's operations in a bare loop on the main thread, for
//! counting instructions under callgrind, which counts only inside
//! [`measured`] (the rings are drained, and blocks set up, outside it):
//!
//! ```sh
//! cargo build --release -p allocmeter-benches --bin sample_loop
//! valgrind --tool=callgrind --toggle-collect='*sample_loop*measured*' \
//!     --callgrind-out-file=/dev/null target/release/sample_loop pair-rate1 20000
//! ```
//!
//! The first argument picks the operation, the second how many (in chunks
//! of [`CHUNK`], each followed by a drain outside the count):
//!
//! - `pair-rate0`, `pair-rate1`: a 64 B alloc+free pair at rate 0, or at
//!   rate 1 (every allocation sampled: the sample, then the sampled free);
//! - `free-unsampled`, `free-sampled`: the free of a 64 B block allocated
//!   with sampling suspended, or at rate 1 (a sampled block);
//! - `realloc-unsampled`, `realloc-sampled`: the same blocks' `realloc`
//!   to 128 B (the block then freed outside the count);
//! - `chain-rate0`, `chain-rate1`: a 64 B block doubled by `realloc` to
//!   8 KiB (7 reallocs), then freed.
//!
//! Frees and reallocs run with sampling suspended on the thread, so the
//! realloc takes no sample of its own and the difference between the
//! `unsampled` and `sampled` variants is the tracked block's own path.
//! Instruction counts do not show cache misses or the clock's own time;
//! `benches/benches/sampling.rs` times the same operations
//! (`sample_cost`, `sampled_free`, `sampled_realloc`, `realloc_chain`).
//! Prints the samples taken and dropped to stderr.

use std::alloc::{GlobalAlloc, Layout, System, handle_alloc_error};
use std::hint::black_box;

use allocmeter::Instrumented;
use allocmeter::profile;
use allocmeter_benches::alloc;

static INSTRUMENTED: Instrumented<System> = Instrumented::new(System);

/// Operations between drains: 32 chains' records stay within the 64 KiB
/// ring that rate 1 gets.
const CHUNK: usize = 32;

#[derive(Clone, Copy, PartialEq)]
enum Op {
    Pair,
    Free,
    Realloc,
    Chain,
}

const SMALL: Layout = Layout::new::<[u64; 8]>();
const GROWN: Layout = Layout::new::<[u64; 16]>();

/// Runs `op` on each of `blocks` (or `blocks.len()` times): the only code
/// callgrind counts.
#[inline(never)]
fn measured(op: Op, blocks: &mut [*mut u8]) {
    match op {
        Op::Pair => {
            for _ in 0..blocks.len() {
                let p = alloc(&INSTRUMENTED, black_box(SMALL));
                // SAFETY: `p` was just allocated by `INSTRUMENTED` with `SMALL`.
                unsafe { INSTRUMENTED.dealloc(p, SMALL) };
            }
        }
        Op::Free => {
            for &b in blocks.iter() {
                // SAFETY: `b` was allocated by `INSTRUMENTED` with `SMALL`
                // in `run` and is freed once, here.
                unsafe { INSTRUMENTED.dealloc(black_box(b), SMALL) };
            }
        }
        Op::Realloc => {
            for b in blocks.iter_mut() {
                // SAFETY: `*b` was allocated by `INSTRUMENTED` with `SMALL`
                // in `run`; the new size is non-zero.
                let p = unsafe { INSTRUMENTED.realloc(black_box(*b), SMALL, GROWN.size()) };
                if p.is_null() {
                    handle_alloc_error(GROWN);
                }
                *b = p;
            }
        }
        Op::Chain => {
            for _ in 0..blocks.len() {
                let mut layout = black_box(SMALL);
                let mut p = alloc(&INSTRUMENTED, layout);
                for _ in 0..7 {
                    let size = layout.size() * 2;
                    // SAFETY: `p` is `INSTRUMENTED`'s block of `layout`; the
                    // new size is non-zero.
                    p = unsafe { INSTRUMENTED.realloc(p, layout, size) };
                    layout = Layout::from_size_align(size, 8).expect("at most 8 KiB");
                    if p.is_null() {
                        handle_alloc_error(layout);
                    }
                }
                // SAFETY: `p` is the last realloc's block, of `layout`.
                unsafe { INSTRUMENTED.dealloc(p, layout) };
            }
        }
    }
}

/// `n` operations `op` in chunks of [`CHUNK`]; blocks for frees and
/// reallocs are allocated before each chunk (sampled if `sampled`).
fn run(op: Op, sampled: bool, n: usize) {
    let mut blocks = [std::ptr::null_mut::<u8>(); CHUNK];
    let mut left = n;
    while left > 0 {
        let k = left.min(CHUNK);
        if matches!(op, Op::Free | Op::Realloc) {
            let _unsampled = (!sampled).then(profile::suspend_sampling);
            for b in &mut blocks[..k] {
                *b = alloc(&INSTRUMENTED, SMALL);
            }
        }
        {
            let _suspended = matches!(op, Op::Free | Op::Realloc).then(profile::suspend_sampling);
            measured(op, &mut blocks[..k]);
        }
        if op == Op::Realloc {
            for &b in &blocks[..k] {
                // SAFETY: `b` is the block `realloc` returned, of `GROWN`.
                unsafe { INSTRUMENTED.dealloc(b, GROWN) };
            }
        }
        let _ = profile::drain(|e| {
            black_box(e);
        });
        left -= k;
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: sample_loop <pair|free|realloc|chain>-<rate0|rate1|unsampled|sampled> <n>";
    let (Some(which), Some(n)) = (args.get(1), args.get(2).and_then(|n| n.parse().ok())) else {
        eprintln!("{usage}");
        std::process::exit(2);
    };
    let (op, sampled) = match which.as_str() {
        "pair-rate0" => (Op::Pair, false),
        "pair-rate1" => (Op::Pair, true),
        "free-unsampled" => (Op::Free, false),
        "free-sampled" => (Op::Free, true),
        "realloc-unsampled" => (Op::Realloc, false),
        "realloc-sampled" => (Op::Realloc, true),
        "chain-rate0" => (Op::Chain, false),
        "chain-rate1" => (Op::Chain, true),
        other => {
            eprintln!("{usage}: unknown operation {other:?}");
            std::process::exit(2);
        }
    };
    // Rate 1 for every variant but the rate-0 ones: frees and reallocs of
    // tracked blocks push into the ring of the rate in force.
    let rate0 = matches!(op, Op::Pair | Op::Chain) && !sampled;
    allocmeter::set_sample_rate(if rate0 { 0 } else { 1 });
    // The thread's first call claims its allocmeter slot: not counted.
    run(op, sampled, CHUNK);
    let before = profile::sampling_stats();
    run(op, sampled, n);
    let after = profile::sampling_stats();
    eprintln!(
        "sample_loop {which} {n}: {} samples taken, {} dropped, {} frees lost",
        after.samples - before.samples,
        after.dropped - before.dropped,
        after.frees_lost - before.frees_lost,
    );
}
