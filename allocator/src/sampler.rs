//! Which allocations are sampled, and what a sample stands for.
//!
//! Like Go's heap profiler (and tcmalloc's and jemalloc's), sampling is a
//! Poisson process over allocated bytes with mean spacing `R`, the sample
//! rate: each thread counts down an exponentially distributed number of bytes,
//! and the allocation that crosses zero is sampled. An allocation of `size`
//! bytes is then sampled with probability `1 - exp(-size / R)`, so weighting
//! each sample by the inverse, `1 / (1 - exp(-size / R))` (Go's
//! `scaleHeapSample`), makes every estimate unbiased: small allocations are
//! rarely sampled and weigh a lot, allocations much larger than `R` are
//! almost always sampled and weigh about one. Nothing is force-sampled.
//!
//! The rate and depth live here and are read on every sampling point; the
//! program sets them through [`crate::control`].

use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use crate::lockfree::padded::Padded;
use crate::stack::MAX_DEPTH;

/// The default mean sampling distance: 512 KiB, as Go's `MemProfileRate` and
/// jemalloc's `lg_prof_sample:19`.
pub const DEFAULT_SAMPLE_RATE: u64 = 512 * 1024;

/// The default number of return addresses captured per sample.
pub const DEFAULT_STACK_DEPTH: usize = 64;

static RATE: Padded<AtomicU64> =
    Padded(AtomicU64::new(DEFAULT_SAMPLE_RATE));
static DEPTH: AtomicUsize = AtomicUsize::new(DEFAULT_STACK_DEPTH);

/// The mean sampling distance in bytes (0 = off).
pub fn sample_rate() -> u64 {
    RATE.load(Ordering::Relaxed)
}

/// Stores the mean sampling distance (see [`crate::set_sample_rate`]).
pub(crate) fn store_sample_rate(bytes: u64) {
    RATE.store(bytes, Ordering::Relaxed);
}

/// Stores the stack depth (see [`crate::set_stack_depth`]).
pub(crate) fn store_stack_depth(frames: usize) {
    DEPTH.store(frames.clamp(1, MAX_DEPTH), Ordering::Relaxed);
}

/// How many return addresses a sample captures.
pub fn stack_depth() -> usize {
    DEPTH.load(Ordering::Relaxed)
}

/// Bumped by every sample: kept off the line of the rate and depth, which
/// every sampling point reads.
static NEXT_ID: Padded<AtomicU64> = Padded(AtomicU64::new(1));

/// A process-unique, never-zero sample id.
pub(crate) fn next_sample_id() -> u64 {
    NEXT_ID.fetch_add(1, Ordering::Relaxed)
}

/// The clock sampled blocks are timed by: `CLOCK_MONOTONIC`, in
/// nanoseconds. The same clock in every thread and in the drainer, so a
/// lifetime is the difference of two readings. A vDSO call: no system call,
/// no allocation; read only on the sampled path.
pub fn clock_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable `timespec`; CLOCK_MONOTONIC always
    // exists on Linux, and on failure `ts` stays zero.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64)
        .wrapping_mul(1_000_000_000)
        .wrapping_add(ts.tv_nsec as u64)
}

/// While sampling is off, a thread rechecks the rate after this many bytes.
pub(crate) const OFF_RECHECK_BYTES: u64 = 256 * 1024;

/// The weight of one sample of `size` bytes at `rate`: how many allocations
/// of that size it stands for. Exactly 1 when every allocation is sampled.
///
/// ```
/// use allocmeter::sample_weight;
/// assert_eq!(sample_weight(100, 1), 1.0);
/// // A block of R bytes is sampled with probability 1 - 1/e.
/// let w = sample_weight(4096, 4096);
/// assert!((w - 1.0 / (1.0 - (-1.0f64).exp())).abs() < 1e-12);
/// // Tiny blocks are rarely sampled and weigh about R / size.
/// assert!((sample_weight(16, 1 << 20) / 65536.0 - 1.0).abs() < 0.01);
/// ```
pub fn sample_weight(size: u64, rate: u64) -> f64 {
    if rate <= 1 {
        return 1.0;
    }
    let p = -(-(size.max(1) as f64) / rate as f64).exp_m1();
    if p > 0.0 { 1.0 / p } else { rate as f64 }
}

/// A xorshift64* generator: a few cycles per draw, no allocation, good enough
/// for sampling distances.
pub(crate) fn next_random(state: &mut u64) -> u64 {
    let mut x = *state;
    if x == 0 {
        x = 0x2545_F491_4F6C_DD1D;
    }
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    x.wrapping_mul(0x2545_F491_4F6C_DD1D)
}

/// Draws the number of bytes until the next sample: exponentially distributed
/// with mean `rate` (`0` when every allocation is sampled).
pub(crate) fn next_distance(rng: &mut u64, rate: u64) -> i64 {
    if rate <= 1 {
        return 0;
    }
    // Uniform in (0, 1] from the top 53 bits.
    let u = ((next_random(rng) >> 11) + 1) as f64 / (1u64 << 53) as f64;
    let d = -u.ln() * rate as f64;
    // Capped so that the clock arithmetic cannot overflow.
    d.min((1u64 << 50) as f64) as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg_attr(miri, ignore = "statistics, not memory safety: too slow under Miri")]
    fn distances_are_exponential_with_the_right_mean() {
        let mut rng = 42;
        let rate = 4096u64;
        let n = 200_000;
        let draws: Vec<i64> = (0..n).map(|_| next_distance(&mut rng, rate)).collect();
        let mean = draws.iter().sum::<i64>() as f64 / n as f64;
        assert!((mean / rate as f64 - 1.0).abs() < 0.01, "mean {mean}");
        // P(X > R) = 1/e for an exponential distribution.
        let above = draws.iter().filter(|&&d| d > rate as i64).count() as f64 / n as f64;
        assert!((above - (-1.0f64).exp()).abs() < 0.01, "tail {above}");
        assert!(draws.iter().all(|&d| d >= 0));
    }

    #[test]
    #[cfg_attr(miri, ignore = "statistics, not memory safety: too slow under Miri")]
    fn weighting_a_simulated_stream_recovers_its_total() {
        // Simulate the countdown over a stream of mixed sizes and check that
        // the weighted samples estimate the bytes within 2 %.
        let rate = 8192u64;
        let mut rng = 7;
        let mut countdown = next_distance(&mut rng, rate);
        let (mut total, mut estimate) = (0u64, 0f64);
        let mut size_rng = 99u64;
        for _ in 0..2_000_000 {
            let size = 16 << (next_random(&mut size_rng) % 12); // 16 B .. 32 KiB
            total += size;
            countdown -= size as i64;
            if countdown < 0 {
                estimate += sample_weight(size, rate) * size as f64;
                countdown = next_distance(&mut rng, rate);
            }
        }
        let err = estimate / total as f64 - 1.0;
        assert!(err.abs() < 0.02, "relative error {err}");
    }

    #[test]
    fn rate_one_weighs_one_and_never_waits() {
        let mut rng = 1;
        assert_eq!(next_distance(&mut rng, 1), 0);
        assert_eq!(sample_weight(1 << 30, 1), 1.0);
    }
}
