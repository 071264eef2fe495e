//! Whole-program benchmark with the floor's `realloc_kinds` rung as the
//! global allocator: `System` recording what allocmeter's hot path records
//! (counts by size class, bytes, the sampling clock, the sampled-block check,
//! each realloc's kind and delta) in bare thread-locals, with no slot, no
//! exporter and no sampling. The whole-program floor of that recording,
//! counted by `benches/instructions.py`; see
//! `allocmeter_benches::floor_rungs` and `allocmeter_benches::workload`.

allocmeter_benches::whole_program!(
    "floor: classes, bytes, clock, free check, realloc kinds",
    allocmeter_benches::floor_rungs::Floor<{ allocmeter_benches::floor_rungs::REALLOC_KINDS }> =
        allocmeter_benches::floor_rungs::Floor::new()
);
