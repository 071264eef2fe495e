//! What the HTTP server serves: `/metrics`, the pprof heap profiles, the
//! JSON API, and the page at `/`; and who may see it (the bearer token, the
//! switch for the endpoints that reveal code layout). The server itself is
//! in `server.rs`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;
use prometheus::{Encoder, Registry, TextEncoder};

use crate::aggregator::{ProfileState, Shared};
use crate::http::{Lane, Request, Response, Service};
use crate::pprof::{DefaultType, SiteSample, encode_heap_profile};
use crate::sites::SortBy;

/// The Prometheus text exposition content type.
pub const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The live page and its assets, embedded at compile time from `dashboard/`.
const INDEX_HTML: &str = include_str!("../../../dashboard/index.html");
const APP_JS: &str = include_str!("../../../dashboard/app.js");
const STYLE_CSS: &str = include_str!("../../../dashboard/style.css");

/// The JSON API's version, in every response's `version` field.
pub const API_VERSION: u32 = 1;

/// `/api/sites` returns at most this many sites.
const MAX_TOP: usize = 1000;

/// The paths that reveal the program's code layout (function names, files,
/// stacks): 404 with [`crate::Builder::expose_profiles`]`(false)`.
const PROFILE_PATHS: &[&str] = &["/debug/pprof/heap", "/debug/pprof/allocs", "/api/sites"];

/// The page's static files, the same in every build of this crate and
/// holding no data: served without a token, because a browser loads them
/// from `<script>` and `<link>` tags, which cannot send one.
const PUBLIC_ASSETS: &[&str] = &["/app.js", "/style.css"];

/// At most this many 401s are logged per [`LOG_WINDOW`]; the rest are
/// counted and summed up in one line.
const LOG_BURST: u32 = 10;
const LOG_WINDOW: std::time::Duration = std::time::Duration::from_secs(10);

/// What the HTTP server serves from.
pub(crate) struct Endpoints {
    pub registry: Registry,
    pub shared: Arc<Shared>,
    /// The bearer token every request must carry, if any.
    pub auth_token: Option<String>,
    /// Whether the profile and call-site endpoints answer.
    pub expose_profiles: bool,
    /// The 401 log's rate limit: window start, lines logged in it, lines
    /// suppressed in it.
    pub unauthorized_log: Mutex<(Instant, u32, u64)>,
}

impl Endpoints {
    /// What the server serves from, with the security settings.
    pub fn new(
        registry: Registry,
        shared: Arc<Shared>,
        auth_token: Option<String>,
        expose_profiles: bool,
    ) -> Endpoints {
        Endpoints {
            registry,
            shared,
            auth_token,
            expose_profiles,
            unauthorized_log: Mutex::new((Instant::now(), 0, 0)),
        }
    }

    /// Whether the request carries the token (or needs none): as
    /// `Authorization: Bearer TOKEN`, or, for the page only, as `?token=`.
    fn authorized(&self, request: &Request) -> bool {
        let Some(expected) = &self.auth_token else {
            return true;
        };
        if PUBLIC_ASSETS.contains(&request.path.as_str()) {
            return true;
        }
        let mut ok = false;
        if let Some(value) = &request.authorization {
            // The scheme is case-insensitive (RFC 9110 §11.1).
            if let Some((scheme, token)) = value.split_once(' ')
                && scheme.eq_ignore_ascii_case("bearer")
            {
                ok |= token_matches(token.trim().as_bytes(), expected.as_bytes());
            }
        }
        if matches!(request.path.as_str(), "/" | "/index.html") {
            for pair in request.query.split('&') {
                if let Some(("token", value)) = pair.split_once('=') {
                    ok |= token_matches(&percent_decode(value), expected.as_bytes());
                }
            }
        }
        ok
    }

    /// Logs a refused request to stderr: peer and path, never the query
    /// string or the token; at most [`LOG_BURST`] lines per [`LOG_WINDOW`].
    fn log_unauthorized(&self, peer: SocketAddr, path: &str) {
        let mut log = self.unauthorized_log.lock();
        let (since, logged, suppressed) = &mut *log;
        if since.elapsed() >= LOG_WINDOW {
            if *suppressed > 0 {
                eprintln!(
                    "allocmeter-exporter: {suppressed} more unauthorized requests (401) not logged"
                );
            }
            *since = Instant::now();
            *logged = 0;
            *suppressed = 0;
        }
        if *logged < LOG_BURST {
            *logged += 1;
            // The path is visible ASCII (the parser checked); shortened.
            let shown: String = path.chars().take(200).collect();
            eprintln!("allocmeter-exporter: 401 unauthorized from {peer} for {shown:?}");
        } else {
            *suppressed += 1;
        }
    }
}

