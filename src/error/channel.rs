//! The errors of the channel operations, one type per operation as in crossbeam's
//! `err.rs`: `send`/`try_send`/`send_timeout`, `recv`/`try_recv`/`recv_timeout`, and
//! the queue's `try_put`/`try_get` (its blocking calls report the crate-wide
//! [`Error`](super::Error)).

use std::fmt;

use super::ProtocolError;

/// Why `send` failed. Carries no message: the caller still owns it (`send` takes `&T`).
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendError {
    /// Every reader end is gone: dropped, or its process died.
    Disconnected,
    /// The message is larger than the channel's `max_message`.
    TooLarge {
        /// Encoded size.
        len: u64,
        /// The limit.
        max: u64,
    },
    /// The value could not be encoded.
    Codec(String),
    /// `send_with` only: the length asked for is over the in-place limit (a quarter of
    /// the ring's capacity); nothing was sent. `send_bytes` streams any length.
    TooLargeInPlace {
        /// Length asked for.
        len: u64,
        /// The in-place limit of this channel.
        max: u64,
    },
}

/// Why `try_send` failed.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrySendError {
    /// The ring has no room for the message now.
    Full,
    /// Every reader end is gone.
    Disconnected,
    /// The message is larger than `max_message`.
    TooLarge {
        /// Encoded size.
        len: u64,
        /// The limit.
        max: u64,
    },
    /// The message can never be placed in this ring at once, not even when it is empty
    /// (`try_send` needs room for all of it); `send` and `send_timeout` stream it
    /// through the ring in pieces.
    NeedsStreaming {
        /// Encoded size.
        len: u64,
        /// The largest message `try_send` can place in this ring.
        max: u64,
    },
    /// The value could not be encoded.
    Codec(String),
}

/// Why `send_timeout` failed.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendTimeoutError {
    /// The deadline passed while the ring was full.
    Timeout,
    /// Every reader end is gone.
    Disconnected,
    /// The message is larger than `max_message`.
    TooLarge {
        /// Encoded size.
        len: u64,
        /// The limit.
        max: u64,
    },
    /// The value could not be encoded.
    Codec(String),
}

/// Why `recv` failed.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecvError {
    /// Every writer end is gone and the ring is drained.
    Disconnected,
    /// A record read from the ring breaks the protocol (the message is skipped).
    Protocol(ProtocolError),
    /// The bytes did not decode as `T` (the message is consumed).
    Codec(String),
    /// The next record is a batch of plain-data elements (sent with `send_slice`): read
    /// it with `recv_slice`/`try_recv_slice`. Nothing was consumed.
    Batch,
    /// `recv_slice`/`try_recv_slice`: the next batch holds elements of another type
    /// (another size, or another type's fingerprint). Nothing was consumed.
    WrongElement {
        /// The element size the batch holds.
        size: u32,
        /// The size of the element type asked for.
        expected: u32,
    },
}

/// Why `try_recv` failed.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TryRecvError {
    /// No message is ready.
    Empty,
    /// Every writer end is gone and the ring is drained.
    Disconnected,
    /// A record breaks the protocol.
    Protocol(ProtocolError),
    /// The bytes did not decode as `T`.
    Codec(String),
    /// The next record is a batch of plain-data elements (sent with `send_slice`): read
    /// it with `recv_slice`/`try_recv_slice`. Nothing was consumed.
    Batch,
    /// `recv_slice`/`try_recv_slice`: the next batch holds elements of another type
    /// (another size, or another type's fingerprint). Nothing was consumed.
    WrongElement {
        /// The element size the batch holds.
        size: u32,
        /// The size of the element type asked for.
        expected: u32,
    },
}

/// Why `recv_timeout` failed.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecvTimeoutError {
    /// The deadline passed with no message.
    Timeout,
    /// Every writer end is gone and the ring is drained.
    Disconnected,
    /// A record breaks the protocol.
    Protocol(ProtocolError),
    /// The bytes did not decode as `T`.
    Codec(String),
    /// The next record is a batch of plain-data elements (sent with `send_slice`): read
    /// it with `recv_slice`/`try_recv_slice`. Nothing was consumed.
    Batch,
    /// `recv_slice`/`try_recv_slice`: the next batch holds elements of another type
    /// (another size, or another type's fingerprint). Nothing was consumed.
    WrongElement {
        /// The element size the batch holds.
        size: u32,
        /// The size of the element type asked for.
        expected: u32,
    },
}

/// Why `try_put` failed.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TryPutError {
    /// The queue holds its capacity of items.
    Full,
    /// The queue was closed.
    Closed,
    /// The item's encoding exceeds the queue's size limit.
    TooLarge,
    /// The item's `Serialize` failed; what it said.
    Codec(String),
    /// Storing a large item failed (the items file: no memory left).
    Io,
}

/// Why `try_get` failed.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TryGetError {
    /// No item is ready.
    Empty,
    /// The queue was closed and is drained.
    Closed,
    /// The item in shared memory was corrupt (it was consumed).
    Protocol,
    /// The item did not decode as `T` (it was consumed).
    Codec,
    /// Reading a large item failed (the items file could not be read).
    Io,
}

