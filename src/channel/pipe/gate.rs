//! The writer's look at its reader: when a send asks the kernel whether the other side
//! is gone, and how a side that knows it is gone stays so.
//!
//! # A writer notices a reader that is gone
//!
//! Before each send the writer compares the ring's reader-drop counter with the count it
//! last saw (one cached load), and looks at its reader once every 512 records (the ring
//! keeps the position of the next look, `Spsc::look_due`, in bytes of tiny records,
//! [`LOOK_BYTES`]; a larger record counts as a tiny one; the tiny fast path's one compare
//! covers it, and the general path asks it). It asks the kernel when a reader end was
//! dropped, when the ring is full (a `try_send` at most every 100 µs), and at a look
//! when the reader's `head` has not moved since the last one (a reader that hands space
//! back is alive, so a pipe whose reader keeps up makes no system call). Every send
//! publishes at least one record, so a reader that dies without dropping its end
//! (SIGKILL) is noticed within [`DEAD_READER_SENDS`] (1024) sends, or as soon as the
//! ring is full.
//!
//! Once an end knows the other side is gone (a send, a receive or a poll saw it), it
//! stays so: every later send through it, and through its clones in this process, fails
//! with `Disconnected` at once, and a receive reports it without asking the kernel again.

use std::time::{Duration, Instant};

use crate::ring::spsc::Spsc;
use crate::ring::spsc::TINY_MAX;
use crate::sync::atomic::{AtomicU64, Ordering};
use crate::sync::presence::Presence;

/// Bytes of tiny records between two looks of a writer at its reader
/// ([`SendGate::admit`]), a record of any size counting as a tiny one's 8 bytes
/// (`Spsc::count_toward_look`): 512 records, so at most 512 sends.
const LOOK_BYTES: u64 = 4096;

/// A reader that dies without dropping its end (SIGKILL) is noticed by a writer within
/// this many sends: once the reader's process has exited, at most
/// `DEAD_READER_SENDS - 1` sends through an end return `Ok` (a `send_all` batch or a
/// `send_slice` counts as one send, which may be the one before the look; each further
/// process sending through the same pipe may stretch this by up to half as many again),
/// and every send after the first `Disconnected` fails too. A dropped reader end, and an
/// end whose receive already saw the other side gone, are noticed at once; a full ring
/// at once by a blocking send, and by a `try_send` 100 µs after the reader's death at
/// the latest.
pub const DEAD_READER_SENDS: u32 = 2 * (LOOK_BYTES / 8) as u32;

/// [`SendGate::seen_drops`] once the other side is known to be gone.
const PEER_GONE: u64 = u64::MAX;

/// How often a `try_send` that finds the ring full asks the kernel whether the reader
/// is gone ([`SendGate::full_and_gone`]): a reader that died is reported by the first
/// full `try_send` this long after its death, and by every one after that.
const FULL_CHECK_EVERY: Duration = Duration::from_micros(100);

/// [`SendGate::full_checked`] before the first look.
const NEVER: u64 = u64::MAX;

