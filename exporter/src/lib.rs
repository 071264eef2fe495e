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
//! | `/api/snapshot` (alias `/api/stats`) | the statistics now, as JSON |
//! | `/api/history?since_ms=…` | the recent snapshots with their rates, as JSON |
//! | `/api/sites?top=N&by=…` | the top call sites as JSON |
//! | `/api/spikes` | the allocation-rate spikes detected, with what allocated during each |
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
//! The exporter runs four threads, however many clients connect: an
//! aggregator that drains the sampled allocations into a table of call sites
//! ([`Exporter::top_sites`]) and reads every thread's counters once per
//! interval into a bounded history ([`Exporter::snapshot`],
//! [`Exporter::history`]), and, unless [`Builder::serve_http`] turns it off,
//! an HTTP server of three: one I/O thread that accepts, reads and writes
//! every connection non-blocking, under fixed [`limits`] (connections open,
//! head size and time, write time, response bytes held), and two workers
//! that render responses, one for the cheap ones and one for those that
//! symbolize, so a profile
//! never delays a scrape. None takes a lock that an allocating thread could
//! wait on, and all are marked internal: their allocations are counted but
//! never sampled. Dropping the [`Exporter`] (or calling
//! [`Exporter::shutdown`]) stops them all.
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
//! allocation plumbing (`alloc::`, `core::`, `std::`) are trimmed off the top.
//!
//! To serve the metrics from a `/metrics` endpoint the service already has,
//! start the exporter with [`Builder::serve_http`]`(false)` and register
//! [`Exporter::collector`] into its `prometheus::Registry` (or, for the
//! counters alone, an [`AllocCollector`] without any exporter).
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
//! interval with the mean rate of the trailing baseline window: above
//! [`Builder::spike_factor`] times that, and above
//! [`Builder::spike_min_rate`], a spike starts; it ends when the rate falls
//! back. For each spike it records the exact bytes and allocations, and
//! which call sites allocated most during it ([`Exporter::spikes`],
//! `/api/spikes`), so "what allocated during the spike" has an answer
//! without a profile having been taken at the time.
//!
//! The exporter's own allocations go through the global allocator like any
//! other and are counted.

#![warn(missing_docs)]

mod aggregator;
mod collector;
mod error;
mod fault;
mod http;
mod mappings;
mod pprof;
#[cfg(test)]
mod proptests;
mod sites;
mod snapshot;
mod spikes;
mod symbolize;

use std::net::{SocketAddr, TcpListener, ToSocketAddrs};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

pub use aggregator::MAX_SITE_METRICS;
pub use collector::AllocCollector;
pub use error::StartError;
pub use http::HttpStats;
pub use http::limits;
// Kept until the tests move to limits::
pub use http::limits::{
    HEAD_TIMEOUT, LINGER, MAX_BUFFERED_RESPONSE_BYTES, MAX_CONNECTIONS, MAX_HEAD, MAX_HEADERS,
    MAX_REQUEST_LINE, QUEUE_PER_LANE, RENDER_TIMEOUT, WRITE_TIMEOUT,
};
pub use http::routes::{API_VERSION, METRICS_CONTENT_TYPE};
pub use pprof::proto as profile_proto;
pub use sites::{SiteReport, SortBy};
pub use snapshot::{HistoryPoint, Snapshot};
pub use spikes::{
    DEFAULT_SPIKE_BASELINE, DEFAULT_SPIKE_FACTOR, DEFAULT_SPIKE_MIN_RATE, MAX_SPIKES,
    MAX_TOP_SITES, SpikeReport, SpikeSite, SpikeStatus,
};
pub use symbolize::Frame;

use aggregator::{ProfileState, Shared};

/// The address the exporter listens on unless told otherwise: loopback only.
pub const DEFAULT_BIND: &str = "127.0.0.1:9464";

/// How often the aggregator reads the counters unless told otherwise.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(1);

/// How many snapshots the history keeps unless told otherwise (five minutes at
/// the default interval).
pub const DEFAULT_HISTORY: usize = 300;

