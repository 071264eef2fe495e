//! Call sites end to end: sampling estimates against exact counts, in-use
//! tracking, the pprof profile decoded in Rust, and sampling at rate 1 under
//! concurrent profile fetches.
//!
//! `harness = false`: the sample rate is process-wide, so the checks run one
//! after another on the main thread (with a deadlock watchdog).

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::HashSet;
use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use allocmeter::Instrumented;
use allocmeter_exporter::{Exporter, SiteReport, SortBy, profile_proto};
use allocmeter_test_support::exporter::{gunzip, loopback, start_built};
use allocmeter_test_support::http;
use allocmeter_test_support::runner;
use prost::Message;

#[global_allocator]
static GLOBAL: Instrumented<System> = Instrumented::new(System);

/// Sizes from 16 B to 64 KiB, log-uniform, from a fixed seed.
fn sizes(seed: u64, n: usize) -> Vec<usize> {
    let mut x = seed;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let u = (x >> 11) as f64 / (1u64 << 53) as f64;
            (16.0 * 4096f64.powf(u)) as usize
        })
        .collect()
}

/// Allocates each size and frees it at once.
#[inline(never)]
fn site_three_and_free(sizes: &[usize]) {
    for &s in sizes {
        drop(black_box(Vec::<u8>::with_capacity(s)));
    }
}

/// Allocates each size and keeps the blocks.
#[inline(never)]
fn site_one_and_keep(sizes: &[usize], keep: &mut Vec<Vec<u8>>) {
    for &s in sizes {
        keep.push(black_box(Vec::with_capacity(s)));
    }
}

/// The sites whose allocating function is `function`, added up (one
/// function can allocate from several lines, each its own site).
fn find(sites: &[SiteReport], function: &str) -> SiteReport {
    let matching: Vec<&SiteReport> = sites
        .iter()
        .filter(|s| s.function.ends_with(function))
        .collect();
    assert!(!matching.is_empty(), "no site for {function}");
    let mut total = matching[0].clone();
    for s in &matching[1..] {
        total.alloc_objects += s.alloc_objects;
        total.alloc_space += s.alloc_space;
        total.inuse_objects += s.inuse_objects;
        total.inuse_space += s.inuse_space;
        total.samples += s.samples;
    }
    total
}

fn within(estimate: f64, truth: f64, tolerance: f64) -> bool {
    (estimate / truth - 1.0).abs() <= tolerance
}

