//! [`Connection`]: one end of a duplex pipe, a [`Sender`] and a [`Receiver`] sharing
//! one [`End`] (which writes one ring and reads the other).

use std::sync::Arc;
use std::time::Duration;

use serde::{de::DeserializeOwned, Deserialize, Deserializer, Serialize, Serializer};

use super::end::{deserialize_end, End};
use super::{Receiver, Sender};
use crate::error::{RecvError, RecvTimeoutError, SendError, SendTimeoutError};
use crate::error::{TryRecvError, TrySendError};
use crate::region::Kind;

/// One end of a [`duplex`](super::duplex) pipe: sends to, and receives from, the other
/// end. `Send`, not `Sync`, not `Clone`: it holds a receiver.
///
/// ```
/// use shmproc::{duplex, Connection, Process};
///
/// fn doubler(conn: Connection<u64>) {
///     while let Ok(x) = conn.recv() {
///         conn.send(&(2 * x)).unwrap();
///     }
/// }
///
/// let (here, there) = duplex::<u64>()?;
/// let mut p = Process::new(doubler, there);
/// p.start()?;
/// here.send(&21).unwrap();
/// assert_eq!(here.recv().unwrap(), 42);
/// drop(here); // the child's recv() sees Disconnected and returns
/// p.join()?;
/// assert_eq!(p.exitcode(), Some(0));
/// # Ok::<(), shmproc::Error>(())
/// ```
pub struct Connection<T> {
    pub(super) tx: Sender<T>,
    pub(super) rx: Receiver<T>,
}

impl<T> Connection<T> {
    /// A connection on `end`, registered here.
    pub(super) fn from_end(end: Arc<End>) -> Self {
        end.register();
        Connection {
            tx: Sender::from_end(end.clone()),
            rx: Receiver::from_end(end),
        }
    }
}

impl<T: Serialize + DeserializeOwned> Connection<T> {
    /// Sends a message, blocking while the ring is full: [`Sender::send`].
    ///
    /// # Errors
    /// As [`Sender::send`].
    #[inline(always)]
    pub fn send(&self, msg: &T) -> Result<(), SendError> {
        self.tx.send(msg)
    }

    /// Sends a message if the ring has room now: [`Sender::try_send`].
    ///
    /// # Errors
    /// As [`Sender::try_send`].
    #[inline]
    pub fn try_send(&self, msg: &T) -> Result<(), TrySendError> {
        self.tx.try_send(msg)
    }

    /// Sends a message, waiting at most `timeout` for room: [`Sender::send_timeout`].
    ///
    /// # Errors
    /// As [`Sender::send_timeout`].
    #[inline]
    pub fn send_timeout(&self, msg: &T, timeout: Duration) -> Result<(), SendTimeoutError> {
        self.tx.send_timeout(msg, timeout)
    }

    /// Sends every message of `msgs`, published together: [`Sender::send_all`].
    ///
    /// # Errors
    /// As [`Sender::send_all`].
    #[inline]
    pub fn send_all(&self, msgs: &[T]) -> Result<(), SendError> {
        self.tx.send_all(msgs)
    }

    /// Sends raw bytes as one message: [`Sender::send_bytes`].
    ///
    /// # Errors
    /// As [`Sender::send_bytes`].
    #[inline]
    pub fn send_bytes(&self, bytes: &[u8]) -> Result<(), SendError> {
        self.tx.send_bytes(bytes)
    }

    /// Receives a message, blocking until one arrives: [`Receiver::recv`].
    ///
    /// # Errors
    /// As [`Receiver::recv`].
    #[inline(always)]
    pub fn recv(&self) -> Result<T, RecvError> {
        self.rx.recv()
    }

    /// Receives a message if one is ready now: [`Receiver::try_recv`].
    ///
    /// # Errors
    /// As [`Receiver::try_recv`].
    #[inline(always)]
    pub fn try_recv(&self) -> Result<T, TryRecvError> {
        self.rx.try_recv()
    }

    /// Receives a message, waiting at most `timeout`: [`Receiver::recv_timeout`].
    ///
    /// # Errors
    /// As [`Receiver::recv_timeout`].
    #[inline(always)]
    pub fn recv_timeout(&self, timeout: Duration) -> Result<T, RecvTimeoutError> {
        self.rx.recv_timeout(timeout)
    }

    /// Whether a message (or end-of-file) is ready, waiting at most `timeout`:
    /// [`Receiver::poll`].
    #[inline]
    pub fn poll(&self, timeout: Option<Duration>) -> bool {
        self.rx.poll(timeout)
    }

    /// Iterates over received messages until the channel disconnects:
    /// [`Receiver::iter`].
    #[inline]
    pub fn iter(&self) -> impl Iterator<Item = T> + '_ {
        self.rx.iter()
    }

    /// Receives one message as raw bytes: [`Receiver::recv_bytes`].
    ///
    /// # Errors
    /// As [`Receiver::recv_bytes`].
    #[inline]
    pub fn recv_bytes(&self) -> Result<Vec<u8>, RecvError> {
        self.rx.recv_bytes()
    }

    /// Receives one message as raw bytes into `buf`: [`Receiver::recv_bytes_into`].
    ///
    /// # Errors
    /// As [`Receiver::recv_bytes_into`].
    #[inline]
    pub fn recv_bytes_into(&self, buf: &mut Vec<u8>) -> Result<usize, RecvError> {
        self.rx.recv_bytes_into(buf)
    }
}

impl<T> std::fmt::Debug for Connection<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection").finish_non_exhaustive()
    }
}

impl<T> Serialize for Connection<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.tx.serialize(s)
    }
}

impl<'de, T> Deserialize<'de> for Connection<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Connection::from_end(deserialize_end(d, Kind::Duplex)?))
    }
}

impl<T> Connection<T> {
    /// This process's share of the channel, for `named` and `wait`.
    pub(in crate::channel) fn end(&self) -> &End {
        &self.rx.end
    }
}
