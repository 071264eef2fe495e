//! The atomics and spin hints the lock-free parts use: `core`'s, or loom's
//! when the crate is built with `--cfg loom` to model-check those parts
//! (see `.ci/loom.sh`). Only the modules that loom checks
//! ([`crate::lockfree::bump`], [`crate::lockfree::try_lock`],
//! [`crate::lockfree::ring`], [`crate::lockfree::chain`],
//! [`crate::lockfree::ownership`],
//! [`crate::lockfree::sampled`]) take their atomics from here; under loom
//! the crate is reduced to them.

#[cfg(not(loom))]
pub(crate) use core::sync::atomic::{
    AtomicBool, AtomicPtr, AtomicU32, AtomicU64, AtomicUsize, Ordering,
};
#[cfg(loom)]
pub(crate) use loom::sync::atomic::{
    AtomicBool, AtomicPtr, AtomicU32, AtomicU64, AtomicUsize, Ordering,
};

/// A busy-wait hint (a yield point for loom, which must see one in every
/// spin loop).
#[inline]
pub(crate) fn spin_loop() {
    #[cfg(not(loom))]
    core::hint::spin_loop();
    #[cfg(loom)]
    loom::thread::yield_now();
}

/// Gives the CPU to another thread.
#[inline]
pub(crate) fn yield_now() {
    #[cfg(not(loom))]
    std::thread::yield_now();
    #[cfg(loom)]
    loom::thread::yield_now();
}
