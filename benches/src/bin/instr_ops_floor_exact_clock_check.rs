//! Instructions per operation with the floor's `exact_clock_check` rung as the global
//! allocator: `System` recording exact counters up to 1 KiB, classes above, the clock and the check in bare
//! thread-locals. Run by `benches/instructions.py` (rate `bare`); see
//! `allocmeter_benches::instr_ops` and `allocmeter_benches::floor_rungs`.

use allocmeter_benches::floor_rungs::{EXACT_CLOCK_CHECK, Floor};

allocmeter_benches::instr_ops!(Floor<EXACT_CLOCK_CHECK> = Floor::new(), instrumented = false);
