//! The calling thread's state: which slot it records into, and where it is in
//! its sampling clock.
//!
//! This is the only thread-local the hot path touches. It is `const`-initialised
//! and has no destructor, so `thread_local!` compiles it to a bare TLS slot: no
//! lazy-init check, no destructor registration, never "destroyed", and reading
//! it can neither allocate nor panic (rust-lang/rust `thread_local/native`).
//!
//! Releasing the slot at thread exit needs a destructor, which lives in a
//! second thread-local, [`GUARD`]. It is registered once per thread, from the
//! slow path of the thread's first allocation, after the slot is already in
//! place: an allocation made while registering (glibc's
//! `__cxa_thread_atexit_impl` callocs; std's fallback list may allocate)
//! therefore records into the new slot like any other, instead of recursing
//! into the claim path. The [`Phase::Claiming`] phase covers the instant
//! before that.
//!
//! Reentrancy in the sampler is explicit too: [`Local::busy`] is set while a
//! sample is taken, and an allocation made meanwhile (by the unwinder, or a
//! signal handler) is counted but not sampled, and a free it makes of a
//! sampled block is not looked up (so no shard lock can be taken twice).
//!
//! Budget mode ([`crate::budget`]) also lives on the cold path: while a
//! budget recorder is set, the thread's clock is held at zero so that every
//! allocation reaches [`sampling_point`], which shows it to the recorder and
//! counts the thread's real clock down in the recorder's place (so the
//! samples the thread takes are the ones it would have taken). The hot path
//! is unchanged.
//!
//! It calls down only (slots, counters, the sampler's statics, the sampled
//! table, the record, the drainer, and [`crate::internal`] when the thread
//! enters or leaves allocmeter's side), except for two pairs: it registers
//! the fork handlers of [`crate::fork`], which ask it for the forking
//! thread's slot (see there); and [`crate::budget`] turns budget mode on and
//! off here, while the cold path here shows allocations to the budget's
//! recorder and tells a budget scope of each slot claim (hooks into the
//! cold path cannot be made otherwise without a cost on the hot path).

use core::cell::Cell;
use core::ptr;
use core::sync::atomic::Ordering;

use crate::counters::{Op, Owned, ReallocKind, Shared};
use crate::record::{self, AllocRecord, FreeEnd, FreeRecord, Origin, ResizeRecord};
use crate::slot::{self, SamplingCells, Slot};
use crate::lockfree::sampled;
use crate::{sampler, stack};

/// Where a thread is in its life, as far as recording goes.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Phase {
    /// Has not allocated yet: the next allocation claims a slot.
    Unclaimed,
    /// Claiming a slot right now; a reentrant allocation records into the
    /// fallback slot rather than claiming again.
    Claiming,
    /// Owns the slot in [`Local::slot`].
    Owner,
    /// Records into the fallback slot for the rest of its life: the registry
    /// was full, or the thread's slot was released at thread exit.
    Fallback,
}

/// The per-thread record.
pub(crate) struct Local {
    /// The owned slot, or null unless `phase == Owner`.
    slot: Cell<*const Slot>,
    phase: Cell<Phase>,
    /// The sampling clock: the bytes this thread may still allocate before
    /// its next sampling point. Every allocation subtracts its size (one
    /// `sub` on thread-local memory); the allocation that takes it below zero
    /// is the sampling point. Set to the distance when one is drawn.
    bytes_to_sample: Cell<i64>,
    /// The rate the distance was drawn with (0: sampling was off, and the
    /// distance only schedules a recheck of the rate).
    drawn_rate: Cell<u64>,
    /// Random state for sampling distances.
    rng: Cell<u64>,
    /// Set while this thread is inside the sampler.
    busy: Cell<bool>,
    /// Internal threads (the exporter's) are counted, never sampled.
    internal: Cell<bool>,
    /// How many internal scopes this thread is in (a thread marked internal
    /// is in one for life): above zero, what it counts is allocmeter's (see
    /// [`crate::internal`]). Read only off the hot path.
    accounting: Cell<u32>,
    /// This thread's stack bounds for the frame-pointer walk; (0, 0) until
    /// first needed, (1, 1) if unknown.
    stack: Cell<(usize, usize)>,
    /// The budget recorder this thread shows every allocation to, or null
    /// (see [`crate::budget`]). Read only on the cold path.
    budget: Cell<*const crate::budget::Recorder>,
}

