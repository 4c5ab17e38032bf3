//! Receiving: the [`Receiver`] handle, and the one blocking core of every receive,
//! which takes a small whole message off the ring's head inline and assembles the
//! rest (large records, streams) out of line.

use std::cell::{Cell, RefCell, RefMut};
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use serde::{de::DeserializeOwned, Deserialize, Deserializer, Serialize, Serializer};

use super::end::{deserialize_end, serialize_end, End};
use crate::codec;
use crate::error::{Error, ProtocolError, RecvError, RecvTimeoutError, TryRecvError};
use crate::region::Kind;
use crate::ring::spsc::{Pace, RecKind, Spsc, TINY_MAX};
use crate::sync::handoff;
use crate::sync::waiter::Wait;
use crate::sync::Deadline;

/// A receiver's private state: the message being assembled.
#[derive(Default)]
pub(super) struct RecvState {
    pub(super) buf: Vec<u8>,
    /// A streamed message in progress: its total length.
    pub(super) partial: Option<u64>,
    /// Dropping the rest of a stream whose header was refused.
    pub(super) skipping: bool,
    /// Consecutive `try_recv`s that found the ring empty. Whether the writers are all
    /// gone is a system call (`poll` on the presence pipe), so a busy-polling reader asks
    /// the kernel on the first empty call and then once every [`EMPTY_POLLS_PER_CHECK`].
    pub(super) empty_polls: u32,
    /// How the last wait for a message went ([`Spsc::wait_readable`]).
    pace: Pace,
}

/// How many consecutive empty `try_recv`s pass between two liveness checks. A writer's
/// death is reported by at most this many calls late; a single call after a quiet
/// period always checks.
const EMPTY_POLLS_PER_CHECK: u32 = 64;

/// Messages of up to this many encoded bytes are received through a copy on the stack
/// (see [`End::take_small`]); larger ones through the receiver's buffer. (Sends encode
/// them on the stack too.)
pub(super) const SMALL: usize = 64;

/// A failed receive, before it is turned into the caller's error type (the `From`
/// impls below).
pub(super) enum RecvFail {
    /// Non-blocking only: no message now.
    Empty,
    /// With a deadline only: it passed.
    Timeout,
    Disconnected,
    Protocol(ProtocolError),
    Codec(String),
    /// A batch record is at the head (left there).
    Batch,
    /// A batch of another element type is at the head (left there).
    WrongElement {
        size: u32,
        expected: u32,
    },
}

impl From<RecvFail> for RecvError {
    fn from(f: RecvFail) -> RecvError {
        match f {
            RecvFail::Disconnected => RecvError::Disconnected,
            RecvFail::Protocol(p) => RecvError::Protocol(p),
            RecvFail::Codec(e) => RecvError::Codec(e),
            RecvFail::Batch => RecvError::Batch,
            RecvFail::WrongElement { size, expected } => RecvError::WrongElement { size, expected },
            RecvFail::Empty | RecvFail::Timeout => {
                unreachable!("a receive without a deadline waits for a message")
            }
        }
    }
}

impl From<RecvFail> for TryRecvError {
    fn from(f: RecvFail) -> TryRecvError {
        match f {
            RecvFail::Empty => TryRecvError::Empty,
            RecvFail::Disconnected => TryRecvError::Disconnected,
            RecvFail::Protocol(p) => TryRecvError::Protocol(p),
            RecvFail::Codec(e) => TryRecvError::Codec(e),
            RecvFail::Batch => TryRecvError::Batch,
            RecvFail::WrongElement { size, expected } => {
                TryRecvError::WrongElement { size, expected }
            }
            RecvFail::Timeout => unreachable!("a non-blocking receive has no deadline"),
        }
    }
}

