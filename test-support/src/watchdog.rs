//! A watchdog that fails a hung test instead of stalling the run.

use std::sync::mpsc;
use std::time::Duration;

/// Aborts the whole test process if dropped later than `limit` after
/// creation: a hang fails the run with a message instead of stalling it.
pub struct Watchdog(Option<mpsc::Sender<()>>);

/// Starts a [`Watchdog`] for `what`: keep it alive for the test's length.
pub fn watchdog(what: &'static str, limit: Duration) -> Watchdog {
    let (tx, rx) = mpsc::channel::<()>();
    std::thread::spawn(move || {
        if let Err(mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(limit) {
            eprintln!("watchdog: {what} did not finish within {limit:?}; aborting");
            std::process::abort();
        }
    });
    Watchdog(Some(tx))
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        if let Some(tx) = self.0.take() {
            let _ = tx.send(());
        }
    }
}
