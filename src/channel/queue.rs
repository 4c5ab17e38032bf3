//! `Queue` and `JoinableQueue`: Python's `multiprocessing.Queue`/`JoinableQueue`, a
//! bounded many-producer many-consumer queue between any number of processes.
//!
//! # Design
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
//! the slot. A larger item goes to the queue's *items file*: an anonymous memfd created
//! with the queue and shared by every handle like the queue's region (inherited by a
//! forked child, passed by descriptor to a spawned one). Slot `i` owns the 4 GiB window
//! at offset `i × 2^32` of that sparse file: the producer writes the item there with
//! `pwrite` while it holds the slot (a full memory cgroup is an error, never a SIGBUS:
//! the file is never mapped), the consumer reads it with `pread` while it holds the slot
//! and frees the pages (`FALLOC_FL_PUNCH_HOLE`) before releasing it. So an item of any
//! size up to the limit ([`DEFAULT_MAX_ITEM`], 4 GiB) fits, items wait in the queue
//! without their producer, and nothing ever appears in `/dev/shm`: the file goes away
//! with the last process that holds the queue, however it ends.
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

use std::marker::PhantomData;
use std::os::fd::AsFd;
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{de::DeserializeOwned, Deserialize, Deserializer, Serialize, Serializer};

use crate::codec;
use crate::error::{Error, ProtocolError, RegionError, Result, TryGetError, TryPutError};
use crate::handoff;
use crate::region::{Kind, Region};
use crate::ring::mpmc::{self, GetFail, Mpmc, PutFail, INLINE};
use crate::sync::waiter::register_process;
use crate::sys::{self, deadline_after};

/// Capacity of [`Queue::new`] and [`JoinableQueue::new`], in items.
pub(crate) const DEFAULT_CAPACITY: usize = 32_768;
/// Largest item, in encoded bytes.
pub const DEFAULT_MAX_ITEM: u64 = 4 << 30;
/// Largest encoding stored inline in a slot; larger items go to the items file.
pub const INLINE_BYTES: usize = INLINE;

const KIND_INLINE: u32 = 1;
const KIND_SIDE: u32 = 2;
/// Each slot's window in the items file: 4 GiB, the largest item.
const WINDOW_SHIFT: u32 = 32;
/// Slots whose window fits in a file (offsets below 2^62).
const MAX_SIDE_SLOT: u64 = 1 << 30;

thread_local! {
    static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// One process's view of a queue: the mapping and the ring in it.
struct Shared {
    region: Region,
    /// The items file: large items, one 4 GiB window per slot.
    items: Arc<std::fs::File>,
    ring: Mpmc,
    joinable: bool,
    max_item: u64,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queue")
            .field("capacity", &self.ring.capacity())
            .field("len", &self.ring.len())
            .field("joinable", &self.joinable)
            .finish()
    }
}

fn parse_side(data: &[u8]) -> Option<u64> {
    Some(u64::from_le_bytes(data.try_into().ok()?))
}

/// The offset of slot `index`'s window in the items file.
fn window(index: u64) -> std::io::Result<u64> {
    if index >= MAX_SIDE_SLOT {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "queue too large for items over 104 bytes (2^30 slots at most)",
        ));
    }
    Ok(index << WINDOW_SHIFT)
}

/// Frees the pages of an item lost with a dead process.
fn reclaim_pages(items: &std::fs::File, kind: u32, data: &[u8], index: u64) {
    if kind == KIND_SIDE {
        if let (Some(len), Ok(off)) = (parse_side(data), window(index)) {
            // Whole pages (a partial page is only zeroed), never past the window.
            let span = len.next_multiple_of(1 << 16).min(1 << WINDOW_SHIFT);
            let _ = sys::punch_hole(items.as_fd(), off, span);
        }
    }
}

/// A failed put, before it is mapped to the caller's error type.
enum PutErr {
    Full,
    Timeout,
    Closed,
    TooLarge(u64, u64),
    Codec(String),
    Io(std::io::Error),
}

