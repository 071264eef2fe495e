//! The loaded objects' debug info: each object file (the program, a shared
//! library) mapped read-only and parsed lazily, for [`Symbolizer`] to look
//! addresses up in.
//!
//! Owns: [`Objects`] (the mapped files, their indexes of compilation units,
//! the units parsed, the symbol tables, and the bytes they hold). Reads files with `open` and `mmap`; takes
//! no lock, starts no thread, and keeps no global state, so a fork at any
//! instant leaves nothing held in the child (the renderer that owns the
//! symbolizer resets it there).
//!
//! [`Symbolizer`]: super::Symbolizer

use std::fs::File;
use std::os::fd::AsRawFd;

use gimli::Section;
use object::{Object, ObjectSection, ObjectSymbol, SymbolKind};

use super::Frame;
use super::dwarf::UnitWalk;
use super::mappings::{Mapping, Segment, current_segments};
use super::symbolize::is_machinery_file;

/// The DWARF reader over a mapped file's bytes.
pub(super) type Reader = gimli::EndianSlice<'static, gimli::RunTimeEndian>;

/// A file mapped read-only (`PROT_READ`, `MAP_PRIVATE`), unmapped on drop.
struct Mapped {
    ptr: *mut libc::c_void,
    len: usize,
}

// SAFETY: the mapping is read-only memory owned by this value; reading it
// from any thread is sound.
unsafe impl Send for Mapped {}

impl Mapped {
    /// Maps `path` whole, or `None` if it cannot be opened or mapped.
    fn open(path: &str) -> Option<Mapped> {
        let file = File::open(path).ok()?;
        let len = usize::try_from(file.metadata().ok()?.len()).ok()?;
        if len == 0 {
            return None;
        }
        // SAFETY: a fresh private, read-only mapping of an open file; the
        // kernel picks the address. The file may change under it (a
        // rebuilt binary): reads then see other bytes, which the parsers
        // check like any input, but never fault inside the file's length
        // unless it is truncated, which a running binary's file is not.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_PRIVATE,
                file.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return None;
        }
        Some(Mapped { ptr, len })
    }

    /// The file's bytes, for as long as the parsers that borrow them live
    /// (see [`Loaded`]: they are dropped before the mapping).
    fn bytes(&self) -> &'static [u8] {
        // SAFETY: `ptr..ptr+len` is mapped readable until `drop`; `Loaded`
        // drops everything that borrows these bytes before it drops `self`,
        // and nothing borrowed leaves the symbolizer (names are copied out).
        unsafe { std::slice::from_raw_parts(self.ptr.cast::<u8>(), self.len) }
    }

    /// Drops the pages read so far from the process's resident set (they
    /// stay in the page cache; reading them again faults them back in).
    fn forget_pages(&self) {
        // SAFETY: advising our own private read-only mapping; MADV_DONTNEED
        // on it discards nothing that cannot be read again from the file.
        unsafe { libc::madvise(self.ptr, self.len, libc::MADV_DONTNEED) };
    }
}

impl Drop for Mapped {
    fn drop(&mut self) {
        // SAFETY: our own mapping, unmapped once; nothing borrows it any
        // more (see `bytes`).
        unsafe { libc::munmap(self.ptr, self.len) };
    }
}

/// One function symbol: start address (the file's), size, name (mangled).
struct Symbol {
    address: u64,
    size: u64,
    name: &'static str,
}

/// The code one compilation unit covers: a span of the file's addresses
/// (its functions' ranges, adjacent ones joined), and where the unit lies in
/// `.debug_info`.
#[derive(Clone, Copy)]
struct UnitSpan {
    begin: u64,
    end: u64,
    /// The largest `end` of this span and every span before it in the
    /// index: units' code can interleave, so a lookup walks back from the
    /// last span starting at or before the address until none reaches it.
    reach: u64,
    offset: usize,
    len: usize,
}

/// One compilation unit parsed: an addr2line context over that unit alone,
/// the unit's entries indexed for the lookups addr2line cannot answer
/// alone (built on the first such lookup; `Some(None)` if it could not
/// be), and the heap they hold.
struct ParsedUnit {
    offset: usize,
    context: addr2line::Context<Reader>,
    walk: Option<Option<UnitWalk>>,
    bytes: usize,
}

