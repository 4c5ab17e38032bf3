//! Channels between processes: `pipe()` (simplex), `duplex()`, and (see `queue`) the
//! many-producer many-consumer `Queue`.

mod pipe;

pub use pipe::{
    duplex, pipe, Connection, Pipe, PipeBuilder, Receiver, Sender, DEAD_READER_SENDS,
    DEFAULT_CAPACITY, DEFAULT_MAX_MESSAGE,
};

mod named;

pub use named::{connect, connect_timeout, Connector, Listener, ListenerBuilder, MAX_NAME_LEN};

mod queue;
pub(crate) mod wait;

pub use wait::{wait, Ready};

pub use queue::{JoinableQueue, Queue, DEFAULT_MAX_ITEM, INLINE_BYTES};
/// Capacity of `Queue::new()` and `JoinableQueue::new()`, in items.
pub const DEFAULT_QUEUE_CAPACITY: usize = queue::DEFAULT_CAPACITY;
