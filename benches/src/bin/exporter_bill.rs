//! The exporter's own bill: what looking costs the service in CPU, heap
//! blocks and wake-ups. Prints one JSON object.
//!
//! `cargo run --release -p allocmeter-benches --bin exporter_bill [-- --quick]`
//!
//! Each part runs in a child process of its own (this program run again
//! with `--child`), so that one part's site table, symbolizer and threads
//! do not weigh on the next:
//!
//! - **Scrapes** (`--child scrapes`, once with the default settings and once
//!   with per-site series, `site_metrics(50)`): an exporter with the
//!   builder's defaults, and a site table built at sample rate 1 from
//!   [`distinct_call_sites`] (one block per site, kept), first 1,000 sites
//!   and then 10,000 (the table's default limit). At each size, sampling
//!   off (rate 0, so that the aggregator's drains find nothing), the
//!   calling thread requests `/metrics`, `/debug/pprof/heap` and
//!   `/debug/pprof/allocs` over a new connection each, 3 times to warm up
//!   (the first is reported on its own: the profiles' first loads the
//!   symbolizer) and then `--scrapes` times (50), one after another. For
//!   each request: the process's CPU time (`CLOCK_PROCESS_CPUTIME_ID`), the
//!   calling thread's (`CLOCK_THREAD_CPUTIME_ID`: the client's share of
//!   it), their difference (the service's side: the exporter's threads and
//!   the kernel's work on their behalf), the wall time, and the heap blocks
//!   the exporter's threads allocated (allocmeter's own share of the
//!   process's counts, [`allocmeter::stats_split`], read 20 ms after the
//!   response, when the I/O thread is done with the connection). Median
//!   and 90th percentile of each. Then, in the default child, the
//!   aggregator's CPU and wake-ups over a window with the 10,000-site table
//!   and the service idle.
//! - **Threads** (`--child threads`): an exporter with the builder's
//!   defaults (tick every second, default sample rate 512 KiB, no sites
//!   built), after 2 s to settle: every exporter thread's CPU time (the
//!   first field of `/proc/self/task/TID/schedstat`, in ns) and its context
//!   switches (`voluntary_ctxt_switches` + `nonvoluntary_ctxt_switches` of
//!   `.../status`: one per sleep, so one per wake-up) over a `--window`
//!   (10 s), once with the service idle and once while one thread
//!   allocates and frees at a paced `--rate` (1 GB/s): each turn a 64 KiB
//!   block and 16 blocks of 16 B to 4 KiB, freed at once, the memory never
//!   touched, pacing by sleeping whenever it is ahead. It reports the rate
//!   it reached.
//!
//! Thread names are cut to 15 bytes in `/proc` (`allocmeter-aggr`,
//! `allocmeter-http` for the I/O thread and the three render workers); the
//! I/O thread is the one of those whose current system call is `poll`
//! (`/proc/self/task/TID/syscall`).
//!
//! The one-minute load average before and after goes with the figures: on
//! a small machine shared with other work, the CPU times per request move
//! with it (cache and core sharing), by half and more.
//!
//! `--quick` (a smoke run): 200 and 1,000 sites, 5 requests each, 1 s
//! windows; its figures show that the path runs, not what it costs.

use std::alloc::System;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use allocmeter::Instrumented;
use allocmeter_test_support::exporter::{loopback, start_built};
use allocmeter_test_support::prometheus_text::parse_samples;
use allocmeter_test_support::workers::distinct_call_sites;
use serde_json::{Value, json};

#[global_allocator]
static GLOBAL: Instrumented<System> = Instrumented::new(System);

/// What each request of the scrape part asks for.
const PATHS: [&str; 3] = ["/metrics", "/debug/pprof/heap", "/debug/pprof/allocs"];

/// Requests before the measured ones, at each size and path.
const WARM_UP: usize = 3;

