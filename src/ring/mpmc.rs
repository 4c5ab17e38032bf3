//! A bounded many-producer many-consumer ring of fixed-size slots in shared memory,
//! after Dmitry Vyukov's bounded MPMC queue, made crash-safe across processes.
//!
//! # Layout
//!
//! ```text
//! [ tail ][ head ][ not_empty waiter ][ not_full waiter ][ control: closed, unfinished, joined ]
//! [ slot 0 ][ slot 1 ] ... [ slot cap-1 ]          (each slot 128 bytes, cache-line aligned)
//! slot = [ state: u64 ][ start: u64 ][ meta: u64 = kind << 32 | len ][ data: 104 bytes ]
//! ```
//!
//! `tail` and `head` are monotonic positions; position `p` lives in slot `p % cap`, so
//! the ring holds exactly `cap` items (any `cap`, not only powers of two).
//!
//! # The slot state word
//!
//! `state` packs `stamp: 40 bits | phase: 2 bits | pid: 22 bits` (Linux pids are below
//! 2^22). `stamp` is the position (mod 2^40) the phase refers to; phases are
//! `EMPTY(p)` (free for the producer of position `p`), `WRITING(p, pid)`,
//! `FULL(p)` and `READING(p, pid)`; a consumer releases a slot as `EMPTY(p + cap)`.
//! The stamp only grows, so a state word never repeats (for 2^40 operations per slot)
//! and a compare-and-swap on it cannot suffer ABA.
//!
//! Unlike Vyukov's original, a party *claims the slot first* (CAS `EMPTY(p)` →
//! `WRITING(p, pid)`, or `FULL(p)` → `READING(p, pid)`) and then advances the index
//! with a CAS that anyone may perform ("helping": whoever finds slot `p` already
//! claimed moves the index past it). So the claimer's pid is in shared memory from the
//! very instant it owns the slot, and a process that dies holding a slot never wedges
//! the index.
//!
//! # Dead owners
//!
//! A party stuck behind a `WRITING`/`READING` slot (a consumer at `head`, a producer at
//! `tail` one lap later) checks, before it parks (not on sight: the owner is nearly
//! always alive and about to finish; and then at most every `LIVENESS_EVERY`), whether
//! the owner is alive: its pid
//! (`kill(pid, 0)`) and, against pid reuse, its start time (written to `start` right
//! after the claim and cleared before the release, so a non-zero `start` is always the
//! current owner's). The checker takes a dead owner's slot over (CAS to the same phase
//! under its own pid), lets an optional hook clean up what the slot referred to (a
//! large item's pages), and releases it as `EMPTY(p + cap)`, exactly as if the item had been
//! consumed: the item it held is the only loss. (Reading the slot only after the
//! takeover matters: loom caught a version that read it before its CAS, racing with
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
//! * A producer finding a large ring full naps once ([`FULL_NAP`]) before waiting as
//!   usual, so the consumers drain a stretch instead of being chased slot by slot.
//! * A process whose blocking operations keep colliding with others of its role
//!   naps ([`contended`]), one per role at a time.
//!
//! Liveness of a blocking owner is checked only before sleeping, and at most every
//! [`LIVENESS_EVERY`].
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
//! slot's data size before any byte is copied; a bad one is a [`ProtocolError`], and
//! the slot is still released so the queue goes on.

use std::ptr::NonNull;
use std::time::{Duration, Instant};

use crate::error::ProtocolError;
use crate::sync::atomic::{AtomicU32, AtomicU64, CachePadded, Ordering};
use crate::sync::waiter::{Wait, Waiter};

/// Size of one slot in bytes.
pub(crate) const SLOT_SIZE: usize = 128;
/// Bytes of item data a slot holds inline.
pub(crate) const INLINE: usize = SLOT_SIZE - 24;
/// Largest capacity accepted (slots).
pub(crate) const MAX_CAPACITY: u64 = 1 << 32;

const PID_MASK: u64 = (1 << 22) - 1;
const PHASE_SHIFT: u32 = 22;
const STAMP_SHIFT: u32 = 24;
const STAMP_MASK: u64 = (1 << 40) - 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Empty = 0,
    Writing = 1,
    Full = 2,
    Reading = 3,
}

#[inline(always)]
fn pack(pos: u64, phase: Phase, pid: u32) -> u64 {
    ((pos & STAMP_MASK) << STAMP_SHIFT)
        | ((phase as u64) << PHASE_SHIFT)
        | (u64::from(pid) & PID_MASK)
}

#[inline(always)]
fn unpack(w: u64) -> (u64, Phase, u32) {
    let phase = match (w >> PHASE_SHIFT) & 3 {
        0 => Phase::Empty,
        1 => Phase::Writing,
        2 => Phase::Full,
        _ => Phase::Reading,
    };
    (w >> STAMP_SHIFT, phase, (w & PID_MASK) as u32)
}

/// `stamp - pos` as a signed distance in the 40-bit stamp space.
#[inline(always)]
fn dist(stamp: u64, pos: u64) -> i64 {
    let d = stamp.wrapping_sub(pos) & STAMP_MASK;
    ((d << 24) as i64) >> 24
}

