//! A small HTTP/1.x server for the exporter, on `std::net` and `poll(2)`,
//! built to run inside someone else's production service: whatever clients
//! do, it holds a fixed number of threads, a bounded amount of memory and a
//! bounded number of sockets, and keeps answering.
//!
//! - One I/O thread accepts connections and reads request heads from all of
//!   them at once, non-blocking, each with a deadline ([`HEAD_TIMEOUT`]) and
//!   size limits ([`crate::request::MAX_HEAD`],
//!   [`crate::request::MAX_REQUEST_LINE`]). At [`MAX_CONNECTIONS`] open
//!   connections a new one evicts the oldest that is not being answered, so
//!   idle connections cannot lock a client out.
//! - Complete requests go to two worker threads: one renders the cheap
//!   responses (`/metrics`, the JSON snapshot and history, the page), the
//!   other the ones that symbolize (profiles, call sites, spikes), so a slow
//!   profile never delays a scrape. Each lane queues at most
//!   [`QUEUE_PER_LANE`] requests; beyond that the answer is 503. A panic
//!   while rendering answers 500 and the worker goes on.
//! - The I/O thread writes the responses, non-blocking: a client that stops
//!   reading holds its socket until [`WRITE_TIMEOUT`], never a thread. The
//!   bytes of responses waiting to be sent are capped
//!   ([`MAX_BUFFERED_RESPONSE_BYTES`]; beyond it new requests get 503).
//! - Every response has `Content-Length` and `Connection: close`; after it
//!   the server shuts its side down and discards what the client still
//!   sends for at most [`LINGER`], so the client reads the whole response
//!   instead of a reset.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender, SyncSender, TrySendError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::health::HttpCounters as Counters;
use crate::request::{MAX_HEAD, Method, Parsed, Request, parse_head};

/// The most connections open at once. A new connection beyond it evicts the
/// oldest one that is not waiting for its response to be rendered.
pub const MAX_CONNECTIONS: usize = 256;

/// How long a client has, from connecting, to send a complete request head.
/// Later: 408 and the connection is closed.
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a client has to read a whole response once it is ready. Later:
/// the connection is closed.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a request may wait for a worker and be rendered before its
/// connection is closed without an answer.
pub const RENDER_TIMEOUT: Duration = Duration::from_secs(60);

/// After a response, how long the server keeps reading (and discarding)
/// what the client still sends, so that closing does not reset the
/// connection before the client has read the response.
pub const LINGER: Duration = Duration::from_secs(1);

/// The most bytes discarded after a response before the connection is
/// closed anyway.
const MAX_LINGER_BYTES: usize = 64 * 1024;

/// The most bytes of responses held for clients, all connections together.
/// While at it, new requests are answered 503.
pub const MAX_BUFFERED_RESPONSE_BYTES: usize = 64 * 1024 * 1024;

/// How many requests each worker lane queues. Beyond it: 503.
pub const QUEUE_PER_LANE: usize = 32;

/// The most connections accepted per turn of the I/O loop, so that a flood
/// of connections cannot starve the ones already open.
const ACCEPTS_PER_TURN: usize = 64;

/// The accept queue's length asked of the kernel (capped by
/// `net.core.somaxconn`).
const LISTEN_BACKLOG: libc::c_int = 1024;

/// The longest the I/O thread sleeps in `poll` (it wakes sooner for
/// deadlines, connections and finished responses).
const MAX_POLL_WAIT: Duration = Duration::from_secs(1);

/// Which worker renders a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Lane {
    /// Cheap, bounded responses: metrics, snapshot, history, the page.
    Light,
    /// Responses that may symbolize (seconds, the first time): profiles,
    /// call sites, spikes.
    Heavy,
}

/// A response: status, extra header fields, body. `Content-Length` and
/// `Connection: close` are added when it is sent.
#[derive(Debug)]
pub(crate) struct Response {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// A 200 with `body` of `content_type`.
    pub fn ok(content_type: &str, body: Vec<u8>) -> Response {
        Response {
            status: 200,
            headers: vec![("Content-Type", content_type.to_string())],
            body,
        }
    }

    /// Adds a header field.
    pub fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Response {
        self.headers.push((name, value.into()));
        self
    }

    /// Sets the status.
    pub fn with_status(mut self, status: u16) -> Response {
        self.status = status;
        self
    }

