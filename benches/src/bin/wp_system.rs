//! Whole-program benchmark with `System` (glibc malloc) as the global
//! allocator. Run by `benches/wholeprogram.py`; see `allocmeter_benches::workload`.

allocmeter_benches::whole_program!("System", std::alloc::System = std::alloc::System);
