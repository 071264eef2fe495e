//! The site table: sampled allocations grouped by raw call stack, with the
//! estimated allocated and in-use objects and bytes of each.
//!
//! Fed by the aggregator from [`allocmeter::profile::drain`]. Each sample
//! adds its weight (how many allocations it stands for) to its stack's
//! allocated objects, and weight × size to its allocated bytes; the same goes
//! into in-use until the block's free arrives. The estimates are unbiased
//! (see [`allocmeter::sample_weight`]); their relative error shrinks like
//! one over the square root of the number of samples behind them. A sample
//! that carries the weight of earlier samples of its thread that could not
//! be handed over ([`allocmeter::profile::Carried`]) adds that weight to its
//! site's allocated estimates (not to in-use: those blocks are not tracked).
//!
//! Draining only hashes raw stacks, so it keeps up with the rings whatever
//! the symbolizer is doing. Symbolizing happens when a renderer asks
//! ([`SiteTable::copy_sites`], then `render::sites`): stacks are trimmed of
//! the allocation machinery, and stacks that differ only inside it are
//! merged.
//!
//! Owns: the table. Touches no symbolizer and no lock (the aggregator holds
//! the table's).

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use allocmeter::profile::{AllocSample, SampleEvent};

/// Estimated totals of one call site.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct SiteValues {
    /// Allocations made here since sampling started (estimated).
    pub alloc_objects: f64,
    /// Bytes allocated here since sampling started (estimated).
    pub alloc_space: f64,
    /// Blocks allocated here and not yet freed (estimated).
    pub inuse_objects: f64,
    /// Bytes in blocks allocated here and not yet freed (estimated).
    pub inuse_space: f64,
}

impl SiteValues {
    pub(crate) fn add(&mut self, other: &SiteValues) {
        self.alloc_objects += other.alloc_objects;
        self.alloc_space += other.alloc_space;
        self.inuse_objects += other.inuse_objects;
        self.inuse_space += other.inuse_space;
    }
}

/// One raw stack's totals.
#[derive(Clone, Debug)]
pub(crate) struct RawSite {
    /// Return addresses as sampled, innermost first. Empty for "(other)".
    pub stack: Vec<usize>,
    /// The estimates.
    pub values: SiteValues,
    /// Samples that landed here.
    pub samples: u64,
}

/// A raw site's allocated estimates (never falling), for differences over
/// time.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct AllocTotals {
    /// Estimated bytes allocated.
    pub bytes: f64,
    /// Estimated allocations.
    pub objects: f64,
    /// Samples behind them.
    pub samples: u64,
}

impl AllocTotals {
    /// What was added since `earlier`.
    pub fn minus(&self, earlier: &AllocTotals) -> AllocTotals {
        AllocTotals {
            bytes: self.bytes - earlier.bytes,
            objects: self.objects - earlier.objects,
            samples: self.samples.saturating_sub(earlier.samples),
        }
    }
}

/// A sampled block not yet freed.
struct LiveSample {
    site: usize,
    weight: f64,
    size: f64,
    address: usize,
}

/// Most live samples the allocator can hold at once; the table keeps more
/// only for frees that never came (see [`SiteTable::drain`]).
const MAX_LIVE: usize = allocmeter::profile::MAX_LIVE_SAMPLES;

/// Most frees kept waiting for their allocation.
const MAX_EARLY_FREES: usize = allocmeter::profile::MAX_LIVE_SAMPLES;

/// Index of the "(other)" site.
const OTHER: usize = 0;

