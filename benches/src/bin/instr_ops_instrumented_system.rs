//! Instructions per operation with `Instrumented<System>` as the global allocator.
//! Run by `benches/instructions.py`; see `allocmeter_benches::instr_ops`.

allocmeter_benches::instr_ops!(
    allocmeter::Instrumented<std::alloc::System> =
        allocmeter::Instrumented::new(std::alloc::System),
    instrumented = true
);
