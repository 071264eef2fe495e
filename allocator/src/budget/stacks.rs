//! The stacks of the allocations a budget run made, as people read them:
//! symbolized with the `backtrace` crate after the run, with allocmeter's
//! own frames and the standard library's allocation machinery trimmed, so
//! that the first frame shown is the program's.

use std::fmt;

/// How many frames of one stack are shown, from the first of the program's.
const SHOWN_FRAMES: usize = 12;

/// The call stack of one allocation a budget run made (or of several with
/// the same stack), symbolized.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AllocationStack {
    /// How many of the kept allocations had this stack.
    pub count: u64,
    /// Their bytes, summed.
    pub bytes: u64,
    /// The frames, innermost first, from the first frame of the program
    /// (allocmeter's frames and the allocation machinery of `alloc`, `core`
    /// and `std` trimmed) up to the budget function that ran the code: each
    /// a function name, with `at file:line` when the debug info has it.
    pub frames: Vec<String>,
    /// Frames trimmed from the top.
    pub trimmed: usize,
}

impl fmt::Display for AllocationStack {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = if self.count == 1 { "" } else { "s" };
        writeln!(
            f,
            "{} allocation{s}, {} bytes ({} allocator frames trimmed):",
            self.count, self.bytes, self.trimmed
        )?;
        if self.frames.is_empty() {
            writeln!(f, "      (no symbols: build with debug info to see names)")?;
        }
        for frame in &self.frames {
            writeln!(f, "      {frame}")?;
        }
        Ok(())
    }
}

/// Paths of the allocation machinery: allocmeter, `alloc` (raw vectors,
/// boxes, strings, collections growing), the allocation parts of `core` and
/// `std`, the global allocator's shims, the unwinder.
const MACHINERY: [&str; 9] = [
    "allocmeter::",
    "alloc::",
    "core::alloc::",
    "std::alloc::",
    "__rust",
    "__rdl",
    "__rg_",
    "backtrace::",
    "_Unwind",
];

fn in_machinery(path: &str) -> bool {
    MACHINERY.iter().any(|p| path.starts_with(p))
}

/// Whether a function belongs to the allocation machinery. A trait method
/// `<Type as Trait>::f` does when its type is the machinery's and its trait
/// the standard library's (`<alloc::string::String as
/// core::convert::From<&str>>::from`), or its trait is the machinery's and
/// its type a generic parameter or a primitive (`<T as
/// alloc::slice::ConvertVec>::to_vec`); `<my::Req as Clone>::clone` and
/// `<my::Req as alloc::borrow::ToOwned>::to_owned` are the program's.
fn is_machinery(name: &str) -> bool {
    let Some(qualified) = name.strip_prefix('<') else {
        return in_machinery(name);
    };
    match qualified.split_once(" as ") {
        Some((ty, tr)) => {
            let ty = ty.trim_start_matches(['&', '[', '*']).trim_start_matches("mut ");
            let library = |path: &str| {
                in_machinery(path) || path.starts_with("core::") || path.starts_with("std::")
            };
            if in_machinery(ty) {
                library(tr)
            } else {
                in_machinery(tr) && !ty.contains("::")
            }
        }
        None => in_machinery(qualified),
    }
}

/// Frames of no interest between the program's and the budget function:
/// the `Fn*` trait shims that call closures.
fn is_shim(name: &str) -> bool {
    name.starts_with("core::ops::function::") || name.starts_with("<core::ops::function::")
}

/// Whether a function is the global allocator's entry: the shims the
/// compiler makes for `#[global_allocator]`, or a `GlobalAlloc` method.
fn is_entry(name: &str) -> bool {
    let last = name.rsplit("::").next().unwrap_or(name);
    ["__rust_alloc", "__rust_realloc", "__rg_", "__rdl_"]
        .iter()
        .any(|shim| last.starts_with(shim))
        || name.contains(" as core::alloc::global::GlobalAlloc>::")
}

/// Whether a frame is the budget function that ran the code: the stack
/// shown ends below it.
fn is_runner(name: &str) -> bool {
    name.strip_prefix('<')
        .unwrap_or(name)
        .starts_with("allocmeter::budget::")
}

