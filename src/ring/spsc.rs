//! A lock-free single-producer single-consumer byte ring with variable-length framed
//! records, living in shared memory.
//!
//! # Layout
//!
//! ```text
//! [ writer line: tail, cached_head ][ reader line: head, read ]
//! [ readable waiter ][ writable waiter ][ ownership: owner, in_send, lock, lock waiter ]
//! [ data: capacity bytes (a power of two) ]
//! ```
//!
//! `tail`, `read` and `head` are monotonic byte counters; a position in `data` is the
//! counter modulo the capacity. `tail` is where the writer writes next, `read` where the
//! reader reads next, and `head` the end of the space the reader has handed back (it
//! lags `read` only inside a receive). The writer keeps a cached copy of `head` on its
//! own line and reloads it only when the cache says full.
//!
//! # Publishing by header: the reader never polls `tail`
//!
//! A record is published by the Release store of its header word, and the reader finds
//! the next one by an Acquire load of the word at `read`: zero means "nothing yet". The
//! two processes then share only the data lines in steady state. (In the classic design,
//! where the reader polls the writer's `tail`, the reader pulls `tail`'s line across for
//! every message it finds; a minimal ring of one-word messages ran 3-6x faster this way
//! on the development machine, BENCHMARKS.md.) The writer still stores `tail`, on its
//! own line, for the writer who may come after it.
//!
//! This needs one invariant: **free space is zero**. The reader zeroes every record it
//! consumes before it hands the space back (the lines are in its cache: it just read
//! them); a writer that gives up on a record it started (an encoder that ran out of
//! room, a `Serialize` that failed or panicked) zeroes what it wrote
//! ([`RawSink`]'s drop); a writer that takes over from one that died inside a send zeroes
//! the free space, in which the dead one may have left bytes. A reader that dies between
//! zeroing and handing the space back leaves `head` behind `read`; the next receive
//! zeroes from `head`, not from its record.
//!
//! A writer that dies after publishing a header but before storing `tail` leaves
//! records beyond `tail`; a writer taking over walks past them
//! ([`Spsc::repair_tail`]) so that it never overwrites what the reader may be reading.
//!
//! # Records
//!
//! A message of at most [`TINY_MAX`] bytes is a *tiny* record: one word, its payload in
//! the low bytes, its length in byte 6, [`TINY_TAG`] in byte 7 — published, read and
//! zeroed with one store each. Every other record starts with an 8-byte header
//! `len: u32, tag: u32` and is padded to a multiple of 8 bytes; records never wrap.
//! Kinds: `MSG` (a whole message), `BEGIN` (first piece of a message streamed in pieces:
//! an 8-byte total length, then bytes), `CHUNK` (a further piece), `PAD` (skip to the end
//! of the ring). A message larger than a quarter of the ring is streamed, so there is no
//! size cap. The reader checks every header against the ring's bounds before it touches
//! the bytes; a bad header is a [`ProtocolError`], never an out-of-bounds read.
//!
//! # One writer at a time
//!
//! The ring has one producer, but a `Sender` may be shared by threads and copied into
//! processes. Writers are serialized by a *biased* lock: the first writer thread owns
//! the ring and sends with two plain stores and two loads (`in_send = 1`, compiler
//! fence, re-read `owner`). Another writer revokes the bias by switching `owner` to
//! `SHARED`, issuing `membarrier` (a full fence on the owner's CPU), and waiting for
//! `in_send == 0` — the asymmetric Dekker handshake. From then on every writer takes a
//! futex lock around each message. A dead owner (bias or lock) is detected through its
//! pid and bypassed; whatever it had not published is simply not there.

use std::cell::Cell;
use std::ptr::NonNull;
use std::time::Instant;

use crate::error::ProtocolError;
use crate::sync::atomic::{light_fence, AtomicU32, AtomicU64, CachePadded, Ordering};
use crate::sync::waiter::{Wait, Waiter};

/// Spin hints (~25 ns each on the development machine) a reader streaming at the
/// writer's heels waits before it looks at the head again (see [`Spsc::wait_readable`]).
const HEELS_PAUSE: u32 = if cfg!(loom) { 0 } else { 8 };

/// A cache line: the reader hands space back a whole line at a time.
/// The reader hands space back in blocks of this many bytes (or a quarter of the ring,
/// if that is less), zeroing each once it has left it behind (see `Spsc::release`).
/// Zeroing each 64-byte line as soon as the reader left it made 48-256 byte messages up
/// to 1.5x slower than zeroing 128 or 256 bytes behind (the adjacent-line prefetcher
/// works on 128-byte pairs, and the writer is writing just ahead).
const RELEASE_BLOCK: u64 = 256;

/// Record header size; also the alignment of every record.
pub(crate) const REC_HDR: u64 = 8;
/// The smallest window worth encoding into in place (an encoder writes without knowing
/// the size first).
pub(crate) const MIN_WINDOW: u64 = 64;
const TAG_MAGIC: u32 = 0x00A5_C300;
const TAG_MASK: u32 = 0xFFFF_FF00;
/// Byte 7 of a tiny record (byte 7 of every other header is 0).
pub(crate) const TINY_TAG: u64 = 0xA7;
/// The largest message held in a tiny record (bytes 0-5 of its word).
pub(crate) const TINY_MAX: u64 = 6;

/// The kinds of record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum RecKind {
    /// A whole message.
    Msg = 1,
    /// The first piece of a streamed message; the payload starts with the u64 total.
    Begin = 2,
    /// A further piece of a streamed message.
    Chunk = 3,
    /// Skip to the end of the ring.
    Pad = 4,
}

impl RecKind {
    fn from_tag(tag: u32) -> Option<RecKind> {
        if tag & TAG_MASK != TAG_MAGIC {
            return None;
        }
        match tag & 0xFF {
            1 => Some(RecKind::Msg),
            2 => Some(RecKind::Begin),
            3 => Some(RecKind::Chunk),
            4 => Some(RecKind::Pad),
            _ => None,
        }
    }

    fn tag(self) -> u32 {
        TAG_MAGIC | self as u32
    }
}

#[inline(always)]
const fn align8(n: u64) -> u64 {
    (n + 7) & !7
}

/// Space a record with `len` payload bytes occupies.
#[inline(always)]
pub(crate) const fn record_size(len: u64) -> u64 {
    REC_HDR + align8(len)
}

/// Decodes a record header word (the fuzzable part of the reader); a tiny record is a
/// `Msg` whose payload is in the word itself (see [`tiny_len`]).
#[inline]
pub(crate) fn parse_header(word: u64) -> Option<(RecKind, u64)> {
    if let Some(len) = tiny_len(word) {
        return Some((RecKind::Msg, len));
    }
    let len = word & 0xFFFF_FFFF;
    let kind = RecKind::from_tag((word >> 32) as u32)?;
    Some((kind, len))
}

/// The payload length of a tiny record's word, `None` if the word is not one.
#[inline(always)]
fn tiny_len(word: u64) -> Option<u64> {
    let len = (word >> 48) & 0xFF;
    (word >> 56 == TINY_TAG && len <= TINY_MAX).then_some(len)
}

/// The word of a tiny record holding `payload`, `len <= TINY_MAX` bytes with nothing
/// beyond them (from the library's own encoder, or masked by the caller).
#[inline(always)]
fn tiny_word(payload: u64, len: u64) -> u64 {
    debug_assert!(len <= TINY_MAX && payload >> (8 * len) == 0);
    (TINY_TAG << 56) | (len << 48) | payload
}

#[inline(always)]
fn header_word(kind: RecKind, len: u64) -> u64 {
    debug_assert!(len <= u64::from(u32::MAX));
    (u64::from(kind.tag()) << 32) | len
}

#[repr(C)]
#[derive(Default)]
struct WriterLine {
    tail: AtomicU64,
    cached_head: AtomicU64,
}

#[repr(C)]
#[derive(Default)]
struct ReaderLine {
    /// The end of the space handed back to the writer (zeroed).
    head: AtomicU64,
    /// Where the reader reads next; ahead of `head` only inside a receive (or after a
    /// reader died inside one).
    read: AtomicU64,
}

#[repr(C)]
#[derive(Default)]
struct Ownership {
    /// 0: free; a token (pid << 32 | tid): biased to that thread; `SHARED`: use `lock`.
    owner: AtomicU64,
    /// 1 while the biased owner is inside a send. On this line, which only the writer
    /// touches in steady state, and not on `tail`'s, which the reader polls: two more
    /// stores per send to a line the reader keeps pulling back would cost two more
    /// cache-line transfers per message.
    in_send: AtomicU32,
    /// Shared mode: 0 free, else the holder's pid.
    lock: AtomicU32,
    /// Bumped whenever a reader end is dropped; writers re-check reader liveness when
    /// it moves (a read-mostly line, so the per-send check costs one cached load).
    reader_drops: AtomicU32,
    /// 1 after a writer died inside a send: the next writer zeroes the free space.
    dirty: AtomicU32,
    lock_wait: Waiter,
}

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

/// A validated header of a record ready to read.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Record {
    pub(crate) kind: RecKind,
    /// Payload bytes.
    pub(crate) len: u64,
    off: u64,
    /// The reader's position (`read`) at this record.
    pos: u64,
    /// The record's header word (a tiny record's payload is in it).
    word: u64,
}