impl From<RecvFail> for RecvTimeoutError {
    fn from(f: RecvFail) -> RecvTimeoutError {
        match f {
            RecvFail::Timeout => RecvTimeoutError::Timeout,
            RecvFail::Disconnected => RecvTimeoutError::Disconnected,
            RecvFail::Protocol(p) => RecvTimeoutError::Protocol(p),
            RecvFail::Codec(e) => RecvTimeoutError::Codec(e),
            RecvFail::Batch => RecvTimeoutError::Batch,
            RecvFail::WrongElement { size, expected } => {
                RecvTimeoutError::WrongElement { size, expected }
            }
            RecvFail::Empty => unreachable!("a receive with a deadline waits for a message"),
        }
    }
}

impl End {
    #[inline]
    pub(super) fn rx(&self) -> &Spsc {
        self.rx.as_ref().expect("receiving end has a ring to read")
    }

    /// The fast path of every receive: a whole message of at most [`SMALL`] bytes is at
    /// the head of the ring. Copies it into `out`, consumes it, and returns its length;
    /// `None` sends the caller down the general path ([`End::recv_raw`]).
    #[inline(always)]
    fn take_small(&self, st: &mut RecvState, out: &mut [u8; SMALL]) -> Option<usize> {
        if self.max_message < SMALL as u64 {
            return None;
        }
        let n = self.rx.as_ref()?.take_small(out)?;
        // As `recv_raw` does for a whole message: an unfinished stream is dropped.
        st.partial = None;
        st.skipping = false;
        st.empty_polls = 0;
        Some(n)
    }

    /// Receives one message into `st.buf`, waiting as `wait` says.
    pub(super) fn recv_raw(
        &self,
        st: &mut RecvState,
        wait: Deadline,
    ) -> std::result::Result<(), RecvFail> {
        let rx = self.rx();
        loop {
            let peeked = rx.peek().map_err(RecvFail::Protocol)?;
            let Some(rec) = peeked else {
                self.await_record(st, wait)?;
                continue;
            };
            st.empty_polls = 0;
            match rec.kind {
                RecKind::Msg => {
                    st.partial = None;
                    st.skipping = false;
                    st.buf.clear();
                    if rec.len > self.max_message {
                        rx.consume(&rec);
                        return Err(RecvFail::Protocol(ProtocolError::TooLarge {
                            len: rec.len,
                            max: self.max_message,
                        }));
                    }
                    rx.read_into(&rec, 0, rec.len, &mut st.buf);
                    rx.consume(&rec);
                    return Ok(());
                }
                RecKind::Begin => {
                    // An unfinished earlier stream (its writer died or gave up) is dropped.
                    st.buf.clear();
                    st.partial = None;
                    let Some(total) = rx.read_u64(&rec) else {
                        rx.consume(&rec);
                        return Err(RecvFail::Protocol(ProtocolError::BadRecord));
                    };
                    if total > self.max_message {
                        rx.consume(&rec);
                        st.skipping = true;
                        return Err(RecvFail::Protocol(ProtocolError::TooLarge {
                            len: total,
                            max: self.max_message,
                        }));
                    }
                    st.skipping = false;
                    st.buf.reserve(total.min(64 << 20) as usize);
                    rx.read_into(&rec, 8, rec.len - 8, &mut st.buf);
                    rx.consume(&rec);
                    if st.buf.len() as u64 >= total {
                        return Self::finish_stream(st, total);
                    }
                    st.partial = Some(total);
                }
                RecKind::Chunk => match st.partial {
                    Some(total) => {
                        rx.read_into(&rec, 0, rec.len, &mut st.buf);
                        rx.consume(&rec);
                        if st.buf.len() as u64 >= total {
                            return Self::finish_stream(st, total);
                        }
                    }
                    // A piece of a refused or abandoned stream.
                    None => rx.consume(&rec),
                },
                // Left at the head for `recv_slice`; an unfinished stream before it is
                // dropped, as before a whole message.
                RecKind::Batch => {
                    st.partial = None;
                    st.skipping = false;
                    return Err(RecvFail::Batch);
                }
                RecKind::Pad => unreachable!("peek skips padding"),
            }
        }
    }

