//! Park/wake for process-shared memory: spin briefly, then sleep on a futex; a waker
//! makes a system call only when somebody is asleep.
//!
//! # Protocol
//!
//! A `Waiter`'s futex word `seq` is a counter whose low bit, `SLEEPERS`, says that
//! somebody may be asleep on the word's current value. The waiter:
//!
//! 1. spins, then yields, re-checking its condition;
//! 2. sets `SLEEPERS` (a CAS; the word it sleeps on is the one it armed), issues a full
//!    barrier, re-checks its condition;
//! 3. sleeps in `FUTEX_WAIT(seq, armed word)` for at most one slice, then loops.
//!
//! The waker publishes its data (a Release store), issues a barrier, and if `SLEEPERS`
//! is set clears it by moving the word on (armed + 1) and calls `FUTEX_WAKE`. This is
//! Dekker's pattern: with a full barrier on both sides, either the waiter's re-check
//! sees the data, or the waker sees `SLEEPERS`; and since the waker changes the word
//! the waiter armed, that waiter's `FUTEX_WAIT` returns at once if it had not slept yet.
//! No wake-up is lost. Clearing the bit makes one wake per sleep: until a woken waiter
//! runs and arms again, later wakers see no sleeper and make no system call (a waiter
//! that counted itself parked until it ran again made every waker call `FUTEX_WAKE` for
//! as long as the woken process waited for a CPU: tens of thousands of calls per second
//! on an oversubscribed machine).
//!
//! The barrier is asymmetric, so that the hot path (every send) pays nothing: the waker
//! issues only a compiler fence, and the waiter — which is about to sleep anyway —
//! calls `membarrier(MEMBARRIER_CMD_GLOBAL_EXPEDITED)`, which runs a full barrier on
//! every CPU running a thread of a registered process. Every process that uses shmproc
//! registers (see [`register_process`]). Where the kernel lacks membarrier, the waker
//! falls back to a real `SeqCst` fence. Sleeps are sliced (at most
//! [`PARK_SLICE`]) so that a waiter also notices a peer that died without waking it.
//!
//! # Waiting in `poll(2)`: pollers
//!
//! A futex cannot be polled, so `wait()` (Python's `connection.wait`, over many
//! channels, queues, processes and listeners) sleeps in `poll` on descriptors instead.
//! It counts itself in the word's second half, `external`, and arms `SLEEPERS` like a
//! sleeper ([`Waiter::arm_poller`]), then issues the same barrier and re-checks. A waker
//! that takes the slow path (it found `SLEEPERS`) and sees `external` not zero also
//! *pokes*: it writes a byte to the descriptor its own process registered for this word
//! ([`super::poke`]; for a pipe, the write end of the writer's presence pipe, whose read
//! end the waiting side polls anyway for hang-up). So wakes stay edge-triggered: a
//! writer pays nothing while nobody waits, one `write` per armed wait otherwise.
//!
//! Async waiters (the `tokio` feature, `sync::notify_fd`) count themselves in the same
//! second word (one count of *external* waiters, pollers and async tasks alike) and arm
//! the word the same way; the waker that clears `SLEEPERS` and finds the count not zero
//! both pokes (for `wait()`) and signals the async eventfd, out of line. Each side keeps
//! its own arming; a spurious poke or eventfd signal only costs its waiter a re-check.
//!
//! # Waiting for an operation in progress
//!
//! Waiting for a peer to *produce* something (an item, room, a lock) spins, yields a
//! little, then parks as above ([`Waiter::wait_until`]). Waiting for another process to
//! *finish an operation it is in the middle of* (a queue slot it claimed and has not
//! yet published: tens of nanoseconds of work when it runs) is different
//! ([`Waiter::wait_for_owner`]): it spins briefly, then naps in short timed sleeps
//! without arming the word. When the owner does not finish within the spin it was
//! preempted, and it needs a CPU, which a spinning or yielding waiter keeps from it (the
//! kernel's `sched_yield` need not run another task: with more processes than cores,
//! such waits lasted whole time slices). And a parked waiter would be woken by every
//! unrelated change the word signals (other slots' releases), paying a barrier to park
//! again each time, while the wakers paid a `FUTEX_WAKE` each: a nap costs nobody else
//! anything, and the owner usually finishes during the first one, as soon as it runs.

