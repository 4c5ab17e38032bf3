//! Where every sync object lives: one small memfd region ([`Kind::Sync`]) per object,
//! holding a [`Block`] of control words and then (for `Value`/`Array`) the data.
//!
//! The region header's parameters say what the object is (`params[0]`, a [`What`]) and
//! its shape (`params[1..]`); a handle received from another process is checked against
//! them, so a semaphore is never opened as a lock or a `Value<u64>` as a `Value<u8>`.

use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::atomic::{AtomicU32, AtomicU64};
use super::handoff;
use super::raw::RawLock;
use super::waiter::{register_process, Waiter};
use crate::error::{Error, RegionError, Result};
use crate::region::{Kind, Region};

/// The control words of a sync object. All-zero is the initial state of every object.
#[repr(C)]
pub(crate) struct Block {
    /// The lock of `Lock`, `RLock`, `Condition`, `Value`, `Array`.
    pub(crate) lock: RawLock,
    /// RLock: recursion depth (touched by the holder only). Semaphore: the count.
    /// Event: the flag.
    pub(crate) count: AtomicU32,
    /// Condition: bumped by every notify (the futex word its waiters sleep on).
    pub(crate) seq: AtomicU32,
    /// Condition: number of waiters between `wait`'s unlock and wake-up.
    pub(crate) sleepers: AtomicU32,
    _pad: u32,
    /// Barrier: generation, flags and count (see `Barrier`).
    pub(crate) barrier: AtomicU64,
    /// Semaphore, Event, Barrier: where waiters park.
    pub(crate) waiter: Waiter,
}

impl Block {
    /// A zeroed block on the heap, for loom models.
    #[cfg(loom)]
    pub(crate) fn new() -> Block {
        Block {
            lock: RawLock::new(),
            count: AtomicU32::new(0),
            seq: AtomicU32::new(0),
            sleepers: AtomicU32::new(0),
            _pad: 0,
            barrier: AtomicU64::new(0),
            waiter: Waiter::new(),
        }
    }
}

/// Offset of the data (`Value`, `Array`) in the payload; also its maximum alignment.
pub(crate) const DATA_OFFSET: usize = 128;

#[cfg(not(loom))]
const _: () = assert!(std::mem::size_of::<Block>() <= DATA_OFFSET);

/// Which sync type a region holds (`params[0]` of its header).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u64)]
pub(crate) enum What {
    Lock = 1,
    RLock = 2,
    Semaphore = 3,
    BoundedSemaphore = 4,
    Event = 5,
    Condition = 6,
    Barrier = 7,
    Value = 8,
    Array = 9,
}

/// A mapped sync object. Handles hold it in an `Arc`.
pub(crate) struct Obj {
    region: Region,
    block: *const Block,
}

// SAFETY: `block` points into `region`'s mapping, which lives as long as `Obj` and is
// shared memory made of atomics: nothing about it is tied to a thread.
unsafe impl Send for Obj {}
// SAFETY: as above; all access through `block` is through atomics.
unsafe impl Sync for Obj {}

impl Obj {
    /// Creates a fresh object with `data_len` bytes of zeroed data after the block.
    pub(crate) fn create(what: What, data_len: usize, shape: [u64; 3]) -> Result<Arc<Obj>> {
        register_process();
        // Makes sure the per-thread identity cache is invalidated by any later fork.
        crate::sys::fork_generation();
        let len = DATA_OFFSET
            .checked_add(data_len)
            .ok_or(Error::CapacityTooLarge {
                what: "shared array",
                requested: u64::MAX,
                limit: isize::MAX as u64,
                bound: crate::error::SizeLimit::Maximum,
            })?;
        let region = Region::create(Kind::Sync, len, [what as u64, shape[0], shape[1], shape[2]])?;
        Ok(Arc::new(Obj::from_region(region)))
    }

    fn from_region(region: Region) -> Obj {
        let block = region.payload().as_ptr().cast::<Block>().cast_const();
        Obj { region, block }
    }

    /// The control block.
    #[inline(always)]
    pub(crate) fn block(&self) -> &Block {
        // SAFETY: the payload is at least DATA_OFFSET >= size_of::<Block>() bytes
        // (checked at creation and when opening), 128-byte aligned, mapped as long as
        // `self.region` lives, and holds only atomics (plus padding), for which any bit
        // pattern is valid and shared references are sound across processes.
        unsafe { &*self.block }
    }