/// A failed get, before it is mapped to the caller's error type.
enum GetErr {
    Empty,
    Timeout,
    Closed,
    Protocol(ProtocolError),
    Codec(String),
    Io(std::io::Error),
}

/// What the consumer took out of a slot while it owned it. Decoding waits until the
/// slot is released: `T`'s `Deserialize` is user code, and a panic in it must not leave
/// a slot held by a live process.
enum Taken {
    Inline([u8; INLINE], usize),
    Side(std::io::Result<Vec<u8>>),
    Bad(ProtocolError),
}

impl Shared {
    fn create(capacity: usize, joinable: bool) -> Result<Shared> {
        let cap = capacity as u64;
        if cap > mpmc::MAX_CAPACITY {
            // Checked before the size arithmetic: `memory_size` must not overflow.
            return Err(Error::CapacityTooLarge {
                what: "queue",
                requested: cap
                    .saturating_mul(mpmc::SLOT_SIZE as u64)
                    .saturating_add(Mpmc::memory_size(0) as u64),
                limit: Mpmc::memory_size(mpmc::MAX_CAPACITY) as u64,
                bound: crate::error::SizeLimit::Maximum,
            });
        }
        if !Mpmc::valid_capacity(cap) {
            return Err(Error::InvalidState(
                "queue capacity must be between 1 and 2^32 items",
            ));
        }
        register_process();
        let params = [
            cap,
            mpmc::SLOT_SIZE as u64,
            u64::from(joinable),
            DEFAULT_MAX_ITEM,
        ];
        let region = Region::create(Kind::Queue, Mpmc::memory_size(cap), params)?;
        let items = std::fs::File::from(sys::memfd_create(c"shmproc-queue-items")?);
        let s = Shared::from_region(region, items)?;
        s.ring.init(joinable);
        Ok(s)
    }

    fn from_region(region: Region, items: std::fs::File) -> Result<Shared> {
        let [cap, slot, joinable, max_item] = region.params();
        if slot != mpmc::SLOT_SIZE as u64 || joinable > 1 {
            return Err(RegionError::Corrupt.into());
        }
        let mut ring = mpmc::ring_in_region(&region, 0, cap)?;
        let items = Arc::new(items);
        let for_hook = items.clone();
        ring.set_reclaim_hook(Arc::new(move |kind, data, index| {
            reclaim_pages(&for_hook, kind, data, index)
        }));
        Ok(Shared {
            region,
            items,
            ring,
            joinable: joinable == 1,
            max_item,
        })
    }

    fn claim_and_abandon(&self, as_consumer: bool) -> bool {
        if self.joinable && !as_consumer {
            self.ring.task_add();
        }
        self.ring.claim_and_abandon(mpmc::me(), as_consumer)
    }

    fn put_value<T: Serialize + ?Sized>(
        &self,
        item: &T,
        deadline: Option<Instant>,
        nonblocking: bool,
    ) -> std::result::Result<(), PutErr> {
        // Small items (the common case) encode on the stack, straight to slot size.
        let mut small = [0u8; INLINE];
        match codec::encode_to_slice(item, &mut small) {
            Ok(Some(n)) => return self.put_bytes(&small[..n], deadline, nonblocking),
            Ok(None) => {}
            Err(e) => return Err(PutErr::Codec(crate::Error::Codec(e).to_string())),
        }
        SCRATCH.with(|s| {
            let mut buf = s
                .try_borrow_mut()
                .map(|mut b| std::mem::take(&mut *b))
                .unwrap_or_default();
            buf.clear();
            let res = match codec::encode_into(item, &mut buf) {
                Ok(()) => self.put_bytes(&buf, deadline, nonblocking),
                Err(e) => Err(PutErr::Codec(e.to_string())),
            };
            if buf.capacity() <= 1 << 16 {
                if let Ok(mut b) = s.try_borrow_mut() {
                    *b = buf;
                }
            }
            res
        })
    }

