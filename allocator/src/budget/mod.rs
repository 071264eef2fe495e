//! Allocation budgets for tests and benches: how many allocations code
//! makes, and assertions that pin that down.
//!
//! - [`per_run`]: [`allocs_per_run`](crate::allocs_per_run) (Go's
//!   `testing.AllocsPerRun`) and the fuller [`runs`](crate::runs) report.
//! - [`assert`](mod@assert): [`check_allocs`](crate::check_allocs), the
//!   [`assert_allocs!`](crate::assert_allocs) macros, and the failure they
//!   report ([`BudgetExceeded`](crate::BudgetExceeded)).
//! - [`stacks`]: the failing allocations' stacks, symbolized and trimmed.
//! - [`recorder`]: budget mode, the cold-path state behind the peak and the
//!   stacks.
//! - [`spawned`]: [`measure_spawned`](crate::measure_spawned), the threads a
//!   scope starts.
//!
//! Every count is the calling thread's own slot, read as
//! [`measure`](crate::measure) reads it. Nothing here is on the allocation
//! hot path: budget mode forces the thread's allocations onto the cold
//! path, and the spawned scope notes a thread once, when it claims its slot.

pub(crate) mod assert;
pub(crate) mod per_run;
pub(crate) mod recorder;
pub(crate) mod spawned;
pub(crate) mod stacks;

pub(crate) use recorder::Recorder;
pub(crate) use spawned::note_claim;
