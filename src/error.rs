//! Every error type of the crate, one per operation (std/crossbeam style): the crate-wide
//! [`Error`] and what shared memory can get wrong here; the channel and queue errors in
//! `channel`; the lock and barrier errors in `sync`. All of them are re-exported at the
//! crate root.
//!
//! None of them prints a user's `T`: the ones that carry a guard implement `Debug` by
//! hand, as `std::sync::PoisonError` does.

use std::fmt;
use std::io;

mod channel;
mod sync;

pub use channel::{
    RecvError, RecvTimeoutError, SendError, SendTimeoutError, TryGetError, TryPutError,
    TryRecvError, TrySendError,
};
pub use sync::{BarrierError, LockError};

/// The crate-wide result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a shared region could not be opened or trusted.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegionError {
    /// The mapping is smaller than its header claims, or smaller than a header.
    Truncated {
        /// Bytes actually present.
        actual: u64,
        /// Bytes the header (or the caller) requires.
        expected: u64,
    },
    /// The magic number is not shmproc's: this is not a shmproc region.
    Foreign,
    /// A shmproc region of another layout version.
    Version {
        /// Version found in the header.
        found: u32,
        /// Version this build understands.
        expected: u32,
    },
    /// The header checksum does not match its fields: the header was corrupted.
    Corrupt,
    /// The region holds another kind of object than the one asked for.
    WrongKind {
        /// Kind found in the header.
        found: u32,
        /// Kind asked for.
        expected: u32,
    },
    /// A memfd without the seals that stop a peer from shrinking it under us.
    Unsealed,
    /// A named segment that is not ours: wrong owner or a mode wider than 0600.
    Untrusted,
}

impl fmt::Display for RegionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RegionError::Truncated { actual, expected } => {
                write!(
                    f,
                    "shared region truncated: {actual} bytes, {expected} expected"
                )
            }
            RegionError::Foreign => f.write_str("not a shmproc region (bad magic)"),
            RegionError::Version { found, expected } => {
                write!(
                    f,
                    "shmproc region layout version {found}, this build reads {expected}"
                )
            }
            RegionError::Corrupt => {
                f.write_str("shmproc region header is corrupt (checksum mismatch)")
            }
            RegionError::WrongKind { found, expected } => {
                write!(
                    f,
                    "shmproc region holds object kind {found}, expected {expected}"
                )
            }
            RegionError::Unsealed => f.write_str("memfd region is not sealed against resizing"),
            RegionError::Untrusted => {
                f.write_str("named segment has a foreign owner or a mode wider than 0600")
            }
        }
    }
}

impl std::error::Error for RegionError {}

/// A violation of the wire protocol read from shared memory written by another process.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProtocolError {
    /// A record header claims a length over the channel's `max_message`.
    TooLarge {
        /// Length claimed.
        len: u64,
        /// The configured limit.
        max: u64,
    },
    /// A record header or index points outside the ring, or is otherwise impossible.
    BadRecord,
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProtocolError::TooLarge { len, max } => {
                write!(f, "message of {len} bytes exceeds the limit of {max} bytes")
            }
            ProtocolError::BadRecord => f.write_str("corrupt record in shared ring"),
        }
    }
}

impl std::error::Error for ProtocolError {}

/// Which limit a size asked for at creation is over ([`Error::CapacityTooLarge`]).
///
/// Every region is checked before any of its memory is reserved: an anonymous memfd
/// has no size limit of its own, and reserving more than the machine has would push
/// other processes out (its pages are charged to nobody's RSS, so the OOM killer picks
/// innocent ones). One region may take at most half of what is left.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SizeLimit {
    /// The most this kind of object can hold (a ring's largest capacity, a queue's
    /// largest number of slots, the address space).
    Maximum,
    /// Half of the memory the kernel reports available (`MemAvailable` in
    /// `/proc/meminfo`) at creation.
    MemAvailable,
    /// Half of what the process's memory cgroup (or an enclosing one) has left:
    /// `memory.max` minus `memory.current` (cgroup v2), or `memory.limit_in_bytes`
    /// minus `memory.usage_in_bytes` (v1).
    Cgroup,
}

impl fmt::Display for SizeLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SizeLimit::Maximum => "the most it can hold",
            SizeLimit::MemAvailable => "half of MemAvailable",
            SizeLimit::Cgroup => "half of what the memory cgroup has left",
        })
    }
}

/// What is wrong with a name ([`Error::InvalidName`]).
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameProblem {
    /// The name is empty.
    Empty,
    /// It contains `/`: names are not paths.
    Slash,
    /// It contains a NUL byte.
    Nul,
    /// It is longer than the platform allows (`MAX_NAME_LEN` for a listener,
    /// `MAX_SHM_NAME_LEN` for shared memory).
    TooLong,
}

impl fmt::Display for NameProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NameProblem::Empty => "empty",
            NameProblem::Slash => "contains '/' (names are not paths)",
            NameProblem::Nul => "contains a NUL byte",
            NameProblem::TooLong => "too long for the platform",
        })
    }
}