    fn put_bytes(
        &self,
        bytes: &[u8],
        deadline: Option<Instant>,
        nonblocking: bool,
    ) -> std::result::Result<(), PutErr> {
        if bytes.len() as u64 > self.max_item {
            return Err(PutErr::TooLarge(bytes.len() as u64, self.max_item));
        }
        if self.joinable {
            self.ring.task_add();
        }
        let res = if bytes.len() <= INLINE {
            self.ring.put(
                mpmc::me(),
                KIND_INLINE,
                bytes,
                deadline,
                &mut |_| Ok(()),
                nonblocking,
            )
        } else {
            self.put_side(bytes, deadline, nonblocking)
        };
        if res.is_err() && self.joinable {
            let _ = self.ring.task_done();
        }
        res.map_err(|f| match f {
            PutFail::Full => PutErr::Full,
            PutFail::Timeout => PutErr::Timeout,
            PutFail::Closed => PutErr::Closed,
            PutFail::Failed(e) => PutErr::Io(e),
        })
    }

    fn put_side(
        &self,
        bytes: &[u8],
        deadline: Option<Instant>,
        nonblocking: bool,
    ) -> std::result::Result<(), PutFail> {
        let len = bytes.len() as u64;
        if self.ring.is_closed() {
            return Err(PutFail::Closed);
        }
        if nonblocking && self.ring.len() >= self.ring.capacity() {
            return Err(PutFail::Full);
        }
        let desc = len.to_le_bytes();
        let items = &self.items;
        self.ring.put(
            mpmc::me(),
            KIND_SIDE,
            &desc,
            deadline,
            // Written while this process holds the slot, in the slot's own window.
            &mut |index| items.write_all_at(bytes, window(index)?),
            nonblocking,
        )
    }

    fn get_value<T: DeserializeOwned>(
        &self,
        deadline: Option<Instant>,
        nonblocking: bool,
    ) -> std::result::Result<T, GetErr> {
        let max = self.max_item;
        let taken = self
            .ring
            .get(
                mpmc::me(),
                deadline,
                &mut |kind, bytes, index| match kind {
                    KIND_INLINE => {
                        let mut copy = [0u8; INLINE];
                        copy[..bytes.len()].copy_from_slice(bytes);
                        Taken::Inline(copy, bytes.len())
                    }
                    KIND_SIDE => match parse_side(bytes) {
                        Some(len) if len > max => {
                            reclaim_pages(&self.items, kind, bytes, index);
                            Taken::Bad(ProtocolError::TooLarge { len, max })
                        }
                        Some(len) => {
                            let read = || -> std::io::Result<Vec<u8>> {
                                let off = window(index)?;
                                let n = usize::try_from(len).map_err(|_| {
                                    std::io::Error::from(std::io::ErrorKind::InvalidData)
                                })?;
                                let mut buf = vec![0u8; n];
                                self.items.read_exact_at(&mut buf, off)?;
                                Ok(buf)
                            };
                            let res = read();
                            reclaim_pages(&self.items, kind, bytes, index);
                            Taken::Side(res)
                        }
                        None => Taken::Bad(ProtocolError::BadRecord),
                    },
                    _ => Taken::Bad(ProtocolError::BadRecord),
                },
                nonblocking,
            )
            .map_err(|f| match f {
                GetFail::Empty => GetErr::Empty,
                GetFail::Timeout => GetErr::Timeout,
                GetFail::Closed => GetErr::Closed,
                GetFail::Protocol(p) => GetErr::Protocol(p),
            })?;
        match taken {
            Taken::Inline(bytes, len) => {
                codec::decode::<T>(&bytes[..len]).map_err(|e| GetErr::Codec(e.to_string()))
            }
            Taken::Bad(p) => Err(GetErr::Protocol(p)),
            Taken::Side(bytes) => {
                let bytes = bytes.map_err(GetErr::Io)?;
                codec::decode::<T>(&bytes).map_err(|e| GetErr::Codec(e.to_string()))
            }
        }
    }
}

