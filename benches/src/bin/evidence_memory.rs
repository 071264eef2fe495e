//! What the exporter's site table holds per live sample and per call site,
//! measured as allocmeter's own heap (`allocmeter::stats_split().internal`:
//! the exporter's threads' live bytes, exact) before and after the table
//! takes them in:
//!
//! ```sh
//! cargo run --release -p allocmeter-benches --bin evidence_memory
//! ```
//!
//! At sample rate 1 (every allocation sampled, weight 1), the main thread
//!
//! 1. allocates one 64 B block and frees it at each of [`SITES`] call
//!    sites (distinct stacks, from a binary recursion of two functions):
//!    each site's raw stack, its map entry, and (with the hints' evidence)
//!    its evidence;
//! 2. keeps [`LIVE`] 64 B blocks from one call site: each is a live sample
//!    in the table's map until its free.
//!
//! After each step it waits until the exporter has drained (allocmeter's
//! own heap unchanged over [`STABLE_READS`] reads [`READ_EVERY`] apart) and
//! prints the bytes added per site and per live sample, with the exporter's
//! stated bound ([`allocmeter_exporter::Exporter::telemetry_bound`]). Built
//! at two commits, the difference per site is what the evidence costs.
//! The counts are exact; a figure includes what the table's containers
//! grew by for those entries (a hash map doubles), so it depends on the
//! count (given in the output). `benches/sections/hints_evidence.md` gives
//! the figures.

use std::alloc::System;
use std::hint::black_box;
use std::thread;
use std::time::{Duration, Instant};

use allocmeter::Instrumented;
use allocmeter_exporter::{Exporter, SortBy};

#[global_allocator]
static GLOBAL: Instrumented<System> = Instrumented::new(System);

/// Call sites of step 1: the 2^[`LEVELS`] paths of the recursion, fewer than
/// the sites that can hold evidence (1024).
const SITES: u32 = 1 << LEVELS;
const LEVELS: u32 = 9;
/// Live samples of step 2: about 85 % of a power of two, where a hash
/// map's table is as full as it gets before it doubles.
const LIVE: usize = 27_800;
/// Blocks allocated between pauses that let the exporter drain, so that
/// no sample is carried for a full ring.
const BATCH: usize = 256;
const STABLE_READS: u32 = 5;
const READ_EVERY: Duration = Duration::from_millis(300);

/// allocmeter's own live bytes: the exporter's threads' heap.
fn own_bytes() -> u64 {
    allocmeter::stats_split().internal.live_bytes
}

/// Waits until [`own_bytes`] holds still (the exporter has drained what
/// there was), and returns it.
fn settled() -> u64 {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = own_bytes();
    let mut same = 0;
    while same < STABLE_READS {
        thread::sleep(READ_EVERY);
        let now = own_bytes();
        if now == last {
            same += 1;
        } else {
            (last, same) = (now, 0);
        }
        if Instant::now() > deadline {
            eprintln!("warning: allocmeter's own heap did not hold still in 60 s");
            break;
        }
    }
    last
}

/// One 64 B block allocated and freed at the leaf of the path `bits`.
#[inline(never)]
fn via_a(bits: u32, level: u32) {
    black_box(0u8);
    step(bits, level);
}

#[inline(never)]
fn via_b(bits: u32, level: u32) {
    black_box(1u8);
    step(bits, level);
}

#[inline(never)]
fn step(bits: u32, level: u32) {
    if level == 0 {
        drop(black_box(Box::new([0u64; 8])));
    } else if bits & 1 == 0 {
        via_a(black_box(bits >> 1), level - 1);
    } else {
        via_b(black_box(bits >> 1), level - 1);
    }
    // Not a tail call: every level keeps its frame.
    black_box(());
}

fn main() {
    allocmeter::set_stack_depth(64);
    let exporter = Exporter::builder()
        .serve_http(false)
        .start()
        .expect("the exporter starts");
    let bound = exporter.telemetry_bound();
    let mut kept: Vec<Box<[u64; 8]>> = {
        let _unsampled = allocmeter::profile::suspend_sampling();
        Vec::with_capacity(LIVE)
    };
    let s0 = allocmeter::profile::sampling_stats();
    allocmeter::set_sample_rate(1);
    let before_sites = settled();
    for bits in 0..SITES {
        step(bits, LEVELS);
        if bits as usize % BATCH == BATCH - 1 {
            thread::sleep(Duration::from_millis(20));
        }
    }
    let after_sites = settled();
    for i in 0..LIVE {
        kept.push(Box::new([i as u64; 8]));
        if i % BATCH == BATCH - 1 {
            thread::sleep(Duration::from_millis(20));
        }
    }
    let after_live = settled();
    allocmeter::set_sample_rate(0);
    let s1 = allocmeter::profile::sampling_stats();
    let in_use = {
        let _unsampled = allocmeter::profile::suspend_sampling();
        exporter
            .top_sites(1, SortBy::InuseObjects)
            .first()
            .map_or(0.0, |s| s.inuse_objects)
    };
    let sites_bytes = after_sites - before_sites;
    let live_bytes = after_live - after_sites;
    println!("sites: {SITES} call sites, allocmeter's own heap +{sites_bytes} B");
    println!("per site: {:.1} B", sites_bytes as f64 / f64::from(SITES));
    println!("live samples: {LIVE}, allocmeter's own heap +{live_bytes} B");
    println!("per live sample: {:.1} B", live_bytes as f64 / LIVE as f64);
    println!(
        "samples taken {}, dropped {}; top site's in-use objects {in_use}",
        s1.samples - s0.samples,
        s1.dropped - s0.dropped,
    );
    println!("telemetry_bound at start: {bound} B");
    drop(kept);
}
