//! A bounded ring of 64-bit words that carries sample records from the
//! allocating threads to the exporter.
//!
//! Each slot has one ring, written only by the slot's owner (single producer)
//! and read only by the drainer (single consumer, see [`crate::profile`]).
//! The fallback slot's ring has many producers, which take its producer lock
//! (a bounded try-lock: on contention the record is dropped, never waited for).
//!
//! Records are variable length: a header word holding the record's kind and
//! length, then the payload. A producer writes the words, then publishes them
//! by storing `head` with `Release`; the consumer reads `head` with `Acquire`,
//! reads the words, then frees them by storing `tail` with `Release`. Each side
//! only ever touches words the other side has handed over, so the word accesses
//! themselves can be `Relaxed`.
//!
//! Rings are allocated from the system allocator (never from the global
//! allocator, which may be this crate) on a slot's first sample, and never
//! freed: a ring outlives any thread that wrote to it.

use core::alloc::{GlobalAlloc, Layout};
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::alloc::System;

use crate::try_lock::TryLock;

/// Words in each ring (a power of two). 8192 words = 64 KiB: about 100
/// records with 64-frame stacks, plus room for frees.
pub(crate) const RING_WORDS: usize = 8192;

/// Words kept free for free records: an allocation record is only pushed if
/// this many words stay free after it, so that the frees of sampled blocks,
/// which keep the in-use estimates right, are the last thing to be dropped.
pub(crate) const FREE_RESERVE: usize = 512;

/// Record kinds (the top byte of the header word).
pub(crate) const KIND_ALLOC: u64 = 1;
/// A sampled block was freed.
pub(crate) const KIND_FREE: u64 = 2;

/// Builds a header word.
pub(crate) const fn header(kind: u64, len: usize) -> u64 {
    (kind << 56) | (len as u64 & 0x00FF_FFFF_FFFF_FFFF)
}

/// Splits a header word into kind and length.
pub(crate) const fn split_header(word: u64) -> (u64, usize) {
    (word >> 56, (word & 0x00FF_FFFF_FFFF_FFFF) as usize)
}

/// One ring. Head and tail sit on separate cache lines from each other and
/// from the buffer pointer.
#[repr(C)]
pub(crate) struct Ring {
    words: &'static [AtomicU64],
    _pad0: [u8; 128 - 16],
    /// Next word the producer writes (monotonic; index = head % len).
    head: AtomicUsize,
    _pad1: [u8; 128 - 8],
    /// Next word the consumer reads (monotonic).
    tail: AtomicUsize,
    _pad2: [u8; 128 - 8],
    /// Producer lock, used only on the fallback slot's ring.
    producer_lock: TryLock,
}

