//! [`measure_spawned`]: the allocations of the calling thread and of the
//! threads it starts inside a scope.
//!
//! A thread is recognised by its slot claim (a thread claims its slot on
//! its first allocation, from the cold path): while a scope is open, each
//! claim stamps the slot with the scope's generation and notes the slot's
//! counts then ([`note_claim`]). At the scope's end every slot stamped
//! with its generation adds what it counted since, and so does the
//! shared fallback slot (threads in their teardown). A slot that a thread of
//! the scope released and another thread of the scope claimed again keeps
//! its first note, so both threads count.

use core::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use crate::counters::Counters;
use crate::slot::{self, Slot};
use crate::{MAX_SLOTS, Reallocs, installed, local};

/// The generation of the open scope, or 0 when none is open.
static OPEN: AtomicU64 = AtomicU64::new(0);

/// Generations handed out so far.
static GENERATIONS: AtomicU64 = AtomicU64::new(0);

/// One scope at a time: held while a scope is open.
static SCOPE: Mutex<()> = Mutex::new(());

/// A slot's counts when a thread of the open scope claimed it: the figures
/// a [`SpawnedStats`] has, and the generation they were noted for.
struct Note {
    generation: AtomicU64,
    /// Claims of the slot in that scope (threads that had it in turn).
    claims: AtomicU64,
    cells: [AtomicU64; FIELDS],
}

const FIELDS: usize = 10;

/// One note per slot: 96 bytes each, in zeroed static memory that is only
/// touched for slots claimed while a scope is open.
static NOTES: [Note; MAX_SLOTS] = [const {
    Note {
        generation: AtomicU64::new(0),
        claims: AtomicU64::new(0),
        cells: [const { AtomicU64::new(0) }; FIELDS],
    }
}; MAX_SLOTS];

fn fields(c: &Counters) -> [u64; FIELDS] {
    [
        c.allocs(),
        c.alloc_bytes,
        c.frees(),
        c.free_bytes,
        c.grown_in_place,
        c.shrunk_in_place,
        c.moved,
        c.grown_bytes,
        c.shrunk_bytes,
        c.failures,
    ]
}

/// A thread just claimed `slot` (called by `local` on the cold path, once
/// per thread): if a scope is open, note the slot's counts. Never
/// allocates or blocks.
pub(crate) fn note_claim(slot: &Slot) {
    // Acquire: pairs with the Release store that opened the scope, although
    // the spawn of a thread inside the scope already orders it after.
    let generation = OPEN.load(Ordering::Acquire);
    if generation == 0 {
        return;
    }
    let Some(note) = NOTES.get(slot::index_of(slot)) else {
        return;
    };
    // Relaxed: only a claimer of this slot writes its note, and one thread
    // owns a slot at a time (the claim itself orders the owners).
    if note.generation.load(Ordering::Relaxed) == generation {
        note.claims.fetch_add(1, Ordering::Relaxed);
        return;
    }
    note.claims.store(1, Ordering::Relaxed);
    for (cell, value) in note.cells.iter().zip(fields(&slot.counters.read())) {
        cell.store(value, Ordering::Relaxed);
    }
    // Release: a reader that sees the generation sees the counts before it.
    note.generation.store(generation, Ordering::Release);
}

/// What the calling thread and the threads it started allocated inside a
/// [`measure_spawned`] scope.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SpawnedStats {
    /// Allocations (each realloc is one).
    pub allocs: u64,
    /// Bytes allocated (each realloc adds its new size).
    pub alloc_bytes: u64,
    /// Frees (each realloc is one).
    pub frees: u64,
    /// Bytes freed (each realloc adds its old size).
    pub free_bytes: u64,
    /// Reallocs by kind.
    pub reallocs: Reallocs,
    /// Requests the inner allocator refused.
    pub failures: u64,
    /// Threads counted besides the calling one: those that claimed a slot
    /// (made their first allocation or free) inside the scope. A thread
    /// that never touched the heap is not among them.
    pub threads: u64,
}

impl SpawnedStats {
    fn add(&mut self, d: [u64; FIELDS]) {
        let [allocs, alloc_bytes, frees, free_bytes, grown, shrunk, moved, gb, sb, failures] = d;
        self.allocs += allocs;
        self.alloc_bytes += alloc_bytes;
        self.frees += frees;
        self.free_bytes += free_bytes;
        self.reallocs.grown_in_place += grown;
        self.reallocs.shrunk_in_place += shrunk;
        self.reallocs.moved += moved;
        self.reallocs.grown_bytes += gb;
        self.reallocs.shrunk_bytes += sb;
        self.failures += failures;
    }
}

fn delta(after: [u64; FIELDS], before: [u64; FIELDS]) -> [u64; FIELDS] {
    core::array::from_fn(|i| after[i].wrapping_sub(before[i]))
}

