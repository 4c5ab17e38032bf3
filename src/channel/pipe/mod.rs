//! `pipe()` (simplex) and `duplex()`: Python's `Pipe`, on SPSC rings in one region.
//!
//! One job per file: [`end`] is one process's share of one side (the rings, the
//! presence, the hand-off to a child); [`send`] and [`recv`] are the `Sender` and the
//! `Receiver` with the one blocking core of each; [`connection`] pairs them into a
//! duplex end; [`gate`] decides when a writer asks whether its reader is gone.
//!
//! # Disconnection that survives `kill -9`
//!
//! Each side of a channel has a [`Presence`](crate::sync::presence): a tiny OS pipe
//! whose write ends every process holding an end of that side keeps, and whose read end
//! the other side watches. When the last holder closes it (the end dropped, or its
//! process killed) the kernel reports POLLHUP on the watch. The watch is consulted only
//! before parking and on the writer's rare checks, never on the hot path.
//!
//! A writer looks at its reader rarely ([`gate`]): a reader that dies without dropping
//! its end (SIGKILL) is noticed within [`DEAD_READER_SENDS`] (1024) sends, or as soon as
//! the ring is full. Once an end knows the other side is gone, it stays so.
//!
//! # Fork hygiene
//!
//! Ends register with the hand-off registry: a child forked by [`crate::Process`]
//! releases the tokens of every end it was not handed, so an end it merely inherited
//! does not keep the channel open (the seed closes `p_input` by hand in the child;
//! here it happens by itself).

#[cfg(feature = "tokio")]
mod asynk;
mod connection;
mod end;
mod gate;
mod inplace;
mod recv;
mod send;
mod slice;

use std::sync::Arc;

use serde::{de::DeserializeOwned, Serialize};

pub use connection::Connection;
pub(super) use end::End;
pub use gate::DEAD_READER_SENDS;
pub use recv::Receiver;
pub use send::Sender;

use crate::error::{Error, Result, SizeLimit};
use crate::region::Kind;
use crate::ring::spsc::Spsc;
use crate::sync::handoff;

/// Default ring capacity in bytes (per direction).
pub const DEFAULT_CAPACITY: usize = 1 << 20;
/// Default largest message: 4 GiB.
pub const DEFAULT_MAX_MESSAGE: u64 = 4 << 30;
const MIN_CAPACITY: usize = 256;
/// Largest ring capacity in bytes (per direction), as `Spsc::valid_capacity` allows.
const MAX_CAPACITY: u64 = 1 << 40;

/// Namespace for [`Pipe::builder`].
#[derive(Debug)]
pub struct Pipe(());

impl Pipe {
    /// A builder for a pipe with a chosen capacity and message limit.
    ///
    /// ```
    /// let (tx, rx) = shmproc::Pipe::builder().capacity(4096).build::<u32>()?;
    /// tx.send(&7)?;
    /// assert_eq!(rx.recv()?, 7);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn builder() -> PipeBuilder {
        PipeBuilder {
            capacity: DEFAULT_CAPACITY,
            max_message: DEFAULT_MAX_MESSAGE,
        }
    }
}

/// Configures a pipe; by value, like `std::thread::Builder`.
#[derive(Debug, Clone, Copy)]
pub struct PipeBuilder {
    capacity: usize,
    max_message: u64,
}

impl PipeBuilder {
    /// Ring size in bytes (rounded up to a power of two, at least 256, at most 2^40).
    /// Messages larger than a quarter of it are streamed through it in pieces. Default
    /// 1 MiB. `build` fails with [`CapacityTooLarge`](Error::CapacityTooLarge) over 2^40,
    /// or when the rings need more than half of the memory left (see
    /// [`SizeLimit`](crate::SizeLimit)), before any of it is reserved.
    pub fn capacity(mut self, bytes: usize) -> Self {
        self.capacity = bytes;
        self
    }

    /// Largest message, in encoded bytes (default 4 GiB). A larger message is an error
    /// at send; a record header claiming more is a protocol error at recv.
    pub fn max_message(mut self, bytes: usize) -> Self {
        self.max_message = bytes as u64;
        self
    }

    fn ring_capacity(&self) -> Result<u64> {
        // Rounding up must not overflow (`1 << 63` and up): over the maximum either way.
        let cap = self
            .capacity
            .max(MIN_CAPACITY)
            .checked_next_power_of_two()
            .map_or(u64::MAX, |c| c as u64);
        if !Spsc::valid_capacity(cap) {
            return Err(Error::CapacityTooLarge {
                what: "pipe capacity",
                requested: self.capacity as u64,
                limit: MAX_CAPACITY,
                bound: SizeLimit::Maximum,
            });
        }
        Ok(cap)
    }

    /// Creates a simplex pipe: `(sender, receiver)`.
    pub fn build<T: Serialize + DeserializeOwned>(self) -> Result<(Sender<T>, Receiver<T>)> {
        let cap = self.ring_capacity()?;
        // No fork between creating the presence pipes and registering both ends.
        let _creating = handoff::creating();
        let (a, b) = End::create(Kind::Pipe, 1, cap, self.max_message)?;
        let (a, b) = (Arc::new(a), Arc::new(b));
        a.register();
        b.register();
        Ok((Sender::from_end(a), Receiver::from_end(b)))
    }

    /// Creates a duplex pipe: two connected [`Connection`]s.
    pub fn build_duplex<T: Serialize + DeserializeOwned>(
        self,
    ) -> Result<(Connection<T>, Connection<T>)> {
        let cap = self.ring_capacity()?;
        // No fork between creating the presence pipes and registering both ends.
        let _creating = handoff::creating();
        let (a, b) = End::create(Kind::Duplex, 2, cap, self.max_message)?;
        Ok((
            Connection::from_end(Arc::new(a)),
            Connection::from_end(Arc::new(b)),
        ))
    }
}

/// A simplex pipe with default settings: `send` on the `Sender`, `recv` on the
/// `Receiver`, in any processes the ends are handed to.
///
/// ```
/// let (tx, rx) = shmproc::pipe::<String>()?;
/// tx.send(&"hello".to_string())?;
/// drop(tx);
/// assert_eq!(rx.recv()?, "hello");
/// assert!(rx.recv().is_err()); // every sender is gone: Disconnected
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn pipe<T: Serialize + DeserializeOwned>() -> Result<(Sender<T>, Receiver<T>)> {
    Pipe::builder().build()
}

/// A duplex pipe (Python's default `Pipe()`): each `Connection` sends to the other.
///
/// ```
/// let (a, b) = shmproc::duplex::<u64>()?;
/// a.send(&1)?;
/// b.send(&(b.recv()? + 1))?;
/// assert_eq!(a.recv()?, 2);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn duplex<T: Serialize + DeserializeOwned>() -> Result<(Connection<T>, Connection<T>)> {
    Pipe::builder().build_duplex()
}
