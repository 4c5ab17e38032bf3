//! `Pool`: Python's `multiprocessing.Pool` for Rust, on shmproc's own pipes.
//!
//! ```
//! use shmproc::Pool;
//!
//! fn square(x: u64) -> u64 {
//!     x * x
//! }
//!
//! let pool = Pool::new(5)?;
//! assert_eq!(pool.map(square, [1, 2, 3])?, vec![1, 4, 9]);
//! # Ok::<(), shmproc::Error>(())
//! ```
//!
//! # How it works
//!
//! Each worker is a [`Process`] (started with the pool's [`StartMethod`]; the default is
//! [`Process::new`]'s, fork) that receives two shmproc pipe ends as its args: tasks in,
//! replies out. In the parent, one thread per worker hands it chunks from the pool's
//! queue, one at a time, and files the replies with the call that sent them; the calling
//! thread encodes the input and decodes the results, so the per-item cost is the codec's
//! (nanoseconds), not a message's.
//!
//! Targets are plain `fn(A) -> R` (a non-capturing closure coerces), as for `Process`.
//! A task names its target by offset in the executable, together with a trampoline
//! monomorphized for `A` and `R` that decodes the chunk, calls the target on each item
//! and encodes the results; so a spawned worker, a fresh image of the same executable,
//! finds them too. The target must live in the executable itself, not in a shared
//! library loaded separately.
//!
//! # Chunks
//!
//! Work moves in chunks: one message carries a chunk of items, one reply its results.
//! [`map`](Pool::map) and [`starmap`](Pool::starmap) use Python's default chunk size,
//! `ceil(len / (4 * workers))`; [`map_chunked`](Pool::map_chunked) takes one.
//! [`imap`](Pool::imap) and [`imap_unordered`](Pool::imap_unordered) use chunks of one
//! item, as Python does ([`imap_chunked`](Pool::imap_chunked) and
//! [`imap_unordered_chunked`](Pool::imap_unordered_chunked) take a size).
//!
//! # Errors
//!
//! * A task that panics fails its call with [`Error::TaskPanicked`] carrying the panic's
//!   message; the worker catches the panic and lives on. The worker also writes one line
//!   with its pid, the message and its location on its stderr.
//! * A worker that dies while it holds a task (abort, SIGKILL, `exit`) fails that call
//!   with [`Error::WorkerDied`] (its pid, and the signal or exit code); the pool starts a
//!   replacement and goes on. CPython's `Pool` hangs forever in this case.
//! * A call made after [`close`](Pool::close) or [`terminate`](Pool::terminate), and a
//!   call cut short by `terminate`, fails with [`Error::Closed`].
//! * With chunks, a failure fails the whole chunk: `map` returns the first error (in
//!   item order); `imap` yields one `Err` for each item of the failed chunk and goes on.
//!
//! # Lifetime
//!
//! [`close`](Pool::close) refuses new work; [`join`](Pool::join) (after `close`) waits
//! until the queued work is done and every worker has exited;
//! [`terminate`](Pool::terminate) kills every worker at once. Dropping a pool terminates
//! it, like leaving Python's `with Pool() as p:` block: no worker and no zombie outlives
//! the `Pool`. Workers are daemons, so they also die if the parent is killed; and a
//! worker whose task pipe disconnects exits by itself.
//!
//! With [`StartMethod::Fork`], workers are forked from the pool's own threads; what is
//! safe in a forked child is described in the [`process`](crate::process) module (in
//! short: a task should not take a lock that another thread of the parent may have held,
//! and that includes std's stdout: a task forked while a thread of the parent held
//! `stdout().lock()` must not print through std). No lock of std's or of the caller's
//! is held across those forks, so a caller that holds `stdout().lock()` while it builds
//! or uses a pool does not hang it. A worker exits like any `Process`: it flushes
//! stdout, then `_exit`s. A thread in the parent waiting for a reply also polls its
//! worker's exit status, so a worker's death is seen even when some other process holds
//! a copy of its pipe. With [`StartMethod::Spawn`], `main` must call [`crate::init`]
//! first.
//!
//! # Pools inside pool tasks
//!
//! A task may create a `Pool` of its own and use it (Python refuses: its pool workers
//! are daemons, and a daemon may not have children, lest they be orphaned). Here no
//! worker outlives its pool: nested workers are daemons of the task's worker, killed by
//! the kernel (`PR_SET_PDEATHSIG`) when the pool thread that forked them ends, which the
//! worker's own death ends too; and dropping the inner pool inside the task reaps them.

