//! The writer's side: reserving room, publishing records (whole, tiny, small, or in a
//! batch), waiting for room.

use std::time::Instant;

use super::copy_bytes;
use super::owner::WriteGuard;
use super::record::{header_word, record_size, tiny_word, RecKind, NEXT_SLOT, REC_HDR, TINY_MAX};
use super::{Base, Spsc, NO_ROOM};
use crate::sync::atomic::{light_fence, Ordering};
use crate::sync::owner::cached_tag;
use crate::sync::waiter::Wait;

/// Free bytes beyond its record a waiting writer gives the reader a few microseconds to
/// hand back before it goes on (at most an eighth of the ring; see
/// `Spsc::await_resume_room`).
const RESUME_ROOM: u64 = 4096;
/// Looks at `head` that wait takes at most, with [`RESUME_PAUSE`] spin hints between.
const RESUME_LOOKS: u32 = if cfg!(loom) { 0 } else { 32 };
/// Spin hints between two looks of that wait.
const RESUME_PAUSE: u32 = 8;

impl Spsc {
    /// Contiguous free bytes at the tail (padding over the end of the ring first when
    /// `need` does not fit before it), or `None` when fewer than `need` are free now.
    /// `need` is a multiple of 8 and at most a record of [`Spsc::max_in_place`] bytes.
    #[inline]
    pub(crate) fn reserve(&self, g: &WriteGuard<'_>, need: u64) -> Option<(u64, u64)> {
        let w = &self.hdr().w;
        let before = w.tail.load(Ordering::Relaxed);
        let mut tail = before;
        let slot = self.reserve_at(g, &mut tail, need);
        if tail != before {
            // Publish the pad; pairs with the reader's Acquire load of `tail`.
            w.tail.store(tail, Ordering::Release);
        }
        slot
    }

    /// [`Spsc::reserve`] for a batch: `tail` is the writer's copy of the tail (from
    /// [`Spsc::batch_tail`]), stored by [`Spsc::commit_at`] and [`Spsc::publish`].
    /// Records (and padding) are visible to the reader as soon as their headers are.
    #[inline(always)]
    pub(crate) fn reserve_at(
        &self,
        _g: &WriteGuard<'_>,
        tail: &mut u64,
        need: u64,
    ) -> Option<(u64, u64)> {
        debug_assert!(need % 8 == 0 && need <= record_size(self.max_in_place()));
        let w = &self.hdr().w;
        let mut head = w.cached_head.load(Ordering::Relaxed);
        // Masked to a word: `tail` is shared memory, and a scribbling peer must not make
        // the writer form a misaligned header word (the reader reports the garbage
        // counter, `Spsc::counters_sane`).
        let mut off = *tail & self.mask;
        let mut to_end = self.cap - off;
        // Plus the word after the record, which its publication zeroes (`publish_at`).
        let total = NEXT_SLOT + if need <= to_end { need } else { to_end + need };
        if tail.wrapping_add(total).wrapping_sub(head) > self.cap {
            // Pairs with the reader's Release store of `head`: the bytes it consumed are free.
            head = self.hdr().r.head.load(Ordering::Acquire);
            w.cached_head.store(head, Ordering::Relaxed);
            if tail.wrapping_add(total).wrapping_sub(head) > self.cap {
                return None;
            }
        }
        if need > to_end {
            // [off, cap) and the word at 0 are free (checked above).
            self.publish_at(off, to_end, header_word(RecKind::Pad, to_end - REC_HDR));
            *tail = tail.wrapping_add(to_end);
            off = 0;
            to_end = self.cap;
        }
        // The window leaves the word after it free, for the next header slot.
        let free = self.cap - tail.wrapping_sub(head) - NEXT_SLOT;
        Some((off, free.min(to_end)))
    }

    /// The published tail, where a batch starts.
    #[inline(always)]
    pub(crate) fn batch_tail(&self, _g: &WriteGuard<'_>) -> u64 {
        self.hdr().w.tail.load(Ordering::Relaxed)
    }