/// Who claims a slot: a process id and its start time (0: unknown).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Owner {
    pub(crate) pid: u32,
    pub(crate) start: u64,
}

/// Whether a slot owner still runs: its pid exists and, when its start time is known,
/// that pid was not reused by another process.
pub(crate) fn owner_alive(o: Owner) -> bool {
    if !crate::sys::pid_alive(o.pid) {
        return false;
    }
    // One read of /proc: not a zombie, and (when known) the same start time.
    match crate::sys::task_state(o.pid) {
        Some((state, start)) => !crate::sys::exited(state) && (o.start == 0 || start == o.start),
        None => o.start == 0,
    }
}

/// This process as a slot owner (cached; recomputed after a fork).
pub(crate) fn me() -> Owner {
    thread_local! {
        static ME: std::cell::Cell<(u64, Owner)> =
            const { std::cell::Cell::new((u64::MAX, Owner { pid: 0, start: 0 })) };
    }
    let gen = crate::sys::fork_generation();
    ME.with(|c| {
        let (g, o) = c.get();
        if g == gen {
            return o;
        }
        let pid = crate::sys::getpid();
        let o = Owner {
            pid,
            start: crate::sys::start_time(pid).unwrap_or(0),
        };
        c.set((gen, o));
        o
    })
}

#[repr(C)]
#[derive(Default)]
struct Control {
    closed: AtomicU32,
    joinable: AtomicU32,
    unfinished: AtomicU64,
    joined: Waiter,
    /// Per role (producers, consumers): 1 while one of them naps for contention (see
    /// [`contended`]); a napper that dies leaves it set, which only ends such naps.
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
    start: AtomicU64,
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
            start: AtomicU64::new(0),
            meta: AtomicU64::new(0),
            data: DataCell::new(),
        }
    }
}

/// Size of the control block; the slots follow it.
pub(crate) const CONTROL_SIZE: usize = std::mem::size_of::<MpmcHeader>();

/// Called with the kind and data of a dead owner's slot when it is reclaimed.
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

/// A slot another party holds, which may be dead: its index and the state seen.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Blocker {
    index: u64,
    state: u64,
}

/// The outcome of [`Mpmc::try_put`].
#[derive(Debug)]
pub(crate) enum PutTry {
    /// Published.
    Done,
    /// No free slot; `Some` names the slot in the way when someone holds it.
    Full(Option<Blocker>),
    /// The queue is closed.
    Closed,
    /// The `on_claimed` step failed; nothing was published.
    Failed(std::io::Error),
}

/// The outcome of [`Mpmc::try_get`].
#[derive(Debug)]
pub(crate) enum GetTry<R> {
    /// An item, as the `take` step made it.
    Got(R),
    /// Nothing ready; `Some` names a slot being written by someone.
    Empty(Option<Blocker>),
    /// Closed and drained.
    Closed,
}

/// Why a blocking put failed.
#[derive(Debug)]
pub(crate) enum PutFail {
    /// Full (no waiting asked for).
    Full,
    /// The deadline passed.
    Timeout,
    /// Closed.
    Closed,
    /// The `on_claimed` step failed.
    Failed(std::io::Error),
}