thread_local! {
    static LOCAL: Local = const {
        Local {
            slot: Cell::new(ptr::null()),
            phase: Cell::new(Phase::Unclaimed),
            bytes_to_sample: Cell::new(0),
            drawn_rate: Cell::new(0),
            rng: Cell::new(0),
            busy: Cell::new(false),
            internal: Cell::new(false),
            accounting: Cell::new(0),
            stack: Cell::new((0, 0)),
            budget: Cell::new(ptr::null()),
        }
    };
}

/// Releases the thread's slot when the thread exits.
struct SlotGuard;

impl Drop for SlotGuard {
    fn drop(&mut self) {
        // `LOCAL` has no destructor, so it is still accessible here.
        let _ = LOCAL.try_with(|local| {
            let slot = local.slot.replace(ptr::null());
            local.phase.set(Phase::Fallback);
            // SAFETY: a non-null `slot` always points into the `static`
            // registry (set only in `claim_slot`), so it is valid for 'static.
            if let Some(slot) = unsafe { slot.as_ref() } {
                // The next owner starts on the program's side; what this
                // thread still does goes to allocmeter's fallback slot.
                if local.accounting.get() > 0 {
                    crate::internal::leave(slot);
                }
                slot.release();
            }
        });
    }
}

thread_local! {
    static GUARD: SlotGuard = const { SlotGuard };
}

/// Applies `op` to the calling thread's slot, claiming a slot first if the
/// thread has none yet, or to the shared fallback slot. Never allocates,
/// blocks or panics.
#[inline(always)]
pub(crate) fn record<O: Op>(op: O) {
    if !record_owned(op) {
        record_slow(op);
    }
}

/// Applies `op` to the calling thread's own slot and returns `true`, or
/// returns `false` and records nothing if the thread has none (then the
/// caller must [`record`] it, off its hot path). For a caller whose
/// fallback is a tail call, so that its hot path needs no stack frame.
#[inline(always)]
pub(crate) fn record_owned<O: Op>(op: O) -> bool {
    let slot = LOCAL
        .try_with(|local| local.slot.get())
        .unwrap_or(ptr::null());
    // SAFETY: `Local::slot` is non-null only while this thread owns that slot,
    // and every slot lives in a `static`, so the reference is valid.
    match unsafe { slot.as_ref() } {
        Some(slot) => {
            op.apply::<Owned>(&slot.counters);
            true
        }
        None => false,
    }
}

/// Applies `op` (an allocation of `size` bytes that returned `ptr`) and checks
/// the sampling clock: one thread-local access for both.
#[inline(always)]
pub(crate) fn record_alloc<O: Op>(op: O, ptr: *mut u8, size: usize) {
    let done = LOCAL
        .try_with(|local| {
            // SAFETY: as in `record`.
            let Some(slot) = (unsafe { local.slot.get().as_ref() }) else {
                return false;
            };
            op.apply::<Owned>(&slot.counters);
            tick_clock(local, slot, ptr, size, op);
            true
        })
        .unwrap_or(false);
    if !done {
        record_alloc_slow(op, ptr, size);
    }
}

/// Counts an allocation of `size` bytes at `ptr` (made by `op`) down the
/// thread's sampling clock, and takes a sampling point if that passes it.
/// Compiles to a `sub` on thread-local memory and a `js`; `op`'s origin is
/// worked out only past the `js`. (A `Layout`'s size is at most
/// `isize::MAX`, and the clock is at most a drawn distance, so the `i64`
/// never wraps.)
#[inline(always)]
fn tick_clock<O: Op>(local: &Local, slot: &Slot, ptr: *mut u8, size: usize, op: O) {
    let left = local.bytes_to_sample.get().wrapping_sub(size as i64);
    local.bytes_to_sample.set(left);
    if left < 0 {
        sampling_point(local, slot, ptr, size, op.origin());
    }
}

