//! A lock-free single-producer single-consumer byte ring with variable-length framed
//! records, living in shared memory.
//!
//! # Layout
//!
//! ```text
//! [ writer line: tail, cached_head, limit, look_at, closed, poisoned ][ reader line: head ]
//! [ readable waiter ][ writable waiter ][ ownership: owner, in_send, reader_drops, lock ]
//! [ data: capacity bytes (a power of two) ]
//! ```
//!
//! `tail` and `head` are monotonic byte counters; a position in `data` is the counter
//! modulo the capacity. `tail` is where the writer writes next, `head` where the reader
//! reads next (everything before it is handed back to the writer). The writer keeps a
//! cached copy of `head` on its own line and reloads it only when the cache says full;
//! its tiny fast path compares with one precomputed `limit` instead (`head` plus the
//! capacity, or less when a look at the reader is due first).
//!
//! # Publishing by header: the reader never polls `tail`
//!
//! A record is published by the Release store of its header word, and the reader finds
//! the next one by an Acquire load of the word at `head`: zero means "nothing yet". The
//! two processes then share only the data lines in steady state. (In the classic design,
//! where the reader polls the writer's `tail`, the reader pulls `tail`'s line across for
//! every message it finds; a minimal ring of one-word messages ran 3-6x faster this way
//! on the development machine, BENCHMARKS.md.) The writer still stores `tail`, on its
//! own line, for the writer who may come after it.
//!
//! This needs one invariant: **the word at the writer's position is zero** until the
//! next record is published there. The writer keeps it: it reserves one word more than
//! each record, and zeroes the word right after the record before it stores the
//! record's header (`Spsc::publish_at`), so the Release store of a header also
//! publishes the zero where the reader will look next. Nothing else in free space
//! matters: the reader follows record sizes from header to header and never looks
//! past the zero. So nobody clears consumed space — the reader writes only its own
//! line (a reader zeroing what it consumed had both cores write the same data lines in
//! turn, which cost every lap of the ring), and a writer that gives up on a record it
//! started (an encoder out of room, a `Serialize` that failed or panicked, a `fill`
//! that panicked) or that died inside a send leaves bytes in free space that nobody
//! will read.
//!
//! A writer that dies after publishing a header but before storing `tail` leaves
//! records beyond `tail`; a writer taking over walks past them
//! ([`Spsc::repair_tail`]) so that it never overwrites what the reader may be reading.
//!
//! # Records
//!
//! A message of at most [`TINY_MAX`] bytes is a *tiny* record: one word, its payload in
//! the low bytes, its length in byte 6, [`TINY_TAG`](record::TINY_TAG) in byte 7 —
//! published with one store (and the zeroing of the word after it) and read with one
//! load. Every other record starts with an 8-byte header
//! `len: u32, tag: u32` and is padded to a multiple of 8 bytes; records never wrap.
//! Kinds: `MSG` (a whole message), `BEGIN` (first piece of a message streamed in pieces:
//! an 8-byte total length, then bytes), `CHUNK` (a further piece), `PAD` (skip to the end
//! of the ring), `BATCH` (plain-data elements, see `batch`). A message larger than a quarter of the ring is streamed, so there is no
//! size cap. The reader checks every header against the ring's bounds before it touches
//! the bytes; a bad header is a [`ProtocolError`](crate::error::ProtocolError), never an out-of-bounds read.
//!
//! # One writer at a time
//!
//! The ring has one producer, but a `Sender` may be shared by threads and copied into
//! processes. Writers are serialized by a *biased* lock: the first writer thread owns
//! the ring and sends with two plain stores and two loads (`in_send = 1`, compiler
//! fence, re-read `owner`). Another writer revokes the bias by switching `owner` to
//! `SHARED`, issuing `membarrier` (a full fence on the owner's CPU), and waiting for
//! `in_send == 0` — the asymmetric Dekker handshake. From then on every writer takes
//! the robust lock of `sync` ([`RawLock`]) around each message. Owners are recorded by
//! their [`Owner`](crate::sync::owner::Owner) tag (thread id and start time), so a dead one — the biased owner
//! inside a send, or the lock's holder — is told by `sync::owner`'s rule (a zombie or a
//! reused id is dead) and bypassed; whatever it had not published is simply not there.
//!
//! # Files
//!
//! `record` (the record format), `owner` (the writer role), `write` and `sink` (the
//! writer's side), `read` (the reader's side), `batch` (records of plain-data
//! elements, read across record boundaries), `inplace` (messages written and read where
//! they lie), `image` (rings in a region or on the heap, and the fuzzable decoder of a
//! ring image).

