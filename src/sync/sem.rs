//! `Semaphore`, `BoundedSemaphore`, `Event` and `Barrier`: lock-free counters and flags
//! in shared memory; blocked callers park on the block's [`Waiter`](super::waiter::Waiter).

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::atomic::Ordering;
use super::deadline::Deadline;
use super::shared::{sync_handle_serde, Block, Obj, What};
use super::waiter::Wait;
use crate::error::{BarrierError, Error, LockError, Result};

/// Takes one unit of `b.count` if there is one.
fn try_take(b: &Block) -> bool {
    let mut c = b.count.load(Ordering::Relaxed);
    while c != 0 {
        // Acquire pairs with the Release in `give`: what the releaser wrote is visible.
        match b
            .count
            .compare_exchange_weak(c, c - 1, Ordering::Acquire, Ordering::Relaxed)
        {
            Ok(_) => return true,
            Err(now) => c = now,
        }
    }
    false
}

/// Takes one unit of `b.count`, waiting as `wait` says: the one blocking core of both
/// semaphores' `acquire`, `try_acquire` and `acquire_timeout`. Never `OwnerDied`: a
/// semaphore has no owner.
fn take(b: &Block, wait: Deadline) -> std::result::Result<(), LockError<()>> {
    if try_take(b) {
        return Ok(());
    }
    match wait {
        Deadline::Now => Err(LockError::WouldBlock),
        Deadline::Until(d) => match b.waiter.wait_until(d, || try_take(b), || false) {
            Wait::Ready => Ok(()),
            _ => Err(LockError::Timeout),
        },
    }
}

/// Adds one unit unless the count is at `max`; wakes parked acquirers.
fn give(b: &Block, max: u32) -> bool {
    let mut c = b.count.load(Ordering::Relaxed);
    loop {
        if c >= max {
            return false;
        }
        // Release pairs with the Acquire in `try_take`.
        match b
            .count
            .compare_exchange_weak(c, c + 1, Ordering::Release, Ordering::Relaxed)
        {
            Ok(_) => break,
            Err(now) => c = now,
        }
    }
    b.waiter.wake_all();
    true
}

// ------------------------------------------------------------------------- Semaphore

/// A process-shared counting semaphore (Python's `multiprocessing.Semaphore`).
///
/// `acquire` takes one unit, waiting while there is none; `release` gives one back.
/// The acquire methods report in the lock's error style: `try_acquire` fails with
/// [`LockError::WouldBlock`], `acquire_timeout` with [`LockError::Timeout`]; a semaphore
/// has no owner, so [`LockError::OwnerDied`] cannot occur.
/// The count lives in shared memory: clones and copies handed to child processes share it.
///
/// # Examples
///
/// ```
/// use shmproc::{LockError, Semaphore};
/// use std::time::Duration;
///
/// let sem = Semaphore::new(1)?;
/// sem.acquire().unwrap();
/// assert!(matches!(sem.try_acquire(), Err(LockError::WouldBlock)));
/// assert!(matches!(sem.acquire_timeout(Duration::from_millis(10)), Err(LockError::Timeout)));
/// sem.release()?;
/// assert!(sem.try_acquire().is_ok());
/// # Ok::<(), shmproc::Error>(())
/// ```
#[derive(Clone)]
pub struct Semaphore {
    obj: Arc<Obj>,
}

impl Semaphore {
    /// Creates a semaphore holding `value` units.
    ///
    /// # Errors
    ///
    /// An OS error when the region cannot be created.
    pub fn new(value: u32) -> Result<Semaphore> {
        let obj = Obj::create(What::Semaphore, 0, [0; 3])?;
        obj.block().count.store(value, Ordering::Relaxed);
        Ok(Semaphore { obj })
    }

    /// Takes a unit, waiting as long as it takes.
    ///
    /// # Errors
    ///
    /// None today: the `Result` keeps the lock's error style (a semaphore has no owner,
    /// so there is no `OwnerDied`).
    pub fn acquire(&self) -> std::result::Result<(), LockError<()>> {
        take(self.obj.block(), Deadline::FOREVER)
    }

    /// Takes a unit if one is available now.
    ///
    /// # Errors
    ///
    /// [`LockError::WouldBlock`] when the count is zero.
    pub fn try_acquire(&self) -> std::result::Result<(), LockError<()>> {
        take(self.obj.block(), Deadline::Now)
    }

    /// Takes a unit, waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// [`LockError::Timeout`] when the time passed first.
    pub fn acquire_timeout(&self, timeout: Duration) -> std::result::Result<(), LockError<()>> {
        take(self.obj.block(), Deadline::after(timeout))
    }

