//! The writer role: the biased owner, the shared-mode lock, and the repairs after a
//! writer that died inside a send (see the module docs of `spsc`).

use std::time::Instant;

use super::record::NEXT_SLOT;
use super::record::{parse_header, record_size, tiny_len, RecKind, REC_HDR};
use super::{Spsc, NO_ROOM, SHARED};
use crate::sync::atomic::{fence, light_fence, Ordering};
use crate::sync::owner::{me, Owner};
use crate::sync::raw::Got;
use crate::sync::waiter::Wait;

/// Which writer path a [`WriteGuard`] took.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Biased,
    Shared,
}

/// Proof that this thread is the ring's one writer until dropped.
pub(crate) struct WriteGuard<'a> {
    ring: &'a Spsc,
    mode: Mode,
}

impl Drop for WriteGuard<'_> {
    #[inline]
    fn drop(&mut self) {
        let own = &self.ring.hdr().own;
        match self.mode {
            // Pairs with the revoker's Acquire load of `in_send`.
            Mode::Biased => own.in_send.store(0, Ordering::Release),
            Mode::Shared => own.lock.unlock(),
        }
    }
}

impl Spsc {
    /// Becomes the ring's writer: the biased fast path, else the slow path (revoking a
    /// bias, or taking the shared lock). `abort` is consulted while waiting.
    #[inline]
    pub(crate) fn acquire_writer(
        &self,
        deadline: Option<Instant>,
        abort: impl FnMut() -> bool,
    ) -> Result<WriteGuard<'_>, Wait> {
        let me = me();
        if self.hdr().own.owner.load(Ordering::Relaxed) == me.tag() {
            if let Some(g) = self.enter_biased(me.tag()) {
                return Ok(g);
            }
        }
        self.acquire_writer_slow(me, deadline, abort)
    }

    /// The writer's slow path: takes the role, then repairs what a writer that died
    /// inside a send may have left: records it published but did not count in `tail`
    /// ([`Spsc::repair_tail`]). Bytes it wrote into free space and never published need
    /// nothing: nobody reads free space, and the word at `tail` is zero (the record
    /// before it zeroed it when it was published, `Spsc::publish_at`).
    #[cold]
    fn acquire_writer_slow(
        &self,
        me: Owner,
        deadline: Option<Instant>,
        abort: impl FnMut() -> bool,
    ) -> Result<WriteGuard<'_>, Wait> {
        let g = self.take_writer_role(me, deadline, abort)?;
        self.repair_tail(&g);
        Ok(g)
    }

    fn take_writer_role(
        &self,
        me: Owner,
        deadline: Option<Instant>,
        abort: impl FnMut() -> bool,
    ) -> Result<WriteGuard<'_>, Wait> {
        let own = &self.hdr().own;
        let tag = me.tag();
        loop {
            let o = own.owner.load(Ordering::Acquire);
            if o == 0 {
                // The bias only for a thread of a process that can rely on `membarrier`:
                // the biased send's fence is a compiler fence, which the revoker's
                // `membarrier` completes, and so are its wake-ups
                // (`Spsc::try_send_tiny_word`). Elsewhere every writer takes the lock.
                let mode = if self.light { tag } else { SHARED };
                if own
                    .owner
                    .compare_exchange(0, mode, Ordering::AcqRel, Ordering::Relaxed)
                    .is_ok()
                    && mode == tag
                {
                    if let Some(g) = self.enter_biased(tag) {
                        return Ok(g);
                    }
                }
                continue;
            }
            if o == tag {
                if let Some(g) = self.enter_biased(tag) {
                    return Ok(g);
                }
                continue;
            }
            if o & SHARED == 0 {
                // Biased to another thread: revoke, then wait for its send in flight.
                if own
                    .owner
                    .compare_exchange(o, SHARED, Ordering::AcqRel, Ordering::Relaxed)
                    .is_ok()
                {
                    crate::sys::membarrier_global();
                    crate::sync::atomic::fence(Ordering::SeqCst);
                    let holder = Owner::from_tag(o);
                    let mut spins = 0u32;
                    // Pairs with the Release store of `in_send = 0` in WriteGuard::drop.
                    while own.in_send.load(Ordering::Acquire) != 0 {
                        if !holder.is_alive() {
                            // It died inside a send: `repair_tail` below does the rest.
                            own.in_send.store(0, Ordering::Release);
                            break;
                        }
                        spins += 1;
                        if spins < 100 {
                            std::thread::yield_now();
                        } else {
                            std::thread::sleep(std::time::Duration::from_micros(200));
                        }
                    }
                }
                continue;
            }
            // Shared mode: the robust lock, which tells a dead holder by its tag.
            // A holder that died is bypassed (`Got::OwnerDied`): the lock is held only
            // inside a send, and `repair_tail` below does the rest.
            let _: Got = own.lock.lock_or_abort(me, deadline, abort)?;
            return Ok(WriteGuard {
                ring: self,
                mode: Mode::Shared,
            });
        }
    }

    /// The biased path once `owner` holds `tag`: announces the send (`in_send`), then
    /// checks that the bias was not revoked meanwhile.
    #[inline(always)]
    fn enter_biased(&self, tag: u64) -> Option<WriteGuard<'_>> {
        let own = &self.hdr().own;
        own.in_send.store(1, Ordering::Relaxed);
        // Fast side of the asymmetric barrier; the revoker issues membarrier.
        light_fence();
        if own.owner.load(Ordering::Acquire) == tag {
            return Some(WriteGuard {
                ring: self,
                mode: Mode::Biased,
            });
        }
        own.in_send.store(0, Ordering::Release);
        None
    }

    /// Walks `tail` past records a writer published but died before counting in `tail`
    /// (it stores the header first), so that the writer taking over does not overwrite
    /// what the reader may be reading. If the reader already consumed some of them
    /// (`head` is ahead of `tail`), the walk starts at `head`: consumed records are not
    /// cleared, so only what lies from the reader's position on counts. Two loads when
    /// there is nothing to repair.
    fn repair_tail(&self, _g: &WriteGuard<'_>) {
        let w = &self.hdr().w;
        let start = w.tail.load(Ordering::Acquire);
        let head = self.hdr().r.head.load(Ordering::Acquire);
        let ahead = head.wrapping_sub(start);
        let mut tail = if ahead != 0 && ahead <= self.cap {
            head
        } else {
            start
        };
        // Stop at zero (the word after the last record published) or at anything that
        // is not a well-formed record (a scribbling peer's doing, which the reader
        // reports); at most a ring's worth.
        while tail.wrapping_sub(head) < self.cap {
            let off = tail & self.mask;
            let word = self.word(off).load(Ordering::Acquire);
            let size = match parse_header(word) {
                Some((RecKind::Pad, _)) => self.cap - off,
                Some(_) if tiny_len(word).is_some() => REC_HDR,
                Some((_, len)) if record_size(len) <= self.cap - off => record_size(len),
                _ => break,
            };
            tail = tail.wrapping_add(size);
        }
        if tail != start {
            w.tail.store(tail, Ordering::Release);
        }
    }

    /// Counts a dropped reader end (see `reader_drops`), and poisons the tiny fast path
    /// (`poisoned`, and its `limit` set to [`NO_ROOM`]), so that a writer on that path
    /// ([`Spsc::try_send_tiny_word`], which does not compare the drop counter) takes the
    /// general path, whose send gate looks at the reader and then clears the poison
    /// ([`Spsc::renew_look`]). A fast send computing its limit meanwhile cannot undo it:
    /// the same Dekker pair as [`Spsc::close_fast_path`]'s ([`Spsc::set_limit`]). A look
    /// racing with this may clear the poison first; the drop is then noticed by the
    /// gate's next periodic look.
    pub(crate) fn note_reader_drop(&self) {
        self.hdr().own.reader_drops.fetch_add(1, Ordering::Release);
        let w = &self.hdr().w;
        w.poisoned.store(1, Ordering::Relaxed);
        fence(Ordering::SeqCst);
        w.limit.store(NO_ROOM, Ordering::Relaxed);
    }

    /// Whether the writer's next look at its reader is due before the next record at
    /// the published `tail` (or none was ever asked for): the general send path's
    /// question to its gate, the same one the tiny fast path's `limit` asks (for a
    /// tiny record, the least there is).
    #[inline]
    pub(crate) fn look_due(&self) -> bool {
        let w = &self.hdr().w;
        let look_at = w.look_at.load(Ordering::Relaxed);
        let tail = w.tail.load(Ordering::Relaxed);
        look_at == 0 || tail.wrapping_add(REC_HDR + NEXT_SLOT) > look_at
    }

    /// After a look at the reader: the next is due once `bytes` more are sent. Clears
    /// the fast path's poison ([`Spsc::note_reader_drop`]), which the look handled; its
    /// next send computes the limit again. Called without the writer role: the limit
    /// stored is [`NO_ROOM`], only ever too low (a reload too many), never room that
    /// is not there.
    pub(crate) fn renew_look(&self, bytes: u64) {
        let w = &self.hdr().w;
        w.look_at.store(self.look_after(bytes), Ordering::Relaxed);
        w.poisoned.store(0, Ordering::Relaxed);
        // No room is never more than there is: no fence needed (`set_limit`).
        w.limit.store(NO_ROOM, Ordering::Relaxed);
    }

    /// Asks for looks at the reader every `bytes` (see [`Spsc::renew_look`]) if nobody
    /// has yet: the first due `bytes` from now. A ring already armed is left as it is
    /// (its due look, its poison).
    pub(crate) fn arm_look(&self, bytes: u64) {
        let w = &self.hdr().w;
        let first = self.look_after(bytes);
        if w.look_at
            .compare_exchange(0, first, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
        {
            // A limit computed while no look was asked for may run past `first`. No
            // room is never more than there is: no fence needed (`set_limit`).
            w.limit.store(NO_ROOM, Ordering::Relaxed);
        }
    }

    /// The position of a look due `bytes` past the published `tail` (never 0, which
    /// says no look was asked for).
    fn look_after(&self, bytes: u64) -> u64 {
        let tail = self.hdr().w.tail.load(Ordering::Relaxed);
        tail.wrapping_add(bytes).max(1)
    }

    /// Whether the tiny fast path is stopped until the general path's gate acts:
    /// closed for good ([`Spsc::close_fast_path`]) or poisoned by a dropped reader end
    /// ([`Spsc::note_reader_drop`]).
    pub(super) fn fast_path_stopped(&self) -> bool {
        let w = &self.hdr().w;
        w.closed.load(Ordering::Relaxed) != 0 || w.poisoned.load(Ordering::Relaxed) != 0
    }

    /// Stores the tiny fast path's `limit`, unless that path is closed for good
    /// ([`Spsc::close_fast_path`]) or poisoned ([`Spsc::note_reader_drop`]); returns
    /// whether it is open. Every store of a limit other than [`NO_ROOM`] goes through
    /// here: with the fences, either this sees the flag, or the flag setter's
    /// `NO_ROOM` comes after this store in `limit`'s order (a Dekker pair; a full fence
    /// per look or reload, never per message).
    pub(super) fn set_limit(&self, limit: u64) -> bool {
        let w = &self.hdr().w;
        w.limit.store(limit, Ordering::Relaxed);
        fence(Ordering::SeqCst);
        if self.fast_path_stopped() {
            w.limit.store(NO_ROOM, Ordering::Relaxed);
            return false;
        }
        true
    }

    /// Closes the tiny fast path ([`Spsc::try_send_tiny_word`]) for good, for every writer:
    /// every message takes the general path from now on. For a pipe whose messages may
    /// be shorter than a tiny record, and once the reader side is known to be gone (a
    /// fact for every writer, which the fast path, looking at no gate, must not miss).
    pub(crate) fn close_fast_path(&self) {
        let w = &self.hdr().w;
        w.closed.store(1, Ordering::Relaxed);
        fence(Ordering::SeqCst);
        w.limit.store(NO_ROOM, Ordering::Relaxed);
    }

    /// The reader-drop counter.
    #[inline(always)]
    pub(crate) fn reader_drops(&self) -> u32 {
        self.hdr().own.reader_drops.load(Ordering::Relaxed)
    }

    /// The reader's `head` as it stands (only readers store it): a writer that sees it
    /// move knows a reader was alive since it last looked.
    pub(crate) fn reader_head(&self) -> u64 {
        self.hdr().r.head.load(Ordering::Relaxed)
    }
}
