//! Capturing the call stack of a sampled allocation, without allocating.
//!
//! Two methods, chosen once per process by [`method`]:
//!
//! - **Frame-pointer walk** (x86-64 and AArch64): follows the chain of saved
//!   frame pointers. Each step is two loads, so 64 frames cost well under a
//!   microsecond. Every frame pointer is checked to lie inside the current
//!   thread's stack, to be aligned and to grow towards the stack's base
//!   before it is read, so a broken chain (code built without frame
//!   pointers, which uses the register for something else) ends the walk
//!   instead of faulting.
//! - **Unwinding** with the `backtrace` crate's `trace_unsynchronized`
//!   (DWARF call-frame info through libgcc): works without frame pointers,
//!   but costs microseconds per sample.
//!
//! The walk is used only if a probe at first use finds the frame-pointer chain
//! intact through three functions of this crate: then this crate, and so in
//! practice the program (compiler flags apply to every crate of a build), was
//! compiled with frame pointers (`-C force-frame-pointers=yes`).

use core::sync::atomic::{AtomicU8, Ordering};

/// The most return addresses one sample can hold.
pub const MAX_DEPTH: usize = 128;

/// How stacks are captured in this process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// Walking the frame-pointer chain.
    FramePointers,
    /// Unwinding with DWARF call-frame information (the `backtrace` crate).
    Unwind,
}

const UNKNOWN: u8 = 0;
const FP: u8 = 1;
const UNWIND: u8 = 2;
static METHOD: AtomicU8 = AtomicU8::new(UNKNOWN);

/// The capture method, probing on the first call.
pub fn method() -> Method {
    match METHOD.load(Ordering::Relaxed) {
        FP => Method::FramePointers,
        UNWIND => Method::Unwind,
        _ => {
            let m = if probe_frame_pointers() { FP } else { UNWIND };
            METHOD.store(m, Ordering::Relaxed);
            if m == FP {
                Method::FramePointers
            } else {
                Method::Unwind
            }
        }
    }
}

/// Forces a capture method (for benchmarks and tests comparing the two).
/// Forcing [`Method::FramePointers`] on a platform without a walker has no
/// effect.
pub fn force_method(m: Method) {
    let v = match m {
        Method::FramePointers if walker::SUPPORTED => FP,
        _ => UNWIND,
    };
    METHOD.store(v, Ordering::Relaxed);
}

/// Fills `out` with return addresses, innermost first, and returns how many.
/// `bounds` is the calling thread's stack `(low, high)`, needed by the walk.
#[inline(never)]
pub(crate) fn capture(out: &mut [usize], bounds: Option<(usize, usize)>) -> usize {
    match (method(), bounds) {
        (Method::FramePointers, Some(bounds)) => walker::walk(out, bounds),
        _ => unwind(out),
    }
}

/// Captures with the `backtrace` crate's unwinder.
pub(crate) fn unwind(out: &mut [usize]) -> usize {
    let mut n = 0;
    // SAFETY: `trace_unsynchronized` requires that no other thread unwinds
    // through the same libbacktrace state concurrently in a way that is not
    // thread-safe. On Unix it calls libgcc's `_Unwind_Backtrace`, which is
    // thread-safe; the crate's lock only serialises its Windows backend. The
    // callback does not allocate and does not panic.
    unsafe {
        backtrace::trace_unsynchronized(|frame| {
            let ip = frame.ip() as usize;
            match out.get_mut(n) {
                Some(slot) if ip != 0 => {
                    *slot = ip;
                    n += 1;
                    true
                }
                _ => false,
            }
        });
    }
    n
}