impl Record {
    /// Space the record occupies.
    #[inline(always)]
    fn size(&self) -> u64 {
        if tiny_len(self.word).is_some() {
            REC_HDR
        } else {
            record_size(self.len)
        }
    }
}

/// The next record's word as the reader finds it (see [`Spsc::head_word`]).
#[derive(Clone, Copy)]
struct Head {
    /// The reader's position.
    pos: u64,
    off: u64,
    word: u64,
}

/// Handle to a ring in memory that outlives it (a mapped region, or the heap in tests).
pub(crate) struct Spsc {
    hdr: NonNull<SpscHeader>,
    data: NonNull<u8>,
    cap: u64,
    /// Under loom, the data words that are accessed atomically (headers) live in a side
    /// table of loom atomics, one per 8 data bytes, so that their publication is
    /// model-checked; payload bytes stay in `data`.
    #[cfg(loom)]
    words: Box<[AtomicU64]>,
}

// SAFETY: the ring is designed for concurrent use from many threads and processes: all
// shared state is atomics, and data bytes are accessed only inside the ranges the
// protocol gives each side exclusively.
unsafe impl Send for Spsc {}
// SAFETY: as above.
unsafe impl Sync for Spsc {}

/// Which writer path a [`WriteGuard`] took.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Biased,
    Shared,
}

/// Proof that this thread is the ring's one writer until dropped.
pub(crate) struct WriteGuard<'a> {
    ring: &'a Spsc,
    mode: Mode,
}

impl Drop for WriteGuard<'_> {
    #[inline]
    fn drop(&mut self) {
        let own = &self.ring.hdr().own;
        match self.mode {
            // Pairs with the revoker's Acquire load of `in_send`.
            Mode::Biased => self.ring.hdr().own.in_send.store(0, Ordering::Release),
            Mode::Shared => {
                own.lock.store(0, Ordering::Release);
                own.lock_wait.wake_all();
            }
        }
    }
}

thread_local! {
    static TOKEN: Cell<(u64, u64)> = const { Cell::new((u64::MAX, 0)) };
}

