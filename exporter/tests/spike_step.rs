//! A step in a real service's allocation rate is reported as one spike,
//! whatever its phase against the exporter's tick.
//!
//! In process, a small HTTP service on a loopback port: worker threads, one
//! keep-alive connection each, and four handlers that allocate the way
//! request handlers do (result strings, a session map, a rendered page, a
//! serialized export). Client threads send requests over real sockets at
//! paced rates, so the service's byte rate is set by the clock, not by how
//! fast the shared cores happen to be.
//!
//! Each scenario starts an exporter with every default (1 s interval,
//! factor 4, 1 MiB/s floor, 60 s window) while the quiet load runs. After its
//! third tick, at a chosen phase into the next interval, extra clients raise
//! the export handler's traffic so that the whole rate is five times the
//! quiet rate, for a little over three intervals, then stop. The checks are
//! made over HTTP (`/api/history`, `/api/spikes`): first that the machine
//! produced the load (a steady quiet rate, a fivefold step), then that the
//! detector reported exactly that step, as one spike that starts no later
//! than its first whole interval and names the export handler as its top
//! site.
//!
//! The phase is what makes it hard: the interval the step starts in is part
//! quiet, part step. Early in the interval (0.1) it is already above the bar;
//! late (0.9) it is barely above the quiet rate; in the middle (0.5) it runs
//! at about three times the quiet rate, under the bar, and counts as quiet.
//! It must not lift the baseline, or the bar rises above the step itself.
//!
//! Its own binary, `harness = false`: the detector sees the whole process's
//! allocation rate, so the scenarios run one after another with nothing else
//! beside them.

use std::alloc::System;
use std::collections::HashMap;
use std::hint::black_box;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use allocmeter::Instrumented;
use allocmeter_test_support::exporter::{
    get_json, json_f64 as f, json_u64 as u, loopback, start_built, unix_ms_now,
};
use allocmeter_test_support::runner;

#[global_allocator]
static GLOBAL: Instrumented<System> = Instrumented::new(System);

const MIB: f64 = (1 << 20) as f64;
/// The exporter's defaults, as `/api/spikes` must report them.
const K: f64 = 4.0;
const FLOOR: u64 = 1 << 20;
const WINDOW_SECS: f64 = 60.0;
const INTERVAL_MS: u64 = 1000;

/// The quiet load, requests per second per handler: about 6 MiB/s each,
/// 24 MiB/s in all (well above the 1 MiB/s floor).
const QUIET: [(Handler, f64); 4] = [
    (Handler::Search, 48.0),
    (Handler::Session, 48.0),
    (Handler::Render, 24.0),
    (Handler::Export, 12.0),
];
/// The whole rate during the step, as a multiple of the quiet rate.
const STEP_FACTOR: f64 = 5.0;
/// How long the step lasts: over three intervals, so that it holds at least
/// two whole intervals whatever its phase.
const STEP: Duration = Duration::from_millis(3200);
/// Extra clients of the export handler during the step.
const STEP_CLIENTS: usize = 4;
/// Server workers: one per client connection, and spares.
const WORKERS: usize = 10;

/// The machine must hold the quiet rate within this fraction of its median,
/// and reach this multiple of it in every whole interval of the step, for
/// the scenario to test the detector at all.
const QUIET_SPREAD: f64 = 0.15;
const STEP_AT_LEAST: f64 = 4.5;

/// Bytes of one exported row.
const ROW: &[u8] = b"2026-01-01T00:00:00Z,order-000000,customer-000000,EUR,000000.00,shipped,warehouse-07,priority\n";

#[derive(Clone, Copy, Debug, PartialEq)]
enum Handler {
    Search,
    Session,
    Render,
    Export,
}

impl Handler {
    fn path(self) -> &'static str {
        match self {
            Handler::Search => "/search",
            Handler::Session => "/session",
            Handler::Render => "/render",
            Handler::Export => "/export",
        }
    }

    fn serve(path: &str) -> Vec<u8> {
        match path {
            "/search" => handle_search_ranks_results(),
            "/session" => handle_session_loads_state(),
            "/render" => handle_render_formats_page(),
            "/export" => handle_export_serializes_rows(),
            _ => b"not found".to_vec(),
        }
    }
}

