//! The bodies of the JSON API (`/api/*`), each with the API's `version`.
//!
//! Owns: the bodies' shapes. Reads the renderer; knows nothing of requests
//! (the HTTP routes parse queries and wrap bodies in responses).

use std::time::SystemTime;

use super::Renderer;
use super::prometheus::inner_figures;
use super::sites::SortBy;
use crate::aggregate::history::unix_ms;

/// The JSON API's version, in every response's `version` field.
pub const API_VERSION: u32 = 1;

/// `/api/sites`: the `top` sites ranked `by` (named `by_name`), symbolized.
/// A struct rather than a `serde_json::Value`, so that the body is written
/// straight from the report: a tree of a thousand sites' stacks would take
/// several times the body's bytes while it is built.
pub(crate) fn sites_body<'a>(
    renderer: &Renderer,
    top: usize,
    by: SortBy,
    by_name: &'a str,
) -> SitesBody<'a> {
    SitesBody {
        version: API_VERSION,
        sample_rate: allocmeter::sample_rate(),
        by: by_name,
        sites: renderer.top_sites(top, by),
    }
}

/// The body of `/api/sites`. Its fields are in the order the other bodies
/// (`serde_json` maps, sorted) write theirs.
#[derive(serde::Serialize)]
pub(crate) struct SitesBody<'a> {
    by: &'a str,
    sample_rate: u64,
    sites: Vec<super::sites::SiteReport>,
    version: u32,
}

/// `/api/hints`: the optimisation hints now ([`super::hints::HintsReport`]),
/// with the API's version.
pub(crate) fn hints_body(renderer: &Renderer) -> HintsBody {
    let report = renderer.hints();
    HintsBody {
        collecting: report.collecting,
        declined: report.declined,
        hints: report.hints,
        sample_rate: report.sample_rate,
        version: API_VERSION,
        window_secs: report.window_secs,
    }
}

/// The body of `/api/hints`, fields in sorted order as the other bodies'.
#[derive(serde::Serialize)]
pub(crate) struct HintsBody {
    collecting: Vec<super::hints::Collecting>,
    declined: Vec<super::hints::Declined>,
    hints: Vec<super::hints::Hint>,
    sample_rate: u64,
    version: u32,
    window_secs: f64,
}

/// `/api/peak`: the live heap's peaks, since start and over the peak
/// window, each with its `top` sites as they stood then.
pub(crate) fn peak_body(renderer: &Renderer, top: usize) -> serde_json::Value {
    let one = |window: bool| {
        renderer.peak_report(window, top).map(|(peak, sites)| {
            serde_json::json!({
                "live_bytes": peak.live_bytes,
                "live_objects": peak.live_objects,
                "unix_ms": peak.unix_ms,
                "uptime_ms": peak.uptime_ms,
                "sites_at_live_bytes": peak.copied_at_bytes,
                "sites": sites,
            })
        })
    };
    serde_json::json!({
        "version": API_VERSION,
        "window_secs": renderer.aggregator().peak_window().as_secs_f64(),
        "since_start": one(false),
        "window": one(true),
    })
}

/// A 400's body: a fixed message (never the request's input).
pub(crate) fn error_body(message: &'static str) -> serde_json::Value {
    serde_json::json!({ "version": API_VERSION, "error": message })
}

