//! Process-shared synchronization living in shared regions: the futex waiter that
//! every blocking operation parks on, and (see the submodules) locks, semaphores,
//! events, conditions, barriers and shared values.

pub(crate) mod atomic;
pub(crate) mod waiter;