    /// The ring is empty: waits as `wait` says until something is published (`Ok`: look
    /// again), or fails with `Empty`, `Timeout`, `Disconnected` (nothing left to read and
    /// every writer gone; an unfinished stream is dropped) or a protocol error (garbage
    /// counters). The waiting half of every receive.
    pub(super) fn await_record(
        &self,
        st: &mut RecvState,
        wait: Deadline,
    ) -> std::result::Result<(), RecvFail> {
        let rx = self.rx();
        if !rx.counters_sane() {
            return Err(RecvFail::Protocol(ProtocolError::BadRecord));
        }
        let deadline = match wait {
            Deadline::Now => {
                let check = st.empty_polls % EMPTY_POLLS_PER_CHECK == 0;
                st.empty_polls = st.empty_polls.wrapping_add(1);
                return Err(if check && self.peer_gone() && !rx.has_data() {
                    st.partial = None;
                    RecvFail::Disconnected
                } else {
                    RecvFail::Empty
                });
            }
            Deadline::Until(d) => d,
        };
        // Before each sleep, the counters are checked too: a peer that scribbles over
        // them while this reader waits does not wake it.
        let outcome = rx.wait_readable(
            deadline,
            || self.peer_gone() || !rx.counters_sane(),
            Some(&mut st.pace),
        );
        match outcome {
            Wait::Ready => Ok(()),
            Wait::TimedOut => Err(RecvFail::Timeout),
            Wait::Aborted => {
                if !rx.counters_sane() {
                    return Err(RecvFail::Protocol(ProtocolError::BadRecord));
                }
                if !rx.has_data() {
                    // No torn message is ever delivered: a partial stream is dropped.
                    st.partial = None;
                    st.buf.clear();
                    return Err(RecvFail::Disconnected);
                }
                Ok(())
            }
        }
    }

    fn finish_stream(st: &mut RecvState, total: u64) -> std::result::Result<(), RecvFail> {
        st.partial = None;
        if st.buf.len() as u64 != total {
            st.buf.clear();
            return Err(RecvFail::Protocol(ProtocolError::BadRecord));
        }
        Ok(())
    }

    /// Whether a message or end-of-file is ready, waiting at most `timeout` (`None`:
    /// for ever).
    fn poll(&self, timeout: Option<Duration>) -> bool {
        let rx = self.rx();
        if rx.has_data() || self.peer_gone() {
            return true;
        }
        // `None` waits for ever, as does a timeout too large to add to the clock.
        let deadline = Deadline::within(timeout).instant();
        !matches!(
            rx.wait_readable(deadline, || self.peer_gone(), None),
            Wait::TimedOut
        )
    }
}

/// The general path of every receive (a stream, a large message, an empty ring, an
/// error), out of line so that the fast path ([`End::take_small`] and the decode)
/// inlines into the caller without this code's stack frame.
#[inline(never)]
fn recv_general<T: DeserializeOwned>(
    end: &End,
    st: &mut RecvState,
    wait: Deadline,
) -> std::result::Result<T, RecvFail> {
    end.recv_raw(st, wait)?;
    match codec::decode(&st.buf) {
        Ok(v) => Ok(v),
        Err(e) => end.decode_failed(&st.buf, e).map_err(RecvFail::Codec),
    }
}

impl End {
    /// A received message that failed to decode: on a connection made by name, decoded
    /// again with the descriptors its handles asked for (see `named`); otherwise the
    /// codec error stands. Reached only from the decoders' error arms.
    #[cold]
    #[inline(never)]
    fn decode_failed<T: DeserializeOwned>(
        &self,
        bytes: &[u8],
        e: Error,
    ) -> std::result::Result<T, String> {
        match self.hooks.side() {
            Some(side) => side.decode(bytes).map_err(|e| e.to_string()),
            None => Err(e.to_string()),
        }
    }
}

