//! Threads that stand for a service's own work in the exporter's tests.

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
