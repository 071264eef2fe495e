//! Tests of the sampled-pointer table (not under loom: see `loom_models.rs`
//! for the model).

use super::*;

// The table is a process-wide static; these tests use addresses no real
// allocation has (small odd multiples in an unmapped range) and serialise
// on a lock so they do not see each other's entries.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// An address the table can hold, never dereferenced.
fn fake(i: usize) -> *mut u8 {
    core::ptr::without_provenance_mut(0x7e00_0000_0000usize + i * 16)
}

/// The filter line (512 bits) a pointer's bit is in.
fn line_of(p: usize) -> usize {
    filter_bit(p) / 512
}

#[test]
#[cfg_attr(miri, ignore = "the full-size filter's geometry, not memory safety")]
fn blocks_at_one_offset_of_differently_aligned_regions_use_other_lines() {
    // glibc's thread arenas are 64 MiB-aligned: the first blocks of two
    // threads sit at the same offset in each (e.g. 0x7f7c7c000ca0 and
    // 0x7f7c78000ca0 on this project's machine).
    for offset in [0xca0usize, 0x1_2340, 0x3f_fff0] {
        let lines: std::collections::HashSet<usize> = (0..32usize)
            .map(|arena| line_of(0x7f00_0000_0000 + (arena << 26) + offset))
            .collect();
        assert_eq!(
            lines.len(),
            32,
            "arenas sharing filter lines at {offset:#x}"
        );
    }
}

#[test]
#[cfg_attr(miri, ignore = "the full-size filter's geometry, not memory safety")]
fn an_aligned_8_kib_run_of_addresses_shares_one_filter_line() {
    for base in [0x7f7c_7c00_0000usize, 0x5555_5555_e000, 0x7f00_1234_4000] {
        let line = line_of(base);
        let bits: std::collections::HashSet<usize> =
            (0..512).map(|i| filter_bit(base + i * 16)).collect();
        assert_eq!(bits.len(), 512, "16-byte units of one run share bits");
        assert!((0..512).all(|i| line_of(base + i * 16) == line));
    }
}

#[test]
fn inserted_pointers_are_found_once_and_others_never() {
    let _g = SERIAL.lock().unwrap();
    // Under Miri, 1000 (about 16 a shard: each grows from 4 buckets to 32);
    // 5000 took most of Miri's time in CI.
    let n = if cfg!(miri) { 1000 } else { 5000 };
    for i in 0..n {
        assert_eq!(insert(fake(i), i as u64 + 1), Ok(None));
    }
    // Inserting a pointer that is already there replaces its id.
    assert_eq!(insert(fake(0), 1000), Ok(Some(1)));
    assert_eq!(insert(fake(0), 1), Ok(Some(1000)));
    for i in 0..n {
        assert!(maybe_sampled(fake(i)), "filter must not miss {i}");
    }
    // Pointers never inserted are not found (the filter may say maybe).
    for i in n..2 * n {
        assert_eq!(remove(fake(i)), Ok(None));
    }
    // Remove in a scrambled order; each id comes back exactly once.
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by_key(|&i| (i * 7919) % n);
    for &i in &order {
        assert_eq!(remove(fake(i)), Ok(Some(i as u64 + 1)), "entry {i}");
        assert_eq!(remove(fake(i)), Ok(None));
    }
    // Everything removed: every filter bit these pointers set is clear.
    for i in 0..2 * n {
        assert!(!maybe_sampled(fake(i)), "stale filter bit for {i}");
    }
}

#[test]
fn a_full_shard_refuses_inserts() {
    let _g = SERIAL.lock().unwrap();
    // Find pointers that all land in shard 0.
    let mut ptrs = Vec::new();
    let mut i = 100_000;
    while ptrs.len() < MAX_PER_SHARD + 10 {
        if shard_of(filter_bit(fake(i) as usize)) == 0 {
            ptrs.push(fake(i));
        }
        i += 1;
    }
    let mut refused = 0;
    for (k, &p) in ptrs.iter().enumerate() {
        match insert(p, k as u64) {
            Ok(None) => {}
            Ok(Some(_)) => panic!("fresh pointer reported as present"),
            Err(e) => {
                assert_eq!(e, InsertError::Full);
                refused += 1;
            }
        }
    }
    assert_eq!(refused, 10);
    // It grew from its first 4 buckets to its largest size on the way,
    // rehashing each time; every entry must still be found below.
    assert_eq!(SHARDS_TABLE[0].buckets.load(Ordering::Relaxed), BUCKETS);
    assert!(bytes() >= BUCKETS * core::mem::size_of::<Entry>());
    for (k, &p) in ptrs.iter().enumerate().take(MAX_PER_SHARD) {
        assert_eq!(remove(p), Ok(Some(k as u64)));
    }
    assert!(ptrs.iter().all(|&p| !maybe_sampled(p)));
}
