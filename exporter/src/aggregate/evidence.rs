//! The evidence the optimisation hints are drawn from: for each call site,
//! what its sampled blocks did from their allocation to their end, over a
//! sliding window.
//!
//! Only sampled blocks are looked at, and only on the exporter's side: the
//! allocator times each sample and reports its `realloc`s and its free
//! ([`allocmeter::profile::SampleEvent`]); the site table follows each
//! tracked block as a *chain* (the buffer from its first sampled allocation
//! through its reallocs to its free) and charges it to the site that
//! allocated it first. When a chain ends, its lifetime, whether the thread
//! that freed it allocated it, how often it grew and its final size go
//! into the evidence of that site. A chain still alive is *censored*: it
//! is not counted as short-lived or long-lived until it is old enough to
//! tell ([`Censored`]).
//!
//! The window is two generations: the evidence accumulates in the current
//! one, and every half window the current one becomes the previous one and
//! the previous one is dropped. What a reader sees is their sum: between
//! half a window and a whole one of the latest evidence, so that a site's
//! warm-up (a map grown once at start) leaves the evidence once the window
//! has moved past it.
//!
//! Distributions are kept as power-of-two histograms ([`Histogram`]), so
//! a site's evidence has a fixed size whatever it allocates. At most
//! [`MAX_EVIDENCE_SITES`] sites hold evidence at once; a site that had none
//! in a whole window gives its room back.
//!
//! Owns: [`Generation`], [`Histogram`], [`Censored`], [`SiteEvidence`] and
//! the thresholds a chain's end is classified by. The site table
//! (`sites.rs`) feeds it; the hints (`render/hints.rs`) read a copy.

/// A chain that ends within this long after its allocation is short-lived
/// for a `reuse` hint (DHAT's short-lived is 10 µs; a buffer used for one
/// request or one loop iteration lives longer, and is still one to reuse).
pub const SHORT_LIVED_NS: u64 = 1_000_000;

/// A chain that ends within this long after its allocation is short-lived
/// for a `pool` hint: objects handed between threads live longer than a
/// loop's scratch buffer.
pub const POOL_SHORT_LIVED_NS: u64 = 10_000_000;

/// Blocks of its size a thread may allocate while one block is alive, for
/// that block to count as one at a time (a buffer a loop could keep and
/// reuse); from this many on, several are alive at once (a pool, not one
/// kept buffer, would serve them). Blocks of the same size from other sites
/// count too, so this errs towards "several", away from a `reuse` hint.
pub const SEVERAL: u64 = 4;

/// A block this large or larger is huge: a `stream` hint's evidence.
pub const STREAM_MIN_BYTES: u64 = 8 << 20;

/// The most sites that hold evidence at once.
pub const MAX_EVIDENCE_SITES: usize = 1024;

/// Buckets of a [`Histogram`]: bucket `b` holds values in
/// `(2^(b-2), 2^(b-1)]` (bucket 0 holds 0, bucket 1 holds 1), the last one
/// everything above, so that a power of two (a `Vec`'s capacity, often) is
/// its bucket's upper end.
pub const BUCKETS: usize = 48;

/// A power-of-two histogram of weights.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Histogram(pub [f32; BUCKETS]);

impl Default for Histogram {
    fn default() -> Self {
        Histogram([0.0; BUCKETS])
    }
}

impl Histogram {
    /// The bucket of `value`.
    pub fn bucket(value: u64) -> usize {
        if value == 0 {
            0
        } else {
            (65 - (value - 1).leading_zeros() as usize).min(BUCKETS - 1)
        }
    }

    /// The smallest value of bucket `b`.
    pub fn lower(b: usize) -> u64 {
        match b {
            0 => 0,
            1 => 1,
            _ => (1u64 << (b - 2)) + 1,
        }
    }

    /// The largest value of bucket `b`.
    pub fn upper(b: usize) -> u64 {
        if b == 0 { 0 } else { 1u64 << (b - 1) }
    }

    /// Adds `weight` at `value`.
    pub fn add(&mut self, value: u64, weight: f64) {
        self.0[Self::bucket(value)] += weight as f32;
    }