use std::time::{Duration, Instant};

use super::atomic::{fence, light_fence, AtomicU32, Ordering};

/// Longest single futex sleep: how soon a parked waiter re-checks for a dead peer.
pub(crate) const PARK_SLICE: Duration = Duration::from_millis(50);

const SPINS: u32 = if cfg!(loom) { 0 } else { 64 };
const YIELDS: u32 = if cfg!(loom) { 0 } else { 16 };

/// Set in `seq` while somebody may be asleep on its current value.
const SLEEPERS: u32 = 1;

/// The first nap of [`Waiter::wait_for_owner`]; each next one is twice as long, up to
/// [`NAP_MAX`].
const NAP_FIRST: Duration = Duration::from_micros(20);
/// The longest nap of [`Waiter::wait_for_owner`].
const NAP_MAX: Duration = Duration::from_millis(1);

/// Registers this process for expedited membarriers. Called whenever a shared object is
/// created or received; cheap after the first call in a process.
#[cfg(not(loom))]
pub(crate) fn register_process() -> bool {
    crate::sys::membarrier_register_process()
}

#[cfg(loom)]
pub(crate) fn register_process() -> bool {
    true
}

/// Whether this process may rely on `membarrier` for the fast side of the wake-up
/// handshake (see [`Waiter::wake_all_with`]).
#[cfg(not(loom))]
pub(crate) fn membarrier_ready() -> bool {
    crate::sys::membarrier_ready()
}

/// Under loom: the handshake is modelled with full fences on both sides.
#[cfg(loom)]
pub(crate) fn membarrier_ready() -> bool {
    true
}

#[inline(always)]
fn waker_fence() {
    #[cfg(not(loom))]
    {
        if crate::sys::membarrier_ready() {
            light_fence();
        } else {
            fence(Ordering::SeqCst);
        }
    }
    #[cfg(loom)]
    light_fence();
}

/// The waiter's side of the barrier pair (see the module docs), for `wait()`: after
/// arming words with [`Waiter::arm_poller`], before re-checking their conditions.
pub(crate) fn poller_fence() {
    waiter_fence();
}

fn waiter_fence() {
    #[cfg(not(loom))]
    {
        fence(Ordering::SeqCst);
        if crate::sys::membarrier_ready() {
            crate::sys::membarrier_global();
        }
    }
    #[cfg(loom)]
    fence(Ordering::SeqCst);
}