/// This thread's writer token: pid << 32 | tid, recomputed after a fork.
#[inline]
fn my_token() -> u64 {
    let gen = crate::sys::fork_generation();
    TOKEN.with(|t| {
        let (g, tok) = t.get();
        if g == gen {
            tok
        } else {
            let tok = (u64::from(crate::sys::getpid()) << 32) | u64::from(crate::sys::gettid());
            t.set((gen, tok));
            tok
        }
    })
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
        // SAFETY: the caller guarantees CONTROL_SIZE + cap bytes at `base`.
        let data = unsafe { base.add(CONTROL_SIZE) };
        Spsc {
            hdr: base.cast(),
            data,
            cap,
            #[cfg(loom)]
            words: (0..cap / 8).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// The data word at `off` (8-aligned, below `cap`): a record's header (or a whole
    /// tiny record), zero, or payload. Header words are only ever written and read
    /// through it, atomically; payload bytes are copied through raw pointers, never
    /// while the other side may touch the same bytes (the Release/Acquire pairs on
    /// header words and on `head` hand ranges over).
    #[inline(always)]
    fn word(&self, off: u64) -> &AtomicU64 {
        debug_assert!(off % 8 == 0 && off < self.cap);
        #[cfg(loom)]
        {
            &self.words[(off / 8) as usize]
        }
        #[cfg(not(loom))]
        // SAFETY: every caller passes an 8-aligned offset below `cap` (a position masked
        // with `cap - 8`, or a checked record offset), and the data area is 128-aligned,
        // so this is an aligned u64 inside the mapping, which outlives `self`. Accesses
        // to a header word that may be concurrent are all atomic: the reader reads only
        // the word at `read` (published or zero) through here, and the writer writes
        // payload non-atomically only in free space, where the reader does not look.
        unsafe {
            AtomicU64::from_ptr(self.data.as_ptr().add(off as usize).cast::<u64>())
        }
    }

    /// Zeroes data bytes `[from, to)` (8-aligned positions, at most a ring's worth),
    /// both sides of the wrap. The range must belong to the caller (consumed by the
    /// reader, or free for the writer), so nothing else accesses it meanwhile.
    fn zero_range(&self, from: u64, to: u64) {
        let mut pos = from;
        while pos != to {
            let off = pos & (self.cap - 8);
            let n = (self.cap - off).min(to.wrapping_sub(pos));
            // Under loom the header words live in the side table: zero them there.
            #[cfg(loom)]
            for w in (off..off + n).step_by(8) {
                self.word(w).store(0, Ordering::Relaxed);
            }
            // SAFETY: [off, off + n) lies inside the data area (n <= cap - off); the
            // caller owns the range, so no other thread or process accesses it now.
            unsafe { std::ptr::write_bytes(self.data.as_ptr().add(off as usize), 0, n as usize) };
            pos = pos.wrapping_add(n);
        }
    }

    #[inline(always)]
    fn hdr(&self) -> &SpscHeader {
        // SAFETY: `from_raw`'s contract: the control block is mapped for our lifetime and
        // consists of atomics only, so shared references to it are sound even while
        // other processes modify it.
        unsafe { self.hdr.as_ref() }
    }

    /// Data capacity in bytes.
    #[allow(dead_code)] // part of the ring API; used by benches and the queue overflow path
    pub(crate) fn capacity(&self) -> u64 {
        self.cap
    }

    /// Largest record (header included) written whole; larger messages are streamed.
    #[inline(always)]
    pub(crate) fn max_record(&self) -> u64 {
        self.cap / 4
    }

    // ------------------------------------------------------------------ writer side

    /// Becomes the ring's writer: the biased fast path, else the slow path (revoking a
    /// bias, or taking the shared lock). `abort` is consulted while waiting.
    #[inline]
    pub(crate) fn acquire_writer(
        &self,
        deadline: Option<Instant>,
        abort: impl FnMut() -> bool,
    ) -> Result<WriteGuard<'_>, Wait> {
        let me = my_token();
        let own = &self.hdr().own;
        if own.owner.load(Ordering::Relaxed) == me {
            own.in_send.store(1, Ordering::Relaxed);
            // Fast side of the asymmetric barrier; the revoker issues membarrier.
            light_fence();
            if own.owner.load(Ordering::Acquire) == me {
                return Ok(WriteGuard {
                    ring: self,
                    mode: Mode::Biased,
                });
            }
            own.in_send.store(0, Ordering::Release);
        }
        self.acquire_writer_slow(me, deadline, abort)
    }

    /// The writer's slow path: takes the role, then repairs what a writer that died
    /// inside a send may have left: records it published but did not count in `tail`
    /// ([`Spsc::repair_tail`]), and bytes it wrote into free space
    /// ([`Spsc::zero_free_space`], only after such a death).
    #[cold]
    fn acquire_writer_slow(
        &self,
        me: u64,
        deadline: Option<Instant>,
        abort: impl FnMut() -> bool,
    ) -> Result<WriteGuard<'_>, Wait> {
        let g = self.take_writer_role(me, deadline, abort)?;
        self.repair_tail(&g);
        let own = &self.hdr().own;
        if own.dirty.load(Ordering::Acquire) != 0 {
            self.zero_free_space(&g);
            own.dirty.store(0, Ordering::Release);
        }
        Ok(g)
    }

    fn take_writer_role(
        &self,
        me: u64,
        deadline: Option<Instant>,
        mut abort: impl FnMut() -> bool,
    ) -> Result<WriteGuard<'_>, Wait> {
        let own = &self.hdr().own;
        let my_pid = (me >> 32) as u32;
        loop {
            let o = own.owner.load(Ordering::Acquire);
            if o == 0 {
                if own
                    .owner
                    .compare_exchange(0, me, Ordering::AcqRel, Ordering::Relaxed)
                    .is_ok()
                {
                    own.in_send.store(1, Ordering::Relaxed);
                    light_fence();
                    if own.owner.load(Ordering::Acquire) == me {
                        return Ok(WriteGuard {
                            ring: self,
                            mode: Mode::Biased,
                        });
                    }
                    own.in_send.store(0, Ordering::Release);
                }
                continue;
            }
            if o == me {
                own.in_send.store(1, Ordering::Relaxed);
                light_fence();
                if own.owner.load(Ordering::Acquire) == me {
                    return Ok(WriteGuard {
                        ring: self,
                        mode: Mode::Biased,
                    });
                }
                own.in_send.store(0, Ordering::Release);
                continue;
            }
            if o & SHARED == 0 {
                // Biased to another thread: revoke, then wait for its send in flight.
                if own
                    .owner
                    .compare_exchange(o, SHARED, Ordering::AcqRel, Ordering::Relaxed)
                    .is_ok()
                {
                    crate::sys::membarrier_global();
                    crate::sync::atomic::fence(Ordering::SeqCst);
                    let holder = (o >> 32) as u32;
                    let mut spins = 0u32;
                    // Pairs with the Release store of `in_send = 0` in WriteGuard::drop.
                    while own.in_send.load(Ordering::Acquire) != 0 {
                        if !crate::sys::pid_running(holder) {
                            // It died inside a send: whoever writes next cleans up.
                            own.dirty.store(1, Ordering::Release);
                            own.in_send.store(0, Ordering::Release);
                            break;
                        }
                        spins += 1;
                        if spins < 100 {
                            std::thread::yield_now();
                        } else {
                            std::thread::sleep(std::time::Duration::from_micros(200));
                        }
                    }
                }
                continue;
            }
            // Shared mode: a futex lock holding the owner's pid.
            if own
                .lock
                .compare_exchange(0, my_pid, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
            {
                return Ok(WriteGuard {
                    ring: self,
                    mode: Mode::Shared,
                });
            }
            let mut stolen = false;
            let r = own.lock_wait.wait_until(
                deadline,
                || own.lock.load(Ordering::Relaxed) == 0,
                || {
                    let holder = own.lock.load(Ordering::Relaxed);
                    if holder != 0 && !crate::sys::pid_running(holder) {
                        stolen = own
                            .lock
                            .compare_exchange(holder, my_pid, Ordering::Acquire, Ordering::Relaxed)
                            .is_ok();
                        if stolen {
                            // The lock is held only inside a send: clean up after it.
                            own.dirty.store(1, Ordering::Release);
                        }
                        return stolen;
                    }
                    abort()
                },
            );
            if stolen {
                return Ok(WriteGuard {
                    ring: self,
                    mode: Mode::Shared,
                });
            }
            if r != Wait::Ready {
                return Err(r);
            }
        }
    }

    /// Contiguous free bytes at the tail (padding over the end of the ring first when
    /// `need` does not fit before it), or `None` when fewer than `need` are free now.
    /// `need` is a multiple of 8 and at most [`Spsc::max_record`].
    #[inline]
    pub(crate) fn reserve(&self, g: &WriteGuard<'_>, need: u64) -> Option<(u64, u64)> {
        let w = &self.hdr().w;
        let before = w.tail.load(Ordering::Relaxed);
        let mut tail = before;
        let slot = self.reserve_at(g, &mut tail, need);
        if tail != before {
            // Publish the pad; pairs with the reader's Acquire load of `tail`.
            w.tail.store(tail, Ordering::Release);
        }
        slot
    }

    /// [`Spsc::reserve`] for a batch: `tail` is the writer's copy of the tail (from
    /// [`Spsc::batch_tail`]), stored by [`Spsc::commit_at`] and [`Spsc::publish`].
    /// Records (and padding) are visible to the reader as soon as their headers are.
    #[inline(always)]
    pub(crate) fn reserve_at(
        &self,
        _g: &WriteGuard<'_>,
        tail: &mut u64,
        need: u64,
    ) -> Option<(u64, u64)> {
        debug_assert!(need % 8 == 0 && need <= self.max_record());
        let w = &self.hdr().w;
        let mut head = w.cached_head.load(Ordering::Relaxed);
        // Masked to a word: `tail` is shared memory, and a scribbling peer must not make
        // the writer form a misaligned header word (the reader reports the garbage
        // counter, `Spsc::counters_sane`).
        let mut off = *tail & (self.cap - 8);
        let mut to_end = self.cap - off;
        let total = if need <= to_end { need } else { to_end + need };
        if tail.wrapping_add(total).wrapping_sub(head) > self.cap {
            // Pairs with the reader's Release store of `head`: the bytes it consumed are free.
            head = self.hdr().r.head.load(Ordering::Acquire);
            w.cached_head.store(head, Ordering::Relaxed);
            if tail.wrapping_add(total).wrapping_sub(head) > self.cap {
                return None;
            }
        }
        if need > to_end {
            // [off, cap) is free (checked above). Pairs with the reader's Acquire load.
            self.word(off).store(
                header_word(RecKind::Pad, to_end - REC_HDR),
                Ordering::Release,
            );
            *tail = tail.wrapping_add(to_end);
            off = 0;
            to_end = self.cap;
        }
        let free = self.cap - tail.wrapping_sub(head);
        Some((off, free.min(to_end)))
    }

    /// The published tail, where a batch starts.
    #[inline(always)]
    pub(crate) fn batch_tail(&self, _g: &WriteGuard<'_>) -> u64 {
        self.hdr().w.tail.load(Ordering::Relaxed)
    }

    /// Publishes a batched record whose payload is already at `off + REC_HDR` (within a
    /// window from [`Spsc::reserve_at`]) and advances `tail` past it, the private copy
    /// and the shared one (a store to the writer's own line: the reader never reads it
    /// on its fast path, but checks on an empty ring that it is within a ring of its
    /// position, `Spsc::counters_sane`). The wake-up waits for [`Spsc::publish`].
    #[inline(always)]
    pub(crate) fn commit_at(
        &self,
        _g: &WriteGuard<'_>,
        tail: &mut u64,
        off: u64,
        kind: RecKind,
        len: u64,
    ) {
        *tail = tail.wrapping_add(self.publish_record(off, kind, len));
        self.hdr().w.tail.store(*tail, Ordering::Release);
    }

    /// [`Spsc::commit_at`] for a tiny record: the low `len <= TINY_MAX` bytes of
    /// `bytes` (whose other bytes are zero), written with one store at `off`, which
    /// [`Spsc::reserve_at`] returned.
    #[inline(always)]
    pub(crate) fn commit_tiny_at(
        &self,
        _g: &WriteGuard<'_>,
        tail: &mut u64,
        off: u64,
        bytes: u64,
        len: u64,
    ) {
        // Pairs with the reader's Acquire load of the word at `read`.
        self.word(off)
            .store(tiny_word(bytes, len), Ordering::Release);
        *tail = tail.wrapping_add(REC_HDR);
        self.hdr().w.tail.store(*tail, Ordering::Release);
    }

    /// Ends a batch: stores its `tail` if padding moved it, and wakes the reader if it
    /// sleeps.
    #[inline]
    pub(crate) fn publish(&self, _g: &WriteGuard<'_>, tail: u64) {
        let w = &self.hdr().w;
        if w.tail.load(Ordering::Relaxed) != tail {
            w.tail.store(tail, Ordering::Release);
        }
        self.hdr().readable.wake_all();
    }

    /// Waits until `need` bytes can be reserved at the private `tail` of a batch (the
    /// caller published everything before it first, or the reader could not free room).
    pub(crate) fn wait_writable_at(
        &self,
        g: &WriteGuard<'_>,
        tail: &mut u64,
        need: u64,
        deadline: Option<Instant>,
        abort: impl FnMut() -> bool,
    ) -> Result<(u64, u64), Wait> {
        let mut slot = None;
        let mut t = *tail;
        let r = self.hdr().writable.wait_until(
            deadline,
            || {
                t = *tail;
                slot = self.reserve_at(g, &mut t, need);
                slot.is_some()
            },
            abort,
        );
        match (r, slot) {
            (Wait::Ready, Some(s)) => {
                *tail = t;
                Ok(s)
            }
            (Wait::Ready, None) => Err(Wait::Aborted),
            (r, _) => Err(r),
        }
    }

    /// Refreshes the cached head (when a guess of the free space was too small).
    #[allow(dead_code)] // part of the ring API; used by benches and the queue overflow path
    pub(crate) fn refresh_head(&self, _g: &WriteGuard<'_>) {
        let head = self.hdr().r.head.load(Ordering::Acquire);
        self.hdr().w.cached_head.store(head, Ordering::Relaxed);
    }

    /// Raw pointer to data offset `off`, for an encoder writing a record's payload at
    /// `off + REC_HDR` within a window returned by [`Spsc::reserve`].
    #[inline(always)]
    pub(crate) fn data_ptr(&self, _g: &WriteGuard<'_>, off: u64) -> *mut u8 {
        debug_assert!(off <= self.cap);
        // SAFETY: off <= cap, so the pointer is within (or one past) the data area.
        unsafe { self.data.as_ptr().add(off as usize) }
    }

    /// Publishes the record of `kind` whose payload (`len` bytes) is written at
    /// `off + REC_HDR`, within a reserved window: a whole message of at most
    /// [`TINY_MAX`] bytes becomes a tiny record (its payload moves into the header word,
    /// and the word it was written to is zeroed again), anything else gets its header.
    /// The Release store pairs with the reader's Acquire load of the word at `read`.
    /// Returns the space the record occupies.
    #[inline(always)]
    fn publish_record(&self, off: u64, kind: RecKind, len: u64) -> u64 {
        if kind == RecKind::Msg && len <= TINY_MAX {
            // SAFETY: the window holds at least MIN_WINDOW >= 16 bytes from `off`, all
            // the writer's; `off + 8` is 8-aligned (the data area is 128-aligned).
            let payload = unsafe {
                let p = self
                    .data
                    .as_ptr()
                    .add((off + REC_HDR) as usize)
                    .cast::<u64>();
                let v = p.read();
                p.write(0);
                v
            };
            // Masked: the bytes past the message are free space, zero unless a peer
            // scribbled there.
            let payload = payload & ((1 << (8 * len)) - 1);
            self.word(off)
                .store(tiny_word(payload, len), Ordering::Release);
            REC_HDR
        } else {
            self.word(off)
                .store(header_word(kind, len), Ordering::Release);
            record_size(len)
        }
    }

    /// Publishes a record whose payload (`len` bytes) was already written at
    /// `off + REC_HDR`, within a window from [`Spsc::reserve`], stores `tail` past it and
    /// wakes the reader if it sleeps.
    #[inline(always)]
    pub(crate) fn commit(&self, _g: &WriteGuard<'_>, off: u64, kind: RecKind, len: u64) {
        let size = self.publish_record(off, kind, len);
        self.advance_tail(size);
    }

    /// Writes a whole message of at most [`TINY_MAX`] bytes, the low `len` bytes of
    /// `bytes` (whose other bytes are zero), as a tiny record if there is room now (one
    /// store). False (nothing written) when the ring has no room.
    #[inline(always)]
    pub(crate) fn try_write_tiny(&self, g: &WriteGuard<'_>, bytes: u64, len: u64) -> bool {
        let Some((off, _)) = self.reserve(g, REC_HDR) else {
            return false;
        };
        // Pairs with the reader's Acquire load of the word at `read`.
        self.word(off)
            .store(tiny_word(bytes, len), Ordering::Release);
        self.advance_tail(REC_HDR);
        true
    }

    /// After publishing a record of `size` bytes at `tail`: stores `tail` past it (for
    /// the writer who may come next; the reader does not need it) and wakes the reader
    /// if it sleeps.
    #[inline(always)]
    fn advance_tail(&self, size: u64) {
        let w = &self.hdr().w;
        // `tail` is where the record was reserved unless another process scribbled over
        // it meanwhile (the hostile-peer tests do); not asserted: input from another
        // process must never panic the library, not even in a debug build.
        let tail = w.tail.load(Ordering::Relaxed);
        w.tail.store(tail.wrapping_add(size), Ordering::Release);
        self.hdr().readable.wake_all();
    }

    /// Writes a whole message of at most 64 bytes, already encoded, if there is room
    /// now: one store of a tiny record, or a copy and its header. False (nothing
    /// written) when the ring has no room; the caller then waits on the general path.
    #[inline(always)]
    pub(crate) fn try_write_small(&self, g: &WriteGuard<'_>, bytes: &[u8]) -> bool {
        let len = bytes.len() as u64;
        debug_assert!(len <= 64);
        if len <= TINY_MAX {
            let mut w = [0u8; 8];
            w[..bytes.len()].copy_from_slice(bytes);
            return self.try_write_tiny(g, u64::from_le_bytes(w), len);
        }
        let size = record_size(len);
        let Some((off, _)) = self.reserve(g, size) else {
            return false;
        };
        // SAFETY: `reserve` gave at least `size` free bytes at `off`, so the payload
        // [off + 8, off + 8 + len) is the writer's; the source is a caller's slice, not
        // shared memory.
        unsafe {
            copy_bytes(
                bytes.as_ptr(),
                self.data.as_ptr().add((off + REC_HDR) as usize),
                bytes.len(),
            )
        };
        // Pairs with the reader's Acquire load of the word at `read`.
        self.word(off)
            .store(header_word(RecKind::Msg, len), Ordering::Release);
        self.advance_tail(size);
        true
    }

    /// Publishes the record a sink from [`Spsc::sink`] at `off` wrote (as
    /// [`Spsc::commit`]).
    #[inline(always)]
    pub(crate) fn commit_sink(
        &self,
        g: &WriteGuard<'_>,
        off: u64,
        kind: RecKind,
        sink: RawSink<'_>,
    ) {
        let len = sink.keep();
        self.commit(g, off, kind, len);
    }

    /// [`Spsc::commit_at`] for the record a sink wrote.
    #[inline(always)]
    pub(crate) fn commit_sink_at(
        &self,
        g: &WriteGuard<'_>,
        tail: &mut u64,
        off: u64,
        kind: RecKind,
        sink: RawSink<'_>,
    ) {
        let len = sink.keep();
        self.commit_at(g, tail, off, kind, len);
    }

    /// Walks `tail` past records a writer published but died before counting in `tail`
    /// (it stores the header first), so that the writer taking over does not overwrite
    /// what the reader may be reading. One load when there is nothing to repair.
    fn repair_tail(&self, _g: &WriteGuard<'_>) {
        let w = &self.hdr().w;
        let start = w.tail.load(Ordering::Acquire);
        let mut tail = start;
        let head = self.hdr().r.head.load(Ordering::Acquire);
        // Stop at zero (free space) or at anything that is not a well-formed record (a
        // scribbling peer's doing, which the reader reports); at most a ring's worth.
        while tail.wrapping_sub(head) < self.cap {
            let off = tail & (self.cap - 8);
            let word = self.word(off).load(Ordering::Acquire);
            let size = match parse_header(word) {
                Some((RecKind::Pad, _)) => self.cap - off,
                Some(_) if tiny_len(word).is_some() => REC_HDR,
                Some((_, len)) if record_size(len) <= self.cap - off => record_size(len),
                _ => break,
            };
            tail = tail.wrapping_add(size);
        }
        if tail != start {
            w.tail.store(tail, Ordering::Release);
        }
    }

    /// Zeroes the free space after a writer died inside a send (it may have written
    /// payload it never published), restoring the invariant the reader relies on. The
    /// word at `tail` itself is left alone: the reader may be polling it, and no writer
    /// writes it before publishing.
    fn zero_free_space(&self, _g: &WriteGuard<'_>) {
        let tail = self.hdr().w.tail.load(Ordering::Acquire);
        let head = self.hdr().r.head.load(Ordering::Acquire);
        let used = tail.wrapping_sub(head);
        if used % 8 != 0 || used >= self.cap - 8 {
            return; // full, or garbage counters (a scribbling peer): nothing safe to do
        }
        let from = (tail & !7).wrapping_add(8);
        let to = head.wrapping_add(self.cap) & !7;
        // zero_range zeroes whole words from `from`; skip a stray word at the wrap.
        if from != to {
            self.zero_range(from, to);
        }
    }

    /// Copies `parts` (concatenated, `len` bytes in all) as one record of `kind`,
    /// waiting for room until `deadline`. `len + REC_HDR` fits in a max record.
    pub(crate) fn write_record(
        &self,
        g: &WriteGuard<'_>,
        kind: RecKind,
        parts: &[&[u8]],
        deadline: Option<Instant>,
        mut abort: impl FnMut() -> bool,
    ) -> Result<(), Wait> {
        let len: u64 = parts.iter().map(|p| p.len() as u64).sum();
        let need = record_size(len);
        let mut slot = self.reserve(g, need);
        if slot.is_none() {
            let r = self.hdr().writable.wait_until(
                deadline,
                || {
                    slot = self.reserve(g, need);
                    slot.is_some()
                },
                &mut abort,
            );
            if r != Wait::Ready {
                return Err(r);
            }
        }
        let (off, _) = slot.expect("reserved");
        let mut p = self.data_ptr(g, off + REC_HDR);
        for part in parts {
            // SAFETY: the reserved window holds `need >= REC_HDR + len` bytes from `off`;
            // the source is a local slice that cannot overlap shared memory we own.
            unsafe {
                std::ptr::copy_nonoverlapping(part.as_ptr(), p, part.len());
                p = p.add(part.len());
            }
        }
        self.commit(g, off, kind, len);
        Ok(())
    }

    /// Waits until `need` bytes can be reserved (for encoders that reserve themselves).
    #[allow(dead_code)] // part of the ring API; used by benches and the queue overflow path
    pub(crate) fn wait_writable(
        &self,
        g: &WriteGuard<'_>,
        need: u64,
        deadline: Option<Instant>,
        abort: impl FnMut() -> bool,
    ) -> Result<(u64, u64), Wait> {
        let mut slot = None;
        let r = self.hdr().writable.wait_until(
            deadline,
            || {
                slot = self.reserve(g, need);
                slot.is_some()
            },
            abort,
        );
        match (r, slot) {
            (Wait::Ready, Some(s)) => Ok(s),
            (Wait::Ready, None) => Err(Wait::Aborted),
            (r, _) => Err(r),
        }
    }

    /// Bytes free for the writer right now (reloads the reader's counter).
    pub(crate) fn free_bytes(&self) -> u64 {
        let tail = self.hdr().w.tail.load(Ordering::Acquire);
        let head = self.hdr().r.head.load(Ordering::Acquire);
        self.cap.saturating_sub(tail.wrapping_sub(head))
    }

    /// Wakes the reader unconditionally (when the writer side goes away).
    pub(crate) fn wake_reader(&self) {
        crate::sync::atomic::fence(Ordering::SeqCst);
        self.hdr().readable.wake_all();
    }

    /// Wakes a writer waiting for room (when the reader side goes away).
    pub(crate) fn wake_writer(&self) {
        crate::sync::atomic::fence(Ordering::SeqCst);
        self.hdr().writable.wake_all();
        self.hdr().own.lock_wait.wake_all();
    }

    /// The waiter a reader parks on (and `wait()` arms): the writer wakes it on publish.
    pub(crate) fn readable_waiter(&self) -> &Waiter {
        &self.hdr().readable
    }

    /// Waits for room for `need` bytes without holding the writer role (try/timeout
    /// paths use it before acquiring).
    #[allow(dead_code)] // part of the ring API; used by benches and the queue overflow path
    pub(crate) fn writable_waiter(&self) -> &Waiter {
        &self.hdr().writable
    }

    /// A raw byte sink over `[off + REC_HDR, off + REC_HDR + max)`, for an encoder to
    /// write a record's payload in place. `off` and `max` come from [`Spsc::reserve`]
    /// (`max <= window - REC_HDR`).
    #[inline(always)]
    pub(crate) fn sink<'g>(&'g self, g: &'g WriteGuard<'_>, off: u64, max: u64) -> RawSink<'g> {
        debug_assert!(off + REC_HDR + max <= self.cap);
        RawSink {
            ptr: self.data_ptr(g, off + REC_HDR),
            cap: max as usize,
            pos: 0,
            _g: std::marker::PhantomData,
        }
    }

    /// Counts a dropped reader end (see `reader_drops`).
    pub(crate) fn note_reader_drop(&self) {
        self.hdr().own.reader_drops.fetch_add(1, Ordering::Release);
    }

    /// The reader-drop counter.
    #[inline(always)]
    pub(crate) fn reader_drops(&self) -> u32 {
        self.hdr().own.reader_drops.load(Ordering::Relaxed)
    }

    /// The reader's `head` as it stands (only readers store it): a writer that sees it
    /// move knows a reader was alive since it last looked.
    pub(crate) fn reader_head(&self) -> u64 {
        self.hdr().r.head.load(Ordering::Relaxed)
    }

    // ------------------------------------------------------------------ reader side

    /// The next record, skipping padding; `Ok(None)` when the ring is empty (having
    /// handed back everything consumed, [`Spsc::flush_released`]). The header is
    /// validated against the ring's bounds.
    #[inline]
    pub(crate) fn peek(&self) -> Result<Option<Record>, ProtocolError> {
        loop {
            let Some(Head { pos, off, word }) = self.head_word() else {
                self.flush_released();
                return Ok(None);
            };
            let (kind, len) = parse_header(word).ok_or(ProtocolError::BadRecord)?;
            let to_end = self.cap - off;
            if kind == RecKind::Pad {
                // A pad runs to the end of the ring; and none starts at offset 0 (a
                // record always fits there), so this loop turns at most twice, whatever
                // a peer wrote (a pad at 0 would otherwise be found again and again when
                // a garbage `head` keeps it from being zeroed).
                if len != to_end - REC_HDR || off == 0 {
                    return Err(ProtocolError::BadRecord);
                }
                self.release(pos.wrapping_add(to_end));
                continue;
            }
            let rec = Record {
                kind,
                len,
                off,
                pos,
                word,
            };
            if !self.record_fits(rec.size(), off) {
                return Err(ProtocolError::BadRecord);
            }
            return Ok(Some(rec));
        }
    }

    /// The reader's fast path for the common record: a whole message (`MSG`, or tiny)
    /// of at most `N` payload bytes at the head. Copies its payload into `out`, consumes
    /// the record and returns the payload length. `None` when the ring is empty or the
    /// head holds anything else (padding, a piece of a stream, a larger message, a bad
    /// header): the caller then takes the general path ([`Spsc::peek`]), which handles
    /// or reports it.
    #[inline(always)]
    pub(crate) fn take_small<const N: usize>(&self, out: &mut [u8; N]) -> Option<usize> {
        const { assert!(N % 8 == 0 && N >= 8) };
        let Head { pos, off, word } = self.head_word()?;
        if word >> 56 == TINY_TAG {
            let len = (word >> 48) & 0xFF;
            if len > TINY_MAX {
                return None; // a bad header: `peek` reports it
            }
            out[..8].copy_from_slice(&word.to_le_bytes());
            self.release_tiny(pos, off);
            return Some(len as usize);
        }
        let len = word & 0xFFFF_FFFF;
        if (word >> 32) as u32 != RecKind::Msg.tag() || len > N as u64 {
            return None;
        }
        let size = record_size(len);
        if !self.record_fits(size, off) {
            return None;
        }
        // SAFETY: the payload [off + 8, off + 8 + align8(len)) lies inside the record,
        // which was just checked to be inside the data area, and published (its header
        // was Acquire-loaded): the reader owns it until it hands it back below;
        // align8(len) <= N because N is a multiple of 8; `out` is a local array that
        // cannot overlap shared memory.
        unsafe {
            let src = self.data.as_ptr().add((off + REC_HDR) as usize);
            copy_bytes(src, out.as_mut_ptr(), align8(len) as usize);
        }
        self.release(pos.wrapping_add(size));
        Some(len as usize)
    }

    /// The word at the reader's position, `None` when it is zero (nothing published
    /// there yet). Shared by [`Spsc::peek`] and [`Spsc::take_small`].
    #[inline(always)]
    fn head_word(&self) -> Option<Head> {
        let pos = self.hdr().r.read.load(Ordering::Relaxed);
        // Masking keeps the offset 8-aligned and in bounds whatever `read` holds (a peer
        // may scribble over it; garbage then fails the callers' checks).
        let off = pos & (self.cap - 8);
        // Pairs with the writer's Release store of the record's header.
        let word = self.word(off).load(Ordering::Acquire);
        if word == 0 {
            return None;
        }
        Some(Head {
            pos: pos & !7,
            off,
            word,
        })
    }

    /// Consumes a record ending at `end`: moves `read` past it, then hands back to the
    /// writer, zeroed, every whole [`RELEASE_BLOCK`] the reader has finished with.
    ///
    /// Zeroing each record as it is consumed would have both cores *write* the same
    /// line alternately when the reader is at the writer's heels (the next record shares
    /// it); measured, that made 16-256 byte messages 1.5-2x slower than reading alone.
    /// So the reader zeroes and releases only blocks it has left behind: `head` lags
    /// `read` by less than a block (at most a quarter of the ring, so a writer always
    /// finds room for a record once everything is read), and the rest is handed back
    /// when the reader finds the ring empty ([`Spsc::flush_released`]). A reader that
    /// died inside a receive leaves a longer lag, which the next release zeroes all the
    /// same.
    #[inline(always)]
    fn release(&self, end: u64) {
        let r = &self.hdr().r;
        r.read.store(end, Ordering::Relaxed);
        let block = end & !(RELEASE_BLOCK.min(self.cap / 4) - 1);
        let head = r.head.load(Ordering::Relaxed);
        if block != head && (block.wrapping_sub(head) as i64) > 0 {
            self.release_to(head, block);
        }
    }

    /// Consumes the tiny record at position `pos` (offset `off`). When nothing before it
    /// is kept back (`head == pos`), its one word is zeroed and handed back at once: a
    /// stream of tiny records then moves `head` with every message, which measured
    /// 15-25% faster on the seed's experiment than a block at a time (the line holds
    /// eight records, and the writer finds its next word already free). Otherwise, as
    /// [`Spsc::release`].
    #[inline(always)]
    fn release_tiny(&self, pos: u64, off: u64) {
        let r = &self.hdr().r;
        let end = pos.wrapping_add(REC_HDR);
        if r.head.load(Ordering::Relaxed) != pos {
            return self.release(end);
        }
        r.read.store(end, Ordering::Relaxed);
        self.word(off).store(0, Ordering::Relaxed);
        // Pairs with the writer's Acquire load of `head` in `reserve`.
        r.head.store(end, Ordering::Release);
        self.hdr().writable.wake_all();
    }

    /// Zeroes `[head, to)` and hands it back to the writer, waking it if it waits.
    /// Nothing if the counters are garbage (a peer scribbled over them): the reader
    /// reports that when it finds the ring empty ([`Spsc::counters_sane`]).
    #[inline(never)]
    fn release_to(&self, head: u64, to: u64) {
        let gap = to.wrapping_sub(head);
        if gap > self.cap || gap % 8 != 0 {
            return;
        }
        self.zero_range(head, to);
        // Pairs with the writer's Acquire load of `head` in `reserve`: the space, zeroed,
        // is the writer's again.
        self.hdr().r.head.store(to, Ordering::Release);
        self.hdr().writable.wake_all();
    }

    /// Hands back everything the reader has consumed (the part of a line it had kept),
    /// when it finds the ring empty: a writer waiting for room is never left waiting on
    /// a reader waiting for data.
    #[inline]
    pub(crate) fn flush_released(&self) {
        let r = &self.hdr().r;
        let read = r.read.load(Ordering::Relaxed) & !7;
        let head = r.head.load(Ordering::Relaxed);
        if read != head {
            self.release_to(head, read);
        }
    }

    /// Whether a record of `size` bytes (header included) at offset `off` lies inside
    /// the data area and within a record's size.
    #[inline(always)]
    fn record_fits(&self, size: u64, off: u64) -> bool {
        size <= self.cap - off && size <= self.max_record().max(REC_HDR * 2)
    }

    /// Appends bytes `[from, from + n)` of the record's payload to `out`.
    #[inline]
    pub(crate) fn read_into(&self, rec: &Record, from: u64, n: u64, out: &mut Vec<u8>) {
        assert!(from + n <= rec.len, "read past the record");
        if tiny_len(rec.word).is_some() {
            out.extend_from_slice(&rec.word.to_le_bytes()[from as usize..(from + n) as usize]);
            return;
        }
        out.reserve(n as usize);
        let dst_len = out.len();
        // SAFETY: the record was validated by `peek`: [off+8, off+8+len) lies inside the
        // data area, and it is published: the reader owns it until `consume`. The
        // destination has `n` bytes of spare capacity (reserved above).
        unsafe {
            let src = self.data.as_ptr().add((rec.off + REC_HDR + from) as usize);
            copy_bytes(src, out.as_mut_ptr().add(dst_len), n as usize);
            out.set_len(dst_len + n as usize);
        }
    }

    /// Reads the first 8 payload bytes of a record as a u64 (a `BEGIN`'s total).
    pub(crate) fn read_u64(&self, rec: &Record) -> Option<u64> {
        if rec.len < 8 {
            return None;
        }
        // SAFETY: validated record with at least 8 payload bytes, 8-aligned.
        Some(unsafe {
            self.data
                .as_ptr()
                .add((rec.off + REC_HDR) as usize)
                .cast::<u64>()
                .read()
        })
    }

    /// Consumes a record: zeroes it and hands its space back to the writer, waking it
    /// if it waits for room.
    #[inline]
    pub(crate) fn consume(&self, rec: &Record) {
        let size = rec.size();
        self.release(rec.pos.wrapping_add(size));
    }

    /// Waits until a record (or padding) is published, `deadline` passes or `abort`,
    /// watching the word at the reader's position (never the writer's `tail` line).
    ///
    /// `pace` says how this reader's last wait went: the number of looks it took (see
    /// the return value). A reader whose last wait ended at the first or second look is
    /// streaming right at the writer's heels, and each look pulls the line the writer
    /// is writing away from it; so it first pauses for [`HEELS_PAUSE`] spin hints,
    /// letting the writer run a few records ahead (records of 24 to 104 bytes, which
    /// straddle cache lines, went 3x slower without it). A reader whose messages arrive
    /// further apart (ping-pong, a quiet channel) looks at once, so latency is
    /// unchanged. (Watching `tail` instead after a larger record, which the writer
    /// writes with several stores, measured no better.) Returns the outcome and the
    /// number of looks taken.
    pub(crate) fn wait_readable(
        &self,
        deadline: Option<Instant>,
        abort: impl FnMut() -> bool,
        pace: u32,
    ) -> (Wait, u32) {
        if pace <= 2 {
            for _ in 0..HEELS_PAUSE {
                std::hint::spin_loop();
            }
        }
        let mut looks = 0u32;
        let outcome = self.hdr().readable.wait_until(
            deadline,
            || {
                looks = looks.saturating_add(1);
                self.has_data()
            },
            abort,
        );
        (outcome, looks)
    }

    /// Whether the counters are ones the two sides could have left: all 8-aligned,
    /// `tail` within a ring of the reader's position on either side (the reader may run
    /// ahead of `tail` by what was published but not yet counted), `head` at most a ring
    /// behind it. The reader's fast path needs neither `tail` nor `head`, so it checks
    /// them when it finds nothing to read: a peer that scribbled over them (a garbage
    /// `head` makes the ring look full to the writer) gets a protocol error rather than
    /// a reader that waits forever.
    pub(crate) fn counters_sane(&self) -> bool {
        let tail = self.hdr().w.tail.load(Ordering::Relaxed);
        let read = self.hdr().r.read.load(Ordering::Relaxed);
        let head = self.hdr().r.head.load(Ordering::Relaxed);
        (tail | read | head) % 8 == 0
            && (tail.wrapping_sub(read) <= self.cap || read.wrapping_sub(tail) <= self.cap)
            && read.wrapping_sub(head) <= self.cap
    }

    /// Whether anything is published and unread.
    #[inline]
    pub(crate) fn has_data(&self) -> bool {
        self.head_word().is_some()
    }
}