/// One frame of a resolved address.
struct Resolved {
    /// The name, with `at file:line` when known.
    shown: String,
    /// Allocation machinery (see [`is_machinery`]).
    machinery: bool,
    /// A closure-calling shim (see [`is_shim`]), not shown.
    shim: bool,
    /// The budget function that ran the code (see [`is_runner`]).
    runner: bool,
    /// The global allocator's entry (see [`is_entry`]).
    entry: bool,
}

/// Names each address (inlined calls give several frames for one address).
fn resolve(address: usize) -> Vec<Resolved> {
    let mut out = Vec::new();
    // A return address points after the call: look up the call itself.
    let ip = address.saturating_sub(1) as *mut core::ffi::c_void;
    backtrace::resolve(ip, |symbol| {
        let Some(name) = symbol.name() else { return };
        let name = format!("{name:#}");
        let shown = match (symbol.filename(), symbol.lineno()) {
            (Some(file), Some(line)) => format!("{name} at {}:{line}", file.display()),
            _ => name.clone(),
        };
        out.push(Resolved {
            shown,
            machinery: is_machinery(&name),
            shim: is_shim(&name),
            runner: is_runner(&name),
            entry: is_entry(&name),
        });
    });
    out
}

/// Symbolizes the kept stacks (each an allocation's size and its return
/// addresses, innermost first), trims them, and merges equal ones in the
/// order they first came.
pub(crate) fn symbolize(raw: &[(usize, Vec<usize>)]) -> Vec<AllocationStack> {
    let mut merged: Vec<AllocationStack> = Vec::new();
    for (size, addresses) in raw {
        let resolved: Vec<Resolved> = addresses.iter().flat_map(|&a| resolve(a)).collect();
        // Everything down to the global allocator's entry is allocmeter's
        // (its cold path, the thread-local it reads, the capture itself).
        let entry = resolved.iter().rposition(|f| f.entry).map_or(0, |i| i + 1);
        let mut frames = Vec::new();
        let mut trimmed = entry;
        let mut in_program = false;
        for frame in &resolved[entry..] {
            // Below the budget function is the caller's test: the code
            // under budget ends there.
            if frame.runner && in_program {
                break;
            }
            if !in_program && frame.machinery {
                trimmed += 1;
                continue;
            }
            in_program = true;
            if !frame.shim && frames.len() < SHOWN_FRAMES {
                frames.push(frame.shown.clone());
            }
        }
        match merged.iter_mut().find(|s| s.frames == frames) {
            Some(same) => {
                same.count += 1;
                same.bytes += *size as u64;
            }
            None => merged.push(AllocationStack {
                count: 1,
                bytes: *size as u64,
                frames,
                trimmed,
            }),
        }
    }
    merged
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn machinery_is_allocmeter_alloc_and_the_shims() {
        for name in [
            "alloc::raw_vec::RawVec<T,A>::grow_one",
            "<alloc::vec::Vec<T,A> as core::clone::Clone>::clone",
            "alloc::alloc::exchange_malloc",
            "allocmeter::local::sampling_point",
            "<allocmeter::Instrumented<A> as core::alloc::global::GlobalAlloc>::alloc",
            "__rust_alloc",
            "__rdl_alloc",
        ] {
            assert!(is_machinery(name), "{name}");
        }
        assert!(is_machinery("<T as alloc::slice::<impl [T]>::to_vec_in::ConvertVec>::to_vec"));
        assert!(is_machinery("<alloc::string::String as core::convert::From<&str>>::from"));
        for name in [
            "my_service::handler",
            "<my_service::Req as Clone>::clone",
            "<my_service::Req as alloc::borrow::ToOwned>::to_owned",
            "main",
        ] {
            assert!(!is_machinery(name), "{name}");
            assert!(!is_entry(name), "{name}");
        }
        for name in [
            "__rustc::__rust_alloc",
            "__rust_realloc",
            "<allocmeter::instrumented::Instrumented<A> as core::alloc::global::GlobalAlloc>::alloc",
        ] {
            assert!(is_entry(name), "{name}");
        }
    }
}
