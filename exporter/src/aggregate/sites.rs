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
//! The table also follows each tracked block from its sample to its free
//! (its *chain*, through the reallocs the allocator reports) and hands the
//! chain's end to its site's evidence (`evidence.rs`), for the hints.
//!
//! Owns: the table. Touches no symbolizer and no lock (the aggregator holds
//! the table's).

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use allocmeter::profile::{AllocSample, FreeEnd, Origin, ReallocKind, SampleEvent};

use super::evidence::{Censored, ChainEnd, Generation, MAX_EVIDENCE_SITES, SiteEvidence};

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

/// What came of a block before its allocation was drained.
struct EarlyEnd {
    /// The drain pass it came in.
    pass: u64,
    /// Its free (time, thread, the thread's allocations of its size), if
    /// it was freed; `None` for a resize, whose chain is not followed.
    freed: Option<(u64, usize, u64)>,
}

/// A sampled block not yet freed.
struct LiveSample {
    site: usize,
    weight: f64,
    size: f64,
    address: usize,
    /// Whether it still counts in its site's in-use estimates: not after a
    /// `realloc`, which is a new allocation for the profile.
    inuse: bool,
    chain: Chain,
}

/// What the evidence needs of a tracked block: the chain it belongs to.
#[derive(Clone, Copy)]
struct Chain {
    /// The site the chain is charged to: its first sample's.
    site: usize,
    born_ns: u64,
    thread: usize,
    grows: u32,
    /// Reallocs seen that shrank it, and that moved it.
    shrinks: u32,
    moves: u32,
    size_now: u64,
    /// The first sample's weight.
    weight: f64,
    /// The allocating thread's allocations of the block's size, at the
    /// sample (see [`allocmeter::profile::AllocSample::size_allocs`]).
    size_allocs: u64,
}

/// One site's evidence over the window, copied for the hints.
#[derive(Clone, Debug)]
pub(crate) struct EvidenceCopy {
    /// The site's raw stack.
    pub stack: Vec<usize>,
    /// Its evidence over the window.
    pub window: Generation,
    /// Its chains alive now, by age.
    pub censored: Censored,
}

/// Most live samples the allocator can hold at once; the table keeps more
/// only for frees that never came (see [`SiteTable::drain`]).
const MAX_LIVE: usize = allocmeter::profile::MAX_LIVE_SAMPLES;

/// Bytes one live sample takes in the table's map, with the map's
/// overhead (its key, control byte and spare room).
const LIVE_ENTRY_BYTES: usize = 2 * (8 + std::mem::size_of::<LiveSample>());

/// Bytes one waiting free takes in its map, with the map's overhead.
const EARLY_ENTRY_BYTES: usize = 2 * (8 + std::mem::size_of::<EarlyEnd>());

/// Bytes one site's evidence takes.
const EVIDENCE_BYTES: usize = std::mem::size_of::<SiteEvidence>() + 16;

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
    early_frees: IdMap<EarlyEnd>,
    pass: u64,
    max_sites: usize,
    /// Samples that went to "(other)" because the table was full.
    overflowed: u64,
    /// Evidence by site index (`None` for sites without any, and beyond
    /// the sites that have room: see [`MAX_EVIDENCE_SITES`]).
    evidence: Vec<Option<Box<SiteEvidence>>>,
    evidence_sites: usize,
    /// When the previous and current generations of the evidence began
    /// ([`allocmeter::profile::clock_ns`]), with the program's exact
    /// totals then.
    generation_starts: [WindowMark; 2],
}