/// `/search`: 64 result lines of 1 KiB each, joined into the body (about
/// 128 KiB allocated).
#[inline(never)]
fn handle_search_ranks_results() -> Vec<u8> {
    let results: Vec<String> = (0..64)
        .map(|i| {
            let mut line = String::with_capacity(1024);
            while line.len() + 64 <= 1024 {
                line.push_str("result: a document that matches the query, ranked by score ");
                line.push_str(if i % 2 == 0 { "#\n" } else { "*\n" });
            }
            line
        })
        .collect();
    results.join("").into_bytes()
}

/// `/session`: a map of 64 named entries of 2 KiB each (about 140 KiB), of
/// which the body is a short summary.
#[inline(never)]
fn handle_session_loads_state() -> Vec<u8> {
    let state: HashMap<String, Vec<u8>> = (0..64u8)
        .map(|i| (format!("session-entry-{i}"), vec![i; 2048]))
        .collect();
    let total: usize = black_box(&state).values().map(Vec::len).sum();
    format!("{} entries, {total} bytes\n", state.len()).into_bytes()
}

/// `/render`: a 256 KiB page built from template pieces.
#[inline(never)]
fn handle_render_formats_page() -> Vec<u8> {
    let mut page = String::with_capacity(256 << 10);
    page.push_str("<!doctype html><title>report</title><table>\n");
    while page.len() + 128 <= 256 << 10 {
        page.push_str("<tr><td>item</td><td>a rendered cell of the report page</td></tr>\n");
    }
    page.into_bytes()
}

/// `/export`: 512 KiB of CSV rows, the handler whose traffic steps up.
#[inline(never)]
fn handle_export_serializes_rows() -> Vec<u8> {
    let mut out = Vec::with_capacity(512 << 10);
    while out.len() + ROW.len() <= 512 << 10 {
        out.extend_from_slice(ROW);
    }
    out
}

/// The service: worker threads that each take one keep-alive connection at
/// a time from a shared listener. Dropping it stops them.
struct Service {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    workers: Vec<JoinHandle<()>>,
}

impl Service {
    fn start() -> Service {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the service");
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let workers = (0..WORKERS)
            .map(|_| {
                let listener = listener.try_clone().unwrap();
                let stop = stop.clone();
                std::thread::spawn(move || {
                    // Relaxed: the flag only ends the loop, and the one who
                    // sets it keeps waking the workers until each has seen it.
                    while !stop.load(Ordering::Relaxed) {
                        if let Ok((stream, _)) = listener.accept() {
                            serve_connection(stream);
                        }
                    }
                })
            })
            .collect();
        Service {
            addr,
            stop,
            workers,
        }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        // Relaxed: see the workers' loop.
        self.stop.store(true, Ordering::Relaxed);
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.workers.iter().any(|w| !w.is_finished()) && Instant::now() < deadline {
            // Wakes a worker blocked in accept; the connection closes at once.
            let _ = TcpStream::connect(self.addr);
            std::thread::sleep(Duration::from_millis(1));
        }
        for w in self.workers.drain(..) {
            assert!(w.is_finished(), "a service worker did not stop");
            if w.join().is_err() && !std::thread::panicking() {
                panic!("a service worker panicked");
            }
        }
    }
}

/// The service and its clients. Dropping it (at the end of a scenario, or
/// when a check fails) stops the clients, then the service, so that nothing
/// of one scenario's load runs into the next.
struct Load {
    service: Service,
    stop: Arc<AtomicBool>,
    clients: Vec<JoinHandle<u64>>,
}

impl Load {
    /// The service, with the quiet clients sending from now on.
    fn quiet() -> Load {
        let service = Service::start();
        let stop = Arc::new(AtomicBool::new(false));
        let now = Instant::now();
        let clients = QUIET
            .iter()
            .map(|&(h, rate)| client(service.addr, h, rate, now, None, stop.clone()))
            .collect();
        Load {
            service,
            stop,
            clients,
        }
    }

