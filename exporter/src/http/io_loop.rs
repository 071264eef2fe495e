//! The I/O thread: one `poll(2)` loop over the listener, a waker and every
//! connection. Each turn it expires connections past their deadline, moves
//! rendered responses to their connections, serves each connection `poll`
//! reported on according to its state, and accepts new ones, evicting the
//! least worth keeping at [`MAX_CONNECTIONS`].
//!
//! It owns the sockets and the connection table, and dispatches: a complete
//! request is admitted by the [`Service`] and queued in its lane, or
//! answered at once. It never renders (the workers do, in `workers.rs`),
//! never parses (`request.rs`) and never encodes (`response.rs`). Only
//! `mod.rs` uses it, to start it.

use std::collections::VecDeque;
use std::io::{self, Read};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::time::{Duration, Instant};

use super::budget::{self, Sizes};
use super::conn::{Conn, ConnState};
use super::limits::{
    ACCEPTS_PER_TURN, MAX_CONNECTIONS, RENDER_TIMEOUT, SCRAPE_RESERVED_CONNECTIONS, WRITE_TIMEOUT,
};
use super::request::{Method, Parsed, Request};
use super::response::Response;
use super::workers::{Done, Job, Lane, Service};
use crate::health::HttpCounters;

/// The longest the I/O thread sleeps in `poll` (it wakes sooner for
/// deadlines, connections and finished responses).
const MAX_POLL_WAIT: Duration = Duration::from_secs(1);

pub(super) struct IoLoop<S> {
    listener: TcpListener,
    wake: UnixStream,
    stop: Arc<AtomicBool>,
    service: Arc<S>,
    lanes: Vec<(Lane, SyncSender<Job>)>,
    done: Receiver<Done>,
    conns: Vec<Conn>,
    next_id: u64,
    accept_paused_until: Option<Instant>,
    /// The last response sizes, which admitted requests reserve.
    sizes: Sizes,
    counters: Arc<HttpCounters>,
}

impl<S: Service> IoLoop<S> {
    /// A loop with no connection yet: `wake` is the read end of the waker
    /// the workers and [`super::Handle::stop`] write to, `lanes` the
    /// workers' queues and `done` what they send back.
    pub fn new(
        listener: TcpListener,
        wake: UnixStream,
        stop: Arc<AtomicBool>,
        service: Arc<S>,
        lanes: Vec<(Lane, SyncSender<Job>)>,
        done: Receiver<Done>,
        counters: Arc<HttpCounters>,
    ) -> IoLoop<S> {
        IoLoop {
            listener,
            wake,
            stop,
            service,
            lanes,
            done,
            conns: Vec::new(),
            next_id: 0,
            accept_paused_until: None,
            sizes: Sizes::default(),
            counters,
        }
    }

    /// Runs until `stop` is set.
    pub fn run(mut self) {
        crate::marked::mark_this_thread();
        let mut fds: Vec<libc::pollfd> = Vec::with_capacity(MAX_CONNECTIONS + 2);
        let mut ready: VecDeque<usize> = VecDeque::with_capacity(MAX_CONNECTIONS);
        while !self.stop.load(Ordering::Acquire) {
            let now = Instant::now();
            self.expire(now);
            self.conns.retain(|c| !c.close);
            let timeout_ms = self.watch(&mut fds, now);
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

    /// Fills `fds` with what to wait for: the waker, the listener (unless
    /// accepting is paused) and every connection, in that order. Returns
    /// how long `poll` may wait, in milliseconds.
    fn watch(&mut self, fds: &mut Vec<libc::pollfd>, now: Instant) -> i32 {
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
                ConnState::Reading { .. } | ConnState::Lingering { .. } => {
                    (conn.stream.as_raw_fd(), libc::POLLIN)
                }
                ConnState::Writing { .. } => (conn.stream.as_raw_fd(), libc::POLLOUT),
                ConnState::Rendering(_) => (-1, 0),
            };
            fds.push(pollfd(fd, events));
            wait = wait.min(conn.deadline.saturating_duration_since(now));
        }
        // Round up, so that a deadline 0.4 ms away is not a busy loop.
        wait.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32
    }

    fn drain_wake(&mut self) {
        let mut sink = [0u8; 64];
        while let Ok(n) = self.wake.read(&mut sink) {
            if n == 0 {
                break;
            }
        }
    }

    /// Moves rendered responses to their connections (if still open), each
    /// in place of its reservation, and remembers their sizes.
    fn collect_done(&mut self) {
        while let Ok(Done {
            id,
            mut head,
            mut body,
        }) = self.done.try_recv()
        {
            let Some(i) = self.conns.iter().position(|c| c.id == id) else {
                continue; // evicted or timed out meanwhile
            };
            let ConnState::Rendering(reservation) = &mut self.conns[i].state else {
                continue;
            };
            let reserved = reservation.bytes;
            let target = reservation.target.take();
            let bytes = head.len() + body.len();
            if let Some(target) = target {
                self.sizes.remember(target, bytes);
            }
            // The reservation is counted in what is held; the response
            // takes its place.
            let room = self.room_for(self.conns[i].lane) + reserved;
            if room < bytes {
                // Grew past its reservation and over its share of the
                // budget: dropped now, so that what is held never exceeds
                // the budget.
                self.counters.busy.fetch_add(1, Ordering::Relaxed);
                (head, body) = Response::error(503).into_parts(false);
            }
            body.shrink_to_fit();
            self.conns[i].start_writing(head, body, Instant::now() + WRITE_TIMEOUT);
        }
    }

