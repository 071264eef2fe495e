//! A response and its encoder: what the routes answer with
//! ([`Response::ok`], [`Response::error`] and the builders), and the bytes
//! on the wire ([`Response::into_parts`], head and body apart, or
//! [`Response::into_bytes`] in one buffer: status line, `Content-Length`,
//! `Connection: close`, `X-Content-Type-Options: nosniff`, the fields, the
//! body).
//!
//! It owns the wire format of what the server sends, and nothing else: it
//! touches no socket and no connection state (`conn.rs` sends the bytes),
//! and it never copies anything from a request into a refusal.

use std::io::Write;

/// A response: status, extra header fields, body. `Content-Length` and
/// `Connection: close` are added when it is sent.
#[derive(Debug)]
pub(crate) struct Response {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// A 200 with `body` of `content_type`.
    pub fn ok(content_type: &str, body: Vec<u8>) -> Response {
        Response {
            status: 200,
            headers: vec![("Content-Type", content_type.to_string())],
            body,
        }
    }

    /// Adds a header field.
    pub fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Response {
        self.headers.push((name, value.into()));
        self
    }

    /// Replaces the body with a fixed text (never anything from the
    /// request).
    pub fn with_body(mut self, body: &'static str) -> Response {
        self.body = body.as_bytes().to_vec();
        self
    }

    /// Sets the status.
    pub fn with_status(mut self, status: u16) -> Response {
        self.status = status;
        self
    }

    /// A refusal with a short fixed body (never anything from the request).
    pub fn error(status: u16) -> Response {
        let body = match status {
            400 => "bad request\n",
            401 => "unauthorized: send Authorization: Bearer <token>\n",
            404 => "not found\n",
            405 => "method not allowed: only GET and HEAD\n",
            408 => "request timeout: the request head took too long\n",
            414 => "request line too long\n",
            431 => "request header fields too large\n",
            503 => "busy: try again\n",
            _ => "internal error\n",
        };
        let mut response = Response {
            status,
            headers: vec![("Content-Type", "text/plain; charset=utf-8".into())],
            body: body.as_bytes().to_vec(),
        };
        match status {
            401 => response
                .headers
                .push(("WWW-Authenticate", "Bearer realm=\"allocmeter\"".into())),
            405 => response.headers.push(("Allow", "GET, HEAD".into())),
            503 => response.headers.push(("Retry-After", "1".into())),
            _ => {}
        }
        response
    }

    /// The bytes on the wire: status line, header fields with
    /// `Content-Length` and `Connection: close`, and the body unless
    /// `head_only`, in one buffer. For small responses; a rendered one is
    /// sent as [`Response::into_parts`], without copying its body.
    pub fn into_bytes(self, head_only: bool) -> Vec<u8> {
        let (mut head, body) = self.into_parts(head_only);
        head.extend_from_slice(&body);
        head
    }

    /// The bytes on the wire as two buffers: the head (status line and
    /// header fields, with `Content-Length` and `Connection: close`), and
    /// the body, moved and not copied (empty if `head_only`).
    pub fn into_parts(self, head_only: bool) -> (Vec<u8>, Vec<u8>) {
        let mut head = Vec::with_capacity(256);
        // Writing to a Vec cannot fail.
        let _ = write!(
            head,
            "HTTP/1.1 {} {}\r\nContent-Length: {}\r\nConnection: close\r\nX-Content-Type-Options: nosniff\r\n",
            self.status,
            reason(self.status),
            self.body.len()
        );
        for (name, value) in &self.headers {
            if *name == "X-Content-Type-Options" {
                continue; // sent on every response already
            }
            // Values are the exporter's own; strip line breaks regardless.
            let value: String = value.chars().filter(|c| !c.is_control()).collect();
            let _ = write!(head, "{name}: {value}\r\n");
        }
        head.extend_from_slice(b"\r\n");
        let body = if head_only { Vec::new() } else { self.body };
        (head, body)
    }
}

/// The reason phrase of a status.
fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        414 => "URI Too Long",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_has_the_get_length_and_no_body() {
        let bytes = Response::ok("text/plain", b"hello".to_vec()).into_bytes(true);
        let text = String::from_utf8(bytes).unwrap();
        assert!(text.contains("Content-Length: 5\r\n"), "{text}");
        assert!(text.ends_with("\r\n\r\n"), "{text}");
    }
}
