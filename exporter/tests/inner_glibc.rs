//! With the `glibc` feature and glibc's malloc as the inner allocator
//! (`System` on Linux with glibc), the `allocmeter_inner_*{allocator="glibc"}`
//! gauges follow what `mallinfo2` reports.
#![cfg(all(feature = "glibc", target_os = "linux", target_env = "gnu"))]

mod inner_common;

use std::alloc::System;
use std::sync::Mutex;

use allocmeter::Instrumented;
use inner_common::{HELD, assert_held, assert_released, hold, scrape};

#[global_allocator]
static GLOBAL: Instrumented<System> = Instrumented::new(System);

const GLIBC: &str = "glibc";

/// The tests measure the whole process's heap: one at a time.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

#[test]
fn small_blocks_come_from_the_arenas() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let before = scrape();
    // 4 KiB: far below glibc's mmap threshold (128 KiB to 32 MiB), so every
    // block is carved from an arena.
    let held = hold(HELD, 4 << 10);
    let during = scrape();
    assert_held(
        &before,
        &during,
        GLIBC,
        &["allocmeter_inner_allocated_bytes"],
    );
    let arena = during.inner("allocmeter_inner_arena_bytes", GLIBC);
    let allocated = during.inner("allocmeter_inner_allocated_bytes", GLIBC);
    let free = during.inner("allocmeter_inner_free_bytes", GLIBC);
    assert!(
        allocated + free <= arena,
        "in use {allocated} + free {free} > arena {arena}"
    );
    assert!(during.inner("allocmeter_inner_releasable_bytes", GLIBC) <= free);

    drop(held);
    let after = scrape();
    assert_released(
        &before,
        &after,
        GLIBC,
        &["allocmeter_inner_allocated_bytes"],
    );
}

#[test]
fn one_large_block_is_mapped_on_its_own() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let before = scrape();
    // Above glibc's largest mmap threshold (32 MiB on 64-bit): mmapped
    // directly, counted in hblkhd and not in the arenas.
    let held = hold(HELD, HELD);
    let during = scrape();
    assert_held(&before, &during, GLIBC, &["allocmeter_inner_mapped_bytes"]);
    let arena_growth = during.inner("allocmeter_inner_allocated_bytes", GLIBC)
        - before.inner("allocmeter_inner_allocated_bytes", GLIBC);
    assert!(
        arena_growth < 0.1 * HELD as f64,
        "a block served by mmap moved the arenas' in-use bytes by {arena_growth}"
    );

    drop(held);
    let after = scrape();
    // An mmapped block is unmapped when freed.
    assert_released(&before, &after, GLIBC, &["allocmeter_inner_mapped_bytes"]);
}
