//! Turning code addresses into function names, files and lines, off the hot
//! path: in the renderers, on demand, cached, bounded, released when idle.
//! And what counts as allocation machinery rather than program code.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::objects::{
    MAX_INDEX_BYTES, MAX_PARSE_STEP_BYTES, MAX_PARSED_BYTES, MAX_SYMBOLS_BYTES, Objects,
};

/// One source-level frame at an address. An address inside inlined code has
/// several: innermost (the inlined callee) first, outermost caller last.
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize)]
pub struct Frame {
    /// Demangled function name, without the trailing hash (`::h0123…`).
    pub function: String,
    /// Source file, if the debug info names one.
    pub file: Option<String>,
    /// Line in `file`, if known.
    pub line: Option<u32>,
    /// The name as the object file has it (mangled), where it was found:
    /// the pprof profiles' `system_name`, so that pprof, seeing it differ
    /// from the demangled name, keeps `<T as Trait>::f` whole instead of
    /// stripping what lies between `<` and `>` as it does to names it
    /// takes for demangled C++. Not in the JSON reports.
    #[serde(skip)]
    pub(crate) system_name: Option<String>,
}

/// Everything known about one code address (a return address minus one, so
/// that it lies inside the call instruction).
#[derive(Clone, Debug)]
pub(crate) struct Location {
    /// Frames, innermost first; empty if the address could not be resolved.
    pub frames: Arc<[Frame]>,
}

/// Addresses to frames: the process's object files, mapped and parsed on
/// demand ([`Objects`]), and a cache of the answers.
///
/// Its memory is bounded: the cache holds at most [`MAX_CACHE_BYTES`], the
/// parsed compilation units at most [`MAX_PARSED_BYTES`] on the heap
/// (measured as they are parsed; beyond that the least recently used are
/// dropped and parsed again as needed), each file's index and symbols at
/// most [`MAX_INDEX_BYTES`] and [`MAX_SYMBOLS_BYTES`], and the mapped
/// files' pages are dropped from the resident set after each use
/// ([`Symbolizer::end_use`]). [`Symbolizer::release_if_idle`] drops the
/// parsed state and unmaps the files after a period without lookups.
///
/// A symbolizer made [`Symbolizer::disabled`] resolves nothing: every
/// address stands as itself.
pub(crate) struct Symbolizer {
    cache: HashMap<u64, Arc<[Frame]>>,
    capacity: usize,
    /// The cache's bytes, kept as entries come and go.
    cache_bytes: usize,
    /// `None` when symbolization is off.
    objects: Option<Objects>,
    /// When the last lookup was made.
    last_used: Instant,
}

/// The most bytes the cache of answers holds (then it starts over).
pub(crate) const MAX_CACHE_BYTES: usize = 8 << 20;

/// Longest function name and file path kept (longer ones are cut, at a
/// character boundary, with a trailing `…`).
const MAX_NAME_BYTES: usize = 2048;

/// Most frames kept for one address (inlining deeper than this is cut).
const MAX_FRAMES_PER_ADDRESS: usize = 64;

/// The most bytes one cached address can take: [`entry_bytes`] of the
/// longest names and the most frames.
const MAX_ENTRY_BYTES: usize = 48 + MAX_FRAMES_PER_ADDRESS * (64 + 3 * (MAX_NAME_BYTES + 3));

/// The bytes one cached address takes, roughly.
fn entry_bytes(frames: &[Frame]) -> usize {
    48 + frames
        .iter()
        .map(|f| {
            64 + f.function.len()
                + f.file.as_ref().map_or(0, String::len)
                + f.system_name.as_ref().map_or(0, String::len)
        })
        .sum::<usize>()
}

impl Symbolizer {
    /// A symbolizer caching at most `capacity` addresses and
    /// [`MAX_CACHE_BYTES`] (then the cache starts over). Maps nothing yet.
    pub fn new(capacity: usize) -> Self {
        Symbolizer {
            cache: HashMap::new(),
            capacity: capacity.max(1),
            cache_bytes: 0,
            objects: Some(Objects::new()),
            last_used: Instant::now(),
        }
    }

    /// A symbolizer that resolves nothing (profiles carry addresses only).
    pub fn disabled() -> Self {
        Symbolizer {
            objects: None,
            ..Symbolizer::new(1)
        }
    }

    /// Whether this symbolizer names addresses (it was not made
    /// [`Symbolizer::disabled`]).
    pub fn is_enabled(&self) -> bool {
        self.objects.is_some()
    }

