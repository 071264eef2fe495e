//! Whole-program benchmark with `Instrumented<System>` as the global
//! allocator, sampling at the default rate (512 KiB). Run by
//! `benches/wholeprogram.py`; see `allocmeter_benches::workload`.

allocmeter_benches::whole_program!(
    "Instrumented<System>",
    allocmeter::Instrumented<std::alloc::System> = allocmeter::Instrumented::new(std::alloc::System),
    sample_rate = allocmeter::DEFAULT_SAMPLE_RATE
);