/// One object file, mapped and (lazily) parsed. Field order matters: the
/// parsed state borrows the mapping's bytes and is dropped first.
///
/// The DWARF is parsed a compilation unit at a time: at load, an index of
/// which unit covers which addresses (each unit's header and root read, and
/// let go); at a lookup, the unit that covers the address (its
/// abbreviations, and its functions and line table as addr2line parses
/// them), kept for the next lookups in it and dropped, least recently used
/// first, when the parsed units exceed their share of the budget.
struct Loaded {
    /// Parsed units, least recently used first.
    units: Vec<ParsedUnit>,
    /// Which unit covers which code, sorted by `begin`.
    index: Vec<UnitSpan>,
    /// Function symbols sorted by address (the symbol table, or the dynamic
    /// one when the file is stripped); built on the first address DWARF
    /// does not name.
    symbols: Option<Vec<Symbol>>,
    /// The parsed ELF headers (they borrow `map`).
    file: object::File<'static>,
    /// Heap held by `index` and `symbols`.
    fixed_bytes: usize,
    /// The file, mapped.
    map: Mapped,
}

/// An object file the process has loaded, as found in its mappings.
struct ObjectFile {
    /// The runtime address range of its executable segments.
    start: u64,
    limit: u64,
    /// Runtime address minus the file's virtual address.
    bias: u64,
    /// Its path.
    path: String,
    /// The mapped, parsed file: `None` until first needed, and again after
    /// [`Objects::release_parsed`]; `Err` once it could not be read.
    loaded: Option<Result<Loaded, ()>>,
}

/// The process's object files and their parsed debug info.
pub(crate) struct Objects {
    files: Vec<ObjectFile>,
    /// Whether the mappings have been read (once per load, again after a
    /// release, so that libraries loaded since are found).
    scanned: bool,
    /// Bytes of the mapped files read since the last [`Objects::forget_pages`]
    /// (an upper bound: the lengths mapped).
    mapped_bytes: usize,
}

/// The heap the parsed compilation units may hold: once a lookup leaves
/// more, the least recently used units are dropped (the answers already
/// found stay cached) and parsed again as needed.
pub(crate) const MAX_PARSED_BYTES: usize = 6 << 20;

/// The most heap one file's index of compilation units takes (spans beyond
/// it are left out: their addresses are named from the symbol table).
pub(crate) const MAX_INDEX_BYTES: usize = 4 << 20;

/// The most heap one file's function symbols take (symbols beyond it are
/// left out).
pub(crate) const MAX_SYMBOLS_BYTES: usize = 4 << 20;

/// What one lookup may add to the parsed units beyond [`MAX_PARSED_BYTES`]
/// before they are dropped: one compilation unit's functions and line
/// table. An allowance for the bound, not a hard limit: a unit is parsed
/// whole, whatever its size.
pub(crate) const MAX_PARSE_STEP_BYTES: usize = 4 << 20;

impl Objects {
    /// Nothing mapped or parsed yet.
    pub fn new() -> Self {
        Objects {
            files: Vec::new(),
            scanned: false,
            mapped_bytes: 0,
        }
    }

    /// The frames at `address` (innermost first), or none if no loaded
    /// object with debug info or symbols covers it. At most `max_frames`.
    pub fn frames(&mut self, address: u64, max_frames: usize) -> Vec<Frame> {
        if !self.scanned {
            self.scan();
        }
        let Some(file) = self
            .files
            .iter_mut()
            .find(|f| (f.start..f.limit).contains(&address))
        else {
            return Vec::new();
        };
        let probe = address.wrapping_sub(file.bias);
        if file.loaded.is_none() {
            // What an open keeps is measured and counted by `Loaded` itself.
            let loaded = Loaded::open(&file.path);
            if let Some(l) = &loaded {
                self.mapped_bytes += l.map.len;
            }
            file.loaded = Some(loaded.ok_or(()));
        }
        let frames = match &mut file.loaded {
            Some(Ok(loaded)) => loaded.frames(probe, max_frames),
            _ => Vec::new(),
        };
        // Parsed units beyond the budget go, least recently used first; the
        // indexes and symbol tables stay (they have bounds of their own).
        let mut excess = self
            .files
            .iter()
            .filter_map(|f| match &f.loaded {
                Some(Ok(loaded)) => Some(loaded.unit_bytes()),
                _ => None,
            })
            .sum::<usize>()
            .saturating_sub(MAX_PARSED_BYTES);
        for f in &mut self.files {
            if excess == 0 {
                break;
            }
            if let Some(Ok(loaded)) = &mut f.loaded {
                let before = loaded.unit_bytes();
                loaded.shrink_units_to(before.saturating_sub(excess));
                excess = excess.saturating_sub(before - loaded.unit_bytes());
            }
        }
        frames
    }