impl Ring {
    /// Allocates a ring from the system allocator. `None` if that fails.
    pub fn allocate() -> Option<&'static Ring> {
        let words_layout = Layout::array::<AtomicU64>(RING_WORDS).ok()?;
        // SAFETY: the layout has a non-zero size. Zeroed memory is a valid
        // `[AtomicU64]` (all zeros). The block is never freed, so the
        // 'static lifetime holds.
        let words = unsafe {
            let p = System.alloc_zeroed(words_layout).cast::<AtomicU64>();
            if p.is_null() {
                return None;
            }
            core::slice::from_raw_parts(p, RING_WORDS)
        };
        let ring_layout = Layout::new::<Ring>();
        // SAFETY: non-zero size; the pointer is checked for null and written
        // with a fully initialised `Ring` before the reference is made; the
        // block is never freed.
        unsafe {
            let p = System.alloc(ring_layout).cast::<Ring>();
            if p.is_null() {
                System.dealloc(words.as_ptr() as *mut u8, words_layout);
                return None;
            }
            p.write(Ring {
                words,
                _pad0: [0; 128 - 16],
                head: AtomicUsize::new(0),
                _pad1: [0; 128 - 8],
                tail: AtomicUsize::new(0),
                _pad2: [0; 128 - 8],
                producer_lock: TryLock::new(),
            });
            Some(&*p)
        }
    }

    /// Bytes one ring holds, for the telemetry-bytes figure.
    pub const fn bytes() -> usize {
        RING_WORDS * 8 + core::mem::size_of::<Ring>()
    }

    /// Words the producer may still write. Producer side only.
    pub fn free_words(&self) -> usize {
        let head = self.head.load(Ordering::Relaxed);
        // Acquire: the consumer is done with every word before `tail`.
        let tail = self.tail.load(Ordering::Acquire);
        RING_WORDS - head.wrapping_sub(tail)
    }

    /// Appends one record (`words[0]` must be its header). Returns `false`,
    /// writing nothing, if it does not fit with `reserve` words to spare.
    /// Producer side only (or under [`Ring::with_producer_lock`]).
    pub fn push(&self, words: &[u64], reserve: usize) -> bool {
        if words.len() + reserve > self.free_words() {
            return false;
        }
        let head = self.head.load(Ordering::Relaxed);
        for (i, w) in words.iter().enumerate() {
            let index = head.wrapping_add(i) % RING_WORDS;
            if let Some(cell) = self.words.get(index) {
                cell.store(*w, Ordering::Relaxed);
            }
        }
        // Release: the consumer that sees the new head sees the words.
        self.head
            .store(head.wrapping_add(words.len()), Ordering::Release);
        true
    }

    /// Runs `f` holding the producer lock, for rings with many producers.
    /// Gives up (returns `None`) after a bounded spin rather than wait.
    pub fn with_producer_lock<R>(&self, f: impl FnOnce(&Ring) -> R) -> Option<R> {
        self.producer_lock.with(1000, 1000, || f(self))
    }

    /// Pops one record into `out` and returns its length, or `None` if the
    /// ring is empty. A record longer than `out` is consumed but only its
    /// first `out.len()` words are copied; the caller compares the length
    /// (this crate never writes such records). Consumer side only.
    pub fn pop(&self, out: &mut [u64]) -> Option<usize> {
        let tail = self.tail.load(Ordering::Relaxed);
        // Acquire: pairs with the producer's Release store of `head`.
        let head = self.head.load(Ordering::Acquire);
        if head == tail {
            return None;
        }
        let word = |i: usize| {
            self.words
                .get(tail.wrapping_add(i) % RING_WORDS)
                .map_or(0, |c| c.load(Ordering::Relaxed))
        };
        let (_, len) = split_header(word(0));
        let len = len.clamp(1, head.wrapping_sub(tail));
        for (i, o) in out.iter_mut().take(len).enumerate() {
            *o = word(i);
        }
        // Release: the producer may reuse these words once it sees the tail.
        self.tail.store(tail.wrapping_add(len), Ordering::Release);
        Some(len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_come_out_in_order_and_whole_across_the_wrap() {
        let ring = Ring::allocate().unwrap();
        let mut out = [0u64; 16];
        let mut next = 0u64;
        // Push and pop many records of varying length so the ring wraps.
        for round in 0..10_000usize {
            let len = 1 + round % 7;
            let mut rec = vec![header(KIND_FREE, len)];
            rec.extend((1..len).map(|i| next + i as u64));
            assert!(ring.push(&rec, 0));
            let got = ring.pop(&mut out).unwrap();
            assert_eq!(&out[..got], &rec[..]);
            next += 100;
        }
        assert_eq!(ring.pop(&mut out), None);
    }

    #[test]
    fn a_full_ring_refuses_and_keeps_the_reserve() {
        let ring = Ring::allocate().unwrap();
        let rec = [header(KIND_ALLOC, 64); 64];
        let mut pushed = 0;
        while ring.push(&rec, FREE_RESERVE) {
            pushed += 1;
        }
        assert_eq!(pushed, (RING_WORDS - FREE_RESERVE) / 64);
        assert!(ring.free_words() >= FREE_RESERVE);
        // Small records still fit into the reserve.
        assert!(ring.push(&[header(KIND_FREE, 2), 7], 0));
    }

    #[test]
    fn one_producer_one_consumer_threads_lose_and_reorder_nothing() {
        let ring = Ring::allocate().unwrap();
        const N: u64 = 200_000;
        let producer = std::thread::spawn(move || {
            let mut i = 0;
            while i < N {
                if ring.push(&[header(KIND_FREE, 3), i, !i], 0) {
                    i += 1;
                }
            }
        });
        let mut out = [0u64; 4];
        let mut expect = 0;
        while expect < N {
            if let Some(len) = ring.pop(&mut out) {
                assert_eq!(len, 3);
                assert_eq!((out[1], out[2]), (expect, !expect));
                expect += 1;
            }
        }
        producer.join().unwrap();
    }
}
