//! # shmproc
//!
//! Python's `multiprocessing` for Rust — processes, a worker pool, pipes, queues, locks
//! and shared values — with every channel built as a lock-free ring buffer in a
//! shared-memory region instead of a kernel pipe.
//!
//! The layers, bottom to top: `sys` (syscall wrappers, private; `sys::socket` for Unix
//! sockets, `SCM_RIGHTS` and `poll`) → `region` (shared mappings, and the named
//! [`SharedMemory`] of Python's `multiprocessing.shared_memory`) → `sync` (futex waiter,
//! locks, shared values, `sync::handoff`, the registry of the handles handed to other
//! processes, and `sync::poke`, what a waker writes to so that [`wait`] sees it) →
//! `ring` (lock-free rings) → `codec` (serde) → `channel` (pipes, queues; [`Listener`]
//! and [`connect`] for unrelated processes, and [`wait`]) → `process` → `pool`. Nothing
//! imports upward; this file re-exports one flat API.
#![warn(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks)]

mod channel;
pub mod codec;
mod error;
mod pool;
mod process;
mod region;
mod ring;
mod sync;
// Process-local state (fork generation, membarrier registration, descriptor cells)
// keeps std's atomics: it is never in shared memory, so loom need not model it.
#[allow(clippy::disallowed_types)]
mod sys;

pub use channel::MAX_NAME_LEN;
pub use channel::{connect, connect_timeout, wait, Connector, Listener, ListenerBuilder, Ready};
pub use channel::{duplex, pipe, Connection, Pipe, PipeBuilder, Receiver, Sender};
pub use channel::{JoinableQueue, Queue};
pub use channel::{
    DEFAULT_CAPACITY, DEFAULT_MAX_ITEM, DEFAULT_MAX_MESSAGE, DEFAULT_QUEUE_CAPACITY, INLINE_BYTES,
};
pub use error::*;
pub use pool::{AsyncResult, Pool, PoolBuilder};
pub use process::{get_context, init, Context, Process, StartMethod};
pub use region::{SharedMemory, MAX_SHM_NAME_LEN};
pub use sync::{
    Array, ArrayGuard, ArrayInit, Barrier, BoundedSemaphore, Condition, Event, Lock, LockGuard,
    RLock, RLockGuard, Semaphore, Value, ValueGuard,
};

/// The README's example is compiled and run as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

/// Entry points for the fuzz targets (`fuzz/`) and property tests: decoders run on
/// arbitrary bytes, as another process could leave them in shared memory. Not part of the
/// stable API.
#[doc(hidden)]
pub mod fuzzing {
    /// Decodes `data` as a ring image: the first byte picks the capacity (64 B to 2 KiB),
    /// the rest is the control block and the data. Returns the payload bytes read, or the
    /// protocol error the receiver would report.
    pub fn ring_image(data: &[u8]) -> Result<u64, crate::ProtocolError> {
        let (first, rest) = data.split_first().unwrap_or((&0, &[]));
        let cap = 64u64 << (first % 6);
        crate::ring::spsc::decode_image(rest, cap)
    }

    /// Validates `data` as a region image (header and length), as opening one does.
    pub fn region_image(data: &[u8]) -> Result<Header, crate::RegionError> {
        crate::region::validate_image(data)
    }

    pub use crate::region::{test_image, Header};

    /// Decodes `data` as `T` as a receiver decodes a small record: the first
    /// `data.len()` bytes of a 64-byte stack buffer whose other bytes are `fill`. `None`
    /// when `data` is longer. The same result as [`crate::codec::decode`] of `data`.
    pub fn decode_small<T: serde::de::DeserializeOwned>(
        data: &[u8],
        fill: u8,
    ) -> Option<crate::Result<T>> {
        let mut buf = [fill; 64];
        buf.get_mut(..data.len())?.copy_from_slice(data);
        Some(crate::codec::decode_small(&buf, data.len()))
    }

    /// Decodes `data` as `T` from the low bytes of a register whose other bytes are
    /// `fill` (a tiny record). `None` when `data` is longer than 8 bytes. The same
    /// result as [`crate::codec::decode`] of `data`.
    pub fn decode_word<T: serde::de::DeserializeOwned>(
        data: &[u8],
        fill: u8,
    ) -> Option<crate::Result<T>> {
        let mut w = [fill; 8];
        w.get_mut(..data.len())?.copy_from_slice(data);
        Some(crate::codec::decode_word(u64::from_le_bytes(w), data.len()))
    }

    /// A reader that dies without dropping its end is noticed within this many sends
    /// (the fault tests count them).
    pub use crate::channel::DEAD_READER_SENDS;

    pub use crate::process::job_testing;
}