    /// Handles a connection `poll` reported on, according to its state.
    fn service_conn(&mut self, i: usize) {
        let conn = &mut self.conns[i];
        match conn.state {
            ConnState::Reading { .. } => self.read_head(i),
            ConnState::Writing { .. } => conn.write_some(),
            ConnState::Lingering { .. } => conn.discard(),
            // Only an error or hang-up is reported for these; the response
            // will find the connection closed or be dropped at its deadline.
            ConnState::Rendering(_) => {}
        }
    }

    /// A connection reading its head: reads, and once the head is complete
    /// answers it at once or hands it to a worker.
    fn read_head(&mut self, i: usize) {
        let Some(parsed) = self.conns[i].read_head() else {
            return;
        };
        let response = match parsed {
            Parsed::Incomplete => unreachable!("the loop continues on Incomplete"),
            Parsed::Refuse(status) => Response::error(status).into_bytes(false),
            Parsed::Request(request) => match self.dispatch(i, request) {
                Some(response) => response,
                None => return, // queued: the worker's response comes later
            },
        };
        self.conns[i].start_writing(response, Vec::new(), Instant::now() + WRITE_TIMEOUT);
    }

    /// Asks the service what to do with connection `i`'s request, and
    /// queues it in its lane with a reservation of the response budget:
    /// `None` once queued (the connection then waits for the render), or
    /// the bytes of the answer to send at once (the service's, or 503 if the
    /// queue is full, the reservation does not fit in the budget, or, but
    /// for a scrape, the connections other requests may keep busy are).
    fn dispatch(&mut self, i: usize, request: Request) -> Option<Vec<u8>> {
        let head_only = request.method == Method::Head;
        let peer = self.conns[i].peer;
        let admitted = catch_unwind(AssertUnwindSafe(|| self.service.admit(&request, peer)))
            .unwrap_or_else(|_| {
                self.counters.panics.fetch_add(1, Ordering::Relaxed);
                eprintln!(
                    "allocmeter-exporter: admitting a request panicked; answered 500 and serving on"
                );
                Err(Response::error(500))
            });
        let lane = match admitted {
            Err(response) => return Some(response.into_bytes(head_only)),
            Ok(lane) => lane,
        };
        let reservation = self.sizes.reserve(&request);
        let room = self.room_for(Some(lane));
        let connections_left = lane == Lane::Scrape
            || self.busy_for_others() < MAX_CONNECTIONS - SCRAPE_RESERVED_CONNECTIONS;
        if room == 0 || room < reservation.bytes || !connections_left {
            self.counters.busy.fetch_add(1, Ordering::Relaxed);
            return Some(Response::error(503).into_bytes(head_only));
        }
        let queue = &self
            .lanes
            .iter()
            .find(|(l, _)| *l == lane)
            .expect("a queue per lane")
            .1;
        let wait = self.service.wait(&request);
        let conn = &mut self.conns[i];
        match queue.try_send(Job {
            id: conn.id,
            request,
        }) {
            Ok(()) => {
                conn.lane = Some(lane);
                conn.state = ConnState::Rendering(reservation);
                conn.deadline = Instant::now() + RENDER_TIMEOUT + wait;
                None
            }
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.counters.busy.fetch_add(1, Ordering::Relaxed);
                Some(Response::error(503).into_bytes(head_only))
            }
        }
    }

    /// Bytes a response of `lane` may still take, from what the
    /// connections hold and have reserved (see `budget.rs`).
    fn room_for(&self, lane: Option<Lane>) -> usize {
        let held = |scrapes: bool| -> usize {
            self.conns
                .iter()
                .filter(|c| (c.lane == Some(Lane::Scrape)) == scrapes)
                .map(Conn::buffered)
                .sum()
        };
        budget::room(lane, held(true), held(false))
    }

    /// Connections being rendered or written for requests other than
    /// scrapes: those that eviction closes last.
    fn busy_for_others(&self) -> usize {
        self.conns
            .iter()
            .filter(|c| c.lane != Some(Lane::Scrape))
            .filter(|c| matches!(c.state, ConnState::Rendering(_) | ConnState::Writing { .. }))
            .count()
    }

    /// Closes connections past their deadline; a head that took too long
    /// gets a 408 first.
    fn expire(&mut self, now: Instant) {
        for conn in &mut self.conns {
            if now < conn.deadline {
                continue;
            }
            match conn.state {
                ConnState::Reading { .. } => {
                    self.counters.timed_out.fetch_add(1, Ordering::Relaxed);
                    // A short grace: the 408 is small and a client that
                    // does not read it loses nothing.
                    let (head, body) = Response::error(408).into_parts(false);
                    conn.start_writing(head, body, now + Duration::from_secs(1));
                }
                _ => conn.close = true,
            }
        }
    }

    /// Accepts what is waiting, up to [`ACCEPTS_PER_TURN`].
    fn accept(&mut self) {
        for _ in 0..ACCEPTS_PER_TURN {
            match self.listener.accept() {
                Ok((stream, peer)) => self.open(stream, peer),
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

    /// Adds an accepted connection, evicting one first at
    /// [`MAX_CONNECTIONS`].
    fn open(&mut self, stream: TcpStream, peer: SocketAddr) {
        if stream.set_nonblocking(true).is_err() {
            return;
        }
        let _ = stream.set_nodelay(true);
        if self.conns.len() >= MAX_CONNECTIONS {
            self.evict_one();
        }
        self.counters.accepted.fetch_add(1, Ordering::Relaxed);
        self.next_id += 1;
        let conn = Conn::new(self.next_id, stream, peer, Instant::now());
        self.conns.push(conn);
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
