//! The aggregator thread: reads every slot once per interval into a snapshot
//! and appends it to the bounded history.
//!
//! It reads with [`allocmeter::stats`], which takes no lock an allocating
//! thread could wait on; the history's lock is taken only by exporter threads.

use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant, SystemTime};

use parking_lot::Mutex;

use crate::snapshot::{History, Snapshot};

/// State shared between the aggregator, the HTTP thread and the handle.
pub(crate) struct Shared {
    pub history: Mutex<History>,
    pub started: Instant,
}

impl Shared {
    pub fn new(history_len: usize) -> Self {
        Shared {
            history: Mutex::new(History::new(history_len)),
            started: Instant::now(),
        }
    }

    /// Reads the statistics now and records the snapshot.
    pub fn tick(&self) {
        let snapshot = Snapshot {
            taken_at: SystemTime::now(),
            uptime: self.started.elapsed(),
            stats: allocmeter::stats(),
        };
        self.history.lock().push(snapshot);
    }
}

/// Ticks every `interval` until `stop` is signalled or dropped.
pub(crate) fn run(shared: Arc<Shared>, interval: Duration, stop: Receiver<()>) {
    loop {
        shared.tick();
        match stop.recv_timeout(interval) {
            Err(RecvTimeoutError::Timeout) => continue,
            Ok(()) | Err(RecvTimeoutError::Disconnected) => break,
        }
    }
}
