//! Instructions per operation with `MiMalloc` as the global allocator.
//! Run by `benches/instructions.py`; see `allocmeter_benches::instr_ops`.

allocmeter_benches::instr_ops!(
    mimalloc::MiMalloc = mimalloc::MiMalloc,
    instrumented = false
);
