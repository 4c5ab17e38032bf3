//! The worker side of the pool, and the wire format between a pool and its workers.
//!
//! A worker is a [`Process`](crate::Process) running [`worker_main`] on a pair of pipe
//! ends: tasks in, replies out. A task is one message:
//!
//! ```text
//! [TASK: u8][call entry: entry::WIRE_LEN bytes][format: u8][the chunk]
//! ```
//!
//! The call entry ([`super::entry`]) names the target `fn(A) -> R` and a trampoline
//! monomorphized for `A` and `R` (offsets in the executable, so a spawned worker finds
//! them too). The format byte says how the chunk and its results are encoded: bit
//! [`PLAIN_ARGS`] set, the items' own bytes ([`super::plain`]), else a postcard `Vec<A>`;
//! bit [`PLAIN_RESULTS`] likewise for the results. The reply is one message:
//! `[status: u8][payload]`, the payload being the encoded results for [`OK`], or a UTF-8
//! message otherwise.

use std::panic::{catch_unwind, AssertUnwindSafe};

use serde::{de::DeserializeOwned, Deserialize, Serialize};

use crate::channel::{Receiver, Sender};
use crate::codec;
use crate::error::{Error, Result};
use crate::process::JobError;
use crate::sys;
use crate::sys::proc;
use crate::sys::reloc::{CallEntry, Caller};

use super::{entry, plain};

/// The tag of a task message.
const TASK: u8 = 1;

/// Format bit: the chunk is the items' own bytes, not a postcard `Vec<A>`.
pub(super) const PLAIN_ARGS: u8 = 1;
/// Format bit: the results are their own bytes, not a postcard `Vec<R>`.
pub(super) const PLAIN_RESULTS: u8 = 2;

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

/// Runs a chunk: decodes the items, applies the target to each (catching a panic),
/// encodes the results, each in the format the task names.
pub(super) struct ChunkRunner;

impl<A: DeserializeOwned + 'static, R: Serialize + 'static> Caller<A, R> for ChunkRunner {
    fn call(target: fn(A) -> R, input: &[u8], out: &mut Vec<u8>) {
        let Some((&format, input)) = input.split_first() else {
            out.push(BAD_TASK);
            out.extend_from_slice(b"a task without a format");
            return;
        };
        let mark = out.len();
        out.push(OK);
        let ran = catch_unwind(AssertUnwindSafe(|| run_chunk(target, format, input, out)));
        let failure = match ran {
            Ok(Ok(())) => return,
            Ok(Err(msg)) => (CODEC, msg),
            Err(payload) => {
                let msg = panic_message(&*payload);
                // Dropping a payload can panic again; a payload is small, let it go.
                std::mem::forget(payload);
                (PANICKED, msg)
            }
        };
        out.truncate(mark);
        out.push(failure.0);
        out.extend_from_slice(failure.1.as_bytes());
    }
}

/// Decodes a chunk, applies `target` to each item and appends the encoded results to
/// `out`, each in the format the task names; plain items of a target whose result is
/// its argument's type are read, mapped and written in one pass. A panic of `target`
/// unwinds out of here.
fn run_chunk<A, R>(
    target: fn(A) -> R,
    format: u8,
    input: &[u8],
    out: &mut Vec<u8>,
) -> std::result::Result<(), String>
where
    A: DeserializeOwned + 'static,
    R: Serialize + 'static,
{
    let arguments = |e: Error| format!("decoding the task's arguments: {e}");
    let results: Vec<R> = if format & PLAIN_ARGS != 0 {
        if format & PLAIN_RESULTS != 0 && plain::map_into(target, input, out).map_err(arguments)? {
            return Ok(());
        }
        plain::map_bytes(target, input)
            .map_err(arguments)?
            .ok_or("the task's items are not plain data")?
    } else {
        let items: Vec<A> = codec::decode(input).map_err(arguments)?;
        items.into_iter().map(target).collect()
    };
    let encoded = if format & PLAIN_RESULTS != 0 {
        plain::encode_vec(results, out)
            .map_err(|_| Error::Codec("the results are not plain data".into()))
    } else {
        codec::encode_into(&results, out)
    };
    encoded.map_err(|e| format!("encoding the task's result: {e}"))
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

/// The first bytes of every task message for `f`: the tag, the call entry and the
/// format byte: with `plain`, plain bytes for the items and the results whose types
/// allow it; else postcard.
pub(super) fn task_header<A, R>(f: fn(A) -> R, plain: bool) -> Result<Vec<u8>>
where
    A: DeserializeOwned + 'static,
    R: Serialize + 'static,
{
    let call = CallEntry::new::<A, R, ChunkRunner>(f)?;
    let mut h = Vec::with_capacity(2 + entry::WIRE_LEN);
    h.push(TASK);
    h.extend_from_slice(&entry::to_wire(call)?);
    let mut format = 0;
    if plain && plain::is_plain::<A>() {
        format |= PLAIN_ARGS;
    }
    if plain && plain::is_plain::<R>() {
        format |= PLAIN_RESULTS;
    }
    h.push(format);
    Ok(h)
}

/// Whether the results of tasks with this header come as plain bytes.
pub(super) fn plain_results(header: &[u8]) -> bool {
    header.last().is_some_and(|f| f & PLAIN_RESULTS != 0)
}

/// A task message: `header` ([`task_header`]) and `items[range]`, encoded in the
/// header's format. The one place a chunk is encoded.
pub(super) fn encode_task<A: Serialize + 'static>(
    header: &[u8],
    items: &Vec<A>,
    range: std::ops::Range<usize>,
) -> Result<Vec<u8>> {
    let plain_args = header.last().is_some_and(|f| f & PLAIN_ARGS != 0);
    let size = if plain_args {
        std::mem::size_of::<A>()
    } else {
        4
    };
    let mut msg = Vec::with_capacity(header.len() + 16 + range.len() * size);
    msg.extend_from_slice(header);
    if !(plain_args && plain::encode(items, range.clone(), &mut msg)) {
        codec::encode_into(&items[range], &mut msg)?;
    }
    Ok(msg)
}

/// Decodes a worker's reply to a task of `header` and appends the chunk's `expected`
/// results to `out`. The one place a reply is decoded.
pub(super) fn decode_reply_into<R: DeserializeOwned + 'static>(
    header: &[u8],
    reply: &[u8],
    expected: usize,
    out: &mut Vec<R>,
) -> Result<()> {
    let payload = reply_payload(reply)?;
    let mark = out.len();
    if !(plain_results(header) && plain::decode_into(payload, out)?) {
        out.extend(codec::decode::<Vec<R>>(payload)?);
    }
    if out.len() - mark != expected {
        let got = out.len() - mark;
        out.truncate(mark);
        return Err(Error::Codec(format!(
            "a worker returned {got} results for {expected} items"
        )));
    }
    Ok(())
}

/// Decodes a worker's reply to a task in the postcard format (an `apply_async`).
pub(super) fn decode_reply<R: DeserializeOwned>(reply: &[u8], expected: usize) -> Result<Vec<R>> {
    let v: Vec<R> = codec::decode(reply_payload(reply)?)?;
    if v.len() != expected {
        return Err(Error::Codec(format!(
            "a worker returned {} results for {expected} items",
            v.len()
        )));
    }
    Ok(v)
}

/// The payload of an [`OK`] reply, or the error the reply reports.
fn reply_payload(reply: &[u8]) -> Result<&[u8]> {
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    match reply.split_first() {
        Some((&OK, payload)) => Ok(payload),
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
