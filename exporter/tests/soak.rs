//! The soak test: everything at once, for a bounded time, under a watchdog.
//!
//! - Worker threads allocate, free and reallocate blocks of random sizes
//!   (1 B to 64 KiB, log-uniform), hand some to other workers to free, and
//!   exit after a short random life; a spawner keeps replacing them, so
//!   threads start and exit all the time (slots are claimed and released).
//! - Sampling is switched between every allocation (rate 1), off, 4 KiB and
//!   the default every 50 ms.
//! - A real exporter serves while two clients scrape `/metrics` and fetch the
//!   profiles and the JSON API; a third reads `allocmeter::stats()` in
//!   process.
//!
//! What it asserts:
//! - no counter ever goes down between two scrapes (every `_total`, `_count`,
//!   `_sum` and `_bucket` series of `/metrics`, and the counters of
//!   `stats()`); every response is a 200 with a well-formed body;
//! - afterwards, with every thread stopped, allocmeter's live bytes and live
//!   objects equal, exactly, those kept by an independent counting allocator
//!   that sits under allocmeter and sees every request;
//! - the whole run ends within its time plus a minute, or the watchdog
//!   aborts the process (a hang is a deadlock).
//!
//! `ALLOCMETER_SOAK_SECS` sets the duration (default 30; set 60 or more
//! for a longer run).

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::BTreeMap;
use std::hint::black_box;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use allocmeter::Instrumented;
use allocmeter_test_support::exporter::start_exporter;
use allocmeter_test_support::http::{fetch, fetch_bytes};
use allocmeter_test_support::prometheus_text::parse_samples;

/// An allocator that keeps its own live count, independently of allocmeter.
struct Counting;

static LIVE_BYTES: AtomicI64 = AtomicI64::new(0);
static LIVE_OBJECTS: AtomicI64 = AtomicI64::new(0);

// SAFETY: every method forwards to `System` with the caller's arguments and
// returns its result; the bookkeeping only touches two atomics.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller upholds `alloc`'s contract.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            LIVE_BYTES.fetch_add(layout.size() as i64, Ordering::Relaxed);
            LIVE_OBJECTS.fetch_add(1, Ordering::Relaxed);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as for `alloc`.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            LIVE_BYTES.fetch_add(layout.size() as i64, Ordering::Relaxed);
            LIVE_OBJECTS.fetch_add(1, Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE_BYTES.fetch_sub(layout.size() as i64, Ordering::Relaxed);
        LIVE_OBJECTS.fetch_sub(1, Ordering::Relaxed);
        // SAFETY: the caller upholds `dealloc`'s contract.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller upholds `realloc`'s contract.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            LIVE_BYTES.fetch_add(new_size as i64 - layout.size() as i64, Ordering::Relaxed);
        }
        p
    }
}

#[global_allocator]
static GLOBAL: Instrumented<Counting> = Instrumented::new(Counting);

/// Workers alive at once.
const WORKERS: usize = 6;

