//! `Lock`, `RLock` and `Condition`: Python's `multiprocessing.Lock`, `RLock` and
//! `Condition`, robust against a holder that dies (see [`raw`](super::raw)).

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::atomic::Ordering;
use super::cond::{self, Tickets};
use super::deadline::Deadline;
use super::raw::{me, Fail, Got, RawLock};
use super::shared::{sync_handle_serde, Obj, What, Wire};
use crate::error::{LockError, Result};

/// `!Send` but `Sync`, like std's `MutexGuard`: a guard is released by the thread that
/// took it (the owner's tid is in the lock word).
type NotSend = PhantomData<std::sync::MutexGuard<'static, ()>>;

/// Acquires `raw`, waiting as `wait` says, and builds the caller's guard with `make`:
/// the one blocking core of `Lock`, `RLock`, `Condition`, `Value` and `Array`, whose
/// `lock`, `try_lock` and `lock_timeout` are thin wrappers.
#[inline]
pub(crate) fn acquire<G>(
    raw: &RawLock,
    wait: Deadline,
    make: impl FnOnce(Got) -> G,
) -> std::result::Result<G, LockError<G>> {
    let me = me();
    let res = match wait {
        Deadline::Now => raw.try_lock(me),
        Deadline::Until(d) => raw.lock(me, d),
    };
    match res {
        Ok(Got::Normal) => Ok(make(Got::Normal)),
        Ok(Got::OwnerDied) => Err(LockError::OwnerDied(make(Got::OwnerDied))),
        Err(Fail::WouldBlock) => Err(LockError::WouldBlock),
        Err(Fail::Timeout) => Err(LockError::Timeout),
    }
}

/// Takes the lock of `obj` (a `Lock`'s, or a `Condition`'s) under `wait`: the one body
/// of their `lock`, `try_lock` and `lock_timeout`.
fn take(obj: &Obj, wait: Deadline) -> std::result::Result<LockGuard<'_>, LockError<LockGuard<'_>>> {
    acquire(&obj.block().lock, wait, |_| LockGuard::new(obj))
}

// ------------------------------------------------------------------------------ Lock

/// A process-shared mutual-exclusion lock (Python's `multiprocessing.Lock`).
///
/// A `Lock` is a handle: clones share one lock, and so do copies handed to child
/// processes (as `Process` args, under fork or spawn). Uncontended `lock` and unlock are
/// one atomic instruction each, with no system call; a contended locker spins briefly,
/// then sleeps on a futex.
///
/// **Robust.** If the holder dies (its process is killed, or its thread exits) while
/// holding the lock, the next locker gets [`LockError::OwnerDied`] carrying the guard:
/// it holds the lock, and the lock works normally afterwards. Data the lock protected
/// may be half-updated; check it.
///
/// Not re-entrant: a thread that locks it twice waits for itself (use [`RLock`]).
///
/// # Examples
///
/// ```
/// use shmproc::Lock;
///
/// let lock = Lock::new()?;
/// {
///     let _guard = lock.lock().unwrap_or_else(|e| e.into_guard().unwrap());
///     assert!(lock.try_lock().is_err()); // held
/// }
/// assert!(lock.try_lock().is_ok());
/// # Ok::<(), shmproc::Error>(())
/// ```
#[derive(Clone)]
pub struct Lock {
    obj: Arc<Obj>,
}

/// Holds a [`Lock`] (or the lock of a [`Condition`]); releases it when dropped.
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct LockGuard<'a> {
    obj: &'a Obj,
    _not_send: NotSend,
}

impl Drop for LockGuard<'_> {
    fn drop(&mut self) {
        self.obj.block().lock.unlock();
    }
}

impl fmt::Debug for LockGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LockGuard")
    }
}

impl<'a> LockGuard<'a> {
    /// The guard of `obj`'s lock, which the caller has just taken.
    pub(crate) fn new(obj: &'a Obj) -> LockGuard<'a> {
        LockGuard {
            obj,
            _not_send: PhantomData,
        }
    }
}

impl Lock {
    /// Creates an unlocked lock in a fresh shared region.
    ///
    /// # Errors
    ///
    /// An OS error when the region cannot be created.
    pub fn new() -> Result<Lock> {
        Ok(Lock {
            obj: Obj::create(What::Lock, 0, [0; 3])?,
        })
    }

    fn raw(&self) -> &RawLock {
        &self.obj.block().lock
    }

