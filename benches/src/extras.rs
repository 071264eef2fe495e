//! The extras: counts a benchmark records next to criterion's results
//! (criterion records times only), as one JSON file per benchmark under
//! `<criterion dir>/allocmeter-extra/`, for `benches/run_all.py` and
//! `benches/report.py` to print with the times.

use std::fmt::Write as _;
use std::path::PathBuf;

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
