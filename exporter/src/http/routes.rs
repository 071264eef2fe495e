//! What the HTTP server serves: `/metrics`, the pprof heap profiles, the
//! JSON API, and the page at `/`; and who may see it (the bearer token, the
//! switch for the endpoints that reveal code layout). The server itself is
//! the rest of this folder (see `mod.rs`).
//!
//! Owns: the paths, who may see them, and each response's headers. The
//! bodies come from the renderers (`crate::render`); this file renders
//! nothing itself and takes no lock but its 401 log's.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use prometheus::Registry;

use super::limits::MAX_PROFILE_SECONDS;
use super::{Deferred, Lane, Request, Response, Service};
use crate::render::Renderer;
use crate::render::json;
use crate::render::pprof::{self, DefaultType};
use crate::render::prometheus::encode_text;
use crate::render::sites::SortBy;

/// The Prometheus text exposition content type.
pub const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The live page and its assets, embedded at compile time by the
/// `allocmeter-dashboard` crate (`dashboard/`).
const INDEX_HTML: &str = allocmeter_dashboard::INDEX_HTML;
const APP_JS: &str = allocmeter_dashboard::APP_JS;
const STYLE_CSS: &str = allocmeter_dashboard::STYLE_CSS;

/// `/api/sites` returns at most this many sites.
const MAX_TOP: usize = 1000;

/// The paths that reveal the program's code layout (function names, files,
/// stacks): 404 with [`crate::Builder::expose_profiles`]`(false)`.
const PROFILE_PATHS: &[&str] = &[
    "/debug/pprof/",
    "/debug/pprof",
    "/debug/pprof/heap",
    "/debug/pprof/allocs",
    "/debug/pprof/peak",
    "/api/peak",
    "/api/sites",
    "/api/hints",
];

/// The profiles Go's `net/http/pprof` serves that allocmeter does not (a
/// Rust program has no goroutines, and CPU, block, mutex and execution
/// profiles are not an allocator's to take). Continuous profilers ask for
/// several of them by default; they get a 404 that says so, and what to
/// turn off ([`NOT_SERVED`]).
const NOT_SERVED_PROFILES: &[&str] = &[
    "/debug/pprof/profile",
    "/debug/pprof/block",
    "/debug/pprof/mutex",
    "/debug/pprof/goroutine",
    "/debug/pprof/threadcreate",
    "/debug/pprof/cmdline",
    "/debug/pprof/symbol",
    "/debug/pprof/trace",
];

/// The body of the 404 for [`NOT_SERVED_PROFILES`].
pub(crate) const NOT_SERVED: &str = "not served: allocmeter serves the heap profiles only \
(/debug/pprof/heap, /debug/pprof/allocs and /debug/pprof/peak); turn the other profiles off \
in the profiler's scrape config (see allocmeter's docs/profiling.md)\n";

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
    registry: Registry,
    renderer: Arc<Renderer>,
    /// The bearer token every request must carry, if any.
    auth_token: Option<String>,
    /// Whether the profile and call-site endpoints answer.
    expose_profiles: bool,
    /// The 401 log's rate limit.
    unauthorized_log: Mutex<UnauthorizedLog>,
}

/// The 401 log's rate limit: the current window and what it logged.
struct UnauthorizedLog {
    /// When the window started.
    since: Instant,
    /// Lines logged in it.
    logged: u32,
    /// Lines suppressed in it.
    suppressed: u64,
}