mod call;
mod worker;

use std::collections::VecDeque;
use std::fmt;
use std::marker::PhantomData;
use std::sync::{mpsc, Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use serde::{de::DeserializeOwned, Serialize};

use crate::channel::{Pipe, Receiver, Sender};
use crate::codec;
use crate::error::{Error, RecvError, Result};
use crate::process::{get_context, Context, Process, StartMethod};
use crate::sys::proc::CallEntry;

use call::{Call, Outcome};
use worker::{ChunkRunner, WorkerArgs, TASK};

/// Ring size of each direction of a worker's pipes.
const PIPE_CAPACITY: usize = 1 << 20;
/// How long to wait for a worker that should be exiting before killing it.
const EXIT_GRACE: Duration = Duration::from_secs(10);
/// How often a thread waiting for a reply checks that its worker still runs.
const LIVENESS_SLICE: Duration = Duration::from_millis(100);
/// `imap` keeps at most this many chunks per worker submitted ahead of the consumer.
const IMAP_WINDOW_PER_WORKER: usize = 4;

// ------------------------------------------------------------------------------ builder

/// Configures a [`Pool`]; by value, like `std::thread::Builder`. Get one from
/// [`Pool::builder`].
#[derive(Debug, Clone, Copy)]
pub struct PoolBuilder {
    workers: Option<usize>,
    method: StartMethod,
    initializer: Option<fn()>,
    maxtasks: Option<usize>,
}

impl PoolBuilder {
    /// The number of worker processes. Default: the number of CPUs
    /// (`std::thread::available_parallelism`), as Python's `os.cpu_count()`.
    pub fn workers(mut self, n: usize) -> Self {
        self.workers = Some(n);
        self
    }

    /// How workers are started. Default: [`StartMethod::default()`], fork, as for
    /// [`Process::new`].
    pub fn start_method(mut self, method: StartMethod) -> Self {
        self.method = method;
        self
    }

    /// A function every worker runs once when it starts, before any task (Python's
    /// `initializer`). If it panics, the tasks sent to that worker fail with
    /// [`Error::TaskPanicked`] and the worker is replaced.
    pub fn initializer(mut self, f: fn()) -> Self {
        self.initializer = Some(f);
        self
    }

    /// Replaces a worker after it has run `n` tasks (chunks), as Python's
    /// `maxtasksperchild`. Default: workers live as long as the pool.
    pub fn maxtasksperchild(mut self, n: usize) -> Self {
        self.maxtasks = Some(n);
        self
    }

    /// Starts the workers.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidState`] for zero workers or `maxtasksperchild(0)`, or when spawn
    /// is used from a spawned child whose `main` skipped [`crate::init`]; [`Error::Io`]
    /// when a process or a thread cannot be created; the error of any worker that could
    /// not start (then the others are stopped).
    pub fn build(self) -> Result<Pool> {
        let workers = match self.workers {
            Some(n) => n,
            None => std::thread::available_parallelism().map_or(1, |n| n.get()),
        };
        if workers == 0 {
            return Err(Error::InvalidState("a pool needs at least one worker"));
        }
        if self.maxtasks == Some(0) {
            return Err(Error::InvalidState("maxtasksperchild must be at least 1"));
        }
        let initializer = match self.initializer {
            Some(f) => Some(CallEntry::thunk(f)?.to_wire()?.to_vec()),
            None => None,
        };
        let inner = Arc::new(Inner {
            workers,
            method: self.method,
            initializer,
            maxtasks: self.maxtasks,
            state: Mutex::new(State::default()),
            work: Condvar::new(),
            slots: (0..workers).map(|_| Mutex::new(None)).collect(),
        });
        let pool = Pool {
            inner: inner.clone(),
            threads: Mutex::new(Vec::with_capacity(workers)),
        };
        let (ready_tx, ready_rx) = mpsc::channel();
        for slot in 0..workers {
            let inner = inner.clone();
            let ready = ready_tx.clone();
            let t = std::thread::Builder::new()
                .name(format!("shmproc-pool-{slot}"))
                .spawn(move || worker_thread(&inner, slot, ready));
            match t {
                Ok(t) => pool.threads().push(t),
                Err(e) => return Err(e.into()), // `pool` drops: terminate
            }
        }
        drop(ready_tx);
        for _ in 0..workers {
            match ready_rx.recv() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(e),
                Err(_) => return Err(Error::InvalidState("a pool thread failed to start")),
            }
        }
        Ok(pool)
    }
}

