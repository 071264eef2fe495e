//! Allocation budgets as assertions: [`check_allocs`] and
//! [`assert_allocs_at_most`], and the [`assert_allocs!`](crate::assert_allocs)
//! and [`assert_no_allocs!`](crate::assert_no_allocs) macros over them. A
//! failure names the budget, what the code did, and where it allocated.

use std::fmt;

use crate::{Reallocs, installed};

use super::recorder::{BudgetMode, MAX_STACKS, Recorder};
use super::stacks::{self, AllocationStack};

/// An allocation budget was exceeded: what the code did, and the stacks of
/// its allocations. Its `Display` is the failure message of
/// [`assert_allocs!`](crate::assert_allocs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BudgetExceeded {
    /// The code under budget, as written (empty for the function forms).
    pub code: &'static str,
    /// The budget: at most this many allocations.
    pub at_most: u64,
    /// Allocations made (each realloc is one).
    pub allocs: u64,
    /// Bytes allocated (each realloc adds its new size).
    pub alloc_bytes: u64,
    /// Frees made (each realloc is one).
    pub frees: u64,
    /// Bytes freed.
    pub free_bytes: u64,
    /// Reallocs, by kind.
    pub reallocs: Reallocs,
    /// The highest the thread's live bytes went above their level at the
    /// start.
    pub peak_live_bytes: u64,
    /// The stacks of the first [`MAX_STACKS`](crate::budget_max_stacks)
    /// allocations, equal stacks merged, in the order they first came.
    pub stacks: Vec<AllocationStack>,
    /// Allocations past the first `MAX_STACKS`, whose stacks were not kept.
    pub not_kept: u64,
}

impl fmt::Display for BudgetExceeded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let code = if self.code.is_empty() {
            String::from("the code")
        } else {
            format!("`{}`", self.code)
        };
        writeln!(
            f,
            "allocation budget exceeded: {code} made {} allocations, at most {} allowed",
            self.allocs, self.at_most
        )?;
        let r = &self.reallocs;
        writeln!(
            f,
            "  allocated {} blocks ({} bytes), freed {} ({} bytes), reallocs {} \
             (grown in place {}, shrunk in place {}, moved {}), peak live {} bytes",
            self.allocs,
            self.alloc_bytes,
            self.frees,
            self.free_bytes,
            r.total(),
            r.grown_in_place,
            r.shrunk_in_place,
            r.moved,
            self.peak_live_bytes
        )?;
        writeln!(f, "  where it allocated (innermost program frame first):")?;
        for (i, stack) in self.stacks.iter().enumerate() {
            write!(f, "  #{} {stack}", i + 1)?;
        }
        if self.not_kept > 0 {
            writeln!(
                f,
                "  and {} more allocations whose stacks were not kept (the first {} are)",
                self.not_kept, MAX_STACKS
            )?;
        }
        Ok(())
    }
}

impl std::error::Error for BudgetExceeded {}

/// Runs `f` once on the calling thread and checks that it made at most
/// `at_most` allocations (each realloc is one), counting exactly as
/// [`measure`](crate::measure) does. `Ok` holds `f`'s result; the `Err`
/// says what `f` did and where it allocated (its result is dropped).
///
/// ```
/// # use std::alloc::System;
/// # #[global_allocator]
/// # static GLOBAL: allocmeter::Instrumented<System> = allocmeter::Instrumented::new(System);
/// let err = allocmeter::check_allocs(0, || std::hint::black_box(vec![1u8, 2, 3]))
///     .unwrap_err();
/// assert_eq!((err.allocs, err.alloc_bytes), (1, 3));
/// assert!(allocmeter::check_allocs(1, || std::hint::black_box(vec![1u8])).is_ok());
/// ```
///
/// While `f` runs every allocation of the thread takes allocmeter's cold
/// path, which captures the stacks of the first
/// [`budget_max_stacks`] (a frame-pointer walk, or
/// an unwind without frame pointers: microseconds each); they are
/// symbolized only if the budget is exceeded. Sampling goes on as it would
/// have (see [`runs`](crate::runs)). There is no warm-up call: give `f`'s
/// one-time work a call of its own first, or use
/// [`allocs_per_run`](crate::allocs_per_run).
///
/// # Panics
///
/// If allocmeter is not the program's global allocator, if the thread has
/// no slot of its own, or if called inside another budget function on the
/// same thread.
#[track_caller]
pub fn check_allocs<R>(at_most: u64, f: impl FnOnce() -> R) -> Result<R, Box<BudgetExceeded>> {
    check(at_most, "", f)
}

