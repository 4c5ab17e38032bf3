//! `pipe()` (simplex) and `duplex()`: Python's `Pipe`, on SPSC rings in one region.
//!
//! # Disconnection that survives `kill -9`
//!
//! Each side of a channel owns a tiny OS pipe as its *presence*: every process holding
//! an end of that side keeps a write end of it (its token); the other side keeps the
//! read end (its watch). When the last token closes — the end dropped, or its process
//! killed — the kernel reports POLLHUP on the watch. The watch is consulted only before
//! parking and on the writer's rare checks below, never on the hot path.
//!
//! # A writer notices a reader that is gone
//!
//! Before each send the writer compares the ring's reader-drop counter with the count it
//! last saw (one cached load) and counts the send against a credit (a local counter).
//! It asks the kernel when a reader end was dropped, when the ring is full (a `try_send`
//! at most every 100 µs), and when [`SENDS_PER_CHECK`] sends have passed and the
//! reader's `head` has not moved since the last such look (a reader that hands space
//! back is alive, so a pipe whose reader keeps up makes no system call). A reader that
//! dies without dropping its end (SIGKILL) is therefore noticed within
//! [`DEAD_READER_SENDS`] (1024) sends, or as soon as the ring is full.
//!
//! Once an end knows the other side is gone (a send, a receive or a poll saw it), it
//! stays so: every later send through it, and through its clones in this process, fails
//! with `Disconnected` at once, and a receive reports it without asking the kernel again.
//!
//! # Fork hygiene
//!
//! Ends register with the hand-off registry: a child forked by [`crate::Process`]
//! releases the tokens of every end it was not handed, so an end it merely inherited
//! does not keep the channel open (the seed closes `p_input` by hand in the child;
//! here it happens by itself).

use std::cell::RefCell;
use std::marker::PhantomData;
use std::os::fd::{BorrowedFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicI32, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{de::DeserializeOwned, Deserialize, Deserializer, Serialize, Serializer};

use crate::codec;
use crate::error::{
    Error, ProtocolError, RecvError, RecvTimeoutError, Result, SendError, SendTimeoutError,
    TryRecvError, TrySendError,
};
use crate::region::{Kind, Region};
use crate::ring::spsc::{record_size, RecKind, Spsc, MIN_WINDOW, REC_HDR, TINY_MAX};
use crate::sync::handoff::{self, Inherited};
use crate::sync::waiter::{register_process, Wait};
use crate::sys::{self, deadline_after, PeerState};

/// Default ring capacity in bytes (per direction).
pub const DEFAULT_CAPACITY: usize = 1 << 20;
/// Default largest message: 4 GiB.
pub const DEFAULT_MAX_MESSAGE: u64 = 4 << 30;
const MIN_CAPACITY: usize = 256;
/// Largest ring capacity in bytes (per direction), as `Spsc::valid_capacity` allows.
const MAX_CAPACITY: u64 = 1 << 40;

/// Namespace for [`Pipe::builder`].
#[derive(Debug)]
pub struct Pipe(());

impl Pipe {
    /// A builder for a pipe with a chosen capacity and message limit.
    ///
    /// ```
    /// let (tx, rx) = shmproc::Pipe::builder().capacity(4096).build::<u32>()?;
    /// tx.send(&7)?;
    /// assert_eq!(rx.recv()?, 7);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn builder() -> PipeBuilder {
        PipeBuilder {
            capacity: DEFAULT_CAPACITY,
            max_message: DEFAULT_MAX_MESSAGE,
        }
    }
}

/// Configures a pipe; by value, like `std::thread::Builder`.
#[derive(Debug, Clone, Copy)]
pub struct PipeBuilder {
    capacity: usize,
    max_message: u64,
}

impl PipeBuilder {
    /// Ring size in bytes (rounded up to a power of two, at least 256, at most 2^40).
    /// Messages larger than a quarter of it are streamed through it in pieces. Default
    /// 1 MiB. `build` fails with [`CapacityTooLarge`](Error::CapacityTooLarge) over 2^40,
    /// or when the rings need more than half of the memory left (see
    /// [`SizeLimit`](crate::SizeLimit)), before any of it is reserved.
    pub fn capacity(mut self, bytes: usize) -> Self {
        self.capacity = bytes;
        self
    }

    /// Largest message, in encoded bytes (default 4 GiB). A larger message is an error
    /// at send; a record header claiming more is a protocol error at recv.
    pub fn max_message(mut self, bytes: usize) -> Self {
        self.max_message = bytes as u64;
        self
    }

    fn ring_capacity(&self) -> Result<u64> {
        // Rounding up must not overflow (`1 << 63` and up): over the maximum either way.
        let cap = self
            .capacity
            .max(MIN_CAPACITY)
            .checked_next_power_of_two()
            .map_or(u64::MAX, |c| c as u64);
        if !Spsc::valid_capacity(cap) {
            return Err(Error::CapacityTooLarge {
                what: "pipe capacity",
                requested: self.capacity as u64,
                limit: MAX_CAPACITY,
                bound: crate::error::SizeLimit::Maximum,
            });
        }
        Ok(cap)
    }

    /// Creates a simplex pipe: `(sender, receiver)`.
    pub fn build<T: Serialize + DeserializeOwned>(self) -> Result<(Sender<T>, Receiver<T>)> {
        let cap = self.ring_capacity()?;
        // No fork between creating the presence pipes and registering both ends.
        let _creating = handoff::creating();
        let (a, b) = Shared::create(Kind::Pipe, 1, cap, self.max_message)?;
        let a = Arc::new(a);
        a.register();
        Ok((
            Sender {
                end: a,
                _t: PhantomData,
            },
            Receiver::new(Arc::new(b)),
        ))
    }

    /// Creates a duplex pipe: two connected [`Connection`]s.
    pub fn build_duplex<T: Serialize + DeserializeOwned>(
        self,
    ) -> Result<(Connection<T>, Connection<T>)> {
        let cap = self.ring_capacity()?;
        // No fork between creating the presence pipes and registering both ends.
        let _creating = handoff::creating();
        let (a, b) = Shared::create(Kind::Duplex, 2, cap, self.max_message)?;
        Ok((Connection::new(Arc::new(a)), Connection::new(Arc::new(b))))
    }
}

/// A simplex pipe with default settings: `send` on the `Sender`, `recv` on the
/// `Receiver`, in any processes the ends are handed to.
///
/// ```
/// let (tx, rx) = shmproc::pipe::<String>()?;
/// tx.send(&"hello".to_string())?;
/// drop(tx);
/// assert_eq!(rx.recv()?, "hello");
/// assert!(rx.recv().is_err()); // every sender is gone: Disconnected
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn pipe<T: Serialize + DeserializeOwned>() -> Result<(Sender<T>, Receiver<T>)> {
    Pipe::builder().build()
}

/// A duplex pipe (Python's default `Pipe()`): each `Connection` sends to the other.
///
/// ```
/// let (a, b) = shmproc::duplex::<u64>()?;
/// a.send(&1)?;
/// b.send(&(b.recv()? + 1))?;
/// assert_eq!(a.recv()?, 2);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn duplex<T: Serialize + DeserializeOwned>() -> Result<(Connection<T>, Connection<T>)> {
    Pipe::builder().build_duplex()
}

