//! Reading the samples: the API the exporter (or any other consumer) drains
//! the per-thread rings through.
//!
//! Each sampled allocation produces one [`SampleEvent::Alloc`] carrying its
//! call stack, when it was taken and how the block came to be (a fresh
//! allocation or a `realloc`). A sampled block stays tracked until it is
//! freed: each `realloc` of it produces a [`SampleEvent::Resize`] (the same
//! id, its new size and address), and its free one [`SampleEvent::Free`].
//! So a buffer grown element by element is followed as one chain from the
//! sample on, and its lifetime and final size are known when it ends. Every
//! event carries the time ([`clock_ns`]) and the slot of the thread it
//! happened on. Events of one thread arrive in order; events of different
//! threads may interleave either way, so a `Free` can be drained before the
//! `Alloc` it matches (a block allocated on one thread and freed on
//! another). Consumers should keep such frees until the allocation shows
//! up, which is within the next drain.
//!
//! For the heap profile, a `Resize` ends the sampled block's in-use share
//! as a free would: the `realloc` is a new allocation for sampling (its new
//! size is counted down the sampling clock), and a sample taken at it
//! stands for the new block with its own weight. Such a sample names the
//! chain it continues ([`AllocSample::parent`]), and the parent's tracking
//! ends there (no `Free` comes for it).
//!
//! Nothing here symbolizes: stacks are raw return addresses.
//!
//! This module only reads: it pops the rings and decodes their records, and
//! never writes a slot's counters. What a drainer and a profiling tool also
//! need is kept where it is owned and found here too: [`register_drainer`]
//! and [`drain_interval`] (the drainer's own state), [`suspend_sampling`],
//! [`mark_thread_internal`] and [`internal_scope`] (the per-thread knobs).

pub use crate::control::{
    InternalScope, SamplingSuspended, account_internal, internal_scope, mark_thread_internal,
    suspend_sampling,
};
pub use crate::counters::ReallocKind;
pub use crate::drainer::{drain_interval, register_drainer};
pub use crate::record::{FreeEnd, Origin};
pub use crate::sampler::clock_ns;

use crate::drainer;
use crate::record::{self, MAX_RECORD_WORDS, Record};
use crate::slot::{self, MAX_SLOTS};
use crate::stack::MAX_DEPTH;

/// Where this crate's sources were when it was built, ending in `/src/`.
/// A sampled stack starts inside allocmeter; a consumer that symbolizes it
/// can tell allocmeter's own frames by their file lying under this
/// directory, whatever the shape of their names (an inlined frame may carry
/// a bare function name).
pub const SOURCE_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/src/");

/// A sampled allocation.
#[derive(Clone, Copy, Debug)]
pub struct AllocSample<'a> {
    /// Process-unique id, matching the block's later [`SampleEvent::Free`].
    pub id: u64,
    /// The block's address.
    pub address: usize,
    /// Requested size in bytes.
    pub size: u64,
    /// The sample rate it was taken at (mean bytes between samples).
    pub rate: u64,
    /// The slot of the allocating thread (threads reuse slots of exited
    /// threads); `MAX_SLOTS` for threads without one.
    pub thread: usize,
    /// When it was taken ([`clock_ns`]).
    pub time_ns: u64,
    /// How the block came to be: `alloc`, or a `realloc` (from what size).
    pub origin: Origin,
    /// The id of the tracked block this one continues: a sample taken at the
    /// `realloc` of a block that was already tracked. That block's tracking
    /// ends here; the chain goes on under this sample's id.
    pub parent: Option<u64>,
    /// The allocating thread's count of allocations of about this size
    /// (its counters' cell of this size), this one included: compared with
    /// the same count at the block's free on the same thread
    /// ([`SampleEvent::Free`]), how many blocks of its size the thread
    /// allocated while this one was alive.
    pub size_allocs: u64,
    /// Return addresses, innermost first, starting in allocmeter's own code.
    pub stack: &'a [usize],
    /// The weight of earlier samples of the same thread that could not be
    /// handed over on their own (every ring it may have was full), which
    /// this sample carries: count it in this sample's allocated totals.
    /// Zero almost always.
    pub carried: Carried,
}