impl Service for Endpoints {
    fn admit(&self, request: &Request, peer: SocketAddr) -> Result<Lane, Response> {
        // The token first: without it, which paths exist is not told.
        if !self.authorized(request) {
            self.log_unauthorized(peer, &request.path);
            return Err(Response::error(401));
        }
        let path = request.path.as_str();
        if PROFILE_PATHS.contains(&path) {
            return if self.expose_profiles {
                Ok(Lane::Heavy)
            } else {
                Err(Response::error(404))
            };
        }
        match path {
            "/api/spikes" => Ok(Lane::Heavy),
            "/metrics" | "/api/snapshot" | "/api/stats" | "/api/history" | "/" | "/index.html"
            | "/app.js" | "/style.css" => Ok(Lane::Light),
            _ => Err(Response::error(404)),
        }
    }

    /// What rendering the response allocates is the exporter's, not the
    /// service's: the spike detector leaves it out. (Sending it, which
    /// allocates little, stays outside, so that a slow client does not hold
    /// the detector back: it skips the ticks that fall inside a render.)
    fn render(&self, request: &Request) -> Response {
        self.shared.profile.own.account(|| {
            crate::fault::point("render");
            route(&request.path, &request.query, self)
        })
    }
}

/// Compares a presented token with the expected one in time that depends
/// only on the expected token's length: every byte is compared, with no
/// early exit, and a length mismatch is folded in at the end.
pub(crate) fn token_matches(presented: &[u8], expected: &[u8]) -> bool {
    let mut diff = u8::from(presented.len() != expected.len());
    for (i, &e) in expected.iter().enumerate() {
        // Past the presented token's end, compare with a byte no token has
        // (tokens are visible ASCII), so the loop does the same work.
        let p = presented.get(i).copied().unwrap_or(0);
        diff |= std::hint::black_box(p ^ e);
    }
    std::hint::black_box(diff) == 0
}

/// `%XX` decoding of a query value (`+` is left alone); invalid escapes stay
/// as they are.
fn percent_decode(value: &str) -> Vec<u8> {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let (Some(h), Some(l)) = (
                bytes.get(i + 1).and_then(|&b| (b as char).to_digit(16)),
                bytes.get(i + 2).and_then(|&b| (b as char).to_digit(16)),
            )
        {
            out.push((h * 16 + l) as u8);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    out
}

fn route(path: &str, query: &str, endpoints: &Endpoints) -> Response {
    let shared = &endpoints.shared;
    match path {
        "/metrics" => metrics(&endpoints.registry),
        "/debug/pprof/heap" => profile(&shared.profile, DefaultType::InuseSpace, "heap"),
        "/debug/pprof/allocs" => profile(&shared.profile, DefaultType::AllocSpace, "allocs"),
        "/api/sites" => sites(&shared.profile, query),
        "/api/snapshot" | "/api/stats" => {
            let mut body = snapshot(shared);
            body["profiles_exposed"] = endpoints.expose_profiles.into();
            json(&body)
        }
        "/api/history" => history(shared, query),
        "/api/spikes" => json(&spikes(shared, endpoints.expose_profiles)),
        "/" | "/index.html" => asset(INDEX_HTML, "text/html; charset=utf-8")
            // The token may be in this page's URL: no Referer carries it on.
            .with_header("Referrer-Policy", "no-referrer"),
        "/app.js" => asset(APP_JS, "text/javascript; charset=utf-8"),
        "/style.css" => asset(STYLE_CSS, "text/css; charset=utf-8"),
        _ => Response::error(404),
    }
}

/// One of the page's files.
fn asset(body: &'static str, content_type: &str) -> Response {
    Response::ok(content_type, body.as_bytes().to_vec()).with_header("Cache-Control", "no-cache")
}

fn metrics(registry: &Registry) -> Response {
    let families = registry.gather();
    let mut body = Vec::with_capacity(16 * 1024);
    match TextEncoder::new().encode(&families, &mut body) {
        Ok(()) => Response::ok(METRICS_CONTENT_TYPE, body),
        Err(_) => Response::error(500),
    }
}

/// The heap profile as Go's `net/http/pprof` serves it: gzipped profile.proto.
fn profile(state: &ProfileState, default_type: DefaultType, name: &'static str) -> Response {
    let body = heap_profile(state, default_type);
    Response::ok("application/octet-stream", body).with_header(
        "Content-Disposition",
        format!("attachment; filename=\"{name}\""),
    )
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
fn sites(state: &ProfileState, query: &str) -> Response {
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
fn history(shared: &Shared, query: &str) -> Response {
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

/// `/api/spikes`: the detector's settings and every spike kept; without
/// `sites`, each spike's `top_sites` is empty (call sites reveal code
/// layout, see [`crate::Builder::expose_profiles`]).
pub(crate) fn spikes(shared: &Shared, sites: bool) -> serde_json::Value {
    let status = shared.spike_status();
    let mut reports = shared.spike_reports();
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

fn json(value: &serde_json::Value) -> Response {
    match serde_json::to_vec(value) {
        Ok(body) => Response::ok("application/json", body).with_header("Cache-Control", "no-store"),
        Err(_) => Response::error(500),
    }
}

/// A 400 with a fixed message (never the request's input).
fn bad_request(message: &'static str) -> Response {
    json(&serde_json::json!({ "version": API_VERSION, "error": message })).with_status(400)
}
