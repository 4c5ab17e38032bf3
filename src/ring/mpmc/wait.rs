//! The blocking put and get: waiting for room or an item, checking the owner of the
//! slot in the way, and the naps that keep parties from chasing each other.

use std::time::{Duration, Instant};

use super::claim::{GetTry, PutTry};
use super::dead::{due, Blocker};
use super::state::{dist, unpack, Phase};
use super::{Mpmc, Owner};
use crate::error::ProtocolError;
use crate::sync::atomic::Ordering;
use crate::sync::waiter::{Wait, Waiter};

/// Why a blocking put failed.
#[derive(Debug)]
pub(crate) enum PutFail {
    /// Full (no waiting asked for).
    Full,
    /// The deadline passed.
    Timeout,
    /// Closed.
    Closed,
    /// The `on_claimed` step failed.
    Failed(std::io::Error),
}

/// Why a blocking get failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum GetFail {
    /// Empty (no waiting asked for).
    Empty,
    /// The deadline passed.
    Timeout,
    /// Closed and drained.
    Closed,
    /// A corrupt slot (it was consumed).
    Protocol(ProtocolError),
}

impl Mpmc {
    /// Puts one item, waiting for a free slot until `deadline` (`Some(now)`: do not
    /// wait; `None`: forever).
    pub(crate) fn put(
        &self,
        me: Owner,
        kind: u32,
        bytes: &[u8],
        deadline: Option<Instant>,
        on_claimed: &mut dyn FnMut(u64) -> std::io::Result<()>,
        nonblocking: bool,
    ) -> Result<(), PutFail> {
        if !nonblocking && contended() {
            self.contention_nap(0, &self.hdr().not_full, deadline);
        }
        let mut checked = None;
        let mut napped = false;
        loop {
            match self.try_put(me, kind, bytes, on_claimed) {
                PutTry::Done => return Ok(()),
                PutTry::Closed => return Err(PutFail::Closed),
                PutTry::Failed(e) => return Err(PutFail::Failed(e)),
                PutTry::Full(blocker) => {
                    if nonblocking {
                        if blocker.is_some_and(|b| self.reclaim_if_dead(me, b)) {
                            continue;
                        }
                        return Err(PutFail::Full);
                    }
                    if !napped && self.cap >= FULL_NAP_MIN_CAPACITY {
                        // Full (a consumer may be finishing the slot at the tail): let
                        // the consumers drain a while (see FULL_NAP).
                        napped = true;
                        self.hdr().not_full.nap(deadline, FULL_NAP);
                        continue;
                    }
                    let w = self.wait_blocked(
                        me,
                        &self.hdr().not_full,
                        deadline,
                        blocker.is_some(),
                        || self.put_ready(),
                        || self.tail_blocker(),
                        &mut checked,
                    );
                    if w == Wait::TimedOut {
                        return Err(PutFail::Timeout);
                    }
                }
            }
        }
    }

    /// Gets one item, waiting until `deadline` (see [`Mpmc::put`]).
    pub(crate) fn get<R>(
        &self,
        me: Owner,
        deadline: Option<Instant>,
        take: &mut dyn FnMut(u32, &[u8], u64) -> R,
        nonblocking: bool,
    ) -> Result<R, GetFail> {
        if !nonblocking && contended() {
            self.contention_nap(1, &self.hdr().not_empty, deadline);
        }
        let mut checked = None;
        loop {
            match self.try_get(me, take) {
                Err(p) => return Err(GetFail::Protocol(p)),
                Ok(GetTry::Got(r)) => return Ok(r),
                Ok(GetTry::Closed) => return Err(GetFail::Closed),
                Ok(GetTry::Empty(blocker)) => {
                    if nonblocking {
                        if blocker.is_some_and(|b| self.reclaim_if_dead(me, b)) {
                            continue;
                        }
                        return Err(GetFail::Empty);
                    }
                    let w = self.wait_blocked(
                        me,
                        &self.hdr().not_empty,
                        deadline,
                        blocker.is_some(),
                        || self.get_ready(),
                        || self.head_blocker(),
                        &mut checked,
                    );
                    if w == Wait::TimedOut {
                        return Err(GetFail::Timeout);
                    }
                }
            }
        }
    }