    /// Gives a unit back, waking a waiter.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidState`] when the count is at `u32::MAX`.
    pub fn release(&self) -> Result<()> {
        if give(self.obj.block(), u32::MAX) {
            Ok(())
        } else {
            Err(Error::InvalidState("semaphore count overflow"))
        }
    }

    /// The current count (a snapshot, like Python's `get_value()`).
    pub fn value(&self) -> u32 {
        self.obj.block().count.load(Ordering::Relaxed)
    }
}

impl fmt::Debug for Semaphore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Semaphore")
            .field("value", &self.value())
            .finish()
    }
}

sync_handle_serde!(Semaphore, What::Semaphore, |_| true);

/// A semaphore that refuses to be released above its initial value (Python's
/// `multiprocessing.BoundedSemaphore`): an extra `release` is an error, not a silent
/// extra unit.
///
/// # Examples
///
/// ```
/// use shmproc::BoundedSemaphore;
///
/// let sem = BoundedSemaphore::new(2)?;
/// assert!(sem.release().is_err()); // already full
/// sem.acquire().unwrap();
/// sem.release()?;
/// # Ok::<(), shmproc::Error>(())
/// ```
#[derive(Clone)]
pub struct BoundedSemaphore {
    /// The count, in a region of kind `BoundedSemaphore` whose shape holds the maximum.
    sem: Semaphore,
}

impl BoundedSemaphore {
    /// Creates a semaphore holding `value` units, which is also its maximum.
    ///
    /// # Errors
    ///
    /// An OS error when the region cannot be created.
    pub fn new(value: u32) -> Result<BoundedSemaphore> {
        let obj = Obj::create(What::BoundedSemaphore, 0, [u64::from(value), 0, 0])?;
        obj.block().count.store(value, Ordering::Relaxed);
        Ok(BoundedSemaphore {
            sem: Semaphore { obj },
        })
    }

    fn max(&self) -> u32 {
        // Checked to fit when the handle was created or received.
        self.sem.obj.shape()[0] as u32
    }

    /// Takes a unit, waiting as long as it takes: [`Semaphore::acquire`].
    ///
    /// # Errors
    ///
    /// As [`Semaphore::acquire`].
    pub fn acquire(&self) -> std::result::Result<(), LockError<()>> {
        self.sem.acquire()
    }

    /// Takes a unit if one is available now: [`Semaphore::try_acquire`].
    ///
    /// # Errors
    ///
    /// As [`Semaphore::try_acquire`].
    pub fn try_acquire(&self) -> std::result::Result<(), LockError<()>> {
        self.sem.try_acquire()
    }

    /// Takes a unit, waiting at most `timeout`: [`Semaphore::acquire_timeout`].
    ///
    /// # Errors
    ///
    /// As [`Semaphore::acquire_timeout`].
    pub fn acquire_timeout(&self, timeout: Duration) -> std::result::Result<(), LockError<()>> {
        self.sem.acquire_timeout(timeout)
    }

    /// Gives a unit back, waking a waiter.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidState`] when that would raise the count above the initial value
    /// (Python's `ValueError`).
    pub fn release(&self) -> Result<()> {
        if give(self.sem.obj.block(), self.max()) {
            Ok(())
        } else {
            Err(Error::InvalidState(
                "BoundedSemaphore released too many times",
            ))
        }
    }

    /// The current count (a snapshot).
    pub fn value(&self) -> u32 {
        self.sem.value()
    }
}

impl fmt::Debug for BoundedSemaphore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BoundedSemaphore")
            .field("value", &self.value())
            .field("max", &self.max())
            .finish()
    }
}

sync_handle_serde!(
    BoundedSemaphore { sem: Semaphore },
    What::BoundedSemaphore,
    |o: &Obj| o.shape()[0] <= u64::from(u32::MAX)
);

// ----------------------------------------------------------------------------- Event

/// A process-shared flag that processes can wait for (Python's `multiprocessing.Event`).
///
/// # Examples
///
/// ```
/// use shmproc::Event;
/// use std::time::Duration;
///
/// let ev = Event::new()?;
/// assert!(!ev.wait(Some(Duration::from_millis(10))));
/// ev.set();
/// assert!(ev.is_set() && ev.wait(None));
/// ev.clear();
/// assert!(!ev.is_set());
/// # Ok::<(), shmproc::Error>(())
/// ```
#[derive(Clone)]
pub struct Event {
    obj: Arc<Obj>,
}

impl Event {
    /// Creates an event, initially clear.
    ///
    /// # Errors
    ///
    /// An OS error when the region cannot be created.
    pub fn new() -> Result<Event> {
        Ok(Event {
            obj: Obj::create(What::Event, 0, [0; 3])?,
        })
    }

