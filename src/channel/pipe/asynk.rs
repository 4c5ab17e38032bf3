//! Async sending and receiving (the `tokio` feature): [`Receiver::recv_async`],
//! [`Receiver::stream`], [`Sender::send_async`], and the same on [`Connection`].
//!
//! The fast path is the ring's: a message that is there (or room that is free) is taken
//! by the non-blocking core (`try_recv`, `try_send`) with no system call. Only a task
//! that finds nothing registers as an async waiter on the ring's waiter, re-checks, and
//! awaits the ring's wake-up eventfd and the other side's presence descriptor through
//! tokio's reactor (`sync::notify_fd`). A writer signals the eventfd only when such a
//! task is registered; a reader does the same for a writer waiting for room. No thread
//! is started per channel.
//!
//! Each end holds two eventfds per ring it touches (one for its readable waiter, one
//! for its writable waiter), created with the channel and handed to children with the
//! end's other descriptors.

use std::io;
use std::sync::Arc;
use std::task::Poll;
use std::time::Instant;

use serde::{de::DeserializeOwned, Serialize};

use super::end::End;
use super::recv::RecvFail;
use super::{Connection, Receiver, Sender};
use crate::codec;
use crate::error::{Error, RecvError, Result, SendError, TrySendError};
use crate::ring::spsc::Spsc;
use crate::sync::notify_fd::{self, park_until, AsyncPark, NotifyFd, Registration, Step};
use crate::sync::Deadline;

/// How many times a task looks at an empty ring (a load each) before it registers and
/// parks: a message that is a few hundred nanoseconds away costs no system call.
const SPINS: u32 = 128;

/// One end's async wake-up descriptors: for the ring it writes and the ring it reads,
/// `[readable, writable]`, and this process's registration of them.
#[derive(Debug, Default)]
pub(super) struct EndNotify {
    /// Every ring's pair, in ring order (what is handed to a child).
    all: Vec<Arc<NotifyFd>>,
    tx: Option<[Arc<NotifyFd>; 2]>,
    rx: Option<[Arc<NotifyFd>; 2]>,
    _reg: Registration,
}

impl EndNotify {
    /// The eventfds of a new channel of `rings` rings: two per ring.
    pub(super) fn create_fds(rings: u64) -> io::Result<Vec<Arc<NotifyFd>>> {
        (0..2 * rings).map(|_| NotifyFd::new()).collect()
    }

    /// Passes every ring's eventfds to a spawned child.
    pub(super) fn pass_fds(&self) -> Result<Vec<i32>> {
        notify_fd::pass_all(&self.all)
    }
}

impl End {
    /// This end with the async wake-up descriptors `fds` (two per ring of the region),
    /// registered for this process.
    pub(super) fn with_notify(mut self, fds: &[Arc<NotifyFd>]) -> Result<End> {
        let rings = if self.tx.is_some() && self.rx.is_some() {
            2
        } else {
            1
        };
        if fds.len() != 2 * rings {
            return Err(Error::Handle("wrong number of wake-up descriptors"));
        }
        let pair = |ring: usize| [Arc::clone(&fds[2 * ring]), Arc::clone(&fds[2 * ring + 1])];
        let side = usize::from(self.side());
        let (tx_ring, rx_ring) = if rings == 1 { (0, 0) } else { (side, 1 - side) };
        let tx = self.tx.as_ref().map(|_| pair(tx_ring));
        let rx = self.rx.as_ref().map(|_| pair(rx_ring));
        let mut waiters = Vec::new();
        for (ring, notify) in [(&self.tx, &tx), (&self.rx, &rx)] {
            if let (Some(ring), Some([readable, writable])) = (ring, notify) {
                waiters.push((ring.readable_waiter(), readable));
                waiters.push((ring.writable_waiter(), writable));
            }
        }
        let reg = notify_fd::register(&waiters);
        self.notify = EndNotify {
            all: fds.to_vec(),
            tx,
            rx,
            _reg: reg,
        };
        Ok(self)
    }

    fn rx_ring(&self) -> &Spsc {
        self.rx.as_ref().expect("receiving end has a ring to read")
    }

