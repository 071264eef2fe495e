//! Whether allocmeter is the program's global allocator, and the refusal of
//! the measuring functions when it is not.
//!
//! A test binary whose global allocator is not allocmeter's counts nothing:
//! every per-thread figure stays zero, and an "allocates at most N times"
//! assertion would pass whatever the code does. So the functions that
//! measure for tests ([`crate::measure`], [`crate::thread_stats`] and those
//! built on them) ask [`is_installed`] first and panic with a message that
//! says how to install allocmeter; [`crate::try_measure`] returns `None`
//! instead, for code that runs either way.
//!
//! Owns: the probe and its cached answer. Nothing here runs on the hot path.

use core::sync::atomic::{AtomicU8, Ordering};

use crate::slot;

const UNKNOWN: u8 = 0;
const YES: u8 = 1;
const NO: u8 = 2;

/// The probe's answer, once known. A program's global allocator is fixed
/// when it is linked, so the answer never changes.
static ANSWER: AtomicU8 = AtomicU8::new(UNKNOWN);

/// Whether allocmeter ([`crate::Instrumented`]) is this program's
/// `#[global_allocator]`.
///
/// The first call sees whether allocmeter has counted any allocation; if
/// none yet, it makes one of 1 byte through the global allocator, frees it,
/// and sees whether allocmeter counted that. The answer is kept for the
/// later calls.
///
/// ```
/// # use std::alloc::System;
/// # #[global_allocator]
/// # static GLOBAL: allocmeter::Instrumented<System> = allocmeter::Instrumented::new(System);
/// assert!(allocmeter::is_installed());
/// ```
pub fn is_installed() -> bool {
    // Relaxed: the answer is the same whichever thread found it.
    match ANSWER.load(Ordering::Relaxed) {
        YES => true,
        NO => false,
        _ => {
            let installed = probe();
            ANSWER.store(if installed { YES } else { NO }, Ordering::Relaxed);
            installed
        }
    }
}

/// Whether allocmeter has counted an allocation yet. Nothing moves its
/// counts when it is not the global allocator (unless a program calls an
/// [`Instrumented`](crate::Instrumented) of its own directly); when it is,
/// the program has usually allocated already (std's start-up, the test
/// harness), and the answer costs nothing. Otherwise it allocates and frees
/// one byte through the global allocator, and sees whether that moved the
/// count (its own allocation moves it, whatever other threads do meanwhile).
fn probe() -> bool {
    let before = slot::sum().allocs();
    if before != 0 {
        return true;
    }
    let layout = std::alloc::Layout::new::<u8>();
    // SAFETY: the layout has a non-zero size; the block is freed at once
    // with the same layout, and only if the allocation succeeded.
    unsafe {
        // black_box: the compiler may remove an allocation whose block is
        // never used.
        let p = std::hint::black_box(std::alloc::alloc(layout));
        if !p.is_null() {
            std::alloc::dealloc(p, layout);
        }
    }
    slot::sum().allocs() != before
}

/// Panics, saying how to install allocmeter, unless it is installed. `what`
/// names the function that refuses.
#[track_caller]
pub(crate) fn require(what: &str) {
    if !is_installed() {
        panic!(
            "allocmeter::{what}: allocmeter is not this program's global allocator, so it \
             counted nothing and its figures would all be 0. Add to the crate root of this \
             binary (for an integration test, to the test file: each file in tests/ is a \
             binary of its own):\n\n    #[global_allocator]\n    static GLOBAL: \
             allocmeter::Instrumented<std::alloc::System> =\n        \
             allocmeter::Instrumented::new(std::alloc::System);\n"
        );
    }
}
