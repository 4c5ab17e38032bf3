//! [`End`]: one process's share of one side of a pipe (the mapping, the ring it writes
//! and the ring it reads, its presence and its send gate), shared by the `Sender`,
//! `Receiver` or `Connection` handles of that side in this process; and how an end is
//! handed to a spawned child.

use std::os::fd::{AsRawFd, RawFd};
use std::sync::{Arc, OnceLock};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::gate::SendGate;
use crate::error::{Error, RegionError, Result};
use crate::region::{Kind, Region};
use crate::ring::spsc::{ring_in_region, Spsc, TINY_MAX};
use crate::sync::handoff::{self, Inherited};
use crate::sync::poke::Poke;
use crate::sync::presence::Presence;
use crate::sync::waiter::register_process;

/// One process's share of one side of a channel.
pub(in crate::channel) struct End {
    /// What `named` and `wait` add: the socket of a connection made by name, the poke
    /// registration of the ring this end writes. First, so it goes before the mapping.
    pub(in crate::channel) hooks: super::super::named::EndHooks,
    region: Region,
    /// Which side: 0 or 1. Side 0 writes ring 0 and reads ring 1 (when there are two).
    side: u8,
    /// The ring this side writes, if it sends.
    pub(super) tx: Option<Spsc>,
    /// The ring this side reads, if it receives.
    pub(super) rx: Option<Spsc>,
    pub(super) max_message: u64,
    /// The longest message sent or received as a tiny record: [`TINY_MAX`], or
    /// `max_message` when that is less.
    pub(super) tiny_max: u64,
    /// This process's presence descriptors (owned by the hand-off registry too).
    presence: Arc<Presence>,
    pub(super) gate: SendGate,
    reg_id: OnceLock<u64>,
    /// The async waiters' wake-up descriptors of this end's rings.
    #[cfg(feature = "tokio")]
    pub(super) notify: super::asynk::EndNotify,
}

impl std::fmt::Debug for End {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("End")
            .field("side", &self.side)
            .field("region", &self.region)
            .finish()
    }
}

impl End {
    /// The two sides of a new channel of `rings` rings (1: simplex, 2: duplex).
    pub(super) fn create(kind: Kind, rings: u64, cap: u64, max_message: u64) -> Result<(End, End)> {
        register_process();
        let payload = Spsc::memory_size(cap) * rings as usize;
        let region = Region::create(kind, payload, [cap, rings, max_message, 0])?;
        let region_b = Region::open_fd(region.fd().try_clone_to_owned()?, kind)?;
        let (p0, p1) = Presence::pair()?;
        let a = End::from_parts(region, 0, p0)?;
        let b = End::from_parts(region_b, 1, p1)?;
        #[cfg(feature = "tokio")]
        let (a, b) = {
            let fds = super::asynk::EndNotify::create_fds(rings)?;
            (a.with_notify(&fds)?, b.with_notify(&fds)?)
        };
        Ok((a, b))
    }

    fn from_parts(region: Region, side: u8, presence: Presence) -> Result<End> {
        let [cap, rings, max_message, _] = region.params();
        if !Spsc::valid_capacity(cap) || !(1..=2).contains(&rings) || side > 1 {
            return Err(RegionError::Corrupt.into());
        }
        let ring_size = Spsc::memory_size(cap);
        if ring_size
            .checked_mul(rings as usize)
            .is_none_or(|n| n > region.payload_len())
        {
            return Err(RegionError::Corrupt.into());
        }
        let ring_at = |i: u64| ring_in_region(&region, i as usize * ring_size, cap);
        let (tx, rx) = match (rings, side) {
            (1, 0) => (Some(ring_at(0)), None),
            (1, _) => (None, Some(ring_at(0))),
            (_, 0) => (Some(ring_at(0)), Some(ring_at(1))),
            _ => (Some(ring_at(1)), Some(ring_at(0))),
        };
        let (tx, rx) = (tx.transpose()?, rx.transpose()?);
        let tiny_max = TINY_MAX.min(max_message);
        let gate = SendGate::new(tx.as_ref(), tiny_max);
        let presence = Arc::new(presence);
        let hooks = super::super::named::EndHooks::new(tx.as_ref().map(|t| {
            let poke: Arc<dyn Poke> = presence.clone();
            (t.readable_waiter(), poke)
        }));
        Ok(End {
            hooks,
            region,
            side,
            tx,
            rx,
            max_message,
            tiny_max,
            presence,
            gate,
            reg_id: OnceLock::new(),
            #[cfg(feature = "tokio")]
            notify: Default::default(),
        })
    }

    /// Registers for fork hygiene (once).
    pub(super) fn register(self: &Arc<Self>) {
        if self.reg_id.get().is_none() {
            let presence: Arc<dyn Inherited> = self.presence.clone();
            let _ = self.reg_id.set(handoff::register(presence));
        }
    }

    /// The id [`End::register`] got (0 before), for `handoff::note_drop`.
    pub(super) fn reg_id(&self) -> u64 {
        self.reg_id.get().copied().unwrap_or(0)
    }