// ----------------------------------------------------------------------------- the pool

/// A pool of worker processes: Python's `multiprocessing.Pool`.
///
/// Every method takes `&self`; a `Pool` is `Send` and `Sync`, so threads can share one.
/// Dropping it terminates it ([`terminate`](Pool::terminate)). The
/// [module docs](self) describe chunks, errors and the life of workers.
///
/// # Examples
///
/// ```
/// use shmproc::Pool;
///
/// fn square(x: u64) -> u64 {
///     x * x
/// }
/// fn add((a, b): (i32, i32)) -> i32 {
///     a + b
/// }
///
/// let pool = Pool::builder().workers(2).maxtasksperchild(100).build()?;
/// assert_eq!(pool.map(square, 0..4)?, vec![0, 1, 4, 9]);
/// assert_eq!(pool.starmap(add, [(1, 2), (3, 4)])?, vec![3, 7]);
/// let sum: u64 = pool.imap(square, 0..10)?.map(|r| r.unwrap()).sum();
/// assert_eq!(sum, 285);
/// let pending = pool.apply_async(square, 12)?;
/// assert_eq!(pending.get()?, 144);
/// pool.close();
/// pool.join()?;
/// # Ok::<(), shmproc::Error>(())
/// ```
pub struct Pool {
    inner: Arc<Inner>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl fmt::Debug for Pool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let st = self.inner.state();
        f.debug_struct("Pool")
            .field("workers", &self.inner.workers)
            .field("start_method", &self.inner.method)
            .field("closed", &st.closed)
            .field("queued", &st.queue.len())
            .finish()
    }
}

/// What the pool's threads share.
struct Inner {
    workers: usize,
    method: StartMethod,
    initializer: Option<Vec<u8>>,
    maxtasks: Option<usize>,
    state: Mutex<State>,
    /// Signalled when a chunk is queued, and on close and terminate.
    work: Condvar,
    /// Each worker thread's current process, so that `terminate` can kill it. Only the
    /// owning thread reaps it, under this lock, so a kill never hits a reused pid.
    slots: Vec<Mutex<Option<Process>>>,
}

#[derive(Default)]
struct State {
    queue: VecDeque<Chunk>,
    closed: bool,
    terminating: bool,
}

/// A chunk waiting for (or held by) a worker.
struct Chunk {
    call: Arc<Call>,
    index: usize,
    /// The encoded task message.
    msg: Vec<u8>,
}