/// The per-site series of the second scrape child: the most the builder
/// takes (`MAX_SITE_METRICS`).
const SITE_METRICS: usize = 50;

/// `--name N` from the command line, or `default`.
fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.windows(2)
        .find(|w| w[0] == name)
        .map_or(default, |w| w[1].parse().expect("a whole number"))
}

/// `--name VALUE` from the command line.
fn arg_str(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.windows(2).find(|w| w[0] == name).map(|w| w[1].clone())
}

fn quick() -> bool {
    std::env::args().any(|a| a == "--quick")
}

/// A CPU clock of this process (`CLOCK_PROCESS_CPUTIME_ID`) or of the
/// calling thread (`CLOCK_THREAD_CPUTIME_ID`), in ns.
fn cpu_ns(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec, and both clocks exist on
    // Linux.
    let rc = unsafe { libc::clock_gettime(clock, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime");
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// The `p` quantile (nearest rank) of `v`, which it sorts.
fn quantile(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

/// Median, 90th percentile and the most of `v`.
fn summary(mut v: Vec<f64>) -> Value {
    json!({
        "median": quantile(&mut v, 0.5),
        "p90": quantile(&mut v, 0.9),
        "max": quantile(&mut v, 1.0),
    })
}

/// GETs `path` over a new connection, the request in one write, and reads
/// the response to its end; returns the status and the response's bytes.
fn get(addr: SocketAddr, path: &str) -> (u16, usize) {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(10)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .expect("timeout");
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).expect("send");
    let mut raw = Vec::with_capacity(1 << 20);
    stream.read_to_end(&mut raw).expect("read");
    let status = std::str::from_utf8(&raw[..raw.len().min(12)])
        .ok()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, raw.len())
}

/// One measured request.
struct Reading {
    process_ns: f64,
    client_ns: f64,
    wall_ns: f64,
    allocs: u64,
    program_allocs: u64,
    bytes: usize,
}

/// Requests `path` and reads what it cost.
fn measure(addr: SocketAddr, path: &str) -> Reading {
    let split_before = allocmeter::stats_split();
    let allocs_before = split_before.internal.allocs;
    let (process0, thread0) = (
        cpu_ns(libc::CLOCK_PROCESS_CPUTIME_ID),
        cpu_ns(libc::CLOCK_THREAD_CPUTIME_ID),
    );
    let wall = Instant::now();
    let (status, bytes) = get(addr, path);
    let wall_ns = wall.elapsed().as_nanos() as f64;
    let (process1, thread1) = (
        cpu_ns(libc::CLOCK_PROCESS_CPUTIME_ID),
        cpu_ns(libc::CLOCK_THREAD_CPUTIME_ID),
    );
    assert_eq!(status, 200, "{path} answers 200");
    // The I/O thread closes and forgets the connection after the response's
    // last byte: done well within this.
    std::thread::sleep(Duration::from_millis(20));
    Reading {
        process_ns: (process1 - process0) as f64,
        client_ns: (thread1 - thread0) as f64,
        wall_ns,
        allocs: allocmeter::stats_split().internal.allocs - allocs_before,
        program_allocs: allocmeter::stats_split().program.allocs - split_before.program.allocs,
        bytes,
    }
}

/// The figures of one path at one size: the first request's, and the
/// summaries of `n` after the warm-up.
fn measure_path(addr: SocketAddr, path: &str, n: usize) -> Value {
    let first = measure(addr, path);
    for _ in 1..WARM_UP {
        measure(addr, path);
    }
    let readings: Vec<Reading> = (0..n).map(|_| measure(addr, path)).collect();
    let of = |f: &dyn Fn(&Reading) -> f64| summary(readings.iter().map(f).collect());
    let ms = 1e-6;
    json!({
        "path": path,
        "requests": n,
        "first": {
            "process_cpu_ms": first.process_ns * ms,
            "service_cpu_ms": (first.process_ns - first.client_ns) * ms,
            "wall_ms": first.wall_ns * ms,
            "allocs": first.allocs,
        },
        "process_cpu_ms": of(&|r| r.process_ns * ms),
        "client_cpu_ms": of(&|r| r.client_ns * ms),
        "service_cpu_ms": of(&|r| (r.process_ns - r.client_ns) * ms),
        "wall_ms": of(&|r| r.wall_ns * ms),
        "allocs": of(&|r| r.allocs as f64),
        "program_allocs": of(&|r| r.program_allocs as f64),
        "allocs_min": readings.iter().map(|r| r.allocs).min(),
        "response_bytes": readings.last().map(|r| r.bytes),
    })
}

/// Whether `/metrics` has the process collector's families.
fn has_process_families(addr: SocketAddr) -> bool {
    metrics_samples(addr).contains_key("process_cpu_seconds_total")
}

/// The samples of `/metrics`.
fn metrics_samples(addr: SocketAddr) -> std::collections::BTreeMap<String, f64> {
    let mut stream = TcpStream::connect(addr).expect("connect");
    write!(stream, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").expect("send");
    let mut raw = String::new();
    stream.read_to_string(&mut raw).expect("read");
    let body = raw.split_once("\r\n\r\n").expect("a head").1;
    parse_samples(body)
}

/// The site table's size and overflow, from `/metrics`.
fn table(addr: SocketAddr) -> (u64, u64) {
    let samples = metrics_samples(addr);
    let get = |name: &str| samples.get(name).copied().unwrap_or(0.0) as u64;
    (
        get("allocmeter_profile_sites"),
        get("allocmeter_profile_sites_overflow_total"),
    )
}

/// Allocates from sites `from..to` at sample rate 1, a few hundred at a
/// time so that the aggregator keeps up, then turns sampling off and waits
/// until the table stops growing. Returns the table's sites and overflow.
fn build_sites(addr: SocketAddr, keep: &mut Vec<Vec<u8>>, from: u32, to: u32) -> (u64, u64) {
    allocmeter::set_sample_rate(1);
    let mut n = from;
    while n < to {
        let end = (n + 250).min(to);
        distinct_call_sites(n..end, keep);
        n = end;
        std::thread::sleep(Duration::from_millis(20));
    }
    allocmeter::set_sample_rate(0);
    let mut last = (0, 0);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        std::thread::sleep(Duration::from_millis(300));
        let now = table(addr);
        if (now == last && now.0 > 0) || Instant::now() > deadline {
            return now;
        }
        last = now;
    }
}

/// One thread of this process: its id, name and readings.
#[derive(Clone)]
struct Task {
    tid: u32,
    name: String,
    cpu_ns: u64,
    switches: u64,
    ticks: u64,
    /// Whether it was in `poll(2)` when read.
    polling: bool,
}

/// The exporter's threads now (named `allocmeter-*`).
fn exporter_tasks() -> Vec<Task> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc/self/task").expect("/proc/self/task") {
        let dir = entry.expect("a task").path();
        let tid: u32 = dir.file_name().unwrap().to_str().unwrap().parse().unwrap();
        let read = |f: &str| std::fs::read_to_string(dir.join(f)).unwrap_or_default();
        let name = read("comm").trim().to_string();
        if !name.starts_with("allocmeter-") {
            continue;
        }
        let cpu_ns = read("schedstat")
            .split_whitespace()
            .next()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let switches = read("status")
            .lines()
            .filter(|l| l.contains("ctxt_switches:"))
            .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
            .sum();
        // utime and stime, in clock ticks: fields 14 and 15, counted after
        // the name's closing parenthesis.
        let stat = read("stat");
        let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
        let fields: Vec<&str> = after.split_whitespace().collect();
        let ticks = fields
            .get(11..13)
            .map_or(0, |f| f.iter().filter_map(|x| x.parse::<u64>().ok()).sum());
        // The I/O thread waits in poll(2) (syscall 7 on x86-64; the name
        // is the workers' too, cut to 15 bytes).
        let polling = read("syscall").split_whitespace().next() == Some("7");
        out.push(Task {
            tid,
            name,
            cpu_ns,
            switches,
            ticks,
            polling,
        });
    }
    out.sort_by_key(|t| t.tid);
    out
}

