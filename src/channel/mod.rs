//! Channels between processes: `pipe()` (simplex), `duplex()`, and (see `queue`) the
//! many-producer many-consumer `Queue`.

mod pipe;

pub use pipe::{
    duplex, pipe, Connection, Pipe, PipeBuilder, Receiver, Sender, DEFAULT_CAPACITY,
    DEFAULT_MAX_MESSAGE,
};
