//! The encoder's window: a raw byte sink over reserved free space, and the varint
//! writer it shares with the codec.

use super::copy_bytes;
use super::owner::WriteGuard;
use super::record::{RecKind, REC_HDR};
use super::Spsc;

impl Spsc {
    /// A raw byte sink over `[off + REC_HDR, off + REC_HDR + max)`, for an encoder to
    /// write a record's payload in place. `off` and `max` come from [`Spsc::reserve`]
    /// (`max <= window - REC_HDR`).
    #[inline(always)]
    pub(crate) fn sink<'g>(&'g self, g: &'g WriteGuard<'_>, off: u64, max: u64) -> RawSink<'g> {
        debug_assert!(off + REC_HDR + max <= self.cap);
        RawSink {
            ptr: self.data_ptr(g, off + REC_HDR),
            cap: max as usize,
            pos: 0,
            _g: std::marker::PhantomData,
        }
    }

    /// Publishes the record a sink from [`Spsc::sink`] at `off` wrote (as
    /// [`Spsc::commit`]).
    #[inline(always)]
    pub(crate) fn commit_sink(
        &self,
        g: &WriteGuard<'_>,
        off: u64,
        kind: RecKind,
        sink: RawSink<'_>,
    ) {
        let len = sink.keep();
        self.commit(g, off, kind, len);
    }

    /// [`Spsc::commit_at`] for the record a sink wrote.
    #[inline(always)]
    pub(crate) fn commit_sink_at(
        &self,
        g: &WriteGuard<'_>,
        tail: &mut u64,
        off: u64,
        kind: RecKind,
        sink: RawSink<'_>,
    ) {
        let len = sink.keep();
        self.commit_at(g, tail, off, kind, len);
    }
}

/// A bounds-checked byte sink writing into a reserved window of the ring through a raw
/// pointer (no reference to shared memory is ever formed). Dropped without being
/// committed ([`Spsc::commit_sink`]) — the encoder ran out of room or failed, or a
/// `Serialize` panicked — what it wrote stays in free space, unpublished, where nobody
/// reads it (the writer zeroes only the word after each record it publishes).
pub(crate) struct RawSink<'g> {
    ptr: *mut u8,
    cap: usize,
    pos: usize,
    _g: std::marker::PhantomData<&'g ()>,
}

impl RawSink<'_> {
    /// Hands the written bytes over to be published; returns their number.
    #[inline(always)]
    fn keep(self) -> u64 {
        self.pos as u64
    }

    /// Appends one byte; false when the window is full.
    #[inline(always)]
    pub(crate) fn push(&mut self, b: u8) -> bool {
        if self.pos < self.cap {
            // SAFETY: pos < cap, and [ptr, ptr + cap) is the reserved window, which the
            // writer guard gives this thread alone.
            unsafe { self.ptr.add(self.pos).write(b) };
            self.pos += 1;
            true
        } else {
            false
        }
    }

    /// Appends bytes; false (writing nothing) when they do not fit.
    #[inline(always)]
    pub(crate) fn extend(&mut self, bytes: &[u8]) -> bool {
        if bytes.len() <= self.cap - self.pos {
            // SAFETY: the range [pos, pos + len) is inside the reserved window; the
            // source is a local slice and cannot overlap it.
            unsafe { copy_bytes(bytes.as_ptr(), self.ptr.add(self.pos), bytes.len()) };
            self.pos += bytes.len();
            true
        } else {
            false
        }
    }

    /// Appends `v` as a LEB128 varint (7 bits per byte, low first); false (writing
    /// nothing) when it does not fit. One bounds check for the whole varint.
    #[inline(always)]
    pub(crate) fn varint(&mut self, mut v: u64) -> bool {
        if self.cap - self.pos < 10 {
            let mut buf = [0u8; 10];
            let n = write_varint(v, &mut buf);
            return self.extend(&buf[..n]);
        }
        let mut n = 0;
        // SAFETY: a varint of a u64 is at most 10 bytes and at least 10 are left in the
        // reserved window [ptr, ptr + cap), which the writer guard gives this thread
        // alone; `n` stays below 10 in the loop (a u64 has 64 bits, 7 per byte).
        unsafe {
            let p = self.ptr.add(self.pos);
            while v >= 0x80 {
                p.add(n).write(v as u8 | 0x80);
                v >>= 7;
                n += 1;
            }
            p.add(n).write(v as u8);
        }
        self.pos += n + 1;
        true
    }

    /// Bytes written so far.
    #[inline(always)]
    pub(crate) fn written(&self) -> usize {
        self.pos
    }
}

/// Writes `v` as a LEB128 varint (7 bits per byte, low first) into `buf`; returns the
/// length (1 to 10). The one varint writer of the crate: [`RawSink::varint`]'s slow
/// path, and the codec's outputs.
#[inline(always)]
pub(crate) fn write_varint(mut v: u64, buf: &mut [u8; 10]) -> usize {
    let mut i = 0;
    while v >= 0x80 {
        buf[i] = v as u8 | 0x80;
        v >>= 7;
        i += 1;
    }
    buf[i] = v as u8;
    i + 1
}
