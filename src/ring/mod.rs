//! The lock-free rings that every channel is built on.
//!
//! * [`spsc`]: a single-producer single-consumer byte ring carrying variable-length
//!   framed records, used by pipes.
//! * [`mpmc`]: a bounded many-producer many-consumer ring of slots (Vyukov style, with
//!   dead-owner recovery), used by queues.

pub(crate) mod mpmc;
pub(crate) mod spsc;