    /// The most [`Symbolizer::approximate_bytes`] can be with one object
    /// file loaded (the program), apart from the mapped file's pages during
    /// a render (see [`Symbolizer::end_use`]). Each further file a stack
    /// runs through (a shared library) adds at most its index and symbols
    /// ([`MAX_INDEX_BYTES`] + [`MAX_SYMBOLS_BYTES`]).
    pub const fn max_bytes() -> usize {
        MAX_CACHE_BYTES
            + MAX_ENTRY_BYTES
            + MAX_PARSED_BYTES
            + MAX_PARSE_STEP_BYTES
            + MAX_INDEX_BYTES
            + MAX_SYMBOLS_BYTES
    }

    /// Resolves `address`.
    pub fn resolve(&mut self, address: u64) -> Location {
        if let Some(frames) = self.cache.get(&address) {
            return Location {
                frames: frames.clone(),
            };
        }
        let Some(objects) = &mut self.objects else {
            return Location {
                frames: Arc::from([]),
            };
        };
        self.last_used = Instant::now();
        let mut frames = objects.frames(address, MAX_FRAMES_PER_ADDRESS);
        for f in &mut frames {
            bound(&mut f.function);
            if let Some(file) = &mut f.file {
                bound(file);
            }
            if let Some(raw) = &mut f.system_name {
                bound(raw);
            }
        }
        let frames: Arc<[Frame]> = frames.into();
        let bytes = entry_bytes(&frames);
        if self.cache.len() >= self.capacity || self.cache_bytes + bytes > MAX_CACHE_BYTES {
            self.cache = HashMap::new();
            self.cache_bytes = 0;
        }
        self.cache.insert(address, frames.clone());
        self.cache_bytes += bytes;
        Location { frames }
    }

    /// Ends a use (a render): the mapped files' pages read meanwhile leave
    /// the resident set. The parsed state stays until
    /// [`Symbolizer::release_if_idle`].
    pub fn end_use(&mut self) {
        if let Some(objects) = &mut self.objects {
            objects.forget_pages();
        }
    }

    /// Drops the cache and the parsed debug info and unmaps the files if
    /// nothing was looked up for `idle`; returns whether it did.
    pub fn release_if_idle(&mut self, idle: Duration) -> bool {
        let loaded = self.objects.as_ref().is_some_and(Objects::is_loaded);
        if (!loaded && self.cache.is_empty()) || self.last_used.elapsed() < idle {
            return false;
        }
        self.cache = HashMap::new();
        self.cache_bytes = 0;
        if let Some(objects) = &mut self.objects {
            objects.release_parsed();
        }
        true
    }

    /// Bytes held: the cache, the parsed debug info, and the mapped files'
    /// bytes read since their pages were last dropped.
    pub fn approximate_bytes(&self) -> usize {
        self.cache_bytes + self.objects.as_ref().map_or(0, Objects::bytes)
    }
}

/// `s`, cut to at most [`MAX_NAME_BYTES`] (plus `…`) at a character
/// boundary.
fn bound(s: &mut String) {
    if s.len() > MAX_NAME_BYTES {
        let mut end = MAX_NAME_BYTES;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push('…');
    }
}

/// Whether `frame` belongs to the allocation machinery rather than to the
/// program: allocmeter itself, the global-allocator shims, and the standard
/// library's code that calls them (`alloc`, `core`, `std` and the crates
/// built into the standard library, such as `hashbrown`). Leading frames
/// like these are trimmed off a sampled stack, so that a call site is named
/// after the program's function that asked for the memory (as Go hides
/// `runtime.*` frames at the top of its heap profiles).
///
/// Where the frame's file is known, it decides: the toolchain's library
/// sources (`/rustc/<commit>/library/`, `/rust/deps/`) and allocmeter's own
/// (`allocmeter::profile::SOURCE_DIR`) are machinery however their
/// functions are named; an inlined frame may carry a bare name such as
/// `tick_clock`, and impls on references or slices
/// (`<&mut String as Write>`, `<[T]>::to_vec`) do not start with a crate
/// path. The name decides only what the file cannot: frames without debug
/// info, and the compiler's shims.
pub(crate) fn is_allocation_machinery(frame: &Frame) -> bool {
    let by_file = frame.file.as_deref().is_some_and(is_machinery_file);
    by_file || is_machinery_name(&frame.function)
}

/// Whether `file` is a source of the toolchain's libraries or of allocmeter.
pub(super) fn is_machinery_file(file: &str) -> bool {
    (file.starts_with("/rustc/") && file.contains("/library/"))
        || file.starts_with("/rust/deps/")
        || file.starts_with(allocmeter::profile::SOURCE_DIR)
}

