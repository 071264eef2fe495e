//! Helpers shared by the benchmarks in `benches/`.
//!
//! Criterion records times only. The benchmarks also record a few counts per
//! benchmark (samples taken and dropped, stack frames captured, false
//! positives...) with [`write_extra`], next to criterion's own results, for
//! `benches/report.py` to print with the times.

use std::fmt::Write as _;
use std::path::PathBuf;

pub mod workload;

/// Entries in the table of mixed sizes (a power of two, so indexing is a mask).
pub const TABLE_LEN: usize = 4096;

/// Sizes from 16 B to 4 KiB, log-uniform, from a fixed-seed xorshift64 so
/// that every run, benchmark and allocator sees the same sequence.
pub fn mixed_sizes() -> [u16; TABLE_LEN] {
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut table = [0u16; TABLE_LEN];
    for entry in &mut table {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        // Uniform in [0, 1) from the top 53 bits.
        let u = (state >> 11) as f64 / (1u64 << 53) as f64;
        // 2^(4 + 8u): log2 uniform in [4, 12], so 16 B ..= 4096 B.
        let size = (4.0 + 8.0 * u).exp2().round() as u16;
        *entry = size.clamp(16, 4096);
    }
    table
}

/// Where criterion writes its results: `$CRITERION_HOME`, else
/// `$CARGO_TARGET_DIR/criterion`, else the workspace's `target/criterion`.
pub fn criterion_dir() -> PathBuf {
    if let Some(home) = std::env::var_os("CRITERION_HOME") {
        return PathBuf::from(home);
    }
    if let Some(target) = std::env::var_os("CARGO_TARGET_DIR") {
        return PathBuf::from(target).join("criterion");
    }
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../target/criterion"))
}

/// Writes `fields` for one benchmark to
/// `<criterion dir>/allocmeter-extra/<group>__<function>.json`, replacing the
/// file of an earlier run. Errors are printed, not raised: the times matter
/// more than the extras.
pub fn write_extra(group: &str, function: &str, fields: &[(&str, f64)]) {
    let dir = criterion_dir().join("allocmeter-extra");
    let file_name: String = format!("{group}__{function}")
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    let mut json = format!(
        "{{\"group\": \"{}\", \"function\": \"{}\"",
        escape(group),
        escape(function)
    );
    for (key, value) in fields {
        let value = if value.is_finite() {
            value.to_string()
        } else {
            "null".to_string()
        };
        let _ = write!(json, ", \"{}\": {value}", escape(key));
    }
    json.push_str("}\n");
    let written = std::fs::create_dir_all(&dir)
        .and_then(|()| std::fs::write(dir.join(format!("{file_name}.json")), json));
    if let Err(e) = written {
        eprintln!("allocmeter-benches: cannot write extras to {dir:?}: {e}");
    }
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}
