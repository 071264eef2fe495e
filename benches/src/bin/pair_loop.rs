//! A bare loop of 64 B alloc+free pairs on the main thread, for counting
//! instructions under cachegrind, where wall time on a shared machine is
//! noisy and instruction counts are not:
//!
//! ```sh
//! cargo build --release -p allocmeter-benches --bin pair_loop
//! valgrind --tool=cachegrind --cache-sim=no --cachegrind-out-file=/dev/null \
//!     target/release/pair_loop instrumented 2000000
//! ```
//!
//! The first argument picks the allocator: `system` (`System`),
//! `instrumented` (`Instrumented<System>` at the default sample rate),
//! `suspended` (the same with sampling suspended on the thread: counted,
//! never sampled) or `off` (the same at sample rate 0). The second is the
//! number of pairs. The loop is [`allocmeter_benches::fixed_64`], the one
//! `pairs.rs` times. Instructions per pair are the difference between two
//! runs of different lengths divided by the difference in pairs, which
//! cancels the process's start and exit (`benches/sections/hints_evidence.md`
//! gives the figures). Prints the samples taken and dropped to stderr.

use std::alloc::{GlobalAlloc, System};
use std::hint::black_box;

use allocmeter::Instrumented;
use allocmeter_benches::fixed_64;

static INSTRUMENTED: Instrumented<System> = Instrumented::new(System);

fn run<A: GlobalAlloc>(a: &A, pairs: u64) {
    // The thread's first call claims its allocmeter slot: not in the loop.
    black_box(fixed_64(a, 1));
    black_box(fixed_64(a, pairs));
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: pair_loop <system|instrumented|suspended|off> <pairs>";
    let (Some(which), Some(pairs)) = (args.get(1), args.get(2)) else {
        eprintln!("{usage}");
        std::process::exit(2);
    };
    let Ok(pairs) = pairs.parse::<u64>() else {
        eprintln!("{usage}: <pairs> is a count, not {pairs:?}");
        std::process::exit(2);
    };
    match which.as_str() {
        "system" => run(&System, pairs),
        "instrumented" => run(&INSTRUMENTED, pairs),
        "suspended" => {
            let _suspended = allocmeter::profile::suspend_sampling();
            run(&INSTRUMENTED, pairs);
        }
        "off" => {
            allocmeter::set_sample_rate(0);
            run(&INSTRUMENTED, pairs);
        }
        other => {
            eprintln!("{usage}: unknown allocator {other:?}");
            std::process::exit(2);
        }
    }
    let s = allocmeter::profile::sampling_stats();
    eprintln!(
        "pair_loop {which} {pairs}: {} samples taken, {} dropped",
        s.samples, s.dropped
    );
}
