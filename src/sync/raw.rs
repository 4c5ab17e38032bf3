//! The robust process-shared lock under [`Lock`](super::Lock), [`RLock`](super::RLock),
//! [`Condition`](super::Condition), [`Value`](super::Value) and [`Array`](super::Array),
//! and around each message of a pipe whose writer bias was revoked (`ring::spsc`).
//!
//! # Protocol
//!
//! One 32-bit futex word, laid out like the kernel's robust/PI futex word:
//!
//! * `0` — free;
//! * `tid` — held by the thread with kernel id `tid` (bits 0..=29), nobody parked;
//! * `tid | WAITERS` (bit 31) — held, and somebody may be parked on the word.
//!
//! Uncontended `lock` is one CAS `0 → tid` (Acquire); `unlock` is one swap to `0`
//! (Release), followed by a `FUTEX_WAKE` only when the swapped-out word had `WAITERS`.
//! A contended locker sets `WAITERS` (CAS) before it sleeps in `FUTEX_WAIT(word, w)`, and
//! once it has waited it acquires with `WAITERS` set (it cannot know whether others are
//! parked: Drepper's "mutex 3"). No wake-up is lost: the unlocker's swap either happens
//! before the sleeper's `FUTEX_WAIT` (which then sees a changed word and returns at
//! once) or it swaps out a word with `WAITERS` and wakes.
//!
//! # Owner death
//!
//! Because the owner's tid is *in* the word, a waiter always knows whom it waits for,
//! and the owner's tag ([`Owner::tag`]) is recorded next to the word right after each
//! acquisition. Whether that owner still runs is [`super::owner`]'s rule: before each
//! park a waiter asks the cheap question ([`Owner::exists`]); once per park slice (at
//! most [`SLICE`]), and at its last look (`try_lock`, or a deadline that has passed), the
//! full one ([`Owner::is_alive`]: not a zombie, not a reused tid). A dead owner is
//! replaced with one CAS `w → me | WAITERS`, which only one waiter can win; the winner
//! gets `LockError::OwnerDied(guard)` and the lock works as before. This also covers a
//! thread that exits while holding the lock, in any process. A word that cannot be a
//! valid state (a tid over the kernel's limit, the reserved bit 30) is treated the same
//! way: the lock is recovered, never trusted, never a panic.
//!
//! A waiter may also be given an `abort` check (the pipe's writers: "is the reader
//! gone?"), asked before each park; [`RawLock::wake_waiters`] makes parked waiters ask it
//! again at once.
//!
//! Limits: those of [`super::owner`]; and a tid reused after its owner died *before*
//! recording its tag (a window of two instructions) is taken for alive.

use std::time::{Duration, Instant};

use super::atomic::{AtomicU32, AtomicU64, Ordering};
pub(crate) use super::owner::me;
use super::owner::Owner;
use super::waiter::Wait;

/// Set while somebody may be parked on the word.
pub(crate) const WAITERS: u32 = 1 << 31;
/// The kernel's robust-futex `OWNER_DIED` bit; never set by us, so its presence is corruption.
const RESERVED: u32 = 1 << 30;
/// The tid bits.
const TID_MASK: u32 = RESERVED - 1;
/// Linux's `PID_MAX_LIMIT` (2^22): no task id is larger.
const MAX_TID: u32 = 1 << 22;

/// Longest single sleep; how often a parked locker re-checks the owner's identity.
pub(crate) const SLICE: Duration = Duration::from_millis(20);

const SPINS: u32 = if cfg!(loom) { 0 } else { 100 };

/// What a successful acquisition found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Got {
    /// The lock was free, or released by a live owner.
    Normal,
    /// The previous owner died holding it (or the word was corrupt); we own it now.
    OwnerDied,
}

/// Why an acquisition failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fail {
    /// `try` mode: held by a live owner.
    WouldBlock,
    /// The deadline passed.
    Timeout,
}

/// Why a waiting acquisition stopped, inside [`RawLock`].
enum Stop {
    WouldBlock,
    Timeout,
    Aborted,
}

impl From<Stop> for Fail {
    fn from(s: Stop) -> Fail {
        match s {
            Stop::WouldBlock => Fail::WouldBlock,
            // `lock` and `try_lock` pass an `abort` that never says to stop.
            Stop::Timeout | Stop::Aborted => Fail::Timeout,
        }
    }
}

