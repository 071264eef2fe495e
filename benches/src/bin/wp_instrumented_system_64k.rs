//! Whole-program benchmark with `Instrumented<System>` as the global
//! allocator, sampling every 64 KiB on average (8 times the default). Run by
//! `benches/wholeprogram.py`; see `allocmeter_benches::workload`.

allocmeter_benches::whole_program!(
    "Instrumented<System> (64 KiB)",
    allocmeter::Instrumented<std::alloc::System> = allocmeter::Instrumented::new(std::alloc::System),
    sample_rate = 64 * 1024
);
