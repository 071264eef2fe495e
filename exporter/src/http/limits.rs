//! Every limit of the HTTP server, in one place. Together they let the
//! server run inside someone else's production service: whatever clients
//! do, it holds a fixed number of threads, a bounded amount of memory and a
//! bounded number of sockets, and keeps answering.
//!
//! | limit | what it protects | past it |
//! |---|---|---|
//! | [`MAX_REQUEST_LINE`] | memory and parsing time spent on one request target | 414 |
//! | [`MAX_HEAD`] | memory held per connection while its head is read | 431 |
//! | [`MAX_HEADERS`] | parsing time spent on one head | 431 |
//! | [`HEAD_TIMEOUT`] | sockets held by clients that send a head slowly or never | 408, closed |
//! | [`MAX_CONNECTIONS`] | sockets and per-connection memory, all clients together | the oldest connection not waiting for a render is closed |
//! | [`SCRAPE_RESERVED_CONNECTIONS`] | the scrapes' share of those connections, which other requests may not keep busy | 503 (for the others) |
//! | [`QUEUE_PER_LANE`] | memory and waiting time of requests queued for a worker | 503 |
//! | [`RENDER_TIMEOUT`] | sockets held for a response that does not come | closed |
//! | [`MAX_PROFILE_SECONDS`] | how long a delta profile (`?seconds=N`) holds its connection | 400 |
//! | [`MAX_DEFERRED`] | delta profiles waiting for the end of their window at once, and the baselines they hold | 503 |
//! | [`MAX_BUFFERED_RESPONSE_BYTES`] | memory held for clients that read slowly, all together | 503 |
//! | [`SCRAPE_RESERVED_BYTES`] | the scrapes' share of that memory, which no other response may use | 503 (for the others) |
//! | [`WRITE_TIMEOUT`] | sockets and memory held by a client that stops reading | closed |
//! | [`LINGER`] | time spent discarding what a client sends after its response | closed |
//!
//! The server's internal limits live here too, crate-private:
//! `MAX_LINGER_BYTES` (bytes discarded after a response), `ACCEPTS_PER_TURN`
//! (connections a flood gets accepted before the open ones are served),
//! `LISTEN_BACKLOG` (connections the kernel queues in a burst),
//! `FIRST_RESPONSE_RESERVE` and `REMEMBERED_SIZES` (what a request reserves
//! of the response budget before it is rendered).
//!
//! This module holds constants only. The decoder (`request.rs`) enforces the
//! head limits, the connection (`conn.rs`) the linger limits, `budget.rs`
//! the response budget's arithmetic, and the I/O loop (`io_loop.rs`) the
//! rest; none of them defines a limit of its own.

use std::time::Duration;

/// The longest request line accepted (method, target and version), bytes
/// without the line ending. Longer: 414.
pub const MAX_REQUEST_LINE: usize = 2 * 1024;

/// The largest request head accepted (request line, header fields and the
/// blank line), bytes. Larger: 431.
pub const MAX_HEAD: usize = 8 * 1024;

/// The most header fields accepted. More: 431.
pub const MAX_HEADERS: usize = 64;

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
/// connection is closed without an answer (a delta profile's window comes
/// on top).
pub const RENDER_TIMEOUT: Duration = Duration::from_secs(60);

/// The longest window a delta profile (`/debug/pprof/allocs?seconds=N`)
/// may ask for, seconds. Longer: 400, as Go's `net/http/pprof` refuses a
/// window longer than its server's write timeout.
pub const MAX_PROFILE_SECONDS: u64 = 300;

/// The most delta profiles waiting for the end of their window at once
/// (each holds a connection and a copy of the site table's totals). More:
/// 503.
pub const MAX_DEFERRED: usize = 8;

/// After a response, how long the server keeps reading (and discarding)
/// what the client still sends, so that closing does not reset the
/// connection before the client has read the response.
pub const LINGER: Duration = Duration::from_secs(1);

/// The most bytes discarded after a response before the connection is
/// closed anyway.
pub(crate) const MAX_LINGER_BYTES: usize = 64 * 1024;

/// The most bytes of responses held for clients, all connections together.
/// It holds at every moment. A request counts against it from the moment it
/// is admitted: it reserves the size of the last response to the same
/// target, and is answered 503, before anything is rendered, if that does
/// not fit; once rendered, its response's bytes take the reservation's
/// place, and a response that grew past what is left is dropped and
/// answered 503.
pub const MAX_BUFFERED_RESPONSE_BYTES: usize = 64 * 1024 * 1024;

/// The part of [`MAX_BUFFERED_RESPONSE_BYTES`] that only scrapes
/// (`/metrics`) may use: profiles, call sites and the page together hold at
/// most the rest, so clients that stall on large reports cannot refuse a
/// scrape.
pub const SCRAPE_RESERVED_BYTES: usize = 8 * 1024 * 1024;

/// What a request reserves of the response budget when no response to its
/// path has been rendered yet.
pub(crate) const FIRST_RESPONSE_RESERVE: usize = 1024 * 1024;

/// How many request targets (path and query) the server remembers the last
/// response size of, to reserve that much of the budget for the next one.
pub(crate) const REMEMBERED_SIZES: usize = 64;

/// The part of [`MAX_CONNECTIONS`] that only scrapes may keep busy: once
/// `MAX_CONNECTIONS - SCRAPE_RESERVED_CONNECTIONS` connections are being
/// rendered or written for requests other than `/metrics`, every other
/// request is answered 503 at once (a short answer, which leaves its
/// connection among the first to be closed), and `/metrics` is still
/// served. So a new connection always finds the oldest of at least this
/// many idle or finished ones to close, and a scrape's connection, accepted
/// in a burst of others, has its request read before the burst could close
/// it (the reserve is at least the connections accepted per turn of the I/O
/// loop).
pub const SCRAPE_RESERVED_CONNECTIONS: usize = 64;

const _: () = assert!(SCRAPE_RESERVED_CONNECTIONS >= ACCEPTS_PER_TURN);
const _: () = assert!(SCRAPE_RESERVED_CONNECTIONS < MAX_CONNECTIONS);

/// How many requests each worker lane queues. Beyond it: 503.
pub const QUEUE_PER_LANE: usize = 32;

/// The most connections accepted per turn of the I/O loop, so that a flood
/// of connections cannot starve the ones already open.
pub(crate) const ACCEPTS_PER_TURN: usize = 64;

/// The accept queue's length asked of the kernel (capped by
/// `net.core.somaxconn`).
pub(crate) const LISTEN_BACKLOG: libc::c_int = 1024;
