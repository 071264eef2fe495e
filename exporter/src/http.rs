//! The HTTP thread: serves `/metrics` and the page at `/`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use prometheus::{Encoder, Registry, TextEncoder};
use tiny_http::{Header, Method, Request, Response, Server};

/// The Prometheus text exposition content type.
pub const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The status page, embedded at compile time.
const INDEX_HTML: &str = include_str!("../../dashboard/index.html");

fn header(name: &str, value: &str) -> Header {
    Header::from_bytes(name.as_bytes(), value.as_bytes())
        .expect("static header names and values are valid")
}

/// Serves requests until `stop` is set and the server is unblocked.
pub(crate) fn run(server: Arc<Server>, registry: Registry, stop: Arc<AtomicBool>) {
    while !stop.load(Ordering::Acquire) {
        match server.recv() {
            Ok(request) => handle(request, &registry),
            // `unblock()` (shutdown) or an accept error; the loop condition
            // decides whether to go on.
            Err(_) => continue,
        }
    }
}

/// Answers one request. Errors writing the response mean the client went away;
/// there is nobody to tell, so they are dropped.
fn handle(request: Request, registry: &Registry) {
    let response = route(request.method(), request.url(), registry);
    let _ = request.respond(response);
}

fn route(method: &Method, url: &str, registry: &Registry) -> Response<std::io::Cursor<Vec<u8>>> {
    if !matches!(method, Method::Get | Method::Head) {
        return Response::from_string("method not allowed: only GET and HEAD\n")
            .with_status_code(405)
            .with_header(header("Allow", "GET, HEAD"));
    }
    let path = url.split(['?', '#']).next().unwrap_or("");
    match path {
        "/metrics" => metrics(registry),
        "/" | "/index.html" => Response::from_string(INDEX_HTML)
            .with_header(header("Content-Type", "text/html; charset=utf-8")),
        _ => Response::from_string("not found\n").with_status_code(404),
    }
}

fn metrics(registry: &Registry) -> Response<std::io::Cursor<Vec<u8>>> {
    let families = registry.gather();
    let mut body = Vec::with_capacity(16 * 1024);
    match TextEncoder::new().encode(&families, &mut body) {
        Ok(()) => {
            Response::from_data(body).with_header(header("Content-Type", METRICS_CONTENT_TYPE))
        }
        Err(e) => {
            Response::from_string(format!("cannot encode metrics: {e}\n")).with_status_code(500)
        }
    }
}
