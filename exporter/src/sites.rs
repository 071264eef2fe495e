//! The site table: sampled allocations grouped by call stack, with the
//! estimated allocated and in-use objects and bytes of each call site.
//!
//! Fed by the aggregator from [`allocmeter::profile::drain`]. Each sample
//! adds its weight (how many allocations it stands for) to its site's
//! allocated objects, and weight × size to its allocated bytes; the same goes
//! into in-use until the block's free arrives. The estimates are unbiased
//! (see [`allocmeter::sample_weight`]); their relative error shrinks like
//! one over the square root of the number of samples behind them.

use std::collections::HashMap;

use allocmeter::profile::{AllocSample, SampleEvent};

use crate::symbolize::{Frame, Symbolizer, is_allocation_machinery, program_frames};

/// Identifies a site in the table.
pub(crate) type SiteId = usize;

/// The site samples go to once the table is full.
pub(crate) const OTHER: SiteId = 0;

/// Estimated totals of one call site.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct SiteValues {
    /// Allocations made here since sampling started (estimated).
    pub alloc_objects: f64,
    /// Bytes allocated here since sampling started (estimated).
    pub alloc_bytes: f64,
    /// Blocks allocated here and not yet freed (estimated).
    pub inuse_objects: f64,
    /// Bytes in blocks allocated here and not yet freed (estimated).
    pub inuse_bytes: f64,
}

/// One call site: its stack (code addresses, leaf first, with the allocation
/// machinery trimmed off) and its estimates.
#[derive(Clone, Debug)]
pub(crate) struct Site {
    /// Code addresses (return address − 1), leaf first. Empty for "(other)".
    pub stack: Vec<u64>,
    /// The estimates.
    pub values: SiteValues,
    /// Samples that landed here.
    pub samples: u64,
}

/// A call site as reported by [`crate::Exporter::top_sites`] and
/// `/api/sites`: where it allocates, its estimates, and its stack.
#[derive(Clone, Debug, serde::Serialize)]
pub struct SiteReport {
    /// The program function that allocates (the leaf after the allocation
    /// machinery is trimmed), or `(other)` for samples beyond the site limit.
    pub function: String,
    /// Its source file, if known.
    pub file: Option<String>,
    /// Its line, if known.
    pub line: Option<u32>,
    /// Estimated allocations.
    pub alloc_objects: f64,
    /// Estimated bytes allocated.
    pub alloc_space: f64,
    /// Estimated blocks in use.
    pub inuse_objects: f64,
    /// Estimated bytes in use.
    pub inuse_space: f64,
    /// Samples behind the estimates: the relative error of an estimate is
    /// about one over the square root of this.
    pub samples: u64,
    /// The call stack, innermost first (inlined functions included).
    pub stack: Vec<Frame>,
}

/// A sampled block not yet freed.
struct LiveSample {
    site: SiteId,
    weight: f64,
    size: f64,
}

/// Which value to rank sites by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SortBy {
    /// Estimated allocations.
    AllocObjects,
    /// Estimated allocated bytes.
    AllocSpace,
    /// Estimated live blocks.
    InuseObjects,
    /// Estimated live bytes.
    InuseSpace,
}

impl SortBy {
    /// Parses the names Go's pprof uses: `alloc_objects`, `alloc_space`,
    /// `inuse_objects`, `inuse_space`.
    pub fn parse(name: &str) -> Option<SortBy> {
        Some(match name {
            "alloc_objects" => SortBy::AllocObjects,
            "alloc_space" => SortBy::AllocSpace,
            "inuse_objects" => SortBy::InuseObjects,
            "inuse_space" => SortBy::InuseSpace,
            _ => return None,
        })
    }

    /// The value of `v` this ranks by.
    pub fn key(self, v: &SiteValues) -> f64 {
        match self {
            SortBy::AllocObjects => v.alloc_objects,
            SortBy::AllocSpace => v.alloc_bytes,
            SortBy::InuseObjects => v.inuse_objects,
            SortBy::InuseSpace => v.inuse_bytes,
        }
    }
}

/// The table.
pub(crate) struct SiteTable {
    /// Sites; index 0 is "(other)".
    sites: Vec<Site>,
    /// Raw stack (as sampled) → site, so a repeated stack is neither
    /// symbolized nor trimmed again.
    by_raw: HashMap<Vec<usize>, SiteId>,
    /// Trimmed stack → site, so stacks that differ only inside the allocation
    /// machinery share a site.
    by_trimmed: HashMap<Vec<u64>, SiteId>,
    live: HashMap<u64, LiveSample>,
    /// Frees drained before their allocation (other thread's ring), with the
    /// drain pass they arrived in.
    early_frees: HashMap<u64, u64>,
    pass: u64,
    max_sites: usize,
    /// Samples that went to "(other)" because the table was full.
    pub overflowed: u64,
    pub symbolizer: Symbolizer,
}

