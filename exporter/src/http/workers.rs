//! The workers and the seam between the transport and what it serves: the
//! [`Service`] trait (decide on the I/O thread, render on a worker), the
//! three [`Lane`]s, the [`Job`] handed to a worker and the [`Done`] response
//! handed back, and the worker loop ([`work`]).
//!
//! A worker only renders and encodes: it never touches a socket or a
//! connection (the I/O thread in `io_loop.rs` owns them all) and knows
//! nothing of the routes (they come in through [`Service`]).

use std::io::{self, Write};
use std::net::SocketAddr;
use std::os::unix::net::UnixStream;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, Receiver, Sender, SyncSender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::limits::{MAX_DEFERRED, QUEUE_PER_LANE};
use super::request::{Method, Request};
use super::response::Response;
use crate::health::HttpCounters;

/// Which worker renders a request, and which share of the response budget
/// its response may use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Lane {
    /// Scrapes (`/metrics`): a worker of their own, and the whole response
    /// budget, [`SCRAPE_RESERVED_BYTES`](super::limits::SCRAPE_RESERVED_BYTES)
    /// of it theirs alone, so that no other client can delay or refuse one.
    Scrape,
    /// Cheap, bounded responses: snapshot, history, the page.
    Light,
    /// Responses that may symbolize (seconds, the first time): profiles,
    /// call sites, spikes.
    Heavy,
}

/// What the server serves.
pub(crate) trait Service: Send + Sync + 'static {
    /// Decides, on the I/O thread, what to do with a request: render it in
    /// a lane, or answer at once (401, 404...). Must be quick and must not
    /// block.
    fn admit(&self, request: &Request, peer: SocketAddr) -> Result<Lane, Response>;

    /// Renders the response, on a worker thread.
    fn render(&self, request: &Request) -> Response;

    /// For a request whose response can be rendered only later (a delta
    /// profile, at the end of its window): what to keep until then, taken
    /// now on the worker instead of [`Service::render`]. The worker holds
    /// it without blocking its lane and renders it when it is due.
    fn defer(&self, _request: &Request) -> Option<Deferred> {
        None
    }

    /// How much longer than a render a request may hold its connection:
    /// the window of a delta profile. Must be quick (the I/O thread asks).
    fn wait(&self, _request: &Request) -> Duration {
        Duration::ZERO
    }
}

/// A response to render later ([`Service::defer`]).
pub(crate) struct Deferred {
    /// When to render it.
    pub at: Instant,
    /// Renders it.
    pub finish: Box<dyn FnOnce() -> Response + Send>,
}

/// A request handed to a worker.
pub(super) struct Job {
    pub id: u64,
    pub request: Request,
}

/// A rendered response handed back to the I/O thread: its head, and its
/// body as rendered (not copied behind the head).
pub(super) struct Done {
    pub id: u64,
    pub head: Vec<u8>,
    pub body: Vec<u8>,
}

/// Starts one worker per lane, each with its queue of at most
/// [`QUEUE_PER_LANE`] jobs, and pushes it to `threads`; returns the queues'
/// senders, one per lane.
pub(super) fn spawn<S: Service>(
    service: &Arc<S>,
    done: &Sender<Done>,
    waker: &Arc<UnixStream>,
    counters: &Arc<HttpCounters>,
    threads: &mut Vec<JoinHandle<()>>,
) -> io::Result<Vec<(Lane, SyncSender<Job>)>> {
    let mut lanes = Vec::new();
    for (lane, name) in [
        (Lane::Scrape, "allocmeter-http-scrape"),
        (Lane::Light, "allocmeter-http-worker"),
        (Lane::Heavy, "allocmeter-http-profiles"),
    ] {
        let (job_tx, job_rx) = mpsc::sync_channel::<Job>(QUEUE_PER_LANE);
        let worker = {
            let (service, done_tx, waker, counters) = (
                service.clone(),
                done.clone(),
                waker.clone(),
                counters.clone(),
            );
            std::thread::Builder::new()
                .name(name.into())
                .spawn(move || work(job_rx, done_tx, &waker, &*service, &counters))?
        };
        // If a later spawn fails, dropping the caller's handle stops this
        // one: its queue's sender goes away with `lanes`.
        threads.push(worker);
        lanes.push((lane, job_tx));
    }
    Ok(lanes)
}

/// A worker: renders jobs until its queue closes.
fn work<S: Service>(
    jobs: Receiver<Job>,
    done: Sender<Done>,
    waker: &UnixStream,
    service: &S,
    counters: &HttpCounters,
) {
    crate::marked::mark_this_thread();
    // Responses deferred to the end of their window: (job id, HEAD?, what
    // renders it and when). At most MAX_DEFERRED.
    let mut deferred: Vec<(u64, bool, Deferred)> = Vec::new();
    let panicked = |what: &str| {
        counters.panics.fetch_add(1, Ordering::Relaxed);
        eprintln!("allocmeter-exporter: {what} panicked; answered 500 and serving on");
        Response::error(500)
    };
    loop {
        // The due ones first, then wait for a job until the next is due.
        let now = Instant::now();
        while let Some(i) = deferred.iter().position(|d| d.2.at <= now) {
            let (id, head_only, later) = deferred.swap_remove(i);
            let response = catch_unwind(AssertUnwindSafe(later.finish))
                .unwrap_or_else(|_| panicked("rendering a delta profile"));
            if !send(&done, waker, id, response, head_only) {
                return;
            }
        }
        let job = match deferred.iter().map(|d| d.2.at).min() {
            None => match jobs.recv() {
                Ok(job) => job,
                Err(_) => return,
            },
            Some(next) => match jobs.recv_timeout(next.saturating_duration_since(now)) {
                Ok(job) => job,
                Err(mpsc::RecvTimeoutError::Timeout) => continue,
                Err(mpsc::RecvTimeoutError::Disconnected) => return,
            },
        };
        let head_only = job.request.method == Method::Head;
        let later = catch_unwind(AssertUnwindSafe(|| service.defer(&job.request)));
        let response = match later {
            Ok(Some(later)) if deferred.len() < MAX_DEFERRED => {
                deferred.push((job.id, head_only, later));
                continue;
            }
            Ok(Some(_)) => {
                counters.busy.fetch_add(1, Ordering::Relaxed);
                Response::error(503)
            }
            Ok(None) => catch_unwind(AssertUnwindSafe(|| service.render(&job.request)))
                .unwrap_or_else(|_| panicked("rendering a response")),
            Err(_) => panicked("starting a delta profile"),
        };
        if !send(&done, waker, job.id, response, head_only) {
            return;
        }
    }
}

/// Hands a rendered response back to the I/O thread and wakes it; `false`
/// if the I/O thread is gone.
fn send(
    done: &Sender<Done>,
    waker: &UnixStream,
    id: u64,
    response: Response,
    head_only: bool,
) -> bool {
    let (head, body) = response.into_parts(head_only);
    if done.send(Done { id, head, body }).is_err() {
        return false;
    }
    // Full means a wake-up is pending already.
    let mut waker = waker;
    let _ = waker.write(&[1]);
    true
}