impl Inner {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn slot(&self, i: usize) -> MutexGuard<'_, Option<Process>> {
        self.slots[i].lock().unwrap_or_else(|e| e.into_inner())
    }

    fn submit(&self, call: &Arc<Call>, index: usize, msg: Vec<u8>) -> Result<()> {
        let mut st = self.state();
        if st.closed {
            return Err(Error::Closed);
        }
        st.queue.push_back(Chunk {
            call: call.clone(),
            index,
            msg,
        });
        drop(st);
        self.work.notify_one();
        Ok(())
    }

    /// Drops the queued chunks of a cancelled call.
    fn forget(&self, call: &Arc<Call>) {
        self.state().queue.retain(|c| !Arc::ptr_eq(&c.call, call));
    }

    /// The next chunk for a worker thread; `None` when the thread should stop.
    fn next_chunk(&self) -> Option<Chunk> {
        let mut st = self.state();
        loop {
            if st.terminating {
                return None;
            }
            while let Some(c) = st.queue.pop_front() {
                if !c.call.is_cancelled() {
                    return Some(c);
                }
            }
            if st.closed {
                return None;
            }
            st = self.work.wait(st).unwrap_or_else(|e| e.into_inner());
        }
    }

    fn terminating(&self) -> bool {
        self.state().terminating
    }
}

impl Pool {
    /// A pool of `workers` processes with the default start method (fork).
    ///
    /// # Errors
    ///
    /// As [`PoolBuilder::build`].
    pub fn new(workers: usize) -> Result<Pool> {
        Pool::builder().workers(workers).build()
    }

    /// A builder: `workers`, `start_method`, `initializer`, `maxtasksperchild`, `build`.
    ///
    /// ```
    /// use shmproc::{Pool, StartMethod};
    ///
    /// fn setup() {}
    /// fn pid(_: ()) -> u32 {
    ///     std::process::id()
    /// }
    ///
    /// let pool = Pool::builder()
    ///     .workers(2)
    ///     .start_method(StartMethod::Fork)
    ///     .initializer(setup)
    ///     .maxtasksperchild(1)
    ///     .build()?;
    /// let a = pool.apply(pid, ())?;
    /// let b = pool.apply(pid, ())?;
    /// assert_ne!(a, b); // each worker ran one task, then was replaced
    /// # Ok::<(), shmproc::Error>(())
    /// ```
    pub fn builder() -> PoolBuilder {
        PoolBuilder {
            workers: None,
            method: StartMethod::default(),
            initializer: None,
            maxtasks: None,
        }
    }

    /// The number of worker processes.
    pub fn workers(&self) -> usize {
        self.inner.workers
    }

    /// The start method of the workers.
    pub fn start_method(&self) -> StartMethod {
        self.inner.method
    }

