//! One put or one get without waiting: claim the slot, copy, publish or release.

use super::dead::Blocker;
use super::state::{dist, pack, unpack, Phase};
use super::wait::note_contention;
use super::{Mpmc, Owner, Slot, INLINE};
use crate::error::ProtocolError;
use crate::sync::atomic::Ordering;

/// The outcome of [`Mpmc::try_put`].
#[derive(Debug)]
pub(crate) enum PutTry {
    /// Published.
    Done,
    /// No free slot; `Some` names the slot in the way when someone holds it.
    Full(Option<Blocker>),
    /// The queue is closed.
    Closed,
    /// The `on_claimed` step failed; nothing was published.
    Failed(std::io::Error),
}

/// The outcome of [`Mpmc::try_get`].
#[derive(Debug)]
pub(crate) enum GetTry<R> {
    /// An item, as the `take` step made it.
    Got(R),
    /// Nothing ready; `Some` names a slot being written by someone.
    Empty(Option<Blocker>),
    /// Closed and drained.
    Closed,
}

impl Mpmc {
    /// Copies `bytes` into the data of a slot this thread owns.
    #[inline(always)]
    fn write_data(&self, slot: &Slot, kind: u32, bytes: &[u8]) {
        debug_assert!(bytes.len() <= INLINE);
        let n = bytes.len().min(INLINE);
        // SAFETY: the caller owns the slot (its WRITING claim succeeded), so no other
        // party reads or writes `data` until it is published; n <= INLINE; the source is
        // process-local memory and cannot overlap the slot.
        slot.data
            .with_mut(|p| unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), p, n) });
        slot.meta
            .store((u64::from(kind) << 32) | n as u64, Ordering::Relaxed);
    }

    /// Copies a slot's data out (validating its length) into a local buffer.
    #[inline(always)]
    pub(super) fn read_data(
        &self,
        slot: &Slot,
        out: &mut [u8; INLINE],
    ) -> Result<(u32, usize), ProtocolError> {
        let meta = slot.meta.load(Ordering::Relaxed);
        let (kind, len) = ((meta >> 32) as u32, (meta & 0xFFFF_FFFF) as usize);
        if len > INLINE {
            return Err(ProtocolError::BadRecord);
        }
        // SAFETY: the caller owns the slot (a READING claim, or the reclaim of a dead
        // owner's slot, whose writes ended with its death); len <= INLINE (checked); the
        // destination is a local buffer.
        slot.data
            .with(|p| unsafe { std::ptr::copy_nonoverlapping(p, out.as_mut_ptr(), len) });
        Ok((kind, len))
    }

    /// Tries to put one item: claims the slot at `tail`, copies `bytes` (at most
    /// [`INLINE`]) in with `kind`, runs `on_claimed(slot index)` (which may fail: then
    /// the slot is given up and nothing is published), and publishes.
    pub(crate) fn try_put(
        &self,
        me: Owner,
        kind: u32,
        bytes: &[u8],
        on_claimed: &mut dyn FnMut(u64) -> std::io::Result<()>,
    ) -> PutTry {
        if self.ctl().closed.load(Ordering::Acquire) != 0 {
            return PutTry::Closed;
        }
        let tail = &self.hdr().tail;
        let mut pos = tail.load(Ordering::Relaxed);
        loop {
            let slot = self.slot(pos);
            // Pairs with the consumer's Release store of EMPTY(pos) (or the init).
            let s = slot.state.load(Ordering::Acquire);
            let (stamp, phase, _) = unpack(s);
            let d = dist(stamp, pos);
            if d == 0 && phase == Phase::Empty {
                let mine = pack(pos, Phase::Writing, me.tid());
                if slot
                    .state
                    .compare_exchange_weak(s, mine, Ordering::AcqRel, Ordering::Relaxed)
                    .is_err()
                {
                    note_contention();
                    pos = tail.load(Ordering::Relaxed);
                    continue;
                }
                let _ = tail.compare_exchange(pos, pos + 1, Ordering::Relaxed, Ordering::Relaxed);
                slot.owner.store(me.tag(), Ordering::Relaxed);
                self.write_data(slot, kind, bytes);
                let ok = on_claimed(pos % self.cap);
                slot.owner.store(0, Ordering::Relaxed);
                match ok {
                    Ok(()) => {
                        // Pairs with the consumer's Acquire load of the state.
                        slot.state
                            .store(pack(pos, Phase::Full, 0), Ordering::Release);
                        self.hdr().not_empty.wake_all();
                        return PutTry::Done;
                    }
                    Err(e) => {
                        slot.state
                            .store(pack(pos + self.cap, Phase::Empty, 0), Ordering::Release);
                        self.hdr().not_full.wake_all();
                        self.hdr().not_empty.wake_all();
                        return PutTry::Failed(e);
                    }
                }
            } else if d >= 0 {
                // Position `pos` is already claimed: help the index past it.
                note_contention();
                let _ = tail.compare_exchange(pos, pos + 1, Ordering::Relaxed, Ordering::Relaxed);
                pos = tail.load(Ordering::Relaxed);
            } else {
                // The slot still holds the previous lap: full, unless the index moved.
                let now = tail.load(Ordering::Relaxed);
                if now != pos {
                    pos = now;
                    continue;
                }
                let blocker = matches!(phase, Phase::Writing | Phase::Reading).then_some(Blocker {
                    index: pos % self.cap,
                    state: s,
                });
                return PutTry::Full(blocker);
            }
        }
    }

    /// Tries to get one item: claims the slot at `head`, copies its data out, runs
    /// `take(kind, bytes, slot index)` while still owning the slot (so a side resource it refers to
    /// can be taken over before the slot is released), and releases the slot.
    pub(crate) fn try_get<R>(
        &self,
        me: Owner,
        take: &mut dyn FnMut(u32, &[u8], u64) -> R,
    ) -> Result<GetTry<R>, ProtocolError> {
        let head = &self.hdr().head;
        let mut pos = head.load(Ordering::Relaxed);
        let mut closed_seen = false;
        loop {
            let slot = self.slot(pos);
            // Pairs with the producer's Release store of FULL(pos).
            let s = slot.state.load(Ordering::Acquire);
            let (stamp, phase, _) = unpack(s);
            let d = dist(stamp, pos);
            if d == 0 && phase == Phase::Full {
                let mine = pack(pos, Phase::Reading, me.tid());
                if slot
                    .state
                    .compare_exchange_weak(s, mine, Ordering::AcqRel, Ordering::Relaxed)
                    .is_err()
                {
                    note_contention();
                    pos = head.load(Ordering::Relaxed);
                    continue;
                }
                let _ = head.compare_exchange(pos, pos + 1, Ordering::Relaxed, Ordering::Relaxed);
                slot.owner.store(me.tag(), Ordering::Relaxed);
                let mut buf = [0u8; INLINE];
                let res = self
                    .read_data(slot, &mut buf)
                    .map(|(kind, len)| take(kind, &buf[..len], pos % self.cap));
                slot.owner.store(0, Ordering::Relaxed);
                // Pairs with the next producer's Acquire load of the state.
                slot.state
                    .store(pack(pos + self.cap, Phase::Empty, 0), Ordering::Release);
                self.hdr().not_full.wake_all();
                return res.map(GetTry::Got);
            } else if d > 0 || (d == 0 && phase == Phase::Reading) {
                // Position `pos` is already taken: help the index past it.
                note_contention();
                let _ = head.compare_exchange(pos, pos + 1, Ordering::Relaxed, Ordering::Relaxed);
                pos = head.load(Ordering::Relaxed);
            } else {
                let now = head.load(Ordering::Relaxed);
                if now != pos {
                    pos = now;
                    continue;
                }
                if d == 0 && phase == Phase::Writing {
                    return Ok(GetTry::Empty(Some(Blocker {
                        index: pos % self.cap,
                        state: s,
                    })));
                }
                // Empty. When closed, look once more: an item put before close() is
                // visible once the close is (the close store is Release).
                if closed_seen {
                    return Ok(GetTry::Closed);
                }
                if self.ctl().closed.load(Ordering::Acquire) != 0 {
                    closed_seen = true;
                    continue;
                }
                return Ok(GetTry::Empty(None));
            }
        }
    }

    /// Claims a slot as a producer (or consumer) and never releases it: a stand-in for
    /// a process killed mid-operation, for tests.
    #[doc(hidden)]
    pub(crate) fn claim_and_abandon(&self, me: Owner, as_consumer: bool) -> bool {
        let idx = if as_consumer {
            &self.hdr().head
        } else {
            &self.hdr().tail
        };
        let pos = idx.load(Ordering::Relaxed);
        let slot = self.slot(pos);
        let s = slot.state.load(Ordering::Acquire);
        let (stamp, phase, _) = unpack(s);
        let (want, to) = if as_consumer {
            (Phase::Full, Phase::Reading)
        } else {
            (Phase::Empty, Phase::Writing)
        };
        if dist(stamp, pos) != 0 || phase != want {
            return false;
        }
        if slot
            .state
            .compare_exchange(
                s,
                pack(pos, to, me.tid()),
                Ordering::AcqRel,
                Ordering::Relaxed,
            )
            .is_err()
        {
            return false;
        }
        let _ = idx.compare_exchange(pos, pos + 1, Ordering::Relaxed, Ordering::Relaxed);
        slot.owner.store(me.tag(), Ordering::Relaxed);
        true
    }
}