/// Whether a function's demangled name says it is machinery: its path (or,
/// for `<Type as Trait>::f` with a type from no crate, such as `u8`, `&str`
/// or `T`, its trait's path) starts in allocmeter, the shims or the standard
/// library, or it is an inherent method of a slice or `str`.
fn is_machinery_name(function: &str) -> bool {
    const CRATES: &[&str] = &[
        "allocmeter::",
        "__rust",
        "__rg_",
        "alloc::",
        "core::",
        "std::",
        "hashbrown::",
        "backtrace::",
        // `<[T]>::to_vec`, `<str>::to_owned`: the standard library's.
        "[",
        "str>::",
    ];
    // `<&mut alloc::string::String as core::fmt::Write>::write_fmt`,
    // `<T as alloc::string::ToString>::to_string`,
    // `<u8 as <[_]>::to_vec_in::ConvertVec>::to_vec`: look at the type, or
    // at the trait when the type is not a path.
    let mut name = strip_prefix_punctuation(function);
    if let Some((ty, rest)) = name.split_once(" as ")
        && !strip_prefix_punctuation(ty).contains("::")
    {
        name = strip_prefix_punctuation(rest);
    }
    CRATES.iter().any(|c| name.starts_with(c))
}

/// `name` without the leading `<`, references and pointers that wrap the
/// type of a qualified path (`<&mut `, `<*const `, `<<`).
fn strip_prefix_punctuation(mut name: &str) -> &str {
    loop {
        let stripped = name
            .trim_start_matches(['<', '&', ' '])
            .trim_start_matches("mut ")
            .trim_start_matches("*const ")
            .trim_start_matches("*mut ")
            .trim_start_matches("dyn ");
        if stripped.len() == name.len() {
            return name;
        }
        name = stripped;
    }
}

/// Whether an address with these frames (innermost first) is program code:
/// it has a frame that is not machinery, and the function it lies in (the
/// outermost frame) is not allocmeter's. Code inlined into allocmeter's own
/// functions is allocmeter's however it is named: under
/// `debug = "line-tables-only"` the unwinder's `trace`, inlined into the
/// stack capture, carries a bare name and the file of a crate in the cargo
/// registry. Unresolved addresses count as program code: better shown than
/// dropped.
pub(crate) fn is_program_address(frames: &[Frame]) -> bool {
    match frames.last() {
        None => true,
        Some(outer) if is_allocmeter_frame(outer) => false,
        Some(_) => frames.iter().any(|f| !is_allocation_machinery(f)),
    }
}

/// Whether `frame` is allocmeter's own code, by its file or its name.
fn is_allocmeter_frame(frame: &Frame) -> bool {
    frame
        .file
        .as_deref()
        .is_some_and(|f| f.starts_with(allocmeter::profile::SOURCE_DIR))
        || strip_prefix_punctuation(&frame.function).starts_with("allocmeter::")
}