/// The name to show for `task`, seen `polling` at either end of a window.
fn shown_name(task: &Task, polling: bool) -> String {
    match task.name.as_str() {
        "allocmeter-http" if polling => "allocmeter-http (I/O)".into(),
        "allocmeter-http" => "allocmeter-http (worker)".into(),
        name => name.into(),
    }
}

/// Every exporter thread's CPU share and wake-ups per second over
/// `window`, and the process's CPU over it.
fn window(window: Duration) -> Value {
    let before = exporter_tasks();
    let process0 = cpu_ns(libc::CLOCK_PROCESS_CPUTIME_ID);
    let start = Instant::now();
    std::thread::sleep(window);
    let secs = start.elapsed().as_secs_f64();
    let process1 = cpu_ns(libc::CLOCK_PROCESS_CPUTIME_ID);
    let after = exporter_tasks();
    let threads: Vec<Value> = after
        .iter()
        .filter_map(|a| {
            let b = before.iter().find(|b| b.tid == a.tid)?;
            let cpu_s = (a.cpu_ns - b.cpu_ns) as f64 * 1e-9;
            Some(json!({
                "thread": shown_name(a, a.polling || b.polling),
                "tid": a.tid,
                "cpu_ms": cpu_s * 1e3,
                "cpu_share": cpu_s / secs,
                "cpu_ticks": a.ticks - b.ticks,
                "wakeups": a.switches - b.switches,
                "wakeups_per_sec": (a.switches - b.switches) as f64 / secs,
            }))
        })
        .collect();
    json!({
        "seconds": secs,
        "process_cpu_share": (process1 - process0) as f64 * 1e-9 / secs,
        "threads": threads,
    })
}