    /// Publishes a batched record whose payload is already at `off + REC_HDR` (within a
    /// window from [`Spsc::reserve_at`]) and advances `tail` past it, the private copy
    /// and the shared one (a store to the writer's own line: the reader never reads it
    /// on its fast path, but checks on an empty ring that it is within a ring of its
    /// position, `Spsc::counters_sane`). The wake-up waits for [`Spsc::publish`].
    #[inline(always)]
    pub(crate) fn commit_at(
        &self,
        _g: &WriteGuard<'_>,
        tail: &mut u64,
        off: u64,
        kind: RecKind,
        len: u64,
    ) {
        *tail = tail.wrapping_add(self.publish_record(off, kind, len));
        self.hdr().w.tail.store(*tail, Ordering::Release);
    }

    /// [`Spsc::commit_at`] for a tiny record: the low `len <= TINY_MAX` bytes of
    /// `bytes` (whose other bytes are zero), written with one store at `off`, which
    /// [`Spsc::reserve_at`] returned.
    #[inline(always)]
    pub(crate) fn commit_tiny_at(
        &self,
        _g: &WriteGuard<'_>,
        tail: &mut u64,
        off: u64,
        bytes: u64,
        len: u64,
    ) {
        self.publish_at(off, REC_HDR, tiny_word(bytes, len));
        *tail = tail.wrapping_add(REC_HDR);
        self.hdr().w.tail.store(*tail, Ordering::Release);
    }

    /// Ends a batch: stores its `tail` if padding moved it, and wakes the reader if it
    /// sleeps.
    #[inline]
    pub(crate) fn publish(&self, _g: &WriteGuard<'_>, tail: u64) {
        let w = &self.hdr().w;
        if w.tail.load(Ordering::Relaxed) != tail {
            w.tail.store(tail, Ordering::Release);
        }
        self.hdr().readable.wake_all_with(self.light);
    }

    /// Waits until `need` bytes can be reserved at the private `tail` of a batch (the
    /// caller published everything before it first, or the reader could not free room).
    pub(crate) fn wait_writable_at(
        &self,
        g: &WriteGuard<'_>,
        tail: &mut u64,
        need: u64,
        deadline: Option<Instant>,
        abort: impl FnMut() -> bool,
    ) -> Result<(u64, u64), Wait> {
        let mut slot = None;
        let mut t = *tail;
        let r = self.hdr().writable.wait_until(
            deadline,
            || {
                t = *tail;
                slot = self.reserve_at(g, &mut t, need);
                slot.is_some()
            },
            abort,
        );
        match (r, slot) {
            (Wait::Ready, Some(s)) => {
                *tail = t;
                Ok(s)
            }
            (Wait::Ready, None) => Err(Wait::Aborted),
            (r, _) => Err(r),
        }
    }

    /// Publishes a record of `size` bytes at offset `off` whose header word (or tiny
    /// word) is `header`: first zeroes the word right after the record, where the
    /// reader will look next (the next record's header slot, free space the writer
    /// reserved with the record), then stores `header` with Release, which pairs with
    /// the reader's Acquire load of the word at its position. So the reader always finds
    /// zero or a published header where it looks, and nobody zeroes consumed space: the
    /// reader writes no data line, and the writer clears one word per record on lines
    /// it is writing anyway.
    #[inline(always)]
    fn publish_at(&self, off: u64, size: u64, header: u64) {
        self.publish_from(self.base(), off, size, header);
        self.count_toward_look(size);
    }

    /// A record of `size` bytes published by a general path counts as one tiny record
    /// toward the next look at the reader (`look_at`, which the tiny fast path's limit
    /// keeps in bytes): looks come every so many records, whatever their size, not
    /// every so many bytes (a look on every 4 KiB send cost it a tenth of its time).
    /// Under the writer role, like every store of `look_at` but the gate's
    /// (`Spsc::renew_look`, which a race may make one look early or late).
    #[inline(always)]
    fn count_toward_look(&self, size: u64) {
        if size > REC_HDR {
            let w = &self.hdr().w;
            let at = w.look_at.load(Ordering::Relaxed);
            // 0: no looks asked for (a ring without a channel's gate).
            if at != 0 {
                w.look_at
                    .store(at.wrapping_add(size - REC_HDR), Ordering::Relaxed);
            }
        }
    }

    /// [`Spsc::publish_at`] addressed from `base`.
    #[inline(always)]
    fn publish_from(&self, base: Base, off: u64, size: u64, header: u64) {
        self.word_at(base, off.wrapping_add(size) & self.mask)
            .store(0, Ordering::Relaxed);
        self.word_at(base, off).store(header, Ordering::Release);
    }