    /// Adds `other` to this.
    pub fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.0.iter_mut().zip(&other.0) {
            *a += b;
        }
    }

    /// The total weight.
    pub fn total(&self) -> f64 {
        self.0.iter().map(|&w| f64::from(w)).sum()
    }

    /// The bucket the `q` quantile (0 to 1) of the weight falls in, or
    /// `None` if the histogram is empty.
    pub fn quantile_bucket(&self, q: f64) -> Option<usize> {
        let total = self.total();
        if total <= 0.0 {
            return None;
        }
        let target = q.clamp(0.0, 1.0) * total;
        let mut seen = 0.0;
        for (b, &w) in self.0.iter().enumerate() {
            seen += f64::from(w);
            if w > 0.0 && seen >= target {
                return Some(b);
            }
        }
        self.0.iter().rposition(|&w| w > 0.0)
    }

    /// The `q` quantile, as the upper end of its bucket (so within a factor
    /// of two above the true value).
    pub fn quantile(&self, q: f64) -> Option<u64> {
        self.quantile_bucket(q).map(Self::upper)
    }
}

/// One generation of a site's evidence. Counts are of distinct sampled
/// blocks (chains); weights are the samples' (how many allocations each
/// stands for), so that a weighted figure estimates the site's whole
/// traffic.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Generation {
    /// Chains that started here (a sample of a block not tracked before).
    pub samples: u32,
    /// Every sample charged here, chains' continuations included.
    pub all_samples: u32,
    /// Their weight: the allocations (and reallocs) they stand for.
    pub objects: f64,
    /// The bytes they stand for.
    pub bytes: f64,
    /// The sum of their weights squared: the estimates' variance, about
    /// (see [`Generation::effective_samples`]).
    pub weight_sq: f64,
    /// The weight of every sample charged here, by requested size.
    pub sizes: Histogram,
    /// The largest sampled size.
    pub size_max: u64,
    /// Samples taken at a `realloc` that grew a block (a chain's growth
    /// that the sampler caught, whether or not the block was tracked
    /// before).
    pub grow_samples: u32,
    /// The reallocs they stand for.
    pub grow_objects: f64,
    /// The bytes those reallocs asked for.
    pub grow_bytes: f64,
    /// The sum of their weights squared.
    pub grow_weight_sq: f64,
    /// The allocating threads' slots, one bit per slot (modulo 64).
    pub threads: u64,
    /// Chains whose free was seen.
    pub ended: u32,
    /// Of those, ended within [`SHORT_LIVED_NS`].
    pub short: u32,
    /// Of those, ended within [`POOL_SHORT_LIVED_NS`].
    pub pool_short: u32,
    /// Freed by the thread that allocated them.
    pub same_thread: u32,
    /// Short-lived, freed by the thread that allocated them, and alone:
    /// fewer than [`SEVERAL`] blocks of their size allocated meanwhile.
    pub short_same_thread_alone: u32,
    /// Freed by the thread that allocated them, with the blocks of their
    /// size allocated meanwhile known: fewer than [`SEVERAL`].
    pub alone: u32,
    /// The same, [`SEVERAL`] or more: several alive at once.
    pub crowded: u32,
    /// Chains whose tracking ended without a free (censored).
    pub untracked: u32,
    /// Lifetimes of the ended chains, in ns (weight 1 each).
    pub lifetimes: Histogram,
    /// Ended chains that grew at least once (by a `realloc` seen, or
    /// sampled at a growing one).
    pub grown_chains: u32,
    /// Growing reallocs seen over the ended chains.
    pub grows: u32,
    /// Reallocs seen over the ended chains that shrank a block.
    pub shrinks: u32,
    /// Reallocs seen over the ended chains that moved a block (a copy).
    pub moves: u32,
    /// Final sizes of the ended chains (their first sample's weight).
    pub final_sizes: Histogram,
    /// The largest final size.
    pub final_max: u64,
    /// Ended chains whose final size was [`STREAM_MIN_BYTES`] or more.
    pub huge_ended: u32,
}

impl Generation {
    /// Adds `o` to this.
    pub fn merge(&mut self, o: &Generation) {
        self.samples += o.samples;
        self.all_samples += o.all_samples;
        self.objects += o.objects;
        self.bytes += o.bytes;
        self.weight_sq += o.weight_sq;
        self.sizes.merge(&o.sizes);
        self.size_max = self.size_max.max(o.size_max);
        self.grow_samples += o.grow_samples;
        self.grow_objects += o.grow_objects;
        self.grow_bytes += o.grow_bytes;
        self.grow_weight_sq += o.grow_weight_sq;
        self.threads |= o.threads;
        self.ended += o.ended;
        self.short += o.short;
        self.pool_short += o.pool_short;
        self.same_thread += o.same_thread;
        self.short_same_thread_alone += o.short_same_thread_alone;
        self.alone += o.alone;
        self.crowded += o.crowded;
        self.untracked += o.untracked;
        self.lifetimes.merge(&o.lifetimes);
        self.grown_chains += o.grown_chains;
        self.grows += o.grows;
        self.shrinks += o.shrinks;
        self.moves += o.moves;
        self.final_sizes.merge(&o.final_sizes);
        self.final_max = self.final_max.max(o.final_max);
        self.huge_ended += o.huge_ended;
    }

