//! The aggregator thread: drains the sample rings into the site table every
//! [`drain_every`], and reads every slot once per interval into a snapshot
//! for the bounded history.
//!
//! It reads with [`allocmeter::stats`] and [`allocmeter::profile::drain`],
//! which take no lock an allocating thread could wait on; the locks here are
//! taken only by exporter threads.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime};

use parking_lot::Mutex;

use crate::collector::ProfileFigures;
use crate::sites::{self, Site, SiteReport, SiteTable, SortBy};
use crate::snapshot::{History, Snapshot};
use crate::symbolize::Symbolizer;

/// How often the rings are drained at most: [`allocmeter::profile::drain_interval`],
/// which shortens down to 1 ms while the rings fill fast and lengthens to
/// 50 ms when they are quiet. A thread whose ring is half full anyway (a
/// burst) unparks the aggregator at once (see
/// [`allocmeter::profile::register_drainer`]).
fn drain_every() -> Duration {
    allocmeter::profile::drain_interval()
}

/// The most sites the opt-in per-site Prometheus gauges may cover.
pub const MAX_SITE_METRICS: usize = 50;

/// The site table and what renderers need from it.
///
/// Two locks, never held together by the aggregator: draining takes only
/// `sites` (briefly, and never symbolizes), so a slow symbolization in a
/// renderer (the first one loads the binary's debug info) cannot stall the
/// rings.
pub(crate) struct ProfileState {
    pub sites: Mutex<SiteTable>,
    pub symbolizer: Mutex<Symbolizer>,
    /// How many top sites get Prometheus series (0 = none).
    pub site_metrics: usize,
    /// Bytes the snapshot history holds (kept here, next to the other
    /// exporter memory, so the collector can report it without the history's
    /// lock).
    pub history_bytes: AtomicUsize,
}

impl ProfileState {
    pub fn new(max_sites: usize, site_metrics: usize) -> Self {
        ProfileState {
            sites: Mutex::new(SiteTable::new(max_sites)),
            symbolizer: Mutex::new(Symbolizer::new(64 * 1024)),
            site_metrics: site_metrics.min(MAX_SITE_METRICS),
            history_bytes: AtomicUsize::new(0),
        }
    }

    /// Bytes the exporter itself holds: the site table, the symbol cache and
    /// the snapshot history (approximate: element sizes times counts).
    pub fn own_bytes(&self) -> usize {
        let table = self.sites.lock().approximate_bytes();
        let symbols = self.symbolizer.lock().approximate_bytes();
        table + symbols + self.history_bytes.load(Ordering::Relaxed)
    }

    /// Drains pending samples into the table; returns how many events.
    pub fn drain(&self) -> usize {
        self.sites.lock().drain().unwrap_or(0)
    }

    /// Drains, then returns the current sites, trimmed and merged. Holds the
    /// symbolizer lock while it symbolizes, not the table's.
    ///
    /// Renderers may run on a caller's thread (an in-process `top_sites`, or
    /// the collector in a user's registry): they suspend sampling there, so
    /// that symbolizing (which allocates, a lot on first use) stays out of
    /// the profiles it produces.
    pub fn current_sites(&self) -> Vec<Site> {
        let _quiet = allocmeter::profile::suspend_sampling();
        let raw = {
            let mut table = self.sites.lock();
            table.drain();
            table.snapshot()
        };
        sites::merge_sites(&raw, &mut self.symbolizer.lock())
    }

    /// The `n` sites with the largest `by`, symbolized.
    pub fn top_sites(&self, n: usize, by: SortBy) -> Vec<SiteReport> {
        let _quiet = allocmeter::profile::suspend_sampling();
        let top = sites::top(self.current_sites(), n, by);
        sites::report(&top, &mut self.symbolizer.lock())
    }

    /// The figures one scrape reports.
    pub fn figures(&self) -> ProfileFigures {
        let _quiet = allocmeter::profile::suspend_sampling();
        let mut top: Vec<(String, f64, f64)> = Vec::new();
        if self.site_metrics > 0 {
            let ranked = sites::top(self.current_sites(), self.site_metrics, SortBy::InuseSpace);
            let mut symbolizer = self.symbolizer.lock();
            for site in ranked {
                let values = site.values;
                let name = match site.stack.first() {
                    Some(&address) => short_name(&symbolizer.resolve(address).frames),
                    None => "(other)".to_string(),
                };
                // Sites sharing a short name share a series.
                match top.iter_mut().find(|(n, ..)| *n == name) {
                    Some(entry) => {
                        entry.1 += values.inuse_bytes;
                        entry.2 += values.alloc_bytes;
                    }
                    None => top.push((name, values.inuse_bytes, values.alloc_bytes)),
                }
            }
        }
        let table = self.sites.lock();
        ProfileFigures {
            sites: table.len(),
            overflowed: table.overflowed,
            table_bytes: table.approximate_bytes()
                + self.symbolizer.lock().approximate_bytes()
                + self.history_bytes.load(Ordering::Relaxed),
            top,
        }
    }
}

