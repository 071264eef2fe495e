//! Whole-program benchmark with `Jemalloc` (tikv-jemallocator) as the global
//! allocator. Run by `benches/wholeprogram.py`; see `allocmeter_benches::workload`.

allocmeter_benches::whole_program!(
    "Jemalloc",
    tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc
);