/// `record_alloc` for a thread without a slot yet: claims one, so that a
/// thread's first allocation is counted down (and may be sampled) like any
/// other.
#[cold]
#[inline(never)]
fn record_alloc_slow<O: Op>(op: O, ptr: *mut u8, size: usize) {
    match current_slot() {
        Some(slot) => {
            op.apply::<Owned>(&slot.counters);
            let _ = LOCAL.try_with(|local| tick_clock(local, slot, ptr, size, op));
        }
        None => {
            op.apply::<Shared>(&fallback_slot().counters);
        }
    }
}

#[cold]
#[inline(never)]
fn record_slow<O: Op>(op: O) {
    match current_slot() {
        Some(slot) => op.apply::<Owned>(&slot.counters),
        None => op.apply::<Shared>(&fallback_slot().counters),
    };
}

/// The shared slot the calling thread counts into when it has none of its
/// own: allocmeter's while it is in an internal scope, the program's
/// otherwise.
fn fallback_slot() -> &'static Slot {
    let internal = LOCAL
        .try_with(|l| l.accounting.get() > 0)
        .unwrap_or(false);
    slot::fallback_for(internal)
}

/// The calling thread's own slot, claiming one if it has never had one.
/// `None` if it records into the fallback slot.
pub(crate) fn current_slot() -> Option<&'static Slot> {
    LOCAL
        .try_with(|local| match local.phase.get() {
            // SAFETY: non-null while `Owner` (see `record`); slots are static.
            Phase::Owner => unsafe { local.slot.get().as_ref() },
            Phase::Unclaimed => claim_slot(local),
            Phase::Claiming | Phase::Fallback => None,
        })
        .ok()
        .flatten()
}

/// Slots claimed so far, for the sampling seeds.
static CLAIMS: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);

#[cold]
fn claim_slot(local: &Local) -> Option<&'static Slot> {
    local.phase.set(Phase::Claiming);
    let Some(slot) = slot::claim() else {
        local.phase.set(Phase::Fallback);
        return None;
    };
    // Seed the sampling generator from the slot and the TLS block's address
    // (distinct per live thread) and the number of claims so far (a thread
    // that takes over an exited thread's slot often has its TLS address
    // too, and would otherwise sample exactly as it did), then draw the
    // first sampling distance.
    // Relaxed: a counter, ordered with nothing.
    let claims = CLAIMS.fetch_add(1, Ordering::Relaxed);
    let seed = (slot::index_of(slot) as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ (local as *const Local as u64)
        ^ claims.wrapping_mul(0xD6E8_FEB8_6659_FD93);
    local.rng.set(seed | 1);
    draw_distance(local);
    local.slot.set(slot);
    local.phase.set(Phase::Owner);
    // A scope counting the threads it spawns notes the slot's counts now.
    crate::budget::note_claim(slot);
    // Register the exit guard. Allocations it makes record into `slot`.
    if GUARD.try_with(|_| ()).is_err() {
        // The thread is already tearing its thread-locals down, so the guard
        // would never run: give the slot back now rather than leak it.
        local.slot.set(ptr::null());
        local.phase.set(Phase::Fallback);
        slot.release();
        return None;
    }
    // Once per process, from the first thread that gets here (it may
    // allocate: recorded into `slot`).
    crate::fork::register_handlers();
    Some(slot)
}

/// Draws the next sampling distance with the current rate and sets the clock
/// to go off once the thread has allocated more than that many bytes.
fn draw_distance(local: &Local) {
    let rate = sampler::sample_rate();
    let mut rng = local.rng.get();
    let distance = if rate == 0 {
        sampler::OFF_RECHECK_BYTES as i64
    } else {
        sampler::next_distance(&mut rng, rate)
    };
    local.rng.set(rng);
    let distance = i64::try_from(distance.unsigned_abs()).unwrap_or(i64::MAX);
    local.bytes_to_sample.set(distance);
    local.drawn_rate.set(rate);
}