    /// Applies `f` to every item in worker processes; the results in item order. Chunks
    /// of Python's default size, `ceil(len / (4 * workers))`.
    ///
    /// # Errors
    ///
    /// [`Error::TaskPanicked`] or [`Error::WorkerDied`] when a chunk failed (the first in
    /// item order), [`Error::Closed`] after `close`/`terminate`, [`Error::Codec`] when an
    /// item or result does not encode.
    pub fn map<A, R>(&self, f: fn(A) -> R, items: impl IntoIterator<Item = A>) -> Result<Vec<R>>
    where
        A: Serialize + DeserializeOwned + Send + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        let items: Vec<A> = items.into_iter().collect();
        let chunksize = items.len().div_ceil(4 * self.inner.workers).max(1);
        self.map_slice(f, &items, chunksize)
    }

    /// [`map`](Pool::map) with a chosen chunk size (items per message; 0 counts as 1).
    ///
    /// # Errors
    ///
    /// As [`map`](Pool::map).
    pub fn map_chunked<A, R>(
        &self,
        f: fn(A) -> R,
        items: impl IntoIterator<Item = A>,
        chunksize: usize,
    ) -> Result<Vec<R>>
    where
        A: Serialize + DeserializeOwned + Send + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        let items: Vec<A> = items.into_iter().collect();
        self.map_slice(f, &items, chunksize)
    }

    /// Maps `items` in chunks encoded straight from the slice.
    fn map_slice<A, R>(&self, f: fn(A) -> R, items: &[A], chunksize: usize) -> Result<Vec<R>>
    where
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
    {
        let header = task_header(f)?;
        let call = CallGuard::new(&self.inner);
        let chunks = items.chunks(chunksize.max(1));
        let n = chunks.len();
        for (i, chunk) in chunks.enumerate() {
            self.inner
                .submit(&call.0, i, encode_task(&header, chunk)?)?;
        }
        let mut out = Vec::with_capacity(items.len());
        for (i, chunk) in items.chunks(chunksize.max(1)).enumerate().take(n) {
            let reply = call.0.take(i)?;
            out.extend(worker::decode_reply::<R>(&reply, chunk.len())?);
        }
        Ok(out)
    }

    /// Like [`map`](Pool::map), yielding results in item order as soon as each is
    /// ready. Chunks of one item (Python's default). The input is collected first, as
    /// Python's does; it is then encoded and queued lazily, at most a few chunks per
    /// worker ahead of the consumer, so a slow consumer does not pile up results, and
    /// dropping the iterator cancels what is still queued.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] after `close`/`terminate`; a failed chunk yields one `Err` per
    /// item (see the [module docs](self)), and `Err(Closed)` once when the pool is
    /// closed before the input was all submitted (the iterator ends there).
    pub fn imap<A, R>(
        &self,
        f: fn(A) -> R,
        items: impl IntoIterator<Item = A>,
    ) -> Result<impl Iterator<Item = Result<R>> + '_>
    where
        A: Serialize + DeserializeOwned + Send + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        self.imap_chunked(f, items, 1)
    }

    /// [`imap`](Pool::imap) with a chosen chunk size.
    ///
    /// # Errors
    ///
    /// As [`imap`](Pool::imap).
    pub fn imap_chunked<A, R>(
        &self,
        f: fn(A) -> R,
        items: impl IntoIterator<Item = A>,
        chunksize: usize,
    ) -> Result<impl Iterator<Item = Result<R>> + '_>
    where
        A: Serialize + DeserializeOwned + Send + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        Imap::start(self, f, items, chunksize, true)
    }

    /// Like [`imap`](Pool::imap), yielding results in the order they finish.
    ///
    /// # Errors
    ///
    /// As [`imap`](Pool::imap).
    pub fn imap_unordered<A, R>(
        &self,
        f: fn(A) -> R,
        items: impl IntoIterator<Item = A>,
    ) -> Result<impl Iterator<Item = Result<R>> + '_>
    where
        A: Serialize + DeserializeOwned + Send + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        self.imap_unordered_chunked(f, items, 1)
    }

    /// [`imap_unordered`](Pool::imap_unordered) with a chosen chunk size.
    ///
    /// # Errors
    ///
    /// As [`imap`](Pool::imap).
    pub fn imap_unordered_chunked<A, R>(
        &self,
        f: fn(A) -> R,
        items: impl IntoIterator<Item = A>,
        chunksize: usize,
    ) -> Result<impl Iterator<Item = Result<R>> + '_>
    where
        A: Serialize + DeserializeOwned + Send + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        Imap::start(self, f, items, chunksize, false)
    }

    /// [`map`](Pool::map) under Python's name. Python's `starmap` unpacks each item into
    /// the arguments; Rust cannot splat a tuple, so `f` takes the tuple:
    /// `fn add((a, b): (i32, i32)) -> i32`.
    ///
    /// # Errors
    ///
    /// As [`map`](Pool::map).
    pub fn starmap<A, R>(&self, f: fn(A) -> R, items: impl IntoIterator<Item = A>) -> Result<Vec<R>>
    where
        A: Serialize + DeserializeOwned + Send + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        self.map(f, items)
    }

    /// Runs `f(arg)` in a worker and waits for the result.
    ///
    /// # Errors
    ///
    /// As [`map`](Pool::map).
    pub fn apply<A, R>(&self, f: fn(A) -> R, arg: A) -> Result<R>
    where
        A: Serialize + DeserializeOwned + Send + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        self.apply_async(f, arg)?.get()
    }

    /// Queues `f(arg)` for a worker; the result arrives in the [`AsyncResult`]. The task
    /// runs even if the `AsyncResult` is dropped.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] after `close`/`terminate`; [`Error::Codec`] when `arg` does not
    /// encode. The task's own failure is reported by [`AsyncResult::get`].
    pub fn apply_async<A, R>(&self, f: fn(A) -> R, arg: A) -> Result<AsyncResult<R>>
    where
        A: Serialize + DeserializeOwned + Send + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        let header = task_header(f)?;
        let msg = encode_task(&header, std::slice::from_ref(&arg))?;
        let call = Arc::new(Call::default());
        self.inner.submit(&call, 0, msg)?;
        Ok(AsyncResult {
            call,
            _r: PhantomData,
        })
    }

    /// Refuses new work (later calls fail with [`Error::Closed`]); queued work still
    /// runs. Then [`join`](Pool::join) waits for it.
    pub fn close(&self) {
        self.inner.state().closed = true;
        self.inner.work.notify_all();
    }

    /// Waits until the queued work is done and every worker has exited. Call
    /// [`close`](Pool::close) (or [`terminate`](Pool::terminate)) first.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidState`] when the pool was not closed.
    pub fn join(&self) -> Result<()> {
        if !self.inner.state().closed {
            return Err(Error::InvalidState("Pool::join() before close()"));
        }
        // Held while joining, so a concurrent join() also waits for the end.
        let mut threads = self.threads();
        for t in threads.drain(..) {
            let _ = t.join();
        }
        Ok(())
    }

    /// Stops at once: kills every worker (SIGKILL) and reaps it. Queued and running
    /// calls fail with [`Error::Closed`]. Dropping the pool does this.
    pub fn terminate(&self) {
        let queued = {
            let mut st = self.inner.state();
            st.closed = true;
            st.terminating = true;
            std::mem::take(&mut st.queue)
        };
        self.inner.work.notify_all();
        for c in queued {
            c.call.complete(c.index, Err(Error::Closed));
        }
        for i in 0..self.inner.workers {
            if let Some(p) = self.inner.slot(i).as_ref() {
                let _ = p.kill();
            }
        }
        let mut threads = self.threads();
        for t in threads.drain(..) {
            let _ = t.join();
        }
    }

    fn threads(&self) -> MutexGuard<'_, Vec<JoinHandle<()>>> {
        self.threads.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.terminate();
    }
}

