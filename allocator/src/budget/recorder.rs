//! The budget recorder: what the cold path notes about each allocation of a
//! thread in budget mode (the peak of its live bytes, and the first stacks),
//! and the guard that turns budget mode on and off around a run.
//!
//! Budget mode forces every allocation of the thread onto the sampled (cold)
//! path (`local::enter_budget` holds the thread's sampling clock at zero), so
//! the hot path has nothing to do with it. The thread's real sampling clock
//! is counted down by the cold path in the recorder meanwhile, and samples
//! are taken exactly when they would have been: the process's profiles get
//! neither more nor fewer samples, nor other weights.

use core::cell::Cell;

use crate::slot::Slot;
use crate::{local, stack};

/// How many allocations' stacks a run keeps (the rest are counted).
pub const MAX_STACKS: usize = 32;

/// The most return addresses kept per stack.
pub(crate) const STACK_DEPTH: usize = 48;

/// Words per kept stack: the allocation's size, the frame count, the frames.
const ENTRY_WORDS: usize = STACK_DEPTH + 2;

/// One thread's budget-mode state. Lives on the stack of the function that
/// runs the code under budget, and is reached from the cold path through a
/// pointer in the thread's `Local`, set and cleared on the same thread.
pub(crate) struct Recorder {
    /// The thread's real sampling clock while budget mode holds its own at
    /// zero (written by `local`).
    pub(crate) clock: Cell<i64>,
    /// The thread's live bytes (allocated minus freed, wrapping) at the
    /// start of the current run.
    start_live: Cell<u64>,
    /// The highest the live bytes went above `start_live` in this run.
    peak: Cell<u64>,
    /// Allocations seen in this run.
    seen: Cell<u64>,
    /// Where stacks go: `MAX_STACKS` entries of `ENTRY_WORDS` words, or
    /// empty when stacks are not wanted. Allocated before budget mode starts,
    /// so capturing never allocates.
    stacks: Box<[Cell<usize>]>,
    /// Entries filled in `stacks`.
    kept: Cell<usize>,
}

impl Recorder {
    /// A recorder; `capture` says whether it keeps stacks.
    pub(crate) fn new(capture: bool) -> Self {
        let words = if capture { MAX_STACKS * ENTRY_WORDS } else { 0 };
        Recorder {
            clock: Cell::new(0),
            start_live: Cell::new(0),
            peak: Cell::new(0),
            seen: Cell::new(0),
            stacks: (0..words).map(|_| Cell::new(0)).collect(),
            kept: Cell::new(0),
        }
    }

    /// An allocation of `size` bytes was just counted into `slot` (the
    /// calling thread's): note the live bytes and maybe the stack. Called
    /// by the cold path with the thread marked busy; never allocates.
    pub(crate) fn observe(&self, slot: &Slot, size: usize, bounds: Option<(usize, usize)>) {
        self.seen.set(self.seen.get() + 1);
        let above = live_of(slot).wrapping_sub(self.start_live.get());
        // Below the start (more freed than allocated since) wraps to a huge
        // value: the peak is only ever taken above the start.
        if above <= i64::MAX as u64 && above > self.peak.get() {
            self.peak.set(above);
        }
        let kept = self.kept.get();
        if let Some(entry) = self
            .stacks
            .get(kept * ENTRY_WORDS..(kept + 1) * ENTRY_WORDS)
        {
            let mut frames = [0usize; STACK_DEPTH];
            let n = stack::capture(&mut frames, bounds);
            entry[0].set(size);
            entry[1].set(n);
            for (cell, frame) in entry[2..].iter().zip(&frames[..n]) {
                cell.set(*frame);
            }
            self.kept.set(kept + 1);
        }
    }

    /// A new run starts now on `slot`: the peak and the count start over
    /// (the stacks kept so far stay).
    pub(crate) fn start_run(&self, slot: &Slot) {
        self.start_live.set(live_of(slot));
        self.peak.set(0);
        self.seen.set(0);
    }

    /// The highest the thread's live bytes went above their level at the
    /// start of the run.
    pub(crate) fn peak(&self) -> u64 {
        self.peak.get()
    }

    /// The stacks kept: each allocation's size and its return addresses,
    /// innermost first.
    pub(crate) fn stacks(&self) -> Vec<(usize, Vec<usize>)> {
        (0..self.kept.get())
            .map(|i| {
                let entry = &self.stacks[i * ENTRY_WORDS..(i + 1) * ENTRY_WORDS];
                let n = entry[1].get().min(STACK_DEPTH);
                (entry[0].get(), entry[2..2 + n].iter().map(Cell::get).collect())
            })
            .collect()
    }
}

/// The slot's live bytes (allocated minus freed, wrapping).
fn live_of(slot: &Slot) -> u64 {
    let c = slot.counters.read();
    c.alloc_bytes.wrapping_sub(c.free_bytes)
}

/// Budget mode, on from [`BudgetMode::enter`] until dropped (a panic in the
/// code under budget ends it too).
pub(crate) struct BudgetMode<'a> {
    recorder: &'a Recorder,
    slot: &'static Slot,
}

impl<'a> BudgetMode<'a> {
    /// Turns budget mode on for the calling thread, showing it `recorder`.
    ///
    /// # Panics
    ///
    /// If the thread is in budget mode already (`what` is nested in another
    /// budget function), or has no slot of its own (all
    /// [`MAX_SLOTS`](crate::MAX_SLOTS) are taken).
    #[track_caller]
    pub(crate) fn enter(recorder: &'a Recorder, what: &str) -> Self {
        if local::in_budget() {
            panic!(
                "allocmeter::{what}: called inside another allocation budget on the same \
                 thread (allocs_per_run, runs, assert_allocs!); budgets do not nest"
            );
        }
        match local::enter_budget(recorder) {
            Some(slot) => BudgetMode { recorder, slot },
            None => panic!(
                "allocmeter::{what}: this thread has no counting slot of its own (all {} are \
                 taken), so its allocations cannot be counted exactly",
                crate::MAX_SLOTS
            ),
        }
    }

    /// The calling thread's slot.
    pub(crate) fn slot(&self) -> &'static Slot {
        self.slot
    }
}

impl Drop for BudgetMode<'_> {
    fn drop(&mut self) {
        local::leave_budget(self.recorder);
    }
}
