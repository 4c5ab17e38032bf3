//! # shmproc
//!
//! Python's `multiprocessing` for Rust — processes, a worker pool, pipes, queues, locks
//! and shared values — with every channel built as a lock-free ring buffer in a
//! shared-memory region instead of a kernel pipe.
//!
//! The layers, bottom to top: `sys` (syscall wrappers, private) → `region` (shared
//! mappings) → `sync` (futex waiter, locks, shared values) → `ring` (lock-free rings) →
//! `codec` (serde) → `channel` (pipes, queues) → `process` → `pool`. Nothing imports
//! upward; this file re-exports one flat API.
#![warn(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks)]

mod error;
mod sys;

pub mod channel;
pub mod codec;
mod handoff;
pub mod pool;
pub mod process;
pub mod region;
pub(crate) mod ring;
pub mod sync;

pub use channel::{duplex, pipe, Connection, Pipe, PipeBuilder, Receiver, Sender};
pub use channel::{JoinableQueue, Queue};
pub use error::*;
pub use process::{get_context, init, Context, Process, StartMethod};
