//! Whole-program benchmark with `Instrumented<Jemalloc>` as the global
//! allocator, sampling at the default rate (512 KiB). Run by
//! `benches/wholeprogram.py`; see `allocmeter_benches::workload`.

allocmeter_benches::whole_program!(
    "Instrumented<Jemalloc>",
    allocmeter::Instrumented<tikv_jemallocator::Jemalloc> =
        allocmeter::Instrumented::new(tikv_jemallocator::Jemalloc),
    sample_rate = allocmeter::DEFAULT_SAMPLE_RATE
);