    /// Heap the parsed state holds.
    fn parsed_bytes(&self) -> usize {
        self.files
            .iter()
            .filter_map(|f| match &f.loaded {
                Some(Ok(loaded)) => Some(loaded.bytes()),
                _ => None,
            })
            .sum()
    }

    /// Drops every parsed state and unmaps every file (what is looked up
    /// next maps and parses again).
    pub fn release_parsed(&mut self) {
        self.files = Vec::new();
        self.scanned = false;
        self.mapped_bytes = 0;
    }

    /// Drops the pages of the mapped files from the resident set.
    pub fn forget_pages(&mut self) {
        if self.mapped_bytes == 0 {
            return;
        }
        for file in &self.files {
            if let Some(Ok(loaded)) = &file.loaded {
                loaded.map.forget_pages();
            }
        }
        self.mapped_bytes = 0;
    }

    /// Bytes held: the parsed state's heap, and the mapped files' bytes
    /// that may be resident (the lengths of those read since their pages
    /// were last dropped).
    pub fn bytes(&self) -> usize {
        self.parsed_bytes() + self.mapped_bytes
    }

    /// Whether anything is mapped or parsed.
    pub fn is_loaded(&self) -> bool {
        self.files.iter().any(|f| f.loaded.is_some())
    }

    /// Reads the process's executable mappings into `files` (one per object
    /// file, spanning its executable segments).
    fn scan(&mut self) {
        self.scanned = true;
        let mut files: Vec<ObjectFile> = Vec::new();
        for segment in current_segments() {
            let Segment {
                mapping:
                    Mapping {
                        memory_start,
                        memory_limit,
                        filename,
                        ..
                    },
                load_bias,
            } = segment;
            if filename.is_empty() || !filename.starts_with('/') {
                continue; // the vDSO, and anything without a path
            }
            match files
                .iter_mut()
                .find(|f| f.path == filename && f.bias == load_bias)
            {
                Some(f) => {
                    f.start = f.start.min(memory_start);
                    f.limit = f.limit.max(memory_limit);
                }
                None => files.push(ObjectFile {
                    start: memory_start,
                    limit: memory_limit,
                    bias: load_bias,
                    path: filename,
                    loaded: None,
                }),
            }
        }
        self.files = files;
    }
}

impl Loaded {
    /// Maps `path` and indexes which compilation unit covers which code.
    fn open(path: &str) -> Option<Loaded> {
        let map = Mapped::open(path)?;
        let (opened, used) = allocmeter::try_measure(|| {
            let file = object::File::parse(map.bytes()).ok()?;
            let index = load_dwarf(&file).map_or_else(Vec::new, |dwarf| unit_index(&dwarf));
            Some((file, index))
        });
        let (file, index) = opened?;
        Some(Loaded {
            units: Vec::new(),
            fixed_bytes: net(&used),
            index,
            symbols: None,
            file,
            map,
        })
    }

    /// Heap held: the index, the symbols, the parsed units.
    fn bytes(&self) -> usize {
        self.fixed_bytes + self.unit_bytes()
    }

    /// Heap held by the parsed units.
    fn unit_bytes(&self) -> usize {
        self.units.iter().map(|u| u.bytes).sum()
    }

    /// Drops parsed units, least recently used first, until they hold at
    /// most `bytes` (or none is left).
    fn shrink_units_to(&mut self, bytes: usize) {
        let mut held = self.unit_bytes();
        let mut drop_n = 0;
        while held > bytes && drop_n < self.units.len() {
            held -= self.units[drop_n].bytes;
            drop_n += 1;
        }
        self.units.drain(..drop_n);
    }

