//! The symbols stage: from code addresses to what a person reads.
//!
//! | file | owns |
//! |---|---|
//! | `symbolize.rs` | [`Symbolizer`]: address → function, file and line (inlined frames included), with a bounded cache; what counts as allocation machinery |
//! | `objects.rs` | the object files (program, shared libraries) mapped read-only, their DWARF and symbol tables parsed lazily, with the bytes that takes |
//! | `dwarf.rs` | frames read from one unit's DWARF entries, for code whose function names lie in other units (`DW_FORM_ref_addr`), which addr2line over a unit parsed alone cannot follow |
//! | `mappings.rs` | the process's executable mappings and their build IDs, for pprof and for finding the object files |
//!
//! A leaf: it imports nothing of the exporter, and holds no lock and no
//! global state (the renderers own the one symbolizer and its lock, which
//! they reset in a forked child).

mod dwarf;
mod mappings;
mod objects;
mod symbolize;

pub(crate) use mappings::{Mapping, current_mappings};
pub use symbolize::Frame;
pub(crate) use symbolize::{
    Location, Symbolizer, is_allocation_machinery, is_program_address, program_frames,
};