    fn lock_obj(&self) -> &Obj {
        &self.obj
    }

    /// Takes the lock, waiting as long as it takes.
    ///
    /// # Errors
    ///
    /// [`LockError::OwnerDied`] (with the guard: you hold the lock) when the previous
    /// holder died holding it.
    ///
    /// # Examples
    ///
    /// A child dies holding the lock; the next `lock()` gets it with `OwnerDied`:
    ///
    /// ```
    /// use shmproc::{Lock, LockError, Process};
    ///
    /// let lock = Lock::new()?;
    /// let theirs = lock.clone();
    /// let mut child = Process::fork(move || {
    ///     std::mem::forget(theirs.lock().unwrap()); // exits holding it
    /// });
    /// child.start()?;
    /// child.join()?;
    /// match lock.lock() {
    ///     // We hold the lock now: repair what the dead holder may have left half-done.
    ///     Err(LockError::OwnerDied(guard)) => drop(guard),
    ///     other => panic!("expected OwnerDied, got {other:?}"),
    /// }
    /// assert!(lock.lock().is_ok()); // and it works normally after
    /// # Ok::<(), shmproc::Error>(())
    /// ```
    pub fn lock(&self) -> std::result::Result<LockGuard<'_>, LockError<LockGuard<'_>>> {
        take(self.lock_obj(), Deadline::FOREVER)
    }

    /// Takes the lock if nobody (alive) holds it.
    ///
    /// # Errors
    ///
    /// [`LockError::WouldBlock`] while it is held; [`LockError::OwnerDied`] as for `lock`.
    pub fn try_lock(&self) -> std::result::Result<LockGuard<'_>, LockError<LockGuard<'_>>> {
        take(self.lock_obj(), Deadline::Now)
    }

    /// Takes the lock, waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// [`LockError::Timeout`] when the time passed; [`LockError::OwnerDied`] as for `lock`.
    pub fn lock_timeout(
        &self,
        timeout: Duration,
    ) -> std::result::Result<LockGuard<'_>, LockError<LockGuard<'_>>> {
        take(self.lock_obj(), Deadline::after(timeout))
    }

    /// Whether somebody holds the lock right now (a snapshot, like Python's `locked()`).
    pub fn is_locked(&self) -> bool {
        self.raw().is_locked()
    }
}

impl fmt::Debug for Lock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lock")
            .field("locked", &self.is_locked())
            .finish()
    }
}

sync_handle_serde!(Lock, What::Lock, |_| true);

// ----------------------------------------------------------------------------- RLock

/// A re-entrant process-shared lock (Python's `multiprocessing.RLock`): the thread that
/// holds it may lock it again; it is released when every guard is dropped.
///
/// Robust like [`Lock`]: the holder's death gives the next locker
/// [`LockError::OwnerDied`], with a recursion depth of one.
///
/// # Examples
///
/// ```
/// use shmproc::RLock;
///
/// let lock = RLock::new()?;
/// let outer = lock.lock().unwrap();
/// let inner = lock.lock().unwrap(); // same thread: no deadlock
/// drop(inner);
/// drop(outer);
/// # Ok::<(), shmproc::Error>(())
/// ```
#[derive(Clone)]
pub struct RLock {
    obj: Arc<Obj>,
}

/// One level of an [`RLock`]; the lock is released when the outermost guard is dropped.
#[must_use = "the level is released as soon as the guard is dropped"]
pub struct RLockGuard<'a> {
    obj: &'a Obj,
    _not_send: NotSend,
}

impl Drop for RLockGuard<'_> {
    fn drop(&mut self) {
        let b = self.obj.block();
        // Only the holder touches the depth; the lock's Acquire/Release orders it.
        let depth = b.count.load(Ordering::Relaxed);
        if depth <= 1 {
            b.count.store(0, Ordering::Relaxed);
            b.lock.unlock();
        } else {
            b.count.store(depth - 1, Ordering::Relaxed);
        }
    }
}

impl fmt::Debug for RLockGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RLockGuard")
    }
}

impl RLock {
    /// Creates an unlocked re-entrant lock in a fresh shared region.
    ///
    /// # Errors
    ///
    /// An OS error when the region cannot be created.
    pub fn new() -> Result<RLock> {
        Ok(RLock {
            obj: Obj::create(What::RLock, 0, [0; 3])?,
        })
    }

