//! The HTTP endpoint over real sockets, one module a concern:
//!
//! - [`hardening`]: idle and trickling connections, malformed, oversized and
//!   binary requests, clients that stop reading, shutdown under all that;
//! - [`security`]: loopback by default, the bearer token, 401s that do not
//!   log it, `expose_profiles(false)`, no response echoing the request.
//!
//! One binary: their tests read nothing process-wide (no thread or memory
//! counts), so they can share a process. The HTTP tests that do read the
//! process, or drain its samples, are binaries of their own: `http_fuzz`
//! (counts the process's threads), `http_soak` (threads and memory) and
//! `http_stalled` (a heap profile from this process's samples).

use std::alloc::System;

use allocmeter::Instrumented;

mod hardening;
mod security;

#[global_allocator]
static GLOBAL: Instrumented<System> = Instrumented::new(System);