/// The receiving end of a [`pipe`](super::pipe). `Send`, not `Sync`, not `Clone`: one
/// reader.
///
/// ```
/// use std::time::Duration;
/// use shmproc::{pipe, RecvTimeoutError};
///
/// let (tx, rx) = pipe::<String>()?;
/// tx.send(&"hello".to_string()).unwrap();
/// assert!(rx.poll(Some(Duration::ZERO)));
/// assert_eq!(rx.recv().unwrap(), "hello");
/// assert_eq!(rx.recv_timeout(Duration::from_millis(10)), Err(RecvTimeoutError::Timeout));
/// drop(tx);
/// assert_eq!(rx.recv_timeout(Duration::from_secs(1)), Err(RecvTimeoutError::Disconnected));
/// # Ok::<(), shmproc::Error>(())
/// ```
pub struct Receiver<T> {
    pub(super) end: Arc<End>,
    /// The ring the tiny fast path reads whenever `state` lets it: the one `end` reads
    /// (a copy of its handle, which `end` keeps mapped: the fast path neither loads
    /// `end` nor tests its `Option`), or an always-empty ring ([`Spsc::empty`]) where
    /// that path may never run: in a process that cannot rely on `membarrier` (its
    /// wake-up takes that for granted, [`Spsc::take_tiny_light`]), or for a pipe whose
    /// tiny records may not be of every tiny length (it compares with [`TINY_MAX`]).
    ready_rx: Spsc,
    pub(super) state: RefCell<RecvState>,
    /// The ring the tiny fast path of [`Receiver::recv_core`] reads: `ready_rx` while
    /// `state` needs nothing done when a whole message is received (no stream half
    /// assembled or being skipped, no count of empty polls), otherwise an always-empty
    /// ring ([`Spsc::empty`]), where that path finds nothing and goes the general way:
    /// no flag to test per message. The fast path does not borrow `state`; every other
    /// use of it goes through [`Receiver::state_mut`], which installs the empty ring,
    /// and the general path of `recv_core` installs `ready_rx` again when it can.
    fast_rx: Cell<Spsc>,
    /// Why the last general receive failed, from [`Receiver::recv_rest`] to its caller.
    failed: Cell<Option<RecvFail>>,
    _t: PhantomData<fn() -> T>,
}

impl<T> Receiver<T> {
    /// A receiver on `end`, which the caller registered.
    pub(super) fn from_end(end: Arc<End>) -> Self {
        let rx = *end.rx.as_ref().expect("a receiving end");
        let ready_rx = if rx.light() && end.tiny_max == TINY_MAX {
            rx
        } else {
            Spsc::empty()
        };
        Receiver {
            end,
            ready_rx,
            state: RefCell::default(),
            fast_rx: Cell::new(ready_rx),
            failed: Cell::new(None),
            _t: PhantomData,
        }
    }
}

impl<T: Serialize + DeserializeOwned> Receiver<T> {
    /// The one core of `recv`, `try_recv` and `recv_timeout`: a small whole message at
    /// the head of the ring inline, everything else through [`recv_general`].
    #[inline(always)]
    pub(super) fn recv_core<E: From<RecvFail>>(&self, wait: Deadline) -> std::result::Result<T, E> {
        // Fastest path, the seed's message: a tiny record, its payload in one word.
        // Every way out gives an `Option<T>`, and the one `Result` is made from it below:
        // a small `T` then stays in registers up to the caller's `match`.
        let got = match self.fast_rx.get().take_tiny_light(TINY_MAX) {
            Some((word, n)) => match codec::decode_word(word, n) {
                Ok(v) => Some(v),
                Err(e) => self.undecodable_word(word, n, e),
            },
            None => self.recv_rest(wait),
        };
        match got {
            Some(v) => Ok(v),
            None => Err(self.recv_failed()),
        }
    }

