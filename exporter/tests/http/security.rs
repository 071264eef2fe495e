//! Security of the HTTP endpoint against readers without the right: loopback
//! by default, the bearer token on every endpoint (and `?token=` on the page
//! only), 401s logged without the token, `expose_profiles(false)`, and no
//! response echoing request input. Real sockets, a real exporter on
//! 127.0.0.1:0.

use std::net::SocketAddr;
use std::time::Duration;

use allocmeter_exporter::{DEFAULT_BIND, Exporter, StartError};
use allocmeter_test_support::exporter::start_default_exporter;
use allocmeter_test_support::http::{
    Response, checked_get, checked_request, exchange, parse_response,
};
use allocmeter_test_support::watchdog::watchdog;

const TOKEN: &str = "s3cret-Token_42";

/// Every endpoint that serves data.
const ENDPOINTS: &[&str] = &[
    "/metrics",
    "/debug/pprof/heap",
    "/debug/pprof/allocs",
    "/api/snapshot",
    "/api/stats",
    "/api/history",
    "/api/sites",
    "/api/hints",
    "/api/spikes",
    "/",
    "/index.html",
];

fn with_token() -> Exporter {
    Exporter::builder()
        .bind("127.0.0.1:0")
        .auth_token(TOKEN)
        .start()
        .unwrap()
}

fn bearer(addr: SocketAddr, path: &str, value: &str) -> Response {
    checked_request(addr, "GET", path, &format!("Authorization: {value}\r\n"))
}

/// Allocates and frees `bytes` in 64 MiB blocks that are never touched: the
/// counters see every byte in about a millisecond, without page faults.
fn burst(bytes: usize) {
    for _ in 0..bytes / (64 << 20) {
        let block: Vec<u8> = Vec::with_capacity(64 << 20);
        std::hint::black_box(&block);
    }
}

fn assert_401(reply: &Response, what: &str) {
    assert_eq!(reply.status, 401, "{what}");
    assert_eq!(
        reply.header("www-authenticate"),
        Some("Bearer realm=\"allocmeter\""),
        "{what}"
    );
    assert!(!reply.text().contains(TOKEN), "{what}");
}

#[test]
fn the_default_bind_address_is_loopback() {
    let addr: SocketAddr = DEFAULT_BIND.parse().unwrap();
    assert!(addr.ip().is_loopback());
    let exporter = Exporter::builder().bind("127.0.0.1:0").start().unwrap();
    assert!(exporter.local_addr().ip().is_loopback());
}

#[test]
fn a_token_guards_every_endpoint() {
    let _dog = watchdog("token test", Duration::from_secs(120));
    let exporter = with_token();
    let addr = exporter.local_addr();
    let same_length_wrong = "s3cret-Token_43";
    assert_eq!(same_length_wrong.len(), TOKEN.len());
    for &path in ENDPOINTS {
        assert_401(&checked_get(addr, path), &format!("{path} without a token"));
        for wrong in [
            format!("Bearer {same_length_wrong}"),
            format!("Bearer {}", &TOKEN[..TOKEN.len() - 1]),
            format!("Bearer {TOKEN}x"),
            format!("Bearer x{TOKEN}"),
            "Bearer ".to_string(),
            format!("Basic {TOKEN}"),
            TOKEN.to_string(),
        ] {
            assert_401(
                &bearer(addr, path, &wrong),
                &format!("{path} with {wrong:?}"),
            );
        }
        let ok = bearer(addr, path, &format!("Bearer {TOKEN}"));
        assert_eq!(ok.status, 200, "{path} with the token: {}", ok.text());
        // The scheme is case-insensitive.
        assert_eq!(bearer(addr, path, &format!("bearer {TOKEN}")).status, 200);
        // HEAD is guarded alike.
        assert_eq!(
            checked_request(addr, "HEAD", path, "").status,
            401,
            "HEAD {path}"
        );
    }
    // ?token= is accepted on the page only.
    assert_eq!(checked_get(addr, &format!("/?token={TOKEN}")).status, 200);
    assert_eq!(
        checked_get(addr, &format!("/index.html?token={TOKEN}")).status,
        200
    );
    assert_eq!(
        checked_get(addr, &format!("/?x=1&token={TOKEN}")).status,
        200
    );
    let encoded = TOKEN.replace('_', "%5F");
    assert_eq!(
        checked_get(addr, &format!("/?token={encoded}")).status,
        200,
        "percent-encoded"
    );
    assert_401(
        &checked_get(addr, &format!("/?token={same_length_wrong}")),
        "wrong ?token=",
    );
    for path in [
        "/metrics",
        "/api/snapshot",
        "/api/sites",
        "/debug/pprof/heap",
        "/api/spikes",
    ] {
        assert_401(
            &checked_get(addr, &format!("{path}?token={TOKEN}")),
            &format!("{path}?token="),
        );
    }
    // The page's static files hold no data and are served to anyone: a
    // browser loads them from tags that cannot carry a token.
    assert_eq!(checked_get(addr, "/app.js").status, 200);
    assert_eq!(checked_get(addr, "/style.css").status, 200);
    // Unknown paths: 401 without the token (nothing is told), 404 with it.
    assert_401(&checked_get(addr, "/secret-path"), "unknown path");
    assert_eq!(
        bearer(addr, "/secret-path", &format!("Bearer {TOKEN}")).status,
        404
    );
    // Two Authorization fields are not a token.
    let two = checked_request(
        addr,
        "GET",
        "/metrics",
        &format!("Authorization: Bearer {TOKEN}\r\nAuthorization: Bearer {TOKEN}\r\n"),
    );
    assert_eq!(two.status, 401);
    // The page's URL may hold the token: it tells the browser not to pass
    // it on as a referrer.
    let page = checked_get(addr, &format!("/?token={TOKEN}"));
    assert_eq!(page.header("referrer-policy"), Some("no-referrer"));
}

