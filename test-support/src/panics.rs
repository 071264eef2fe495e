//! Code that must panic: run it, keep the panic off the test's output, and
//! give its message to check.

use std::panic::{AssertUnwindSafe, catch_unwind, set_hook, take_hook};

/// Runs `f`, which must panic, without printing the panic, and gives its
/// message (`String` or `&str` payloads; empty for any other).
///
/// # Panics
///
/// If `f` returns instead.
pub fn expected_panic<R>(f: impl FnOnce() -> R) -> String {
    let hook = take_hook();
    set_hook(Box::new(|_| {}));
    let caught = catch_unwind(AssertUnwindSafe(f));
    set_hook(hook);
    let payload = caught.err().expect("it must panic");
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default()
}
