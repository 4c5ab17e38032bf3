//! The worker side of the pool, and the wire format between a pool and its workers.
//!
//! A worker is a [`Process`](crate::Process) running [`worker_main`] on a pair of pipe
//! ends: tasks in, replies out. A task is one message:
//!
//! ```text
//! [TASK: u8][call entry: entry::WIRE_LEN bytes][the chunk: postcard Vec<A>]
//! ```
//!
//! The call entry ([`super::entry`]) names the target `fn(A) -> R` and a trampoline
//! monomorphized for `A` and `R` (offsets in the executable, so a spawned worker finds
//! them too). The reply
//! is one message: `[status: u8][payload]`, the payload being the encoded `Vec<R>` for
//! [`OK`], or a UTF-8 message otherwise.

use std::panic::{catch_unwind, AssertUnwindSafe};

use serde::{de::DeserializeOwned, Deserialize, Serialize};

use crate::channel::{Receiver, Sender};
use crate::codec;
use crate::error::{Error, Result};
use crate::process::JobError;
use crate::sys;
use crate::sys::proc;
use crate::sys::reloc::{CallEntry, Caller};

use super::entry;

/// The tag of a task message.
const TASK: u8 = 1;

/// Reply statuses.
pub(super) const OK: u8 = 0;
/// The target panicked; the payload is the panic message.
pub(super) const PANICKED: u8 = 1;
/// The arguments did not decode, or the results did not encode.
pub(super) const CODEC: u8 = 2;
/// The task message was malformed (a bad call entry).
pub(super) const BAD_TASK: u8 = 3;
/// The initializer panicked; the payload is its message. The worker exits after this.
pub(super) const INIT_FAILED: u8 = 4;

/// What a worker process is handed.
#[derive(Serialize, Deserialize)]
pub(super) struct WorkerArgs {
    pub(super) tasks: Receiver<Vec<u8>>,
    pub(super) results: Sender<Vec<u8>>,
    /// The initializer's call entry ([`entry::to_wire`]).
    pub(super) initializer: Option<Vec<u8>>,
}

/// Runs a chunk: decodes `Vec<A>`, applies the target to each item (catching a panic),
/// encodes `Vec<R>`.
pub(super) struct ChunkRunner;

impl<A: DeserializeOwned, R: Serialize> Caller<A, R> for ChunkRunner {
    fn call(target: fn(A) -> R, input: &[u8], out: &mut Vec<u8>) {
        let items: Vec<A> = match codec::decode(input) {
            Ok(items) => items,
            Err(e) => {
                out.push(CODEC);
                out.extend_from_slice(format!("decoding the task's arguments: {e}").as_bytes());
                return;
            }
        };
        match catch_unwind(AssertUnwindSafe(|| {
            items.into_iter().map(target).collect::<Vec<R>>()
        })) {
            Ok(results) => {
                let mark = out.len();
                out.push(OK);
                if let Err(e) = codec::encode_into(&results, out) {
                    out.truncate(mark);
                    out.push(CODEC);
                    out.extend_from_slice(format!("encoding the task's result: {e}").as_bytes());
                }
            }
            Err(payload) => {
                out.push(PANICKED);
                out.extend_from_slice(panic_message(&*payload).as_bytes());
                // Dropping a payload can panic again; a payload is small, let it go.
                std::mem::forget(payload);
            }
        }
    }
}

/// The message of a panic payload (`panic!("...")` gives a `&str` or a `String`).
pub(super) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic with a non-string payload".to_string()
    }
}

/// Runs one task message into `out` (status first).
fn run_task(task: &[u8], out: &mut Vec<u8>) {
    let entry = match task.split_first() {
        Some((&TASK, rest)) => entry::from_wire(rest).map(|e| (e, &rest[entry::WIRE_LEN..])),
        _ => None,
    };
    let Some((entry, input)) = entry else {
        out.push(BAD_TASK);
        out.extend_from_slice(b"malformed task message");
        return;
    };
    if let Err(e) = entry.call(input, out) {
        out.clear();
        out.push(BAD_TASK);
        out.extend_from_slice(JobError::from(e).to_string().as_bytes());
    }
}

