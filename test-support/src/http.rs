//! A small HTTP/1.1 client over real TCP sockets, for the exporter's tests.
//!
//! Two ways to ask, one [`Response`]:
//!
//! - [`fetch`] and [`fetch_bytes`] send `method path` with
//!   `Connection: close` and read the whole response, de-chunking a chunked
//!   body. They check nothing of the framing: for tests about what is served.
//! - [`checked_request`] and [`checked_get`] send `method path` with extra
//!   header lines, and assert the framing the exporter promises on every
//!   response: a `Content-Length` equal to the body (but for `HEAD`) and
//!   `Connection: close`. For tests of the HTTP endpoint itself.
//!
//! Below them, raw exchanges ([`exchange`], [`read_until_end`]) send any
//! bytes and report what came back and how the connection ended, and
//! [`connect_small_window`] opens a connection whose receive window is small.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::os::fd::FromRawFd;
use std::time::{Duration, Instant};

/// A response: status code, headers (lower-case names), body (`Vec<u8>`, or
/// `String` from [`fetch`]).
#[derive(Debug)]
pub struct Response<B = Vec<u8>> {
    /// The status code.
    pub status: u16,
    /// The header fields, names in lower case, values trimmed, in order.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: B,
}

impl<B> Response<B> {
    /// The value of the first header field named `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

impl Response {
    /// The body as text (invalid UTF-8 replaced).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Parses `raw` (a whole response, the server closed after it); `None` if it
/// has no status line or no end of head. The body is taken as it came.
pub fn parse_response(raw: &[u8]) -> Option<Response> {
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Some(Response {
        status,
        headers,
        body: raw[split + 4..].to_vec(),
    })
}

/// Sends `method path` and reads the whole response, with a text body.
pub fn fetch(addr: SocketAddr, method: &str, path: &str) -> Response<String> {
    let raw = fetch_bytes(addr, method, path);
    Response {
        status: raw.status,
        headers: raw.headers,
        body: String::from_utf8(raw.body).expect("utf-8 response"),
    }
}

/// Sends `method path` and reads the whole response.
pub fn fetch_bytes(addr: SocketAddr, method: &str, path: &str) -> Response {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).expect("read response");
    let mut response = parse_response(&raw).expect("a status line and a header/body separator");
    let chunked = response
        .headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.contains("chunked"));
    if chunked {
        response.body = dechunk(&response.body);
    }
    response
}

/// Decodes a `Transfer-Encoding: chunked` body.
fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let line_end = data
            .windows(2)
            .position(|w| w == b"\r\n")
            .expect("chunk size line");
        let size_text = String::from_utf8_lossy(&data[..line_end]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap().trim(), 16)
            .expect("hex chunk size");
        data = &data[line_end + 2..];
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
}

/// Sends `method path` with extra header lines (each ending in CRLF), reads
/// the whole response, and asserts its framing: `Content-Length` equal to
/// the body (but for `HEAD`) and `Connection: close`.
pub fn checked_request(addr: SocketAddr, method: &str, path: &str, extra: &str) -> Response {
    let raw = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{extra}\r\n");
    let bytes = exchange(addr, raw.as_bytes(), Duration::from_secs(30));
    let reply = parse_response(&bytes.received)
        .unwrap_or_else(|| panic!("{method} {path}: no HTTP response: {bytes:?}"));
    if method != "HEAD" {
        let length: usize = reply
            .header("content-length")
            .expect("Content-Length")
            .parse()
            .unwrap();
        assert_eq!(length, reply.body.len(), "{path}: Content-Length");
    }
    assert_eq!(reply.header("connection"), Some("close"), "{path}");
    reply
}

/// `GET path`, with the framing checked as [`checked_request`] does.
pub fn checked_get(addr: SocketAddr, path: &str) -> Response {
    checked_request(addr, "GET", path, "")
}

/// What came back from an exchange.
#[derive(Debug)]
pub struct Exchange {
    /// Everything read until the server closed, reset, or `timeout` passed.
    pub received: Vec<u8>,
    /// The connection ended (EOF or reset) rather than the read timing out.
    pub ended: bool,
}

impl Exchange {
    /// The status, if a response came.
    pub fn status(&self) -> Option<u16> {
        parse_response(&self.received).map(|r| r.status)
    }
}

/// Connects, sends `bytes` (from another thread, ignoring errors: the
/// server may refuse and close before taking them all) and reads until the
/// connection ends or `timeout`.
pub fn exchange(addr: SocketAddr, bytes: &[u8], timeout: Duration) -> Exchange {
    let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
    let mut writer = stream.try_clone().unwrap();
    let bytes = bytes.to_vec();
    let sender = std::thread::spawn(move || {
        let _ = writer.write_all(&bytes);
    });
    let result = read_until_end(stream, timeout);
    let _ = sender.join();
    result
}

/// Reads until EOF, an error, or `timeout` in all.
pub fn read_until_end(mut stream: TcpStream, timeout: Duration) -> Exchange {
    let deadline = Instant::now() + timeout;
    let mut received = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            let _ = stream.shutdown(Shutdown::Both);
            return Exchange {
                received,
                ended: false,
            };
        }
        stream.set_read_timeout(Some(left)).unwrap();
        match stream.read(&mut chunk) {
            Ok(0) => {
                return Exchange {
                    received,
                    ended: true,
                };
            }
            Ok(n) => received.extend_from_slice(&chunk[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => {
                // Reset: the connection ended.
                return Exchange {
                    received,
                    ended: true,
                };
            }
        }
    }
}

/// A TCP connection whose receive buffer is 4 KiB, set before connecting so
/// that the window the server sees is small from the start.
pub fn connect_small_window(addr: SocketAddr) -> TcpStream {
    let SocketAddr::V4(v4) = addr else {
        panic!("IPv4 loopback expected")
    };
    // SAFETY: plain socket creation; the result is checked.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
    let size: libc::c_int = 4096;
    // SAFETY: `fd` is a socket we own; the option value is a live c_int of
    // the length passed.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&size as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "setsockopt: {}", std::io::Error::last_os_error());
    let sin = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: v4.port().to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(*v4.ip()).to_be(),
        },
        sin_zero: [0; 8],
    };
    // SAFETY: `sin` is a valid sockaddr_in of the length passed; `fd` is ours.
    let rc = unsafe {
        libc::connect(
            fd,
            (&sin as *const libc::sockaddr_in).cast(),
            size_of::<libc::sockaddr_in>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "connect: {}", std::io::Error::last_os_error());
    // SAFETY: `fd` is a connected socket that nothing else owns.
    unsafe { TcpStream::from_raw_fd(fd) }
}
