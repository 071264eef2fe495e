//! Fork a child, run checks in it, and wait for it with a deadline.
//!
//! The child reports through its exit status; the parent waits with a
//! deadline, so a child stuck on a lock held by a thread that did not come
//! along fails the test instead of hanging it.

use std::io::Write;
use std::panic::UnwindSafe;
use std::time::{Duration, Instant};

/// Forks; the child runs `child` and `_exit`s, the parent waits for it for
/// `deadline` at most and returns its status as `waitpid` reports it (read
/// it with `libc::WIFEXITED` and `libc::WEXITSTATUS`).
///
/// The child's exit code is 0 when `child` returns `Ok`, 1 when it returns
/// `Err` (the message is written to stderr first, as `child: {message}`),
/// and 2 when it panics. It leaves with `_exit`: none of the parent's atexit
/// handlers or destructors run in it.
///
/// An `Err` is the parent's: the fork or `waitpid` failed, or the child was
/// still running at the deadline (it is killed).
///
/// # Safety
///
/// `child` runs in a copy of a process that may have other threads, with
/// only the forking thread: it must not wait on a lock or a thread that did
/// not come along, and must not touch what those threads own (an exporter's
/// handle, for one). Allocating through allocmeter's allocator over glibc's
/// is fine: allocmeter's fork handlers make its state consistent in the
/// child, and glibc's malloc is fork-safe.
pub unsafe fn fork_and_wait<F>(child: F, deadline: Duration) -> Result<libc::c_int, String>
where
    F: FnOnce() -> Result<(), String> + UnwindSafe,
{
    // SAFETY: the child runs only `child`, which the caller promises is safe
    // to run there (see `# Safety`), then `_exit`s without running the
    // parent's atexit handlers or destructors.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(format!("fork failed: {}", std::io::Error::last_os_error()));
    }
    if pid == 0 {
        let code = match std::panic::catch_unwind(child) {
            Ok(Ok(())) => 0,
            Ok(Err(message)) => {
                // Straight to fd 2: the test harness captures eprintln!.
                let _ = writeln!(std::io::stderr(), "child: {message}");
                1
            }
            Err(_) => 2,
        };
        // SAFETY: ends the child at once; nothing of the parent's runs.
        unsafe { libc::_exit(code) };
    }
    let until = Instant::now() + deadline;
    loop {
        let mut status = 0;
        // SAFETY: `pid` is our child; `status` is a valid out pointer.
        let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if r == pid {
            return Ok(status);
        }
        if r < 0 {
            return Err(format!("waitpid: {}", std::io::Error::last_os_error()));
        }
        if Instant::now() > until {
            // SAFETY: killing our own child process.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            return Err(format!("child still running after {deadline:?}: hung"));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}
