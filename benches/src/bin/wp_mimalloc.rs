//! Whole-program benchmark with `MiMalloc` as the global allocator. Run by
//! `benches/wholeprogram.py`; see `allocmeter_benches::workload`.

allocmeter_benches::whole_program!("MiMalloc", mimalloc::MiMalloc = mimalloc::MiMalloc);