/// The frames of one address without the machinery inlined into program
/// code: leading (innermost) machinery frames are dropped as long as a program
/// frame remains, so that `Vec::with_capacity` inlined into `handler` shows as
/// `handler`.
pub(crate) fn program_frames(frames: &[Frame]) -> &[Frame] {
    match frames.iter().position(|f| !is_allocation_machinery(f)) {
        Some(i) => &frames[i..],
        None => frames,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[inline(never)]
    fn a_known_function() -> usize {
        std::hint::black_box(a_known_function as *const () as usize)
    }

    #[test]
    fn resolves_a_function_of_this_binary_and_caches_it() {
        let address = a_known_function() as u64 + 1;
        let mut s = Symbolizer::new(10);
        let first = s.resolve(address);
        assert!(
            first
                .frames
                .iter()
                .any(|f| f.function.ends_with("a_known_function")),
            "{:?}",
            first.frames
        );
        assert!(
            first.frames[0]
                .file
                .as_deref()
                .unwrap_or("")
                .ends_with("symbolize.rs")
        );
        let again = s.resolve(address);
        assert!(
            Arc::ptr_eq(&first.frames, &again.frames),
            "second lookup hits the cache"
        );
        assert!(s.approximate_bytes() > 0);
    }

    #[test]
    fn the_cache_stays_bounded() {
        let mut s = Symbolizer::new(3);
        for a in 0..10u64 {
            s.resolve(a);
            assert!(s.cache.len() <= 3);
        }
    }

    #[test]
    fn inlined_machinery_is_dropped_from_program_addresses_only() {
        let f = |name: &str| Frame {
            function: name.to_string(),
            file: None,
            line: None,
            system_name: None,
        };
        let inlined = [
            f("alloc::vec::Vec<T>::with_capacity"),
            f("demo::build_report"),
            f("demo::main"),
        ];
        assert_eq!(program_frames(&inlined), &inlined[1..]);
        let machinery = [
            f("alloc::raw_vec::finish_grow"),
            f("alloc::raw_vec::grow_one"),
        ];
        assert_eq!(program_frames(&machinery), &machinery[..]);
        assert!(program_frames(&[]).is_empty());
    }

    #[test]
    fn machinery_is_told_from_program_code() {
        for m in [
            "allocmeter::local::take_sample",
            "<allocmeter::Instrumented<A> as core::alloc::global::GlobalAlloc>::alloc",
            "__rust_alloc",
            "alloc::raw_vec::finish_grow",
            "<alloc::vec::Vec<T> as core::clone::Clone>::clone",
            "<T as alloc::string::ToString>::to_string",
            "hashbrown::raw::RawTable<T,A>::reserve_rehash",
            "std::collections::hash::map::HashMap<K,V,S>::insert",
            "core::ptr::drop_in_place<x::Y>",
            // Impls on references, slices and `str`, as the standard
            // library's allocation paths name them without debug info.
            "<&mut alloc::string::String as core::fmt::Write>::write_fmt::SpecWriteFmt>::spec_write_fmt",
            "<u8 as <[_]>::to_vec_in::ConvertVec>::to_vec",
            "<&str as <std::ffi::os_str::OsString>::push::SpecPushTo>::spec_push_to",
            "<[T]>::to_vec",
        ] {
            assert!(is_machinery_name(m), "{m}");
        }
        for p in [
            "demo::build_report",
            "<demo::Report as core::fmt::Display>::fmt",
            "my_service::handler",
            "alloctest::main",
            "<&mut my_service::Buffer as core::fmt::Write>::write_str",
        ] {
            assert!(!is_machinery_name(p), "{p}");
        }
    }

    #[test]
    fn code_inlined_into_allocmeter_is_allocmeter_s() {
        let at = |function: &str, file: &str| Frame {
            function: function.to_string(),
            file: Some(file.to_string()),
            line: Some(1),
            system_name: None,
        };
        let capture = at(
            "capture",
            &format!("{}stack.rs", allocmeter::profile::SOURCE_DIR),
        );
        let trace = at(
            "trace",
            "/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/backtrace-0.3.77/src/backtrace/libunwind.rs",
        );
        assert!(!is_program_address(&[trace.clone(), capture]));
        let handler = at("handler", "/home/dev/service/src/main.rs");
        assert!(is_program_address(&[trace, handler.clone()]));
        let grow = at(
            "finish_grow",
            "/rustc/59807616e1fa2540724bfbac14d7976d7e4a3860/library/alloc/src/raw_vec.rs",
        );
        assert!(is_program_address(&[grow.clone(), handler]));
        assert!(!is_program_address(&[grow]));
        assert!(is_program_address(&[]));
    }

    #[test]
    fn the_frame_s_file_decides_whatever_its_name() {
        let at = |function: &str, file: &str| Frame {
            function: function.to_string(),
            file: Some(file.to_string()),
            line: Some(1),
            system_name: None,
        };
        // Inlined frames under `debug = "line-tables-only"` carry bare names.
        let ours = format!("{}local.rs", allocmeter::profile::SOURCE_DIR);
        assert!(is_allocation_machinery(&at("tick_clock", &ours)));
        let library = "/rustc/59807616e1fa2540724bfbac14d7976d7e4a3860/library/alloc/src/fmt.rs";
        assert!(is_allocation_machinery(&at("format_inner", library)));
        assert!(is_allocation_machinery(&at(
            "reserve_rehash",
            "/rust/deps/hashbrown-0.15.5/src/raw/mod.rs"
        )));
        assert!(!is_allocation_machinery(&at(
            "build_report",
            "/home/dev/service/src/report.rs"
        )));
        // Without a file, the name decides.
        let bare = |function: &str| Frame {
            function: function.to_string(),
            file: None,
            line: None,
            system_name: None,
        };
        assert!(is_allocation_machinery(&bare(
            "alloc::fmt::format::format_inner"
        )));
        assert!(!is_allocation_machinery(&bare("service::build_report")));
    }
}
