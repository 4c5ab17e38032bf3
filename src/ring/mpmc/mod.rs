//! A bounded many-producer many-consumer ring of fixed-size slots in shared memory,
//! after Dmitry Vyukov's bounded MPMC queue, made crash-safe across processes.
//!
//! # Layout
//!
//! ```text
//! [ tail ][ head ][ not_empty waiter ][ not_full waiter ][ control: closed, unfinished, joined ]
//! [ slot 0 ][ slot 1 ] ... [ slot cap-1 ]          (each slot 128 bytes, cache-line aligned)
//! slot = [ state: u64 ][ owner: u64 ][ meta: u64 = kind << 32 | len ][ data: 104 bytes ]
//! ```
//!
//! `tail` and `head` are monotonic positions; position `p` lives in slot `p % cap`, so
//! the ring holds exactly `cap` items (any `cap`, not only powers of two).
//!
//! # The slot state word
//!
//! `state` packs `stamp: 40 bits | phase: 2 bits | tid: 22 bits` (the claimer's
//! kernel thread id; task ids are below 2^22). `stamp` is the position (mod 2^40) the
//! phase refers to; phases are `EMPTY(p)` (free for the producer of position `p`),
//! `WRITING(p, tid)`, `FULL(p)` and `READING(p, tid)`; a consumer releases a slot as
//! `EMPTY(p + cap)`. The stamp only grows, so a state word never repeats (for 2^40
//! operations per slot) and a compare-and-swap on it cannot suffer ABA.
//!
//! Unlike Vyukov's original, a party *claims the slot first* (CAS `EMPTY(p)` →
//! `WRITING(p, tid)`, or `FULL(p)` → `READING(p, tid)`) and then advances the index
//! with a CAS that anyone may perform ("helping": whoever finds slot `p` already
//! claimed moves the index past it). So the claimer's id is in shared memory from the
//! very instant it owns the slot, and a party that dies holding a slot never wedges
//! the index.
//!
//! # Dead owners
//!
//! A party stuck behind a `WRITING`/`READING` slot (a consumer at `head`, a producer at
//! `tail` one lap later) checks, before it parks (not on sight: the owner is nearly
//! always alive and about to finish; and then at most every `LIVENESS_EVERY`), whether
//! the owner is alive, by [`sync::owner`](crate::sync::owner)'s rule: the tid from the
//! state word, and the start time from the owner's tag (written to `owner` right after
//! the claim and cleared before the release, so a non-zero `owner` is always the
//! current owner's; until it is written the start time is unknown). A zombie, a task
//! with the tid but another start time (a reused id), or a thread that exited holding
//! the slot, is dead. The checker takes a dead owner's slot over (CAS to the same phase
//! under its own tid), lets an optional hook clean up what the slot referred to (a
//! large item's pages), and releases it as `EMPTY(p + cap)`, exactly as if the item
//! had been consumed: the item it held is the only loss. (Reading the slot only after
//! the takeover matters: loom caught a version that read it before its CAS, racing with
//! the next producer's write.)
//!
//! # Waiting
//!
//! A blocked party spins, yields, then parks on `not_empty` / `not_full` (see
//! `sync::waiter`), except in three cases, all about running with more processes than
//! cores, where a spinning waiter takes the CPU that the party it waits for needs:
//!
//! * Blocked by a slot another process holds mid-operation (`WRITING` at `head`,
//!   `READING`/`WRITING` at `tail`): a short spin, then short naps
//!   (`Waiter::wait_for_owner`). Its owner was preempted between claim and release.
//! * A producer finding a large ring full naps once (`wait::FULL_NAP`) before waiting as
//!   usual, so the consumers drain a stretch instead of being chased slot by slot.
//! * A process whose blocking operations keep colliding with others of its role
//!   naps ([`contended`](wait::contended)), one per role at a time.
//!
//! Liveness of a blocking owner is checked only before sleeping, and at most every
//! `dead::LIVENESS_EVERY`.
//!
//! # Memory orderings
//!
//! * A claim CAS is `AcqRel`: Acquire pairs with the previous owner's Release
//!   transition (so the slot's bytes are ours), Release publishes the cleared `start`.
//! * `FULL(p)` is stored with Release by the producer after it wrote `meta` and
//!   `data`; it pairs with the consumer's Acquire load before its claim CAS.
//! * `EMPTY(p + cap)` is stored with Release by the consumer after it copied the data
//!   out; it pairs with the next producer's Acquire load, so the producer's writes
//!   cannot overtake the consumer's reads.
//! * The index CASes are `Relaxed`: the indexes are only hints for where to look; all
//!   ownership is decided by the slot CAS.
//!
//! # Bad input
//!
//! The slot's `meta` comes from another process. Its length is checked against the
//! slot's data size before any byte is copied; a bad one is a [`ProtocolError`](crate::error::ProtocolError), and
//! the slot is still released so the queue goes on.
//!
//! # Files
//!
//! `state` (the slot state word), `claim` (one put or get without waiting), `dead`
//! (taking over a dead owner's slot), `wait` (the blocking put and get, and their
//! naps).