    /// `n` more clients of `handler`, `rate` requests per second in all,
    /// from `start` to `end`; returns how many requests they sent, once
    /// `end` has passed.
    fn burst(&self, handler: Handler, n: usize, rate: f64, start: Instant, end: Instant) -> u64 {
        let each = rate / n as f64;
        let clients: Vec<_> = (0..n)
            .map(|c| {
                // Staggered, so that their requests interleave.
                let at = start + Duration::from_secs_f64(c as f64 / rate);
                let stop = self.stop.clone();
                client(self.service.addr, handler, each, at, Some(end), stop)
            })
            .collect();
        clients.into_iter().map(|c| c.join().unwrap()).sum()
    }

    /// Stops the quiet clients; returns how many requests they sent.
    fn stop(&mut self) -> u64 {
        // Relaxed: a flag the clients poll; they are joined below.
        self.stop.store(true, Ordering::Relaxed);
        let mut sent = 0;
        for c in self.clients.drain(..) {
            match c.join() {
                Ok(n) => sent += n,
                Err(_) if std::thread::panicking() => {}
                Err(_) => panic!("a client panicked"),
            }
        }
        sent
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Serves requests on one connection until the client closes it.
fn serve_connection(stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let mut writer = stream.try_clone().expect("clone the stream");
    let mut reader = BufReader::new(stream);
    let mut line = String::with_capacity(256);
    let mut header = String::with_capacity(256);
    loop {
        line.clear();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        // The rest of the head.
        loop {
            header.clear();
            if reader.read_line(&mut header).unwrap_or(0) == 0 {
                return;
            }
            if header == "\r\n" {
                break;
            }
        }
        let body = Handler::serve(line.split(' ').nth(1).unwrap_or("/"));
        let head = write!(
            writer,
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        if head.and_then(|()| writer.write_all(&body)).is_err() {
            return;
        }
    }
}

/// A client on one keep-alive connection sending `GET path` at `rate` per
/// second from `start` until `end` (or until `stop` is set), paced by the
/// clock: request `i` is sent at `start + i / rate`. Behind by more than a
/// quarter of a second (a stalled machine), it drops the missed requests
/// rather than sending them in a burst. Returns how many it sent.
fn client(
    addr: SocketAddr,
    handler: Handler,
    rate: f64,
    start: Instant,
    end: Option<Instant>,
    stop: Arc<AtomicBool>,
) -> JoinHandle<u64> {
    std::thread::spawn(move || {
        let stream = TcpStream::connect(addr).expect("connect to the service");
        stream.set_nodelay(true).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut writer = stream.try_clone().unwrap();
        let mut reader = BufReader::new(stream);
        let mut line = String::with_capacity(256);
        let period = Duration::from_secs_f64(1.0 / rate);
        let (mut anchor, mut i) = (start, 0u32);
        let mut sent = 0;
        loop {
            let mut at = anchor + period * i;
            let now = Instant::now();
            if now > at + Duration::from_millis(250) {
                (anchor, i, at) = (now, 0, now);
            }
            // Relaxed: a flag polled once per request.
            if end.is_some_and(|end| at >= end) || stop.load(Ordering::Relaxed) {
                return sent;
            }
            if let Some(wait) = at.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            let path = handler.path();
            write!(writer, "GET {path} HTTP/1.1\r\nHost: service\r\n\r\n").expect("send");
            let mut length = None;
            loop {
                line.clear();
                assert!(reader.read_line(&mut line).expect("read a response") > 0);
                if line == "\r\n" {
                    break;
                }
                if let Some(v) = line.strip_prefix("Content-Length: ") {
                    length = Some(v.trim().parse::<u64>().unwrap());
                }
            }
            let length = length.expect("a Content-Length");
            let read = std::io::copy(&mut (&mut reader).take(length), &mut std::io::sink());
            assert_eq!(read.expect("read a body"), length);
            sent += 1;
            i += 1;
        }
    })
}

/// The `Instant` at `unix_ms` on the wall clock.
fn instant_at(unix_ms: u64) -> Instant {
    let (now, now_ms) = (Instant::now(), unix_ms_now());
    if unix_ms >= now_ms {
        now + Duration::from_millis(unix_ms - now_ms)
    } else {
        now - Duration::from_millis(now_ms - unix_ms)
    }
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    let n = xs.len();
    if n % 2 == 1 {
        xs[n / 2]
    } else {
        (xs[n / 2 - 1] + xs[n / 2]) / 2.0
    }
}

/// One scenario: the step starts `phase` (a fraction of the interval) after
/// the exporter's third tick.
fn step_at_phase(phase: f64) {
    // Bytes of one export request, exactly (the handler is deterministic;
    // the service's plumbing allocates nothing per request).
    let (_, one_export) = allocmeter::measure(|| black_box(handle_export_serializes_rows()));
    let export_bytes = one_export.alloc_bytes as f64;

    let mut load = Load::quiet();
    std::thread::sleep(Duration::from_millis(500));

    // The exporter, as a user starts it: every default.
    let (exporter, addr) = start_built(loopback());

    // Its third tick (the history also holds the point taken at start).
    let deadline = Instant::now() + Duration::from_secs(10);
    let points = loop {
        let points = exporter.history_points(None);
        if points.len() >= 4 {
            break points;
        }
        assert!(Instant::now() < deadline, "no third tick: {points:?}");
        std::thread::sleep(Duration::from_millis(2));
    };
    let third = points[3].unix_ms;
    let quiet_rate = median(points[1..4].iter().map(|p| p.alloc_bytes_per_sec).collect());

    // The step: the whole rate to STEP_FACTOR × the quiet rate, all of the
    // extra through the export handler.
    let step_start_ms = third + (phase * INTERVAL_MS as f64) as u64;
    let step_start = instant_at(step_start_ms);
    assert!(
        Instant::now() < step_start,
        "the third tick was seen too late for phase {phase}"
    );
    let extra_rate = (STEP_FACTOR - 1.0) * quiet_rate / export_bytes;
    let step_sent = load.burst(
        Handler::Export,
        STEP_CLIENTS,
        extra_rate,
        step_start,
        step_start + STEP,
    );
    let step_end_ms = unix_ms_now();

    // Wait (in process) until the spike, if any, has ended: two ticks after
    // the step, and no spike in progress.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let after = exporter.history_points(Some(step_end_ms)).len();
        if after >= 2 && !exporter.spike_status().active {
            break;
        }
        assert!(Instant::now() < deadline, "the spike never ended");
        std::thread::sleep(Duration::from_millis(50));
    }

    // Over HTTP, what the exporter saw and what it reported.
    let history = get_json(addr, "/api/history", 200);
    let body = get_json(addr, "/api/spikes", 200);
    let quiet_sent = load.stop();
    drop(load);
    drop(exporter);

    assert_eq!(u(&history, "interval_ms"), INTERVAL_MS);
    let points = history["points"].as_array().unwrap();
    let tick = |i: usize| u(&points[i], "unix_ms");
    let rate = |i: usize| f(&points[i], "alloc_bytes_per_sec");
    // The intervals (numbered by the point that ends them) before the step,
    // the one it starts in, its whole ones, and the one it ends in.
    let before: Vec<usize> = (1..points.len())
        .filter(|&i| tick(i) <= step_start_ms)
        .collect();
    let first = before.len() + 1;
    let whole: Vec<usize> = (first..points.len())
        .filter(|&i| tick(i - 1) >= step_start_ms && tick(i) <= step_end_ms)
        .collect();
    let tick_before = tick(first - 1);
    let realized = (step_start_ms - tick_before) as f64 / (tick(first) - tick_before) as f64;
    let reported: Vec<String> = body["spikes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            format!(
                "#{} from {} to {} against {:.1} MiB/s, peak {:.1} MiB/s, top site {}",
                s["id"],
                s["start_unix_ms"],
                s["end_unix_ms"],
                f(s, "baseline_bytes_per_sec") / MIB,
                f(s, "peak_bytes_per_sec") / MIB,
                s["top_sites"][0]["function"]
            )
        })
        .collect();
    let rates: Vec<String> = (1..points.len())
        .map(|i| format!("{:.1}", rate(i) / MIB))
        .collect();
    let ticks: Vec<String> = (0..points.len()).map(|i| tick(i).to_string()).collect();
    let figures = format!(
        "phase {phase} (realized {realized:.2}): MiB/s per interval [{}]; quiet median \
         {:.1} MiB/s; step from unix ms {step_start_ms} to {step_end_ms} ({step_sent} extra \
         exports of {export_bytes} B, {quiet_sent} quiet requests); ticks {}; spikes: [{}]",
        rates.join(", "),
        quiet_rate / MIB,
        ticks.join(", "),
        reported.join("; ")
    );
    println!("{figures}");

