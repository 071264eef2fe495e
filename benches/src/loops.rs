//! The measured loops the micro-benchmarks share: what one op of each
//! [`Workload`] is, and the tables of sizes the mixed ones draw from.
//!
//! Each loop times itself (an `Instant` around the loop only) and is
//! `#[inline(never)]` and generic over the allocator, so every allocator runs
//! the same monomorphised code. Running the loops on threads, counting ops and
//! reporting are elsewhere ([`crate::threads`], [`crate::interleaved`],
//! [`crate::extras`]); nothing here writes outside the blocks it allocates.

use std::alloc::{GlobalAlloc, Layout, handle_alloc_error};
use std::hint::black_box;
use std::sync::LazyLock;
use std::time::{Duration, Instant};

/// Allocates `layout` with `a`; never returns null (aborts through
/// `handle_alloc_error` instead). The pointer goes through `black_box`, so a
/// benchmark's alloc+free pair cannot be elided.
#[inline(always)]
pub fn alloc<A: GlobalAlloc + ?Sized>(a: &A, layout: Layout) -> *mut u8 {
    assert!(layout.size() > 0, "benchmarks allocate non-empty blocks");
    // SAFETY: the layout has a non-zero size (checked above).
    let p = unsafe { a.alloc(layout) };
    if p.is_null() {
        handle_alloc_error(layout);
    }
    black_box(p)
}

/// Runs `iters` alloc+free pairs of 64 bytes through `a` and returns how long
/// they took.
#[inline(never)]
pub fn fixed_64<A: GlobalAlloc>(a: &A, iters: u64) -> Duration {
    let layout = Layout::new::<[u64; 8]>();
    let start = Instant::now();
    for _ in 0..iters {
        // The size is opaque, as it is behind `__rust_alloc`, so that no
        // per-size work can be hoisted out of the loop.
        let layout = black_box(layout);
        let p = alloc(a, layout);
        // SAFETY: `p` was just allocated by `a` with `layout`.
        unsafe { a.dealloc(p, layout) };
    }
    start.elapsed()
}

/// Entries in the table of mixed sizes (a power of two, so indexing is a mask).
pub const TABLE_LEN: usize = 4096;

/// How many blocks the mixed workloads keep live: each block is freed this
/// many steps after it was allocated.
pub const RING: usize = 8;

/// Alignment of every block the benchmarks allocate (that of a `u64`).
pub const ALIGN: usize = 8;

/// Sizes from 16 B to `2^max_log2` B, log-uniform, from a fixed-seed
/// xorshift64, so that every run, benchmark and allocator sees the same
/// sequence.
pub fn log_uniform_sizes(max_log2: u32) -> [u32; TABLE_LEN] {
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut table = [0u32; TABLE_LEN];
    for entry in &mut table {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        // Uniform in [0, 1) from the top 53 bits.
        let u = (state >> 11) as f64 / (1u64 << 53) as f64;
        // 2^(4 + (max_log2 - 4) u): log2 uniform in [4, max_log2].
        let size = (4.0 + f64::from(max_log2 - 4) * u).exp2().round() as u32;
        *entry = size.clamp(16, 1 << max_log2);
    }
    table
}

/// Sizes from 16 B to 4 KiB, log-uniform (see [`log_uniform_sizes`]).
pub fn mixed_sizes() -> [u32; TABLE_LEN] {
    log_uniform_sizes(12)
}

/// Runs `iters` mixed alloc+free pairs through `a`: each step allocates the
/// next size from `sizes` and frees the block allocated [`RING`] steps
/// earlier. Returns how long the timed steps took.
#[inline(never)]
pub fn mixed<A: GlobalAlloc>(a: &A, sizes: &[u32; TABLE_LEN], iters: u64) -> Duration {
    let layout_at = |i: usize| {
        Layout::from_size_align(sizes[i % TABLE_LEN] as usize, ALIGN).expect("sizes are small")
    };
    let mut ring: [(*mut u8, Layout); RING] = core::array::from_fn(|i| {
        let layout = layout_at(i);
        (alloc(a, layout), layout)
    });
    let start = Instant::now();
    for i in 0..iters as usize {
        let layout = layout_at(i + RING);
        let p = alloc(a, layout);
        let (old, old_layout) = core::mem::replace(&mut ring[i % RING], (p, layout));
        // SAFETY: `old` was allocated by `a` with `old_layout` (in the ring
        // prefill or RING steps ago) and is freed exactly once, here.
        unsafe { a.dealloc(old, old_layout) };
    }
    let elapsed = start.elapsed();
    for (p, layout) in ring {
        // SAFETY: the blocks still in the ring came from `a` with `layout`.
        unsafe { a.dealloc(p, layout) };
    }
    elapsed
}

