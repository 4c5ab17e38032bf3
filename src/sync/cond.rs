//! The waiter queue under [`Condition`](super::Condition): which waiters a notify
//! releases, so that `wait_timeout` reports `true` only to a waiter a notify released.
//!
//! # Protocol
//!
//! Every wait takes a *ticket* `t` (a 64-bit sequence number, `tail` then `tail + 1`)
//! while it holds the condition's lock, and owns the slot `t mod N` of a ring of `N`
//! 32-bit words. A slot word is `lap << 2 | state`, with `lap = t / N` (mod 2^30), so a
//! word names the ticket it belongs to, not just the slot:
//!
//! * `WAITING` — ticket `t` waits; its waiter sleeps on this very word (a futex per
//!   waiter: a notify wakes exactly whom it releases, never a herd);
//! * `RELEASED` — a notify released it (one CAS `WAITING → RELEASED`);
//! * `WITHDRAWN` — its waiter's timeout passed first (one CAS `WAITING → WITHDRAWN`).
//!
//! The two CASes decide every race between a notify and a timeout: exactly one of them
//! wins, so a timed-out waiter is never counted by a notify, and a released one always
//! learns it (it returns `true` even when its deadline passed a moment later).
//!
//! `head` is where the oldest unresolved ticket may be: `notify_n(n)` walks the tickets
//! from `head` to `tail`, releases the first `n` that still wait (FIFO, as Python's
//! deque of waiters) and skips withdrawn ones, then moves `head` past what it walked.
//! A waiter that withdrew trims withdrawn tickets off both ends of `[head, tail)` when
//! it has retaken the lock, so holes only remain between live waiters.
//!
//! `enter`, `release` and `trim` run under the condition's lock (a notify from a thread
//! that does not hold it takes it for the call), so `head` and `tail` change in one
//! order; only a waiter's own `withdraw` and its look at its slot run without the lock,
//! and the CASes above order those.
//!
//! # Dead waiters and bad words
//!
//! A waiter whose process is SIGKILLed while waiting leaves its slot `WAITING`: the
//! first notify that reaches it releases it, exactly as if the process had died just
//! after being released, and the next notify goes on to the next waiter. Nothing is lost
//! for longer than that one release. A notifier killed between its CAS and its wake-up
//! leaves the waiter asleep for at most one park slice ([`SLICE`]), after which it sees
//! its slot and returns.
//!
//! Everything read from shared memory is bounded before use: a walk visits at most `N`
//! tickets, slots are indexed modulo `N`, and a garbage `head`/`tail` only makes tickets
//! look released, withdrawn or full (see `enter`), never an out-of-bounds access.

use std::time::Duration;

use super::atomic::{AtomicU32, AtomicU64, Ordering};

/// Slots of a [`Condition`](super::Condition): waiters that can wait at once with exact
/// notify accounting; more wait in the overflow mode (see `Condition`). The whole
/// condition (header, control block, queue) stays in one page.
pub(crate) const SLOTS: u32 = 512;

/// Longest single sleep of a waiter: bounds the delay when a notifier dies between
/// releasing a waiter and waking it.
pub(crate) const SLICE: Duration = Duration::from_millis(100);

/// Bytes before the slots: `head` and `tail`.
const HEAD_LEN: usize = 16;

/// A `tail` this large was not written by this module (see `enter`).
const GARBAGE: u64 = 1 << 62;

const WAITING: u32 = 1;
const RELEASED: u32 = 2;
const WITHDRAWN: u32 = 3;

/// Bytes of the queue (the condition's data area) for `slots` slots.
pub(crate) const fn memory_size(slots: u32) -> usize {
    HEAD_LEN + 4 * slots as usize
}

/// Whether `slots` is a usable slot count (a power of two, up to 2^16).
pub(crate) fn valid_slots(slots: u64) -> bool {
    slots.is_power_of_two() && slots <= 1 << 16
}

/// A view of a condition's waiter queue (shared memory, or the heap under loom).
pub(crate) struct Tickets<'a> {
    head: &'a AtomicU64,
    tail: &'a AtomicU64,
    slots: &'a [AtomicU32],
    shift: u32,
}

impl<'a> Tickets<'a> {
    /// A view over `head`, `tail` and `slots` (a power of two of them).
    pub(crate) fn new(head: &'a AtomicU64, tail: &'a AtomicU64, slots: &'a [AtomicU32]) -> Self {
        debug_assert!(valid_slots(slots.len() as u64));
        Tickets {
            head,
            tail,
            slots,
            shift: slots.len().trailing_zeros(),
        }
    }