    /// The data area (`data_len()` bytes, 128-byte aligned).
    pub(crate) fn data(&self) -> *mut u8 {
        // SAFETY: the payload is DATA_OFFSET + data_len() bytes long.
        unsafe { self.region.payload().as_ptr().add(DATA_OFFSET) }
    }

    /// Bytes of data after the block.
    pub(crate) fn data_len(&self) -> usize {
        self.region.payload_len() - DATA_OFFSET
    }

    /// The shape parameters given at creation (`params[1..]`).
    pub(crate) fn shape(&self) -> [u64; 3] {
        let p = self.region.params();
        [p[1], p[2], p[3]]
    }

    /// Whether `self` and `other` are the same shared object (the same mapping, or two
    /// mappings of one memfd, as after a spawned child received it twice).
    pub(crate) fn same_object(&self, other: &Obj) -> bool {
        if std::ptr::eq(self.block, other.block) {
            return true;
        }
        match (
            crate::sys::file_id(self.region.fd()),
            crate::sys::file_id(other.region.fd()),
        ) {
            (Ok(a), Ok(b)) => a == b,
            _ => false,
        }
    }

    /// Serializes this object for a spawned child (its region's descriptor).
    pub(crate) fn serialize<S: Serializer>(&self, ser: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::Error as _;
        self.to_wire()
            .map_err(|e| S::Error::custom(e.to_string()))?
            .serialize(ser)
    }

    /// What this object serializes to: its descriptor, passed to the spawned child.
    pub(crate) fn to_wire(&self) -> Result<Wire> {
        Ok(Wire {
            region: handoff::pass_fd(self.region.fd())?,
            what: self.region.params()[0],
        })
    }

    /// Deserializes an object of type `what` in a spawned child; `valid` checks the shape.
    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        de: D,
        what: What,
        valid: impl FnOnce(&Obj) -> bool,
    ) -> std::result::Result<Arc<Obj>, D::Error> {
        use serde::de::Error as _;
        let w = Wire::deserialize(de)?;
        Obj::open(w, what, valid).map_err(|e| D::Error::custom(e.to_string()))
    }

    /// Opens an object received as `w` (see [`Obj::deserialize`]).
    pub(crate) fn open(w: Wire, what: What, valid: impl FnOnce(&Obj) -> bool) -> Result<Arc<Obj>> {
        if w.what != what as u64 {
            return Err(Error::Handle("handle of another sync type"));
        }
        register_process();
        crate::sys::fork_generation();
        let region = Region::open_fd(handoff::adopt_fd(w.region)?, Kind::Sync)?;
        if region.params()[0] != what as u64 {
            return Err(Error::Handle("region holds another sync type"));
        }
        if region.payload_len() < DATA_OFFSET {
            return Err(RegionError::Corrupt.into());
        }
        let obj = Obj::from_region(region);
        if !valid(&obj) {
            return Err(RegionError::Corrupt.into());
        }
        Ok(Arc::new(obj))
    }
}

/// What a sync handle serializes to when handed to a spawned child.
#[derive(Serialize, Deserialize)]
pub(crate) struct Wire {
    region: i32,
    what: u64,
}

/// `Serialize`/`Deserialize` for a non-generic handle `{ obj: Arc<Obj> }` (or one that
/// wraps such a handle).
macro_rules! sync_handle_serde {
    ($ty:ident, $what:expr, $valid:expr) => {
        $crate::sync::shared::sync_handle_serde!(@ $ty [obj] (|obj| $ty { obj }), $what, $valid);
    };
    // A handle that wraps another handle type: `$outer { $field: $inner { obj } }`.
    ($outer:ident { $field:ident: $inner:ident }, $what:expr, $valid:expr) => {
        $crate::sync::shared::sync_handle_serde!(
            @ $outer [$field.obj] (|obj| $outer { $field: $inner { obj } }), $what, $valid
        );
    };
    (@ $ty:ident [$($obj:tt)+] ($make:expr), $what:expr, $valid:expr) => {
        impl serde::Serialize for $ty {
            fn serialize<S: serde::Serializer>(
                &self,
                s: S,
            ) -> std::result::Result<S::Ok, S::Error> {
                self.$($obj)+.serialize(s)
            }
        }

        impl<'de> serde::Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(
                d: D,
            ) -> std::result::Result<Self, D::Error> {
                let obj = $crate::sync::shared::Obj::deserialize(d, $what, $valid)?;
                Ok(($make)(obj))
            }
        }
    };
}
pub(crate) use sync_handle_serde;
