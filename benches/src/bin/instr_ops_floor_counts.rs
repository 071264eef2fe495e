//! Instructions per operation with the floor's `counts` rung as the global
//! allocator: `System` recording one count per allocation and per free in bare
//! thread-locals. Run by `benches/instructions.py` (rate `bare`); see
//! `allocmeter_benches::instr_ops` and `allocmeter_benches::floor_rungs`.

use allocmeter_benches::floor_rungs::{COUNTS, Floor};

allocmeter_benches::instr_ops!(Floor<COUNTS> = Floor::new(), instrumented = false);