/// The start of an evidence generation: when, and the program's exact
/// totals then (allocations, bytes allocated).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct WindowMark {
    /// [`allocmeter::profile::clock_ns`].
    pub time_ns: u64,
    /// Allocations since the process started.
    pub allocs: u64,
    /// Bytes allocated since the process started.
    pub bytes: u64,
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
            evidence: Vec::new(),
            evidence_sites: 0,
            generation_starts: [WindowMark {
                time_ns: allocmeter::profile::clock_ns(),
                ..WindowMark::default()
            }; 2],
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
        self.early_frees.retain(|_, early| pass - early.pass < 8);
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
        self.end(id, None)
    }

    /// The tracked block `id` ended: freed at `freed` (time, thread, and
    /// that thread's allocations of the block's size), or no longer tracked
    /// (`None`). `false` if it is not live here.
    fn end(&mut self, id: u64, freed: Option<(u64, usize, u64)>) -> bool {
        let Some(s) = self.live.remove(&id) else {
            return false;
        };
        self.end_inuse(&s);
        let c = s.chain;
        let same_thread = freed.is_some_and(|(_, thread, _)| thread == c.thread);
        // Blocks of its size the thread allocated meanwhile: known when the
        // same thread freed it at the size it was sampled at.
        let between = freed
            .filter(|&(_, _, count)| same_thread && c.grows == 0 && count > 0)
            .map(|(_, _, count)| count.saturating_sub(c.size_allocs));
        let end = ChainEnd {
            freed: freed.is_some(),
            lifetime_ns: freed.map_or(0, |(t, _, _)| t.saturating_sub(c.born_ns)),
            same_thread,
            grows: c.grows,
            shrinks: c.shrinks,
            moves: c.moves,
            final_size: c.size_now,
            weight: c.weight,
            same_size_between: between,
        };
        if let Some(e) = self.evidence_of(c.site) {
            e.current().on_end(&end);
        }
        true
    }

    /// Takes a live block's share out of its site's in-use estimates, once.
    fn end_inuse(&mut self, s: &LiveSample) {
        if s.inuse {
            let v = &mut self.sites[s.site].values;
            v.inuse_objects = (v.inuse_objects - s.weight).max(0.0);
            v.inuse_space = (v.inuse_space - s.weight * s.size).max(0.0);
        }
    }

    /// The tracked block `id` was resized: it leaves the in-use estimates
    /// (the realloc is a new allocation for the profile), and its chain
    /// goes on. `false` if it is not live here.
    fn resize(&mut self, id: u64, address: usize, new_size: u64, kind: ReallocKind) -> bool {
        let Some(mut s) = self.live.remove(&id) else {
            return false;
        };
        self.end_inuse(&s);
        s.inuse = false;
        if new_size > s.chain.size_now {
            s.chain.grows += 1;
        } else if new_size < s.chain.size_now {
            s.chain.shrinks += 1;
        }
        s.chain.moves += u32::from(kind == ReallocKind::Moved);
        s.chain.size_now = new_size;
        s.address = address;
        self.live.insert(id, s);
        true
    }

    /// The evidence of the site at `index`, made if it has none and there
    /// is room.
    fn evidence_of(&mut self, index: usize) -> Option<&mut SiteEvidence> {
        if index == OTHER {
            return None;
        }
        if self.evidence.len() <= index {
            self.evidence.resize_with(index + 1, || None);
        }
        let slot = &mut self.evidence[index];
        if slot.is_none() {
            if self.evidence_sites >= MAX_EVIDENCE_SITES {
                return None;
            }
            self.evidence_sites += 1;
            *slot = Some(Box::default());
        }
        slot.as_deref_mut()
    }

    /// Starts the evidence window afresh at `mark` (the exporter's start).
    pub fn start_evidence(&mut self, mark: WindowMark) {
        self.generation_starts = [mark; 2];
    }

    /// Moves the evidence window on by half at `mark`; sites whose window
    /// is now empty give their room back.
    pub fn rotate_evidence(&mut self, mark: WindowMark) {
        self.generation_starts = [self.generation_starts[1], mark];
        for slot in &mut self.evidence {
            if slot.as_mut().is_some_and(|e| e.rotate()) {
                *slot = None;
                self.evidence_sites -= 1;
            }
        }
    }

    /// When the current generation of the evidence began.
    pub fn generation_started(&self) -> WindowMark {
        self.generation_starts[1]
    }

    /// When the evidence window began: the previous generation's start.
    pub fn window_started(&self) -> WindowMark {
        self.generation_starts[0]
    }

    /// Every site's evidence over the window, with its chains alive at
    /// `now_ns`.
    pub fn evidence_now(&self, now_ns: u64) -> Vec<EvidenceCopy> {
        let mut censored: HashMap<usize, Censored> = HashMap::new();
        for s in self.live.values() {
            censored
                .entry(s.chain.site)
                .or_default()
                .add(now_ns.saturating_sub(s.chain.born_ns));
        }
        self.evidence
            .iter()
            .enumerate()
            .filter_map(|(i, e)| {
                let e = e.as_ref()?;
                Some(EvidenceCopy {
                    stack: self.sites[i].stack.clone(),
                    window: e.window(),
                    censored: censored.get(&i).copied().unwrap_or_default(),
                })
            })
            .collect()
    }

    fn apply(&mut self, event: SampleEvent<'_>) {
        match event {
            SampleEvent::Alloc(sample) => self.add(&sample),
            SampleEvent::Free {
                id,
                time_ns,
                thread,
                end,
                size_allocs,
            } => {
                let freed = (end == FreeEnd::Freed).then_some((time_ns, thread, size_allocs));
                if !self.end(id, freed) {
                    self.wait_for_allocation(id, freed);
                }
            }
            SampleEvent::Resize {
                id,
                address,
                new_size,
                kind,
                ..
            } => {
                if !self.resize(id, address, new_size, kind) {
                    // Resized on another thread before its allocation was
                    // drained: for the profile, as good as freed; its chain
                    // is not followed (its end is not counted).
                    self.wait_for_allocation(id, None);
                }
            }
        }
    }

    /// An event of block `id` came before its allocation (a block freed on
    /// another thread, whose ring was drained first): the allocation, when
    /// it arrives, is not counted in use, and a free's facts (`freed`) end
    /// its chain then.
    fn wait_for_allocation(&mut self, id: u64, freed: Option<(u64, usize, u64)>) {
        if self.early_frees.len() < MAX_EARLY_FREES {
            // Beyond the cap the allocation, when it arrives, counts as in
            // use until a sweep finds it freed.
            self.early_frees.insert(
                id,
                EarlyEnd {
                    pass: self.pass,
                    freed,
                },
            );
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
        // A sample taken at the realloc of a tracked block continues that
        // block's chain, charged to the site the chain began at.
        let parent = sample
            .parent
            .and_then(|p| self.live.remove(&p))
            .inspect(|p| self.end_inuse(p))
            .map(|p| p.chain);
        let grew = matches!(sample.origin, Origin::Realloc { old_size, kind }
            if sample.size > old_size || kind == ReallocKind::GrownInPlace);
        let chain = match parent {
            Some(mut c) => {
                c.grows += u32::from(grew);
                c.moves += u32::from(matches!(
                    sample.origin,
                    Origin::Realloc {
                        kind: ReallocKind::Moved,
                        ..
                    }
                ));
                c.size_now = sample.size;
                c.size_allocs = sample.size_allocs;
                c
            }
            None => Chain {
                site,
                born_ns: sample.time_ns,
                thread: sample.thread,
                grows: u32::from(grew),
                shrinks: 0,
                moves: 0,
                size_now: sample.size,
                weight,
                size_allocs: sample.size_allocs,
            },
        };
        if let Some(e) = self.evidence_of(chain.site) {
            e.current()
                .on_sample(sample.size, weight, sample.thread, grew, parent.is_none());
        }
        let early = if self.early_frees.is_empty() {
            None
        } else {
            self.early_frees.remove(&sample.id)
        };
        // A block ended before it was seen (freed on another thread, most
        // often) counts in no in-use figure; if it was freed, its chain
        // ends now, with the free's facts.
        let inuse = early.is_none();
        let freed = early.and_then(|e| e.freed);
        if inuse {
            let v = &mut self.sites[site].values;
            v.inuse_objects += weight;
            v.inuse_space += weight * size;
        }
        if inuse || freed.is_some() {
            self.live.insert(
                sample.id,
                LiveSample {
                    site,
                    weight,
                    size,
                    address: sample.address,
                    inuse,
                    chain,
                },
            );
        }
        if let Some(freed) = freed {
            self.end(sample.id, Some(freed));
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

    /// Every site's estimates and samples now, by index ("(other)" first):
    /// a baseline to subtract from later ones (a delta profile).
    pub fn values_by_index(&self) -> Vec<(SiteValues, u64)> {
        self.sites.iter().map(|s| (s.values, s.samples)).collect()
    }

    /// Copies every site's estimates and samples, by index, into `out`
    /// (its room reused: no allocation unless the table has grown).
    pub fn copy_values_into(&self, out: &mut Vec<(SiteValues, u64)>) {
        out.clear();
        out.extend(self.sites.iter().map(|s| (s.values, s.samples)));
    }

    /// The sites with the estimates `values` (from
    /// [`SiteTable::copy_values_into`] at some earlier tick): each site's
    /// stack with the values it had then, the sites with nothing in use
    /// then left out (a peak's profile).
    pub fn copy_sites_as(&self, values: &[(SiteValues, u64)]) -> Vec<RawSite> {
        self.sites
            .iter()
            .zip(values)
            .filter(|(_, (v, _))| v.inuse_space >= 0.5)
            .map(|(s, &(values, samples))| RawSite {
                stack: s.stack.clone(),
                values,
                samples,
            })
            .collect()
    }

    /// Every site's allocation since `baseline` (from
    /// [`SiteTable::values_by_index`]): each site's estimates less the
    /// baseline's (in-use ones may come out negative, as in Go's delta
    /// profiles), the sites that did not change left out.
    pub fn copy_sites_since(&self, baseline: &[(SiteValues, u64)]) -> Vec<RawSite> {
        self.sites
            .iter()
            .enumerate()
            .filter_map(|(i, s)| {
                let (base, base_samples) = baseline.get(i).copied().unwrap_or_default();
                let v = SiteValues {
                    alloc_objects: s.values.alloc_objects - base.alloc_objects,
                    alloc_space: s.values.alloc_space - base.alloc_space,
                    inuse_objects: s.values.inuse_objects - base.inuse_objects,
                    inuse_space: s.values.inuse_space - base.inuse_space,
                };
                let changed = [
                    v.alloc_objects,
                    v.alloc_space,
                    v.inuse_objects,
                    v.inuse_space,
                ]
                .iter()
                .any(|x| x.abs() >= 0.5);
                changed.then(|| RawSite {
                    stack: s.stack.clone(),
                    values: v,
                    samples: s.samples.saturating_sub(base_samples),
                })
            })
            .collect()
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
            time_ns: 0,
            origin: Origin::Alloc,
            parent: None,
            size_allocs: 0,
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
    /// the rest, see [`SiteTable::drain`]), the waiting frees, and the
    /// evidence of at most [`MAX_EVIDENCE_SITES`] sites.
    pub fn max_bytes(max_sites: usize, slots_used: usize) -> usize {
        let sites = (max_sites + 1) * (2 * (96 + 8 * allocmeter::stack::MAX_DEPTH) + 8);
        let one_drain = (slots_used + 1) * allocmeter::profile::MAX_EVENTS_PER_RING
            + allocmeter::profile::MAX_BURST_ALLOCS;
        sites
            + LIVE_ENTRY_BYTES * (MAX_LIVE + one_drain)
            + EARLY_ENTRY_BYTES * MAX_EARLY_FREES
            + MAX_EVIDENCE_SITES * EVIDENCE_BYTES
    }

    /// Bytes the table holds, roughly (for the telemetry-bytes figure).
    pub fn approximate_bytes(&self) -> usize {
        let sites: usize = self
            .sites
            .iter()
            .map(|s| 2 * (96 + 8 * s.stack.len()))
            .sum();
        sites
            + 8 * self.evidence.len()
            + self.evidence_sites * EVIDENCE_BYTES
            + LIVE_ENTRY_BYTES * self.live.len()
            + EARLY_ENTRY_BYTES * self.early_frees.len()
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
            time_ns: 0,
            origin: Origin::Alloc,
            parent: None,
            size_allocs: 0,
            stack,
            carried: Default::default(),
        }
    }

    fn free(id: u64) -> SampleEvent<'static> {
        SampleEvent::Free {
            id,
            time_ns: 0,
            thread: 0,
            end: FreeEnd::Freed,
            size_allocs: 0,
        }
    }

    fn sites(t: &SiteTable) -> Vec<Site> {
        merge_sites(&t.copy_sites(), &mut Symbolizer::new(100))
    }

    fn resize(id: u64, new_size: u64, time_ns: u64) -> SampleEvent<'static> {
        SampleEvent::Resize {
            id,
            address: 0x9000_0000 + id as usize,
            new_size,
            kind: ReallocKind::Moved,
            time_ns,
            thread: 0,
        }
    }

    fn freed_at(id: u64, time_ns: u64, thread: usize) -> SampleEvent<'static> {
        SampleEvent::Free {
            id,
            time_ns,
            thread,
            end: FreeEnd::Freed,
            size_allocs: 0,
        }
    }

    /// The evidence of the one site with any.
    fn only_evidence(t: &SiteTable, now: u64) -> EvidenceCopy {
        let mut all = t.evidence_now(now);
        assert_eq!(all.len(), 1, "{all:?}");
        all.pop().unwrap()
    }

    #[test]
    fn a_chain_is_followed_through_its_resizes_and_charged_to_its_first_site() {
        let mut t = SiteTable::new(10);
        let (first, push) = ([0x10usize, 0x20], [0x30usize, 0x20]);
        t.apply(SampleEvent::Alloc(sample(1, 32, 1, &first)));
        t.apply(resize(1, 64, 100));
        t.apply(resize(1, 128, 200));
        // For the profile a resize ends the block's in-use share.
        assert_eq!(t.sites[1].values.inuse_space, 0.0);
        // A sample at the next realloc continues the chain: charged to the
        // first site, with the growth counted once.
        let mut at_realloc = sample(2, 256, 1, &push);
        at_realloc.parent = Some(1);
        at_realloc.origin = Origin::Realloc {
            old_size: 128,
            kind: ReallocKind::Moved,
        };
        at_realloc.time_ns = 300;
        t.apply(SampleEvent::Alloc(at_realloc));
        assert!(!t.live.contains_key(&1));
        assert_eq!(t.sites[2].values.inuse_space, 256.0, "its own in-use share");
        t.apply(resize(2, 512, 400));
        t.apply(freed_at(2, 1_000, 0));
        let e = t.evidence_now(2_000);
        assert_eq!(e.len(), 1, "one chain, one site's evidence");
        let w = e[0].window;
        assert_eq!(e[0].stack, first);
        assert_eq!((w.samples, w.all_samples, w.grow_samples), (1, 2, 1));
        assert_eq!((w.ended, w.grown_chains, w.grows), (1, 1, 4));
        assert_eq!(
            (w.shrinks, w.moves),
            (0, 4),
            "three resizes and a sample, all moved"
        );
        assert_eq!((w.same_thread, w.short), (1, 1));
        assert_eq!(w.final_max, 512);
        assert_eq!(
            w.lifetimes.quantile(0.5),
            Some(1024),
            "1000 ns from the first sample"
        );
        assert!(t.live.is_empty());
    }

    #[test]
    fn ends_seen_and_unseen_and_blocks_alive_are_told_apart() {
        let mut t = SiteTable::new(10);
        let site = [0x10usize];
        for id in 1..=4 {
            t.apply(SampleEvent::Alloc(sample(id, 64, 1, &site)));
        }
        t.apply(freed_at(1, 500, 3));
        t.apply(SampleEvent::Free {
            id: 2,
            time_ns: 600,
            thread: 0,
            end: FreeEnd::Untracked,
            size_allocs: 0,
        });
        let e = only_evidence(&t, 5_000_000);
        assert_eq!((e.window.ended, e.window.untracked), (1, 1));
        assert_eq!(e.window.same_thread, 0, "freed on slot 3, allocated on 0");
        assert_eq!(
            e.censored,
            Censored {
                alive: 2,
                older_than_short: 2,
                older_than_pool_short: 0
            }
        );
        // A resize drained before its allocation: as good as freed for the
        // profile, and the chain is not followed.
        t.apply(resize(9, 128, 10));
        t.apply(SampleEvent::Alloc(sample(9, 64, 1, &site)));
        assert!(!t.live.contains_key(&9));
    }

    #[test]
    fn the_window_forgets_evidence_older_than_two_generations() {
        let mut t = SiteTable::new(10);
        let mark = |time_ns| WindowMark {
            time_ns,
            ..WindowMark::default()
        };
        t.apply(SampleEvent::Alloc(sample(1, 64, 1, &[0x10])));
        t.rotate_evidence(mark(10));
        assert_eq!(only_evidence(&t, 10).window.samples, 1);
        t.rotate_evidence(mark(20));
        assert!(t.evidence_now(20).is_empty(), "its room given back");
        assert_eq!(t.evidence_sites, 0);
        assert_eq!(t.window_started(), mark(10));
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
        t.apply(free(1));
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
            t.apply(free(id));
        }
        assert_eq!(t.early_frees.len(), MAX_EARLY_FREES);
    }

    #[test]
    fn a_free_drained_before_its_allocation_still_counts() {
        let mut t = SiteTable::new(10);
        t.apply(freed_at(7, 500, 3));
        t.apply(SampleEvent::Alloc(sample(7, 50, 1, &[0x40])));
        let site = &top(sites(&t), 1, SortBy::AllocObjects)[0];
        assert_eq!(site.values.alloc_objects, 1.0);
        assert_eq!(site.values.inuse_objects, 0.0);
        assert_eq!(t.live.len(), 0);
        // Its chain ended, freed on another thread (slot 3), for the hints.
        let e = only_evidence(&t, 1_000);
        assert_eq!((e.window.ended, e.window.same_thread), (1, 0));
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
        t.apply(free(1));
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