/// The ring at byte `offset` of a region's payload. The region must outlive the ring
/// (callers keep both in one struct).
pub(crate) fn ring_in_region(
    region: &crate::region::Region,
    offset: usize,
    cap: u64,
) -> crate::Result<Spsc> {
    let end = offset.checked_add(Spsc::memory_size(cap));
    if !Spsc::valid_capacity(cap)
        || offset % 128 != 0
        || end.is_none_or(|e| e > region.payload_len())
    {
        return Err(crate::error::RegionError::Corrupt.into());
    }
    // SAFETY: the payload is 128-aligned and `offset` is a multiple of 128; the ring's
    // `memory_size(cap)` bytes lie inside the validated payload (checked above), which
    // stays mapped while the region lives; zeroed or previously initialized memory is
    // a valid ring of this capacity (the capacity comes from the checksummed header).
    Ok(unsafe { Spsc::from_raw(region.payload().add(offset), cap) })
}

/// A ring in memory of its own on the heap (the fuzz target, the property tests, unit
/// tests), starting from `image`: a control block and data bytes in any state,
/// zero-padded to the ring's size.
pub(crate) struct HeapRing {
    // Declared first, so dropped before the memory it points into.
    ring: Spsc,
    /// Owns the memory `ring` points into (read directly only by tests).
    #[cfg_attr(not(test), allow(dead_code))]
    mem: Vec<Line>,
}

