//! loom models of the lock-free parts, run by `.ci/loom.sh`
//! (`RUSTFLAGS="--cfg loom" cargo test -p allocmeter --lib --release`).
//! loom runs each model under every interleaving of its threads (within a
//! preemption bound) and every outcome the C++11 memory model allows for the
//! orderings used, so a missing `Acquire`/`Release` shows up as a failed
//! assertion or a data race on a `loom::cell::UnsafeCell`.

use loom::cell::UnsafeCell;
use loom::sync::Arc;
use loom::thread;

use super::bump::{Bump, Owned, Shared};
use super::chain::Chain;
use super::ownership;
use super::ring::{KIND_ALLOC, KIND_FREE, Ring, header};
use super::sync::{AtomicU32, AtomicU64, Ordering};
use super::try_lock::TryLock;

/// The sample ring, one producer and one consumer: three 3-word records
/// through an 8-word ring, so it fills and wraps. Every record comes out
/// whole, once and in order.
#[test]
fn ring_hands_records_over_whole_and_in_order() {
    loom::model(|| {
        let ring = Ring::allocate(8).unwrap();
        assert_eq!(ring.capacity(), 8);
        let producer = thread::spawn(move || {
            for i in 0..3u64 {
                while !ring.push(&[header(KIND_ALLOC, 3), i, !i], 0) {
                    thread::yield_now();
                }
            }
        });
        let mut out = [0u64; 4];
        for i in 0..3u64 {
            let len = loop {
                if let Some(len) = ring.pop(&mut out) {
                    break len;
                }
                thread::yield_now();
            };
            assert_eq!(len, 3);
            assert_eq!(out[..3], [header(KIND_ALLOC, 3), i, !i]);
        }
        producer.join().unwrap();
        assert!(ring.pop(&mut out).is_none());
    });
}

/// A slot's chain of rings: the producer pushes one record, switches to a
/// new ring (as a full ring makes it do), and pushes two more there, while
/// the consumer drains, follows the link and frees the ring it left. Every
/// record comes out once and in order, and only the left ring is freed
/// (loom would report the freed ring's atomics being used after the free
/// as an access to a dropped object).
#[test]
fn a_chain_hands_every_record_over_across_a_switch() {
    loom::model(|| {
        let chain: &'static Chain = Box::leak(Box::new(Chain::new()));
        chain.switch(Ring::allocate(2).unwrap());
        let producer = thread::spawn(move || {
            let first = chain.producer().unwrap();
            assert!(first.push(&[header(KIND_FREE, 2), 0], 0));
            chain.switch(Ring::allocate(4).unwrap());
            let second = chain.producer().unwrap();
            for i in 1..3u64 {
                assert!(second.push(&[header(KIND_FREE, 2), i], 0));
            }
        });
        let mut seen = Vec::new();
        let mut freed = 0;
        let mut out = [0u64; 4];
        let mut pop_all = |ring: &Ring, seen: &mut Vec<u64>| {
            while ring.pop(&mut out).is_some() {
                seen.push(out[1]);
            }
        };
        while seen.len() < 3 {
            chain.drain(|r| pop_all(r, &mut seen), |_| freed += 1);
            thread::yield_now();
        }
        producer.join().unwrap();
        chain.drain(|r| pop_all(r, &mut seen), |_| freed += 1);
        assert_eq!(seen, [0, 1, 2]);
        assert_eq!(freed, 1);
    });
}

/// The fallback ring: two producers under the producer lock, one consumer.
/// Each producer's record arrives whole; none is lost unless its push said
/// so.
#[test]
fn the_producer_lock_keeps_two_producers_records_whole() {
    loom::model(|| {
        let ring = Ring::allocate(8).unwrap();
        let producers: Vec<_> = (1..=2u64)
            .map(|p| {
                thread::spawn(move || {
                    ring.with_producer_lock(|r| r.push(&[header(KIND_FREE, 3), p, p * 10], 0))
                        .unwrap_or(false)
                })
            })
            .collect();
        let pushed: u64 = producers
            .into_iter()
            .map(|h| u64::from(h.join().unwrap()))
            .sum();
        let mut out = [0u64; 4];
        let mut seen = 0;
        while let Some(len) = ring.pop(&mut out) {
            assert_eq!(len, 3);
            assert_eq!(out[2], out[1] * 10, "a record mixed two producers");
            seen += 1;
        }
        assert_eq!(seen, pushed);
    });
}

