//! What looking costs: the symbolizer's memory when a service is first
//! profiled, and after it has been idle; and profiles without it.
//!
//! - The first heap profile and site report of a few thousand call sites add
//!   at most 8 MiB to the live heap and 16 MiB to the resident set, and the
//!   exporter counts what its symbolizer keeps in `allocmeter_telemetry_bytes`.
//! - After the idle period (`Builder::symbols_idle`, short here) the parsed
//!   debug info, the cache and the mapped files are released: the heap and
//!   the telemetry come back to where they were before the first look.
//! - With `Builder::symbolize(false)` the profile carries addresses, mappings
//!   and build IDs only, and looking maps and parses nothing.
//!
//! One check at a time on the main thread (`harness = false`), so that the
//! process's heap is the exporter's and this file's alone. The history keeps
//! one snapshot, so that the exporter's other structures hold still.

use std::alloc::System;
use std::hint::black_box;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use allocmeter::Instrumented;
use allocmeter_exporter::profile_proto;
use allocmeter_test_support::exporter::{gunzip, loopback, start_built};
use allocmeter_test_support::http::{fetch, fetch_bytes};
use allocmeter_test_support::process::rss_bytes;
use allocmeter_test_support::prometheus_text::parse_samples;
use allocmeter_test_support::{runner, workers};
use prost::Message;

#[global_allocator]
static GLOBAL: Instrumented<System> = Instrumented::new(System);

const MIB: f64 = 1024.0 * 1024.0;

/// The most the first profile and site report may add to the live heap.
const HEAP_BOUND: f64 = 8.0 * MIB;
/// The most they may add to the resident set.
const RSS_BOUND: f64 = 16.0 * MIB;

fn telemetry(addr: SocketAddr) -> f64 {
    let reply = fetch(addr, "GET", "/metrics");
    assert_eq!(reply.status, 200);
    parse_samples(&reply.body)["allocmeter_telemetry_bytes"]
}

fn live() -> f64 {
    allocmeter::stats().live_bytes as f64
}

/// allocmeter's own share of the live heap (the exporter's, the
/// symbolizer's included).
fn own() -> f64 {
    allocmeter::stats_split().internal.live_bytes as f64
}

/// Fetches a heap profile and the site report, checking both answer.
fn look(addr: SocketAddr) -> profile_proto::Profile {
    let profile = fetch_bytes(addr, "GET", "/debug/pprof/heap");
    assert_eq!(profile.status, 200);
    let sites = fetch(addr, "GET", "/api/sites");
    assert_eq!(sites.status, 200);
    profile_proto::Profile::decode(gunzip(&profile.body).as_slice()).expect("the profile decodes")
}

fn the_first_look_is_bounded() {
    allocmeter::set_sample_rate(4096);
    let (exporter, addr) = start_built(loopback().interval(Duration::from_millis(20)).history(1));
    let keep = workers::many_call_sites();
    std::thread::sleep(Duration::from_millis(300));
    // Warm the HTTP path and the collector without symbolizing.
    telemetry(addr);
    let (heap0, rss0, tel0) = (live(), rss_bytes() as f64, telemetry(addr));
    let own0 = own();
    let t = Instant::now();
    let profile = look(addr);
    let took = t.elapsed();
    let (heap1, rss1, tel1) = (live(), rss_bytes() as f64, telemetry(addr));
    let own1 = own();
    eprintln!(
        "  first look ({} sites, {} locations) in {took:?}: heap +{:.2} MiB, RSS +{:.2} MiB, \
         telemetry +{:.2} MiB",
        profile.sample.len(),
        profile.location.len(),
        (heap1 - heap0) / MIB,
        (rss1 - rss0) / MIB,
        (tel1 - tel0) / MIB
    );
    assert!(!profile.function.is_empty(), "the profile names functions");
    assert!(
        heap1 - heap0 <= HEAP_BOUND,
        "the first look added {:.1} MiB to the heap (bound {:.0} MiB)",
        (heap1 - heap0) / MIB,
        HEAP_BOUND / MIB
    );
    assert!(
        rss1 - rss0 <= RSS_BOUND,
        "the first look added {:.1} MiB to the resident set (bound {:.0} MiB)",
        (rss1 - rss0) / MIB,
        RSS_BOUND / MIB
    );
    // What the symbolizer keeps is the exporter's, and counted as such.
    // (The process's heap also holds what this test keeps: the decoded
    // profile, about 1 MiB.)
    assert!(
        (own1 - own0) - (tel1 - tel0) <= ACCOUNTING_SLACK && own1 - own0 >= MIB,
        "allocmeter's heap grew {:.2} MiB (the process's {:.2} MiB), \
         allocmeter_telemetry_bytes {:.2} MiB",
        (own1 - own0) / MIB,
        (heap1 - heap0) / MIB,
        (tel1 - tel0) / MIB
    );
    drop(keep);
    exporter.shutdown();
    allocmeter::set_sample_rate(allocmeter::DEFAULT_SAMPLE_RATE);
}

/// What the heap may grow by a look beyond what the telemetry counts (the
/// report bodies' buffers and the like), and what it may keep after the
/// idle release.
const ACCOUNTING_SLACK: f64 = 1.0 * MIB;