/// One process's share of one side of a channel: the mapping, the ring(s) it writes
/// and reads, and its presence descriptors.
pub(super) struct Shared {
    /// What `named` and `wait` add: the socket of a connection made by name, the poke
    /// registration of the ring this end writes. First, so it goes before the mapping.
    pub(super) hooks: super::named::EndHooks,
    region: Region,
    /// Which side: 0 or 1. Side 0 writes ring 0 and reads ring 1 (when there are two).
    side: u8,
    tx: Option<Spsc>,
    rx: Option<Spsc>,
    max_message: u64,
    /// This process's presence descriptors (owned by the hand-off registry too).
    presence: Arc<Presence>,
    /// What the writer's per-send check compares the ring's reader-drop counter with:
    /// the count seen at the last check, or [`PEER_GONE`] (never a count) once this
    /// process knows the other side is gone. [`Shared::peer_gone`] sets `PEER_GONE`;
    /// anything else changes it only by compare-exchange from a count, so `PEER_GONE`
    /// is never undone.
    send_gate: AtomicU64,
    /// Writer: sends left before the next look at the reader ([`SENDS_PER_CHECK`]).
    /// A load and a store, not an atomic decrement (which would cost a locked
    /// instruction per send): threads sending through one end at the same time may
    /// lose a decrement now and then, which only puts the next look off a little.
    send_credit: AtomicU32,
    /// Writer: the reader's `head` at the last look.
    seen_head: AtomicU64,
    /// Writer: when a full `try_send` last asked the kernel ([`clock_ns`]), or [`NEVER`].
    full_checked: AtomicU64,
    reg_id: std::sync::OnceLock<u64>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("side", &self.side)
            .field("region", &self.region)
            .finish()
    }
}

impl Shared {
    fn create(kind: Kind, rings: u64, cap: u64, max_message: u64) -> Result<(Shared, Shared)> {
        register_process();
        let payload = Spsc::memory_size(cap) * rings as usize;
        let region = Region::create(kind, payload, [cap, rings, max_message, 0])?;
        let region_b = Region::open_fd(sys::dup_cloexec(region.fd())?, kind)?;
        let (p0_r, p0_w) = sys::socket::pipe_nonblocking()?; // side 0's presence
        let (p1_r, p1_w) = sys::socket::pipe_nonblocking()?; // side 1's presence
        let a = Shared::from_parts(region, 0, p0_w, p1_r)?;
        let b = Shared::from_parts(region_b, 1, p1_w, p0_r)?;
        Ok((a, b))
    }

    fn from_parts(region: Region, side: u8, token: OwnedFd, watch: OwnedFd) -> Result<Shared> {
        let [cap, rings, max_message, _] = region.params();
        if !Spsc::valid_capacity(cap) || !(1..=2).contains(&rings) || side > 1 {
            return Err(crate::error::RegionError::Corrupt.into());
        }
        let ring_size = Spsc::memory_size(cap);
        if ring_size
            .checked_mul(rings as usize)
            .is_none_or(|n| n > region.payload_len())
        {
            return Err(crate::error::RegionError::Corrupt.into());
        }
        let ring_at =
            |i: u64| crate::ring::spsc::ring_in_region(&region, i as usize * ring_size, cap);
        let (tx, rx) = match (rings, side) {
            (1, 0) => (Some(ring_at(0)), None),
            (1, _) => (None, Some(ring_at(0))),
            (_, 0) => (Some(ring_at(0)), Some(ring_at(1))),
            _ => (Some(ring_at(1)), Some(ring_at(0))),
        };
        let (tx, rx) = (tx.transpose()?, rx.transpose()?);
        let seen = tx.as_ref().map_or(0, |t| t.reader_drops());
        let head = tx.as_ref().map_or(0, |t| t.reader_head());
        let presence = Arc::new(Presence {
            token: AtomicI32::new(into_raw(token)),
            watch: AtomicI32::new(into_raw(watch)),
        });
        Ok(Shared {
            hooks: super::named::EndHooks::new(tx.as_ref().map(|t| {
                let poke: Arc<dyn crate::sync::poke::Poke> = presence.clone();
                (t.readable_waiter(), poke)
            })),
            region,
            side,
            tx,
            rx,
            max_message,
            presence,
            send_gate: AtomicU64::new(u64::from(seen)),
            send_credit: AtomicU32::new(SENDS_PER_CHECK),
            seen_head: AtomicU64::new(head),
            full_checked: AtomicU64::new(NEVER),
            reg_id: std::sync::OnceLock::new(),
        })
    }

    /// Registers for fork hygiene (once).
    fn register(self: &Arc<Self>) {
        if self.reg_id.get().is_none() {
            let presence: Arc<dyn Inherited> = self.presence.clone();
            let _ = self.reg_id.set(handoff::register(presence));
        }
    }

    fn reg_id(&self) -> u64 {
        self.reg_id.get().copied().unwrap_or(0)
    }

    /// Whether every end of the other side is gone. A released watch (an end this
    /// forked child was not handed) counts as gone. Sticky: once it has said so, it says
    /// so at once, and every send through this end fails (see [`Shared::admit`]).
    pub(super) fn peer_gone(&self) -> bool {
        if self.send_gate.load(Ordering::Relaxed) == PEER_GONE {
            return true;
        }
        let fd = self.presence.watch.load(Ordering::Acquire);
        let gone = match sys::borrow_raw_checked(fd) {
            Ok(b) => sys::peer_state(b) == PeerState::Gone,
            Err(_) => true,
        };
        if gone {
            // No end of the other side exists in any process (the kernel closed its last
            // token), so none can come back: this never needs undoing.
            self.send_gate.store(PEER_GONE, Ordering::Relaxed);
        }
        gone
    }

    /// The writer's check before `sends` messages: passes with three loads, a compare
    /// and a decrement unless a reader end was dropped since the last look, the credit
    /// of [`SENDS_PER_CHECK`] sends is used up, or the other side is known to be gone
    /// ([`Shared::admit_slow`]).
    #[inline(always)]
    fn admit(&self, tx: &Spsc, sends: u32) -> Result<(), SendFail> {
        let credit = self.send_credit.load(Ordering::Relaxed);
        if self.send_gate.load(Ordering::Relaxed) == u64::from(tx.reader_drops()) {
            if let Some(left) = credit.checked_sub(sends) {
                self.send_credit.store(left, Ordering::Relaxed);
                return Ok(());
            }
        }
        self.admit_slow(tx, sends)
    }