/// The sampling clock went off at the allocation of `size` bytes at `ptr`
/// (or, in budget mode, any allocation did).
#[cold]
#[inline(never)]
fn sampling_point(local: &Local, slot: &Slot, ptr: *mut u8, size: usize, origin: Origin) {
    // SAFETY: non-null only between `enter_budget` and `leave_budget`, while
    // the recorder lives on this thread's stack in the caller of both.
    match unsafe { local.budget.get().as_ref() } {
        Some(recorder) => budget_point(local, slot, ptr, size, origin, recorder),
        None => real_sampling_point(local, slot, ptr, size, origin),
    }
}

/// An allocation in budget mode: the thread's real clock (kept by the
/// recorder meanwhile) is counted down and may take a sample as usual; then
/// the recorder sees the allocation, and the clock is held at zero again so
/// that the next allocation comes here too.
#[cold]
fn budget_point(
    local: &Local,
    slot: &Slot,
    ptr: *mut u8,
    size: usize,
    origin: Origin,
    recorder: &crate::budget::Recorder,
) {
    let left = recorder.clock.get().wrapping_sub(size as i64);
    recorder.clock.set(left);
    if left < 0 {
        real_sampling_point(local, slot, ptr, size, origin);
        recorder.clock.set(local.bytes_to_sample.get());
    }
    // Allocations made inside the sampler or the recorder (a reentrant
    // unwind) are counted, but not shown.
    if !local.busy.get() {
        local.busy.set(true);
        recorder.observe(slot, size, stack_bounds(local));
        local.busy.set(false);
    }
    local.bytes_to_sample.set(0);
}

/// Budget mode on for the calling thread: every allocation it makes is shown
/// to `recorder` until [`leave_budget`]. Looks up the thread's stack bounds
/// and captures one stack first (either may allocate the first time), so
/// that the recorder's captures do not. Returns the thread's slot, or `None`
/// (and nothing changes) if it records into the fallback slot.
pub(crate) fn enter_budget(recorder: &crate::budget::Recorder) -> Option<&'static Slot> {
    let slot = current_slot()?;
    LOCAL
        .try_with(|local| {
            if !local.budget.get().is_null() {
                return None;
            }
            let mut frames = [0usize; 4];
            let _ = stack::capture(&mut frames, stack_bounds(local));
            recorder.clock.set(local.bytes_to_sample.get());
            local.bytes_to_sample.set(0);
            local.budget.set(recorder);
            Some(slot)
        })
        .ok()
        .flatten()
}

/// Budget mode off: the thread's real clock, kept by `recorder` meanwhile,
/// is back in place.
pub(crate) fn leave_budget(recorder: &crate::budget::Recorder) {
    let _ = LOCAL.try_with(|local| {
        if ptr::eq(local.budget.get(), recorder) {
            local.budget.set(ptr::null());
            local.bytes_to_sample.set(recorder.clock.get());
        }
    });
}

/// Whether the calling thread is in budget mode.
pub(crate) fn in_budget() -> bool {
    LOCAL
        .try_with(|l| !l.budget.get().is_null())
        .unwrap_or(false)
}

/// The sampling clock went off: take a sample if the rate allows, and draw
/// the next distance.
fn real_sampling_point(local: &Local, slot: &Slot, ptr: *mut u8, size: usize, origin: Origin) {
    let drawn = local.drawn_rate.get();
    // Sample only if the distance was drawn for the rate in force now, so that
    // every sample's weight matches the process that chose it. Otherwise (the
    // rate changed, or sampling was off) just draw a new distance.
    if drawn != 0 && drawn == sampler::sample_rate() && !local.busy.get() && !local.internal.get() {
        local.busy.set(true);
        take_sample(local, slot, ptr, size, drawn, origin);
        local.busy.set(false);
    }
    draw_distance(local);
}

