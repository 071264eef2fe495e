//! Whole-program workloads, run by the `wp_*` binaries with each allocator as
//! the real `#[global_allocator]` of its own binary.
//!
//! Two workloads, both deterministic (fixed-seed xorshift64), so every
//! allocator does exactly the same work and prints the same checksum:
//!
//! - [`json_map`]: builds a large `BTreeMap<String, Vec<String>>`, serialises
//!   it with `serde_json` to a `String`, parses that back into a
//!   `serde_json::Value`, walks the value, and drops everything; several
//!   rounds. Many small, short-lived and some large, growing blocks (the JSON
//!   text is one `String` grown by `realloc`).
//! - [`producer_consumer`]: [`PRODUCERS`] threads build owned messages (a
//!   boxed struct holding a `Vec<u8>` payload of 16 B to 4 KiB, a topic
//!   `String` and a few header strings) and send them, in batches of
//!   [`BATCH`], over a bounded `std::sync::mpsc` channel to one consumer
//!   thread, which reads them, formats a small reply and drops both: every
//!   message is freed on another thread than the one that allocated it.
//!
//! Each binary is a few lines, [`whole_program!`](crate::whole_program)
//! (`benches/src/bin/wp_*.rs`); `benches/wholeprogram.py` builds them, runs
//! each one on each workload several times, and measures wall time, CPU time
//! and peak RSS from outside. The binaries print one JSON line (see [`main`]).
//!
//! The instrumented binaries start the exporter without HTTP
//! (`Exporter::builder().serve_http(false)`), so that sample rings are drained
//! by its aggregator exactly as in a service; the bare ones do not link any
//! allocmeter code into their allocation path.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::hint::black_box;
use std::sync::mpsc;
use std::thread;
use std::time::Instant;

use serde_json::Value;

/// Entries in the map of [`json_map`] at scale 1.
pub const JSON_ENTRIES: usize = 200_000;
/// Rounds of build, serialise, parse and drop in [`json_map`].
pub const JSON_ROUNDS: usize = 3;
/// Messages sent in total by [`producer_consumer`] at scale 1.
pub const MESSAGES: usize = 1_500_000;
/// Producer threads in [`producer_consumer`] (plus one consumer).
pub const PRODUCERS: usize = 2;
/// Messages a producer of [`producer_consumer`] sends at once, in one `Vec`.
pub const BATCH: usize = 32;
/// Batches the channel of [`producer_consumer`] holds before producers wait.
pub const CHANNEL_CAPACITY: usize = 64;

/// A fixed-seed xorshift64 generator: the same sequence for every allocator.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator seeded with `seed` (0 is replaced by a fixed odd constant).
    pub fn new(seed: u64) -> Self {
        Rng(if seed == 0 {
            0x9E37_79B9_7F4A_7C15
        } else {
            seed
        })
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// A number in `lo..=hi`.
    pub fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + (self.next_u64() % (hi - lo + 1) as u64) as usize
    }

    /// A size from `lo` to `hi` bytes, log-uniform (both powers of two or not).
    pub fn log_uniform(&mut self, lo: usize, hi: usize) -> usize {
        let u = (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        let (a, b) = ((lo as f64).log2(), (hi as f64).log2());
        ((a + (b - a) * u).exp2().round() as usize).clamp(lo, hi)
    }
}

/// Letters for the random words (JSON-safe, no escapes needed).
const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_";

/// A random word of `len` characters from [`ALPHABET`], built by pushing.
fn word(rng: &mut Rng, len: usize) -> String {
    let mut s = String::new();
    let mut bits = 0u64;
    for i in 0..len {
        if i % 10 == 0 {
            bits = rng.next_u64();
        }
        s.push(char::from(ALPHABET[(bits & 63) as usize]));
        bits >>= 6;
    }
    s
}

/// Workload 1: `rounds` times, builds a map of `entries` keys (about 30
/// characters) to vectors of 0 to 8 strings of 3 to 48 characters, serialises
/// it with `serde_json::to_string`, parses the text back into a
/// `serde_json::Value`, walks it, and drops the map, the text and the value.
///
/// Returns a checksum of what was parsed (the same for every allocator).
pub fn json_map(entries: usize, rounds: usize) -> u64 {
    let mut checksum = 0u64;
    for round in 0..rounds {
        let mut rng = Rng::new(0x5EED_0000 + round as u64);
        let mut map: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for i in 0..entries {
            let suffix_len = rng.range(4, 16);
            let key = format!("user:{i:08x}:{}", word(&mut rng, suffix_len));
            let values = (0..rng.range(0, 8))
                .map(|_| {
                    let len = rng.range(3, 48);
                    word(&mut rng, len)
                })
                .collect();
            map.insert(key, values);
        }
        let text = serde_json::to_string(&map).expect("a map of strings serialises");
        let value: Value = serde_json::from_str(&text).expect("our own JSON parses");
        checksum = checksum
            .wrapping_mul(31)
            .wrapping_add(walk(&value))
            .wrapping_add(text.len() as u64);
        // Dropped in the order a program would: the input, then the outputs.
        drop(black_box(map));
        drop(black_box(text));
        drop(black_box(value));
    }
    checksum
}

