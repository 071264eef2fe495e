//! A small HTTP/1.x server for the exporter, on `std::net` and `poll(2)`,
//! built to run inside someone else's production service: whatever clients
//! do, it holds a fixed number of threads, a bounded amount of memory and a
//! bounded number of sockets, and keeps answering.
//!
//! - One I/O thread accepts connections and reads request heads from all of
//!   them at once, non-blocking, each with a deadline ([`HEAD_TIMEOUT`]) and
//!   size limits ([`MAX_HEAD`], [`MAX_REQUEST_LINE`]). At [`MAX_CONNECTIONS`]
//!   open connections a new one evicts the oldest that is not being
//!   answered, so idle connections cannot lock a client out; other clients
//!   may keep all but [`SCRAPE_RESERVED_CONNECTIONS`] of them busy, so a
//!   scrape always finds one.
//! - Complete requests go to three worker threads: one renders scrapes
//!   (`/metrics`), one the other cheap responses (the JSON snapshot and
//!   history, the page), the third the ones that symbolize (profiles, call
//!   sites, spikes), so a slow profile never delays a scrape. Each lane queues at most
//!   [`QUEUE_PER_LANE`] requests; beyond that the answer is 503. A panic
//!   while rendering answers 500 and the worker goes on.
//! - The I/O thread writes the responses, non-blocking: a client that stops
//!   reading holds its socket until [`WRITE_TIMEOUT`], never a thread. The
//!   bytes of responses waiting to be sent are capped
//!   ([`MAX_BUFFERED_RESPONSE_BYTES`]), and [`SCRAPE_RESERVED_BYTES`] of it
//!   are the scrapes' alone: an admitted request reserves the size of the
//!   last response to its target, and is answered 503 before it is
//!   rendered if that does not fit. A rendered body is sent as it was
//!   built, never copied behind its head.
//! - Every response has `Content-Length` and `Connection: close`; after it
//!   the server shuts its side down and discards what the client still
//!   sends for at most [`LINGER`], so the client reads the whole response
//!   instead of a reset.
//!
//! The folder, split along the seams of hyper's `proto/h1`. Each file
//! imports only from files below it in this list, so `routes.rs` sees the
//! server only through what this file re-exports, and only this file uses
//! `io_loop.rs`:
//!
//! | file | holds |
//! |---|---|
//! | `routes.rs` | what is served: the endpoints, the bearer token; the [`Service`] the server runs |
//! | `mod.rs` | [`start`], which spawns the threads, and [`Handle`], which stops them; nothing else |
//! | `io_loop.rs` | the I/O thread: poll, accept, expire, evict, dispatch to the lanes |
//! | `workers.rs` | the [`Service`] trait, the [`Lane`]s, and the workers that render |
//! | `conn.rs` | one connection: its state, deadline, reads and writes |
//! | `budget.rs` | the response budget: what a lane may still take, what a request reserves |
//! | `request.rs` | the decoder: a [`Request`] from the bytes of its head |
//! | `response.rs` | the encoder: a [`Response`] to bytes |
//! | `limits.rs` | every limit above, public as [`crate::limits`] |
//!
//! [`HEAD_TIMEOUT`]: limits::HEAD_TIMEOUT
//! [`MAX_HEAD`]: limits::MAX_HEAD
//! [`MAX_REQUEST_LINE`]: limits::MAX_REQUEST_LINE
//! [`MAX_CONNECTIONS`]: limits::MAX_CONNECTIONS
//! [`SCRAPE_RESERVED_CONNECTIONS`]: limits::SCRAPE_RESERVED_CONNECTIONS
//! [`QUEUE_PER_LANE`]: limits::QUEUE_PER_LANE
//! [`WRITE_TIMEOUT`]: limits::WRITE_TIMEOUT
//! [`MAX_BUFFERED_RESPONSE_BYTES`]: limits::MAX_BUFFERED_RESPONSE_BYTES
//! [`SCRAPE_RESERVED_BYTES`]: limits::SCRAPE_RESERVED_BYTES
//! [`LINGER`]: limits::LINGER

use std::io::{self, Write};
use std::net::TcpListener;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;

use crate::health::HttpCounters;

mod budget;
mod conn;
mod io_loop;
pub mod limits;
pub(crate) mod request;
mod response;
pub(crate) mod routes;
mod workers;

pub(crate) use request::Request;
pub(crate) use response::Response;
pub(crate) use workers::{Deferred, Lane, Service};

use io_loop::IoLoop;
use limits::LISTEN_BACKLOG;
use workers::Done;

/// A running server. [`Handle::stop`] (or dropping it) stops its threads.
pub(crate) struct Handle {
    stop: Arc<AtomicBool>,
    waker: Arc<UnixStream>,
    /// A second descriptor of the waker's read end, held until the threads
    /// are joined: writing to a socket whose reader is gone would raise
    /// SIGPIPE, which kills a host process that has not ignored it.
    _wake_reader: UnixStream,
    threads: Vec<JoinHandle<()>>,
    pub counters: Arc<HttpCounters>,
}

