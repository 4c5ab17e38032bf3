//! `Pool`: Python's `multiprocessing.Pool` for Rust, on shmproc's own pipes. The user's
//! guide (how it works, chunks, errors, lifetime) is on [`Pool`], re-exported at the root.

mod async_result;
mod call;
mod entry;
mod imap;
mod plain;
mod supervise;
mod task;
mod worker;

use std::collections::VecDeque;
use std::fmt;
use std::sync::{mpsc, Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

use serde::{de::DeserializeOwned, Serialize};

use crate::error::{Error, Result};
use crate::process::{Context, Process, StartMethod};
use crate::sys::reloc::CallEntry;

pub use async_result::AsyncResult;
use call::Call;
use imap::Imap;
use supervise::worker_thread;
use task::{Spare, Task};
use worker::{encode_task, task_header};

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
            Some(f) => Some(entry::to_wire(CallEntry::thunk(f)?)?.to_vec()),
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
            spare: Spare::new(4 * workers),
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
/// sections below describe chunks, errors and the life of workers.
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
///
/// ```
/// use shmproc::Pool;
///
/// fn square(x: u64) -> u64 {
///     x * x
/// }
///
/// let pool = Pool::new(5)?;
/// assert_eq!(pool.map(square, [1, 2, 3])?, vec![1, 4, 9]);
/// # Ok::<(), shmproc::Error>(())
/// ```
///
/// # How it works
///
/// Each worker is a [`Process`] (started with the pool's [`StartMethod`]; the default is
/// [`Process::new`]'s, fork) that receives two shmproc pipe ends as its args: tasks in,
/// replies out. In the parent, one thread per worker hands it chunks from the pool's
/// queue (the one it runs, and for quick small tasks the next one ahead) and files the
/// replies with the call that sent them; the calling thread encodes the input (or, for
/// plain numbers, lets the pool threads copy it; see [Chunks](#chunks)) and decodes the
/// results, so the per-item cost is the codec's (nanoseconds), not a message's.
///
/// Targets are plain `fn(A) -> R` (a non-capturing closure coerces), as for `Process`.
/// A task names its target by offset in the executable, together with a trampoline
/// monomorphized for `A` and `R` that decodes the chunk, calls the target on each item
/// and encodes the results; so a spawned worker, a fresh image of the same executable,
/// finds them too. The target must live in the executable itself, not in a shared
/// library loaded separately.
///
/// # Chunks
///
/// Work moves in chunks: one message carries a chunk of items, one reply its results.
/// [`map`](Pool::map) and [`starmap`](Pool::starmap) use Python's default chunk size,
/// `ceil(len / (4 * workers))`; [`map_chunked`](Pool::map_chunked) takes one.
/// [`imap`](Pool::imap) and [`imap_unordered`](Pool::imap_unordered) use chunks of one
/// item, as Python does ([`imap_chunked`](Pool::imap_chunked) and
/// [`imap_unordered_chunked`](Pool::imap_unordered_chunked) take a size).
///
/// Items and results of the primitive number types (`u8`…`u128`, `i8`…`i128`,
/// `usize`, `isize`, `f32`, `f64`) skip serde: a chunk travels as the items' own bytes
/// and its results likewise, so the per-item cost is a copy and the call of the target.
/// `map` shares such an input with the pool's threads, which copy each chunk straight
/// into its worker's pipe; a worker whose target returns its argument's type reads,
/// maps and writes a chunk in one pass. Other types (tuples, structs, strings) go
/// through the crate's codec, one encoded `Vec` per chunk.
///
/// # Errors
///
/// * A task that panics fails its call with [`Error::TaskPanicked`] carrying the panic's
///   message; the worker catches the panic and lives on. The worker also writes one line
///   with its pid, the message and its location on its stderr.
/// * A worker that dies while it holds a task (abort, SIGKILL, `exit`) fails that call
///   with [`Error::WorkerDied`] (its pid, and the signal or exit code); the pool starts a
///   replacement and goes on. CPython's `Pool` hangs forever in this case.
/// * A call made after [`close`](Pool::close) or [`terminate`](Pool::terminate), and a
///   call cut short by `terminate`, fails with [`Error::Closed`].
/// * With chunks, a failure fails the whole chunk: `map` returns the first error (in
///   item order); `imap` yields one `Err` for each item of the failed chunk and goes on.
///
/// # Lifetime
///
/// [`close`](Pool::close) refuses new work; [`join`](Pool::join) (after `close`) waits
/// until the queued work is done and every worker has exited;
/// [`terminate`](Pool::terminate) kills every worker at once. Dropping a pool terminates
/// it, like leaving Python's `with Pool() as p:` block: no worker and no zombie outlives
/// the `Pool`. Workers are daemons, so they also die if the parent is killed; and a
/// worker whose task pipe disconnects exits by itself.
///
/// With [`StartMethod::Fork`], workers are forked from the pool's own threads; what is
/// safe in a forked child is described on [`Process`](crate::Process#what-is-safe-in-a-forked-child) (in
/// short: a task should not take a lock that another thread of the parent may have held,
/// and that includes std's stdout: a task forked while a thread of the parent held
/// `stdout().lock()` must not print through std). No lock of std's or of the caller's
/// is held across those forks, so a caller that holds `stdout().lock()` while it builds
/// or uses a pool does not hang it. A worker exits like any `Process`: it flushes
/// stdout, then `_exit`s. A thread in the parent waiting for a reply also polls its
/// worker's exit status, so a worker's death is seen even when some other process holds
/// a copy of its pipe. With [`StartMethod::Spawn`], `main` must call [`crate::init`]
/// first.
///
/// # Pools inside pool tasks
///
/// A task may create a `Pool` of its own and use it (Python refuses: its pool workers
/// are daemons, and a daemon may not have children, lest they be orphaned). Here no
/// worker outlives its pool: nested workers are daemons of the task's worker, killed by
/// the kernel (`PR_SET_PDEATHSIG`) when the pool thread that forked them ends, which the
/// worker's own death ends too; and dropping the inner pool inside the task reaps them.
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
    /// Reply buffers for reuse.
    spare: Spare,
}

