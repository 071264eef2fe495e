//! [`Builder`]: the exporter's settings, checked, and the start that wires
//! the stages together (aggregator → renderer → HTTP) and spawns their
//! threads.
//!
//! The only place that knows every stage; no stage imports it.

use std::net::{SocketAddr, TcpListener, ToSocketAddrs};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use crate::aggregate::detector::{DEFAULT_SPIKE_FACTOR, SpikeConfig};
use crate::aggregate::{self, Aggregator};
use crate::error::StartError;
use crate::exporter::Exporter;
use crate::health::HttpCounters;
use crate::http::{self, routes::Endpoints};
use crate::render::prometheus::{AllocCollector, MAX_SITE_METRICS};
use crate::render::{DEFAULT_SYMBOLS_IDLE, Renderer};

/// The address the exporter listens on unless told otherwise: loopback only.
pub const DEFAULT_BIND: &str = "127.0.0.1:9464";

/// How often the aggregator reads the counters unless told otherwise.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(1);

/// How many points the history keeps unless told otherwise (five minutes at
/// the default interval).
pub const DEFAULT_HISTORY: usize = 300;

/// How many call sites the site table keeps unless told otherwise.
pub const DEFAULT_MAX_SITES: usize = 10_000;

/// The default evidence window of the optimisation hints: two minutes.
pub const DEFAULT_HINTS_WINDOW: Duration = Duration::from_secs(120);

/// The default window of the windowed peak: an hour.
pub const DEFAULT_PEAK_WINDOW: Duration = Duration::from_secs(3600);

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
    spikes: SpikeConfig,
    auth_token: Option<Token>,
    expose_profiles: bool,
    symbolize: bool,
    symbols_idle: Duration,
    hints_window: Duration,
    peak_window: Duration,
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
            spikes: SpikeConfig::default(),
            auth_token: None,
            expose_profiles: true,
            symbolize: true,
            symbols_idle: DEFAULT_SYMBOLS_IDLE,
            hints_window: DEFAULT_HINTS_WINDOW,
            peak_window: DEFAULT_PEAK_WINDOW,
        }
    }
}

