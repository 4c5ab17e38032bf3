//! The robust process-shared lock under [`Lock`](super::Lock), [`RLock`](super::RLock),
//! [`Condition`](super::Condition), [`Value`](super::Value) and [`Array`](super::Array).
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
//! Because the owner's tid is *in* the word, a waiter always knows whom it waits for.
//! Before each park, it asks the kernel whether that task still exists (`kill(tid, 0)`);
//! once per park slice (at most [`SLICE`]; `try_lock` at once) it also reads
//! `/proc/<tid>/stat`: a zombie (killed, not yet reaped) holds nothing, and a start time
//! other than the one the owner recorded next to the word (`owner_tag`) means the tid
//! was reused. A dead owner is replaced with one CAS `w → me | WAITERS`, which only one
//! waiter can win; the winner gets `LockError::OwnerDied(guard)` and the lock works as
//! before. This also covers a thread that exits while holding the lock, in any process.
//! A word that cannot be a valid state (a tid over the kernel's limit, the reserved bit
//! 30) is treated the same way: the lock is recovered, never trusted, never a panic.
//!
//! Limits: ids are meaningful only when every process shares one pid namespace; a tid
//! reused after its owner died *before* recording its tag (a window of two instructions)
//! is taken for alive.

use std::cell::Cell;
use std::time::{Duration, Instant};

use super::atomic::{AtomicU32, AtomicU64, Ordering};

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

/// Who is locking: a thread's tid and the low 32 bits of its start time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Me {
    pub(crate) tid: u32,
    pub(crate) start: u32,
}

impl Me {
    fn tag(self) -> u64 {
        (u64::from(self.tid) << 32) | u64::from(self.start)
    }
}

#[cfg(not(loom))]
thread_local! {
    static ME: Cell<(u64, Me)> = const { Cell::new((u64::MAX, Me { tid: 0, start: 0 })) };
}

/// The calling thread's identity, cached per thread and recomputed after a fork.
#[cfg(not(loom))]
#[inline]
pub(crate) fn me() -> Me {
    let gen = crate::sys::fork_generation();
    ME.with(|c| {
        let (g, me) = c.get();
        if g == gen {
            me
        } else {
            let tid = crate::sys::gettid();
            let start = crate::sys::task_state(tid).map_or(0, |(_, t)| t) as u32;
            let me = Me { tid, start };
            c.set((gen, me));
            me
        }
    })
}

#[cfg(loom)]
thread_local! {
    static ME: Cell<(u64, Me)> = const { Cell::new((u64::MAX, Me { tid: 0, start: 0 })) };
}

/// Under loom: a distinct small id per loom thread.
#[cfg(loom)]
pub(crate) fn me() -> Me {
    let id = loom::thread::current().id();
    let n: u32 = format!("{id:?}")
        .chars()
        .filter(|c| c.is_ascii_digit())
        .collect::<String>()
        .parse()
        .unwrap_or(0);
    Me {
        tid: n + 1,
        start: 7,
    }
}

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

/// The lock's words in shared memory. All-zero is a free lock.
#[repr(C)]
pub(crate) struct RawLock {
    word: AtomicU32,
    _pad: u32,
    /// The owner's `Me::tag()`, written right after acquiring: a hint for pid-reuse checks.
    owner_tag: AtomicU64,
    #[cfg(loom)]
    futex: LoomFutex,
}

impl RawLock {
    /// A free lock on the heap (loom models and unit tests).
    #[allow(dead_code)]
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
    pub(crate) fn try_lock(&self, me: Me) -> Result<Got, Fail> {
        if self.fast(me) {
            return Ok(Got::Normal);
        }
        self.lock_slow(me, Some(None))
    }

    /// Takes the lock, waiting until `deadline` (forever when `None`).
    #[inline]
    pub(crate) fn lock(&self, me: Me, deadline: Option<Instant>) -> Result<Got, Fail> {
        if self.fast(me) {
            return Ok(Got::Normal);
        }
        self.lock_slow(me, deadline.map(Some))
    }