    fn acquire(
        &self,
        wait: Deadline,
    ) -> std::result::Result<RLockGuard<'_>, LockError<RLockGuard<'_>>> {
        let b = self.obj.block();
        let guard = || RLockGuard {
            obj: &self.obj,
            _not_send: PhantomData,
        };
        if b.lock.held_by(me()) {
            let depth = b.count.load(Ordering::Relaxed);
            b.count
                .store(depth.saturating_add(1).max(2), Ordering::Relaxed);
            return Ok(guard());
        }
        acquire(&b.lock, wait, |_| {
            b.count.store(1, Ordering::Relaxed);
            guard()
        })
    }

    /// Takes the lock (or one more level of it, for the holding thread).
    ///
    /// # Errors
    ///
    /// [`LockError::OwnerDied`] (with the guard) when the previous holder died holding it.
    pub fn lock(&self) -> std::result::Result<RLockGuard<'_>, LockError<RLockGuard<'_>>> {
        self.acquire(Deadline::FOREVER)
    }

    /// Takes the lock if it is free or held by this thread.
    ///
    /// # Errors
    ///
    /// [`LockError::WouldBlock`] while another thread holds it; `OwnerDied` as for `lock`.
    pub fn try_lock(&self) -> std::result::Result<RLockGuard<'_>, LockError<RLockGuard<'_>>> {
        self.acquire(Deadline::Now)
    }

    /// Takes the lock, waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// [`LockError::Timeout`] when the time passed; `OwnerDied` as for `lock`.
    pub fn lock_timeout(
        &self,
        timeout: Duration,
    ) -> std::result::Result<RLockGuard<'_>, LockError<RLockGuard<'_>>> {
        self.acquire(Deadline::after(timeout))
    }
}

impl fmt::Debug for RLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RLock")
            .field("locked", &self.obj.block().lock.is_locked())
            .finish()
    }
}

sync_handle_serde!(RLock, What::RLock, |_| true);

// ------------------------------------------------------------------------- Condition

/// A process-shared condition variable with its own lock (Python's
/// `multiprocessing.Condition()`), or built on an existing [`Lock`] with
/// [`Condition::with_lock`] (Python's `Condition(lock)`): lock it, check your
/// condition, `wait` (which releases the lock while sleeping and retakes it), and
/// `notify` with the lock held.
///
/// **Who a notify wakes.** Waiters queue in the order they called `wait`;
/// `notify_n(n)` releases the `n` longest-waiting ones still waiting (FIFO, as
/// Python's), `notify_all` every one. A waiter whose timeout passes withdraws
/// atomically: either a notify released it first (then `wait_timeout` returns `true`,
/// even if its deadline passed a moment later) or it is out of the queue and no notify
/// counts it (`false`, and the notify goes to the next waiter). So `wait_timeout`
/// returns `true` only to a waiter that a notify released, as Python's `wait` does.
///
/// A waiter whose process is killed while waiting stays queued until a notify reaches
/// it: that notify releases it as if it had died just after waking, and is not
/// repeated; the next notify goes to the next waiter. Up to 512 waiters can wait on one
/// condition at once with this exact accounting; beyond that, the extra waiters wait
/// the way a plain futex condition variable does and may also wake at a notify that
/// released others (a spurious wake-up).
///
/// As with every condition variable, the condition may be false again by the time a
/// woken waiter has retaken the lock (another thread took the lock first): wait in a
/// loop, or use [`Condition::wait_for`].
///
/// # Examples
///
/// ```
/// use shmproc::{Condition, Value};
/// use std::time::Duration;
///
/// let cond = Condition::new()?;
/// let ready = Value::new(0u32)?;
/// let (c2, r2) = (cond.clone(), ready.clone());
/// let t = std::thread::spawn(move || {
///     let _g = c2.lock().unwrap();
///     r2.set(1);
///     c2.notify_all();
/// });
/// let g = cond.lock().unwrap();
/// let (g, ok) = cond
///     .wait_for(g, || ready.get() == 1, Some(Duration::from_secs(10)))
///     .unwrap();
/// assert!(ok);
/// drop(g);
/// t.join().unwrap();
/// # Ok::<(), shmproc::Error>(())
/// ```
#[derive(Clone)]
pub struct Condition {
    /// The waiter queue (data area, see [`cond`]) and the overflow words (control block).
    obj: Arc<Obj>,
    /// Whose lock it uses: `obj`'s own, or a [`Lock`]'s (`with_lock`).
    lock: Lock,
}

