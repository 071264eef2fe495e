//! Instructions per operation with `Instrumented<Jemalloc>` as the global allocator.
//! Run by `benches/instructions.py`; see `allocmeter_benches::instr_ops`.

allocmeter_benches::instr_ops!(
    allocmeter::Instrumented<tikv_jemallocator::Jemalloc> =
        allocmeter::Instrumented::new(tikv_jemallocator::Jemalloc),
    instrumented = true
);
