//! Sending: the [`Sender`] handle, and the one blocking core of every send, which
//! encodes a message straight into the ring when it fits and streams it in pieces
//! when it does not.

use std::cell::RefCell;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use serde::{de::DeserializeOwned, Deserialize, Deserializer, Serialize, Serializer};

use super::end::{deserialize_end, serialize_end, End};
use super::recv::SMALL;
use crate::codec;
use crate::error::{Error, SendError, SendTimeoutError, TrySendError};
use crate::region::Kind;
use crate::ring::spsc::{
    record_size, RecKind, Spsc, WriteGuard, MIN_WINDOW, REC_HDR, TINY_HIGH, TINY_MAX,
};
use crate::sync::handoff;
use crate::sync::waiter::Wait;
use crate::sync::Deadline;

/// A failed send, before it is turned into the caller's error type (the `From` impls
/// below).
pub(super) enum SendFail {
    /// Non-blocking only: no room now.
    Full,
    /// With a deadline only: it passed.
    Timeout,
    Disconnected,
    TooLarge(u64, u64),
    /// Non-blocking only: the message (its length, the largest that could go) can never
    /// be placed at once; a blocking send streams it.
    NeedsStreaming(u64, u64),
    Codec(String),
}

impl From<SendFail> for SendError {
    fn from(f: SendFail) -> SendError {
        match f {
            SendFail::Disconnected => SendError::Disconnected,
            SendFail::TooLarge(len, max) => SendError::TooLarge { len, max },
            SendFail::Codec(e) => SendError::Codec(e),
            SendFail::Full | SendFail::Timeout | SendFail::NeedsStreaming(..) => {
                unreachable!("a send without a deadline waits for room and streams")
            }
        }
    }
}

impl From<SendFail> for TrySendError {
    fn from(f: SendFail) -> TrySendError {
        match f {
            SendFail::Full => TrySendError::Full,
            SendFail::Disconnected => TrySendError::Disconnected,
            SendFail::TooLarge(len, max) => TrySendError::TooLarge { len, max },
            SendFail::NeedsStreaming(len, max) => TrySendError::NeedsStreaming { len, max },
            SendFail::Codec(e) => TrySendError::Codec(e),
            SendFail::Timeout => unreachable!("a non-blocking send has no deadline"),
        }
    }
}

impl From<SendFail> for SendTimeoutError {
    fn from(f: SendFail) -> SendTimeoutError {
        match f {
            SendFail::Timeout => SendTimeoutError::Timeout,
            SendFail::Disconnected => SendTimeoutError::Disconnected,
            SendFail::TooLarge(len, max) => SendTimeoutError::TooLarge { len, max },
            SendFail::Codec(e) => SendTimeoutError::Codec(e),
            SendFail::Full | SendFail::NeedsStreaming(..) => {
                unreachable!("a send with a deadline waits for room and streams")
            }
        }
    }
}

/// The largest message a non-blocking send can place in `tx`: a streamed one needs room
/// for all its pieces (records of [`Spsc::max_record`] bytes) and a record of padding at
/// once, so it may have at most `capacity / max_record - 1` pieces (a whole record is
/// smaller still).
fn try_send_max(tx: &Spsc) -> u64 {
    let max_rec = tx.max_record();
    (tx.capacity() / max_rec - 1) * (max_rec - REC_HDR) - 8
}

/// The length [`End::send_tiny`] hands on for a message that did not encode into one
/// word.
const NOT_A_WORD: usize = usize::MAX;