    /// The number of equally weighted samples that would give an estimate
    /// of the allocations as precise as `objects` (whose weights, `sum`,
    /// square to `sum_sq`): `(Σw)² / Σw²`. Equal to the samples when every
    /// sample weighs the same; fewer when a few light samples of large
    /// blocks sit beside heavy ones of small blocks. An estimate's relative
    /// error is about one over its square root.
    pub fn effective_samples(sum: f64, sum_sq: f64) -> f64 {
        if sum_sq > 0.0 {
            sum * sum / sum_sq
        } else {
            0.0
        }
    }

    fn is_empty(&self) -> bool {
        self.all_samples == 0 && self.ended == 0 && self.untracked == 0
    }

    /// A sample of `size` bytes with `weight`, on slot `thread`; `grew` if it
    /// was taken at a growing `realloc`; `starts` if it starts a chain.
    pub fn on_sample(&mut self, size: u64, weight: f64, thread: usize, grew: bool, starts: bool) {
        self.samples += u32::from(starts);
        self.all_samples += 1;
        self.objects += weight;
        self.bytes += weight * size as f64;
        self.weight_sq += weight * weight;
        if grew {
            self.grow_samples += 1;
            self.grow_objects += weight;
            self.grow_bytes += weight * size as f64;
            self.grow_weight_sq += weight * weight;
        }
        self.sizes.add(size, weight);
        self.size_max = self.size_max.max(size);
        self.threads |= 1 << (thread % 64);
    }

    /// The end of a chain (see [`ChainEnd`]).
    pub fn on_end(&mut self, end: &ChainEnd) {
        if !end.freed {
            self.untracked += 1;
            return;
        }
        self.ended += 1;
        let short = end.lifetime_ns <= SHORT_LIVED_NS;
        self.short += u32::from(short);
        self.pool_short += u32::from(end.lifetime_ns <= POOL_SHORT_LIVED_NS);
        self.same_thread += u32::from(end.same_thread);
        if let Some(between) = end.same_size_between {
            let alone = between < SEVERAL;
            self.alone += u32::from(alone);
            self.crowded += u32::from(!alone);
            self.short_same_thread_alone += u32::from(short && end.same_thread && alone);
        }
        self.lifetimes.add(end.lifetime_ns, 1.0);
        if end.grows > 0 {
            self.grown_chains += 1;
            self.grows += end.grows;
        }
        self.shrinks += end.shrinks;
        self.moves += end.moves;
        self.final_sizes.add(end.final_size, end.weight);
        self.final_max = self.final_max.max(end.final_size);
        self.huge_ended += u32::from(end.final_size >= STREAM_MIN_BYTES);
    }
}

/// How a chain ended, as its site's evidence takes it.
#[derive(Clone, Copy, Debug)]
pub struct ChainEnd {
    /// Freed by the program (not merely no longer tracked).
    pub freed: bool,
    /// From its first sample to its end.
    pub lifetime_ns: u64,
    /// Freed by the thread that allocated it.
    pub same_thread: bool,
    /// Growing reallocs in it.
    pub grows: u32,
    /// Reallocs in it that shrank it.
    pub shrinks: u32,
    /// Reallocs in it that moved it.
    pub moves: u32,
    /// Its size at the end.
    pub final_size: u64,
    /// Its first sample's weight.
    pub weight: f64,
    /// Blocks of its size the freeing thread allocated while it was alive,
    /// when that is known (the thread that allocated it freed it, at the
    /// size it was sampled at).
    pub same_size_between: Option<u64>,
}

/// A site's chains still alive at one moment, by age: censored, so they
/// count only for what their age already decides.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Censored {
    /// Alive now.
    pub alive: u32,
    /// Alive and older than [`SHORT_LIVED_NS`]: not short-lived.
    pub older_than_short: u32,
    /// Alive and older than [`POOL_SHORT_LIVED_NS`].
    pub older_than_pool_short: u32,
}

impl Censored {
    /// Adds `o` to this.
    pub fn merge(&mut self, o: &Censored) {
        self.alive += o.alive;
        self.older_than_short += o.older_than_short;
        self.older_than_pool_short += o.older_than_pool_short;
    }

