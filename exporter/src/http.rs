//! The HTTP thread: `/metrics`, the pprof heap profiles, the JSON API, and the
//! page at `/`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use prometheus::{Encoder, Registry, TextEncoder};
use tiny_http::{Header, Method, Request, Response, Server};

use crate::aggregator::ProfileState;
use crate::pprof::{DefaultType, SiteSample, encode_heap_profile};
use crate::sites::SortBy;

/// The Prometheus text exposition content type.
pub const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The status page, embedded at compile time.
const INDEX_HTML: &str = include_str!("../../dashboard/index.html");

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
    pub profile: Arc<ProfileState>,
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
fn handle(request: Request, endpoints: &Endpoints) {
    let response = route(request.method(), request.url(), endpoints);
    let _ = request.respond(response);
}

fn route(method: &Method, url: &str, endpoints: &Endpoints) -> Reply {
    if !matches!(method, Method::Get | Method::Head) {
        return Response::from_string("method not allowed: only GET and HEAD\n")
            .with_status_code(405)
            .with_header(header("Allow", "GET, HEAD"));
    }
    let (path, query) = url.split_once('?').unwrap_or((url, ""));
    match path {
        "/metrics" => metrics(&endpoints.registry),
        "/debug/pprof/heap" => profile(&endpoints.profile, DefaultType::InuseSpace, "heap"),
        "/debug/pprof/allocs" => profile(&endpoints.profile, DefaultType::AllocSpace, "allocs"),
        "/api/sites" => sites(&endpoints.profile, query),
        "/api/stats" => stats(),
        "/" | "/index.html" => Response::from_string(INDEX_HTML)
            .with_header(header("Content-Type", "text/html; charset=utf-8")),
        _ => Response::from_string("not found\n").with_status_code(404),
    }
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

/// `/api/stats`: `allocmeter::stats()` and the sampling figures, read now,
/// with the wall-clock time of the read (`unix_ms`).
fn stats() -> Reply {
    let unix_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
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
    json(&serde_json::json!({
        "version": API_VERSION,
        "unix_ms": unix_ms,
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
    }))
}

fn json(value: &serde_json::Value) -> Reply {
    Response::from_data(serde_json::to_vec(value).unwrap_or_default())
        .with_header(header("Content-Type", "application/json"))
}

fn bad_request(message: &str) -> Reply {
    json(&serde_json::json!({ "version": API_VERSION, "error": message })).with_status_code(400)
}
