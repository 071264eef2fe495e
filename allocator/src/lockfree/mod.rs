//! The lock-free parts: everything that two threads touch at once without a
//! mutex, and that loom model-checks (`.ci/loom.sh`, the models in
//! `loom_models.rs`). Only these modules take their atomics from [`sync`],
//! which is `core`'s atomics, or loom's under `--cfg loom`; built that way
//! the crate is reduced to this folder.
//!
//! What loom checks, under every interleaving and every outcome the memory
//! model allows for the orderings used:
//!
//! - [`ring`]: a sample ring hands records over whole and in order, one
//!   producer and one consumer, and two producers under the fallback ring's
//!   producer lock;
//! - [`chain`]: a producer that switches rings mid-stream loses, repeats
//!   and reorders nothing, and the consumer frees only rings it has left;
//! - [`try_lock`]: two holders never overlap;
//! - [`ownership`] with [`bump`]: a slot changing hands keeps every count
//!   its previous owner stored with a load and a store; the shared slot's
//!   read-modify-writes lose nothing;
//! - [`sampled`]: a sampled block handed to another thread is found and
//!   removed by its free, and its filter bit is cleared.
//!
//! [`padded`] is here because [`sampled`] lays its globals out with it.

pub(crate) mod bump;
pub(crate) mod chain;
pub(crate) mod ownership;
pub(crate) mod padded;
pub(crate) mod ring;
pub(crate) mod sampled;
pub(crate) mod sync;
pub(crate) mod try_lock;

#[cfg(all(test, loom))]
mod loom_models;
