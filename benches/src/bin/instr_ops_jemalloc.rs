//! Instructions per operation with `Jemalloc` (tikv-jemallocator) as the global allocator.
//! Run by `benches/instructions.py`; see `allocmeter_benches::instr_ops`.

allocmeter_benches::instr_ops!(
    tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc,
    instrumented = false
);