/// The try-lock excludes: two threads increment a plain cell under it
/// (loom reports a data race if they ever overlap), retrying when it gives
/// up.
#[test]
fn the_try_lock_excludes() {
    loom::model(|| {
        let lock = Arc::new(TryLock::new());
        let cell = Arc::new(UnsafeCell::new(0u32));
        let threads: Vec<_> = (0..2)
            .map(|_| {
                let (lock, cell) = (lock.clone(), cell.clone());
                thread::spawn(move || {
                    // SAFETY: only under the lock (which is what is checked).
                    while lock
                        .with(1, 2, || cell.with_mut(|v| unsafe { *v += 1 }))
                        .is_none()
                    {
                        thread::yield_now();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        // SAFETY: both threads are joined.
        assert_eq!(cell.with(|v| unsafe { *v }), 2);
    });
}

/// A slot changing hands: the first owner counts twice and releases, the
/// next claims and counts once. With the claim's Acquire and the release's
/// Release, the next owner's load + store increment starts from the first
/// owner's last store, so no count is lost; a reader sees the counter only
/// grow.
#[test]
fn a_slot_changing_hands_loses_no_count() {
    loom::model(|| {
        let state = Arc::new(AtomicU32::new(ownership::FREE));
        let counter = Arc::new(AtomicU64::new(0));
        assert!(ownership::try_claim(&state));
        let first = {
            let (state, counter) = (state.clone(), counter.clone());
            thread::spawn(move || {
                Owned::add(&counter, 1);
                Owned::add(&counter, 1);
                ownership::release(&state);
            })
        };
        let next = {
            let (state, counter) = (state.clone(), counter.clone());
            thread::spawn(move || {
                while !ownership::try_claim(&state) {
                    thread::yield_now();
                }
                Owned::add(&counter, 1);
                ownership::release(&state);
            })
        };
        let a = counter.load(Ordering::Acquire);
        let b = counter.load(Ordering::Acquire);
        assert!(b >= a, "a reader saw the counter go down: {a} -> {b}");
        first.join().unwrap();
        next.join().unwrap();
        assert_eq!(counter.load(Ordering::Relaxed), 3);
    });
}

/// The shared fallback slot: two threads bump with read-modify-writes;
/// nothing is lost.
#[test]
fn shared_bumps_lose_nothing() {
    loom::model(|| {
        let counter = Arc::new(AtomicU64::new(0));
        let threads: Vec<_> = (0..2)
            .map(|_| {
                let counter = counter.clone();
                thread::spawn(move || {
                    Shared::add(&counter, 5);
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(counter.load(Ordering::Relaxed), 10);
    });
}

/// The sampled-block table: a block inserted by one thread, together with
/// three that share its filter bit and shard (so the shard grows and
/// rehashes), and handed to another thread (the program's own
/// synchronisation) is seen by that thread's free path, through the filter
/// read without a lock, and removed. Once the other three are removed too,
/// nothing is live and the bit is clear again.
#[test]
fn the_sampled_table_sees_a_handed_over_block_and_clears_its_bit() {
    use super::sampled;
    use super::sync::AtomicUsize;

    // The table's operations are many atomic steps each (probing, the
    // growth's rehash, the filter): more than loom's default branch limit.
    let mut model = loom::model::Builder::new();
    model.max_branches = 50_000;
    model.check(|| {
        // Fake, never dereferenced addresses. Under loom the filter has one
        // word: an address's bit is its bits 4..10, so these four share
        // bit 0, shard 0 and one home bucket.
        let p = 0x1000usize;
        let others = [p + 1024, p + 2048, p + 3072];
        let handoff = Arc::new(AtomicUsize::new(0));
        let producer = {
            let handoff = handoff.clone();
            thread::spawn(move || {
                assert_eq!(sampled::insert(p as *mut u8, 7), Ok(None));
                for (i, &q) in others.iter().enumerate() {
                    assert_eq!(sampled::insert(q as *mut u8, 100 + i as u64), Ok(None));
                }
                handoff.store(p, Ordering::Release);
            })
        };
        let got = loop {
            let v = handoff.load(Ordering::Acquire);
            if v != 0 {
                break v;
            }
            thread::yield_now();
        };
        assert!(
            sampled::maybe_sampled(got as *mut u8),
            "the free path missed a sampled block"
        );
        assert_eq!(sampled::remove(got as *mut u8), Ok(Some(7)));
        producer.join().unwrap();
        assert!(
            sampled::maybe_sampled(p as *mut u8),
            "the others keep the bit"
        );
        for (i, &q) in others.iter().enumerate() {
            assert_eq!(sampled::remove(q as *mut u8), Ok(Some(100 + i as u64)));
        }
        assert_eq!(sampled::live(), 0);
        assert!(!sampled::maybe_sampled(p as *mut u8), "a stale filter bit");
    });
}
