//! The sample record: the words one sampled allocation, or the free of a
//! sampled block, takes in a ring. The sampler encodes records here
//! ([`AllocRecord::encode`], [`encode_free`]) and the drain decodes them
//! ([`decode`]); nothing else knows which word holds what.
//!
//! The ring frames every record with its header word (kind and length, see
//! [`crate::lockfree::ring::header`]); this module owns what follows it:
//!
//! | word | allocation ([`KIND_ALLOC`]) | same stack ([`KIND_ALLOC_SAME`]) | free ([`KIND_FREE`]) | resize ([`KIND_RESIZE`]) | carry ([`KIND_CARRY`]) |
//! |---|---|---|---|---|---|
//! | 0 | header, length `10 + frames` | header, length 10 | header, length 5 | header, length 6 | header, length 4 |
//! | 1 | sample id | sample id | sample id | sample id | samples carried |
//! | 2 | block address | block address | time | new address | allocations (`f64` bits) |
//! | 3 | requested size | requested size | slot, end | new size | bytes (`f64` bits) |
//! | 4 | sample rate | sample rate | the slot's allocations of the block's size | time | |
//! | 5 | slot index | slot index | | slot, kind | |
//! | 6 | time | time | | | |
//! | 7 | origin | origin | | | |
//! | 8 | parent id, or 0 | parent id, or 0 | | | |
//! | 9 | the slot's allocations of the block's size | the same | | | |
//! | 10.. | return addresses, innermost first | | | | |
//!
//! Times are the clock's nanoseconds ([`crate::profile::clock_ns`]). The
//! origin word says how the block came to be: a fresh allocation (0), or a
//! `realloc` from the size in its upper bits (`old << 2 | kind`, kind 1
//! grown in place, 2 shrunk in place, 3 moved). A sample taken at the
//! `realloc` of a block already tracked carries that block's id as its
//! parent. "slot, end" and "slot, kind" hold the slot index in the low 32
//! bits and the [`FreeEnd`] or [`ReallocKind`] above them. "The slot's
//! allocations of the block's size" is the allocating (or freeing) thread's
//! count of allocations in the block's size cell, read at the sample (or
//! the free): when one thread does both, their difference is how many
//! blocks of that size it allocated while the block was alive.
//!
//! A burst from one call site repeats one stack, so an allocation record
//! whose stack is that of the previous allocation record in the same ring
//! leaves it out ([`KIND_ALLOC_SAME`]): 10 words instead of 10 + frames. The
//! sampled path tells by a 64-bit hash of the stack ([`stack_key`]; two
//! different stacks share one with a chance of about 2^-64); the drain
//! remembers the last whole stack it read from each slot
//! ([`StackMemo`], updated by [`remember`] before the record leaves the
//! ring, so that a `fork()` never separates the two). The first allocation
//! record in a new ring always carries its whole stack.
//!
//! A carry record ([`KIND_CARRY`]) is pushed together with (just before) an
//! allocation record, in one push: the weight of earlier samples of the
//! thread that no ring could take, which that allocation's site counts in
//! its allocated totals (see [`crate::profile::Carried`]).

use core::sync::atomic::{AtomicUsize, Ordering};

use crate::counters::ReallocKind;
use crate::lockfree::ring::{
    self, KIND_ALLOC, KIND_ALLOC_SAME, KIND_CARRY, KIND_FREE, KIND_RESIZE,
};
use crate::stack::MAX_DEPTH;

/// Words of an allocation record before its stack.
pub(crate) const ALLOC_HEAD: usize = 10;

/// Words of a free record.
pub(crate) const FREE_LEN: usize = 5;

/// Words of a resize record.
pub(crate) const RESIZE_LEN: usize = 6;

/// Words of a carry record.
pub(crate) const CARRY_LEN: usize = 4;

/// The longest record: an allocation with [`MAX_DEPTH`] frames.
pub(crate) const MAX_RECORD_WORDS: usize = ALLOC_HEAD + MAX_DEPTH;

/// The most words one push of the sampled path takes: a carry record and
/// the longest allocation record.
pub(crate) const MAX_PUSH_WORDS: usize = CARRY_LEN + MAX_RECORD_WORDS;

/// The words an allocation record with `frames` return addresses takes.
#[inline]
pub(crate) const fn alloc_len(frames: usize) -> usize {
    ALLOC_HEAD + frames
}