fn put_error(e: PutErr) -> Error {
    match e {
        PutErr::Full | PutErr::Timeout => Error::Timeout,
        PutErr::Closed => Error::Closed,
        PutErr::TooLarge(len, max) => Error::TooLarge { len, max },
        PutErr::Codec(e) => Error::Codec(e),
        PutErr::Io(e) => Error::Io(e),
    }
}

fn get_error(e: GetErr) -> Error {
    match e {
        GetErr::Empty | GetErr::Timeout => Error::Timeout,
        GetErr::Closed => Error::Closed,
        GetErr::Protocol(p) => Error::Protocol(p),
        GetErr::Codec(e) => Error::Codec(e),
        GetErr::Io(e) => Error::Io(e),
    }
}

/// The methods `Queue` and `JoinableQueue` share.
macro_rules! queue_methods {
    () => {
        /// Puts an item, blocking while the queue is full. The item is visible to every
        /// consumer when this returns.
        ///
        /// # Errors
        /// `Closed` after [`close`](Self::close); `TooLarge` over the item limit;
        /// `Codec` when `T`'s `Serialize` fails; `Io` when a large item cannot be
        /// written to the items file (no memory left).
        pub fn put(&self, item: &T) -> Result<()> {
            self.shared.put_value(item, None, false).map_err(put_error)
        }

        /// Puts an item, waiting at most `timeout` for room.
        ///
        /// # Errors
        /// `Timeout` when the queue stayed full, or as [`put`](Self::put).
        pub fn put_timeout(&self, item: &T, timeout: Duration) -> Result<()> {
            self.shared
                .put_value(item, deadline_after(timeout), false)
                .map_err(put_error)
        }

        /// Puts an item if there is room now.
        ///
        /// # Errors
        /// `Full` when there is not (nothing is put), `Closed` after
        /// [`close`](Self::close), or the other failures of [`put`](Self::put).
        pub fn try_put(&self, item: &T) -> std::result::Result<(), TryPutError> {
            self.shared
                .put_value(item, Some(Instant::now()), true)
                .map_err(|e| match e {
                    PutErr::Full | PutErr::Timeout => TryPutError::Full,
                    PutErr::Closed => TryPutError::Closed,
                    PutErr::TooLarge(..) => TryPutError::TooLarge,
                    PutErr::Codec(e) => TryPutError::Codec(e),
                    PutErr::Io(_) => TryPutError::Io,
                })
        }

        /// Takes an item, blocking while the queue is empty.
        ///
        /// # Errors
        /// `Closed` once the queue is closed and drained; `Codec` when the item does
        /// not decode as `T`, `Protocol` when it is corrupt (either way it is consumed);
        /// `Io` when a large item cannot be read from the items file.
        pub fn get(&self) -> Result<T> {
            self.shared.get_value(None, false).map_err(get_error)
        }

        /// Takes an item, waiting at most `timeout`.
        ///
        /// # Errors
        /// `Timeout` when none came, or as [`get`](Self::get).
        pub fn get_timeout(&self, timeout: Duration) -> Result<T> {
            self.shared
                .get_value(deadline_after(timeout), false)
                .map_err(get_error)
        }

        /// Takes an item if one is ready now.
        ///
        /// # Errors
        /// `Empty` when none is, `Closed` once closed and drained, or the other
        /// failures of [`get`](Self::get).
        pub fn try_get(&self) -> std::result::Result<T, TryGetError> {
            self.shared
                .get_value(Some(Instant::now()), true)
                .map_err(|e| match e {
                    GetErr::Empty | GetErr::Timeout => TryGetError::Empty,
                    GetErr::Closed => TryGetError::Closed,
                    GetErr::Protocol(_) => TryGetError::Protocol,
                    GetErr::Codec(_) => TryGetError::Codec,
                    GetErr::Io(_) => TryGetError::Io,
                })
        }

        /// Number of items in the queue, like Python's `qsize()`: exact when nobody is
        /// in the middle of a put or get.
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

        /// Closes the queue for every handle in every process: puts fail with
        /// `Closed` from now on, and gets fail with `Closed` once the items already in
        /// the queue are taken. Blocked puts and gets wake up.
        pub fn close(&self) {
            self.shared.ring.close();
        }

        /// Whether the queue was closed.
        pub fn is_closed(&self) -> bool {
            self.shared.ring.is_closed()
        }
    };
}

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