    /// Raw pointer to data offset `off`, for an encoder writing a record's payload at
    /// `off + REC_HDR` within a window returned by [`Spsc::reserve`].
    #[inline(always)]
    pub(crate) fn data_ptr(&self, _g: &WriteGuard<'_>, off: u64) -> *mut u8 {
        debug_assert!(off <= self.cap);
        // SAFETY: off <= cap, so the pointer is within (or one past) the data area.
        unsafe { self.data().as_ptr().add(off as usize) }
    }

    /// Publishes the record of `kind` whose payload (`len` bytes) is written at
    /// `off + REC_HDR`, within a reserved window: a whole message of at most
    /// [`TINY_MAX`] bytes becomes a tiny record (its payload moves into the header word,
    /// and the word it was written to is zeroed again), anything else gets its header.
    /// The Release store pairs with the reader's Acquire load of the word at `head`.
    /// Returns the space the record occupies.
    #[inline(always)]
    fn publish_record(&self, off: u64, kind: RecKind, len: u64) -> u64 {
        if kind == RecKind::Msg && len <= TINY_MAX {
            // SAFETY: the window holds at least MIN_WINDOW >= 16 bytes from `off`, all
            // the writer's; `off + 8` is 8-aligned (the data area is 128-aligned).
            let payload = unsafe {
                self.data()
                    .as_ptr()
                    .add((off + REC_HDR) as usize)
                    .cast::<u64>()
                    .read()
            };
            // Masked: the bytes past the message are free space, whatever was there.
            let payload = payload & ((1 << (8 * len)) - 1);
            self.publish_at(off, REC_HDR, tiny_word(payload, len));
            REC_HDR
        } else {
            let size = record_size(len);
            self.publish_at(off, size, header_word(kind, len));
            size
        }
    }

    /// Publishes a record whose payload (`len` bytes) was already written at
    /// `off + REC_HDR`, within a window from [`Spsc::reserve`], stores `tail` past it and
    /// wakes the reader if it sleeps.
    #[inline(always)]
    pub(crate) fn commit(&self, _g: &WriteGuard<'_>, off: u64, kind: RecKind, len: u64) {
        let size = self.publish_record(off, kind, len);
        self.advance_tail(size);
    }

    /// Writes a whole message of at most [`TINY_MAX`] bytes, the low `len` bytes of
    /// `bytes` (whose other bytes are zero), as a tiny record if there is room now (one
    /// store). False (nothing written) when the ring has no room.
    #[inline(always)]
    pub(crate) fn try_write_tiny(&self, g: &WriteGuard<'_>, bytes: u64, len: u64) -> bool {
        let Some((off, _)) = self.reserve(g, REC_HDR) else {
            return false;
        };
        self.publish_at(off, REC_HDR, tiny_word(bytes, len));
        self.advance_tail(REC_HDR);
        true
    }

    /// [`Spsc::try_send_tiny_word`] of the low `len <= TINY_MAX` bytes of `payload`
    /// (whose other bytes are zero), for the unit tests.
    #[cfg(test)]
    pub(crate) fn try_send_tiny(&self, payload: u64, len: u64, patient: bool) -> bool {
        self.try_send_tiny_word(tiny_word(payload, len), patient)
    }

    /// The whole send of a tiny message, when this thread holds the biased writer role
    /// and the fast path's limit lets it: takes the role ([`Spsc::acquire_writer`]'s
    /// biased path), publishes `word` (the record's whole word: tag, length and
    /// payload, as `codec::encode_word_tagged` makes it with [`TINY_HIGH`]) with one
    /// store, counts it in `tail`, gives the role back, and wakes the reader if it
    /// sleeps. `false`, with nothing written, when another thread or process holds the
    /// role or the bias is revoked or unknown yet, when the ring is full, when a look at
    /// the reader is due, or when the fast path is poisoned or closed: the caller then
    /// takes the general path, which waits, looks at the reader, takes the role the
    /// slow way and repairs what a dead writer left.
    ///
    /// This is the seed's message (a few bytes of serde output) end to end, so it is
    /// written out once here rather than assembled from the general pieces: the owner
    /// compare uses the thread's cached tag without a branch for "not computed yet", a
    /// tiny record always fits before the end of the ring (no padding), and the role
    /// and `tail` are touched once each.
    ///
    /// [`TINY_HIGH`]: super::TINY_HIGH
    #[inline(always)]
    pub(crate) fn try_send_tiny_word(&self, word: u64, patient: bool) -> bool {
        debug_assert!(super::record::tiny_len(word).is_some());
        // The base address once, in a register across the compiler fence below.
        let base = self.base();
        let h = self.hdr_at(base);
        let own = &h.own;
        let tag = cached_tag();
        if own.owner.load(Ordering::Relaxed) != tag {
            return false;
        }
        // The biased entry, as `enter_biased`: announce, then re-check the owner.
        own.in_send.store(1, Ordering::Relaxed);
        light_fence();
        let sent = own.owner.load(Ordering::Acquire) == tag && self.put_tiny(base, word, patient);
        // Pairs with the revoker's Acquire load of `in_send`.
        own.in_send.store(0, Ordering::Release);
        if sent {
            // Light: the role is biased only to a thread of a process that can rely on
            // `membarrier` (`Spsc::take_writer_role`), which the `light` test would say
            // again here, per message.
            debug_assert!(self.light);
            h.readable.wake_all_with(true);
        }
        sent
    }

