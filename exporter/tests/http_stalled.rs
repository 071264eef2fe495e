//! A client that stops reading in the middle of a heap profile holds
//! neither a thread nor the other clients: a slow reader denies no one
//! service. Its own binary: the
//! heap profile is made large from this process's samples, which only one
//! exporter at a time can drain.

use std::alloc::System;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use allocmeter::Instrumented;
use allocmeter_exporter::profile_proto;
use allocmeter_test_support::exporter::{loopback, start_built};
use allocmeter_test_support::http::{checked_get, connect_small_window, parse_response};
use allocmeter_test_support::watchdog::watchdog;
use allocmeter_test_support::workers::many_call_sites;

#[global_allocator]
static GLOBAL: Instrumented<System> = Instrumented::new(System);

#[test]
fn a_client_that_stops_reading_mid_profile_stalls_nobody() {
    let _dog = watchdog("stalled reader test", Duration::from_secs(120));
    let (_exporter, addr) = start_built(loopback().sample_rate(1024));
    let keep = many_call_sites();
    std::thread::sleep(Duration::from_millis(1500)); // the aggregator drains
    const SITES: &str = "/api/sites?top=1000";
    let pprof = checked_get(addr, "/debug/pprof/heap");
    let sites = checked_get(addr, SITES);
    assert_eq!((pprof.status, sites.status), (200, 200));
    eprintln!(
        "stalled reader: the heap profile is {} bytes (gzipped), the call-site profile {} bytes",
        pprof.body.len(),
        sites.body.len()
    );
    // The call-site profile is far larger than what the socket buffers hold
    // with a 4 KiB receive window, so the server's writes really stop
    // midway (the gzipped pprof profile is smaller; it is stalled too).
    assert!(sites.body.len() > 1 << 20, "{} bytes", sites.body.len());

    // Ten clients ask for a profile, read its first KiB, and stop reading.
    let mut first_kib = Vec::new();
    let mut stalled: Vec<TcpStream> = (0..10)
        .map(|i| {
            let mut s = connect_small_window(addr);
            let path = if i % 2 == 0 {
                SITES
            } else {
                "/debug/pprof/heap"
            };
            write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
            let mut first = [0u8; 1024];
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            s.read_exact(&mut first).unwrap();
            assert!(first.starts_with(b"HTTP/1.1 200 OK\r\n"));
            first_kib.push(first);
            s
        })
        .collect();
    // Everyone else is served within a second, profiles included.
    let mut worst = Duration::ZERO;
    for path in [
        "/metrics",
        "/api/snapshot",
        "/debug/pprof/heap",
        "/api/sites?top=5",
        "/metrics",
    ] {
        let t = Instant::now();
        assert_eq!(checked_get(addr, path).status, 200, "{path}");
        let took = t.elapsed();
        worst = worst.max(took);
        assert!(took < Duration::from_secs(1), "{path} took {took:?}");
    }
    eprintln!("stalled reader: others answered within {worst:?} while 10 clients stalled");
    // Stalled clients that read on get the whole, valid response: the
    // call-site JSON and the pprof profile.
    for (index, check) in [(0usize, "json"), (1, "pprof")] {
        let mut rest = Vec::new();
        let stream = &mut stalled[index];
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        stream.read_to_end(&mut rest).unwrap();
        let mut whole = first_kib[index].to_vec();
        whole.extend_from_slice(&rest);
        let reply = parse_response(&whole).expect("a response");
        let length: usize = reply.header("content-length").unwrap().parse().unwrap();
        assert_eq!(reply.body.len(), length, "the whole body came");
        if check == "json" {
            let body: serde_json::Value = serde_json::from_slice(&reply.body).expect("JSON");
            assert!(!body["sites"].as_array().unwrap().is_empty());
        } else {
            let mut proto = Vec::new();
            flate2::read::GzDecoder::new(reply.body.as_slice())
                .read_to_end(&mut proto)
                .expect("a gzipped profile");
            let profile = <profile_proto::Profile as prost::Message>::decode(proto.as_slice())
                .expect("a valid profile");
            assert!(!profile.sample.is_empty());
        }
        eprintln!(
            "stalled reader: a resumed {check} client read {} bytes in all",
            whole.len()
        );
    }
    drop(stalled);
    drop(keep);
}
