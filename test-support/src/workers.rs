//! Threads that stand for a service's own work in the exporter's tests, and
//! allocations from many call sites.

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

/// Starts `n` threads that allocate and free blocks of 16 B to 5 KiB until
/// `stop` is set; each returns how many blocks it allocated.
pub fn allocating(n: usize, stop: &Arc<AtomicBool>) -> Vec<JoinHandle<u64>> {
    (0..n)
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut count = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    black_box(vec![0u8; 16 + (count % 5000) as usize]);
                    count += 1;
                }
                count
            })
        })
        .collect()
}

/// One level of [`descend`] by the left.
#[inline(never)]
fn left(n: u32, level: u32, keep: &mut Vec<Vec<u8>>) {
    descend(n, level, keep);
    black_box(&keep);
}

/// One level of [`descend`] by the right.
#[inline(never)]
fn right(n: u32, level: u32, keep: &mut Vec<Vec<u8>>) {
    descend(n, level, keep);
    black_box(&keep);
}

/// Goes down `level` levels, by the left or the right as the bits of `n`
/// say (cyclically, the lowest bit nearest the allocation), and allocates
/// there: each `(n, level)` is a stack of its own frames, so each is a call
/// site of its own even once sites are merged by function and line.
#[inline(never)]
fn descend(n: u32, level: u32, keep: &mut Vec<Vec<u8>>) {
    if level == 0 {
        keep.push(black_box(vec![n as u8; 8192 + n as usize]));
        return;
    }
    let next = level - 1;
    if (n >> (next % 6)) & 1 == 1 {
        left(n, next, keep);
    } else {
        right(n, next, keep);
    }
    black_box(&keep);
}

/// Allocates from 64 × 48 distinct stacks and returns the blocks, so that a
/// sampling exporter's site table (and its call-site report) is large: at a
/// 1 KiB sample rate, a few thousand sites (stacks deeper than the capture
/// share their innermost frames).
pub fn many_call_sites() -> Vec<Vec<u8>> {
    let mut keep = Vec::new();
    for level in 0..48 {
        for n in 0..64 {
            descend(n, level, &mut keep);
        }
    }
    keep
}

/// How many distinct call sites [`distinct_call_sites`] allocates from:
/// site numbers `0..DISTINCT_SITES`.
pub const DISTINCT_SITES: u32 = 10_000;

/// The levels of [`distinct_call_sites`]' stacks: one decimal digit of the
/// site number each.
const SITE_DIGITS: u32 = 4;

/// One level of [`distinct_call_sites`]: calls the [`site_hop`] of the site
/// number's digit at this level, from a call of its own (ten calls, ten
/// return addresses), or allocates at the bottom.
#[inline(never)]
fn site_branch(n: u32, level: u32, keep: &mut Vec<Vec<u8>>) {
    if level == 0 {
        site_leaf(n, keep);
        return;
    }
    let next = level - 1;
    match (n / 10u32.pow(next)) % 10 {
        0 => site_hop::<0>(n, next, keep),
        1 => site_hop::<1>(n, next, keep),
        2 => site_hop::<2>(n, next, keep),
        3 => site_hop::<3>(n, next, keep),
        4 => site_hop::<4>(n, next, keep),
        5 => site_hop::<5>(n, next, keep),
        6 => site_hop::<6>(n, next, keep),
        7 => site_hop::<7>(n, next, keep),
        8 => site_hop::<8>(n, next, keep),
        _ => site_hop::<9>(n, next, keep),
    }
    // Used after the call, so the call is not a tail call.
    black_box(&keep);
}

/// The frame of digit `D` between two levels of [`site_branch`]. Each `D`
/// is a function of its own whose code differs (the constant it hands
/// `black_box`), so that a release build neither merges the ten into one
/// function nor the ten calls of them into one call.
#[inline(never)]
fn site_hop<const D: u32>(n: u32, level: u32, keep: &mut Vec<Vec<u8>>) {
    black_box(D);
    site_branch(n, level, keep);
    black_box(&keep);
}

/// The allocation of site `n`: one block of 64 to 127 bytes, pushed onto
/// `keep`.
#[inline(never)]
fn site_leaf(n: u32, keep: &mut Vec<Vec<u8>>) {
    keep.push(black_box(vec![n as u8; 64 + (n % 64) as usize]));
}

/// Allocates one block from each site numbered in `sites` (within
/// `0..`[`DISTINCT_SITES`]) and pushes it onto `keep`. Site `n`'s stack
/// goes down four levels, one per decimal digit of `n`, each through a call
/// of its own, so the stacks stay `sites.len()` distinct call sites by
/// address in a release build too (unlike [`many_call_sites`], whose
/// stacks a release build folds into a few dozen), and by function once
/// symbolized (the digits' frames are `site_hop::<D>`). Reserve room in
/// `keep` first: a push that grows it allocates from the stack of the site
/// that pushed, one more site.
///
/// # Panics
///
/// If `sites` reaches past [`DISTINCT_SITES`].
pub fn distinct_call_sites(sites: std::ops::Range<u32>, keep: &mut Vec<Vec<u8>>) {
    assert!(
        sites.end <= DISTINCT_SITES,
        "sites {sites:?} past the {DISTINCT_SITES} there are"
    );
    for n in sites {
        site_branch(n, SITE_DIGITS, keep);
    }
}

/// The block size of [`deep_burst`]: 48 KiB, sampled with probability
/// 1 - exp(-48/512) = 0.0895 at the default 512 KiB rate.
pub const BURST_BLOCK: usize = 48 * 1024;

/// Allocates and frees `blocks` blocks of [`BURST_BLOCK`] bytes as fast as
/// it can, from `depth` frames below the caller, and returns the bytes
/// allocated. The allocating function is [`burst_leaf`]: its site is found
/// by that name.
pub fn deep_burst(depth: u32, blocks: usize) -> usize {
    deep(depth, blocks) * BURST_BLOCK
}

/// One frame of [`deep_burst`]'s stack.
#[inline(never)]
fn deep(level: u32, blocks: usize) -> usize {
    if level == 0 {
        return burst_leaf(blocks);
    }
    // Used after the call, so the call is not a tail call and each level
    // keeps its frame.
    black_box(deep(black_box(level - 1), blocks)) + black_box(0)
}

/// Allocates and frees `blocks` blocks of [`BURST_BLOCK`] bytes, flat out,
/// and returns how many it allocated.
#[inline(never)]
pub fn burst_leaf(blocks: usize) -> usize {
    for _ in 0..blocks {
        drop(black_box(Vec::<u8>::with_capacity(BURST_BLOCK)));
    }
    blocks
}

/// `n` threads that spin until `stop`, keeping the cores busy (a service at
/// full load).
pub fn spinning(n: usize, stop: &Arc<AtomicBool>) -> Vec<JoinHandle<()>> {
    (0..n)
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut x = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    x = black_box(x.wrapping_add(1));
                }
            })
        })
        .collect()
}