impl<T: Serialize + DeserializeOwned> Queue<T> {
    /// A queue of [`DEFAULT_QUEUE_CAPACITY`](crate::channel::DEFAULT_QUEUE_CAPACITY) (32,768) items.
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
        Ok(Queue {
            shared: Arc::new(Shared::create(items, false)?),
            _t: PhantomData,
        })
    }

    queue_methods!();

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
    shared: Arc<Shared>,
    _t: PhantomData<fn(&T) -> T>,
}

impl<T: Serialize + DeserializeOwned> JoinableQueue<T> {
    /// A joinable queue of [`DEFAULT_QUEUE_CAPACITY`](crate::channel::DEFAULT_QUEUE_CAPACITY) (32,768) items.
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
            shared: Arc::new(Shared::create(items, true)?),
            _t: PhantomData,
        })
    }

    queue_methods!();

    /// Test hook: as [`Queue::__claim_and_abandon`]. Not part of the API.
    #[doc(hidden)]
    pub fn __claim_and_abandon(&self, as_consumer: bool) -> bool {
        self.shared.claim_and_abandon(as_consumer)
    }

    /// Marks one item taken with `get` as processed.
    ///
    /// # Errors
    /// `InvalidState` when called more times than items were put.
    pub fn task_done(&self) -> Result<()> {
        self.shared
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
        while !self.shared.ring.join(None) {}
        Ok(())
    }

    /// Waits at most `timeout` for every item to be marked done.
    ///
    /// # Errors
    /// `Timeout` when tasks are still unfinished.
    pub fn join_timeout(&self, timeout: Duration) -> Result<()> {
        if self.shared.ring.join(deadline_after(timeout)) {
            Ok(())
        } else {
            Err(Error::Timeout)
        }
    }
}

macro_rules! handle_impls {
    ($ty:ident, $joinable:expr) => {
        impl<T> Clone for $ty<T> {
            fn clone(&self) -> Self {
                $ty {
                    shared: self.shared.clone(),
                    _t: PhantomData,
                }
            }
        }

        impl<T> std::fmt::Debug for $ty<T> {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                self.shared.fmt(f)
            }
        }

        impl<T> Serialize for $ty<T> {
            fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
                use serde::ser::Error as _;
                let region = handoff::pass_fd(self.shared.region.fd())
                    .map_err(|e| S::Error::custom(e.to_string()))?;
                let items = handoff::pass_fd(self.shared.items.as_fd())
                    .map_err(|e| S::Error::custom(e.to_string()))?;
                Wire {
                    region,
                    items,
                    joinable: $joinable,
                }
                .serialize(s)
            }
        }

        impl<'de, T> Deserialize<'de> for $ty<T> {
            fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
                use serde::de::Error as _;
                let w = Wire::deserialize(d)?;
                let shared =
                    open_wire(w, $joinable).map_err(|e| D::Error::custom(e.to_string()))?;
                Ok($ty {
                    shared: Arc::new(shared),
                    _t: PhantomData,
                })
            }
        }
    };
}

/// What a queue handle serializes to when handed to a spawned child.
#[derive(Serialize, Deserialize)]
struct Wire {
    region: i32,
    items: i32,
    joinable: bool,
}

fn open_wire(w: Wire, joinable: bool) -> Result<Shared> {
    if w.joinable != joinable {
        return Err(Error::Handle("handle of another queue type"));
    }
    register_process();
    let region = Region::open_fd(handoff::adopt_fd(w.region)?, Kind::Queue)?;
    let items = std::fs::File::from(handoff::adopt_fd(w.items)?);
    let s = Shared::from_region(region, items)?;
    if s.joinable != joinable {
        return Err(Error::Handle("handle of another queue type"));
    }
    Ok(s)
}