/// The lock's words in shared memory. All-zero is a free lock.
#[repr(C)]
pub(crate) struct RawLock {
    word: AtomicU32,
    _pad: u32,
    /// The owner's [`Owner::tag`], written right after acquiring: its start time, for the
    /// pid-reuse check.
    owner_tag: AtomicU64,
    #[cfg(loom)]
    futex: LoomFutex,
}

impl Default for RawLock {
    fn default() -> RawLock {
        RawLock::new()
    }
}

impl RawLock {
    /// A free lock on the heap (loom models and unit tests).
    pub(crate) fn new() -> RawLock {
        RawLock {
            word: AtomicU32::new(0),
            _pad: 0,
            owner_tag: AtomicU64::new(0),
            #[cfg(loom)]
            futex: LoomFutex::default(),
        }
    }

    /// Takes the lock without waiting. `Err(WouldBlock)` when a live owner holds it.
    #[inline]
    pub(crate) fn try_lock(&self, me: Owner) -> Result<Got, Fail> {
        if self.fast(me) {
            return Ok(Got::Normal);
        }
        self.lock_slow(me, Some(None), || false).map_err(Fail::from)
    }

    /// Takes the lock, waiting until `deadline` (forever when `None`).
    #[inline]
    pub(crate) fn lock(&self, me: Owner, deadline: Option<Instant>) -> Result<Got, Fail> {
        if self.fast(me) {
            return Ok(Got::Normal);
        }
        self.lock_slow(me, deadline.map(Some), || false)
            .map_err(Fail::from)
    }

    /// Takes the lock, waiting until `deadline` (forever when `None`) unless `abort()`
    /// says to stop (asked before each park): `Err(Wait::TimedOut)` or
    /// `Err(Wait::Aborted)`.
    #[inline]
    pub(crate) fn lock_or_abort(
        &self,
        me: Owner,
        deadline: Option<Instant>,
        abort: impl FnMut() -> bool,
    ) -> Result<Got, Wait> {
        if self.fast(me) {
            return Ok(Got::Normal);
        }
        self.lock_slow(me, deadline.map(Some), abort)
            .map_err(|s| match s {
                Stop::Aborted => Wait::Aborted,
                Stop::WouldBlock | Stop::Timeout => Wait::TimedOut,
            })
    }

