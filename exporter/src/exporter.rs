//! [`Exporter`]: the handle to a running exporter. Reads go through the
//! renderer (which reads the aggregator); dropping it stops the threads.
//!
//! The handle is used on the service's threads: what a render does there is
//! allocmeter's ([`Renderer::account`]), and a render's result is handed
//! back as a copy made outside, so that the service frees only its own
//! blocks ([`handed_over`]). Dropping the handle frees what the exporter
//! allocated on allocmeter's side too.
//! Made by [`crate::Builder::start`] (`Exporter::builder` is defined beside
//! the builder, so that this file need not import it).

use std::mem::ManuallyDrop;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

use crate::aggregate::history::{HistoryPoint, Snapshot};
use crate::aggregate::spikes::SpikeStatus;
use crate::health::HttpStats;
use crate::http;
use crate::render::Renderer;
use crate::render::hints::HintsReport;
use crate::render::pprof::{self, DefaultType};
use crate::render::prometheus::AllocCollector;
use crate::render::sites::{SiteReport, SortBy};
use crate::render::spikes::SpikeReport;

/// A running exporter. Dropping it stops its threads.
pub struct Exporter {
    local_addr: Option<SocketAddr>,
    const_labels: Vec<(String, String)>,
    /// Dropped by hand in `Drop`, on allocmeter's side.
    renderer: ManuallyDrop<Arc<Renderer>>,
    server: Option<http::Handle>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Exporter {
    /// A handle with no threads yet ([`Builder::start`](crate::Builder::start) adds them).
    pub(crate) fn new(
        local_addr: Option<SocketAddr>,
        const_labels: Vec<(String, String)>,
        renderer: Arc<Renderer>,
        stop: Arc<AtomicBool>,
    ) -> Self {
        Exporter {
            local_addr,
            const_labels,
            renderer: ManuallyDrop::new(renderer),
            server: None,
            stop,
            threads: Vec::new(),
        }
    }

    /// Adds a thread to stop and join on shutdown.
    pub(crate) fn add_thread(&mut self, thread: JoinHandle<()>) {
        self.threads.push(thread);
    }

    /// Adds the HTTP server, stopped on shutdown.
    pub(crate) fn set_server(&mut self, server: http::Handle) {
        self.server = Some(server);
    }

    /// The address actually listened on (with the real port if 0 was asked).
    ///
    /// # Panics
    ///
    /// If the exporter was started with [`Builder::serve_http`](crate::Builder::serve_http)`(false)`.
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
    /// # #[global_allocator]
    /// # static GLOBAL: allocmeter::Instrumented<std::alloc::System> =
    /// #     allocmeter::Instrumented::new(std::alloc::System);
    /// # let exporter = allocmeter_exporter::Exporter::builder().serve_http(false).start().unwrap();
    /// use allocmeter_exporter::SortBy;
    /// for site in exporter.top_sites(5, SortBy::InuseSpace) {
    ///     println!("{:>12.0} B in use  {}", site.inuse_space, site.function);
    /// }
    /// ```
    ///
    /// The render is allocmeter's (its allocations are in the
    /// `allocmeter_exporter_*` figures); the service allocates only the
    /// copy it gets back.
    pub fn top_sites(&self, n: usize, by: SortBy) -> Vec<SiteReport> {
        handed_over(|| self.renderer.top_sites(n, by))
    }

    /// The optimisation hints now, as `/api/hints` serves them: for the
    /// sites that would save most, which technique fits (preallocate,
    /// reuse, pool, stream, format), the evidence, the saving and its
    /// range, how sure, what could make it wrong, and the budget check that
    /// would prove the fix; and the sites still collecting evidence. See
    /// the crate docs, "Optimisation hints".
    ///
    /// The render is allocmeter's; the service allocates only the copy it
    /// gets back.
    pub fn hints(&self) -> HintsReport {
        handed_over(|| self.renderer.hints())
    }

    /// The heap profile, gzipped `profile.proto`, as `/debug/pprof/heap`
    /// serves it (in-use space by default).
    /// The render is allocmeter's; the service allocates only the copy it
    /// gets back.
    pub fn heap_profile(&self) -> Vec<u8> {
        handed_over(|| pprof::heap_profile(&self.renderer, DefaultType::InuseSpace))
    }

    /// A collector of allocmeter's metrics for the service's own
    /// `prometheus::Registry`, for a service that already serves `/metrics`:
    /// start the exporter with [`Builder::serve_http`](crate::Builder::serve_http)`(false)` and register
    /// this. It renders the same families, with the same constant labels, as
    /// the exporter's own `/metrics`, site-table figures included (the
    /// process metrics excepted: a service with a registry usually registers
    /// its own `ProcessCollector`).
    ///
    /// ```
    /// # #[global_allocator]
    /// # static GLOBAL: allocmeter::Instrumented<std::alloc::System> =
    /// #     allocmeter::Instrumented::new(std::alloc::System);
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
        AllocCollector::for_exporter(&self.const_labels, Arc::clone(&self.renderer))
            .expect("the exporter checked these labels when it started")
    }

    /// The newest snapshot the aggregator took.
    pub fn snapshot(&self) -> Snapshot {
        self.renderer.aggregator().latest()
    }

    /// The history as `/api/history` serves it: the points taken strictly
    /// after `since_unix_ms` (all of them with `None`), oldest first, each
    /// with its rates over the interval that ended there.
    pub fn history_points(&self, since_unix_ms: Option<u64>) -> Vec<HistoryPoint> {
        self.renderer.aggregator().history_points(since_unix_ms)
    }