use std::ptr::NonNull;
use std::time::Instant;

use crate::sync::atomic::{AtomicU32, AtomicU64, CachePadded, Ordering};
pub(crate) use crate::sync::owner::me;
use crate::sync::owner::Owner;
use crate::sync::waiter::{Wait, Waiter};

mod claim;
mod dead;
mod state;
mod wait;

use state::{pack, Phase};
pub(crate) use wait::{GetFail, PutFail};

/// Size of one slot in bytes.
pub(crate) const SLOT_SIZE: usize = 128;
/// Bytes of item data a slot holds inline.
pub(crate) const INLINE: usize = SLOT_SIZE - 24;
/// Largest capacity accepted (slots).
pub(crate) const MAX_CAPACITY: u64 = 1 << 32;

#[repr(C)]
#[derive(Default)]
struct Control {
    closed: AtomicU32,
    joinable: AtomicU32,
    unfinished: AtomicU64,
    joined: Waiter,
    /// Per role (producers, consumers): 1 while one of them naps for contention (see
    /// [`contended`](wait::contended)); a napper that dies leaves it set, which only ends such naps.
    backoff: [AtomicU32; 2],
}

/// The ring's control block, at the start of its memory.
#[repr(C)]
#[derive(Default)]
pub(crate) struct MpmcHeader {
    tail: CachePadded<AtomicU64>,
    head: CachePadded<AtomicU64>,
    not_empty: CachePadded<Waiter>,
    not_full: CachePadded<Waiter>,
    ctl: CachePadded<Control>,
}

/// One slot. `data` is written only by the slot's owner (the claimer of `state`).
#[repr(C, align(128))]
pub(crate) struct Slot {
    state: AtomicU64,
    /// The claimer's [`Owner::tag`], from right after its claim to just before its
    /// release; 0 otherwise.
    owner: AtomicU64,
    meta: AtomicU64,
    data: DataCell,
}

/// A slot's data bytes: std's `UnsafeCell`, or loom's (which checks that the owner
/// protocol really orders every access) under `cfg(loom)`.
struct DataCell {
    #[cfg(not(loom))]
    cell: std::cell::UnsafeCell<[u8; INLINE]>,
    #[cfg(loom)]
    cell: loom::cell::UnsafeCell<[u8; INLINE]>,
}

impl DataCell {
    #[cfg(loom)]
    fn new() -> DataCell {
        DataCell {
            cell: loom::cell::UnsafeCell::new([0; INLINE]),
        }
    }

    #[inline(always)]
    fn with_mut<R>(&self, f: impl FnOnce(*mut u8) -> R) -> R {
        #[cfg(not(loom))]
        return f(self.cell.get().cast());
        #[cfg(loom)]
        return self.cell.with_mut(|p| f(p.cast()));
    }

    #[inline(always)]
    fn with<R>(&self, f: impl FnOnce(*const u8) -> R) -> R {
        #[cfg(not(loom))]
        return f(self.cell.get().cast_const().cast());
        #[cfg(loom)]
        return self.cell.with(|p| f(p.cast()));
    }
}

const _: () = assert!(std::mem::size_of::<Slot>() == SLOT_SIZE || cfg!(loom));