handle_impls!(Queue, false);
handle_impls!(JoinableQueue, true);

#[cfg(test)]
mod tests {
    use super::*;

    /// Bytes of memory the queue's items file holds.
    fn allocated<T>(q: &Queue<T>) -> u64 {
        use std::os::unix::fs::MetadataExt;
        q.shared.items.metadata().unwrap().blocks() * 512
    }

    #[test]
    fn handles_are_send_and_sync() {
        fn check<X: Send + Sync + Clone>() {}
        check::<Queue<String>>();
        check::<JoinableQueue<Vec<u8>>>();
    }

    #[test]
    fn inline_and_side_items_round_trip_in_order() {
        let q = Queue::<Vec<u8>>::with_capacity(8).unwrap();
        let sizes = [0usize, 1, INLINE - 2, INLINE, INLINE + 1, 5000, 1 << 20];
        for (i, &n) in sizes.iter().enumerate() {
            q.put(&vec![i as u8; n]).unwrap();
        }
        assert!(
            allocated(&q) >= 1 << 20,
            "large items live in the items file"
        );
        for (i, &n) in sizes.iter().enumerate() {
            assert_eq!(q.get().unwrap(), vec![i as u8; n]);
        }
        assert_eq!(allocated(&q), 0, "consumed items' pages are freed");
    }

    #[test]
    fn corrupt_slots_are_errors_and_the_queue_goes_on() {
        let q = Queue::<Vec<u8>>::with_capacity(8).unwrap();
        let ring = &q.shared.ring;
        // Unknown kind.
        q.put(&vec![1]).unwrap();
        ring.poke_meta(0, (77 << 32) | 2);
        assert!(matches!(
            q.get(),
            Err(Error::Protocol(ProtocolError::BadRecord))
        ));
        // Length beyond the slot.
        q.put(&vec![2]).unwrap();
        ring.poke_meta(1, (u64::from(KIND_INLINE) << 32) | 4096);
        assert_eq!(q.try_get(), Err(TryGetError::Protocol));
        // A large item whose descriptor claims a shorter length: a codec error, and its
        // pages are freed all the same.
        q.put(&vec![3; 1000]).unwrap();
        for (i, b) in 5u64.to_le_bytes().iter().enumerate() {
            ring.poke_data(2, i, *b);
        }
        assert!(matches!(q.get(), Err(Error::Codec(_))));
        assert_eq!(allocated(&q), 0);
        // A large item whose descriptor claims more than the limit: refused, pages freed.
        q.put(&vec![4; 1000]).unwrap();
        ring.poke_data(3, 7, 0x01);
        assert!(matches!(
            q.get(),
            Err(Error::Protocol(ProtocolError::TooLarge { .. }))
        ));
        assert_eq!(allocated(&q), 0);
        // Bytes that are not a T.
        q.put(&vec![5]).unwrap();
        ring.poke_data(4, 0, 0xFF);
        assert!(matches!(q.get(), Err(Error::Codec(_))));
        q.put(&vec![6]).unwrap();
        assert_eq!(q.get().unwrap(), vec![6]);
    }

    #[test]
    fn zero_capacity_is_an_error() {
        assert!(matches!(
            Queue::<u8>::with_capacity(0),
            Err(Error::InvalidState(_))
        ));
    }

    #[test]
    fn serializing_outside_a_handoff_is_a_handle_error() {
        let q = Queue::<u8>::new().unwrap();
        assert!(codec::encode(&q).is_err());
    }

    #[test]
    fn task_done_too_often_is_an_error() {
        let q = JoinableQueue::<u8>::with_capacity(1).unwrap();
        assert!(q.task_done().is_err());
        q.put(&1).unwrap();
        assert!(matches!(
            q.join_timeout(Duration::from_millis(10)),
            Err(Error::Timeout)
        ));
        q.get().unwrap();
        q.task_done().unwrap();
        q.join().unwrap();
    }
}