impl Context {
    /// A pool of `workers` processes started with this context's start method
    /// (`Pool::builder().workers(n).start_method(m).build()`).
    ///
    /// # Errors
    ///
    /// As [`PoolBuilder::build`].
    pub fn pool(&self, workers: usize) -> Result<Pool> {
        Pool::builder()
            .workers(workers)
            .start_method(self.start_method())
            .build()
    }
}

/// Cancels a call when the caller returns early (an error, a panic).
struct CallGuard<'a>(Arc<Call>, &'a Inner);

impl<'a> CallGuard<'a> {
    fn new(inner: &'a Inner) -> Self {
        CallGuard(Arc::new(Call::default()), inner)
    }
}

impl Drop for CallGuard<'_> {
    fn drop(&mut self) {
        self.0.cancel();
        self.1.forget(&self.0);
    }
}

/// The first bytes of every task message for `f`: the tag and the call entry.
fn task_header<A, R>(f: fn(A) -> R) -> Result<Vec<u8>>
where
    A: DeserializeOwned,
    R: Serialize,
{
    let entry = CallEntry::new::<A, R, ChunkRunner>(f)?;
    let mut h = Vec::with_capacity(1 + CallEntry::WIRE_LEN);
    h.push(TASK);
    h.extend_from_slice(&entry.to_wire()?);
    Ok(h)
}

fn encode_task<A: Serialize>(header: &[u8], chunk: &[A]) -> Result<Vec<u8>> {
    let mut msg = Vec::with_capacity(header.len() + 16 + chunk.len() * 4);
    msg.extend_from_slice(header);
    codec::encode_into(chunk, &mut msg)?;
    Ok(msg)
}