/// Sums the lengths of the strings and keys in `value`, and counts its nodes.
fn walk(value: &Value) -> u64 {
    match value {
        Value::String(s) => s.len() as u64 + 1,
        Value::Array(items) => items.iter().map(walk).sum::<u64>() + 1,
        Value::Object(map) => map
            .iter()
            .map(|(k, v)| k.len() as u64 + walk(v))
            .sum::<u64>()
            .wrapping_add(1),
        _ => 1,
    }
}

/// A few fixed fields of a [`Message`], boxed separately, as a header struct
/// often is.
#[derive(Debug)]
struct Meta {
    sequence: u64,
    producer: u32,
    route: [u32; 6],
}

/// One owned message of [`producer_consumer`].
#[derive(Debug)]
struct Message {
    meta: Box<Meta>,
    topic: String,
    headers: Vec<(String, String)>,
    payload: Vec<u8>,
}

/// Topics a message is sent on (the consumer counts messages per topic).
const TOPICS: [&str; 8] = [
    "orders", "payments", "users", "carts", "search", "ads", "logs", "metrics",
];

/// Builds message `sequence` of producer `producer`.
fn make_message(rng: &mut Rng, producer: u32, sequence: u64) -> Box<Message> {
    let payload_len = rng.log_uniform(16, 4096);
    let mut payload = Vec::with_capacity(payload_len);
    let fill = rng.next_u64().to_le_bytes();
    for chunk in 0..payload_len.div_ceil(8) {
        let n = (payload_len - chunk * 8).min(8);
        payload.extend_from_slice(&fill[..n]);
    }
    let headers = (0..rng.range(0, 4))
        .map(|h| {
            let len = rng.range(4, 32);
            (format!("x-header-{h}"), word(rng, len))
        })
        .collect();
    let topic = TOPICS[rng.range(0, TOPICS.len() - 1)];
    Box::new(Message {
        meta: Box::new(Meta {
            sequence,
            producer,
            route: [producer, sequence as u32, 0, 1, 2, 3],
        }),
        topic: format!("{topic}.v{}", sequence % 3),
        headers,
        payload,
    })
}

/// Workload 2: [`PRODUCERS`] threads send `messages` owned messages in total,
/// in `Vec`s of [`BATCH`], over a bounded `std::sync::mpsc::sync_channel` of
/// [`CHANNEL_CAPACITY`] batches; one consumer thread reads each message,
/// counts it per topic, hashes its payload and headers, formats a reply
/// `String`, and drops both (and the batch).
///
/// Batching keeps the channel's own synchronisation (futex waits and wake-ups
/// on 2 cores) from dominating the run and its run-to-run noise, so that what
/// differs between binaries is mostly the allocator.
///
/// Returns a checksum (the same for every allocator: the consumer's sums do
/// not depend on the order messages arrive in).
pub fn producer_consumer(messages: usize) -> u64 {
    let (tx, rx) = mpsc::sync_channel::<Vec<Box<Message>>>(CHANNEL_CAPACITY);
    let consumer = thread::Builder::new()
        .name("consumer".into())
        .spawn(move || {
            let mut per_topic: HashMap<String, u64> = HashMap::new();
            let mut checksum = 0u64;
            let mut reply = 0u64;
            for message in rx.into_iter().flatten() {
                match per_topic.get_mut(message.topic.as_str()) {
                    Some(count) => *count += 1,
                    None => {
                        per_topic.insert(message.topic.clone(), 1);
                    }
                }
                let mut h = message.meta.sequence ^ u64::from(message.meta.producer);
                h = h.wrapping_add(message.meta.route.iter().map(|&r| u64::from(r)).sum());
                // Read the payload a word at a time (every byte is touched).
                for chunk in message.payload.chunks(8) {
                    let mut word = [0u8; 8];
                    word[..chunk.len()].copy_from_slice(chunk);
                    h = h.wrapping_add(u64::from_le_bytes(word));
                }
                for (name, value) in &message.headers {
                    h = h.wrapping_add((name.len() * 131 + value.len()) as u64);
                }
                let mut text = String::new();
                let _ = write!(
                    text,
                    "ack {} from {} on {}: {} bytes",
                    message.meta.sequence,
                    message.meta.producer,
                    message.topic,
                    message.payload.len()
                );
                reply = reply.wrapping_add(black_box(text).len() as u64);
                checksum = checksum.wrapping_add(h);
                drop(message);
            }
            let topics: u64 = per_topic.values().sum();
            checksum.wrapping_add(reply).wrapping_add(topics)
        })
        .expect("cannot start the consumer thread");
    let producers: Vec<_> = (0..PRODUCERS)
        .map(|p| {
            let tx = tx.clone();
            let share = messages / PRODUCERS + usize::from(p < messages % PRODUCERS);
            thread::Builder::new()
                .name(format!("producer-{p}"))
                .spawn(move || {
                    let mut rng = Rng::new(0xC0FF_EE00 + p as u64);
                    let mut batch = Vec::with_capacity(BATCH);
                    for sequence in 0..share as u64 {
                        batch.push(make_message(&mut rng, p as u32, sequence));
                        if batch.len() == BATCH {
                            let full = std::mem::replace(&mut batch, Vec::with_capacity(BATCH));
                            if tx.send(full).is_err() {
                                return;
                            }
                        }
                    }
                    if !batch.is_empty() {
                        let _ = tx.send(batch);
                    }
                })
                .expect("cannot start a producer thread")
        })
        .collect();
    drop(tx);
    for producer in producers {
        producer.join().expect("a producer panicked");
    }
    consumer.join().expect("the consumer panicked")
}