fn the_symbolizer_is_released_after_idle() {
    allocmeter::set_sample_rate(4096);
    let idle = Duration::from_millis(300);
    let (exporter, addr) = start_built(
        loopback()
            .interval(Duration::from_millis(20))
            .history(1)
            .symbols_idle(idle),
    );
    let keep = workers::many_call_sites();
    std::thread::sleep(Duration::from_millis(300));
    // A high-water mark above anything the test allocates later, held over
    // a few ticks: the exporter's peak log copies the site table's
    // estimates at each new peak (into buffers as long as the table), so
    // that the test's own parsing of a look's replies, which raises the
    // program's heap, makes no copy between the two figures compared below.
    let high = black_box(vec![1u8; 64 << 20]);
    std::thread::sleep(Duration::from_millis(200));
    drop(high);
    std::thread::sleep(Duration::from_millis(100));
    telemetry(addr);
    let (heap0, tel0) = (live(), telemetry(addr));
    look(addr);
    let (heap1, tel1) = (live(), telemetry(addr));
    // The aggregator's thread checks at each tick (20 ms): wait for the
    // release with a generous deadline.
    let deadline = Instant::now() + Duration::from_secs(10);
    let (mut heap2, mut tel2) = (heap1, tel1);
    while Instant::now() < deadline {
        std::thread::sleep(idle);
        (heap2, tel2) = (live(), telemetry(addr));
        if tel2 - tel0 <= 64.0 * 1024.0 {
            break;
        }
    }
    eprintln!(
        "  look: heap +{:.2} MiB, telemetry +{:.2} MiB; after {idle:?} idle: heap +{:.2} MiB, \
         telemetry +{:.3} MiB",
        (heap1 - heap0) / MIB,
        (tel1 - tel0) / MIB,
        (heap2 - heap0) / MIB,
        (tel2 - tel0) / MIB
    );
    assert!(
        tel1 - tel0 >= 0.5 * MIB,
        "the look parsed debug info into the telemetry"
    );
    assert!(
        tel2 - tel0 <= 64.0 * 1024.0,
        "after idle the symbolizer still counts {:.2} MiB",
        (tel2 - tel0) / MIB
    );
    assert!(
        heap2 - heap0 <= ACCOUNTING_SLACK,
        "after idle the heap is {:.2} MiB above where it was before the look",
        (heap2 - heap0) / MIB
    );
    // And it comes back on the next look.
    let again = look(addr);
    assert!(!again.function.is_empty(), "names again after the release");
    drop(keep);
    exporter.shutdown();
    allocmeter::set_sample_rate(allocmeter::DEFAULT_SAMPLE_RATE);
}

fn without_symbolization_profiles_carry_addresses_and_build_ids() {
    allocmeter::set_sample_rate(4096);
    let (exporter, addr) = start_built(
        loopback()
            .interval(Duration::from_millis(20))
            .history(1)
            .symbolize(false),
    );
    let keep = workers::many_call_sites();
    std::thread::sleep(Duration::from_millis(300));
    telemetry(addr);
    let (heap0, tel0) = (live(), telemetry(addr));
    let p = look(addr);
    let (heap1, tel1) = (live(), telemetry(addr));
    eprintln!(
        "  {} samples, {} locations, {} mappings: heap +{:.2} MiB, telemetry +{:.3} MiB",
        p.sample.len(),
        p.location.len(),
        p.mapping.len(),
        (heap1 - heap0) / MIB,
        (tel1 - tel0) / MIB
    );
    assert!(!p.sample.is_empty() && !p.location.is_empty());
    assert!(p.function.is_empty(), "no function names");
    assert!(
        p.location
            .iter()
            .all(|l| l.line.is_empty() && l.address != 0)
    );
    assert!(p.mapping.iter().all(|m| !m.has_functions));
    let s = |i: i64| p.string_table[i as usize].as_str();
    let exe = std::env::current_exe().unwrap();
    let main = p
        .mapping
        .iter()
        .find(|m| s(m.filename) == exe.to_string_lossy())
        .expect("the program's mapping");
    assert_eq!(s(main.build_id).len(), 40, "the program's build ID");
    // Every location lies in a mapping, and names it.
    for l in &p.location {
        let m = p
            .mapping
            .iter()
            .find(|m| m.id == l.mapping_id)
            .expect("mapping");
        assert!((m.memory_start..m.memory_limit).contains(&l.address));
    }
    let sites = fetch(addr, "GET", "/api/sites");
    assert!(
        sites.body.contains("\"function\":\"0x"),
        "sites named by address: {}",
        &sites.body[..sites.body.len().min(300)]
    );
    // Telemetry holds the exporter's whole heap (the site table, HTTP
    // buffers and the sizes the budget remembers move a little with every
    // look); parsing this binary's debug info would add MiBs (see
    // `the_first_look_is_bounded`: +3.5 MiB and more).
    assert!(
        tel1 - tel0 <= 1024.0 * 1024.0,
        "nothing parsed: telemetry +{:.2} MiB",
        (tel1 - tel0) / MIB
    );
    drop(keep);
    exporter.shutdown();
    allocmeter::set_sample_rate(allocmeter::DEFAULT_SAMPLE_RATE);
}

fn main() {
    runner::run(
        &[
            ("the_first_look_is_bounded", the_first_look_is_bounded),
            (
                "the_symbolizer_is_released_after_idle",
                the_symbolizer_is_released_after_idle,
            ),
            (
                "without_symbolization_profiles_carry_addresses_and_build_ids",
                without_symbolization_profiles_carry_addresses_and_build_ids,
            ),
        ],
        Duration::from_secs(300),
    );
}
