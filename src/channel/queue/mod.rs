//! `Queue` and `JoinableQueue`: Python's `multiprocessing.Queue`/`JoinableQueue`, a
//! bounded many-producer many-consumer queue between any number of processes.
//!
//! # Design
//!
//! One job per file: `core` is one process's share of a queue and the one blocking core
//! of each of put and get; this file holds the handles, whose `try_`/`_timeout`
//! methods are thin wrappers over those cores.
//!
//! One shared region holds an MPMC slot ring (`ring::mpmc`) of exactly `capacity` slots:
//! every item takes one slot whatever its size, so exactly `capacity` items fit. The
//! fast path is lock-free: a put is one slot CAS, one index CAS, a copy and a store; a
//! get likewise. Blocking calls spin briefly, then park on a futex; a put or get makes a
//! system call only when someone is parked. So that the queue keeps its throughput with
//! more processes than cores, three waits sleep instead of spinning (details in
//! `ring::mpmc`): a put that finds a queue of at least 4096 slots full first naps 200 µs
//! (the consumers drain a stretch instead of being chased slot by slot); a party stuck
//! behind a slot another process claimed and has not yet published naps in short
//! sleeps (that process was preempted and needs the CPU); and a process whose blocking
//! calls keep colliding with another producer's (consumer's) naps 100 µs, one per role
//! at a time.
//!
//! # Item sizes
//!
//! An item is encoded with the crate's codec (serde + postcard). Encodings of up to
//! [`INLINE_BYTES`] (104) bytes — integers, small enums, short strings — live inline in
//! the slot. A larger item goes to the queue's *items file* (`region::ItemsFile`): an
//! anonymous memfd created with the queue and shared by every handle like the queue's
//! region (inherited by a forked child, passed by descriptor to a spawned one). Slot
//! `i` owns a 4 GiB window of that sparse file: the producer writes the item there
//! while it holds the slot (a full memory cgroup is an error, never a SIGBUS: the file
//! is never mapped), the consumer reads it while it holds the slot and frees its pages
//! before releasing it. So an item of any size up to the limit ([`DEFAULT_MAX_ITEM`],
//! 4 GiB) fits, items wait in the queue without their producer, and nothing ever
//! appears in `/dev/shm`: the file goes away with the last process that holds the
//! queue, however it ends.
//!
//! # Crashes
//!
//! A process killed between claiming a slot and publishing (or releasing) it does not
//! wedge the queue: the slot carries the claimer's pid and start time, and whoever
//! waits behind it checks that the claimer still lives before parking, and reclaims the
//! slot if not. The item it held is lost (and its pages freed); nothing else is.
//! In a `JoinableQueue`, an item lost with a dead producer is counted done; an item
//! lost with a dead consumer is not (as in Python, `join` then waits for a `task_done`
//! that never comes). The pages of a lost large item are freed by the reclaimer.

#[cfg(feature = "tokio")]
mod asynk;
mod shared;
#[cfg(test)]
mod tests;

use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use serde::{de::DeserializeOwned, Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{Error, Result, TryGetError, TryPutError};
use crate::region::{ItemsFile, Kind, Region};
use crate::ring::mpmc::INLINE;
use crate::sync::handoff;
use crate::sync::waiter::register_process;
use crate::sync::Deadline;
pub(super) use shared::Shared;
pub use shared::DEFAULT_MAX_ITEM;

/// Capacity of [`Queue::new`] and [`JoinableQueue::new`], in items.
pub(crate) const DEFAULT_CAPACITY: usize = 32_768;
/// Largest encoding stored inline in a slot; larger items go to the items file.
pub const INLINE_BYTES: usize = INLINE;

/// A bounded queue between any number of producer and consumer processes (Python's
/// `multiprocessing.Queue`). `Clone`, `Send` and `Sync`; hand clones to child processes
/// as (part of) their args, under either start method.
///
/// Items are `T: Serialize + DeserializeOwned` of any size (see the module docs for how
/// large ones travel).
///
/// ```
/// use shmproc::Queue;
///
/// let q = Queue::<String>::with_capacity(2)?;
/// q.put(&"a".to_string())?;
/// q.put(&"b".to_string())?;
/// assert!(q.is_full());
/// assert_eq!(q.try_put(&"c".to_string()), Err(shmproc::TryPutError::Full));
/// assert_eq!(q.get()?, "a");
/// q.close();
/// assert_eq!(q.get()?, "b");
/// assert!(matches!(q.get(), Err(shmproc::Error::Closed)));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Queue<T> {
    shared: Arc<Shared>,
    _t: PhantomData<fn(&T) -> T>,
}

impl<T> Queue<T> {
    fn from_shared(shared: Shared) -> Self {
        Queue {
            shared: Arc::new(shared),
            _t: PhantomData,
        }
    }
}

