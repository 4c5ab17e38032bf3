//! Messages written and read where they lie (`send_with`, `recv_with`): the ring lends
//! a slice of its memory to the caller's closure.
//!
//! # The in-place contract
//!
//! A lent slice is a reference into shared memory. The protocol gives the space to one
//! side at a time — free space to the writer holding the writer role, a published
//! record to the reader until it hands it back — so as long as every process follows
//! the protocol, nobody else touches the slice while it is lent. A hostile process that
//! maps the region and writes into it at the same time is outside that contract (the
//! copying methods, which never form a reference into shared memory, keep the full
//! guarantee against it).

use super::owner::WriteGuard;
use super::record::{tiny_len, RecKind, Record, REC_HDR};
use super::Spsc;

impl Spsc {
    /// Lends the payload space `[off + REC_HDR, + len)` of a window from
    /// [`Spsc::reserve`] (or [`Spsc::reserve_wait`]) holding `record_size(len)` bytes to
    /// `fill`; the caller publishes it with [`Spsc::commit`] after. The space holds
    /// whatever earlier records left there (free space is not cleared: see
    /// `Spsc::publish_at`). If `fill` panics, nothing is published and the space simply
    /// stays free.
    pub(crate) fn fill_in_place<R>(
        &self,
        g: &WriteGuard<'_>,
        off: u64,
        len: u64,
        fill: impl FnOnce(&mut [u8]) -> R,
    ) -> R {
        debug_assert!(len <= self.max_in_place() && off + REC_HDR + len <= self.cap);
        let ptr = self.data_ptr(g, off + REC_HDR);
        // SAFETY: the window is free space inside the data area that the writer guard
        // gives this thread alone, and the reader does not look at it before the header
        // is published; under the in-place contract (module doc) no other process writes
        // it either, so a unique reference for the duration of `fill` is sound. Its
        // bytes are initialized (the mapping is zero-filled when created and only ever
        // holds bytes since). The mapping outlives `self`, which outlives the borrow.
        let slice = unsafe { std::slice::from_raw_parts_mut(ptr, len as usize) };
        fill(slice)
    }

    /// Lends the payload of a whole message `rec` from [`Spsc::peek`] to `read`; the
    /// caller consumes the record after. A tiny record's payload (in its header word) is
    /// lent from a copy on the stack.
    pub(crate) fn read_in_place<R>(&self, rec: &Record, read: impl FnOnce(&[u8]) -> R) -> R {
        debug_assert!(rec.kind == RecKind::Msg);
        if let Some(n) = tiny_len(rec.word) {
            return read(&rec.word.to_le_bytes()[..n as usize]);
        }
        // SAFETY: `peek` checked that the record lies inside the data area, and it is
        // published (its header was Acquire-loaded): the reader owns it until it hands it
        // back, which the caller does only after `read` returns; under the in-place
        // contract (module doc) nobody writes it meanwhile, so a shared reference is
        // sound for the duration of `read`.
        let slice = unsafe {
            std::slice::from_raw_parts(
                self.data().as_ptr().add((rec.off + REC_HDR) as usize),
                rec.len as usize,
            )
        };
        read(slice)
    }
}
