//! allocmeter's own share of the counts: what threads marked internal (the
//! exporter's) and internal scopes on other threads allocated and freed,
//! split exactly from the program's share.
//!
//! Nothing here runs on the hot path. Every slot's counters stay what they
//! are (so [`crate::stats`] is unchanged); beside each slot this module keeps
//! a small state, written by the slot's owner only when it enters or leaves
//! allocmeter's side, that says how its counters divide:
//!
//! - *outside* (the owner is the program's now): the value is `done`, what
//!   the slot's owners counted as allocmeter's so far; the program's share is
//!   `counters - done`, allocmeter's is `done`.
//! - *inside* (the owner counts as allocmeter's now): the value is `frozen`,
//!   the program's share, which cannot grow meanwhile; allocmeter's share is
//!   `counters - frozen`.
//!
//! An owner counts its own slot exactly, so a transition computes the new
//! value from the counters at that instant with no error: entering,
//! `frozen = counters - done`; leaving, `done = counters - frozen`. A thread
//! leaves allocmeter's side when it exits (before its slot is released), so
//! the next owner of the slot starts on the program's side. Threads without a
//! slot of their own record into one of two shared fallback slots, the
//! program's or allocmeter's, by the same per-thread flag.
//!
//! # Readers
//!
//! A state is double-buffered: a transition writes the side the readers are
//! not reading, then publishes it by bumping the slot's `version`. A reader
//! ([`split`]) reads all free sides of the counters, then all allocation
//! sides (as [`crate::slot::sum`] does); it reads each slot's side between
//! two loads of that slot's version, with the side of the state published at
//! the first, and reads that one slot's side again if the version moved. So
//! a reader never waits for a writer (a writer stopped half-way through a
//! transition has published nothing), another slot's transitions never make
//! it read again, and a read is exact: every counter value it read divides
//! by the state in force when that value was written.
//!
//! # What crosses
//!
//! Each side is charged with what it allocates and credited with what it
//! frees. A block allocated on one side and freed on the other stays in the
//! allocating side's live figures and comes off the freeing side's (which
//! saturate at zero); totals over both sides are always exact. The exporter
//! keeps its hand-overs on its own side (see its docs).
//!
//! # fork
//!
//! In a forked child, the slots of the threads that did not come along are
//! moved to the program's side as their owners would have at exit
//! ([`reset_in_child`]); a transition a thread was in the middle of had
//! published nothing and is dropped.

use core::sync::atomic::{AtomicBool, AtomicU64, Ordering, fence};

use crate::counters::Counters;
use crate::size_class::NUM_SIZE_CLASSES;
use crate::slot::{self, MAX_SLOTS, Slot};

/// The words of one [`Counters`] value.
const WORDS: usize = 8 + 2 * NUM_SIZE_CLASSES;

type Words = [u64; WORDS];

fn to_words(c: &Counters) -> Words {
    let mut w = [0u64; WORDS];
    let head = [
        c.alloc_bytes,
        c.free_bytes,
        c.grown_in_place,
        c.shrunk_in_place,
        c.moved,
        c.grown_bytes,
        c.shrunk_bytes,
        c.failures,
    ];
    w[..8].copy_from_slice(&head);
    w[8..8 + NUM_SIZE_CLASSES].copy_from_slice(&c.alloc_by_class);
    w[8 + NUM_SIZE_CLASSES..].copy_from_slice(&c.free_by_class);
    w
}

fn from_words(w: &Words) -> Counters {
    let mut c = Counters {
        alloc_bytes: w[0],
        free_bytes: w[1],
        grown_in_place: w[2],
        shrunk_in_place: w[3],
        moved: w[4],
        grown_bytes: w[5],
        shrunk_bytes: w[6],
        failures: w[7],
        ..Counters::default()
    };
    c.alloc_by_class
        .copy_from_slice(&w[8..8 + NUM_SIZE_CLASSES]);
    c.free_by_class.copy_from_slice(&w[8 + NUM_SIZE_CLASSES..]);
    c
}

fn sub(a: &Words, b: &Words) -> Words {
    core::array::from_fn(|i| a[i].wrapping_sub(b[i]))
}

/// One published side of a slot's state.
struct Side {
    /// Whether the owner counts as allocmeter's (`value` is `frozen`) or not
    /// (`value` is `done`).
    inside: AtomicBool,
    value: [AtomicU64; WORDS],
}

/// How one slot's counters divide between the program and allocmeter.
/// Written by the slot's owner only (or by a forked child's one thread).
struct State {
    /// Bumped by each transition; its low bit names the published side.
    version: AtomicU64,
    sides: [Side; 2],
}

