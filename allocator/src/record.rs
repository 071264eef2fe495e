//! The sample record: the words one sampled allocation, or the free of a
//! sampled block, takes in a ring. The sampler encodes records here
//! ([`AllocRecord::encode`], [`encode_free`]) and the drain decodes them
//! ([`decode`]); nothing else knows which word holds what.
//!
//! The ring frames every record with its header word (kind and length, see
//! [`crate::lockfree::ring::header`]); this module owns what follows it:
//!
//! | word | allocation ([`KIND_ALLOC`]) | free ([`KIND_FREE`]) |
//! |---|---|---|
//! | 0 | header, length `6 + frames` | header, length 2 |
//! | 1 | sample id | sample id |
//! | 2 | block address | |
//! | 3 | requested size | |
//! | 4 | sample rate | |
//! | 5 | slot index | |
//! | 6.. | return addresses, innermost first | |

use crate::lockfree::ring::{self, KIND_ALLOC, KIND_FREE};
use crate::stack::MAX_DEPTH;

/// Words of an allocation record before its stack.
const ALLOC_HEAD: usize = 6;

/// Words of a free record.
const FREE_LEN: usize = 2;

/// The longest record: an allocation with [`MAX_DEPTH`] frames.
pub(crate) const MAX_RECORD_WORDS: usize = ALLOC_HEAD + MAX_DEPTH;

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
    /// Return addresses, innermost first (at most [`MAX_DEPTH`]).
    pub stack: &'a [usize],
}

impl AllocRecord<'_> {
    /// Writes the record into `out` and returns its length in words: the
    /// words to push are `out[..len]`.
    #[inline]
    pub(crate) fn encode(&self, out: &mut [u64; MAX_RECORD_WORDS]) -> usize {
        let n = self.stack.len().min(MAX_DEPTH);
        for (w, f) in out[ALLOC_HEAD..].iter_mut().zip(&self.stack[..n]) {
            *w = *f as u64;
        }
        let len = alloc_len(n);
        out[0] = ring::header(KIND_ALLOC, len);
        out[1] = self.id;
        out[2] = self.address as u64;
        out[3] = self.size;
        out[4] = self.rate;
        out[5] = self.slot as u64;
        len
    }
}

/// The record of the free of the sampled block with this id.
#[inline]
pub(crate) fn encode_free(id: u64) -> [u64; FREE_LEN] {
    [ring::header(KIND_FREE, FREE_LEN), id]
}

/// One record, decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Record<'a> {
    /// A sampled allocation.
    Alloc(AllocRecord<'a>),
    /// The sampled block with this id was freed.
    Free {
        /// The id of its allocation record.
        id: u64,
    },
}

/// Decodes the record `words` (as popped from a ring, header first), copying
/// its stack into `stack`. `None` for a record of an unknown kind or too
/// short for its kind.
#[inline]
pub(crate) fn decode<'s>(words: &[u64], stack: &'s mut [usize; MAX_DEPTH]) -> Option<Record<'s>> {
    let len = words.len();
    let (kind, _) = ring::split_header(*words.first()?);
    match kind {
        KIND_ALLOC if len >= ALLOC_HEAD => {
            let n = (len - ALLOC_HEAD).min(MAX_DEPTH);
            for (d, w) in stack.iter_mut().zip(&words[ALLOC_HEAD..ALLOC_HEAD + n]) {
                *d = *w as usize;
            }
            Some(Record::Alloc(AllocRecord {
                id: words[1],
                address: words[2] as usize,
                size: words[3],
                rate: words[4],
                slot: words[5] as usize,
                stack: &stack[..n],
            }))
        }
        KIND_FREE if len >= FREE_LEN => Some(Record::Free { id: words[1] }),
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
                stack: &frames[..depth],
            };
            let mut words = [0u64; MAX_RECORD_WORDS];
            let len = sent.encode(&mut words);
            assert_eq!(len, alloc_len(depth));
            assert!(ring.push(&words[..len], 0));
            assert!(ring.push(&encode_free(sent.id), 0));

            let mut buf = [0u64; MAX_RECORD_WORDS];
            let mut stack = [0usize; MAX_DEPTH];
            let len = ring.pop(&mut buf).unwrap();
            assert_eq!(decode(&buf[..len], &mut stack), Some(Record::Alloc(sent)));
            let len = ring.pop(&mut buf).unwrap();
            assert_eq!(len, 2);
            assert_eq!(
                decode(&buf[..len], &mut stack),
                Some(Record::Free { id: sent.id })
            );
        }
        assert!(ring.pop(&mut [0u64; 4]).is_none());
    }

    #[test]
    fn short_and_unknown_records_are_skipped() {
        let mut stack = [0usize; MAX_DEPTH];
        assert_eq!(decode(&[], &mut stack), None);
        assert_eq!(
            decode(&[ring::header(KIND_ALLOC, 5), 1, 2, 3, 4], &mut stack),
            None
        );
        assert_eq!(decode(&[ring::header(KIND_FREE, 1)], &mut stack), None);
        assert_eq!(decode(&[ring::header(9, 2), 1], &mut stack), None);
    }
}
