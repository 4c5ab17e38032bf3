//! `Lock`, `RLock` and `Condition`: Python's `multiprocessing.Lock`, `RLock` and
//! `Condition`, robust against a holder that dies (see [`raw`](super::raw)).

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::atomic::Ordering;
use super::raw::{me, Fail, Got, RawLock};
use super::shared::{sync_handle_serde, Obj, What, Wire};
use crate::error::{LockError, Result};

/// `!Send` but `Sync`, like std's `MutexGuard`: a guard is released by the thread that
/// took it (the owner's tid is in the lock word).
type NotSend = PhantomData<std::sync::MutexGuard<'static, ()>>;

pub(crate) use crate::sys::deadline_after;

/// How long a lock operation may wait.
#[derive(Clone, Copy)]
pub(crate) enum Mode {
    Try,
    Until(Option<Instant>),
}

/// Acquires `raw` and builds the caller's guard with `make`.
#[inline]
pub(crate) fn acquire<G>(
    raw: &RawLock,
    mode: Mode,
    make: impl FnOnce(Got) -> G,
) -> std::result::Result<G, LockError<G>> {
    let me = me();
    let res = match mode {
        Mode::Try => raw.try_lock(me),
        Mode::Until(d) => raw.lock(me, d),
    };
    match res {
        Ok(Got::Normal) => Ok(make(Got::Normal)),
        Ok(Got::OwnerDied) => Err(LockError::OwnerDied(make(Got::OwnerDied))),
        Err(Fail::WouldBlock) => Err(LockError::WouldBlock),
        Err(Fail::Timeout) => Err(LockError::Timeout),
    }
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
    pub fn lock(&self) -> std::result::Result<LockGuard<'_>, LockError<LockGuard<'_>>> {
        acquire(self.raw(), Mode::Until(None), |_| {
            LockGuard::new(self.lock_obj())
        })
    }

    /// Takes the lock if nobody (alive) holds it.
    ///
    /// # Errors
    ///
    /// [`LockError::WouldBlock`] while it is held; [`LockError::OwnerDied`] as for `lock`.
    pub fn try_lock(&self) -> std::result::Result<LockGuard<'_>, LockError<LockGuard<'_>>> {
        acquire(self.raw(), Mode::Try, |_| LockGuard::new(self.lock_obj()))
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
        acquire(self.raw(), Mode::Until(deadline_after(timeout)), |_| {
            LockGuard::new(self.lock_obj())
        })
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
        mode: Mode,
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
        acquire(&b.lock, mode, |_| {
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
        self.acquire(Mode::Until(None))
    }

    /// Takes the lock if it is free or held by this thread.
    ///
    /// # Errors
    ///
    /// [`LockError::WouldBlock`] while another thread holds it; `OwnerDied` as for `lock`.
    pub fn try_lock(&self) -> std::result::Result<RLockGuard<'_>, LockError<RLockGuard<'_>>> {
        self.acquire(Mode::Try)
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
        self.acquire(Mode::Until(deadline_after(timeout)))
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
/// As with every condition variable, a wait may return without a matching notify
/// (a spurious wake-up, or a notify meant for another waiter): wait in a loop, or use
/// [`Condition::wait_for`].
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
    /// The notify sequence and sleeper count.
    obj: Arc<Obj>,
    /// Whose lock it uses: `obj` itself, or a [`Lock`]'s object (`with_lock`).
    lock: Arc<Obj>,
}

impl Condition {
    /// Creates a condition variable and its own lock in a fresh shared region.
    ///
    /// # Errors
    ///
    /// An OS error when the region cannot be created.
    pub fn new() -> Result<Condition> {
        let obj = Obj::create(What::Condition, 0, [0; 3])?;
        Ok(Condition {
            lock: obj.clone(),
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
            obj: Obj::create(What::Condition, 0, [0; 3])?,
            lock: lock.obj.clone(),
        })
    }

    fn raw(&self) -> &RawLock {
        &self.lock.block().lock
    }

    fn lock_obj(&self) -> &Obj {
        &self.lock
    }

    /// Takes the condition's lock.
    ///
    /// # Errors
    ///
    /// [`LockError::OwnerDied`] (with the guard) when the previous holder died holding it.
    pub fn lock(&self) -> std::result::Result<LockGuard<'_>, LockError<LockGuard<'_>>> {
        acquire(self.raw(), Mode::Until(None), |_| {
            LockGuard::new(self.lock_obj())
        })
    }

    /// Takes the condition's lock if it is free.
    ///
    /// # Errors
    ///
    /// [`LockError::WouldBlock`] while it is held; `OwnerDied` as for `lock`.
    pub fn try_lock(&self) -> std::result::Result<LockGuard<'_>, LockError<LockGuard<'_>>> {
        acquire(self.raw(), Mode::Try, |_| LockGuard::new(self.lock_obj()))
    }

    /// Takes the condition's lock, waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// [`LockError::Timeout`] when the time passed; `OwnerDied` as for `lock`.
    pub fn lock_timeout(
        &self,
        timeout: Duration,
    ) -> std::result::Result<LockGuard<'_>, LockError<LockGuard<'_>>> {
        acquire(self.raw(), Mode::Until(deadline_after(timeout)), |_| {
            LockGuard::new(self.lock_obj())
        })
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
        self.wait_deadline(guard, deadline_after(timeout))
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
        let deadline = timeout.and_then(deadline_after);
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
            guard.obj.same_object(&self.lock),
            "Condition::wait with a guard of another lock"
        );
        // Retake the very lock (mapping) the caller's guard came from.
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
                None => None,
                Some(d) => match d.checked_duration_since(Instant::now()) {
                    Some(left) if !left.is_zero() => Some(left),
                    _ => break false,
                },
            };
            #[cfg(not(loom))]
            crate::sys::futex_wait(&b.seq, seq, left);
            #[cfg(loom)]
            {
                let _ = left;
                loom::thread::yield_now();
            }
        };
        b.sleepers.fetch_sub(1, Ordering::SeqCst);
        match acquire(&lock_obj.block().lock, Mode::Until(None), |_| {
            LockGuard::new(lock_obj)
        }) {
            Ok(g) => Ok((g, notified)),
            Err(e) => Err(e),
        }
    }

    /// Wakes one waiter (possibly more: see the type's docs). Call with the lock held.
    pub fn notify(&self) {
        self.notify_n(1);
    }

    /// Wakes up to `n` waiters. Call with the lock held.
    pub fn notify_n(&self, n: u32) {
        let b = self.obj.block();
        b.seq.fetch_add(1, Ordering::SeqCst);
        if n > 0 && b.sleepers.load(Ordering::SeqCst) != 0 {
            #[cfg(not(loom))]
            crate::sys::futex_wake(&b.seq, n);
        }
    }

    /// Wakes every waiter. Call with the lock held.
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
        let lock = if Arc::ptr_eq(&self.obj, &self.lock) {
            None
        } else {
            Some(
                self.lock
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
        let obj = Obj::open(own, What::Condition, |_| true).map_err(err)?;
        let lock = match lock {
            None => obj.clone(),
            Some(w) => Obj::open(w, What::Lock, |_| true).map_err(err)?,
        };
        Ok(Condition { obj, lock })
    }
}