impl State {
    const fn new() -> Self {
        State {
            version: AtomicU64::new(0),
            sides: [const {
                Side {
                    inside: AtomicBool::new(false),
                    value: [const { AtomicU64::new(0) }; WORDS],
                }
            }; 2],
        }
    }

    /// The published side as of `version`. Relaxed loads: a reader checks
    /// the version again after an `Acquire` fence (see [`split`]); the owner
    /// reads what it wrote itself.
    fn side(&self, version: u64) -> (bool, Words) {
        let side = &self.sides[(version & 1) as usize];
        let value = core::array::from_fn(|i| side.value[i].load(Ordering::Relaxed));
        (side.inside.load(Ordering::Relaxed), value)
    }

    /// The published side now. Owner only.
    fn published(&self) -> (bool, Words) {
        self.side(self.version.load(Ordering::Relaxed))
    }

    /// Publishes a new state. Owner only.
    fn publish(&self, inside: bool, value: &Words) {
        let next = self.version.load(Ordering::Relaxed).wrapping_add(1);
        // Release fence before writing the unpublished side: a reader that
        // reads any of these stores (while it reads the side published two
        // versions ago) and then fences with Acquire also sees the previous
        // version store, so its check of the version fails.
        fence(Ordering::Release);
        let side = &self.sides[(next & 1) as usize];
        side.inside.store(inside, Ordering::Relaxed);
        for (cell, v) in side.value.iter().zip(value) {
            cell.store(*v, Ordering::Relaxed);
        }
        // Release: a reader that loads this version (Acquire) sees the side
        // written above, and the counters the owner read to compute it.
        self.version.store(next, Ordering::Release);
        // Release fence after it: a reader that reads any count the owner
        // stores from now on (under the new state), and then fences with
        // Acquire, also sees this version, so it does not divide that count
        // by the old state.
        fence(Ordering::Release);
    }
}

static STATES: [State; MAX_SLOTS] = [const { State::new() }; MAX_SLOTS];

fn state_of(slot: &Slot) -> Option<&'static State> {
    STATES.get(slot::index_of(slot))
}

/// The calling thread, owner of `slot`, moves to allocmeter's side: from now
/// on what it counts there is allocmeter's.
pub(crate) fn enter(slot: &Slot) {
    enter_as_of(slot, |s| s.counters.read());
}

/// [`enter`], as of the instant the calling thread claimed `slot` (its
/// first allocation or free): what it counted since is allocmeter's too.
/// For a thread marked internal first thing, so that std's start-up on it
/// is allocmeter's as well.
pub(crate) fn enter_since_claim(slot: &Slot) {
    enter_as_of(slot, |s| s.baseline.read());
}

/// Moves the owner of `slot` to allocmeter's side as of the counts `as_of`
/// reads (read only if it is not there already): the program's share
/// freezes at those counts less allocmeter's so far.
fn enter_as_of(slot: &Slot, as_of: impl FnOnce(&Slot) -> Counters) {
    let Some(state) = state_of(slot) else { return };
    let (inside, done) = state.published();
    if inside {
        return;
    }
    let counters = to_words(&as_of(slot));
    state.publish(true, &sub(&counters, &done));
}

/// The calling thread, owner of `slot`, moves back to the program's side.
pub(crate) fn leave(slot: &Slot) {
    let Some(state) = state_of(slot) else { return };
    let (inside, frozen) = state.published();
    if !inside {
        return;
    }
    let counters = to_words(&slot.counters.read());
    state.publish(false, &sub(&counters, &frozen));
}

/// In a forked child (one thread, no allocation): the slots of the threads
/// that did not come along (all but `own`) move to the program's side, as
/// their owners would have done at exit.
pub(crate) fn reset_in_child(own: *const Slot) {
    slot::for_each_used(|s| {
        if !core::ptr::eq(s, own) {
            leave(s);
        }
    });
}

/// Bytes this module's statics hold with `slots_used` slots ever claimed:
/// their states (each touched by its first read or transition; in `.bss`
/// until then) and allocmeter's fallback slot.
pub(crate) const fn bytes(slots_used: usize) -> usize {
    let n = if slots_used < MAX_SLOTS {
        slots_used
    } else {
        MAX_SLOTS
    };
    n * core::mem::size_of::<State>() + core::mem::size_of::<Slot>()
}

/// The process's counters, and allocmeter's share of them.
pub(crate) struct Split {
    /// Every slot, both fallback slots included: what [`slot::sum`] reads.
    pub total: Counters,
    /// allocmeter's share.
    pub internal: Counters,
}

