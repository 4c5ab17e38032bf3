//! Finding a function again in another process running the same executable, and calling
//! it there: the one place where an address that came from another process becomes a
//! function pointer.
//!
//! A spawned child is a fresh `execve` of the current executable, so code addresses
//! differ from the parent's only by the load address (ASLR moves the whole image). A
//! function is recorded as the offsets, from a fixed anchor function, of a monomorphized
//! trampoline and of the target `fn(A) -> R`, with a fingerprint of the trampoline's
//! types ([`Offsets`]); the other process adds its own anchor address back, and the
//! trampoline compares the fingerprint with its own before it calls anything.
//!
//! Two kinds of trampoline, two types that cannot be mixed up: an [`EntryPoint`] runs a
//! target once in a spawned child through a [`Runner`] (the `process` module's), a
//! [`CallEntry`] calls one many times in a pool worker through a [`Caller`] (the `pool`
//! module's). The formats that carry them, and the checks that make a process trust
//! offsets it received, are theirs (`process::job`, `pool::entry`); the contract is
//! written on [`EntryPoint::from_offsets`] and [`CallEntry::from_offsets`].

use std::io;
use std::os::fd::RawFd;

#[cfg(all(test, not(loom)))]
pub(crate) mod tests;

/// The fixed point code offsets are measured from.
#[inline(never)]
fn anchor() -> u64 {
    0x5348_4d50_524f_4321
}

fn anchor_addr() -> usize {
    anchor as fn() -> u64 as usize
}

/// The base address of the loaded object (executable or shared library) containing
/// `addr`, or `None` when the dynamic loader does not know (a static executable).
fn object_base(addr: usize) -> Option<usize> {
    // SAFETY: Dl_info is plain data; all-zero is a valid value for its pointer fields.
    let mut info: libc::Dl_info = unsafe { std::mem::zeroed() };
    // SAFETY: dladdr only reads the loader's tables and writes `info`, a valid out-pointer.
    let ok = unsafe { libc::dladdr(addr as *const libc::c_void, &mut info) };
    (ok != 0 && !info.dli_fbase.is_null()).then_some(info.dli_fbase as usize)
}

/// FNV-1a, 64 bits: a checksum against corruption and a type fingerprint. Not keyed and
/// not a defence against forgery (anyone can compute it); the formats that carry
/// offsets trust them for where they came from (`process::job`'s parent check).
pub(crate) fn fnv1a(bytes: &[u8]) -> u64 {
    fnv1a_more(0xcbf2_9ce4_8422_2325, bytes)
}

fn fnv1a_more(mut h: u64, bytes: &[u8]) -> u64 {
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// The fingerprint of a trampoline's type parameters: a hash of the type names of `A`,
/// `R` and `X` and of the sizes and alignments of `A` and `R`. A job or a call entry
/// carries the fingerprint of the trampoline it names, and the trampoline compares it
/// with its own before it reinterprets the target address as a `fn(A) -> R`: a target
/// paired with the trampoline of another type is an error, never a call. Both sides run
/// the same executable, so the names are the same strings.
fn type_fingerprint<A, R, X>() -> u64 {
    let mut h = fnv1a(std::any::type_name::<(A, R, X)>().as_bytes());
    let layout = [
        std::mem::size_of::<A>(),
        std::mem::align_of::<A>(),
        std::mem::size_of::<R>(),
        std::mem::align_of::<R>(),
    ];
    for v in layout {
        h = fnv1a_more(h, &(v as u64).to_le_bytes());
    }
    h
}

/// Why a recorded function was not called.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RelocError {
    /// The trampoline or the target falls outside the loaded object that holds shmproc.
    OutsideImage,
    /// The target is paired with the trampoline of other types (type fingerprint
    /// mismatch); nothing was called.
    TypeMismatch,
}

/// A trampoline and a target as offsets from the anchor, with the trampoline's type
/// fingerprint: what the formats above write and read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Offsets {
    /// The trampoline's offset from the anchor.
    pub(crate) trampoline: i64,
    /// The target's offset from the anchor.
    pub(crate) target: i64,
    /// The fingerprint of the trampoline's type parameters.
    pub(crate) fingerprint: u64,
}

impl Offsets {
    /// Offsets from the anchor of a trampoline and a target, or `Unsupported` when either
    /// lives outside the loaded object that holds shmproc (a function in another shared
    /// library cannot be found by offset).
    fn of(tramp: usize, target: usize, fingerprint: u64) -> io::Result<Offsets> {
        let anchor = anchor_addr();
        let base = object_base(anchor);
        if object_base(target) != base || object_base(tramp) != base {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "the target function is not in the same executable as shmproc; a spawned process cannot find it",
            ));
        }
        let off = |a: usize| (a as i64).wrapping_sub(anchor as i64);
        Ok(Offsets {
            trampoline: off(tramp),
            target: off(target),
            fingerprint,
        })
    }

    /// The addresses in this image of the trampoline and the target, when both lie
    /// inside the loaded object that holds the anchor.
    fn relocate(&self) -> Result<(usize, usize), RelocError> {
        let anchor = anchor_addr();
        let tramp = (anchor as i64).wrapping_add(self.trampoline) as usize;
        let target = (anchor as i64).wrapping_add(self.target) as usize;
        let base = object_base(anchor);
        if tramp == 0 || target == 0 || object_base(tramp) != base || object_base(target) != base {
            return Err(RelocError::OutsideImage);
        }
        Ok((tramp, target))
    }
}

