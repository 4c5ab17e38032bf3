//! The reader's side: finding the next record by its header word, copying it out,
//! handing space back, waiting for data.

use std::time::Instant;

use super::copy_bytes;
use super::record::{
    align8, parse_header, record_size, tiny_len, RecKind, Record, REC_HDR, TINY_MAX, TINY_TAG,
};
use super::Spsc;
use crate::error::ProtocolError;
use crate::sync::atomic::Ordering;
use crate::sync::waiter::Wait;

/// Spin hints (~25 ns each on the development machines) a reader that caught up with a
/// streaming writer first pauses before it looks at the head again, the first time (see
/// [`Spsc::wait_readable`]); each further catch-up in the same stream doubles the pause,
/// up to [`HEELS_PAUSE_MAX`] (about 3 µs).
const HEELS_PAUSE: u32 = if cfg!(loom) { 0 } else { 8 };

/// The longest pause of a reader at a streaming writer's heels, in spin hints.
const HEELS_PAUSE_MAX: u32 = if cfg!(loom) { 0 } else { 128 };

/// What a reader must have consumed since its last wait for the next one to count as a
/// catch-up with a streaming writer (32 tiny records): below it (ping-pong, a trickle
/// of messages) it looks at once.
pub(super) const STREAM_BYTES: u64 = 256;

/// How a reader's waits for a record went, kept by the caller from one wait to the next
/// ([`Spsc::wait_readable`]).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Pace {
    /// The reader's `head` when its last wait ended.
    head: u64,
    /// The spin hints its last wait paused before its first look.
    pause: u32,
}

#[cfg(test)]
impl Pace {
    /// The spin hints the last wait paused.
    pub(super) fn pause(&self) -> u32 {
        self.pause
    }
}

/// The payload length of `word` read at the reader's position if it is a tiny record
/// of at most `max` bytes.
#[inline(always)]
fn tiny_payload(word: u64, max: u64) -> Option<usize> {
    // Byte 7 the tiny tag and byte 6 a length of at most `max` (<= TINY_MAX), in one
    // compare (an empty word fails it too).
    debug_assert!(max <= TINY_MAX);
    let top = (word >> 48).wrapping_sub(TINY_TAG << 8);
    if top > max {
        return None;
    }
    // `top <= max <= TINY_MAX < 8`: the mask changes nothing, and tells the caller's
    // decoder that the length needs no check against the word's 8 bytes.
    const { assert!(TINY_MAX < 8) };
    Some(top as usize & 7)
}

/// A tiny record at the reader's position ([`Spsc::peek_tiny`]).
pub(crate) struct Tiny {
    /// The reader's `head` at it.
    pos: u64,
    /// Its word: the payload in the low `len` bytes, the tag and length above them.
    pub(crate) word: u64,
    /// The payload's length (at most [`TINY_MAX`]).
    pub(crate) len: usize,
}

/// The next record's word as the reader finds it (see [`Spsc::head_word`]).
#[derive(Clone, Copy)]
struct Head {
    /// The reader's position.
    pos: u64,
    off: u64,
    word: u64,
}

impl Spsc {
    /// The next record, skipping padding; `Ok(None)` when the ring is empty. The header
    /// is validated against the ring's bounds.
    #[inline]
    pub(crate) fn peek(&self) -> Result<Option<Record>, ProtocolError> {
        loop {
            let Some(Head { pos, off, word }) = self.head_word() else {
                return Ok(None);
            };
            let (kind, len) = parse_header(word).ok_or(ProtocolError::BadRecord)?;
            let to_end = self.cap - off;
            if kind == RecKind::Pad {
                // A pad runs to the end of the ring; and none starts at offset 0 (a
                // record always fits there), so this loop turns at most twice, whatever
                // a peer wrote (a pad spanning the whole ring, at 0, would otherwise
                // lead back to itself again and again).
                if len != to_end - REC_HDR || off == 0 {
                    return Err(ProtocolError::BadRecord);
                }
                self.release(pos.wrapping_add(to_end));
                continue;
            }
            let rec = Record {
                kind,
                len,
                off,
                pos,
                word,
            };
            if !self.record_fits(rec.size(), off) {
                return Err(ProtocolError::BadRecord);
            }
            return Ok(Some(rec));
        }
    }

