//! Fuzzing the whole request path over real sockets with hostile input:
//! arbitrary bytes, mutated requests and random well-formed ones go to a
//! live exporter, which must answer each with a known status or close,
//! never with a server error, and must keep serving with the same threads.
//! `PROPTEST_CASES` sets the number of cases (256 by default;
//! `.ci/fuzz.sh` runs more).
//!
//! Its own binary, not a module of `tests/http/`: "the same threads" is
//! counted over the whole process, so no other test may start or stop an
//! exporter (and its threads) while this one runs.

use std::alloc::System;
use std::io::Write;
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::OnceLock;
use std::time::Duration;

use allocmeter::Instrumented;
use allocmeter_exporter::Exporter;
use allocmeter_test_support::http::{checked_get, parse_response, read_until_end};
use allocmeter_test_support::process::threads;
use proptest::prelude::*;

#[global_allocator]
static GLOBAL: Instrumented<System> = Instrumented::new(System);

fn server() -> SocketAddr {
    static EXPORTER: OnceLock<Exporter> = OnceLock::new();
    EXPORTER
        .get_or_init(|| {
            Exporter::builder()
                .bind("127.0.0.1:0")
                .auth_token("fuzz-token")
                .start()
                .unwrap()
        })
        .local_addr()
}

/// Sends `bytes`, ends the request side, and reads what comes back.
fn send(addr: SocketAddr, bytes: &[u8]) -> Vec<u8> {
    let mut stream = TcpStream::connect(addr).unwrap();
    // The server may refuse and close before taking everything.
    let _ = stream.write_all(bytes);
    let _ = stream.shutdown(Shutdown::Write);
    let got = read_until_end(stream, Duration::from_secs(10));
    assert!(got.ended, "the server closed the connection");
    got.received
}

fn path() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("/metrics".to_string()),
        Just("/api/snapshot".to_string()),
        Just("/api/sites".to_string()),
        Just("/debug/pprof/heap".to_string()),
        Just("/".to_string()),
        "/[!-~]{0,30}",
        "/api/(sites|history)\\?[!-~]{0,30}",
    ]
}

fn request() -> impl Strategy<Value = Vec<u8>> {
    (
        prop_oneof![
            Just("GET".to_string()),
            Just("HEAD".to_string()),
            Just("POST".to_string()),
            "[A-Z]{1,8}"
        ],
        path(),
        prop_oneof![
            Just("HTTP/1.1".to_string()),
            Just("HTTP/1.0".to_string()),
            "HTTP/[0-9]\\.[0-9]"
        ],
        proptest::collection::vec(("[!-~&&[^:]]{1,16}", "[ -~]{0,40}"), 0..6),
        prop_oneof![
            Just(None),
            Just(Some("Bearer fuzz-token")),
            Just(Some("Bearer nope"))
        ],
    )
        .prop_map(|(method, path, version, fields, auth)| {
            let mut raw = format!("{method} {path} {version}\r\n");
            for (name, value) in fields {
                raw.push_str(&format!("{name}: {value}\r\n"));
            }
            if let Some(a) = auth {
                raw.push_str(&format!("Authorization: {a}\r\n"));
            }
            raw.push_str("\r\n");
            raw.into_bytes()
        })
}

fn input() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..4096),
        request(),
        (
            request(),
            proptest::collection::vec((any::<usize>(), any::<u8>()), 1..6)
        )
            .prop_map(|(mut raw, edits)| {
                for (at, byte) in edits {
                    let at = at % raw.len();
                    raw[at] = byte;
                }
                raw
            }),
    ]
}

proptest! {
    #[test]
    fn any_input_gets_a_known_answer_or_a_close(bytes in input()) {
        let addr = server();
        let received = send(addr, &bytes);
        if received.is_empty() {
            // Closed without an answer: an incomplete head at end of input.
            return Ok(());
        }
        let reply = parse_response(&received);
        prop_assert!(reply.is_some(), "not HTTP: {:?}", String::from_utf8_lossy(&received));
        let reply = reply.unwrap();
        prop_assert!(
            [200, 400, 401, 404, 405, 414, 431].contains(&reply.status),
            "status {} for {:?}", reply.status, String::from_utf8_lossy(&bytes)
        );
        prop_assert_eq!(reply.header("connection"), Some("close"));
    }
}

#[test]
fn the_server_serves_on_after_the_fuzzing() {
    // Runs beside the property test in this binary; repeat to be after it
    // at least once.
    let addr = server();
    let before = threads();
    for _ in 0..20 {
        let bytes: Vec<u8> = (0..512u32).map(|i| (i * 31 % 251) as u8).collect();
        let _ = send(addr, &bytes);
        let reply = checked_get(addr, "/app.js");
        assert_eq!(reply.status, 200);
    }
    assert!(threads() <= before + 1, "no thread per connection");
}