#[test]
fn unusable_tokens_are_refused_at_start_without_showing_them() {
    for bad in [
        "",
        "with space",
        "line\nbreak",
        "tab\there",
        "ünïcode",
        &"x".repeat(1025),
    ] {
        let err = Exporter::builder()
            .bind("127.0.0.1:0")
            .auth_token(bad)
            .start()
            .expect_err("an unusable token");
        assert!(
            matches!(err, StartError::InvalidToken { .. }),
            "{bad:?}: {err:?}"
        );
        let message = err.to_string();
        assert!(message.starts_with("invalid auth token: "), "{message}");
        if !bad.is_empty() {
            assert!(!message.contains(bad), "{message}");
        }
    }
}

const CHILD: &str = "ALLOCMETER_TEST_401_LOG_CHILD";

/// Runs in a child process (this test binary again), whose stderr the
/// parent reads.
fn unauthorized_requests_in_a_child() {
    let exporter = with_token();
    let addr = exporter.local_addr();
    assert_eq!(checked_get(addr, "/metrics").status, 401);
    assert_eq!(
        bearer(addr, "/api/snapshot", "Bearer WRONG-GUESS-456").status,
        401
    );
    assert_eq!(checked_get(addr, "/?token=WRONG-GUESS-789&x=1").status, 401);
    for _ in 0..30 {
        assert_eq!(
            bearer(addr, "/api/history?q=1", "Bearer WRONG-GUESS-000").status,
            401
        );
    }
    assert_eq!(
        bearer(addr, "/metrics", &format!("Bearer {TOKEN}")).status,
        200
    );
}

#[test]
fn unauthorized_requests_are_logged_without_the_token() {
    if std::env::var_os(CHILD).is_some() {
        unauthorized_requests_in_a_child();
        return;
    }
    let _dog = watchdog("401 log test", Duration::from_secs(120));
    let output = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            // Its name in this binary: the module, then the function.
            "security::unauthorized_requests_are_logged_without_the_token",
            "--test-threads=1",
            "--nocapture",
        ])
        .env(CHILD, "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "child failed: {stderr}");
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("401 unauthorized from 127.0.0.1:"))
        .collect();
    eprintln!(
        "401 log: {} lines, the first: {:?}",
        lines.len(),
        lines.first()
    );
    // The first three, each with its path and without its query string.
    assert!(lines[0].ends_with("for \"/metrics\""), "{}", lines[0]);
    assert!(lines[1].ends_with("for \"/api/snapshot\""), "{}", lines[1]);
    assert!(lines[2].ends_with("for \"/\""), "{}", lines[2]);
    assert!(lines[3].ends_with("for \"/api/history\""), "{}", lines[3]);
    // At most 10 lines per 10 s, whatever a client sends.
    assert_eq!(lines.len(), 10, "{stderr}");
    // Neither the guesses nor the token nor any query string.
    for secret in ["WRONG-GUESS", TOKEN, "token=", "q=1", "x=1"] {
        assert!(!stderr.contains(secret), "{secret} in the log: {stderr}");
    }
}

