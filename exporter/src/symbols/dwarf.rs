//! Frames read from one compilation unit's DWARF entries with gimli, for
//! the addresses addr2line cannot name over a unit parsed alone: code
//! whose functions' names lie in another unit (an inlined function's
//! abstract origin, or a function's specification, referenced with
//! `DW_FORM_ref_addr`, an offset into the whole `.debug_info`).
//!
//! Owns: [`UnitWalk`] (a unit's abbreviations and the ranges of its
//! functions, built once per parsed unit) and the lookup through it: the
//! function containing an address, the chain of inlined calls down to it,
//! each level's name (following origins into other units, each parsed for
//! its header and abbreviations only, for the lookup) and each caller's
//! file and line (`DW_AT_call_file`, `DW_AT_call_line`).

use gimli::{AttributeValue, DebugInfoOffset, UnitOffset};

use super::Frame;
use super::objects::{Reader, demangled};

/// How deep a walk descends into nested entries (malformed input stops
/// there).
const MAX_DEPTH: usize = 256;

/// How many origins or specifications one name is followed through (a
/// cycle in malformed input stops there).
const MAX_ORIGINS: usize = 16;

/// Foreign units (those named by references out of the unit) one lookup
/// keeps parsed at once.
const MAX_FOREIGN_UNITS: usize = 8;

/// One parsed unit's entries, for lookups: its header and abbreviations,
/// and where its functions' code is.
pub(super) struct UnitWalk {
    unit: gimli::Unit<Reader>,
    /// Each function's address ranges (`begin`, `end`, its entry), sorted
    /// by `begin`.
    functions: Vec<(u64, u64, UnitOffset)>,
}

impl UnitWalk {
    /// The unit at `offset` in `.debug_info`, with its functions' ranges
    /// (the top-level subprograms with code: not those nested in a function).
    pub fn new(dwarf: &gimli::Dwarf<Reader>, offset: usize) -> Option<UnitWalk> {
        let header = dwarf
            .debug_info
            .header_from_offset(DebugInfoOffset(offset))
            .ok()?;
        let unit = dwarf.unit(header).ok()?;
        let mut functions = Vec::new();
        {
            let unit_ref = unit.unit_ref(dwarf);
            let mut tree = unit.entries_tree(None).ok()?;
            collect_functions(&unit_ref, tree.root().ok()?, &mut functions, 0);
        }
        functions.sort_unstable_by_key(|f| f.0);
        functions.shrink_to_fit();
        Some(UnitWalk { unit, functions })
    }

    /// The frames at `probe`, innermost first (the inlined calls, then the
    /// function), at most `max_frames`; the innermost one at `innermost`
    /// (the line table's file and line for `probe`), each outer one where it
    /// calls the next. Empty if no function of the unit covers `probe`.
    pub fn frames(
        &self,
        dwarf: &gimli::Dwarf<Reader>,
        probe: u64,
        innermost: (Option<String>, Option<u32>),
        max_frames: usize,
    ) -> Vec<Frame> {
        let unit = self.unit.unit_ref(dwarf);
        let i = self.functions.partition_point(|f| f.0 <= probe);
        let Some(&(_, _, function)) = self.functions[..i]
            .iter()
            .rev()
            .find(|(begin, end, _)| (*begin..*end).contains(&probe))
        else {
            return Vec::new();
        };
        // The function, then each inlined call containing `probe`, outermost
        // first: (name, call file, call line).
        let mut chain: Vec<Level> = Vec::new();
        let Ok(mut tree) = unit.entries_tree(Some(function)) else {
            return Vec::new();
        };
        let Ok(root) = tree.root() else {
            return Vec::new();
        };
        let mut names = Names {
            dwarf,
            foreign: Vec::new(),
        };
        chain.push(Level::of(&unit, root.entry(), &mut names));
        descend(&unit, root, probe, &mut chain, &mut names, 0);

        let mut frames = Vec::with_capacity(chain.len().min(max_frames));
        let (mut file, mut line) = innermost;
        for level in chain.into_iter().rev() {
            if frames.len() >= max_frames {
                break;
            }
            frames.push(Frame {
                function: level.name.unwrap_or_default(),
                file,
                line,
                system_name: level.raw_name,
            });
            file = level.call_file;
            line = level.call_line;
        }
        frames
    }
}

