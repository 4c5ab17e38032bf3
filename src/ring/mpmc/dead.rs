//! Dead owners: a slot held by a party that died is taken over and released as if its
//! item had been consumed (see the module docs of `mpmc`).

use std::time::{Duration, Instant};

use super::state::{dist, pack, unpack, Phase};
use super::{Mpmc, Owner, INLINE};
use crate::sync::atomic::Ordering;

/// A slot another party holds, which may be dead: its index and the state seen.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Blocker {
    pub(super) index: u64,
    pub(super) state: u64,
}

impl Mpmc {
    /// Reclaims the blocker's slot if its owner is dead (see the module docs). Returns
    /// whether anything changed (so the caller should retry).
    ///
    /// The reclaimer first takes the slot over (CAS to the same phase under its own
    /// tid), so it reads what the slot refers to while it owns it, then releases it as
    /// `EMPTY(p + cap)`. A reclaimer that dies midway is itself a dead owner.
    pub(crate) fn reclaim_if_dead(&self, me: Owner, b: Blocker) -> bool {
        let slot = self.slot(b.index);
        let (stamp, phase, tid) = unpack(b.state);
        if !matches!(phase, Phase::Writing | Phase::Reading) {
            return false;
        }
        if slot.state.load(Ordering::Acquire) != b.state {
            return true;
        }
        let owner = Owner::recorded(tid, slot.owner.load(Ordering::Relaxed));
        if (self.alive)(owner) {
            return false;
        }
        let mine = pack(stamp, phase, me.tid());
        // AcqRel: Acquire pairs with whatever the dead owner last published; Release
        // pairs with the next checker's Acquire load.
        if slot
            .state
            .compare_exchange(b.state, mine, Ordering::AcqRel, Ordering::Relaxed)
            .is_err()
        {
            return true;
        }
        slot.owner.store(me.tag(), Ordering::Relaxed);
        let mut buf = [0u8; INLINE];
        let data = self.read_data(slot, &mut buf);
        if phase == Phase::Writing && self.ctl().joinable.load(Ordering::Relaxed) != 0 {
            // The item was never delivered: it will never be task_done()'d either.
            let _ = self.task_done();
        }
        if let (Some(hook), Ok((kind, len))) = (self.hook.as_ref(), data) {
            hook(kind, &buf[..len], b.index);
        }
        slot.owner.store(0, Ordering::Relaxed);
        // Pairs with the next producer's Acquire load of the state.
        slot.state
            .store(pack(stamp + self.cap, Phase::Empty, 0), Ordering::Release);
        self.hdr().not_full.wake_all();
        self.hdr().not_empty.wake_all();
        true
    }

    /// The slot a producer at `tail` waits for, when someone holds it (checked afresh
    /// before each park: the owner may have died after we first looked).
    pub(super) fn tail_blocker(&self) -> Option<Blocker> {
        let pos = self.hdr().tail.load(Ordering::Relaxed);
        let s = self.slot(pos).state.load(Ordering::Acquire);
        let (stamp, phase, _) = unpack(s);
        (dist(stamp, pos) < 0 && matches!(phase, Phase::Writing | Phase::Reading)).then_some(
            Blocker {
                index: pos % self.cap,
                state: s,
            },
        )
    }

    /// The slot a consumer at `head` waits for, when a producer holds it.
    pub(super) fn head_blocker(&self) -> Option<Blocker> {
        let pos = self.hdr().head.load(Ordering::Relaxed);
        let s = self.slot(pos).state.load(Ordering::Acquire);
        let (stamp, phase, _) = unpack(s);
        (dist(stamp, pos) == 0 && phase == Phase::Writing).then_some(Blocker {
            index: pos % self.cap,
            state: s,
        })
    }
}

/// How often a waiting party looks at the liveness of the slot owner it waits for (a
/// `kill` and a read of `/proc`): before its first sleep, then at most this often (a
/// sleeper woken by releases of other slots sleeps again many times a millisecond).
const LIVENESS_EVERY: Duration = Duration::from_millis(2);

/// Whether a liveness check is due, given the time of the last one (updated).
pub(super) fn due(last: &mut Option<Instant>) -> bool {
    let now = Instant::now();
    if last.is_some_and(|t| now.saturating_duration_since(t) < LIVENESS_EVERY) {
        return false;
    }
    *last = Some(now);
    true
}
