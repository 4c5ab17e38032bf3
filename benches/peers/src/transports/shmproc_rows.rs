//! The shmproc rows: the seed's experiment as the seed wrote it, with shmproc's own
//! `Process` and `pipe()`.
//!
//! The payload is the seed's, [`Msg`] (an integer or DONE), through `pipe::<Msg>()` with
//! the library's default codec: no special `u64` path. The reader is a
//! `shmproc::Process` whose args are its end of the pipe (as `Process(target=reader_proc,
//! args=(pipe,))`), plus the sending end of a small "ready" pipe so that process
//! start-up is not timed. The clock runs from the first `send` until `join()` returns
//! after DONE, as in the seed. Start methods: fork (the default of `Process::new`) and
//! spawn (re-exec of this binary, whose `main` calls `shmproc::init()` first: the reader
//! gets its `Receiver` through the hand-off of its file descriptors).
//!
//! A reader that sees the wrong sequence exits with [`EXIT_BAD_DATA`], so a wrong
//! transport cannot produce a number.

use std::time::{Duration, Instant};

use shmproc::{get_context, Process, StartMethod};
use shmproc::{Connection, Receiver, Sender};

use super::{Cfg, Msg, Seq};
use crate::proc::{EXIT_BAD_DATA, EXIT_IO};

/// Exit code of a reader whose ready signal could not be sent.
const EXIT_READY: i32 = 6;

/// Ends the reader after DONE. Success returns from the target, so the child leaves the
/// way every `Process` does (`_exit` after flushing stdio); `std::process::exit` would
/// also run the atexit handlers of every library linked into this harness (~0.3 ms).
fn finish(seq: &Seq, count: u64) {
    let code = seq.done(count);
    if code != 0 {
        std::process::exit(code);
    }
}

/// The seed's `reader_proc` over a simplex pipe.
fn pipe_reader((rx, ready, count): (Receiver<Msg>, Sender<()>, u64)) {
    if ready.send(&()).is_err() {
        std::process::exit(EXIT_READY);
    }
    drop(ready);
    let mut seq = Seq::new();
    loop {
        match rx.recv() {
            Ok(Msg::Int(v)) => seq.int(v),
            Ok(Msg::Done) => return finish(&seq, count),
            Err(_) => std::process::exit(EXIT_IO),
        }
    }
}

/// The same over one end of a duplex connection (Python's default `Pipe()`).
fn duplex_reader((conn, ready, count): (Connection<Msg>, Sender<()>, u64)) {
    if ready.send(&()).is_err() {
        std::process::exit(EXIT_READY);
    }
    drop(ready);
    let mut seq = Seq::new();
    loop {
        match conn.recv() {
            Ok(Msg::Int(v)) => seq.int(v),
            Ok(Msg::Done) => return finish(&seq, count),
            Err(_) => std::process::exit(EXIT_IO),
        }
    }
}

/// The reader's one-byte "ready" signal: a small ring (256 bytes), so its set-up and
/// tear-down cost next to nothing.
pub(super) fn ready_pipe() -> Result<(Sender<()>, Receiver<()>), String> {
    shmproc::Pipe::builder()
        .capacity(256)
        .build::<()>()
        .map_err(|e| format!("shmproc::pipe: {e}"))
}

/// Starts `p`, waits for its ready signal, times `writer` plus `join()`. The writer
/// borrows its end: dropping it (unmapping the region) is not timed, as for every other
/// row of the table.
pub(super) fn run_reader(
    mut p: Process,
    ready: Receiver<()>,
    cfg: &Cfg,
    writer: impl FnOnce() -> Result<(), String>,
) -> Result<Duration, String> {
    p.daemon(true); // as the seed's reader_p.daemon = True: dies with the harness
    p.start().map_err(|e| format!("start: {e}"))?;
    if let Err(e) = ready.recv_timeout(cfg.timeout) {
        let _ = p.kill();
        let _ = p.join();
        return Err(format!(
            "reader not ready: {e} (exit code {:?})",
            p.exitcode()
        ));
    }
    let start = Instant::now();
    let wrote = writer();
    let joined = p.join_timeout(cfg.timeout);
    let elapsed = start.elapsed();
    if p.exitcode().is_none() {
        let _ = p.kill();
        let _ = p.join();
        return Err(format!("reader timed out; killed ({wrote:?})"));
    }
    wrote?;
    joined.map_err(|e| format!("join: {e}"))?;
    match p.exitcode() {
        Some(0) => Ok(elapsed),
        Some(EXIT_BAD_DATA) => Err("reader saw wrong data".into()),
        Some(EXIT_IO) => Err("reader's recv failed".into()),
        Some(EXIT_READY) => Err("reader could not signal ready".into()),
        c => Err(format!("reader exited with {c:?}")),
    }
}