// The texts the variants share between the six channel errors.

fn disconnected(f: &mut fmt::Formatter<'_>, doing: &str) -> fmt::Result {
    write!(f, "{doing} on a disconnected channel")
}

fn too_large(f: &mut fmt::Formatter<'_>, len: u64, max: u64) -> fmt::Result {
    write!(f, "message of {len} bytes exceeds the limit of {max} bytes")
}

fn not_encoded(f: &mut fmt::Formatter<'_>, why: &str) -> fmt::Result {
    write!(f, "message could not be encoded: {why}")
}

fn not_decoded(f: &mut fmt::Formatter<'_>, why: &str) -> fmt::Result {
    write!(f, "message could not be decoded: {why}")
}

fn batch(f: &mut fmt::Formatter<'_>) -> fmt::Result {
    f.write_str(
        "the next record is a batch of plain-data elements sent with send_slice: read it \
         with recv_slice (nothing was consumed)",
    )
}

fn wrong_element(f: &mut fmt::Formatter<'_>, size: u32, expected: u32) -> fmt::Result {
    write!(
        f,
        "the next batch holds elements of another type ({size} bytes each, a {expected}-byte \
         type asked for, or another type's fingerprint); nothing was consumed"
    )
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendError::Disconnected => disconnected(f, "sending"),
            SendError::TooLarge { len, max } => too_large(f, *len, *max),
            SendError::Codec(e) => not_encoded(f, e),
            SendError::TooLargeInPlace { len, max } => write!(
                f,
                "a message of {len} bytes is over the in-place limit of {max} bytes \
                 (a quarter of the ring); send_bytes streams any length"
            ),
        }
    }
}

impl fmt::Display for TrySendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TrySendError::Full => f.write_str("channel is full"),
            TrySendError::Disconnected => disconnected(f, "sending"),
            TrySendError::TooLarge { len, max } => too_large(f, *len, *max),
            TrySendError::NeedsStreaming { len, max } => write!(
                f,
                "a message of {len} bytes never fits the ring at once (try_send places at \
                 most {max} bytes here); send or send_timeout stream it"
            ),
            TrySendError::Codec(e) => not_encoded(f, e),
        }
    }
}

impl fmt::Display for SendTimeoutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendTimeoutError::Timeout => f.write_str("timed out sending"),
            SendTimeoutError::Disconnected => disconnected(f, "sending"),
            SendTimeoutError::TooLarge { len, max } => too_large(f, *len, *max),
            SendTimeoutError::Codec(e) => not_encoded(f, e),
        }
    }
}

impl fmt::Display for RecvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecvError::Disconnected => disconnected(f, "receiving"),
            RecvError::Protocol(p) => p.fmt(f),
            RecvError::Codec(e) => not_decoded(f, e),
            RecvError::Batch => batch(f),
            RecvError::WrongElement { size, expected } => wrong_element(f, *size, *expected),
        }
    }
}

impl fmt::Display for TryRecvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TryRecvError::Empty => f.write_str("channel is empty"),
            TryRecvError::Disconnected => disconnected(f, "receiving"),
            TryRecvError::Protocol(p) => p.fmt(f),
            TryRecvError::Codec(e) => not_decoded(f, e),
            TryRecvError::Batch => batch(f),
            TryRecvError::WrongElement { size, expected } => wrong_element(f, *size, *expected),
        }
    }
}

impl fmt::Display for RecvTimeoutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecvTimeoutError::Timeout => f.write_str("timed out receiving"),
            RecvTimeoutError::Disconnected => disconnected(f, "receiving"),
            RecvTimeoutError::Protocol(p) => p.fmt(f),
            RecvTimeoutError::Codec(e) => not_decoded(f, e),
            RecvTimeoutError::Batch => batch(f),
            RecvTimeoutError::WrongElement { size, expected } => wrong_element(f, *size, *expected),
        }
    }
}

impl fmt::Display for TryPutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TryPutError::Full => f.write_str("queue is full"),
            TryPutError::Closed => f.write_str("queue is closed"),
            TryPutError::TooLarge => f.write_str("item exceeds the queue's size limit"),
            TryPutError::Codec(e) => write!(f, "item could not be encoded: {e}"),
            TryPutError::Io => f.write_str("OS error while storing a large item"),
        }
    }
}

impl fmt::Display for TryGetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TryGetError::Empty => "queue is empty",
            TryGetError::Closed => "queue is closed",
            TryGetError::Protocol => "corrupt item in queue",
            TryGetError::Codec => "item could not be decoded",
            TryGetError::Io => "OS error while reading a large item",
        })
    }
}

impl std::error::Error for SendError {}
impl std::error::Error for TrySendError {}
impl std::error::Error for SendTimeoutError {}
impl std::error::Error for RecvError {}
impl std::error::Error for TryRecvError {}
impl std::error::Error for RecvTimeoutError {}
impl std::error::Error for TryPutError {}
impl std::error::Error for TryGetError {}