    /// [`Shared::admit`]'s look at the reader: `Disconnected` when the other side is
    /// known to be gone; otherwise asks the kernel when a reader end was dropped since
    /// the last look, or when the reader's `head` has not moved since then (a reader
    /// handing space back is alive), and renews the credit.
    #[cold]
    #[inline(never)]
    fn admit_slow(&self, tx: &Spsc, sends: u32) -> Result<(), SendFail> {
        let gate = self.send_gate.load(Ordering::Relaxed);
        if gate == PEER_GONE {
            return Err(SendFail::Disconnected);
        }
        let drops = u64::from(tx.reader_drops());
        let head = tx.reader_head();
        let idle = head == self.seen_head.load(Ordering::Relaxed);
        self.seen_head.store(head, Ordering::Relaxed);
        if (drops != gate || idle) && self.peer_gone() {
            return Err(SendFail::Disconnected);
        }
        // Fails when someone stored PEER_GONE meanwhile, or when another thread's look
        // stored a newer count first.
        if let Err(now) =
            self.send_gate
                .compare_exchange(gate, drops, Ordering::Relaxed, Ordering::Relaxed)
        {
            if now == PEER_GONE {
                return Err(SendFail::Disconnected);
            }
        }
        self.send_credit
            .store(SENDS_PER_CHECK.saturating_sub(sends), Ordering::Relaxed);
        Ok(())
    }

    /// A send that could not finish for want of room (`Full`) or time (`Timeout`):
    /// `Disconnected` instead when the reader side is gone (a full ring whose reader
    /// died stays full for ever). For `Full`, the kernel is asked at most once every
    /// [`FULL_CHECK_EVERY`] (a `try_send` spinning on a full ring makes no system call
    /// per call); in between, only what this end already knows counts.
    #[cold]
    fn unsent(&self, f: SendFail) -> SendFail {
        let gone = match f {
            SendFail::Full => {
                let now = clock_ns();
                let last = self.full_checked.load(Ordering::Relaxed);
                if last == NEVER || now.wrapping_sub(last) >= FULL_CHECK_EVERY.as_nanos() as u64 {
                    self.full_checked.store(now, Ordering::Relaxed);
                    self.peer_gone()
                } else {
                    self.send_gate.load(Ordering::Relaxed) == PEER_GONE
                }
            }
            SendFail::Timeout => self.peer_gone(),
            _ => false,
        };
        if gone {
            SendFail::Disconnected
        } else {
            f
        }
    }

    /// A failed wait of a send, as the caller's failure.
    #[cold]
    fn wait_fail(&self, w: Wait, block: Block) -> SendFail {
        match (w, block) {
            (Wait::Aborted, _) => SendFail::Disconnected,
            (_, Block::No) => self.unsent(SendFail::Full),
            _ => self.unsent(SendFail::Timeout),
        }
    }
}

/// [`Shared::send_gate`] once the other side is known to be gone.
const PEER_GONE: u64 = u64::MAX;

/// How often a `try_send` that finds the ring full asks the kernel whether the reader
/// is gone ([`Shared::unsent`]): a reader that died is reported by the first full
/// `try_send` this long after its death, and by every one after that.
const FULL_CHECK_EVERY: Duration = Duration::from_micros(100);

/// [`Shared::full_checked`] before the first look.
const NEVER: u64 = u64::MAX;

/// Nanoseconds on a monotonic clock (from the first call in this process tree; a
/// forked child goes on with the parent's origin). A vDSO read, not a system call.
fn clock_ns() -> u64 {
    static ORIGIN: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    ORIGIN.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

/// Sends between two looks of a writer at its reader ([`Shared::admit`]).
const SENDS_PER_CHECK: u32 = 512;

/// A reader that dies without dropping its end (SIGKILL) is noticed by a writer within
/// this many sends: once the reader's process has exited, at most
/// `DEAD_READER_SENDS - 1` sends through an end return `Ok` (a `send_all` batch counts as
/// its length; each further thread sending through the same end at the same time may
/// stretch this by up to half as many again), and every send after the first
/// `Disconnected` fails too. A dropped reader end, and an end whose receive already saw
/// the other side gone, are noticed at once; a full ring at once by a blocking send, and
/// by a `try_send` 100 µs after the reader's death at the latest.
pub const DEAD_READER_SENDS: u32 = 2 * SENDS_PER_CHECK;

fn into_raw(fd: OwnedFd) -> RawFd {
    std::os::fd::IntoRawFd::into_raw_fd(fd)
}

/// One process's presence on a channel: the write end of its side's presence pipe (its
/// token) and the read end of the other side's (its watch). -1 once released.
struct Presence {
    token: AtomicI32,
    watch: AtomicI32,
}

impl Inherited for Presence {
    fn release_in_child(&self) {
        sys::close_raw(self.token.swap(-1, Ordering::AcqRel));
        sys::close_raw(self.watch.swap(-1, Ordering::AcqRel));
    }
}

impl Drop for Presence {
    fn drop(&mut self) {
        self.release_in_child();
    }
}

/// A writer wakes a reader's `wait()` by writing a byte into its token: the reader polls
/// the read end (its watch) anyway, for hang-up. See `sync::poke`.
impl crate::sync::poke::Poke for Presence {
    fn poke(&self) {
        sys::socket::poke(self.token.load(Ordering::Acquire));
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        match self.reg_id.get() {
            // Closes the descriptors under the registry lock (no fork in between).
            Some(id) => handoff::unregister_and_release(*id),
            None => self.presence.release_in_child(),
        }
        if let Some(tx) = &self.tx {
            tx.wake_reader();
        }
        if let Some(rx) = &self.rx {
            rx.note_reader_drop();
            rx.wake_writer();
        }
    }
}

/// What a handle serializes to when handed to a spawned child.
#[derive(Serialize, Deserialize)]
struct Wire {
    region: i32,
    token: i32,
    watch: i32,
    side: u8,
    kind: u32,
}

impl Shared {
    fn to_wire(&self) -> Result<Wire> {
        let borrow = |fd: &AtomicI32| -> Result<BorrowedFd<'_>> {
            sys::borrow_raw_checked(fd.load(Ordering::Acquire)).map_err(|_| {
                Error::Handle("this end was released in a forked child and cannot be passed on")
            })
        };
        Ok(Wire {
            region: handoff::pass_fd(self.region.fd())?,
            token: handoff::pass_fd(borrow(&self.presence.token)?)?,
            watch: handoff::pass_fd(borrow(&self.presence.watch)?)?,
            side: self.side,
            kind: self.region_kind() as u32,
        })
    }

    fn region_kind(&self) -> Kind {
        if self.tx.is_some() && self.rx.is_some() {
            Kind::Duplex
        } else {
            Kind::Pipe
        }
    }

    fn from_wire(w: Wire, expect: Kind) -> Result<Arc<Shared>> {
        if w.kind != expect as u32 {
            return Err(Error::Handle("handle of another type"));
        }
        register_process();
        let _creating = handoff::creating();
        let region = Region::open_fd(handoff::adopt_fd(w.region)?, expect)?;
        let token = handoff::adopt_fd(w.token)?;
        let watch = handoff::adopt_fd(w.watch)?;
        let s = Arc::new(Shared::from_parts(region, w.side, token, watch)?);
        s.register();
        Ok(s)
    }
}

fn ser_shared<S: Serializer>(s: &Shared, ser: S) -> std::result::Result<S::Ok, S::Error> {
    use serde::ser::Error as _;
    s.to_wire()
        .map_err(|e| S::Error::custom(e.to_string()))?
        .serialize(ser)
}

fn de_shared<'de, D: Deserializer<'de>>(
    de: D,
    kind: Kind,
) -> std::result::Result<Arc<Shared>, D::Error> {
    use serde::de::Error as _;
    let w = Wire::deserialize(de)?;
    Shared::from_wire(w, kind).map_err(|e| D::Error::custom(e.to_string()))
}

