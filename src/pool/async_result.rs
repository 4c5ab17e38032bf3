//! [`AsyncResult`]: the pending result of `Pool::apply_async`.

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;

use crate::error::{Error, Result};

use super::call::{dup, Call, Outcome};
use super::worker;

/// The pending result of [`Pool::apply_async`](super::Pool::apply_async): Python's
/// `AsyncResult`.
///
/// `get` can be called any number of times (each call decodes a fresh `R`). If the pool
/// is terminated first, the result is [`Error::Closed`]; it never waits forever for a
/// worker that died.
///
/// ```
/// fn slow_square(x: u64) -> u64 {
///     x * x
/// }
///
/// let pool = shmproc::Pool::new(2)?;
/// let r = pool.apply_async(slow_square, 9)?;
/// assert_eq!(r.get_timeout(std::time::Duration::from_secs(30))?, 81);
/// assert!(r.ready());
/// # Ok::<(), shmproc::Error>(())
/// ```
pub struct AsyncResult<R> {
    call: Arc<Call>,
    _r: PhantomData<fn() -> R>,
}

impl<R> AsyncResult<R> {
    /// The result of `call`'s only chunk.
    pub(super) fn new(call: Arc<Call>) -> Self {
        AsyncResult {
            call,
            _r: PhantomData,
        }
    }
}

impl<R> fmt::Debug for AsyncResult<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsyncResult")
            .field("ready", &self.call.is_done(0))
            .finish()
    }
}

impl<R: DeserializeOwned> AsyncResult<R> {
    fn read(outcome: &Outcome) -> Result<R> {
        match outcome {
            Ok(reply) => worker::decode_reply::<R>(reply, 1)?
                .pop()
                .ok_or(Error::Codec("empty reply".into())),
            Err(e) => Err(dup(e)),
        }
    }

    /// Waits for the result.
    ///
    /// # Errors
    ///
    /// [`Error::TaskPanicked`], [`Error::WorkerDied`], [`Error::Closed`] (terminated)
    /// or [`Error::Codec`], as for [`Pool::map`](super::Pool::map).
    pub fn get(&self) -> Result<R> {
        self.call
            .inspect(0, None, Self::read)
            .unwrap_or(Err(Error::Timeout))
    }

    /// Waits at most `timeout` for the result.
    ///
    /// # Errors
    ///
    /// [`Error::Timeout`] when it is not ready in time, or as [`get`](Self::get).
    pub fn get_timeout(&self, timeout: Duration) -> Result<R> {
        let deadline = crate::sys::deadline_after(timeout);
        self.call
            .inspect(0, deadline, Self::read)
            .unwrap_or(Err(Error::Timeout))
    }
}

impl<R> AsyncResult<R> {
    /// Whether the result (or its error) has arrived.
    pub fn ready(&self) -> bool {
        self.call.is_done(0)
    }

    /// Waits at most `timeout` (forever for `None`) until the result is ready; returns
    /// [`ready`](Self::ready).
    pub fn wait(&self, timeout: Option<Duration>) -> bool {
        let deadline = timeout.and_then(crate::sys::deadline_after);
        self.call.inspect(0, deadline, |_| ()).is_some()
    }
}
