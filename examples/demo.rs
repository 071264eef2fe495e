//! The demo service: a small "order report" service whose global allocator is
//! `Instrumented<System>`, serving its allocation telemetry.
//!
//! ```text
//! cargo run --release --example demo -- [--bind ADDR] [--spike-every SECS] [--spike-for SECS] [--spike-factor K] [--sample-rate BYTES]
//! ```
//!
//! It prints the URL it serves on (`http://IP:PORT/`) as soon as it listens,
//! then runs until interrupted. Two worker threads handle a steady stream of
//! simulated requests; every `--spike-every` seconds, for `--spike-for`
//! seconds, each request allocates ten times as much (a burst of large
//! reports), which shows as a spike in `rate(allocmeter_alloc_bytes_total[1m])`,
//! and which the exporter detects itself (`/api/spikes`, marked on the page)
//! when the rate goes above `--spike-factor` times its baseline (default 4).
//! A small cache keeps recent reports alive, so the live heap moves too.

use std::alloc::System;
use std::collections::{HashMap, VecDeque};
use std::hint::black_box;
use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use allocmeter::Instrumented;
use allocmeter_exporter::Exporter;

#[global_allocator]
static GLOBAL: Instrumented<System> = Instrumented::new(System);

/// Command-line options.
struct Options {
    bind: String,
    spike_every: Duration,
    spike_for: Duration,
    spike_factor: f64,
    sample_rate: u64,
}

fn parse_args() -> Result<Options, String> {
    let mut opts = Options {
        bind: allocmeter_exporter::DEFAULT_BIND.to_string(),
        spike_every: Duration::from_secs(30),
        spike_for: Duration::from_secs(5),
        spike_factor: allocmeter_exporter::DEFAULT_SPIKE_FACTOR,
        sample_rate: allocmeter::DEFAULT_SAMPLE_RATE,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or(format!("{name} needs a value"));
        let secs = |v: String, name: &str| {
            v.parse::<u64>()
                .map(Duration::from_secs)
                .map_err(|_| format!("{name} takes whole seconds, got {v:?}"))
        };
        match arg.as_str() {
            "--bind" => opts.bind = value("--bind")?,
            "--spike-every" => opts.spike_every = secs(value("--spike-every")?, "--spike-every")?,
            "--spike-for" => opts.spike_for = secs(value("--spike-for")?, "--spike-for")?,
            "--spike-factor" => {
                let v = value("--spike-factor")?;
                opts.spike_factor = v
                    .parse::<f64>()
                    .ok()
                    .filter(|k| k.is_finite() && *k >= 1.0)
                    .ok_or(format!(
                        "--spike-factor takes a number of at least 1, got {v:?}"
                    ))?;
            }
            "--sample-rate" => {
                let v = value("--sample-rate")?;
                opts.sample_rate = v
                    .parse()
                    .map_err(|_| format!("--sample-rate takes bytes, got {v:?}"))?;
            }
            "-h" | "--help" => {
                return Err(
                    "usage: demo [--bind ADDR] [--spike-every SECS] [--spike-for SECS] \
                            [--spike-factor K] [--sample-rate BYTES]"
                        .into(),
                );
            }
            other => return Err(format!("unknown argument {other:?} (try --help)")),
        }
    }
    if opts.spike_every.is_zero() {
        return Err("--spike-every must be at least 1 second".into());
    }
    Ok(opts)
}

/// One simulated request: build an order report (a map of strings and
/// vectors), render it to text, and return the text. `scale` multiplies the
/// number of orders. This is the demo's allocating function: it tops
/// `go tool pprof -top` of both `/debug/pprof/heap` and `/debug/pprof/allocs`.
#[inline(never)]
fn build_report(request: u64, scale: usize) -> String {
    let mut orders: HashMap<String, Vec<u64>> = HashMap::new();
    for i in 0..(20 * scale) as u64 {
        let customer = format!("customer-{}", (request * 31 + i) % 97);
        orders
            .entry(customer)
            .or_default()
            .extend((0..16).map(|k| request ^ (i * k)));
    }
    let mut report = String::new();
    for (customer, items) in &orders {
        report.push_str(customer);
        report.push(':');
        for item in items {
            report.push_str(&item.to_string());
            report.push(',');
        }
        report.push('\n');
    }
    report
}

/// Whether `elapsed` since start falls in a spike window.
fn in_spike(elapsed: Duration, every: Duration, length: Duration) -> bool {
    let phase = elapsed.as_millis() % every.as_millis();
    phase >= every.saturating_sub(length).as_millis()
}

fn worker(id: u64, started: Instant, opts: Arc<Options>) {
    // Recent reports stay alive for a while, like a response cache.
    let mut cache: VecDeque<String> = VecDeque::new();
    let mut request = id << 32;
    loop {
        let spiking = in_spike(started.elapsed(), opts.spike_every, opts.spike_for);
        let report = build_report(request, if spiking { 10 } else { 1 });
        cache.push_back(black_box(report));
        if cache.len() > 200 {
            cache.pop_front();
        }
        request += 1;
        // About 200 requests per second per worker.
        thread::sleep(Duration::from_millis(5));
    }
}

fn main() -> ExitCode {
    let opts = match parse_args() {
        Ok(o) => Arc::new(o),
        Err(msg) => {
            eprintln!("demo: {msg}");
            return ExitCode::from(2);
        }
    };
    let exporter = match Exporter::builder()
        .bind(opts.bind.clone())
        .sample_rate(opts.sample_rate)
        .site_metrics(10)
        .spike_factor(opts.spike_factor)
        .start()
    {
        Ok(e) => e,
        Err(e) => {
            eprintln!("demo: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!("{}", exporter.url());
    let _ = std::io::stdout().flush();
    eprintln!(
        "demo: steady load with a 10x spike for {:?} every {:?} (detected above {}x the \
         baseline); Ctrl-C to stop",
        opts.spike_for, opts.spike_every, opts.spike_factor
    );

    let started = Instant::now();
    let workers: Vec<_> = (0..2)
        .map(|id| {
            let opts = opts.clone();
            thread::Builder::new()
                .name(format!("worker-{id}"))
                .spawn(move || worker(id, started, opts))
                .expect("spawn worker")
        })
        .collect();
    for w in workers {
        let _ = w.join();
    }
    drop(exporter);
    ExitCode::SUCCESS
}