/// How many call sites the site table keeps unless told otherwise.
pub const DEFAULT_MAX_SITES: usize = 10_000;

/// Configures and starts an [`Exporter`]. Made by [`Exporter::builder`].
#[derive(Clone, Debug)]
pub struct Builder {
    bind: String,
    interval: Duration,
    history: usize,
    const_labels: Vec<(String, String)>,
    sample_rate: Option<u64>,
    stack_depth: Option<usize>,
    max_sites: usize,
    site_metrics: usize,
    serve_http: bool,
    spikes: spikes::SpikeConfig,
    auth_token: Option<Token>,
    expose_profiles: bool,
}

/// The bearer token, kept out of `Debug` output (a logged builder must not
/// show it).
#[derive(Clone)]
struct Token(String);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

impl Default for Builder {
    fn default() -> Self {
        Builder {
            bind: DEFAULT_BIND.to_string(),
            interval: DEFAULT_INTERVAL,
            history: DEFAULT_HISTORY,
            const_labels: Vec::new(),
            sample_rate: None,
            stack_depth: None,
            max_sites: DEFAULT_MAX_SITES,
            site_metrics: 0,
            serve_http: true,
            spikes: spikes::SpikeConfig::default(),
            auth_token: None,
            expose_profiles: true,
        }
    }
}

impl Builder {
    /// The address to listen on, as `IP:PORT` or `HOST:PORT` (default
    /// [`DEFAULT_BIND`], loopback). Port 0 picks a free port; read it back
    /// with [`Exporter::local_addr`]. Binding to a non-loopback address
    /// exposes the endpoints to the network: anyone who can reach the port
    /// reads the metrics, and, unless [`Builder::expose_profiles`]`(false)`,
    /// the program's function names, files and call stacks. Off loopback,
    /// set [`Builder::auth_token`] too, or put the port behind a proxy that
    /// authenticates.
    pub fn bind(mut self, addr: impl Into<String>) -> Self {
        self.bind = addr.into();
        self
    }

    /// How often the aggregator reads the counters into the history (default
    /// one second; at least one millisecond).
    pub fn interval(mut self, interval: Duration) -> Self {
        self.interval = interval.max(Duration::from_millis(1));
        self
    }

    /// How many snapshots the history keeps (default [`DEFAULT_HISTORY`]).
    pub fn history(mut self, snapshots: usize) -> Self {
        self.history = snapshots.max(1);
        self
    }

    /// A label added to every allocmeter metric, such as `service="checkout"`.
    pub fn const_label(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.const_labels.push((name.into(), value.into()));
        self
    }

    /// Sets the sampling rate when the exporter starts (see
    /// [`allocmeter::set_sample_rate`]; default: leave it as it is, 512 KiB
    /// unless changed).
    pub fn sample_rate(mut self, bytes: u64) -> Self {
        self.sample_rate = Some(bytes);
        self
    }

    /// Sets how many return addresses a sample captures when the exporter
    /// starts (see [`allocmeter::set_stack_depth`]; default 64).
    pub fn stack_depth(mut self, frames: usize) -> Self {
        self.stack_depth = Some(frames);
        self
    }

    /// How many call sites the site table keeps (default
    /// [`DEFAULT_MAX_SITES`]). Samples from further stacks are merged into one
    /// `(other)` site and counted in `allocmeter_profile_sites_overflow_total`.
    pub fn max_sites(mut self, sites: usize) -> Self {
        self.max_sites = sites.max(1);
        self
    }

    /// Exports per-site Prometheus series (`allocmeter_site_inuse_bytes`,
    /// `allocmeter_site_alloc_bytes_total`, labelled by short function name)
    /// for the top `k` sites by in-use bytes. Off (0) by default; capped at
    /// [`MAX_SITE_METRICS`], because every site is a time series.
    pub fn site_metrics(mut self, k: usize) -> Self {
        self.site_metrics = k.min(MAX_SITE_METRICS);
        self
    }

