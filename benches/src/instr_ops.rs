//! Instructions per allocator operation, counted by valgrind: the body of
//! the `instr_ops_*` binaries, one per global allocator (bare `System`,
//! `MiMalloc` and `Jemalloc`, each as `Instrumented<_>`, and the floor's
//! rungs of [`crate::floor_rungs`]), which `benches/instructions.py` runs
//! under callgrind:
//!
//! ```sh
//! cargo build --release -p allocmeter-benches --bin instr_ops_instrumented_system
//! valgrind --tool=callgrind --toggle-collect='*instr_ops::measured_*' \
//!     --callgrind-out-file=cg.out \
//!     target/release/instr_ops_instrumented_system default 20000
//! callgrind_annotate --inclusive=yes cg.out | grep measured_
//! ```
//!
//! Every operation runs through the process's `#[global_allocator]`, as in
//! a real program (`std::alloc::alloc`, `Vec`), inside its own
//! `#[inline(never)]` function `measured_<op>`, once per call; callgrind
//! counts only inside those functions ([`OPS`] lists them), so the blocks
//! an operation needs (the block a free frees, the neighbours that make a
//! realloc stay in place or move) are set up, and its result freed,
//! outside the count. Each `measured_<op>` is called `n` times;
//! `benches/instructions.py` takes the difference between two runs of
//! different `n`, which cancels the first calls' one-off work (a thread's
//! allocmeter slot, the inner allocator's first pages), and subtracts
//! `measured_none` (an empty call) so the figure is the operation's own.
//!
//! Arguments: `<rate> <n> [op...]`, where `<rate>` is `off` (sample rate
//! 0), `default` (512 KiB), `64k` or `bare` (for the bare allocators,
//! which have no rate), `n` the calls per operation, and the operations
//! the ones to run (all of [`OPS`] if none). Prints to stdout, per
//! operation, one line `op <name> <calls> moved=<k>` (for the reallocs,
//! how many returned another address, which says which kind really
//! happened), then `reallocs` with allocmeter's own counters by kind
//! (zero for the bare allocators, which allocmeter does not see), and the
//! samples taken.

use std::alloc::{Layout, alloc, alloc_zeroed, dealloc, handle_alloc_error, realloc};
use std::hint::black_box;

/// The operations, in the report's order: (name, what it does).
pub const OPS: &[(&str, &str)] = &[
    ("none", "an empty call (subtracted from the others)"),
    ("alloc", "`alloc` of 64 B"),
    ("alloc_zeroed", "`alloc_zeroed` of 64 B"),
    ("free", "`dealloc` of a 64 B block"),
    (
        "realloc_grown_in_place",
        "`realloc` 33 B → 40 B (the same block's slack)",
    ),
    ("realloc_shrunk_in_place", "`realloc` 1024 B → 960 B"),
    (
        "realloc_moved",
        "`realloc` 64 B → 4096 B, a live 48 B block right after it",
    ),
    (
        "pair_64",
        "`Vec::<u8>::with_capacity(64)` dropped (alloc+free)",
    ),
    (
        "zeroed_pair_64",
        "`vec![0u8; 64]` dropped (alloc_zeroed+free)",
    ),
    (
        "growth_chain",
        "a `Vec<u64>` pushed from empty to 64 elements, dropped (1 alloc, 4 reallocs, 1 free)",
    ),
];

const B64: Layout = Layout::new::<[u64; 8]>();
const GUARD: Layout = Layout::new::<[u64; 6]>();
const GROW_FROM: Layout = match Layout::from_size_align(33, 1) {
    Ok(l) => l,
    Err(_) => panic!("33 B, align 1"),
};
const GROW_TO: usize = 40;
const SHRINK_FROM: Layout = Layout::new::<[u64; 128]>();
const SHRINK_TO: usize = 960;
const MOVE_TO: usize = 4096;

#[inline(never)]
fn measured_none() {
    black_box(());
}

#[inline(never)]
fn measured_alloc() -> *mut u8 {
    // SAFETY: `B64` has a non-zero size.
    unsafe { alloc(black_box(B64)) }
}