    /// Sets the flag and wakes every waiter.
    pub fn set(&self) {
        let b = self.obj.block();
        // Release pairs with the Acquire in `is_set`.
        b.count.store(1, Ordering::Release);
        b.waiter.wake_all();
    }

    /// Clears the flag.
    pub fn clear(&self) {
        self.obj.block().count.store(0, Ordering::Release);
    }

    /// Whether the flag is set. (Any non-zero word counts as set.)
    pub fn is_set(&self) -> bool {
        self.obj.block().count.load(Ordering::Acquire) != 0
    }

    /// Waits until the flag is set, at most `timeout` (forever when `None`). Returns
    /// whether it is set, like Python's `wait`.
    pub fn wait(&self, timeout: Option<Duration>) -> bool {
        if self.is_set() {
            return true;
        }
        let deadline = Deadline::within(timeout).instant();
        if timeout.is_some_and(|t| t.is_zero()) {
            return false;
        }
        self.obj
            .block()
            .waiter
            .wait_until(deadline, || self.is_set(), || false)
            == Wait::Ready
    }
}

impl fmt::Debug for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Event")
            .field("set", &self.is_set())
            .finish()
    }
}

sync_handle_serde!(Event, What::Event, |_| true);

// --------------------------------------------------------------------------- Barrier

const BROKEN: u64 = 1 << 31;
const RESETTING: u64 = 1 << 30;
const COUNT: u64 = RESETTING - 1;

/// A process-shared barrier for a fixed number of parties (Python's
/// `multiprocessing.Barrier`).
///
/// Each `wait` blocks until `parties` callers have called it, then all return, each
/// with a distinct arrival index in `0..parties`. The barrier can be used again.
///
/// One word packs the generation (high 32 bits), `BROKEN`, `RESETTING`, and the number
/// of callers inside. If a waiter times out, the barrier breaks, as in Python: every
/// caller waiting and every later caller gets [`BarrierError::Broken`] (the one that
/// timed out gets [`BarrierError::Timeout`]) until [`reset`](Self::reset).
///
/// A party that dies while waiting still counts as arrived (as in Python, where a
/// killed process's arrival is not undone): use a timeout where that matters.
///
/// # Examples
///
/// ```
/// use shmproc::Barrier;
/// use std::time::Duration;
///
/// let b = Barrier::new(2)?;
/// let b2 = b.clone();
/// let t = std::thread::spawn(move || b2.wait(Some(Duration::from_secs(10))));
/// let mine = b.wait(Some(Duration::from_secs(10))).unwrap();
/// let theirs = t.join().unwrap().unwrap();
/// assert_eq!(mine + theirs, 1); // indices 0 and 1
/// # Ok::<(), shmproc::Error>(())
/// ```
#[derive(Clone)]
pub struct Barrier {
    obj: Arc<Obj>,
}

impl Barrier {
    /// Creates a barrier for `parties` callers.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidState`] when `parties` is zero or above 2^30 - 1; an OS error when
    /// the region cannot be created.
    pub fn new(parties: usize) -> Result<Barrier> {
        if parties == 0 || parties as u64 > COUNT {
            return Err(Error::InvalidState("barrier parties out of range"));
        }
        Ok(Barrier {
            obj: Obj::create(What::Barrier, 0, [parties as u64, 0, 0])?,
        })
    }

    /// The number of parties.
    pub fn parties(&self) -> usize {
        self.obj.shape()[0] as usize
    }

    /// The number of callers waiting now.
    pub fn n_waiting(&self) -> usize {
        let w = self.word();
        if w & (BROKEN | RESETTING) != 0 {
            0
        } else {
            (w & COUNT) as usize
        }
    }

    /// Whether the barrier is broken.
    pub fn broken(&self) -> bool {
        self.word() & BROKEN != 0
    }

    fn word(&self) -> u64 {
        self.obj.block().barrier.load(Ordering::Acquire)
    }

