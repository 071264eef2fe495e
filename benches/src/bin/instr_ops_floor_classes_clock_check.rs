//! Instructions per operation with the floor's `classes_clock_check` rung as the global
//! allocator: `System` recording classes, bytes, the clock and the free's sampled-block check in bare
//! thread-locals. Run by `benches/instructions.py` (rate `bare`); see
//! `allocmeter_benches::instr_ops` and `allocmeter_benches::floor_rungs`.

use allocmeter_benches::floor_rungs::{CLASSES_CLOCK_CHECK, Floor};

allocmeter_benches::instr_ops!(Floor<CLASSES_CLOCK_CHECK> = Floor::new(), instrumented = false);
