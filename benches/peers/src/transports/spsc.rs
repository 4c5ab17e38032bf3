//! The ceiling: a minimal lock-free single-producer single-consumer ring of `u64` in an
//! anonymous shared mapping made before the fork. Cache-padded head and tail, each side
//! keeps a cached copy of the opposite index, the writer publishes every message with a
//! Release store, the reader spins.

use std::num::NonZeroUsize;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use nix::sys::mman::{mmap_anonymous, munmap, MapFlags, ProtFlags};

use super::{timed, Cfg, Seq, DONE};

const CAP: u64 = 1 << 14; // 16 Ki slots = 128 KiB
const MASK: u64 = CAP - 1;

#[repr(C, align(128))]
struct Padded(AtomicU64);

#[repr(C)]
struct Ring {
    head: Padded, // next slot the reader reads
    tail: Padded, // next slot the writer writes
    slots: [u64; CAP as usize],
}

/// A shared anonymous mapping holding one `Ring`; unmapped on drop (in the parent).
pub struct Shared {
    ptr: NonNull<Ring>,
}

impl Shared {
    fn new() -> Result<Self, String> {
        let len = NonZeroUsize::new(std::mem::size_of::<Ring>()).expect("non-zero");
        // SAFETY: a fresh anonymous mapping at an address the kernel picks; it does not
        // alias any Rust object. MAP_SHARED keeps it shared with the forked child.
        let p = unsafe {
            mmap_anonymous(
                None,
                len,
                ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
                MapFlags::MAP_SHARED,
            )
        }
        .map_err(|e| format!("mmap: {e}"))?;
        // The mapping is zero-filled: head = tail = 0, a valid empty ring.
        Ok(Self { ptr: p.cast() })
    }

    fn ring(&self) -> &Ring {
        // SAFETY: the mapping is page-aligned (more than Ring's 128-byte alignment), is
        // size_of::<Ring>() long, zero-initialised (valid for atomics and u64s) and lives
        // until `self` is dropped.
        unsafe { self.ptr.as_ref() }
    }

    fn slot(&self, i: u64) -> *mut u64 {
        // SAFETY: `i & MASK` < CAP, so the pointer stays inside `slots`.
        unsafe {
            std::ptr::addr_of_mut!((*self.ptr.as_ptr()).slots)
                .cast::<u64>()
                .add((i & MASK) as usize)
        }
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        // SAFETY: the pointer and length are those returned by mmap; nothing borrows the
        // ring any more.
        let _ = unsafe { munmap(self.ptr.cast(), std::mem::size_of::<Ring>()) };
    }
}

pub struct Writer<'a> {
    sh: &'a Shared,
    tail: u64,
    cached_head: u64,
}

impl<'a> Writer<'a> {
    #[inline(always)]
    pub fn push(&mut self, v: u64) {
        if self.tail - self.cached_head == CAP {
            loop {
                self.cached_head = self.sh.ring().head.0.load(Ordering::Acquire);
                if self.tail - self.cached_head < CAP {
                    break;
                }
                std::hint::spin_loop();
            }
        }
        // SAFETY: slot `tail` is free (tail - head < CAP) and only this writer writes it;
        // the reader reads it only after the Release store below makes it visible.
        unsafe { self.slot_write(v) };
        self.tail += 1;
        self.sh.ring().tail.0.store(self.tail, Ordering::Release);
    }

    /// # Safety
    /// The slot at `self.tail` must be owned by the writer.
    #[inline(always)]
    unsafe fn slot_write(&self, v: u64) {
        // SAFETY: guaranteed by the caller.
        unsafe { self.sh.slot(self.tail).write(v) }
    }
}

pub struct Reader<'a> {
    sh: &'a Shared,
    head: u64,
    cached_tail: u64,
}

impl<'a> Reader<'a> {
    #[inline(always)]
    pub fn pop(&mut self) -> u64 {
        if self.head == self.cached_tail {
            loop {
                self.cached_tail = self.sh.ring().tail.0.load(Ordering::Acquire);
                if self.cached_tail != self.head {
                    break;
                }
                std::hint::spin_loop();
            }
        }
        // SAFETY: head < tail (Acquire-loaded), so the writer published this slot and
        // will not overwrite it until the Release store of head below.
        let v = unsafe { self.sh.slot(self.head).read() };
        self.head += 1;
        self.sh.ring().head.0.store(self.head, Ordering::Release);
        v
    }
}

pub fn run(count: u64, cfg: &Cfg) -> Result<Duration, String> {
    let sh = Shared::new()?;
    let shr = &sh;
    timed(
        cfg,
        move |ready| {
            let mut r = Reader {
                sh: shr,
                head: 0,
                cached_tail: 0,
            };
            ready.signal();
            let mut seq = Seq::new();
            loop {
                let v = r.pop();
                if v == DONE {
                    return seq.done(count);
                }
                seq.int(v);
            }
        },
        move || {
            let mut w = Writer {
                sh: shr,
                tail: 0,
                cached_head: 0,
            };
            for i in 0..count {
                w.push(i);
            }
            w.push(DONE);
            Ok(())
        },
    )
}