impl Endpoints {
    /// What the server serves from, with the security settings.
    pub fn new(
        registry: Registry,
        renderer: Arc<Renderer>,
        auth_token: Option<String>,
        expose_profiles: bool,
    ) -> Endpoints {
        Endpoints {
            registry,
            renderer,
            auth_token,
            expose_profiles,
            unauthorized_log: Mutex::new(UnauthorizedLog {
                since: Instant::now(),
                logged: 0,
                suppressed: 0,
            }),
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
        let UnauthorizedLog {
            since,
            logged,
            suppressed,
        } = &mut *log;
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
        if NOT_SERVED_PROFILES.contains(&path) {
            // Which profiles exist is told only where profiles are served.
            return Err(if self.expose_profiles {
                Response::error(404).with_body(NOT_SERVED)
            } else {
                Response::error(404)
            });
        }
        if PROFILE_PATHS.contains(&path) {
            return if self.expose_profiles {
                Ok(Lane::Heavy)
            } else {
                Err(Response::error(404))
            };
        }
        match path {
            "/api/spikes" => Ok(Lane::Heavy),
            #[cfg(feature = "tracing")]
            "/api/spans" => Ok(Lane::Light),
            "/metrics" => Ok(Lane::Scrape),
            "/api/snapshot" | "/api/stats" | "/api/history" | "/" | "/index.html" | "/app.js"
            | "/style.css" => Ok(Lane::Light),
            _ => Err(Response::error(404)),
        }
    }

    /// What rendering the response allocates is the exporter's, not the
    /// service's: the spike detector leaves it out. (Sending it, which
    /// allocates little, stays outside, so that a slow client does not hold
    /// the detector back: it skips the ticks that fall inside a render.)
    fn render(&self, request: &Request) -> Response {
        self.renderer.account(|| {
            crate::fault::point("render");
            route(&request.path, &request.query, self)
        })
    }

    /// A delta profile (`/debug/pprof/heap` or `allocs` with a valid
    /// `seconds=N`): the site table's totals are noted now, and the profile
    /// of what was allocated since is rendered N seconds later, without
    /// holding the worker meanwhile (as Go's `serveDeltaProfile` takes two
    /// profiles N seconds apart and subtracts them).
    fn defer(&self, request: &Request) -> Option<Deferred> {
        let seconds = delta_window(request)?;
        let (default_type, name) = profile_kind(&request.path)?;
        let renderer = self.renderer.clone();
        let baseline = renderer.account(|| renderer.aggregator().site_values_now());
        Some(Deferred {
            at: Instant::now() + Duration::from_secs(seconds),
            finish: Box::new(move || {
                crate::fault::point("render");
                profile_response(
                    pprof::delta_profile(&renderer, &baseline, default_type),
                    name,
                )
            }),
        })
    }

    fn wait(&self, request: &Request) -> Duration {
        delta_window(request).map_or(Duration::ZERO, Duration::from_secs)
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
    let renderer = &*endpoints.renderer;
    match path {
        "/metrics" => metrics(&endpoints.registry),
        "/debug/pprof/" | "/debug/pprof" => pprof_index(renderer),
        "/debug/pprof/peak" => peak_profile(renderer, query),
        "/api/peak" => peak_body(renderer, query),
        "/debug/pprof/heap" | "/debug/pprof/allocs" => {
            let (default_type, name) = profile_kind(path).expect("a profile path");
            profile(renderer, query, default_type, name)
        }
        "/api/sites" => sites(renderer, query),
        "/api/hints" => hints(renderer, query),
        "/api/snapshot" | "/api/stats" => {
            json_response(&json::stats_body(renderer, endpoints.expose_profiles))
        }
        "/api/history" => history(renderer, query),
        "/api/spikes" => json_response(&json::spikes_body(renderer, endpoints.expose_profiles)),
        #[cfg(feature = "tracing")]
        "/api/spans" => crate::spans::api_body().map_or_else(
            || json_response(&json::error_body(crate::spans::NO_LAYER)).with_status(404),
            |body| json_response(&body),
        ),
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
    match encode_text(&families, &mut body) {
        Ok(()) => Response::ok(METRICS_CONTENT_TYPE, body),
        Err(_) => Response::error(500),
    }
}

/// A pprof endpoint's query: Go's `net/http/pprof` parameters for what is
/// served.
#[derive(Clone, Copy, Debug, PartialEq)]
struct ProfileQuery {
    /// `debug=N`, N above 0: Go's legacy text form.
    text: bool,
    /// `seconds=N`: the difference over the next N seconds (a delta
    /// profile), 1 to [`MAX_PROFILE_SECONDS`].
    seconds: Option<u64>,
}

impl ProfileQuery {
    /// Parses `query`: `debug`, `seconds`, and `gc` (accepted and ignored:
    /// there is no collector to run). Anything else, or a bad value, is an
    /// error with a fixed message.
    fn parse(query: &str) -> Result<ProfileQuery, &'static str> {
        let mut q = ProfileQuery {
            text: false,
            seconds: None,
        };
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            match key {
                "gc" => {}
                "debug" => match value.parse::<u32>() {
                    Ok(n) => q.text = n > 0,
                    Err(_) => return Err("debug must be a whole number\n"),
                },
                "seconds" => match value.parse::<u64>() {
                    Ok(n) if (1..=MAX_PROFILE_SECONDS).contains(&n) => q.seconds = Some(n),
                    _ => {
                        return Err(
                            "seconds must be a whole number from 1 to 300 (the delta profile's window)\n",
                        );
                    }
                },
                _ => return Err("unknown parameter; use seconds, debug and gc\n"),
            }
        }
        // As Go: a delta profile's in-use differences may be negative,
        // which the legacy text form cannot carry.
        if q.text && q.seconds.is_some() {
            return Err("seconds and debug params are incompatible\n");
        }
        Ok(q)
    }
}

/// The profile a path serves: its default sample type and file name.
fn profile_kind(path: &str) -> Option<(DefaultType, &'static str)> {
    match path {
        "/debug/pprof/heap" => Some((DefaultType::InuseSpace, "heap")),
        "/debug/pprof/allocs" => Some((DefaultType::AllocSpace, "allocs")),
        _ => None,
    }
}

/// The window of a valid delta-profile request, if it is one.
fn delta_window(request: &Request) -> Option<u64> {
    profile_kind(&request.path)?;
    ProfileQuery::parse(&request.query).ok()?.seconds
}

/// The heap profile as Go's `net/http/pprof` serves it: gzipped
/// profile.proto, or with `debug=1` (any number above 0) Go's legacy text
/// form. A delta profile (`seconds=N`) is taken by [`Endpoints::defer`];
/// it comes here only with a bad query, answered 400 in plain text as Go
/// does.
fn profile(
    renderer: &Renderer,
    query: &str,
    default_type: DefaultType,
    name: &'static str,
) -> Response {
    let q = match ProfileQuery::parse(query) {
        Ok(q) => q,
        Err(message) => return plain_bad_request(message),
    };
    if q.text {
        let body = pprof::heap_text_profile(renderer);
        return Response::ok("text/plain; charset=utf-8", body.into_bytes());
    }
    profile_response(pprof::heap_profile(renderer, default_type), name)
}

/// Takes `window=0|1` out of `query`: whether the windowed peak is asked
/// for, and the rest of the query. A bad value is an error.
fn peak_window_param(query: &str) -> Result<(bool, String), &'static str> {
    let mut window = false;
    let mut rest = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=').unwrap_or((pair, "")) {
            ("window", "0") => window = false,
            ("window", "1") => window = true,
            ("window", _) => return Err("window must be 0 or 1\n"),
            _ => rest.push(pair),
        }
    }
    Ok((window, rest.join("&")))
}

