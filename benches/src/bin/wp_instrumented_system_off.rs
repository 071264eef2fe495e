//! Whole-program benchmark with `Instrumented<System>` as the global
//! allocator, sampling off (rate 0). Run by `benches/wholeprogram.py`; see
//! `allocmeter_benches::workload`.

allocmeter_benches::whole_program!(
    "Instrumented<System> (sampling off)",
    allocmeter::Instrumented<std::alloc::System> = allocmeter::Instrumented::new(std::alloc::System),
    sample_rate = 0
);