/// The calling thread's stack bounds `(low, high)`, or `None` if unknown.
/// May allocate (glibc reads `/proc/self/maps` for the main thread): call it
/// only where reentrant allocations are safe.
pub(crate) fn current_thread_stack() -> Option<(usize, usize)> {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: `attr` is initialised by `pthread_getattr_np` before it is
        // read and destroyed afterwards; the out-pointers are valid locals.
        unsafe {
            let mut attr: libc::pthread_attr_t = core::mem::zeroed();
            if libc::pthread_getattr_np(libc::pthread_self(), &mut attr) != 0 {
                return None;
            }
            let mut addr: *mut libc::c_void = core::ptr::null_mut();
            let mut size: libc::size_t = 0;
            let rc = libc::pthread_attr_getstack(&attr, &mut addr, &mut size);
            libc::pthread_attr_destroy(&mut attr);
            if rc != 0 || addr.is_null() {
                return None;
            }
            Some((addr as usize, addr as usize + size))
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        None
    }
}

/// Whether the frame-pointer walk sees the true chain through three known,
/// never-inlined functions of this crate.
fn probe_frame_pointers() -> bool {
    if !walker::SUPPORTED {
        return false;
    }
    let Some(bounds) = current_thread_stack() else {
        return false;
    };
    probe_a(bounds)
}

#[inline(never)]
fn probe_a(bounds: (usize, usize)) -> bool {
    let r = probe_b(bounds);
    core::hint::black_box(r)
}

#[inline(never)]
fn probe_b(bounds: (usize, usize)) -> bool {
    let r = probe_c(bounds);
    core::hint::black_box(r)
}

#[inline(never)]
fn probe_c(bounds: (usize, usize)) -> bool {
    let mut frames = [0usize; 8];
    let n = walker::walk(&mut frames, bounds);
    // frames[0] is the return address into probe_c's caller (probe_b), then
    // into probe_a. Each must lie just after the start of that function.
    let inside = |ret: usize, f: usize| ret > f && ret - f < 4096;
    n >= 2
        && inside(frames[0], probe_b as *const () as usize)
        && inside(frames[1], probe_a as *const () as usize)
}

#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
mod walker {
    /// This platform has a frame-pointer walker.
    pub const SUPPORTED: bool = true;

    /// Reads the frame-pointer register of the caller of this function.
    #[inline(always)]
    fn frame_pointer() -> usize {
        let fp: usize;
        // SAFETY: reads a register into a local; touches no memory.
        unsafe {
            #[cfg(target_arch = "x86_64")]
            core::arch::asm!("mov {}, rbp", out(reg) fp, options(nomem, nostack, preserves_flags));
            #[cfg(target_arch = "aarch64")]
            core::arch::asm!("mov {}, x29", out(reg) fp, options(nomem, nostack, preserves_flags));
        }
        fp
    }

    /// Walks the frame-pointer chain from the caller of `walk`, storing return
    /// addresses (innermost first). On both architectures a frame record is
    /// two words: the caller's frame pointer, then the return address.
    #[inline(never)]
    pub fn walk(out: &mut [usize], (low, high): (usize, usize)) -> usize {
        let mut fp = frame_pointer();
        // The walk starts in this function's own frame; the first return
        // address recorded is this function's, into `capture`'s caller chain.
        let mut n = 0;
        // A frame record must lie between our own stack position and the
        // base of the stack, leave room for its two words, and be aligned.
        let local = 0u8;
        let mut lowest = core::ptr::addr_of!(local) as usize;
        if lowest < low {
            lowest = low;
        }
        let mut skip = 1; // `walk`'s own frame: its return address is into `capture`.
        while n < out.len() {
            if fp < lowest || fp > high.saturating_sub(16) || !fp.is_multiple_of(8) {
                break;
            }
            // SAFETY: `fp` was checked to lie inside this thread's stack with
            // 16 bytes to spare, so both words are mapped and readable.
            let (next, ret) = unsafe { (*(fp as *const usize), *((fp + 8) as *const usize)) };
            if ret == 0 {
                break;
            }
            if skip > 0 {
                skip -= 1;
            } else {
                out[n] = ret;
                n += 1;
            }
            if next <= fp {
                break;
            }
            lowest = fp + 16;
            fp = next;
        }
        n
    }
}

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
mod walker {
    /// No frame-pointer walker on this platform.
    pub const SUPPORTED: bool = false;

    /// Never called: [`super::method`] never picks the walk here.
    pub fn walk(_out: &mut [usize], _bounds: (usize, usize)) -> usize {
        0
    }
}
