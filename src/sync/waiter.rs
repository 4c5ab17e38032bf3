//! Park/wake for process-shared memory: spin briefly, then sleep on a futex; a waker
//! makes a system call only when somebody is parked.
//!
//! # Protocol
//!
//! A `Waiter` is two words in shared memory: `seq`, the futex word, and `parked`, the
//! number of parked waiters. The waiter:
//!
//! 1. spins, then yields, re-checking its condition;
//! 2. increments `parked`, reads `seq`, issues a full barrier, re-checks its condition;
//! 3. sleeps in `FUTEX_WAIT(seq, value read)` for at most one slice, then loops.
//!
//! The waker publishes its data (a Release store), issues a barrier, and if `parked`
//! is non-zero bumps `seq` and calls `FUTEX_WAKE`. This is Dekker's pattern: with a
//! full barrier on both sides, either the waiter's re-check sees the data, or the waker
//! sees `parked != 0`, and since the waiter read `seq` before re-checking, a bump in
//! between makes its `FUTEX_WAIT` return at once. No wake-up is lost.
//!
//! The barrier is asymmetric, so that the hot path (every send) pays nothing: the waker
//! issues only a compiler fence, and the waiter — which is about to sleep anyway —
//! calls `membarrier(MEMBARRIER_CMD_GLOBAL_EXPEDITED)`, which runs a full barrier on
//! every CPU running a thread of a registered process. Every process that uses shmproc
//! registers (see [`register_process`]). Where the kernel lacks membarrier, the waker
//! falls back to a real `SeqCst` fence. Sleeps are sliced (at most
//! [`PARK_SLICE`]) so that a waiter also notices a peer that died without waking it.

use std::time::{Duration, Instant};

use super::atomic::{fence, light_fence, AtomicU32, Ordering};

/// Longest single futex sleep: how soon a parked waiter re-checks for a dead peer.
pub(crate) const PARK_SLICE: Duration = Duration::from_millis(50);

const SPINS: u32 = if cfg!(loom) { 0 } else { 64 };
const YIELDS: u32 = if cfg!(loom) { 0 } else { 16 };

/// Whether this process may rely on `membarrier` (0 unknown, 1 yes, 2 no), and for
/// which pid it registered (a forked child must register again).
#[cfg(not(loom))]
static MEMBARRIER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Registers this process for expedited membarriers. Called whenever a shared object is
/// created or received; cheap after the first call in a process.
#[cfg(not(loom))]
pub(crate) fn register_process() -> bool {
    let pid = u64::from(crate::sys::getpid());
    let state = MEMBARRIER.load(std::sync::atomic::Ordering::Relaxed);
    if state >> 2 == pid && state & 3 != 0 {
        return state & 3 == 1;
    }
    let ok = crate::sys::membarrier_register();
    MEMBARRIER.store(
        (pid << 2) | if ok { 1 } else { 2 },
        std::sync::atomic::Ordering::Relaxed,
    );
    ok
}

#[cfg(loom)]
pub(crate) fn register_process() -> bool {
    true
}

#[inline(always)]
fn waker_fence() {
    #[cfg(not(loom))]
    {
        if MEMBARRIER.load(std::sync::atomic::Ordering::Relaxed) & 3 == 1 {
            light_fence();
        } else {
            fence(Ordering::SeqCst);
        }
    }
    #[cfg(loom)]
    light_fence();
}

fn waiter_fence() {
    #[cfg(not(loom))]
    {
        fence(Ordering::SeqCst);
        if MEMBARRIER.load(std::sync::atomic::Ordering::Relaxed) & 3 == 1 {
            crate::sys::membarrier_global();
        }
    }
    #[cfg(loom)]
    fence(Ordering::SeqCst);
}

/// The outcome of [`Waiter::wait_until`].
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
    seq: AtomicU32,
    parked: AtomicU32,
}

impl Waiter {
    /// A fresh waiter (for loom and heap use; shared memory starts zeroed).
    #[allow(dead_code)]
    pub(crate) fn new() -> Waiter {
        Waiter {
            seq: AtomicU32::new(0),
            parked: AtomicU32::new(0),
        }
    }

    /// Wakes every parked waiter, if there is any. Call after publishing the change the
    /// waiters wait for. Costs a compiler fence and one load when nobody is parked.
    #[inline(always)]
    pub(crate) fn wake_all(&self) {
        waker_fence();
        // Pairs with the `parked` increment + barrier in `wait_until`.
        if self.parked.load(Ordering::Relaxed) != 0 {
            self.wake_slow();
        }
    }

    #[cold]
    fn wake_slow(&self) {
        self.seq.fetch_add(1, Ordering::Release);
        #[cfg(not(loom))]
        crate::sys::futex_wake(&self.seq, u32::MAX);
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
            self.parked.fetch_add(1, Ordering::SeqCst);
            let seq = self.seq.load(Ordering::SeqCst);
            waiter_fence();
            let outcome = if ready() {
                Some(Wait::Ready)
            } else if abort() {
                Some(Wait::Aborted)
            } else {
                let slice = match deadline {
                    Some(d) => match d.checked_duration_since(Instant::now()) {
                        Some(left) if !left.is_zero() => Some(left.min(PARK_SLICE)),
                        _ => None,
                    },
                    None => Some(PARK_SLICE),
                };
                match slice {
                    None => Some(Wait::TimedOut),
                    Some(t) => {
                        self.sleep(seq, t);
                        None
                    }
                }
            };
            self.parked.fetch_sub(1, Ordering::SeqCst);
            if let Some(o) = outcome {
                // A last look: the condition may have come true as the deadline passed.
                if o == Wait::TimedOut && ready() {
                    return Wait::Ready;
                }
                return o;
            }
            if ready() {
                return Wait::Ready;
            }
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
}