    /// The frames at `probe` (the file's virtual address): from the DWARF of
    /// the unit that covers it, with the symbol table's name for the
    /// outermost frame where DWARF has none.
    fn frames(&mut self, probe: u64, max_frames: usize) -> Vec<Frame> {
        let mut frames = Vec::new();
        if let Some(unit) = self.unit_for(probe) {
            let file = &self.file;
            let parsed = &mut self.units[unit];
            let ((), used) = allocmeter::try_measure(|| {
                frames = addr2line_frames(&parsed.context, probe, max_frames).unwrap_or_default();
                if !frames.is_empty() {
                    return;
                }
                // addr2line could not name the frames here: a function's
                // name in another unit (the unit is parsed alone), which
                // the unit's own entries lead to.
                let Some(dwarf) = load_dwarf(file) else {
                    return;
                };
                let walk = parsed
                    .walk
                    .get_or_insert_with(|| UnitWalk::new(&dwarf, parsed.offset));
                let innermost = parsed
                    .context
                    .find_location(probe)
                    .ok()
                    .flatten()
                    .map_or((None, None), |l| (l.file.map(str::to_string), l.line));
                frames = match walk {
                    Some(walk) => walk.frames(&dwarf, probe, innermost.clone(), max_frames),
                    None => Vec::new(),
                };
                if frames.is_empty() {
                    // No function of the unit covers `probe`: the line
                    // table's innermost line, if it is the program's own.
                    if let (Some(file), line) = innermost
                        && !is_machinery_file(&file)
                    {
                        frames.push(Frame {
                            function: String::new(),
                            file: Some(file),
                            line,
                            system_name: None,
                        });
                    }
                }
            });
            // What stays is the unit's parse; the frames are the caller's.
            parsed.bytes += net(&used).saturating_sub(frames_bytes(&frames));
        }
        let unnamed = frames.last().is_none_or(|f| f.function.is_empty());
        if unnamed && let Some((name, raw)) = self.symbol_name(probe) {
            match frames.last_mut() {
                Some(outer) => {
                    outer.function = name;
                    outer.system_name = Some(raw);
                }
                None => frames.push(Frame {
                    function: name,
                    file: None,
                    line: None,
                    system_name: Some(raw),
                }),
            }
        }
        // A frame DWARF could not name stands as "??" rather than as nothing.
        for f in &mut frames {
            if f.function.is_empty() {
                f.function.push_str("??");
            }
        }
        frames
    }

    /// The parsed unit covering `probe` (parsed now if needed, and made the
    /// most recently used), as an index into `units`.
    fn unit_for(&mut self, probe: u64) -> Option<usize> {
        let mut i = self.index.partition_point(|s| s.begin <= probe);
        let span = loop {
            i = i.checked_sub(1)?;
            let span = self.index[i];
            if span.reach <= probe {
                return None;
            }
            if probe < span.end {
                break span;
            }
        };
        if let Some(at) = self.units.iter().position(|u| u.offset == span.offset) {
            let unit = self.units.remove(at);
            self.units.push(unit);
            return Some(self.units.len() - 1);
        }
        let (context, used) = allocmeter::try_measure(|| {
            // The unit alone: `.debug_info` cut to it (its references are
            // unit-relative; the other sections stay whole).
            let mut dwarf = load_dwarf(&self.file)?;
            let info = dwarf.debug_info.reader().slice();
            let unit = info.get(span.offset..span.offset.checked_add(span.len)?)?;
            let endian = gimli::Reader::endian(dwarf.debug_info.reader());
            dwarf.debug_info = gimli::DebugInfo::new(unit, endian);
            // `.debug_aranges` names units by their offset in the whole
            // section: in the cut one they would find the wrong unit's
            // ranges (the unit's own are read from its root instead).
            dwarf.debug_aranges = gimli::DebugAranges::new(&[], endian);
            addr2line::Context::from_dwarf(dwarf).ok()
        });
        self.units.push(ParsedUnit {
            offset: span.offset,
            context: context?,
            walk: None,
            bytes: net(&used),
        });
        Some(self.units.len() - 1)
    }