/// Captures the stack and hands the sample to the slot's ring.
///
/// A record that does not fit (the drainer is behind: it did not get the CPU
/// in time) makes the thread switch at once to a ring four times as big
/// ([`Slot::grow_ring`]), within the rings' bounds; a drainer must be
/// registered, since nobody else would read it. Only if that is refused is
/// the sample not handed over: its weight is carried (see
/// [`slot::Carry`]) by the thread's next record, so the totals stay
/// unbiased. Never waits.
///
/// At a `realloc` of a block that is still tracked (its chain goes on at
/// the same address), the new sample takes the block over and names the
/// chain as its parent.
fn take_sample(
    local: &Local,
    slot: &Slot,
    ptr: *mut u8,
    size: usize,
    rate: u64,
    origin: Origin,
) {
    let depth = sampler::stack_depth();
    let mut frames = [0usize; stack::MAX_DEPTH];
    let n = stack::capture(
        &mut frames[..depth.min(stack::MAX_DEPTH)],
        stack_bounds(local),
    );
    // Timed after the capture, so that a lifetime leaves the sampler's own
    // time out.
    let time_ns = sampler::clock_ns();
    let id = sampler::next_sample_id();
    let mut parent = 0;
    match sampled::insert(ptr, id) {
        Ok(None) => {}
        Ok(Some(chain)) if matches!(origin, Origin::Realloc { .. }) => parent = chain,
        // An entry whose free was not seen (made inside the sampler).
        // (This push may switch rings, so the ring is looked up after it.)
        Ok(Some(stale)) => {
            push_event(&free_record(stale, FreeEnd::Untracked, None));
        }
        Err(_) => return carry(slot, size, rate),
    }
    let Some(mut ring) = slot.ring_for_rate(rate) else {
        untrack(ptr, parent);
        return carry(slot, size, rate);
    };
    let record = AllocRecord {
        id,
        address: ptr as usize,
        size: size as u64,
        rate,
        slot: slot::index_of(slot),
        time_ns,
        origin,
        parent,
        size_allocs: slot.counters.allocs_in_cell_of(size),
        stack: &frames[..n],
    };
    let key = record::stack_key(record.stack);
    let (carried, objects, bytes) = slot.carry.get();
    let mut words = [0u64; record::MAX_PUSH_WORDS];
    let encode = |words: &mut [u64; record::MAX_PUSH_WORDS], same: bool| {
        let start = if carried > 0 {
            words[..record::CARRY_LEN].copy_from_slice(&record::encode_carry(
                carried, objects, bytes,
            ));
            record::CARRY_LEN
        } else {
            0
        };
        start + record.encode(&mut words[start..], same)
    };
    // Relaxed: the owner's own cell.
    let same = slot.producer.last_stack.load(Ordering::Relaxed) == key;
    let len = encode(&mut words, same);
    if !ring.push(&words[..len], ring.free_reserve()) {
        let grown = if crate::drainer::is_registered() {
            slot.grow_ring(record::CARRY_LEN + record::alloc_len(n))
        } else {
            None
        };
        let Some(bigger) = grown else {
            untrack(ptr, parent);
            crate::drainer::wake_drainer();
            return carry(slot, size, rate);
        };
        ring = bigger;
        // The first record in a new ring has its whole stack.
        let len = encode(&mut words, false);
        if !ring.push(&words[..len], ring.free_reserve()) {
            untrack(ptr, parent);
            return carry(slot, size, rate);
        }
    }
    SamplingCells::bump::<Owned>(&slot.sampling.taken);
    if carried > 0 {
        slot.carry.clear();
    }
    slot.producer.last_stack.store(key, Ordering::Relaxed);
    let free = ring.free_words();
    slot.note_push(ring.capacity() - free);
    // Half full: the drainer, polling at its adaptive interval, is
    // behind (a burst). Waking it costs a system call, so only then.
    if free < ring.capacity() / 2 {
        crate::drainer::wake_drainer();
    }
}

/// The sample taken at `ptr` could not be handed over: its table entry
/// goes, and the chain it took the block over from (`parent`, or 0) is
/// tracked there again.
#[cold]
fn untrack(ptr: *mut u8, parent: u64) {
    if parent == 0 || sampled::insert(ptr, parent).is_err() {
        let _ = sampled::remove(ptr);
    }
}

