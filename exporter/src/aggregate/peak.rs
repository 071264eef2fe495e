//! The live heap's high-water mark, and the call sites as they stood there:
//! "what was on the heap when memory was at its highest".
//!
//! At every tick the aggregator shows the program's live heap
//! (`allocmeter_heap_live_bytes`) and the site table to the [`PeakLog`]. It
//! keeps the highest live heap seen since the exporter started, and the
//! highest of a window the program chooses ([`crate::Builder::peak_window`]:
//! the current window and the one before, so between one and two windows
//! back). With each it keeps a copy of every site's estimates at that tick,
//! taken again only when a new high is at least [`RECOPY_RATIO`] above the
//! one copied, so that a heap that creeps up tick after tick is not copied
//! at every tick: the sites are those of a tick whose live heap was within
//! 1 % of the highest.
//!
//! The high-water mark is read at the ticks (every `Builder::interval`): a
//! peak that rises and falls between two ticks is not seen.
//!
//! Owns: [`PeakLog`], [`Peak`]. The copies reuse their buffers, so a tick
//! allocates only when the table has more sites than at the last copy.

use std::time::{Duration, Instant};

use super::sites::{SiteTable, SiteValues};

/// A new high is copied when it is at least this many times the one
/// copied.
pub const RECOPY_RATIO: f64 = 1.01;

/// One high-water mark and the sites at it.
#[derive(Clone, Debug, Default)]
pub(crate) struct Peak {
    /// The highest live heap seen, bytes.
    pub live_bytes: u64,
    /// The live blocks at that tick.
    pub live_objects: u64,
    /// When, ms since the Unix epoch, and since the exporter started.
    pub unix_ms: u64,
    /// See `unix_ms`.
    pub uptime_ms: u64,
    /// The live heap at the tick the sites were copied at (within
    /// [`RECOPY_RATIO`] of `live_bytes`).
    pub copied_at_bytes: u64,
    /// Every site's estimates and samples at that tick, by index.
    pub sites: Vec<(SiteValues, u64)>,
}

impl Peak {
    fn observe(&mut self, tick: &Tick, table: &SiteTable) {
        if tick.live_bytes <= self.live_bytes && self.uptime_ms > 0 {
            return;
        }
        self.live_bytes = tick.live_bytes;
        self.live_objects = tick.live_objects;
        self.unix_ms = tick.unix_ms;
        self.uptime_ms = tick.uptime_ms.max(1);
        if self.sites.is_empty()
            || tick.live_bytes as f64 >= self.copied_at_bytes as f64 * RECOPY_RATIO
        {
            self.copied_at_bytes = tick.live_bytes;
            table.copy_values_into(&mut self.sites);
        }
    }

    /// Whether a peak was seen.
    pub fn is_set(&self) -> bool {
        self.uptime_ms > 0
    }
}

/// What one tick shows the log.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Tick {
    /// The program's live heap, bytes and blocks.
    pub live_bytes: u64,
    /// See `live_bytes`.
    pub live_objects: u64,
    /// When.
    pub unix_ms: u64,
    /// See `unix_ms`.
    pub uptime_ms: u64,
}

/// The high-water marks: since start, and over the chosen window.
pub(crate) struct PeakLog {
    since_start: Peak,
    /// The window before the current one, and the current one.
    windows: [Peak; 2],
    window: Duration,
    window_started: Instant,
}

impl PeakLog {
    /// A log whose windowed peak covers between one and two `window`s.
    pub fn new(window: Duration) -> Self {
        PeakLog {
            since_start: Peak::default(),
            windows: [Peak::default(), Peak::default()],
            window,
            window_started: Instant::now(),
        }
    }

    /// Takes one tick in, at `now`.
    pub fn observe(&mut self, now: Instant, tick: &Tick, table: &SiteTable) {
        if now.duration_since(self.window_started) >= self.window {
            // The current window becomes the previous one; its buffer is
            // the new current one's (cleared, its room kept).
            self.windows.swap(0, 1);
            let current = &mut self.windows[1];
            current.live_bytes = 0;
            current.uptime_ms = 0;
            current.copied_at_bytes = 0;
            current.sites.clear();
            self.window_started = now;
        }
        self.since_start.observe(tick, table);
        self.windows[1].observe(tick, table);
    }

    /// The peak since start.
    pub fn since_start(&self) -> &Peak {
        &self.since_start
    }

    /// The peak of the window (the current one and the one before).
    pub fn in_window(&self) -> &Peak {
        let [previous, current] = &self.windows;
        if previous.live_bytes > current.live_bytes {
            previous
        } else {
            current
        }
    }

    /// The window.
    pub fn window(&self) -> Duration {
        self.window
    }

    /// Bytes the copies hold.
    pub fn approximate_bytes(&self) -> usize {
        let one = |p: &Peak| p.sites.capacity() * std::mem::size_of::<(SiteValues, u64)>();
        one(&self.since_start) + one(&self.windows[0]) + one(&self.windows[1])
    }

    /// The most [`PeakLog::approximate_bytes`] can be with `max_sites`.
    pub fn max_bytes(max_sites: usize) -> usize {
        3 * 2 * (max_sites + 1) * std::mem::size_of::<(SiteValues, u64)>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tick(live_bytes: u64, uptime_ms: u64) -> Tick {
        Tick {
            live_bytes,
            live_objects: live_bytes / 64,
            unix_ms: 1_000_000 + uptime_ms,
            uptime_ms,
        }
    }

    #[test]
    fn the_highest_is_kept_and_its_sites_copied_again_only_past_one_percent() {
        let mut table = SiteTable::new(10);
        table.add_for_test(1, 1000, &[0x10]);
        let mut log = PeakLog::new(Duration::from_secs(3600));
        let now = Instant::now();
        log.observe(now, &tick(1000, 1), &table);
        assert_eq!(log.since_start().live_bytes, 1000);
        assert_eq!(log.since_start().sites[1].0.inuse_space, 1000.0);
        // A second site appears, the heap rises by less than 1 %: the mark
        // moves, the copy stays.
        table.add_for_test(2, 5, &[0x20]);
        log.observe(now, &tick(1005, 2), &table);
        assert_eq!(log.since_start().live_bytes, 1005);
        assert_eq!(log.since_start().sites.len(), 2);
        // Past 1 %: copied again.
        log.observe(now, &tick(1100, 3), &table);
        assert_eq!(log.since_start().sites.len(), 3);
        assert_eq!(log.since_start().copied_at_bytes, 1100);
        // Lower: nothing moves.
        log.observe(now, &tick(500, 4), &table);
        assert_eq!(log.since_start().live_bytes, 1100);
        assert_eq!(log.since_start().uptime_ms, 3);
    }

    #[test]
    fn the_window_forgets_a_peak_two_windows_old() {
        let table = SiteTable::new(10);
        let window = Duration::from_secs(10);
        let mut log = PeakLog::new(window);
        let t0 = Instant::now();
        log.observe(t0, &tick(5000, 1), &table);
        log.observe(t0 + window, &tick(100, 2), &table);
        assert_eq!(log.in_window().live_bytes, 5000, "the window before");
        log.observe(t0 + 2 * window, &tick(200, 3), &table);
        assert_eq!(log.in_window().live_bytes, 200);
        assert_eq!(log.since_start().live_bytes, 5000);
    }
}