/// The outcome of [`Waiter::wait_until`].
/// How long a sleep before `deadline` may last: `max`, or less when the deadline is
/// nearer; `None` once it has passed (`deadline` `None`: never).
#[inline]
pub(crate) fn slice_until(deadline: Option<Instant>, max: Duration) -> Option<Duration> {
    match deadline {
        None => Some(max),
        Some(d) => d
            .checked_duration_since(Instant::now())
            .filter(|left| !left.is_zero())
            .map(|left| left.min(max)),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wait {
    /// The condition holds.
    Ready,
    /// The deadline passed first.
    TimedOut,
    /// The `abort` check said to stop (a dead peer, a closed object).
    Aborted,
}

/// Two words of shared memory that waiters park on. Zeroed memory is a valid `Waiter`.
#[repr(C)]
#[derive(Default)]
pub(crate) struct Waiter {
    /// The futex word: a counter, with [`SLEEPERS`] in bit 0.
    seq: AtomicU32,
    /// How many external (non-futex) waiters, in any process, watch this word: `wait()`
    /// pollers (see [`super::poke`]) and async tasks (`notify_fd`, the `tokio` feature)
    /// share this one count. While it is not zero, a waker that clears [`SLEEPERS`] also
    /// pokes the descriptor its process registered for this word and signals the async
    /// wake-up descriptor.
    pub(super) external: AtomicU32,
    /// Under loom (heap waiters only): set where a real waker pokes, for the model.
    #[cfg(loom)]
    loom_poked: AtomicU32,
}

impl Waiter {
    /// A fresh waiter (for loom and heap use; shared memory starts zeroed).
    #[allow(dead_code)]
    pub(crate) fn new() -> Waiter {
        Waiter {
            seq: AtomicU32::new(0),
            external: AtomicU32::new(0),
            #[cfg(loom)]
            loom_poked: AtomicU32::new(0),
        }
    }

    /// Wakes every parked waiter, if there is any. Call after publishing the change the
    /// waiters wait for. Costs a compiler fence and one load when nobody is asleep.
    #[inline(always)]
    pub(crate) fn wake_all(&self) {
        waker_fence();
        self.wake_if_sleepers();
    }

    /// [`Waiter::wake_all`] with the fence chosen by the caller, who looked up once
    /// whether this process may rely on `membarrier` ([`membarrier_ready`]) and keeps
    /// the answer next to the shared object: a byte test instead of a load of the
    /// process-wide state on every wake.
    #[inline(always)]
    pub(crate) fn wake_all_with(&self, light: bool) {
        #[cfg(not(loom))]
        if !light {
            fence(Ordering::SeqCst);
        }
        #[cfg(loom)]
        let _ = light;
        light_fence();
        self.wake_if_sleepers();
    }

    #[inline(always)]
    fn wake_if_sleepers(&self) {
        // Pairs with the SLEEPERS CAS + barrier in `wait_until`.
        if self.seq.load(Ordering::Relaxed) & SLEEPERS != 0 {
            self.wake_slow();
        }
    }

    #[cold]
    fn wake_slow(&self) {
        let mut cur = self.seq.load(Ordering::Relaxed);
        while cur & SLEEPERS != 0 {
            // armed + 1: clears SLEEPERS and moves the word, so a waiter about to sleep
            // on the armed value returns at once. A failed CAS means another waker
            // cleared it (and wakes), or a waiter armed again: look again.
            match self.seq.compare_exchange_weak(
                cur,
                cur.wrapping_add(1),
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    #[cfg(not(loom))]
                    {
                        crate::sys::futex_wake(&self.seq, u32::MAX);
                        // Read after the CAS that took the armed word: a poller or an
                        // async waiter counts itself before it arms, so it is seen here.
                        if self.external.load(Ordering::Acquire) != 0 {
                            super::poke::poke(self);
                            #[cfg(feature = "tokio")]
                            super::notify_fd::wake_async(self);
                        }
                    }
                    #[cfg(loom)]
                    if self.external.load(Ordering::Relaxed) != 0 {
                        self.loom_poked.store(1, Ordering::SeqCst);
                    }
                    return;
                }
                Err(now) => cur = now,
            }
        }
    }

    /// Counts a `wait()` watching this word and arms it (sets [`SLEEPERS`]), so that the
    /// next waker takes the slow path and pokes ([`super::poke`]). Call
    /// [`poller_fence`] after arming every word, then re-check the conditions before
    /// sleeping in `poll`; [`Waiter::disarm_poller`] after.
    pub(crate) fn arm_poller(&self) {
        self.external.fetch_add(1, Ordering::SeqCst);
        let mut cur = self.seq.load(Ordering::SeqCst);
        while cur & SLEEPERS == 0 {
            match self
                .seq
                .compare_exchange(cur, cur | SLEEPERS, Ordering::SeqCst, Ordering::SeqCst)
            {
                Ok(_) => break,
                Err(now) => cur = now,
            }
        }
    }

    /// Undoes one [`Waiter::arm_poller`]'s count (the word stays armed until a waker
    /// clears it, as for a sleeper that woke by itself).
    pub(crate) fn disarm_poller(&self) {
        let mut cur = self.external.load(Ordering::SeqCst);
        while cur != 0 {
            match self
                .external
                .compare_exchange(cur, cur - 1, Ordering::SeqCst, Ordering::SeqCst)
            {
                Ok(_) => break,
                Err(now) => cur = now,
            }
        }
    }

    /// Waits until `ready()` holds, the deadline passes, or `abort()` says to stop
    /// (checked before each sleep). Spins, yields, then parks in slices.
    pub(crate) fn wait_until(
        &self,
        deadline: Option<Instant>,
        mut ready: impl FnMut() -> bool,
        mut abort: impl FnMut() -> bool,
    ) -> Wait {
        for i in 0..SPINS + YIELDS {
            if ready() {
                return Wait::Ready;
            }
            if i < SPINS {
                std::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
        }
        loop {
            let cur = self.seq.load(Ordering::SeqCst);
            let armed = cur | SLEEPERS;
            if cur != armed
                && self
                    .seq
                    .compare_exchange(cur, armed, Ordering::SeqCst, Ordering::SeqCst)
                    .is_err()
            {
                continue;
            }
            waiter_fence();
            if ready() {
                return Wait::Ready;
            }
            if abort() {
                return Wait::Aborted;
            }
            let Some(slice) = slice_until(deadline, PARK_SLICE) else {
                // A last look: the condition may have come true as the deadline passed.
                return if ready() { Wait::Ready } else { Wait::TimedOut };
            };
            self.sleep(armed, slice);
            if ready() {
                return Wait::Ready;
            }
        }
    }

    /// Arms the word for a waiter that does not sleep on the futex (an async waiter,
    /// `notify_fd`), as [`Waiter::wait_until`] does before it sleeps: sets
    /// [`SLEEPERS`] with a read-modify-write (so that the waker who clears it next also
    /// sees everything this thread did before, such as its registration), then the
    /// waiter's full barrier. The caller re-checks its condition next.
    #[cfg(feature = "tokio")]
    pub(super) fn arm_for_async(&self) {
        self.seq.fetch_or(SLEEPERS, Ordering::SeqCst);
        waiter_fence();
    }

    /// Waits, like [`Waiter::wait_until`], for another process to finish an operation
    /// it is in the middle of (see the module docs): spins briefly, then naps (20 µs,
    /// doubling up to 1 ms) until `ready()`, the deadline, or `abort()` (checked before
    /// each nap). A nap ends early when the word is woken, but never arms it, so no
    /// waker makes a system call for it.
    pub(crate) fn wait_for_owner(
        &self,
        deadline: Option<Instant>,
        mut ready: impl FnMut() -> bool,
        mut abort: impl FnMut() -> bool,
    ) -> Wait {
        for _ in 0..SPINS {
            if ready() {
                return Wait::Ready;
            }
            std::hint::spin_loop();
        }
        let mut nap = NAP_FIRST;
        loop {
            if ready() {
                return Wait::Ready;
            }
            if abort() {
                return Wait::Aborted;
            }
            let Some(t) = slice_until(deadline, nap) else {
                return if ready() { Wait::Ready } else { Wait::TimedOut };
            };
            // Any value: the nap is a timed sleep that a wake of the word may cut short.
            let seq = self.seq.load(Ordering::Relaxed);
            self.sleep(seq, t);
            nap = (nap * 2).min(NAP_MAX);
        }
    }

    /// Sleeps for `t` (at most until the deadline) without arming the word: nobody needs
    /// to wake the sleeper, and a wake of the word may cut the nap short.
    pub(crate) fn nap(&self, deadline: Option<Instant>, t: Duration) {
        if let Some(t) = slice_until(deadline, t).filter(|t| !t.is_zero()) {
            self.sleep(self.seq.load(Ordering::Relaxed), t);
        }
    }

    #[cfg(not(loom))]
    fn sleep(&self, seq: u32, t: Duration) {
        crate::sys::futex_wait(&self.seq, seq, Some(t));
    }

    #[cfg(loom)]
    fn sleep(&self, seq: u32, _t: Duration) {
        // loom has no futex: model FUTEX_WAIT as "return once seq moved".
        while self.seq.load(Ordering::SeqCst) == seq {
            loom::thread::yield_now();
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::sync::atomic::AtomicBool;
    use std::sync::Arc;

    #[test]
    fn waiting_for_an_owner_ends_ready_timed_out_or_aborted() {
        let w = Arc::new((Waiter::new(), AtomicBool::new(false)));
        let w2 = w.clone();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(3));
            // No wake_all: the owner's release is seen by the napping waiter anyway.
            w2.1.store(true, Ordering::Release);
        });
        let r =
            w.0.wait_for_owner(None, || w.1.load(Ordering::Acquire), || false);
        assert_eq!(r, Wait::Ready);
        t.join().unwrap();
        let soon = Some(Instant::now() + Duration::from_millis(5));
        assert_eq!(w.0.wait_for_owner(soon, || false, || false), Wait::TimedOut);
        assert_eq!(w.0.wait_for_owner(None, || false, || true), Wait::Aborted);
    }

    #[test]
    fn a_nap_ends_at_the_deadline() {
        let w = Waiter::new();
        let t0 = Instant::now();
        w.nap(Some(t0), Duration::from_secs(60));
        w.nap(Some(t0 + Duration::from_millis(1)), Duration::from_secs(60));
        assert!(t0.elapsed() < Duration::from_secs(30));
    }

    #[test]
    fn a_parked_waiter_is_woken_once_and_later_wakers_make_no_call() {
        let w = Arc::new((Waiter::new(), AtomicBool::new(false)));
        let w2 = w.clone();
        let t = std::thread::spawn(move || {
            w2.0.wait_until(None, || w2.1.load(Ordering::Acquire), || false)
        });
        // Wait until the waiter has armed the word, then publish and wake.
        while w.0.seq.load(Ordering::Acquire) & SLEEPERS == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
        w.1.store(true, Ordering::Release);
        w.0.wake_all();
        assert_eq!(t.join().unwrap(), Wait::Ready);
        // Disarmed by the wake (or by this one, had the waiter armed again after it).
        w.0.wake_all();
        let before = w.0.seq.load(Ordering::Acquire);
        assert_eq!(before & SLEEPERS, 0);
        w.0.wake_all();
        assert_eq!(
            w.0.seq.load(Ordering::Acquire),
            before,
            "nobody armed: no wake"
        );
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use loom::sync::atomic::AtomicU64;
    use loom::sync::Arc;

    /// The waker publishes, then wakes; the waiter must never sleep through it.
    /// (loom's yield-based sleep would spin forever on a lost wake-up and fail the model.)
    #[test]
    fn no_lost_wakeup() {
        loom::model(|| {
            let w = Arc::new((Waiter::new(), AtomicU64::new(0)));
            let w2 = w.clone();
            let t = loom::thread::spawn(move || {
                w2.1.store(1, Ordering::Release);
                w2.0.wake_all();
            });
            let r =
                w.0.wait_until(None, || w.1.load(Ordering::Acquire) == 1, || false);
            assert_eq!(r, Wait::Ready);
            t.join().unwrap();
        });
    }

    /// A `wait()` (a poller) arms the word and re-checks; the waker publishes and wakes.
    /// Either the re-check sees the data or the waker pokes: `wait` never sleeps in
    /// `poll` through a message.
    #[test]
    fn a_poller_sees_the_data_or_is_poked() {
        loom::model(|| {
            let w = Arc::new((Waiter::new(), AtomicU64::new(0)));
            let w2 = w.clone();
            let t = loom::thread::spawn(move || {
                w2.1.store(1, Ordering::Release);
                w2.0.wake_all();
            });
            w.0.arm_poller();
            poller_fence();
            let seen = w.1.load(Ordering::Acquire) == 1;
            t.join().unwrap();
            w.0.disarm_poller();
            assert!(seen || w.0.loom_poked.load(Ordering::SeqCst) == 1);
        });
    }

    /// Two wakers publish one flag each; the waiter needs both. A waker that finds
    /// SLEEPERS already cleared by the other makes no call, so the waiter must still see
    /// its flag (through its re-check after arming again) and never sleep through it.
    #[test]
    fn no_lost_wakeup_with_two_wakers() {
        let mut b = loom::model::Builder::new();
        b.preemption_bound = Some(3);
        b.check(|| {
            let w = Arc::new((Waiter::new(), AtomicU64::new(0)));
            let spawn_waker = |bit: u64| {
                let w = w.clone();
                loom::thread::spawn(move || {
                    w.1.fetch_or(bit, Ordering::Release);
                    w.0.wake_all();
                })
            };
            let t1 = spawn_waker(1);
            let t2 = spawn_waker(2);
            let r =
                w.0.wait_until(None, || w.1.load(Ordering::Acquire) == 3, || false);
            assert_eq!(r, Wait::Ready);
            t1.join().unwrap();
            t2.join().unwrap();
        });
    }
}