    // The load: a steady quiet rate, then a fivefold step.
    let quiet_rates: Vec<f64> = before.iter().map(|&i| rate(i)).collect();
    let quiet_median = median(quiet_rates.clone());
    assert!(before.len() >= 3, "three quiet intervals first: {figures}");
    assert!(
        quiet_median > 8.0 * FLOOR as f64,
        "the machine could not produce the quiet load: {figures}"
    );
    assert!(
        quiet_rates
            .iter()
            .all(|r| (r / quiet_median - 1.0).abs() <= QUIET_SPREAD),
        "the machine could not hold the quiet load steady: {figures}"
    );
    assert!(
        whole.len() >= 2,
        "two whole intervals in the step: {figures}"
    );
    assert!(
        whole
            .iter()
            .all(|&i| rate(i) >= STEP_AT_LEAST * quiet_median),
        "the machine could not produce the step: {figures}"
    );

    // The detector, with the defaults.
    assert_eq!(f(&body, "k"), K);
    assert_eq!(u(&body, "min_bytes_per_sec"), FLOOR);
    assert_eq!(f(&body, "baseline_secs"), WINDOW_SECS);
    // Exactly one spike: the step's.
    let spikes = body["spikes"].as_array().unwrap();
    assert_eq!(spikes.len(), 1, "one spike, the step's: {figures}");
    let spike = &spikes[0];
    assert_eq!(spike["active"], false, "{figures}");
    // It starts within the step: at the tick before it (the interval the
    // step starts in was already above the bar) or at the start of its first
    // whole interval; none during the quiet load.
    let start = u(spike, "start_unix_ms");
    assert!(
        start == tick_before || start == tick(first),
        "starts at {start}, the step at {step_start_ms} between ticks {tick_before} and {}: \
         {figures}",
        tick(first)
    );
    // Measured against the quiet rate: the interval the step starts in, part
    // quiet and part step, does not lift the bar.
    let baseline = f(spike, "baseline_bytes_per_sec");
    assert!(
        (baseline / quiet_median - 1.0).abs() <= QUIET_SPREAD,
        "baseline {:.1} MiB/s against a quiet {:.1} MiB/s: {figures}",
        baseline / MIB,
        quiet_median / MIB
    );
    // And it lasts at least to the end of the step's last whole interval.
    let last_whole = tick(*whole.last().unwrap());
    assert!(
        u(spike, "end_unix_ms") >= last_whole,
        "ends before the step's last whole interval ({last_whole}): {figures}"
    );
    for (i, p) in points.iter().enumerate().skip(1) {
        if tick(i) <= tick_before {
            assert_eq!(p["spike"], false, "a quiet interval marked: {figures}");
        }
    }
    // The export handler allocated most during it.
    let top = spike["top_sites"].as_array().unwrap();
    assert!(!top.is_empty(), "{figures}");
    let function = top[0]["function"].as_str().unwrap();
    assert!(
        function.ends_with("handle_export_serializes_rows"),
        "top site {function}: {spike}"
    );
    assert!(
        top[0]["stack"]
            .as_array()
            .unwrap()
            .iter()
            .any(|frame| frame["function"]
                .as_str()
                .unwrap()
                .ends_with("handle_export_serializes_rows")),
        "{spike}"
    );
}

fn step_early_in_the_interval() {
    step_at_phase(0.1);
}

fn step_mid_interval() {
    step_at_phase(0.5);
}

fn step_late_in_the_interval() {
    step_at_phase(0.9);
}

fn main() {
    runner::run(
        &[
            (
                "a step 0.1 s after a tick is one spike",
                step_early_in_the_interval,
            ),
            ("a step 0.5 s after a tick is one spike", step_mid_interval),
            (
                "a step 0.9 s after a tick is one spike",
                step_late_in_the_interval,
            ),
        ],
        Duration::from_secs(180),
    );
}