impl Condition {
    /// Creates a condition variable and its own lock in a fresh shared region.
    ///
    /// # Errors
    ///
    /// An OS error when the region cannot be created.
    pub fn new() -> Result<Condition> {
        let obj = Condition::create(cond::SLOTS)?;
        Ok(Condition {
            lock: Lock { obj: obj.clone() },
            obj,
        })
    }

    /// Creates a condition variable that uses an existing [`Lock`] (Python's
    /// `Condition(lock)`): guards from `lock.lock()` and from this condition's `lock()`
    /// are interchangeable.
    ///
    /// # Errors
    ///
    /// An OS error when the region cannot be created.
    pub fn with_lock(lock: &Lock) -> Result<Condition> {
        Ok(Condition {
            obj: Condition::create(cond::SLOTS)?,
            lock: lock.clone(),
        })
    }

    /// A fresh condition object whose queue has `slots` slots.
    fn create(slots: u32) -> Result<Arc<Obj>> {
        Obj::create(
            What::Condition,
            cond::memory_size(slots),
            [u64::from(slots), 0, 0],
        )
    }

    /// A condition (with its own lock) whose queue has only `slots` slots, so that
    /// tests can reach the overflow mode.
    #[cfg(all(test, not(loom)))]
    pub(crate) fn with_slots(slots: u32) -> Result<Condition> {
        let obj = Condition::create(slots)?;
        Ok(Condition {
            lock: Lock { obj: obj.clone() },
            obj,
        })
    }

    /// Whether a received condition object has a well-formed queue.
    fn valid(obj: &Obj) -> bool {
        let slots = obj.shape()[0];
        cond::valid_slots(slots) && cond::memory_size(slots as u32) <= obj.data_len()
    }

