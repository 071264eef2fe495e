//! Whole-program benchmark with `Instrumented<MiMalloc>` as the global
//! allocator, sampling at the default rate (512 KiB). Run by
//! `benches/wholeprogram.py`; see `allocmeter_benches::workload`.

allocmeter_benches::whole_program!(
    "Instrumented<MiMalloc>",
    allocmeter::Instrumented<mimalloc::MiMalloc> = allocmeter::Instrumented::new(mimalloc::MiMalloc),
    sample_rate = allocmeter::DEFAULT_SAMPLE_RATE
);
