//! The transports of the seed's experiment. Each `run` forks a reader, waits until it is
//! set up, then times from the first send until the reader has been joined after DONE.

use std::time::{Duration, Instant};

use crate::proc::{Child, Ready, EXIT_BAD_DATA};

pub mod iox;
pub mod ipc_chan;
pub mod mutex_ring;
pub mod python;
pub mod shmproc_rows;
pub mod shmproc_slice;
pub mod spsc;
pub mod stream;

/// The DONE marker of the raw-`u64` transports (the serde ones send `Msg::Done`).
pub const DONE: u64 = u64::MAX;

/// The seed's payload: an integer, or DONE.
#[derive(serde::Serialize, serde::Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Msg {
    Int(u64),
    Done,
}

pub struct Cfg {
    /// Longest wait for a reader to get ready or to finish.
    pub timeout: Duration,
}

pub type RunFn = fn(count: u64, cfg: &Cfg) -> Result<Duration, String>;

pub struct Transport {
    /// Short id used on the command line and in the CSV.
    pub id: &'static str,
    /// What the row is, for the table.
    pub label: &'static str,
    pub run: RunFn,
}

/// Every Rust transport, in table order (Python rows are run separately).
pub fn all() -> Vec<Transport> {
    vec![
        Transport {
            id: "shmproc-pipe",
            label: "shmproc pipe::<Msg>() (postcard), forked reader",
            run: shmproc_rows::pipe,
        },
        Transport {
            id: "shmproc-pipe-spawn",
            label: "shmproc pipe::<Msg>(), spawned reader",
            run: shmproc_rows::pipe_spawn,
        },
        Transport {
            id: "shmproc-duplex",
            label: "shmproc duplex::<Msg>(), forked reader",
            run: shmproc_rows::duplex,
        },
        Transport {
            id: "shmproc-queue",
            label: "shmproc Queue::<Msg>",
            run: shmproc_rows::queue,
        },
        Transport {
            id: "shmproc-send-all",
            label: "shmproc pipe::<u64>() send_all, 1024/batch",
            run: shmproc_rows::pipe_batch,
        },
        Transport {
            id: "shmproc-send-slice",
            label: "shmproc pipe::<u64>() send_slice/recv_slice, 4096/slice",
            run: shmproc_slice::run,
        },
        Transport {
            id: "os-pipe",
            label: "OS pipe, write() per msg",
            run: stream::os_pipe,
        },
        Transport {
            id: "os-pipe-buf",
            label: "OS pipe, BufWriter",
            run: stream::os_pipe_buffered,
        },
        Transport {
            id: "socketpair",
            label: "Unix socketpair (stream)",
            run: stream::unix_socketpair,
        },
        Transport {
            id: "ipc-channel",
            label: "ipc-channel <Msg>",
            run: ipc_chan::run,
        },
        Transport {
            id: "iceoryx2",
            label: "iceoryx2 pub/sub u64",
            run: iox::run,
        },
        Transport {
            id: "mutex-ring",
            label: "shared_memory+raw_sync mutex ring",
            run: mutex_ring::run,
        },
        Transport {
            id: "spsc-ring",
            label: "hand-written SPSC ring u64",
            run: spsc::run,
        },
    ]
}

/// Checks the reader's view of the stream: 0, 1, 2, ... count-1, then DONE.
pub struct Seq {
    next: u64,
    ok: bool,
}

impl Seq {
    pub fn new() -> Self {
        Self { next: 0, ok: true }
    }

    #[inline(always)]
    pub fn int(&mut self, v: u64) {
        self.ok &= v == self.next;
        self.next += 1;
    }

    /// Exit code for the reader once DONE arrived.
    pub fn done(&self, count: u64) -> i32 {
        if self.ok && self.next == count {
            0
        } else {
            EXIT_BAD_DATA
        }
    }
}

/// Forks `reader`, waits for it to signal ready, runs `writer` and joins the reader.
/// Returns the time from just before `writer` until the join returned.
///
/// `reader` runs only in the child; in the parent it is dropped unrun, so whatever it
/// owns is dropped (closed) in the parent right after the fork. Give it ownership of the
/// ends the parent must close, and only references to state the parent keeps using.
pub fn timed<R, W>(cfg: &Cfg, reader: R, writer: W) -> Result<Duration, String>
where
    R: FnOnce(&Ready) -> i32,
    W: FnOnce() -> Result<(), String>,
{
    timed_setup(cfg, reader, || Ok(()), |_: &()| writer())
}

/// Like [`timed`], with an untimed `setup` in the parent after the reader is ready
/// (for transports whose writer end is opened by name after the fork).
pub fn timed_setup<R, S, T, W>(
    cfg: &Cfg,
    reader: R,
    setup: S,
    writer: W,
) -> Result<Duration, String>
where
    R: FnOnce(&Ready) -> i32,
    S: FnOnce() -> Result<T, String>,
    W: FnOnce(&T) -> Result<(), String>,
{
    let ready = Ready::new()?;
    let mut child: Child = crate::proc::fork_child(|| reader(&ready))?;
    ready.wait(cfg.timeout)?;
    let state = setup()?;
    let start = Instant::now();
    writer(&state)?;
    child.wait(cfg.timeout)?;
    let elapsed = start.elapsed();
    drop(state); // teardown of the writer's end is not timed
    Ok(elapsed)
}