#[inline(never)]
fn measured_alloc_zeroed() -> *mut u8 {
    // SAFETY: `B64` has a non-zero size.
    unsafe { alloc_zeroed(black_box(B64)) }
}

#[inline(never)]
fn measured_free(p: *mut u8) {
    // SAFETY: the caller passes a block of `B64` from the global allocator,
    // freed once, here.
    unsafe { dealloc(black_box(p), B64) }
}

/// # Safety
/// `p` is a live block of `from` from the global allocator; `to` is non-zero.
#[inline(always)]
unsafe fn realloc_of(p: *mut u8, from: Layout, to: usize) -> *mut u8 {
    // SAFETY: as the caller promises.
    unsafe { realloc(black_box(p), from, to) }
}

/// # Safety
/// `p` is a live block of `GROW_FROM` from the global allocator.
#[inline(never)]
unsafe fn measured_realloc_grown_in_place(p: *mut u8) -> *mut u8 {
    // SAFETY: as the caller promises; `GROW_TO` is non-zero.
    unsafe { realloc_of(p, GROW_FROM, GROW_TO) }
}

/// # Safety
/// `p` is a live block of `SHRINK_FROM` from the global allocator.
#[inline(never)]
unsafe fn measured_realloc_shrunk_in_place(p: *mut u8) -> *mut u8 {
    // SAFETY: as the caller promises; `SHRINK_TO` is non-zero.
    unsafe { realloc_of(p, SHRINK_FROM, SHRINK_TO) }
}

/// # Safety
/// `p` is a live block of `B64` from the global allocator.
#[inline(never)]
unsafe fn measured_realloc_moved(p: *mut u8) -> *mut u8 {
    // SAFETY: as the caller promises; `MOVE_TO` is non-zero.
    unsafe { realloc_of(p, B64, MOVE_TO) }
}

#[inline(never)]
fn measured_pair_64() {
    drop(black_box(Vec::<u8>::with_capacity(black_box(64))));
}

#[inline(never)]
fn measured_zeroed_pair_64() {
    drop(black_box(vec![0u8; black_box(64)]));
}

#[inline(never)]
fn measured_growth_chain() {
    let mut v = Vec::<u64>::new();
    for i in 0..black_box(64u64) {
        v.push(i);
    }
    drop(black_box(v));
}

fn checked(p: *mut u8, layout: Layout) -> *mut u8 {
    if p.is_null() {
        handle_alloc_error(layout);
    }
    p
}

fn new_block(layout: Layout) -> *mut u8 {
    // SAFETY: every layout here has a non-zero size.
    checked(unsafe { alloc(layout) }, layout)
}

fn free_block(p: *mut u8, layout: Layout) {
    // SAFETY: `p` is a live block of `layout` from the global allocator.
    unsafe { dealloc(p, layout) }
}

/// One realloc of a new block of `from` by `op` (a `measured_realloc_*`) to
/// `to` bytes, with a 48 B block allocated after the block and kept in
/// `guards` until the end of the run, so that an allocator that places
/// blocks in order finds the place right after the block taken (glibc
/// gives the next call's block the place this call's block had, right
/// before this call's guard); returns whether the block moved.
fn realloc_once(
    from: Layout,
    to: usize,
    op: unsafe fn(*mut u8) -> *mut u8,
    guards: &mut Vec<*mut u8>,
) -> bool {
    let p = new_block(from);
    guards.push(new_block(GUARD));
    // SAFETY: `p` is a live block of `from`, the layout `op` takes.
    let q = unsafe { op(p) };
    let new = Layout::from_size_align(to, from.align()).expect("small sizes");
    let q = checked(q, new);
    free_block(q, new);
    q != p
}