/// Pushes onto `functions` the address ranges of every function below
/// `node` with code (not descending into functions: their nested entries
/// are found from them at a lookup).
fn collect_functions(
    unit: &gimli::UnitRef<'_, Reader>,
    node: gimli::EntriesTreeNode<'_, '_, Reader>,
    functions: &mut Vec<(u64, u64, UnitOffset)>,
    depth: usize,
) {
    if depth >= MAX_DEPTH {
        return;
    }
    let mut children = node.children();
    while let Ok(Some(child)) = children.next() {
        let entry = child.entry();
        if entry.tag == gimli::DW_TAG_subprogram {
            let offset = entry.offset;
            if let Ok(mut ranges) = unit.die_ranges(entry) {
                while let Ok(Some(r)) = ranges.next() {
                    if r.begin < r.end {
                        functions.push((r.begin, r.end, offset));
                    }
                }
            }
        } else {
            collect_functions(unit, child, functions, depth + 1);
        }
    }
}

/// One level of the chain: a function or an inlined call.
struct Level {
    /// Its name, demangled.
    name: Option<String>,
    /// Its name as found (mangled, for a linkage name).
    raw_name: Option<String>,
    /// Where it is called from (for an inlined call).
    call_file: Option<String>,
    call_line: Option<u32>,
}

impl Level {
    /// The level `entry` (a function or an inlined call) stands for.
    fn of(
        unit: &gimli::UnitRef<'_, Reader>,
        entry: &gimli::DebuggingInformationEntry<Reader>,
        names: &mut Names<'_>,
    ) -> Level {
        let raw_name = names.name(unit, entry, 0);
        let name = raw_name.as_deref().map(demangled);
        let call_file = match entry.attr_value(gimli::DW_AT_call_file) {
            // DWARF 5 numbers files from 0; before, 0 means none.
            Some(AttributeValue::FileIndex(fi)) if fi > 0 || unit.header.version() >= 5 => {
                file_name(unit, fi)
            }
            _ => None,
        };
        let call_line = entry
            .attr(gimli::DW_AT_call_line)
            .and_then(gimli::Attribute::udata_value)
            .and_then(|l| u32::try_from(l).ok())
            .filter(|&l| l != 0);
        Level {
            name,
            raw_name,
            call_file,
            call_line,
        }
    }
}

/// Walks down from `node` (a function, an inlined call or a lexical block
/// containing `probe`) to the innermost inlined call containing `probe`,
/// pushing each onto `chain`.
fn descend(
    unit: &gimli::UnitRef<'_, Reader>,
    node: gimli::EntriesTreeNode<'_, '_, Reader>,
    probe: u64,
    chain: &mut Vec<Level>,
    names: &mut Names<'_>,
    depth: usize,
) {
    if depth >= MAX_DEPTH {
        return;
    }
    let mut children = node.children();
    while let Ok(Some(child)) = children.next() {
        let entry = child.entry();
        let tag = entry.tag;
        if tag != gimli::DW_TAG_inlined_subroutine && tag != gimli::DW_TAG_lexical_block {
            continue;
        }
        if !contains(unit, entry, probe) {
            continue;
        }
        if tag == gimli::DW_TAG_inlined_subroutine {
            chain.push(Level::of(unit, entry, names));
        }
        descend(unit, child, probe, chain, names, depth + 1);
        return;
    }
}

/// Whether `entry`'s address ranges contain `probe`.
fn contains(
    unit: &gimli::UnitRef<'_, Reader>,
    entry: &gimli::DebuggingInformationEntry<Reader>,
    probe: u64,
) -> bool {
    let Ok(mut ranges) = unit.die_ranges(entry) else {
        return false;
    };
    while let Ok(Some(r)) = ranges.next() {
        if (r.begin..r.end).contains(&probe) {
            return true;
        }
    }
    false
}