/// Whether word `i` of [`Words`] is on the counters' free side (see
/// [`crate::counters`]): `free_bytes` and the frees by class.
fn on_free_side(i: usize) -> bool {
    i == 1 || i >= 8 + NUM_SIZE_CLASSES
}

/// Reads every slot and divides its counters (see the module docs). Never
/// blocks and never allocates.
///
/// All free sides are read before all allocation sides, as [`slot::sum`]
/// does, each slot's side with the state it divides by.
pub(crate) fn split() -> Split {
    let (mut total, mut internal) = ([0u64; WORDS], [0u64; WORDS]);
    slot::for_each_used(|s| read_side(s, true, &mut total, &mut internal));
    slot::for_each_used(|s| read_side(s, false, &mut total, &mut internal));
    Split {
        total: from_words(&total),
        internal: from_words(&internal),
    }
}

/// Adds one side of `s`'s counters into `total`, and allocmeter's share of
/// it into `internal`.
///
/// A slot's side is read between two loads of its state's version, and read
/// again if a transition came between them: the window is a few dozen loads
/// of one slot, so a read never waits for the other slots' transitions, and
/// only a thread changing sides over and over within that window makes it
/// read once more.
fn read_side(s: &Slot, free: bool, total: &mut Words, internal: &mut Words) {
    let read = |out: &mut Counters| {
        if free {
            s.counters.read_free_side(out)
        } else {
            s.counters.read_alloc_side(out)
        }
    };
    let words = || (0..WORDS).filter(move |&i| on_free_side(i) == free);
    let Some(state) = STATES.get(slot::index_of(s)) else {
        // The fallback slots: the whole of allocmeter's is allocmeter's, the
        // whole of the program's the program's.
        let mut c = Counters::default();
        read(&mut c);
        let c = to_words(&c);
        let ours = core::ptr::eq(s, slot::internal_fallback());
        for i in words() {
            total[i] = total[i].wrapping_add(c[i]);
            if ours {
                internal[i] = internal[i].wrapping_add(c[i]);
            }
        }
        return;
    };
    let mut attempt = 0u32;
    loop {
        // Acquire: the side published with this version, and every count
        // its owner stored before publishing it, are visible from here on.
        let version = state.version.load(Ordering::Acquire);
        let (inside, value) = state.side(version);
        let mut c = Counters::default();
        read(&mut c);
        // Acquire fence, then the version again. If any value read above was
        // stored after a later transition (a count the owner stored after
        // `publish`'s closing Release fence, or a word of the side it
        // rewrote after its opening one), the fences synchronise and this
        // load sees the later version. An unchanged version means every
        // value read divides by the state read.
        fence(Ordering::Acquire);
        if state.version.load(Ordering::Relaxed) == version {
            let c = to_words(&c);
            for i in words() {
                total[i] = total[i].wrapping_add(c[i]);
                // Inside, `value` is the program's frozen share; outside, it
                // is allocmeter's share so far.
                let ours = if inside {
                    c[i].wrapping_sub(value[i])
                } else {
                    value[i]
                };
                internal[i] = internal[i].wrapping_add(ours);
            }
            return;
        }
        attempt += 1;
        if attempt.is_multiple_of(16) {
            std::thread::yield_now();
        } else {
            core::hint::spin_loop();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_round_trip() {
        let mut c = Counters {
            alloc_bytes: 1,
            free_bytes: 2,
            grown_in_place: 3,
            shrunk_in_place: 4,
            moved: 5,
            grown_bytes: 6,
            shrunk_bytes: 7,
            failures: 8,
            ..Counters::default()
        };
        c.alloc_by_class[0] = 9;
        c.alloc_by_class[NUM_SIZE_CLASSES - 1] = 10;
        c.free_by_class[0] = 11;
        c.free_by_class[NUM_SIZE_CLASSES - 1] = 12;
        assert_eq!(from_words(&to_words(&c)), c);
        let w = to_words(&c);
        assert_eq!(sub(&w, &w), [0; WORDS]);
    }

    #[test]
    fn a_state_publishes_the_side_it_wrote_and_flips_between_two() {
        let state = State::new();
        assert_eq!(state.published(), (false, [0; WORDS]));
        let a = core::array::from_fn(|i| i as u64);
        state.publish(true, &a);
        assert_eq!(state.version.load(Ordering::Relaxed), 1);
        assert_eq!(state.published(), (true, a));
        let b = [7; WORDS];
        state.publish(false, &b);
        assert_eq!(state.published(), (false, b));
        // The side of version 1 is still there, unpublished.
        assert_eq!(state.side(1), (true, a));
    }
}
