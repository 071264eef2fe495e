//! Call sites as renderers show them: the site table's raw stacks trimmed
//! of the allocation machinery, merged where they are then equal (for
//! pprof), merged again where they read the same (for people), ranked, and
//! symbolized into [`SiteReport`]s.
//!
//! Owns: [`Site`], [`SiteReport`], [`SortBy`]. Reads a copy of the table
//! (`SiteTable::copy_sites`) and a symbolizer it is lent; takes no lock.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::hash::Hash;

use crate::aggregate::sites::{RawSite, SiteValues};
use crate::symbols::{Frame, Symbolizer, is_program_address, program_frames};

/// A call site after trimming and merging: what renderers show.
#[derive(Clone, Debug)]
pub(crate) struct Site {
    /// Code addresses (return address − 1), leaf first, allocation machinery
    /// trimmed. Empty for "(other)".
    pub stack: Vec<u64>,
    /// The estimates.
    pub values: SiteValues,
    /// Samples behind them.
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
    pub(crate) fn key(self, v: &SiteValues) -> f64 {
        match self {
            SortBy::AllocObjects => v.alloc_objects,
            SortBy::AllocSpace => v.alloc_space,
            SortBy::InuseObjects => v.inuse_objects,
            SortBy::InuseSpace => v.inuse_space,
        }
    }
}

/// Trims each raw stack of the allocation machinery, merges stacks that are
/// then equal, and returns the sites. Distinct code addresses stay distinct
/// sites here, as pprof expects of its locations; [`merge_same_frames`]
/// merges what reads the same.
///
/// Each trimmed stack is built once and moved into the map that merges
/// them, then into its site: one block per site (see
/// `exporter/tests/alloc_budgets.rs`).
pub(crate) fn merge_sites(raw: &[RawSite], symbolizer: &mut Symbolizer) -> Vec<Site> {
    // The stack stays the map's key until the merge is done.
    let keyed = raw.iter().map(|r| {
        let site = Site {
            stack: Vec::new(),
            values: r.values,
            samples: r.samples,
        };
        (trim(&r.stack, symbolizer), site)
    });
    let (mut out, index) = merge_keyed(keyed, raw.len());
    for (stack, i) in index {
        out[i].stack = stack;
    }
    out
}

/// Merges the sites whose stacks symbolize to the same frames (function,
/// file and line of every frame, address by address), for the reports a
/// person reads: a call made from two instructions of one line (a runtime's
/// worker loop and a task, a macro, an unrolled loop) is one site there,
/// with its estimates summed. Each merged site keeps the stack of the first
/// of its parts.
///
/// Each distinct address is symbolized once per call and its frames
/// interned, so a stack's key is a short list of numbers, not a copy of
/// its frames.
pub(crate) fn merge_same_frames(sites: Vec<Site>, symbolizer: &mut Symbolizer) -> Vec<Site> {
    let mut ids: HashMap<Vec<Frame>, u32> = HashMap::new();
    let mut id_of: HashMap<u64, u32> = HashMap::new();
    merge_by(sites, |site| {
        site.stack
            .iter()
            .map(|&address| {
                *id_of.entry(address).or_insert_with(|| {
                    let next = u32::try_from(ids.len()).unwrap_or(u32::MAX);
                    *ids.entry(frames_of(&[address], symbolizer)).or_insert(next)
                })
            })
            .collect::<Vec<u32>>()
    })
}

/// Adds up the sites whose `key` is equal, in the order first seen.
fn merge_by<K: Eq + Hash>(
    sites: impl IntoIterator<Item = Site>,
    mut key: impl FnMut(&Site) -> K,
) -> Vec<Site> {
    let keyed = sites.into_iter().map(|site| (key(&site), site));
    merge_keyed(keyed, 0).0
}

/// Adds up the sites whose keys are equal, in the order first seen; returns
/// them and each key's index among them. `capacity`: room to allocate for
/// at first (the number of sites, where the caller knows it).
fn merge_keyed<K: Eq + Hash>(
    keyed: impl IntoIterator<Item = (K, Site)>,
    capacity: usize,
) -> (Vec<Site>, HashMap<K, usize>) {
    let mut index: HashMap<K, usize> = HashMap::with_capacity(capacity);
    let mut out: Vec<Site> = Vec::with_capacity(capacity);
    for (key, site) in keyed {
        match index.entry(key) {
            Entry::Occupied(i) => {
                let merged = &mut out[*i.get()];
                merged.values.add(&site.values);
                merged.samples += site.samples;
            }
            Entry::Vacant(slot) => {
                slot.insert(out.len());
                out.push(site);
            }
        }
    }
    (out, index)
}

/// The stack as code addresses, with leading allocation machinery dropped.
/// (If everything is machinery, the stack is kept whole.)
pub(crate) fn trim(raw: &[usize], symbolizer: &mut Symbolizer) -> Vec<u64> {
    // A return address, less one: an address inside its call instruction.
    let address = |r: &usize| (*r as u64).saturating_sub(1);
    let first_program_frame = raw.iter().position(|r| {
        // An address with any program frame (possibly with machinery inlined
        // into it) starts the program's part of the stack.
        is_program_address(&symbolizer.resolve(address(r)).frames)
    });
    raw[first_program_frame.unwrap_or(0)..]
        .iter()
        .map(address)
        .collect()
}

/// The `n` sites with the largest `by`, largest first.
pub(crate) fn top(mut sites: Vec<Site>, n: usize, by: SortBy) -> Vec<Site> {
    sites.sort_by(|a, b| by.key(&b.values).total_cmp(&by.key(&a.values)));
    sites.truncate(n);
    sites
}

/// The program frames of a trimmed stack, innermost first (inlined
/// functions included); an address that does not resolve stands as itself.
pub(crate) fn frames_of(stack: &[u64], symbolizer: &mut Symbolizer) -> Vec<Frame> {
    stack
        .iter()
        .flat_map(|&a| {
            let loc = symbolizer.resolve(a);
            let frames = program_frames(&loc.frames).to_vec();
            if frames.is_empty() {
                vec![Frame {
                    function: format!("{a:#x}"),
                    file: None,
                    line: None,
                    system_name: None,
                }]
            } else {
                frames
            }
        })
        .collect()
}

/// Symbolizes sites for reports.
pub(crate) fn site_reports(sites: &[Site], symbolizer: &mut Symbolizer) -> Vec<SiteReport> {
    sites
        .iter()
        .map(|site| {
            let frames = frames_of(&site.stack, symbolizer);
            let leaf = frames.first().cloned().unwrap_or(Frame {
                function: "(other)".to_string(),
                file: None,
                line: None,
                system_name: None,
            });
            SiteReport {
                function: leaf.function,
                file: leaf.file,
                line: leaf.line,
                alloc_objects: site.values.alloc_objects,
                alloc_space: site.values.alloc_space,
                inuse_objects: site.values.inuse_objects,
                inuse_space: site.values.inuse_space,
                samples: site.samples,
                stack: frames,
            }
        })
        .collect()
}