/// A hasher for sample ids: a multiply and a fold instead of SipHash. Ids
/// are handed out by allocmeter in sequence, never chosen by a client, so
/// they need no protection against crafted collisions; the drain hashes
/// each one twice (its allocation, its free).
#[derive(Default)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }

    fn write_u64(&mut self, id: u64) {
        let h = (self.0 ^ id).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        self.0 = h ^ (h >> 29);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// Maps keyed by sample id.
type IdMap<V> = HashMap<u64, V, BuildHasherDefault<IdHasher>>;

/// The table.
pub(crate) struct SiteTable {
    /// Sites by raw stack; index 0 is "(other)".
    sites: Vec<RawSite>,
    by_stack: HashMap<Vec<usize>, usize>,
    /// The site of the last sample added (not "(other)"): a burst repeats
    /// one stack, and comparing it is cheaper than hashing it.
    last_site: Option<usize>,
    live: IdMap<LiveSample>,
    /// Frees drained before their allocation (another thread's ring), with
    /// the drain pass they arrived in.
    early_frees: IdMap<u64>,
    pass: u64,
    max_sites: usize,
    /// Samples that went to "(other)" because the table was full.
    overflowed: u64,
}

impl SiteTable {
    /// An empty table with room for `max_sites` stacks besides "(other)".
    pub fn new(max_sites: usize) -> Self {
        SiteTable {
            sites: vec![RawSite {
                stack: Vec::new(),
                values: SiteValues::default(),
                samples: 0,
            }],
            by_stack: HashMap::new(),
            last_site: None,
            live: IdMap::default(),
            early_frees: IdMap::default(),
            pass: 0,
            max_sites: max_sites.max(1),
            overflowed: 0,
        }
    }

    /// Drains every pending sample event into the table. Returns the number
    /// of events, or `None` if another drainer was running.
    pub fn drain(&mut self) -> Option<usize> {
        self.pass += 1;
        let n = allocmeter::profile::drain(|event| self.apply(event));
        // A free that arrived before its allocation waits a few passes; the
        // allocation is always published first, so it shows up by then
        // unless its record was dropped.
        let pass = self.pass;
        self.early_frees.retain(|_, seen| pass - *seen < 8);
        if self.live.len() > MAX_LIVE {
            self.sweep_lost_frees();
        }
        n
    }

    /// More blocks are kept as live than the allocator can have sampled at
    /// once: some frees were lost (see
    /// [`allocmeter::profile::SamplingStats::frees_lost`]) and would keep
    /// their blocks in use for ever. Asks the allocator which are still
    /// live and treats the others as freed. This keeps the table bounded;
    /// it runs only after a loss.
    fn sweep_lost_frees(&mut self) {
        let gone: Vec<u64> = self
            .live
            .iter()
            .filter(|(id, s)| allocmeter::profile::is_live(s.address, **id) == Some(false))
            .map(|(id, _)| *id)
            .collect();
        for id in gone {
            self.free(id);
        }
    }

    /// The sampled block `id` was freed; `false` if it is not live here
    /// (its allocation has not been drained yet).
    fn free(&mut self, id: u64) -> bool {
        let Some(s) = self.live.remove(&id) else {
            return false;
        };
        let v = &mut self.sites[s.site].values;
        v.inuse_objects = (v.inuse_objects - s.weight).max(0.0);
        v.inuse_space = (v.inuse_space - s.weight * s.size).max(0.0);
        true
    }

    fn apply(&mut self, event: SampleEvent<'_>) {
        match event {
            SampleEvent::Alloc(sample) => self.add(&sample),
            SampleEvent::Free { id } => {
                if !self.free(id) && self.early_frees.len() < MAX_EARLY_FREES {
                    // Beyond the cap the allocation, when it arrives, counts
                    // as in use until a sweep finds it freed.
                    self.early_frees.insert(id, self.pass);
                }
            }
        }
    }

    fn add(&mut self, sample: &AllocSample<'_>) {
        let site = self.site_for(sample.stack);
        let weight = sample.weight();
        let size = sample.size as f64;
        let s = &mut self.sites[site];
        s.samples += 1;
        s.values.alloc_objects += weight + sample.carried.objects;
        s.values.alloc_space += weight * size + sample.carried.bytes;
        let early = !self.early_frees.is_empty() && self.early_frees.remove(&sample.id).is_some();
        if !early {
            s.values.inuse_objects += weight;
            s.values.inuse_space += weight * size;
            self.live.insert(
                sample.id,
                LiveSample {
                    site,
                    weight,
                    size,
                    address: sample.address,
                },
            );
        }
    }

    fn site_for(&mut self, stack: &[usize]) -> usize {
        if let Some(last) = self.last_site
            && self.sites[last].stack == stack
        {
            return last;
        }
        if let Some(&id) = self.by_stack.get(stack) {
            self.last_site = Some(id);
            return id;
        }
        if self.sites.len() > self.max_sites {
            self.overflowed += 1;
            return OTHER;
        }
        let id = self.sites.len();
        self.sites.push(RawSite {
            stack: stack.to_vec(),
            values: SiteValues::default(),
            samples: 0,
        });
        self.by_stack.insert(stack.to_vec(), id);
        self.last_site = Some(id);
        id
    }

    /// A copy of every site with samples, for rendering outside the lock.
    pub fn copy_sites(&self) -> Vec<RawSite> {
        self.sites
            .iter()
            .filter(|s| s.samples > 0)
            .cloned()
            .collect()
    }

    /// Every raw site's allocated estimates, by index ("(other)" first).
    /// Indices are stable: sites are only ever appended.
    pub fn alloc_totals(&self) -> impl Iterator<Item = AllocTotals> + '_ {
        self.sites.iter().map(|s| AllocTotals {
            bytes: s.values.alloc_space,
            objects: s.values.alloc_objects,
            samples: s.samples,
        })
    }

    /// Copies [`SiteTable::alloc_totals`] into `out`, reusing its buffer.
    pub fn copy_alloc_totals(&self, out: &mut Vec<AllocTotals>) {
        out.clear();
        out.extend(self.alloc_totals());
    }

    /// The raw stack of the site at `index` (empty for "(other)").
    pub fn raw_stack(&self, index: usize) -> &[usize] {
        &self.sites[index].stack
    }

    /// Adds one sample at rate 1 (weight 1), as a drained one would be.
    #[cfg(test)]
    pub fn add_for_test(&mut self, id: u64, size: u64, stack: &[usize]) {
        self.apply(SampleEvent::Alloc(AllocSample {
            id,
            address: 0x1000 * id as usize,
            size,
            rate: 1,
            thread: 0,
            stack,
            carried: Default::default(),
        }));
    }

    /// Samples that went to "(other)" because the table was full.
    pub fn overflowed(&self) -> u64 {
        self.overflowed
    }

    /// The most stacks the table takes besides "(other)".
    pub fn max_sites(&self) -> usize {
        self.max_sites
    }

    /// Stacks in the table (not counting "(other)").
    pub fn len(&self) -> usize {
        self.sites.len() - 1
    }

    /// The most [`SiteTable::approximate_bytes`] can be for a table of
    /// `max_sites` stacks, with `slots_used` thread slots feeding it: every
    /// stack as deep as a capture goes, the live samples the allocator can
    /// hold at once plus one drain's worth of new ones (every thread's
    /// rings of up to 64 KiB and the rings grown for bursts; a sweep trims
    /// the rest, see [`SiteTable::drain`]), and the waiting frees.
    pub fn max_bytes(max_sites: usize, slots_used: usize) -> usize {
        let sites = (max_sites + 1) * 2 * (96 + 8 * allocmeter::stack::MAX_DEPTH);
        let one_drain = (slots_used + 1) * allocmeter::profile::MAX_EVENTS_PER_RING
            + allocmeter::profile::MAX_BURST_ALLOCS;
        sites + 48 * (MAX_LIVE + one_drain + MAX_EARLY_FREES)
    }

    /// Bytes the table holds, roughly (for the telemetry-bytes figure).
    pub fn approximate_bytes(&self) -> usize {
        let sites: usize = self
            .sites
            .iter()
            .map(|s| 2 * (96 + 8 * s.stack.len()))
            .sum();
        sites + 48 * (self.live.len() + self.early_frees.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    // The table is read as a renderer reads it: merged and ranked.
    use crate::render::sites::{Site, SortBy, merge_sites, top};
    use crate::symbols::Symbolizer;

    fn sample(id: u64, size: u64, rate: u64, stack: &[usize]) -> AllocSample<'_> {
        AllocSample {
            id,
            address: 0x1000 * id as usize,
            size,
            rate,
            thread: 0,
            stack,
            carried: Default::default(),
        }
    }

    fn sites(t: &SiteTable) -> Vec<Site> {
        merge_sites(&t.copy_sites(), &mut Symbolizer::new(100))
    }

    #[test]
    fn allocs_add_weight_and_frees_take_in_use_back() {
        let mut t = SiteTable::new(10);
        let stack = [0x10usize, 0x20, 0x30];
        t.apply(SampleEvent::Alloc(sample(1, 100, 1, &stack)));
        t.apply(SampleEvent::Alloc(sample(2, 300, 1, &stack)));
        let site = &top(sites(&t), 1, SortBy::AllocSpace)[0];
        assert_eq!(site.values.alloc_objects, 2.0);
        assert_eq!(site.values.alloc_space, 400.0);
        assert_eq!(site.values.inuse_space, 400.0);
        assert_eq!(site.stack, vec![0xf, 0x1f, 0x2f], "return address - 1");
        t.apply(SampleEvent::Free { id: 1 });
        let site = &top(sites(&t), 1, SortBy::AllocSpace)[0];
        assert_eq!(
            (site.values.inuse_objects, site.values.inuse_space),
            (1.0, 300.0)
        );
        assert_eq!(site.values.alloc_space, 400.0, "alloc totals never fall");
        assert_eq!(t.live.len(), 1);
    }

    #[test]
    fn blocks_whose_free_never_came_are_swept_once_over_the_limit() {
        let mut t = SiteTable::new(10);
        // More live samples than the allocator can hold at once: none of
        // these fake addresses is in its table, so all their frees were
        // lost, and the sweep (which asks the allocator) lets them go.
        for id in 1..=(MAX_LIVE as u64 + 10) {
            t.apply(SampleEvent::Alloc(sample(id, 10, 1, &[0x40])));
        }
        assert_eq!(t.live.len(), MAX_LIVE + 10);
        let before = t.approximate_bytes();
        t.sweep_lost_frees();
        assert_eq!(t.live.len(), 0);
        assert!(t.approximate_bytes() < before);
        let site = &top(sites(&t), 1, SortBy::AllocObjects)[0];
        assert_eq!(site.values.alloc_objects, MAX_LIVE as f64 + 10.0);
        assert_eq!(site.values.inuse_objects, 0.0);
        assert!(t.approximate_bytes() <= SiteTable::max_bytes(10, 0));
    }

    #[test]
    fn waiting_frees_are_capped() {
        let mut t = SiteTable::new(10);
        for id in 1..=(MAX_EARLY_FREES as u64 + 100) {
            t.apply(SampleEvent::Free { id });
        }
        assert_eq!(t.early_frees.len(), MAX_EARLY_FREES);
    }

    #[test]
    fn a_free_drained_before_its_allocation_still_counts() {
        let mut t = SiteTable::new(10);
        t.apply(SampleEvent::Free { id: 7 });
        t.apply(SampleEvent::Alloc(sample(7, 50, 1, &[0x40])));
        let site = &top(sites(&t), 1, SortBy::AllocObjects)[0];
        assert_eq!(site.values.alloc_objects, 1.0);
        assert_eq!(site.values.inuse_objects, 0.0);
        assert_eq!(t.live.len(), 0);
    }

    #[test]
    fn alternating_stacks_each_keep_their_own_site() {
        let mut t = SiteTable::new(10);
        let (a, b) = ([0x10usize, 0x20], [0x10usize, 0x30]);
        for (id, stack) in [(1, &a), (2, &b), (3, &a), (4, &a), (5, &b)] {
            t.apply(SampleEvent::Alloc(sample(id, 10, 1, stack)));
        }
        t.apply(SampleEvent::Alloc(sample(6, 10, 1, &[])));
        let samples: Vec<u64> = t.copy_sites().iter().map(|s| s.samples).collect();
        assert_eq!(samples, [3, 2, 1]);
        assert_eq!(t.len(), 3);
    }

    #[test]
    fn carried_weight_counts_in_the_allocated_totals_only() {
        let mut t = SiteTable::new(10);
        let mut s = sample(1, 100, 1, &[0x60]);
        s.carried = allocmeter::profile::Carried {
            samples: 3,
            objects: 3.0,
            bytes: 250.0,
        };
        t.apply(SampleEvent::Alloc(s));
        let site = &top(sites(&t), 1, SortBy::AllocSpace)[0];
        assert_eq!(
            (site.values.alloc_objects, site.values.alloc_space),
            (4.0, 350.0)
        );
        assert_eq!(
            (site.values.inuse_objects, site.values.inuse_space),
            (1.0, 100.0)
        );
        t.apply(SampleEvent::Free { id: 1 });
        let site = &top(sites(&t), 1, SortBy::AllocSpace)[0];
        assert_eq!(site.values.inuse_space, 0.0);
    }

    #[test]
    fn weights_follow_the_rate() {
        let mut t = SiteTable::new(10);
        t.apply(SampleEvent::Alloc(sample(1, 16, 1 << 20, &[0x50])));
        let site = &top(sites(&t), 1, SortBy::AllocObjects)[0];
        let w = allocmeter::sample_weight(16, 1 << 20);
        assert!(w > 60_000.0);
        assert_eq!(site.values.alloc_objects, w);
        assert_eq!(site.values.alloc_space, w * 16.0);
    }

    #[test]
    fn a_full_table_sends_new_stacks_to_other() {
        let mut t = SiteTable::new(2);
        for i in 1..=5usize {
            t.apply(SampleEvent::Alloc(sample(i as u64, 10, 1, &[0x100 * i])));
        }
        assert_eq!(t.len(), 2);
        assert_eq!(t.overflowed, 3);
        let all = sites(&t);
        let other = all.iter().find(|s| s.stack.is_empty()).unwrap();
        assert_eq!(other.samples, 3);
        assert_eq!(other.values.alloc_space, 30.0);
        // Known stacks still land on their own site.
        t.apply(SampleEvent::Alloc(sample(9, 10, 1, &[0x100])));
        assert_eq!(t.overflowed, 3);
    }

    #[test]
    fn ranking_orders_by_the_chosen_value() {
        let mut t = SiteTable::new(10);
        t.apply(SampleEvent::Alloc(sample(1, 1000, 1, &[0x1])));
        for i in 2..12 {
            t.apply(SampleEvent::Alloc(sample(i, 10, 1, &[0x2])));
        }
        let leaf = |by| -> Vec<u64> { top(sites(&t), 2, by).iter().map(|s| s.stack[0]).collect() };
        assert_eq!(leaf(SortBy::AllocSpace), vec![0x0, 0x1]);
        assert_eq!(leaf(SortBy::AllocObjects), vec![0x1, 0x0]);
        assert_eq!(SortBy::parse("inuse_space"), Some(SortBy::InuseSpace));
        assert_eq!(SortBy::parse("bogus"), None);
    }

    #[inline(never)]
    fn program_code() -> usize {
        std::hint::black_box(program_code as *const () as usize)
    }

    #[test]
    fn stacks_equal_after_trimming_are_merged() {
        // Two raw stacks that differ only in a machinery frame (an address in
        // `alloc::`) on top of the same program frame.
        let machinery_a = <Vec<u8> as Clone>::clone as *const () as usize + 2;
        let with_capacity: fn(usize) -> Vec<u8> = Vec::with_capacity;
        let machinery_b = with_capacity as *const () as usize + 2;
        let program = program_code() + 2;
        let raw = [
            RawSite {
                stack: vec![machinery_a, program],
                values: SiteValues {
                    alloc_space: 10.0,
                    ..SiteValues::default()
                },
                samples: 1,
            },
            RawSite {
                stack: vec![machinery_b, program],
                values: SiteValues {
                    alloc_space: 5.0,
                    ..SiteValues::default()
                },
                samples: 2,
            },
        ];
        let mut symbolizer = Symbolizer::new(100);
        let names: Vec<_> = [machinery_a, machinery_b, program]
            .iter()
            .map(|&a| symbolizer.resolve(a as u64 - 1).frames)
            .collect();
        let merged = merge_sites(&raw, &mut symbolizer);
        assert_eq!(merged.len(), 1, "{merged:?} {names:?}");
        assert_eq!(merged[0].stack, vec![program as u64 - 1]);
        assert_eq!((merged[0].values.alloc_space, merged[0].samples), (15.0, 3));
    }
}