fn soak_secs() -> u64 {
    std::env::var("ALLOCMETER_SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(30)
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// 1 B to 64 KiB, log-uniform.
    fn size(&mut self) -> usize {
        let bits = self.next() % 17;
        1 + (self.next() as usize & ((1usize << bits) - 1))
    }
}

/// One worker's life: a few thousand random operations on its own blocks,
/// plus blocks handed over by other workers.
fn worker(seed: u64, handoff: &Mutex<Vec<Vec<u8>>>) {
    let mut rng = Rng(seed | 1);
    let mut blocks: Vec<Vec<u8>> = Vec::new();
    let ops = 200 + rng.next() % 4000;
    for _ in 0..ops {
        match rng.next() % 10 {
            0..=3 => blocks.push(black_box(Vec::with_capacity(rng.size()))),
            4 | 5 if !blocks.is_empty() => {
                let i = rng.next() as usize % blocks.len();
                drop(blocks.swap_remove(i));
            }
            6 if !blocks.is_empty() => {
                let i = rng.next() as usize % blocks.len();
                let extra = rng.size();
                let want = blocks[i].capacity() + extra;
                blocks[i].reserve_exact(want);
            }
            7 if !blocks.is_empty() => {
                let i = rng.next() as usize % blocks.len();
                blocks[i].shrink_to(rng.size() / 2);
            }
            8 if !blocks.is_empty() => {
                // Freed by whichever worker takes it.
                let mut pool = handoff.lock().unwrap();
                if pool.len() < 1024 {
                    pool.push(blocks.swap_remove(0));
                }
            }
            _ => {
                let taken = handoff.lock().unwrap().pop();
                drop(taken);
            }
        }
        if blocks.len() > 256 {
            blocks.truncate(128);
        }
    }
}

/// Asserts that no series in `now` went below its value in `before`.
fn assert_never_down(before: &BTreeMap<String, f64>, now: &BTreeMap<String, f64>) {
    for (series, &value) in now {
        let monotonic = ["_total", "_count", "_sum", "_bucket"].iter().any(|s| {
            series
                .split('{')
                .next()
                .is_some_and(|name| name.ends_with(s))
        });
        if !monotonic {
            continue;
        }
        if let Some(&old) = before.get(series) {
            assert!(
                value >= old,
                "{series} went down between scrapes: {old} -> {value}"
            );
        }
    }
}

#[test]
fn everything_at_once_loses_no_count_and_never_hangs() {
    let secs = soak_secs();
    let finished = Arc::new(AtomicBool::new(false));
    {
        let finished = finished.clone();
        let limit = Duration::from_secs(secs + 60);
        std::thread::spawn(move || {
            let start = Instant::now();
            while start.elapsed() < limit {
                if finished.load(Ordering::Acquire) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            eprintln!(
                "watchdog: the soak test is still running after {limit:?}: deadlock? aborting"
            );
            std::process::abort();
        });
    }

    let (exporter, addr) = start_exporter(Duration::from_millis(100));
    let deadline = Instant::now() + Duration::from_secs(secs);
    let stop = Arc::new(AtomicBool::new(false));
    let handoff: Arc<Mutex<Vec<Vec<u8>>>> = Arc::new(Mutex::new(Vec::with_capacity(1024)));

    // Threads starting and exiting all the time.
    let spawned = Arc::new(AtomicU64::new(0));
    let spawner = {
        let (stop, spawned) = (stop.clone(), spawned.clone());
        let handoff = handoff.clone();
        std::thread::spawn(move || {
            let mut live: Vec<std::thread::JoinHandle<()>> = Vec::new();
            let mut seed = 0x9E37_79B9_7F4A_7C15u64;
            while !stop.load(Ordering::Relaxed) {
                live.retain(|h| !h.is_finished());
                while live.len() < WORKERS {
                    seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
                    let h = handoff.clone();
                    live.push(std::thread::spawn(move || worker(seed, &h)));
                    spawned.fetch_add(1, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            for h in live {
                h.join().expect("worker panicked");
            }
        })
    };

    // Sampling switched on and off.
    let toggler = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let rates = [1, 0, 4096, allocmeter::DEFAULT_SAMPLE_RATE, 0];
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                allocmeter::set_sample_rate(rates[i % rates.len()]);
                i += 1;
                std::thread::sleep(Duration::from_millis(50));
            }
            allocmeter::set_sample_rate(allocmeter::DEFAULT_SAMPLE_RATE);
        })
    };

    // Scraping /metrics, and the JSON API.
    let scraper = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut previous = BTreeMap::new();
            let mut scrapes = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let reply = fetch(addr, "GET", "/metrics");
                assert_eq!(reply.status, 200, "/metrics");
                let now = parse_samples(&reply.body);
                assert!(now.contains_key("allocmeter_alloc_bytes_total"));
                assert_never_down(&previous, &now);
                previous = now;
                for path in ["/api/snapshot", "/api/history", "/api/spikes"] {
                    let reply = fetch(addr, "GET", path);
                    assert_eq!(reply.status, 200, "{path}");
                    let v: serde_json::Value =
                        serde_json::from_str(&reply.body).expect("JSON body");
                    assert_eq!(v["version"], 1, "{path}");
                }
                scrapes += 1;
            }
            scrapes
        })
    };

    // Profiles and sites.
    let profiler = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut fetched = 0u64;
            while !stop.load(Ordering::Relaxed) {
                for path in ["/debug/pprof/heap", "/debug/pprof/allocs"] {
                    let reply = fetch_bytes(addr, "GET", path);
                    assert_eq!(reply.status, 200, "{path}");
                    assert_eq!(&reply.body[..2], [0x1f, 0x8b], "{path} is gzip");
                }
                let reply = fetch(addr, "GET", "/api/sites?top=50&by=alloc_space");
                assert_eq!(reply.status, 200, "/api/sites");
                let v: serde_json::Value = serde_json::from_str(&reply.body).expect("JSON");
                assert!(v["sites"].is_array());
                fetched += 1;
            }
            fetched
        })
    };

    // In process: the counters of stats() never go down either.
    let reader = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut last = allocmeter::stats();
            let mut reads = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let s = allocmeter::stats();
                let pairs = [
                    (last.alloc_bytes, s.alloc_bytes, "alloc_bytes"),
                    (last.allocs, s.allocs, "allocs"),
                    (last.free_bytes, s.free_bytes, "free_bytes"),
                    (last.frees, s.frees, "frees"),
                    (last.reallocs.total(), s.reallocs.total(), "reallocs"),
                ];
                for (before, now, name) in pairs {
                    assert!(now >= before, "stats().{name} went down: {before} -> {now}");
                }
                assert!(s.frees <= s.allocs, "more frees than allocations seen");
                last = s;
                reads += 1;
            }
            reads
        })
    };

    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    stop.store(true, Ordering::Relaxed);
    spawner.join().expect("spawner");
    toggler.join().expect("toggler");
    let scrapes = scraper.join().expect("scraper: see its assertion above");
    let profiles = profiler.join().expect("profiler: see its assertion above");
    let reads = reader.join().expect("reader: see its assertion above");
    drop(handoff);
    exporter.shutdown();

    // Every thread but this one has stopped and been joined (the
    // exporter's too: `shutdown` joins them), and the watchdog does not
    // allocate while it waits: the two live counts must agree exactly.
    let stats = allocmeter::stats();
    let (bytes, objects) = (
        LIVE_BYTES.load(Ordering::Relaxed),
        LIVE_OBJECTS.load(Ordering::Relaxed),
    );
    finished.store(true, Ordering::Release);
    println!(
        "soak: {secs} s, {} worker threads, {scrapes} scrapes, {profiles} profile rounds, {reads} stats() reads; live {} B in {} objects",
        spawned.load(Ordering::Relaxed),
        stats.live_bytes,
        stats.live_objects
    );
    assert_eq!(
        stats.live_bytes as i64, bytes,
        "live bytes: allocmeter vs the counting allocator"
    );
    assert_eq!(
        stats.live_objects as i64, objects,
        "live objects: allocmeter vs the counting allocator"
    );
    assert!(
        spawned.load(Ordering::Relaxed) > 100,
        "threads came and went"
    );
    assert!(
        scrapes > 10 && profiles > 3,
        "the clients got through: {scrapes} scrapes, {profiles} profile rounds"
    );
}
