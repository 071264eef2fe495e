//! # allocmeter-exporter
//!
//! Serves the statistics and sampled call sites of [`allocmeter`] while the
//! service runs, from background threads:
//!
//! | endpoint | what |
//! |---|---|
//! | `/metrics` | Prometheus text format: counters, live heap, size histograms, sampling health, `process_*` |
//! | `/debug/pprof/heap` | gzipped pprof heap profile (`go tool pprof` reads it), in-use space by default |
//! | `/debug/pprof/allocs` | the same profile, allocated space by default |
//! | `/debug/pprof/peak` | the heap profile as it stood at the live heap's peak (`?window=1`: over the peak window) |
//! | `/api/peak` | the live heap's peaks, since start and over the window, with the sites that held the most then |
//! | `/api/snapshot` (alias `/api/stats`) | the statistics now, as JSON |
//! | `/api/history?since_ms=…` | the recent snapshots with their rates, as JSON |
//! | `/api/sites?top=N&by=…` | the top call sites as JSON |
//! | `/api/spikes` | the allocation-rate spikes detected, with what allocated during each |
//! | `/api/hints` | optimisation hints: which call site should preallocate, reuse, pool, stream or stop `format!`-ing |
//! | `/api/spans` | (feature `tracing`, once a `spans::SpanLayer` is made) what each `tracing` span name allocated, exactly |
//! | `/` | the live page (`/app.js`, `/style.css`) |
//!
//! ```no_run
//! use std::alloc::System;
//! use allocmeter::Instrumented;
//!
//! #[global_allocator]
//! static GLOBAL: Instrumented<System> = Instrumented::new(System);
//!
//! fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let telemetry = allocmeter_exporter::Exporter::builder()
//!         .bind("127.0.0.1:9464") // loopback unless told otherwise
//!         .start()?; // a clear error if the port is taken
//!     println!("serving on {}", telemetry.url());
//!     // ... the service ...
//!     Ok(())
//! }
//! ```
//!
//! The exporter runs five threads, however many clients connect: an
//! aggregator that drains the sampled allocations into a table of call sites
//! ([`Exporter::top_sites`]) and reads every thread's counters once per
//! interval into a bounded history ([`Exporter::snapshot`],
//! [`Exporter::history_points`]), and, unless [`Builder::serve_http`] turns it off,
//! an HTTP server of four: one I/O thread that accepts, reads and writes
//! every connection non-blocking, under fixed [`limits`] (connections open,
//! head size and time, write time, response bytes held), and three workers
//! that render responses, one for scrapes, one for the other cheap ones and
//! one for those that symbolize, so a profile never delays a scrape. None takes a lock that an
//! allocating thread could wait on, and all are marked internal: their
//! allocations are counted on allocmeter's side, never sampled. Dropping the [`Exporter`] (or
//! calling [`Exporter::shutdown`]) stops them all.
//!
//! Inside, the crate is arranged by stage, in the order data flows:
//! `aggregate/` (the aggregator thread and what it keeps), `render/`
//! (Prometheus, pprof, JSON), `http/` (the server), with `symbols/` beside
//! the renderers. `ARCHITECTURE.md` in the repository maps every file.
//!
//! The server listens on loopback unless [`Builder::bind`] says otherwise;
//! [`Builder::auth_token`] requires a bearer token, and
//! [`Builder::expose_profiles`]`(false)` turns off the endpoints that reveal
//! the program's code layout.
//!
//! ## Reading a heap profile
//!
//! ```text
//! go tool pprof -top http://127.0.0.1:9464/debug/pprof/heap      # who holds memory now
//! go tool pprof -top http://127.0.0.1:9464/debug/pprof/allocs    # who allocated most
//! ```
//!
//! About one allocation per [`allocmeter::sample_rate`] bytes (512 KiB by
//! default) is sampled with its call stack; each sample is weighted by the
//! inverse of its probability of being sampled, so the figures are unbiased
//! estimates, not exact counts. Stacks start at the program's function that
//! asked for memory: allocmeter's own frames and the standard library's
//! allocation plumbing are trimmed off the top (told by where their code
//! lives: the toolchain's `library/` sources, allocmeter's own; by their
//! `alloc::`, `core::`, `std::` names only without debug info).
//!
//! To serve the metrics from a `/metrics` endpoint the service already has,
//! start the exporter with [`Builder::serve_http`]`(false)` and register
//! [`Exporter::collector`] into its `prometheus::Registry` (or, for the
//! counters alone, an [`AllocCollector`] without any exporter).
//!
//! A service whose metrics go through the `metrics` facade or the official
//! `prometheus-client` crate turns on the cargo feature of the same name:
//! `adapters::metrics::Collector` records the same families through the
//! facade's recorder (the size histograms as per-class counters), and
//! `adapters::prometheus_client::Collector` goes into the client's
//! `Registry` (the histograms whole). Both work from the counters alone, or
//! from an exporter for its figures too; `docs/integrations.md` in the
//! repository wires each in.
//!
//! Cargo feature `tracing` adds `spans::SpanLayer`, a `tracing_subscriber`
//! layer that counts exactly what each span's thread allocates while inside
//! it, served as `allocmeter_span_*{span="target::name"}` and `/api/spans`.
//!
//! Cargo features `jemalloc`, `mimalloc` and `glibc` (all off by default)
//! add the inner allocator's own figures as `allocmeter_inner_*` gauges, so
//! that a leak (allocmeter's live heap grows) can be told from
//! fragmentation (the allocator's resident or committed bytes grow while the
//! live heap does not). Turn on the one that matches the inner allocator.
//!
//! ## Allocation-rate spikes
//!
//! At every tick the aggregator compares the allocation rate of the latest
//! interval with the median rate of the trailing baseline window: above
//! [`Builder::spike_factor`] times that, and above
//! [`Builder::spike_min_rate`], a spike starts; it ends when the rate falls
//! back. A median, so that the interval a step falls inside, a burst or the
//! start-up cannot lift the bar over the step: a rise to more than `k` ×
//! the rate before it that lasts two intervals is reported wherever it
//! falls against the tick (the repository's `docs/spikes.md` states the guarantee exactly). For each spike it records the exact bytes and allocations, and
//! which call sites allocated most during it ([`Exporter::spikes`],
//! `/api/spikes`), so "what allocated during the spike" has an answer
//! without a profile having been taken at the time.
//!
//! ## Optimisation hints
//!
//! [`Exporter::hints`] (and `/api/hints`) names, for the call sites that
//! would save most, the technique that fits what their sampled blocks did,
//! with the evidence and the saving:
//!
//! | technique | what the sampled blocks did | the fix |
//! |---|---|---|
//! | `preallocate` | grew by realloc (a `Vec` or `String` pushed to), or a map rehashed into a new table | `with_capacity` / `reserve` about the size they ended at |
//! | `reuse` | freed within 1 ms by the thread that allocated them, before it allocated 4 more of their size, of one size | keep one buffer and `clear()` it |
//! | `format` | as `reuse`, allocated by `format!` | `write!` into a kept `String` |
//! | `pool` | freed within 10 ms on other threads, or after their thread allocated 4 more of their size (several alive at once), of one size | a pool or free list |
//! | `stream` | blocks of 8 MiB or more, allocated and freed again and again | process the input in chunks |
//!
//! How it knows: the allocator times each sampled block and follows it
//! through its reallocs to its free (only sampled blocks: nothing is added
//! to the unsampled path), and the aggregator keeps, per site, the blocks'
//! sizes, lifetimes, freeing threads and growth over a sliding window
//! ([`Builder::hints_window`], two minutes by default). The first program
//! frame says where; the standard library's frames above it say which
//! technique (`finish_grow`, `reserve_rehash`, `format_inner`,
//! `read_to_end`).
//!
//! How to read one: each hint states its rule's property as a share of the
//! site's blocks ("48 of 48 freed within 1 ms by the thread that allocated
//! them"), with the share's Wilson lower bound at 95 %; it fires only when
//! that bound clears the rule's bar and at least
//! [`hints::MIN_OBSERVATIONS`] blocks are behind it. Its confidence is named
//! from the same numbers (`high`: 100 blocks or more, the saving known to
//! about ±20 %; `medium`: 30 or more, about ±36 %). The saving is given in
//! allocations and bytes per second with its 95 % range, and as a share of
//! all the program's allocations (exact denominators). A site under 0.5 %
//! of all allocations and of all bytes is not hinted; a site with too few
//! sampled blocks yet is listed as collecting evidence, with about how long
//! it will take at its rate.
//!
//! Pitfalls: blocks still alive are censored, not short- or long-lived,
//! until their age decides; a hint is a candidate, measured in production,
//! not a proof that the fix pays: each carries `why_not` (what could make
//! it wrong) and `check` (the [`allocmeter::allocs_per_run`] budget that
//! proves the fix). An allocator cannot see a `Vec`'s length, what a block
//! is read or written for, or escape analysis; those are clippy's and
//! DHAT's.
//!
//! The exporter's own allocations go through the global allocator like any
//! other and are counted, exactly, as allocmeter's own
//! ([`allocmeter::stats_split`]): its threads, its renders on the service's
//! threads (which hand back copies the service owns) and its start. The
//! service's figures (`allocmeter_heap_live_bytes` and the rest, the
//! history, the spike detector, the page) leave them out, so looking does
//! not move them; the `allocmeter_exporter_*` families and
//! `allocmeter_telemetry_bytes` show them.
//!
//! ## Platform
//!
//! Linux only: the symbolizer walks the loaded objects with
//! `dl_iterate_phdr` and reads `/proc/self`, and [`allocmeter`] hooks
//! `fork` with `pthread_atfork`. On any other target the build stops with
//! one error that says so. Rust 1.88 or newer.
//!
//! ## Public dependencies
//!
//! Two dependencies are part of this crate's API: `prometheus` 0.14
//! ([`Exporter::collector`] and [`AllocCollector`] are its
//! `prometheus::core::Collector`s, registered into its `Registry`) and
//! `prost` 0.14 (the pprof messages of `profile_proto` are its
//! `prost::Message`s). A service must use the same major
//! versions to register the collector; a bump of either to an incompatible
//! version is a breaking release of this crate.