/// The estimates: a 3:1 byte ratio between two sites recovered within 5 %,
/// their total within 5 % of the exact count, in-use within 5 % for the site
/// that keeps its blocks and near zero for the one that frees them.
fn estimates_are_unbiased_and_in_use_follows_frees() {
    const RATE: u64 = 4096;
    let exporter = Exporter::builder()
        .serve_http(false)
        .sample_rate(RATE)
        .start()
        .unwrap();
    let one: Vec<usize> = sizes(1, 8000);
    let three: Vec<usize> = sizes(2, 24_000);
    let (bytes_one, bytes_three) = (
        one.iter().sum::<usize>() as f64,
        three.iter().sum::<usize>() as f64,
    );
    let before = allocmeter::profile::sampling_stats();
    let mut kept = Vec::with_capacity(one.len());
    // Interleave the two sites, 1 : 3 in calls as well as in bytes, in chunks
    // of at most 40 samples (one per allocation at most) for the thread's
    // sample ring (room for a few hundred), and drain after each: this test
    // is about the estimator, not about how fast the aggregator keeps up (a
    // full ring drops samples, and the assertion below would say so).
    let mut exact_bytes = 0;
    for (i, chunk) in one.chunks(10).enumerate() {
        let ((), used) = allocmeter::measure(|| {
            site_one_and_keep(chunk, &mut kept);
            site_three_and_free(&three[i * 30..(i + 1) * 30]);
        });
        exact_bytes += used.alloc_bytes;
        exporter.top_sites(0, SortBy::AllocSpace);
    }
    let sites = exporter.top_sites(100, SortBy::AllocSpace);
    let after = allocmeter::profile::sampling_stats();
    assert_eq!(after.dropped - before.dropped, 0, "no sample was dropped");

    let (s1, s3) = (
        find(&sites, "site_one_and_keep"),
        find(&sites, "site_three_and_free"),
    );
    println!(
        "  samples {} + {}; alloc estimates {:.0} / {:.0} (truth {bytes_one} / {bytes_three}); \
         ratio {:.3}; in use {:.0} (truth {bytes_one}) / {:.0}",
        s1.samples,
        s3.samples,
        s1.alloc_space,
        s3.alloc_space,
        s3.alloc_space / s1.alloc_space,
        s1.inuse_space,
        s3.inuse_space
    );
    assert!(
        within(
            s3.alloc_space / s1.alloc_space,
            bytes_three / bytes_one,
            0.05
        ),
        "3:1 ratio"
    );
    assert!(
        within(s1.alloc_space + s3.alloc_space, exact_bytes as f64, 0.05),
        "total vs exact"
    );
    assert!(
        within(s1.inuse_space, bytes_one, 0.05),
        "kept blocks in use"
    );
    assert!(
        s3.inuse_space <= 0.001 * s3.alloc_space,
        "freed blocks: in use near zero"
    );
    // Object counts are noisier than bytes (a sampled 16-byte block stands
    // for ~256 blocks): check against the estimator's own standard deviation,
    // sqrt(sum(1/p - 1)), at four sigma.
    let sd: f64 = one
        .iter()
        .map(|&size| allocmeter::sample_weight(size as u64, RATE) - 1.0)
        .sum::<f64>()
        .sqrt();
    let error = s1.alloc_objects - one.len() as f64;
    println!(
        "  object estimate {:.0} (truth {}, sd {sd:.0})",
        s1.alloc_objects,
        one.len()
    );
    assert!(
        error.abs() <= 4.0 * sd,
        "object estimate off by {error:.0}, sd {sd:.0}"
    );
    // Freeing the kept blocks brings their in-use estimate down to zero too.
    drop(kept);
    let sites = exporter.top_sites(100, SortBy::AllocSpace);
    let s1 = find(&sites, "site_one_and_keep");
    assert!(
        s1.inuse_space <= 0.001 * s1.alloc_space,
        "in use after freeing: {}",
        s1.inuse_space
    );
    // The stack names the caller beneath the site.
    assert!(s1.stack.iter().any(|f| {
        f.function
            .ends_with("estimates_are_unbiased_and_in_use_follows_frees")
    }));
    drop(exporter);
    allocmeter::set_sample_rate(0);
}

#[inline(never)]
fn profiled_function(keep: &mut Vec<Box<[u8]>>) {
    for i in 0..2000 {
        keep.push(black_box(vec![i as u8; 1024].into_boxed_slice()));
    }
}