/// 128 bytes, 128-aligned: the unit of a [`HeapRing`]'s memory.
#[repr(C, align(128))]
struct Line([u8; 128]);

impl HeapRing {
    /// A ring of `cap` data bytes holding `image`; `None` if `cap` is not a valid
    /// capacity.
    pub(crate) fn new(cap: u64, image: &[u8]) -> Option<HeapRing> {
        if !Spsc::valid_capacity(cap) {
            return None;
        }
        let size = Spsc::memory_size(cap);
        let mut mem: Vec<Line> = (0..size.div_ceil(128)).map(|_| Line([0; 128])).collect();
        for (i, b) in image.iter().take(size).enumerate() {
            mem[i / 128].0[i % 128] = *b;
        }
        let base = NonNull::new(mem.as_mut_ptr().cast::<u8>()).expect("vec pointer");
        // SAFETY: the vector's buffer is 128-aligned (Line's alignment), holds
        // memory_size(cap) bytes (rounded up to whole lines), never moves (the vector is
        // not resized) and outlives `ring` (dropped first); any byte pattern is a ring
        // state the reader must survive.
        let ring = unsafe { Spsc::from_raw(base, cap) };
        Some(HeapRing { ring, mem })
    }

    /// The ring.
    pub(crate) fn ring(&self) -> &Spsc {
        &self.ring
    }

