//! What `fork()` does to the recording, and the handlers that make it safe.
//!
//! `fork()` copies the process with only the calling thread. Whatever the
//! other threads held at that instant stays held in the child, by nobody:
//! a sampled-pointer shard lock, the fallback ring's producer lock, the
//! "a drain is running" flag, and their slots. The handlers, registered with
//! `pthread_atfork` when the first thread claims its slot, put that right:
//!
//! - before the fork (`prepare`), the forking thread takes every shard lock,
//!   waiting the bounded time an insert would, so that no shard is copied
//!   half-changed; the parent releases them after the fork;
//! - in the child (`child`), which runs before `fork()` returns there and
//!   with no other thread, every lock is unlocked, a shard whose lock could
//!   not be taken is emptied, the slots of the threads that did not come
//!   along are given back for the child's own threads (on the program's
//!   side of [`crate::internal`], as at their exit), and the drain flag is
//!   cleared.
//!
//! None of the handlers allocates.
//!
//! So a child can allocate, free, sample and exit as the parent does. Its
//! statistics carry on from the parent's at the instant of the fork (the
//! counters are the parent's memory, copied). The parent's exporter threads
//! are not in the child: an `Exporter` handle that came along must not be
//! used there (its threads cannot be joined); a child that wants telemetry
//! starts an exporter of its own, on another port.
//!
//! This module and [`crate::local`] need each other, the one such pair in
//! the crate: the first thread to claim a slot (in `local`) registers the
//! handlers here, and the child handler asks `local` for the forking
//! thread's own slot, which only that thread's thread-local knows.

use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Set once the handlers are registered.
static REGISTERED: AtomicBool = AtomicBool::new(false);

/// The shard locks `prepare` took, for `parent` and `child`.
static TAKEN: AtomicU64 = AtomicU64::new(0);

/// Registers the fork handlers, once per process.
pub(crate) fn register_handlers() {
    if REGISTERED.swap(true, Ordering::AcqRel) {
        return;
    }
    // SAFETY: the three handlers are `extern "C"` functions with no
    // arguments that never unwind (they only touch atomics).
    // `pthread_atfork` may allocate; this runs outside any lock of ours.
    unsafe {
        libc::pthread_atfork(Some(prepare), Some(parent), Some(child));
    }
}

extern "C" fn prepare() {
    TAKEN.store(crate::lockfree::sampled::lock_all_for_fork(), Ordering::Relaxed);
}

extern "C" fn parent() {
    crate::lockfree::sampled::unlock_after_fork(TAKEN.load(Ordering::Relaxed));
}

extern "C" fn child() {
    crate::lockfree::sampled::reset_in_child(TAKEN.load(Ordering::Relaxed));
    crate::internal::reset_in_child(crate::local::own_slot());
    crate::slot::reset_in_child(crate::local::own_slot());
    crate::drainer::reset_in_child();
}