    /// Whether to serve HTTP (default `true`). Without it the exporter only
    /// aggregates, for services that read [`Exporter::top_sites`] and
    /// [`Exporter::snapshot`] in-process or serve [`AllocCollector`] from
    /// their own endpoint; the bind address is then ignored.
    pub fn serve_http(mut self, serve: bool) -> Self {
        self.serve_http = serve;
        self
    }

    /// Requires `Authorization: Bearer TOKEN` on every request (default: no
    /// token). Without it, or with a wrong one, the answer is 401 (compared
    /// in constant time; logged to stderr with the peer address and the path
    /// without its query string, never the token, at most 10 lines per 10 s).
    ///
    /// A browser cannot send the header when it opens the page, so the page
    /// (`/`, `/index.html`) also accepts the token as `?token=TOKEN`
    /// (percent-encoded); the page then sends it as a bearer token on its
    /// API calls. Only the page's static files (`/app.js`, `/style.css`, the
    /// same in every build and holding no data) are served without it.
    ///
    /// The token must be 1 to 1024 bytes of visible ASCII; otherwise
    /// [`Builder::start`] fails with [`StartError::InvalidToken`]. Over plain
    /// HTTP the token crosses the network in clear: off loopback, use it
    /// with TLS in front (a reverse proxy) or on a trusted network.
    pub fn auth_token(mut self, token: impl Into<String>) -> Self {
        self.auth_token = Some(Token(token.into()));
        self
    }

    /// Whether to serve the endpoints that reveal the program's code layout
    /// (function names, source files, call stacks): `/debug/pprof/heap`,
    /// `/debug/pprof/allocs` and `/api/sites` (default `true`). With
    /// `false` they answer 404, `/api/spikes` lists each spike without its
    /// top call sites, and the page says that call-site data is disabled.
    /// (The per-site metrics of [`Builder::site_metrics`] are a separate,
    /// explicit choice and stay as set.)
    pub fn expose_profiles(mut self, expose: bool) -> Self {
        self.expose_profiles = expose;
        self
    }

    /// The spike factor `k` (default [`DEFAULT_SPIKE_FACTOR`], 4): an
    /// interval whose allocation rate is above `k` times the baseline (see
    /// [`Builder::spike_baseline`]) starts a spike, and the spike ends at the
    /// first interval back at or under `k` times the baseline it started
    /// with. Values under 1 are taken as 1; NaN as the default.
    pub fn spike_factor(mut self, k: f64) -> Self {
        self.spikes.k = if k.is_nan() {
            DEFAULT_SPIKE_FACTOR
        } else {
            k.max(1.0)
        };
        self
    }

    /// The floor of a spike, bytes per second (default
    /// [`DEFAULT_SPIKE_MIN_RATE`], 1 MiB/s): an interval allocating at this
    /// rate or less never starts a spike, however quiet the baseline was.
    pub fn spike_min_rate(mut self, bytes_per_sec: u64) -> Self {
        self.spikes.min_rate = bytes_per_sec;
        self
    }

    /// The baseline window (default [`DEFAULT_SPIKE_BASELINE`], 60 s): the
    /// baseline is the mean allocation rate over the intervals of this window
    /// that were not part of a spike. It is frozen while a spike lasts; a
    /// spike that lasts longer than the window ends there, its rate then
    /// being the new normal. At least one interval.
    pub fn spike_baseline(mut self, window: Duration) -> Self {
        self.spikes.baseline = window;
        self
    }