// ---------------------------------------------------------------------------- sending

/// How a send should wait.
#[derive(Clone, Copy)]
enum Block {
    No,
    Until(Option<Instant>),
}

/// A failed send, before it is mapped to the caller's error type.
enum SendFail {
    Full,
    Timeout,
    Disconnected,
    TooLarge(u64, u64),
    /// Non-blocking only: the message (its length, the largest that could go) can never
    /// be placed at once; a blocking send streams it.
    NeedsStreaming(u64, u64),
    Codec(String),
}

/// The largest message a non-blocking send can place in `tx`: a streamed one needs room
/// for all its pieces (records of [`Spsc::max_record`] bytes) and a record of padding at
/// once, so it may have at most `capacity / max_record - 1` pieces (a whole record is
/// smaller still).
fn try_send_max(tx: &Spsc) -> u64 {
    let max_rec = tx.max_record();
    (tx.capacity() / max_rec - 1) * (max_rec - REC_HDR) - 8
}

thread_local! {
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

impl Shared {
    /// A send that failed: when it failed to encode, on a connection made by name, the
    /// message is encoded again with its handles' descriptors going over the
    /// connection's socket first (see `named`); otherwise the failure stands. Called by
    /// the public send methods on their error path only, so a send that succeeds pays
    /// nothing for it.
    #[cold]
    #[inline(never)]
    fn send_failed<T: Serialize + ?Sized>(
        &self,
        msg: &T,
        block: Block,
        f: SendFail,
    ) -> std::result::Result<(), SendFail> {
        let SendFail::Codec(e) = f else {
            return Err(f);
        };
        let Some(side) = self.hooks.side() else {
            return Err(SendFail::Codec(e));
        };
        let deadline = match block {
            Block::No => Some(Instant::now()),
            Block::Until(d) => d,
        };
        match side.send_descriptors(msg, deadline) {
            Ok(Some(bytes)) => self.send_bytes_impl(&bytes, block),
            Ok(None) => Err(SendFail::Codec(e)),
            Err(Error::Timeout) => Err(match block {
                Block::No => SendFail::Full,
                Block::Until(_) => SendFail::Timeout,
            }),
            Err(Error::Disconnected) => Err(SendFail::Disconnected),
            Err(other) => Err(SendFail::Codec(other.to_string())),
        }
    }

    /// Sends one message: the fast path (encode in place into the ring) inline, the rest
    /// out of line in [`Shared::send_value_general`].
    #[inline(always)]
    fn send_value<T: Serialize + ?Sized>(
        &self,
        msg: &T,
        block: Block,
    ) -> std::result::Result<(), SendFail> {
        let tx = self.tx.as_ref().expect("sending end has a ring to write");
        let deadline = match block {
            Block::No => Some(Instant::now()),
            Block::Until(d) => d,
        };
        self.admit(tx, 1)?;
        let g = tx
            .acquire_writer(deadline, || self.peer_gone())
            .map_err(|w| self.wait_fail(w, block))?;
        // Fastest path: a message of at most 6 bytes, encoded in a register and written
        // with one store (a tiny record).
        match codec::encode_word(msg) {
            Ok(Some((bytes, n))) if n as u64 <= TINY_MAX && n as u64 <= self.max_message => {
                if tx.try_write_tiny(&g, bytes, n as u64) {
                    return Ok(());
                }
            }
            Ok(_) => {}
            Err(e) => return Err(SendFail::Codec(e)),
        }
        // Small messages: encode on the stack, then one copy into the ring.
        let mut small = [0u8; SMALL];
        match codec::encode_to_slice(msg, &mut small) {
            Ok(Some(n)) => {
                if n as u64 > self.max_message {
                    return Err(SendFail::TooLarge(n as u64, self.max_message));
                }
                if tx.try_write_small(&g, &small[..n]) {
                    return Ok(());
                }
                return self.send_locked(tx, &g, &small[..n], block, deadline);
            }
            Ok(None) => {}
            Err(e) => return Err(SendFail::Codec(e)),
        }
        // Larger messages: encode straight into the ring's free space.
        if let Some((off, window)) = tx.reserve(&g, MIN_WINDOW) {
            let max = window.min(tx.max_record()) - REC_HDR;
            let mut sink = tx.sink(&g, off, max);
            match codec::encode_in_place(msg, &mut sink) {
                Ok(Some(n)) => {
                    let n = n as u64;
                    if n > self.max_message {
                        return Err(SendFail::TooLarge(n, self.max_message));
                    }
                    tx.commit_sink(&g, off, RecKind::Msg, sink);
                    return Ok(());
                }
                Ok(None) => {}
                Err(e) => return Err(SendFail::Codec(e)),
            }
        }
        self.send_value_general(tx, &g, msg, block, deadline)
    }

    /// The general path of a send: encode into a buffer, then copy or stream it.
    #[inline(never)]
    fn send_value_general<T: Serialize + ?Sized>(
        &self,
        tx: &Spsc,
        g: &crate::ring::spsc::WriteGuard<'_>,
        msg: &T,
        block: Block,
        deadline: Option<Instant>,
    ) -> std::result::Result<(), SendFail> {
        SCRATCH.with(|s| {
            let mut buf = s
                .try_borrow_mut()
                .map(|mut b| std::mem::take(&mut *b))
                .unwrap_or_default();
            buf.clear();
            let res = match codec::encode_into(msg, &mut buf) {
                Ok(()) => self.send_locked(tx, g, &buf, block, deadline),
                Err(e) => Err(SendFail::Codec(e.to_string())),
            };
            if buf.capacity() <= 1 << 20 {
                if let Ok(mut b) = s.try_borrow_mut() {
                    *b = buf;
                }
            }
            res
        })
    }

    /// Sends every message of `msgs` in order, holding the writer role throughout and
    /// checking for a sleeping reader once per batch (or once per ring-full of it).
    fn send_all_impl<T: Serialize>(&self, msgs: &[T]) -> std::result::Result<(), SendFail> {
        let tx = self.tx.as_ref().expect("sending end has a ring to write");
        if msgs.is_empty() {
            return Ok(());
        }
        self.admit(tx, u32::try_from(msgs.len()).unwrap_or(u32::MAX))?;
        let block = Block::Until(None);
        let g = tx
            .acquire_writer(None, || self.peer_gone())
            .map_err(|w| self.wait_fail(w, block))?;
        let mut tail = tx.batch_tail(&g);
        for msg in msgs {
            let slot = match tx.reserve_at(&g, &mut tail, MIN_WINDOW) {
                Some(s) => Some(s),
                None => {
                    // Full: let the reader see what is written, then wait for room.
                    tx.publish(&g, tail);
                    match tx.wait_writable_at(&g, &mut tail, MIN_WINDOW, None, || self.peer_gone())
                    {
                        Ok(s) => Some(s),
                        Err(w) => return Err(self.wait_fail(w, block)),
                    }
                }
            };
            if let Some((off, window)) = slot {
                // A message of at most 6 bytes: encoded in a register, one store.
                match codec::encode_word(msg) {
                    Ok(Some((bytes, n)))
                        if n as u64 <= TINY_MAX && n as u64 <= self.max_message =>
                    {
                        tx.commit_tiny_at(&g, &mut tail, off, bytes, n as u64);
                        continue;
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tx.publish(&g, tail);
                        return Err(SendFail::Codec(e));
                    }
                }
                let max = window.min(tx.max_record()) - REC_HDR;
                let mut sink = tx.sink(&g, off, max);
                match codec::encode_in_place(msg, &mut sink) {
                    Ok(Some(n)) => {
                        let n = n as u64;
                        if n > self.max_message {
                            tx.publish(&g, tail);
                            return Err(SendFail::TooLarge(n, self.max_message));
                        }
                        tx.commit_sink_at(&g, &mut tail, off, RecKind::Msg, sink);
                        continue;
                    }
                    Ok(None) => {}
                    Err(e) => {
                        tx.publish(&g, tail);
                        return Err(SendFail::Codec(e));
                    }
                }
            }
            // A message larger than the window: publish, then the one-message path.
            tx.publish(&g, tail);
            let mut buf = Vec::new();
            codec::encode_into(msg, &mut buf).map_err(|e| SendFail::Codec(e.to_string()))?;
            self.send_locked(tx, &g, &buf, block, None)?;
            tail = tx.batch_tail(&g);
        }
        tx.publish(&g, tail);
        Ok(())
    }

    fn send_bytes_impl(&self, bytes: &[u8], block: Block) -> std::result::Result<(), SendFail> {
        let tx = self.tx.as_ref().expect("sending end has a ring to write");
        let deadline = match block {
            Block::No => Some(Instant::now()),
            Block::Until(d) => d,
        };
        self.admit(tx, 1)?;
        let g = tx
            .acquire_writer(deadline, || self.peer_gone())
            .map_err(|w| self.wait_fail(w, block))?;
        self.send_locked(tx, &g, bytes, block, deadline)
    }

    /// Writes `bytes` as one message: a single record, or streamed in pieces.
    fn send_locked(
        &self,
        tx: &Spsc,
        g: &crate::ring::spsc::WriteGuard<'_>,
        bytes: &[u8],
        block: Block,
        deadline: Option<Instant>,
    ) -> std::result::Result<(), SendFail> {
        let len = bytes.len() as u64;
        if len > self.max_message {
            return Err(SendFail::TooLarge(len, self.max_message));
        }
        let max_rec = tx.max_record();
        let abort = || self.peer_gone();
        if record_size(len) <= max_rec {
            if let Block::No = block {
                if tx.reserve(g, record_size(len)).is_none() {
                    return Err(self.unsent(SendFail::Full));
                }
            }
            return tx
                .write_record(g, RecKind::Msg, &[bytes], deadline, abort)
                .map_err(|w| self.wait_fail(w, block));
        }
        // Streamed: BEGIN carries the total, then CHUNKs; each piece fills a max record.
        let piece = (max_rec - REC_HDR) as usize;
        if let Block::No = block {
            // A non-blocking send needs room for the whole stream at once: a record per
            // piece and one of padding. Beyond `try_send_max` even an empty ring has not.
            let most = try_send_max(tx);
            if len > most {
                return Err(SendFail::NeedsStreaming(len, most));
            }
            let pieces = (bytes.len() + 8).div_ceil(piece) as u64;
            if tx.free_bytes() < pieces * max_rec + max_rec {
                return Err(self.unsent(SendFail::Full));
            }
        }
        let first = piece - 8;
        let total = len.to_ne_bytes();
        tx.write_record(
            g,
            RecKind::Begin,
            &[&total, &bytes[..first]],
            deadline,
            abort,
        )
        .map_err(|w| self.wait_fail(w, block))?;
        for chunk in bytes[first..].chunks(piece) {
            // Once begun, a non-blocking send finishes the message (bounded by the reader).
            let d = if let Block::No = block {
                None
            } else {
                deadline
            };
            tx.write_record(g, RecKind::Chunk, &[chunk], d, abort)
                .map_err(|w| self.wait_fail(w, block))?;
        }
        Ok(())
    }
}

// -------------------------------------------------------------------------- receiving

/// A receiver's private state: the message being assembled.
#[derive(Default)]
struct RecvState {
    buf: Vec<u8>,
    /// A streamed message in progress: its total length.
    partial: Option<u64>,
    /// Dropping the rest of a stream whose header was refused.
    skipping: bool,
    /// Consecutive `try_recv`s that found the ring empty. Whether the writers are all
    /// gone is a system call (`poll` on the presence pipe), so a busy-polling reader asks
    /// the kernel on the first empty call and then once every [`EMPTY_POLLS_PER_CHECK`].
    empty_polls: u32,
    /// How many looks the last wait for a message took ([`Spsc::wait_readable`]).
    pace: u32,
}

/// How many consecutive empty `try_recv`s pass between two liveness checks. A writer's
/// death is reported by at most this many calls late; a single call after a quiet
/// period always checks.
const EMPTY_POLLS_PER_CHECK: u32 = 64;

enum RecvFail {
    Empty,
    Timeout,
    Disconnected,
    Protocol(ProtocolError),
}

/// Messages of up to this many encoded bytes are received through a copy on the stack
/// (see [`Shared::take_small`]); larger ones through the receiver's buffer.
const SMALL: usize = 64;

impl Shared {
    /// The fast path of every receive: a whole message of at most [`SMALL`] bytes is at
    /// the head of the ring. Copies it into `out`, consumes it, and returns its length;
    /// `None` sends the caller down the general path ([`Shared::recv_raw`]).
    #[inline(always)]
    fn take_small(&self, st: &mut RecvState, out: &mut [u8; SMALL]) -> Option<usize> {
        if self.max_message < SMALL as u64 {
            return None;
        }
        let n = self.rx.as_ref()?.take_small(out)?;
        // As `recv_raw` does for a whole message: an unfinished stream is dropped.
        st.partial = None;
        st.skipping = false;
        st.empty_polls = 0;
        Some(n)
    }

    /// Receives one message into `st.buf`.
    fn recv_raw(&self, st: &mut RecvState, block: Block) -> std::result::Result<(), RecvFail> {
        let rx = self.rx.as_ref().expect("receiving end has a ring to read");
        loop {
            let peeked = rx.peek().map_err(RecvFail::Protocol)?;
            if peeked.is_some() {
                st.empty_polls = 0;
            }
            match peeked {
                Some(rec) => match rec.kind {
                    RecKind::Msg => {
                        st.partial = None;
                        st.skipping = false;
                        st.buf.clear();
                        if rec.len > self.max_message {
                            rx.consume(&rec);
                            return Err(RecvFail::Protocol(ProtocolError::TooLarge {
                                len: rec.len,
                                max: self.max_message,
                            }));
                        }
                        rx.read_into(&rec, 0, rec.len, &mut st.buf);
                        rx.consume(&rec);
                        return Ok(());
                    }
                    RecKind::Begin => {
                        // An unfinished earlier stream (its writer died or gave up) is dropped.
                        st.buf.clear();
                        st.partial = None;
                        let total = rx
                            .read_u64(&rec)
                            .ok_or(RecvFail::Protocol(ProtocolError::BadRecord));
                        let total = match total {
                            Ok(t) => t,
                            Err(e) => {
                                rx.consume(&rec);
                                return Err(e);
                            }
                        };
                        if total > self.max_message {
                            rx.consume(&rec);
                            st.skipping = true;
                            return Err(RecvFail::Protocol(ProtocolError::TooLarge {
                                len: total,
                                max: self.max_message,
                            }));
                        }
                        st.skipping = false;
                        st.buf.reserve(total.min(64 << 20) as usize);
                        rx.read_into(&rec, 8, rec.len - 8, &mut st.buf);
                        rx.consume(&rec);
                        if st.buf.len() as u64 >= total {
                            return self.finish_stream(st, total);
                        }
                        st.partial = Some(total);
                    }
                    RecKind::Chunk => {
                        match st.partial {
                            Some(total) => {
                                rx.read_into(&rec, 0, rec.len, &mut st.buf);
                                rx.consume(&rec);
                                if st.buf.len() as u64 >= total {
                                    return self.finish_stream(st, total);
                                }
                            }
                            // A piece of a refused or abandoned stream.
                            None => rx.consume(&rec),
                        }
                    }
                    RecKind::Pad => unreachable!("peek skips padding"),
                },
                None => {
                    if !rx.counters_sane() {
                        return Err(RecvFail::Protocol(ProtocolError::BadRecord));
                    }
                    let deadline = match block {
                        Block::No => {
                            let check = st.empty_polls % EMPTY_POLLS_PER_CHECK == 0;
                            st.empty_polls = st.empty_polls.wrapping_add(1);
                            return Err(if check && self.peer_gone() && !rx.has_data() {
                                st.partial = None;
                                RecvFail::Disconnected
                            } else {
                                RecvFail::Empty
                            });
                        }
                        Block::Until(d) => d,
                    };
                    // Before each sleep, the counters are checked too: a peer that
                    // scribbles over them while this reader waits does not wake it.
                    let (outcome, looks) = rx.wait_readable(
                        deadline,
                        || self.peer_gone() || !rx.counters_sane(),
                        st.pace,
                    );
                    st.pace = looks;
                    match outcome {
                        Wait::Ready => {}
                        Wait::TimedOut => return Err(RecvFail::Timeout),
                        Wait::Aborted => {
                            if !rx.counters_sane() {
                                return Err(RecvFail::Protocol(ProtocolError::BadRecord));
                            }
                            if !rx.has_data() {
                                // No torn message is ever delivered: a partial stream is dropped.
                                st.partial = None;
                                st.buf.clear();
                                return Err(RecvFail::Disconnected);
                            }
                        }
                    }
                }
            }
        }
    }

    fn finish_stream(&self, st: &mut RecvState, total: u64) -> std::result::Result<(), RecvFail> {
        st.partial = None;
        if st.buf.len() as u64 != total {
            st.buf.clear();
            return Err(RecvFail::Protocol(ProtocolError::BadRecord));
        }
        Ok(())
    }

    fn poll_impl(&self, timeout: Option<Duration>) -> bool {
        let rx = self.rx.as_ref().expect("receiving end has a ring to read");
        if rx.has_data() || self.peer_gone() {
            return true;
        }
        // `None` waits for ever, as does a timeout too large to add to the clock.
        let deadline = timeout.and_then(deadline_after);
        !matches!(
            rx.wait_readable(deadline, || self.peer_gone(), u32::MAX).0,
            Wait::TimedOut
        )
    }
}

impl Shared {
    /// A received message that failed to decode: on a connection made by name, decoded
    /// again with the descriptors its handles asked for (see `named`); otherwise the
    /// codec error stands. Reached only from the decoders' error arms.
    #[cold]
    #[inline(never)]
    fn decode_failed<T: DeserializeOwned>(
        &self,
        bytes: &[u8],
        e: Error,
    ) -> std::result::Result<T, String> {
        match self.hooks.side() {
            Some(side) => side.decode(bytes).map_err(|e| e.to_string()),
            None => Err(e.to_string()),
        }
    }

    /// The ring this end reads, for `wait`.
    pub(super) fn rx_ring(&self) -> Option<&Spsc> {
        self.rx.as_ref()
    }

    /// The descriptor the other side's presence is watched on (-1 once released): its
    /// hang-up says the other side is gone, its bytes are pokes (see `sync::poke`).
    pub(super) fn watch_fd(&self) -> RawFd {
        self.presence.watch.load(Ordering::Acquire)
    }
}

/// A failed general-path receive, before it is mapped to the caller's error type.
enum General {
    Recv(RecvFail),
    Codec(String),
}

/// The general path of every receive (a stream, a large message, an empty ring, an
/// error), out of line so that the fast path ([`Shared::take_small`] and the decode)
/// inlines into the caller without this code's stack frame.
#[inline(never)]
fn recv_general<T: DeserializeOwned>(
    sh: &Shared,
    st: &mut RecvState,
    block: Block,
) -> std::result::Result<T, General> {
    sh.recv_raw(st, block).map_err(General::Recv)?;
    match codec::decode(&st.buf) {
        Ok(v) => Ok(v),
        Err(e) => sh.decode_failed(&st.buf, e).map_err(General::Codec),
    }
}

/// How each send error type reports [`SendFail::NeedsStreaming`]: `try_send` by its own
/// variant; the blocking sends, which never meet it, as over a limit.
macro_rules! needs_streaming {
    (TrySendError, $len:ident, $max:ident) => {
        TrySendError::NeedsStreaming {
            len: $len,
            max: $max,
        }
    };
    ($ty:ident, $len:ident, $max:ident) => {
        $ty::TooLarge {
            len: $len,
            max: $max,
        }
    };
}

macro_rules! send_errors {
    ($fail:expr, $ty:ident { $($from:ident => $to:expr),* }) => {
        match $fail {
            SendFail::Disconnected => $ty::Disconnected,
            SendFail::TooLarge(len, max) => $ty::TooLarge { len, max },
            // Only non-blocking sends fail so (a blocking one streams the message).
            SendFail::NeedsStreaming(len, max) => needs_streaming!($ty, len, max),
            SendFail::Codec(e) => $ty::Codec(e),
            $(SendFail::$from => $to,)*
        }
    };
}

macro_rules! recv_errors {
    ($fail:expr, $ty:ident { $($from:ident => $to:expr),* }) => {
        match $fail {
            RecvFail::Disconnected => $ty::Disconnected,
            RecvFail::Protocol(p) => $ty::Protocol(p),
            $(RecvFail::$from => $to,)*
        }
    };
}

/// The methods shared by `Sender` and `Connection`.
macro_rules! sender_methods {
    () => {
        /// Sends a message, blocking while the ring is full. The message is visible to
        /// the receiver when this returns.
        ///
        /// # Errors
        /// `Disconnected` when every receiving end is gone (dropped, or its process
        /// died: noticed within [`DEAD_READER_SENDS`] sends), and on every send after
        /// that; `TooLarge` over `max_message`; `Codec` when `T`'s `Serialize` fails.
        #[inline(always)]
        pub fn send(&self, msg: &T) -> std::result::Result<(), SendError> {
            let block = Block::Until(None);
            self.shared().send_value(msg, block).or_else(|f| self.shared().send_failed(msg, block, f)).map_err(|f| {
                send_errors!(f, SendError { Full => SendError::Disconnected, Timeout => SendError::Disconnected })
            })
        }

        /// Sends a message if the ring has room now.
        ///
        /// # Errors
        /// `Full` when it has not (nothing is sent; `Disconnected` instead when the
        /// reader is gone, which a full ring asks the kernel at most every 100 µs);
        /// `NeedsStreaming` for a message that never fits the ring at
        /// once (larger than about three quarters of it), which `send` streams; or as
        /// [`send`](Self::send).
        pub fn try_send(&self, msg: &T) -> std::result::Result<(), TrySendError> {
            self.shared().send_value(msg, Block::No).or_else(|f| self.shared().send_failed(msg, Block::No, f)).map_err(|f| {
                send_errors!(f, TrySendError { Full => TrySendError::Full, Timeout => TrySendError::Full })
            })
        }

        /// Sends a message, waiting at most `timeout` for room.
        ///
        /// # Errors
        /// `Timeout` when the ring stayed full, or as [`send`](Self::send).
        pub fn send_timeout(&self, msg: &T, timeout: Duration) -> std::result::Result<(), SendTimeoutError> {
            let block = Block::Until(deadline_after(timeout));
            self.shared().send_value(msg, block).or_else(|f| self.shared().send_failed(msg, block, f)).map_err(|f| {
                send_errors!(f, SendTimeoutError { Full => SendTimeoutError::Timeout, Timeout => SendTimeoutError::Timeout })
            })
        }

        /// Sends every message of `msgs`, in order, as [`send`](Self::send) would one by
        /// one, but publishes them to the receiver together: one store of the ring's
        /// index per call (or per ring-full), and one wake-up at most. Other senders'
        /// messages are never interleaved within the batch. The messages are visible to
        /// the receiver when this returns; none of them before (except when the batch
        /// fills the ring, which publishes what is written and waits for room).
        ///
        /// ```
        /// let (tx, rx) = shmproc::pipe::<u64>()?;
        /// tx.send_all(&[1, 2, 3])?;
        /// assert_eq!(rx.iter().take(3).collect::<Vec<_>>(), [1, 2, 3]);
        /// # Ok::<(), Box<dyn std::error::Error>>(())
        /// ```
        ///
        /// # Errors
        /// As [`send`](Self::send). On an error the messages before the failing one
        /// have been sent, and none after it.
        pub fn send_all(&self, msgs: &[T]) -> std::result::Result<(), SendError> {
            self.shared().send_all_impl(msgs).map_err(|f| {
                send_errors!(f, SendError { Full => SendError::Disconnected, Timeout => SendError::Disconnected })
            })
        }

        /// Sends raw bytes as one message (read them with `recv_bytes`).
        ///
        /// # Errors
        /// As [`send`](Self::send).
        pub fn send_bytes(&self, bytes: &[u8]) -> std::result::Result<(), SendError> {
            self.shared().send_bytes_impl(bytes, Block::Until(None)).map_err(|f| {
                send_errors!(f, SendError { Full => SendError::Disconnected, Timeout => SendError::Disconnected })
            })
        }
    };
}

/// The methods shared by `Receiver` and `Connection`.
macro_rules! receiver_methods {
    () => {
        /// Receives a message, blocking until one arrives.
        ///
        /// # Errors
        /// `Disconnected` once every sending end is gone and the ring is drained;
        /// `Codec` when the bytes do not decode as `T` (the message is consumed);
        /// `Protocol` when the peer wrote a corrupt record.
        #[inline(always)]
        pub fn recv(&self) -> std::result::Result<T, RecvError> {
            let mut st = self.state.borrow_mut();
            let mut small = [0u8; SMALL];
            if let Some(n) = self.shared().take_small(&mut st, &mut small) {
                return match codec::decode(&small[..n]) {
                    Ok(v) => Ok(v),
                    Err(e) => self.shared().decode_failed(&small[..n], e).map_err(RecvError::Codec),
                };
            }
            recv_general(self.shared(), &mut st, Block::Until(None)).map_err(|f| match f {
                General::Recv(f) => recv_errors!(f, RecvError { Empty => RecvError::Disconnected, Timeout => RecvError::Disconnected }),
                General::Codec(e) => RecvError::Codec(e),
            })
        }

        /// Receives a message if one is ready now.
        ///
        /// # Errors
        /// `Empty` when none is, or as [`recv`](Self::recv).
        #[inline(always)]
        pub fn try_recv(&self) -> std::result::Result<T, TryRecvError> {
            let mut st = self.state.borrow_mut();
            let mut small = [0u8; SMALL];
            if let Some(n) = self.shared().take_small(&mut st, &mut small) {
                return match codec::decode(&small[..n]) {
                    Ok(v) => Ok(v),
                    Err(e) => self.shared().decode_failed(&small[..n], e).map_err(TryRecvError::Codec),
                };
            }
            recv_general(self.shared(), &mut st, Block::No).map_err(|f| match f {
                General::Recv(f) => recv_errors!(f, TryRecvError { Empty => TryRecvError::Empty, Timeout => TryRecvError::Empty }),
                General::Codec(e) => TryRecvError::Codec(e),
            })
        }

        /// Receives a message, waiting at most `timeout`.
        ///
        /// # Errors
        /// `Timeout` when none arrived in time, or as [`recv`](Self::recv).
        #[inline(always)]
        pub fn recv_timeout(&self, timeout: Duration) -> std::result::Result<T, RecvTimeoutError> {
            let mut st = self.state.borrow_mut();
            let mut small = [0u8; SMALL];
            if let Some(n) = self.shared().take_small(&mut st, &mut small) {
                return match codec::decode(&small[..n]) {
                    Ok(v) => Ok(v),
                    Err(e) => self.shared().decode_failed(&small[..n], e).map_err(RecvTimeoutError::Codec),
                };
            }
            recv_general(self.shared(), &mut st, Block::Until(deadline_after(timeout))).map_err(|f| match f {
                General::Recv(f) => recv_errors!(f, RecvTimeoutError { Empty => RecvTimeoutError::Timeout, Timeout => RecvTimeoutError::Timeout }),
                General::Codec(e) => RecvTimeoutError::Codec(e),
            })
        }

        /// Whether a message (or end-of-file) is ready, waiting at most `timeout`, like
        /// Python's `Connection.poll`: `Some(Duration::ZERO)` does not wait; `None` waits
        /// for ever (until a message arrives or every writer end is gone), and so does a
        /// timeout too large to add to the clock (`Duration::MAX`).
        pub fn poll(&self, timeout: Option<Duration>) -> bool {
            self.shared().poll_impl(timeout)
        }

        /// Iterates over received messages until the channel disconnects (or a
        /// message fails to decode).
        pub fn iter(&self) -> impl Iterator<Item = T> + '_ {
            std::iter::from_fn(move || self.recv().ok())
        }

        /// Receives one message as raw bytes.
        ///
        /// # Errors
        /// As [`recv`](Self::recv).
        pub fn recv_bytes(&self) -> std::result::Result<Vec<u8>, RecvError> {
            let mut st = self.state.borrow_mut();
            self.shared().recv_raw(&mut st, Block::Until(None)).map_err(|f| {
                recv_errors!(f, RecvError { Empty => RecvError::Disconnected, Timeout => RecvError::Disconnected })
            })?;
            Ok(if st.buf.capacity() > 1 << 20 { std::mem::take(&mut st.buf) } else { st.buf.clone() })
        }

        /// Receives one message as raw bytes into `buf` (replacing its contents);
        /// returns its length.
        ///
        /// # Errors
        /// As [`recv`](Self::recv).
        pub fn recv_bytes_into(&self, buf: &mut Vec<u8>) -> std::result::Result<usize, RecvError> {
            let mut st = self.state.borrow_mut();
            std::mem::swap(&mut st.buf, buf);
            let res = self.shared().recv_raw(&mut st, Block::Until(None));
            std::mem::swap(&mut st.buf, buf);
            res.map_err(|f| {
                recv_errors!(f, RecvError { Empty => RecvError::Disconnected, Timeout => RecvError::Disconnected })
            })?;
            Ok(buf.len())
        }
    };
}

