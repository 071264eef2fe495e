//! The continuous profilers' configs shipped in `examples/` against a real
//! exporter: every URL Grafana Alloy (`examples/alloy/allocmeter.alloy`) and
//! Parca (`examples/parca/parca.yaml`) would request with them, path and
//! query exactly as their scrapers build it, answers a valid profile with
//! the bearer token (a delta profile after its window), and the profiles
//! the configs turn off answer the documented 404.
//!
//! How each tool builds the query of a profile with `delta` on: Alloy adds
//! `seconds=` the scrape interval less one second; Parca too, and older
//! Parca versions the whole interval (their scrape target code).

use std::alloc::System;
use std::collections::HashMap;
use std::hint::black_box;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use allocmeter::Instrumented;
use allocmeter_exporter::profile_proto;
use allocmeter_test_support::exporter::{gunzip, loopback, start_built};
use allocmeter_test_support::http::checked_request;
use prost::Message;

#[global_allocator]
static GLOBAL: Instrumented<System> = Instrumented::new(System);

const TOKEN: &str = "fleet-configs-test-token-0123456789";

/// What a config says of one profile type.
#[derive(Debug, Default, Clone)]
struct ProfileConfig {
    enabled: Option<bool>,
    path: Option<String>,
    delta: bool,
}

impl ProfileConfig {
    /// Takes one `key = value` (or `key: value`) of the profile's block.
    fn set(&mut self, key: &str, value: &str) {
        match key {
            "enabled" => self.enabled = Some(value == "true"),
            "path" => self.path = Some(value.to_string()),
            "delta" => self.delta = value == "true",
            _ => {}
        }
    }
}

fn examples(file: &str) -> String {
    let path = format!("{}/../examples/{file}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn seconds(interval: &str) -> u64 {
    interval
        .trim_matches('"')
        .strip_suffix('s')
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("an interval in seconds: {interval}"))
}

/// The Alloy file's scrape interval and `profile.NAME { ... }` blocks.
fn alloy_config(text: &str) -> (u64, HashMap<String, ProfileConfig>) {
    let mut interval = None;
    let mut profiles = HashMap::new();
    let mut current: Option<String> = None;
    for line in text.lines().map(str::trim) {
        if line.starts_with("//") {
            continue;
        }
        if let Some(name) = line
            .strip_prefix("profile.")
            .and_then(|l| l.strip_suffix('{'))
        {
            current = Some(name.trim().to_string());
            profiles.insert(name.trim().to_string(), ProfileConfig::default());
            continue;
        }
        if line == "}" {
            current = None;
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let (key, value) = (key.trim(), value.trim().trim_matches('"'));
        match (&current, key) {
            (None, "scrape_interval") => interval = Some(seconds(value)),
            (Some(name), _) => profiles.get_mut(name).unwrap().set(key, value),
            _ => {}
        }
    }
    (interval.expect("scrape_interval"), profiles)
}

/// The Parca file's scrape interval and `pprof_config` entries.
fn parca_config(text: &str) -> (u64, HashMap<String, ProfileConfig>) {
    let mut interval = None;
    let mut profiles = HashMap::new();
    let mut in_pprof: Option<usize> = None;
    let mut current: Option<String> = None;
    for raw in text.lines() {
        let line = raw.trim();
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let indent = raw.len() - raw.trim_start().len();
        if let Some(v) = line.strip_prefix("scrape_interval:") {
            interval = Some(seconds(v.trim()));
        }
        if line == "pprof_config:" {
            in_pprof = Some(indent);
            continue;
        }
        let Some(base) = in_pprof else { continue };
        if indent <= base {
            in_pprof = None;
            continue;
        }
        let (key, value) = line.split_once(':').unwrap();
        let value = value.trim();
        if indent == base + 2 {
            current = Some(key.to_string());
            profiles.insert(key.to_string(), ProfileConfig::default());
        } else if let Some(name) = &current {
            profiles.get_mut(name).unwrap().set(key, value);
        }
    }
    (interval.expect("scrape_interval"), profiles)
}

/// The URLs a scraper requests for the enabled profiles: path, and with
/// `delta` the window each `seconds` gives.
fn enabled_urls(
    tool: &str,
    profiles: &HashMap<String, ProfileConfig>,
    windows: &[u64],
) -> Vec<(String, u64)> {
    let mut urls = Vec::new();
    for (name, p) in profiles {
        if p.enabled != Some(true) {
            continue;
        }
        let path = p
            .path
            .clone()
            .unwrap_or_else(|| panic!("{tool}: {name} is enabled with no path"));
        assert!(
            path == "/debug/pprof/allocs" || path == "/debug/pprof/heap",
            "{tool} enables {name} at {path}, which allocmeter does not serve"
        );
        if p.delta {
            for &w in windows {
                urls.push((format!("{path}?seconds={w}"), w));
            }
        } else {
            urls.push((path, 0));
        }
    }
    urls
}

#[inline(never)]
fn fleet_workload_allocates(stop: &AtomicBool) {
    let mut keep: Vec<Vec<u8>> = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        keep.push(black_box(vec![1u8; 4096]));
        if keep.len() > 256 {
            keep.clear();
        }
        std::thread::sleep(Duration::from_micros(200));
    }
}

