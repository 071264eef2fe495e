//! A slot's rings in a chain: the ring its producer pushes into now, and
//! the rings before it that the consumer has not finished yet.
//!
//! The producer can switch to a new ring at any moment ([`Chain::switch`]):
//! it links the new ring behind the current one and pushes there from then
//! on. It never waits for the consumer and never touches the old ring again.
//! The consumer reads a ring to the end, then looks for a link; if there is
//! one, it reads the ring once more (the records pushed just before the
//! link), moves on to the next ring, and frees the old one
//! ([`Chain::drain`]). So a producer that finds its ring full takes a bigger
//! one at once, and the memory of a ring it left comes back as soon as the
//! consumer has read it.
//!
//! Orderings: the producer's pushes publish their words with `Release` on
//! the ring's `head`, and the link is stored with `Release` after the last
//! of them; the consumer loads the link with `Acquire`, so a second pass
//! over the old ring sees every record pushed there. The pointers below are
//! each written by one side only, or by the forked child alone.
//!
//! Fork: a `fork()` from another thread can copy a switch half done (the
//! producer's pointer moved, the link not stored yet). [`Chain::repair_in_child`]
//! finishes it in the child, so the child's consumer reaches every ring.

use super::ring::Ring;
use super::sync::{AtomicPtr, AtomicUsize, Ordering};

/// The most rings [`Chain::repair_in_child`] walks (a chain holds a few:
/// its bytes are bounded, see [`crate::slot`]).
const MAX_CHAIN_LEN: usize = 64;

/// One slot's rings.
pub(crate) struct Chain {
    /// The ring the producer pushes into (null before its first sample).
    /// Written by the producer (Release: the fallback slot's other
    /// producers and the next owner of the slot load it with Acquire).
    producer: AtomicPtr<Ring>,
    /// The oldest ring the consumer has not finished (null before the first
    /// ring). Written by the producer once, when it installs the first ring,
    /// and by the consumer as it moves on.
    consumer: AtomicPtr<Ring>,
    /// Bytes of the rings in the chain: the producer adds a ring's when it
    /// makes it, the consumer subtracts them when it frees it.
    bytes: AtomicUsize,
}

impl Chain {
    /// A chain without rings.
    #[cfg(not(loom))]
    pub const fn new() -> Self {
        Chain {
            producer: AtomicPtr::new(core::ptr::null_mut()),
            consumer: AtomicPtr::new(core::ptr::null_mut()),
            bytes: AtomicUsize::new(0),
        }
    }

    /// A chain without rings (loom's atomics have no `const` constructor).
    #[cfg(loom)]
    pub fn new() -> Self {
        Chain {
            producer: AtomicPtr::new(core::ptr::null_mut()),
            consumer: AtomicPtr::new(core::ptr::null_mut()),
            bytes: AtomicUsize::new(0),
        }
    }

