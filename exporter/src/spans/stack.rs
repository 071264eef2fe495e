//! The calling thread's open spans: for each span it has entered and not yet
//! exited, the counters it is counted into and the thread's totals at the
//! enter.
//!
//! Owns: the thread-local stack ([`enter`], [`exit`]) and its depth bound.
//! Fixed-size and `const`-initialised, so it never allocates (an allocation
//! here would be counted into the spans it brackets) and has no destructor
//! to register.

use std::cell::RefCell;

use allocmeter::ThreadTotals;

use super::table::Cells;

/// Spans open at once on one thread that can be counted; a span entered
/// deeper than this is not counted (its enclosing spans still count what
/// it allocated).
pub const MAX_DEPTH: usize = 64;

#[derive(Clone, Copy)]
struct Open {
    /// The span's id (`tracing_core::span::Id::into_u64`).
    id: u64,
    cells: &'static Cells,
    /// The thread's totals at the enter; `None` when there was nothing exact
    /// to read (see `allocmeter::thread_totals`).
    start: Option<ThreadTotals>,
    /// Allocations and bytes allocated inside the spans counted while this
    /// one was open above it on this thread: its figures minus these are its
    /// own (`self`).
    children: (u64, u64),
}

struct Stack {
    len: usize,
    open: [Option<Open>; MAX_DEPTH],
}

thread_local! {
    static STACK: RefCell<Stack> = const {
        RefCell::new(Stack { len: 0, open: [None; MAX_DEPTH] })
    };
}

/// Notes that span `id`, counted into `cells`, was entered when the thread's
/// totals were `start`. False if it could not be noted (too deep, or the
/// thread is being torn down): its exit will then count nothing.
pub fn enter(id: u64, cells: &'static Cells, start: Option<ThreadTotals>) -> bool {
    STACK
        .try_with(|stack| {
            let Ok(mut stack) = stack.try_borrow_mut() else {
                return false;
            };
            let len = stack.len;
            if len == MAX_DEPTH {
                return false;
            }
            stack.open[len] = Some(Open {
                id,
                cells,
                start,
                children: (0, 0),
            });
            stack.len = len + 1;
            true
        })
        .unwrap_or(false)
}

/// Closes the innermost open entry of span `id`, whose exit found the
/// thread's totals at `end`, and adds what was allocated between its enter
/// and now to its counters, and to its parent's children (the open entry
/// below it): unless a span of the same callsite encloses it on this thread
/// (that one counts it, once), or a reading is missing; its own children
/// then pass to its parent. Returns whether it was counted.
pub fn exit(id: u64, end: Option<ThreadTotals>) -> bool {
    STACK
        .try_with(|stack| {
            let Ok(mut stack) = stack.try_borrow_mut() else {
                return false;
            };
            let len = stack.len;
            // Spans usually exit in the reverse order of their enters; tracing
            // allows any order, so look from the top down.
            let Some(at) = (0..len)
                .rev()
                .find(|&i| stack.open[i].is_some_and(|o| o.id == id))
            else {
                return false;
            };
            let Some(open) = stack.open[at] else {
                return false;
            };
            stack.open.copy_within(at + 1..len, at);
            stack.open[len - 1] = None;
            stack.len = len - 1;
            let nested_in_same = stack.open[..at]
                .iter()
                .flatten()
                .any(|o| std::ptr::eq(o.cells, open.cells));
            let (counted, to_parent) = match (open.start, end) {
                (Some(start), Some(end)) if !nested_in_same => {
                    let used = end.since(&start);
                    let own = (
                        used.allocs.wrapping_sub(open.children.0),
                        used.alloc_bytes.wrapping_sub(open.children.1),
                    );
                    open.cells.add(&used, own);
                    (true, (used.allocs, used.alloc_bytes))
                }
                _ => (false, open.children),
            };
            if let Some(Some(parent)) = at.checked_sub(1).map(|p| &mut stack.open[p]) {
                parent.children.0 = parent.children.0.wrapping_add(to_parent.0);
                parent.children.1 = parent.children.1.wrapping_add(to_parent.1);
            }
            counted
        })
        .unwrap_or(false)
}
