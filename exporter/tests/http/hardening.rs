//! The HTTP endpoint under attack by hostile clients: idle and trickling
//! connections, malformed, oversized and binary requests, clients that stop
//! reading, and shutdown with all of that going on. Real sockets, a real
//! exporter on 127.0.0.1:0, and a watchdog per test so that a hang fails.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use allocmeter_exporter::limits::{HEAD_TIMEOUT, MAX_CONNECTIONS};
use allocmeter_test_support::exporter::start_default_exporter;
use allocmeter_test_support::http::{
    self, checked_get, checked_request, exchange, parse_response, read_until_end,
};
use allocmeter_test_support::process::raise_fd_limit;
use allocmeter_test_support::watchdog::watchdog;

/// Times a `GET /metrics`, which must succeed.
fn timed_metrics(addr: SocketAddr) -> Duration {
    let t = Instant::now();
    let reply = checked_get(addr, "/metrics");
    let took = t.elapsed();
    assert_eq!(reply.status, 200);
    assert!(reply.text().contains("allocmeter_heap_live_bytes"));
    took
}

#[test]
fn a_thousand_idle_connections_do_not_stop_metrics() {
    let _dog = watchdog("slowloris test", Duration::from_secs(120));
    let limit = raise_fd_limit();
    assert!(
        limit >= 2300,
        "needs ~2,100 descriptors, the limit is {limit}"
    );
    let (exporter, addr) = start_default_exporter();
    let t = Instant::now();
    // Half send nothing at all, half the start of a head and then nothing.
    let idle: Vec<TcpStream> = (0..1000)
        .map(|i| {
            let mut s =
                TcpStream::connect_timeout(&addr, Duration::from_secs(10)).expect("connect");
            if i % 2 == 1 {
                s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
                    .unwrap();
            }
            s
        })
        .collect();
    let connecting = t.elapsed();
    let latencies: Vec<Duration> = (0..5).map(|_| timed_metrics(addr)).collect();
    let worst = *latencies.iter().max().unwrap();
    let stats = exporter.http_stats().unwrap();
    eprintln!(
        "slowloris: 1000 idle connections opened in {connecting:?}; /metrics took {latencies:?} \
         (worst {worst:?}); {stats:?}"
    );
    assert!(worst < Duration::from_secs(1), "/metrics took {worst:?}");
    assert!(
        stats.evicted >= (1000 - MAX_CONNECTIONS) as u64,
        "the oldest idle connections made room: {stats:?}"
    );
    // The idle connections the server dropped see the end of the stream.
    let mut first = idle.into_iter().next().unwrap();
    first
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut buf = [0u8; 16];
    assert!(
        matches!(first.read(&mut buf), Ok(0) | Err(_)),
        "the oldest idle connection was closed"
    );
}

/// A malformed request, and the status it must get if it gets one (it may
/// instead see the connection closed: a reset can overtake the response
/// when the client is still sending).
struct Case {
    name: &'static str,
    bytes: Vec<u8>,
    status: u16,
}

fn malformed_cases() -> Vec<Case> {
    let case = |name, bytes: Vec<u8>, status| Case {
        name,
        bytes,
        status,
    };
    let mut binary: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    binary[0] = 0;
    let tls_client_hello = vec![
        0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03,
    ];
    let mut endless_header = b"GET /metrics HTTP/1.1\r\nX-Endless: ".to_vec();
    endless_header.extend(std::iter::repeat_n(b'a', 1 << 20));
    vec![
        case("garbage", b"hello there, server\r\n\r\n".to_vec(), 400),
        case(
            "bad method",
            b"BREW /metrics HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
            405,
        ),
        case(
            "POST with a body",
            b"POST /metrics HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello".to_vec(),
            405,
        ),
        case("HTTP/9", b"GET /metrics HTTP/9\r\n\r\n".to_vec(), 400),
        case(
            "HTTP/2 preface",
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec(),
            400,
        ),
        case(
            "absolute URI",
            b"GET http://evil/metrics HTTP/1.1\r\n\r\n".to_vec(),
            400,
        ),
        case(
            "NUL in the path",
            b"GET /met\0rics HTTP/1.1\r\n\r\n".to_vec(),
            400,
        ),
        case(
            "bare CR",
            b"GET /metrics HTTP/1.1\rHost: x\r\n\r\n".to_vec(),
            400,
        ),
        case(
            "folded header",
            b"GET / HTTP/1.1\r\nX: a\r\n b\r\n\r\n".to_vec(),
            400,
        ),
        case(
            "header without colon",
            b"GET / HTTP/1.1\r\nnonsense\r\n\r\n".to_vec(),
            400,
        ),
        case(
            "16 KiB header",
            format!("GET / HTTP/1.1\r\nX-Big: {}\r\n\r\n", "b".repeat(16 * 1024)).into_bytes(),
            431,
        ),
        case(
            "100 header fields",
            format!("GET / HTTP/1.1\r\n{}\r\n", "X-Many: y\r\n".repeat(100)).into_bytes(),
            431,
        ),
        case(
            "64 KiB request line",
            format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(64 * 1024)).into_bytes(),
            414,
        ),
        case("binary", binary, 400),
        case("TLS client hello", tls_client_hello, 400),
        case("never-ending header (1 MiB)", endless_header, 431),
        // Waits for the head timeout.
        case("no line end", b"GET /metrics HTTP/1.1".to_vec(), 408),
    ]
}