    /// A refusal with a short fixed body (never anything from the request).
    pub fn error(status: u16) -> Response {
        let body = match status {
            400 => "bad request\n",
            401 => "unauthorized: send Authorization: Bearer <token>\n",
            404 => "not found\n",
            405 => "method not allowed: only GET and HEAD\n",
            408 => "request timeout: the request head took too long\n",
            414 => "request line too long\n",
            431 => "request header fields too large\n",
            503 => "busy: try again\n",
            _ => "internal error\n",
        };
        let mut response = Response {
            status,
            headers: vec![("Content-Type", "text/plain; charset=utf-8".into())],
            body: body.as_bytes().to_vec(),
        };
        match status {
            401 => response
                .headers
                .push(("WWW-Authenticate", "Bearer realm=\"allocmeter\"".into())),
            405 => response.headers.push(("Allow", "GET, HEAD".into())),
            503 => response.headers.push(("Retry-After", "1".into())),
            _ => {}
        }
        response
    }

    /// The bytes on the wire: status line, header fields with
    /// `Content-Length` and `Connection: close`, and the body unless
    /// `head_only`.
    pub fn into_bytes(self, head_only: bool) -> Vec<u8> {
        let mut out = Vec::with_capacity(256 + if head_only { 0 } else { self.body.len() });
        // Writing to a Vec cannot fail.
        let _ = write!(
            out,
            "HTTP/1.1 {} {}\r\nContent-Length: {}\r\nConnection: close\r\nX-Content-Type-Options: nosniff\r\n",
            self.status,
            reason(self.status),
            self.body.len()
        );
        for (name, value) in &self.headers {
            if *name == "X-Content-Type-Options" {
                continue; // sent on every response already
            }
            // Values are the exporter's own; strip line breaks regardless.
            let value: String = value.chars().filter(|c| !c.is_control()).collect();
            let _ = write!(out, "{name}: {value}\r\n");
        }
        out.extend_from_slice(b"\r\n");
        if !head_only {
            out.extend_from_slice(&self.body);
        }
        out
    }
}

/// The reason phrase of a status.
fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        414 => "URI Too Long",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

/// What the server serves.
pub(crate) trait Service: Send + Sync + 'static {
    /// Decides, on the I/O thread, what to do with a request: render it in
    /// a lane, or answer at once (401, 404...). Must be quick and must not
    /// block.
    fn admit(&self, request: &Request, peer: SocketAddr) -> Result<Lane, Response>;

    /// Renders the response, on a worker thread.
    fn render(&self, request: &Request) -> Response;
}

/// A running server. [`Handle::stop`] (or dropping it) stops its threads.
pub(crate) struct Handle {
    stop: Arc<AtomicBool>,
    waker: Arc<UnixStream>,
    /// A second descriptor of the waker's read end, held until the threads
    /// are joined: writing to a socket whose reader is gone would raise
    /// SIGPIPE, which kills a host process that has not ignored it.
    _wake_reader: UnixStream,
    threads: Vec<JoinHandle<()>>,
    pub counters: Arc<Counters>,
}

impl Handle {
    /// Stops the I/O thread (which closes the listener and every
    /// connection) and the workers, and waits for them. A worker finishes
    /// the response it is rendering first.
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::Release);
        let _ = (&*self.waker).write(&[1]);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A request handed to a worker.
struct Job {
    id: u64,
    request: Request,
}

/// A rendered response handed back to the I/O thread.
struct Done {
    id: u64,
    bytes: Vec<u8>,
}