/// Runs `f` and returns its result with what the calling thread and the
/// threads started inside `f` allocated while it ran, exactly: for a
/// worker pool or a [`std::thread::scope`] that `f` starts and joins.
///
/// ```
/// # use std::alloc::System;
/// # #[global_allocator]
/// # static GLOBAL: allocmeter::Instrumented<System> = allocmeter::Instrumented::new(System);
/// use std::hint::black_box;
///
/// let (_, quiet) = allocmeter::measure_spawned(|| {
///     std::thread::scope(|s| {
///         for _ in 0..4 {
///             s.spawn(|| ());
///         }
///     })
/// });
/// let (_, busy) = allocmeter::measure_spawned(|| {
///     std::thread::scope(|s| {
///         for _ in 0..4 {
///             s.spawn(|| drop(black_box(vec![0u8; 100])));
///         }
///     })
/// });
/// // The same threads, each with one allocation of 100 bytes more.
/// assert_eq!(busy.allocs - quiet.allocs, 4);
/// assert_eq!(busy.alloc_bytes - quiet.alloc_bytes, 400);
/// assert_eq!(busy.threads, 4);
/// ```
///
/// A thread is counted from its first allocation if that is inside the
/// scope (starting a thread allocates in the thread that starts it, which
/// is counted as the calling thread's), up to its exit or the scope's end,
/// whichever comes first. Its limits:
///
/// - Threads that were running before the scope began are not counted,
///   whatever they do for `f`: a pool made earlier (rayon's global pool, a
///   runtime's workers) is not counted. Start the pool inside the scope.
/// - Any thread that makes its first allocation while the scope is open is
///   counted, whoever started it: threads that another test of a parallel
///   `cargo test` starts meanwhile count too. Exact figures need the
///   process to itself (a `harness = false` test).
/// - A thread that outlives the scope is counted up to the scope's end.
/// - What a thread does in its teardown after allocmeter's slot guard ran
///   (thread-local destructors that run after it, which often free the
///   thread's handle), and what threads beyond [`MAX_SLOTS`]
///   do, goes to the process's shared fallback slot. Its changes during the
///   scope are counted, so those of any thread exiting meanwhile count too.
///   A thread of [`std::thread::scope`] may still be in its teardown when
///   the scope returns (the scope waits for its closure, not for its exit),
///   so a free or two made there can land after the scope's end; a thread
///   joined with [`JoinHandle::join`](std::thread::JoinHandle::join) is
///   counted to its last free.
/// - One scope at a time in the process: a `measure_spawned` on another
///   thread waits until the open one ends, and one inside another on the
///   same thread panics.
///
/// The calling thread is counted exactly as by [`measure`](crate::measure).
/// Nothing here touches the allocation hot path: the note is taken once per
/// thread, when it claims its slot.
///
/// # Panics
///
/// If allocmeter is not the program's global allocator, if the calling
/// thread has no slot of its own, or if nested.
#[track_caller]
pub fn measure_spawned<R>(f: impl FnOnce() -> R) -> (R, SpawnedStats) {
    installed::require("measure_spawned");
    let Some(own) = local::current_slot() else {
        panic!(
            "allocmeter::measure_spawned: this thread has no counting slot of its own (all {} \
             are taken)",
            MAX_SLOTS
        );
    };
    let _scope = enter_scope();
    let generation = GENERATIONS.fetch_add(1, Ordering::Relaxed) + 1;
    let before = fields(&own.counters.read());
    let fallback_before = fields(&slot::fallback().counters.read());
    // Release: see `note_claim`.
    OPEN.store(generation, Ordering::Release);
    let result = f();
    let after = fields(&own.counters.read());
    OPEN.store(0, Ordering::Release);
    let mut stats = SpawnedStats::default();
    stats.add(delta(after, before));
    slot::for_each_used(|slot| {
        let Some(note) = NOTES.get(slot::index_of(slot)) else {
            return;
        };
        // Acquire: pairs with the Release in `note_claim`.
        if core::ptr::eq(slot, own) || note.generation.load(Ordering::Acquire) != generation {
            return;
        }
        let noted: [u64; FIELDS] =
            core::array::from_fn(|i| note.cells[i].load(Ordering::Relaxed));
        stats.add(delta(fields(&slot.counters.read()), noted));
        stats.threads += note.claims.load(Ordering::Relaxed);
    });
    // What threads did in their teardown, after their slot went back.
    stats.add(delta(fields(&slot::fallback().counters.read()), fallback_before));
    (result, stats)
}

thread_local! {
    static IN_SCOPE: core::cell::Cell<bool> = const { core::cell::Cell::new(false) };
}

/// Holds the one scope, refusing a nested one.
struct ScopeGuard {
    _lock: std::sync::MutexGuard<'static, ()>,
}

#[track_caller]
fn enter_scope() -> ScopeGuard {
    if IN_SCOPE.with(|s| s.replace(true)) {
        panic!("allocmeter::measure_spawned: scopes do not nest");
    }
    // A panic in another scope's `f` poisons nothing that matters here.
    let lock = SCOPE.lock().unwrap_or_else(|e| e.into_inner());
    ScopeGuard { _lock: lock }
}

impl Drop for ScopeGuard {
    fn drop(&mut self) {
        IN_SCOPE.with(|s| s.set(false));
        OPEN.store(0, Ordering::Release);
    }
}