#[test]
fn malformed_oversized_and_binary_requests_get_4xx_or_a_close() {
    let _dog = watchdog("malformed requests test", Duration::from_secs(120));
    let (_exporter, addr) = start_default_exporter();
    let cases = malformed_cases();
    // In parallel: the head-timeout case alone takes 5 s.
    let outcomes: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = cases
            .iter()
            .map(|case| {
                s.spawn(move || {
                    let t = Instant::now();
                    let got = exchange(addr, &case.bytes, HEAD_TIMEOUT + Duration::from_secs(5));
                    (got, t.elapsed())
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (case, (got, took)) in cases.iter().zip(&outcomes) {
        eprintln!(
            "malformed: {:<28} -> {} in {took:?}",
            case.name,
            got.status().map_or_else(
                || "closed without a response".to_string(),
                |s| s.to_string()
            )
        );
        assert!(got.ended, "{}: the server closed the connection", case.name);
        match got.status() {
            Some(status) => {
                assert_eq!(status, case.status, "{}", case.name);
                let reply = parse_response(&got.received).unwrap();
                assert_eq!(reply.header("connection"), Some("close"));
                // Fixed bodies: nothing of the request comes back.
                assert!(reply.body.len() < 100, "{}: {}", case.name, reply.text());
            }
            None => assert!(
                got.received.is_empty(),
                "{}: junk {:?}",
                case.name,
                got.received
            ),
        }
    }
    // Most got their status (a reset may overtake some of the big ones).
    let answered = outcomes
        .iter()
        .filter(|(g, _)| g.status().is_some())
        .count();
    assert!(answered >= cases.len() - 4, "only {answered} answered");
    // And the server still serves.
    timed_metrics(addr);
    assert_eq!(checked_get(addr, "/api/snapshot").status, 200);
}

#[test]
fn a_trickling_head_gets_408_at_the_deadline() {
    let _dog = watchdog("trickle test", Duration::from_secs(60));
    let (exporter, addr) = start_default_exporter();
    let mut stream = TcpStream::connect(addr).unwrap();
    let reader = stream.try_clone().unwrap();
    let t = Instant::now();
    let trickle = std::thread::spawn(move || {
        // One header line every 200 ms, forever (until the server closes).
        let _ = stream.write_all(b"GET /metrics HTTP/1.1\r\n");
        for i in 0.. {
            std::thread::sleep(Duration::from_millis(200));
            if stream
                .write_all(format!("X-{i}: y\r\n").as_bytes())
                .is_err()
            {
                break;
            }
            if i > 100 {
                break;
            }
        }
    });
    let got = read_until_end(reader, Duration::from_secs(15));
    let took = t.elapsed();
    eprintln!("trickle: {:?} after {took:?}", got.status());
    assert_eq!(got.status(), Some(408));
    assert!(
        took >= HEAD_TIMEOUT - Duration::from_millis(100)
            && took < HEAD_TIMEOUT + Duration::from_secs(2),
        "{took:?}"
    );
    trickle.join().unwrap();
    assert!(exporter.http_stats().unwrap().timed_out >= 1);
    timed_metrics(addr);
}

#[test]
fn head_methods_and_unknown_paths() {
    let _dog = watchdog("methods test", Duration::from_secs(60));
    let (_exporter, addr) = start_default_exporter();
    let head = checked_request(addr, "HEAD", "/metrics", "");
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty(), "HEAD has no body");
    let length: usize = head.header("content-length").unwrap().parse().unwrap();
    assert!(length > 1000, "HEAD tells the GET body's length: {length}");
    for method in [
        "POST", "PUT", "DELETE", "OPTIONS", "PATCH", "TRACE", "CONNECT",
    ] {
        let reply = checked_request(addr, method, "/metrics", "");
        assert_eq!(reply.status, 405, "{method}");
        assert_eq!(reply.header("allow"), Some("GET, HEAD"));
    }
    let missing = checked_get(addr, "/does/not/exist");
    assert_eq!(missing.status, 404);
    assert_eq!(missing.text(), "not found\n");
    // Ignored extra bytes after the head (a pipelined second request) do
    // not get a second response: every response closes.
    let got = exchange(
        addr,
        b"GET /metrics HTTP/1.1\r\n\r\nGET /metrics HTTP/1.1\r\n\r\n",
        Duration::from_secs(10),
    );
    assert_eq!(got.status(), Some(200));
    assert_eq!(
        got.received
            .windows(9)
            .filter(|w| w == b"HTTP/1.1 ")
            .count(),
        1,
        "one response"
    );
}

#[test]
fn shutdown_is_prompt_with_connections_open() {
    let _dog = watchdog("shutdown test", Duration::from_secs(60));
    let (exporter, addr) = start_default_exporter();
    let idle: Vec<TcpStream> = (0..300)
        .map(|_| TcpStream::connect(addr).unwrap())
        .collect();
    let mut stalled = http::connect_small_window(addr);
    stalled
        .write_all(b"GET /debug/pprof/heap HTTP/1.1\r\n\r\n")
        .unwrap();
    assert_eq!(checked_get(addr, "/metrics").status, 200);
    let t = Instant::now();
    exporter.shutdown();
    let took = t.elapsed();
    eprintln!("shutdown with 300 idle connections and a stalled reader took {took:?}");
    assert!(took < Duration::from_secs(2), "{took:?}");
    // The port is free at once. (That no thread is left is checked in
    // http_soak.rs, where no other test runs beside.)
    drop(TcpListener::bind(addr).expect("the port is free after shutdown"));
    drop(idle);
}
