//! The HTTP thread: `/metrics`, the pprof heap profiles, the JSON API, and the
//! page at `/`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use prometheus::{Encoder, Registry, TextEncoder};
use tiny_http::{Header, Method, Request, Response, Server};

use crate::aggregator::{ProfileState, Shared};
use crate::pprof::{DefaultType, SiteSample, encode_heap_profile};
use crate::sites::SortBy;

/// The Prometheus text exposition content type.
pub const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The live page and its assets, embedded at compile time from `dashboard/`.
const INDEX_HTML: &str = include_str!("../../dashboard/index.html");
const APP_JS: &str = include_str!("../../dashboard/app.js");
const STYLE_CSS: &str = include_str!("../../dashboard/style.css");

/// The JSON API's version, in every response's `version` field.
pub const API_VERSION: u32 = 1;

/// `/api/sites` returns at most this many sites.
const MAX_TOP: usize = 1000;

type Reply = Response<std::io::Cursor<Vec<u8>>>;

fn header(name: &str, value: &str) -> Header {
    Header::from_bytes(name.as_bytes(), value.as_bytes())
        .expect("static header names and values are valid")
}

/// What the HTTP thread serves from.
pub(crate) struct Endpoints {
    pub registry: Registry,
    pub shared: Arc<Shared>,
}

/// Serves requests until `stop` is set and the server is unblocked.
pub(crate) fn run(server: Arc<Server>, endpoints: Endpoints, stop: Arc<AtomicBool>) {
    allocmeter::profile::mark_thread_internal();
    while !stop.load(Ordering::Acquire) {
        match server.recv() {
            Ok(request) => handle(request, &endpoints),
            // `unblock()` (shutdown) or an accept error; the loop condition
            // decides whether to go on.
            Err(_) => continue,
        }
    }
}

/// Answers one request. Errors writing the response mean the client went away;
/// there is nobody to tell, so they are dropped.
///
/// What rendering the response allocates is the exporter's, not the
/// service's: the spike detector leaves it out. (Sending it, which allocates
/// little, stays outside, so that a slow client does not hold the detector
/// back: it skips the ticks that fall inside a render.)
fn handle(request: Request, endpoints: &Endpoints) {
    let response = endpoints
        .shared
        .profile
        .own
        .account(|| route(request.method(), request.url(), endpoints));
    let _ = request.respond(response);
}

fn route(method: &Method, url: &str, endpoints: &Endpoints) -> Reply {
    if !matches!(method, Method::Get | Method::Head) {
        return Response::from_string("method not allowed: only GET and HEAD\n")
            .with_status_code(405)
            .with_header(header("Allow", "GET, HEAD"));
    }
    let (path, query) = url.split_once('?').unwrap_or((url, ""));
    let shared = &endpoints.shared;
    match path {
        "/metrics" => metrics(&endpoints.registry),
        "/debug/pprof/heap" => profile(&shared.profile, DefaultType::InuseSpace, "heap"),
        "/debug/pprof/allocs" => profile(&shared.profile, DefaultType::AllocSpace, "allocs"),
        "/api/sites" => sites(&shared.profile, query),
        "/api/snapshot" | "/api/stats" => json(&snapshot(shared)),
        "/api/history" => history(shared, query),
        "/api/spikes" => json(&spikes(shared)),
        "/" | "/index.html" => asset(INDEX_HTML, "text/html; charset=utf-8"),
        "/app.js" => asset(APP_JS, "text/javascript; charset=utf-8"),
        "/style.css" => asset(STYLE_CSS, "text/css; charset=utf-8"),
        _ => Response::from_string("not found\n").with_status_code(404),
    }
}

/// One of the page's files.
fn asset(body: &'static str, content_type: &str) -> Reply {
    Response::from_string(body)
        .with_header(header("Content-Type", content_type))
        .with_header(header("X-Content-Type-Options", "nosniff"))
        .with_header(header("Cache-Control", "no-cache"))
}

fn metrics(registry: &Registry) -> Reply {
    let families = registry.gather();
    let mut body = Vec::with_capacity(16 * 1024);
    match TextEncoder::new().encode(&families, &mut body) {
        Ok(()) => {
            Response::from_data(body).with_header(header("Content-Type", METRICS_CONTENT_TYPE))
        }
        Err(e) => {
            Response::from_string(format!("cannot encode metrics: {e}\n")).with_status_code(500)
        }
    }
}

/// The heap profile as Go's `net/http/pprof` serves it: gzipped profile.proto.
fn profile(state: &ProfileState, default_type: DefaultType, name: &str) -> Reply {
    let body = heap_profile(state, default_type);
    Response::from_data(body)
        .with_header(header("Content-Type", "application/octet-stream"))
        .with_header(header(
            "Content-Disposition",
            &format!("attachment; filename=\"{name}\""),
        ))
        .with_header(header("X-Content-Type-Options", "nosniff"))
}

/// Builds the gzipped heap profile from the site table.
pub(crate) fn heap_profile(state: &ProfileState, default_type: DefaultType) -> Vec<u8> {
    state.own.account(|| heap_profile_now(state, default_type))
}

