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
//! allocator, which may be this crate). A slot's rings form a chain
//! ([`super::chain`]): the producer can switch to a new ring at any moment by
//! linking it behind the current one ([`Ring::link`]); the consumer finishes
//! the old ring, follows the link and frees the old one ([`Ring::free`]).
//!
//! A ring's size follows the sample rate in force when it is allocated
//! ([`words_for_rate`]): at the default 512 KiB rate 8 KiB holds 13 to 30
//! records (64- to 25-frame stacks, fewer words when a record repeats the
//! previous stack of its ring); the drainer drains as often as the fullest
//! ring needs, down to every millisecond (see
//! [`crate::profile::drain_interval`]), and is woken when a ring is half
//! full all the same. A 4 KiB rate needs 64 KiB. A ring the drainer finds
//! filling faster than it wants to poll gets one twice as big, up to
//! [`MAX_RING_WORDS`] (64 KiB). When a record does not fit at all (the
//! drainer did not get the CPU in time), the producer switches at once to a
//! ring four times as big, at least 128 KiB and up to [`BURST_RING_WORDS`]
//! (1 MiB), within the bounds of [`crate::slot`]; once the burst is over it
//! switches back down.

use super::sync::{AtomicPtr, AtomicU64, AtomicUsize, Ordering};
#[cfg(not(loom))]
use core::alloc::{GlobalAlloc, Layout};
#[cfg(not(loom))]
use std::alloc::System;

use super::try_lock::TryLock;

/// Words in the largest ring (a power of two): 8192 words = 64 KiB, about
/// 100 records with 64-frame stacks plus room for frees. (Under Miri, whose
/// borrow tracker retags the whole slice on each access, an eighth of that.)
pub(crate) const MAX_RING_WORDS: usize = if cfg!(miri) { 1024 } else { 8192 };

/// Words in the largest ring a burst grows to (see [`crate::slot`]): 131,072
/// words = 1 MiB (an eighth under Miri).
pub(crate) const BURST_RING_WORDS: usize = MAX_RING_WORDS * 16;

/// Words in the smallest ring: 1024 words = 8 KiB (an eighth under Miri).
pub(crate) const MIN_RING_WORDS: usize = MAX_RING_WORDS / 8;

/// The ring size (in words, a power of two) for sampling at `rate` bytes:
/// 8 KiB at 256 KiB and above (the default is 512 KiB) or with sampling off
/// (0: only frees of blocks sampled earlier are pushed), 32 KiB from 32 KiB,
/// 64 KiB below that.
pub(crate) const fn words_for_rate(rate: u64) -> usize {
    if rate == 0 || rate >= 256 * 1024 {
        MIN_RING_WORDS
    } else if rate >= 32 * 1024 {
        MAX_RING_WORDS / 2
    } else {
        MAX_RING_WORDS
    }
}