    /// [`Spsc::try_send_tiny_word`] once the role is held: the record and `tail`. `base` is
    /// the caller's copy of [`Spsc::base`], taken before its compiler fence, which
    /// would otherwise have the address loaded again.
    #[inline(always)]
    fn put_tiny(&self, base: Base, word: u64, patient: bool) -> bool {
        let w = &self.hdr_at(base).w;
        let tail = w.tail.load(Ordering::Relaxed);
        let end = tail.wrapping_add(REC_HDR);
        // Room for the record and the word after it (`publish_at`), and no look at the
        // reader due: one compare with the precomputed limit.
        if tail >= w.limit.load(Ordering::Relaxed)
            && !self.room_after_reload(end.wrapping_add(NEXT_SLOT), patient)
        {
            return false;
        }
        // Masked to a word, as in `reserve_at`; 8 bytes at an 8-aligned offset below
        // `cap` always fit before the end (the word after may be the one at 0).
        self.publish_from(base, tail & self.mask, REC_HDR, word);
        w.tail.store(end, Ordering::Release);
        true
    }

    /// The tiny fast path's `limit` says no to a record ending at `end` (the word after
    /// it included): `false` (take the general path) when the ring is poisoned
    /// ([`Spsc::note_reader_drop`]) or closed ([`Spsc::close_fast_path`]), or a look at
    /// the reader is due by `end`
    /// ([`Spsc::look_due`]; the general path's send gate looks); otherwise reloads the
    /// reader's `head` (caching it and the new limit) and says whether there is room
    /// after all.
    #[cold]
    #[inline(never)]
    fn room_after_reload(&self, end: u64, patient: bool) -> bool {
        let w = &self.hdr().w;
        let look_at = w.look_at.load(Ordering::Relaxed);
        if self.fast_path_stopped() || (look_at != 0 && end > look_at) {
            return false;
        }
        // Pairs with the reader's Release store of `head`: the bytes it consumed are free.
        let mut head = self.hdr().r.head.load(Ordering::Acquire);
        if patient && end.wrapping_sub(head) > self.cap {
            head = self.await_resume_room(end, head);
        }
        w.cached_head.store(head, Ordering::Relaxed);
        let room = end.wrapping_sub(head) <= self.cap;
        let mut limit = head.wrapping_add(self.cap);
        if look_at != 0 {
            limit = limit.min(look_at);
        }
        // Stored as the first `tail` whose record (and the word after it) would end past
        // it (0, `NO_ROOM`, when none fits); `NO_ROOM` too when this record does not
        // fit (a `head` a peer scribbled past `tail` must not open the fast path).
        let first_past = if room {
            limit.saturating_sub(REC_HDR + NEXT_SLOT - 1)
        } else {
            NO_ROOM
        };
        self.set_limit(first_past) && room
    }