fn get(addr: SocketAddr, path: &str, token: bool) -> allocmeter_test_support::http::Response {
    let auth = if token {
        format!("Authorization: Bearer {TOKEN}\r\n")
    } else {
        String::new()
    };
    checked_request(addr, "GET", path, &auth)
}

#[test]
fn every_url_the_shipped_configs_request_answers_as_documented() {
    let (alloy_interval, alloy) = alloy_config(&examples("alloy/allocmeter.alloy"));
    let (parca_interval, parca) = parca_config(&examples("parca/parca.yaml"));
    // Only memory, with delta, and the defaults the tools would scrape off.
    for (tool, profiles) in [("alloy", &alloy), ("parca", &parca)] {
        assert_eq!(profiles["memory"].enabled, Some(true), "{tool}");
        assert!(profiles["memory"].delta, "{tool}: memory with delta");
        for off in ["process_cpu", "goroutine", "block", "mutex"] {
            assert_eq!(profiles[off].enabled, Some(false), "{tool}: {off} off");
        }
    }
    let mut urls = enabled_urls("alloy", &alloy, &[alloy_interval - 1]);
    urls.extend(enabled_urls(
        "parca",
        &parca,
        &[parca_interval - 1, parca_interval],
    ));
    println!("requested by the configs: {urls:?}");
    assert!(
        urls.iter()
            .any(|(u, _)| u == "/debug/pprof/allocs?seconds=14")
    );
    assert!(
        urls.iter()
            .any(|(u, _)| u == "/debug/pprof/allocs?seconds=9")
    );

    let (_exporter, addr) = start_built(loopback().sample_rate(16 * 1024).auth_token(TOKEN));
    let stop = Arc::new(AtomicBool::new(false));
    let workload = {
        let stop = stop.clone();
        std::thread::spawn(move || fleet_workload_allocates(&stop))
    };
    // The scrapers' requests, all at once (as several targets would be).
    let fetches: Vec<_> = urls
        .iter()
        .cloned()
        .map(|(url, window)| {
            std::thread::spawn(move || {
                let started = Instant::now();
                let reply = get(addr, &url, true);
                (url, window, started.elapsed(), reply)
            })
        })
        .collect();
    for f in fetches {
        let (url, window, took, reply) = f.join().unwrap();
        assert_eq!(
            reply.status,
            200,
            "{url}: {}",
            String::from_utf8_lossy(&reply.body)
        );
        assert!(took >= Duration::from_secs(window), "{url} after {took:?}");
        let p = profile_proto::Profile::decode(gunzip(&reply.body).as_slice())
            .unwrap_or_else(|e| panic!("{url}: {e}"));
        let s = |i: i64| p.string_table[i as usize].as_str();
        assert!(!p.sample.is_empty(), "{url}: no samples");
        assert!(
            p.function
                .iter()
                .any(|f| s(f.name).contains("fleet_workload_allocates")),
            "{url}: the workload's site"
        );
        println!("{url}: 200 after {took:?}, {} samples", p.sample.len());
        // Without the token: 401, whatever the path.
        assert_eq!(get(addr, &url, false).status, 401, "{url}");
    }
    // What the configs turn off, at the tools' default paths: the
    // documented 404.
    for path in [
        "/debug/pprof/profile?seconds=14",
        "/debug/pprof/goroutine",
        "/debug/pprof/block",
        "/debug/pprof/mutex",
    ] {
        let reply = get(addr, path, true);
        assert_eq!(reply.status, 404, "{path}");
        assert!(
            String::from_utf8_lossy(&reply.body).contains("not served"),
            "{path}"
        );
    }
    stop.store(true, Ordering::Relaxed);
    workload.join().unwrap();
}
