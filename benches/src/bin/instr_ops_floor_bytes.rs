//! Instructions per operation with the floor's `bytes` rung as the global
//! allocator: `System` recording counts and bytes in bare
//! thread-locals. Run by `benches/instructions.py` (rate `bare`); see
//! `allocmeter_benches::instr_ops` and `allocmeter_benches::floor_rungs`.

use allocmeter_benches::floor_rungs::{BYTES, Floor};

allocmeter_benches::instr_ops!(Floor<BYTES> = Floor::new(), instrumented = false);
