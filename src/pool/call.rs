//! One call on the pool (a `map`, an `imap`, an `apply_async`): where its chunks'
//! outcomes land, and how the caller waits for them.

use std::collections::{HashMap, VecDeque};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Instant;

use crate::error::{Error, Result};

/// A chunk's outcome: the encoded `Vec<R>` a worker sent back, or why there is none.
pub(super) type Outcome = Result<Vec<u8>>;

#[derive(Default)]
struct Slots {
    /// Finished chunks not taken yet, by index.
    done: HashMap<usize, Outcome>,
    /// Indexes in the order they finished (for `imap_unordered`).
    arrivals: VecDeque<usize>,
    /// The caller is gone (an `imap` dropped early, a `map` that failed): queued chunks
    /// are skipped and outcomes dropped.
    cancelled: bool,
}

/// The outcomes of one call's chunks. Every chunk handed to the pool is completed
/// exactly once: by the worker thread that ran it, or with an error by `terminate`.
#[derive(Default)]
pub(super) struct Call {
    slots: Mutex<Slots>,
    cv: Condvar,
}

impl Call {
    fn slots(&self) -> MutexGuard<'_, Slots> {
        self.slots.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records chunk `index`'s outcome and wakes the caller.
    pub(super) fn complete(&self, index: usize, outcome: Outcome) {
        let mut s = self.slots();
        if s.cancelled {
            return;
        }
        s.done.insert(index, outcome);
        s.arrivals.push_back(index);
        drop(s);
        self.cv.notify_all();
    }

    pub(super) fn cancel(&self) {
        let mut s = self.slots();
        s.cancelled = true;
        s.done.clear();
        s.arrivals.clear();
    }

    pub(super) fn is_cancelled(&self) -> bool {
        self.slots().cancelled
    }

    /// Waits until `ready` finds something in the slots, or the deadline passes.
    fn wait<T>(
        &self,
        deadline: Option<Instant>,
        mut ready: impl FnMut(&mut Slots) -> Option<T>,
    ) -> Option<T> {
        let mut s = self.slots();
        loop {
            if let Some(t) = ready(&mut s) {
                return Some(t);
            }
            s = match deadline {
                None => self.cv.wait(s).unwrap_or_else(|e| e.into_inner()),
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        return None;
                    }
                    self.cv
                        .wait_timeout(s, d - now)
                        .unwrap_or_else(|e| e.into_inner())
                        .0
                }
            };
        }
    }

    /// Takes chunk `index`'s outcome, waiting for it.
    pub(super) fn take(&self, index: usize) -> Outcome {
        self.wait(None, |s| s.done.remove(&index))
            .unwrap_or(Err(Error::Timeout))
    }

    /// Takes the outcome of whichever chunk finished first, waiting for one.
    pub(super) fn take_any(&self) -> (usize, Outcome) {
        self.wait(None, |s| {
            while let Some(i) = s.arrivals.pop_front() {
                if let Some(o) = s.done.remove(&i) {
                    return Some((i, o));
                }
            }
            None
        })
        .unwrap_or((0, Err(Error::Timeout)))
    }

    /// Runs `f` on chunk `index`'s outcome (leaving it in place), waiting at most until
    /// `deadline`; `None` when it passed.
    pub(super) fn inspect<T>(
        &self,
        index: usize,
        deadline: Option<Instant>,
        f: impl FnOnce(&Outcome) -> T,
    ) -> Option<T> {
        let mut f = Some(f);
        self.wait(deadline, |s| {
            let o = s.done.get(&index)?;
            f.take().map(|f| f(o))
        })
    }

    /// Whether chunk `index` has finished.
    pub(super) fn is_done(&self, index: usize) -> bool {
        self.slots().done.contains_key(&index)
    }
}

/// A copy of an error, for results read more than once (`AsyncResult::get`) and for
/// every item of a failed chunk.
pub(super) fn dup(e: &Error) -> Error {
    #[allow(unreachable_patterns)]
    match e {
        Error::Closed => Error::Closed,
        Error::Timeout => Error::Timeout,
        Error::Disconnected => Error::Disconnected,
        Error::WorkerDied { pid, signal, code } => Error::WorkerDied {
            pid: *pid,
            signal: *signal,
            code: *code,
        },
        Error::TaskPanicked(m) => Error::TaskPanicked(m.clone()),
        Error::Region(r) => Error::Region(*r),
        Error::Protocol(p) => Error::Protocol(*p),
        Error::TooLarge { len, max } => Error::TooLarge {
            len: *len,
            max: *max,
        },
        Error::Codec(m) => Error::Codec(m.clone()),
        Error::Handle(m) => Error::Handle(m),
        Error::InvalidState(m) => Error::InvalidState(m),
        Error::Spawn(m) => Error::Spawn(m.clone()),
        Error::Io(io) => Error::Io(std::io::Error::new(io.kind(), io.to_string())),
        other => Error::Io(std::io::Error::other(other.to_string())),
    }
}