// ---------------------------------------------------------------------------------------
// Running a target once, in a spawned child
// ---------------------------------------------------------------------------------------

/// The type of every spawn trampoline: (type fingerprint, target address, encoded args,
/// inherited fds) → exit code, or [`RelocError::TypeMismatch`] without calling anything.
type Trampoline = fn(u64, usize, &[u8], &[RawFd]) -> Result<i32, RelocError>;

/// What runs a target in a spawned child, given the decoded pieces. Implemented by the
/// `process` module (decoding args, catching panics); generic so that the trampoline that
/// calls it is monomorphized for the target's types.
pub(crate) trait Runner<A, R> {
    /// Decodes the args from `args` and `fds`, runs `target`, returns the exit code.
    fn run(target: fn(A) -> R, args: &[u8], fds: &[RawFd]) -> i32;
}

fn trampoline<A, R, X: Runner<A, R>>(
    fingerprint: u64,
    target: usize,
    args: &[u8],
    fds: &[RawFd],
) -> Result<i32, RelocError> {
    if fingerprint != type_fingerprint::<A, R, X>() {
        return Err(RelocError::TypeMismatch);
    }
    // SAFETY: this trampoline is only ever named by `EntryPoint::new::<A, R, X>` (or
    // `mismatched`, whose fingerprint is that of other types and fails the check above),
    // which records it together with the address (as an offset) of a `fn(A) -> R` and the
    // fingerprint of `(A, R, X)`, checked just above. `EntryPoint::run` relocates both into
    // this image only for offsets made by `new` in a process running this same executable
    // (the contract of `from_offsets`), and offsets from the anchor do not change when the
    // loader moves the image, so `target` is that function's address; a fn pointer and a
    // usize have the same size and `target` is non-null.
    let f = unsafe { std::mem::transmute::<usize, fn(A) -> R>(target) };
    Ok(X::run(f, args, fds))
}

/// A target and its spawn trampoline, valid in any process running the same executable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct EntryPoint(Offsets);

impl EntryPoint {
    /// Records `target` with the trampoline for its types. Fails when the target does not
    /// live in the same loaded object as this crate.
    pub(crate) fn new<A, R, X: Runner<A, R>>(target: fn(A) -> R) -> io::Result<EntryPoint> {
        let tramp = trampoline::<A, R, X> as Trampoline as usize;
        Offsets::of(tramp, target as usize, type_fingerprint::<A, R, X>()).map(EntryPoint)
    }

    /// Records `target` with the trampoline of *other* types, as only a forger (or a bug)
    /// would: for the tests that show the trampoline refuses it.
    pub(crate) fn mismatched<A, R, X: Runner<A, R>, B, S>(
        target: fn(B) -> S,
    ) -> io::Result<EntryPoint> {
        let tramp = trampoline::<A, R, X> as Trampoline as usize;
        Offsets::of(tramp, target as usize, type_fingerprint::<B, S, X>()).map(EntryPoint)
    }

    /// The offsets, to write into a spawn job.
    pub(crate) fn offsets(&self) -> Offsets {
        self.0
    }

    /// The entry point that [`offsets`](Self::offsets) returned in another process.
    ///
    /// **The contract [`run`](Self::run) relies on:** `offsets` were returned by
    /// `offsets()` of an `EntryPoint` in a process running this same executable image
    /// (its identity checked), and reached this process by a path that proves it: the
    /// spawn job of a parent that runs this executable and still waits for this child
    /// (`process::job`'s `check_parent`). Offsets from anywhere else may name any code.
    pub(crate) fn from_offsets(offsets: Offsets) -> EntryPoint {
        EntryPoint(offsets)
    }

    /// Relocates the entry point into this image and runs it through its trampoline
    /// (which checks the type fingerprint first). Returns the exit code the runner chose.
    pub(crate) fn run(&self, args: &[u8], fds: &[RawFd]) -> Result<i32, RelocError> {
        let (tramp, target) = self.0.relocate()?;
        // SAFETY: `tramp` is the address of a `trampoline::<A, R, X>` instance, whose type
        // is `Trampoline`: the offsets come from `EntryPoint::new`/`mismatched`, in this
        // process or (the contract of `from_offsets`) in a process running this same
        // executable, and offsets from the anchor do not change when the loader moves the
        // image. The trampoline checks the type fingerprint before it uses `target`.
        let f = unsafe { std::mem::transmute::<usize, Trampoline>(tramp) };
        f(self.0.fingerprint, target, args, fds)
    }
}

// ---------------------------------------------------------------------------------------
// Calling a target many times, in a long-lived worker (the pool)
// ---------------------------------------------------------------------------------------