    /// Binds the address and starts the threads.
    ///
    /// Fails, without starting anything, if the address does not parse, the
    /// port is taken, a label name is invalid, the token is not valid (see
    /// [`Builder::auth_token`]), or a thread cannot be spawned. The error
    /// names the address.
    pub fn start(self) -> Result<Exporter, StartError> {
        // The exporter's own set-up allocations are counted, not profiled.
        let _quiet = allocmeter::profile::suspend_sampling();
        if let Some(Token(token)) = &self.auth_token {
            let reason = if token.is_empty() {
                Some("the token is empty")
            } else if token.len() > 1024 {
                Some("the token is longer than 1024 bytes")
            } else if !token.bytes().all(|b| b.is_ascii_graphic()) {
                Some("the token must be visible ASCII (no spaces or control characters)")
            } else {
                None
            };
            if let Some(reason) = reason {
                return Err(StartError::InvalidToken { reason });
            }
        }
        let profile = Arc::new(ProfileState::new(self.max_sites, self.site_metrics));
        let registry = self.registry(profile.clone())?;
        let server = if self.serve_http {
            let addr = resolve(&self.bind)?;
            let bind_error = |source| StartError::Bind {
                addr: self.bind.clone(),
                source,
            };
            let listener = TcpListener::bind(addr).map_err(bind_error)?;
            let local_addr = listener.local_addr().map_err(bind_error)?;
            Some((listener, local_addr))
        } else {
            None
        };

        if let Some(rate) = self.sample_rate {
            allocmeter::set_sample_rate(rate);
        }
        if let Some(depth) = self.stack_depth {
            allocmeter::set_stack_depth(depth);
        }
        let spike_config = spikes::SpikeConfig {
            baseline: self.spikes.baseline.max(self.interval),
            ..self.spikes
        };
        let shared = Arc::new(Shared::new(
            self.history,
            self.interval,
            spike_config,
            profile.clone(),
        ));
        shared.tick();
        let stop = Arc::new(AtomicBool::new(false));

        let mut exporter = Exporter {
            local_addr: server.as_ref().map(|(_, a)| *a),
            const_labels: self.const_labels.clone(),
            shared: shared.clone(),
            server: None,
            stop: stop.clone(),
            threads: Vec::new(),
        };
        let interval = self.interval;
        let aggregator_stop = stop.clone();
        let aggregator_shared = shared.clone();
        let aggregator = std::thread::Builder::new()
            .name("allocmeter-aggregator".into())
            .spawn(move || aggregator::run(aggregator_shared, interval, aggregator_stop))
            .map_err(StartError::Thread)?;
        // Registered before `start` returns, so that the first burst of
        // samples already wakes it.
        allocmeter::profile::register_drainer(aggregator.thread().clone());
        exporter.threads.push(aggregator);
        if let Some((listener, _)) = server {
            let endpoints = http::routes::Endpoints::new(
                registry,
                shared,
                self.auth_token.as_ref().map(|t| t.0.clone()),
                self.expose_profiles,
            );
            // If this fails, dropping `exporter` stops the aggregator.
            let server = http::start(listener, Arc::new(endpoints)).map_err(StartError::Thread)?;
            // For `allocmeter_exporter_panics_total{where="render"}`.
            let _ = exporter.shared.profile.http.set(server.counters.clone());
            exporter.server = Some(server);
        }
        Ok(exporter)
    }

    fn registry(&self, profile: Arc<ProfileState>) -> Result<prometheus::Registry, StartError> {
        let invalid = |reason: String| StartError::InvalidAddress {
            addr: self.bind.clone(),
            reason,
        };
        let collector = profiled_collector(&self.const_labels, profile)
            .map_err(|e| invalid(format!("bad constant label: {e}")))?;
        let registry = prometheus::Registry::new();
        registry
            .register(Box::new(collector))
            .map_err(|e| invalid(format!("cannot register collector: {e}")))?;
        #[cfg(target_os = "linux")]
        registry
            .register(Box::new(
                prometheus::process_collector::ProcessCollector::for_self(),
            ))
            .map_err(|e| invalid(format!("cannot register process collector: {e}")))?;
        Ok(registry)
    }
}

/// The collector the exporter serves and hands out: `labels` on every
/// series, and the site table's figures from `profile`.
fn profiled_collector(
    labels: &[(String, String)],
    profile: Arc<ProfileState>,
) -> prometheus::Result<AllocCollector> {
    Ok(AllocCollector::with_const_labels(labels.iter().cloned().collect())?.with_profile(profile))
}

