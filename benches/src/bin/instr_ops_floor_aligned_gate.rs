//! Instructions per operation with the floor's `aligned_gate` rung as the global
//! allocator: the `realloc_kinds` rung with its filter check made only for blocks at a
//! multiple of 256 B, what an aligned-address gate would save. Run by
//! `benches/instructions.py` (rate `bare`); see `allocmeter_benches::instr_ops` and
//! `allocmeter_benches::floor_rungs`.

use allocmeter_benches::floor_rungs::{ALIGNED_GATE, Floor};

allocmeter_benches::instr_ops!(Floor<ALIGNED_GATE> = Floor::new(), instrumented = false);