/// A sample of `size` bytes at `rate` could not be handed over: the slot
/// keeps its weight for its next record.
#[cold]
fn carry(slot: &Slot, size: usize, rate: u64) {
    slot.carry
        .add(sampler::sample_weight(size as u64, rate), size as u64);
    SamplingCells::bump::<Owned>(&slot.sampling.carried);
}

/// The thread's stack bounds, looked up on first use.
fn stack_bounds(local: &Local) -> Option<(usize, usize)> {
    let (lo, hi) = local.stack.get();
    if lo == 0 && hi == 0 {
        let bounds = stack::current_thread_stack().unwrap_or((1, 1));
        local.stack.set(bounds);
        return stack_bounds(local);
    }
    (hi > lo + 1).then_some((lo, hi))
}

/// A sampled block at `ptr` is being freed (its table entry already removed,
/// with `id`): report the free through the calling thread's ring, or the
/// fallback slot's.
///
/// The thread is marked busy while it pushes: a signal handler that frees a
/// sampled block in the middle of the push must not push into the same
/// single-producer ring, so such a nested free is counted as lost instead.
pub(crate) fn report_sampled_free(id: u64, size: usize) {
    report_end(id, FreeEnd::Freed, Some(size));
}

/// A sampled block (`id`, its table entry already removed) is tracked no
/// more, though not freed (the table could not take it back after a failed
/// `realloc`): report the end of its tracking, as [`report_sampled_free`]
/// reports a free.
pub(crate) fn report_sampled_untracked(id: u64) {
    report_end(id, FreeEnd::Untracked, None);
}

fn report_end(id: u64, end: FreeEnd, size: Option<usize>) {
    let nested = LOCAL.try_with(|l| l.busy.replace(true)).unwrap_or(false);
    if nested {
        lose_free();
        return;
    }
    push_event(&free_record(id, end, size));
    let _ = LOCAL.try_with(|l| l.busy.set(false));
}

/// A tracked block (`id`, its table entry already removed) was resized by
/// `realloc` to `new_size` bytes at `new_ptr`: report it, and track it on
/// at its new address. If the resize cannot be reported, the block is
/// tracked no more (its free counts as lost); if the table cannot take it
/// back, its tracking ends there (a [`FreeEnd::Untracked`] free).
/// Busy while it pushes and inserts, as [`report_sampled_free`].
pub(crate) fn report_sampled_resize(id: u64, new_ptr: *mut u8, new_size: usize, kind: ReallocKind) {
    let nested = LOCAL.try_with(|l| l.busy.replace(true)).unwrap_or(false);
    if nested {
        lose_free();
        return;
    }
    let resize = ResizeRecord {
        id,
        address: new_ptr as usize,
        new_size: new_size as u64,
        time_ns: sampler::clock_ns(),
        slot: own_slot_index(),
        kind,
    };
    if push_event(&resize.encode()) {
        match sampled::insert(new_ptr, id) {
            Ok(None) => {}
            Ok(Some(stale)) => {
                push_event(&free_record(stale, FreeEnd::Untracked, None));
            }
            Err(_) => {
                push_event(&free_record(id, FreeEnd::Untracked, None));
            }
        }
    }
    let _ = LOCAL.try_with(|l| l.busy.set(false));
}

/// The calling thread's slot index, or `MAX_SLOTS` if it has none.
fn own_slot_index() -> usize {
    // SAFETY: `own_slot` is null or points into the static registry.
    match unsafe { own_slot().as_ref() } {
        Some(slot) => slot::index_of(slot),
        None => slot::MAX_SLOTS,
    }
}

/// The free record of `id`, now, on the calling thread, with the thread's
/// allocations of `size`'s cell (0 without a size, or a slot of its own).
fn free_record(id: u64, end: FreeEnd, size: Option<usize>) -> [u64; record::FREE_LEN] {
    // SAFETY: `own_slot` is null or points into the static registry.
    let own = unsafe { own_slot().as_ref() };
    FreeRecord {
        id,
        time_ns: sampler::clock_ns(),
        slot: own.map_or(slot::MAX_SLOTS, slot::index_of),
        end,
        size_allocs: match (own, size) {
            (Some(slot), Some(size)) => slot.counters.allocs_in_cell_of(size),
            _ => 0,
        },
    }
    .encode()
}