/// Turns `IP:PORT` or `HOST:PORT` into one socket address.
fn resolve(addr: &str) -> Result<SocketAddr, StartError> {
    if let Ok(parsed) = addr.parse::<SocketAddr>() {
        return Ok(parsed);
    }
    let invalid = |reason: String| StartError::InvalidAddress {
        addr: addr.to_string(),
        reason,
    };
    if !addr.contains(':') {
        return Err(invalid("expected IP:PORT or HOST:PORT".into()));
    }
    let mut candidates = addr.to_socket_addrs().map_err(|e| invalid(e.to_string()))?;
    candidates
        .next()
        .ok_or_else(|| invalid("the name resolves to no address".into()))
}

/// A running exporter. Dropping it stops its threads.
pub struct Exporter {
    local_addr: Option<SocketAddr>,
    const_labels: Vec<(String, String)>,
    shared: Arc<Shared>,
    server: Option<http::Handle>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Exporter {
    /// A builder with the defaults: [`DEFAULT_BIND`], [`DEFAULT_INTERVAL`],
    /// [`DEFAULT_HISTORY`].
    pub fn builder() -> Builder {
        Builder::default()
    }

    /// The address actually listened on (with the real port if 0 was asked).
    ///
    /// # Panics
    ///
    /// If the exporter was started with [`Builder::serve_http`]`(false)`.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
            .expect("local_addr() needs an exporter that serves HTTP")
    }

    /// The URL of the page, `http://IP:PORT/` (see [`Exporter::local_addr`]).
    pub fn url(&self) -> String {
        format!("http://{}/", self.local_addr())
    }

    /// The `n` call sites with the largest `by`, with their estimates and
    /// symbolized stacks: what `/api/sites` serves, for logging in-process.
    ///
    /// ```no_run
    /// # let exporter = allocmeter_exporter::Exporter::builder().serve_http(false).start().unwrap();
    /// use allocmeter_exporter::SortBy;
    /// for site in exporter.top_sites(5, SortBy::InuseSpace) {
    ///     println!("{:>12.0} B in use  {}", site.inuse_space, site.function);
    /// }
    /// ```
    pub fn top_sites(&self, n: usize, by: SortBy) -> Vec<SiteReport> {
        self.shared.profile.top_sites(n, by)
    }

    /// The heap profile, gzipped `profile.proto`, as `/debug/pprof/heap`
    /// serves it (in-use space by default).
    pub fn heap_profile(&self) -> Vec<u8> {
        http::routes::heap_profile(&self.shared.profile, pprof::DefaultType::InuseSpace)
    }

    /// A collector of allocmeter's metrics for the service's own
    /// `prometheus::Registry`, for a service that already serves `/metrics`:
    /// start the exporter with [`Builder::serve_http`]`(false)` and register
    /// this. It renders the same families, with the same constant labels, as
    /// the exporter's own `/metrics`, site-table figures included (the
    /// process metrics excepted: a service with a registry usually registers
    /// its own `ProcessCollector`).
    ///
    /// ```
    /// let exporter = allocmeter_exporter::Exporter::builder()
    ///     .serve_http(false)
    ///     .const_label("service", "checkout")
    ///     .start()
    ///     .unwrap();
    /// let registry = prometheus::Registry::new();
    /// registry.register(Box::new(exporter.collector())).unwrap();
    /// let live = registry
    ///     .gather()
    ///     .into_iter()
    ///     .find(|f| f.name() == "allocmeter_heap_live_bytes")
    ///     .unwrap();
    /// assert_eq!(live.get_metric()[0].get_label()[0].value(), "checkout");
    /// ```
    pub fn collector(&self) -> AllocCollector {
        profiled_collector(&self.const_labels, self.shared.profile.clone())
            .expect("the exporter checked these labels when it started")
    }