/// A sampled allocation, as one record carries it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct AllocRecord<'a> {
    /// The sample's id.
    pub id: u64,
    /// The block's address.
    pub address: usize,
    /// The requested size in bytes.
    pub size: u64,
    /// The sample rate the sample was taken at.
    pub rate: u64,
    /// The index of the allocating thread's slot.
    pub slot: usize,
    /// When the sample was taken ([`crate::profile::clock_ns`]).
    pub time_ns: u64,
    /// How the block came to be.
    pub origin: Origin,
    /// The id of the tracked block this one continues (a sample taken at
    /// its `realloc`), or 0.
    pub parent: u64,
    /// The allocating slot's allocations of this size's cell, this one
    /// included.
    pub size_allocs: u64,
    /// Return addresses, innermost first (at most [`MAX_DEPTH`]).
    pub stack: &'a [usize],
}

/// How a sampled block came to be: a fresh allocation, or a `realloc`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// `alloc` or `alloc_zeroed`.
    Alloc,
    /// A `realloc` of a block of `old_size` bytes.
    Realloc {
        /// The size the block had before.
        old_size: u64,
        /// How the inner allocator served it.
        kind: ReallocKind,
    },
}

impl Origin {
    fn encode(self) -> u64 {
        match self {
            Origin::Alloc => 0,
            Origin::Realloc { old_size, kind } => (old_size << 2) | kind_code(kind),
        }
    }

    fn decode(word: u64) -> Origin {
        match kind_of(word & 3) {
            None => Origin::Alloc,
            Some(kind) => Origin::Realloc {
                old_size: word >> 2,
                kind,
            },
        }
    }
}

fn kind_code(kind: ReallocKind) -> u64 {
    match kind {
        ReallocKind::GrownInPlace => 1,
        ReallocKind::ShrunkInPlace => 2,
        ReallocKind::Moved => 3,
    }
}

fn kind_of(code: u64) -> Option<ReallocKind> {
    match code {
        1 => Some(ReallocKind::GrownInPlace),
        2 => Some(ReallocKind::ShrunkInPlace),
        3 => Some(ReallocKind::Moved),
        _ => None,
    }
}

/// How the tracking of a sampled block ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FreeEnd {
    /// The program freed it.
    Freed,
    /// It is no longer tracked, but its free was not seen: the sampled
    /// table could not keep it after a `realloc` moved it, or a later sample
    /// took over its address. Its lifetime is unknown past this point
    /// (censored).
    Untracked,
}

/// A sampled block's free (or the end of its tracking), as a record carries
/// it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct FreeRecord {
    pub id: u64,
    pub time_ns: u64,
    pub slot: usize,
    pub end: FreeEnd,
    /// The freeing slot's allocations of the block's size cell.
    pub size_allocs: u64,
}

/// A tracked block resized by `realloc`, as a record carries it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ResizeRecord {
    pub id: u64,
    pub address: usize,
    pub new_size: u64,
    pub time_ns: u64,
    pub slot: usize,
    pub kind: ReallocKind,
}

/// Packs a slot index and a small code into one word.
fn slot_and(slot: usize, code: u64) -> u64 {
    (slot as u64 & 0xFFFF_FFFF) | (code << 32)
}

impl AllocRecord<'_> {
    /// Writes the record into the start of `out` and returns its length in
    /// words: the words to push are `out[..len]`. With `same_stack`, the
    /// stack is left out ([`KIND_ALLOC_SAME`]): the caller has checked that
    /// the ring's previous allocation record has the same. `out` must hold
    /// [`MAX_RECORD_WORDS`]; a shorter one gets a record cut to fit.
    #[inline]
    pub(crate) fn encode(&self, out: &mut [u64], same_stack: bool) -> usize {
        let n = if same_stack {
            0
        } else {
            self.stack.len().min(MAX_DEPTH)
        };
        let len = alloc_len(n).min(out.len());
        if len < ALLOC_HEAD {
            return 0;
        }
        for (w, f) in out[ALLOC_HEAD..len].iter_mut().zip(&self.stack[..n]) {
            *w = *f as u64;
        }
        let kind = if same_stack { KIND_ALLOC_SAME } else { KIND_ALLOC };
        out[0] = ring::header(kind, len);
        out[1] = self.id;
        out[2] = self.address as u64;
        out[3] = self.size;
        out[4] = self.rate;
        out[5] = self.slot as u64;
        out[6] = self.time_ns;
        out[7] = self.origin.encode();
        out[8] = self.parent;
        out[9] = self.size_allocs;
        len
    }
}