    /// Counts a chain alive at `age_ns`.
    pub fn add(&mut self, age_ns: u64) {
        self.alive += 1;
        self.older_than_short += u32::from(age_ns > SHORT_LIVED_NS);
        self.older_than_pool_short += u32::from(age_ns > POOL_SHORT_LIVED_NS);
    }
}

/// One site's evidence: the two generations of the window.
#[derive(Clone, Debug, Default)]
pub struct SiteEvidence {
    gens: [Generation; 2],
}

impl SiteEvidence {
    /// The current generation, which new evidence goes into.
    pub fn current(&mut self) -> &mut Generation {
        &mut self.gens[1]
    }

    /// Moves the window on by half: the current generation becomes the
    /// previous one. Whether the whole window is now empty.
    pub fn rotate(&mut self) -> bool {
        self.gens[0] = self.gens[1];
        self.gens[1] = Generation::default();
        self.gens[0].is_empty()
    }

    /// The window: both generations summed.
    pub fn window(&self) -> Generation {
        let mut g = self.gens[0];
        g.merge(&self.gens[1]);
        g
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_powers_of_two() {
        assert_eq!(Histogram::bucket(0), 0);
        assert_eq!(Histogram::bucket(1), 1);
        assert_eq!(Histogram::bucket(2), 2);
        assert_eq!(Histogram::bucket(4096), 13);
        assert_eq!(Histogram::bucket(4097), 14);
        assert_eq!(Histogram::upper(13), 4096);
        assert_eq!(Histogram::bucket(u64::MAX), BUCKETS - 1);
        for v in [1u64, 2, 3, 4, 5, 4096, 5000, 1 << 40] {
            let b = Histogram::bucket(v);
            assert!(Histogram::lower(b) <= v && v <= Histogram::upper(b), "{v}");
        }
    }

    #[test]
    fn quantiles_follow_the_weights() {
        let mut h = Histogram::default();
        assert_eq!(h.quantile(0.5), None);
        h.add(100, 9.0);
        h.add(10_000, 1.0);
        assert_eq!(h.quantile(0.5), Some(128));
        assert_eq!(h.quantile(0.9), Some(128));
        assert_eq!(h.quantile(0.95), Some(16384));
        assert_eq!(h.quantile(1.0), Some(16384));
    }

    #[test]
    fn the_window_is_two_generations_and_forgets_the_third() {
        let mut e = SiteEvidence::default();
        e.current().on_sample(64, 10.0, 3, false, true);
        assert!(!e.rotate());
        e.current().on_sample(64, 10.0, 70, true, true);
        let w = e.window();
        assert_eq!((w.samples, w.grow_samples, w.objects), (2, 1, 20.0));
        assert_eq!(w.all_samples, 2);
        assert_eq!(Generation::effective_samples(w.objects, w.weight_sq), 2.0);
        assert!(
            Generation::effective_samples(11.0, 101.0) < 1.2,
            "one heavy, one light"
        );
        assert_eq!(w.threads, 1 << 3 | 1 << 6);
        assert!(!e.rotate());
        assert_eq!(e.window().samples, 1);
        assert!(e.rotate(), "a whole window without evidence");
    }

    #[test]
    fn ends_are_classified_by_lifetime_thread_and_growth() {
        let mut g = Generation::default();
        let end = |lifetime_ns, same_thread, grows, freed, between| ChainEnd {
            freed,
            lifetime_ns,
            same_thread,
            grows,
            shrinks: 0,
            moves: grows,
            final_size: 4096,
            weight: 2.0,
            same_size_between: between,
        };
        g.on_end(&end(500, true, 0, true, Some(0)));
        g.on_end(&end(600, true, 0, true, Some(SEVERAL)));
        g.on_end(&end(5_000_000, false, 3, true, None));
        g.on_end(&end(50_000_000, true, 0, true, Some(1)));
        g.on_end(&end(10, true, 0, false, None));
        assert_eq!((g.ended, g.untracked), (4, 1));
        assert_eq!((g.short, g.pool_short), (2, 3));
        assert_eq!(g.same_thread, 3);
        assert_eq!((g.alone, g.crowded), (2, 1));
        assert_eq!(g.short_same_thread_alone, 1, "short, same thread, alone");
        assert_eq!((g.grown_chains, g.grows), (1, 3));
        assert_eq!((g.shrinks, g.moves), (0, 3));
        assert_eq!(g.final_sizes.total(), 8.0);
        let mut c = Censored::default();
        c.add(10);
        c.add(2_000_000);
        c.add(20_000_000);
        assert_eq!(
            c,
            Censored {
                alive: 3,
                older_than_short: 2,
                older_than_pool_short: 1
            }
        );
    }
}
