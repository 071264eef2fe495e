//! Parsing a request head (request line and header fields) under fixed
//! limits, without allocating more than the head itself.
//!
//! The server reads bytes into a buffer and calls [`parse_head`] after each
//! read: the answer is "need more", a request, or the status to refuse it
//! with. Nothing here echoes input back: a refusal is a status code, and the
//! server answers it with a fixed body.
//!
//! The decoder, and only that: it touches no socket (the connection in
//! `conn.rs` reads the bytes and feeds them here) and defines no limit (the
//! head limits are in [`super::limits`]).

use super::limits::{MAX_HEAD, MAX_HEADERS, MAX_REQUEST_LINE};

/// The request methods the exporter knows; every other valid method token
/// gets 405.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// `GET`.
    Get,
    /// `HEAD`: the GET response's head, without its body.
    Head,
}

/// A complete, valid request head.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    /// `GET` or `HEAD`.
    pub method: Method,
    /// The request target's path, up to any `?`: visible ASCII, starts with `/`.
    pub path: String,
    /// The query string after `?` (empty without one).
    pub query: String,
    /// The value of the `Authorization` field, if the request had exactly one.
    pub authorization: Option<String>,
    /// Bytes of the head, including the blank line that ends it.
    pub head_len: usize,
}

/// What [`parse_head`] made of the bytes so far.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Parsed {
    /// The head is not complete yet and within the limits: read more.
    Incomplete,
    /// A complete request.
    Request(Request),
    /// Refuse the request with this status (400, 405, 414 or 431).
    Refuse(u16),
}

/// Parses a request head from the start of `buf`.
///
/// Line endings may be CRLF or a bare LF (RFC 9112 §2.2 lets a recipient
/// accept the latter); a bare CR elsewhere is an error. The request line is
/// `METHOD SP TARGET SP HTTP/1.0|HTTP/1.1`; the target must be in origin form
/// (`/path[?query]`) of visible ASCII. Header fields are `name: value` with a
/// token name; obsolete line folding is refused. Bytes after the head (a
/// body, a pipelined request) are ignored: every response closes the
/// connection.
pub fn parse_head(buf: &[u8]) -> Parsed {
    // The request line first, so that an over-long one is told apart from
    // an over-large head.
    let Some(line_end) = buf.iter().position(|&b| b == b'\n') else {
        if buf.len() > MAX_REQUEST_LINE + 1 {
            return Parsed::Refuse(414);
        }
        return early_garbage(buf);
    };
    let request_line = trim_cr(&buf[..line_end]);
    if request_line.len() > MAX_REQUEST_LINE {
        return Parsed::Refuse(414);
    }
    // A bad request line is refused before the rest of the head arrives.
    let Some((method, target)) = request_line_parts(request_line) else {
        return Parsed::Refuse(400);
    };
    let method = match method {
        b"GET" => Method::Get,
        b"HEAD" => Method::Head,
        _ => return Parsed::Refuse(405),
    };
    // Find the blank line that ends the head.
    let mut at = line_end + 1;
    let mut fields: usize = 0;
    let mut authorization: Option<&[u8]> = None;
    let mut authorizations = 0;
    let head_len = loop {
        if at > MAX_HEAD {
            return Parsed::Refuse(431);
        }
        let Some(rel) = buf[at..].iter().position(|&b| b == b'\n') else {
            if buf.len() > MAX_HEAD {
                return Parsed::Refuse(431);
            }
            // An incomplete field line can already be wrong.
            let partial = &buf[at..];
            if partial.first().is_some_and(|&b| b == b' ' || b == b'\t') {
                return Parsed::Refuse(400);
            }
            if partial.iter().any(|&b| b == 0 || b == b'\n') {
                return Parsed::Refuse(400);
            }
            return Parsed::Incomplete;
        };
        let end = at + rel;
        if end + 1 > MAX_HEAD {
            return Parsed::Refuse(431);
        }
        let line = trim_cr(&buf[at..end]);
        at = end + 1;
        if line.is_empty() {
            break at;
        }
        fields += 1;
        if fields > MAX_HEADERS {
            return Parsed::Refuse(431);
        }
        let Some((name, value)) = field(line) else {
            return Parsed::Refuse(400);
        };
        if name.eq_ignore_ascii_case(b"authorization") {
            authorizations += 1;
            authorization = Some(value);
        }
    };
    // Visible ASCII only (checked by request_line_parts), so this is UTF-8.
    let target = std::str::from_utf8(target).expect("visible ASCII is UTF-8");
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let authorization = match (authorizations, authorization) {
        (1, Some(v)) => Some(String::from_utf8_lossy(v).into_owned()),
        _ => None,
    };
    Parsed::Request(Request {
        method,
        path: path.to_string(),
        query: query.to_string(),
        authorization,
        head_len,
    })
}

/// Bytes that cannot start any valid request line fail at once instead of
/// waiting for a line end: a request line starts with a method token.
fn early_garbage(buf: &[u8]) -> Parsed {
    let method_len = buf.iter().take_while(|&&b| is_tchar(b)).count();
    match buf.get(method_len) {
        None => Parsed::Incomplete,
        Some(b' ') if method_len > 0 => {
            // The target so far must be visible ASCII.
            let rest = &buf[method_len + 1..];
            if rest.iter().all(|&b| is_vchar(b) || b == b' ' || b == b'\r') {
                Parsed::Incomplete
            } else {
                Parsed::Refuse(400)
            }
        }
        Some(_) => Parsed::Refuse(400),
    }
}