/// The weight of samples that could not be handed over on their own,
/// carried by a later sample of the same thread ([`AllocSample::carried`]),
/// so that estimates stay unbiased when a thread samples faster than the
/// drainer reads, beyond what its rings may grow to.
///
/// A consumer adds it to the allocated totals (objects and bytes) of the
/// carrying sample's site: totals over all sites stay unbiased, and a
/// site's own stay so too when the thread allocates from one site, as in a
/// burst. The carried samples' blocks are not tracked, so they count in no
/// in-use figure. The weight is kept by the thread's slot: if the thread
/// exits before its next sample, the next thread to take over the slot
/// carries it.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Carried {
    /// Samples whose weight this is.
    pub samples: u64,
    /// The allocations they stand for.
    pub objects: f64,
    /// The bytes they stand for.
    pub bytes: f64,
}

impl AllocSample<'_> {
    /// How many allocations of this size this sample stands for
    /// (see [`crate::sample_weight`]).
    pub fn weight(&self) -> f64 {
        crate::sampler::sample_weight(self.size, self.rate)
    }
}

/// One event read from the rings.
#[derive(Clone, Copy, Debug)]
pub enum SampleEvent<'a> {
    /// An allocation was sampled.
    Alloc(AllocSample<'a>),
    /// The sampled block with this id was freed, or its tracking ended
    /// without its free being seen (`end`).
    Free {
        /// The id of its [`SampleEvent::Alloc`].
        id: u64,
        /// When ([`clock_ns`]).
        time_ns: u64,
        /// The slot of the freeing thread; `MAX_SLOTS` for a thread without
        /// one.
        thread: usize,
        /// Freed, or no longer tracked.
        end: FreeEnd,
        /// The freeing thread's count of allocations of the block's size
        /// (see [`AllocSample::size_allocs`]); 0 if unknown (a thread
        /// without a slot of its own, or an end other than a free).
        size_allocs: u64,
    },
    /// The tracked block with this id was resized by `realloc`; it stays
    /// tracked under the same id.
    Resize {
        /// The id of its [`SampleEvent::Alloc`].
        id: u64,
        /// Its address now.
        address: usize,
        /// Its size now, in bytes.
        new_size: u64,
        /// Grown or shrunk in place, or moved.
        kind: ReallocKind,
        /// When ([`clock_ns`]).
        time_ns: u64,
        /// The slot of the thread that resized it.
        thread: usize,
    },
}

/// The most events one thread's rings of up to 64 KiB hold between two
/// drains: two such rings (the one in use and one not finished), and every
/// event takes at least two words.
pub const MAX_EVENTS_PER_RING: usize = crate::lockfree::ring::MAX_RING_WORDS;

/// The most sampled allocations the rings grown for bursts hold between two
/// drains, over all threads together (16 MiB of rings, and an allocation
/// record takes at least 10 words; see [`SamplingStats::ring_bytes`]).
pub const MAX_BURST_ALLOCS: usize =
    crate::slot::MAX_BURST_RING_BYTES / (8 * crate::record::ALLOC_HEAD);

/// How many sampled blocks can be live at once. Beyond it, new samples are
/// not handed over until some are freed: their weight is carried by a later
/// sample (counted in [`SamplingStats::carried`]).
pub const MAX_LIVE_SAMPLES: usize = crate::lockfree::sampled::CAPACITY;