fn pipe_with(method: StartMethod, count: u64, cfg: &Cfg) -> Result<Duration, String> {
    let (tx, rx) = shmproc::pipe::<Msg>().map_err(|e| format!("shmproc::pipe: {e}"))?;
    let (rtx, rrx) = ready_pipe()?;
    let p = get_context(method).process(pipe_reader, (rx, rtx, count));
    run_reader(p, rrx, cfg, || {
        for i in 0..count {
            tx.send(&Msg::Int(i)).map_err(|e| format!("send: {e}"))?;
        }
        tx.send(&Msg::Done).map_err(|e| format!("send: {e}"))
    })
}

/// `pipe::<Msg>()`, reader started with fork (the default start method).
pub fn pipe(count: u64, cfg: &Cfg) -> Result<Duration, String> {
    pipe_with(StartMethod::Fork, count, cfg)
}

/// `pipe::<Msg>()`, reader started with spawn (fresh image, handles passed as fds).
pub fn pipe_spawn(count: u64, cfg: &Cfg) -> Result<Duration, String> {
    pipe_with(StartMethod::Spawn, count, cfg)
}

/// `duplex::<Msg>()` (Python's default `Pipe()`), reader forked.
pub fn duplex(count: u64, cfg: &Cfg) -> Result<Duration, String> {
    let (a, b) = shmproc::duplex::<Msg>().map_err(|e| format!("shmproc::duplex: {e}"))?;
    let (rtx, rrx) = ready_pipe()?;
    let p = get_context(StartMethod::Fork).process(duplex_reader, (b, rtx, count));
    run_reader(p, rrx, cfg, || {
        for i in 0..count {
            a.send(&Msg::Int(i)).map_err(|e| format!("send: {e}"))?;
        }
        a.send(&Msg::Done).map_err(|e| format!("send: {e}"))
    })
}

/// `pipe::<u64>()` with `Sender::send_all`: the explicit batch API (one index store per
/// batch). Not the seed's payload; shows what batching buys.
pub fn pipe_batch(count: u64, cfg: &Cfg) -> Result<Duration, String> {
    const BATCH: u64 = 1024;
    let (tx, rx) = shmproc::pipe::<u64>().map_err(|e| format!("shmproc::pipe: {e}"))?;
    let (rtx, rrx) = ready_pipe()?;
    let p = get_context(StartMethod::Fork).process(u64_reader, (rx, rtx, count));
    run_reader(p, rrx, cfg, || {
        let mut buf = Vec::with_capacity(BATCH as usize);
        let mut i = 0;
        while i < count {
            buf.clear();
            buf.extend(i..(i + BATCH).min(count));
            tx.send_all(&buf).map_err(|e| format!("send_all: {e}"))?;
            i += buf.len() as u64;
        }
        tx.send(&super::DONE).map_err(|e| format!("send: {e}"))
    })
}

fn u64_reader((rx, ready, count): (Receiver<u64>, Sender<()>, u64)) {
    if ready.send(&()).is_err() {
        std::process::exit(EXIT_READY);
    }
    drop(ready);
    let mut seq = Seq::new();
    loop {
        match rx.recv() {
            Ok(super::DONE) => return finish(&seq, count),
            Ok(v) => seq.int(v),
            Err(_) => std::process::exit(EXIT_IO),
        }
    }
}

// ---------------------------------------------------------------------------------
// shmproc::Queue: the seed's experiment through a Queue (one producer, one consumer).
// ---------------------------------------------------------------------------------

fn queue_reader((q, ready, count): (shmproc::Queue<Msg>, Sender<()>, u64)) {
    if ready.send(&()).is_err() {
        std::process::exit(EXIT_READY);
    }
    drop(ready);
    let mut seq = Seq::new();
    loop {
        match q.get() {
            Ok(Msg::Int(v)) => seq.int(v),
            Ok(Msg::Done) => return finish(&seq, count),
            Err(_) => std::process::exit(EXIT_IO),
        }
    }
}

/// `Queue::<Msg>::new()`: one producer (this process), one consumer (a forked reader).
pub fn queue(count: u64, cfg: &Cfg) -> Result<Duration, String> {
    let q = shmproc::Queue::<Msg>::new().map_err(|e| format!("Queue::new: {e}"))?;
    let (rtx, rrx) = ready_pipe()?;
    let p = get_context(StartMethod::Fork).process(queue_reader, (q.clone(), rtx, count));
    run_reader(p, rrx, cfg, || {
        for i in 0..count {
            q.put(&Msg::Int(i)).map_err(|e| format!("put: {e}"))?;
        }
        q.put(&Msg::Done).map_err(|e| format!("put: {e}"))
    })
}
