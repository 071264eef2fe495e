//! Reading the samples: the API the exporter (or any other consumer) drains
//! the per-thread rings through.
//!
//! Each sampled allocation produces one [`SampleEvent::Alloc`] carrying its
//! call stack, and, when the block is freed (or moved by `realloc`), one
//! [`SampleEvent::Free`] with the same id. Events of one thread arrive in
//! order; events of different threads may interleave either way, so a `Free`
//! can be drained before the `Alloc` it matches (a block allocated on one
//! thread and freed on another). Consumers should keep such frees until the
//! allocation shows up, which is within the next drain.
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
pub use crate::drainer::{drain_interval, register_drainer};

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
    /// Return addresses, innermost first, starting in allocmeter's own code.
    pub stack: &'a [usize],
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
    /// The sampled block with this id was freed (or moved by `realloc`).
    Free {
        /// The id of its [`SampleEvent::Alloc`].
        id: u64,
    },
}

/// The most events one thread's ring holds between two drains (every event
/// takes at least two words of the largest ring).
pub const MAX_EVENTS_PER_RING: usize = crate::lockfree::ring::MAX_RING_WORDS / 2;

/// How many sampled blocks can be live at once. Beyond it, new samples are
/// dropped (and counted in [`SamplingStats::dropped`]) until some are freed.
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
        let Some(ring) = s.ring() else { return };
        let fill = ring.pending_words() * 64 / ring.capacity();
        if drainer::fills_too_fast(fill, filled_in_us) {
            s.want_bigger_ring();
        }
        max_fill = max_fill.max(fill);
        while let Some(len) = ring.pop(&mut buf) {
            count += 1;
            if len > buf.len() {
                continue;
            }
            match record::decode(&buf[..len], &mut stack) {
                Some(Record::Alloc(r)) => f(SampleEvent::Alloc(AllocSample {
                    id: r.id,
                    address: r.address,
                    size: r.size,
                    rate: r.rate,
                    thread: r.slot.min(MAX_SLOTS),
                    stack: r.stack,
                })),
                Some(Record::Free { id }) => f(SampleEvent::Free { id }),
                None => {}
            }
        }
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
    /// Samples lost since the process started: a ring or the sampled-pointer
    /// table was full, or its lock busy.
    pub dropped: u64,
    /// Frees of sampled blocks that could not be reported: their blocks keep
    /// counting as in use in the estimates.
    pub frees_lost: u64,
    /// Sampled blocks live now (entries in the sampled-pointer table).
    pub live_samples: u64,
}

/// Reads the sampling counters.
pub fn sampling_stats() -> SamplingStats {
    let (samples, dropped, frees_lost) = slot::sampling_sum();
    SamplingStats {
        rate: crate::sampler::sample_rate(),
        samples,
        dropped,
        frees_lost,
        live_samples: crate::lockfree::sampled::live() as u64,
    }
}
