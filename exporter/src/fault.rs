//! Fault injection for the exporter's own tests (debug builds only): a test
//! sets `ALLOCMETER_EXPORTER_FAULTS` to a comma-separated list of
//! `point:N` before starting the exporter, and the N-th, 2N-th, … pass
//! through `point` panics. Release builds compile this to nothing, so no
//! environment variable can make a service's exporter panic.
//!
//! Points: `aggregator.drain`, `aggregator.tick`, `render` (any response).

/// Panics here if a fault is set for `point` and this pass is its turn.
#[inline]
pub(crate) fn point(point: &str) {
    #[cfg(debug_assertions)]
    injected::point(point);
    #[cfg(not(debug_assertions))]
    let _ = point;
}

#[cfg(debug_assertions)]
mod injected {
    use std::collections::HashMap;
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicU64, Ordering};

    /// Each point's period and its pass count.
    fn faults() -> &'static HashMap<String, (u64, AtomicU64)> {
        static FAULTS: OnceLock<HashMap<String, (u64, AtomicU64)>> = OnceLock::new();
        FAULTS.get_or_init(|| {
            let spec = std::env::var("ALLOCMETER_EXPORTER_FAULTS").unwrap_or_default();
            spec.split(',')
                .filter_map(|item| {
                    let (name, every) = item.split_once(':')?;
                    let every: u64 = every.parse().ok().filter(|&n| n > 0)?;
                    Some((name.trim().to_string(), (every, AtomicU64::new(0))))
                })
                .collect()
        })
    }

    pub(super) fn point(point: &str) {
        if let Some((every, passes)) = faults().get(point) {
            let n = passes.fetch_add(1, Ordering::Relaxed) + 1;
            if n % every == 0 {
                panic!("injected fault at {point} (pass {n})");
            }
        }
    }
}