    /// A wait for a message on the ring this end reads.
    fn park_readable(&self) -> AsyncPark<'_> {
        let [readable, _] = self.notify.rx.as_ref().expect("receiving end");
        AsyncPark::new(
            self.rx_ring().readable_waiter(),
            readable,
            self.peer_watch(),
        )
    }

    /// A wait for room in the ring this end writes.
    fn park_writable(&self) -> AsyncPark<'_> {
        let tx = self.tx.as_ref().expect("sending end has a ring to write");
        let [_, writable] = self.notify.tx.as_ref().expect("sending end");
        AsyncPark::new(tx.writable_waiter(), writable, self.peer_watch())
    }
}

impl<T: Serialize + DeserializeOwned> Receiver<T> {
    /// A receive that does not wait: `None` when no whole message is there yet.
    fn recv_ready(&self) -> Option<std::result::Result<T, RecvError>> {
        match self.recv_core::<RecvFail>(Deadline::Now) {
            Ok(v) => Some(Ok(v)),
            Err(RecvFail::Empty) => None,
            Err(f) => Some(Err(f.into())),
        }
    }

    /// Receives a message, awaiting one without blocking the thread: the async
    /// [`recv`](Self::recv). A message that is there is taken as `recv` takes it (no
    /// system call); otherwise the task registers on the ring and sleeps until the
    /// writer signals it (only then does the writer make a system call) or every
    /// writer end is gone (dropped, or its process killed: `Disconnected`). Blocking and
    /// async receives can be mixed on one receiver.
    ///
    /// Needs a tokio runtime with I/O enabled (current-thread or multi-thread); the
    /// future is `Send`, so it can be `tokio::spawn`ed.
    ///
    /// # Cancel safety
    /// Cancel-safe: a future dropped before it completes has taken nothing; the next
    /// receive gets the message it would have got (a message streamed in pieces and
    /// half read stays half read in the receiver, and the next receive goes on with it).
    ///
    /// ```
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// let (tx, mut rx) = shmproc::pipe::<u64>()?;
    /// tx.send(&7)?;
    /// assert_eq!(rx.recv_async().await?, 7);
    /// drop(tx);
    /// assert_eq!(rx.recv_async().await, Err(shmproc::RecvError::Disconnected));
    /// # Ok(()) }
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(demo())?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// As [`recv`](Self::recv).
    pub async fn recv_async(&mut self) -> std::result::Result<T, RecvError> {
        if let Some(r) = self.recv_ready() {
            return r;
        }
        let end_arc = Arc::clone(&self.end);
        let end = &*end_arc;
        let ring = end.rx_ring();
        let mut park = end.park_readable();
        // Moves the `&mut` in (a closure borrowing `*self` would hold a `&Receiver`,
        // which is not `Send`).
        let rx = self;
        park_until(&mut park, move |armed| {
            if !armed {
                for _ in 0..SPINS {
                    if ring.has_data() {
                        break;
                    }
                    std::hint::spin_loop();
                }
            }
            if let Some(r) = rx.recv_ready() {
                return Step::Done(r);
            }
            if armed && end.peer_gone() {
                // Everything the writers published before they went is visible now.
                return Step::Done(rx.recv_ready().unwrap_or(Err(RecvError::Disconnected)));
            }
            Step::Park
        })
        .await
    }

    /// The received messages as a [`Stream`](futures_core::Stream), each as
    /// [`recv_async`](Self::recv_async) gives it; it ends (yields `None`) where
    /// `recv_async` would give `Disconnected`, as [`iter`](Self::iter) does, and yields
    /// the other errors as items. `Send`, like the receiver. Cancel-safe: dropping the
    /// stream, or a `next()` on it, takes nothing.
    ///
    /// ```
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// use futures_core::Stream;
    /// let (tx, mut rx) = shmproc::pipe::<u64>()?;
    /// tx.send_all(&[1, 2])?;
    /// drop(tx);
    /// let mut s = std::pin::pin!(rx.stream());
    /// let mut got = Vec::new();
    /// while let Some(m) = std::future::poll_fn(|cx| s.as_mut().poll_next(cx)).await {
    ///     got.push(m?);
    /// }
    /// assert_eq!(got, [1, 2]);
    /// # Ok(()) }
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(demo())?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn stream(
        &mut self,
    ) -> impl futures_core::Stream<Item = std::result::Result<T, RecvError>> + Send + '_ {
        RecvStream::Idle(self)
    }
}