/// Starts the I/O thread and the two workers on `listener`.
pub(crate) fn start<S: Service>(
    listener: TcpListener,
    service: Arc<S>,
    counters: Arc<Counters>,
) -> io::Result<Handle> {
    listener.set_nonblocking(true)?;
    // A deeper accept queue than std's, so that a burst of connections
    // (a flood, or many scrapers at once) waits in the kernel for the I/O
    // thread instead of having its SYNs dropped and retried a second later.
    // Calling listen again on a listening socket only changes the backlog;
    // if it fails, the old backlog stays.
    // SAFETY: the descriptor is the listener's own, open for this call.
    unsafe { libc::listen(listener.as_raw_fd(), LISTEN_BACKLOG) };
    let (wake_rx, wake_tx) = UnixStream::pair()?;
    wake_rx.set_nonblocking(true)?;
    wake_tx.set_nonblocking(true)?;
    let waker = Arc::new(wake_tx);
    let stop = Arc::new(AtomicBool::new(false));
    let mut handle = Handle {
        stop: stop.clone(),
        waker: waker.clone(),
        _wake_reader: wake_rx.try_clone()?,
        threads: Vec::new(),
        counters: counters.clone(),
    };
    let (done_tx, done_rx) = mpsc::channel::<Done>();
    let mut lanes = Vec::new();
    for (lane, name) in [
        (Lane::Light, "allocmeter-http-worker"),
        (Lane::Heavy, "allocmeter-http-profiles"),
    ] {
        let (job_tx, job_rx) = mpsc::sync_channel::<Job>(QUEUE_PER_LANE);
        let worker = {
            let (service, done_tx, waker, counters) = (
                service.clone(),
                done_tx.clone(),
                waker.clone(),
                counters.clone(),
            );
            std::thread::Builder::new()
                .name(name.into())
                .spawn(move || work(job_rx, done_tx, &waker, &*service, &counters))?
        };
        // If a later spawn fails, dropping `handle` stops this one: its
        // queue's sender goes away with `lanes`.
        handle.threads.push(worker);
        lanes.push((lane, job_tx));
    }
    drop(done_tx);
    let io = IoLoop {
        listener,
        wake: wake_rx,
        stop,
        service,
        lanes,
        done: done_rx,
        conns: Vec::new(),
        next_id: 0,
        accept_paused_until: None,
        counters,
    };
    let io_thread = std::thread::Builder::new()
        .name("allocmeter-http".into())
        .spawn(move || io.run())?;
    // The I/O thread first: it owns the queues' senders, so the workers end
    // after it.
    handle.threads.insert(0, io_thread);
    Ok(handle)
}

/// A worker: renders jobs until its queue closes.
fn work<S: Service>(
    jobs: Receiver<Job>,
    done: Sender<Done>,
    waker: &UnixStream,
    service: &S,
    counters: &Counters,
) {
    allocmeter::profile::mark_thread_internal();
    while let Ok(job) = jobs.recv() {
        let head_only = job.request.method == Method::Head;
        let response = catch_unwind(AssertUnwindSafe(|| service.render(&job.request)))
            .unwrap_or_else(|_| {
                counters.panics.fetch_add(1, Ordering::Relaxed);
                eprintln!(
                    "allocmeter-exporter: rendering a response panicked; answered 500 and serving on"
                );
                Response::error(500)
            });
        let bytes = response.into_bytes(head_only);
        if done.send(Done { id: job.id, bytes }).is_err() {
            return;
        }
        // Full means a wake-up is pending already.
        let mut waker = waker;
        let _ = waker.write(&[1]);
    }
}

/// Where a connection is.
enum State {
    /// Reading the request head.
    Reading { buf: Vec<u8> },
    /// Waiting for a worker's response.
    Rendering,
    /// Sending the response.
    Writing { out: Vec<u8>, sent: usize },
    /// Response sent and our side shut down; discarding what comes in.
    Lingering { discarded: usize },
}

struct Conn {
    id: u64,
    stream: TcpStream,
    state: State,
    deadline: Instant,
    accepted: Instant,
    peer: SocketAddr,
    close: bool,
}

impl Conn {
    /// Eviction preference: lower goes first.
    fn eviction_rank(&self) -> u8 {
        match self.state {
            State::Lingering { .. } => 0,
            State::Reading { .. } => 1,
            State::Writing { .. } => 2,
            State::Rendering => 3,
        }
    }

    fn buffered(&self) -> usize {
        match &self.state {
            State::Writing { out, .. } => out.len(),
            _ => 0,
        }
    }
}

struct IoLoop<S> {
    listener: TcpListener,
    wake: UnixStream,
    stop: Arc<AtomicBool>,
    service: Arc<S>,
    lanes: Vec<(Lane, SyncSender<Job>)>,
    done: Receiver<Done>,
    conns: Vec<Conn>,
    next_id: u64,
    accept_paused_until: Option<Instant>,
    counters: Arc<Counters>,
}

