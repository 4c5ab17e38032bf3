//! The iterator behind `Pool::imap` and `Pool::imap_unordered`: submits chunks lazily,
//! a few per worker ahead of the consumer, and yields their results in item order or in
//! the order they finish.

use std::collections::{HashMap, VecDeque};
use std::marker::PhantomData;

use serde::{de::DeserializeOwned, Serialize};

use crate::error::{Error, Result};

use super::call::dup;
use super::task::Task;
use super::{worker, CallGuard, Pool, IMAP_WINDOW_PER_WORKER};

/// The iterator behind `imap` and `imap_unordered`.
pub(super) struct Imap<'p, A, R> {
    pool: &'p Pool,
    header: Vec<u8>,
    items: std::iter::Peekable<std::vec::IntoIter<A>>,
    chunksize: usize,
    ordered: bool,
    /// Cancels the call when the iterator is dropped.
    call: CallGuard<'p>,
    /// Item count of each submitted chunk not yet consumed, by index.
    lens: HashMap<usize, usize>,
    submitted: usize,
    consumed: usize,
    window: usize,
    ready: VecDeque<Result<R>>,
    /// A chunk's decoded results, reused.
    results: Vec<R>,
    _r: PhantomData<fn() -> R>,
}

impl<'p, A, R> Imap<'p, A, R>
where
    A: Serialize + DeserializeOwned + 'static,
    R: Serialize + DeserializeOwned + 'static,
{
    pub(super) fn start(
        pool: &'p Pool,
        f: fn(A) -> R,
        items: impl IntoIterator<Item = A>,
        chunksize: usize,
        ordered: bool,
    ) -> Result<Self> {
        if pool.inner.state().closed {
            return Err(Error::Closed);
        }
        let mut it = Imap {
            pool,
            header: worker::task_header(f, true)?,
            items: items.into_iter().collect::<Vec<A>>().into_iter().peekable(),
            chunksize: chunksize.max(1),
            ordered,
            call: CallGuard::new(&pool.inner),
            lens: Default::default(),
            submitted: 0,
            consumed: 0,
            window: IMAP_WINDOW_PER_WORKER * pool.inner.workers,
            ready: VecDeque::new(),
            results: Vec::new(),
            _r: PhantomData,
        };
        it.fill();
        Ok(it)
    }

    /// Submits chunks until the window is full or the input is exhausted.
    fn fill(&mut self) {
        while self.submitted - self.consumed < self.window && self.items.peek().is_some() {
            let chunk: Vec<A> = self.items.by_ref().take(self.chunksize).collect();
            let index = self.submitted;
            self.lens.insert(index, chunk.len());
            self.submitted += 1;
            let res = worker::encode_task(&self.header, &chunk, 0..chunk.len()).and_then(|msg| {
                self.pool
                    .inner
                    .submit(&self.call.0, index, Task::Encoded(msg))
            });
            if let Err(e) = res {
                if matches!(e, Error::Closed) {
                    // Nothing more can run: end after this chunk's error.
                    self.items = Vec::new().into_iter().peekable();
                    self.lens.insert(index, 1);
                }
                self.call.0.complete(index, Err(e));
            }
        }
    }
}

impl<A, R> Iterator for Imap<'_, A, R>
where
    A: Serialize + DeserializeOwned + 'static,
    R: Serialize + DeserializeOwned + 'static,
{
    type Item = Result<R>;

    fn next(&mut self) -> Option<Result<R>> {
        loop {
            if let Some(r) = self.ready.pop_front() {
                return Some(r);
            }
            self.fill();
            if self.consumed == self.submitted {
                return None;
            }
            let (index, outcome) = if self.ordered {
                (self.consumed, self.call.0.take(self.consumed))
            } else {
                self.call.0.take_any()
            };
            self.consumed += 1;
            let n = self.lens.remove(&index).unwrap_or(1);
            let mut results = std::mem::take(&mut self.results);
            results.clear();
            let decoded = outcome.and_then(|reply| {
                let res = worker::decode_reply_into(&self.header, &reply, n, &mut results);
                self.pool.inner.spare.give(reply);
                res
            });
            match decoded {
                Ok(()) => self.ready.extend(results.drain(..).map(Ok)),
                Err(e) => {
                    for _ in 1..n {
                        self.ready.push_back(Err(dup(&e)));
                    }
                    self.ready.push_back(Err(e));
                }
            }
            self.results = results;
        }
    }
}