/// Counts a sampled free that could not be reported.
fn lose_free() {
    match current_slot() {
        Some(slot) => SamplingCells::bump::<Owned>(&slot.sampling.frees_lost),
        None => SamplingCells::bump::<Shared>(&slot::fallback().sampling.frees_lost),
    }
}

/// Pushes a free or resize record (`words`); the caller makes sure no
/// other push into this thread's ring is in progress. Whether it was
/// pushed: if not, the free is counted as lost.
fn push_event(words: &[u64]) -> bool {
    let owned = current_slot();
    let pushed = match owned {
        Some(slot) => slot
            .ring_for_rate(sampler::sample_rate())
            .is_some_and(|r| r.push(words, 0))
            // Full: as for an allocation record, a bigger ring at once.
            || (crate::drainer::is_registered()
                && slot.grow_ring(words.len()).is_some_and(|r| r.push(words, 0))),
        None => slot::fallback()
            .shared_ring()
            .and_then(|r| r.with_producer_lock(|r| r.push(words, 0)))
            .unwrap_or(false),
    };
    if !pushed {
        lose_free();
    }
    pushed
}

/// Draws a new sampling distance for the calling thread with the rate in
/// force now.
pub(crate) fn restart_sampling_clock() {
    let _ = LOCAL.try_with(|local| {
        // A thread without a slot draws its first distance when it claims one.
        if !local.slot.get().is_null() {
            draw_distance(local);
            // SAFETY: as in `sampling_point`.
            if let Some(recorder) = unsafe { local.budget.get().as_ref() } {
                // Budget mode: the recorder keeps the clock, which stays at 0.
                recorder.clock.set(local.bytes_to_sample.get());
                local.bytes_to_sample.set(0);
            }
        }
    });
}

/// The calling thread's own slot, without claiming one (null if it has none).
pub(crate) fn own_slot() -> *const Slot {
    LOCAL
        .try_with(|local| local.slot.get())
        .unwrap_or(ptr::null())
}

/// Whether the calling thread is inside the sampler right now.
pub(crate) fn busy() -> bool {
    LOCAL.try_with(|l| l.busy.get()).unwrap_or(true)
}

/// Marks the calling thread as internal (counted, never sampled) or not, and
/// returns what it was.
pub(crate) fn set_internal(internal: bool) -> bool {
    LOCAL
        .try_with(|l| l.internal.replace(internal))
        .unwrap_or(false)
}

/// One internal scope deeper for the calling thread; whether it was in none.
fn deepen() -> bool {
    LOCAL
        .try_with(|l| {
            let depth = l.accounting.get();
            l.accounting.set(depth.saturating_add(1));
            depth == 0
        })
        .unwrap_or(false)
}

/// The calling thread enters an internal scope: from the outermost one on,
/// what it counts is allocmeter's (see [`crate::internal`]). Claims a slot
/// if the thread has none yet.
pub(crate) fn enter_internal() {
    if deepen() && let Some(slot) = current_slot() {
        crate::internal::enter(slot);
    }
}

/// The calling thread is internal for the rest of its life, from its start:
/// it enters an internal scope it never leaves, and what it counted since it
/// claimed its slot moves to allocmeter's side too (std's start-up on a new
/// thread frees the block its spawner allocated, and copies a named
/// thread's name; an exporter spawns its threads inside an internal scope).
pub(crate) fn enter_internal_for_life() {
    if deepen() && let Some(slot) = current_slot() {
        crate::internal::enter_since_claim(slot);
    }
}

/// The calling thread leaves an internal scope: after the outermost one,
/// what it counts is the program's again.
pub(crate) fn leave_internal() {
    let outermost = LOCAL
        .try_with(|l| {
            let depth = l.accounting.get();
            l.accounting.set(depth.saturating_sub(1));
            depth == 1
        })
        .unwrap_or(false);
    if outermost {
        // SAFETY: non-null only while this thread owns that slot (see
        // `record`); slots are static.
        if let Some(slot) = unsafe { own_slot().as_ref() } {
            crate::internal::leave(slot);
        }
    }
}