/// `/api/snapshot` (and its alias `/api/stats`): the service's share of
/// `allocmeter::stats_split()` (`stats`; its `telemetry_bytes` is
/// allocmeter's whole, as `allocmeter_telemetry_bytes`), allocmeter's own
/// share (`exporter`) and the sampling figures, read now, with the wall-clock time of the read
/// (`unix_ms`), the inner allocator's figures if a feature compiles them in,
/// the spike detector's state, and whether the call-site endpoints answer
/// (`profiles_exposed`).
pub(crate) fn stats_body(renderer: &Renderer, profiles_exposed: bool) -> serde_json::Value {
    let aggregator = renderer.aggregator();
    let unix_ms = unix_ms(SystemTime::now());
    let uptime_ms = aggregator.uptime().as_millis() as u64;
    let split = allocmeter::stats_split();
    let (s, own) = (split.program, split.internal);
    let sampling = allocmeter::profile::sampling_stats();
    let (peak_bytes, peak_unix_ms) = aggregator.peak_mark();
    let by_size: Vec<serde_json::Value> = s
        .by_size
        .iter()
        .map(|c| {
            serde_json::json!({
                "max_size": c.max_size,
                "allocs": c.allocs,
                "frees": c.frees,
            })
        })
        .collect();
    // One allocator's figures: the first that reported any (a process has
    // one inner allocator; see the features in Cargo.toml).
    let figures = inner_figures();
    let inner = figures.first().map(|first| {
        let of_first: Vec<serde_json::Value> = figures
            .iter()
            .filter(|f| f.allocator == first.allocator)
            .map(|f| serde_json::json!({"name": f.name, "help": f.help, "value": f.value}))
            .collect();
        serde_json::json!({"allocator": first.allocator, "figures": of_first})
    });
    serde_json::json!({
        "version": API_VERSION,
        "unix_ms": unix_ms,
        "uptime_ms": uptime_ms,
        "stats": {
            "live_bytes": s.live_bytes,
            "live_objects": s.live_objects,
            "alloc_bytes": s.alloc_bytes,
            "allocs": s.allocs,
            "free_bytes": s.free_bytes,
            "frees": s.frees,
            "reallocs": {
                "grown_in_place": s.reallocs.grown_in_place,
                "shrunk_in_place": s.reallocs.shrunk_in_place,
                "moved": s.reallocs.moved,
                "grown_bytes": s.reallocs.grown_bytes,
                "shrunk_bytes": s.reallocs.shrunk_bytes,
            },
            "failures": s.failures,
            "threads": s.threads,
            "slots_used": s.slots_used,
            "telemetry_bytes": s.telemetry_bytes + own.live_bytes,
            "by_size": by_size,
        },
        "exporter": {
            "live_bytes": own.live_bytes,
            "live_objects": own.live_objects,
            "alloc_bytes": own.alloc_bytes,
            "allocs": own.allocs,
            "free_bytes": own.free_bytes,
            "frees": own.frees,
            "tables_bytes": renderer.own_bytes(),
        },
        "sampling": {
            "rate": sampling.rate,
            "samples": sampling.samples,
            "dropped": sampling.dropped,
            "carried": sampling.carried,
            "frees_lost": sampling.frees_lost,
            "ring_bytes": sampling.ring_bytes,
            "live_samples": sampling.live_samples,
        },
        "inner": inner,
        "spike": aggregator.spike_status(),
        "peak": {
            "live_bytes": peak_bytes,
            "unix_ms": peak_unix_ms,
        },
        "profiles_exposed": profiles_exposed,
    })
}

/// The body of `/api/history`.
pub(crate) fn history_body(renderer: &Renderer, since_unix_ms: Option<u64>) -> serde_json::Value {
    let aggregator = renderer.aggregator();
    let capacity = aggregator.history_capacity();
    serde_json::json!({
        "version": API_VERSION,
        "interval_ms": aggregator.interval().as_millis() as u64,
        "capacity": capacity,
        "points": aggregator.history_points(since_unix_ms),
    })
}

/// `/api/spikes`: the detector's settings and every spike kept; without
/// `sites`, each spike's `top_sites` is empty (call sites reveal code
/// layout, see [`crate::Builder::expose_profiles`]).
pub(crate) fn spikes_body(renderer: &Renderer, sites: bool) -> serde_json::Value {
    let status = renderer.aggregator().spike_status();
    let mut reports = renderer.spike_reports();
    if !sites {
        for report in &mut reports {
            report.top_sites.clear();
        }
    }
    serde_json::json!({
        "version": API_VERSION,
        "k": status.k,
        "min_bytes_per_sec": status.min_bytes_per_sec,
        "baseline_secs": status.baseline_secs,
        "sites_exposed": sites,
        "spikes": reports,
    })
}
