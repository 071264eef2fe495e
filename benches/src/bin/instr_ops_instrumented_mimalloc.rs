//! Instructions per operation with `Instrumented<MiMalloc>` as the global allocator.
//! Run by `benches/instructions.py`; see `allocmeter_benches::instr_ops`.

allocmeter_benches::instr_ops!(
    allocmeter::Instrumented<mimalloc::MiMalloc> =
        allocmeter::Instrumented::new(mimalloc::MiMalloc),
    instrumented = true
);