#![warn(missing_docs)]

// One clear error off Linux. `allocmeter` stops there first with the same
// message, so cargo never gets as far as this crate's modules.
#[cfg(not(target_os = "linux"))]
compile_error!(
    "allocmeter-exporter supports Linux only (it walks the loaded objects with \
     dl_iterate_phdr and reads /proc): build for a *-linux-* target"
);

// The README's example, compiled as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctest;

mod aggregate;
mod builder;
mod error;
mod exporter;
mod fault;
mod health;
mod http;
mod marked;
#[cfg(test)]
mod proptests;
mod render;
#[cfg(feature = "tracing")]
pub mod spans;
mod symbols;

pub use aggregate::detector::{
    DEFAULT_SPIKE_BASELINE, DEFAULT_SPIKE_FACTOR, DEFAULT_SPIKE_MIN_RATE,
};
pub use aggregate::history::{HistoryPoint, Snapshot};
pub use aggregate::spikes::{MAX_SPIKES, SpikeStatus};
pub use builder::{
    Builder, DEFAULT_BIND, DEFAULT_HINTS_WINDOW, DEFAULT_HISTORY, DEFAULT_INTERVAL,
    DEFAULT_MAX_SITES, DEFAULT_PEAK_WINDOW,
};
pub use error::StartError;
pub use exporter::Exporter;
pub use health::HttpStats;
pub use http::limits;
pub use http::routes::METRICS_CONTENT_TYPE;
pub use render::DEFAULT_SYMBOLS_IDLE;
pub use render::json::API_VERSION;