impl<T: Serialize + DeserializeOwned> Queue<T> {
    /// A queue of [`DEFAULT_QUEUE_CAPACITY`](crate::channel::DEFAULT_QUEUE_CAPACITY)
    /// (32,768) items.
    ///
    /// # Errors
    /// An OS error creating the shared region.
    pub fn new() -> Result<Self> {
        Self::with_capacity(DEFAULT_CAPACITY)
    }

    /// A queue in which exactly `items` items fit, whatever their size. Its shared
    /// region takes 128 bytes per item (large items live in the items memfd).
    ///
    /// # Errors
    /// `InvalidState` for 0 items; [`CapacityTooLarge`](Error::CapacityTooLarge) for more
    /// than 2^32 items, or for a region over half of the memory left (see
    /// [`SizeLimit`](crate::SizeLimit)), before any of it is reserved; an OS error
    /// creating the region.
    pub fn with_capacity(items: usize) -> Result<Self> {
        Ok(Queue::from_shared(Shared::create(items, false)?))
    }

    /// Puts an item, blocking while the queue is full. The item is visible to every
    /// consumer when this returns.
    ///
    /// # Errors
    /// `Closed` after [`close`](Self::close); `TooLarge` over the item limit; `Codec`
    /// when `T`'s `Serialize` fails; `Io` when a large item cannot be written to the
    /// items file (no memory left).
    ///
    /// # Examples
    ///
    /// A forked child puts; the parent gets:
    ///
    /// ```
    /// use shmproc::{Process, Queue};
    ///
    /// let q = Queue::<u32>::with_capacity(16)?;
    /// let producer = q.clone();
    /// let mut child = Process::fork(move || {
    ///     for i in 0..3 {
    ///         producer.put(&i).unwrap();
    ///     }
    /// });
    /// child.start()?;
    /// let got: Vec<u32> = (0..3).map(|_| q.get().unwrap()).collect();
    /// assert_eq!(got, [0, 1, 2]);
    /// child.join()?;
    /// # Ok::<(), shmproc::Error>(())
    /// ```
    pub fn put(&self, item: &T) -> Result<()> {
        Ok(self.shared.put_value(item, Deadline::FOREVER)?)
    }

    /// Puts an item, waiting at most `timeout` for room.
    ///
    /// # Errors
    /// `Timeout` when the queue stayed full, or as [`put`](Self::put).
    pub fn put_timeout(&self, item: &T, timeout: Duration) -> Result<()> {
        Ok(self.shared.put_value(item, Deadline::after(timeout))?)
    }

    /// Puts an item if there is room now.
    ///
    /// # Errors
    /// `Full` when there is not (nothing is put), `Closed` after
    /// [`close`](Self::close), or the other failures of [`put`](Self::put).
    pub fn try_put(&self, item: &T) -> std::result::Result<(), TryPutError> {
        Ok(self.shared.put_value(item, Deadline::Now)?)
    }

    /// Takes an item, blocking while the queue is empty.
    ///
    /// # Errors
    /// `Closed` once the queue is closed and drained; `Codec` when the item does not
    /// decode as `T`, `Protocol` when it is corrupt (either way it is consumed); `Io`
    /// when a large item cannot be read from the items file.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmproc::{Error, Queue};
    ///
    /// let q = Queue::<String>::new()?;
    /// q.put(&"job".to_string())?;
    /// q.close();
    /// assert_eq!(q.get()?, "job"); // what was put before close() is still there
    /// assert!(matches!(q.get(), Err(Error::Closed)));
    /// # Ok::<(), shmproc::Error>(())
    /// ```
    pub fn get(&self) -> Result<T> {
        Ok(self.shared.get_value(Deadline::FOREVER)?)
    }

    /// Takes an item, waiting at most `timeout`.
    ///
    /// # Errors
    /// `Timeout` when none came, or as [`get`](Self::get).
    pub fn get_timeout(&self, timeout: Duration) -> Result<T> {
        Ok(self.shared.get_value(Deadline::after(timeout))?)
    }

    /// Takes an item if one is ready now.
    ///
    /// # Errors
    /// `Empty` when none is, `Closed` once closed and drained, or the other failures of
    /// [`get`](Self::get).
    pub fn try_get(&self) -> std::result::Result<T, TryGetError> {
        Ok(self.shared.get_value(Deadline::Now)?)
    }

    /// Number of items in the queue, like Python's `qsize()`: exact when nobody is in
    /// the middle of a put or get.
    pub fn len(&self) -> usize {
        self.shared.ring.len() as usize
    }

    /// Whether the queue holds no item (see [`len`](Self::len)).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the queue holds its capacity of items (see [`len`](Self::len)).
    pub fn is_full(&self) -> bool {
        self.len() as u64 >= self.shared.ring.capacity()
    }

