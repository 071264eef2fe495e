//! Helpers shared by the tests of `allocmeter` and `allocmeter-exporter`.
//!
//! Each module holds one kind of helper; a test binary takes what it needs:
//!
//! - [`runner`]: the `harness = false` runner for tests that need the process
//!   to themselves (checks in order, a watchdog, a closing count);
//! - [`fork`]: fork a child, run checks in it, and wait for it with a
//!   deadline;
//! - [`http`]: a small HTTP/1.1 client over real sockets, and raw exchanges;
//! - [`panics`]: code that must panic, and its message;
//! - [`prometheus_text`]: the samples of a Prometheus text exposition;
//! - [`process`]: readings of this process (threads, memory) and its open
//!   files limit;
//! - [`watchdog`]: fail a hung test instead of stalling the run;
//! - [`workers`]: threads that stand for a service's own work;
//! - `exporter` (with the `exporter` feature): start an exporter on a free
//!   loopback port, and read its JSON API.
//!
//! What stays in each test binary: its `#[global_allocator]` (one per
//! process, so one per binary), and helpers only that binary uses.
#![warn(missing_docs)]

#[cfg(feature = "exporter")]
pub mod exporter;
pub mod fork;
pub mod http;
pub mod panics;
pub mod process;
pub mod prometheus_text;
pub mod runner;
pub mod watchdog;
pub mod workers;