impl Handle {
    /// The threads it runs.
    pub(crate) fn thread_count(&self) -> usize {
        self.threads.len()
    }

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

/// Starts the I/O thread and the three workers on `listener`.
/// The server counts what it does into `counters` (see [`crate::health`]).
pub(crate) fn start<S: Service>(
    listener: TcpListener,
    service: Arc<S>,
    counters: Arc<HttpCounters>,
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
    let lanes = workers::spawn(&service, &done_tx, &waker, &counters, &mut handle.threads)?;
    drop(done_tx);
    let io = IoLoop::new(listener, wake_rx, stop, service, lanes, done_rx, counters);
    let io_thread = std::thread::Builder::new()
        .name("allocmeter-http".into())
        .spawn(move || io.run())?;
    // The I/O thread first: it owns the queues' senders, so the workers end
    // after it.
    handle.threads.insert(0, io_thread);
    Ok(handle)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::net::{SocketAddr, TcpStream};
    use std::time::{Duration, Instant};

    use super::limits::{MAX_BUFFERED_RESPONSE_BYTES, MAX_CONNECTIONS, QUEUE_PER_LANE};

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

    /// `/metrics` on the scrapes' lane, a few bytes; anything else a 64 KiB
    /// page on the light lane.
    struct Page;

    impl Service for Page {
        fn admit(&self, request: &Request, _: SocketAddr) -> Result<Lane, Response> {
            Ok(if request.path == "/metrics" {
                Lane::Scrape
            } else {
                Lane::Light
            })
        }

        fn render(&self, request: &Request) -> Response {
            if request.path == "/metrics" {
                return Response::ok("text/plain", b"up 1\n".to_vec());
            }
            Response::ok("text/html", vec![b'x'; 64 << 10])
        }
    }

    #[test]
    fn more_stalled_clients_than_connections_cannot_lock_out_a_scrape() {
        use allocmeter_test_support::http::connect_small_window;
        use allocmeter_test_support::process::raise_fd_limit;
        assert!(raise_fd_limit() >= 2000, "needs ~1,200 descriptors");
        // Small send buffers (accepted sockets inherit the listener's), as
        // on a host short of socket memory: a client that reads nothing
        // then holds its connection in writing with a 64 KiB page.
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let size: libc::c_int = 4096;
        // SAFETY: the listener's own descriptor; the value is a live c_int
        // of the length passed.
        let rc = unsafe {
            libc::setsockopt(
                listener.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_SNDBUF,
                (&size as *const libc::c_int).cast(),
                size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        assert_eq!(rc, 0);
        let addr = listener.local_addr().unwrap();
        let mut handle = start(listener, Arc::new(Page), Arc::default()).unwrap();
        // Four clients' worth of threads, each opening a connection every
        // millisecond that asks for the page and reads none of it.
        let stop = Arc::new(AtomicBool::new(false));
        let stallers: Vec<_> = (0..4)
            .map(|_| {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    let mut held = std::collections::VecDeque::new();
                    let mut opened = 0usize;
                    while !stop.load(Ordering::Relaxed) {
                        let mut s = connect_small_window(addr);
                        let _ = s.write_all(b"GET /page HTTP/1.1\r\n\r\n");
                        held.push_back(s);
                        opened += 1;
                        if held.len() > 200 {
                            held.pop_front();
                        }
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    opened
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(500));
        let (mut failed, mut slowest) = (Vec::new(), Duration::ZERO);
        for i in 0..60 {
            let t = Instant::now();
            let mut stream = TcpStream::connect(addr).unwrap();
            stream
                .set_read_timeout(Some(Duration::from_secs(10)))
                .unwrap();
            let _ = stream.write_all(b"GET /metrics HTTP/1.1\r\n\r\n");
            let mut out = Vec::new();
            let _ = stream.read_to_end(&mut out);
            slowest = slowest.max(t.elapsed());
            if !out.starts_with(b"HTTP/1.1 200 OK\r\n") {
                failed.push((
                    i,
                    String::from_utf8_lossy(&out[..out.len().min(40)]).into_owned(),
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        stop.store(true, Ordering::Relaxed);
        let opened: usize = stallers.into_iter().map(|s| s.join().unwrap()).sum();
        let evicted = handle.counters.evicted.load(Ordering::Relaxed);
        eprintln!(
            "{opened} stalled clients ({evicted} evicted); scrapes failed: {failed:?}; slowest {slowest:?}"
        );
        assert!(
            opened > MAX_CONNECTIONS && evicted > 0,
            "the limit was reached"
        );
        assert!(failed.is_empty(), "scrapes without a 200: {failed:?}");
        assert!(
            slowest < Duration::from_secs(1),
            "a scrape took {slowest:?}"
        );
        handle.stop();
    }
}