/// The scrape part: a default exporter (with `site_metrics` per-site
/// series), its table built to each size, each path measured.
fn child_scrapes() -> Value {
    let quick = quick();
    let site_metrics = arg("--site-metrics", 0) as usize;
    let n = arg("--scrapes", if quick { 5 } else { 50 }) as usize;
    let sizes: &[u32] = if quick { &[200, 1000] } else { &[1000, 10_000] };
    let (exporter, addr) = start_built(loopback().site_metrics(site_metrics));
    let mut keep = Vec::with_capacity(10_000);
    let mut built = 0;
    let mut out = Vec::new();
    for &size in sizes {
        let (sites, overflow) = build_sites(addr, &mut keep, built, size);
        built = size;
        let sampling = allocmeter::profile::sampling_stats();
        let paths: Vec<Value> = PATHS.iter().map(|p| measure_path(addr, p, n)).collect();
        out.push(json!({
            "generated_sites": size,
            "table_sites": sites,
            "overflowed_samples": overflow,
            "samples": sampling.samples,
            "carried": sampling.carried,
            "dropped": sampling.dropped,
            "paths": paths,
        }));
    }
    let process_families = has_process_families(addr);
    allocmeter::set_sample_rate(allocmeter::DEFAULT_SAMPLE_RATE);
    let idle = (site_metrics == 0).then(|| {
        window(Duration::from_secs(arg(
            "--window",
            if quick { 1 } else { 10 },
        )))
    });
    drop(keep);
    drop(exporter);
    json!({
        "site_metrics": site_metrics,
        "process_families": process_families,
        "sizes": out,
        "idle_with_table": idle,
    })
}

