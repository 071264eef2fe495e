//! What the HTTP server did: [`HttpCounters`], bumped by the server's I/O
//! thread and workers as things happen, and [`HttpStats`], the public copy
//! of them ([`crate::Exporter::http_stats`]).
//!
//! A leaf beside the stages rather than inside `http/`: the Prometheus
//! renderer reads the render panics from it
//! (`allocmeter_exporter_panics_total{where="render"}`), and renderers do
//! not import the server. The builder makes one and hands it to both.
//!
//! Counters only: plain relaxed atomics, each written where its event
//! happens and read as a set by [`HttpCounters::read`]. Nothing here decides
//! anything.

use std::sync::atomic::{AtomicU64, Ordering};

/// Counters of what the server did, for tests and diagnostics.
#[derive(Debug, Default)]
pub(crate) struct HttpCounters {
    /// Connections accepted.
    pub accepted: AtomicU64,
    /// Connections closed to make room for a new one.
    pub evicted: AtomicU64,
    /// Connections that did not send a complete head in time.
    pub timed_out: AtomicU64,
    /// Renders that panicked (answered 500).
    pub panics: AtomicU64,
    /// Requests answered 503 because a queue or the response buffer was full.
    pub busy: AtomicU64,
}

impl HttpCounters {
    /// The counters now.
    pub fn read(&self) -> HttpStats {
        HttpStats {
            accepted: self.accepted.load(Ordering::Relaxed),
            evicted: self.evicted.load(Ordering::Relaxed),
            timed_out: self.timed_out.load(Ordering::Relaxed),
            panics: self.panics.load(Ordering::Relaxed),
            busy: self.busy.load(Ordering::Relaxed),
        }
    }
}

/// What the HTTP server did since it started ([`crate::Exporter::http_stats`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct HttpStats {
    /// Connections accepted.
    pub accepted: u64,
    /// Connections closed to make room for a new one at
    /// [`MAX_CONNECTIONS`](crate::limits::MAX_CONNECTIONS).
    pub evicted: u64,
    /// Connections that sent no complete request head within
    /// [`HEAD_TIMEOUT`](crate::limits::HEAD_TIMEOUT) (answered 408).
    pub timed_out: u64,
    /// Responses whose rendering panicked (answered 500).
    pub panics: u64,
    /// Requests answered 503: a worker's queue
    /// ([`QUEUE_PER_LANE`](crate::limits::QUEUE_PER_LANE)) or the response
    /// buffer
    /// ([`MAX_BUFFERED_RESPONSE_BYTES`](crate::limits::MAX_BUFFERED_RESPONSE_BYTES))
    /// was full.
    pub busy: u64,
}