    /// A copy of data bytes `[from, from + n)` (panics outside the data area).
    #[cfg(test)]
    pub(crate) fn data(&self, from: usize, n: usize) -> Vec<u8> {
        assert!(from + n <= self.ring.cap as usize, "outside the data area");
        let bytes = self.mem.as_ptr().cast::<u8>();
        // SAFETY: [CONTROL_SIZE + from, + n) lies inside the memory (checked above); the
        // caller holds no writer guard or sink writing these bytes concurrently (tests
        // read what a finished encode wrote).
        unsafe { std::slice::from_raw_parts(bytes.add(CONTROL_SIZE + from), n).to_vec() }
    }
}

/// Reads every record of a ring image — a control block followed by `cap` data bytes,
/// in whatever state another process may have left them — as the receiving side does,
/// returning the number of payload bytes read or the first protocol error. Used by the
/// fuzz target and the property tests; `image` shorter than the ring is zero-padded.
pub(crate) fn decode_image(image: &[u8], cap: u64) -> Result<u64, ProtocolError> {
    if cap > 1 << 20 {
        return Err(ProtocolError::BadRecord);
    }
    let heap = HeapRing::new(cap, image).ok_or(ProtocolError::BadRecord)?;
    let ring = heap.ring();
    let mut bytes = 0;
    let mut out = Vec::new();
    let mut small = [0u8; 64];
    // Every record or pad consumes at least 8 bytes of at most `cap` published ones.
    for i in 0..=cap / 8 {
        // Every other record through the receiver's fast path, as `recv` does first.
        if i % 2 == 0 {
            if let Some(n) = ring.take_small(&mut small) {
                bytes += n as u64;
                continue;
            }
        }
        match ring.peek()? {
            None => return Ok(bytes),
            Some(rec) => {
                out.clear();
                ring.read_into(&rec, 0, rec.len, &mut out);
                if rec.kind == RecKind::Begin {
                    let _ = ring.read_u64(&rec);
                }
                bytes += rec.len;
                ring.consume(&rec);
            }
        }
    }
    Err(ProtocolError::BadRecord)
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

/// A bounds-checked byte sink writing into a reserved window of the ring through a raw
/// pointer (no reference to shared memory is ever formed). Dropped without being
/// committed ([`Spsc::commit_sink`]) — the encoder ran out of room or failed, or a
/// `Serialize` panicked — it zeroes what it wrote: free space must stay zero.
pub(crate) struct RawSink<'g> {
    ptr: *mut u8,
    cap: usize,
    pos: usize,
    _g: std::marker::PhantomData<&'g ()>,
}

impl Drop for RawSink<'_> {
    #[inline(always)]
    fn drop(&mut self) {
        if self.pos != 0 {
            self.discard();
        }
    }
}