/// Nanoseconds on a monotonic clock (from the first call in this process tree; a
/// forked child goes on with the parent's origin). A vDSO read, not a system call.
fn clock_ns() -> u64 {
    static ORIGIN: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    ORIGIN.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

/// One end's memory of the other side, in this process: whether it is known to be
/// gone, and the writer's bookkeeping of when to look next. Process-local (atomics
/// because clones of an end send from several threads).
pub(super) struct SendGate {
    /// What the writer's per-send check compares the ring's reader-drop counter with:
    /// the count seen at the last check, or [`PEER_GONE`] (never a count) once this
    /// process knows the other side is gone. [`SendGate::peer_gone`] sets `PEER_GONE`;
    /// anything else changes it only by compare-exchange from a count, so `PEER_GONE`
    /// is never undone.
    seen_drops: AtomicU64,
    /// Writer: the reader's `head` at the last look.
    seen_head: AtomicU64,
    /// Writer: when a full `try_send` last asked the kernel ([`clock_ns`]), or [`NEVER`].
    full_checked: AtomicU64,
}

impl SendGate {
    /// The gate of an end that writes `tx` (if any), as of now.
    pub(super) fn new(tx: Option<&Spsc>, tiny_max: u64) -> SendGate {
        let seen = tx.map_or(0, |t| t.reader_drops());
        let head = tx.map_or(0, |t| t.reader_head());
        if let Some(t) = tx {
            // The first look, which the fast path waits for: a ring nobody asked to look
            // never stops it. Only where none is set yet: an end made later, in this
            // process or another, neither puts a due look off nor clears the poison of a
            // dropped reader end.
            t.arm_look(LOOK_BYTES);
            // A pipe whose messages may be shorter than a tiny record's payload sends
            // every message down the general path, which compares its length.
            if tiny_max < TINY_MAX {
                t.close_fast_path();
            }
        }
        SendGate {
            seen_drops: AtomicU64::new(u64::from(seen)),
            seen_head: AtomicU64::new(head),
            full_checked: AtomicU64::new(NEVER),
        }
    }

    /// Whether this process already knows the other side is gone (no system call).
    #[inline]
    pub(super) fn known_gone(&self) -> bool {
        self.seen_drops.load(Ordering::Relaxed) == PEER_GONE
    }

    /// Whether every end of the other side is gone: known already, or asked of the
    /// kernel through `presence`. Sticky: once it has said so, it says so at once, and
    /// every send through this end fails (see [`SendGate::admit`]).
    pub(super) fn peer_gone(&self, presence: &Presence, tx: Option<&Spsc>) -> bool {
        if self.known_gone() {
            return true;
        }
        let gone = presence.peer_gone();
        if gone {
            // No end of the other side exists in any process (the kernel closed its last
            // token), so none can come back: this never needs undoing.
            self.seen_drops.store(PEER_GONE, Ordering::Relaxed);
            // And the ring's tiny fast path, which does not look at this gate, is
            // closed for every writer (the reader side is gone for all of them), unless
            // "gone" is this process's alone (a forked child not handed the end, whose
            // parent still sends).
            if let Some(tx) = tx.filter(|_| !presence.released()) {
                tx.close_fast_path();
            }
        }
        gone
    }

    /// The writer's check before a send: passes with three loads and two compares
    /// unless a reader end was dropped since the last look, a look is due
    /// ([`Spsc::look_due`], every [`LOOK_BYTES`]), or the other side is known to be
    /// gone ([`SendGate::admit_slow`]). `false`: the other side is gone.
    #[inline(always)]
    pub(super) fn admit(&self, tx: &Spsc, presence: &Presence) -> bool {
        if self.seen_drops.load(Ordering::Relaxed) == u64::from(tx.reader_drops()) && !tx.look_due()
        {
            return true;
        }
        self.admit_slow(tx, presence)
    }

    /// [`SendGate::admit`]'s look at the reader: `false` when the other side is known
    /// to be gone; otherwise asks the kernel when a reader end was dropped since the
    /// last look, or when the reader's `head` has not moved since then (a reader
    /// handing space back is alive), and puts the next look [`LOOK_BYTES`] on.
    #[cold]
    #[inline(never)]
    fn admit_slow(&self, tx: &Spsc, presence: &Presence) -> bool {
        let gate = self.seen_drops.load(Ordering::Relaxed);
        if gate == PEER_GONE {
            return false;
        }
        let drops = u64::from(tx.reader_drops());
        let head = tx.reader_head();
        let idle = head == self.seen_head.load(Ordering::Relaxed);
        self.seen_head.store(head, Ordering::Relaxed);
        if (drops != gate || idle) && self.peer_gone(presence, Some(tx)) {
            return false;
        }
        // Fails when someone stored PEER_GONE meanwhile, or when another thread's look
        // stored a newer count first. Only when the count moved: a locked instruction
        // per look otherwise.
        if drops != gate {
            if let Err(now) =
                self.seen_drops
                    .compare_exchange(gate, drops, Ordering::Relaxed, Ordering::Relaxed)
            {
                if now == PEER_GONE {
                    return false;
                }
            }
        } else if self.known_gone() {
            return false;
        }
        tx.renew_look(LOOK_BYTES);
        true
    }

    /// A send that found the ring full: whether the reader side is gone instead (a full
    /// ring whose reader died stays full for ever). The kernel is asked at most once
    /// every [`FULL_CHECK_EVERY`] (a `try_send` spinning on a full ring makes no system
    /// call per call); in between, only what this end already knows counts.
    #[cold]
    pub(super) fn full_and_gone(&self, presence: &Presence, tx: Option<&Spsc>) -> bool {
        let now = clock_ns();
        let last = self.full_checked.load(Ordering::Relaxed);
        if last == NEVER || now.wrapping_sub(last) >= FULL_CHECK_EVERY.as_nanos() as u64 {
            self.full_checked.store(now, Ordering::Relaxed);
            self.peer_gone(presence, tx)
        } else {
            self.known_gone()
        }
    }
}