    /// The name of the function symbol covering `probe`: demangled, and as
    /// the symbol table has it.
    fn symbol_name(&mut self, probe: u64) -> Option<(String, String)> {
        let map = &self.map;
        if self.symbols.is_none() {
            let (symbols, used) = allocmeter::try_measure(|| read_symbols(map.bytes()));
            self.fixed_bytes += net(&used);
            self.symbols = Some(symbols);
        }
        let symbols = self.symbols.as_ref()?;
        let i = symbols
            .partition_point(|s| s.address <= probe)
            .checked_sub(1)?;
        let s = &symbols[i];
        (probe < s.address.saturating_add(s.size.max(1)))
            .then(|| (demangled(s.name), s.name.to_string()))
    }
}

/// The DWARF sections of `file` (slices of its mapping; empty where
/// missing). Compressed sections are not read (they would be copied out
/// whole); rustc and the usual linkers do not compress.
fn load_dwarf(file: &object::File<'static>) -> Option<gimli::Dwarf<Reader>> {
    let endian = if file.is_little_endian() {
        gimli::RunTimeEndian::Little
    } else {
        gimli::RunTimeEndian::Big
    };
    let load = |id: gimli::SectionId| -> Result<Reader, ()> {
        let bytes = file
            .section_by_name(id.name())
            .and_then(|s| match s.compressed_data() {
                Ok(c) if c.format == object::CompressionFormat::None => s.data().ok(),
                _ => None,
            })
            .unwrap_or(&[]);
        Ok(gimli::EndianSlice::new(bytes, endian))
    };
    gimli::Dwarf::load(load).ok()
}

/// The frames at `probe` as addr2line finds them in `context` (innermost
/// first, at most `max_frames`), or `None` if it fails on the way.
fn addr2line_frames(
    context: &addr2line::Context<Reader>,
    probe: u64,
    max_frames: usize,
) -> Option<Vec<Frame>> {
    let mut frames = Vec::new();
    let mut iter = context.find_frames(probe).skip_all_loads().ok()?;
    while let Some(frame) = iter.next().ok()? {
        if frames.len() >= max_frames {
            break;
        }
        let raw = frame
            .function
            .as_ref()
            .and_then(|name| name.raw_name().ok())
            .map(|raw| raw.into_owned());
        let function = raw.as_deref().map(demangled);
        let (file, line) = match &frame.location {
            Some(loc) => (loc.file.map(str::to_string), loc.line),
            None => (None, None),
        };
        frames.push(Frame {
            function: function.unwrap_or_default(),
            file,
            line,
            system_name: raw,
        });
    }
    Some(frames)
}

/// Heap bytes a measured step kept (allocated less freed); 0 when nothing
/// was measured (allocmeter is not the global allocator).
fn net(used: &Option<allocmeter::ThreadStats>) -> usize {
    let Some(used) = used else { return 0 };
    usize::try_from(used.alloc_bytes.saturating_sub(used.free_bytes)).unwrap_or(usize::MAX)
}

/// Heap bytes `frames` hold.
fn frames_bytes(frames: &Vec<Frame>) -> usize {
    frames.capacity() * std::mem::size_of::<Frame>()
        + frames
            .iter()
            .map(|f| {
                f.function.capacity()
                    + f.file.as_ref().map_or(0, String::capacity)
                    + f.system_name.as_ref().map_or(0, String::capacity)
            })
            .sum::<usize>()
}

/// Which compilation unit covers which code: every unit's address ranges
/// (from its root entry), adjacent ranges of a unit joined, sorted by
/// start. Each unit's abbreviations and line program header are read and
/// let go.
fn unit_index(dwarf: &gimli::Dwarf<Reader>) -> Vec<UnitSpan> {
    let mut index = Vec::new();
    let mut headers = dwarf.units();
    let mut ranges: Vec<(u64, u64)> = Vec::new();
    while let Ok(Some(header)) = headers.next() {
        let Some(offset) = header.debug_info_offset() else {
            continue;
        };
        let len = header.length_including_self();
        let Ok(unit) = dwarf.unit(header) else {
            continue;
        };
        if index.len() >= MAX_INDEX_BYTES / std::mem::size_of::<UnitSpan>() {
            break;
        }
        ranges.clear();
        if let Ok(mut iter) = dwarf.unit_ranges(&unit) {
            while let Ok(Some(r)) = iter.next() {
                if r.begin < r.end {
                    ranges.push((r.begin, r.end));
                }
            }
        }
        ranges.sort_unstable();
        let mut spans = ranges.iter().copied();
        let Some(mut current) = spans.next() else {
            continue;
        };
        let mut push = |(begin, end): (u64, u64)| {
            index.push(UnitSpan {
                begin,
                end,
                reach: end,
                offset: offset.0,
                len,
            });
        };
        for (begin, end) in spans {
            // Joined across alignment padding only, so that a span never
            // covers another unit's code.
            if begin <= current.1.saturating_add(16) {
                current.1 = current.1.max(end);
            } else {
                push(current);
                current = (begin, end);
            }
        }
        push(current);
    }
    index.sort_unstable_by_key(|s| s.begin);
    let mut reach = 0;
    for span in &mut index {
        reach = reach.max(span.end);
        span.reach = reach;
    }
    index.shrink_to_fit();
    index
}