    /// The waiter queue in the object's data area.
    fn tickets(&self) -> Tickets<'_> {
        let slots = self.obj.shape()[0] as u32;
        // SAFETY: the data area is 128-byte aligned and at least memory_size(slots)
        // bytes (checked at creation and by `valid` when received), mapped while
        // `self.obj` lives, and accessed only through atomics; `slots` is valid.
        unsafe { Tickets::from_raw(self.obj.data(), slots) }
    }

    fn raw(&self) -> &RawLock {
        self.lock.raw()
    }

    fn lock_obj(&self) -> &Obj {
        self.lock.lock_obj()
    }

    /// Takes the condition's lock: [`Lock::lock`].
    ///
    /// # Errors
    ///
    /// As [`Lock::lock`].
    pub fn lock(&self) -> std::result::Result<LockGuard<'_>, LockError<LockGuard<'_>>> {
        self.lock.lock()
    }

    /// Takes the condition's lock if it is free: [`Lock::try_lock`].
    ///
    /// # Errors
    ///
    /// As [`Lock::try_lock`].
    pub fn try_lock(&self) -> std::result::Result<LockGuard<'_>, LockError<LockGuard<'_>>> {
        self.lock.try_lock()
    }

    /// Takes the condition's lock, waiting at most `timeout`: [`Lock::lock_timeout`].
    ///
    /// # Errors
    ///
    /// As [`Lock::lock_timeout`].
    pub fn lock_timeout(
        &self,
        timeout: Duration,
    ) -> std::result::Result<LockGuard<'_>, LockError<LockGuard<'_>>> {
        self.lock.lock_timeout(timeout)
    }

    /// Releases the lock, sleeps until notified, and retakes the lock.
    ///
    /// # Errors
    ///
    /// [`LockError::OwnerDied`] (with the guard) when retaking the lock found its holder dead.
    ///
    /// # Panics
    ///
    /// When `guard` is not a guard of this condition's lock (a local programming error).
    pub fn wait<'a>(
        &'a self,
        guard: LockGuard<'a>,
    ) -> std::result::Result<LockGuard<'a>, LockError<LockGuard<'a>>> {
        self.wait_deadline(guard, None).map(|(g, _)| g)
    }

    /// Like [`wait`](Self::wait), for at most `timeout`. Returns the guard and whether
    /// the wait ended by a notify (`false`: the time passed), like Python's `wait`.
    ///
    /// # Errors
    ///
    /// As for `wait`.
    ///
    /// # Panics
    ///
    /// As for `wait`.
    pub fn wait_timeout<'a>(
        &'a self,
        guard: LockGuard<'a>,
        timeout: Duration,
    ) -> std::result::Result<(LockGuard<'a>, bool), LockError<LockGuard<'a>>> {
        self.wait_deadline(guard, Deadline::after(timeout).instant())
    }

    /// Waits until `predicate()` holds (checked with the lock held, first before any
    /// wait), or `timeout` passes. Returns the guard and the predicate's last value, like
    /// Python's `wait_for`.
    ///
    /// # Errors
    ///
    /// As for `wait`.
    ///
    /// # Panics
    ///
    /// As for `wait`.
    pub fn wait_for<'a>(
        &'a self,
        mut guard: LockGuard<'a>,
        mut predicate: impl FnMut() -> bool,
        timeout: Option<Duration>,
    ) -> std::result::Result<(LockGuard<'a>, bool), LockError<LockGuard<'a>>> {
        let deadline = Deadline::within(timeout).instant();
        loop {
            if predicate() {
                return Ok((guard, true));
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Ok((guard, false));
            }
            guard = self.wait_deadline(guard, deadline)?.0;
        }
    }

    fn wait_deadline<'a>(
        &'a self,
        guard: LockGuard<'a>,
        deadline: Option<Instant>,
    ) -> std::result::Result<(LockGuard<'a>, bool), LockError<LockGuard<'a>>> {
        assert!(
            guard.obj.same_object(self.lock_obj()),
            "Condition::wait with a guard of another lock"
        );
        // Retake the very lock (mapping) the caller's guard came from.
        let lock_obj: &'a Obj = guard.obj;
        let q = self.tickets();
        // Enter the queue under the lock: a notify after our unlock sees our ticket.
        let Some(t) = q.enter() else {
            return self.wait_overflow(guard, deadline);
        };
        drop(guard);
        let (word, waiting) = q.sleep_word(t);
        let notified = loop {
            if q.released(t) {
                break true;
            }
            // Sleep in slices: a notifier killed between releasing us and waking us
            // costs at most one slice.
            let left = match deadline {
                None => cond::SLICE,
                Some(d) => match d.checked_duration_since(Instant::now()) {
                    Some(left) if !left.is_zero() => left.min(cond::SLICE),
                    // Out of the queue, unless a notify released us first.
                    _ => break q.withdraw(t),
                },
            };
            #[cfg(not(loom))]
            crate::sys::futex_wait(word, waiting, Some(left));
            #[cfg(loom)]
            {
                let _ = (word, waiting, left);
                loom::thread::yield_now();
            }
        };
        // Retaking the lock without a deadline ends in Ok or OwnerDied: we hold it.
        let res = take(lock_obj, Deadline::FOREVER);
        if !notified {
            q.trim();
        }
        res.map(|g| (g, notified))
    }

    /// A wait while the queue is full (more than [`cond::SLOTS`] waiters at once): the
    /// plain futex scheme, where any notify that releases fewer waiters than it was
    /// asked to wakes every overflow waiter.
    #[cold]
    fn wait_overflow<'a>(
        &'a self,
        guard: LockGuard<'a>,
        deadline: Option<Instant>,
    ) -> std::result::Result<(LockGuard<'a>, bool), LockError<LockGuard<'a>>> {
        let lock_obj: &'a Obj = guard.obj;
        let b = self.obj.block();
        // Read under the lock: a notify after our unlock changes it.
        let seq = b.seq.load(Ordering::SeqCst);
        b.sleepers.fetch_add(1, Ordering::SeqCst);
        drop(guard);
        let notified = loop {
            if b.seq.load(Ordering::Acquire) != seq {
                break true;
            }
            let left = match deadline {
                None => cond::SLICE,
                Some(d) => match d.checked_duration_since(Instant::now()) {
                    Some(left) if !left.is_zero() => left.min(cond::SLICE),
                    _ => break false,
                },
            };
            #[cfg(not(loom))]
            crate::sys::futex_wait(&b.seq, seq, Some(left));
            #[cfg(loom)]
            {
                let _ = left;
                loom::thread::yield_now();
            }
        };
        b.sleepers.fetch_sub(1, Ordering::SeqCst);
        take(lock_obj, Deadline::FOREVER).map(|g| (g, notified))
    }

    /// Wakes the longest-waiting waiter, if any. Call with the lock held (a thread that
    /// does not hold it takes it for the call: Python raises `RuntimeError` there).
    pub fn notify(&self) {
        self.notify_n(1);
    }

    /// Wakes the `n` longest-waiting waiters (fewer if fewer wait): exactly those
    /// return from `wait_timeout` with `true`. Call with the lock held (as `notify`).
    pub fn notify_n(&self, n: u32) {
        if n == 0 {
            return;
        }
        let raw = self.raw();
        // The queue changes only under the lock. Without it (Python raises), take it.
        let took = !raw.held_by(me()) && raw.lock(me(), None).is_ok();
        let released = self.tickets().release(n, |word| {
            #[cfg(not(loom))]
            crate::sys::futex_wake(word, u32::MAX);
            #[cfg(loom)]
            let _ = word;
        });
        if released < n {
            // Overflow waiters (rare): wake them; each may take this as its notify.
            let b = self.obj.block();
            b.seq.fetch_add(1, Ordering::SeqCst);
            if b.sleepers.load(Ordering::SeqCst) != 0 {
                #[cfg(not(loom))]
                crate::sys::futex_wake(&b.seq, n - released);
            }
        }
        if took {
            raw.unlock();
        }
    }

    /// Wakes every waiter. Call with the lock held (as `notify`).
    pub fn notify_all(&self) {
        self.notify_n(u32::MAX);
    }
}