impl<S: Service> IoLoop<S> {
    fn run(mut self) {
        allocmeter::profile::mark_thread_internal();
        let mut fds: Vec<libc::pollfd> = Vec::with_capacity(MAX_CONNECTIONS + 2);
        let mut ready: VecDeque<usize> = VecDeque::with_capacity(MAX_CONNECTIONS);
        while !self.stop.load(Ordering::Acquire) {
            let now = Instant::now();
            self.expire(now);
            self.conns.retain(|c| !c.close);

            let accepting = self.accept_paused_until.is_none_or(|t| now >= t);
            if accepting {
                self.accept_paused_until = None;
            }
            fds.clear();
            fds.push(pollfd(self.wake.as_raw_fd(), libc::POLLIN));
            fds.push(if accepting {
                pollfd(self.listener.as_raw_fd(), libc::POLLIN)
            } else {
                pollfd(-1, 0)
            });
            let mut wait = MAX_POLL_WAIT;
            if let Some(t) = self.accept_paused_until {
                wait = wait.min(t.saturating_duration_since(now));
            }
            for conn in &self.conns {
                // A negative descriptor is skipped by poll: a connection
                // whose response is being rendered is not watched (a
                // hang-up would be reported at every turn).
                let (fd, events) = match conn.state {
                    State::Reading { .. } | State::Lingering { .. } => {
                        (conn.stream.as_raw_fd(), libc::POLLIN)
                    }
                    State::Writing { .. } => (conn.stream.as_raw_fd(), libc::POLLOUT),
                    State::Rendering => (-1, 0),
                };
                fds.push(pollfd(fd, events));
                wait = wait.min(conn.deadline.saturating_duration_since(now));
            }
            // Round up, so that a deadline 0.4 ms away is not a busy loop.
            let timeout_ms = wait.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32;
            // SAFETY: `fds` is a live, initialised Vec of `pollfd` whose
            // length is passed with it; poll only writes `revents` within it.
            let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout_ms) };
            if n < 0 {
                let err = io::Error::last_os_error();
                if err.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                // Not expected (EINVAL, ENOMEM): do not spin.
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
            if fds[0].revents != 0 {
                self.drain_wake();
            }
            self.collect_done();
            ready.clear();
            for (i, fd) in fds[2..].iter().enumerate() {
                if fd.revents != 0 {
                    ready.push_back(i);
                }
            }
            for &i in &ready {
                self.service_conn(i);
            }
            self.conns.retain(|c| !c.close);
            if fds[1].revents != 0 {
                self.accept();
            }
        }
        // Dropping self closes the listener, every connection and the
        // queues, which ends the workers.
    }

    fn drain_wake(&mut self) {
        let mut sink = [0u8; 64];
        while let Ok(n) = self.wake.read(&mut sink) {
            if n == 0 {
                break;
            }
        }
    }

    /// Moves rendered responses to their connections (if still open).
    fn collect_done(&mut self) {
        while let Ok(Done { id, mut bytes }) = self.done.try_recv() {
            let Some(i) = self.conns.iter().position(|c| c.id == id) else {
                continue; // evicted or timed out meanwhile
            };
            let conn = &mut self.conns[i];
            if let State::Rendering = conn.state {
                bytes.shrink_to_fit();
                conn.state = State::Writing {
                    out: bytes,
                    sent: 0,
                };
                conn.deadline = Instant::now() + WRITE_TIMEOUT;
                write_some(conn);
            }
        }
    }

    /// Handles a connection `poll` reported on.
    fn service_conn(&mut self, i: usize) {
        let buffered: usize = self.conns.iter().map(Conn::buffered).sum();
        let conn = &mut self.conns[i];
        match &mut conn.state {
            State::Reading { buf } => {
                let mut chunk = [0u8; 4096];
                let parsed = loop {
                    match conn.stream.read(&mut chunk) {
                        Ok(0) => {
                            conn.close = true;
                            return;
                        }
                        Ok(n) => {
                            // Never keep more than one byte past the limit:
                            // that is enough to tell the head is too large.
                            let room = (MAX_HEAD + 1).saturating_sub(buf.len());
                            buf.extend_from_slice(&chunk[..n.min(room)]);
                            match parse_head(buf) {
                                Parsed::Incomplete => continue,
                                done => break done,
                            }
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(_) => {
                            conn.close = true;
                            return;
                        }
                    }
                };
                let response = match parsed {
                    Parsed::Incomplete => unreachable!("the loop continues on Incomplete"),
                    Parsed::Refuse(status) => Response::error(status).into_bytes(false),
                    Parsed::Request(request) => {
                        let head_only = request.method == Method::Head;
                        let peer = conn.peer;
                        let admitted = catch_unwind(AssertUnwindSafe(|| {
                            self.service.admit(&request, peer)
                        }))
                        .unwrap_or_else(|_| {
                            self.counters.panics.fetch_add(1, Ordering::Relaxed);
                            eprintln!(
                                "allocmeter-exporter: admitting a request panicked; answered 500 and serving on"
                            );
                            Err(Response::error(500))
                        });
                        match admitted {
                            Err(response) => response.into_bytes(head_only),
                            Ok(_) if buffered >= MAX_BUFFERED_RESPONSE_BYTES => {
                                self.counters.busy.fetch_add(1, Ordering::Relaxed);
                                Response::error(503).into_bytes(head_only)
                            }
                            Ok(lane) => {
                                let queue = &self
                                    .lanes
                                    .iter()
                                    .find(|(l, _)| *l == lane)
                                    .expect("a queue per lane")
                                    .1;
                                match queue.try_send(Job {
                                    id: conn.id,
                                    request,
                                }) {
                                    Ok(()) => {
                                        conn.state = State::Rendering;
                                        conn.deadline = Instant::now() + RENDER_TIMEOUT;
                                        return;
                                    }
                                    Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                                        self.counters.busy.fetch_add(1, Ordering::Relaxed);
                                        Response::error(503).into_bytes(head_only)
                                    }
                                }
                            }
                        }
                    }
                };
                conn.state = State::Writing {
                    out: response,
                    sent: 0,
                };
                conn.deadline = Instant::now() + WRITE_TIMEOUT;
                write_some(conn);
            }
            State::Writing { .. } => write_some(conn),
            State::Lingering { discarded } => {
                let mut chunk = [0u8; 4096];
                loop {
                    match conn.stream.read(&mut chunk) {
                        Ok(0) => {
                            conn.close = true;
                            return;
                        }
                        Ok(n) => {
                            *discarded += n;
                            if *discarded > MAX_LINGER_BYTES {
                                conn.close = true;
                                return;
                            }
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(_) => {
                            conn.close = true;
                            return;
                        }
                    }
                }
            }
            // Only an error or hang-up is reported for these; the response
            // will find the connection closed or be dropped at its deadline.
            State::Rendering => {}
        }
    }

    /// Closes connections past their deadline; a head that took too long
    /// gets a 408 first.
    fn expire(&mut self, now: Instant) {
        for conn in &mut self.conns {
            if now < conn.deadline {
                continue;
            }
            match conn.state {
                State::Reading { .. } => {
                    self.counters.timed_out.fetch_add(1, Ordering::Relaxed);
                    conn.state = State::Writing {
                        out: Response::error(408).into_bytes(false),
                        sent: 0,
                    };
                    // A short grace: the 408 is small and a client that
                    // does not read it loses nothing.
                    conn.deadline = now + Duration::from_secs(1);
                    write_some(conn);
                }
                _ => conn.close = true,
            }
        }
    }

    /// Accepts what is waiting, up to [`ACCEPTS_PER_TURN`].
    fn accept(&mut self) {
        for _ in 0..ACCEPTS_PER_TURN {
            match self.listener.accept() {
                Ok((stream, peer)) => {
                    if stream.set_nonblocking(true).is_err() {
                        continue;
                    }
                    let _ = stream.set_nodelay(true);
                    if self.conns.len() >= MAX_CONNECTIONS {
                        self.evict_one();
                    }
                    self.counters.accepted.fetch_add(1, Ordering::Relaxed);
                    let now = Instant::now();
                    self.next_id += 1;
                    self.conns.push(Conn {
                        id: self.next_id,
                        stream,
                        state: State::Reading { buf: Vec::new() },
                        deadline: now + HEAD_TIMEOUT,
                        accepted: now,
                        peer,
                        close: false,
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // Out of descriptors or memory (EMFILE, ENFILE,
                    // ENOBUFS): make room and pause accepting briefly
                    // rather than spin on a listener that stays readable.
                    // A connection aborted before accept: just go on.
                    if e.kind() == io::ErrorKind::ConnectionAborted {
                        continue;
                    }
                    self.evict_one();
                    self.accept_paused_until = Some(Instant::now() + Duration::from_millis(50));
                    return;
                }
            }
        }
    }

    /// Closes the connection least worth keeping: lingering before reading
    /// before writing before rendering, oldest first among equals.
    fn evict_one(&mut self) {
        let victim = self
            .conns
            .iter()
            .enumerate()
            .min_by_key(|(_, c)| (c.eviction_rank(), c.accepted))
            .map(|(i, _)| i);
        if let Some(i) = victim {
            self.counters.evicted.fetch_add(1, Ordering::Relaxed);
            self.conns.swap_remove(i);
        }
    }
}

fn pollfd(fd: i32, events: libc::c_short) -> libc::pollfd {
    libc::pollfd {
        fd,
        events,
        revents: 0,
    }
}

/// Writes what the socket takes now; once all is written, shuts our side
/// down and lingers.
fn write_some(conn: &mut Conn) {
    let State::Writing { out, sent } = &mut conn.state else {
        return;
    };
    while *sent < out.len() {
        match conn.stream.write(&out[*sent..]) {
            Ok(0) => {
                conn.close = true;
                return;
            }
            Ok(n) => *sent += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => {
                conn.close = true;
                return;
            }
        }
    }
    let _ = conn.stream.shutdown(Shutdown::Write);
    conn.state = State::Lingering { discarded: 0 };
    conn.deadline = Instant::now() + LINGER;
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpStream;

    /// Serves `/ok`, panics on `/panic`, 404 otherwise.
    struct Panicky;

    impl Service for Panicky {
        fn admit(&self, request: &Request, _peer: SocketAddr) -> Result<Lane, Response> {
            match request.path.as_str() {
                "/ok" | "/panic" => Ok(Lane::Light),
                "/panic-admit" => panic!("an admit that panics (expected in this test)"),
                _ => Err(Response::error(404)),
            }
        }

        fn render(&self, request: &Request) -> Response {
            if request.path == "/panic" {
                panic!("a render that panics (expected in this test)");
            }
            Response::ok("text/plain", b"fine\n".to_vec())
        }
    }

    fn get(addr: SocketAddr, path: &str) -> String {
        let mut stream = TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        write!(stream, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let mut out = String::new();
        stream.read_to_string(&mut out).unwrap();
        out
    }

    #[test]
    fn a_panicking_render_answers_500_and_the_server_serves_on() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let mut handle = start(listener, Arc::new(Panicky), Arc::default()).unwrap();
        assert!(get(addr, "/ok").starts_with("HTTP/1.1 200 OK\r\n"));
        for _ in 0..3 {
            let reply = get(addr, "/panic");
            assert!(reply.starts_with("HTTP/1.1 500 "), "{reply}");
            assert!(reply.contains("\r\nConnection: close\r\n"), "{reply}");
        }
        // A panic on the I/O thread, deciding what to do with a request.
        let reply = get(addr, "/panic-admit");
        assert!(reply.starts_with("HTTP/1.1 500 "), "{reply}");
        let reply = get(addr, "/ok");
        assert!(reply.starts_with("HTTP/1.1 200 OK\r\n"), "{reply}");
        assert!(reply.ends_with("\r\n\r\nfine\n"), "{reply}");
        assert!(reply.contains("\r\nContent-Length: 5\r\n"), "{reply}");
        assert_eq!(handle.counters.panics.load(Ordering::Relaxed), 4);
        handle.stop();
        // The listener is closed once stop returns.
        assert!(TcpStream::connect(addr).is_err());
    }

    /// Serves 8 MiB on every request.
    struct Big;

    impl Service for Big {
        fn admit(&self, _: &Request, _: SocketAddr) -> Result<Lane, Response> {
            Ok(Lane::Heavy)
        }

        fn render(&self, _: &Request) -> Response {
            Response::ok("application/octet-stream", vec![7; 8 << 20])
        }
    }

    #[test]
    fn clients_that_reset_mid_response_raise_no_sigpipe() {
        // With SIGPIPE at its default (as in a host process that never
        // ignored it), a write to a reset connection would kill this test
        // process. The server's writes must report EPIPE instead.
        // SAFETY: setting a signal disposition; no handler runs.
        let previous = unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let mut handle = start(listener, Arc::new(Big), Arc::default()).unwrap();
        for _ in 0..20 {
            let mut stream = TcpStream::connect(addr).unwrap();
            stream.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
            let mut first = [0u8; 4096];
            stream.read_exact(&mut first).unwrap();
            // Closing with unread data resets the connection.
            drop(stream);
        }
        std::thread::sleep(Duration::from_millis(200));
        let mut stream = TcpStream::connect(addr).unwrap();
        stream.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
        let mut all = Vec::new();
        stream.read_to_end(&mut all).unwrap();
        assert!(all.len() > 8 << 20, "a whole response after the resets");
        handle.stop();
        // SAFETY: restores the disposition read above.
        unsafe { libc::signal(libc::SIGPIPE, previous) };
    }

    /// `/slow` renders in 100 ms on the heavy lane; anything else at once on
    /// the light lane.
    struct Slow;

    impl Service for Slow {
        fn admit(&self, request: &Request, _: SocketAddr) -> Result<Lane, Response> {
            Ok(if request.path == "/slow" {
                Lane::Heavy
            } else {
                Lane::Light
            })
        }

        fn render(&self, request: &Request) -> Response {
            if request.path == "/slow" {
                std::thread::sleep(Duration::from_millis(100));
            }
            Response::ok("text/plain", b"done\n".to_vec())
        }
    }

    #[test]
    fn a_full_queue_answers_503_and_the_other_lane_serves_on() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let mut handle = start(listener, Arc::new(Slow), Arc::default()).unwrap();
        // More slow requests at once than the heavy lane holds.
        let clients: Vec<_> = (0..QUEUE_PER_LANE + 8)
            .map(|_| std::thread::spawn(move || get(addr, "/slow")))
            .collect();
        std::thread::sleep(Duration::from_millis(200));
        // Meanwhile the light lane answers at once.
        let t = Instant::now();
        assert!(get(addr, "/fast").starts_with("HTTP/1.1 200 OK\r\n"));
        assert!(
            t.elapsed() < Duration::from_millis(250),
            "{:?}",
            t.elapsed()
        );
        let replies: Vec<String> = clients.into_iter().map(|c| c.join().unwrap()).collect();
        let busy: Vec<&String> = replies
            .iter()
            .filter(|r| r.starts_with("HTTP/1.1 503 "))
            .collect();
        let ok = replies
            .iter()
            .filter(|r| r.starts_with("HTTP/1.1 200 "))
            .count();
        assert_eq!(busy.len() + ok, replies.len(), "only 200 or 503");
        assert!(!busy.is_empty(), "the queue is bounded");
        assert!(ok >= QUEUE_PER_LANE, "a full queue's worth is served: {ok}");
        assert!(busy[0].contains("\r\nRetry-After: 1\r\n"));
        assert_eq!(
            handle.counters.busy.load(Ordering::Relaxed),
            busy.len() as u64
        );
        handle.stop();
    }

    #[test]
    fn responses_held_for_slow_readers_are_capped() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let mut handle = start(listener, Arc::new(Big), Arc::default()).unwrap();
        // Clients that ask for 8 MiB each and read none of it, until the
        // held bytes pass the cap.
        let per_response = 8 << 20;
        let stalled = MAX_BUFFERED_RESPONSE_BYTES / per_response + 1;
        let mut held = Vec::new();
        for _ in 0..stalled {
            let mut s = TcpStream::connect(addr).unwrap();
            s.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
            held.push(s);
            // Rendered and handed to the I/O thread before the next one.
            std::thread::sleep(Duration::from_millis(150));
        }
        let reply = get(addr, "/");
        assert!(
            reply.starts_with("HTTP/1.1 503 "),
            "{}",
            &reply[..40.min(reply.len())]
        );
        // Once they go away, the server serves again.
        drop(held);
        std::thread::sleep(Duration::from_millis(300));
        let reply = get(addr, "/");
        assert!(
            reply.starts_with("HTTP/1.1 200 "),
            "{}",
            &reply[..40.min(reply.len())]
        );
        handle.stop();
    }

    #[test]
    fn head_has_the_get_length_and_no_body() {
        let bytes = Response::ok("text/plain", b"hello".to_vec()).into_bytes(true);
        let text = String::from_utf8(bytes).unwrap();
        assert!(text.contains("Content-Length: 5\r\n"), "{text}");
        assert!(text.ends_with("\r\n\r\n"), "{text}");
    }
}
