//! Helpers shared by the benches: a forked peer process driven batch by batch, a forked
//! reader timed the seed's way, an OS pipe, the seed's payload, and where to record extra
//! results.
#![allow(dead_code)]

use std::io::Write as _;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use shmproc::Process;
use shmproc::{pipe, Pipe, Receiver, Sender};

/// Longest wait for a peer; a bench that needs longer is broken.
pub const TIMEOUT: Duration = Duration::from_secs(120);

/// The seed's payload: an integer, or DONE.
#[derive(serde::Serialize, serde::Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Msg {
    /// A number.
    Int(u64),
    /// The end.
    Done,
}

/// A forked process that runs `body(n)` each time the bench asks for a batch of `n`
/// operations and acknowledges when done, so that only the transfer is timed (never the
/// fork). Killed and reaped on drop.
pub struct Peer {
    ctl: Sender<u64>,
    ack: Receiver<u64>,
    proc: Process,
}

impl Peer {
    /// Forks the peer.
    pub fn start(mut body: impl FnMut(u64) + Send + 'static) -> Peer {
        let (ctl, ctl_rx) = pipe::<u64>().expect("pipe");
        let (ack_tx, ack) = pipe::<u64>().expect("pipe");
        let mut proc = Process::fork(move || {
            while let Ok(n) = ctl_rx.recv() {
                body(n);
                if ack_tx.send(&n).is_err() {
                    break;
                }
            }
        });
        proc.daemon(true);
        proc.start().expect("fork the peer");
        Peer { ctl, ack, proc }
    }

    /// Tells the peer to expect `iters` operations, then times `work` until the peer has
    /// acknowledged them.
    pub fn run(&self, iters: u64, work: impl FnOnce(u64)) -> Duration {
        self.ctl.send(&iters).expect("peer gone");
        let start = Instant::now();
        work(iters);
        let got = self.ack.recv_timeout(TIMEOUT).expect("peer did not finish");
        let t = start.elapsed();
        assert_eq!(got, iters);
        t
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.proc.kill();
        let _ = self.proc.join();
    }
}

/// The seed's timing: forks `reader` as a daemon `shmproc::Process`, waits until it is
/// set up (it signals "ready" through a 256-byte pipe before running `reader`, so process
/// start-up is not timed), then times `writer` until `join()` returns. Panics when the
/// reader fails (a reader checks what it got by panicking, exit code 1) or runs over
/// [`TIMEOUT`].
pub fn time_reader(reader: impl FnOnce() + Send + 'static, writer: impl FnOnce()) -> Duration {
    let (ready_tx, ready_rx) = Pipe::builder().capacity(256).build::<()>().expect("pipe");
    let mut p = Process::fork(move || {
        ready_tx.send(&()).expect("ready");
        drop(ready_tx);
        reader();
    });
    p.daemon(true);
    p.start().expect("fork the reader");
    ready_rx.recv_timeout(TIMEOUT).expect("reader not ready");
    let start = Instant::now();
    writer();
    let joined = p.join_timeout(TIMEOUT);
    let took = start.elapsed();
    if joined.is_err() || p.exitcode() != Some(0) {
        let _ = p.kill();
        let _ = p.join();
        panic!("reader failed: {joined:?}, exit code {:?}", p.exitcode());
    }
    took
}

/// An OS pipe as two files; the pipe buffer raised to 1 MiB when the system allows
/// (shmproc's default ring size), so the comparison is like for like.
pub fn os_pipe() -> (std::fs::File, std::fs::File) {
    let (r, w): (OwnedFd, OwnedFd) = nix::unistd::pipe().expect("pipe");
    let _ = nix::fcntl::fcntl(
        std::os::fd::AsRawFd::as_raw_fd(&w),
        nix::fcntl::FcntlArg::F_SETPIPE_SZ(1 << 20),
    );
    (std::fs::File::from(r), std::fs::File::from(w))
}

/// Appends `line` to `$SHMPROC_BENCH_OUT/<file>` when that variable names a directory
/// (scripts/bench.sh sets it), always echoing it on stderr.
pub fn record(file: &str, header: &str, line: &str) {
    eprintln!("{line}");
    let Some(dir) = std::env::var_os("SHMPROC_BENCH_OUT") else {
        return;
    };
    let path = PathBuf::from(dir).join(file);
    let new = !path.exists();
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
    {
        if new {
            let _ = writeln!(f, "{header}");
        }
        let _ = writeln!(f, "{line}");
    }
}