    /// A writer that found the ring full (its cached `head` said so) and may wait: gives
    /// the reader a few microseconds to free [`RESUME_ROOM`] bytes beyond `end` before it
    /// goes on, rather than going on as soon as one record fits. The reader hands space
    /// back with every message, so a writer that resumed at once would reload `head`
    /// for every message it sends into a full ring, and the two cores would move the
    /// reader's line back and forth per message: the seed's 10^7 cell, where the writer
    /// outruns the reader and keeps the ring full, ran at a seventh of the 10^6 cell's
    /// rate. Bounded ([`RESUME_LOOKS`] looks, a few microseconds): a reader that frees
    /// no more (it stopped reading, or waits for this very message) costs this writer
    /// that delay, never a deadlock. Returns the last `head` seen.
    #[cold]
    #[inline(never)]
    fn await_resume_room(&self, end: u64, mut head: u64) -> u64 {
        let want = end.wrapping_add(RESUME_ROOM.min(self.cap / 8));
        for _ in 0..RESUME_LOOKS {
            if want.wrapping_sub(head) <= self.cap {
                break;
            }
            for _ in 0..RESUME_PAUSE {
                std::hint::spin_loop();
            }
            head = self.hdr().r.head.load(Ordering::Acquire);
        }
        head
    }

    /// After publishing a record of `size` bytes at `tail`: stores `tail` past it (for
    /// the writer who may come next; the reader does not need it) and wakes the reader
    /// if it sleeps.
    #[inline(always)]
    fn advance_tail(&self, size: u64) {
        let w = &self.hdr().w;
        // `tail` is where the record was reserved unless another process scribbled over
        // it meanwhile (the hostile-peer tests do); not asserted: input from another
        // process must never panic the library, not even in a debug build.
        let tail = w.tail.load(Ordering::Relaxed);
        w.tail.store(tail.wrapping_add(size), Ordering::Release);
        self.hdr().readable.wake_all_with(self.light);
    }

    /// Writes a whole message of at most 64 bytes, already encoded, if there is room
    /// now: one store of a tiny record, or a copy and its header. False (nothing
    /// written) when the ring has no room; the caller then waits on the general path.
    #[inline(always)]
    pub(crate) fn try_write_small(&self, g: &WriteGuard<'_>, bytes: &[u8]) -> bool {
        let len = bytes.len() as u64;
        debug_assert!(len <= 64);
        if len <= TINY_MAX {
            let mut w = [0u8; 8];
            w[..bytes.len()].copy_from_slice(bytes);
            return self.try_write_tiny(g, u64::from_le_bytes(w), len);
        }
        let size = record_size(len);
        let Some((off, _)) = self.reserve(g, size) else {
            return false;
        };
        // SAFETY: `reserve` gave at least `size` free bytes at `off`, so the payload
        // [off + 8, off + 8 + len) is the writer's; the source is a caller's slice, not
        // shared memory.
        unsafe {
            copy_bytes(
                bytes.as_ptr(),
                self.data().as_ptr().add((off + REC_HDR) as usize),
                bytes.len(),
            )
        };
        self.publish_at(off, size, header_word(RecKind::Msg, len));
        self.advance_tail(size);
        true
    }

    /// [`Spsc::reserve`], waiting for room until `deadline` (or `abort`).
    pub(crate) fn reserve_wait(
        &self,
        g: &WriteGuard<'_>,
        need: u64,
        deadline: Option<Instant>,
        abort: impl FnMut() -> bool,
    ) -> Result<(u64, u64), Wait> {
        let mut slot = self.reserve(g, need);
        if slot.is_none() {
            let r = self.hdr().writable.wait_until(
                deadline,
                || {
                    slot = self.reserve(g, need);
                    slot.is_some()
                },
                abort,
            );
            if r != Wait::Ready {
                return Err(r);
            }
        }
        Ok(slot.expect("reserved"))
    }

    /// Copies `parts` (concatenated, `len` bytes in all) as one record of `kind`,
    /// waiting for room until `deadline`. `len + REC_HDR` fits in a max record.
    pub(crate) fn write_record(
        &self,
        g: &WriteGuard<'_>,
        kind: RecKind,
        parts: &[&[u8]],
        deadline: Option<Instant>,
        mut abort: impl FnMut() -> bool,
    ) -> Result<(), Wait> {
        let len: u64 = parts.iter().map(|p| p.len() as u64).sum();
        let need = record_size(len);
        let (off, _) = self.reserve_wait(g, need, deadline, &mut abort)?;
        let mut p = self.data_ptr(g, off + REC_HDR);
        for part in parts {
            // SAFETY: the reserved window holds `need >= REC_HDR + len` bytes from `off`;
            // the source is a local slice that cannot overlap shared memory we own.
            unsafe {
                std::ptr::copy_nonoverlapping(part.as_ptr(), p, part.len());
                p = p.add(part.len());
            }
        }
        self.commit(g, off, kind, len);
        Ok(())
    }
}
