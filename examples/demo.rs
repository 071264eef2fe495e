//! The demo service: a small "order report" service whose global allocator is
//! `Instrumented<System>`, serving its allocation telemetry.
//!
//! ```text
//! cargo run --release --example demo -- [--bind ADDR] [--spike-every SECS] [--spike-for SECS]
//!     [--spike-factor K] [--sample-rate BYTES] [--hints-window SECS] [--fix HINT]...
//! ```
//!
//! It prints the URL it serves on (`http://IP:PORT/`) as soon as it listens,
//! then runs until interrupted. Two worker threads handle a steady stream of
//! simulated requests, 200 a second each (paced by a clock, so the rate holds
//! whatever each request costs); every `--spike-every` seconds, for
//! `--spike-for` seconds, each request allocates ten times as much (a burst
//! of large reports), which shows as a spike in
//! `rate(allocmeter_alloc_bytes_total[1m])`, and which the exporter detects
//! itself (`/api/spikes`, marked on the page) when the rate goes above
//! `--spike-factor` times its baseline (default 4). A small cache keeps
//! recent reports alive, so the live heap moves too.
//!
//! # Its optimisation hints
//!
//! Each request (`build_report`) is written the way code often is at first,
//! and `/api/hints` names what would cut its allocations, each at its line:
//!
//! | `--fix` | the site in `build_report` | the hint | the fix |
//! |---|---|---|---|
//! | `reuse` | the request's order lines, collected into a new `Vec` | `reuse` | one `Vec` per worker, cleared for each request |
//! | `format` | each report line made with `format!`, then pushed onto the report | `format` | `write!` into one `String` per worker, cleared for each line |
//! | `preallocate` | the report, a `String::new()` grown line by line | `preallocate` | `String::with_capacity` of the size the hint gives |
//!
//! `--fix HINT` (repeatable) applies that one fix; the hint then goes from
//! `/api/hints` within one hints window (`--hints-window`, default 2
//! minutes), and the program's allocation rate (`/api/snapshot`) falls by
//! about the hint's `saving.allocs_per_sec`. `.ci/check-hints.sh` checks
//! both. The per-customer totals are the control: a map kept by the worker
//! and cleared for each request, which allocates nothing once warm and gets
//! no hint.

use std::alloc::System;
use std::collections::{HashMap, VecDeque};
use std::fmt::Write as _;
use std::hint::black_box;
use std::io::Write as _;
use std::process::ExitCode;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use allocmeter::Instrumented;
use allocmeter_exporter::Exporter;

#[global_allocator]
static GLOBAL: Instrumented<System> = Instrumented::new(System);

/// Requests per second, per worker.
const REQUESTS_PER_SEC: u32 = 200;

/// Order lines per request (times 10 during a spike).
const LINES: usize = 40;

/// The report's capacity per [`LINES`] lines under `--fix preallocate`: the
/// size the `preallocate` hint gives (the 90th percentile of the reports'
/// final sizes, 4.0 KiB). A line is at most 80 bytes, so a report never
/// outgrows it.
const REPORT_CAPACITY: usize = 4096;

const USAGE: &str = "usage: demo [--bind ADDR] [--spike-every SECS] [--spike-for SECS] \
                     [--spike-factor K] [--sample-rate BYTES] [--hints-window SECS] \
                     [--fix HINT]...\n\
                     \n\
                     --fix HINT  apply the fix one optimisation hint names (repeatable):\n  \
                     reuse        keep the request's order lines in one Vec per worker\n  \
                     format       write! each report line into one String per worker, not format!\n  \
                     preallocate  make the report String::with_capacity(4096 per 40 lines)";

/// The fixes `--fix` applies, one per hint the demo's code earns.
#[derive(Clone, Copy, Default)]
struct Fixes {
    reuse: bool,
    format: bool,
    preallocate: bool,
}

/// Command-line options.
struct Options {
    bind: String,
    spike_every: Duration,
    spike_for: Duration,
    spike_factor: f64,
    sample_rate: u64,
    hints_window: Duration,
    fixes: Fixes,
}

fn parse_args() -> Result<Options, String> {
    let mut opts = Options {
        bind: allocmeter_exporter::DEFAULT_BIND.to_string(),
        spike_every: Duration::from_secs(30),
        spike_for: Duration::from_secs(5),
        spike_factor: allocmeter_exporter::DEFAULT_SPIKE_FACTOR,
        sample_rate: allocmeter::DEFAULT_SAMPLE_RATE,
        hints_window: allocmeter_exporter::DEFAULT_HINTS_WINDOW,
        fixes: Fixes::default(),
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
            "--hints-window" => {
                opts.hints_window = secs(value("--hints-window")?, "--hints-window")?
            }
            "--fix" => match value("--fix")?.as_str() {
                "reuse" => opts.fixes.reuse = true,
                "format" => opts.fixes.format = true,
                "preallocate" => opts.fixes.preallocate = true,
                other => {
                    return Err(format!(
                        "--fix takes reuse, format or preallocate, got {other:?}"
                    ));
                }
            },
            "-h" | "--help" => return Err(USAGE.into()),
            other => return Err(format!("unknown argument {other:?} (try --help)")),
        }
    }
    if opts.spike_every.is_zero() {
        return Err("--spike-every must be at least 1 second".into());
    }
    if opts.hints_window.is_zero() {
        return Err("--hints-window must be at least 1 second".into());
    }
    Ok(opts)
}