impl fmt::Debug for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Condition")
            .field("locked", &self.raw().is_locked())
            .finish()
    }
}

impl serde::Serialize for Condition {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::Error as _;
        let own = self
            .obj
            .to_wire()
            .map_err(|e| S::Error::custom(e.to_string()))?;
        let lock = if Arc::ptr_eq(&self.obj, &self.lock.obj) {
            None
        } else {
            Some(
                self.lock
                    .obj
                    .to_wire()
                    .map_err(|e| S::Error::custom(e.to_string()))?,
            )
        };
        (own, lock).serialize(s)
    }
}

impl<'de> serde::Deserialize<'de> for Condition {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        use serde::de::Error as _;
        let (own, lock) = <(Wire, Option<Wire>)>::deserialize(d)?;
        let err = |e: crate::Error| D::Error::custom(e.to_string());
        let obj = Obj::open(own, What::Condition, Condition::valid).map_err(err)?;
        let lock = match lock {
            None => obj.clone(),
            Some(w) => Obj::open(w, What::Lock, |_| true).map_err(err)?,
        };
        Ok(Condition {
            obj,
            lock: Lock { obj: lock },
        })
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::sync::atomic::AtomicU32;

    /// Starts one waiting thread per timeout; returns once all of them are queued.
    fn waiters(c: &Arc<Condition>, timeouts: &[Duration]) -> Vec<std::thread::JoinHandle<bool>> {
        let entered = Arc::new(AtomicU32::new(0));
        let hs = timeouts
            .iter()
            .map(|&t| {
                let (c, e) = (c.clone(), entered.clone());
                std::thread::spawn(move || {
                    let g = c.lock().unwrap();
                    e.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    c.wait_timeout(g, t).unwrap().1
                })
            })
            .collect();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let g = c.lock().unwrap();
            if entered.load(std::sync::atomic::Ordering::SeqCst) == timeouts.len() as u32 {
                break;
            }
            drop(g);
            assert!(Instant::now() < deadline);
            std::thread::sleep(Duration::from_millis(1));
        }
        hs
    }

    #[test]
    fn waiters_beyond_the_queue_wait_in_overflow_and_notify_all_reaches_them() {
        let c = Arc::new(Condition::with_slots(2).unwrap());
        let hs = waiters(&c, &[Duration::from_secs(30); 4]);
        c.notify_all();
        for h in hs {
            assert!(h.join().unwrap());
        }
        // The queue is empty again: exact accounting is back.
        let hs = waiters(&c, &[Duration::from_millis(300); 2]);
        c.notify(); // without holding the lock: notify takes it
        let got: Vec<bool> = hs.into_iter().map(|h| h.join().unwrap()).collect();
        assert_eq!(got.iter().filter(|&&b| b).count(), 1, "{got:?}");
    }

    #[test]
    fn a_notify_with_the_lock_held_by_the_caller_does_not_deadlock() {
        let c = Arc::new(Condition::new().unwrap());
        let hs = waiters(&c, &[Duration::from_secs(30)]);
        let g = c.lock().unwrap();
        c.notify_n(3);
        drop(g);
        assert!(hs.into_iter().all(|h| h.join().unwrap()));
    }
}