    /// Waits until `parties` callers are waiting, at most `timeout` (forever when `None`).
    /// Returns this caller's arrival index, `0..parties`.
    ///
    /// # Errors
    ///
    /// [`BarrierError::Timeout`] when the time passed (the barrier is broken then);
    /// [`BarrierError::Broken`] when the barrier is or becomes broken (a timeout or
    /// [`abort`](Self::abort) elsewhere, or a [`reset`](Self::reset) while waiting).
    pub fn wait(&self, timeout: Option<Duration>) -> std::result::Result<usize, BarrierError> {
        let b = self.obj.block();
        let bar = &b.barrier;
        let parties = self.parties() as u64;
        let deadline = Deadline::within(timeout).instant();
        // Arrive.
        let (gen, index) = loop {
            let w = bar.load(Ordering::Acquire);
            if w & BROKEN != 0 {
                return Err(BarrierError::Broken);
            }
            if w & RESETTING != 0 {
                // Python blocks newcomers while a reset drains; so do we.
                let r =
                    b.waiter
                        .wait_until(deadline, || bar.load(Ordering::Acquire) != w, || false);
                if r == Wait::TimedOut {
                    return Err(BarrierError::Timeout);
                }
                continue;
            }
            let count = w & COUNT;
            let gen = w >> 32;
            if count + 1 >= parties {
                // The last one: open the barrier for this generation.
                let next = (gen.wrapping_add(1) & 0xFFFF_FFFF) << 32;
                // AcqRel: we see every arrival's writes and publish ours to all of them.
                if bar
                    .compare_exchange(w, next, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
                {
                    b.waiter.wake_all();
                    return Ok(count as usize);
                }
                continue;
            }
            if bar
                .compare_exchange(w, w + 1, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                break (gen, count as usize);
            }
        };
        // Wait for our generation to pass, or the barrier to break or reset.
        let done = |x: u64| x >> 32 != gen || x & (BROKEN | RESETTING) != 0;
        let r = b
            .waiter
            .wait_until(deadline, || done(bar.load(Ordering::Acquire)), || false);
        let mut timed_out = false;
        loop {
            let x = bar.load(Ordering::Acquire);
            if x >> 32 != gen {
                return Ok(index);
            }
            if x & (BROKEN | RESETTING) == 0 {
                if r != Wait::TimedOut {
                    // Cannot happen (the wait ended on `done`); wait again rather than trust it.
                    return self.rewait(gen, index, deadline);
                }
                // We timed out: break the barrier for everyone, then leave.
                if bar
                    .compare_exchange(x, x | BROKEN, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
                {
                    timed_out = true;
                }
                continue;
            }
            // Leave a broken or resetting generation; the last one out of a reset
            // starts a fresh generation.
            let inside = x & COUNT;
            let next = if x & RESETTING != 0 && x & BROKEN == 0 && inside <= 1 {
                ((x >> 32).wrapping_add(1) & 0xFFFF_FFFF) << 32
            } else {
                x - u64::from(inside > 0)
            };
            if bar
                .compare_exchange(x, next, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                b.waiter.wake_all();
                return Err(if timed_out {
                    BarrierError::Timeout
                } else {
                    BarrierError::Broken
                });
            }
        }
    }

    #[cold]
    fn rewait(
        &self,
        gen: u64,
        index: usize,
        deadline: Option<Instant>,
    ) -> std::result::Result<usize, BarrierError> {
        let bar = &self.obj.block().barrier;
        let r = self.obj.block().waiter.wait_until(
            deadline,
            || {
                let x = bar.load(Ordering::Acquire);
                x >> 32 != gen || x & (BROKEN | RESETTING) != 0
            },
            || false,
        );
        let x = bar.load(Ordering::Acquire);
        if x >> 32 != gen {
            Ok(index)
        } else if r == Wait::TimedOut {
            self.abort();
            Err(BarrierError::Timeout)
        } else {
            Err(BarrierError::Broken)
        }
    }

    /// Breaks the barrier: every waiter and every later caller gets
    /// [`BarrierError::Broken`] until [`reset`](Self::reset).
    pub fn abort(&self) {
        let b = self.obj.block();
        b.barrier.fetch_or(BROKEN, Ordering::AcqRel);
        b.waiter.wake_all();
    }

    /// Returns the barrier to its initial state. Callers waiting now get
    /// [`BarrierError::Broken`]; new callers wait until they have left.
    pub fn reset(&self) {
        let b = self.obj.block();
        let mut x = b.barrier.load(Ordering::Acquire);
        loop {
            let next = if x & COUNT == 0 {
                ((x >> 32).wrapping_add(1) & 0xFFFF_FFFF) << 32
            } else {
                (x & !BROKEN) | RESETTING
            };
            match b
                .barrier
                .compare_exchange(x, next, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => break,
                Err(now) => x = now,
            }
        }
        b.waiter.wake_all();
    }
}

impl fmt::Debug for Barrier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Barrier")
            .field("parties", &self.parties())
            .field("n_waiting", &self.n_waiting())
            .field("broken", &self.broken())
            .finish()
    }
}

sync_handle_serde!(Barrier, What::Barrier, |o: &Obj| (1..=COUNT)
    .contains(&o.shape()[0]));

#[cfg(all(test, loom))]
mod loom_tests;