/// A copy of an error, for results read more than once (`AsyncResult::get`) and for
/// every item of a failed chunk.
fn dup(e: &Error) -> Error {
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

// ------------------------------------------------------------------------ AsyncResult

/// The pending result of [`Pool::apply_async`]: Python's `AsyncResult`.
///
/// `get` can be called any number of times (each call decodes a fresh `R`). If the pool
/// is terminated first, the result is [`Error::Closed`]; it never waits forever for a
/// worker that died.
///
/// ```
/// fn slow_square(x: u64) -> u64 {
///     x * x
/// }
///
/// let pool = shmproc::Pool::new(2)?;
/// let r = pool.apply_async(slow_square, 9)?;
/// assert_eq!(r.get_timeout(std::time::Duration::from_secs(30))?, 81);
/// assert!(r.ready());
/// # Ok::<(), shmproc::Error>(())
/// ```
pub struct AsyncResult<R> {
    call: Arc<Call>,
    _r: PhantomData<fn() -> R>,
}

impl<R> fmt::Debug for AsyncResult<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsyncResult")
            .field("ready", &self.call.is_done(0))
            .finish()
    }
}

impl<R: DeserializeOwned> AsyncResult<R> {
    fn read(outcome: &Outcome) -> Result<R> {
        match outcome {
            Ok(reply) => worker::decode_reply::<R>(reply, 1)?
                .pop()
                .ok_or(Error::Codec("empty reply".into())),
            Err(e) => Err(dup(e)),
        }
    }

    /// Waits for the result.
    ///
    /// # Errors
    ///
    /// [`Error::TaskPanicked`], [`Error::WorkerDied`], [`Error::Closed`] (terminated)
    /// or [`Error::Codec`], as for [`Pool::map`].
    pub fn get(&self) -> Result<R> {
        self.call
            .inspect(0, None, Self::read)
            .unwrap_or(Err(Error::Timeout))
    }

    /// Waits at most `timeout` for the result.
    ///
    /// # Errors
    ///
    /// [`Error::Timeout`] when it is not ready in time, or as [`get`](Self::get).
    pub fn get_timeout(&self, timeout: Duration) -> Result<R> {
        let deadline = crate::sys::deadline_after(timeout);
        self.call
            .inspect(0, deadline, Self::read)
            .unwrap_or(Err(Error::Timeout))
    }
}

impl<R> AsyncResult<R> {
    /// Whether the result (or its error) has arrived.
    pub fn ready(&self) -> bool {
        self.call.is_done(0)
    }

    /// Waits at most `timeout` (forever for `None`) until the result is ready; returns
    /// [`ready`](Self::ready).
    pub fn wait(&self, timeout: Option<Duration>) -> bool {
        let deadline = timeout.and_then(crate::sys::deadline_after);
        self.call.inspect(0, deadline, |_| ()).is_some()
    }
}

// ------------------------------------------------------------------------------- imap

/// The iterator behind `imap` and `imap_unordered`.
struct Imap<'p, A, R> {
    pool: &'p Pool,
    header: Vec<u8>,
    items: std::iter::Peekable<std::vec::IntoIter<A>>,
    chunksize: usize,
    ordered: bool,
    call: Arc<Call>,
    /// Item count of each submitted chunk not yet consumed, by index.
    lens: std::collections::HashMap<usize, usize>,
    submitted: usize,
    consumed: usize,
    window: usize,
    ready: VecDeque<Result<R>>,
    _r: PhantomData<fn() -> R>,
}

impl<'p, A, R> Imap<'p, A, R>
where
    A: Serialize + DeserializeOwned,
    R: Serialize + DeserializeOwned,
{
    fn start(
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
            header: task_header(f)?,
            items: items.into_iter().collect::<Vec<A>>().into_iter().peekable(),
            chunksize: chunksize.max(1),
            ordered,
            call: Arc::new(Call::default()),
            lens: Default::default(),
            submitted: 0,
            consumed: 0,
            window: IMAP_WINDOW_PER_WORKER * pool.inner.workers,
            ready: VecDeque::new(),
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
            let res = encode_task(&self.header, &chunk)
                .and_then(|msg| self.pool.inner.submit(&self.call, index, msg));
            if let Err(e) = res {
                if matches!(e, Error::Closed) {
                    // Nothing more can run: end after this chunk's error.
                    self.items = Vec::new().into_iter().peekable();
                    self.lens.insert(index, 1);
                }
                self.call.complete(index, Err(e));
            }
        }
    }
}

