//! Records of plain-data elements (`BATCH`), written by `send_slice` and read across
//! record boundaries by `recv_slice`.
//!
//! ```text
//! [ header: len, BATCH ][ element size: u32, type fingerprint: u32 ][ taken: u64 ][ elements ]
//! ```
//!
//! `len` counts the two words after the header and the elements, which are whole:
//! `(len - BATCH_HDR)` is a non-zero multiple of the element size. `taken` is the
//! reader's cursor: the writer writes 0, and a reader that takes only some of the
//! elements stores how many it has taken there and leaves the record at the head (the
//! record is the reader's from the moment it is published until it is handed back, so
//! the cursor is in the reader's own space, and a reader that dies after taking some
//! elements leaves the count for the next one: no element is delivered twice). The
//! record is consumed (handed back) once every element is taken.

use super::owner::WriteGuard;
use super::record::{RecKind, Record, REC_HDR};
use super::Spsc;
use crate::error::ProtocolError;
use crate::sync::atomic::Ordering;

/// Payload bytes of a batch record before its elements (the element word, the cursor).
pub(crate) const BATCH_HDR: u64 = 16;

/// A validated batch record at the reader's head.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BatchHead {
    /// Element size in bytes (non-zero).
    pub(crate) elem: u32,
    /// The element type's fingerprint, as the writer wrote it.
    pub(crate) fingerprint: u32,
    /// Elements the reader has taken already.
    pub(crate) taken: u64,
    /// Elements in the record (more than `taken`).
    pub(crate) count: u64,
}

impl Spsc {
    /// Writes `bytes` (whole elements of `elem` bytes, at least one) as a batch record at
    /// `off`, within a window from [`Spsc::reserve_at`] holding
    /// `record_size(BATCH_HDR + bytes.len())` bytes, and publishes it as
    /// [`Spsc::commit_at`] does.
    #[inline]
    pub(crate) fn commit_batch_at(
        &self,
        g: &WriteGuard<'_>,
        tail: &mut u64,
        off: u64,
        elem: u32,
        fingerprint: u32,
        bytes: &[u8],
    ) {
        debug_assert!(elem > 0 && !bytes.is_empty() && bytes.len() % elem as usize == 0);
        // The two words are in the window, which the writer guard gives this thread;
        // published by the Release store of the header in `commit_at`.
        self.word(off + REC_HDR).store(
            u64::from(elem) | u64::from(fingerprint) << 32,
            Ordering::Relaxed,
        );
        self.word(off + REC_HDR + 8).store(0, Ordering::Relaxed);
        // SAFETY: the window holds the record, so [off + 24, off + 24 + len) is free
        // space the writer guard gives this thread alone; the source is the caller's
        // slice, which cannot overlap it (a shared-memory slice is never lent out).
        unsafe {
            std::ptr::copy_nonoverlapping(
                bytes.as_ptr(),
                self.data_ptr(g, off + REC_HDR + BATCH_HDR),
                bytes.len(),
            )
        };
        self.commit_at(g, tail, off, RecKind::Batch, BATCH_HDR + bytes.len() as u64);
    }

    /// Validates a batch record from [`Spsc::peek`] (which checked it lies in the
    /// ring): whole, non-zero elements, and a cursor below their number.
    pub(crate) fn batch_head(&self, rec: &Record) -> Result<BatchHead, ProtocolError> {
        debug_assert!(rec.kind == RecKind::Batch);
        if rec.len <= BATCH_HDR {
            return Err(ProtocolError::BadRecord);
        }
        let info = self.word(rec.off + REC_HDR).load(Ordering::Relaxed);
        let taken = self.word(rec.off + REC_HDR + 8).load(Ordering::Relaxed);
        let elem = info as u32;
        let bytes = rec.len - BATCH_HDR;
        if elem == 0 || bytes % u64::from(elem) != 0 {
            return Err(ProtocolError::BadRecord);
        }
        let count = bytes / u64::from(elem);
        if taken >= count {
            return Err(ProtocolError::BadRecord);
        }
        Ok(BatchHead {
            elem,
            fingerprint: (info >> 32) as u32,
            taken,
            count,
        })
    }

    /// Copies the next elements of the batch record `rec` (validated as `head`) into
    /// `dst`, as many as are left and fit (whole elements), and returns how many. The
    /// record is consumed once all are taken; until then the cursor in it says how many
    /// were.
    pub(crate) fn take_batch(&self, rec: &Record, head: &BatchHead, dst: &mut [u8]) -> u64 {
        let elem = u64::from(head.elem);
        let k = (head.count - head.taken).min(dst.len() as u64 / elem);
        if k == 0 {
            return 0;
        }
        // SAFETY: `peek` checked the record lies in the data area and `batch_head` that
        // elements [taken, count) lie in its payload, so the source range
        // [off + 24 + taken * elem, + k * elem) is inside the published record, which the
        // reader owns until it hands it back below; `dst` is the caller's memory, not the
        // ring's, with room for k * elem bytes.
        unsafe {
            let src = self
                .data()
                .as_ptr()
                .add((rec.off + REC_HDR + BATCH_HDR + head.taken * elem) as usize);
            std::ptr::copy_nonoverlapping(src, dst.as_mut_ptr(), (k * elem) as usize);
        }
        let taken = head.taken + k;
        if taken == head.count {
            self.consume(rec);
        } else {
            // The reader's own record: nobody else reads or writes it until handed back.
            self.word(rec.off + REC_HDR + 8)
                .store(taken, Ordering::Relaxed);
        }
        k
    }
}