    /// The newest snapshot the aggregator took.
    pub fn snapshot(&self) -> Snapshot {
        let history = self.shared.history.lock();
        *history
            .latest()
            .expect("the history holds the snapshot taken at start")
    }

    /// The snapshots in the history, oldest first.
    pub fn history(&self) -> Vec<Snapshot> {
        self.shared.history.lock().to_vec()
    }

    /// The history as `/api/history` serves it: the points taken strictly
    /// after `since_unix_ms` (all of them with `None`), oldest first, each
    /// with its rates over the interval that ended there.
    pub fn history_points(&self, since_unix_ms: Option<u64>) -> Vec<HistoryPoint> {
        self.shared.history_points(since_unix_ms)
    }

    /// The allocation-rate spikes detected so far, as `/api/spikes` serves
    /// them: oldest first, at most [`MAX_SPIKES`], each with the call sites
    /// that allocated most during it (symbolized now).
    pub fn spikes(&self) -> Vec<SpikeReport> {
        self.shared.spike_reports()
    }

    /// The spike detector's settings and state now (the `spike` object of
    /// `/api/snapshot`).
    pub fn spike_status(&self) -> SpikeStatus {
        self.shared.spike_status()
    }

    /// Bytes of memory allocmeter itself holds, now: the allocator's share
    /// ([`allocmeter::MemStats::telemetry_bytes`]: slots, sample rings, the
    /// sampled-pointer table) plus the exporter's (site table, symbol cache,
    /// snapshot history, spike detector and records). The figure
    /// `allocmeter_telemetry_bytes` reports.
    ///
    /// ```
    /// let exporter = allocmeter_exporter::Exporter::builder()
    ///     .serve_http(false)
    ///     .start()
    ///     .unwrap();
    /// assert!(exporter.telemetry_bytes() >= allocmeter::stats().telemetry_bytes);
    /// ```
    pub fn telemetry_bytes(&self) -> u64 {
        allocmeter::stats().telemetry_bytes + self.shared.profile.own_bytes() as u64
    }

    /// The most [`Exporter::telemetry_bytes`] can come to with the threads
    /// seen so far: [`allocmeter::telemetry_bound`] for the allocator's
    /// share (it grows with the peak number of threads alive at once, about
    /// 124 KiB each), plus the exporter's at their limits: the site table
    /// at [`Builder::max_sites`] stacks of the deepest capture with every
    /// live sample, the symbol cache (8 MiB), the history at
    /// [`Builder::history`] snapshots and the spike records. It does not
    /// grow with the allocation rate, the number of call sites or the
    /// threads ever started.
    ///
    /// ```
    /// let exporter = allocmeter_exporter::Exporter::builder()
    ///     .serve_http(false)
    ///     .start()
    ///     .unwrap();
    /// assert!(exporter.telemetry_bytes() <= exporter.telemetry_bound());
    /// ```
    pub fn telemetry_bound(&self) -> u64 {
        let slots = allocmeter::stats().slots_used;
        let history_max = self.shared.history.lock().max_bytes();
        allocmeter::telemetry_bound(slots)
            + self
                .shared
                .profile
                .max_own_bytes(usize::try_from(slots).unwrap_or(usize::MAX), history_max)
                as u64
    }

    /// What the HTTP server did so far: connections accepted, evicted at
    /// the connection cap, timed out, renders that panicked, requests
    /// refused as busy. `None` without HTTP ([`Builder::serve_http`]).
    pub fn http_stats(&self) -> Option<HttpStats> {
        self.server.as_ref().map(|s| s.counters.read())
    }

    /// Stops the threads and waits for them. Also done on drop.
    pub fn shutdown(mut self) {
        self.stop_threads();
    }

    fn stop_threads(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(server) = &mut self.server {
            server.stop();
        }
        for thread in self.threads.drain(..) {
            thread.thread().unpark();
            let _ = thread.join();
        }
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        self.stop_threads();
    }
}

impl std::fmt::Debug for Exporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Exporter")
            .field("local_addr", &self.local_addr)
            .finish_non_exhaustive()
    }
}
