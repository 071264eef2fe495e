//! # allocmeter-exporter
//!
//! Serves the statistics of [`allocmeter`] while the service runs: Prometheus
//! `/metrics` and a status page at `/`, from background threads.
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
//! The exporter runs two threads: an aggregator that reads every thread's
//! counters once per interval into a bounded history ([`Exporter::snapshot`],
//! [`Exporter::history`]), and an HTTP thread. Neither takes a lock that an
//! allocating thread could wait on. Dropping the [`Exporter`] (or calling
//! [`Exporter::shutdown`]) stops both.
//!
//! To serve the metrics from a `/metrics` endpoint the service already has,
//! register an [`AllocCollector`] into its `prometheus::Registry` instead of
//! starting an exporter.
//!
//! The exporter's own allocations go through the global allocator like any
//! other and are counted.

#![warn(missing_docs)]

mod aggregator;
mod collector;
mod error;
mod http;
mod snapshot;

use std::net::{SocketAddr, TcpListener, ToSocketAddrs};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

pub use collector::AllocCollector;
pub use error::StartError;
pub use http::METRICS_CONTENT_TYPE;
pub use snapshot::Snapshot;

use aggregator::Shared;

/// The address the exporter listens on unless told otherwise: loopback only.
pub const DEFAULT_BIND: &str = "127.0.0.1:9464";

/// How often the aggregator reads the counters unless told otherwise.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(1);

/// How many snapshots the history keeps unless told otherwise (five minutes at
/// the default interval).
pub const DEFAULT_HISTORY: usize = 300;

/// Configures and starts an [`Exporter`]. Made by [`Exporter::builder`].
#[derive(Clone, Debug)]
pub struct Builder {
    bind: String,
    interval: Duration,
    history: usize,
    const_labels: Vec<(String, String)>,
}

impl Default for Builder {
    fn default() -> Self {
        Builder {
            bind: DEFAULT_BIND.to_string(),
            interval: DEFAULT_INTERVAL,
            history: DEFAULT_HISTORY,
            const_labels: Vec::new(),
        }
    }
}

impl Builder {
    /// The address to listen on, as `IP:PORT` or `HOST:PORT` (default
    /// [`DEFAULT_BIND`], loopback). Port 0 picks a free port; read it back
    /// with [`Exporter::local_addr`]. Binding to a non-loopback address
    /// exposes the endpoints to the network.
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

    /// Binds the address and starts the threads.
    ///
    /// Fails, without starting anything, if the address does not parse, the
    /// port is taken, a label name is invalid, or a thread cannot be spawned.
    /// The error names the address.
    pub fn start(self) -> Result<Exporter, StartError> {
        let addr = resolve(&self.bind)?;
        let registry = self.registry()?;
        let listener = TcpListener::bind(addr).map_err(|source| StartError::Bind {
            addr: self.bind.clone(),
            source,
        })?;
        let local_addr = listener.local_addr().map_err(|source| StartError::Bind {
            addr: self.bind.clone(),
            source,
        })?;
        let server =
            tiny_http::Server::from_listener(listener, None).map_err(|e| StartError::Bind {
                addr: self.bind.clone(),
                source: std::io::Error::other(e.to_string()),
            })?;
        let server = Arc::new(server);

        let shared = Arc::new(Shared::new(self.history));
        shared.tick();
        let stop = Arc::new(AtomicBool::new(false));
        let (stop_tx, stop_rx) = mpsc::channel();

        let mut exporter = Exporter {
            local_addr,
            shared: shared.clone(),
            server: server.clone(),
            stop: stop.clone(),
            stop_tx: Some(stop_tx),
            threads: Vec::new(),
        };
        let interval = self.interval;
        let aggregator = std::thread::Builder::new()
            .name("allocmeter-aggregator".into())
            .spawn(move || aggregator::run(shared, interval, stop_rx))
            .map_err(StartError::Thread)?;
        exporter.threads.push(aggregator);
        // If this fails, dropping `exporter` stops the aggregator.
        let http = std::thread::Builder::new()
            .name("allocmeter-http".into())
            .spawn(move || http::run(server, registry, stop))
            .map_err(StartError::Thread)?;
        exporter.threads.push(http);
        Ok(exporter)
    }

    fn registry(&self) -> Result<prometheus::Registry, StartError> {
        let invalid = |reason: String| StartError::InvalidAddress {
            addr: self.bind.clone(),
            reason,
        };
        let labels = self.const_labels.iter().cloned().collect();
        let collector = AllocCollector::with_const_labels(labels)
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

/// A running exporter. Dropping it stops its threads.
pub struct Exporter {
    local_addr: SocketAddr,
    shared: Arc<Shared>,
    server: Arc<tiny_http::Server>,
    stop: Arc<AtomicBool>,
    stop_tx: Option<mpsc::Sender<()>>,
    threads: Vec<JoinHandle<()>>,
}

impl Exporter {
    /// A builder with the defaults: [`DEFAULT_BIND`], [`DEFAULT_INTERVAL`],
    /// [`DEFAULT_HISTORY`].
    pub fn builder() -> Builder {
        Builder::default()
    }

    /// The address actually listened on (with the real port if 0 was asked).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The URL of the page, `http://IP:PORT/`.
    pub fn url(&self) -> String {
        format!("http://{}/", self.local_addr)
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

    /// Stops the threads and waits for them. Also done on drop.
    pub fn shutdown(mut self) {
        self.stop_threads();
    }

    fn stop_threads(&mut self) {
        self.stop.store(true, Ordering::Release);
        drop(self.stop_tx.take());
        self.server.unblock();
        for thread in self.threads.drain(..) {
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