    /// A tiny record taken on the fast path that did not decode: what
    /// [`End::decode_failed`] makes of it, the failure kept as `recv_rest` keeps one.
    #[cold]
    #[inline(never)]
    fn undecodable_word(&self, word: u64, n: usize, e: Error) -> Option<T> {
        match self.undecodable::<RecvFail>(&word.to_le_bytes()[..n.min(8)], e) {
            Ok(v) => Some(v),
            Err(f) => {
                self.failed.set(Some(f));
                None
            }
        }
    }

    /// [`Receiver::recv_core`] past its tiny fast path: the message, or `None` with the
    /// failure kept in `failed`. An `Option<T>` rather than a `Result<T, E>`: a small
    /// `T` comes back in registers, so the caller's `Result` is built in registers on
    /// both paths (a `Result` returned through memory here made the fast path store
    /// its message there too, and the caller load it back).
    #[inline(never)]
    fn recv_rest(&self, wait: Deadline) -> Option<T> {
        let mut st = self.state_mut();
        let r = self.recv_small_or_general::<RecvFail>(&mut st, wait);
        if st.partial.is_none() && !st.skipping && st.empty_polls == 0 {
            self.fast_rx.set(self.ready_rx);
        }
        match r {
            Ok(v) => Some(v),
            Err(f) => {
                self.failed.set(Some(f));
                None
            }
        }
    }

    /// The failure [`Receiver::recv_rest`] kept, as the caller's error.
    #[cold]
    #[inline(never)]
    fn recv_failed<E: From<RecvFail>>(&self) -> E {
        // `recv_rest` stores one before every `None`; a bad record if it ever did not.
        E::from(
            self.failed
                .take()
                .unwrap_or(RecvFail::Protocol(ProtocolError::BadRecord)),
        )
    }