    /// The ring the producer pushes into now.
    pub fn producer(&self) -> Option<&'static Ring> {
        // SAFETY: null or a ring from `Ring::allocate`; the consumer frees a
        // ring only after the producer has linked past it, and only the
        // producer (this caller, or a thread holding the fallback ring's
        // producer lock, whose ring is never switched) uses this pointer.
        unsafe { self.producer.load(Ordering::Acquire).as_ref() }
    }

    /// Bytes of the rings in the chain now (an upper bound from the
    /// producer's side: the consumer only lowers it).
    pub fn bytes(&self) -> usize {
        self.bytes.load(Ordering::Relaxed)
    }

    /// Makes `fresh` the producer's ring, linked behind the current one (or
    /// as the first ring). Producer side only; `fresh` is new and empty.
    pub fn switch(&self, fresh: &'static Ring) {
        // Relaxed: the consumer learns about the bytes only to subtract
        // them later, in its own thread; nobody orders on this counter.
        self.bytes.fetch_add(fresh.bytes(), Ordering::Relaxed);
        let fresh_ptr = fresh as *const Ring as *mut Ring;
        let old = self.producer.swap(fresh_ptr, Ordering::AcqRel);
        // SAFETY: as in `producer`: the old ring is not freed before it is
        // linked, and only this line links it.
        match unsafe { old.as_ref() } {
            Some(old) => old.link(fresh),
            // The first ring. Release: the consumer that loads it sees its
            // fields.
            None => self.consumer.store(fresh_ptr, Ordering::Release),
        }
    }

    /// Installs `fresh` as the only ring of a chain with many producers
    /// (the fallback slot's), unless another producer installed one first:
    /// returns the ring to use, and whether it is `fresh`.
    pub fn install_shared(&self, fresh: &'static Ring) -> (&'static Ring, bool) {
        let fresh_ptr = fresh as *const Ring as *mut Ring;
        match self.producer.compare_exchange(
            core::ptr::null_mut(),
            fresh_ptr,
            Ordering::AcqRel,
            Ordering::Acquire,
        ) {
            Ok(_) => {
                self.bytes.fetch_add(fresh.bytes(), Ordering::Relaxed);
                // Release: as in `switch`.
                self.consumer.store(fresh_ptr, Ordering::Release);
                (fresh, true)
            }
            // SAFETY: a ring installed by the winner, never switched or
            // freed (the fallback chain has one ring).
            Err(existing) => match unsafe { existing.as_ref() } {
                Some(existing) => (existing, false),
                None => (fresh, false),
            },
        }
    }

    /// Reads the chain: calls `visit` on the consumer's ring, which must pop
    /// it until empty; while the producer has moved on from it, calls
    /// `visit` on it once more, moves on, calls `freed` with it and frees it,
    /// and goes on with the next. Consumer side only (one drain at a time).
    pub fn drain(&self, mut visit: impl FnMut(&Ring), mut freed: impl FnMut(&Ring)) {
        // Acquire: pairs with the Release store of the first ring.
        let mut current = self.consumer.load(Ordering::Acquire);
        // SAFETY: null or a ring from `Ring::allocate` that only this
        // consumer frees, below, after moving the pointer past it.
        while let Some(ring) = unsafe { current.as_ref() } {
            visit(ring);
            let Some(next) = ring.next() else { break };
            // Records pushed after the first visit and before the link.
            visit(ring);
            let next_ptr = next as *const Ring as *mut Ring;
            // Moved on before the free, so that a fork between the two
            // leaves the child a chain of live rings (and one leaked).
            self.consumer.store(next_ptr, Ordering::Release);
            freed(ring);
            // Relaxed: see `switch`.
            self.bytes.fetch_sub(ring.bytes(), Ordering::Relaxed);
            // SAFETY: the producer linked past this ring, so it never
            // touches it again; the consumer's pointer has moved on, and the
            // consumer is this thread; no reference to it outlives `visit`.
            unsafe { Ring::free(current) };
            current = next_ptr;
        }
    }

    /// The consumer's ring (the oldest one not finished), for a look at how
    /// full it is. Consumer side only.
    pub fn consumer(&self) -> Option<&'static Ring> {
        // SAFETY: as in `drain`; the caller is the consumer, which does not
        // free while it holds this.
        unsafe { self.consumer.load(Ordering::Acquire).as_ref() }
    }

    /// In a forked child (one thread): finishes a switch that the fork cut
    /// in half, so that the consumer's chain ends at the producer's ring.
    pub fn repair_in_child(&self) {
        let producer = self.producer.load(Ordering::Relaxed);
        // SAFETY: null or a ring from `Ring::allocate`: the producer's ring
        // is never freed (a ring is freed only once linked past).
        let Some(producer_ring) = (unsafe { producer.as_ref() }) else {
            return;
        };
        let mut tail = self.consumer.load(Ordering::Relaxed);
        if tail.is_null() {
            self.consumer.store(producer, Ordering::Relaxed);
            return;
        }
        for _ in 0..MAX_CHAIN_LEN {
            if tail == producer {
                return;
            }
            // SAFETY: a ring reachable from the consumer's pointer, so not
            // freed (a ring is freed only after the consumer's pointer has
            // moved past it).
            let Some(ring) = (unsafe { tail.as_ref() }) else {
                return;
            };
            match ring.next() {
                Some(next) => tail = next as *const Ring as *mut Ring,
                None => {
                    ring.link(producer_ring);
                    return;
                }
            }
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::lockfree::ring::{KIND_FREE, header};

    fn pop_all(ring: &Ring, out: &mut Vec<u64>) {
        let mut buf = [0u64; 4];
        while ring.pop(&mut buf).is_some() {
            out.push(buf[1]);
        }
    }

    #[test]
    fn the_consumer_follows_every_switch_in_order_and_frees_the_old_rings() {
        let chain = Box::leak(Box::new(Chain::new()));
        let mut seen = Vec::new();
        let mut freed = 0;
        let mut next = 0u64;
        for round in 0..20usize {
            // Switch every other round, to rings of varying sizes.
            if round % 2 == 0 {
                chain.switch(Ring::allocate(8 << (round % 5)).unwrap());
            }
            let ring = chain.producer().unwrap();
            while ring.push(&[header(KIND_FREE, 2), next], 0) {
                next += 1;
            }
            if round % 3 == 0 {
                chain.drain(|r| pop_all(r, &mut seen), |_| freed += 1);
            }
        }
        chain.drain(|r| pop_all(r, &mut seen), |_| freed += 1);
        assert_eq!(seen, (0..next).collect::<Vec<_>>());
        assert_eq!(freed, 9, "all but the producer's ring");
        assert_eq!(chain.bytes(), chain.producer().unwrap().bytes());
    }

    #[test]
    fn a_switch_cut_by_a_fork_is_finished_in_the_child() {
        let chain = Box::leak(Box::new(Chain::new()));
        let a = Ring::allocate(8).unwrap();
        chain.switch(a);
        assert!(a.push(&[header(KIND_FREE, 2), 1], 0));
        // The producer moved its pointer, and the fork came before the link.
        let b = Ring::allocate(16).unwrap();
        chain
            .producer
            .store(b as *const Ring as *mut Ring, Ordering::Relaxed);
        assert!(b.push(&[header(KIND_FREE, 2), 2], 0));
        chain.repair_in_child();
        let mut seen = Vec::new();
        chain.drain(|r| pop_all(r, &mut seen), |_| {});
        assert_eq!(seen, vec![1, 2]);
        // Repairing a whole chain changes nothing.
        chain.repair_in_child();
        assert!(core::ptr::eq(chain.consumer().unwrap(), b));
    }
}
