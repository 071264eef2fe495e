//! Start an exporter on a free loopback port (the `exporter` feature).
//!
//! The prelude of most of the exporter's tests: an exporter bound to
//! `127.0.0.1:0` (a port the system picks), and its address to send requests
//! to.

use std::net::SocketAddr;
use std::time::Duration;

use allocmeter_exporter::{Builder, Exporter, StartError};

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
