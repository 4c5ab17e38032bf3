//! [`Shared`]: one process's share of a queue (the mapping, the slot ring in it, the
//! items file), and the one blocking core of each of put and get.

use std::cell::RefCell;
use std::os::fd::OwnedFd;

use serde::{de::DeserializeOwned, Serialize};

use super::super::wait::PokePipe;
use crate::codec;
use crate::error::{Error, ProtocolError, RegionError, Result, SizeLimit};
use crate::error::{TryGetError, TryPutError};
use crate::region::{ItemsFile, Kind, Region};
use crate::ring::mpmc::{self, GetFail, Mpmc, PutFail, INLINE};
use crate::sync::waiter::register_process;
use crate::sync::Deadline;

/// Largest item, in encoded bytes.
pub const DEFAULT_MAX_ITEM: u64 = 4 << 30;

/// A slot holding the item's encoding itself.
pub(super) const KIND_INLINE: u32 = 1;
/// A slot holding the length of an item in its window of the items file.
const KIND_SIDE: u32 = 2;

thread_local! {
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// One process's view of a queue: the mapping and the ring in it.
pub(in crate::channel) struct Shared {
    /// The pipe a putter pokes to wake a `wait()` (see `channel::wait`). First, so its
    /// registration goes before the mapping.
    pub(super) poke: PokePipe,
    pub(super) region: Region,
    /// The items file: large items, one 4 GiB window per slot.
    pub(super) items: std::sync::Arc<ItemsFile>,
    pub(super) ring: Mpmc,
    pub(super) joinable: bool,
    max_item: u64,
    /// The async waiters' wake-up descriptors.
    #[cfg(feature = "tokio")]
    pub(super) notify: super::asynk::QueueNotify,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queue")
            .field("capacity", &self.ring.capacity())
            .field("len", &self.ring.len())
            .field("joinable", &self.joinable)
            .finish()
    }
}

/// The length of a large item, from its slot's bytes.
fn parse_side(data: &[u8]) -> Option<u64> {
    Some(u64::from_le_bytes(data.try_into().ok()?))
}

/// Frees the pages of a large item (read, refused, or lost with a dead process).
fn reclaim_pages(items: &ItemsFile, kind: u32, data: &[u8], index: u64) {
    if kind == KIND_SIDE {
        if let Some(len) = parse_side(data) {
            items.free(index, len);
        }
    }
}

/// A failed put, before it is turned into the caller's error type (the `From` impls
/// below).
pub(super) enum PutErr {
    /// Non-blocking only: no free slot now.
    Full,
    /// With a deadline only: it passed.
    Timeout,
    Closed,
    TooLarge(u64, u64),
    Codec(String),
    Io(std::io::Error),
}

impl From<PutErr> for Error {
    fn from(e: PutErr) -> Error {
        match e {
            PutErr::Timeout => Error::Timeout,
            PutErr::Closed => Error::Closed,
            PutErr::TooLarge(len, max) => Error::TooLarge { len, max },
            PutErr::Codec(e) => Error::Codec(e),
            PutErr::Io(e) => Error::Io(e),
            PutErr::Full => unreachable!("a blocking put waits for a free slot"),
        }
    }
}

impl From<PutErr> for TryPutError {
    fn from(e: PutErr) -> TryPutError {
        match e {
            PutErr::Full => TryPutError::Full,
            PutErr::Closed => TryPutError::Closed,
            PutErr::TooLarge(..) => TryPutError::TooLarge,
            PutErr::Codec(e) => TryPutError::Codec(e),
            PutErr::Io(_) => TryPutError::Io,
            PutErr::Timeout => unreachable!("a non-blocking put has no deadline"),
        }
    }
}

/// A failed get, before it is turned into the caller's error type (the `From` impls
/// below).
pub(super) enum GetErr {
    /// Non-blocking only: no item now.
    Empty,
    /// With a deadline only: it passed.
    Timeout,
    Closed,
    Protocol(ProtocolError),
    Codec(String),
    Io(std::io::Error),
}

impl From<GetErr> for Error {
    fn from(e: GetErr) -> Error {
        match e {
            GetErr::Timeout => Error::Timeout,
            GetErr::Closed => Error::Closed,
            GetErr::Protocol(p) => Error::Protocol(p),
            GetErr::Codec(e) => Error::Codec(e),
            GetErr::Io(e) => Error::Io(e),
            GetErr::Empty => unreachable!("a blocking get waits for an item"),
        }
    }
}