#[test]
fn expose_profiles_false_hides_call_sites() {
    let _dog = watchdog("expose_profiles test", Duration::from_secs(120));
    for token in [None, Some(TOKEN)] {
        let mut builder = Exporter::builder()
            .bind("127.0.0.1:0")
            .expose_profiles(false)
            .spike_min_rate(0)
            .interval(Duration::from_millis(50));
        if let Some(t) = token {
            builder = builder.auth_token(t);
        }
        let exporter = builder.start().unwrap();
        let addr = exporter.local_addr();
        let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
        for path in [
            "/debug/pprof/heap",
            "/debug/pprof/allocs",
            "/api/sites",
            "/api/sites?top=5",
            "/api/hints",
        ] {
            let reply = checked_request(addr, "GET", path, &auth);
            assert_eq!(reply.status, 404, "{path}");
            assert_eq!(reply.text(), "not found\n");
        }
        // Without the token these are still 401, not 404.
        if token.is_some() {
            assert_eq!(checked_get(addr, "/debug/pprof/heap").status, 401);
        }
        for path in [
            "/metrics",
            "/api/snapshot",
            "/api/history",
            "/api/spikes",
            "/",
        ] {
            assert_eq!(
                checked_request(addr, "GET", path, &auth).status,
                200,
                "{path}"
            );
        }
        let snapshot: serde_json::Value =
            serde_json::from_slice(&checked_request(addr, "GET", "/api/snapshot", &auth).body)
                .unwrap();
        assert_eq!(snapshot["profiles_exposed"], false);
        // Spikes are listed without their call sites: allocate bursts until
        // one is listed. The other tests of this binary run in the same
        // process and allocate meanwhile, raising the baseline (a single
        // 64 MiB burst was once not 4x it), so each burst is 4 GiB of
        // untouched blocks, a few milliseconds against 50 ms intervals, and
        // a busy baseline gets up to 20 tries.
        let mut spikes = serde_json::Value::Null;
        let mut bursts = 0;
        while bursts < 20 {
            std::thread::sleep(Duration::from_millis(300));
            burst(4 << 30);
            bursts += 1;
            std::thread::sleep(Duration::from_millis(200));
            spikes =
                serde_json::from_slice(&checked_request(addr, "GET", "/api/spikes", &auth).body)
                    .unwrap();
            if !spikes["spikes"].as_array().unwrap().is_empty() {
                break;
            }
        }
        assert_eq!(spikes["sites_exposed"], false);
        eprintln!(
            "expose_profiles(false): {} spikes listed after {bursts} bursts, none with call sites",
            spikes["spikes"].as_array().unwrap().len()
        );
        assert!(!spikes["spikes"].as_array().unwrap().is_empty(), "{spikes}");
        for spike in spikes["spikes"].as_array().unwrap() {
            assert_eq!(spike["top_sites"].as_array().unwrap().len(), 0);
        }
    }
    // And on by default.
    let (_exporter, addr) = start_default_exporter();
    assert_eq!(checked_get(addr, "/api/sites").status, 200);
    assert_eq!(checked_get(addr, "/api/hints").status, 200);
    let snapshot: serde_json::Value =
        serde_json::from_slice(&checked_get(addr, "/api/snapshot").body).unwrap();
    assert_eq!(snapshot["profiles_exposed"], true);
}

#[test]
fn no_response_echoes_request_input() {
    let _dog = watchdog("echo test", Duration::from_secs(120));
    let open = Exporter::builder().bind("127.0.0.1:0").start().unwrap();
    let guarded = with_token();
    let evil = [
        "/<script>alert(1)</script>",
        "/api/<script>alert(1)</script>",
        "/api/sites?top=<script>alert(1)</script>",
        "/api/sites?by=<script>alert(1)</script>",
        "/api/sites?<script>alert(1)</script>=1",
        "/api/history?since_ms=<script>alert(1)</script>",
        "/api/history?<script>alert(1)</script>",
        "/metrics?<script>alert(1)</script>",
        "/?<script>alert(1)</script>",
        "/%3Cscript%3Ealert(1)%3C/script%3E",
    ];
    for addr in [open.local_addr(), guarded.local_addr()] {
        for path in evil {
            for extra in ["", "X-Evil: <script>alert(2)</script>\r\n"] {
                let reply = checked_request(addr, "GET", path, extra);
                assert!(
                    [200, 400, 401, 404].contains(&reply.status),
                    "{path}: {}",
                    reply.status
                );
                let body = reply.text();
                for marker in ["<script>alert", "alert(1)", "alert(2)", "%3Cscript"] {
                    assert!(
                        !body.contains(marker),
                        "{path} ({}) echoed: {body}",
                        reply.status
                    );
                }
                assert_eq!(reply.header("x-content-type-options"), Some("nosniff"));
                if reply.status >= 400 {
                    let content_type = reply.header("content-type").unwrap();
                    assert!(
                        content_type.starts_with("text/plain")
                            || content_type == "application/json",
                        "{content_type}"
                    );
                }
            }
        }
        // Refusals by the parser do not echo either.
        for raw in [
            "<script>alert(1)</script> / HTTP/1.1\r\n\r\n",
            "GET /<script>alert(1)</script> HTTP/9\r\n\r\n",
            "GET / HTTP/1.1\r\n<script>alert(1)</script>\r\n\r\n",
        ] {
            let got = exchange(addr, raw.as_bytes(), Duration::from_secs(10));
            let reply = parse_response(&got.received).expect("a response");
            assert_eq!(reply.status, 400, "{raw:?}");
            assert!(!reply.text().contains("alert"), "{raw:?}");
        }
    }
}

#[test]
fn a_logged_builder_does_not_show_the_token() {
    let builder = Exporter::builder().auth_token(TOKEN);
    let shown = format!("{builder:?}");
    assert!(!shown.contains(TOKEN), "{shown}");
    assert!(shown.contains("redacted"), "{shown}");
}
