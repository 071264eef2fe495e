//! Property tests (proptest) of what hostile input reaches: the request
//! parser, the routes' query handling, and the pprof and JSON encoders.
//!
//! Each property runs `PROPTEST_CASES` cases (proptest's default, 256,
//! unless the variable says otherwise; `.ci/fuzz.sh` runs more).

use std::collections::HashSet;
use std::io::Read;
use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;

use crate::aggregate::Aggregator;
use crate::aggregate::detector::SpikeConfig;
use crate::http::limits::{MAX_HEAD, MAX_REQUEST_LINE};
use crate::http::request::{Method, Parsed, parse_head};
use crate::http::routes::{Endpoints, token_matches};
use crate::http::{Lane, Service};
use crate::render::Renderer;
use crate::render::pprof::{DefaultType, ProfileSite, gzipped, profile_message, proto};
use crate::render::sites::SiteReport;
use crate::symbols::{Frame, Location, Mapping};

/// A well-formed request head and what it must parse to.
#[derive(Clone, Debug)]
struct Wellformed {
    raw: Vec<u8>,
    method: Method,
    path: String,
    query: String,
    authorization: Option<String>,
}

fn wellformed() -> impl Strategy<Value = Wellformed> {
    (
        prop_oneof![Just(Method::Get), Just(Method::Head)],
        "/[!-~&&[^?]]{0,60}",
        proptest::option::of("[!-~]{0,40}"),
        proptest::collection::vec(("[A-Za-z0-9-]{1,20}", "[ -~]{0,60}"), 0..10),
        proptest::option::of("[!-~]{1,40}"),
        any::<bool>(),
        prop_oneof![Just("HTTP/1.1"), Just("HTTP/1.0")],
    )
        .prop_map(|(method, path, query, fields, token, crlf, version)| {
            let eol = if crlf { "\r\n" } else { "\n" };
            let m = match method {
                Method::Get => "GET",
                Method::Head => "HEAD",
            };
            let target = match &query {
                Some(q) => format!("{path}?{q}"),
                None => path.clone(),
            };
            let mut raw = format!("{m} {target} {version}{eol}");
            for (name, value) in &fields {
                if name.eq_ignore_ascii_case("authorization") {
                    continue;
                }
                raw.push_str(&format!("{name}: {value}{eol}"));
            }
            if let Some(t) = &token {
                raw.push_str(&format!("Authorization: Bearer {t}{eol}"));
            }
            raw.push_str(eol);
            Wellformed {
                raw: raw.into_bytes(),
                method,
                // The query is whatever follows the first `?`.
                path,
                query: query.unwrap_or_default(),
                authorization: token.map(|t| format!("Bearer {t}")),
            }
        })
}

/// The head of some well-formed request with bytes changed, inserted or
/// removed.
fn mutated() -> impl Strategy<Value = Vec<u8>> {
    (
        wellformed(),
        proptest::collection::vec((any::<usize>(), any::<u8>(), 0u8..3), 1..8),
    )
        .prop_map(|(w, edits)| {
            let mut raw = w.raw;
            for (at, byte, kind) in edits {
                let at = at % (raw.len() + 1);
                match kind {
                    0 if at < raw.len() => raw[at] = byte,
                    1 => raw.insert(at, byte),
                    _ if at < raw.len() => {
                        raw.remove(at);
                    }
                    _ => raw.push(byte),
                }
            }
            raw
        })
}

/// Every answer the parser may give: more, a request, or one of the four
/// refusals.
fn check_outcome(buf: &[u8], parsed: &Parsed) -> Result<(), TestCaseError> {
    match parsed {
        Parsed::Incomplete => {
            prop_assert!(buf.len() <= MAX_HEAD, "asks for more past MAX_HEAD");
        }
        Parsed::Refuse(status) => {
            prop_assert!([400, 405, 414, 431].contains(status), "status {status}");
        }
        Parsed::Request(r) => {
            prop_assert!(r.head_len <= buf.len() && r.head_len <= MAX_HEAD);
            prop_assert!(r.path.starts_with('/'));
            prop_assert!(r.path.len() + r.query.len() < MAX_REQUEST_LINE);
            prop_assert!(
                r.path
                    .bytes()
                    .chain(r.query.bytes())
                    .all(|b| (0x21..=0x7e).contains(&b))
            );
            // The head alone parses to the same request.
            prop_assert_eq!(&parse_head(&buf[..r.head_len]), parsed);
        }
    }
    Ok(())
}

