//! Start an exporter on a free loopback port (the `exporter` feature), and
//! read its JSON API.
//!
//! The prelude of most of the exporter's tests: an exporter bound to
//! `127.0.0.1:0` (a port the system picks), and its address to send requests
//! to. Then [`get_json`] for an `/api/*` body, with [`json_u64`] and
//! [`json_f64`] for its fields, and [`unix_ms_now`] for the clock its
//! timestamps are on.

use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use allocmeter_exporter::{Builder, Exporter, StartError};
use serde_json::Value;

use crate::http::fetch;

/// A builder bound to `127.0.0.1:0`; add what a test needs, then
/// [`start_built`] it.
pub fn loopback() -> Builder {
    Exporter::builder().bind("127.0.0.1:0")
}

/// Starts `builder` and returns the exporter with its address; panics
/// (`exporter starts`) if it does not start.
pub fn start_built(builder: Builder) -> (Exporter, SocketAddr) {
    try_start_built(builder).expect("exporter starts")
}

/// Starts `builder` and returns the exporter with its address, or why it did
/// not start.
pub fn try_start_built(builder: Builder) -> Result<(Exporter, SocketAddr), StartError> {
    let exporter = builder.start()?;
    let addr = exporter.local_addr();
    Ok((exporter, addr))
}

/// An exporter on `127.0.0.1:0` ticking every `interval`, and its address.
pub fn start_exporter(interval: Duration) -> (Exporter, SocketAddr) {
    start_built(loopback().interval(interval))
}

/// An exporter on `127.0.0.1:0` with the builder's defaults otherwise, and
/// its address.
pub fn start_default_exporter() -> (Exporter, SocketAddr) {
    start_built(loopback())
}

/// A gzipped body (a pprof profile, as the exporter serves it) unpacked.
pub fn gunzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Read;
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(bytes)
        .read_to_end(&mut out)
        .expect("gzip");
    out
}

/// GETs `path` from the exporter at `addr` over HTTP, asserts that the
/// answer is `status` with versioned, uncached JSON (`application/json`,
/// `Cache-Control: no-store`, `"version": 1`), and returns it parsed.
pub fn get_json(addr: SocketAddr, path: &str, status: u16) -> Value {
    let reply = fetch(addr, "GET", path);
    assert_eq!(reply.status, status, "{path}: {}", reply.body);
    assert_eq!(
        reply.header("content-type"),
        Some("application/json"),
        "{path}"
    );
    assert_eq!(reply.header("cache-control"), Some("no-store"), "{path}");
    let v: Value = serde_json::from_str(&reply.body).expect("valid JSON");
    assert_eq!(v["version"], 1, "{path}");
    v
}

/// `v[field]` as a `u64`; panics, naming the field, if it is not one.
pub fn json_u64(v: &Value, field: &str) -> u64 {
    v[field]
        .as_u64()
        .unwrap_or_else(|| panic!("{field} is not a u64 in {v}"))
}

/// `v[field]` as an `f64`; panics, naming the field, if it is not a number.
pub fn json_f64(v: &Value, field: &str) -> f64 {
    v[field]
        .as_f64()
        .unwrap_or_else(|| panic!("{field} is not a number in {v}"))
}

/// The wall clock in milliseconds since the Unix epoch: the clock of the
/// exporter's `unix_ms` and `*_unix_ms` fields.
pub fn unix_ms_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is after 1970")
        .as_millis() as u64
}
