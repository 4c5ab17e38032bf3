//! `Pod` batches: [`Sender::send_slice`] writes plain-data elements as batch records
//! (raw bytes, no serde), [`Receiver::recv_slice`] reads them back across record
//! boundaries, and reads messages sent with `send` too, one element each.
//!
//! # Semantics
//!
//! - A slice is written as one or more batch records of whole elements (about
//!   [`BATCH_RECORD`] bytes each), holding the writer role throughout: no other
//!   sender's message lands inside it. Its records are published as they are written
//!   (a slice larger than the ring streams through it), and all of it is visible when
//!   `send_slice` returns.
//! - A writer killed inside `send_slice` leaves the records it published (a prefix of
//!   the slice, whole elements only) and nothing of the rest: **piecewise, never torn**.
//! - Each record carries the element size and a fingerprint of the element type (a hash
//!   of its name and alignment); `recv_slice` of another type is
//!   [`RecvError::WrongElement`], not garbage, and consumes nothing. `recv` on a batch
//!   is [`RecvError::Batch`] and consumes nothing.

use bytemuck::Pod;
use serde::{de::DeserializeOwned, Serialize};

use super::end::End;
use super::recv::{RecvFail, RecvState};
use super::send::SendFail;
use super::{Connection, Receiver, Sender};
use crate::codec;
use crate::error::{RecvError, SendError, TryRecvError};
use crate::ring::spsc::{record_size, RecKind, BATCH_HDR, REC_HDR};
use crate::sync::Deadline;

/// The payload a batch record holds at most, in bytes (fewer when the ring's largest
/// record is smaller): large enough that a record's header and the reader's look at it
/// cost little per element, small enough that the reader starts copying while the
/// writer still writes the next records.
const BATCH_RECORD: usize = 16 << 10;

/// The size of `T` and its fingerprint: FNV-1a of its type name and alignment.
fn element<T>() -> (u32, u32) {
    let mut h: u32 = 0x811c_9dc5;
    let name = std::any::type_name::<T>().bytes();
    for b in name.chain(std::iter::once(std::mem::align_of::<T>() as u8)) {
        h = (h ^ u32::from(b)).wrapping_mul(0x0100_0193);
    }
    (std::mem::size_of::<T>() as u32, h)
}

impl End {
    /// The core of `send_slice`: batch records of whole elements, published as written,
    /// waiting for room as `send` does.
    fn send_slice<T: Pod + Serialize>(&self, items: &[T]) -> Result<(), SendFail> {
        let tx = self.tx();
        let (elem, fingerprint) = element::<T>();
        let most = tx.max_record() - REC_HDR - BATCH_HDR;
        if elem == 0 || u64::from(elem) > most || std::mem::size_of::<T>() > u32::MAX as usize {
            // Elements too large for a record (or of no size): messages of their own.
            return self.send_all(items);
        }
        if u64::from(elem) > self.max_message {
            return Err(SendFail::TooLarge(elem.into(), self.max_message));
        }
        if items.is_empty() {
            return Ok(());
        }
        if !self.admit(tx) {
            return Err(SendFail::Disconnected);
        }
        let wait = Deadline::FOREVER;
        let g = tx
            .acquire_writer(None, || self.peer_gone())
            .map_err(|w| self.wait_fail(w, wait))?;
        let elem = elem as usize;
        let per = BATCH_RECORD.min(most as usize) / elem * elem;
        let mut rest: &[u8] = bytemuck::cast_slice(items);
        let mut tail = tx.batch_tail(&g);
        while !rest.is_empty() {
            let n = rest.len().min(per);
            let need = record_size(BATCH_HDR + n as u64);
            let off = match tx.reserve_at(&g, &mut tail, need) {
                Some((off, _)) => off,
                None => {
                    // Full: let the reader see what is written, then wait for room.
                    tx.publish(&g, tail);
                    let abort = || self.peer_gone();
                    match tx.wait_writable_at(&g, &mut tail, need, None, abort) {
                        Ok((off, _)) => off,
                        Err(w) => return Err(self.wait_fail(w, wait)),
                    }
                }
            };
            tx.commit_batch_at(&g, &mut tail, off, elem as u32, fingerprint, &rest[..n]);
            rest = &rest[n..];
        }
        tx.publish(&g, tail);
        Ok(())
    }

