//! Benchmarks for allocmeter live in `benches/`; this library is empty.
