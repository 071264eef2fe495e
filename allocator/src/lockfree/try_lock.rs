//! A bounded, non-allocating try-lock for the sampled path.
//!
//! The sampled path may not block (a thread could be holding the lock when a
//! signal handler on the same thread allocates, or when the process forks),
//! so callers give up after a bounded number of attempts and drop what they
//! were doing, counting it. Held only for a few dozen instructions, and never
//! while calling anything that could take another lock.

use super::sync::{AtomicBool, Ordering, spin_loop, yield_now};

/// The lock.
pub(crate) struct TryLock(AtomicBool);

impl TryLock {
    /// An unlocked lock, usable in a `static`.
    #[cfg(not(loom))]
    pub const fn new() -> Self {
        TryLock(AtomicBool::new(false))
    }

    /// An unlocked lock (loom's atomics cannot be made in a `const`).
    #[cfg(loom)]
    pub fn new() -> Self {
        TryLock(AtomicBool::new(false))
    }

    /// Runs `f` holding the lock. Spins for the first `spins` attempts, then
    /// yields the CPU between attempts (so that a preempted holder can run),
    /// up to `attempts` in all; `None` if the lock was never free.
    pub fn with<R>(&self, spins: u32, attempts: u32, f: impl FnOnce() -> R) -> Option<R> {
        if !self.acquire(spins, attempts) {
            return None;
        }
        let r = f();
        self.release();
        Some(r)
    }

    /// Takes the lock, trying as [`TryLock::with`] does: `true` if taken, and
    /// the caller then calls [`TryLock::release`]. The fork handlers use it
    /// to hold every shard lock across `fork()`.
    pub fn acquire(&self, spins: u32, attempts: u32) -> bool {
        for attempt in 0..attempts {
            // Acquire pairs with the Release store in `release`: what the
            // previous holder wrote under the lock is visible to this one.
            if self
                .0
                .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
            {
                return true;
            }
            if attempt < spins {
                spin_loop();
            } else {
                yield_now();
            }
        }
        false
    }

    /// Releases the lock (taken by [`TryLock::acquire`]).
    pub fn release(&self) {
        self.0.store(false, Ordering::Release);
    }

    /// Unlocks the lock whoever holds it. Only for a forked child, in which
    /// the holder (another thread of the parent) does not exist, so whatever
    /// it was doing under the lock will never finish.
    pub fn force_unlock(&self) {
        self.0.store(false, Ordering::Release);
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU64;

    #[test]
    fn excludes_and_gives_up_when_held() {
        static LOCK: TryLock = TryLock::new();
        static COUNT: AtomicU64 = AtomicU64::new(0);
        const PER_THREAD: u64 = if cfg!(miri) { 300 } else { 10_000 };
        let threads: Vec<_> = (0..4)
            .map(|_| {
                std::thread::spawn(|| {
                    for _ in 0..PER_THREAD {
                        // Non-atomic-style increment under the lock: a lost
                        // update would show if two holders overlapped.
                        while LOCK
                            .with(100, 10_000, || {
                                let v = COUNT.load(Ordering::Relaxed);
                                COUNT.store(v + 1, Ordering::Relaxed);
                            })
                            .is_none()
                        {}
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(COUNT.load(Ordering::Relaxed), 4 * PER_THREAD);
        // Held by someone else: gives up after the bounded attempts.
        let inner = LOCK.with(10, 100, || LOCK.with(10, 100, || ()));
        assert_eq!(inner, Some(None));
    }
}
