//! The heap profile in Go's legacy text form (`?debug=1`), which people read
//! with `curl` and `go tool pprof` still parses:
//!
//! ```text
//! heap profile: 12: 40960 [1300: 5324800] @ heap/2
//! 12: 40960 [1300: 5324800] @ 0x55d1c2a4b1f2 0x55d1c2a4b8e0
//! #   0x55d1c2a4b1f2  demo::build_report  /src/demo.rs:112
//! #   0x55d1c2a4b8e0  demo::worker  /src/demo.rs:132
//!
//! # allocmeter stats
//! # Alloc = 40960
//! ...
//!
//! --- Memory map: ---
//! 55d1c2a00000-55d1c2c00000 r-xp 00000000 00:00 0 /srv/demo
//! ```
//!
//! The header and each record are `inuse objects: inuse bytes [alloc
//! objects: alloc bytes]`, then the record's return addresses; the `#`
//! lines under a record name its frames (innermost first, inlined
//! functions included; tab-separated, as Go writes them). Go's records
//! are raw sample counts that pprof scales by the rate in the header
//! (`heap/` twice the rate). allocmeter's
//! are estimates already scaled by each sample's own weight, so the header
//! says `heap/2` (a rate of one byte, under which pprof's scaling changes
//! nothing), and a comment line gives the real rate. As in Go, the
//! header's allocated bytes are made to differ from its in-use bytes by
//! one if they are equal, for pprof to read the four columns. The memory
//! map at the end (the executable mappings, in `/proc/self/maps` form) is
//! what lets pprof place the addresses of a position-independent program
//! in its file, as gperftools' heap profiles do.
//!
//! Owns: the text form. The sites come from the renderer as for the binary
//! profile ([`super::ProfileSite`]).

use std::fmt::Write;

use super::ProfileSite;
use crate::symbols::{Frame, Mapping};

/// Writes the text form of `sites` (code addresses, return address − 1,
/// leaf first) with their frames from `frames`, the rate they were sampled
/// at, the program's `stats`, and its executable `mappings`.
pub(crate) fn heap_text(
    sites: &mut [ProfileSite],
    rate: u64,
    stats: &allocmeter::MemStats,
    mappings: &[Mapping],
    mut frames: impl FnMut(u64) -> Vec<Frame>,
) -> String {
    // Go sorts by in-use bytes, largest first.
    sites.sort_by_key(|s| std::cmp::Reverse(s.inuse_space));
    let sum = |f: fn(&ProfileSite) -> i64| sites.iter().map(f).fold(0i64, i64::saturating_add);
    let (inuse_objects, inuse_space) = (sum(|s| s.inuse_objects), sum(|s| s.inuse_space));
    let (alloc_objects, mut alloc_space) = (sum(|s| s.alloc_objects), sum(|s| s.alloc_space));
    if alloc_space == inuse_space {
        alloc_space = alloc_space.saturating_add(1);
    }
    let mut out = String::with_capacity(256 + sites.len() * 256);
    // `write!` into a `String` cannot fail.
    let _ = writeln!(
        out,
        "heap profile: {inuse_objects}: {inuse_space} [{alloc_objects}: {alloc_space}] @ heap/2"
    );
    let _ = writeln!(
        out,
        "# allocmeter: sampled every {rate} bytes on average; the figures are estimates, \
         already scaled (so the rate above is 1)"
    );
    for site in sites.iter() {
        let _ = write!(
            out,
            "{}: {} [{}: {}] @",
            site.inuse_objects, site.inuse_space, site.alloc_objects, site.alloc_space
        );
        for &address in &site.stack {
            let _ = write!(out, " {:#x}", address + 1);
        }
        out.push('\n');
        for &address in &site.stack {
            for frame in frames(address) {
                let _ = write!(out, "#\t{:#x}\t{}", address + 1, frame.function);
                if let Some(file) = &frame.file {
                    let _ = write!(out, "\t{file}:{}", frame.line.unwrap_or(0));
                }
                out.push('\n');
            }
        }
        out.push('\n');
    }
    let _ = write!(
        out,
        "# allocmeter stats\n# Alloc = {}\n# TotalAlloc = {}\n# Mallocs = {}\n# Frees = {}\n\
         # HeapAlloc = {}\n# HeapObjects = {}\n",
        stats.live_bytes,
        stats.alloc_bytes,
        stats.allocs,
        stats.frees,
        stats.live_bytes,
        stats.live_objects
    );
    out.push_str("\n--- Memory map: ---\n");
    for m in mappings {
        let _ = writeln!(
            out,
            "{:x}-{:x} r-xp {:08x} 00:00 0 {}",
            m.memory_start, m.memory_limit, m.file_offset, m.filename
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn site(stack: Vec<u64>, inuse: (i64, i64), alloc: (i64, i64)) -> ProfileSite {
        ProfileSite {
            stack,
            alloc_objects: alloc.0,
            alloc_space: alloc.1,
            inuse_objects: inuse.0,
            inuse_space: inuse.1,
        }
    }

    #[test]
    fn records_are_go_s_legacy_form_largest_in_use_first() {
        let mut sites = vec![
            site(vec![0x1000, 0x2000], (1, 100), (5, 500)),
            site(vec![0x3000], (2, 4096), (2, 4096)),
        ];
        let maps = [Mapping {
            memory_start: 0x1000,
            memory_limit: 0x4000,
            file_offset: 0x200,
            filename: "/srv/app".to_string(),
            build_id: String::new(),
        }];
        let text = heap_text(&mut sites, 524288, &allocmeter::stats(), &maps, |a| {
            vec![Frame {
                function: format!("f{a:x}"),
                file: (a != 0x3000).then(|| "/src/a.rs".to_string()),
                line: Some(7),
                system_name: None,
            }]
        });
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "heap profile: 3: 4196 [7: 4596] @ heap/2");
        assert!(lines[1].starts_with("# allocmeter: sampled every 524288 bytes"));
        assert_eq!(lines[2], "2: 4096 [2: 4096] @ 0x3001");
        assert_eq!(lines[3], "#\t0x3001\tf3000");
        assert_eq!(lines[4], "");
        assert_eq!(lines[5], "1: 100 [5: 500] @ 0x1001 0x2001");
        assert_eq!(lines[6], "#\t0x1001\tf1000\t/src/a.rs:7");
        assert!(text.contains("\n# allocmeter stats\n# Alloc = "));
        assert!(
            text.ends_with("\n--- Memory map: ---\n1000-4000 r-xp 00000200 00:00 0 /srv/app\n")
        );
        // Equal totals get the extra byte pprof needs to see four columns.
        let mut equal = vec![site(vec![0x10], (1, 64), (1, 64))];
        let text = heap_text(&mut equal, 1, &allocmeter::stats(), &[], |_| vec![]);
        assert!(
            text.starts_with("heap profile: 1: 64 [1: 65] @ heap/2\n"),
            "{text}"
        );
    }
}