    /// The reader's fast path for the common record: a whole message (`MSG`, or tiny)
    /// of at most `N` payload bytes at the head. Copies its payload into `out`, consumes
    /// the record and returns the payload length. `None` when the ring is empty or the
    /// head holds anything else (padding, a piece of a stream, a larger message, a bad
    /// header): the caller then takes the general path ([`Spsc::peek`]), which handles
    /// or reports it.
    #[inline(always)]
    pub(crate) fn take_small<const N: usize>(&self, out: &mut [u8; N]) -> Option<usize> {
        const { assert!(N % 8 == 0 && N >= 8) };
        let Head { pos, off, word } = self.head_word()?;
        if word >> 56 == TINY_TAG {
            let len = (word >> 48) & 0xFF;
            if len > TINY_MAX {
                return None; // a bad header: `peek` reports it
            }
            out[..8].copy_from_slice(&word.to_le_bytes());
            self.release(pos.wrapping_add(REC_HDR));
            return Some(len as usize);
        }
        let len = word & 0xFFFF_FFFF;
        if (word >> 32) as u32 != RecKind::Msg.tag() || len > N as u64 {
            return None;
        }
        let size = record_size(len);
        if !self.record_fits(size, off) {
            return None;
        }
        // SAFETY: the payload [off + 8, off + 8 + align8(len)) lies inside the record,
        // which was just checked to be inside the data area, and published (its header
        // was Acquire-loaded): the reader owns it until it hands it back below;
        // align8(len) <= N because N is a multiple of 8; `out` is a local array that
        // cannot overlap shared memory.
        unsafe {
            let src = self.data().as_ptr().add((off + REC_HDR) as usize);
            copy_bytes(src, out.as_mut_ptr(), align8(len) as usize);
        }
        self.release(pos.wrapping_add(size));
        Some(len as usize)
    }

    /// [`Spsc::take_tiny_light`] with the wake-up's fence as this handle's `light` says,
    /// for the unit tests.
    #[cfg(test)]
    pub(crate) fn take_tiny(&self, max: u64) -> Option<(u64, usize)> {
        self.take_tiny_with(max, self.light)
    }

    /// The reader's fast path for the seed's message: a tiny record at the head. Takes
    /// it (handed back at once, as [`Spsc::take_small`] does) and returns its word (the
    /// payload in the low bytes, the tag and length above it) and the payload length.
    /// `None` when the ring is empty or the head holds anything else (a tiny record
    /// longer than `max` too), which the general path handles or reports. Only in a
    /// process that can rely on `membarrier` ([`Spsc::light`]), which the caller checked
    /// once for many receives: the wake-up check after it then tests nothing more per
    /// message.
    ///
    /// Not written as [`Spsc::peek_tiny`] then [`Spsc::take_peeked_tiny`]: that form
    /// loads the ring's header pointer twice on the seed's receive path (one more
    /// instruction per message, measured).
    #[inline(always)]
    pub(crate) fn take_tiny_light(&self, max: u64) -> Option<(u64, usize)> {
        self.take_tiny_with(max, true)
    }

    #[inline(always)]
    fn take_tiny_with(&self, max: u64, light: bool) -> Option<(u64, usize)> {
        let pos = self.hdr().r.head.load(Ordering::Relaxed);
        // Masked, as in `head_word`, whatever a peer stored in `head`.
        let off = pos & self.mask;
        // Pairs with the writer's Release store of the record's word.
        let word = self.word(off).load(Ordering::Acquire);
        let len = tiny_payload(word, max)?;
        debug_assert!(self.light || !light, "a light wake-up without membarrier");
        self.release_with(pos.wrapping_add(REC_HDR), light);
        Some((word, len))
    }