/// Optimisation hints: what [`Exporter::hints`] and `/api/hints` return,
/// and the thresholds the rules judge by (see the crate docs,
/// "Optimisation hints").
pub mod hints {
    pub use crate::aggregate::evidence::{
        MAX_EVIDENCE_SITES, POOL_SHORT_LIVED_NS, SEVERAL, SHORT_LIVED_NS, STREAM_MIN_BYTES,
    };
    pub use crate::render::hints::rules::{
        HIGH_OBSERVATIONS, MIN_HUGE_BLOCKS, MIN_OBSERVATIONS, MIN_SHARE, NARROW_SIZE_RATIO,
        STREAM_CHUNK_BYTES,
    };
    pub use crate::render::hints::{
        Collecting, Confidence, Declined, Evidence, Hint, HintsReport, MAX_HINTS, Saving, Share,
        Technique,
    };
}
#[cfg(any(feature = "metrics", feature = "prometheus-client"))]
pub use render::adapters;
#[doc(hidden)]
pub use render::pprof::proto as profile_proto;
pub use render::prometheus::{AllocCollector, MAX_SITE_METRICS};
pub use render::sites::{SiteReport, SortBy};
pub use render::spikes::{MAX_TOP_SITES, SpikeReport, SpikeSite};
pub use symbols::Frame;