/// Which allocator a `wp_*` binary has, for [`main`].
#[derive(Clone, Copy, Debug)]
pub struct Variant {
    /// The name printed in the output, such as `Instrumented<System>`.
    pub name: &'static str,
    /// `None` for a bare allocator; `Some(rate)` for an `Instrumented` one,
    /// which sets this sample rate (bytes; 0 = off) and starts the exporter
    /// without HTTP to drain its sample rings.
    pub sample_rate: Option<u64>,
}

/// The workloads a binary can run, by their command-line names.
pub const WORKLOADS: [&str; 2] = ["json_map", "producer_consumer"];

const USAGE: &str =
    "usage: wp_<allocator> --workload json_map|producer_consumer [--scale S] [--main-thread]";

/// The command line of a `wp_*` binary.
struct Args {
    workload: String,
    scale: f64,
    /// Run the workload on the main thread, in a process that starts no other
    /// thread (bare allocators only).
    main_thread: bool,
}

/// Parses `--workload NAME [--scale S] [--main-thread]` (scale defaults to 1).
fn parse_args() -> Result<Args, String> {
    let mut workload = None;
    let mut scale = 1.0f64;
    let mut main_thread = false;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--workload" => {
                let name = args.next().ok_or("--workload needs a value")?;
                if !WORKLOADS.contains(&name.as_str()) {
                    return Err(format!("unknown workload {name:?}"));
                }
                workload = Some(name);
            }
            "--scale" => {
                let s = args.next().ok_or("--scale needs a value")?;
                scale = s
                    .parse()
                    .ok()
                    .filter(|s: &f64| s.is_finite() && *s > 0.0)
                    .ok_or_else(|| format!("bad scale {s:?}"))?;
            }
            "--main-thread" => main_thread = true,
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(Args {
        workload: workload.ok_or("--workload is required")?,
        scale,
        main_thread,
    })
}

