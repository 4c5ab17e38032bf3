//! Supervision: one thread per worker in the parent starts the worker process, feeds it
//! chunks (up to two in flight, see [`IN_FLIGHT`]), notices its death (the pipe, and its exit status polled while
//! a reply is awaited), replaces it, and reaps it at the end.

use std::collections::VecDeque;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::channel::{Pipe, Receiver, Sender};
use crate::error::{Error, RecvError, Result};
use crate::process::get_context;

use super::call::Outcome;
use super::worker::{self, WorkerArgs};
use super::{Chunk, Inner};

/// Ring size of each direction of a worker's pipes.
const PIPE_CAPACITY: usize = 1 << 20;
/// How long to wait for a worker that should be exiting before killing it.
const EXIT_GRACE: Duration = Duration::from_secs(10);
/// Chunks a pool thread keeps sent to its worker: the one running and the next, so
/// that the worker finds its next task waiting when it finishes one.
const IN_FLIGHT: usize = 2;
/// Only messages up to this size are sent ahead of a reply: then the task pipe holds
/// them all, and sending never waits for a worker that may itself be waiting for this
/// thread to read its reply.
const AHEAD_MAX: usize = PIPE_CAPACITY / 4;
/// Chunks are sent ahead only while replies come back faster than this: for quick
/// tasks the wake-ups are the cost, which sending ahead hides; for slow ones it would
/// only tie a chunk to a busy worker while another may be about to free up.
const AHEAD_BELOW: Duration = Duration::from_millis(1);
/// How often a thread waiting for a reply checks that its worker still runs.
const LIVENESS_SLICE: Duration = Duration::from_millis(100);

/// A running worker, as its thread in the parent sees it.
struct Worker {
    tasks: Sender<Vec<u8>>,
    results: Receiver<Vec<u8>>,
    pid: u32,
    done: usize,
}

/// Completes the chunk with an error if its thread unwinds while holding it, so that no
/// caller waits forever.
struct InFlight(Option<Chunk>);