impl<A, R> Iterator for Imap<'_, A, R>
where
    A: Serialize + DeserializeOwned,
    R: Serialize + DeserializeOwned,
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
                (self.consumed, self.call.take(self.consumed))
            } else {
                self.call.take_any()
            };
            self.consumed += 1;
            let n = self.lens.remove(&index).unwrap_or(1);
            match outcome.and_then(|reply| worker::decode_reply::<R>(&reply, n)) {
                Ok(v) => self.ready.extend(v.into_iter().map(Ok)),
                Err(e) => {
                    for _ in 1..n {
                        self.ready.push_back(Err(dup(&e)));
                    }
                    self.ready.push_back(Err(e));
                }
            }
        }
    }
}

impl<A, R> Drop for Imap<'_, A, R> {
    fn drop(&mut self) {
        self.call.cancel();
        self.pool.inner.forget(&self.call);
    }
}

// ----------------------------------------------------------------------- worker threads

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

/// Sends one task and waits for its reply; `Err(None)` when the worker is gone.
///
/// The wait polls the worker's exit status every [`LIVENESS_SLICE`], besides the pipe's
/// own disconnection: a copy of the reply pipe's end held by some other process (one
/// forked by code outside the pool at the wrong moment) cannot hide the worker's death.
fn run_on(
    inner: &Inner,
    slot: usize,
    w: &Worker,
    msg: &[u8],
) -> std::result::Result<Vec<u8>, Option<Error>> {
    if w.tasks.send_bytes(msg).is_err() {
        return Err(None);
    }
    while !w.results.poll(Some(LIVENESS_SLICE)) {
        if !alive(inner, slot) && !w.results.poll(Some(Duration::ZERO)) {
            return Err(None);
        }
    }
    // Into a fresh buffer: the receiver swaps it in, with no copy of the reply.
    let mut reply = Vec::new();
    match w.results.recv_bytes_into(&mut reply) {
        Ok(_) => Ok(reply),
        Err(RecvError::Disconnected) => Err(None),
        Err(RecvError::Protocol(p)) => Err(Some(Error::Protocol(p))),
        Err(e) => Err(Some(Error::Codec(e.to_string()))),
    }
}

/// One thread per worker: starts the worker, feeds it chunks one at a time, replaces it
/// when it dies or has run `maxtasksperchild` tasks, and stops it at the end.
fn worker_thread(inner: &Inner, slot: usize, ready: mpsc::Sender<Result<()>>) {
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
    while let Some(chunk) = inner.next_chunk() {
        let mut job = InFlight(Some(chunk));
        if current.is_some() && !alive(inner, slot) {
            // It died while idle (killed from outside): replace it before handing work.
            current = None;
            reap(inner, slot, true);
        }
        let w = match current.take() {
            Some(w) => w,
            None => match start_worker(inner, slot) {
                Ok(w) => w,
                Err(e) => {
                    job.finish(Err(e));
                    continue;
                }
            },
        };
        if inner.terminating() {
            current = Some(w);
            job.finish(Err(Error::Closed));
            break;
        }
        let msg = job.0.as_ref().map(|c| c.msg.as_slice()).unwrap_or_default();
        match run_on(inner, slot, &w, msg) {
            Ok(reply) => {
                let init_failed = reply.first() == Some(&worker::INIT_FAILED);
                job.finish(Ok(reply));
                let mut w = w;
                w.done += 1;
                if init_failed || inner.maxtasks.is_some_and(|m| w.done >= m) {
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
            }
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
