//! The lock-free rings that every channel is built on.
//!
//! * [`spsc`]: a single-producer single-consumer byte ring carrying variable-length
//!   framed records, used by pipes.

pub(crate) mod spsc;