impl Exporter {
    /// A builder with the defaults: [`DEFAULT_BIND`](crate::DEFAULT_BIND), [`DEFAULT_INTERVAL`](crate::DEFAULT_INTERVAL),
    /// [`DEFAULT_HISTORY`](crate::DEFAULT_HISTORY).
    pub fn builder() -> Builder {
        Builder::default()
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

    /// How many points the history keeps (default [`DEFAULT_HISTORY`]):
    /// `/api/history`'s points, 104 bytes each, reserved at start.
    pub fn history(mut self, points: usize) -> Self {
        self.history = points.max(1);
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

    /// Whether to name the code addresses of call sites in-process (default
    /// `true`). With `false` the exporter maps and parses no debug info:
    /// the pprof profiles carry addresses, the process's mappings and their
    /// build IDs only (each mapping's `has_functions` is false), for a
    /// service whose profiles are symbolized elsewhere, such as by
    /// `go tool pprof` with a copy of the unstripped binary (found by its
    /// build ID under `$PPROF_BINARY_PATH`, or given on the command line).
    /// The stacks are then not trimmed of the allocator's and the standard
    /// library's frames (telling those apart takes the names): hide them in
    /// pprof (`-hide`, `-show_from`). `/api/sites`, [`Exporter::top_sites`],
    /// the spike reports and the per-site metrics name each frame by its
    /// address (`0x…`).
    ///
    /// [`Exporter::top_sites`]: crate::Exporter::top_sites
    pub fn symbolize(mut self, symbolize: bool) -> Self {
        self.symbolize = symbolize;
        self
    }

    /// How long the symbolizer keeps what it loaded after its last lookup
    /// (default [`DEFAULT_SYMBOLS_IDLE`], 60 s): the object files it mapped,
    /// the debug info it parsed (bounded: 6 MiB of parsed compilation units
    /// plus each file's index and symbol table, at most 4 MiB each; 1.8 MiB
    /// in all for the demo), and the names it found (at most 8 MiB). Then
    /// they are released, checked at every
    /// [`Builder::interval`], and the next profile or site report loads
    /// them again (tens of milliseconds for a typical service). A shorter
    /// period frees the memory sooner between occasional looks; a longer
    /// one spares reloading when profiles are fetched often.
    pub fn symbols_idle(mut self, idle: Duration) -> Self {
        self.symbols_idle = idle;
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
    /// [`DEFAULT_SPIKE_MIN_RATE`](crate::DEFAULT_SPIKE_MIN_RATE), 1 MiB/s): an interval allocating at this
    /// rate or less never starts a spike, however quiet the baseline was.
    pub fn spike_min_rate(mut self, bytes_per_sec: u64) -> Self {
        self.spikes.min_rate = bytes_per_sec;
        self
    }

    /// The baseline window (default [`DEFAULT_SPIKE_BASELINE`](crate::DEFAULT_SPIKE_BASELINE), 60 s): the
    /// baseline is the median allocation rate of the intervals of this
    /// window that were not part of a spike (the latest three at least,
    /// however short the window). It is frozen while a spike lasts; a spike
    /// that lasts longer than the window ends there, its rate then being the
    /// new normal, from which the baseline is learnt again.
    pub fn spike_baseline(mut self, window: Duration) -> Self {
        self.spikes.baseline = window;
        self
    }

    /// The evidence window of the optimisation hints (default
    /// [`DEFAULT_HINTS_WINDOW`], 2 minutes; at least twice the interval):
    /// the hints are drawn from what the sampled blocks did over the latest
    /// half window to whole window, so a change to the program (or its
    /// warm-up ending) shows in them within one window. A longer window
    /// gathers more samples per site (firmer hints for quieter sites); a
    /// shorter one follows change sooner.
    pub fn hints_window(mut self, window: Duration) -> Self {
        self.hints_window = window;
        self
    }

    /// The window of the windowed peak (default [`DEFAULT_PEAK_WINDOW`], an
    /// hour; at least the interval): besides the highest live heap since
    /// start, the exporter keeps the highest of the current window and the
    /// one before (so of the last one to two windows), each with the call
    /// sites as they stood at it (`/debug/pprof/peak`,
    /// `/debug/pprof/peak?window=1`, `/api/peak`).
    pub fn peak_window(mut self, window: Duration) -> Self {
        self.peak_window = window;
        self
    }

    /// Binds the address and starts the threads.
    ///
    /// Fails, without starting anything, if allocmeter is not the program's
    /// global allocator (it would serve zeros), the address does not parse,
    /// the port is taken, a label name is invalid, the token is not valid
    /// (see [`Builder::auth_token`]), or a thread cannot be spawned. The
    /// error names the address.
    ///
    /// What it allocates for the exporter is allocmeter's
    /// ([`allocmeter::profile::account_internal`]), and so are its threads
    /// from their spawn on; the builder itself is the caller's, and is freed
    /// on the caller's side. (A [`StartError`] is made on allocmeter's side
    /// and freed by the caller: its few bytes cross.)
    pub fn start(self) -> Result<Exporter, StartError> {
        allocmeter::profile::account_internal(|| self.start_accounted())
    }

    /// [`Builder::start`], on allocmeter's side.
    fn start_accounted(&self) -> Result<Exporter, StartError> {
        if !allocmeter::is_installed() {
            return Err(StartError::NotInstalled);
        }
        let marked_before = crate::marked::count();
        // The aggregator, and the server's threads below.
        let mut threads = 1;
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
        let spike_config = SpikeConfig {
            baseline: self.spikes.baseline.max(self.interval),
            ..self.spikes
        };
        let aggregator = Arc::new(Aggregator::new(
            self.max_sites,
            self.history,
            self.interval,
            spike_config,
            self.hints_window.max(2 * self.interval),
            self.peak_window.max(self.interval),
        ));
        let http_counters = Arc::new(HttpCounters::default());
        let renderer = Arc::new(
            Renderer::new(aggregator.clone(), http_counters.clone(), self.site_metrics)
                .with_symbols(self.symbolize, self.symbols_idle),
        );
        let registry = self.registry(renderer.clone())?;
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
        aggregator.tick();
        let stop = Arc::new(AtomicBool::new(false));

        let mut exporter = Exporter::new(
            server.as_ref().map(|(_, a)| *a),
            self.const_labels.clone(),
            renderer.clone(),
            stop.clone(),
        );
        let aggregator_stop = stop.clone();
        let idle_renderer = renderer.clone();
        let thread = std::thread::Builder::new()
            .name("allocmeter-aggregator".into())
            .spawn(move || {
                aggregate::run(aggregator, aggregator_stop, || {
                    idle_renderer.release_idle_symbols();
                });
            })
            .map_err(StartError::Thread)?;
        // Registered before `start` returns, so that the first burst of
        // samples already wakes it.
        allocmeter::profile::register_drainer(thread.thread().clone());
        exporter.add_thread(thread);
        if let Some((listener, _)) = server {
            let endpoints = Endpoints::new(
                registry,
                renderer,
                self.auth_token.as_ref().map(|t| t.0.clone()),
                self.expose_profiles,
            );
            // If this fails, dropping `exporter` stops the aggregator.
            let server = http::start(listener, Arc::new(endpoints), http_counters)
                .map_err(StartError::Thread)?;
            threads += server.thread_count();
            exporter.set_server(server);
        }
        // Once `start` returns, the program's figures only grow: its threads
        // have moved their start-up to allocmeter's side (see `marked`).
        crate::marked::wait_for(marked_before, threads, Duration::from_secs(2));
        Ok(exporter)
    }

    fn registry(&self, renderer: Arc<Renderer>) -> Result<prometheus::Registry, StartError> {
        let invalid = |reason: String| StartError::InvalidAddress {
            addr: self.bind.clone(),
            reason,
        };
        let collector = AllocCollector::for_exporter(&self.const_labels, renderer)
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