/// The profile fetched over HTTP decodes as a valid pprof heap profile.
fn the_heap_profile_over_http_is_valid_pprof() {
    let (_exporter, addr) = start_built(loopback().sample_rate(8192));
    let mut keep = Vec::new();
    profiled_function(&mut keep);
    for (path, default) in [
        ("/debug/pprof/heap", None),
        ("/debug/pprof/allocs", Some("alloc_space")),
    ] {
        let reply = http::fetch_bytes(addr, "GET", path);
        assert_eq!(reply.status, 200, "{path}");
        assert_eq!(
            reply.header("content-type"),
            Some("application/octet-stream")
        );
        let p = profile_proto::Profile::decode(gunzip(&reply.body).as_slice()).expect("decodes");
        let s = |i: i64| p.string_table[i as usize].as_str();
        assert_eq!(p.string_table[0], "");
        let types: Vec<(&str, &str)> = p
            .sample_type
            .iter()
            .map(|t| (s(t.r#type), s(t.unit)))
            .collect();
        assert_eq!(
            types,
            [
                ("alloc_objects", "count"),
                ("alloc_space", "bytes"),
                ("inuse_objects", "count"),
                ("inuse_space", "bytes")
            ]
        );
        let period = p.period_type.as_ref().unwrap();
        assert_eq!(
            (s(period.r#type), s(period.unit), p.period),
            ("space", "bytes", 8192)
        );
        assert_eq!(
            (p.default_sample_type != 0).then(|| s(p.default_sample_type)),
            default
        );
        // Ids: 1..=N, unique, and every reference resolves.
        let ids = |v: Vec<u64>| {
            assert_eq!(
                v,
                (1..=v.len() as u64).collect::<Vec<_>>(),
                "sequential ids"
            );
            v.into_iter().collect::<HashSet<_>>()
        };
        let locations = ids(p.location.iter().map(|l| l.id).collect());
        let functions = ids(p.function.iter().map(|f| f.id).collect());
        let mappings = ids(p.mapping.iter().map(|m| m.id).collect());
        assert!(!p.sample.is_empty());
        for sample in &p.sample {
            assert_eq!(sample.value.len(), 4);
            assert!(sample.location_id.iter().all(|id| locations.contains(id)));
        }
        for l in &p.location {
            assert!(l.mapping_id == 0 || mappings.contains(&l.mapping_id));
            assert!(
                l.line
                    .iter()
                    .all(|line| functions.contains(&line.function_id))
            );
        }
        assert!(
            p.mapping.iter().any(|m| !s(m.build_id).is_empty()),
            "a mapping carries a build id"
        );
        // The sample of profiled_function has ~2 MiB in use, and its leaf
        // location is that function.
        let leaf_name = |sample: &profile_proto::Sample| {
            let loc = p
                .location
                .iter()
                .find(|l| l.id == sample.location_id[0])
                .unwrap();
            let f = p
                .function
                .iter()
                .find(|f| f.id == loc.line[0].function_id)
                .unwrap();
            s(f.name).to_string()
        };
        let inuse: f64 = p
            .sample
            .iter()
            .filter(|x| leaf_name(x).ends_with("profiled_function"))
            .map(|x| x.value[3] as f64)
            .sum();
        // 2000 boxes of 1 KiB, and the Vec holding them (2048 × 16 B).
        let truth = 2000.0 * 1024.0 + 2048.0 * 16.0;
        assert!(within(inuse, truth, 0.25), "in-use estimate {inuse}");
        // The profile agrees with /api/sites about this function (which no
        // longer allocates, unlike the server's own request handling).
        let api = http::fetch(addr, "GET", "/api/sites?top=1000&by=inuse_space");
        let json: serde_json::Value = serde_json::from_str(&api.body).unwrap();
        assert_eq!(json["version"], 1);
        let api_inuse: f64 = json["sites"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| {
                s["function"]
                    .as_str()
                    .unwrap()
                    .ends_with("profiled_function")
            })
            .map(|s| s["inuse_space"].as_f64().unwrap())
            .sum();
        assert!(
            (inuse - api_inuse).abs() <= 2.0,
            "pprof {inuse} vs api {api_inuse}"
        );
    }
    // Bad queries get a clear 400.
    assert_eq!(
        http::fetch(addr, "GET", "/api/sites?by=nonsense").status,
        400
    );
    assert_eq!(http::fetch(addr, "GET", "/api/sites?top=x").status, 400);
    drop(keep);
    allocmeter::set_sample_rate(0);
}

/// Rate 1 (every allocation sampled), several threads allocating, freeing and
/// reallocating, and profiles fetched concurrently, for a bounded time: no
/// deadlock (the watchdog), and every thread's exact counts still match what
/// it did.
fn rate_one_with_concurrent_profile_fetches_stays_exact() {
    let (exporter, addr) = start_built(loopback().sample_rate(1));
    let stop = Arc::new(AtomicBool::new(false));
    let fetchers: Vec<_> = ["/debug/pprof/heap", "/api/sites?top=50", "/metrics"]
        .into_iter()
        .map(|path| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    assert_eq!(http::fetch_bytes(addr, "GET", path).status, 200);
                    n += 1;
                }
                n
            })
        })
        .collect();
    let workers: Vec<_> = (0..4u64)
        .map(|t| {
            std::thread::spawn(move || {
                let deadline = Instant::now() + Duration::from_secs(3);
                let (mut allocs, mut frees, mut bytes, mut freed) = (0u64, 0u64, 0u64, 0u64);
                let mut live: Vec<(*mut u8, Layout)> = Vec::with_capacity(256);
                let mut x = t + 1;
                let ((), used) = allocmeter::measure(|| {
                    while Instant::now() < deadline {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        let size = 1 + (x % 5000) as usize;
                        let layout = Layout::from_size_align(size, 8).unwrap();
                        if live.len() < 200 && x % 3 != 0 {
                            // SAFETY: non-zero size; freed below with the same layout.
                            let p = unsafe { GLOBAL.alloc(layout) };
                            assert!(!p.is_null());
                            live.push((p, layout));
                            allocs += 1;
                            bytes += size as u64;
                        } else if let Some((p, old)) = live.pop() {
                            if x % 2 == 0 {
                                // SAFETY: `p` is live with layout `old`.
                                let q = unsafe { GLOBAL.realloc(p, old, size) };
                                assert!(!q.is_null());
                                live.push((q, layout));
                                // A realloc counts one alloc and one free.
                                allocs += 1;
                                bytes += size as u64;
                                frees += 1;
                                freed += old.size() as u64;
                            } else {
                                // SAFETY: `p` is live with layout `old`.
                                unsafe { GLOBAL.dealloc(p, old) };
                                frees += 1;
                                freed += old.size() as u64;
                            }
                        }
                    }
                    for (p, layout) in live.drain(..) {
                        // SAFETY: `p` is live with `layout`.
                        unsafe { GLOBAL.dealloc(p, layout) };
                        frees += 1;
                        freed += layout.size() as u64;
                    }
                });
                assert_eq!(
                    (used.allocs, used.alloc_bytes),
                    (allocs, bytes),
                    "thread {t} allocations"
                );
                assert_eq!(
                    (used.frees, used.free_bytes),
                    (frees, freed),
                    "thread {t} frees"
                );
                allocs
            })
        })
        .collect();
    let allocs: u64 = workers.into_iter().map(|w| w.join().expect("worker")).sum();
    stop.store(true, Ordering::Relaxed);
    let fetched: u64 = fetchers
        .into_iter()
        .map(|f| f.join().expect("fetcher"))
        .sum();
    let sampling = allocmeter::profile::sampling_stats();
    println!(
        "  {allocs} allocations by 4 threads, {fetched} concurrent fetches; samples {}, dropped {}, frees lost {}",
        sampling.samples, sampling.dropped, sampling.frees_lost
    );
    assert!(fetched >= 3, "fetchers made progress");
    assert!(sampling.samples > 1000);
    allocmeter::set_sample_rate(0);
    drop(exporter);
}

/// Allocates one block: the leaf both calls of [`two_calls_on_one_line`]
/// share.
#[inline(never)]
fn one_site_leaf(keep: &mut Vec<Box<[u8]>>) {
    keep.push(black_box(vec![7u8; 4096].into_boxed_slice()));
}

/// Two calls written as one: both expand onto the line of the invocation
/// (`collapse_debuginfo`), so the two call instructions have different
/// return addresses and the same function, file and line.
#[collapse_debuginfo(yes)]
macro_rules! twice {
    ($call:expr) => {{
        $call;
        $call;
    }};
}

/// Calls [`one_site_leaf`] from two call instructions on one source line,
/// as a runtime's worker loop and a task can call on from two addresses
/// that resolve to the same function and line.
#[inline(never)]
fn two_calls_on_one_line(keep: &mut Vec<Box<[u8]>>) {
    twice!(one_site_leaf(black_box(&mut *keep)));
}

/// Stacks that symbolize to the same frames are one site in the site
/// reports, with their estimates summed; the pprof profile keeps both
/// stacks' locations.
fn stacks_with_the_same_frames_are_one_site() {
    let exporter = Exporter::builder()
        .serve_http(false)
        .sample_rate(1)
        .start()
        .unwrap();
    // Room for every block, so that `keep` itself never grows (its growth
    // would be a third stack with the leaf's frames).
    let mut keep = Vec::with_capacity(100);
    for _ in 0..50 {
        two_calls_on_one_line(&mut keep);
    }
    let sites = exporter.top_sites(1000, SortBy::AllocSpace);
    allocmeter::set_sample_rate(allocmeter::DEFAULT_SAMPLE_RATE);
    let ours: Vec<&SiteReport> = sites
        .iter()
        .filter(|s| s.function.ends_with("one_site_leaf"))
        .collect();
    for s in &ours {
        println!(
            "  {} {:?}:{:?} samples {} frames {:?}",
            s.function,
            s.file,
            s.line,
            s.samples,
            s.stack
                .iter()
                .map(|f| (f.function.as_str(), f.line))
                .take(3)
                .collect::<Vec<_>>()
        );
    }
    assert_eq!(ours.len(), 1, "one site for one function, file and line");
    assert_eq!(ours[0].samples, 100, "both calls' samples in it");
    assert_eq!(ours[0].alloc_objects, 100.0);
    assert_eq!(ours[0].inuse_space, 100.0 * 4096.0);
    // The heap profile keeps both call instructions' stacks apart, as
    // pprof's locations are addresses (pprof merges them by line itself).
    let p = profile_proto::Profile::decode(gunzip(&exporter.heap_profile()).as_slice())
        .expect("the profile decodes");
    let leaf_function = |sample: &profile_proto::Sample| -> String {
        let location = p.location.iter().find(|l| l.id == sample.location_id[0]);
        let function_id = location.and_then(|l| l.line.first()).map(|l| l.function_id);
        let function = p.function.iter().find(|f| Some(f.id) == function_id);
        function.map_or(String::new(), |f| p.string_table[f.name as usize].clone())
    };
    let stacks: HashSet<&[u64]> = p
        .sample
        .iter()
        .filter(|sample| leaf_function(sample).ends_with("one_site_leaf"))
        .map(|sample| sample.location_id.as_slice())
        .collect();
    assert_eq!(stacks.len(), 2, "the profile keeps both stacks");
    drop(keep);
}

/// One program function per way the standard library allocates on a
/// program's behalf; each must name the site of what it allocates.
mod through_std {
    use std::collections::{BTreeMap, HashMap};
    use std::hint::black_box;
    use std::io::{BufReader, Read};
    use std::sync::Arc;

    #[inline(never)]
    pub fn via_format(keep: &mut Vec<Box<dyn std::any::Any>>) {
        keep.push(Box::new(black_box(format!(
            "{}-{}",
            black_box(7),
            "x".repeat(0)
        ))));
    }
    #[inline(never)]
    pub fn via_to_string(keep: &mut Vec<Box<dyn std::any::Any>>) {
        keep.push(Box::new(black_box(black_box(12345u64).to_string())));
    }
    #[inline(never)]
    pub fn via_push_str(keep: &mut Vec<Box<dyn std::any::Any>>) {
        let mut s = String::new();
        s.push_str(black_box("grows the string"));
        keep.push(Box::new(s));
    }
    // The growth on the first push is what this allocates through.
    #[allow(clippy::vec_init_then_push)]
    #[inline(never)]
    pub fn via_vec_push(keep: &mut Vec<Box<dyn std::any::Any>>) {
        let mut v: Vec<u64> = Vec::new();
        v.push(black_box(1));
        keep.push(Box::new(v));
    }
    #[inline(never)]
    pub fn via_collect(keep: &mut Vec<Box<dyn std::any::Any>>) {
        let v: Vec<u64> = (0..black_box(16u64)).collect();
        keep.push(Box::new(v));
    }
    // `Vec::clone` and `String::clone`, not the slices' `to_vec`/`to_owned`.
    #[allow(clippy::ptr_arg)]
    #[inline(never)]
    pub fn via_clone(keep: &mut Vec<Box<dyn std::any::Any>>, v: &Vec<u8>, s: &String) {
        keep.push(Box::new(black_box(v.clone())));
        keep.push(Box::new(black_box(s.clone())));
        keep.push(Box::new(black_box(Box::new(black_box(3u64)).clone())));
    }
    #[inline(never)]
    pub fn via_to_vec(keep: &mut Vec<Box<dyn std::any::Any>>, bytes: &[u8]) {
        keep.push(Box::new(black_box(bytes.to_vec())));
    }
    #[inline(never)]
    pub fn via_box_and_arc(keep: &mut Vec<Box<dyn std::any::Any>>) {
        keep.push(Box::new(black_box(Arc::new(black_box([1u64; 8])))));
    }
    #[inline(never)]
    pub fn via_maps(keep: &mut Vec<Box<dyn std::any::Any>>) {
        let mut h = HashMap::new();
        h.insert(black_box(1u64), 2u64);
        let mut b = BTreeMap::new();
        b.insert(black_box(1u64), 2u64);
        keep.push(Box::new(h));
        keep.push(Box::new(b));
    }
    #[inline(never)]
    pub fn via_read(keep: &mut Vec<Box<dyn std::any::Any>>) {
        let mut data = black_box(&[b'a'; 64][..]);
        let mut bytes = Vec::new();
        let mut reader = BufReader::new(data);
        reader.read_to_end(&mut bytes).unwrap();
        let mut text = String::new();
        data.read_to_string(&mut text).unwrap();
        keep.push(Box::new(bytes));
        keep.push(Box::new(text));
        keep.push(Box::new(reader));
    }
    #[inline(never)]
    pub fn via_spawn(keep: &mut Vec<Box<dyn std::any::Any>>) {
        let handle = std::thread::spawn(|| black_box(1u64));
        keep.push(Box::new(handle.join().unwrap()));
    }
}

/// Every allocation made through the standard library on a program's
/// behalf is named after the program function (never a library or
/// allocmeter frame), whatever the shape of the library function's name:
/// impls on references (`<&mut String as Write>`), on slices
/// (`<[T]>::to_vec`), closures and generic shims.
fn sites_are_named_after_the_program_function() {
    let exporter = Exporter::builder()
        .serve_http(false)
        .sample_rate(1)
        .start()
        .unwrap();
    let mut keep: Vec<Box<dyn std::any::Any>> = Vec::with_capacity(1000);
    let (v, s) = (vec![1u8; 100], String::from("a string to clone"));
    for _ in 0..3 {
        through_std::via_format(&mut keep);
        through_std::via_to_string(&mut keep);
        through_std::via_push_str(&mut keep);
        through_std::via_vec_push(&mut keep);
        through_std::via_collect(&mut keep);
        through_std::via_clone(&mut keep, &v, &s);
        through_std::via_to_vec(&mut keep, &v);
        through_std::via_box_and_arc(&mut keep);
        through_std::via_maps(&mut keep);
        through_std::via_read(&mut keep);
        through_std::via_spawn(&mut keep);
    }
    let sites = exporter.top_sites(1000, SortBy::AllocObjects);
    allocmeter::set_sample_rate(allocmeter::DEFAULT_SAMPLE_RATE);
    let mut wrong = Vec::new();
    for site in &sites {
        // Each site whose stack passes through one of the functions above
        // must be named after that function.
        let Some(caller) = site
            .stack
            .iter()
            .find(|f| f.function.contains("through_std::via_"))
        else {
            continue;
        };
        if site.function != caller.function {
            wrong.push(format!("{} (for {})", site.function, caller.function));
        }
    }
    let named: HashSet<&str> = sites
        .iter()
        .filter(|s| s.function.contains("through_std::via_"))
        .map(|s| s.function.as_str())
        .collect();
    println!("  {} sites named after the program: {named:?}", named.len());
    assert!(
        wrong.is_empty(),
        "sites named after library code: {wrong:#?}"
    );
    assert_eq!(named.len(), 11, "every path has its site: {named:?}");
    drop(keep);
}

/// Go's `net/http/pprof` semantics for what is served: the index, the
/// legacy text form, `gc` ignored, `seconds` and unknown parameters
/// refused, and the profiles not served answered with a 404 that says so.
fn the_pprof_endpoints_answer_as_go_s_do() {
    let (_exporter, addr) = start_built(loopback().sample_rate(4096));
    let mut keep = Vec::new();
    site_one_and_keep(&sizes(11, 2000), &mut keep);

    let index = http::fetch(addr, "GET", "/debug/pprof/");
    assert_eq!(index.status, 200);
    assert!(
        index
            .header("content-type")
            .unwrap()
            .starts_with("text/html")
    );
    for link in ["href='allocs?debug=1'", "href='heap?debug=1'"] {
        assert!(index.body.contains(link), "{}", index.body);
    }
    assert_eq!(http::fetch(addr, "GET", "/debug/pprof").status, 200);

    // The legacy text form: a header whose totals are the records' sums,
    // records with their return addresses, frames named under them.
    let text = http::fetch(addr, "GET", "/debug/pprof/heap?debug=1");
    assert_eq!(text.status, 200);
    assert!(
        text.header("content-type")
            .unwrap()
            .starts_with("text/plain")
    );
    let body = &text.body;
    let mut lines = body.lines();
    let header = lines.next().unwrap();
    let numbers = |line: &str| -> Vec<i64> {
        line.split(['[', ']', ':', ' ', '@'])
            .filter_map(|w| w.parse().ok())
            .take(4)
            .collect()
    };
    assert!(header.starts_with("heap profile: ") && header.ends_with(" @ heap/2"));
    let total = numbers(header.trim_start_matches("heap profile: "));
    let mut sum = [0i64; 4];
    let mut records = 0;
    for line in body.lines().skip(1) {
        if !line.starts_with('#') && line.contains(" @ 0x") {
            records += 1;
            for (s, v) in sum.iter_mut().zip(numbers(line)) {
                *s += v;
            }
        }
    }
    assert!(records > 0, "{body}");
    assert_eq!(&total[..3], &sum[..3], "{header}");
    assert!((total[3] - sum[3]).abs() <= 1, "{header}");
    assert!(
        body.lines()
            .any(|l| l.starts_with("#\t0x") && l.contains("site_one_and_keep")),
        "{body}"
    );
    assert!(body.contains("\n# allocmeter stats\n# Alloc = "));
    assert_eq!(
        http::fetch(addr, "GET", "/debug/pprof/allocs?debug=2").status,
        200
    );

    // gc is accepted and ignored: the binary profile as without it.
    let gc = http::fetch_bytes(addr, "GET", "/debug/pprof/heap?gc=1");
    assert_eq!(gc.status, 200);
    let decoded = profile_proto::Profile::decode(&gunzip(&gc.body)[..]).unwrap();
    assert!(!decoded.sample.is_empty());

    // Refused, with a short text saying why.
    for (path, says) in [
        (
            "/debug/pprof/allocs?seconds=0",
            "seconds must be a whole number from 1 to 300",
        ),
        ("/debug/pprof/allocs?seconds=301", "seconds must be"),
        ("/debug/pprof/heap?seconds=x", "seconds must be"),
        (
            "/debug/pprof/heap?seconds=2&debug=1",
            "seconds and debug params are incompatible",
        ),
        ("/debug/pprof/heap?debug=x", "debug must be"),
        ("/debug/pprof/heap?nonsense=1", "unknown parameter"),
    ] {
        let reply = http::fetch(addr, "GET", path);
        assert_eq!(reply.status, 400, "{path}");
        assert!(reply.body.contains(says), "{path}: {}", reply.body);
    }
    for name in [
        "profile?seconds=14",
        "block",
        "mutex",
        "goroutine",
        "threadcreate",
        "cmdline",
        "symbol",
        "trace",
    ] {
        let reply = http::fetch(addr, "GET", &format!("/debug/pprof/{name}"));
        assert_eq!(reply.status, 404, "{name}");
        assert!(
            reply
                .body
                .contains("not served: allocmeter serves the heap profiles only"),
            "{name}: {}",
            reply.body
        );
    }
    assert_eq!(
        http::fetch(addr, "GET", "/debug/pprof/nonsense").status,
        404
    );
    drop(keep);
}

/// Kept blocks of 64 KiB, allocated before a delta profile's window and
/// not after.
#[inline(never)]
fn site_done_before_the_window(keep: &mut Vec<Vec<u8>>) {
    for _ in 0..200 {
        keep.push(black_box(Vec::with_capacity(64 << 10)));
    }
}

/// `n` blocks of 64 KiB, each freed at once.
#[inline(never)]
fn site_in_the_window(n: usize) {
    for _ in 0..n {
        drop(black_box(Vec::<u8>::with_capacity(64 << 10)));
    }
}

/// The total of `field` over the samples whose stack has a function named
/// `name`.
fn total_for(p: &profile_proto::Profile, name: &str, field: usize) -> Option<i64> {
    let s = |i: i64| p.string_table[i as usize].as_str();
    let named: HashSet<u64> = p
        .function
        .iter()
        .filter(|f| s(f.name).ends_with(name))
        .map(|f| f.id)
        .collect();
    let at: HashSet<u64> = p
        .location
        .iter()
        .filter(|l| l.line.iter().any(|line| named.contains(&line.function_id)))
        .map(|l| l.id)
        .collect();
    let samples: Vec<i64> = p
        .sample
        .iter()
        .filter(|x| x.location_id.iter().any(|id| at.contains(id)))
        .map(|x| x.value[field])
        .collect();
    (!samples.is_empty()).then(|| samples.iter().sum())
}

/// `/debug/pprof/allocs?seconds=N` at the default rate: answered after N
/// seconds with what was allocated in between (512 MiB in 64 KiB blocks at
/// a known site, about 1,000 expected samples: within ±10 %), without the
/// site that allocated only before; and scrapes and other requests are
/// answered meanwhile.
fn a_delta_profile_holds_what_was_allocated_in_its_window() {
    let (_exporter, addr) = start_built(loopback().sample_rate(allocmeter::DEFAULT_SAMPLE_RATE));
    let mut keep = Vec::new();
    site_done_before_the_window(&mut keep);
    const WINDOW: u64 = 4;
    let asked = Instant::now();
    let delta = std::thread::spawn(move || {
        let reply = http::fetch_bytes(
            addr,
            "GET",
            &format!("/debug/pprof/allocs?seconds={WINDOW}"),
        );
        (reply, Instant::now())
    });
    // The baseline is taken as soon as the profiles' worker picks the
    // request up (at once: it is idle); then, well inside the window, the
    // window's allocations (a tenth of a second).
    std::thread::sleep(Duration::from_millis(1000));
    const BLOCKS: usize = 8192;
    site_in_the_window(BLOCKS);
    // Meanwhile the other requests are answered.
    for path in ["/metrics", "/api/snapshot", "/debug/pprof/heap"] {
        assert_eq!(http::fetch_bytes(addr, "GET", path).status, 200, "{path}");
    }
    let others_done = Instant::now();
    let (reply, received) = delta.join().unwrap();
    assert_eq!(reply.status, 200);
    assert!(
        others_done < received,
        "the others were answered while the delta waited"
    );
    assert!(
        received - asked >= Duration::from_secs(WINDOW),
        "held for its window: {:?}",
        received - asked
    );
    let p = profile_proto::Profile::decode(gunzip(&reply.body).as_slice()).expect("decodes");
    let exact = (BLOCKS * (64 << 10)) as f64;
    let estimated = total_for(&p, "site_in_the_window", 1).expect("the window's site") as f64;
    let expected_samples = exact / allocmeter::DEFAULT_SAMPLE_RATE as f64;
    println!(
        "  delta over {WINDOW} s: {estimated:.0} bytes estimated at the window's site, {exact:.0} \
         exact ({:+.1} %, about {expected_samples:.0} samples expected)",
        (estimated / exact - 1.0) * 100.0
    );
    assert!(expected_samples >= 1000.0);
    assert!(
        (estimated / exact - 1.0).abs() <= 0.10,
        "{estimated} vs {exact}"
    );
    assert_eq!(
        total_for(&p, "site_done_before_the_window", 1),
        None,
        "a site that allocated only before the window is not in it"
    );
    drop(keep);
}

/// At most `MAX_DEFERRED` delta profiles wait at once: one more is
/// answered 503 at once, and the others in their time.
fn delta_profiles_waiting_at_once_are_bounded() {
    let (_exporter, addr) = start_built(loopback());
    let max = allocmeter_exporter::limits::MAX_DEFERRED;
    let waiting: Vec<_> = (0..max)
        .map(|_| {
            std::thread::spawn(move || {
                http::fetch_bytes(addr, "GET", "/debug/pprof/allocs?seconds=2").status
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(700));
    let one_more = http::fetch_bytes(addr, "GET", "/debug/pprof/heap?seconds=2");
    assert_eq!(one_more.status, 503);
    let statuses: Vec<u16> = waiting.into_iter().map(|t| t.join().unwrap()).collect();
    assert_eq!(statuses, vec![200; max]);
}

fn main() {
    runner::run(
        &[
            (
                "estimates_are_unbiased_and_in_use_follows_frees",
                estimates_are_unbiased_and_in_use_follows_frees,
            ),
            (
                "the_heap_profile_over_http_is_valid_pprof",
                the_heap_profile_over_http_is_valid_pprof,
            ),
            (
                "rate_one_with_concurrent_profile_fetches_stays_exact",
                rate_one_with_concurrent_profile_fetches_stays_exact,
            ),
            (
                "stacks_with_the_same_frames_are_one_site",
                stacks_with_the_same_frames_are_one_site,
            ),
            (
                "sites_are_named_after_the_program_function",
                sites_are_named_after_the_program_function,
            ),
            (
                "the_pprof_endpoints_answer_as_go_s_do",
                the_pprof_endpoints_answer_as_go_s_do,
            ),
            (
                "a_delta_profile_holds_what_was_allocated_in_its_window",
                a_delta_profile_holds_what_was_allocated_in_its_window,
            ),
            (
                "delta_profiles_waiting_at_once_are_bounded",
                delta_profiles_waiting_at_once_are_bounded,
            ),
        ],
        Duration::from_secs(240),
    );
}