    /// A view of the queue at `base`, holding `slots` slots.
    ///
    /// # Safety
    ///
    /// `base` must be 8-byte aligned and point to [`memory_size`]`(slots)` bytes that
    /// stay mapped for `'a` and are only ever accessed atomically (zeroes, or a queue
    /// written by this module); `slots` must satisfy [`valid_slots`]. (Compiled under
    /// loom too, like `Obj::block`, but only models on the heap run there.)
    pub(crate) unsafe fn from_raw(base: *mut u8, slots: u32) -> Tickets<'a> {
        // SAFETY: the caller guarantees HEAD_LEN + 4 * slots bytes at `base`, 8-aligned
        // and mapped for 'a; atomics accept any bit pattern, and shared references to
        // them are sound while other processes access the same bytes atomically.
        unsafe {
            let head = &*base.cast::<AtomicU64>();
            let tail = &*base.add(8).cast::<AtomicU64>();
            let slots =
                std::slice::from_raw_parts(base.add(HEAD_LEN).cast::<AtomicU32>(), slots as usize);
            Tickets::new(head, tail, slots)
        }
    }

    fn mask(&self) -> u64 {
        self.slots.len() as u64 - 1
    }

    fn slot(&self, t: u64) -> &'a AtomicU32 {
        &self.slots[(t & self.mask()) as usize]
    }

    /// The slot word of ticket `t` in `state`.
    fn word(&self, t: u64, state: u32) -> u32 {
        (((t >> self.shift) as u32) << 2) | state
    }

    /// Takes a ticket and marks it waiting; `None` when `N` tickets are unresolved (the
    /// caller waits in the overflow mode). The caller holds the condition's lock.
    pub(crate) fn enter(&self) -> Option<u64> {
        let n = self.slots.len() as u64;
        let head = self.head.load(Ordering::Relaxed);
        let tail = self.tail.load(Ordering::Relaxed).max(head);
        let t = if tail - head > n || tail >= GARBAGE {
            // Impossible for a queue this module wrote (one ticket per wait never gets
            // near 2^62): start afresh rather than overflow for ever.
            self.head.store(0, Ordering::Relaxed);
            0
        } else if tail - head == n {
            return None;
        } else {
            tail
        };
        self.slot(t).store(self.word(t, WAITING), Ordering::Relaxed);
        // Release publishes the slot word to notifiers, which Acquire `tail` first.
        self.tail.store(t.wrapping_add(1), Ordering::Release);
        Some(t)
    }

    /// The futex word ticket `t` sleeps on and its value while `t` waits.
    pub(crate) fn sleep_word(&self, t: u64) -> (&'a AtomicU32, u32) {
        (self.slot(t), self.word(t, WAITING))
    }

    /// Whether ticket `t` no longer waits: a notify released it (once it stopped waiting
    /// on its own, by `withdraw`, the caller no longer asks).
    pub(crate) fn released(&self, t: u64) -> bool {
        // Acquire pairs with the notifier's AcqRel CAS in `release`.
        self.slot(t).load(Ordering::Acquire) != self.word(t, WAITING)
    }

    /// At the deadline: stops waiting unless a notify released `t` first. Returns whether
    /// it was released (then it counts as notified).
    pub(crate) fn withdraw(&self, t: u64) -> bool {
        // The partner of the CAS in `release`: exactly one of the two succeeds.
        self.slot(t)
            .compare_exchange(
                self.word(t, WAITING),
                self.word(t, WITHDRAWN),
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .is_err()
    }

    /// Drops withdrawn tickets off both ends of the queue, so that waits which keep
    /// timing out behind a long waiter do not fill it with holes. The caller holds the
    /// condition's lock.
    pub(crate) fn trim(&self) {
        for _ in 0..self.slots.len() {
            let head = self.head.load(Ordering::Acquire);
            let tail = self.tail.load(Ordering::Relaxed);
            if tail <= head || tail - head > self.slots.len() as u64 {
                return;
            }
            let last = tail - 1;
            if self.slot(last).load(Ordering::Relaxed) != self.word(last, WITHDRAWN) {
                break;
            }
            self.tail.store(last, Ordering::Release);
        }
        for _ in 0..self.slots.len() {
            let head = self.head.load(Ordering::Acquire);
            let tail = self.tail.load(Ordering::Relaxed);
            if tail <= head || self.slot(head).load(Ordering::Relaxed) != self.word(head, WITHDRAWN)
            {
                return;
            }
            self.head.fetch_max(head + 1, Ordering::AcqRel);
        }
    }

    /// Releases up to `n` waiting tickets, oldest first, calling `wake` with the word of
    /// each (its waiter sleeps on it). Returns how many it released. The caller holds
    /// the condition's lock.
    pub(crate) fn release(&self, n: u32, mut wake: impl FnMut(&AtomicU32)) -> u32 {
        let slots = self.slots.len() as u64;
        // Acquire pairs with `enter`'s Release store of `tail`: the slots below it are set.
        let tail = self.tail.load(Ordering::Acquire);
        let mut t = self.head.load(Ordering::Acquire);
        if tail <= t {
            return 0;
        }
        if tail - t > slots {
            t = tail - slots; // garbage: look at no more than the ring holds
        }
        let mut done = 0;
        while t < tail && done < n {
            let slot = self.slot(t);
            // AcqRel: the waiter's Acquire load sees this; the partner of `withdraw`.
            if slot
                .compare_exchange(
                    self.word(t, WAITING),
                    self.word(t, RELEASED),
                    Ordering::AcqRel,
                    Ordering::Relaxed,
                )
                .is_ok()
            {
                wake(slot);
                done += 1;
            }
            t += 1;
        }
        // Holes right after the released ones need not be walked again.
        while t < tail && self.slot(t).load(Ordering::Relaxed) == self.word(t, WITHDRAWN) {
            t += 1;
        }
        self.head.fetch_max(t, Ordering::AcqRel);
        done
    }

    /// Tickets taken and not yet passed by `head` (waiting, or withdrawn between
    /// waiters); for tests.
    #[cfg(test)]
    pub(crate) fn unresolved(&self) -> u64 {
        self.tail
            .load(Ordering::SeqCst)
            .saturating_sub(self.head.load(Ordering::SeqCst))
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    struct Heap {
        head: AtomicU64,
        tail: AtomicU64,
        slots: Vec<AtomicU32>,
    }

    fn heap(n: usize) -> Heap {
        Heap {
            head: AtomicU64::new(0),
            tail: AtomicU64::new(0),
            slots: (0..n).map(|_| AtomicU32::new(0)).collect(),
        }
    }

    fn view(h: &Heap) -> Tickets<'_> {
        Tickets::new(&h.head, &h.tail, &h.slots)
    }

    #[test]
    fn notify_releases_the_oldest_waiters_and_skips_withdrawn_ones() {
        let h = heap(8);
        let q = view(&h);
        let t: Vec<u64> = (0..4).map(|_| q.enter().unwrap()).collect();
        assert!(!q.withdraw(t[0]), "nobody released it yet");
        assert!(!q.withdraw(t[2]));
        assert_eq!(q.release(1, |_| {}), 1);
        assert!(q.released(t[1]));
        assert!(!q.released(t[3]));
        assert_eq!(q.release(5, |_| {}), 1, "only t3 still waits");
        assert!(q.released(t[3]));
        assert!(q.withdraw(t[3]), "released first: withdraw reports it");
        assert_eq!(q.release(5, |_| {}), 0);
        assert_eq!(q.unresolved(), 0);
    }

    #[test]
    fn trimming_keeps_repeated_timeouts_behind_a_long_waiter_from_filling_the_ring() {
        let h = heap(4);
        let q = view(&h);
        let long = q.enter().unwrap();
        for _ in 0..100 {
            let t = q
                .enter()
                .expect("a slot: the timed-out tickets were trimmed");
            assert!(!q.withdraw(t));
            q.trim();
        }
        assert_eq!(q.unresolved(), 1);
        assert_eq!(q.release(1, |_| {}), 1);
        assert!(q.released(long));
        // A withdrawn ticket at the front is trimmed too.
        let a = q.enter().unwrap();
        let b = q.enter().unwrap();
        assert!(!q.withdraw(a));
        q.trim();
        assert_eq!(q.unresolved(), 1);
        assert_eq!(q.release(1, |_| {}), 1);
        assert!(q.released(b));
    }

    #[test]
    fn a_full_ring_sends_the_next_waiter_to_overflow_and_a_reused_slot_is_not_confused() {
        let h = heap(2);
        let q = view(&h);
        let a = q.enter().unwrap();
        let b = q.enter().unwrap();
        assert_eq!(q.enter(), None);
        assert_eq!(q.release(1, |_| {}), 1);
        // a's slot is reused by a new ticket; a still reads itself as released.
        let c = q.enter().unwrap();
        assert_eq!(c & 1, a & 1);
        assert!(q.released(a));
        assert!(!q.released(c));
        assert!(q.withdraw(a), "a was released (its slot moved on)");
        assert_eq!(q.release(2, |_| {}), 2);
        assert!(q.released(b) && q.released(c));
    }

    #[test]
    fn garbage_head_and_tail_never_panic_or_walk_past_the_ring() {
        for (head, tail) in [
            (u64::MAX, 0),
            (0, u64::MAX),
            (5, 3),
            (1 << 40, (1 << 40) + 1000),
            (u64::MAX - 1, u64::MAX),
        ] {
            let h = heap(4);
            h.head.store(head, Ordering::SeqCst);
            h.tail.store(tail, Ordering::SeqCst);
            for s in &h.slots {
                s.store(0xdead_beef, Ordering::SeqCst);
            }
            let q = view(&h);
            let _ = q.release(u32::MAX, |_| {});
            q.trim();
            if let Some(t) = q.enter() {
                assert!(!q.released(t));
                assert_eq!(q.release(1, |_| {}), 1, "head {head} tail {tail}");
                assert!(q.released(t));
            }
        }
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use crate::sync::raw::{me, RawLock};
    use loom::sync::Arc;

    struct Cond {
        lock: RawLock,
        head: AtomicU64,
        tail: AtomicU64,
        slots: Vec<AtomicU32>,
    }

    impl Cond {
        fn new(n: usize) -> Cond {
            Cond {
                lock: RawLock::new(),
                head: AtomicU64::new(0),
                tail: AtomicU64::new(0),
                slots: (0..n).map(|_| AtomicU32::new(0)).collect(),
            }
        }
        fn q(&self) -> Tickets<'_> {
            Tickets::new(&self.head, &self.tail, &self.slots)
        }
        fn lock(&self) {
            self.lock.lock(me(), None).unwrap();
        }
        /// A wait whose timeout passes after one look: enter under the lock, unlock,
        /// look, withdraw, relock, trim. Returns whether it was notified.
        fn timed_wait(&self) -> bool {
            self.lock();
            let t = self.q().enter().unwrap();
            self.lock.unlock();
            let notified = self.q().released(t) || self.q().withdraw(t);
            self.lock();
            if !notified {
                self.q().trim();
            }
            self.lock.unlock();
            notified
        }
        fn notify(&self, n: u32) -> u32 {
            self.lock();
            let k = self.q().release(n, |_| {});
            self.lock.unlock();
            k
        }
    }

    /// Two waiters whose timeouts pass, one notify: a waiter reports `true` exactly when
    /// the notify released it, and the notify is never spent on a withdrawn waiter (it
    /// releases one whenever one still waits).
    #[test]
    fn loom_a_notify_reaches_exactly_the_waiters_it_reports() {
        let mut b = loom::model::Builder::new();
        b.preemption_bound = Some(3);
        b.check(|| {
            let c = Arc::new(Cond::new(2));
            let ws: Vec<_> = (0..2)
                .map(|_| {
                    let c = c.clone();
                    loom::thread::spawn(move || c.timed_wait())
                })
                .collect();
            let k = c.notify(1);
            let got: u32 = ws.into_iter().map(|w| u32::from(w.join().unwrap())).sum();
            assert_eq!(got, k, "waiters notified != releases reported");
            assert!(k <= 1);
            assert_eq!(c.q().unresolved(), 0);
        });
    }

    /// A waiter without a timeout and a notify: the waiter always ends released (no
    /// lost release), whatever the interleaving of enter and notify under the lock.
    #[test]
    fn loom_a_waiting_ticket_is_released_by_a_later_notify() {
        let mut b = loom::model::Builder::new();
        b.preemption_bound = Some(3);
        b.check(|| {
            let c = Arc::new(Cond::new(2));
            let c2 = c.clone();
            let entered = Arc::new(AtomicU32::new(0));
            let e2 = entered.clone();
            let w = loom::thread::spawn(move || {
                c2.lock();
                let t = c2.q().enter().unwrap();
                e2.store(1, Ordering::SeqCst);
                c2.lock.unlock();
                while !c2.q().released(t) {
                    loom::thread::yield_now();
                }
            });
            // Notify once the waiter has entered (as a caller's predicate would tell).
            loop {
                c.lock();
                if entered.load(Ordering::SeqCst) == 1 {
                    assert_eq!(c.q().release(1, |_| {}), 1);
                    c.lock.unlock();
                    break;
                }
                c.lock.unlock();
                loom::thread::yield_now();
            }
            w.join().unwrap();
        });
    }
}