/// A receive in progress, owning the receiver's borrow until it hands it back.
type RecvFuture<'a, T> = std::pin::Pin<
    Box<
        dyn std::future::Future<Output = (&'a mut Receiver<T>, std::result::Result<T, RecvError>)>
            + Send
            + 'a,
    >,
>;

/// [`Receiver::stream`]'s stream: a message that is there is taken inline; only a wait
/// allocates (the boxed [`Receiver::recv_async`] future, which holds the receiver).
enum RecvStream<'a, T> {
    Idle(&'a mut Receiver<T>),
    Waiting(RecvFuture<'a, T>),
    Done,
}

impl<'a, T: Serialize + DeserializeOwned + 'a> futures_core::Stream for RecvStream<'a, T> {
    type Item = std::result::Result<T, RecvError>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            match std::mem::replace(this, RecvStream::Done) {
                RecvStream::Done => return Poll::Ready(None),
                RecvStream::Idle(rx) => match rx.recv_ready() {
                    Some(r) => return Poll::Ready(this.item(rx, r)),
                    None => {
                        *this = RecvStream::Waiting(Box::pin(async move {
                            let r = rx.recv_async().await;
                            (rx, r)
                        }));
                    }
                },
                RecvStream::Waiting(mut fut) => match fut.as_mut().poll(cx) {
                    Poll::Ready((rx, r)) => return Poll::Ready(this.item(rx, r)),
                    Poll::Pending => {
                        *this = RecvStream::Waiting(fut);
                        return Poll::Pending;
                    }
                },
            }
        }
    }
}

impl<'a, T> RecvStream<'a, T> {
    /// Yields `r`; `Disconnected` ends the stream instead.
    fn item(
        &mut self,
        rx: &'a mut Receiver<T>,
        r: std::result::Result<T, RecvError>,
    ) -> Option<std::result::Result<T, RecvError>> {
        if matches!(r, Err(RecvError::Disconnected)) {
            *self = RecvStream::Done;
            return None;
        }
        *self = RecvStream::Idle(rx);
        Some(r)
    }
}

impl<T: Serialize + DeserializeOwned> Sender<T> {
    /// Sends a message, awaiting room without blocking the thread: the async
    /// [`send`](Self::send). A message that fits is written as `send` writes it (no
    /// system call); otherwise the task registers on the ring and sleeps until the
    /// reader hands space back (only then does the reader make a system call) or every
    /// reader end is gone (`Disconnected`). The message is visible to the receiver when
    /// the future completes.
    ///
    /// The future holds `msg`, so it is `Send` where `T: Sync` (and then it can be
    /// `tokio::spawn`ed on the multi-thread runtime). Needs a tokio runtime with I/O
    /// enabled.
    ///
    /// A message too large to ever fit the ring at once (over about three quarters of
    /// its capacity, which `send` streams in pieces) is encoded and streamed by a
    /// blocking send on tokio's blocking pool (`spawn_blocking`).
    ///
    /// # Cancel safety
    /// A future dropped before it completes has sent all of the message or nothing:
    /// nothing for a message that fits the ring (it is written in one step when there is
    /// room), all of it for one streamed from the blocking pool (the stream goes on).
    ///
    /// ```
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// let (tx, rx) = shmproc::Pipe::builder().capacity(256).build::<u64>()?;
    /// while tx.try_send(&1).is_ok() {} // full
    /// let reader = std::thread::spawn(move || rx.iter().count());
    /// tx.send_async(&2).await?; // waits for the reader to make room
    /// drop(tx);
    /// assert!(reader.join().unwrap() > 1);
    /// # Ok(()) }
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(demo())?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// As [`send`](Self::send).
    pub async fn send_async(&self, msg: &T) -> std::result::Result<(), SendError> {
        let end = &self.end;
        let tx = end.tx.as_ref().expect("sending end has a ring to write");
        let mut park = end.park_writable();
        // `None`: the message never fits the ring at once, and must be streamed.
        let sent = park_until(&mut park, |armed| match self.try_send(msg) {
            Ok(()) => Step::Done(Some(Ok(()))),
            Err(TrySendError::Full) if armed && end.peer_gone() => {
                Step::Done(Some(Err(SendError::Disconnected)))
            }
            // The writer role is busy (another thread or process is inside a send, for a
            // moment; its end wakes nobody): look again after a turn. Free (or taken
            // over from a dead holder): it was room that lacked, and the reader's next
            // take wakes this task.
            Err(TrySendError::Full) => match tx.acquire_writer(Some(Instant::now()), || false) {
                Ok(_) => Step::Park,
                Err(_) => Step::Yield,
            },
            Err(TrySendError::Disconnected) => Step::Done(Some(Err(SendError::Disconnected))),
            Err(TrySendError::TooLarge { len, max }) => {
                Step::Done(Some(Err(SendError::TooLarge { len, max })))
            }
            Err(TrySendError::Codec(e)) => Step::Done(Some(Err(SendError::Codec(e)))),
            Err(TrySendError::NeedsStreaming { .. }) => Step::Done(None),
        })
        .await;
        match sent {
            Some(r) => r,
            None => self.send_streamed(msg).await,
        }
    }