impl InFlight {
    fn finish(&mut self, outcome: Outcome) {
        if let Some(c) = self.0.take() {
            c.call.complete(c.index, outcome);
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.finish(Err(Error::InvalidState("a pool thread failed")));
    }
}

/// Starts a worker process in `slot`.
fn start_worker(inner: &Inner, slot: usize) -> Result<Worker> {
    // No lock of the pool's is held across the fork below: the child would inherit it
    // locked by its only thread for good, and a pool created inside a task would wait
    // for it for ever. None is needed: a pipe is created and registered for fork hygiene
    // under the hand-off creation lock that every fork takes exclusively, so a worker
    // forked meanwhile by another pool thread inherits these ends registered, and
    // releases them.
    let (tasks, task_rx) = Pipe::builder().capacity(PIPE_CAPACITY).build::<Vec<u8>>()?;
    let (res_tx, results) = Pipe::builder().capacity(PIPE_CAPACITY).build::<Vec<u8>>()?;
    let args = WorkerArgs {
        tasks: task_rx,
        results: res_tx,
        initializer: inner.initializer.clone(),
    };
    let mut p = get_context(inner.method).process(worker::worker_main, args);
    p.daemon(true);
    p.start()?;
    let pid = p.pid().unwrap_or(0);
    *inner.slot(slot) = Some(p);
    Ok(Worker {
        tasks,
        results,
        pid,
        done: 0,
    })
}

/// Reaps the process in `slot`: waits for it to exit (killing it after a grace period,
/// or at once with `kill`); returns its exit code.
fn reap(inner: &Inner, slot: usize, kill: bool) -> Option<i32> {
    let mut s = inner.slot(slot);
    let mut p = s.take()?;
    if kill {
        let _ = p.kill();
    }
    let _ = p.join_timeout(EXIT_GRACE);
    if p.exitcode().is_none() {
        let _ = p.kill();
        let _ = p.join_timeout(EXIT_GRACE);
    }
    p.exitcode()
    // A process still unreaped here (it cannot be: SIGKILL) is a daemon: its drop kills
    // and reaps it.
}

/// Whether the worker in `slot` still runs.
fn alive(inner: &Inner, slot: usize) -> bool {
    inner
        .slot(slot)
        .as_ref()
        .is_some_and(|p| p.exitcode().is_none())
}

/// Waits for the reply to the oldest task sent to `w`; `Err(None)` when the worker is
/// gone.
///
/// The wait polls the worker's exit status every [`LIVENESS_SLICE`], besides the pipe's
/// own disconnection: a copy of the reply pipe's end held by some other process (one
/// forked by code outside the pool at the wrong moment) cannot hide the worker's death.
fn await_reply(
    inner: &Inner,
    slot: usize,
    w: &Worker,
) -> std::result::Result<Vec<u8>, Option<Error>> {
    while !w.results.poll(Some(LIVENESS_SLICE)) {
        if !alive(inner, slot) && !w.results.poll(Some(Duration::ZERO)) {
            return Err(None);
        }
    }
    // Into a spare buffer (the caller hands it back once decoded): the receiver swaps
    // it in, with no copy of the reply and, reused, no fresh pages.
    let mut reply = inner.spare.take();
    match w.results.recv_bytes_into(&mut reply) {
        Ok(_) => Ok(reply),
        Err(RecvError::Disconnected) => Err(None),
        Err(RecvError::Protocol(p)) => Err(Some(Error::Protocol(p))),
        Err(e) => Err(Some(Error::Codec(e.to_string()))),
    }
}

/// Completes every chunk in `sent` with `err()`.
fn fail_all(sent: &mut VecDeque<InFlight>, err: impl Fn() -> Error) {
    for mut job in sent.drain(..) {
        job.finish(Err(err()));
    }
}

/// The chunks in `sent`, which their worker never started, back to the pool's queue.
fn requeue(inner: &Inner, sent: &mut VecDeque<InFlight>) {
    let chunks: Vec<Chunk> = sent.drain(..).filter_map(|mut j| j.0.take()).collect();
    inner.requeue(chunks);
}

/// One thread per worker: starts the worker, feeds it chunks (up to [`IN_FLIGHT`] sent
/// ahead), replaces it when it dies or has run `maxtasksperchild` tasks, and stops it
/// at the end.
///
/// A worker runs its tasks one at a time, in the order sent: when it dies, the oldest
/// chunk in flight is the one it was running (reported as lost), and the others, never
/// started, go back to the queue.
pub(super) fn worker_thread(inner: &Inner, slot: usize, ready: mpsc::Sender<Result<()>>) {
    let mut current = match start_worker(inner, slot) {
        Ok(w) => {
            let _ = ready.send(Ok(()));
            Some(w)
        }
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    drop(ready);
    // Where plain chunks are written out before their pipe; reused.
    let mut stage = Vec::new();
    // Chunks sent to `current`, oldest first.
    let mut sent: VecDeque<InFlight> = VecDeque::new();
    // Whether everything in `sent` is small enough to send another ahead.
    let mut ahead = true;
    // Whether the last reply came quickly (see `AHEAD_BELOW`).
    let mut quick = false;
    loop {
        // Hand out work: wait for a chunk when the worker is idle; else send one more
        // ahead if one is queued, small, and within the worker's quota.
        let chunk = if sent.is_empty() {
            inner.next_chunk()
        } else {
            let quota = current
                .as_ref()
                .is_some_and(|w| inner.maxtasks.is_none_or(|m| w.done + sent.len() < m));
            if ahead && quick && quota && sent.len() < IN_FLIGHT {
                inner.try_next_chunk(|c| c.task.len() <= AHEAD_MAX)
            } else {
                None
            }
        };
        if let Some(chunk) = chunk {
            let mut job = InFlight(Some(chunk));
            if sent.is_empty() {
                if current.is_some() && !alive(inner, slot) {
                    // It died while idle (killed from outside): replace it first.
                    current = None;
                    reap(inner, slot, true);
                }
                if current.is_none() {
                    match start_worker(inner, slot) {
                        Ok(w) => current = Some(w),
                        Err(e) => {
                            job.finish(Err(e));
                            continue;
                        }
                    }
                }
            }
            if inner.terminating() {
                job.finish(Err(Error::Closed));
                fail_all(&mut sent, || Error::Closed);
                break;
            }
            let Some(w) = current.as_ref() else {
                job.finish(Err(Error::InvalidState("a pool thread lost its worker")));
                continue;
            };
            let msg = match &job.0 {
                Some(c) => c.task.message(&mut stage),
                None => &[],
            };
            // A failed send means the worker is gone: waiting for the reply says so.
            let delivered = w.tasks.send_bytes(msg).is_ok();
            ahead = delivered && msg.len() <= AHEAD_MAX;
            sent.push_back(job);
            continue;
        }
        if sent.is_empty() {
            break;
        }
        let Some(w) = current.take() else {
            fail_all(&mut sent, || {
                Error::InvalidState("a pool thread lost its worker")
            });
            continue;
        };
        let mut job = sent.pop_front().expect("a chunk is in flight");
        let waited = Instant::now();
        let reply = await_reply(inner, slot, &w);
        quick = waited.elapsed() < AHEAD_BELOW;
        match reply {
            Ok(reply) => {
                let init_failed = reply.first() == Some(&worker::INIT_FAILED);
                job.finish(Ok(reply));
                let mut w = w;
                w.done += 1;
                if init_failed || inner.maxtasks.is_some_and(|m| w.done >= m) {
                    // The worker exits now: what was sent after never reaches it.
                    requeue(inner, &mut sent);
                    // Dropping its task pipe tells the worker to exit.
                    drop(w);
                    reap(inner, slot, false);
                } else {
                    current = Some(w);
                }
            }
            Err(broken) => {
                let pid = w.pid;
                drop(w);
                // A lost pipe means the worker is exiting: give it time to finish, so that
                // its own exit status is reported. A broken protocol: kill it.
                let code = reap(inner, slot, broken.is_some() || inner.terminating());
                let err = if inner.terminating() {
                    Error::Closed
                } else if let Some(e) = broken {
                    e
                } else {
                    Error::WorkerDied {
                        pid,
                        signal: code.filter(|c| *c < 0).map(|c| -c),
                        code: code.filter(|c| *c >= 0),
                    }
                };
                job.finish(Err(err));
                requeue(inner, &mut sent);
            }
        }
        if sent.is_empty() {
            ahead = true;
        }
        if current.is_none() && !inner.state().closed {
            // Keep the pool at full strength; on failure, retry with the next chunk.
            current = start_worker(inner, slot).ok();
        }
    }
    let terminating = inner.terminating();
    drop(current);
    reap(inner, slot, terminating);
}