impl From<GetErr> for TryGetError {
    fn from(e: GetErr) -> TryGetError {
        match e {
            GetErr::Empty => TryGetError::Empty,
            GetErr::Closed => TryGetError::Closed,
            GetErr::Protocol(_) => TryGetError::Protocol,
            GetErr::Codec(_) => TryGetError::Codec,
            GetErr::Io(_) => TryGetError::Io,
            GetErr::Timeout => unreachable!("a non-blocking get has no deadline"),
        }
    }
}

/// What the consumer took out of a slot while it owned it. Decoding waits until the
/// slot is released: `T`'s `Deserialize` is user code, and a panic in it must not leave
/// a slot held by a live process.
enum Taken {
    Inline([u8; INLINE], usize),
    Side(std::io::Result<Vec<u8>>),
    Bad(ProtocolError),
}

impl Shared {
    pub(super) fn create(capacity: usize, joinable: bool) -> Result<Shared> {
        let cap = capacity as u64;
        if cap > mpmc::MAX_CAPACITY {
            // Checked before the size arithmetic: `memory_size` must not overflow.
            return Err(Error::CapacityTooLarge {
                what: "queue",
                requested: cap
                    .saturating_mul(mpmc::SLOT_SIZE as u64)
                    .saturating_add(Mpmc::memory_size(0) as u64),
                limit: Mpmc::memory_size(mpmc::MAX_CAPACITY) as u64,
                bound: SizeLimit::Maximum,
            });
        }
        if !Mpmc::valid_capacity(cap) {
            return Err(Error::InvalidState(
                "queue capacity must be between 1 and 2^32 items",
            ));
        }
        register_process();
        let params = [
            cap,
            mpmc::SLOT_SIZE as u64,
            u64::from(joinable),
            DEFAULT_MAX_ITEM,
        ];
        let region = Region::create(Kind::Queue, Mpmc::memory_size(cap), params)?;
        let s = Shared::from_region(region, ItemsFile::create()?, None)?;
        #[cfg(feature = "tokio")]
        let s = s.with_notify(super::asynk::QueueNotify::create_fds()?);
        s.ring.init(joinable);
        Ok(s)
    }

    pub(super) fn from_region(
        region: Region,
        items: ItemsFile,
        poke: Option<(OwnedFd, OwnedFd)>,
    ) -> Result<Shared> {
        let [cap, slot, joinable, max_item] = region.params();
        if slot != mpmc::SLOT_SIZE as u64 || joinable > 1 {
            return Err(RegionError::Corrupt.into());
        }
        let mut ring = mpmc::ring_in_region(&region, 0, cap)?;
        let items = std::sync::Arc::new(items);
        let for_hook = items.clone();
        ring.set_reclaim_hook(std::sync::Arc::new(move |kind, data, index| {
            reclaim_pages(&for_hook, kind, data, index)
        }));
        let poke = match poke {
            Some((r, w)) => PokePipe::from_fds(ring.not_empty_waiter(), r, w),
            None => PokePipe::create(ring.not_empty_waiter())?,
        };
        Ok(Shared {
            poke,
            region,
            items,
            ring,
            joinable: joinable == 1,
            max_item,
            #[cfg(feature = "tokio")]
            notify: Default::default(),
        })
    }

    /// Whether a `get` would not block: an item is there, or the queue is closed.
    pub(in crate::channel) fn ready_for_get(&self) -> bool {
        self.ring.len() > 0 || self.ring.is_closed()
    }

    /// The waiter consumers park on; `wait` arms it.
    pub(in crate::channel) fn not_empty_waiter(&self) -> &crate::sync::waiter::Waiter {
        self.ring.not_empty_waiter()
    }

    /// The poke pipe `wait` polls.
    pub(in crate::channel) fn poke_pipe(&self) -> &PokePipe {
        &self.poke
    }

    pub(super) fn claim_and_abandon(&self, as_consumer: bool) -> bool {
        if self.joinable && !as_consumer {
            self.ring.task_add();
        }
        self.ring.claim_and_abandon(mpmc::me(), as_consumer)
    }