impl Slot {
    #[cfg(loom)]
    fn new(pos: u64) -> Slot {
        Slot {
            state: AtomicU64::new(pack(pos, Phase::Empty, 0)),
            owner: AtomicU64::new(0),
            meta: AtomicU64::new(0),
            data: DataCell::new(),
        }
    }
}

/// Size of the control block; the slots follow it.
pub(crate) const CONTROL_SIZE: usize = std::mem::size_of::<MpmcHeader>();

/// Called with the kind, data and slot index of a dead owner's reclaimed slot, so the
/// queue can free what the slot referred to.
pub(crate) type ReclaimHook = std::sync::Arc<dyn Fn(u32, &[u8], u64) + Send + Sync>;

/// Handle to a ring in memory that outlives it.
pub(crate) struct Mpmc {
    hdr: NonNull<MpmcHeader>,
    slots: NonNull<Slot>,
    cap: u64,
    alive: fn(Owner) -> bool,
    hook: Option<ReclaimHook>,
}

// SAFETY: all shared state is atomics; a slot's data bytes are touched only by the
// party that owns the slot through its state word (see the module docs).
unsafe impl Send for Mpmc {}
// SAFETY: as above.
unsafe impl Sync for Mpmc {}

impl Mpmc {
    /// Bytes needed for a ring of `cap` slots.
    pub(crate) const fn memory_size(cap: u64) -> usize {
        CONTROL_SIZE + cap as usize * SLOT_SIZE
    }

    /// Whether `cap` is a usable capacity.
    pub(crate) fn valid_capacity(cap: u64) -> bool {
        (1..=MAX_CAPACITY).contains(&cap)
    }

    /// # Safety
    ///
    /// `base` must be 128-byte aligned and point to [`Mpmc::memory_size`]`(cap)` bytes
    /// that stay mapped for the life of the returned value, holding either zeroes (then
    /// call [`Mpmc::init`] before sharing it) or a ring of the same capacity; `cap` must
    /// satisfy [`Mpmc::valid_capacity`].
    pub(crate) unsafe fn from_raw(base: NonNull<u8>, cap: u64) -> Mpmc {
        debug_assert!(Self::valid_capacity(cap));
        debug_assert_eq!(base.as_ptr() as usize % 128, 0);
        // SAFETY: the caller guarantees CONTROL_SIZE + cap * SLOT_SIZE bytes at `base`.
        let slots = unsafe { base.add(CONTROL_SIZE) };
        Mpmc {
            hdr: base.cast(),
            slots: slots.cast(),
            cap,
            alive: Owner::is_alive,
            hook: None,
        }
    }

    /// Writes the initial slot states (`EMPTY(i)` in slot `i`) of a zeroed ring, and
    /// whether it is joinable. Call once, before the memory is shared.
    pub(crate) fn init(&self, joinable: bool) {
        for i in 0..self.cap {
            self.slot(i)
                .state
                .store(pack(i, Phase::Empty, 0), Ordering::Relaxed);
        }
        self.ctl()
            .joinable
            .store(u32::from(joinable), Ordering::Release);
    }

    /// Sets the hook called with the data of a dead owner's reclaimed slot.
    pub(crate) fn set_reclaim_hook(&mut self, hook: ReclaimHook) {
        self.hook = Some(hook);
    }

    /// Replaces the liveness check (tests inject deaths with it).
    #[cfg(all(test, not(loom)))]
    pub(crate) fn set_liveness(&mut self, alive: fn(Owner) -> bool) {
        self.alive = alive;
    }

    /// Number of slots.
    pub(crate) fn capacity(&self) -> u64 {
        self.cap
    }

    /// The waiter consumers park on (async consumers register on it too, and `wait()`
    /// arms it): puts and `close` wake it.
    pub(crate) fn not_empty_waiter(&self) -> &Waiter {
        &self.hdr().not_empty
    }

    /// The waiter producers park on (async producers register on it too).
    #[cfg(feature = "tokio")]
    pub(crate) fn not_full_waiter(&self) -> &Waiter {
        &self.hdr().not_full
    }

    #[inline(always)]
    fn hdr(&self) -> &MpmcHeader {
        // SAFETY: `from_raw`'s contract: the control block is mapped for our lifetime and
        // consists of atomics only, so shared references to it are sound even while other
        // processes modify it.
        unsafe { self.hdr.as_ref() }
    }