    /// The allocation-rate spikes detected so far, as `/api/spikes` serves
    /// them: oldest first, at most [`MAX_SPIKES`](crate::MAX_SPIKES), each with the call sites
    /// that allocated most during it (symbolized now).
    /// The render is allocmeter's; the service allocates only the copy it
    /// gets back.
    pub fn spikes(&self) -> Vec<SpikeReport> {
        handed_over(|| self.renderer.spike_reports())
    }

    /// The spike detector's settings and state now (the `spike` object of
    /// `/api/snapshot`).
    pub fn spike_status(&self) -> SpikeStatus {
        self.renderer.aggregator().spike_status()
    }

    /// Bytes of memory allocmeter itself holds, now: the allocator's
    /// structures outside the heap ([`allocmeter::MemStats::telemetry_bytes`]:
    /// slots, sample rings, the sampled-pointer table) plus the exporter's
    /// heap, counted exactly ([`allocmeter::InternalStats::live_bytes`]:
    /// site table, symbolizer, snapshot history, spike records, HTTP
    /// buffers and bodies). The figure `allocmeter_telemetry_bytes` reports.
    ///
    /// ```
    /// # #[global_allocator]
    /// # static GLOBAL: allocmeter::Instrumented<std::alloc::System> =
    /// #     allocmeter::Instrumented::new(std::alloc::System);
    /// let exporter = allocmeter_exporter::Exporter::builder()
    ///     .serve_http(false)
    ///     .start()
    ///     .unwrap();
    /// assert!(exporter.telemetry_bytes() >= allocmeter::stats().telemetry_bytes);
    /// ```
    pub fn telemetry_bytes(&self) -> u64 {
        let split = allocmeter::stats_split();
        split.program.telemetry_bytes + split.internal.live_bytes
    }

    /// The most [`Exporter::telemetry_bytes`] can come to with the threads
    /// seen so far: [`allocmeter::telemetry_bound`] for the allocator's
    /// share (it grows with the peak number of threads alive at once, about
    /// 124 KiB each, plus a fixed 16 MiB for the rings grown for bursts), plus the exporter's heap at its limits: the site table
    /// at [`Builder::max_sites`](crate::Builder::max_sites) stacks of the
    /// deepest capture with every live sample, the symbol cache (8 MiB), the
    /// history at [`Builder::history`](crate::Builder::history) snapshots,
    /// the spike records, and, when it serves HTTP, the response bodies held
    /// for clients ([`limits::MAX_BUFFERED_RESPONSE_BYTES`](crate::limits::MAX_BUFFERED_RESPONSE_BYTES))
    /// and a request head per connection. It does not grow with the
    /// allocation rate, the number of call sites or the threads ever
    /// started. (What a render holds while it runs, and the debug info the
    /// symbolizer parses, are not bounded here.)
    ///
    /// ```
    /// # #[global_allocator]
    /// # static GLOBAL: allocmeter::Instrumented<std::alloc::System> =
    /// #     allocmeter::Instrumented::new(std::alloc::System);
    /// let exporter = allocmeter_exporter::Exporter::builder()
    ///     .serve_http(false)
    ///     .start()
    ///     .unwrap();
    /// assert!(exporter.telemetry_bytes() <= exporter.telemetry_bound());
    /// ```
    pub fn telemetry_bound(&self) -> u64 {
        let slots = allocmeter::stats().slots_used;
        let http = if self.server.is_some() {
            crate::limits::MAX_BUFFERED_RESPONSE_BYTES
                + crate::limits::MAX_CONNECTIONS * crate::limits::MAX_HEAD
        } else {
            0
        };
        allocmeter::telemetry_bound(slots)
            + (self
                .renderer
                .max_own_bytes(usize::try_from(slots).unwrap_or(usize::MAX))
                + http) as u64
    }

    /// What the HTTP server did so far: connections accepted, evicted at
    /// the connection cap, timed out, renders that panicked, requests
    /// refused as busy. `None` without HTTP ([`Builder::serve_http`](crate::Builder::serve_http)).
    pub fn http_stats(&self) -> Option<HttpStats> {
        self.server.as_ref().map(|s| s.counters.read())
    }

    /// Stops the threads and waits for them. Also done on drop.
    pub fn shutdown(self) {
        drop(self);
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
        // What `start` allocated for the exporter is freed on allocmeter's
        // side, here and on the threads as they end.
        allocmeter::profile::account_internal(|| {
            self.stop_threads();
            self.server = None;
            self.threads = Vec::new();
            self.const_labels = Vec::new();
            // SAFETY: `renderer` is not used after this: the threads are
            // joined, and nothing of `self` runs after `drop`.
            unsafe { ManuallyDrop::drop(&mut self.renderer) };
        });
    }
}

/// Runs `render` (which accounts its own work as allocmeter's) and hands
/// back a copy of its result made on the caller's side, freeing the
/// original on allocmeter's: the caller then allocates and frees only its
/// own copy, and no block crosses from one side to the other.
fn handed_over<T: Clone>(render: impl FnOnce() -> T) -> T {
    let original = allocmeter::profile::account_internal(render);
    let copy = original.clone();
    allocmeter::profile::account_internal(move || drop(original));
    copy
}

impl std::fmt::Debug for Exporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Exporter")
            .field("local_addr", &self.local_addr)
            .finish_non_exhaustive()
    }
}