impl FreeRecord {
    /// The record's words.
    #[inline]
    pub(crate) fn encode(&self) -> [u64; FREE_LEN] {
        let end = match self.end {
            FreeEnd::Freed => 0,
            FreeEnd::Untracked => 1,
        };
        [
            ring::header(KIND_FREE, FREE_LEN),
            self.id,
            self.time_ns,
            slot_and(self.slot, end),
            self.size_allocs,
        ]
    }
}

impl ResizeRecord {
    /// The record's words.
    #[inline]
    pub(crate) fn encode(&self) -> [u64; RESIZE_LEN] {
        [
            ring::header(KIND_RESIZE, RESIZE_LEN),
            self.id,
            self.address as u64,
            self.new_size,
            self.time_ns,
            slot_and(self.slot, kind_code(self.kind)),
        ]
    }
}

/// The record of `samples` samples' weight, `objects` allocations and
/// `bytes` bytes, carried by the allocation record pushed after it.
pub(crate) fn encode_carry(samples: u64, objects: f64, bytes: f64) -> [u64; CARRY_LEN] {
    [
        ring::header(KIND_CARRY, CARRY_LEN),
        samples,
        objects.to_bits(),
        bytes.to_bits(),
    ]
}

/// A 64-bit key of a stack (its frames and their number), never 0: equal
/// keys stand for equal stacks (a collision has a chance of about 2^-64).
pub(crate) fn stack_key(stack: &[usize]) -> u64 {
    // FNV-style multiply-xor over the words, then a finalizer (splitmix64's)
    // so that stacks differing in one frame differ in every bit.
    let mut h = 0x9E37_79B9_7F4A_7C15u64 ^ stack.len() as u64;
    for &f in stack {
        h = (h ^ f as u64).wrapping_mul(0x0000_0100_0000_01B3);
        h = h.rotate_left(29);
    }
    h ^= h >> 30;
    h = h.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94D0_49BB_1331_11EB);
    h ^= h >> 31;
    h | 1
}

/// The drain's memory of the last whole stack it read from one slot's
/// rings, for the records that repeat it. Written and read only by the one
/// drain running (relaxed loads and stores).
pub(crate) struct StackMemo {
    len: AtomicUsize,
    frames: [AtomicUsize; MAX_DEPTH],
}

impl StackMemo {
    /// An empty memory.
    pub(crate) const fn new() -> Self {
        StackMemo {
            len: AtomicUsize::new(0),
            frames: [const { AtomicUsize::new(0) }; MAX_DEPTH],
        }
    }
}

/// Remembers the stack of `words` (a record as popped, header first) if it
/// is an allocation record with a whole stack. Called before the record
/// leaves the ring (see [`crate::lockfree::ring::Ring::pop_with`]).
#[inline]
pub(crate) fn remember(words: &[u64], memo: &StackMemo) {
    let Some(&head) = words.first() else { return };
    let (kind, _) = ring::split_header(head);
    if kind != KIND_ALLOC || words.len() < ALLOC_HEAD {
        return;
    }
    let n = (words.len() - ALLOC_HEAD).min(MAX_DEPTH);
    for (cell, w) in memo.frames.iter().zip(&words[ALLOC_HEAD..ALLOC_HEAD + n]) {
        cell.store(*w as usize, Ordering::Relaxed);
    }
    memo.len.store(n, Ordering::Relaxed);
}

/// One record, decoded.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Record<'a> {
    /// A sampled allocation.
    Alloc(AllocRecord<'a>),
    /// The sampled block was freed, or its tracking ended.
    Free(FreeRecord),
    /// A tracked block was resized.
    Resize(ResizeRecord),
    /// Weight carried by the allocation record that follows.
    Carry {
        /// Samples whose weight this is.
        samples: u64,
        /// Estimated allocations.
        objects: f64,
        /// Estimated bytes.
        bytes: f64,
    },
}

