//! A service that already serves `/metrics` from its own
//! `prometheus::Registry` adds allocmeter's metrics to it, without starting
//! allocmeter's HTTP server.
//!
//! ```text
//! cargo run --release --example registry -- [--bind ADDR] [--self-check]
//! ```
//!
//! The service here has one metric of its own, `shop_requests_total`, and
//! serves its registry with `tiny_http` (any HTTP stack works the same way:
//! gather the registry and encode it with `prometheus::TextEncoder`). It starts
//! allocmeter's exporter with `serve_http(false)`, which runs only the
//! aggregator (it keeps the history and drains the call-site samples), and
//! registers [`Exporter::collector`] in its own registry, with a constant
//! `service` label on every allocmeter series.
//!
//! It prints its metrics URL and serves until interrupted. With
//! `--self-check` it fetches its own `/metrics` once over TCP, checks that
//! the service's metric and allocmeter's labelled families are both there,
//! prints what it found and exits (status 1 if anything is missing): CI runs
//! it that way.

use std::alloc::System;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::ExitCode;
use std::time::Duration;

use allocmeter::Instrumented;
use allocmeter_exporter::Exporter;
use prometheus::{Encoder, IntCounter, Registry, TextEncoder};

#[global_allocator]
static GLOBAL: Instrumented<System> = Instrumented::new(System);

/// The families the self-check expects, each with the `service` label.
const EXPECTED: &[&str] = &[
    "allocmeter_alloc_bytes_total{service=\"shop\"}",
    "allocmeter_heap_live_bytes{service=\"shop\"}",
    "allocmeter_alloc_size_bytes_bucket{service=\"shop\",le=\"64\"}",
    "allocmeter_profile_samples_total{service=\"shop\"}",
];

fn main() -> ExitCode {
    let mut bind = "127.0.0.1:9465".to_string();
    let mut self_check = false;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--bind" => match args.next() {
                Some(v) => bind = v,
                None => return usage("--bind needs a value"),
            },
            "--self-check" => {
                self_check = true;
                bind = "127.0.0.1:0".into();
            }
            other => return usage(&format!("unknown argument {other:?}")),
        }
    }

    // The service's own registry and metric.
    let registry = Registry::new();
    let requests = IntCounter::new("shop_requests_total", "Requests the shop served.")
        .expect("a valid metric name");
    registry
        .register(Box::new(requests.clone()))
        .expect("registered once");

    // allocmeter: the aggregator only, and its collector in our registry.
    let exporter = match Exporter::builder()
        .serve_http(false)
        .const_label("service", "shop")
        .start()
    {
        Ok(exporter) => exporter,
        Err(e) => {
            eprintln!("error: allocmeter exporter: {e}");
            return ExitCode::FAILURE;
        }
    };
    registry
        .register(Box::new(exporter.collector()))
        .expect("allocmeter's families do not clash with the shop's");

    // The service's own endpoint.
    let server = match tiny_http::Server::http(&bind) {
        Ok(server) => server,
        Err(e) => {
            eprintln!("error: cannot listen on {bind}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let Some(addr) = server.server_addr().to_ip() else {
        eprintln!("error: {bind} is not an IP address");
        return ExitCode::FAILURE;
    };
    println!("http://{addr}/metrics");

    let serve = move || {
        for request in server.incoming_requests() {
            requests.inc();
            let response = if request.url() == "/metrics" {
                let mut body = Vec::new();
                let encoder = TextEncoder::new();
                match encoder.encode(&registry.gather(), &mut body) {
                    Ok(()) => tiny_http::Response::from_data(body).with_header(
                        tiny_http::Header::from_bytes("Content-Type", encoder.format_type())
                            .expect("a valid header"),
                    ),
                    Err(e) => tiny_http::Response::from_string(format!("encoding failed: {e}\n"))
                        .with_status_code(500),
                }
            } else {
                tiny_http::Response::from_string("not found\n").with_status_code(404)
            };
            let _ = request.respond(response);
        }
    };
    if !self_check {
        serve();
        return ExitCode::SUCCESS;
    }
    std::thread::spawn(serve);
    // Some allocation of our own, so the counters have something to show.
    let orders: Vec<String> = (0..10_000).map(|i| format!("order-{i}")).collect();
    std::hint::black_box(&orders);
    check(addr)
}

/// Fetches `/metrics` from `addr` and checks what it holds.
fn check(addr: SocketAddr) -> ExitCode {
    let body = match fetch(addr) {
        Ok(body) => body,
        Err(e) => {
            eprintln!("self-check: cannot fetch http://{addr}/metrics: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut missing = Vec::new();
    for expected in ["shop_requests_total"].iter().chain(EXPECTED) {
        match body.lines().find(|l| l.starts_with(expected)) {
            Some(line) => println!("found: {line}"),
            None => missing.push(*expected),
        }
    }
    let allocmeter_lines = body
        .lines()
        .filter(|l| l.starts_with("allocmeter_"))
        .count();
    let unlabelled = body
        .lines()
        .filter(|l| l.starts_with("allocmeter_") && !l.contains("service=\"shop\""))
        .count();
    println!("{allocmeter_lines} allocmeter sample lines, {unlabelled} without service=\"shop\"");
    if !missing.is_empty() || unlabelled > 0 || allocmeter_lines == 0 {
        eprintln!("self-check FAILED: missing {missing:?}, {unlabelled} unlabelled lines");
        return ExitCode::FAILURE;
    }
    println!("self-check passed");
    ExitCode::SUCCESS
}

/// A plain HTTP/1.0 GET over TCP, returning the body.
fn fetch(addr: SocketAddr) -> std::io::Result<String> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let (head, body) = response
        .split_once("\r\n\r\n")
        .ok_or_else(|| std::io::Error::other("no end of headers"))?;
    if !head.starts_with("HTTP/1.1 200") && !head.starts_with("HTTP/1.0 200") {
        return Err(std::io::Error::other(format!(
            "status line {:?}",
            head.lines().next()
        )));
    }
    Ok(body.to_string())
}

fn usage(error: &str) -> ExitCode {
    eprintln!("error: {error}");
    eprintln!("usage: registry [--bind ADDR] [--self-check]");
    ExitCode::from(2)
}