    /// The number of items the queue holds when full.
    pub fn capacity(&self) -> usize {
        self.shared.ring.capacity() as usize
    }

    /// Closes the queue for every handle in every process: puts fail with `Closed` from
    /// now on, and gets fail with `Closed` once the items already in the queue are
    /// taken. Blocked puts and gets wake up.
    pub fn close(&self) {
        self.shared.ring.close();
    }

    /// Whether the queue was closed.
    pub fn is_closed(&self) -> bool {
        self.shared.ring.is_closed()
    }

    /// Test hook: claims the next slot as a producer (`as_consumer`: the next item as a
    /// consumer) and never finishes, standing in for a process killed mid-operation.
    /// Returns whether it claimed a slot. Not part of the API.
    #[doc(hidden)]
    pub fn __claim_and_abandon(&self, as_consumer: bool) -> bool {
        self.shared.claim_and_abandon(as_consumer)
    }
}

/// A [`Queue`] that counts unfinished tasks (Python's `multiprocessing.JoinableQueue`):
/// every `put` adds one, every [`task_done`](JoinableQueue::task_done) removes one, and
/// [`join`](JoinableQueue::join) waits until none is left.
///
/// ```
/// let q = shmproc::JoinableQueue::<u32>::new()?;
/// q.put(&1)?;
/// assert_eq!(q.get()?, 1);
/// q.task_done()?;
/// q.join()?; // every item put was marked done
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct JoinableQueue<T> {
    queue: Queue<T>,
}

impl<T: Serialize + DeserializeOwned> JoinableQueue<T> {
    /// A joinable queue of
    /// [`DEFAULT_QUEUE_CAPACITY`](crate::channel::DEFAULT_QUEUE_CAPACITY) (32,768) items.
    ///
    /// # Errors
    /// An OS error creating the shared region.
    pub fn new() -> Result<Self> {
        Self::with_capacity(DEFAULT_CAPACITY)
    }

    /// A joinable queue in which exactly `items` items fit.
    ///
    /// # Errors
    /// As [`Queue::with_capacity`].
    pub fn with_capacity(items: usize) -> Result<Self> {
        Ok(JoinableQueue {
            queue: Queue::from_shared(Shared::create(items, true)?),
        })
    }

    /// Puts an item, blocking while the queue is full: [`Queue::put`].
    ///
    /// # Errors
    /// As [`Queue::put`].
    pub fn put(&self, item: &T) -> Result<()> {
        self.queue.put(item)
    }

    /// Puts an item, waiting at most `timeout` for room: [`Queue::put_timeout`].
    ///
    /// # Errors
    /// As [`Queue::put_timeout`].
    pub fn put_timeout(&self, item: &T, timeout: Duration) -> Result<()> {
        self.queue.put_timeout(item, timeout)
    }

    /// Puts an item if there is room now: [`Queue::try_put`].
    ///
    /// # Errors
    /// As [`Queue::try_put`].
    pub fn try_put(&self, item: &T) -> std::result::Result<(), TryPutError> {
        self.queue.try_put(item)
    }

    /// Takes an item, blocking while the queue is empty: [`Queue::get`].
    ///
    /// # Errors
    /// As [`Queue::get`].
    pub fn get(&self) -> Result<T> {
        self.queue.get()
    }

    /// Takes an item, waiting at most `timeout`: [`Queue::get_timeout`].
    ///
    /// # Errors
    /// As [`Queue::get_timeout`].
    pub fn get_timeout(&self, timeout: Duration) -> Result<T> {
        self.queue.get_timeout(timeout)
    }

    /// Takes an item if one is ready now: [`Queue::try_get`].
    ///
    /// # Errors
    /// As [`Queue::try_get`].
    pub fn try_get(&self) -> std::result::Result<T, TryGetError> {
        self.queue.try_get()
    }

    /// Number of items in the queue: [`Queue::len`].
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    /// Whether the queue holds no item: [`Queue::is_empty`].
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Whether the queue holds its capacity of items: [`Queue::is_full`].
    pub fn is_full(&self) -> bool {
        self.queue.is_full()
    }

    /// The number of items the queue holds when full: [`Queue::capacity`].
    pub fn capacity(&self) -> usize {
        self.queue.capacity()
    }

    /// Closes the queue for every handle in every process: [`Queue::close`].
    pub fn close(&self) {
        self.queue.close()
    }

    /// Whether the queue was closed: [`Queue::is_closed`].
    pub fn is_closed(&self) -> bool {
        self.queue.is_closed()
    }

    /// Test hook: as [`Queue::__claim_and_abandon`]. Not part of the API.
    #[doc(hidden)]
    pub fn __claim_and_abandon(&self, as_consumer: bool) -> bool {
        self.queue.__claim_and_abandon(as_consumer)
    }