impl SiteTable {
    /// An empty table with room for `max_sites` sites besides "(other)".
    pub fn new(max_sites: usize) -> Self {
        SiteTable {
            sites: vec![Site {
                stack: Vec::new(),
                values: SiteValues::default(),
                samples: 0,
            }],
            by_raw: HashMap::new(),
            by_trimmed: HashMap::new(),
            live: HashMap::new(),
            early_frees: HashMap::new(),
            pass: 0,
            max_sites: max_sites.max(1),
            overflowed: 0,
            symbolizer: Symbolizer::new(64 * 1024),
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
        n
    }

    fn apply(&mut self, event: SampleEvent<'_>) {
        match event {
            SampleEvent::Alloc(sample) => self.add(&sample),
            SampleEvent::Free { id } => match self.live.remove(&id) {
                Some(s) => {
                    let v = &mut self.sites[s.site].values;
                    v.inuse_objects = (v.inuse_objects - s.weight).max(0.0);
                    v.inuse_bytes = (v.inuse_bytes - s.weight * s.size).max(0.0);
                }
                None => {
                    self.early_frees.insert(id, self.pass);
                }
            },
        }
    }

    fn add(&mut self, sample: &AllocSample<'_>) {
        let site = self.site_for(sample.stack);
        let weight = sample.weight();
        let size = sample.size as f64;
        let s = &mut self.sites[site];
        s.samples += 1;
        s.values.alloc_objects += weight;
        s.values.alloc_bytes += weight * size;
        if self.early_frees.remove(&sample.id).is_none() {
            s.values.inuse_objects += weight;
            s.values.inuse_bytes += weight * size;
            self.live
                .insert(sample.id, LiveSample { site, weight, size });
        }
    }

    fn site_for(&mut self, raw: &[usize]) -> SiteId {
        if let Some(&id) = self.by_raw.get(raw) {
            return id;
        }
        let trimmed = self.trim(raw);
        let id = match self.by_trimmed.get(&trimmed) {
            Some(&id) => id,
            None if self.sites.len() > self.max_sites => {
                self.overflowed += 1;
                return OTHER;
            }
            None => {
                let id = self.sites.len();
                self.sites.push(Site {
                    stack: trimmed.clone(),
                    values: SiteValues::default(),
                    samples: 0,
                });
                self.by_trimmed.insert(trimmed, id);
                id
            }
        };
        if self.by_raw.len() >= 4 * self.max_sites {
            self.by_raw.clear();
        }
        self.by_raw.insert(raw.to_vec(), id);
        id
    }

    /// The stack as code addresses, with leading allocation machinery
    /// dropped. (If everything is machinery, the stack is kept whole.)
    fn trim(&mut self, raw: &[usize]) -> Vec<u64> {
        let addresses: Vec<u64> = raw.iter().map(|&r| (r as u64).saturating_sub(1)).collect();
        let first_program_frame = addresses.iter().position(|&a| {
            let loc = self.symbolizer.resolve(a);
            // An address with any program frame (possibly with machinery
            // inlined into it) starts the program's part of the stack.
            // Unresolvable addresses count as program code: better shown than
            // silently dropped.
            loc.frames.is_empty()
                || loc
                    .frames
                    .iter()
                    .any(|f| !is_allocation_machinery(&f.function))
        });
        match first_program_frame {
            Some(i) => addresses[i..].to_vec(),
            None => addresses,
        }
    }

    /// All sites with at least one sample, "(other)" included if used.
    pub fn sites(&self) -> impl Iterator<Item = (SiteId, &Site)> {
        self.sites.iter().enumerate().filter(|(_, s)| s.samples > 0)
    }

    /// The `n` sites with the largest `by`, largest first.
    pub fn top(&self, n: usize, by: SortBy) -> Vec<(SiteId, &Site)> {
        let mut all: Vec<_> = self.sites().collect();
        all.sort_by(|a, b| by.key(&b.1.values).total_cmp(&by.key(&a.1.values)));
        all.truncate(n);
        all
    }

    /// The `n` sites with the largest `by`, symbolized.
    pub fn report(&mut self, n: usize, by: SortBy) -> Vec<SiteReport> {
        let ranked: Vec<(Vec<u64>, SiteValues, u64)> = self
            .top(n, by)
            .into_iter()
            .map(|(_, s)| (s.stack.clone(), s.values, s.samples))
            .collect();
        ranked
            .into_iter()
            .map(|(stack, values, samples)| {
                let frames: Vec<Frame> = stack
                    .iter()
                    .flat_map(|&a| {
                        let loc = self.symbolizer.resolve(a);
                        let frames = program_frames(&loc.frames).to_vec();
                        if frames.is_empty() {
                            vec![Frame {
                                function: format!("{a:#x}"),
                                file: None,
                                line: None,
                            }]
                        } else {
                            frames
                        }
                    })
                    .collect();
                let leaf = frames.first().cloned().unwrap_or(Frame {
                    function: "(other)".to_string(),
                    file: None,
                    line: None,
                });
                SiteReport {
                    function: leaf.function,
                    file: leaf.file,
                    line: leaf.line,
                    alloc_objects: values.alloc_objects,
                    alloc_space: values.alloc_bytes,
                    inuse_objects: values.inuse_objects,
                    inuse_space: values.inuse_bytes,
                    samples,
                    stack: frames,
                }
            })
            .collect()
    }

    /// Sites in the table (not counting "(other)").
    pub fn len(&self) -> usize {
        self.sites.len() - 1
    }

    /// Bytes the table holds, roughly (for the telemetry-bytes figure).
    pub fn approximate_bytes(&self) -> usize {
        let sites: usize = self.sites.iter().map(|s| 96 + 8 * s.stack.len()).sum();
        let raw: usize = self.by_raw.keys().map(|k| 64 + 8 * k.len()).sum();
        let trimmed: usize = self.by_trimmed.keys().map(|k| 64 + 8 * k.len()).sum();
        sites
            + raw
            + trimmed
            + 48 * (self.live.len() + self.early_frees.len())
            + self.symbolizer.approximate_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(id: u64, size: u64, rate: u64, stack: &[usize]) -> AllocSample<'_> {
        AllocSample {
            id,
            address: 0x1000 * id as usize,
            size,
            rate,
            thread: 0,
            stack,
        }
    }

    #[test]
    fn allocs_add_weight_and_frees_take_in_use_back() {
        let mut t = SiteTable::new(10);
        let stack = [0x10usize, 0x20, 0x30];
        t.apply(SampleEvent::Alloc(sample(1, 100, 1, &stack)));
        t.apply(SampleEvent::Alloc(sample(2, 300, 1, &stack)));
        let (_, site) = t.top(1, SortBy::AllocSpace)[0];
        assert_eq!(site.values.alloc_objects, 2.0);
        assert_eq!(site.values.alloc_bytes, 400.0);
        assert_eq!(site.values.inuse_bytes, 400.0);
        assert_eq!(site.stack, vec![0xf, 0x1f, 0x2f], "return address - 1");
        t.apply(SampleEvent::Free { id: 1 });
        let (_, site) = t.top(1, SortBy::AllocSpace)[0];
        assert_eq!(
            (site.values.inuse_objects, site.values.inuse_bytes),
            (1.0, 300.0)
        );
        assert_eq!(site.values.alloc_bytes, 400.0, "alloc totals never fall");
        assert_eq!(t.live.len(), 1);
    }

    #[test]
    fn a_free_drained_before_its_allocation_still_counts() {
        let mut t = SiteTable::new(10);
        t.apply(SampleEvent::Free { id: 7 });
        t.apply(SampleEvent::Alloc(sample(7, 50, 1, &[0x40])));
        let (_, site) = t.top(1, SortBy::AllocObjects)[0];
        assert_eq!(site.values.alloc_objects, 1.0);
        assert_eq!(site.values.inuse_objects, 0.0);
        assert_eq!(t.live.len(), 0);
    }

    #[test]
    fn weights_follow_the_rate() {
        let mut t = SiteTable::new(10);
        t.apply(SampleEvent::Alloc(sample(1, 16, 1 << 20, &[0x50])));
        let (_, site) = t.top(1, SortBy::AllocObjects)[0];
        let w = allocmeter::sample_weight(16, 1 << 20);
        assert!(w > 60_000.0);
        assert_eq!(site.values.alloc_objects, w);
        assert_eq!(site.values.alloc_bytes, w * 16.0);
    }

    #[test]
    fn a_full_table_sends_new_stacks_to_other() {
        let mut t = SiteTable::new(2);
        for i in 1..=5usize {
            t.apply(SampleEvent::Alloc(sample(i as u64, 10, 1, &[0x100 * i])));
        }
        assert_eq!(t.len(), 2);
        assert_eq!(t.overflowed, 3);
        let other = t.sites().find(|(id, _)| *id == OTHER).unwrap().1;
        assert_eq!(other.samples, 3);
        assert_eq!(other.values.alloc_bytes, 30.0);
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
        let by_space: Vec<_> = t
            .top(2, SortBy::AllocSpace)
            .iter()
            .map(|(_, s)| s.stack[0])
            .collect();
        let by_objects: Vec<_> = t
            .top(2, SortBy::AllocObjects)
            .iter()
            .map(|(_, s)| s.stack[0])
            .collect();
        assert_eq!(by_space, vec![0x0, 0x1]);
        assert_eq!(by_objects, vec![0x1, 0x0]);
        assert_eq!(SortBy::parse("inuse_space"), Some(SortBy::InuseSpace));
        assert_eq!(SortBy::parse("bogus"), None);
    }
}