/// The sending end of a [`pipe`]. `Clone`, `Send` and `Sync`; clones and copies in other
/// processes all send into the same ring, one message at a time (never interleaved).
///
/// Hand it to a child process as (part of) the args of a [`crate::Process`].
///
/// ```
/// use shmproc::{pipe, Process, Sender};
///
/// fn producer(tx: Sender<Vec<u32>>) {
///     for i in 0..3 {
///         tx.send(&vec![i; 4]).unwrap();
///     }
/// } // dropping the last Sender in the last process disconnects the pipe
///
/// let (tx, rx) = pipe::<Vec<u32>>()?;
/// let mut p = Process::new(producer, tx);
/// p.start()?;
/// let got: Vec<Vec<u32>> = rx.iter().collect(); // ends at Disconnected
/// p.join()?;
/// assert_eq!(got, vec![vec![0; 4], vec![1; 4], vec![2; 4]]);
/// # Ok::<(), shmproc::Error>(())
/// ```
pub struct Sender<T> {
    end: Arc<Shared>,
    _t: PhantomData<fn(&T)>,
}

impl<T> Sender<T> {
    fn shared(&self) -> &Shared {
        &self.end
    }
}

impl<T: Serialize + DeserializeOwned> Sender<T> {
    sender_methods!();
}

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Self {
        Sender {
            end: self.end.clone(),
            _t: PhantomData,
        }
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        handoff::note_drop(self.end.reg_id());
    }
}