    #[inline(always)]
    fn ctl(&self) -> &Control {
        &self.hdr().ctl
    }

    #[inline(always)]
    fn slot(&self, pos: u64) -> &Slot {
        let i = pos % self.cap;
        // SAFETY: i < cap, and `from_raw`'s contract maps cap slots after the control
        // block. A `&Slot` is sound: its words are atomics, and `data` is an UnsafeCell
        // accessed only through raw pointers by the slot's current owner.
        unsafe { &*self.slots.as_ptr().add(i as usize) }
    }

    /// Items in the ring (claimed positions); exact when nobody is mid-operation.
    pub(crate) fn len(&self) -> u64 {
        let head = self.hdr().head.load(Ordering::Acquire);
        let tail = self.hdr().tail.load(Ordering::Acquire);
        tail.saturating_sub(head).min(self.cap)
    }

    /// Closes the ring for every handle: puts fail, gets fail once drained.
    pub(crate) fn close(&self) {
        // Release: pairs with the Acquire load in try_get, so items put before the
        // close are seen by a consumer that sees the close.
        self.ctl().closed.store(1, Ordering::SeqCst);
        self.hdr().not_empty.wake_all();
        self.hdr().not_full.wake_all();
    }

    /// Whether [`Mpmc::close`] was called.
    pub(crate) fn is_closed(&self) -> bool {
        self.ctl().closed.load(Ordering::Acquire) != 0
    }

    /// Counts one more unfinished task (a JoinableQueue put).
    pub(crate) fn task_add(&self) {
        self.ctl().unfinished.fetch_add(1, Ordering::AcqRel);
    }

    /// Counts one task done; `Err` when none was unfinished.
    pub(crate) fn task_done(&self) -> Result<(), ()> {
        let ctl = self.ctl();
        let prev = ctl
            .unfinished
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
            .map_err(drop)?;
        if prev == 1 {
            ctl.joined.wake_all();
        }
        Ok(())
    }

    /// Waits until no task is unfinished.
    pub(crate) fn join(&self, deadline: Option<Instant>) -> bool {
        let ctl = self.ctl();
        let w = ctl.joined.wait_until(
            deadline,
            || ctl.unfinished.load(Ordering::Acquire) == 0,
            || false,
        );
        w == Wait::Ready
    }

    /// Overwrites the `meta` word of the slot of position `pos` (tests of bad input).
    #[cfg(test)]
    pub(crate) fn poke_meta(&self, pos: u64, meta: u64) {
        self.slot(pos).meta.store(meta, Ordering::Relaxed);
    }

    /// Overwrites data byte `i` of the slot of position `pos` (tests of bad input).
    #[cfg(test)]
    pub(crate) fn poke_data(&self, pos: u64, i: usize, b: u8) {
        assert!(i < INLINE);
        // SAFETY: i < INLINE; tests call this only while no other party uses the slot.
        self.slot(pos)
            .data
            .with_mut(|p| unsafe { p.add(i).write(b) });
    }
}

/// The ring at byte `offset` of a region's payload. The region must outlive the ring
/// (callers keep both in one struct).
pub(crate) fn ring_in_region(
    region: &crate::region::Region,
    offset: usize,
    cap: u64,
) -> crate::Result<Mpmc> {
    let end = (cap <= MAX_CAPACITY)
        .then(|| offset.checked_add(Mpmc::memory_size(cap)))
        .flatten();
    if !Mpmc::valid_capacity(cap)
        || offset % 128 != 0
        || end.is_none_or(|e| e > region.payload_len())
    {
        return Err(crate::error::RegionError::Corrupt.into());
    }
    // SAFETY: the payload is 128-aligned and `offset` is a multiple of 128; the ring's
    // `memory_size(cap)` bytes lie inside the validated payload (checked above), which
    // stays mapped while the region lives; the capacity comes from the checksummed
    // header, and the memory is either zeroed (the creator calls `init`) or a ring of
    // this capacity.
    Ok(unsafe { Mpmc::from_raw(region.payload().add(offset), cap) })
}

#[cfg(all(test, not(loom)))]
mod tests;

#[cfg(all(test, loom))]
mod loom_tests;