    /// Streams a message too large for the ring from tokio's blocking pool.
    async fn send_streamed(&self, msg: &T) -> std::result::Result<(), SendError> {
        let bytes = codec::encode(msg).map_err(|e| SendError::Codec(e.to_string()))?;
        let tx = Sender::<()>::from_end(Arc::clone(&self.end));
        match tokio::task::spawn_blocking(move || tx.send_bytes(&bytes)).await {
            Ok(r) => r,
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        }
    }
}

impl<T: Serialize + DeserializeOwned> Connection<T> {
    /// Receives a message without blocking the thread: [`Receiver::recv_async`]. Takes
    /// `&mut self` (a `Connection` is not `Sync`), so the future is `Send`.
    ///
    /// # Cancel safety
    /// As [`Receiver::recv_async`]: a dropped future has taken nothing.
    ///
    /// # Errors
    /// As [`Receiver::recv`].
    pub async fn recv_async(&mut self) -> std::result::Result<T, RecvError> {
        self.rx.recv_async().await
    }

    /// Sends a message without blocking the thread: [`Sender::send_async`]. Takes
    /// `&mut self` (a `Connection` is not `Sync`), so the future is `Send` where
    /// `T: Sync`.
    ///
    /// # Cancel safety
    /// As [`Sender::send_async`]: a dropped future has sent all or nothing.
    ///
    /// # Errors
    /// As [`Sender::send`].
    pub async fn send_async(&mut self, msg: &T) -> std::result::Result<(), SendError> {
        self.tx.send_async(msg).await
    }

    /// The received messages as a stream: [`Receiver::stream`].
    pub fn stream(
        &mut self,
    ) -> impl futures_core::Stream<Item = std::result::Result<T, RecvError>> + Send + '_ {
        self.rx.stream()
    }
}

impl<T> Connection<T> {
    /// Splits the connection into its sender and its receiver, to send and receive
    /// from two tasks (or threads) at once. They share the connection's end: the other
    /// side sees it closed once both are dropped.
    ///
    /// ```
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// let (a, b) = shmproc::duplex::<u64>()?;
    /// let (a_tx, mut a_rx) = a.into_split();
    /// let echo = tokio::spawn(async move {
    ///     let (b_tx, mut b_rx) = b.into_split();
    ///     while let Ok(x) = b_rx.recv_async().await {
    ///         b_tx.send_async(&(x + 1)).await.unwrap();
    ///     }
    /// });
    /// a_tx.send_async(&1).await?;
    /// assert_eq!(a_rx.recv_async().await?, 2);
    /// drop(a_tx);
    /// drop(a_rx);
    /// echo.await?;
    /// # Ok(()) }
    /// # tokio::runtime::Builder::new_multi_thread().enable_all().build()?.block_on(demo())?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn into_split(self) -> (Sender<T>, Receiver<T>) {
        (self.tx, self.rx)
    }
}