/// The function symbols of an ELF file, sorted by address: its symbol
/// table, or the dynamic symbol table if it was stripped.
fn read_symbols(data: &'static [u8]) -> Vec<Symbol> {
    let Ok(file) = object::File::parse(data) else {
        return Vec::new();
    };
    let mut out = text_symbols(file.symbols());
    if out.is_empty() {
        out = text_symbols(file.dynamic_symbols());
    }
    out.sort_unstable_by_key(|s| s.address);
    out
}

/// The function symbols among `symbols` (their names borrow the mapped file).
fn text_symbols<'file>(
    symbols: impl Iterator<Item = impl ObjectSymbol<'static> + 'file>,
) -> Vec<Symbol> {
    symbols
        .filter(|s| s.kind() == SymbolKind::Text && s.address() != 0)
        .take(MAX_SYMBOLS_BYTES / std::mem::size_of::<Symbol>())
        .filter_map(|s| {
            Some(Symbol {
                address: s.address(),
                size: s.size(),
                name: s.name().ok()?,
            })
        })
        .collect()
}

/// `name` demangled (Rust's legacy and v0 manglings), without the hash
/// suffix; other names as they are.
pub(super) fn demangled(name: &str) -> String {
    match rustc_demangle::try_demangle(name) {
        Ok(d) => format!("{d:#}"),
        Err(_) => name.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every unit of this test binary (a debug build: rustc's codegen units
    /// refer to each other's entries with `DW_FORM_ref_addr`), probed at
    /// points across its code: the frames found a unit at a time are those
    /// a whole-file addr2line context gives (names of every inlined level,
    /// files, lines), including where addr2line over the unit alone fails.
    #[test]
    fn frames_match_a_whole_file_context() {
        let mut loaded = Loaded::open("/proc/self/exe").expect("maps the test binary");
        let whole = addr2line::Context::from_dwarf(load_dwarf(&loaded.file).expect("has DWARF"))
            .expect("parses the whole file");
        // Dead code the linker dropped keeps its ranges at address 0.
        let code: Vec<(u64, u64)> = loaded
            .file
            .sections()
            .filter(|s| s.kind() == object::SectionKind::Text)
            .map(|s| (s.address(), s.address() + s.size()))
            .collect();
        let spans = loaded.index.clone();
        let (mut compared, mut cut_failed) = (0, 0);
        let mut wrong = Vec::new();
        for span in &spans {
            for step in 0..8 {
                let probe = span.begin + (span.end - span.begin) * step / 8;
                if !code.iter().any(|(b, e)| (*b..*e).contains(&probe)) {
                    continue;
                }
                let Some(want) = addr2line_frames(&whole, probe, 128) else {
                    continue;
                };
                if want.is_empty() || want.iter().any(|f| f.function.is_empty()) {
                    continue;
                }
                let unit = loaded.unit_for(probe).expect("the index covers it");
                if addr2line_frames(&loaded.units[unit].context, probe, 128).is_none() {
                    cut_failed += 1;
                }
                let got = loaded.frames(probe, 128);
                compared += 1;
                if got != want && wrong.len() < 5 {
                    wrong.push(format!("{probe:#x}:\n  got  {got:?}\n  want {want:?}"));
                }
            }
        }
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
        assert!(compared > 1000, "{compared} addresses compared");
        assert!(
            cut_failed > 0,
            "no address needed an entry in another unit ({compared} compared)"
        );
        eprintln!("{compared} addresses compared, {cut_failed} beyond addr2line over one unit");
    }
}