#[derive(Default)]
struct State {
    queue: VecDeque<Chunk>,
    /// Pool threads waiting for a chunk.
    idle: usize,
    closed: bool,
    terminating: bool,
}

/// A chunk waiting for (or held by) a worker.
struct Chunk {
    call: Arc<Call>,
    index: usize,
    /// The task message, or what it is made of.
    task: Task,
}

impl Inner {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn slot(&self, i: usize) -> MutexGuard<'_, Option<Process>> {
        self.slots[i].lock().unwrap_or_else(|e| e.into_inner())
    }

    fn submit(&self, call: &Arc<Call>, index: usize, task: Task) -> Result<()> {
        let mut st = self.state();
        if st.closed {
            return Err(Error::Closed);
        }
        st.queue.push_back(Chunk {
            call: call.clone(),
            index,
            task,
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
            st.idle += 1;
            st = self.work.wait(st).unwrap_or_else(|e| e.into_inner());
            st.idle -= 1;
        }
    }

    /// The next chunk if one is queued and `fits` and no pool thread is idle (which
    /// should take it instead); never waits.
    fn try_next_chunk(&self, fits: impl Fn(&Chunk) -> bool) -> Option<Chunk> {
        let mut st = self.state();
        if st.terminating || st.idle > 0 {
            return None;
        }
        while let Some(c) = st.queue.front() {
            if c.call.is_cancelled() {
                st.queue.pop_front();
                continue;
            }
            return if fits(c) { st.queue.pop_front() } else { None };
        }
        None
    }

    /// Puts chunks that no worker started back at the head of the queue, in order;
    /// fails them with [`Error::Closed`] when the pool is terminating.
    fn requeue(&self, chunks: Vec<Chunk>) {
        if chunks.is_empty() {
            return;
        }
        let mut st = self.state();
        if st.terminating {
            drop(st);
            for c in chunks {
                c.call.complete(c.index, Err(Error::Closed));
            }
            return;
        }
        for c in chunks.into_iter().rev() {
            st.queue.push_front(c);
        }
        drop(st);
        self.work.notify_all();
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
    ///
    /// # Examples
    ///
    /// ```
    /// fn square(x: u64) -> u64 {
    ///     x * x
    /// }
    ///
    /// let pool = shmproc::Pool::new(2)?;
    /// assert_eq!(pool.map(square, 1..=4)?, [1, 4, 9, 16]);
    /// # Ok::<(), shmproc::Error>(())
    /// ```
    pub fn map<A, R>(&self, f: fn(A) -> R, items: impl IntoIterator<Item = A>) -> Result<Vec<R>>
    where
        A: Serialize + DeserializeOwned + Send + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        let items: Vec<A> = items.into_iter().collect();
        let chunksize = items.len().div_ceil(4 * self.inner.workers).max(1);
        self.map_vec(f, items, chunksize)
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
        self.map_vec(f, items, chunksize)
    }

    /// Maps `items` in chunks: plain items shared with the pool threads, which copy each
    /// chunk straight into its pipe; others encoded here. The results are decoded
    /// straight into the output.
    fn map_vec<A, R>(&self, f: fn(A) -> R, items: Vec<A>, chunksize: usize) -> Result<Vec<R>>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
    {
        let header: Arc<[u8]> = task_header(f, true)?.into();
        let call = CallGuard::new(&self.inner);
        let len = items.len();
        let size = chunksize.max(1);
        let n = len.div_ceil(size);
        let range = |i: usize| i * size..((i + 1) * size).min(len);
        match plain::share(items) {
            Ok(shared) => {
                for i in 0..n {
                    let task = Task::Slice {
                        header: header.clone(),
                        items: shared.clone(),
                        range: range(i),
                    };
                    self.inner.submit(&call.0, i, task)?;
                }
            }
            Err(items) => {
                for i in 0..n {
                    let msg = encode_task(&header, &items, range(i))?;
                    self.inner.submit(&call.0, i, Task::Encoded(msg))?;
                }
            }
        }
        let mut out = Vec::with_capacity(len);
        for i in 0..n {
            let reply = call.0.take(i)?;
            worker::decode_reply_into(&header, &reply, range(i).len(), &mut out)?;
            self.inner.spare.give(reply);
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
    /// item (see [Errors](Pool#errors)), and `Err(Closed)` once when the pool is
    /// closed before the input was all submitted (the iterator ends there).
    ///
    /// # Examples
    ///
    /// ```
    /// fn double(x: i32) -> i32 {
    ///     2 * x
    /// }
    ///
    /// let pool = shmproc::Pool::new(2)?;
    /// let mut results = pool.imap(double, [1, 2, 3])?;
    /// assert_eq!(results.next().unwrap()?, 2); // in item order, each as soon as it is ready
    /// let rest: Vec<i32> = results.map(|r| r.unwrap()).collect();
    /// assert_eq!(rest, [4, 6]);
    /// # Ok::<(), shmproc::Error>(())
    /// ```
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
        let header = task_header(f, false)?;
        let msg = encode_task(&header, &vec![arg], 0..1)?;
        let call = Arc::new(Call::default());
        self.inner.submit(&call, 0, Task::Encoded(msg))?;
        Ok(AsyncResult::new(call))
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