impl<T> std::fmt::Debug for Sender<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sender").finish_non_exhaustive()
    }
}

/// The receiving end of a [`pipe`]. `Send`, not `Sync`, not `Clone`: one reader.
///
/// ```
/// use std::time::Duration;
/// use shmproc::{pipe, RecvTimeoutError};
///
/// let (tx, rx) = pipe::<String>()?;
/// tx.send(&"hello".to_string()).unwrap();
/// assert!(rx.poll(Some(Duration::ZERO)));
/// assert_eq!(rx.recv().unwrap(), "hello");
/// assert_eq!(rx.recv_timeout(Duration::from_millis(10)), Err(RecvTimeoutError::Timeout));
/// drop(tx);
/// assert_eq!(rx.recv_timeout(Duration::from_secs(1)), Err(RecvTimeoutError::Disconnected));
/// # Ok::<(), shmproc::Error>(())
/// ```
pub struct Receiver<T> {
    end: Arc<Shared>,
    state: RefCell<RecvState>,
    _t: PhantomData<fn() -> T>,
}

impl<T> Receiver<T> {
    fn new(end: Arc<Shared>) -> Self {
        end.register();
        Receiver {
            end,
            state: RefCell::default(),
            _t: PhantomData,
        }
    }

    fn shared(&self) -> &Shared {
        &self.end
    }
}

