//! One connection: where it is ([`ConnState`]: reading the head, waiting
//! for its render, writing, lingering), its deadline, and its own reads and
//! writes, all non-blocking: [`Conn::read_head`] feeds the decoder,
//! [`Conn::write_some`] sends what the socket takes, [`Conn::discard`]
//! drains what the client sends after its response.
//!
//! A connection knows nothing of the others, of the workers or of the
//! routes: deciding what to answer, admitting into a lane, expiring and
//! evicting are the I/O loop's (`io_loop.rs`).

use std::io::{self, IoSlice, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::Instant;

use super::budget::Reservation;
use super::limits::{HEAD_TIMEOUT, LINGER, MAX_HEAD, MAX_LINGER_BYTES};
use super::request::{Parsed, parse_head};
use super::workers::Lane;

/// Where a connection is.
pub(super) enum ConnState {
    /// Reading the request head.
    Reading { buf: Vec<u8> },
    /// Waiting for a worker's response, holding a reservation of the
    /// response budget.
    Rendering(Reservation),
    /// Sending the response: its head, then its body (kept apart so that a
    /// rendered body is sent without being copied).
    Writing {
        head: Vec<u8>,
        body: Vec<u8>,
        sent: usize,
    },
    /// Response sent and our side shut down; discarding what comes in.
    Lingering { discarded: usize },
}

/// An open connection.
pub(super) struct Conn {
    /// The server's number for it, to match a worker's response to it.
    pub id: u64,
    pub stream: TcpStream,
    pub state: ConnState,
    /// When the current state runs out.
    pub deadline: Instant,
    pub accepted: Instant,
    pub peer: SocketAddr,
    /// Set when it is done with: the I/O loop drops it.
    pub close: bool,
    /// The lane its request was admitted into, once it was: which share of
    /// the response budget its response counts against.
    pub lane: Option<Lane>,
}

impl Conn {
    /// A connection accepted `now`, reading its head until [`HEAD_TIMEOUT`].
    pub fn new(id: u64, stream: TcpStream, peer: SocketAddr, now: Instant) -> Conn {
        Conn {
            id,
            stream,
            state: ConnState::Reading { buf: Vec::new() },
            deadline: now + HEAD_TIMEOUT,
            accepted: now,
            peer,
            close: false,
            lane: None,
        }
    }

    /// Eviction preference: lower goes first.
    pub fn eviction_rank(&self) -> u8 {
        match self.state {
            ConnState::Lingering { .. } => 0,
            ConnState::Reading { .. } => 1,
            ConnState::Writing { .. } => 2,
            ConnState::Rendering(_) => 3,
        }
    }

    /// Bytes of the response budget this connection holds: its
    /// reservation while rendered, its response while written (all of it,
    /// until the connection lets it go).
    pub fn buffered(&self) -> usize {
        match &self.state {
            ConnState::Rendering(reservation) => reservation.bytes,
            ConnState::Writing { head, body, .. } => head.len() + body.len(),
            _ => 0,
        }
    }

    /// Reads what the socket has into the head buffer, until the head is
    /// complete or refused: then the request or the refusal (never
    /// [`Parsed::Incomplete`]). `None` to wait for more, or if the
    /// connection is closing (`close` is then set).
    pub fn read_head(&mut self) -> Option<Parsed> {
        let ConnState::Reading { buf } = &mut self.state else {
            return None;
        };
        let mut chunk = [0u8; 4096];
        loop {
            match self.stream.read(&mut chunk) {
                Ok(0) => {
                    self.close = true;
                    return None;
                }
                Ok(n) => {
                    // Never keep more than one byte past the limit:
                    // that is enough to tell the head is too large.
                    let room = (MAX_HEAD + 1).saturating_sub(buf.len());
                    buf.extend_from_slice(&chunk[..n.min(room)]);
                    match parse_head(buf) {
                        Parsed::Incomplete => continue,
                        done => return Some(done),
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return None,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => {
                    self.close = true;
                    return None;
                }
            }
        }
    }

    /// Starts sending `head` and then `body`, to be sent by `deadline`,
    /// and sends what the socket takes now.
    pub fn start_writing(&mut self, head: Vec<u8>, body: Vec<u8>, deadline: Instant) {
        self.state = ConnState::Writing {
            head,
            body,
            sent: 0,
        };
        self.deadline = deadline;
        self.write_some();
    }

    /// Writes what the socket takes now; once all is written, shuts our side
    /// down and lingers.
    pub fn write_some(&mut self) {
        let ConnState::Writing { head, body, sent } = &mut self.state else {
            return;
        };
        while *sent < head.len() + body.len() {
            let written = if *sent < head.len() {
                let parts = [IoSlice::new(&head[*sent..]), IoSlice::new(body)];
                self.stream.write_vectored(&parts)
            } else {
                self.stream.write(&body[*sent - head.len()..])
            };
            match written {
                Ok(0) => {
                    self.close = true;
                    return;
                }
                Ok(n) => *sent += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => {
                    self.close = true;
                    return;
                }
            }
        }
        let _ = self.stream.shutdown(Shutdown::Write);
        self.state = ConnState::Lingering { discarded: 0 };
        self.deadline = Instant::now() + LINGER;
    }

    /// Reads and discards what the client still sends after its response;
    /// closes at its end, on an error, or past [`MAX_LINGER_BYTES`].
    pub fn discard(&mut self) {
        let ConnState::Lingering { discarded } = &mut self.state else {
            return;
        };
        let mut chunk = [0u8; 4096];
        loop {
            match self.stream.read(&mut chunk) {
                Ok(0) => {
                    self.close = true;
                    return;
                }
                Ok(n) => {
                    *discarded += n;
                    if *discarded > MAX_LINGER_BYTES {
                        self.close = true;
                        return;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => {
                    self.close = true;
                    return;
                }
            }
        }
    }
}
