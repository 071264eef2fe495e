//! Instructions per operation with `System` (glibc malloc) as the global allocator.
//! Run by `benches/instructions.py`; see `allocmeter_benches::instr_ops`.

allocmeter_benches::instr_ops!(
    std::alloc::System = std::alloc::System,
    instrumented = false
);