use std::ptr::NonNull;

use crate::sync::atomic::{AtomicU32, AtomicU64, CachePadded, Ordering};
use crate::sync::raw::RawLock;
use crate::sync::waiter::Waiter;

mod batch;
mod image;
mod inplace;
mod owner;
mod read;
mod record;
mod sink;
mod write;

pub(crate) use batch::BATCH_HDR;
#[cfg(test)]
pub(crate) use image::HeapRing;
pub(crate) use image::{decode_image, ring_in_region};
pub(crate) use owner::WriteGuard;
pub(crate) use read::Pace;
pub(crate) use record::{record_size, RecKind, MIN_WINDOW, REC_HDR, TINY_HIGH, TINY_MAX};
pub(crate) use sink::{write_varint, RawSink};

#[repr(C)]
#[derive(Default)]
struct WriterLine {
    tail: AtomicU64,
    /// The reader's `head` as the general paths last loaded it.
    cached_head: AtomicU64,
    /// The tiny fast path's one compare (`Spsc::try_send_tiny_word`): it may publish a
    /// record at a `tail` below this position, that is while the record and the word
    /// after it end at or below the least of the last `head` it loaded plus the
    /// capacity and [`WriterLine::look_at`] (minus 15 stored: `tail < limit` is then
    /// the whole test). [`NO_ROOM`] (no `tail` is below it) in a new ring, whose first
    /// tiny send computes it, and whenever the fast path must stop: a dropped reader
    /// end, a closed fast path.
    limit: AtomicU64,
    /// Where the writer's next look at its reader is due (`Spsc::look_due`); 0 when no
    /// look was ever asked for (a ring used without a channel's send gate).
    look_at: AtomicU64,
    /// Nonzero once the tiny fast path is closed for good (`Spsc::close_fast_path`):
    /// `limit` then stays [`NO_ROOM`].
    closed: AtomicU64,
    /// Nonzero from a dropped reader end (`Spsc::note_reader_drop`) to the send
    /// gate's next look (`Spsc::renew_look`): the fast path takes the general path,
    /// whose gate compares the drop counter, rather than compute a limit.
    poisoned: AtomicU64,
}

/// [`WriterLine::limit`] below every `tail`: the tiny fast path's next send goes to its
/// cold path, which computes the limit again, or, when the ring is
/// [`poisoned`](WriterLine::poisoned) or closed, sends the message down the general path.
const NO_ROOM: u64 = 0;

#[repr(C)]
#[derive(Default)]
struct ReaderLine {
    /// Where the reader reads next; everything before it is handed back to the writer.
    head: AtomicU64,
}

#[repr(C)]
#[derive(Default)]
struct Ownership {
    /// 0: free; an owner's tag ([`Owner::tag`](crate::sync::owner::Owner::tag)): biased to that thread; `SHARED`: use `lock`.
    owner: AtomicU64,
    /// 1 while the biased owner is inside a send. On this line, which only the writer
    /// touches in steady state, and not on `tail`'s, which the reader polls: two more
    /// stores per send to a line the reader keeps pulling back would cost two more
    /// cache-line transfers per message.
    in_send: AtomicU32,
    /// Bumped whenever a reader end is dropped; writers re-check reader liveness when
    /// it moves (a read-mostly line, so the per-send check costs one cached load).
    reader_drops: AtomicU32,
    _pad: [u32; 2],
    /// Shared mode: the lock every writer takes around each message.
    lock: RawLock,
}

/// `owner` once the bias is revoked (no tag has this bit: task ids are below 2^22).
const SHARED: u64 = 1 << 63;

/// The ring's control block, at the start of its memory. Zeroed memory is a valid,
/// empty ring.
#[repr(C)]
#[derive(Default)]
pub(crate) struct SpscHeader {
    w: CachePadded<WriterLine>,
    r: CachePadded<ReaderLine>,
    readable: CachePadded<Waiter>,
    writable: CachePadded<Waiter>,
    own: CachePadded<Ownership>,
}