/// Decodes the record `words` (as popped from a ring, header first), copying
/// its stack into `stack` (from `memo` for a record that repeats the last
/// whole one). `None` for a record of an unknown kind or too short for its
/// kind.
#[inline]
pub(crate) fn decode<'s>(
    words: &[u64],
    stack: &'s mut [usize; MAX_DEPTH],
    memo: &StackMemo,
) -> Option<Record<'s>> {
    let len = words.len();
    let (kind, _) = ring::split_header(*words.first()?);
    match kind {
        KIND_ALLOC | KIND_ALLOC_SAME if len >= ALLOC_HEAD => {
            let n = if kind == KIND_ALLOC {
                let n = (len - ALLOC_HEAD).min(MAX_DEPTH);
                for (d, w) in stack.iter_mut().zip(&words[ALLOC_HEAD..ALLOC_HEAD + n]) {
                    *d = *w as usize;
                }
                n
            } else {
                let n = memo.len.load(Ordering::Relaxed).min(MAX_DEPTH);
                for (d, cell) in stack.iter_mut().zip(&memo.frames[..n]) {
                    *d = cell.load(Ordering::Relaxed);
                }
                n
            };
            Some(Record::Alloc(AllocRecord {
                id: words[1],
                address: words[2] as usize,
                size: words[3],
                rate: words[4],
                slot: words[5] as usize,
                time_ns: words[6],
                origin: Origin::decode(words[7]),
                parent: words[8],
                size_allocs: words[9],
                stack: &stack[..n],
            }))
        }
        KIND_FREE if len >= FREE_LEN => Some(Record::Free(FreeRecord {
            id: words[1],
            time_ns: words[2],
            slot: (words[3] & 0xFFFF_FFFF) as usize,
            end: if words[3] >> 32 == 1 {
                FreeEnd::Untracked
            } else {
                FreeEnd::Freed
            },
            size_allocs: words[4],
        })),
        KIND_RESIZE if len >= RESIZE_LEN => Some(Record::Resize(ResizeRecord {
            id: words[1],
            address: words[2] as usize,
            new_size: words[3],
            time_ns: words[4],
            slot: (words[5] & 0xFFFF_FFFF) as usize,
            kind: kind_of(words[5] >> 32)?,
        })),
        KIND_CARRY if len >= CARRY_LEN => Some(Record::Carry {
            samples: words[1],
            objects: f64::from_bits(words[2]),
            bytes: f64::from_bits(words[3]),
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lockfree::ring::Ring;

    #[test]
    fn records_round_trip_through_a_ring() {
        let frames: Vec<usize> = (0..MAX_DEPTH).map(|i| 0x5555_0000 + i * 8).collect();
        let ring = Ring::allocate(ring::MAX_RING_WORDS).unwrap();
        for depth in [0, 1, 5, MAX_DEPTH] {
            let sent = AllocRecord {
                id: 7 + depth as u64,
                address: 0x7f00_1234_5670,
                size: 4096,
                rate: 512 * 1024,
                slot: 3,
                time_ns: 123_456_789,
                origin: if depth % 2 == 0 {
                    Origin::Alloc
                } else {
                    Origin::Realloc {
                        old_size: 1 << 40,
                        kind: ReallocKind::Moved,
                    }
                },
                parent: depth as u64,
                size_allocs: 1234 + depth as u64,
                stack: &frames[..depth],
            };
            let free = FreeRecord {
                id: sent.id,
                time_ns: 987_654_321,
                slot: 5,
                end: if depth % 2 == 0 {
                    FreeEnd::Freed
                } else {
                    FreeEnd::Untracked
                },
                size_allocs: u64::MAX - depth as u64,
            };
            let resize = ResizeRecord {
                id: sent.id,
                address: 0x7f00_0000_1000,
                new_size: 1 << 33,
                time_ns: 555,
                slot: 4095,
                kind: ReallocKind::GrownInPlace,
            };
            let mut words = [0u64; MAX_RECORD_WORDS];
            let len = sent.encode(&mut words, false);
            assert_eq!(len, alloc_len(depth));
            assert!(ring.push(&words[..len], 0));
            assert!(ring.push(&resize.encode(), 0));
            assert!(ring.push(&free.encode(), 0));

            let mut buf = [0u64; MAX_RECORD_WORDS];
            let mut stack = [0usize; MAX_DEPTH];
            let memo = StackMemo::new();
            let len = ring.pop(&mut buf).unwrap();
            assert_eq!(
                decode(&buf[..len], &mut stack, &memo),
                Some(Record::Alloc(sent))
            );
            let len = ring.pop(&mut buf).unwrap();
            assert_eq!(len, RESIZE_LEN);
            assert_eq!(
                decode(&buf[..len], &mut stack, &memo),
                Some(Record::Resize(resize))
            );
            let len = ring.pop(&mut buf).unwrap();
            assert_eq!(len, FREE_LEN);
            assert_eq!(
                decode(&buf[..len], &mut stack, &memo),
                Some(Record::Free(free))
            );
        }
        assert!(ring.pop(&mut [0u64; 4]).is_none());
    }

    #[test]
    fn short_and_unknown_records_are_skipped() {
        let mut stack = [0usize; MAX_DEPTH];
        let m = StackMemo::new();
        assert_eq!(decode(&[], &mut stack, &m), None);
        assert_eq!(
            decode(&[ring::header(KIND_ALLOC, 9), 1, 2, 3, 4, 5, 6, 7, 8], &mut stack, &m),
            None
        );
        assert_eq!(decode(&[ring::header(KIND_FREE, 4), 1, 2, 3], &mut stack, &m), None);
        assert_eq!(
            decode(&[ring::header(KIND_RESIZE, 6), 1, 2, 3, 4, 9 << 32], &mut stack, &m),
            None,
            "an unknown realloc kind"
        );
        assert_eq!(decode(&[ring::header(KIND_CARRY, 3), 1, 2], &mut stack, &m), None);
        assert_eq!(decode(&[ring::header(9, 2), 1], &mut stack, &m), None);
    }

    #[test]
    fn a_repeated_stack_takes_nine_words_and_decodes_to_the_remembered_one() {
        let a: Vec<usize> = (0..30).map(|i| 0x4000 + i * 8).collect();
        let b: Vec<usize> = (0..30).map(|i| 0x9000 + i * 8).collect();
        assert_eq!(stack_key(&a), stack_key(&a.clone()));
        assert_ne!(stack_key(&a), stack_key(&b));
        assert_ne!(stack_key(&a), stack_key(&a[..29]));
        assert_ne!(stack_key(&[]), 0);
        let ring = Ring::allocate(ring::MAX_RING_WORDS).unwrap();
        let record = |id, stack| AllocRecord {
            id,
            address: 0x1000,
            size: 64,
            rate: 512,
            slot: 1,
            time_ns: 0,
            origin: Origin::Alloc,
            parent: 0,
            size_allocs: 0,
            stack,
        };
        let mut words = [0u64; MAX_PUSH_WORDS];
        // A whole stack, the same one short, a carry with the next, another.
        let len = record(1, &a).encode(&mut words, false);
        assert!(ring.push(&words[..len], 0));
        let len = record(2, &a).encode(&mut words, true);
        assert_eq!(len, ALLOC_HEAD);
        assert!(ring.push(&words[..len], 0));
        words[..CARRY_LEN].copy_from_slice(&encode_carry(3, 30.5, 1952.0));
        let len = record(3, &a).encode(&mut words[CARRY_LEN..], true);
        assert!(ring.push(&words[..CARRY_LEN + len], 0));
        let len = record(4, &b).encode(&mut words, false);
        assert!(ring.push(&words[..len], 0));
        let memo = StackMemo::new();
        let mut buf = [0u64; MAX_RECORD_WORDS];
        let mut stack = [0usize; MAX_DEPTH];
        let mut got = Vec::new();
        while let Some(len) = ring.pop_with(&mut buf, |w| remember(w, &memo)) {
            match decode(&buf[..len], &mut stack, &memo).unwrap() {
                Record::Alloc(r) => got.push(format!("{} {:x}", r.id, r.stack[0])),
                Record::Carry {
                    samples,
                    objects,
                    bytes,
                } => got.push(format!("carry {samples} {objects} {bytes}")),
                Record::Free(_) | Record::Resize(_) => unreachable!(),
            }
        }
        assert_eq!(
            got,
            ["1 4000", "2 4000", "carry 3 30.5 1952", "3 4000", "4 9000"]
        );
    }
}