    /// The core of `recv_slice` and `try_recv_slice`: waits as `wait` says for the first
    /// element, then fills `buf` with what is ready. An error after some elements are
    /// filled is left for the next call (the offending record stays at the head), so no
    /// element is lost.
    fn recv_slice<T: Pod + DeserializeOwned>(
        &self,
        st: &mut RecvState,
        buf: &mut [T],
        wait: Deadline,
    ) -> Result<usize, RecvFail> {
        if buf.is_empty() {
            return Ok(0);
        }
        let rx = self.rx();
        let (elem, fingerprint) = element::<T>();
        let mut filled = 0;
        while filled < buf.len() {
            // A message of a few bytes (sent with `send`): decoded from its word, as
            // `recv`'s fast path does. One that does not decode as an element is taken
            // and reported when it comes first, else left for the next call.
            if st.partial.is_none() {
                if let Some(t) = rx.peek_tiny(self.tiny_max) {
                    match codec::decode_word(t.word, t.len) {
                        Ok(v) => {
                            rx.take_peeked_tiny(&t);
                            st.empty_polls = 0;
                            st.skipping = false;
                            buf[filled] = v;
                            filled += 1;
                            continue;
                        }
                        Err(_) if filled > 0 => break,
                        Err(e) => {
                            rx.take_peeked_tiny(&t);
                            return Err(RecvFail::Codec(e.to_string()));
                        }
                    }
                }
            }
            let rec = match rx.peek() {
                Ok(Some(rec)) => rec,
                _ if filled > 0 => break,
                Ok(None) => {
                    self.await_record(st, wait)?;
                    continue;
                }
                Err(p) => return Err(RecvFail::Protocol(p)),
            };
            st.empty_polls = 0;
            match rec.kind {
                RecKind::Batch => {
                    let head = match rx.batch_head(&rec) {
                        Ok(head) => head,
                        Err(_) if filled > 0 => break,
                        Err(p) => {
                            rx.consume(&rec);
                            return Err(RecvFail::Protocol(p));
                        }
                    };
                    if head.elem != elem || head.fingerprint != fingerprint {
                        if filled > 0 {
                            break;
                        }
                        return Err(RecvFail::WrongElement {
                            size: head.elem,
                            expected: elem,
                        });
                    }
                    // An unfinished stream before it was abandoned (as before a message).
                    st.partial = None;
                    st.skipping = false;
                    let dst: &mut [u8] = bytemuck::cast_slice_mut(&mut buf[filled..]);
                    filled += rx.take_batch(&rec, &head, dst) as usize;
                }
                // Further whole messages join the elements while they decode; one that
                // does not is left for the next call, which reports it.
                RecKind::Msg if filled > 0 => {
                    if st.partial.is_some() || rec.len > self.max_message {
                        break;
                    }
                    st.buf.clear();
                    rx.read_into(&rec, 0, rec.len, &mut st.buf);
                    let Ok(v) = codec::decode(&st.buf) else { break };
                    rx.consume(&rec);
                    buf[filled] = v;
                    filled += 1;
                }
                _ if filled > 0 => break,
                // The first element is a message (whole or streamed): exactly as `recv`.
                _ => match self.recv_raw(st, wait) {
                    Ok(()) => {
                        buf[0] =
                            codec::decode(&st.buf).map_err(|e| RecvFail::Codec(e.to_string()))?;
                        filled = 1;
                    }
                    // A stream abandoned for a batch: read the batch.
                    Err(RecvFail::Batch) => {}
                    Err(e) => return Err(e),
                },
            }
        }
        Ok(filled)
    }
}

impl<T: Pod + Serialize + DeserializeOwned> Sender<T> {
    /// Sends the elements of `items` as raw bytes, without serde: batch records of whole
    /// elements, read with [`Receiver::recv_slice`] (not `recv`, which reports
    /// [`RecvError::Batch`]). Any length: a slice larger than the ring streams through
    /// it. Visible to the receiver when this returns; no other sender's message lands
    /// inside it. A writer killed inside it leaves a prefix of whole elements, never a
    /// torn one (see the module doc of `slice`).
    ///
    /// Elements too large for a record (over a quarter of the ring, less 24 bytes) or of
    /// size 0 go as messages of their own, as [`send_all`](Self::send_all) sends them;
    /// `recv_slice` reads those too.
    ///
    /// ```
    /// let (tx, rx) = shmproc::pipe::<u64>()?;
    /// tx.send_slice(&[1, 2, 3])?;
    /// tx.send(&4)?;
    /// let mut buf = [0u64; 8];
    /// assert_eq!(rx.recv_slice(&mut buf)?, 4);
    /// assert_eq!(buf[..4], [1, 2, 3, 4]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// `Disconnected` as [`send`](Self::send) (the elements written before it was
    /// noticed may have been read); `TooLarge` for an element over `max_message`.
    pub fn send_slice(&self, items: &[T]) -> Result<(), SendError> {
        self.end.send_slice(items).map_err(From::from)
    }
}