/// Size of the control block; the data follows it.
pub(crate) const CONTROL_SIZE: usize = std::mem::size_of::<SpscHeader>();
const _: () = assert!(CONTROL_SIZE % 128 == 0);

/// A copy of a ring's base address ([`Spsc::base`]), made only from the ring's own.
#[derive(Clone, Copy)]
struct Base(NonNull<SpscHeader>);

/// Handle to a ring in memory that outlives it (a mapped region, or the heap in tests).
/// `Copy`: its holder keeps the memory alive (a pipe's end holds the mapping; its
/// `Sender` and `Receiver` hold a copy beside the end).
#[derive(Clone, Copy)]
pub(crate) struct Spsc {
    /// The control block; the data area follows it ([`CONTROL_SIZE`] bytes on), so its
    /// address is not kept apart: the fast paths address a data word from `hdr` with
    /// one load fewer.
    hdr: NonNull<SpscHeader>,
    cap: u64,
    /// `cap - 8`: masks a position to the offset of its word.
    mask: u64,
    /// Whether this process could rely on `membarrier` when the handle was made: the
    /// wake-ups after a publish then need only a compiler fence
    /// ([`Waiter::wake_all_with`]).
    light: bool,
    /// Under loom, the data words that are accessed atomically (headers) live in a side
    /// table of loom atomics, one per 8 data bytes, so that their publication is
    /// model-checked; payload bytes stay in `data`.
    #[cfg(loom)]
    words: &'static [AtomicU64],
}

/// Memory of a ring of [`EMPTY_CAP`] bytes that stays empty: [`Spsc::empty`]'s.
#[cfg(not(loom))]
#[repr(C, align(128))]
struct EmptyRing([AtomicU64; (CONTROL_SIZE + EMPTY_CAP as usize) / 8]);

/// [`Spsc::empty`]'s capacity, the least there is.
const EMPTY_CAP: u64 = 64;

#[cfg(not(loom))]
static EMPTY_RING: EmptyRing = EmptyRing([const { AtomicU64::new(0) }; _]);

// SAFETY: the ring is designed for concurrent use from many threads and processes: all
// shared state is atomics, and data bytes are accessed only inside the ranges the
// protocol gives each side exclusively.
unsafe impl Send for Spsc {}
// SAFETY: as above.
unsafe impl Sync for Spsc {}

/// The largest length a record header holds (32 bits), rounded down to a whole word.
const MAX_HEADER_LEN: u64 = u32::MAX as u64 & !7;

/// [`Spsc::max_record`] of a ring of `cap` bytes: a quarter of it, and never more than
/// a header can describe (rings of 16 GiB and more would otherwise write records whose
/// length runs into the header's kind tag).
#[inline(always)]
fn max_record_of(cap: u64) -> u64 {
    (cap / 4).min(MAX_HEADER_LEN + REC_HDR)
}

/// [`Spsc::max_in_place`] of a ring of `cap` bytes: a quarter of it, at most
/// [`MAX_HEADER_LEN`] (its record, one header more, is then at most
/// [`max_record_of`]'s bound, and its length fits the header).
#[inline(always)]
fn max_in_place_of(cap: u64) -> u64 {
    (cap / 4).min(MAX_HEADER_LEN)
}

impl Spsc {
    /// Bytes needed for a ring of `cap` data bytes.
    pub(crate) const fn memory_size(cap: u64) -> usize {
        CONTROL_SIZE + cap as usize
    }

    /// Whether `cap` is a usable capacity.
    pub(crate) fn valid_capacity(cap: u64) -> bool {
        cap.is_power_of_two() && (64..=1 << 40).contains(&cap)
    }

    /// # Safety
    ///
    /// `base` must be 128-byte aligned and point to [`Spsc::memory_size`]`(cap)` bytes
    /// that stay mapped for the life of the returned value, holding either zeroes or a
    /// ring of the same capacity; `cap` must satisfy [`Spsc::valid_capacity`].
    pub(crate) unsafe fn from_raw(base: NonNull<u8>, cap: u64) -> Spsc {
        debug_assert!(Self::valid_capacity(cap));
        debug_assert_eq!(base.as_ptr() as usize % 128, 0);
        Spsc {
            hdr: base.cast(),
            cap,
            mask: cap - 8,
            light: crate::sync::waiter::membarrier_ready(),
            // Leaked: a handle is `Copy` (loom models are small and short).
            #[cfg(loom)]
            words: Box::leak((0..cap / 8).map(|_| AtomicU64::new(0)).collect()),
        }
    }

