//! Instructions per operation with the floor's `realloc_kinds` rung as the global
//! allocator: `System` recording classes, bytes, the clock, the check, and each realloc's kind and byte delta in bare
//! thread-locals. Run by `benches/instructions.py` (rate `bare`); see
//! `allocmeter_benches::instr_ops` and `allocmeter_benches::floor_rungs`.

use allocmeter_benches::floor_rungs::{Floor, REALLOC_KINDS};

allocmeter_benches::instr_ops!(Floor<REALLOC_KINDS> = Floor::new(), instrumented = false);