/// Why a blocking get failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum GetFail {
    /// Empty (no waiting asked for).
    Empty,
    /// The deadline passed.
    Timeout,
    /// Closed and drained.
    Closed,
    /// A corrupt slot (it was consumed).
    Protocol(ProtocolError),
}

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
            alive: owner_alive,
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
    #[allow(dead_code)]
    pub(crate) fn set_liveness(&mut self, alive: fn(Owner) -> bool) {
        self.alive = alive;
    }

    /// Number of slots.
    pub(crate) fn capacity(&self) -> u64 {
        self.cap
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

    /// Copies `bytes` into the data of a slot this thread owns.
    #[inline(always)]
    fn write_data(&self, slot: &Slot, kind: u32, bytes: &[u8]) {
        debug_assert!(bytes.len() <= INLINE);
        let n = bytes.len().min(INLINE);
        // SAFETY: the caller owns the slot (its WRITING claim succeeded), so no other
        // party reads or writes `data` until it is published; n <= INLINE; the source is
        // process-local memory and cannot overlap the slot.
        slot.data
            .with_mut(|p| unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), p, n) });
        slot.meta
            .store((u64::from(kind) << 32) | n as u64, Ordering::Relaxed);
    }

    /// Copies a slot's data out (validating its length) into a local buffer.
    #[inline(always)]
    fn read_data(
        &self,
        slot: &Slot,
        out: &mut [u8; INLINE],
    ) -> Result<(u32, usize), ProtocolError> {
        let meta = slot.meta.load(Ordering::Relaxed);
        let (kind, len) = ((meta >> 32) as u32, (meta & 0xFFFF_FFFF) as usize);
        if len > INLINE {
            return Err(ProtocolError::BadRecord);
        }
        // SAFETY: the caller owns the slot (a READING claim, or the reclaim of a dead
        // owner's slot, whose writes ended with its death); len <= INLINE (checked); the
        // destination is a local buffer.
        slot.data
            .with(|p| unsafe { std::ptr::copy_nonoverlapping(p, out.as_mut_ptr(), len) });
        Ok((kind, len))
    }

    /// Tries to put one item: claims the slot at `tail`, copies `bytes` (at most
    /// [`INLINE`]) in with `kind`, runs `on_claimed(slot index)` (which may fail: then
    /// the slot is given up and nothing is published), and publishes.
    pub(crate) fn try_put(
        &self,
        me: Owner,
        kind: u32,
        bytes: &[u8],
        on_claimed: &mut dyn FnMut(u64) -> std::io::Result<()>,
    ) -> PutTry {
        if self.ctl().closed.load(Ordering::Acquire) != 0 {
            return PutTry::Closed;
        }
        let tail = &self.hdr().tail;
        let mut pos = tail.load(Ordering::Relaxed);
        loop {
            let slot = self.slot(pos);
            // Pairs with the consumer's Release store of EMPTY(pos) (or the init).
            let s = slot.state.load(Ordering::Acquire);
            let (stamp, phase, _) = unpack(s);
            let d = dist(stamp, pos);
            if d == 0 && phase == Phase::Empty {
                let mine = pack(pos, Phase::Writing, me.pid);
                if slot
                    .state
                    .compare_exchange_weak(s, mine, Ordering::AcqRel, Ordering::Relaxed)
                    .is_err()
                {
                    note_contention();
                    pos = tail.load(Ordering::Relaxed);
                    continue;
                }
                let _ = tail.compare_exchange(pos, pos + 1, Ordering::Relaxed, Ordering::Relaxed);
                slot.start.store(me.start, Ordering::Relaxed);
                self.write_data(slot, kind, bytes);
                let ok = on_claimed(pos % self.cap);
                slot.start.store(0, Ordering::Relaxed);
                match ok {
                    Ok(()) => {
                        // Pairs with the consumer's Acquire load of the state.
                        slot.state
                            .store(pack(pos, Phase::Full, 0), Ordering::Release);
                        self.hdr().not_empty.wake_all();
                        return PutTry::Done;
                    }
                    Err(e) => {
                        slot.state
                            .store(pack(pos + self.cap, Phase::Empty, 0), Ordering::Release);
                        self.hdr().not_full.wake_all();
                        self.hdr().not_empty.wake_all();
                        return PutTry::Failed(e);
                    }
                }
            } else if d >= 0 {
                // Position `pos` is already claimed: help the index past it.
                note_contention();
                let _ = tail.compare_exchange(pos, pos + 1, Ordering::Relaxed, Ordering::Relaxed);
                pos = tail.load(Ordering::Relaxed);
            } else {
                // The slot still holds the previous lap: full, unless the index moved.
                let now = tail.load(Ordering::Relaxed);
                if now != pos {
                    pos = now;
                    continue;
                }
                let blocker = matches!(phase, Phase::Writing | Phase::Reading).then_some(Blocker {
                    index: pos % self.cap,
                    state: s,
                });
                return PutTry::Full(blocker);
            }
        }
    }

    /// Tries to get one item: claims the slot at `head`, copies its data out, runs
    /// `take(kind, bytes, slot index)` while still owning the slot (so a side resource it refers to
    /// can be taken over before the slot is released), and releases the slot.
    pub(crate) fn try_get<R>(
        &self,
        me: Owner,
        take: &mut dyn FnMut(u32, &[u8], u64) -> R,
    ) -> Result<GetTry<R>, ProtocolError> {
        let head = &self.hdr().head;
        let mut pos = head.load(Ordering::Relaxed);
        let mut closed_seen = false;
        loop {
            let slot = self.slot(pos);
            // Pairs with the producer's Release store of FULL(pos).
            let s = slot.state.load(Ordering::Acquire);
            let (stamp, phase, _) = unpack(s);
            let d = dist(stamp, pos);
            if d == 0 && phase == Phase::Full {
                let mine = pack(pos, Phase::Reading, me.pid);
                if slot
                    .state
                    .compare_exchange_weak(s, mine, Ordering::AcqRel, Ordering::Relaxed)
                    .is_err()
                {
                    note_contention();
                    pos = head.load(Ordering::Relaxed);
                    continue;
                }
                let _ = head.compare_exchange(pos, pos + 1, Ordering::Relaxed, Ordering::Relaxed);
                slot.start.store(me.start, Ordering::Relaxed);
                let mut buf = [0u8; INLINE];
                let res = self
                    .read_data(slot, &mut buf)
                    .map(|(kind, len)| take(kind, &buf[..len], pos % self.cap));
                slot.start.store(0, Ordering::Relaxed);
                // Pairs with the next producer's Acquire load of the state.
                slot.state
                    .store(pack(pos + self.cap, Phase::Empty, 0), Ordering::Release);
                self.hdr().not_full.wake_all();
                return res.map(GetTry::Got);
            } else if d > 0 || (d == 0 && phase == Phase::Reading) {
                // Position `pos` is already taken: help the index past it.
                note_contention();
                let _ = head.compare_exchange(pos, pos + 1, Ordering::Relaxed, Ordering::Relaxed);
                pos = head.load(Ordering::Relaxed);
            } else {
                let now = head.load(Ordering::Relaxed);
                if now != pos {
                    pos = now;
                    continue;
                }
                if d == 0 && phase == Phase::Writing {
                    return Ok(GetTry::Empty(Some(Blocker {
                        index: pos % self.cap,
                        state: s,
                    })));
                }
                // Empty. When closed, look once more: an item put before close() is
                // visible once the close is (the close store is Release).
                if closed_seen {
                    return Ok(GetTry::Closed);
                }
                if self.ctl().closed.load(Ordering::Acquire) != 0 {
                    closed_seen = true;
                    continue;
                }
                return Ok(GetTry::Empty(None));
            }
        }
    }

    /// Reclaims the blocker's slot if its owner is dead (see the module docs). Returns
    /// whether anything changed (so the caller should retry).
    ///
    /// The reclaimer first takes the slot over (CAS to the same phase under its own
    /// pid), so it reads what the slot refers to while it owns it, then releases it as
    /// `EMPTY(p + cap)`. A reclaimer that dies midway is itself a dead owner.
    pub(crate) fn reclaim_if_dead(&self, me: Owner, b: Blocker) -> bool {
        let slot = self.slot(b.index);
        let (stamp, phase, pid) = unpack(b.state);
        if !matches!(phase, Phase::Writing | Phase::Reading) {
            return false;
        }
        if slot.state.load(Ordering::Acquire) != b.state {
            return true;
        }
        let start = slot.start.load(Ordering::Relaxed);
        if (self.alive)(Owner { pid, start }) {
            return false;
        }
        let mine = pack(stamp, phase, me.pid);
        // AcqRel: Acquire pairs with whatever the dead owner last published; Release
        // pairs with the next checker's Acquire load.
        if slot
            .state
            .compare_exchange(b.state, mine, Ordering::AcqRel, Ordering::Relaxed)
            .is_err()
        {
            return true;
        }
        slot.start.store(me.start, Ordering::Relaxed);
        let mut buf = [0u8; INLINE];
        let data = self.read_data(slot, &mut buf);
        if phase == Phase::Writing && self.ctl().joinable.load(Ordering::Relaxed) != 0 {
            // The item was never delivered: it will never be task_done()'d either.
            let _ = self.task_done();
        }
        if let (Some(hook), Ok((kind, len))) = (self.hook.as_ref(), data) {
            hook(kind, &buf[..len], b.index);
        }
        slot.start.store(0, Ordering::Relaxed);
        // Pairs with the next producer's Acquire load of the state.
        slot.state
            .store(pack(stamp + self.cap, Phase::Empty, 0), Ordering::Release);
        self.hdr().not_full.wake_all();
        self.hdr().not_empty.wake_all();
        true
    }

    /// The slot a producer at `tail` waits for, when someone holds it (checked afresh
    /// before each park: the owner may have died after we first looked).
    /// The blocking wait of a put or a get, on `waiter` until `ready()`. While another
    /// process holds the slot in the way (`held`), it naps rather than parks
    /// ([`Waiter::wait_for_owner`]). The holder of the slot in the way (`blocker()`) is
    /// checked for death only before sleeping, and at most every `LIVENESS_EVERY`
    /// (`checked`): it is almost always alive and about to release the slot.
    #[allow(clippy::too_many_arguments)]
    fn wait_blocked(
        &self,
        me: Owner,
        waiter: &Waiter,
        deadline: Option<Instant>,
        held: bool,
        ready: impl FnMut() -> bool,
        blocker: impl Fn() -> Option<Blocker>,
        checked: &mut Option<Instant>,
    ) -> Wait {
        let wait = if held {
            Waiter::wait_for_owner
        } else {
            Waiter::wait_until
        };
        wait(waiter, deadline, ready, || {
            due(checked) && blocker().is_some_and(|b| self.reclaim_if_dead(me, b))
        })
    }

    fn tail_blocker(&self) -> Option<Blocker> {
        let pos = self.hdr().tail.load(Ordering::Relaxed);
        let s = self.slot(pos).state.load(Ordering::Acquire);
        let (stamp, phase, _) = unpack(s);
        (dist(stamp, pos) < 0 && matches!(phase, Phase::Writing | Phase::Reading)).then_some(
            Blocker {
                index: pos % self.cap,
                state: s,
            },
        )
    }

    /// The slot a consumer at `head` waits for, when a producer holds it.
    fn head_blocker(&self) -> Option<Blocker> {
        let pos = self.hdr().head.load(Ordering::Relaxed);
        let s = self.slot(pos).state.load(Ordering::Acquire);
        let (stamp, phase, _) = unpack(s);
        (dist(stamp, pos) == 0 && phase == Phase::Writing).then_some(Blocker {
            index: pos % self.cap,
            state: s,
        })
    }

    /// Whether a blocked producer should look again.
    fn put_ready(&self) -> bool {
        let pos = self.hdr().tail.load(Ordering::Relaxed);
        let (stamp, _, _) = unpack(self.slot(pos).state.load(Ordering::Acquire));
        dist(stamp, pos) >= 0 || self.is_closed()
    }

    /// Whether a blocked consumer should look again.
    fn get_ready(&self) -> bool {
        let pos = self.hdr().head.load(Ordering::Relaxed);
        let (stamp, phase, _) = unpack(self.slot(pos).state.load(Ordering::Acquire));
        let d = dist(stamp, pos);
        d > 0 || (d == 0 && matches!(phase, Phase::Full | Phase::Reading)) || self.is_closed()
    }

    /// Puts one item, waiting for a free slot until `deadline` (`Some(now)`: do not
    /// wait; `None`: forever).
    pub(crate) fn put(
        &self,
        me: Owner,
        kind: u32,
        bytes: &[u8],
        deadline: Option<Instant>,
        on_claimed: &mut dyn FnMut(u64) -> std::io::Result<()>,
        nonblocking: bool,
    ) -> Result<(), PutFail> {
        if !nonblocking && contended() {
            self.contention_nap(0, &self.hdr().not_full, deadline);
        }
        let mut checked = None;
        let mut napped = false;
        loop {
            match self.try_put(me, kind, bytes, on_claimed) {
                PutTry::Done => return Ok(()),
                PutTry::Closed => return Err(PutFail::Closed),
                PutTry::Failed(e) => return Err(PutFail::Failed(e)),
                PutTry::Full(blocker) => {
                    if nonblocking {
                        if blocker.is_some_and(|b| self.reclaim_if_dead(me, b)) {
                            continue;
                        }
                        return Err(PutFail::Full);
                    }
                    if !napped && self.cap >= FULL_NAP_MIN_CAPACITY {
                        // Full (a consumer may be finishing the slot at the tail): let
                        // the consumers drain a while (see FULL_NAP).
                        napped = true;
                        self.hdr().not_full.nap(deadline, FULL_NAP);
                        continue;
                    }
                    let w = self.wait_blocked(
                        me,
                        &self.hdr().not_full,
                        deadline,
                        blocker.is_some(),
                        || self.put_ready(),
                        || self.tail_blocker(),
                        &mut checked,
                    );
                    if w == Wait::TimedOut {
                        return Err(PutFail::Timeout);
                    }
                }
            }
        }
    }

    /// Gets one item, waiting until `deadline` (see [`Mpmc::put`]).
    pub(crate) fn get<R>(
        &self,
        me: Owner,
        deadline: Option<Instant>,
        take: &mut dyn FnMut(u32, &[u8], u64) -> R,
        nonblocking: bool,
    ) -> Result<R, GetFail> {
        if !nonblocking && contended() {
            self.contention_nap(1, &self.hdr().not_empty, deadline);
        }
        let mut checked = None;
        loop {
            match self.try_get(me, take) {
                Err(p) => return Err(GetFail::Protocol(p)),
                Ok(GetTry::Got(r)) => return Ok(r),
                Ok(GetTry::Closed) => return Err(GetFail::Closed),
                Ok(GetTry::Empty(blocker)) => {
                    if nonblocking {
                        if blocker.is_some_and(|b| self.reclaim_if_dead(me, b)) {
                            continue;
                        }
                        return Err(GetFail::Empty);
                    }
                    let w = self.wait_blocked(
                        me,
                        &self.hdr().not_empty,
                        deadline,
                        blocker.is_some(),
                        || self.get_ready(),
                        || self.head_blocker(),
                        &mut checked,
                    );
                    if w == Wait::TimedOut {
                        return Err(GetFail::Timeout);
                    }
                }
            }
        }
    }

    /// Naps for contention ([`contended`]) unless another party of the same role (0:
    /// producers, 1: consumers) is napping for it already: one steps aside, the others
    /// run (when all of them napped at once, nobody worked).
    fn contention_nap(&self, role: usize, w: &Waiter, deadline: Option<Instant>) {
        let flag = &self.ctl().backoff[role];
        if flag
            .compare_exchange(0, 1, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
        {
            w.nap(deadline, CONTENTION_NAP);
            flag.store(0, Ordering::Relaxed);
        }
    }

    /// Items in the ring (claimed positions); exact when nobody is mid-operation.
    pub(crate) fn len(&self) -> u64 {
        let head = self.hdr().head.load(Ordering::Acquire);
        let tail = self.hdr().tail.load(Ordering::Acquire);
        tail.saturating_sub(head).min(self.cap)
    }

    /// The waiter consumers park on (and `wait()` arms): puts and `close` wake it.
    pub(crate) fn not_empty_waiter(&self) -> &Waiter {
        &self.hdr().not_empty
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

    /// Claims a slot as a producer (or consumer) and never releases it: a stand-in for
    /// a process killed mid-operation, for tests.
    #[doc(hidden)]
    pub(crate) fn claim_and_abandon(&self, me: Owner, as_consumer: bool) -> bool {
        let idx = if as_consumer {
            &self.hdr().head
        } else {
            &self.hdr().tail
        };
        let pos = idx.load(Ordering::Relaxed);
        let slot = self.slot(pos);
        let s = slot.state.load(Ordering::Acquire);
        let (stamp, phase, _) = unpack(s);
        let (want, to) = if as_consumer {
            (Phase::Full, Phase::Reading)
        } else {
            (Phase::Empty, Phase::Writing)
        };
        if dist(stamp, pos) != 0 || phase != want {
            return false;
        }
        if slot
            .state
            .compare_exchange(
                s,
                pack(pos, to, me.pid),
                Ordering::AcqRel,
                Ordering::Relaxed,
            )
            .is_err()
        {
            return false;
        }
        let _ = idx.compare_exchange(pos, pos + 1, Ordering::Relaxed, Ordering::Relaxed);
        slot.start.store(me.start, Ordering::Relaxed);
        true
    }
}

/// How long a producer that finds a large ring full sleeps before it waits for room as
/// usual, once per put. Waiting for the first free
/// slot keeps producers chasing the consumers slot by slot: each put then waits for one
/// get, the spinning producer takes the CPU the consumers need when processes outnumber
/// cores, and both sides fight over the same cache lines. After the nap the consumers
/// have freed a stretch of slots, which the producer fills without waiting. The
/// consumers lose nothing: a ring of at least [`FULL_NAP_MIN_CAPACITY`] items keeps them
/// busy far longer than the nap.
const FULL_NAP: Duration = Duration::from_micros(200);
/// Smallest ring whose producers nap when it is full.
const FULL_NAP_MIN_CAPACITY: u64 = 4096;

/// Blocking operations per contention window (see [`contended`]).
const CONTENTION_WINDOW: u32 = 256;
/// Collisions with a party of the same role, in one window, that make this one nap.
const CONTENTION_LIMIT: u32 = 32;
/// The nap of a party that collides often with others of its role.
const CONTENTION_NAP: Duration = Duration::from_micros(100);

thread_local! {
    /// This thread's blocking operations and collisions in the current window.
    static CONTENTION: std::cell::Cell<(u32, u32)> = const { std::cell::Cell::new((0, 0)) };
}

/// Counts a collision with a party of the same role: a lost claim, or a slot found
/// claimed by another producer (or consumer) that had not yet moved the index.
#[inline]
fn note_contention() {
    CONTENTION.with(|c| {
        let (ops, hits) = c.get();
        c.set((ops, hits.saturating_add(1)));
    });
}

/// Counts one blocking operation; true when the window it closes saw many collisions.
///
/// Producers (or consumers) that run at the same time on different cores collide on
/// the index and on neighbouring slots, and every collision moves cache lines between
/// the cores: with four processes on two cores, two consumers interleaving get by get
/// moved 5–7 M items/s where one of them alone moved 20 M/s. A party that collides
/// often naps briefly ([`CONTENTION_NAP`]) so that the other runs alone a while (one
/// party per role at a time: see `Mpmc::contention_nap`); parties that rarely meet
/// (real work between operations) never nap.
fn contended() -> bool {
    CONTENTION.with(|c| {
        let (ops, hits) = c.get();
        if ops + 1 < CONTENTION_WINDOW {
            c.set((ops + 1, hits));
            return false;
        }
        c.set((0, 0));
        hits >= CONTENTION_LIMIT
    })
}

/// How often a waiting party looks at the liveness of the slot owner it waits for (a
/// `kill` and a read of `/proc`): before its first sleep, then at most this often (a
/// sleeper woken by releases of other slots sleeps again many times a millisecond).
const LIVENESS_EVERY: Duration = Duration::from_millis(2);

/// Whether a liveness check is due, given the time of the last one (updated).
fn due(last: &mut Option<Instant>) -> bool {
    let now = Instant::now();
    if last.is_some_and(|t| now.saturating_duration_since(t) < LIVENESS_EVERY) {
        return false;
    }
    *last = Some(now);
    true
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
mod tests {
    use super::*;

    struct Mem {
        _buf: Vec<CachePadded<[u8; 128]>>,
    }

    fn ring(cap: u64) -> (Mem, Mpmc) {
        let n = Mpmc::memory_size(cap) / 128;
        let mut buf: Vec<CachePadded<[u8; 128]>> = (0..n).map(|_| CachePadded([0; 128])).collect();
        let base = NonNull::new(buf.as_mut_ptr().cast::<u8>()).unwrap();
        // SAFETY: the vector is 128-aligned, zeroed, memory_size(cap) bytes, and outlives
        // the ring (returned together; the tests drop the ring first).
        let r = unsafe { Mpmc::from_raw(base, cap) };
        r.init(true);
        (Mem { _buf: buf }, r)
    }

    const ME: Owner = Owner { pid: 1, start: 0 };

    fn put(r: &Mpmc, v: u8) -> PutTry {
        r.try_put(ME, 1, &[v; 3], &mut |_| Ok(()))
    }

    fn get(r: &Mpmc) -> Option<Vec<u8>> {
        match r.try_get(ME, &mut |_, b, _| b.to_vec()).unwrap() {
            GetTry::Got(v) => Some(v),
            _ => None,
        }
    }

    #[test]
    fn packing_round_trips_and_distances_wrap() {
        let w = pack(STAMP_MASK, Phase::Reading, 4_194_303);
        assert_eq!(unpack(w), (STAMP_MASK, Phase::Reading, 4_194_303));
        assert_eq!(dist(0, STAMP_MASK), 1);
        assert_eq!(dist(STAMP_MASK, 0), -1);
        assert_eq!(dist(5, 5), 0);
    }

    #[test]
    fn holds_exactly_capacity_items_in_order() {
        for cap in [1u64, 3, 4, 7] {
            let (_m, r) = ring(cap);
            for lap in 0..3u8 {
                for i in 0..cap as u8 {
                    assert!(matches!(put(&r, lap * 10 + i), PutTry::Done));
                }
                assert!(matches!(put(&r, 99), PutTry::Full(None)));
                assert_eq!(r.len(), cap);
                for i in 0..cap as u8 {
                    assert_eq!(get(&r).unwrap(), vec![lap * 10 + i; 3]);
                }
                assert!(get(&r).is_none());
                assert_eq!(r.len(), 0);
            }
        }
    }

    #[test]
    fn corrupt_length_is_a_protocol_error_and_the_slot_is_consumed() {
        let (_m, r) = ring(2);
        assert!(matches!(put(&r, 1), PutTry::Done));
        assert!(matches!(put(&r, 2), PutTry::Done));
        r.slot(0).meta.store(u64::from(u32::MAX), Ordering::Relaxed);
        assert_eq!(
            r.try_get(ME, &mut |_, b, _| b.to_vec()).unwrap_err(),
            ProtocolError::BadRecord
        );
        assert_eq!(get(&r).unwrap(), vec![2; 3]);
    }

    #[test]
    fn dead_writer_and_dead_reader_slots_are_reclaimed() {
        let (_m, mut r) = ring(2);
        r.set_liveness(|o| o.pid != 666);
        let dead = Owner { pid: 666, start: 0 };
        // A producer dies holding a slot: the consumer skips it.
        r.task_add();
        assert!(r.claim_and_abandon(dead, false));
        assert!(matches!(put(&r, 7), PutTry::Done));
        assert_eq!(
            r.get(ME, None, &mut |_, b, _| b.to_vec(), false).unwrap(),
            vec![7; 3]
        );
        assert!(
            r.join(Some(Instant::now())),
            "the lost item's task was counted done"
        );
        // A consumer dies holding a slot: producers reclaim it when full.
        assert!(matches!(put(&r, 8), PutTry::Done));
        assert!(r.claim_and_abandon(dead, true));
        assert!(matches!(put(&r, 9), PutTry::Done));
        r.put(ME, 1, &[10; 3], Some(Instant::now()), &mut |_| Ok(()), true)
            .unwrap();
        assert_eq!(get(&r).unwrap(), vec![9; 3]);
        assert_eq!(get(&r).unwrap(), vec![10; 3]);
    }

    #[test]
    fn collisions_make_one_party_per_role_nap() {
        let (_m, r) = ring(2);
        // A window with few collisions: no nap; with many: a nap.
        CONTENTION.with(|c| c.set((0, 0)));
        assert!(!(0..CONTENTION_WINDOW).any(|_| contended()));
        for _ in 0..CONTENTION_LIMIT {
            note_contention();
        }
        assert!((0..CONTENTION_WINDOW).any(|_| contended()));
        // The nap takes the role's flag and gives it back; a party that finds it taken
        // does not nap.
        r.contention_nap(1, &r.hdr().not_empty, Some(Instant::now()));
        assert_eq!(r.ctl().backoff[1].load(Ordering::Relaxed), 0);
        r.ctl().backoff[0].store(1, Ordering::Relaxed);
        r.contention_nap(0, &r.hdr().not_full, None);
        assert_eq!(r.ctl().backoff[0].load(Ordering::Relaxed), 1);
    }

    #[test]
    fn close_fails_puts_and_fails_gets_once_drained() {
        let (_m, r) = ring(4);
        assert!(matches!(put(&r, 1), PutTry::Done));
        r.close();
        assert!(matches!(put(&r, 2), PutTry::Closed));
        assert_eq!(get(&r).unwrap(), vec![1; 3]);
        assert!(matches!(
            r.try_get(ME, &mut |_, _, _| ()).unwrap(),
            GetTry::Closed
        ));
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use loom::sync::Arc;

    struct Heap {
        _hdr: Box<MpmcHeader>,
        _slots: Vec<Slot>,
        ring: Mpmc,
    }

    fn heap_ring(cap: u64, alive: fn(Owner) -> bool) -> Arc<Heap> {
        let mut hdr = Box::new(MpmcHeader::default());
        let mut slots: Vec<Slot> = (0..cap).map(Slot::new).collect();
        let ring = Mpmc {
            hdr: NonNull::from(&mut *hdr),
            slots: NonNull::new(slots.as_mut_ptr()).unwrap(),
            cap,
            alive,
            hook: None,
        };
        Arc::new(Heap {
            _hdr: hdr,
            _slots: slots,
            ring,
        })
    }

    fn owner(pid: u32) -> Owner {
        Owner { pid, start: 0 }
    }

    fn put_spin(r: &Mpmc, pid: u32, v: u8) {
        loop {
            match r.try_put(owner(pid), 0, &[v], &mut |_| Ok(())) {
                PutTry::Done => return,
                PutTry::Full(Some(b)) => {
                    r.reclaim_if_dead(owner(pid), b);
                }
                _ => {}
            }
            loom::thread::yield_now();
        }
    }

    fn get_spin(r: &Mpmc, pid: u32) -> u8 {
        loop {
            match r.try_get(owner(pid), &mut |_, b, _| b[0]).unwrap() {
                GetTry::Got(v) => return v,
                GetTry::Empty(Some(b)) => {
                    r.reclaim_if_dead(owner(pid), b);
                }
                _ => {}
            }
            loom::thread::yield_now();
        }
    }

    /// Two producers race for the two free slots of a ring: both succeed (no spinning
    /// needed), the indexes end right, and a consumer then sees both items once.
    #[test]
    fn loom_two_producers_race_for_slots() {
        let mut b = loom::model::Builder::new();
        b.preemption_bound = Some(4);
        b.check(|| {
            let h = heap_ring(2, |_| true);
            let h2 = h.clone();
            let p = loom::thread::spawn(move || {
                assert!(matches!(
                    h2.ring.try_put(owner(1), 0, &[10], &mut |_| Ok(())),
                    PutTry::Done
                ));
            });
            assert!(matches!(
                h.ring.try_put(owner(2), 0, &[20], &mut |_| Ok(())),
                PutTry::Done
            ));
            p.join().unwrap();
            assert_eq!(h.ring.len(), 2);
            let mut got = vec![get_spin(&h.ring, 3), get_spin(&h.ring, 3)];
            got.sort_unstable();
            assert_eq!(got, vec![10, 20]);
        });
    }

    /// Two consumers race for the two items of a full ring: each item is taken once.
    #[test]
    fn loom_two_consumers_race_for_items() {
        let mut b = loom::model::Builder::new();
        b.preemption_bound = Some(4);
        b.check(|| {
            let h = heap_ring(2, |_| true);
            put_spin(&h.ring, 3, 1);
            put_spin(&h.ring, 3, 2);
            let h2 = h.clone();
            let c = loom::thread::spawn(move || {
                match h2.ring.try_get(owner(1), &mut |_, b, _| b[0]).unwrap() {
                    GetTry::Got(v) => v,
                    other => panic!("{other:?}"),
                }
            });
            let mine = match h.ring.try_get(owner(2), &mut |_, b, _| b[0]).unwrap() {
                GetTry::Got(v) => v,
                other => panic!("{other:?}"),
            };
            let mut got = vec![mine, c.join().unwrap()];
            got.sort_unstable();
            assert_eq!(got, vec![1, 2]);
            assert_eq!(h.ring.len(), 0);
        });
    }

    /// A producer and a consumer pass two items through one slot (the wrap-around):
    /// the data written before the Release publish is what the consumer reads, and
    /// the producer never overwrites an item not yet taken.
    #[test]
    fn loom_producer_consumer_through_one_slot() {
        let mut b = loom::model::Builder::new();
        b.preemption_bound = Some(4);
        b.check(|| {
            let h = heap_ring(1, |_| true);
            let h2 = h.clone();
            let p = loom::thread::spawn(move || {
                put_spin(&h2.ring, 1, 1);
                put_spin(&h2.ring, 1, 2);
            });
            assert_eq!(get_spin(&h.ring, 2), 1);
            assert_eq!(get_spin(&h.ring, 2), 2);
            p.join().unwrap();
        });
    }

    /// A producer "dies" holding the only slot (pid 9 is dead): a consumer and a live
    /// producer racing to reclaim it never lose the live item or deliver the dead one.
    #[test]
    fn loom_dead_writer_is_skipped_once() {
        let mut b = loom::model::Builder::new();
        b.preemption_bound = Some(4);
        b.check(|| {
            let h = heap_ring(1, |o| o.pid != 9);
            assert!(h.ring.claim_and_abandon(owner(9), false));
            let h2 = h.clone();
            let p = loom::thread::spawn(move || put_spin(&h2.ring, 1, 5));
            assert_eq!(get_spin(&h.ring, 2), 5);
            p.join().unwrap();
            assert_eq!(h.ring.len(), 0);
        });
    }
}