    /// Marks one item taken with `get` as processed.
    ///
    /// # Errors
    /// `InvalidState` when called more times than items were put.
    pub fn task_done(&self) -> Result<()> {
        self.queue
            .shared
            .ring
            .task_done()
            .map_err(|()| Error::InvalidState("task_done() called more times than items were put"))
    }

    /// Waits until every item ever put has been marked done with
    /// [`task_done`](Self::task_done), in any process.
    ///
    /// # Errors
    /// None today; `Result` leaves room for a closed or broken queue.
    pub fn join(&self) -> Result<()> {
        while !self.queue.shared.ring.join(None) {}
        Ok(())
    }

    /// Waits at most `timeout` for every item to be marked done.
    ///
    /// # Errors
    /// `Timeout` when tasks are still unfinished.
    pub fn join_timeout(&self, timeout: Duration) -> Result<()> {
        if self
            .queue
            .shared
            .ring
            .join(Deadline::after(timeout).instant())
        {
            Ok(())
        } else {
            Err(Error::Timeout)
        }
    }
}

impl<T> Clone for Queue<T> {
    fn clone(&self) -> Self {
        Queue {
            shared: self.shared.clone(),
            _t: PhantomData,
        }
    }
}

impl<T> Clone for JoinableQueue<T> {
    fn clone(&self) -> Self {
        JoinableQueue {
            queue: self.queue.clone(),
        }
    }
}

impl<T> Queue<T> {
    /// This process's view of the queue, for `wait`.
    pub(super) fn shared(&self) -> &Shared {
        &self.shared
    }
}

impl<T> JoinableQueue<T> {
    /// This process's view of the queue, for `wait`.
    pub(super) fn shared(&self) -> &Shared {
        &self.queue.shared
    }
}

impl<T> std::fmt::Debug for Queue<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.shared.fmt(f)
    }
}

impl<T> std::fmt::Debug for JoinableQueue<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.queue.fmt(f)
    }
}

/// What a queue handle serializes to when handed to a spawned child.
#[derive(Serialize, Deserialize)]
struct Wire {
    region: i32,
    items: i32,
    poke_r: i32,
    poke_w: i32,
    joinable: bool,
    /// The async waiters' wake-up descriptors.
    #[cfg(feature = "tokio")]
    notify: Vec<i32>,
}

impl<T> Serialize for Queue<T> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::Error as _;
        let region = handoff::pass_fd(self.shared.region.fd())
            .map_err(|e| S::Error::custom(e.to_string()))?;
        let items = handoff::pass_fd(self.shared.items.fd())
            .map_err(|e| S::Error::custom(e.to_string()))?;
        let (r, w) = self.shared.poke.fds();
        let poke_r = handoff::pass_fd(r).map_err(|e| S::Error::custom(e.to_string()))?;
        let poke_w = handoff::pass_fd(w).map_err(|e| S::Error::custom(e.to_string()))?;
        Wire {
            region,
            items,
            poke_r,
            poke_w,
            joinable: self.shared.joinable,
            #[cfg(feature = "tokio")]
            notify: self
                .shared
                .notify
                .pass_fds()
                .map_err(|e| S::Error::custom(e.to_string()))?,
        }
        .serialize(s)
    }
}

impl<T> Serialize for JoinableQueue<T> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        self.queue.serialize(s)
    }
}

/// Opens a queue handed over as `w`, which must be joinable or not as the handle
/// receiving it.
fn open_wire(w: Wire, joinable: bool) -> Result<Shared> {
    if w.joinable != joinable {
        return Err(Error::Handle("handle of another queue type"));
    }
    register_process();
    let region = Region::open_fd(handoff::adopt_fd(w.region)?, Kind::Queue)?;
    let items = ItemsFile::from_fd(handoff::adopt_fd(w.items)?);
    let poke = (handoff::adopt_fd(w.poke_r)?, handoff::adopt_fd(w.poke_w)?);
    let s = Shared::from_region(region, items, Some(poke))?;
    #[cfg(feature = "tokio")]
    let s = s.with_notify(crate::sync::notify_fd::adopt_all(&w.notify, 2)?);
    if s.joinable != joinable {
        return Err(Error::Handle("handle of another queue type"));
    }
    Ok(s)
}

fn deserialize_queue<'de, D: Deserializer<'de>, T>(
    d: D,
    joinable: bool,
) -> std::result::Result<Queue<T>, D::Error> {
    use serde::de::Error as _;
    let w = Wire::deserialize(d)?;
    let shared = open_wire(w, joinable).map_err(|e| D::Error::custom(e.to_string()))?;
    Ok(Queue::from_shared(shared))
}

impl<'de, T> Deserialize<'de> for Queue<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        deserialize_queue(d, false)
    }
}

impl<'de, T> Deserialize<'de> for JoinableQueue<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        Ok(JoinableQueue {
            queue: deserialize_queue(d, true)?,
        })
    }
}