    /// Puts one item, waiting as `wait` says: the one core of `put`, `try_put` and
    /// `put_timeout`.
    pub(super) fn put_value<T: Serialize + ?Sized>(
        &self,
        item: &T,
        wait: Deadline,
    ) -> std::result::Result<(), PutErr> {
        // Small items (the common case) encode on the stack, straight to slot size.
        let mut small = [0u8; INLINE];
        match codec::encode_to_slice(item, &mut small) {
            Ok(Some(n)) => return self.put_bytes(&small[..n], wait),
            Ok(None) => {}
            Err(e) => return Err(PutErr::Codec(Error::Codec(e).to_string())),
        }
        SCRATCH.with(|s| {
            let mut buf = s
                .try_borrow_mut()
                .map(|mut b| std::mem::take(&mut *b))
                .unwrap_or_default();
            buf.clear();
            let res = match codec::encode_into(item, &mut buf) {
                Ok(()) => self.put_bytes(&buf, wait),
                Err(e) => Err(PutErr::Codec(e.to_string())),
            };
            if buf.capacity() <= 1 << 16 {
                if let Ok(mut b) = s.try_borrow_mut() {
                    *b = buf;
                }
            }
            res
        })
    }

    fn put_bytes(&self, bytes: &[u8], wait: Deadline) -> std::result::Result<(), PutErr> {
        if bytes.len() as u64 > self.max_item {
            return Err(PutErr::TooLarge(bytes.len() as u64, self.max_item));
        }
        if self.joinable {
            self.ring.task_add();
        }
        let res = if bytes.len() <= INLINE {
            self.ring.put(
                mpmc::me(),
                KIND_INLINE,
                bytes,
                wait.instant(),
                &mut |_| Ok(()),
                wait.is_now(),
            )
        } else {
            self.put_side(bytes, wait)
        };
        if res.is_err() && self.joinable {
            let _ = self.ring.task_done();
        }
        res.map_err(|f| match f {
            PutFail::Full => PutErr::Full,
            PutFail::Timeout => PutErr::Timeout,
            PutFail::Closed => PutErr::Closed,
            PutFail::Failed(e) => PutErr::Io(e),
        })
    }

    fn put_side(&self, bytes: &[u8], wait: Deadline) -> std::result::Result<(), PutFail> {
        let len = bytes.len() as u64;
        if self.ring.is_closed() {
            return Err(PutFail::Closed);
        }
        if wait.is_now() && self.ring.len() >= self.ring.capacity() {
            return Err(PutFail::Full);
        }
        let desc = len.to_le_bytes();
        let items = &self.items;
        self.ring.put(
            mpmc::me(),
            KIND_SIDE,
            &desc,
            wait.instant(),
            // Written while this process holds the slot, in the slot's own window.
            &mut |index| items.write(index, bytes),
            wait.is_now(),
        )
    }

    /// Takes one item, waiting as `wait` says: the one core of `get`, `try_get` and
    /// `get_timeout`.
    pub(super) fn get_value<T: DeserializeOwned>(
        &self,
        wait: Deadline,
    ) -> std::result::Result<T, GetErr> {
        let max = self.max_item;
        let taken = self
            .ring
            .get(
                mpmc::me(),
                wait.instant(),
                &mut |kind, bytes, index| match kind {
                    KIND_INLINE => {
                        let mut copy = [0u8; INLINE];
                        copy[..bytes.len()].copy_from_slice(bytes);
                        Taken::Inline(copy, bytes.len())
                    }
                    KIND_SIDE => match parse_side(bytes) {
                        Some(len) if len > max => {
                            reclaim_pages(&self.items, kind, bytes, index);
                            Taken::Bad(ProtocolError::TooLarge { len, max })
                        }
                        Some(len) => {
                            let res = self.items.read(index, len);
                            reclaim_pages(&self.items, kind, bytes, index);
                            Taken::Side(res)
                        }
                        None => Taken::Bad(ProtocolError::BadRecord),
                    },
                    _ => Taken::Bad(ProtocolError::BadRecord),
                },
                wait.is_now(),
            )
            .map_err(|f| match f {
                GetFail::Empty => GetErr::Empty,
                GetFail::Timeout => GetErr::Timeout,
                GetFail::Closed => GetErr::Closed,
                GetFail::Protocol(p) => GetErr::Protocol(p),
            })?;
        match taken {
            Taken::Inline(bytes, len) => {
                codec::decode::<T>(&bytes[..len]).map_err(|e| GetErr::Codec(e.to_string()))
            }
            Taken::Bad(p) => Err(GetErr::Protocol(p)),
            Taken::Side(bytes) => {
                let bytes = bytes.map_err(GetErr::Io)?;
                codec::decode::<T>(&bytes).map_err(|e| GetErr::Codec(e.to_string()))
            }
        }
    }
}