/// `/debug/pprof/peak[?window=1]`: the heap profile as it stood at the
/// live heap's peak (since start, or over the peak window), in-use space
/// by default; `debug` and `gc` as for the heap profile; no `seconds`.
fn peak_profile(renderer: &Renderer, query: &str) -> Response {
    let (window, rest) = match peak_window_param(query) {
        Ok(w) => w,
        Err(message) => return plain_bad_request(message),
    };
    let q = match ProfileQuery::parse(&rest) {
        Ok(q) if q.seconds.is_some() => {
            return plain_bad_request("seconds does not apply to the peak profile\n");
        }
        Ok(q) => q,
        Err(message) => return plain_bad_request(message),
    };
    match pprof::peak_profile(renderer, window, q.text) {
        None => Response::error(503),
        Some(body) if q.text => Response::ok("text/plain; charset=utf-8", body),
        Some(body) => profile_response(body, "peak"),
    }
}

/// `/api/peak[?top=N]`: the live heap's peaks (since start, and over the
/// peak window) with the `N` sites (default 10, at most 1000) that held the
/// most then.
fn peak_body(renderer: &Renderer, query: &str) -> Response {
    let mut top = 10usize;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=').unwrap_or((pair, "")) {
            ("top", v) => match v.parse::<usize>() {
                Ok(n) => top = n.min(MAX_TOP),
                Err(_) => return bad_request("top must be a whole number"),
            },
            _ => return bad_request("unknown parameter; use top"),
        }
    }
    json_response(&json::peak_body(renderer, top))
}

