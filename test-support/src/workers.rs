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