    /// The blocking wait of a put or a get, on `waiter` until `ready()`. While another
    /// process holds the slot in the way (`held`), it naps rather than parks
    /// ([`Waiter::wait_for_owner`]). The holder of the slot in the way (`blocker()`) is
    /// checked for death only before sleeping, and at most every `LIVENESS_EVERY`
    /// (`checked`): it is almost always alive and about to release the slot.
    #[allow(clippy::too_many_arguments)]
    fn wait_blocked(
        &self,
        me: Owner,
        waiter: &Waiter,
        deadline: Option<Instant>,
        held: bool,
        ready: impl FnMut() -> bool,
        blocker: impl Fn() -> Option<Blocker>,
        checked: &mut Option<Instant>,
    ) -> Wait {
        let wait = if held {
            Waiter::wait_for_owner
        } else {
            Waiter::wait_until
        };
        wait(waiter, deadline, ready, || {
            due(checked) && blocker().is_some_and(|b| self.reclaim_if_dead(me, b))
        })
    }

    /// Whether a blocked producer should look again.
    fn put_ready(&self) -> bool {
        let pos = self.hdr().tail.load(Ordering::Relaxed);
        let (stamp, _, _) = unpack(self.slot(pos).state.load(Ordering::Acquire));
        dist(stamp, pos) >= 0 || self.is_closed()
    }

    /// Whether a blocked consumer should look again.
    fn get_ready(&self) -> bool {
        let pos = self.hdr().head.load(Ordering::Relaxed);
        let (stamp, phase, _) = unpack(self.slot(pos).state.load(Ordering::Acquire));
        let d = dist(stamp, pos);
        d > 0 || (d == 0 && matches!(phase, Phase::Full | Phase::Reading)) || self.is_closed()
    }

    /// Naps for contention ([`contended`]) unless another party of the same role (0:
    /// producers, 1: consumers) is napping for it already: one steps aside, the others
    /// run (when all of them napped at once, nobody worked).
    pub(super) fn contention_nap(&self, role: usize, w: &Waiter, deadline: Option<Instant>) {
        let flag = &self.ctl().backoff[role];
        if flag
            .compare_exchange(0, 1, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
        {
            w.nap(deadline, CONTENTION_NAP);
            flag.store(0, Ordering::Relaxed);
        }
    }
}

/// How long a producer that finds a large ring full sleeps before it waits for room as
/// usual, once per put. Waiting for the first free
/// slot keeps producers chasing the consumers slot by slot: each put then waits for one
/// get, the spinning producer takes the CPU the consumers need when processes outnumber
/// cores, and both sides fight over the same cache lines. After the nap the consumers
/// have freed a stretch of slots, which the producer fills without waiting. The
/// consumers lose nothing: a ring of at least [`FULL_NAP_MIN_CAPACITY`] items keeps them
/// busy far longer than the nap.
const FULL_NAP: Duration = Duration::from_micros(200);
/// Smallest ring whose producers nap when it is full.
const FULL_NAP_MIN_CAPACITY: u64 = 4096;

/// Blocking operations per contention window (see [`contended`]).
pub(super) const CONTENTION_WINDOW: u32 = 256;
/// Collisions with a party of the same role, in one window, that make this one nap.
pub(super) const CONTENTION_LIMIT: u32 = 32;
/// The nap of a party that collides often with others of its role.
const CONTENTION_NAP: Duration = Duration::from_micros(100);

thread_local! {
    /// This thread's blocking operations and collisions in the current window.
    pub(super) static CONTENTION: std::cell::Cell<(u32, u32)> = const { std::cell::Cell::new((0, 0)) };
}

/// Counts a collision with a party of the same role: a lost claim, or a slot found
/// claimed by another producer (or consumer) that had not yet moved the index.
#[inline]
pub(super) fn note_contention() {
    CONTENTION.with(|c| {
        let (ops, hits) = c.get();
        c.set((ops, hits.saturating_add(1)));
    });
}

/// Counts one blocking operation; true when the window it closes saw many collisions.
///
/// Producers (or consumers) that run at the same time on different cores collide on
/// the index and on neighbouring slots, and every collision moves cache lines between
/// the cores: with four processes on two cores, two consumers interleaving get by get
/// moved 5–7 M items/s where one of them alone moved 20 M/s. A party that collides
/// often naps briefly ([`CONTENTION_NAP`]) so that the other runs alone a while (one
/// party per role at a time: see `Mpmc::contention_nap`); parties that rarely meet
/// (real work between operations) never nap.
pub(super) fn contended() -> bool {
    CONTENTION.with(|c| {
        let (ops, hits) = c.get();
        if ops + 1 < CONTENTION_WINDOW {
            c.set((ops + 1, hits));
            return false;
        }
        c.set((0, 0));
        hits >= CONTENTION_LIMIT
    })
}