/// The type of every call trampoline: (type fingerprint, target address, input bytes,
/// output buffer) → whether the fingerprint matched (nothing was called when not).
type CallTrampoline = fn(u64, usize, &[u8], &mut Vec<u8>) -> bool;

/// What a worker runs for one call, given the target and the encoded input: decodes the
/// input, calls the target, appends the encoded outcome to `out`. Implemented by the
/// `pool` module; generic so that the trampoline that calls it is monomorphized for the
/// target's types.
pub(crate) trait Caller<A, R> {
    /// Decodes the input, runs `target`, appends the outcome to `out`.
    fn call(target: fn(A) -> R, input: &[u8], out: &mut Vec<u8>);
}

fn call_trampoline<A, R, X: Caller<A, R>>(
    fingerprint: u64,
    target: usize,
    input: &[u8],
    out: &mut Vec<u8>,
) -> bool {
    if fingerprint != type_fingerprint::<A, R, X>() {
        return false;
    }
    // SAFETY: this trampoline is only ever named by `CallEntry::new::<A, R, X>`, which
    // records it together with the address (as an offset) of a `fn(A) -> R` and the
    // fingerprint of `(A, R, X)`, checked just above. `CallEntry::call` relocates both
    // into this image only for offsets made by `new` in a process running this same
    // executable (the contract of `from_offsets`) and lying in this executable, so
    // `target` is that function's address; a fn pointer and a usize have the same size
    // and `target` is non-null.
    let f = unsafe { std::mem::transmute::<usize, fn(A) -> R>(target) };
    X::call(f, input, out);
    true
}

/// The fingerprint of [`thunk_trampoline`], which calls a plain `fn()`.
fn thunk_fingerprint() -> u64 {
    type_fingerprint::<(), (), fn()>()
}

fn thunk_trampoline(fingerprint: u64, target: usize, _input: &[u8], _out: &mut Vec<u8>) -> bool {
    if fingerprint != thunk_fingerprint() {
        return false;
    }
    // SAFETY: named only by `CallEntry::thunk`, which records it with the address of a
    // `fn()` and the fingerprint checked above; see `call_trampoline` for why `target` is
    // that address in this image.
    let f = unsafe { std::mem::transmute::<usize, fn()>(target) };
    f();
    true
}

/// A function and the trampoline that calls it, valid in any process running the same
/// executable (a forked or a spawned worker), and sent over a channel many times, unlike
/// [`EntryPoint`] which starts a process once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CallEntry(Offsets);

impl CallEntry {
    /// Records `target` with the trampoline that runs it through `X`.
    pub(crate) fn new<A, R, X: Caller<A, R>>(target: fn(A) -> R) -> io::Result<CallEntry> {
        let tramp = call_trampoline::<A, R, X> as CallTrampoline as usize;
        Offsets::of(tramp, target as usize, type_fingerprint::<A, R, X>()).map(CallEntry)
    }

    /// Records a plain `fn()` (an initializer); [`call`](Self::call) runs it and ignores
    /// the input and output.
    pub(crate) fn thunk(target: fn()) -> io::Result<CallEntry> {
        let tramp = thunk_trampoline as CallTrampoline as usize;
        Offsets::of(tramp, target as usize, thunk_fingerprint()).map(CallEntry)
    }

    /// The offsets, to write into a task message.
    pub(crate) fn offsets(&self) -> Offsets {
        self.0
    }

    /// The call entry that [`offsets`](Self::offsets) returned in another process.
    ///
    /// **The contract [`call`](Self::call) relies on:** `offsets` were returned by
    /// `offsets()` of a `CallEntry` in a process running this same executable image, and
    /// reached this process by a path that proves it: a message, checksummed with this
    /// executable's identity, on a channel private to a pool and its worker
    /// (`pool::entry`). Offsets from anywhere else may name any code.
    pub(crate) fn from_offsets(offsets: Offsets) -> CallEntry {
        CallEntry(offsets)
    }

    /// Runs the target through its trampoline on `input`, appending to `out`.
    ///
    /// # Errors
    ///
    /// When the entry's addresses fall outside this executable, or its type fingerprint
    /// is not its trampoline's (then nothing runs).
    pub(crate) fn call(&self, input: &[u8], out: &mut Vec<u8>) -> Result<(), RelocError> {
        let (tramp, target) = self.0.relocate()?;
        // SAFETY: the offsets come from `CallEntry::new`/`thunk`, in this process or (the
        // contract of `from_offsets`) in a process running this same executable. Offsets
        // from the anchor do not change when the loader moves the image, so `tramp` is the
        // address of a `call_trampoline::<A, R, X>` or of `thunk_trampoline`, both of
        // type `CallTrampoline`; each checks the type fingerprint before using `target`.
        let f = unsafe { std::mem::transmute::<usize, CallTrampoline>(tramp) };
        if f(self.0.fingerprint, target, input, out) {
            Ok(())
        } else {
            Err(RelocError::TypeMismatch)
        }
    }
}
