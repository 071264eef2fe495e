//! Helpers of the HTTP hardening tests (`tests/http_*.rs`): raw exchanges
//! over real sockets, a watchdog that fails a hung test instead of stalling
//! the run, and readings of the process's threads and memory.
#![allow(dead_code)] // each test binary uses a different part

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::os::fd::FromRawFd;
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Aborts the whole test process if dropped later than `limit` after
/// creation: a hang fails the run with a message instead of stalling it.
pub struct Watchdog(Option<mpsc::Sender<()>>);

pub fn watchdog(what: &'static str, limit: Duration) -> Watchdog {
    let (tx, rx) = mpsc::channel::<()>();
    std::thread::spawn(move || {
        if let Err(mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(limit) {
            eprintln!("watchdog: {what} did not finish within {limit:?}; aborting");
            std::process::abort();
        }
    });
    Watchdog(Some(tx))
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        if let Some(tx) = self.0.take() {
            let _ = tx.send(());
        }
    }
}

/// A parsed response.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Parses `raw` (a whole response, the server closed after it).
pub fn parse_reply(raw: &[u8]) -> Option<Reply> {
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Some(Reply {
        status,
        headers,
        body: raw[split + 4..].to_vec(),
    })
}

/// Sends `GET path` with extra header lines (each ending in CRLF) and reads
/// the whole response.
pub fn get_with(addr: SocketAddr, method: &str, path: &str, extra: &str) -> Reply {
    let raw = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{extra}\r\n");
    let bytes = exchange(addr, raw.as_bytes(), Duration::from_secs(30));
    let reply = parse_reply(&bytes.received)
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

/// `GET path`.
pub fn get(addr: SocketAddr, path: &str) -> Reply {
    get_with(addr, "GET", path, "")
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
        parse_reply(&self.received).map(|r| r.status)
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

/// The threads of this process now.
pub fn threads() -> usize {
    std::fs::read_dir("/proc/self/task").unwrap().count()
}

/// The names of this process's threads.
pub fn thread_names() -> Vec<String> {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|e| std::fs::read_to_string(e.ok()?.path().join("comm")).ok())
        .map(|s| s.trim().to_string())
        .collect()
}

/// Resident set size, bytes.
pub fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as u64;
    pages * page
}

/// Raises the soft limit of open files to the hard limit (the slowloris
/// test holds over a thousand sockets on each side).
pub fn raise_fd_limit() -> libc::rlim_t {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `limit` is a valid, writable rlimit.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return 0;
    }
    if limit.rlim_cur < limit.rlim_max {
        limit.rlim_cur = limit.rlim_max;
        // SAFETY: `limit` is a valid rlimit; raising the soft limit up to
        // the hard limit needs no privilege.
        unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) };
    }
    limit.rlim_cur
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
