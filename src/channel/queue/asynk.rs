//! Async puts and gets (the `tokio` feature): [`Queue::put_async`],
//! [`Queue::get_async`] and the same on [`JoinableQueue`].
//!
//! As for pipes (`channel::pipe`'s `asynk`): an item that is there (a free slot) is
//! taken by the non-blocking core with no system call; a task that finds none
//! registers on the ring's waiter, re-checks, and awaits the queue's wake-up eventfd
//! through tokio's reactor (`sync::notify_fd`), which a put (get, close) signals only
//! while an async waiter is registered. A queue has no "other side" that can vanish:
//! its waits end with an item, room, or `close()`.

use std::io;
use std::sync::Arc;

use serde::{de::DeserializeOwned, Serialize};

use super::shared::{GetErr, PutErr, Shared};
use super::{JoinableQueue, Queue};
use crate::error::{Error, Result};
use crate::sync::notify_fd::{self, park_until, AsyncPark, NotifyFd, Registration, Step};
use crate::sync::Deadline;

/// A queue's async wake-up descriptors, `[not_empty, not_full]`, and this process's
/// registration of them.
#[derive(Debug, Default)]
pub(super) struct QueueNotify {
    fds: Vec<Arc<NotifyFd>>,
    _reg: Registration,
}

impl QueueNotify {
    /// The eventfds of a new queue.
    pub(super) fn create_fds() -> io::Result<Vec<Arc<NotifyFd>>> {
        (0..2).map(|_| NotifyFd::new()).collect()
    }

    /// Passes the eventfds to a spawned child.
    pub(super) fn pass_fds(&self) -> Result<Vec<i32>> {
        notify_fd::pass_all(&self.fds)
    }
}

impl Shared {
    /// This queue with the async wake-up descriptors `fds` (`[not_empty, not_full]`),
    /// registered for this process.
    pub(super) fn with_notify(mut self, fds: Vec<Arc<NotifyFd>>) -> Shared {
        let reg = notify_fd::register(&[
            (self.ring.not_empty_waiter(), &fds[0]),
            (self.ring.not_full_waiter(), &fds[1]),
        ]);
        self.notify = QueueNotify { fds, _reg: reg };
        self
    }

    /// Puts one item, awaiting a free slot.
    async fn put_async<T: Serialize + ?Sized>(&self, item: &T) -> Result<()> {
        let mut park = AsyncPark::new(self.ring.not_full_waiter(), &self.notify.fds[1], None);
        park_until(&mut park, |_| match self.put_value(item, Deadline::Now) {
            Ok(()) => Step::Done(Ok(())),
            // Room, but behind a slot another process claimed and is finishing (or
            // died holding: the next look reclaims it): look again soon.
            Err(PutErr::Full) if self.ring.len() < self.ring.capacity() => Step::Yield,
            Err(PutErr::Full) => Step::Park,
            Err(e) => Step::Done(Err(Error::from(e))),
        })
        .await
    }

    /// Takes one item, awaiting one.
    async fn get_async<T: DeserializeOwned>(&self) -> Result<T> {
        let mut park = AsyncPark::new(self.ring.not_empty_waiter(), &self.notify.fds[0], None);
        park_until(&mut park, |_| match self.get_value(Deadline::Now) {
            Ok(v) => Step::Done(Ok(v)),
            // An item, but in a slot its producer is still filling (or died holding:
            // the next look reclaims it): look again soon.
            Err(GetErr::Empty) if self.ring.len() > 0 => Step::Yield,
            Err(GetErr::Empty) => Step::Park,
            Err(e) => Step::Done(Err(Error::from(e))),
        })
        .await
    }
}

impl<T: Serialize + DeserializeOwned> Queue<T> {
    /// Puts an item, awaiting room without blocking the thread: the async
    /// [`put`](Self::put). Needs a tokio runtime with I/O enabled; the future is `Send`
    /// where `T: Sync` (it holds `item`).
    ///
    /// # Cancel safety
    /// A future dropped before it completes has put nothing (an item is put in one
    /// step, when there is room).
    ///
    /// ```
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// let q = shmproc::Queue::<String>::with_capacity(4)?;
    /// q.put_async(&"hi".to_string()).await?;
    /// assert_eq!(q.get_async().await?, "hi");
    /// # Ok(()) }
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(demo())?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// As [`put`](Self::put).
    pub async fn put_async(&self, item: &T) -> Result<()> {
        self.shared.put_async(item).await
    }

    /// Takes an item, awaiting one without blocking the thread: the async
    /// [`get`](Self::get). Ends with `Closed` once the queue is closed and drained.
    /// Needs a tokio runtime with I/O enabled; the future is `Send`.
    ///
    /// # Cancel safety
    /// Cancel-safe: a future dropped before it completes has taken nothing.
    ///
    /// # Errors
    /// As [`get`](Self::get).
    pub async fn get_async(&self) -> Result<T> {
        self.shared.get_async().await
    }
}

impl<T: Serialize + DeserializeOwned> JoinableQueue<T> {
    /// Puts an item, awaiting room: [`Queue::put_async`].
    ///
    /// # Cancel safety
    /// As [`Queue::put_async`]: a dropped future has put nothing.
    ///
    /// # Errors
    /// As [`Queue::put`].
    pub async fn put_async(&self, item: &T) -> Result<()> {
        self.queue.put_async(item).await
    }

    /// Takes an item, awaiting one: [`Queue::get_async`].
    ///
    /// # Cancel safety
    /// As [`Queue::get_async`]: a dropped future has taken nothing.
    ///
    /// # Errors
    /// As [`Queue::get`].
    pub async fn get_async(&self) -> Result<T> {
        self.queue.get_async().await
    }
}