thread_local! {
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

impl End {
    #[inline]
    pub(super) fn tx(&self) -> &Spsc {
        self.tx.as_ref().expect("sending end has a ring to write")
    }

    /// A send that could not finish for want of room (`Full`) or time (`Timeout`):
    /// `Disconnected` instead when the reader side is gone (a full ring whose reader
    /// died stays full for ever).
    #[cold]
    fn unsent(&self, f: SendFail) -> SendFail {
        let gone = match f {
            SendFail::Full => self.full_and_gone(),
            SendFail::Timeout => self.peer_gone(),
            _ => false,
        };
        if gone {
            SendFail::Disconnected
        } else {
            f
        }
    }

    /// A failed wait of a send, as the caller's failure.
    #[cold]
    pub(super) fn wait_fail(&self, w: Wait, wait: Deadline) -> SendFail {
        match (w, wait) {
            (Wait::Aborted, _) => SendFail::Disconnected,
            (_, Deadline::Now) => self.unsent(SendFail::Full),
            _ => self.unsent(SendFail::Timeout),
        }
    }

    /// The tiny fast path of `send`, `try_send` and `send_timeout`, inline: `Ok` when
    /// `msg` went; otherwise what [`End::send_rest`] takes on with, out of line.
    #[inline(always)]
    fn send_tiny<T: Serialize + ?Sized>(
        tx: &Spsc,
        msg: &T,
        wait: Deadline,
    ) -> std::result::Result<(), (u64, usize)> {
        // Fastest path, the seed's message: at most 6 bytes of encoding, held in a
        // register, sent by this thread's biased writer role with one store
        // (`Spsc::try_send_tiny_word`). Anything else goes on below, with the encoding in
        // two registers if it fits one word (an encoding error is met again, and
        // reported, by the next encode there).
        match codec::encode_word_tagged(msg, TINY_HIGH) {
            Ok(Some(word)) => {
                // At most `WORD_MAX == TINY_MAX` bytes: a tiny record's payload, and
                // `word` the record's whole word.
                const { assert!(codec::WORD_MAX as u64 == TINY_MAX) };
                // The send gate's checks are the ring's here: its fast path stops where
                // a look at the reader is due, after a reader end was dropped, and for
                // good once the reader side is known to be gone (`SendGate`).
                if tx.try_send_tiny_word(word, !wait.is_now()) {
                    return Ok(());
                }
                Err(codec::word_parts(word))
            }
            _ => Err((0, NOT_A_WORD)),
        }
    }

    /// Sends one message, waiting as `wait` says, past [`End::send_tiny`]: the one core
    /// of `send`, `try_send` and `send_timeout`, its failure as the caller's error. A
    /// caller's `Result` is built from a unit `Ok` and this, so the fast path stores
    /// nothing for it (a shared `Result` of both paths was built in memory, as this
    /// one's is).
    #[inline(never)]
    fn send_rest<T: Serialize + ?Sized, E: From<SendFail>>(
        &self,
        msg: &T,
        (bytes, n): (u64, usize),
        wait: Deadline,
    ) -> std::result::Result<(), E> {
        self.send_value_rest(msg, bytes, n, wait)
            .or_else(|f| self.send_failed(msg, wait, f))
            .map_err(From::from)
    }

    /// [`End::send_rest`]'s sending: `msg` encoded as the low `n` bytes
    /// of `bytes` there, or `n` = [`NOT_A_WORD`] when it does not fit one word or did
    /// not encode. Scalars rather than the encoder's `Result`, which the fast path
    /// would otherwise build on the stack for every message.
    #[inline(always)]
    fn send_value_rest<T: Serialize + ?Sized>(
        &self,
        msg: &T,
        bytes: u64,
        n: usize,
        wait: Deadline,
    ) -> std::result::Result<(), SendFail> {
        let tx = self.tx();
        let deadline = wait.instant();
        if !self.admit(tx) {
            return Err(SendFail::Disconnected);
        }
        let g = tx
            .acquire_writer(deadline, || self.peer_gone())
            .map_err(|w| self.wait_fail(w, wait))?;
        // A message of at most 6 bytes, encoded in a register, written with one store (a
        // tiny record) under the role taken the general way.
        if n as u64 <= self.tiny_max && tx.try_write_tiny(&g, bytes, n as u64) {
            return Ok(());
        }
        // Small messages: encode on the stack, then one copy into the ring.
        let mut small = [0u8; SMALL];
        match codec::encode_to_slice(msg, &mut small) {
            Ok(Some(n)) => {
                if n as u64 > self.max_message {
                    return Err(SendFail::TooLarge(n as u64, self.max_message));
                }
                if tx.try_write_small(&g, &small[..n]) {
                    return Ok(());
                }
                return self.send_locked(tx, &g, &small[..n], wait);
            }
            Ok(None) => {}
            Err(e) => return Err(SendFail::Codec(e)),
        }
        // Larger messages: encode straight into the ring's free space.
        if let Some((off, window)) = tx.reserve(&g, MIN_WINDOW) {
            let max = window.min(tx.max_record()) - REC_HDR;
            let mut sink = tx.sink(&g, off, max);
            match codec::encode_in_place(msg, &mut sink) {
                Ok(Some(n)) => {
                    let n = n as u64;
                    if n > self.max_message {
                        return Err(SendFail::TooLarge(n, self.max_message));
                    }
                    tx.commit_sink(&g, off, RecKind::Msg, sink);
                    return Ok(());
                }
                Ok(None) => {}
                Err(e) => return Err(SendFail::Codec(e)),
            }
        }
        self.send_value_general(tx, &g, msg, wait)
    }

    /// The general path of a send: encode into a buffer, then copy or stream it.
    #[inline(never)]
    fn send_value_general<T: Serialize + ?Sized>(
        &self,
        tx: &Spsc,
        g: &WriteGuard<'_>,
        msg: &T,
        wait: Deadline,
    ) -> std::result::Result<(), SendFail> {
        SCRATCH.with(|s| {
            let mut buf = s
                .try_borrow_mut()
                .map(|mut b| std::mem::take(&mut *b))
                .unwrap_or_default();
            buf.clear();
            let res = match codec::encode_into(msg, &mut buf) {
                Ok(()) => self.send_locked(tx, g, &buf, wait),
                Err(e) => Err(SendFail::Codec(e.to_string())),
            };
            if buf.capacity() <= 1 << 20 {
                if let Ok(mut b) = s.try_borrow_mut() {
                    *b = buf;
                }
            }
            res
        })
    }

    /// Sends every message of `msgs` in order, holding the writer role throughout and
    /// checking for a sleeping reader once per batch (or once per ring-full of it).
    pub(super) fn send_all<T: Serialize>(&self, msgs: &[T]) -> std::result::Result<(), SendFail> {
        let tx = self.tx();
        if msgs.is_empty() {
            return Ok(());
        }
        if !self.admit(tx) {
            return Err(SendFail::Disconnected);
        }
        let wait = Deadline::FOREVER;
        let g = tx
            .acquire_writer(None, || self.peer_gone())
            .map_err(|w| self.wait_fail(w, wait))?;
        let mut tail = tx.batch_tail(&g);
        for msg in msgs {
            let slot = match tx.reserve_at(&g, &mut tail, MIN_WINDOW) {
                Some(s) => Some(s),
                None => {
                    // Full: let the reader see what is written, then wait for room.
                    tx.publish(&g, tail);
                    match tx.wait_writable_at(&g, &mut tail, MIN_WINDOW, None, || self.peer_gone())
                    {
                        Ok(s) => Some(s),
                        Err(w) => return Err(self.wait_fail(w, wait)),
                    }
                }
            };
            if let Some((off, window)) = slot {
                // A message of at most 6 bytes: encoded in a register, one store.
                match codec::encode_word(msg) {
                    Ok(Some((bytes, n)))
                        if n as u64 <= TINY_MAX && n as u64 <= self.max_message =>
                    {
                        tx.commit_tiny_at(&g, &mut tail, off, bytes, n as u64);
                        continue;
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tx.publish(&g, tail);
                        return Err(SendFail::Codec(e));
                    }
                }
                let max = window.min(tx.max_record()) - REC_HDR;
                let mut sink = tx.sink(&g, off, max);
                match codec::encode_in_place(msg, &mut sink) {
                    Ok(Some(n)) => {
                        let n = n as u64;
                        if n > self.max_message {
                            tx.publish(&g, tail);
                            return Err(SendFail::TooLarge(n, self.max_message));
                        }
                        tx.commit_sink_at(&g, &mut tail, off, RecKind::Msg, sink);
                        continue;
                    }
                    Ok(None) => {}
                    Err(e) => {
                        tx.publish(&g, tail);
                        return Err(SendFail::Codec(e));
                    }
                }
            }
            // A message larger than the window: publish, then the one-message path.
            tx.publish(&g, tail);
            let mut buf = Vec::new();
            codec::encode_into(msg, &mut buf).map_err(|e| SendFail::Codec(e.to_string()))?;
            self.send_locked(tx, &g, &buf, wait)?;
            tail = tx.batch_tail(&g);
        }
        tx.publish(&g, tail);
        Ok(())
    }

    /// A send that failed: when it failed to encode, on a connection made by name, the
    /// message is encoded again with its handles' descriptors going over the
    /// connection's socket first (see `named`); otherwise the failure stands. Called by
    /// the public send methods on their error path only, so a send that succeeds pays
    /// nothing for it.
    #[cold]
    #[inline(never)]
    fn send_failed<T: Serialize + ?Sized>(
        &self,
        msg: &T,
        wait: Deadline,
        f: SendFail,
    ) -> std::result::Result<(), SendFail> {
        let SendFail::Codec(e) = f else {
            return Err(f);
        };
        let Some(side) = self.hooks.side() else {
            return Err(SendFail::Codec(e));
        };
        match side.send_descriptors(msg, wait.instant()) {
            Ok(Some(bytes)) => self.send_bytes(&bytes, wait),
            Ok(None) => Err(SendFail::Codec(e)),
            Err(Error::Timeout) => Err(match wait {
                Deadline::Now => SendFail::Full,
                Deadline::Until(_) => SendFail::Timeout,
            }),
            Err(Error::Disconnected) => Err(SendFail::Disconnected),
            Err(other) => Err(SendFail::Codec(other.to_string())),
        }
    }

    /// Sends raw bytes as one message, waiting as `wait` says.
    fn send_bytes(&self, bytes: &[u8], wait: Deadline) -> std::result::Result<(), SendFail> {
        let tx = self.tx();
        if !self.admit(tx) {
            return Err(SendFail::Disconnected);
        }
        let g = tx
            .acquire_writer(wait.instant(), || self.peer_gone())
            .map_err(|w| self.wait_fail(w, wait))?;
        self.send_locked(tx, &g, bytes, wait)
    }

    /// Writes `bytes` as one message: a single record, or streamed in pieces.
    fn send_locked(
        &self,
        tx: &Spsc,
        g: &WriteGuard<'_>,
        bytes: &[u8],
        wait: Deadline,
    ) -> std::result::Result<(), SendFail> {
        let len = bytes.len() as u64;
        if len > self.max_message {
            return Err(SendFail::TooLarge(len, self.max_message));
        }
        let deadline = wait.instant();
        let max_rec = tx.max_record();
        let abort = || self.peer_gone();
        if record_size(len) <= max_rec {
            if wait.is_now() && tx.reserve(g, record_size(len)).is_none() {
                return Err(self.unsent(SendFail::Full));
            }
            return tx
                .write_record(g, RecKind::Msg, &[bytes], deadline, abort)
                .map_err(|w| self.wait_fail(w, wait));
        }
        // Streamed: BEGIN carries the total, then CHUNKs; each piece fills a max record.
        let piece = (max_rec - REC_HDR) as usize;
        if wait.is_now() {
            // A non-blocking send needs room for the whole stream at once: a record per
            // piece and one of padding. Beyond `try_send_max` even an empty ring has not.
            let most = try_send_max(tx);
            if len > most {
                return Err(SendFail::NeedsStreaming(len, most));
            }
            let pieces = (bytes.len() + 8).div_ceil(piece) as u64;
            if tx.free_bytes() < pieces * max_rec + max_rec {
                return Err(self.unsent(SendFail::Full));
            }
        }
        let first = piece - 8;
        let total = len.to_ne_bytes();
        tx.write_record(
            g,
            RecKind::Begin,
            &[&total, &bytes[..first]],
            deadline,
            abort,
        )
        .map_err(|w| self.wait_fail(w, wait))?;
        // Once begun, a non-blocking send finishes the message (bounded by the reader).
        let chunk_deadline = if wait.is_now() { None } else { deadline };
        for chunk in bytes[first..].chunks(piece) {
            tx.write_record(g, RecKind::Chunk, &[chunk], chunk_deadline, abort)
                .map_err(|w| self.wait_fail(w, wait))?;
        }
        Ok(())
    }
}

/// The sending end of a [`pipe`](super::pipe). `Clone`, `Send` and `Sync`; clones and
/// copies in other processes all send into the same ring, one message at a time (never
/// interleaved).
///
/// Hand it to a child process as (part of) the args of a [`crate::Process`].
///
/// ```
/// use shmproc::{pipe, Process, Sender};
///
/// fn producer(tx: Sender<Vec<u32>>) {
///     for i in 0..3 {
///         tx.send(&vec![i; 4]).unwrap();
///     }
/// } // dropping the last Sender in the last process disconnects the pipe
///
/// let (tx, rx) = pipe::<Vec<u32>>()?;
/// let mut p = Process::new(producer, tx);
/// p.start()?;
/// let got: Vec<Vec<u32>> = rx.iter().collect(); // ends at Disconnected
/// p.join()?;
/// assert_eq!(got, vec![vec![0; 4], vec![1; 4], vec![2; 4]]);
/// # Ok::<(), shmproc::Error>(())
/// ```
pub struct Sender<T> {
    pub(super) end: Arc<End>,
    /// The ring `end` writes, a copy of its handle held here (`end` keeps the mapping):
    /// the tiny fast path reaches it without loading `end` or testing its `Option`.
    tx: Spsc,
    _t: PhantomData<fn(&T)>,
}

impl<T> Sender<T> {
    /// A sender on `end`, which the caller registered.
    pub(super) fn from_end(end: Arc<End>) -> Self {
        let tx = *end.tx();
        Sender {
            end,
            tx,
            _t: PhantomData,
        }
    }
}

impl<T: Serialize + DeserializeOwned> Sender<T> {
    /// Sends a message, blocking while the ring is full. The message is visible to the
    /// receiver when this returns.
    ///
    /// # Errors
    /// `Disconnected` when every receiving end is gone (dropped, or its process died:
    /// noticed within [`DEAD_READER_SENDS`](super::DEAD_READER_SENDS) sends), and on
    /// every send after that; `TooLarge` over `max_message`; `Codec` when `T`'s
    /// `Serialize` fails.
    ///
    /// # Examples
    ///
    /// A forked child sends; the parent receives:
    ///
    /// ```
    /// use shmproc::{pipe, Process};
    ///
    /// let (tx, rx) = pipe::<String>()?;
    /// let mut child = Process::fork(move || {
    ///     tx.send(&"hello".to_string()).unwrap();
    /// });
    /// child.start()?; // the child owns `tx` now
    /// assert_eq!(rx.recv().unwrap(), "hello");
    /// child.join()?;
    /// # Ok::<(), shmproc::Error>(())
    /// ```
    #[inline(always)]
    pub fn send(&self, msg: &T) -> std::result::Result<(), SendError> {
        let wait = Deadline::FOREVER;
        match End::send_tiny(&self.tx, msg, wait) {
            Ok(()) => Ok(()),
            Err(word) => self.end.send_rest(msg, word, wait),
        }
    }

    /// Sends a message if the ring has room now.
    ///
    /// # Errors
    /// `Full` when it has not (nothing is sent; `Disconnected` instead when the reader
    /// is gone, which a full ring asks the kernel at most every 100 µs);
    /// `NeedsStreaming` for a message that never fits the ring at once (larger than
    /// about three quarters of it), which `send` streams; or as [`send`](Self::send).
    pub fn try_send(&self, msg: &T) -> std::result::Result<(), TrySendError> {
        let wait = Deadline::Now;
        match End::send_tiny(&self.tx, msg, wait) {
            Ok(()) => Ok(()),
            Err(word) => self.end.send_rest(msg, word, wait),
        }
    }

    /// Sends a message, waiting at most `timeout` for room.
    ///
    /// # Errors
    /// `Timeout` when the ring stayed full, or as [`send`](Self::send).
    pub fn send_timeout(
        &self,
        msg: &T,
        timeout: Duration,
    ) -> std::result::Result<(), SendTimeoutError> {
        let wait = Deadline::after(timeout);
        match End::send_tiny(&self.tx, msg, wait) {
            Ok(()) => Ok(()),
            Err(word) => self.end.send_rest(msg, word, wait),
        }
    }

    /// Sends every message of `msgs`, in order, as [`send`](Self::send) would one by
    /// one, but publishes them to the receiver together: one store of the ring's index
    /// per call (or per ring-full), and one wake-up at most. Other senders' messages are
    /// never interleaved within the batch. The messages are visible to the receiver when
    /// this returns; none of them before (except when the batch fills the ring, which
    /// publishes what is written and waits for room).
    ///
    /// ```
    /// let (tx, rx) = shmproc::pipe::<u64>()?;
    /// tx.send_all(&[1, 2, 3])?;
    /// assert_eq!(rx.iter().take(3).collect::<Vec<_>>(), [1, 2, 3]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// The messages stay serde-framed, one record each, so that `recv` reads them. For
    /// plain-data `T` (`bytemuck::Pod`), [`send_slice`](Self::send_slice) sends the same
    /// elements as raw bytes in batch records (one header per 16 KiB, no serde), read
    /// with `recv_slice`.
    ///
    /// # Errors
    /// As [`send`](Self::send). On an error the messages before the failing one have
    /// been sent, and none after it.
    pub fn send_all(&self, msgs: &[T]) -> std::result::Result<(), SendError> {
        self.end.send_all(msgs).map_err(From::from)
    }

    /// Sends raw bytes as one message (read them with `recv_bytes`).
    ///
    /// # Errors
    /// As [`send`](Self::send).
    pub fn send_bytes(&self, bytes: &[u8]) -> std::result::Result<(), SendError> {
        self.end
            .send_bytes(bytes, Deadline::FOREVER)
            .map_err(From::from)
    }
}

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Self {
        Sender::from_end(self.end.clone())
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        handoff::note_drop(self.end.reg_id());
    }
}

impl<T> std::fmt::Debug for Sender<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sender").finish_non_exhaustive()
    }
}

impl<T> Serialize for Sender<T> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        serialize_end(&self.end, s)
    }
}

impl<'de, T> Deserialize<'de> for Sender<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let end = deserialize_end(d, Kind::Pipe)?;
        if end.tx.is_none() {
            use serde::de::Error as _;
            return Err(D::Error::custom("not a sending end"));
        }
        Ok(Sender::from_end(end))
    }
}