/// [`check_allocs`] as an assertion: returns `f`'s result, or panics with
/// the [`BudgetExceeded`] message (the budget, the counts, and the stacks of
/// the allocations). [`assert_allocs!`](crate::assert_allocs) is the same
/// with the code's text in the message.
#[track_caller]
pub fn assert_allocs_at_most<R>(at_most: u64, f: impl FnOnce() -> R) -> R {
    check(at_most, "", f).unwrap_or_else(|e| panic!("{e}"))
}

/// The budget check behind the macros and the functions. Not for direct use.
#[doc(hidden)]
#[track_caller]
pub fn check<R>(at_most: u64, code: &'static str, f: impl FnOnce() -> R) -> Result<R, Box<BudgetExceeded>> {
    installed::require("assert_allocs");
    let recorder = Recorder::new(true);
    let (result, used, peak) = {
        let mode = BudgetMode::enter(&recorder, "assert_allocs");
        let slot = mode.slot();
        recorder.start_run(slot);
        let before = slot.counters.read();
        let result = f();
        let used = slot.counters.read().wrapping_sub(&before);
        (result, used, recorder.peak())
    };
    if used.allocs() <= at_most {
        return Ok(result);
    }
    drop(result);
    let raw = recorder.stacks();
    Err(Box::new(BudgetExceeded {
        code,
        at_most,
        allocs: used.allocs(),
        alloc_bytes: used.alloc_bytes,
        frees: used.frees(),
        free_bytes: used.free_bytes,
        reallocs: Reallocs {
            grown_in_place: used.grown_in_place,
            shrunk_in_place: used.shrunk_in_place,
            moved: used.moved,
            grown_bytes: used.grown_bytes,
            shrunk_bytes: used.shrunk_bytes,
        },
        peak_live_bytes: peak,
        not_kept: used.allocs().saturating_sub(raw.len() as u64),
        stacks: stacks::symbolize(&raw),
    }))
}

/// How many allocations' stacks a failed budget keeps
/// ([`BudgetExceeded::stacks`]); the rest are counted in
/// [`BudgetExceeded::not_kept`].
pub const fn budget_max_stacks() -> usize {
    MAX_STACKS
}

/// Asserts that an expression makes at most a number of allocations on the
/// calling thread, and gives the expression's value.
///
/// ```
/// # use std::alloc::System;
/// # #[global_allocator]
/// # static GLOBAL: allocmeter::Instrumented<System> = allocmeter::Instrumented::new(System);
/// use allocmeter::assert_allocs;
/// use std::hint::black_box;
///
/// fn greeting(name: &str) -> String {
///     format!("hello, {name}")
/// }
///
/// let s = assert_allocs!(at_most = 1, greeting(black_box("world")));
/// assert_eq!(s, "hello, world");
/// ```
///
/// On failure it panics with the budget, the allocations, bytes, reallocs
/// and frees, and the symbolized stacks of the first allocations, the first
/// frame of the program first:
///
/// ```text
/// allocation budget exceeded: `greeting(black_box("world"))` made 2 allocations, at most 1 allowed
///   allocated 2 blocks (17 bytes), freed 1 (5 bytes), ...
///   where it allocated (innermost program frame first):
///   #1 1 allocation, 5 bytes (9 allocator frames trimmed):
///       my_crate::greeting at src/lib.rs:12
///       ...
/// ```
///
/// See [`check_allocs`] for how it counts, and [`assert_no_allocs!`](crate::assert_no_allocs)
/// for a budget of zero.
#[macro_export]
macro_rules! assert_allocs {
    (at_most = $n:expr, $e:expr $(,)?) => {
        match $crate::budget_check($n as u64, ::core::stringify!($e), || $e) {
            ::core::result::Result::Ok(value) => value,
            ::core::result::Result::Err(e) => ::core::panic!("{}", e),
        }
    };
}

/// Asserts that an expression makes no allocation on the calling thread
/// (frees and in-place shrinks are allowed; a realloc is an allocation), and
/// gives the expression's value: [`assert_allocs!`](crate::assert_allocs)
/// with `at_most = 0`.
///
/// ```
/// # use std::alloc::System;
/// # #[global_allocator]
/// # static GLOBAL: allocmeter::Instrumented<System> = allocmeter::Instrumented::new(System);
/// let mut buf = String::with_capacity(32);
/// allocmeter::assert_no_allocs!(buf.push_str("fits"));
/// assert_eq!(buf, "fits");
/// ```
#[macro_export]
macro_rules! assert_no_allocs {
    ($e:expr $(,)?) => {
        $crate::assert_allocs!(at_most = 0, $e)
    };
}