impl<T: Serialize + DeserializeOwned> Receiver<T> {
    receiver_methods!();
}

impl<T> Receiver<T> {
    /// This process's share of the channel, for `wait`.
    pub(super) fn end(&self) -> &Shared {
        &self.end
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        handoff::note_drop(self.end.reg_id());
    }
}

impl<T> std::fmt::Debug for Receiver<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Receiver").finish_non_exhaustive()
    }
}

/// One end of a [`duplex`] pipe: sends to, and receives from, the other end.
///
/// ```
/// use shmproc::{duplex, Connection, Process};
///
/// fn doubler(conn: Connection<u64>) {
///     while let Ok(x) = conn.recv() {
///         conn.send(&(2 * x)).unwrap();
///     }
/// }
///
/// let (here, there) = duplex::<u64>()?;
/// let mut p = Process::new(doubler, there);
/// p.start()?;
/// here.send(&21).unwrap();
/// assert_eq!(here.recv().unwrap(), 42);
/// drop(here); // the child's recv() sees Disconnected and returns
/// p.join()?;
/// assert_eq!(p.exitcode(), Some(0));
/// # Ok::<(), shmproc::Error>(())
/// ```
pub struct Connection<T> {
    end: Arc<Shared>,
    state: RefCell<RecvState>,
    _t: PhantomData<fn(&T) -> T>,
}