    /// A handle to a ring that stays empty: nothing ever writes it (no writer role is
    /// ever taken on it), so every read finds nothing. For a fast path that must not
    /// run, in place of a flag tested per message: a receiver installs it while its
    /// tiny fast path may not take a record ([`Spsc::take_tiny_light`] then finds none
    /// and the caller takes its general path).
    pub(crate) fn empty() -> Spsc {
        #[cfg(not(loom))]
        let base = NonNull::from(&EMPTY_RING).cast::<u8>();
        #[cfg(loom)]
        let base = {
            let layout = std::alloc::Layout::from_size_align(Self::memory_size(EMPTY_CAP), 128)
                .expect("layout");
            // SAFETY: the layout has a nonzero size. Leaked, as `words` are.
            NonNull::new(unsafe { std::alloc::alloc_zeroed(layout) }).expect("memory")
        };
        // SAFETY: 128-aligned, `memory_size(EMPTY_CAP)` zeroed bytes (a valid empty ring)
        // that live for ever: the static's (atomics, so writable memory), or a leaked
        // allocation under loom.
        let mut ring = unsafe { Spsc::from_raw(base, EMPTY_CAP) };
        // Never woken through: nothing is ever taken from it.
        ring.light = true;
        ring
    }

    /// The data word at `off` (8-aligned, below `cap`): a record's header (or a whole
    /// tiny record), zero, or payload. Header words are only ever written and read
    /// through it, atomically; payload bytes are copied through raw pointers, never
    /// while the other side may touch the same bytes (the Release/Acquire pairs on
    /// header words and on `head` hand ranges over).
    #[inline(always)]
    fn word(&self, off: u64) -> &AtomicU64 {
        self.word_at(self.base(), off)
    }

    /// [`Spsc::word`] addressed from `base`, a copy of [`Spsc::base`] (which a hot
    /// path keeps in a register across a compiler fence, where `self.hdr` would be
    /// loaded again).
    #[inline(always)]
    fn word_at(&self, base: Base, off: u64) -> &AtomicU64 {
        debug_assert!(off % 8 == 0 && off < self.cap);
        #[cfg(loom)]
        {
            let _ = base;
            &self.words[(off / 8) as usize]
        }
        #[cfg(not(loom))]
        // SAFETY: `base` is `self.hdr` (the only way to make a `Base`), so by
        // `from_raw`'s contract the data area (`data_at`) is mapped for our lifetime.
        // Every caller passes an 8-aligned offset below `cap` (a position
        // masked with `cap - 8`, or a checked record offset), and the data area is
        // 128-aligned, so this is an aligned u64 inside the mapping. Accesses to a
        // header word that may be concurrent are all atomic: the reader reads only the
        // word at `head` (published or zero) through here, and the writer writes
        // payload non-atomically only in free space, where the reader does not look.
        unsafe {
            AtomicU64::from_ptr(self.data_at(base).as_ptr().add(off as usize).cast::<u64>())
        }
    }

    /// The ring's base address, for [`Spsc::word_at`] and [`Spsc::hdr_at`].
    #[inline(always)]
    fn base(&self) -> Base {
        Base(self.hdr)
    }

    /// Whether this process could rely on `membarrier` when the handle was made: its
    /// wake-ups after a publish or a release need only a compiler fence.
    #[inline(always)]
    pub(crate) fn light(&self) -> bool {
        self.light
    }

    /// The data area: `cap` bytes right after the control block.
    #[inline(always)]
    fn data(&self) -> NonNull<u8> {
        self.data_at(self.base())
    }

    /// [`Spsc::data`] from `base`, a copy of [`Spsc::base`].
    #[inline(always)]
    fn data_at(&self, base: Base) -> NonNull<u8> {
        // SAFETY: `base` is `self.hdr`. `from_raw`'s contract: CONTROL_SIZE + cap bytes
        // are mapped there, so the data area starts inside (or, for no data, one past)
        // that mapping.
        unsafe { base.0.cast::<u8>().add(CONTROL_SIZE) }
    }