/// A short, bounded label for a site: the last two path segments of its
/// program function, at most 64 characters.
fn short_name(frames: &[crate::symbolize::Frame]) -> String {
    let Some(frame) = crate::symbolize::program_frames(frames).first() else {
        return "(unknown)".to_string();
    };
    // `<demo::Report as core::fmt::Display>::fmt` → `demo::Report::fmt`.
    let mut name = frame.function.clone();
    if name.starts_with('<')
        && let Some(end) = matching_bracket(&name)
    {
        let inner = &name[1..end];
        let ty = inner.split(" as ").next().unwrap_or(inner);
        name = format!("{ty}{}", &name[end + 1..]);
    }
    // Drop generic arguments, then keep `type::function` or `module::function`.
    let mut depth = 0usize;
    let base: String = name
        .chars()
        .filter(|&c| {
            match c {
                '<' => depth += 1,
                '>' => depth = depth.saturating_sub(1),
                _ => return depth == 0,
            }
            false
        })
        .collect();
    let parts: Vec<&str> = base.rsplit("::").take(2).collect();
    let short = parts.into_iter().rev().collect::<Vec<_>>().join("::");
    short.chars().take(64).collect()
}

/// The index of the `>` closing the `<` at index 0.
fn matching_bracket(s: &str) -> Option<usize> {
    let mut depth = 0usize;
    for (i, c) in s.char_indices() {
        match c {
            '<' => depth += 1,
            '>' => {
                depth -= 1;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => {}
        }
    }
    None
}

/// State shared between the aggregator, the HTTP thread and the handle.
pub(crate) struct Shared {
    pub history: Mutex<History>,
    pub started: Instant,
    pub profile: Arc<ProfileState>,
}

impl Shared {
    pub fn new(history_len: usize, profile: Arc<ProfileState>) -> Self {
        Shared {
            history: Mutex::new(History::new(history_len)),
            started: Instant::now(),
            profile,
        }
    }

    /// Reads the statistics now and records the snapshot.
    pub fn tick(&self) {
        let snapshot = Snapshot {
            taken_at: SystemTime::now(),
            uptime: self.started.elapsed(),
            stats: allocmeter::stats(),
        };
        let bytes = {
            let mut history = self.history.lock();
            history.push(snapshot);
            history.bytes()
        };
        self.profile.history_bytes.store(bytes, Ordering::Relaxed);
    }
}

/// Drains every [`drain_every`] (sooner when a thread's ring fills up and
/// unparks this thread) and snapshots every `interval`, until `stop` is set
/// (and the thread unparked).
pub(crate) fn run(shared: Arc<Shared>, interval: Duration, stop: Arc<AtomicBool>) {
    allocmeter::profile::mark_thread_internal();
    let mut next_snapshot = Instant::now() + interval;
    loop {
        shared.profile.drain();
        if Instant::now() >= next_snapshot {
            shared.tick();
            next_snapshot += interval;
            if next_snapshot < Instant::now() {
                next_snapshot = Instant::now() + interval;
            }
        }
        let wait = drain_every().min(next_snapshot.saturating_duration_since(Instant::now()));
        if stop.load(Ordering::Acquire) {
            break;
        }
        std::thread::park_timeout(wait);
        if stop.load(Ordering::Acquire) {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::symbolize::Frame;

    #[test]
    fn short_names_are_bounded_and_drop_generics() {
        let f = |name: &str| Frame {
            function: name.to_string(),
            file: None,
            line: None,
        };
        assert_eq!(
            short_name(&[f("demo::orders::build_report")]),
            "orders::build_report"
        );
        assert_eq!(short_name(&[f("main")]), "main");
        assert_eq!(
            short_name(&[
                f("alloc::vec::Vec<T>::with_capacity"),
                f("svc::Handler<T>::run")
            ]),
            "Handler::run"
        );
        assert_eq!(
            short_name(&[f("<demo::Report as core::fmt::Display>::fmt")]),
            "Report::fmt"
        );
        assert_eq!(short_name(&[f(&"x".repeat(500))]).len(), 64);
        assert_eq!(short_name(&[]), "(unknown)");
    }
}