/// One order line of a request (32 bytes).
struct OrderLine {
    order: u64,
    customer: u32,
    sku: u32,
    quantity: u32,
    unit_cents: u64,
}

/// What a worker keeps from one request to the next.
#[derive(Default)]
struct Kept {
    /// Each customer's lines and total, cleared for each request (the
    /// control: allocates nothing once warm).
    totals: HashMap<u32, (u32, u64)>,
    /// The order lines, under `--fix reuse`.
    lines: Vec<OrderLine>,
    /// A report line, under `--fix format`.
    line: String,
}

/// One simulated request: the request's order lines, each customer's
/// totals, and the report (one text line per order line, most valuable
/// customers first), returned. `scale` multiplies the number of lines. This
/// is the demo's allocating function: it tops `go tool pprof -top` of both
/// `/debug/pprof/heap` and `/debug/pprof/allocs`. Each fix is in place here,
/// beside the code it replaces, so that every site stays in this function.
#[inline(never)]
fn build_report(request: u64, scale: usize, fixes: Fixes, kept: &mut Kept) -> String {
    let n = LINES * scale;
    let order_line = |i: usize| {
        let x = request.wrapping_mul(31).wrapping_add(i as u64);
        OrderLine {
            order: x,
            customer: (x % 97) as u32,
            sku: (x.wrapping_mul(2_654_435_761) % 1_000_000) as u32,
            quantity: 1 + (x % 12) as u32,
            unit_cents: 99 + x.wrapping_mul(7919) % 99_900,
        }
    };
    // The order lines: a new Vec per request, or the worker's, cleared.
    let mut fresh;
    let lines: &mut Vec<OrderLine> = if fixes.reuse {
        kept.lines.clear();
        kept.lines.extend((0..n).map(order_line));
        &mut kept.lines
    } else {
        fresh = (0..n).map(order_line).collect::<Vec<OrderLine>>();
        &mut fresh
    };
    kept.totals.clear();
    for l in lines.iter() {
        let t = kept.totals.entry(l.customer).or_default();
        t.0 += 1;
        t.1 += u64::from(l.quantity) * l.unit_cents;
    }
    lines.sort_unstable_by_key(|l| {
        let total = kept.totals[&l.customer].1;
        (std::cmp::Reverse(total), l.customer, l.order)
    });
    // The report: grown line by line, or reserved up front.
    let mut report = if fixes.preallocate {
        String::with_capacity(REPORT_CAPACITY * scale)
    } else {
        String::new()
    };
    for l in lines.iter() {
        let (euros, cents) = (l.unit_cents / 100, l.unit_cents % 100);
        if fixes.format {
            kept.line.clear();
            let _ = writeln!(
                kept.line,
                "customer {:05} lines {:02} sku {:06} quantity {:2} at {euros:3}.{cents:02} EUR",
                l.customer, kept.totals[&l.customer].0, l.sku, l.quantity
            );
            report.push_str(&kept.line);
        } else {
            report.push_str(&format!(
                "customer {:05} lines {:02} sku {:06} quantity {:2} at {euros:3}.{cents:02} EUR\n",
                l.customer, kept.totals[&l.customer].0, l.sku, l.quantity
            ));
        }
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
    let mut kept = Kept::default();
    let mut request = id << 32;
    // Requests arrive on a clock, not after each other: the rate holds
    // whatever a request costs, so allocations per second are allocations
    // per request times the rate. Behind by more than a second (the machine
    // was stalled), it starts the clock again rather than catch up.
    let period = Duration::from_secs(1) / REQUESTS_PER_SEC;
    let mut next = Instant::now();
    loop {
        let spiking = in_spike(started.elapsed(), opts.spike_every, opts.spike_for);
        let report = build_report(request, if spiking { 10 } else { 1 }, opts.fixes, &mut kept);
        cache.push_back(black_box(report));
        if cache.len() > 200 {
            cache.pop_front();
        }
        request += 1;
        next += period;
        let now = Instant::now();
        if next > now {
            thread::sleep(next - now);
        } else if now - next > Duration::from_secs(1) {
            next = now;
        }
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
        .hints_window(opts.hints_window)
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
    let fixes = [
        ("reuse", opts.fixes.reuse),
        ("format", opts.fixes.format),
        ("preallocate", opts.fixes.preallocate),
    ];
    let fixed: Vec<&str> = fixes.iter().filter(|f| f.1).map(|f| f.0).collect();
    eprintln!(
        "demo: steady load with a 10x spike for {:?} every {:?} (detected above {}x the \
         baseline); fixes applied: {}; Ctrl-C to stop",
        opts.spike_for,
        opts.spike_every,
        opts.spike_factor,
        if fixed.is_empty() {
            "none".to_string()
        } else {
            fixed.join(", ")
        }
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