impl RawSink<'_> {
    #[cold]
    fn discard(&mut self) {
        // SAFETY: [ptr, ptr + pos) is the part of the reserved window this sink wrote,
        // which the writer guard gives this thread alone; it was never published.
        unsafe { std::ptr::write_bytes(self.ptr, 0, self.pos) };
        self.pos = 0;
    }

    /// Hands the written bytes over to be published; returns their number.
    #[inline(always)]
    fn keep(mut self) -> u64 {
        std::mem::replace(&mut self.pos, 0) as u64
    }

    /// Appends one byte; false when the window is full.
    #[inline(always)]
    pub(crate) fn push(&mut self, b: u8) -> bool {
        if self.pos < self.cap {
            // SAFETY: pos < cap, and [ptr, ptr + cap) is the reserved window, which the
            // writer guard gives this thread alone.
            unsafe { self.ptr.add(self.pos).write(b) };
            self.pos += 1;
            true
        } else {
            false
        }
    }

    /// Appends bytes; false (writing nothing) when they do not fit.
    #[inline(always)]
    pub(crate) fn extend(&mut self, bytes: &[u8]) -> bool {
        if bytes.len() <= self.cap - self.pos {
            // SAFETY: the range [pos, pos + len) is inside the reserved window; the
            // source is a local slice and cannot overlap it.
            unsafe { copy_bytes(bytes.as_ptr(), self.ptr.add(self.pos), bytes.len()) };
            self.pos += bytes.len();
            true
        } else {
            false
        }
    }

    /// Appends `v` as a LEB128 varint (7 bits per byte, low first); false (writing
    /// nothing) when it does not fit. One bounds check for the whole varint.
    #[inline(always)]
    pub(crate) fn varint(&mut self, mut v: u64) -> bool {
        if self.cap - self.pos < 10 {
            let mut buf = [0u8; 10];
            let n = crate::codec::write_varint(v, &mut buf);
            return self.extend(&buf[..n]);
        }
        let mut n = 0;
        // SAFETY: a varint of a u64 is at most 10 bytes and at least 10 are left in the
        // reserved window [ptr, ptr + cap), which the writer guard gives this thread
        // alone; `n` stays below 10 in the loop (a u64 has 64 bits, 7 per byte).
        unsafe {
            let p = self.ptr.add(self.pos);
            while v >= 0x80 {
                p.add(n).write(v as u8 | 0x80);
                v >>= 7;
                n += 1;
            }
            p.add(n).write(v as u8);
        }
        self.pos += n + 1;
        true
    }

    /// Bytes written so far.
    #[inline(always)]
    pub(crate) fn written(&self) -> usize {
        self.pos
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[repr(C, align(128))]
    struct Mem([u8; CONTROL_SIZE + 1024]);

    fn ring() -> (Box<Mem>, Spsc) {
        let mut m = Box::new(Mem([0; CONTROL_SIZE + 1024]));
        let base = NonNull::new(m.0.as_mut_ptr()).unwrap();
        // SAFETY: the boxed memory is aligned, zeroed, large enough and outlives the ring
        // (returned together; the test drops the ring first).
        let r = unsafe { Spsc::from_raw(base, 1024) };
        (m, r)
    }

    fn recv_all(r: &Spsc) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        while let Some(rec) = r.peek().unwrap() {
            let mut v = Vec::new();
            r.read_into(&rec, 0, rec.len, &mut v);
            r.consume(&rec);
            out.push(v);
        }
        out
    }

    #[test]
    fn records_round_trip_across_the_wrap() {
        let (_m, r) = ring();
        let mut expect = Vec::new();
        for round in 0..200u32 {
            let msg: Vec<u8> = (0..(round % 61) as u8).collect();
            let g = r.acquire_writer(None, || false).unwrap();
            r.write_record(&g, RecKind::Msg, &[&msg], None, || false)
                .unwrap();
            drop(g);
            expect.push(msg);
            if round % 3 == 0 {
                assert_eq!(recv_all(&r), std::mem::take(&mut expect));
            }
        }
        assert_eq!(recv_all(&r), expect);
    }

    #[test]
    fn full_ring_refuses_without_losing() {
        let (_m, r) = ring();
        let g = r.acquire_writer(None, || false).unwrap();
        let msg = [7u8; 100];
        let mut sent = 0;
        while r.reserve(&g, record_size(100)).is_some() {
            r.write_record(&g, RecKind::Msg, &[&msg], None, || false)
                .unwrap();
            sent += 1;
        }
        let err = r.write_record(&g, RecKind::Msg, &[&msg], Some(Instant::now()), || false);
        assert_eq!(err, Err(Wait::TimedOut));
        drop(g);
        let got = recv_all(&r);
        assert_eq!(got.len(), sent);
        assert!(got.iter().all(|m| m == &msg));
    }

    #[test]
    fn corrupt_header_is_a_protocol_error() {
        let (mut m, r) = ring();
        let g = r.acquire_writer(None, || false).unwrap();
        r.write_record(&g, RecKind::Msg, &[b"hello, world"], None, || false)
            .unwrap();
        drop(g);
        // A hostile peer claims a huge length.
        m.0[CONTROL_SIZE..CONTROL_SIZE + 4].copy_from_slice(&u32::MAX.to_ne_bytes());
        assert_eq!(r.peek().unwrap_err(), ProtocolError::BadRecord);
        // ... or a bad tag.
        m.0[CONTROL_SIZE..CONTROL_SIZE + 4].copy_from_slice(&5u32.to_ne_bytes());
        m.0[CONTROL_SIZE + 4] = 0x99;
        assert_eq!(r.peek().unwrap_err(), ProtocolError::BadRecord);
    }

    /// Whether every data byte is zero.
    fn data_is_zero(m: &Mem) -> bool {
        m.0[CONTROL_SIZE..].iter().all(|&b| b == 0)
    }

    #[test]
    fn free_space_stays_zero_through_laps_of_every_record_kind() {
        let (m, r) = ring();
        let mut small = [0u8; 64];
        for round in 0..300u32 {
            let g = r.acquire_writer(None, || false).unwrap();
            // Tiny (0..=6), whole (7..), and pieces of a stream; ~3 laps of 1 KiB.
            let len = (round * 7) % 90;
            let msg: Vec<u8> = (0..len).map(|i| (i as u8) ^ 0x5a | 1).collect();
            let kind = if round % 11 == 0 {
                RecKind::Chunk
            } else {
                RecKind::Msg
            };
            if round % 5 == 0 && len <= 6 {
                assert!(r.try_write_tiny(
                    &g,
                    u64::from_le_bytes({
                        let mut w = [0u8; 8];
                        w[..msg.len()].copy_from_slice(&msg);
                        w
                    }),
                    len as u64
                ));
            } else if round % 3 == 0 && kind == RecKind::Msg && len <= 64 {
                assert!(r.try_write_small(&g, &msg));
            } else {
                r.write_record(&g, kind, &[&msg], None, || false).unwrap();
            }
            drop(g);
            let got = if round % 2 == 0 {
                r.take_small(&mut small).map(|n| small[..n].to_vec())
            } else {
                None
            };
            let got = got.unwrap_or_else(|| {
                let rec = r.peek().unwrap().unwrap();
                let mut v = Vec::new();
                r.read_into(&rec, 0, rec.len, &mut v);
                r.consume(&rec);
                v
            });
            assert_eq!(got, msg, "round {round}");
            // Consumed space is handed back (zeroed) a block at a time, the rest when the
            // reader finds the ring empty.
            assert_eq!(r.peek().unwrap().map(|rec| rec.len), None);
            assert!(data_is_zero(&m), "round {round}: consumed space not zeroed");
        }
    }

    #[test]
    fn space_a_reader_keeps_back_never_blocks_a_writer() {
        // The reader hands space back a block at a time and keeps back the rest of the
        // block it is in until it finds the ring empty. A writer must still find room
        // for the largest record whenever everything written has been read, even if the
        // reader never looked at an empty ring.
        let (_m, r) = ring();
        let mut out = [0u8; 64];
        for round in 0..2000u64 {
            let len = (round * 37) % (r.max_record() - REC_HDR + 1);
            let msg = vec![(round % 251) as u8 + 1; len as usize];
            let g = r.acquire_writer(None, || false).unwrap();
            r.write_record(&g, RecKind::Msg, &[&msg], Some(Instant::now()), || false)
                .unwrap_or_else(|e| panic!("round {round}, {len} bytes: {e:?}"));
            drop(g);
            match r.take_small(&mut out) {
                Some(n) => assert_eq!(&out[..n], &msg[..]),
                None => {
                    let rec = r.peek().unwrap().unwrap();
                    let mut v = Vec::new();
                    r.read_into(&rec, 0, rec.len, &mut v);
                    r.consume(&rec);
                    assert_eq!(v, msg);
                }
            }
        }
    }

    #[test]
    fn an_abandoned_encode_leaves_free_space_zero() {
        let (m, r) = ring();
        let g = r.acquire_writer(None, || false).unwrap();
        let (off, window) = r.reserve(&g, 64).unwrap();
        {
            let mut sink = r.sink(&g, off, window - REC_HDR);
            assert!(sink.extend(&[0xEE; 40]));
            assert!(sink.varint(u64::MAX));
            assert!(!data_is_zero(&m));
            // Dropped without commit_sink: the encoder gave up (or a Serialize panicked).
        }
        assert!(data_is_zero(&m));
        // A committed sink's bytes stay, and come out whole.
        let (off, window) = r.reserve(&g, 64).unwrap();
        let mut sink = r.sink(&g, off, window - REC_HDR);
        assert!(sink.extend(b"kept bytes"));
        r.commit_sink(&g, off, RecKind::Msg, sink);
        drop(g);
        assert_eq!(recv_all(&r), vec![b"kept bytes".to_vec()]);
        assert!(data_is_zero(&m));
    }

    #[test]
    fn a_reader_that_died_inside_a_receive_is_finished_by_the_next() {
        let (m, r) = ring();
        let g = r.acquire_writer(None, || false).unwrap();
        for msg in [&b"first message"[..], b"second message", b"third"] {
            r.write_record(&g, RecKind::Msg, &[msg], None, || false)
                .unwrap();
        }
        drop(g);
        // A reader takes the first record, moves `read` past it and dies before zeroing
        // it and handing it back.
        let rec = r.peek().unwrap().unwrap();
        r.hdr()
            .r
            .read
            .store(rec.pos + rec.size(), Ordering::Relaxed);
        // The next reader goes on from `read`, and zeroes the dead one's record too.
        assert_eq!(
            recv_all(&r),
            vec![b"second message".to_vec(), b"third".to_vec()]
        );
        assert!(data_is_zero(&m));
        let h = r.hdr().r.head.load(Ordering::Relaxed);
        assert_eq!(h, r.hdr().r.read.load(Ordering::Relaxed));
    }

    #[test]
    fn a_writer_taking_over_from_a_dead_one_repairs_tail_and_free_space() {
        let (m, r) = ring();
        let g = r.acquire_writer(None, || false).unwrap();
        r.write_record(&g, RecKind::Msg, &[b"counted"], None, || false)
            .unwrap();
        let tail = r.hdr().w.tail.load(Ordering::Relaxed);
        // Published, but the writer died before counting it in `tail`...
        r.write_record(&g, RecKind::Msg, &[b"not counted"], None, || false)
            .unwrap();
        r.hdr().w.tail.store(tail, Ordering::Relaxed);
        let end = tail + record_size(11);
        // ... and after writing half of a third record it never published.
        let garbage = CONTROL_SIZE + (end + REC_HDR) as usize;
        let mut m = m;
        m.0[garbage..garbage + 100].fill(0xA7);
        // The next writer finds the flag the death left.
        r.hdr().own.dirty.store(1, Ordering::Relaxed);
        drop(g);
        r.hdr().own.owner.store(SHARED, Ordering::Relaxed);
        let g = r.acquire_writer(None, || false).unwrap();
        assert_eq!(
            r.hdr().w.tail.load(Ordering::Relaxed),
            end,
            "tail walked past it"
        );
        assert_eq!(r.hdr().own.dirty.load(Ordering::Relaxed), 0);
        assert!(m.0[garbage..garbage + 100].iter().all(|&b| b == 0));
        r.write_record(&g, RecKind::Msg, &[b"after"], None, || false)
            .unwrap();
        drop(g);
        assert_eq!(
            recv_all(&r),
            vec![
                b"counted".to_vec(),
                b"not counted".to_vec(),
                b"after".to_vec()
            ]
        );
        assert!(data_is_zero(&m));
    }

    #[test]
    fn a_pad_at_offset_zero_is_a_protocol_error_not_an_endless_loop() {
        // Found by the property tests: with a garbage `head` the reader cannot zero what
        // it skips, and a pad spanning the whole ring was found again on every turn.
        let (mut m, r) = ring();
        m.0[CONTROL_SIZE..CONTROL_SIZE + 8]
            .copy_from_slice(&header_word(RecKind::Pad, 1024 - REC_HDR).to_ne_bytes());
        r.hdr().r.head.store(1 << 40, Ordering::Relaxed);
        assert_eq!(r.peek().unwrap_err(), ProtocolError::BadRecord);
    }

    #[test]
    fn take_small_takes_only_whole_small_messages_and_leaves_the_rest_to_peek() {
        let (_m, r) = ring();
        let mut out = [0u8; 16];
        assert_eq!(r.take_small(&mut out), None, "empty ring");
        let g = r.acquire_writer(None, || false).unwrap();
        // 0..=16 bytes are small; 17 bytes and stream pieces are not.
        for n in 0..=17u8 {
            let msg: Vec<u8> = (0..n).map(|i| i ^ n).collect();
            r.write_record(&g, RecKind::Msg, &[&msg], None, || false)
                .unwrap();
        }
        r.write_record(
            &g,
            RecKind::Begin,
            &[&3u64.to_ne_bytes(), b"abc"],
            None,
            || false,
        )
        .unwrap();
        drop(g);
        for n in 0..=16u8 {
            let len = r.take_small(&mut out).expect("a small message");
            let want: Vec<u8> = (0..n).map(|i| i ^ n).collect();
            assert_eq!(&out[..len], &want[..]);
        }
        assert_eq!(r.take_small(&mut out), None, "17 bytes: the general path");
        let rec = r.peek().unwrap().unwrap();
        assert_eq!((rec.kind, rec.len), (RecKind::Msg, 17));
        r.consume(&rec);
        assert_eq!(r.take_small(&mut out), None, "a stream's first piece");
        assert_eq!(r.peek().unwrap().unwrap().kind, RecKind::Begin);

        // A corrupt header is not taken (peek reports it).
        let (mut m2, r2) = ring();
        let g = r2.acquire_writer(None, || false).unwrap();
        r2.write_record(&g, RecKind::Msg, &[b"hi there"], None, || false)
            .unwrap();
        drop(g);
        m2.0[CONTROL_SIZE..CONTROL_SIZE + 4].copy_from_slice(&1000u32.to_ne_bytes());
        assert_eq!(r2.take_small(&mut [0u8; 2048]), None);
        assert_eq!(r2.peek().unwrap_err(), ProtocolError::BadRecord);
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use loom::sync::Arc;

    #[repr(C)]
    struct Mem {
        hdr: SpscHeader,
        data: [u8; 64],
    }

    /// Owns the loom-constructed control block and the data bytes the ring points into.
    struct Shared {
        mem: *mut Mem,
        ring: Spsc,
    }
    // SAFETY: the ring's memory is atomics plus bytes handed between the two threads by
    // the ring protocol under test; the Box is freed only in Drop, after both threads end.
    unsafe impl Send for Shared {}
    // SAFETY: as above.
    unsafe impl Sync for Shared {}

    impl Drop for Shared {
        fn drop(&mut self) {
            // SAFETY: `mem` came from Box::into_raw in `new` and is freed once.
            drop(unsafe { Box::from_raw(self.mem) });
        }
    }

    fn new() -> Arc<Shared> {
        let mem = Box::into_raw(Box::new(Mem {
            hdr: SpscHeader::default(),
            data: [0; 64],
        }));
        let base = NonNull::new(mem.cast::<u8>()).expect("box pointer");
        // SAFETY: `mem` is a live, 128-aligned (SpscHeader's alignment) block of
        // CONTROL_SIZE + 64 bytes (repr(C): data right after the header), freed only
        // when Shared drops; an initialized header is an empty ring.
        let ring = unsafe { Spsc::from_raw(base, 64) };
        Arc::new(Shared { mem, ring })
    }

    /// Publish and consume across the wrap (records of 16, 16, 16, 8 and 16 bytes in a
    /// 64-byte ring force a pad and waits for room), with the reader parking and the
    /// writer waking it: every message arrives whole and in order, nobody sleeps
    /// through a wake-up (a lost one would spin loom's futex model forever).
    const LENS: [usize; 5] = [8, 8, 8, 0, 8];

    #[test]
    fn publish_consume_and_wake_across_the_wrap() {
        let mut model = loom::model::Builder::new();
        model.preemption_bound = Some(2);
        model.check(|| {
            let s = new();
            let s2 = s.clone();
            let writer = loom::thread::spawn(move || {
                let r = &s2.ring;
                for (i, len) in LENS.into_iter().enumerate() {
                    let msg = vec![i as u8 + 1; len];
                    let g = r.acquire_writer(None, || false).expect("writer");
                    r.write_record(&g, RecKind::Msg, &[&msg], None, || false)
                        .expect("room");
                }
            });
            let r = &s.ring;
            let mut got = Vec::new();
            while got.len() < LENS.len() {
                match r.peek().expect("valid records") {
                    Some(rec) => {
                        let mut v = Vec::new();
                        r.read_into(&rec, 0, rec.len, &mut v);
                        r.consume(&rec);
                        got.push(v);
                    }
                    None => {
                        assert_eq!(r.wait_readable(None, || false, u32::MAX).0, Wait::Ready);
                    }
                }
            }
            writer.join().unwrap();
            let expect: Vec<Vec<u8>> = LENS
                .iter()
                .enumerate()
                .map(|(i, &len)| vec![i as u8 + 1; len])
                .collect();
            assert_eq!(got, expect);
        });
    }
}