impl<T: Pod + Serialize + DeserializeOwned> Receiver<T> {
    /// Receives elements into `buf`: blocks until at least one is ready, then fills what
    /// is ready, up to `buf.len()`, and returns how many. Elements of batches
    /// ([`Sender::send_slice`]) are read across record boundaries (a batch partly read
    /// stays at the head for the next call); each message sent with `send` is one
    /// element, decoded with serde, in order. An empty `buf` returns 0 at once.
    ///
    /// ```
    /// let (tx, rx) = shmproc::pipe::<u32>()?;
    /// tx.send_slice(&[1, 2, 3, 4, 5])?;
    /// let mut buf = [0u32; 2];
    /// assert_eq!(rx.recv_slice(&mut buf)?, 2);
    /// assert_eq!(rx.recv_slice(&mut buf)?, 2);
    /// assert_eq!(rx.recv_slice(&mut buf)?, 1);
    /// assert_eq!(buf[0], 5);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// As [`recv`](Self::recv) for the first element; `WrongElement` when the next batch
    /// holds another element type (nothing consumed). An error met after some elements
    /// were filled is reported by the next call instead.
    pub fn recv_slice(&self, buf: &mut [T]) -> Result<usize, RecvError> {
        let mut st = self.state_mut();
        self.end
            .recv_slice(&mut st, buf, Deadline::FOREVER)
            .map_err(From::from)
    }

    /// [`recv_slice`](Self::recv_slice) without waiting.
    ///
    /// # Errors
    /// `Empty` when no element is ready, or as [`recv_slice`](Self::recv_slice).
    pub fn try_recv_slice(&self, buf: &mut [T]) -> Result<usize, TryRecvError> {
        let mut st = self.state_mut();
        self.end
            .recv_slice(&mut st, buf, Deadline::Now)
            .map_err(From::from)
    }
}

impl<T: Pod + Serialize + DeserializeOwned> Connection<T> {
    /// [`Sender::send_slice`] to the other end.
    ///
    /// # Errors
    /// As [`Sender::send_slice`].
    pub fn send_slice(&self, items: &[T]) -> Result<(), SendError> {
        self.tx.send_slice(items)
    }

    /// [`Receiver::recv_slice`] from the other end.
    ///
    /// # Errors
    /// As [`Receiver::recv_slice`].
    pub fn recv_slice(&self, buf: &mut [T]) -> Result<usize, RecvError> {
        self.rx.recv_slice(buf)
    }

    /// [`Receiver::try_recv_slice`] from the other end.
    ///
    /// # Errors
    /// As [`Receiver::try_recv_slice`].
    pub fn try_recv_slice(&self, buf: &mut [T]) -> Result<usize, TryRecvError> {
        self.rx.try_recv_slice(buf)
    }
}

#[cfg(test)]
mod tests {
    use super::super::{pipe, Sender};
    use crate::error::RecvError;

    #[test]
    fn a_tiny_message_that_is_no_element_is_left_for_the_next_call_then_reported() {
        let (tx, rx) = pipe::<u64>().unwrap();
        // A sender of another type on the same end: `[0xFF]` is one byte, a varint that
        // never ends as a `u64`.
        let bad = Sender::<[u8; 1]>::from_end(tx.end.clone());
        tx.send(&1).unwrap();
        bad.send(&[0xFF]).unwrap();
        tx.send(&2).unwrap();
        let mut buf = [0u64; 4];
        assert_eq!(rx.recv_slice(&mut buf), Ok(1));
        assert_eq!(buf[0], 1);
        assert!(matches!(rx.recv_slice(&mut buf), Err(RecvError::Codec(_))));
        assert_eq!(rx.recv_slice(&mut buf), Ok(1));
        assert_eq!(buf[0], 2);
    }
}
