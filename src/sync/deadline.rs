//! [`Deadline`]: how long a blocking operation may wait, the one spelling of "try",
//! "with a timeout" and "for ever" that every blocking core takes (crossbeam's
//! `deadline: Option<Instant>`, plus the `try_` case). The `try_` and `_timeout`
//! methods of the locks, the semaphores, the pipes and the queues are thin wrappers
//! that build one.

use std::time::{Duration, Instant};

use crate::sys::deadline_after;

/// How long a blocking operation may wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Deadline {
    /// Do not wait: the `try_` methods.
    Now,
    /// Wait until this instant; `None` waits for ever.
    Until(Option<Instant>),
}

impl Deadline {
    /// Waits for ever: the blocking methods.
    pub(crate) const FOREVER: Deadline = Deadline::Until(None);

    /// Waits at most `timeout` from now: the `_timeout` methods. A timeout too large to
    /// add to the clock (`Duration::MAX`) waits for ever.
    #[inline]
    pub(crate) fn after(timeout: Duration) -> Deadline {
        Deadline::Until(deadline_after(timeout))
    }

    /// Waits at most `timeout` from now, or for ever when `None` (Python's
    /// `timeout=None`).
    #[inline]
    pub(crate) fn within(timeout: Option<Duration>) -> Deadline {
        Deadline::Until(timeout.and_then(deadline_after))
    }

    /// Whether this is [`Deadline::Now`]: do not wait.
    #[inline]
    pub(crate) fn is_now(self) -> bool {
        matches!(self, Deadline::Now)
    }

    /// The instant to give up at, for the waits below that take one: now for
    /// [`Deadline::Now`], `None` for ever.
    #[inline]
    pub(crate) fn instant(self) -> Option<Instant> {
        match self {
            Deadline::Now => Some(Instant::now()),
            Deadline::Until(d) => d,
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests;
