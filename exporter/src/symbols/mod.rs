//! The symbols stage: from code addresses to what a person reads.
//!
//! | file | owns |
//! |---|---|
//! | `symbolize.rs` | [`Symbolizer`]: address → function, file and line (inlined frames included), with a bounded cache; what counts as allocation machinery |
//! | `mappings.rs` | the process's executable mappings and their build IDs, for pprof |
//!
//! A leaf: it imports nothing of the exporter, and holds no lock (the
//! renderers own the one symbolizer and its mutex).

mod mappings;
mod symbolize;

pub(crate) use mappings::{Mapping, current_mappings};
pub use symbolize::Frame;
pub(crate) use symbolize::{Location, Symbolizer, is_allocation_machinery, program_frames};
