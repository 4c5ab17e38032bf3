//! The errors of the synchronization primitives: [`LockError`] for every lock-style
//! acquire (`Lock`, `RLock`, `Value`, `Array`, and the semaphores), [`BarrierError`] for
//! `Barrier::wait`.

use std::fmt;

/// Why a lock operation did not simply succeed.
///
/// `OwnerDied` still carries the guard: the caller holds the lock, and the lock works
/// normally afterwards (the guarantee of a robust mutex). The semaphores report in the
/// same style with `LockError<()>`; a semaphore has no owner, so they never return
/// `OwnerDied`.
#[non_exhaustive]
pub enum LockError<G> {
    /// The previous holder died holding the lock; you hold it now.
    OwnerDied(G),
    /// `try_lock` only: somebody else holds it.
    WouldBlock,
    /// `lock_timeout` only: the deadline passed.
    Timeout,
}

impl<G> LockError<G> {
    /// The guard, if this is `OwnerDied`.
    pub fn into_guard(self) -> Option<G> {
        match self {
            LockError::OwnerDied(g) => Some(g),
            _ => None,
        }
    }
}

impl<G> fmt::Debug for LockError<G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LockError::OwnerDied(_) => f.write_str("OwnerDied(..)"),
            LockError::WouldBlock => f.write_str("WouldBlock"),
            LockError::Timeout => f.write_str("Timeout"),
        }
    }
}

impl<G> fmt::Display for LockError<G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LockError::OwnerDied(_) => f.write_str("the previous holder died holding the lock"),
            LockError::WouldBlock => f.write_str("the lock is held"),
            LockError::Timeout => f.write_str("timed out waiting for the lock"),
        }
    }
}

impl<G> std::error::Error for LockError<G> {}

/// Why `Barrier::wait` failed.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BarrierError {
    /// The barrier is broken (a timeout or `abort` elsewhere, or a `reset` while
    /// waiting): Python's `BrokenBarrierError`.
    Broken,
    /// This caller's timeout passed; the barrier is broken now.
    Timeout,
}

impl fmt::Display for BarrierError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BarrierError::Broken => "the barrier is broken",
            BarrierError::Timeout => "timed out waiting at the barrier",
        })
    }
}

impl std::error::Error for BarrierError {}