/// Allocates and frees at `rate` bytes a second until `stop`; returns the
/// bytes and blocks it allocated and the seconds it ran.
fn paced(rate: u64, stop: &Arc<AtomicBool>) -> JoinHandle<(u64, u64, f64)> {
    let stop = stop.clone();
    std::thread::spawn(move || {
        let start = Instant::now();
        let (mut bytes, mut blocks) = (0u64, 0u64);
        let mut turn = 0usize;
        let mut held: Vec<Vec<u8>> = Vec::with_capacity(17);
        while !stop.load(Ordering::Relaxed) {
            held.push(Vec::with_capacity(64 << 10));
            bytes += 64 << 10;
            for i in 0..16 {
                let size = 16 << ((turn + i) % 9);
                held.push(Vec::with_capacity(size));
                bytes += size as u64;
            }
            blocks += 17;
            held.truncate(0);
            turn += 1;
            let due = Duration::from_secs_f64(bytes as f64 / rate as f64);
            let elapsed = start.elapsed();
            if due > elapsed + Duration::from_millis(1) {
                std::thread::sleep(due - elapsed);
            }
        }
        (bytes, blocks, start.elapsed().as_secs_f64())
    })
}

/// The thread part: a default exporter's threads, idle and with one thread
/// allocating at `--rate`.
fn child_threads() -> Value {
    let quick = quick();
    let secs = arg("--window", if quick { 1 } else { 10 });
    let rate = arg("--rate", 1_000_000_000);
    let (exporter, _addr) = start_built(loopback());
    // The drain interval grows to its longest when nothing is sampled.
    std::thread::sleep(Duration::from_secs(2));
    let idle = window(Duration::from_secs(secs));
    let stop = Arc::new(AtomicBool::new(false));
    let worker = paced(rate, &stop);
    std::thread::sleep(Duration::from_millis(500));
    let busy = window(Duration::from_secs(secs));
    stop.store(true, Ordering::Relaxed);
    let (bytes, blocks, ran) = worker.join().expect("the allocating thread");
    let sampling = allocmeter::profile::sampling_stats();
    drop(exporter);
    json!({
        "interval_ms": allocmeter_exporter::DEFAULT_INTERVAL.as_millis() as u64,
        "idle": idle,
        "allocating": busy,
        "target_bytes_per_sec": rate,
        "reached_bytes_per_sec": bytes as f64 / ran,
        "blocks_per_sec": blocks as f64 / ran,
        "samples": sampling.samples,
        "dropped": sampling.dropped,
        "carried": sampling.carried,
    })
}

/// The system's one-minute load average (`/proc/loadavg`), 0 if unread.
fn load_average() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0)
}

/// Runs this program again as `--child` with `args`, and returns the JSON
/// it printed.
fn child(args: &[&str]) -> Value {
    let me = std::env::current_exe().expect("this program");
    let mut cmd = Command::new(me);
    cmd.args(args);
    if quick() {
        cmd.arg("--quick");
    }
    for name in ["--scrapes", "--window", "--rate"] {
        if let Some(v) = arg_str(name) {
            cmd.args([name, &v]);
        }
    }
    let out = cmd.output().expect("the child runs");
    assert!(
        out.status.success(),
        "child {args:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("the child prints JSON")
}

fn main() {
    match arg_str("--child").as_deref() {
        Some("scrapes") => println!("{}", child_scrapes()),
        Some("threads") => println!("{}", child_threads()),
        Some(other) => panic!("unknown part {other}"),
        None => {
            let load_before = load_average();
            let out = json!({
                "quick": quick(),
                "cores": std::thread::available_parallelism().map_or(0, |n| n.get()),
                "scrapes": child(&["--child", "scrapes", "--site-metrics", "0"]),
                "scrapes_site_metrics": child(&[
                    "--child",
                    "scrapes",
                    "--site-metrics",
                    &SITE_METRICS.to_string(),
                ]),
                "threads": child(&["--child", "threads"]),
                // The machine's load (other processes' too), before and after.
                "load_average": [load_before, load_average()],
            });
            println!("{out}");
        }
    }
}