/// Function names, following origins and specifications within the unit
/// and into others.
struct Names<'a> {
    dwarf: &'a gimli::Dwarf<Reader>,
    /// Foreign units parsed for this lookup (header and abbreviations).
    foreign: Vec<gimli::Unit<Reader>>,
}

impl Names<'_> {
    /// `entry`'s name: its linkage name, else its name, else its origin's
    /// or specification's (mangled as found).
    fn name(
        &mut self,
        unit: &gimli::UnitRef<'_, Reader>,
        entry: &gimli::DebuggingInformationEntry<Reader>,
        followed: usize,
    ) -> Option<String> {
        let mut name = None;
        let mut next = None;
        for attr in &entry.attrs {
            match attr.name() {
                gimli::DW_AT_linkage_name | gimli::DW_AT_MIPS_linkage_name => {
                    if let Ok(s) = unit.attr_string(attr.value()) {
                        return Some(s.to_string_lossy().into_owned());
                    }
                }
                gimli::DW_AT_name => {
                    if let Ok(s) = unit.attr_string(attr.value()) {
                        name = Some(s.to_string_lossy().into_owned());
                    }
                }
                gimli::DW_AT_abstract_origin | gimli::DW_AT_specification => {
                    next = Some(attr.value());
                }
                _ => {}
            }
        }
        if name.is_some() || followed >= MAX_ORIGINS {
            return name;
        }
        match next? {
            AttributeValue::UnitRef(offset) => {
                let target = unit.entry(offset).ok()?;
                self.name(unit, &target, followed + 1)
            }
            AttributeValue::DebugInfoRef(offset) => {
                let at = self.foreign_unit(offset)?;
                let other = &self.foreign[at];
                let target = other.entry(offset.to_unit_offset(&other.header)?).ok()?;
                // The parsed unit is moved out while it is borrowed, so that
                // a further hop may parse more.
                let other = self.foreign.swap_remove(at);
                let found = self.name(&other.unit_ref(self.dwarf), &target, followed + 1);
                self.foreign.push(other);
                found
            }
            _ => None,
        }
    }

    /// The index in `foreign` of the unit holding `offset`, parsed now if
    /// needed (the unit headers are read in order until one holds it).
    fn foreign_unit(&mut self, offset: DebugInfoOffset) -> Option<usize> {
        let holds = |h: &gimli::UnitHeader<Reader>| {
            h.debug_info_offset()
                .is_some_and(|o| (o.0..o.0 + h.length_including_self()).contains(&offset.0))
        };
        if let Some(at) = self.foreign.iter().position(|u| holds(&u.header)) {
            return Some(at);
        }
        let mut headers = self.dwarf.units();
        let header = loop {
            let h = headers.next().ok()??;
            if holds(&h) {
                break h;
            }
            if h.debug_info_offset().is_some_and(|o| o.0 > offset.0) {
                return None;
            }
        };
        let unit = self.dwarf.unit(header).ok()?;
        if self.foreign.len() >= MAX_FOREIGN_UNITS {
            self.foreign.remove(0);
        }
        self.foreign.push(unit);
        Some(self.foreign.len() - 1)
    }
}

/// The path of file `index` in `unit`'s line program (the unit's directory,
/// the file's directory, the file's name: as addr2line renders them).
fn file_name(unit: &gimli::UnitRef<'_, Reader>, index: u64) -> Option<String> {
    let program = unit.line_program.as_ref()?;
    let header = program.header();
    let file = header.file(index)?;
    let mut path = unit
        .comp_dir
        .map(|d| d.to_string_lossy().into_owned())
        .unwrap_or_default();
    if file.directory_index() != 0
        && let Some(dir) = file.directory(header)
    {
        push_path(&mut path, &unit.attr_string(dir).ok()?.to_string_lossy());
    }
    push_path(
        &mut path,
        &unit.attr_string(file.path_name()).ok()?.to_string_lossy(),
    );
    Some(path)
}

/// Appends `part` to `path` (an absolute `part` replaces it).
fn push_path(path: &mut String, part: &str) {
    if part.starts_with('/') {
        *path = part.to_string();
    } else {
        if !path.is_empty() && !path.ends_with('/') {
            path.push('/');
        }
        path.push_str(part);
    }
}