    #[inline(always)]
    fn fast(&self, me: Owner) -> bool {
        // Acquire pairs with the Release swap in `unlock`: we see the previous holder's writes.
        if self
            .word
            .compare_exchange(0, me.tid(), Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
        {
            self.owner_tag.store(me.tag(), Ordering::Relaxed);
            true
        } else {
            false
        }
    }

    /// `mode`: `Some(None)` = try once (no waiting); `Some(Some(d))` = until `d`;
    /// `None` = forever. (Encoded so `lock` and `try_lock` share one path.)
    #[cold]
    fn lock_slow(
        &self,
        me: Owner,
        mode: Option<Option<Instant>>,
        mut abort: impl FnMut() -> bool,
    ) -> Result<Got, Stop> {
        let try_only = matches!(mode, Some(None));
        let deadline = match mode {
            Some(Some(d)) => Some(d),
            _ => None,
        };
        let my = me.tid() & TID_MASK;
        // Brief spinning: a short critical section in another process ends soon.
        if !try_only {
            for _ in 0..SPINS {
                std::hint::spin_loop();
                if self.word.load(Ordering::Relaxed) == 0 && self.fast(me) {
                    return Ok(Got::Normal);
                }
            }
        }
        let mut waited = false;
        // A waiting locker first relies on the cheap check, and reads /proc once per
        // slice of waiting, so a contended hand-off never touches /proc; its last look
        // (`try_lock`, or a deadline that has passed) reads /proc at once, having no
        // later chance to notice a zombie or a reused tid.
        let mut full_check_at = Instant::now();
        loop {
            let w = self.word.load(Ordering::Relaxed);
            if w == 0 {
                let new = if waited { my | WAITERS } else { my };
                if self
                    .word
                    .compare_exchange(0, new, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
                {
                    self.owner_tag.store(me.tag(), Ordering::Relaxed);
                    return Ok(Got::Normal);
                }
                continue;
            }
            let last = try_only || deadline.is_some_and(|d| Instant::now() >= d);
            let full = last || full_check_at.elapsed() >= SLICE;
            if full {
                full_check_at = Instant::now();
            }
            if self.owner_gone(w, full) {
                // Keep WAITERS: others may be parked behind the dead owner.
                if self
                    .word
                    .compare_exchange(w, my | WAITERS, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
                {
                    self.owner_tag.store(me.tag(), Ordering::Relaxed);
                    return Ok(Got::OwnerDied);
                }
                continue;
            }
            if try_only {
                return Err(Stop::WouldBlock);
            }
            if abort() {
                return Err(Stop::Aborted);
            }
            let Some(slice) = super::waiter::slice_until(deadline, SLICE) else {
                return Err(Stop::Timeout);
            };
            if w & WAITERS == 0
                && self
                    .word
                    .compare_exchange(w, w | WAITERS, Ordering::Relaxed, Ordering::Relaxed)
                    .is_err()
            {
                continue;
            }
            waited = true;
            self.futex_wait(w | WAITERS, slice);
        }
    }

    /// Whether the owner recorded in `w` is certainly gone (or `w` is not a valid state):
    /// the cheap check, or with `full` the whole rule of [`super::owner`].
    fn owner_gone(&self, w: u32, full: bool) -> bool {
        let tid = w & TID_MASK;
        if w & RESERVED != 0 || tid == 0 || tid > MAX_TID {
            return true; // corrupt: recover rather than trust it
        }
        let owner = Owner::recorded(tid, self.owner_tag.load(Ordering::Relaxed));
        if full {
            !owner.is_alive()
        } else {
            !owner.exists()
        }
    }

    /// Releases the lock; wakes one parked locker if any may be parked.
    #[inline]
    pub(crate) fn unlock(&self) {
        // Release pairs with the Acquire CAS of the next locker.
        let old = self.word.swap(0, Ordering::Release);
        if old & WAITERS != 0 {
            self.futex_wake(1);
        }
    }

    /// Wakes every parked locker, so that each asks its `abort` again (a waiter that was
    /// about to park when this ran sleeps out its slice, at most [`SLICE`]).
    pub(crate) fn wake_waiters(&self) {
        if self.word.load(Ordering::Relaxed) & WAITERS != 0 {
            self.futex_wake(u32::MAX);
        }
    }

    /// Whether the calling thread (`me`) holds the lock.
    #[inline]
    pub(crate) fn held_by(&self, me: Owner) -> bool {
        // The tag too: a dead holder's tid may have been reused by this very thread.
        self.word.load(Ordering::Relaxed) & TID_MASK == me.tid() & TID_MASK
            && self.owner_tag.load(Ordering::Relaxed) == me.tag()
    }

    /// Whether anybody holds the lock (a snapshot).
    pub(crate) fn is_locked(&self) -> bool {
        self.word.load(Ordering::Relaxed) != 0
    }

    #[cfg(not(loom))]
    fn futex_wait(&self, expected: u32, t: Duration) {
        crate::sys::futex_wait(&self.word, expected, Some(t));
    }

    #[cfg(not(loom))]
    fn futex_wake(&self, n: u32) {
        crate::sys::futex_wake(&self.word, n);
    }

    #[cfg(loom)]
    fn futex_wait(&self, expected: u32, _t: Duration) {
        self.futex.wait(&self.word, expected);
    }

    #[cfg(loom)]
    fn futex_wake(&self, _n: u32) {
        self.futex.wake();
    }
}

/// A model of the kernel's futex for loom: `wait` checks the word and goes to sleep
/// atomically (under the bucket lock), `wake` takes the same lock. A missed `wake` leaves
/// the sleeper asleep forever, which loom reports as a deadlock.
#[cfg(loom)]
pub(crate) struct LoomFutex {
    bucket: loom::sync::Mutex<u64>,
    cv: loom::sync::Condvar,
}

#[cfg(loom)]
impl Default for LoomFutex {
    fn default() -> Self {
        LoomFutex {
            bucket: loom::sync::Mutex::new(0),
            cv: loom::sync::Condvar::new(),
        }
    }
}

#[cfg(loom)]
impl LoomFutex {
    pub(crate) fn wait(&self, word: &AtomicU32, expected: u32) {
        let g = self.bucket.lock().unwrap();
        if word.load(Ordering::SeqCst) != expected {
            return;
        }
        let seen = *g;
        let mut g = g;
        while *g == seen {
            g = self.cv.wait(g).unwrap();
        }
    }

    pub(crate) fn wake(&self) {
        let mut g = self.bucket.lock().unwrap();
        *g += 1;
        self.cv.notify_all();
    }
}

#[cfg(all(test, loom))]
mod loom_tests;

#[cfg(all(test, not(loom)))]
mod tests;