/// A binary profile's response, with Go's headers.
fn profile_response(body: Vec<u8>, name: &'static str) -> Response {
    Response::ok("application/octet-stream", body).with_header(
        "Content-Disposition",
        format!("attachment; filename=\"{name}\""),
    )
}

/// A 400 in plain text, for the pprof endpoints (whose clients are pprof
/// tools and people with `curl`, as Go's answers are).
fn plain_bad_request(message: &'static str) -> Response {
    Response::error(400).with_body(message)
}

/// `/debug/pprof/`: the index of the profiles served, as Go's
/// `net/http/pprof` has one, with the number of call sites each holds.
fn pprof_index(renderer: &Renderer) -> Response {
    let sites = renderer.table_figures().sites;
    let body = format!(
        "<html>\n<head>\n<title>/debug/pprof/</title>\n</head>\n<body>\n\
         /debug/pprof/\n<br>\n<p>Set debug=1 as a query parameter to export in legacy text format</p>\n\
         <br>\nTypes of profiles available:\n<table>\n<thead><td>Count</td><td>Profile</td></thead>\n\
         <tr><td>{sites}</td><td><a href='allocs?debug=1'>allocs</a></td></tr>\n\
         <tr><td>{sites}</td><td><a href='heap?debug=1'>heap</a></td></tr>\n\
         </table>\n<br>\n<p>\nProfile Descriptions:\n<ul>\n\
         <li><div class=profile-name>allocs: </div> A sampling of all past memory allocations \
         (allocmeter: since the exporter started; every {rate} bytes on average)</li>\n\
         <li><div class=profile-name>heap: </div> A sampling of memory allocations of live objects. \
         The gc parameter is accepted and ignored.</li>\n\
         </ul>\n<p>Not served: profile, block, mutex, goroutine, threadcreate, cmdline, symbol, \
         trace (a 404 says so).</p>\n</p>\n</body>\n</html>\n",
        rate = allocmeter::sample_rate(),
    );
    Response::ok("text/html; charset=utf-8", body.into_bytes())
}

/// `/api/sites?top=N&by=inuse_space|alloc_space|inuse_objects|alloc_objects`.
fn sites(renderer: &Renderer, query: &str) -> Response {
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
    json_response(&json::sites_body(renderer, top, by, &by_name))
}

/// `/api/hints`, which takes no parameter.
fn hints(renderer: &Renderer, query: &str) -> Response {
    if query.split('&').any(|p| !p.is_empty()) {
        return bad_request("unknown parameter; /api/hints takes none");
    }
    json_response(&json::hints_body(renderer))
}

/// `/api/history[?since_ms=UNIX_MS]`.
fn history(renderer: &Renderer, query: &str) -> Response {
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
    json_response(&json::history_body(renderer, since))
}

/// A JSON body, written into a buffer of its exact size: counted first,
/// then written, so that a large body is one allocation of its own size
/// (growing a buffer by doubling would hold up to one and a half bodies
/// while it copies).
fn json_response(value: &impl serde::Serialize) -> Response {
    let mut counted = ByteCount(0);
    let body = serde_json::to_writer(&mut counted, value).and_then(|()| {
        let mut body = Vec::with_capacity(counted.0);
        serde_json::to_writer(&mut body, value).map(|()| body)
    });
    match body {
        Ok(body) => Response::ok("application/json", body).with_header("Cache-Control", "no-store"),
        Err(_) => Response::error(500),
    }
}

/// A writer that only counts the bytes written to it.
struct ByteCount(usize);

impl std::io::Write for ByteCount {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len();
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A 400 with a fixed message (never the request's input).
fn bad_request(message: &'static str) -> Response {
    json_response(&json::error_body(message)).with_status(400)
}
