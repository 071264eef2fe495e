//! Whole-program benchmark with the floor's `aligned_gate` rung as the global
//! allocator: `wp_floor`'s recording with the sampled-block check made only for
//! blocks at a multiple of 256 B, what an aligned-address gate would save on a whole
//! program. Counted by `benches/instructions.py`; see
//! `allocmeter_benches::floor_rungs` and `allocmeter_benches::workload`.

allocmeter_benches::whole_program!(
    "floor: realloc kinds, check gated by a 256 B alignment",
    allocmeter_benches::floor_rungs::Floor<{ allocmeter_benches::floor_rungs::ALIGNED_GATE }> =
        allocmeter_benches::floor_rungs::Floor::new()
);