/// The crate-wide error.
#[non_exhaustive]
#[derive(Debug)]
pub enum Error {
    /// The queue, pool or object was closed.
    Closed,
    /// A deadline passed.
    Timeout,
    /// The peer is gone: every end on the other side was dropped or its process died.
    Disconnected,
    /// A worker process died while it held a task.
    WorkerDied {
        /// Its process id.
        pid: u32,
        /// The signal that killed it, if it was killed by one.
        signal: Option<i32>,
        /// Its exit code, if it exited.
        code: Option<i32>,
    },
    /// A task panicked; the panic message.
    TaskPanicked(String),
    /// A shared region is foreign, truncated, of another version or corrupt.
    Region(RegionError),
    /// Shared memory written by a peer broke the protocol.
    Protocol(ProtocolError),
    /// A message is larger than the configured maximum.
    TooLarge {
        /// The message's size in bytes.
        len: u64,
        /// The limit.
        max: u64,
    },
    /// A size asked for at creation (a pipe's capacity, a queue's, an array's length)
    /// cannot be had: it is over the most such an object can hold, or it needs more
    /// shared memory than may be reserved now (see [`SizeLimit`]). Nothing was reserved.
    CapacityTooLarge {
        /// What was too large: `"pipe capacity"`, `"pipe"`, `"queue"`, `"shared array"`...
        what: &'static str,
        /// Bytes it needs (saturated at `u64::MAX` when that overflows).
        requested: u64,
        /// The limit it is over, in bytes.
        limit: u64,
        /// Which limit.
        bound: SizeLimit,
    },
    /// Encoding or decoding a value failed.
    Codec(String),
    /// A handle was serialized outside a process hand-off, or a hand-off failed.
    Handle(&'static str),
    /// The operation is not valid in this state (start twice, join before start, ...).
    InvalidState(&'static str),
    /// A spawned process could not be started: spawn is refused in a secure-execution
    /// (setuid, setgid, file-capability) process, or the child exited before it accepted
    /// its job (its stderr says why).
    Spawn(String),
    /// An operating-system error.
    Io(io::Error),
    /// A name for a `Listener`, `connect` or `SharedMemory` that cannot be one: empty,
    /// with a `/` or a NUL, or longer than the platform allows.
    InvalidName {
        /// The name given.
        name: String,
        /// What is wrong with it.
        problem: NameProblem,
    },
    /// The name is taken: a live `Listener` is bound to it (`Listener::bind`), or a
    /// `SharedMemory` of that name exists whose creator still runs (or that shmproc did
    /// not create) (`SharedMemory::create`).
    NameInUse(String),
    /// Nothing goes by that name: no `Listener` is bound to it (`connect`), or no shared
    /// memory block has it (`SharedMemory::open`).
    NameNotFound(String),
    /// The peer runs as a user that is not allowed: `accept` refused a client of another
    /// user (the listener goes on), or `connect` found the name bound by a listener of a
    /// user other than the one expected (someone else may have taken the name).
    PeerRefused {
        /// The peer's process id, as the kernel recorded it.
        pid: u32,
        /// The peer's user id.
        uid: u32,
    },
    /// The listener refused this connection: this user is not allowed to connect.
    Refused,
    /// A range outside a [`SharedMemory`](crate::SharedMemory) block.
    OutOfBounds {
        /// Where the range starts.
        offset: u64,
        /// Its length.
        len: u64,
        /// The block's size.
        size: u64,
    },
    /// The other side of a rendezvous socket broke the protocol (garbage, a truncated or
    /// unknown packet, descriptors that are not a shmproc channel). Nothing of it was kept.
    Handshake(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Closed => f.write_str("closed"),
            Error::Timeout => f.write_str("timed out"),
            Error::Disconnected => f.write_str("peer disconnected"),
            Error::WorkerDied { pid, signal, code } => match (signal, code) {
                (Some(s), _) => write!(f, "worker process {pid} was killed by signal {s}"),
                (None, Some(c)) => write!(f, "worker process {pid} exited with code {c}"),
                (None, None) => write!(f, "worker process {pid} died"),
            },
            Error::TaskPanicked(msg) => write!(f, "task panicked: {msg}"),
            Error::Region(e) => e.fmt(f),
            Error::Protocol(e) => e.fmt(f),
            Error::TooLarge { len, max } => {
                write!(f, "message of {len} bytes exceeds the limit of {max} bytes")
            }
            Error::CapacityTooLarge {
                what,
                requested,
                limit,
                bound,
            } => write!(
                f,
                "{what} needs {requested} bytes of shared memory, over the limit of {limit} \
                 bytes ({bound}); nothing was reserved"
            ),
            Error::Codec(e) => write!(f, "codec error: {e}"),
            Error::Handle(e) => write!(f, "handle passing: {e}"),
            Error::InvalidState(e) => write!(f, "invalid state: {e}"),
            Error::Spawn(e) => write!(f, "spawn: {e}"),
            Error::Io(e) => write!(f, "OS error: {e}"),
            Error::InvalidName { name, problem } => write!(f, "invalid name {name:?}: {problem}"),
            Error::NameInUse(name) => write!(f, "the name {name:?} is in use"),
            Error::NameNotFound(name) => write!(f, "nothing goes by the name {name:?}"),
            Error::PeerRefused { pid, uid } => write!(
                f,
                "peer process {pid} runs as user {uid}, which is not allowed"
            ),
            Error::Refused => f.write_str("the listener refused the connection (user not allowed)"),
            Error::OutOfBounds { offset, len, size } => write!(
                f,
                "{len} bytes at offset {offset} do not fit in a block of {size} bytes"
            ),
            Error::Handshake(e) => write!(f, "bad rendezvous: {e}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io(e) => Some(e),
            Error::Region(e) => Some(e),
            Error::Protocol(e) => Some(e),
            _ => None,
        }
    }
}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Self {
        Error::Io(e)
    }
}

impl From<nix::Error> for Error {
    fn from(e: nix::Error) -> Self {
        Error::Io(io::Error::from(e))
    }
}

impl From<RegionError> for Error {
    fn from(e: RegionError) -> Self {
        Error::Region(e)
    }
}

impl From<ProtocolError> for Error {
    fn from(e: ProtocolError) -> Self {
        Error::Protocol(e)
    }
}