proptest! {
    #[test]
    fn wellformed_heads_parse_exactly_and_every_prefix_asks_for_more(w in wellformed()) {
        match parse_head(&w.raw) {
            Parsed::Request(r) => {
                prop_assert_eq!(r.method, w.method);
                prop_assert_eq!(&r.path, &w.path);
                prop_assert_eq!(&r.query, &w.query);
                prop_assert_eq!(&r.authorization, &w.authorization);
                prop_assert_eq!(r.head_len, w.raw.len());
            }
            other => prop_assert!(false, "{:?}: {:?}", String::from_utf8_lossy(&w.raw), other),
        }
        // The server parses after every read: a head cut anywhere must not
        // be refused or taken as complete.
        for cut in 0..w.raw.len() {
            prop_assert_eq!(parse_head(&w.raw[..cut]), Parsed::Incomplete, "cut at {}", cut);
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic_and_get_a_known_answer(
        buf in proptest::collection::vec(any::<u8>(), 0..(MAX_HEAD + 2048)),
    ) {
        let parsed = parse_head(&buf);
        check_outcome(&buf, &parsed)?;
    }

    #[test]
    fn mutated_requests_never_panic_and_get_a_known_answer(buf in mutated()) {
        let parsed = parse_head(&buf);
        check_outcome(&buf, &parsed)?;
    }

    #[test]
    fn oversized_heads_are_refused_not_read_further(
        w in wellformed(),
        filler in "[a-z]{1,16}",
        line in any::<bool>(),
    ) {
        // Either an endless request line or an endless header field.
        let mut buf = if line {
            format!("GET /{}", filler.repeat(MAX_HEAD / filler.len() + 1)).into_bytes()
        } else {
            let head = w.raw.strip_suffix(b"\r\n").or_else(|| w.raw.strip_suffix(b"\n")).unwrap().to_vec();
            let mut b = head;
            b.extend_from_slice(b"X-Filler: ");
            b
        };
        while buf.len() <= MAX_HEAD {
            buf.extend_from_slice(filler.as_bytes());
        }
        let parsed = parse_head(&buf);
        prop_assert!(matches!(parsed, Parsed::Refuse(414 | 431)), "{:?}", parsed);
    }

    #[test]
    fn tokens_match_only_themselves(a in "[!-~]{1,64}", b in "[!-~]{0,64}") {
        prop_assert!(token_matches(a.as_bytes(), a.as_bytes()));
        prop_assert_eq!(token_matches(b.as_bytes(), a.as_bytes()), a == b);
        // A prefix or an extension of the token is not the token.
        prop_assert!(!token_matches(&a.as_bytes()[..a.len() - 1], a.as_bytes()));
        let longer = format!("{}x", a);
        prop_assert!(!token_matches(longer.as_bytes(), a.as_bytes()));
    }
}

/// Any string: ASCII, controls, markup, quotes, multi-byte characters.
fn any_text() -> impl Strategy<Value = String> {
    prop_oneof![
        ".{0,40}",
        "[<>\"'&\\\\\u{0}-\u{1f}]{0,20}",
        Just("<script>alert(1)</script>".to_string()),
        Just("\u{feff}\u{202e}💥".to_string()),
    ]
}

fn any_frame() -> impl Strategy<Value = Frame> {
    (
        any_text(),
        proptest::option::of(any_text()),
        proptest::option::of(any::<u32>()),
    )
        .prop_map(|(function, file, line)| Frame {
            function,
            file,
            line,
            system_name: None,
        })
}

fn gunzip(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(bytes)
        .read_to_end(&mut out)
        .expect("the profile is gzip");
    out
}

proptest! {
    #[test]
    fn heap_profiles_of_any_site_table_decode_and_stay_consistent(
        samples in proptest::collection::vec(
            (
                proptest::collection::vec(0u64..64, 0..12),
                any::<i64>(), any::<i64>(), any::<i64>(), any::<i64>(),
            ),
            0..40,
        ),
        symbols in proptest::collection::vec(proptest::collection::vec(any_frame(), 0..3), 64),
        mappings in proptest::collection::vec((0u64..8, 1u64..8, any::<u64>(), any_text(), "[0-9a-f]{0,40}"), 0..4),
        rate in any::<u64>(),
        time in any::<i64>(),
        allocs in any::<bool>(),
    ) {
        // Addresses 0x1000 apart, in 64 symbols; mappings over some of them.
        let samples: Vec<ProfileSite> = samples
            .into_iter()
            .map(|(stack, a, b, c, d)| ProfileSite {
                stack: stack.into_iter().map(|i| 0x1000 * (i + 1)).collect(),
                alloc_objects: a,
                alloc_space: b,
                inuse_objects: c,
                inuse_space: d,
            })
            .collect();
        let mappings: Vec<Mapping> = mappings
            .into_iter()
            .map(|(start, len, offset, filename, build_id)| Mapping {
                memory_start: 0x1000 * (start * 8 + 1),
                memory_limit: 0x1000 * (start * 8 + 1 + len),
                file_offset: offset,
                filename,
                build_id,
            })
            .collect();
        let mut resolve = |address: u64| Location {
            frames: symbols[(address / 0x1000 - 1) as usize % 64].clone().into(),
        };
        let default_type = if allocs { DefaultType::AllocSpace } else { DefaultType::InuseSpace };
        let gz = gzipped(&profile_message(
            &samples,
            rate,
            time,
            default_type,
            &mut resolve,
            &mappings,
        ));
        let profile = <proto::Profile as prost::Message>::decode(gunzip(&gz).as_slice())
            .expect("the profile decodes as profile.proto");

        let strings = &profile.string_table;
        prop_assert_eq!(strings.first().map(String::as_str), Some(""), "string 0 is empty");
        let string_ok = |i: i64| i >= 0 && (i as usize) < strings.len();
        let kept: Vec<&ProfileSite> = samples
            .iter()
            .filter(|s| [s.alloc_objects, s.alloc_space, s.inuse_objects, s.inuse_space] != [0; 4])
            .collect();
        prop_assert_eq!(profile.sample.len(), kept.len());
        let location_ids: HashSet<u64> = profile.location.iter().map(|l| l.id).collect();
        let function_ids: HashSet<u64> = profile.function.iter().map(|f| f.id).collect();
        let mapping_ids: HashSet<u64> = profile.mapping.iter().map(|m| m.id).collect();
        for (sample, input) in profile.sample.iter().zip(&kept) {
            prop_assert_eq!(
                &sample.value,
                &vec![input.alloc_objects, input.alloc_space, input.inuse_objects, input.inuse_space]
            );
            prop_assert_eq!(sample.location_id.len(), input.stack.len());
            for id in &sample.location_id {
                prop_assert!(location_ids.contains(id), "location {} missing", id);
            }
        }
        for location in &profile.location {
            prop_assert!(location.mapping_id == 0 || mapping_ids.contains(&location.mapping_id));
            for line in &location.line {
                prop_assert!(function_ids.contains(&line.function_id));
            }
        }
        let names: HashSet<&str> = symbols.iter().flatten().map(|f| f.function.as_str()).collect();
        for function in &profile.function {
            prop_assert!(string_ok(function.name) && string_ok(function.system_name) && string_ok(function.filename));
            // Every name is one a symbol had, byte for byte.
            prop_assert!(names.contains(strings[function.name as usize].as_str()));
        }
        for mapping in &profile.mapping {
            prop_assert!(string_ok(mapping.filename) && string_ok(mapping.build_id));
        }
        for t in &profile.sample_type {
            prop_assert!(string_ok(t.r#type) && string_ok(t.unit));
        }
        prop_assert!(string_ok(profile.default_sample_type));
    }

    #[test]
    fn site_reports_of_any_text_are_valid_json_that_reads_back(
        sites in proptest::collection::vec(
            (any_frame(), proptest::collection::vec(any_frame(), 0..4), any::<f64>(), any::<u64>()),
            0..10,
        ),
    ) {
        let reports: Vec<SiteReport> = sites
            .into_iter()
            .map(|(leaf, stack, value, samples)| SiteReport {
                function: leaf.function,
                file: leaf.file,
                line: leaf.line,
                alloc_objects: value,
                alloc_space: value,
                inuse_objects: value,
                inuse_space: value,
                samples,
                stack,
            })
            .collect();
        let body = serde_json::to_vec(&serde_json::json!({ "version": 1, "sites": reports }))
            .expect("serializes");
        // Markup in names stays inside JSON strings: no raw `<` can end a
        // script element if the JSON were ever inlined (the page never does).
        let parsed: serde_json::Value = serde_json::from_slice(&body).expect("parses");
        let back = parsed["sites"].as_array().expect("sites array");
        prop_assert_eq!(back.len(), reports.len());
        for (json, report) in back.iter().zip(&reports) {
            prop_assert_eq!(json["function"].as_str(), Some(report.function.as_str()));
            prop_assert_eq!(json["file"].as_str(), report.file.as_deref());
            prop_assert_eq!(json["line"].as_u64(), report.line.map(u64::from));
            prop_assert_eq!(json["samples"].as_u64(), Some(report.samples));
            // Non-finite estimates become null, never invalid JSON.
            if report.inuse_space.is_finite() {
                // serde_json's default float parsing may be off in the last
                // bit; the figures are estimates.
                let read = json["inuse_space"].as_f64().expect("a number");
                // (Relative, with a floor for subnormal numbers.)
                let tolerance = (report.inuse_space.abs() * 1e-15).max(1e-300);
                prop_assert!((read - report.inuse_space).abs() <= tolerance, "{} vs {}", read, report.inuse_space);
            } else {
                prop_assert!(json["inuse_space"].is_null());
            }
            for (frame, original) in json["stack"].as_array().unwrap().iter().zip(&report.stack) {
                prop_assert_eq!(frame["function"].as_str(), Some(original.function.as_str()));
            }
        }
    }
}

/// Endpoints over a fresh site table, as the server renders them.
fn endpoints() -> &'static Endpoints {
    static ENDPOINTS: std::sync::OnceLock<Endpoints> = std::sync::OnceLock::new();
    ENDPOINTS.get_or_init(|| {
        let aggregator = Arc::new(Aggregator::new(
            100,
            10,
            Duration::from_secs(1),
            SpikeConfig::default(),
            Duration::from_secs(120),
            Duration::from_secs(3600),
        ));
        aggregator.tick();
        let renderer = Renderer::new(aggregator, Arc::default(), 0);
        Endpoints::new(
            prometheus::Registry::new(),
            Arc::new(renderer),
            Some("t0ken".into()),
            true,
        )
    })
}

proptest! {
    #[test]
    fn no_response_echoes_the_request(
        path in "/[!-~&&[^?]]{0,40}",
        key in "[!-~&&[^&=?]]{0,12}",
        marker in "Q9[!-~&&[^&=?]]{4,30}",
        route in 0usize..6,
    ) {
        // The marker, somewhere in a request that is authorized (so that it
        // reaches the route), must be nowhere in the answer.
        let target = match route {
            0 => format!("{path}{marker}"),
            1 => format!("/api/sites?top={marker}"),
            2 => format!("/api/sites?by={marker}"),
            3 => format!("/api/sites?{key}{marker}=1"),
            4 => format!("/api/history?since_ms={marker}"),
            _ => format!("/api/history?{key}{marker}"),
        };
        let raw = format!("GET {target} HTTP/1.1\r\nAuthorization: Bearer t0ken\r\n\r\n");
        let Parsed::Request(request) = parse_head(raw.as_bytes()) else {
            return Err(TestCaseError::fail(format!("{raw:?} does not parse")));
        };
        let peer = "127.0.0.1:1".parse().unwrap();
        let response = match endpoints().admit(&request, peer) {
            Ok(Lane::Scrape | Lane::Light | Lane::Heavy) => endpoints().render(&request),
            Err(refusal) => refusal,
        };
        prop_assert!([200, 400, 404].contains(&response.status), "{}", response.status);
        let bytes = response.into_bytes(false);
        prop_assert!(
            !bytes.windows(marker.len()).any(|w| w == marker.as_bytes()),
            "{} echoed {}", target, String::from_utf8_lossy(&bytes)
        );
    }
}