    /// Whether every end of the other side is gone. A released presence (an end this
    /// forked child was not handed) counts as gone. Sticky: once it has said so, it says
    /// so at once, and every send through this end fails (see [`SendGate::admit`]).
    pub(in crate::channel) fn peer_gone(&self) -> bool {
        self.gate.peer_gone(&self.presence, self.tx.as_ref())
    }

    /// The writer's check before a send ([`SendGate::admit`]); `false`: the
    /// other side is gone.
    #[inline(always)]
    pub(super) fn admit(&self, tx: &Spsc) -> bool {
        self.gate.admit(tx, &self.presence)
    }

    /// A send found the ring full: whether the other side is gone instead
    /// ([`SendGate::full_and_gone`]).
    #[cold]
    pub(super) fn full_and_gone(&self) -> bool {
        self.gate.full_and_gone(&self.presence, self.tx.as_ref())
    }

    /// The descriptor that reports POLLHUP once every end of the other side is gone
    /// (`None` once released in a forked child).
    #[cfg(feature = "tokio")]
    pub(super) fn peer_watch(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        self.presence.fds().map(|(_, watch)| watch)
    }

    /// Which side this end is (0 or 1).
    #[cfg(feature = "tokio")]
    pub(super) fn side(&self) -> u8 {
        self.side
    }

    /// The ring this end reads, for `wait`.
    pub(in crate::channel) fn read_ring(&self) -> Option<&Spsc> {
        self.rx.as_ref()
    }

    /// The descriptor the other side's presence is watched on (-1 once released): its
    /// hang-up says the other side is gone, its bytes are pokes (see `sync::poke`).
    pub(in crate::channel) fn watch_fd(&self) -> RawFd {
        self.presence
            .fds()
            .map_or(-1, |(_, watch)| watch.as_raw_fd())
    }

    fn region_kind(&self) -> Kind {
        if self.tx.is_some() && self.rx.is_some() {
            Kind::Duplex
        } else {
            Kind::Pipe
        }
    }
}

impl Drop for End {
    fn drop(&mut self) {
        match self.reg_id.get() {
            // Closes the descriptors under the registry lock (no fork in between).
            Some(id) => handoff::unregister_and_release(*id),
            None => self.presence.release_in_child(),
        }
        if let Some(tx) = &self.tx {
            tx.wake_reader();
        }
        if let Some(rx) = &self.rx {
            rx.note_reader_drop();
            rx.wake_writer();
        }
    }
}

/// What a handle serializes to when handed to a spawned child.
#[derive(Serialize, Deserialize)]
struct Wire {
    region: i32,
    token: i32,
    watch: i32,
    side: u8,
    kind: u32,
    /// The async waiters' wake-up descriptors of the rings (two per ring).
    #[cfg(feature = "tokio")]
    notify: Vec<i32>,
}

impl End {
    fn to_wire(&self) -> Result<Wire> {
        let (token, watch) = self.presence.fds().ok_or(Error::Handle(
            "this end was released in a forked child and cannot be passed on",
        ))?;
        Ok(Wire {
            region: handoff::pass_fd(self.region.fd())?,
            token: handoff::pass_fd(token)?,
            watch: handoff::pass_fd(watch)?,
            side: self.side,
            kind: self.region_kind() as u32,
            #[cfg(feature = "tokio")]
            notify: self.notify.pass_fds()?,
        })
    }

    fn from_wire(w: Wire, expect: Kind) -> Result<Arc<End>> {
        if w.kind != expect as u32 {
            return Err(Error::Handle("handle of another type"));
        }
        register_process();
        let _creating = handoff::creating();
        let region = Region::open_fd(handoff::adopt_fd(w.region)?, expect)?;
        let token = handoff::adopt_fd(w.token)?;
        let watch = handoff::adopt_fd(w.watch)?;
        let end = End::from_parts(region, w.side, Presence::from_fds(token, watch))?;
        #[cfg(feature = "tokio")]
        let end = {
            let rings = if end.tx.is_some() && end.rx.is_some() {
                2
            } else {
                1
            };
            end.with_notify(&crate::sync::notify_fd::adopt_all(&w.notify, 2 * rings)?)?
        };
        let end = Arc::new(end);
        end.register();
        Ok(end)
    }
}

/// Serializes a handle's end (see `handoff`).
pub(super) fn serialize_end<S: Serializer>(
    end: &End,
    ser: S,
) -> std::result::Result<S::Ok, S::Error> {
    use serde::ser::Error as _;
    end.to_wire()
        .map_err(|e| S::Error::custom(e.to_string()))?
        .serialize(ser)
}

/// Deserializes a handle's end of a region of kind `kind` (see `handoff`).
pub(super) fn deserialize_end<'de, D: Deserializer<'de>>(
    de: D,
    kind: Kind,
) -> std::result::Result<Arc<End>, D::Error> {
    use serde::de::Error as _;
    let w = Wire::deserialize(de)?;
    End::from_wire(w, kind).map_err(|e| D::Error::custom(e.to_string()))
}