/// Sizes from 16 B to 4 KiB, log-uniform (see [`mixed_sizes`]): the mixed
/// pairs of `pairs.rs`.
pub static SIZES_TO_4KIB: LazyLock<[u32; TABLE_LEN]> = LazyLock::new(mixed_sizes);

/// Sizes from 16 B to 64 KiB, log-uniform (see [`log_uniform_sizes`]): the
/// mixed pairs of `peers.rs` and `floor.rs`.
pub static SIZES_TO_64KIB: LazyLock<[u32; TABLE_LEN]> = LazyLock::new(|| log_uniform_sizes(16));

/// The growth workload's first and last sizes.
pub const GROWTH_FIRST: usize = 8;
/// See [`GROWTH_FIRST`].
pub const GROWTH_LAST: usize = 1 << 20;

/// Runs `iters` growths through `a`: each allocates [`GROWTH_FIRST`] bytes,
/// grows the block by doubling reallocations to [`GROWTH_LAST`], writing each
/// grown part as `Vec::push` would, and frees it. Returns how long they took.
#[inline(never)]
pub fn realloc_growth<A: GlobalAlloc>(a: &A, iters: u64) -> Duration {
    let start = Instant::now();
    for _ in 0..iters {
        let first = black_box(Layout::from_size_align(GROWTH_FIRST, ALIGN).expect("small"));
        let mut p = alloc(a, first);
        // SAFETY: `p` is valid for writes of `first.size()` bytes.
        unsafe { p.write_bytes(1, first.size()) };
        let mut size = first.size();
        while size < GROWTH_LAST {
            let new_size = size * 2;
            let old = Layout::from_size_align(size, ALIGN).expect("at most 1 MiB");
            // SAFETY: `p` was allocated by `a` with `old` (allocated or last
            // reallocated to `size` bytes); `new_size` is non-zero and at most
            // 1 MiB, so rounding it up to `ALIGN` cannot overflow `isize`.
            let q = unsafe { a.realloc(p, old, new_size) };
            if q.is_null() {
                handle_alloc_error(Layout::from_size_align(new_size, ALIGN).expect("small"));
            }
            // Fill the grown part, as pushing to a `Vec` would.
            // SAFETY: `q` is valid for writes of `new_size` bytes.
            unsafe { q.add(size).write_bytes(1, new_size - size) };
            p = black_box(q);
            size = new_size;
        }
        let last = Layout::from_size_align(size, ALIGN).expect("at most 1 MiB");
        // SAFETY: `p` was last reallocated by `a` to `size` bytes.
        unsafe { a.dealloc(p, last) };
    }
    start.elapsed()
}

/// What one op of a benchmark is.
#[derive(Clone, Copy)]
pub enum Workload {
    /// Allocate 64 B and free it at once (one op = one pair): [`fixed_64`].
    Fixed64,
    /// Allocate a size from [`SIZES_TO_4KIB`], free the block from [`RING`]
    /// steps ago (one op = one pair): [`mixed`].
    Mixed4KiB,
    /// Allocate a size from [`SIZES_TO_64KIB`], free the block from [`RING`]
    /// steps ago (one op = one pair): [`mixed`].
    Mixed64KiB,
    /// Grow a block from [`GROWTH_FIRST`] to [`GROWTH_LAST`] by doubling, then
    /// free it (one op = the whole growth: 1 alloc, 17 reallocs, 1 free):
    /// [`realloc_growth`].
    ReallocGrowth,
}

impl Workload {
    /// How the workload appears in benchmark names: `64B`, `mixed_16B-4KiB`,
    /// `mixed_16B-64KiB`, `realloc_8B-1MiB`.
    pub fn name(self) -> &'static str {
        match self {
            Workload::Fixed64 => "64B",
            Workload::Mixed4KiB => "mixed_16B-4KiB",
            Workload::Mixed64KiB => "mixed_16B-64KiB",
            Workload::ReallocGrowth => "realloc_8B-1MiB",
        }
    }

    /// Runs `iters` ops on the calling thread and returns how long they took.
    pub fn run<A: GlobalAlloc>(self, a: &A, iters: u64) -> Duration {
        match self {
            Workload::Fixed64 => fixed_64(a, iters),
            Workload::Mixed4KiB => mixed(a, &SIZES_TO_4KIB, iters),
            Workload::Mixed64KiB => mixed(a, &SIZES_TO_64KIB, iters),
            Workload::ReallocGrowth => realloc_growth(a, iters),
        }
    }

    /// Ops each thread runs before timing starts (claims the allocmeter
    /// slot, sets up the thread's state in the inner allocator and in the
    /// instrumentation).
    pub fn warm_up_ops(self) -> u64 {
        match self {
            Workload::Fixed64 | Workload::Mixed4KiB | Workload::Mixed64KiB => 1024,
            Workload::ReallocGrowth => 16,
        }
    }
}