/// The body of every `wp_*` binary: parses the arguments, starts the
/// exporter (without HTTP) for an instrumented variant, runs the workload on
/// the real global allocator, and prints one JSON line to stdout.
///
/// The workload runs on a worker thread that `main` spawns and joins, as a
/// service's work runs on threads of its runtime, so every variant is a
/// multi-threaded process. This matters for glibc: until a process starts
/// its second thread, its malloc skips the atomic operations that guard its
/// arenas, and any second thread (allocmeter's aggregator, a runtime's
/// workers) turns that off for good. A service has lost that fast path
/// anyway; measuring a single-threaded baseline would charge it to
/// allocmeter. `--main-thread` (bare allocators only) runs the workload on
/// the main thread of a process with no other thread, to measure that
/// effect on its own. Fields:
///
/// `variant`, `workload`, `scale`, `wall_ns` (the workload alone, measured
/// inside the process), `checksum`, `peak_rss_bytes` (see [`peak_rss_bytes`];
/// absent where the system does not tell), and for instrumented variants
/// `sample_rate`, `telemetry_bytes` (`Exporter::telemetry_bytes` right after
/// the workload: allocmeter's own memory, allocator and exporter), `samples`, `samples_dropped`, `allocs`, `alloc_bytes`.
///
/// Exits with status 2 on bad arguments.
pub fn main(variant: Variant) {
    let Args {
        workload,
        scale,
        main_thread,
    } = match parse_args() {
        Ok(parsed) => parsed,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("error: {e}");
            }
            eprintln!("{USAGE}");
            std::process::exit(2);
        }
    };
    if main_thread && variant.sample_rate.is_some() {
        eprintln!("error: --main-thread is for bare allocators (the exporter is a thread)");
        std::process::exit(2);
    }
    let exporter = variant.sample_rate.map(|rate| {
        allocmeter_exporter::Exporter::builder()
            .serve_http(false)
            .sample_rate(rate)
            .start()
            .expect("cannot start the exporter")
    });
    let run = {
        let workload = workload.clone();
        move || {
            let start = Instant::now();
            let checksum = match workload.as_str() {
                "json_map" => json_map(scaled(JSON_ENTRIES, scale), JSON_ROUNDS),
                _ => producer_consumer(scaled(MESSAGES, scale)),
            };
            (checksum, start.elapsed().as_nanos() as u64)
        }
    };
    let (checksum, wall_ns) = if main_thread {
        run()
    } else {
        thread::Builder::new()
            .name("worker".into())
            .spawn(run)
            .expect("cannot start the worker thread")
            .join()
            .expect("the workload panicked")
    };
    let mut out = serde_json::json!({
        "variant": variant.name,
        "workload": workload,
        "scale": scale,
        "main_thread": main_thread,
        "wall_ns": wall_ns,
        "checksum": checksum,
    });
    if exporter.is_some() {
        let stats = allocmeter::stats();
        let sampling = allocmeter::profile::sampling_stats();
        out["sample_rate"] = sampling.rate.into();
        out["telemetry_bytes"] = exporter
            .as_ref()
            .map_or(stats.telemetry_bytes, |e| e.telemetry_bytes())
            .into();
        out["samples"] = sampling.samples.into();
        out["samples_dropped"] = sampling.dropped.into();
        out["allocs"] = stats.allocs.into();
        out["alloc_bytes"] = stats.alloc_bytes.into();
    }
    // Stopped before the peak is read, as a service stops it before exiting.
    drop(exporter);
    if let Some(peak) = peak_rss_bytes() {
        out["peak_rss_bytes"] = peak.into();
    }
    println!("{out}");
}

/// This process's peak resident set size (`VmHWM` in `/proc/self/status`),
/// where the system has it (Linux).
///
/// Measured here rather than only from outside: on Linux a child's
/// `ru_maxrss` is at least the RSS its parent had when it forked (the
/// high-water mark survives `exec`), so a runner bigger than the benchmark,
/// such as a Python interpreter, would hide peaks below its own size.
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line
        .trim_start_matches("VmHWM:")
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024)
}

/// `base * scale`, at least 1.
fn scaled(base: usize, scale: f64) -> usize {
    ((base as f64 * scale).round() as usize).max(1)
}

/// Defines the `#[global_allocator]` and `main` of a `wp_*` binary:
///
/// ```ignore
/// allocmeter_benches::whole_program!("System", std::alloc::System = std::alloc::System);
/// allocmeter_benches::whole_program!(
///     "Instrumented<System>",
///     allocmeter::Instrumented<std::alloc::System> = allocmeter::Instrumented::new(std::alloc::System),
///     sample_rate = allocmeter::DEFAULT_SAMPLE_RATE
/// );
/// ```
///
/// The first form is a bare allocator; the second an instrumented one,
/// sampling at `sample_rate` bytes. See [`main`](crate::workload::main).
#[macro_export]
macro_rules! whole_program {
    ($name:literal, $ty:ty = $init:expr) => {
        #[global_allocator]
        static GLOBAL: $ty = $init;

        fn main() {
            $crate::workload::main($crate::workload::Variant {
                name: $name,
                sample_rate: None,
            });
        }
    };
    ($name:literal, $ty:ty = $init:expr, sample_rate = $rate:expr) => {
        #[global_allocator]
        static GLOBAL: $ty = $init;

        fn main() {
            $crate::workload::main($crate::workload::Variant {
                name: $name,
                sample_rate: Some($rate),
            });
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_map_is_deterministic() {
        let a = json_map(500, 2);
        assert_eq!(a, json_map(500, 2));
        assert_ne!(a, json_map(501, 2));
    }

    #[test]
    fn producer_consumer_is_deterministic_whatever_the_order() {
        // Not a multiple of PRODUCERS or BATCH: the remainders are sent too.
        let a = producer_consumer(1001);
        assert_eq!(a, producer_consumer(1001));
        assert_ne!(a, producer_consumer(1000));
    }

    #[test]
    fn log_uniform_stays_in_range() {
        let mut rng = Rng::new(1);
        for _ in 0..10_000 {
            let n = rng.log_uniform(16, 4096);
            assert!((16..=4096).contains(&n));
        }
    }
}