    /// [`Spsc::take_tiny_light`] without taking: the tiny record at the head, left there
    /// until [`Spsc::take_peeked_tiny`] (for a caller that may have to leave it, such
    /// as `recv_slice` when the message does not decode as an element).
    #[inline(always)]
    pub(crate) fn peek_tiny(&self, max: u64) -> Option<Tiny> {
        let pos = self.hdr().r.head.load(Ordering::Relaxed);
        let off = pos & self.mask;
        let word = self.word(off).load(Ordering::Acquire);
        let len = tiny_payload(word, max)?;
        Some(Tiny { pos, word, len })
    }

    /// Takes the tiny record [`Spsc::peek_tiny`] found at the head (hands its space
    /// back).
    #[inline(always)]
    pub(crate) fn take_peeked_tiny(&self, t: &Tiny) {
        self.release(t.pos.wrapping_add(REC_HDR));
    }

    /// The word at the reader's position, `None` when it is zero (nothing published
    /// there yet). Shared by [`Spsc::peek`] and [`Spsc::take_small`].
    #[inline(always)]
    fn head_word(&self) -> Option<Head> {
        let pos = self.hdr().r.head.load(Ordering::Relaxed);
        // Masking keeps the offset 8-aligned and in bounds whatever `head` holds (a peer
        // may scribble over it; garbage then fails the callers' checks).
        let off = pos & self.mask;
        // Pairs with the writer's Release store of the record's header.
        let word = self.word(off).load(Ordering::Acquire);
        if word == 0 {
            return None;
        }
        Some(Head {
            pos: pos & !7,
            off,
            word,
        })
    }

    /// Consumes a record ending at `end`: moves `head` past it, which hands its space
    /// back to the writer, and wakes the writer if it waits for room. Nothing is
    /// zeroed: the writer zeroes the word after each record it publishes
    /// (`Spsc::publish_at`), so the reader finds zero or a new header wherever it looks,
    /// and the reader writes only its own line (a reader zeroing what it consumed had
    /// both cores write the data lines in turn, which cost every lap of the ring).
    #[inline(always)]
    fn release(&self, end: u64) {
        self.release_with(end, self.light);
    }

    /// [`Spsc::release`], its wake-up's fence as `light` says ([`Waiter::wake_all_with`]).
    ///
    /// [`Waiter::wake_all_with`]: crate::sync::waiter::Waiter::wake_all_with
    #[inline(always)]
    fn release_with(&self, end: u64, light: bool) {
        // Pairs with the writer's Acquire load of `head` when its cache says full.
        self.hdr().r.head.store(end, Ordering::Release);
        self.hdr().writable.wake_all_with(light);
    }

    /// Whether a record of `size` bytes (header included) at offset `off` lies inside
    /// the data area and within a record's size (a whole message written in place may
    /// hold [`Spsc::max_in_place`] bytes, a multiple of 8, one header over
    /// [`Spsc::max_record`]).
    #[inline(always)]
    fn record_fits(&self, size: u64, off: u64) -> bool {
        size <= self.cap - off && size <= self.max_in_place() + REC_HDR
    }

    /// Appends bytes `[from, from + n)` of the record's payload to `out`.
    #[inline]
    pub(crate) fn read_into(&self, rec: &Record, from: u64, n: u64, out: &mut Vec<u8>) {
        assert!(from + n <= rec.len, "read past the record");
        if tiny_len(rec.word).is_some() {
            out.extend_from_slice(&rec.word.to_le_bytes()[from as usize..(from + n) as usize]);
            return;
        }
        out.reserve(n as usize);
        let dst_len = out.len();
        // SAFETY: the record was validated by `peek`: [off+8, off+8+len) lies inside the
        // data area, and it is published: the reader owns it until `consume`. The
        // destination has `n` bytes of spare capacity (reserved above).
        unsafe {
            let src = self
                .data()
                .as_ptr()
                .add((rec.off + REC_HDR + from) as usize);
            copy_bytes(src, out.as_mut_ptr().add(dst_len), n as usize);
            out.set_len(dst_len + n as usize);
        }
    }