/// Runs the initializer; `Err(message)` when it panicked or could not be found.
fn run_initializer(wire: &[u8]) -> std::result::Result<(), String> {
    let entry = entry::from_wire(wire).ok_or("malformed initializer entry")?;
    match catch_unwind(AssertUnwindSafe(|| entry.call(&[], &mut Vec::new()))) {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(JobError::from(e).to_string()),
        Err(payload) => {
            let msg = panic_message(&*payload);
            std::mem::forget(payload);
            Err(msg)
        }
    }
}

/// Ends the worker like a forked `Process`: flushes std's stdout (never waiting for ever
/// for its lock, which a forked worker may find held by a thread of the parent), then
/// `_exit`s.
fn exit_worker(code: i32) -> ! {
    crate::process::exit_child(code)
}

/// Reports a task's panic on the worker's stderr as one line naming the worker: the
/// message goes to the parent as the call's error, this line is for whoever reads the
/// worker's stderr.
fn install_panic_report() {
    let Ok(err) = sys::borrow_raw_checked(2).and_then(sys::dup_cloexec) else {
        return;
    };
    std::panic::set_hook(Box::new(move |info| {
        let place = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        let line = format!(
            "shmproc pool worker {}: panicked{place}: {}\n",
            std::process::id(),
            panic_message(info.payload())
        );
        let _ = proc::write_all(&err, line.as_bytes());
    }));
}

/// A worker's life: run the initializer, then answer tasks until the pool drops the
/// task pipe (or the parent dies, which does the same); then exit.
pub(super) fn worker_main(args: WorkerArgs) {
    install_panic_report();
    let init_failure = args
        .initializer
        .as_deref()
        .and_then(|w| run_initializer(w).err());
    let mut task = Vec::new();
    let mut out = Vec::new();
    while args.tasks.recv_bytes_into(&mut task).is_ok() {
        out.clear();
        if let Some(msg) = &init_failure {
            out.push(INIT_FAILED);
            out.extend_from_slice(msg.as_bytes());
            let _ = args.results.send_bytes(&out);
            drop(args);
            exit_worker(3);
        }
        run_task(&task, &mut out);
        if args.results.send_bytes(&out).is_err() {
            break;
        }
    }
    drop(args);
    exit_worker(0)
}

/// The first bytes of every task message for `f`: the tag and the call entry.
pub(super) fn task_header<A, R>(f: fn(A) -> R) -> Result<Vec<u8>>
where
    A: DeserializeOwned,
    R: Serialize,
{
    let call = CallEntry::new::<A, R, ChunkRunner>(f)?;
    let mut h = Vec::with_capacity(1 + entry::WIRE_LEN);
    h.push(TASK);
    h.extend_from_slice(&entry::to_wire(call)?);
    Ok(h)
}

/// A task message: `header` ([`task_header`]) and the encoded chunk.
pub(super) fn encode_task<A: Serialize>(header: &[u8], chunk: &[A]) -> Result<Vec<u8>> {
    let mut msg = Vec::with_capacity(header.len() + 16 + chunk.len() * 4);
    msg.extend_from_slice(header);
    codec::encode_into(chunk, &mut msg)?;
    Ok(msg)
}

/// Decodes a worker's reply into the chunk's results.
pub(super) fn decode_reply<R: DeserializeOwned>(reply: &[u8], expected: usize) -> Result<Vec<R>> {
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    match reply.split_first() {
        Some((&OK, payload)) => {
            let v: Vec<R> = codec::decode(payload)?;
            if v.len() != expected {
                return Err(Error::Codec(format!(
                    "a worker returned {} results for {expected} items",
                    v.len()
                )));
            }
            Ok(v)
        }
        Some((&PANICKED, msg)) => Err(Error::TaskPanicked(text(msg))),
        Some((&INIT_FAILED, msg)) => Err(Error::TaskPanicked(format!(
            "the pool's initializer panicked: {}",
            text(msg)
        ))),
        Some((&CODEC, msg)) => Err(Error::Codec(text(msg))),
        Some((&BAD_TASK, msg)) => Err(Error::Codec(format!(
            "the worker refused the task: {}",
            text(msg)
        ))),
        _ => Err(Error::Codec("malformed reply from a worker".into())),
    }
}
