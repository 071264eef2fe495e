//! Instructions per operation with the floor's `classes_clock` rung as the global
//! allocator: `System` recording counts by size class, bytes and the sampling clock in bare
//! thread-locals. Run by `benches/instructions.py` (rate `bare`); see
//! `allocmeter_benches::instr_ops` and `allocmeter_benches::floor_rungs`.

use allocmeter_benches::floor_rungs::{CLASSES_CLOCK, Floor};

allocmeter_benches::instr_ops!(Floor<CLASSES_CLOCK> = Floor::new(), instrumented = false);
