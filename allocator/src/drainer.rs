//! The drainer's side of the rings, below everything that samples: which
//! thread drains (and how to wake it), that only one drain runs at a time,
//! and how long the drainer should wait between drains.
//!
//! A leaf: it knows nothing of slots, rings or records. The sampler wakes the
//! drainer from here ([`wake_drainer`]), the drain ([`crate::profile::drain`])
//! takes its turn and adapts the interval here, and the fork handler clears
//! the turn in a child ([`reset_in_child`]).

use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, Ordering};
use std::sync::OnceLock;
use std::thread::Thread;
use std::time::{Duration, Instant};

use crate::lockfree::padded::Padded;

/// Set while a drain runs: the rings are single-consumer.
static DRAINING: Padded<AtomicBool> = Padded(AtomicBool::new(false));

/// The thread to wake when a ring fills up (leaked `Box<Thread>`; null: none).
static DRAINER: Padded<AtomicPtr<Thread>> = Padded(AtomicPtr::new(core::ptr::null_mut()));

/// Registers `thread` as the drainer, to be unparked
/// ([`std::thread::Thread::unpark`], which does not allocate) by a thread
/// whose sample ring becomes half full. That is the exception, for bursts:
/// a drainer that sleeps [`drain_interval`] between drains keeps the rings
/// under a quarter full. The exporter registers its aggregator. A later
/// registration replaces an earlier one.
///
/// Only once a drainer is registered does a thread whose ring is full
/// switch to a bigger one (nobody else would read it); without one it
/// carries the weight of the samples that do not fit (see
/// [`crate::profile::Carried`]).
pub fn register_drainer(thread: Thread) {
    let fresh = Box::into_raw(Box::new(thread));
    // The previous handle is leaked rather than freed: a producer may be
    // reading it right now. One small allocation per registration.
    DRAINER.swap(fresh, Ordering::AcqRel);
}

/// Whether a drainer was ever registered: without one, nothing reads the
/// rings, so the sampled path does not grow them.
pub(crate) fn is_registered() -> bool {
    // Relaxed: a hint; the pointer itself is loaded with Acquire to be used.
    !DRAINER.load(Ordering::Relaxed).is_null()
}

/// Wakes the registered drainer, if any. Called on the sampled path only.
pub(crate) fn wake_drainer() {
    // SAFETY: the pointer is null or a leaked, never-freed `Box<Thread>`.
    if let Some(thread) = unsafe { DRAINER.load(Ordering::Acquire).as_ref() } {
        thread.unpark();
    }
}

/// The shortest and longest wait [`drain_interval`] suggests.
pub(crate) const MIN_DRAIN_INTERVAL: Duration = Duration::from_millis(1);
/// See [`MIN_DRAIN_INTERVAL`].
pub(crate) const MAX_DRAIN_INTERVAL: Duration = Duration::from_millis(50);

/// A ring that the drainer finds filling so fast that it would have to be
/// drained more often than this to stay about a quarter full gets a bigger
/// one (twice as big, up to the largest size, 64 KiB), so that the drainer
/// can wait longer: each drain interrupts some thread on a machine whose
/// cores are busy. Only threads that take thousands of samples a second
/// (at the default rate, ones that allocate over a gigabyte a second) grow
/// their rings (what a drainer polling every millisecond costs: see
/// ARCHITECTURE.md, "Measurements behind the hot path's shape").
pub(crate) const RING_GROWTH_INTERVAL: Duration = Duration::from_millis(8);

/// The wait [`drain_interval`] suggests now, in microseconds.
static DRAIN_INTERVAL_US: Padded<AtomicU64> =
    Padded(AtomicU64::new(MAX_DRAIN_INTERVAL.as_micros() as u64));

/// How long a drainer should sleep before its next
/// [`drain`](crate::profile::drain). Each drain
/// sets it from how fast the fullest ring filled since the previous drain, so
/// that the next one finds it about a quarter full: shorter (down to
/// 1 ms) while some thread takes samples fast, doubling
/// (up to 50 ms) while every ring stays under an eighth.
/// So the drainer polls as often as the busiest thread's sampling needs, no
/// more (each drain interrupts a thread on a machine whose cores are busy),
/// and allocating threads need not wake it: a ring reaches half full, where
/// its thread does wake the drainer, only if the rate more than doubles
/// between two drains.
///
/// Waking is what this avoids: unparking a parked thread is a system call
/// plus an inter-processor interrupt, and on a machine whose cores are all
/// busy the kernel may run the woken drainer in place of the waker: one wake
/// costs the allocating thread many times what taking the sample does (see
/// ARCHITECTURE.md, "Measurements behind the hot path's shape").
///
/// ```no_run
/// use allocmeter::profile;
/// std::thread::spawn(|| loop {
///     let _ = profile::drain(|event| { /* aggregate */ let _ = event; });
///     std::thread::park_timeout(profile::drain_interval());
/// });
/// ```
pub fn drain_interval() -> Duration {
    Duration::from_micros(DRAIN_INTERVAL_US.load(Ordering::Relaxed))
}

/// When the previous drain started, in microseconds since [`drain_epoch`].
static LAST_DRAIN_US: AtomicU64 = AtomicU64::new(0);