/// Record kinds (the top byte of the header word).
pub(crate) const KIND_ALLOC: u64 = 1;
/// A sampled block was freed.
pub(crate) const KIND_FREE: u64 = 2;
/// A sampled allocation whose stack is that of the ring's previous
/// allocation record (see [`crate::record`]).
pub(crate) const KIND_ALLOC_SAME: u64 = 3;
/// The weight of samples that could not be handed over, carried by the
/// allocation record that follows (see [`crate::record`]).
pub(crate) const KIND_CARRY: u64 = 4;
/// A sampled block was resized by `realloc` and stays tracked (see
/// [`crate::record`]).
pub(crate) const KIND_RESIZE: u64 = 5;

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
///
/// Spaced 128 bytes apart by hand rather than with
/// [`Padded`](super::padded::Padded) fields (the same 128, for the same
/// reason): a ring is a block from the system allocator, and hand padding
/// keeps it an ordinary 8-byte-aligned block of `size_of::<Ring>()` bytes,
/// the figure counted in the telemetry bytes and their bound.
#[repr(C)]
pub(crate) struct Ring {
    words: &'static [AtomicU64],
    /// The ring the producer went on to, once it has switched (null until
    /// then). Written once by the producer (Release), after its last push
    /// here; read by the consumer (Acquire).
    next: AtomicPtr<Ring>,
    /// The pointer the system allocator returned for this `Ring`, kept to
    /// free it with (a pointer made from a shared reference may not
    /// deallocate: Miri's borrow tracker holds to that). Set once, when
    /// allocated.
    origin: AtomicPtr<Ring>,
    _pad0: [u8; 128 - 32],
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
    /// Allocates a ring of `words` words (rounded up to a power of two) from
    /// the system allocator. `None` if that fails.
    #[cfg(not(loom))]
    pub fn allocate(words: usize) -> Option<&'static Ring> {
        let words = words.clamp(1, BURST_RING_WORDS).next_power_of_two();
        let words_layout = Layout::array::<AtomicU64>(words).ok()?;
        // SAFETY: the layout has a non-zero size. Zeroed memory is a valid
        // `[AtomicU64]` (all zeros). The block is freed only by
        // `Ring::free`, whose caller guarantees no reference is used after.
        let words = unsafe {
            let p = System.alloc_zeroed(words_layout).cast::<AtomicU64>();
            if p.is_null() {
                return None;
            }
            core::slice::from_raw_parts(p, words)
        };
        let ring_layout = Layout::new::<Ring>();
        // SAFETY: non-zero size; the pointer is checked for null and written
        // with a fully initialised `Ring` before the reference is made; the
        // block is freed only by `Ring::free` (see above).
        unsafe {
            let p = System.alloc(ring_layout).cast::<Ring>();
            if p.is_null() {
                System.dealloc(words.as_ptr() as *mut u8, words_layout);
                return None;
            }
            p.write(Ring::over(words));
            // Relaxed: read only by `free`, after the ring has been handed
            // over through the chain's Release/Acquire pointers.
            (*p).origin.store(p, Ordering::Relaxed);
            Some(&*p)
        }
    }

    /// A ring of `words` words for a loom model (loom's atomics must be made
    /// by their constructor, not from zeroed memory). Leaked, as rings are.
    #[cfg(loom)]
    pub fn allocate(words: usize) -> Option<&'static Ring> {
        let words = words.clamp(1, BURST_RING_WORDS).next_power_of_two();
        let words: &'static [AtomicU64] =
            Box::leak((0..words).map(|_| AtomicU64::new(0)).collect());
        Some(Box::leak(Box::new(Ring::over(words))))
    }

    /// Gives `ring` back to the system allocator.
    ///
    /// # Safety
    ///
    /// `ring` points to a ring from [`Ring::allocate`], and nobody uses it,
    /// or any reference to it, afterwards: the consumer frees a ring only
    /// once the producer has linked the next one ([`Ring::link`]), after
    /// which the producer never touches it again. (A pointer, not a
    /// reference: a reference argument would outlive the memory.)
    #[cfg(not(loom))]
    pub unsafe fn free(ring: *const Ring) {
        // SAFETY: the caller guarantees `ring` points to a live ring; the
        // reference ends before the memory is freed.
        let (words, ring) = unsafe {
            let r = &*ring;
            (r.words, r.origin.load(Ordering::Relaxed))
        };
        // SAFETY: both blocks were allocated by `allocate` with these
        // layouts (the words' layout from their length, which `allocate`
        // set), and the caller guarantees they are no longer used. `Ring`
        // has no destructor to run.
        unsafe {
            if let Ok(layout) = Layout::array::<AtomicU64>(words.len()) {
                System.dealloc(words.as_ptr() as *mut u8, layout);
            }
            System.dealloc(ring.cast::<u8>(), Layout::new::<Ring>());
        }
    }

    /// Gives `ring` back (a loom model's: boxed by `allocate`).
    ///
    /// # Safety
    ///
    /// As the system allocator's version.
    #[cfg(loom)]
    pub unsafe fn free(ring: *const Ring) {
        // SAFETY: both were leaked boxes made by `allocate`; the caller
        // guarantees they are no longer used.
        unsafe {
            let words = (*ring).words as *const [AtomicU64] as *mut [AtomicU64];
            drop(Box::from_raw(ring as *mut Ring));
            drop(Box::from_raw(words));
        }
    }

    /// An empty ring over `words`.
    fn over(words: &'static [AtomicU64]) -> Ring {
        Ring {
            words,
            next: AtomicPtr::new(core::ptr::null_mut()),
            origin: AtomicPtr::new(core::ptr::null_mut()),
            _pad0: [0; 128 - 32],
            head: AtomicUsize::new(0),
            _pad1: [0; 128 - 8],
            tail: AtomicUsize::new(0),
            _pad2: [0; 128 - 8],
            producer_lock: TryLock::new(),
        }
    }

    /// Hands the producer's side over to `next`: from now on the producer
    /// pushes there, and never touches this ring again. Producer side only,
    /// once per ring.
    pub fn link(&self, next: &'static Ring) {
        // Release: the consumer that sees the link sees every record pushed
        // here before it (their `head` stores come first in this thread).
        self.next
            .store(next as *const Ring as *mut Ring, Ordering::Release);
    }

    /// The ring the producer went on to, if it has switched. Consumer side.
    pub fn next(&self) -> Option<&'static Ring> {
        // SAFETY: the pointer is null or points to a ring from `allocate`
        // that only the consumer frees, after it has moved on to it and
        // past it (so not while this one is still being read).
        unsafe { self.next.load(Ordering::Acquire).as_ref() }
    }

    /// Unlocks the producer lock whoever holds it. Only for a forked child:
    /// see [`TryLock::force_unlock`]. A push cut short by the fork had not
    /// published its words, so the ring is consistent.
    pub fn force_unlock_producer(&self) {
        self.producer_lock.force_unlock();
    }

    /// Words the ring holds (a power of two).
    pub fn capacity(&self) -> usize {
        self.words.len()
    }

    /// Bytes this ring occupies, for the telemetry-bytes figure.
    pub fn bytes(&self) -> usize {
        self.capacity() * 8 + core::mem::size_of::<Ring>()
    }

    /// Words kept free for free records (1/16 of the ring): an allocation
    /// record is only pushed if this many words stay free after it, so that
    /// the frees of sampled blocks, which keep the in-use estimates right, are
    /// the last thing to be dropped.
    pub fn free_reserve(&self) -> usize {
        self.capacity() / 16
    }

    /// Words the producer may still write. Producer side only.
    pub fn free_words(&self) -> usize {
        let head = self.head.load(Ordering::Relaxed);
        // Acquire: the consumer is done with every word before `tail`.
        let tail = self.tail.load(Ordering::Acquire);
        self.capacity() - head.wrapping_sub(tail)
    }

    /// Words pushed and not yet popped. Consumer side only (from the
    /// producer's side the figure can only be larger than it was).
    pub fn pending_words(&self) -> usize {
        let tail = self.tail.load(Ordering::Relaxed);
        let head = self.head.load(Ordering::Acquire);
        head.wrapping_sub(tail)
    }

    /// Whether everything pushed has been popped. Producer side only.
    #[cfg(any(test, loom))]
    pub fn is_empty(&self) -> bool {
        self.free_words() == self.capacity()
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
            let index = head.wrapping_add(i) & (self.capacity() - 1);
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
    #[cfg(any(test, loom))]
    pub fn pop(&self, out: &mut [u64]) -> Option<usize> {
        self.pop_with(out, |_| ())
    }

    /// [`Ring::pop`], calling `f` with the copied words before the record is
    /// given back to the producer: what `f` stores about the record is in
    /// place before the record is gone from the ring, so a `fork()` at any
    /// moment leaves a child that either has both or neither.
    pub fn pop_with(&self, out: &mut [u64], f: impl FnOnce(&[u64])) -> Option<usize> {
        let tail = self.tail.load(Ordering::Relaxed);
        // Acquire: pairs with the producer's Release store of `head`.
        let head = self.head.load(Ordering::Acquire);
        if head == tail {
            return None;
        }
        let word = |i: usize| {
            self.words
                .get(tail.wrapping_add(i) & (self.capacity() - 1))
                .map_or(0, |c| c.load(Ordering::Relaxed))
        };
        let (_, len) = split_header(word(0));
        let len = len.clamp(1, head.wrapping_sub(tail));
        for (i, o) in out.iter_mut().take(len).enumerate() {
            *o = word(i);
        }
        f(&out[..len.min(out.len())]);
        // Release: the producer may reuse these words once it sees the tail.
        self.tail.store(tail.wrapping_add(len), Ordering::Release);
        Some(len)
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn records_come_out_in_order_and_whole_across_the_wrap() {
        let ring = Ring::allocate(MAX_RING_WORDS).unwrap();
        let mut out = [0u64; 16];
        let mut next = 0u64;
        // Push and pop many records of varying length so the ring wraps.
        // Fewer under Miri, which runs this about a thousand times slower.
        let rounds = if cfg!(miri) { 300 } else { 10_000usize };
        for round in 0..rounds {
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
        let ring = Ring::allocate(MAX_RING_WORDS).unwrap();
        let rec = [header(KIND_ALLOC, 64); 64];
        let mut pushed = 0;
        let reserve = ring.free_reserve();
        assert_eq!(reserve, MAX_RING_WORDS / 16);
        while ring.push(&rec, reserve) {
            pushed += 1;
        }
        assert_eq!(pushed, (MAX_RING_WORDS - reserve) / 64);
        assert!(ring.free_words() >= reserve);
        // Small records still fit into the reserve.
        assert!(ring.push(&[header(KIND_FREE, 2), 7], 0));
    }

    #[test]
    fn sizes_follow_the_rate_and_round_to_powers_of_two() {
        assert_eq!(words_for_rate(512 * 1024), MIN_RING_WORDS);
        assert_eq!(words_for_rate(64 * 1024), MAX_RING_WORDS / 2);
        assert_eq!(words_for_rate(4096), MAX_RING_WORDS);
        assert_eq!(words_for_rate(1), MAX_RING_WORDS);
        assert_eq!(words_for_rate(0), MIN_RING_WORDS);
        let ring = Ring::allocate(MAX_RING_WORDS / 2 - 100).unwrap();
        assert_eq!(ring.capacity(), MAX_RING_WORDS / 2);
        assert_eq!(
            ring.bytes(),
            MAX_RING_WORDS / 2 * 8 + core::mem::size_of::<Ring>()
        );
        assert!(ring.is_empty());
        assert!(ring.push(&[header(KIND_FREE, 2), 1], 0));
        assert!(!ring.is_empty());
    }

    #[test]
    fn one_producer_one_consumer_threads_lose_and_reorder_nothing() {
        let ring = Ring::allocate(MAX_RING_WORDS).unwrap();
        const N: u64 = if cfg!(miri) { 2_000 } else { 200_000 };
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