/// Reads every pending event from every thread's ring, calling `f` for each.
/// Returns how many events were read.
///
/// Only one drainer runs at a time (the rings are single-consumer): a
/// concurrent call returns `None` at once without reading anything. Never
/// blocks an allocating thread. `f` may allocate; allocations it makes are
/// recorded like any other.
pub fn drain(mut f: impl FnMut(SampleEvent<'_>)) -> Option<usize> {
    let _turn = drainer::begin_drain()?;
    let mut buf = [0u64; MAX_RECORD_WORDS];
    let mut stack = [0usize; MAX_DEPTH];
    let started_us = drainer::drain_epoch().elapsed().as_micros() as u64;
    let filled_in_us = drainer::filled_in_us(started_us);
    let mut count = 0;
    let mut max_fill = 0;
    slot::for_each_used(|s| {
        let Some(ring) = s.drain_ring() else { return };
        let fill = ring.pending_words() * 64 / ring.capacity();
        if drainer::fills_too_fast(fill, filled_in_us) {
            s.want_bigger_ring(ring.capacity());
        }
        max_fill = max_fill.max(fill);
        let mut carried = Carried::default();
        let memo = s.memo();
        s.drain_rings(|ring| {
            // The slot's memory of its last whole stack is updated before
            // the record leaves the ring (fork-safe: see `record`).
            while let Some(len) = ring.pop_with(&mut buf, |w| record::remember(w, memo)) {
                count += 1;
                if len > buf.len() {
                    continue;
                }
                match record::decode(&buf[..len], &mut stack, memo) {
                    Some(Record::Alloc(r)) => f(SampleEvent::Alloc(AllocSample {
                        id: r.id,
                        address: r.address,
                        size: r.size,
                        rate: r.rate,
                        thread: r.slot.min(MAX_SLOTS),
                        time_ns: r.time_ns,
                        origin: r.origin,
                        parent: (r.parent != 0).then_some(r.parent),
                        size_allocs: r.size_allocs,
                        stack: r.stack,
                        carried: core::mem::take(&mut carried),
                    })),
                    Some(Record::Free(r)) => f(SampleEvent::Free {
                        id: r.id,
                        time_ns: r.time_ns,
                        thread: r.slot.min(MAX_SLOTS),
                        end: r.end,
                        size_allocs: r.size_allocs,
                    }),
                    Some(Record::Resize(r)) => f(SampleEvent::Resize {
                        id: r.id,
                        address: r.address,
                        new_size: r.new_size,
                        kind: r.kind,
                        time_ns: r.time_ns,
                        thread: r.slot.min(MAX_SLOTS),
                    }),
                    Some(Record::Carry {
                        samples,
                        objects,
                        bytes,
                    }) => {
                        carried = Carried {
                            samples,
                            objects,
                            bytes,
                        }
                    }
                    None => {}
                }
            }
        });
    });
    drainer::adapt_drain_interval(max_fill, started_us);
    Some(count)
}

/// Whether the sampled block of `sample` (its address and id) is still live:
/// `Some(false)` once it has been freed (its [`SampleEvent::Free`] may still
/// be on its way), `None` if that could not be told without waiting.
///
/// For consumers that keep sampled blocks until their free arrives: a free
/// that could not be reported ([`SamplingStats::frees_lost`]) never
/// arrives, and this is how such a block is found. Takes a lock an
/// allocating thread may take too, for a few dozen instructions; do not call
/// it for every block on every drain.
pub fn is_live(address: usize, id: u64) -> Option<bool> {
    crate::lockfree::sampled::holds(address, id)
}

/// Sampling counters, process-wide.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SamplingStats {
    /// The sample rate in force (mean bytes between samples; 0 = off).
    pub rate: u64,
    /// Allocations sampled (and handed to a ring) since the process started.
    pub samples: u64,
    /// Samples lost outright since the process started: neither handed over
    /// nor carried. A sample that cannot be handed over has its weight
    /// carried instead ([`SamplingStats::carried`]), so this stays 0.
    pub dropped: u64,
    /// Samples that could not be handed over on their own since the process
    /// started (the thread's rings full at their bound, the sampled-pointer
    /// table full or busy), whose weight a later sample of the same thread
    /// carries ([`AllocSample::carried`]). Not lost, but attributed to that
    /// later sample's site and to no in-use figure.
    pub carried: u64,
    /// Frees of sampled blocks that could not be reported: their blocks keep
    /// counting as in use in the estimates.
    pub frees_lost: u64,
    /// Sampled blocks live now (entries in the sampled-pointer table).
    pub live_samples: u64,
    /// Bytes of the sample rings now. Each thread that samples has a ring
    /// of 8 to 64 KiB (the drainer decides; with the rings left behind that
    /// it has not finished, at most about 121 KiB per thread); a thread
    /// whose ring fills before the drainer reads it switches at once to one
    /// four times as big (128 KiB to 1 MiB), within 16 MiB over all threads
    /// (4 MiB for one), and back down once the burst is over. Counted in
    /// the telemetry bytes.
    pub ring_bytes: u64,
    /// The most [`SamplingStats::ring_bytes`] has been.
    pub ring_bytes_peak: u64,
}

/// Reads the sampling counters.
pub fn sampling_stats() -> SamplingStats {
    let (samples, dropped, frees_lost, carried) = slot::sampling_sum();
    let (ring_bytes, ring_bytes_peak) = slot::ring_bytes_now_and_peak();
    SamplingStats {
        rate: crate::sampler::sample_rate(),
        samples,
        dropped,
        carried,
        frees_lost,
        live_samples: crate::lockfree::sampled::live() as u64,
        ring_bytes: ring_bytes as u64,
        ring_bytes_peak: ring_bytes_peak as u64,
    }
}