pub(crate) fn drain_epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// Sets [`drain_interval`] from the fullest ring a drain found, in 64ths of
/// its capacity, and the time since the previous drain.
pub(crate) fn adapt_drain_interval(max_fill_64ths: usize, started_us: u64) {
    let elapsed = started_us.saturating_sub(LAST_DRAIN_US.swap(started_us, Ordering::Relaxed));
    let now = DRAIN_INTERVAL_US.load(Ordering::Relaxed);
    // Only the one drainer running (see `DRAINING`) stores.
    DRAIN_INTERVAL_US.store(
        next_drain_interval_us(now, elapsed, max_fill_64ths),
        Ordering::Relaxed,
    );
}

/// The next drain interval (µs) after one of `now_us`, when a drain
/// `elapsed_us` after the previous one found the fullest ring
/// `max_fill_64ths`/64 full.
fn next_drain_interval_us(now_us: u64, elapsed_us: u64, max_fill_64ths: usize) -> u64 {
    let (min, max) = (
        MIN_DRAIN_INTERVAL.as_micros() as u64,
        MAX_DRAIN_INTERVAL.as_micros() as u64,
    );
    if max_fill_64ths >= 24 {
        // Three eighths full or more: aim at a quarter at the fill rate seen
        // (a drain woken early counts from its real start, not the interval).
        (elapsed_us.min(now_us) * 16 / max_fill_64ths as u64).clamp(min, max)
    } else if max_fill_64ths < 8 {
        (now_us * 2).clamp(min, max)
    } else {
        now_us
    }
}

/// The time over which the rings filled up to what this drain finds:
/// since the previous drain, but no longer than the interval the drainer was
/// told to wait (a drainer that paused longer does not make the rings look
/// slower to fill than they are).
pub(crate) fn filled_in_us(started_us: u64) -> u64 {
    started_us
        .saturating_sub(LAST_DRAIN_US.load(Ordering::Relaxed))
        .min(DRAIN_INTERVAL_US.load(Ordering::Relaxed))
}

/// Whether a ring found `fill_64ths`/64 full, `filled_in_us` after the
/// previous drain, fills so fast that keeping it about a quarter full would
/// take drains more often than [`RING_GROWTH_INTERVAL`].
pub(crate) fn fills_too_fast(fill_64ths: usize, filled_in_us: u64) -> bool {
    // The interval that would find it a quarter (16/64) full, as in
    // `next_drain_interval_us`; only rings at least three eighths full count.
    fill_64ths >= 24
        && filled_in_us * 16 / (fill_64ths as u64) < RING_GROWTH_INTERVAL.as_micros() as u64
}

/// In a forked child: a drain that was running in the parent will never
/// finish here, so the next one may start.
pub(crate) fn reset_in_child() {
    DRAINING.store(false, Ordering::Release);
}

/// The one drain running: taken by [`begin_drain`], and dropping it lets
/// the next drain start.
pub(crate) struct DrainTurn(());

/// Takes the drain's turn, or `None` at once if another drain is running.
pub(crate) fn begin_drain() -> Option<DrainTurn> {
    if DRAINING.swap(true, Ordering::Acquire) {
        return None;
    }
    Some(DrainTurn(()))
}

impl Drop for DrainTurn {
    fn drop(&mut self) {
        DRAINING.store(false, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_drain_interval_follows_the_fill_rate_within_its_bounds() {
        let (min, max) = (1_000, 50_000);
        // 50 ms after the last drain a ring was half full (32/64): the next
        // drain comes when it would be a quarter full, in 25 ms.
        assert_eq!(next_drain_interval_us(max, max, 32), 25_000);
        // Woken after 1 ms at half full: 0.5 ms is below the floor.
        assert_eq!(next_drain_interval_us(max, 1_000, 32), min);
        // Full (64/64) after 40 ms: 10 ms.
        assert_eq!(next_drain_interval_us(max, 40_000, 64), 10_000);
        // Between an eighth and three eighths: unchanged.
        assert_eq!(next_drain_interval_us(7_000, 7_000, 8), 7_000);
        assert_eq!(next_drain_interval_us(7_000, 7_000, 23), 7_000);
        // Nearly empty: doubles, up to the ceiling.
        assert_eq!(next_drain_interval_us(7_000, 7_000, 7), 14_000);
        assert_eq!(next_drain_interval_us(40_000, 40_000, 0), max);
        // A long pause between drains (elapsed > interval) does not make the
        // fill rate look slower than the interval it was polled at.
        assert_eq!(next_drain_interval_us(8_000, 1_000_000, 32), 4_000);
    }

    #[test]
    fn only_rings_that_would_need_draining_more_often_than_8_ms_grow() {
        // Half full after 1 ms: a quarter every 0.5 ms.
        assert!(fills_too_fast(32, 1_000));
        // Three eighths after 11 ms: a quarter every 7.3 ms.
        assert!(fills_too_fast(24, 11_000));
        // Three eighths after 12 ms: every 8 ms, slow enough.
        assert!(!fills_too_fast(24, 12_000));
        // Full after 40 ms: every 10 ms.
        assert!(!fills_too_fast(64, 40_000));
        // Under three eighths: never, however fast.
        assert!(!fills_too_fast(23, 1));
        assert!(!fills_too_fast(0, 0));
    }
}