/// Runs `op` `n` times; returns how many of its reallocs moved the block.
fn run(op: &str, n: u64, drain: &dyn Fn()) -> u64 {
    let mut moved = 0;
    let realloc = op.starts_with("realloc_");
    let mut guards = Vec::with_capacity(if realloc { n as usize } else { 0 });
    for i in 0..n {
        match op {
            "none" => measured_none(),
            "alloc" => free_block(checked(measured_alloc(), B64), B64),
            "alloc_zeroed" => free_block(checked(measured_alloc_zeroed(), B64), B64),
            "free" => measured_free(new_block(B64)),
            "realloc_grown_in_place" => {
                moved += u64::from(realloc_once(
                    GROW_FROM,
                    GROW_TO,
                    measured_realloc_grown_in_place,
                    &mut guards,
                ));
            }
            "realloc_shrunk_in_place" => {
                moved += u64::from(realloc_once(
                    SHRINK_FROM,
                    SHRINK_TO,
                    measured_realloc_shrunk_in_place,
                    &mut guards,
                ));
            }
            "realloc_moved" => {
                moved += u64::from(realloc_once(
                    B64,
                    MOVE_TO,
                    measured_realloc_moved,
                    &mut guards,
                ))
            }
            "pair_64" => measured_pair_64(),
            "zeroed_pair_64" => measured_zeroed_pair_64(),
            "growth_chain" => measured_growth_chain(),
            other => unreachable!("checked in main: {other}"),
        }
        // Samples wait in the thread's ring: drain it outside the count, so
        // a full ring never makes a sample cheaper than it is.
        if i % 64 == 63 {
            drain();
        }
    }
    for g in guards {
        free_block(g, GUARD);
    }
    moved
}

/// The binary's `main`: `instrumented` says whether the global allocator
/// is an `allocmeter::Instrumented` (whose sample rate `<rate>` sets).
pub fn main(instrumented: bool) {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: instr_ops_* <off|default|64k|bare> <n> [op...]";
    let (Some(rate), Some(n)) = (args.get(1), args.get(2).and_then(|n| n.parse::<u64>().ok()))
    else {
        eprintln!("{usage}");
        std::process::exit(2);
    };
    let rate = match (rate.as_str(), instrumented) {
        ("bare", false) => None,
        ("off", true) => Some(0),
        ("default", true) => Some(allocmeter::DEFAULT_SAMPLE_RATE),
        ("64k", true) => Some(64 * 1024),
        (other, _) => {
            let want = if instrumented {
                "off, default or 64k"
            } else {
                "bare"
            };
            eprintln!("{usage}: this allocator takes the rate {want}, not {other:?}");
            std::process::exit(2);
        }
    };
    let ops: Vec<&str> = if args.len() > 3 {
        args[3..].iter().map(String::as_str).collect()
    } else {
        OPS.iter().map(|(op, _)| *op).collect()
    };
    if let Some(bad) = ops.iter().find(|op| !OPS.iter().any(|(o, _)| o == *op)) {
        eprintln!("{usage}: unknown op {bad:?}");
        std::process::exit(2);
    }
    if let Some(rate) = rate {
        // One sample first, outside the count, so that the first sample's
        // one-off work (the stack walker's set-up) lands in no run.
        allocmeter::set_sample_rate(1);
        drop(black_box(Vec::<u8>::with_capacity(64)));
        allocmeter::set_sample_rate(rate);
    }
    let drain = || {
        if instrumented {
            let _ = allocmeter::profile::drain(|e| {
                black_box(e);
            });
        }
    };
    let mut out = String::new();
    for op in ops {
        let moved = run(op, n, &drain);
        out += &format!("op {op} {n} moved={moved}\n");
    }
    let r = allocmeter::stats().reallocs;
    let s = allocmeter::profile::sampling_stats();
    out += &format!(
        "reallocs grown_in_place={} shrunk_in_place={} moved={}\nsamples taken={} dropped={}\n",
        r.grown_in_place, r.shrunk_in_place, r.moved, s.samples, s.dropped
    );
    print!("{out}");
}

/// Defines an `instr_ops_*` binary's global allocator and `main`.
#[macro_export]
macro_rules! instr_ops {
    ($ty:ty = $init:expr, instrumented = $instrumented:expr) => {
        #[global_allocator]
        static GLOBAL: $ty = $init;

        fn main() {
            $crate::instr_ops::main($instrumented);
        }
    };
}