    /// Reads the first 8 payload bytes of a record as a u64 (a `BEGIN`'s total).
    pub(crate) fn read_u64(&self, rec: &Record) -> Option<u64> {
        if rec.len < 8 {
            return None;
        }
        // SAFETY: validated record with at least 8 payload bytes, 8-aligned.
        Some(unsafe {
            self.data()
                .as_ptr()
                .add((rec.off + REC_HDR) as usize)
                .cast::<u64>()
                .read()
        })
    }

    /// Consumes a record: hands its space back to the writer, waking it if it waits for
    /// room.
    #[inline]
    pub(crate) fn consume(&self, rec: &Record) {
        let size = rec.size();
        self.release(rec.pos.wrapping_add(size));
    }

    /// Waits until a record (or padding) is published, `deadline` passes or `abort`,
    /// watching the word at the reader's position (never the writer's `tail` line).
    ///
    /// `pace` (a receive loop's, `None` for a one-off wait such as `poll`) says how the
    /// reader's last wait went. A reader that consumed at least [`STREAM_BYTES`] since
    /// then, and now finds the ring empty, has caught up with a streaming writer: each
    /// further look would pull the line the writer is writing away from it, and a
    /// reader that reads each record as soon as it is written keeps doing so. So it
    /// first pauses, letting the writer run ahead: [`HEELS_PAUSE`] spin hints the first
    /// time, twice the last pause each further time, up to [`HEELS_PAUSE_MAX`]; a wait
    /// that took more than two looks (the writer paused) starts the doubling again.
    /// Measured on the seed's experiment at 10^6 messages: a reader 2 ns slower per
    /// message made the whole run twice as fast, and so did this pause (both sides
    /// then work on lines the other is not touching). Records of 24 to 104 bytes, which
    /// straddle cache lines, went 3x slower without a pause. A reader that consumed
    /// less (ping-pong, a trickle of messages) looks at once, so latency is unchanged.
    /// (Watching `tail` instead after a larger record, which the writer writes with
    /// several stores, measured no better.)
    pub(crate) fn wait_readable(
        &self,
        deadline: Option<Instant>,
        abort: impl FnMut() -> bool,
        mut pace: Option<&mut Pace>,
    ) -> Wait {
        if let Some(p) = pace.as_deref_mut() {
            let consumed = self
                .hdr()
                .r
                .head
                .load(Ordering::Relaxed)
                .wrapping_sub(p.head);
            p.pause = if consumed >= STREAM_BYTES {
                p.pause
                    .saturating_mul(2)
                    .clamp(HEELS_PAUSE, HEELS_PAUSE_MAX)
            } else {
                0
            };
            for _ in 0..p.pause {
                std::hint::spin_loop();
            }
        }
        let mut looks = 0u32;
        let outcome = self.hdr().readable.wait_until(
            deadline,
            || {
                looks = looks.saturating_add(1);
                self.has_data()
            },
            abort,
        );
        if let Some(p) = pace {
            p.head = self.hdr().r.head.load(Ordering::Relaxed);
            if looks > 2 {
                p.pause = 0;
            }
        }
        outcome
    }

    /// Whether the counters are ones the two sides could have left: both 8-aligned, and
    /// `tail` within a ring of the reader's `head` on either side (the reader may run
    /// ahead of `tail` by what was published but not yet counted). The reader's fast
    /// path needs neither counter's sanity, so it checks them when it finds nothing to
    /// read: a peer that scribbled over them (a garbage `head` makes the ring look full
    /// to the writer) gets a protocol error rather than a reader that waits forever.
    pub(crate) fn counters_sane(&self) -> bool {
        let tail = self.hdr().w.tail.load(Ordering::Relaxed);
        let head = self.hdr().r.head.load(Ordering::Relaxed);
        (tail | head) % 8 == 0
            && (tail.wrapping_sub(head) <= self.cap || head.wrapping_sub(tail) <= self.cap)
    }

    /// Whether anything is published and unread.
    #[inline]
    pub(crate) fn has_data(&self) -> bool {
        self.head_word().is_some()
    }
}