    /// The receiver's state, for anything but the tiny fast path (which then waits for
    /// the next general receive to find the state clean again).
    pub(super) fn state_mut(&self) -> RefMut<'_, RecvState> {
        self.fast_rx.set(Spsc::empty());
        self.state.borrow_mut()
    }

    /// A small whole message at the head inline, everything else through
    /// [`recv_general`].
    #[inline(always)]
    fn recv_small_or_general<E: From<RecvFail>>(
        &self,
        st: &mut RecvState,
        wait: Deadline,
    ) -> std::result::Result<T, E> {
        let mut small = [0u8; SMALL];
        if let Some(n) = self.end.take_small(st, &mut small) {
            return match codec::decode_small(&small, n) {
                Ok(v) => Ok(v),
                Err(e) => self.undecodable(&small[..n], e),
            };
        }
        recv_general(&self.end, st, wait).map_err(E::from)
    }

    /// A message taken on a fast path (`bytes`) that did not decode: what
    /// [`End::decode_failed`] makes of it.
    #[cold]
    fn undecodable<E: From<RecvFail>>(&self, bytes: &[u8], e: Error) -> std::result::Result<T, E> {
        self.end
            .decode_failed(bytes, e)
            .map_err(|e| RecvFail::Codec(e).into())
    }

    /// Receives a message, blocking until one arrives.
    ///
    /// # Errors
    /// `Disconnected` once every sending end is gone and the ring is drained; `Codec`
    /// when the bytes do not decode as `T` (the message is consumed); `Protocol` when
    /// the peer wrote a corrupt record.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmproc::{pipe, RecvError};
    ///
    /// let (tx, rx) = pipe::<u64>()?;
    /// tx.send(&7).unwrap();
    /// drop(tx); // the last sender: the receiver drains the ring, then sees EOF
    /// assert_eq!(rx.recv(), Ok(7));
    /// assert_eq!(rx.recv(), Err(RecvError::Disconnected));
    /// # Ok::<(), shmproc::Error>(())
    /// ```
    #[inline(always)]
    pub fn recv(&self) -> std::result::Result<T, RecvError> {
        self.recv_core(Deadline::FOREVER)
    }

    /// Receives a message if one is ready now.
    ///
    /// # Errors
    /// `Empty` when none is, or as [`recv`](Self::recv).
    ///
    /// # Examples
    ///
    /// ```
    /// use shmproc::{pipe, TryRecvError};
    ///
    /// let (tx, rx) = pipe::<u64>()?;
    /// assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
    /// tx.send(&1).unwrap();
    /// assert_eq!(rx.try_recv(), Ok(1));
    /// drop(tx);
    /// assert_eq!(rx.try_recv(), Err(TryRecvError::Disconnected));
    /// # Ok::<(), shmproc::Error>(())
    /// ```
    #[inline(always)]
    pub fn try_recv(&self) -> std::result::Result<T, TryRecvError> {
        self.recv_core(Deadline::Now)
    }

    /// Receives a message, waiting at most `timeout`.
    ///
    /// # Errors
    /// `Timeout` when none arrived in time, or as [`recv`](Self::recv).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// use shmproc::{pipe, RecvTimeoutError};
    ///
    /// let (tx, rx) = pipe::<u64>()?;
    /// let nothing = rx.recv_timeout(Duration::from_millis(10));
    /// assert_eq!(nothing, Err(RecvTimeoutError::Timeout));
    /// tx.send(&2).unwrap();
    /// assert_eq!(rx.recv_timeout(Duration::from_secs(10)), Ok(2));
    /// # Ok::<(), shmproc::Error>(())
    /// ```
    #[inline(always)]
    pub fn recv_timeout(&self, timeout: Duration) -> std::result::Result<T, RecvTimeoutError> {
        self.recv_core(Deadline::after(timeout))
    }

    /// Whether a message (or end-of-file) is ready, waiting at most `timeout`, like
    /// Python's `Connection.poll`: `Some(Duration::ZERO)` does not wait; `None` waits
    /// for ever (until a message arrives or every writer end is gone), and so does a
    /// timeout too large to add to the clock (`Duration::MAX`).
    pub fn poll(&self, timeout: Option<Duration>) -> bool {
        self.end.poll(timeout)
    }

    /// Iterates over received messages until the channel disconnects (or a message
    /// fails to decode).
    pub fn iter(&self) -> impl Iterator<Item = T> + '_ {
        std::iter::from_fn(move || self.recv().ok())
    }

    /// Receives one message as raw bytes.
    ///
    /// # Errors
    /// As [`recv`](Self::recv).
    pub fn recv_bytes(&self) -> std::result::Result<Vec<u8>, RecvError> {
        let mut st = self.state.borrow_mut();
        self.end.recv_raw(&mut st, Deadline::FOREVER)?;
        Ok(if st.buf.capacity() > 1 << 20 {
            std::mem::take(&mut st.buf)
        } else {
            st.buf.clone()
        })
    }

    /// Receives one message as raw bytes into `buf` (replacing its contents); returns
    /// its length.
    ///
    /// # Errors
    /// As [`recv`](Self::recv).
    pub fn recv_bytes_into(&self, buf: &mut Vec<u8>) -> std::result::Result<usize, RecvError> {
        let mut st = self.state.borrow_mut();
        std::mem::swap(&mut st.buf, buf);
        let res = self.end.recv_raw(&mut st, Deadline::FOREVER);
        std::mem::swap(&mut st.buf, buf);
        res?;
        Ok(buf.len())
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        handoff::note_drop(self.end.reg_id());
    }
}

impl<T> std::fmt::Debug for Receiver<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Receiver").finish_non_exhaustive()
    }
}

impl<T> Serialize for Receiver<T> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        serialize_end(&self.end, s)
    }
}

impl<'de, T> Deserialize<'de> for Receiver<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let end = deserialize_end(d, Kind::Pipe)?;
        if end.rx.is_none() {
            use serde::de::Error as _;
            return Err(D::Error::custom("not a receiving end"));
        }
        Ok(Receiver::from_end(end))
    }
}

impl<T> Receiver<T> {
    /// This process's share of the channel, for `wait`.
    pub(in crate::channel) fn end(&self) -> &End {
        &self.end
    }
}
