//! Messages in place: [`Sender::send_with`] lets the caller write a bytes message where
//! the reader will read it, [`Receiver::recv_with`] lets it read a message where the
//! writer left it. No copy on either side.
//!
//! # The in-place contract
//!
//! These methods lend references into shared memory. They assume every process using
//! the channel follows the protocol: the space is lent to one side at a time (free
//! space to the one writer while `fill` runs, a published message to the reader while
//! `read` runs), and nobody else is handed it meanwhile. A hostile process that maps
//! the channel and writes into lent space at the same time is outside the contract;
//! the copying methods (`send_bytes`, `recv_bytes`, `recv_bytes_into`) keep the full
//! guarantee against such a peer (bad input is an error, never undefined behaviour).
//!
//! # Limits
//!
//! `send_with` writes a whole message of at most the *in-place limit*, a quarter of the
//! ring's capacity ([`Sender::in_place_limit`]); longer is
//! [`SendError::TooLargeInPlace`] at once (`send_bytes` streams any length).
//! `recv_with` reads whole messages in place; a message too large for that (streamed
//! through the ring in pieces by `send`/`send_bytes`) is assembled in the receiver's
//! buffer first and lent from there: a copy, but never an error.

use serde::{de::DeserializeOwned, Serialize};

use super::end::End;
use super::recv::{RecvFail, RecvState};
use super::{Connection, Receiver, Sender};
use crate::error::{RecvError, SendError};
use crate::ring::spsc::{record_size, RecKind};
use crate::sync::Deadline;

impl End {
    fn send_with<R>(&self, len: usize, fill: impl FnOnce(&mut [u8]) -> R) -> Result<R, SendError> {
        let tx = self.tx();
        let len = len as u64;
        if len > tx.max_in_place() {
            return Err(SendError::TooLargeInPlace {
                len,
                max: tx.max_in_place(),
            });
        }
        if len > self.max_message {
            return Err(SendError::TooLarge {
                len,
                max: self.max_message,
            });
        }
        if !self.admit(tx) {
            return Err(SendError::Disconnected);
        }
        let wait = Deadline::FOREVER;
        let abort = || self.peer_gone();
        let g = tx
            .acquire_writer(None, abort)
            .map_err(|w| SendError::from(self.wait_fail(w, wait)))?;
        let (off, _) = tx
            .reserve_wait(&g, record_size(len), None, abort)
            .map_err(|w| SendError::from(self.wait_fail(w, wait)))?;
        // A panic in `fill` unwinds through here: nothing published.
        let r = tx.fill_in_place(&g, off, len, fill);
        tx.commit(&g, off, RecKind::Msg, len);
        Ok(r)
    }

    fn recv_with<R>(
        &self,
        st: &mut RecvState,
        read: impl FnOnce(&[u8]) -> R,
    ) -> Result<R, RecvFail> {
        let rx = self.rx();
        loop {
            let Some(rec) = rx.peek().map_err(RecvFail::Protocol)? else {
                self.await_record(st, Deadline::FOREVER)?;
                continue;
            };
            st.empty_polls = 0;
            return match rec.kind {
                RecKind::Msg if rec.len <= self.max_message => {
                    // As `recv_raw` before a whole message: an unfinished stream is dropped.
                    st.partial = None;
                    st.skipping = false;
                    let r = rx.read_in_place(&rec, read);
                    rx.consume(&rec);
                    Ok(r)
                }
                RecKind::Batch => Err(RecvFail::Batch),
                // A streamed message (or one to refuse): assembled, then lent.
                _ => {
                    self.recv_raw(st, Deadline::FOREVER)?;
                    Ok(read(&st.buf))
                }
            };
        }
    }
}

impl<T: Serialize + DeserializeOwned> Sender<T> {
    /// Writes a bytes message of `len` bytes in place: `fill` gets the message's space
    /// in the ring and writes it where the reader will read it (the space is not
    /// cleared first: it holds bytes of earlier messages of this channel, so `fill`
    /// writes every byte it means to send); the message is
    /// published when `fill` returns, and `fill`'s value returned. Read it with
    /// [`Receiver::recv_with`] or `recv_bytes`. Blocks while the ring has no room, as
    /// [`send`](Self::send). See the in-place contract in the module doc of `inplace`:
    /// the space is lent under the assumption that every peer follows the protocol.
    ///
    /// A panic in `fill` publishes nothing: the space stays free, and the panic goes on
    /// to the caller; the channel works as before.
    ///
    /// ```
    /// let (tx, rx) = shmproc::pipe::<()>()?;
    /// tx.send_with(5, |buf| buf.copy_from_slice(b"hello"))?;
    /// assert_eq!(rx.recv_with(|bytes| bytes.to_vec())?, b"hello");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// `TooLargeInPlace` when `len` is over [`in_place_limit`](Self::in_place_limit)
    /// (at once, nothing sent); `TooLarge` over `max_message`; `Disconnected` as
    /// [`send`](Self::send).
    pub fn send_with<R>(
        &self,
        len: usize,
        fill: impl FnOnce(&mut [u8]) -> R,
    ) -> Result<R, SendError> {
        self.end.send_with(len, fill)
    }

    /// The largest message [`send_with`](Self::send_with) writes in place: a quarter of
    /// the ring's capacity.
    pub fn in_place_limit(&self) -> usize {
        self.end.tx().max_in_place() as usize
    }
}

impl<T: Serialize + DeserializeOwned> Receiver<T> {
    /// Receives one message as bytes, in place: `read` sees it where the writer left
    /// it, and its space is handed back to the writer when `read` returns; returns
    /// `read`'s value. A message streamed through the ring in pieces (larger than a
    /// quarter of the ring) is assembled in the receiver's buffer first and lent from
    /// there. See the in-place contract in the module doc of `inplace`.
    ///
    /// A panic in `read` consumes nothing: the message stays at the head. `read` must not
    /// receive from this receiver (that panics: the receiver is busy).
    ///
    /// ```
    /// let (tx, rx) = shmproc::pipe::<u32>()?;
    /// tx.send(&7)?;
    /// let len = rx.recv_with(|bytes| bytes.len())?; // the encoded message
    /// assert_eq!(len, 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// As [`recv_bytes`](Self::recv_bytes); `Batch` when the next record is a batch of
    /// plain-data elements (read it with `recv_slice`; nothing consumed).
    pub fn recv_with<R>(&self, read: impl FnOnce(&[u8]) -> R) -> Result<R, RecvError> {
        let mut st = self.state_mut();
        self.end.recv_with(&mut st, read).map_err(From::from)
    }
}

impl<T: Serialize + DeserializeOwned> Connection<T> {
    /// [`Sender::send_with`] to the other end.
    ///
    /// # Errors
    /// As [`Sender::send_with`].
    pub fn send_with<R>(
        &self,
        len: usize,
        fill: impl FnOnce(&mut [u8]) -> R,
    ) -> Result<R, SendError> {
        self.tx.send_with(len, fill)
    }

    /// [`Receiver::recv_with`] from the other end.
    ///
    /// # Errors
    /// As [`Receiver::recv_with`].
    pub fn recv_with<R>(&self, read: impl FnOnce(&[u8]) -> R) -> Result<R, RecvError> {
        self.rx.recv_with(read)
    }
}