fn trim_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// `METHOD SP TARGET SP VERSION` → (method, target), if well formed.
fn request_line_parts(line: &[u8]) -> Option<(&[u8], &[u8])> {
    let mut parts = line.split(|&b| b == b' ');
    let method = parts.next()?;
    let target = parts.next()?;
    let version = parts.next()?;
    if parts.next().is_some() {
        return None;
    }
    if method.is_empty() || !method.iter().all(|&b| is_tchar(b)) {
        return None;
    }
    if target.first() != Some(&b'/') || !target.iter().all(|&b| is_vchar(b)) {
        return None;
    }
    if version != b"HTTP/1.1" && version != b"HTTP/1.0" {
        return None;
    }
    Some((method, target))
}

/// `name: value` → (name, value without surrounding blanks), if well formed.
fn field(line: &[u8]) -> Option<(&[u8], &[u8])> {
    let colon = line.iter().position(|&b| b == b':')?;
    let (name, value) = (&line[..colon], &line[colon + 1..]);
    if name.is_empty() || !name.iter().all(|&b| is_tchar(b)) {
        return None; // also refuses obsolete folding (a leading blank)
    }
    // Field values: visible ASCII, blanks and obs-text; no controls.
    if !value
        .iter()
        .all(|&b| b == b'\t' || b == b' ' || is_vchar(b) || b >= 0x80)
    {
        return None;
    }
    let start = value
        .iter()
        .position(|&b| b != b' ' && b != b'\t')
        .unwrap_or(value.len());
    let end = value
        .iter()
        .rposition(|&b| b != b' ' && b != b'\t')
        .map_or(start, |p| p + 1);
    Some((name, &value[start..end]))
}

/// RFC 9110 `tchar`.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Visible ASCII, `%x21-7E`.
fn is_vchar(b: u8) -> bool {
    (0x21..=0x7e).contains(&b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(raw: &str) -> Request {
        match parse_head(raw.as_bytes()) {
            Parsed::Request(r) => r,
            other => panic!("{raw:?}: {other:?}"),
        }
    }

    #[test]
    fn a_plain_get_and_head() {
        let r = request("GET /metrics?x=1 HTTP/1.1\r\nHost: a\r\n\r\n");
        assert_eq!(r.method, Method::Get);
        assert_eq!(r.path, "/metrics");
        assert_eq!(r.query, "x=1");
        assert_eq!(r.authorization, None);
        assert_eq!(r.head_len, 38);
        let head = "HEAD / HTTP/1.0\nAuthorization:  Bearer abc \n\n";
        let r = request(&format!("{head}rest"));
        assert_eq!(r.method, Method::Head);
        assert_eq!(r.authorization.as_deref(), Some("Bearer abc"));
        assert_eq!(r.head_len, head.len());
    }

    #[test]
    fn incomplete_heads_ask_for_more() {
        for raw in [
            "",
            "G",
            "GET",
            "GET /",
            "GET / HTTP/1.1\r\n",
            "GET / HTTP/1.1\r\nHost: x",
        ] {
            assert_eq!(parse_head(raw.as_bytes()), Parsed::Incomplete, "{raw:?}");
        }
    }

    #[test]
    fn refusals() {
        let cases: &[(&[u8], u16)] = &[
            (b"POST / HTTP/1.1\r\n\r\n", 405),
            (b"DELETE /x HTTP/1.0\r\n\r\n", 405),
            (b"GET / HTTP/9\r\n\r\n", 400),
            (b"GET / HTTP/2.0\r\n\r\n", 400),
            (b"GET http://x/ HTTP/1.1\r\n\r\n", 400),
            (b"GET  / HTTP/1.1\r\n\r\n", 400),
            (b"GET / HTTP/1.1 x\r\n\r\n", 400),
            (b"\x16\x03\x01\x02\x00", 400),
            (b"GET /\x00 HTTP/1.1", 400),
            (b"GET / HTTP/1.1\r\n folded\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\nno colon\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\nX: a\x01b\r\n\r\n", 400),
            (b"\r\n\r\n", 400),
            (b"PUT / HTTP/1.1\r\n", 405),
            (b"GET / HTTP/7.7\r\nHost: incomplete", 400),
        ];
        for (raw, status) in cases {
            assert_eq!(
                parse_head(raw),
                Parsed::Refuse(*status),
                "{:?}",
                String::from_utf8_lossy(raw)
            );
        }
    }

    #[test]
    fn limits() {
        let long_line = format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(MAX_REQUEST_LINE));
        assert_eq!(parse_head(long_line.as_bytes()), Parsed::Refuse(414));
        let no_end = format!("GET /{}", "a".repeat(MAX_REQUEST_LINE + 10));
        assert_eq!(parse_head(no_end.as_bytes()), Parsed::Refuse(414));
        let big = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(MAX_HEAD));
        assert_eq!(parse_head(big.as_bytes()), Parsed::Refuse(431));
        let never_ending = format!("GET / HTTP/1.1\r\nX: {}", "a".repeat(MAX_HEAD));
        assert_eq!(parse_head(never_ending.as_bytes()), Parsed::Refuse(431));
        let many = format!(
            "GET / HTTP/1.1\r\n{}\r\n",
            "X: y\r\n".repeat(MAX_HEADERS + 1)
        );
        assert_eq!(parse_head(many.as_bytes()), Parsed::Refuse(431));
        let at_limit = format!("GET / HTTP/1.1\r\n{}\r\n", "X: y\r\n".repeat(MAX_HEADERS));
        assert!(matches!(
            parse_head(at_limit.as_bytes()),
            Parsed::Request(_)
        ));
    }

    #[test]
    fn two_authorization_fields_count_as_none() {
        let r = request("GET / HTTP/1.1\r\nAuthorization: a\r\nauthorization: b\r\n\r\n");
        assert_eq!(r.authorization, None);
    }
}
