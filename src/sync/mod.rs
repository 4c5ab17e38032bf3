//! Process-shared synchronization living in shared regions: the futex waiter that
//! every blocking operation parks on, and Python's `Lock`, `RLock`, `Semaphore`,
//! `BoundedSemaphore`, `Event`, `Condition`, `Barrier`, `Value` and `Array`.
//!
//! Every object is a handle (`Clone + Send + Sync`) to one small memfd region; clones
//! and copies handed to child processes (as `Process` args, under fork or spawn) share
//! the object. Locks are robust: a holder that dies hands the lock to the next locker
//! with [`LockError::OwnerDied`](crate::LockError::OwnerDied).

pub(crate) mod atomic;
mod cond;
mod deadline;
pub(crate) mod handoff;
mod lock;
#[cfg(feature = "tokio")]
pub(crate) mod notify_fd;
pub(crate) mod owner;
pub(crate) mod poke;
pub(crate) mod presence;
pub(crate) mod raw;
mod sem;
pub(crate) mod shared;
mod value;
pub(crate) mod waiter;

pub(crate) use deadline::Deadline;
pub use lock::{Condition, Lock, LockGuard, RLock, RLockGuard};
pub use sem::{Barrier, BoundedSemaphore, Event, Semaphore};
pub use value::{Array, ArrayGuard, ArrayInit, Value, ValueGuard};
