//! Why an exporter could not start.

use std::fmt;
use std::io;

/// An exporter could not start. The message names the address involved.
#[derive(Debug)]
#[non_exhaustive]
pub enum StartError {
    /// The bind address is not `IP:PORT` or `HOST:PORT`, or names no address.
    InvalidAddress {
        /// The address as given.
        addr: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Listening on the address failed: typically the port is taken
    /// ([`io::ErrorKind::AddrInUse`]) or needs privileges.
    Bind {
        /// The address as given.
        addr: String,
        /// The operating system's error.
        source: io::Error,
    },
    /// A background thread could not be started.
    Thread(io::Error),
    /// The bearer token given to `Builder::auth_token` cannot be used.
    InvalidToken {
        /// What is wrong with it (never the token itself).
        reason: &'static str,
    },
    /// allocmeter is not the program's global allocator
    /// ([`allocmeter::is_installed`]): nothing is counted, and the exporter
    /// would serve zeros.
    NotInstalled,
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartError::InvalidAddress { addr, reason } => {
                write!(f, "invalid bind address {addr:?}: {reason}")
            }
            StartError::Bind { addr, source } if source.kind() == io::ErrorKind::AddrInUse => {
                write!(
                    f,
                    "cannot listen on {addr}: address already in use ({source})"
                )
            }
            StartError::Bind { addr, source } => write!(f, "cannot listen on {addr}: {source}"),
            StartError::Thread(e) => write!(f, "cannot start an exporter thread: {e}"),
            StartError::InvalidToken { reason } => write!(f, "invalid auth token: {reason}"),
            StartError::NotInstalled => write!(
                f,
                "allocmeter is not this program's global allocator, so nothing is counted and \
                 the exporter would serve zeros; add to the crate root of the binary: \
                 #[global_allocator] static GLOBAL: allocmeter::Instrumented<std::alloc::System> \
                 = allocmeter::Instrumented::new(std::alloc::System);"
            ),
        }
    }
}

impl std::error::Error for StartError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StartError::Bind { source, .. } | StartError::Thread(source) => Some(source),
            StartError::InvalidAddress { .. }
            | StartError::InvalidToken { .. }
            | StartError::NotInstalled => None,
        }
    }
}