    #[inline(always)]
    fn hdr(&self) -> &SpscHeader {
        self.hdr_at(self.base())
    }

    /// [`Spsc::hdr`] from `base`, a copy of [`Spsc::base`].
    #[inline(always)]
    fn hdr_at(&self, base: Base) -> &SpscHeader {
        // SAFETY: `base` is `self.hdr`. `from_raw`'s contract: the control block is
        // mapped for our lifetime and consists of atomics only, so shared references to
        // it are sound even while other processes modify it.
        unsafe { base.0.as_ref() }
    }

    /// Data capacity in bytes.
    pub(crate) fn capacity(&self) -> u64 {
        self.cap
    }

    /// Largest record (header included) written whole; larger messages are streamed.
    #[inline(always)]
    pub(crate) fn max_record(&self) -> u64 {
        max_record_of(self.cap)
    }

    /// The in-place limit: the largest payload of a whole message written or read in
    /// place (`send_with`, `recv_with`), a quarter of the capacity. Its record (one
    /// header more) is at most half the ring, so it always fits once the ring drains.
    #[inline(always)]
    pub(crate) fn max_in_place(&self) -> u64 {
        max_in_place_of(self.cap)
    }

    /// Bytes free for the writer right now (reloads the reader's counter).
    pub(crate) fn free_bytes(&self) -> u64 {
        let tail = self.hdr().w.tail.load(Ordering::Acquire);
        let head = self.hdr().r.head.load(Ordering::Acquire);
        self.cap.saturating_sub(tail.wrapping_sub(head))
    }

    /// The waiter the reader parks on (async readers register on it too, and `wait()`
    /// arms it): the writer wakes it on publish.
    pub(crate) fn readable_waiter(&self) -> &Waiter {
        &self.hdr().readable
    }

    /// The waiter writers park on for room (async writers register on it too).
    #[cfg(feature = "tokio")]
    pub(crate) fn writable_waiter(&self) -> &Waiter {
        &self.hdr().writable
    }

    /// Wakes the reader unconditionally (when the writer side goes away).
    pub(crate) fn wake_reader(&self) {
        crate::sync::atomic::fence(Ordering::SeqCst);
        self.hdr().readable.wake_all_with(self.light);
    }

    /// Wakes the writers waiting for room or for the writer role, so that they look at
    /// their `abort` again (when the reader side goes away).
    pub(crate) fn wake_writer(&self) {
        crate::sync::atomic::fence(Ordering::SeqCst);
        self.hdr().writable.wake_all_with(self.light);
        self.hdr().own.lock.wake_waiters();
    }
}

/// Copies `n` bytes from `src` to `dst` (non-overlapping). Small copies — a message of
/// the seed's experiment is 2 bytes — are done inline with at most two loads and two
/// stores (overlapping when `n` is not a power of two) instead of a call to `memmove`,
/// which dominated the per-message cost.
///
/// # Safety
/// `src` is valid for reads and `dst` for writes of `n` bytes; the ranges do not overlap.
#[inline(always)]
unsafe fn copy_bytes(src: *const u8, dst: *mut u8, n: usize) {
    // SAFETY: in every arm, each access lies inside [src, src + n) or [dst, dst + n),
    // which the caller guarantees; unaligned accesses use read/write_unaligned.
    unsafe {
        match n {
            0 => {}
            1..=3 => {
                *dst = *src;
                *dst.add(n / 2) = *src.add(n / 2);
                *dst.add(n - 1) = *src.add(n - 1);
            }
            4..=7 => {
                let a = src.cast::<u32>().read_unaligned();
                let b = src.add(n - 4).cast::<u32>().read_unaligned();
                dst.cast::<u32>().write_unaligned(a);
                dst.add(n - 4).cast::<u32>().write_unaligned(b);
            }
            8..=16 => {
                let a = src.cast::<u64>().read_unaligned();
                let b = src.add(n - 8).cast::<u64>().read_unaligned();
                dst.cast::<u64>().write_unaligned(a);
                dst.add(n - 8).cast::<u64>().write_unaligned(b);
            }
            _ => std::ptr::copy_nonoverlapping(src, dst, n),
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests;

#[cfg(all(test, loom))]
mod loom_tests;