    #[inline(always)]
    fn fast(&self, me: Me) -> bool {
        // Acquire pairs with the Release swap in `unlock`: we see the previous holder's writes.
        if self
            .word
            .compare_exchange(0, me.tid, Ordering::Acquire, Ordering::Relaxed)
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
    fn lock_slow(&self, me: Me, mode: Option<Option<Instant>>) -> Result<Got, Fail> {
        let try_only = matches!(mode, Some(None));
        let deadline = match mode {
            Some(Some(d)) => Some(d),
            _ => None,
        };
        let my = me.tid & TID_MASK;
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
        // `try_lock` reads /proc at once (it has no later chance to notice a zombie or a
        // reused tid); a waiting locker first relies on the cheap check, and reads /proc
        // once per slice of waiting, so a contended hand-off never touches /proc.
        let mut full_check_at: Option<Instant> = if try_only { None } else { Some(Instant::now()) };
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
            // Is the owner gone (or the word garbage)? A full check (start time, for a
            // reused tid) at most once per slice; a cheap existence check otherwise.
            let full = match full_check_at {
                None => true,
                Some(t) => t.elapsed() >= SLICE,
            };
            if full {
                full_check_at = Some(Instant::now());
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
                return Err(Fail::WouldBlock);
            }
            let Some(slice) = super::waiter::slice_until(deadline, SLICE) else {
                return Err(Fail::Timeout);
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

    /// Whether the owner recorded in `w` is certainly gone (or `w` is not a valid state).
    fn owner_gone(&self, w: u32, full: bool) -> bool {
        let tid = w & TID_MASK;
        if w & RESERVED != 0 || tid == 0 || tid > MAX_TID {
            return true; // corrupt: recover rather than trust it
        }
        #[cfg(loom)]
        {
            let _ = full;
            false
        }
        #[cfg(not(loom))]
        {
            if !crate::sys::pid_alive(tid) {
                return true;
            }
            if full {
                let Some((state, start)) = crate::sys::task_state(tid) else {
                    return true; // vanished between the two checks
                };
                // A killed process stays a zombie until reaped: it holds nothing.
                if crate::sys::exited(state) {
                    return true;
                }
                let tag = self.owner_tag.load(Ordering::Relaxed);
                // Only a tag written for this very tid says anything about its start
                // time; a different start time means the tid was reused.
                if (tag >> 32) as u32 == tid {
                    return start as u32 != tag as u32;
                }
            }
            false
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

    /// Whether the calling thread (`me`) holds the lock.
    #[inline]
    pub(crate) fn held_by(&self, me: Me) -> bool {
        // The tag too: a dead holder's tid may have been reused by this very thread.
        self.word.load(Ordering::Relaxed) & TID_MASK == me.tid & TID_MASK
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
mod loom_tests {
    use super::*;
    use loom::sync::atomic::AtomicUsize;
    use loom::sync::Arc;

    /// Two threads lock, check exclusion, unlock, twice each: mutual exclusion holds and
    /// nobody sleeps through an unlock (a lost wake-up deadlocks the model).
    #[test]
    fn loom_lock_excludes_and_never_loses_a_wakeup() {
        let mut b = loom::model::Builder::new();
        b.preemption_bound = Some(3);
        b.check(|| {
            let l = Arc::new((RawLock::new(), AtomicUsize::new(0)));
            let mut ts = Vec::new();
            for _ in 0..2 {
                let l = l.clone();
                ts.push(loom::thread::spawn(move || {
                    for _ in 0..2 {
                        let me = me();
                        assert_eq!(l.0.lock(me, None), Ok(Got::Normal));
                        assert_eq!(l.1.fetch_add(1, Ordering::Relaxed), 0);
                        l.1.fetch_sub(1, Ordering::Relaxed);
                        l.0.unlock();
                    }
                }));
            }
            let me = me();
            assert_eq!(l.0.lock(me, None), Ok(Got::Normal));
            assert_eq!(l.1.fetch_add(1, Ordering::Relaxed), 0);
            l.1.fetch_sub(1, Ordering::Relaxed);
            l.0.unlock();
            for t in ts {
                t.join().unwrap();
            }
            assert!(!l.0.is_locked());
        });
    }

    /// try_lock never succeeds while another thread holds the lock.
    #[test]
    fn loom_try_lock_respects_the_holder() {
        loom::model(|| {
            let l = Arc::new((RawLock::new(), AtomicUsize::new(0)));
            let l2 = l.clone();
            let t = loom::thread::spawn(move || {
                let me = me();
                if l2.0.try_lock(me) == Ok(Got::Normal) {
                    assert_eq!(l2.1.fetch_add(1, Ordering::Relaxed), 0);
                    l2.1.fetch_sub(1, Ordering::Relaxed);
                    l2.0.unlock();
                }
            });
            let me = me();
            assert_eq!(l.0.lock(me, None), Ok(Got::Normal));
            assert_eq!(l.1.fetch_add(1, Ordering::Relaxed), 0);
            l.1.fetch_sub(1, Ordering::Relaxed);
            l.0.unlock();
            t.join().unwrap();
        });
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn a_thread_that_exits_holding_the_lock_is_a_dead_owner() {
        let l = std::sync::Arc::new(RawLock::new());
        let l2 = l.clone();
        std::thread::spawn(move || assert_eq!(l2.lock(me(), None), Ok(Got::Normal)))
            .join()
            .unwrap();
        assert!(l.is_locked());
        let deadline = Instant::now() + Duration::from_secs(30);
        assert_eq!(l.lock(me(), Some(deadline)), Ok(Got::OwnerDied));
        assert!(l.held_by(me()));
        l.unlock();
        assert_eq!(l.try_lock(me()), Ok(Got::Normal));
        l.unlock();
    }

    #[test]
    fn a_live_holder_blocks_try_lock_and_times_out_lock() {
        let l = std::sync::Arc::new(RawLock::new());
        let (tx, rx) = std::sync::mpsc::channel();
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        let l2 = l.clone();
        let t = std::thread::spawn(move || {
            assert_eq!(l2.lock(me(), None), Ok(Got::Normal));
            tx.send(()).unwrap();
            done_rx.recv().unwrap();
            l2.unlock();
        });
        rx.recv().unwrap();
        assert_eq!(l.try_lock(me()), Err(Fail::WouldBlock));
        let d = Instant::now() + Duration::from_millis(60);
        assert_eq!(l.lock(me(), Some(d)), Err(Fail::Timeout));
        assert!(Instant::now() >= d);
        done_tx.send(()).unwrap();
        let d = Instant::now() + Duration::from_secs(30);
        assert_eq!(l.lock(me(), Some(d)), Ok(Got::Normal));
        l.unlock();
        t.join().unwrap();
    }

    #[test]
    fn garbage_in_the_word_is_recovered_not_trusted() {
        for garbage in [
            RESERVED | 5,
            MAX_TID + 1,
            TID_MASK,
            WAITERS | RESERVED,
            u32::MAX,
        ] {
            let l = RawLock::new();
            l.word.store(garbage, Ordering::Relaxed);
            l.owner_tag.store(u64::MAX, Ordering::Relaxed);
            assert_eq!(l.try_lock(me()), Ok(Got::OwnerDied), "word {garbage:#x}");
            l.unlock();
            assert_eq!(l.try_lock(me()), Ok(Got::Normal));
            l.unlock();
        }
    }

    #[test]
    fn a_reused_tid_is_detected_by_its_start_time() {
        // This thread "held" the lock in a previous life: same tid, other start time.
        let l = RawLock::new();
        let m = me();
        l.word.store(m.tid, Ordering::Relaxed);
        l.owner_tag.store(
            (u64::from(m.tid) << 32) | u64::from(m.start.wrapping_add(1)),
            Ordering::Relaxed,
        );
        assert_eq!(l.try_lock(m), Ok(Got::OwnerDied));
        l.unlock();
        // A waiting locker notices it within a park slice.
        l.word.store(m.tid | WAITERS, Ordering::Relaxed);
        l.owner_tag.store(
            (u64::from(m.tid) << 32) | u64::from(m.start.wrapping_add(1)),
            Ordering::Relaxed,
        );
        let deadline = Instant::now() + Duration::from_secs(30);
        assert_eq!(l.lock(m, Some(deadline)), Ok(Got::OwnerDied));
        l.unlock();
    }
}