fn heap_profile_now(state: &ProfileState, default_type: DefaultType) -> Vec<u8> {
    let _quiet = allocmeter::profile::suspend_sampling();
    let samples: Vec<SiteSample> = state
        .current_sites()
        .into_iter()
        .map(|site| SiteSample {
            stack: site.stack,
            alloc_objects: site.values.alloc_objects.round() as i64,
            alloc_space: site.values.alloc_bytes.round() as i64,
            inuse_objects: site.values.inuse_objects.round() as i64,
            inuse_space: site.values.inuse_bytes.round() as i64,
        })
        .collect();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64);
    let mappings = crate::mappings::current_mappings();
    let mut symbolizer = state.symbolizer.lock();
    // Machinery inlined into program code is hidden, as in the site reports.
    let mut resolve = |address: u64| {
        let mut location = symbolizer.resolve(address);
        let program = crate::symbolize::program_frames(&location.frames);
        if program.len() < location.frames.len() {
            location.frames = program.to_vec().into();
        }
        location
    };
    encode_heap_profile(
        &samples,
        allocmeter::sample_rate(),
        now,
        default_type,
        &mut resolve,
        &mappings,
    )
}

/// `/api/sites?top=N&by=inuse_space|alloc_space|inuse_objects|alloc_objects`.
fn sites(state: &ProfileState, query: &str) -> Reply {
    let mut top = 20usize;
    let mut by = SortBy::InuseSpace;
    let mut by_name = "inuse_space".to_string();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match key {
            "top" => match value.parse::<usize>() {
                Ok(n) => top = n.min(MAX_TOP),
                Err(_) => return bad_request("top must be a whole number"),
            },
            "by" => match SortBy::parse(value) {
                Some(b) => {
                    by = b;
                    by_name = value.to_string();
                }
                None => {
                    return bad_request(
                        "by must be one of inuse_space, inuse_objects, alloc_space, alloc_objects",
                    );
                }
            },
            _ => return bad_request("unknown parameter; use top and by"),
        }
    }
    let report = state.top_sites(top, by);
    let body = serde_json::json!({
        "version": API_VERSION,
        "sample_rate": allocmeter::sample_rate(),
        "by": by_name,
        "sites": report,
    });
    json(&body)
}

fn unix_ms_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// `/api/snapshot` (and its alias `/api/stats`): `allocmeter::stats()` and
/// the sampling figures, read now, with the wall-clock time of the read
/// (`unix_ms`), the inner allocator's figures if a feature compiles them in,
/// and the spike detector's state.
pub(crate) fn snapshot(shared: &Shared) -> serde_json::Value {
    let unix_ms = unix_ms_now();
    let uptime_ms = shared.started.elapsed().as_millis() as u64;
    let s = allocmeter::stats();
    let sampling = allocmeter::profile::sampling_stats();
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
    let figures = crate::collector::inner_figures();
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
            "telemetry_bytes": s.telemetry_bytes,
            "by_size": by_size,
        },
        "sampling": {
            "rate": sampling.rate,
            "samples": sampling.samples,
            "dropped": sampling.dropped,
            "frees_lost": sampling.frees_lost,
            "live_samples": sampling.live_samples,
        },
        "inner": inner,
        "spike": shared.spike_status(),
    })
}

/// `/api/history[?since_ms=UNIX_MS]`.
fn history(shared: &Shared, query: &str) -> Reply {
    let mut since = None;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match key {
            "since_ms" => match value.parse::<u64>() {
                Ok(ms) => since = Some(ms),
                Err(_) => {
                    return bad_request(
                        "since_ms must be a whole number of ms since the Unix epoch",
                    );
                }
            },
            _ => return bad_request("unknown parameter; use since_ms"),
        }
    }
    json(&history_body(shared, since))
}

/// The body of `/api/history`.
pub(crate) fn history_body(shared: &Shared, since_unix_ms: Option<u64>) -> serde_json::Value {
    let capacity = shared.history.lock().capacity();
    serde_json::json!({
        "version": API_VERSION,
        "interval_ms": shared.interval.as_millis() as u64,
        "capacity": capacity,
        "points": shared.history_points(since_unix_ms),
    })
}

/// `/api/spikes`: the detector's settings and every spike kept.
pub(crate) fn spikes(shared: &Shared) -> serde_json::Value {
    let status = shared.spike_status();
    serde_json::json!({
        "version": API_VERSION,
        "k": status.k,
        "min_bytes_per_sec": status.min_bytes_per_sec,
        "baseline_secs": status.baseline_secs,
        "spikes": shared.spike_reports(),
    })
}

fn json(value: &serde_json::Value) -> Reply {
    Response::from_data(serde_json::to_vec(value).unwrap_or_default())
        .with_header(header("Content-Type", "application/json"))
        .with_header(header("Cache-Control", "no-store"))
}

fn bad_request(message: &str) -> Reply {
    json(&serde_json::json!({ "version": API_VERSION, "error": message })).with_status_code(400)
}