impl<T> Connection<T> {
    fn new(end: Arc<Shared>) -> Self {
        end.register();
        Connection {
            end,
            state: RefCell::default(),
            _t: PhantomData,
        }
    }

    fn shared(&self) -> &Shared {
        &self.end
    }
}

impl<T: Serialize + DeserializeOwned> Connection<T> {
    sender_methods!();
    receiver_methods!();
}

impl<T> Connection<T> {
    /// This process's share of the channel, for `named` and `wait`.
    pub(super) fn end(&self) -> &Shared {
        &self.end
    }
}

impl<T> Drop for Connection<T> {
    fn drop(&mut self) {
        handoff::note_drop(self.end.reg_id());
    }
}

impl<T> std::fmt::Debug for Connection<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection").finish_non_exhaustive()
    }
}

impl<T> Serialize for Sender<T> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        ser_shared(&self.end, s)
    }
}

impl<'de, T> Deserialize<'de> for Sender<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let end = de_shared(d, Kind::Pipe)?;
        if end.tx.is_none() {
            use serde::de::Error as _;
            return Err(D::Error::custom("not a sending end"));
        }
        Ok(Sender {
            end,
            _t: PhantomData,
        })
    }
}

impl<T> Serialize for Receiver<T> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        ser_shared(&self.end, s)
    }
}

impl<'de, T> Deserialize<'de> for Receiver<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let end = de_shared(d, Kind::Pipe)?;
        if end.rx.is_none() {
            use serde::de::Error as _;
            return Err(D::Error::custom("not a receiving end"));
        }
        Ok(Receiver {
            end,
            state: RefCell::default(),
            _t: PhantomData,
        })
    }
}

impl<T> Serialize for Connection<T> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        ser_shared(&self.end, s)
    }
}

impl<'de, T> Deserialize<'de> for Connection<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let end = de_shared(d, Kind::Duplex)?;
        Ok(Connection {
            end,
            state: RefCell::default(),
            _t: PhantomData,
        })
    }
}
