//! The hand-off registry: how shared objects (pipe ends, queues, locks, values) reach
//! child processes, and stop reaching those they were not handed.
//!
//! It sits in `sync`, below every handle that registers here (`sync`'s own objects,
//! `channel`'s ends and queues) and below `process`, which drives it around `fork` and
//! `execve`. Two start methods, two mechanisms:
//!
//! * **Fork.** The child inherits every handle by memory, and every file descriptor.
//!   Objects whose file descriptors keep a peer "alive" (pipe ends: see
//!   `channel`) register here. After `fork`, the parent drops its copy of what it
//!   moved into the child (the args or closure) inside [`record_drops`], which notes
//!   every registered object that payload held; it sends the ids to the child, and the
//!   child calls [`ForkGuard::release_inherited_except`], which releases the liveness
//!   tokens of every other inherited object. So an end that the child inherits but
//!   never received does not keep the channel open (fork hygiene), and an end it did
//!   receive is held without a gap.
//! * **Spawn.** The parent serializes the args inside [`passing_fds`]: each handle's
//!   `Serialize` calls [`pass_fd`] for its descriptors, which records them so the child
//!   keeps them across `execve` (everything else is close-on-exec). The spawned child
//!   decodes the args inside [`adopting_fds`]; each handle's `Deserialize` calls
//!   [`adopt_fd`]. Outside these two calls, serializing a handle is an error
//!   ([`Error::Handle`]), never a handle that silently points nowhere. (The args' codec
//!   is the `process` module's.)
//! * **Over a socket** (a `Connection` from `Listener::accept`/`connect`, see
//!   `channel::named`). The sender serializes inside [`passing_fds_tagged`]: each
//!   descriptor gets a *tagged number* (negative, never a real descriptor: the batch's
//!   tag and the descriptor's index in it), and the descriptors go over the socket with
//!   `SCM_RIGHTS`. The receiver decodes inside [`adopting_received`], which maps each
//!   tagged number to the descriptor received for it. A handle decoded outside any
//!   context notes the number it wanted ([`take_wanted_tag`]), so the receiving side
//!   knows which batch of descriptors a message needs.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::error::{Error, Result};

/// A per-process object whose file descriptors tell peers this process holds an end.
pub(crate) trait Inherited: Send + Sync {
    /// Closes this process's liveness descriptors. Called in a freshly forked child
    /// (one thread) for objects the child was not handed, and when the object is
    /// unregistered. Must be idempotent.
    fn release_in_child(&self);
}

/// One descriptor that a forked child closes unless it was handed the object holding it
/// (a listening socket, say): the [`Inherited`] for a single fd, owned in a
/// [`FdCell`](crate::sys::FdCell).
pub(crate) struct InheritedFd(crate::sys::FdCell);

impl InheritedFd {
    /// Takes ownership of `fd`.
    pub(crate) fn new(fd: OwnedFd) -> InheritedFd {
        InheritedFd(crate::sys::FdCell::new(fd))
    }

    /// The descriptor, or `None` once released.
    pub(crate) fn get(&self) -> Option<BorrowedFd<'_>> {
        self.0.get()
    }
}

impl Inherited for InheritedFd {
    fn release_in_child(&self) {
        // SAFETY: the registry calls this in a freshly forked child, which has one
        // thread and has run nothing else yet, or when the object is unregistered on
        // drop (the registry's clone is never borrowed from): no borrow of the fd is
        // alive.
        unsafe { self.0.close() }
    }
}

struct Registry {
    next: u64,
    objects: BTreeMap<u64, Arc<dyn Inherited>>,
}

static REGISTRY: Mutex<Registry> = Mutex::new(Registry {
    next: 1,
    objects: BTreeMap::new(),
});

fn registry() -> MutexGuard<'static, Registry> {
    REGISTRY.lock().unwrap_or_else(|e| e.into_inner())
}

/// Registers an object; returns its id, to pass to [`note_drop`] and
/// [`unregister_and_release`]. The registry keeps the object alive until then, so a
/// child forked at any moment can release it, even while the handle that owned it is
/// being dropped on another thread.
pub(crate) fn register(obj: Arc<dyn Inherited>) -> u64 {
    let mut reg = registry();
    let id = reg.next;
    reg.next += 1;
    reg.objects.insert(id, obj);
    id
}

/// Removes an object and releases its descriptors, under the registry lock, which fork
/// also holds: a child forked meanwhile sees either the object registered with its
/// descriptors open (and releases them) or neither.
pub(crate) fn unregister_and_release(id: u64) {
    let mut reg = registry();
    if let Some(obj) = reg.objects.remove(&id) {
        obj.release_in_child();
    }
}

thread_local! {
    static RECORDING: RefCell<Option<Vec<u64>>> = const { RefCell::new(None) };
}

/// Called by every handle's `Drop` with the id of the registered object it refers to.
pub(crate) fn note_drop(id: u64) {
    let _ = RECORDING.try_with(|r| {
        if let Some(ids) = r.borrow_mut().as_mut() {
            ids.push(id);
        }
    });
}

/// Drops `payload` (the parent's copy of what a forked child received), returning the
/// ids of the registered objects it held.
pub(crate) fn record_drops<T>(payload: T) -> Vec<u64> {
    RECORDING.with(|r| *r.borrow_mut() = Some(Vec::new()));
    drop(payload);
    let mut ids = RECORDING
        .with(|r| r.borrow_mut().take())
        .unwrap_or_default();
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// Taken (shared) while an object creates its liveness descriptors and registers them,
/// and (exclusive) across `fork`: a fork by another thread can then never copy
/// descriptors into a child before the registry knows them, which would leave an
/// inherited end that fork hygiene cannot release (a channel kept open by a process
/// that never received it).
static CREATION: RwLock<()> = RwLock::new(());

/// Held while an object creates and registers its liveness descriptors. Re-entrant: a
/// thread that holds one already takes no second read lock (which would deadlock
/// behind a waiting `fork`).
pub(crate) struct Creating(#[allow(dead_code)] Option<RwLockReadGuard<'static, ()>>);

thread_local! {
    /// How many [`Creating`] guards this thread holds.
    static CREATING_DEPTH: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

/// Call before creating descriptors that will be registered; keep it until they are.
pub(crate) fn creating() -> Creating {
    let depth = CREATING_DEPTH.with(|d| d.replace(d.get() + 1));
    Creating((depth == 0).then(|| CREATION.read().unwrap_or_else(|e| e.into_inner())))
}

impl Drop for Creating {
    fn drop(&mut self) {
        CREATING_DEPTH.with(|d| d.set(d.get() - 1));
    }
}

/// Holds the registry locked across `fork`, so the child never finds it locked by a
/// thread that does not exist there, and no object is half-created at the fork.
pub(crate) struct ForkGuard(
    MutexGuard<'static, Registry>,
    #[allow(dead_code)] RwLockWriteGuard<'static, ()>,
    #[allow(dead_code)] super::poke::ForkLock,
);

impl ForkGuard {
    /// Locks creation, the registry and the poke table (in that order, as creators do;
    /// see `sync::poke`). Take it right
    /// before `fork`; drop it in the parent after.
    pub(crate) fn acquire() -> ForkGuard {
        let creation = CREATION.write().unwrap_or_else(|e| e.into_inner());
        let reg = registry();
        ForkGuard(reg, creation, super::poke::lock_for_fork())
    }

    /// In the forked child: releases the liveness descriptors of every inherited object
    /// not listed in `keep`, then unlocks the registry.
    pub(crate) fn release_inherited_except(self, keep: &[u64]) {
        let reg = self.0;
        for (id, obj) in reg.objects.iter() {
            if keep.binary_search(id).is_ok() {
                continue;
            }
            obj.release_in_child();
        }
    }
}

enum Ctx {
    /// Serializing: the descriptors passed so far; numbered as they are (spawn: the
    /// child inherits them under the same numbers) or by index under a tag (sent over a
    /// socket).
    Encode { fds: Vec<RawFd>, tag: Option<u32> },
    /// Deserializing: the number each descriptor has on the wire and here, and which
    /// wire numbers were adopted already.
    Decode {
        inherited: Vec<(i32, RawFd)>,
        adopted: Vec<i32>,
    },
}

thread_local! {
    static CTX: RefCell<Option<Ctx>> = const { RefCell::new(None) };
    /// The wire number a handle decoded outside any context asked for (see
    /// [`take_wanted_tag`]).
    static WANTED: std::cell::Cell<Option<i32>> = const { std::cell::Cell::new(None) };
}

/// Tags are 20 bits, indices 10: a tagged number is `-(1 + (tag << 10 | index))`.
const TAG_BITS: u32 = 20;
const INDEX_BITS: u32 = 10;

/// The largest tag [`passing_fds_tagged`] takes.
pub(crate) const MAX_TAG: u32 = (1 << TAG_BITS) - 1;

/// The number of descriptor `index` of the batch tagged `tag` (see [`passing_fds_tagged`]).
pub(crate) fn tagged_number(tag: u32, index: usize) -> i32 {
    -1 - (((tag & MAX_TAG) << INDEX_BITS) | index as u32) as i32
}

/// The (tag, index) of a tagged number; `None` for a plain descriptor number.
pub(crate) fn untag(n: i32) -> Option<(u32, usize)> {
    if n >= 0 {
        return None;
    }
    let v = (-(n as i64) - 1) as u32;
    Some((v >> INDEX_BITS, (v & ((1 << INDEX_BITS) - 1)) as usize))
}

fn encode_with<T>(tag: Option<u32>, encode: impl FnOnce() -> T) -> (T, Vec<RawFd>) {
    CTX.with(|c| {
        *c.borrow_mut() = Some(Ctx::Encode {
            fds: Vec::new(),
            tag,
        })
    });
    let res = encode();
    let ctx = CTX.with(|c| c.borrow_mut().take());
    let fds = match ctx {
        Some(Ctx::Encode { fds, .. }) => fds,
        _ => Vec::new(),
    };
    (res, fds)
}

/// Runs `encode` (the serialization of a spawned child's args) while handles'
/// `Serialize` may pass their descriptors ([`pass_fd`]); returns its result and the
/// descriptors passed, which the child must inherit (clear `FD_CLOEXEC` on them between
/// fork and exec).
pub(crate) fn passing_fds<T>(encode: impl FnOnce() -> T) -> (T, Vec<RawFd>) {
    encode_with(None, encode)
}

/// Runs `encode` (a message to send over a socket) while handles may pass their
/// descriptors, each numbered by its index under `tag` (at most [`MAX_TAG`]); returns
/// its result and the descriptors, in index order, to send with `SCM_RIGHTS`.
pub(crate) fn passing_fds_tagged<T>(tag: u32, encode: impl FnOnce() -> T) -> (T, Vec<RawFd>) {
    encode_with(Some(tag & MAX_TAG), encode)
}

fn decode_with<T>(inherited: Vec<(i32, RawFd)>, decode: impl FnOnce() -> T) -> T {
    CTX.with(|c| {
        *c.borrow_mut() = Some(Ctx::Decode {
            inherited,
            adopted: Vec::new(),
        })
    });
    let res = decode();
    let ctx = CTX.with(|c| c.borrow_mut().take());
    if let Some(Ctx::Decode { inherited, adopted }) = ctx {
        for (n, fd) in inherited {
            if !adopted.contains(&n) {
                crate::sys::close_raw(fd);
            }
        }
    }
    res
}

/// Runs `decode` (the deserialization of the args in a spawned child) while handles'
/// `Deserialize` may adopt the descriptors the parent passed, `inherited`
/// ([`adopt_fd`]). Inherited descriptors that no handle adopted are closed afterwards,
/// so they hold nothing open.
pub(crate) fn adopting_fds<T>(inherited: &[RawFd], decode: impl FnOnce() -> T) -> T {
    decode_with(inherited.iter().map(|&fd| (fd, fd)).collect(), decode)
}

/// Runs `decode` (a message received over a socket) while handles may adopt the
/// descriptors that came with it: `received` maps each tagged number of the message to
/// the descriptor received for it, which this call owns (closed afterwards unless a
/// handle adopted it).
pub(crate) fn adopting_received<T>(received: Vec<(i32, OwnedFd)>, decode: impl FnOnce() -> T) -> T {
    let map = received
        .into_iter()
        .map(|(n, fd)| (n, std::os::fd::IntoRawFd::into_raw_fd(fd)))
        .collect();
    decode_with(map, decode)
}

/// The tag of the descriptors a handle decoded outside any context asked for, since the
/// last call (`None` when none did, or it asked for a plain number). Cleared by the call.
pub(crate) fn take_wanted_tag() -> Option<u32> {
    WANTED
        .with(|w| w.take())
        .and_then(untag)
        .map(|(tag, _)| tag)
}

/// Forgets what [`take_wanted_tag`] would report.
pub(crate) fn clear_wanted() {
    WANTED.with(|w| w.set(None));
}

/// From a handle's `Serialize`: records `fd` for the spawned child (or the socket) and
/// returns the number under which the other side will find it. Fails outside
/// [`passing_fds`] and [`passing_fds_tagged`].
pub(crate) fn pass_fd(fd: BorrowedFd<'_>) -> Result<i32> {
    CTX.with(|c| match c.borrow_mut().as_mut() {
        Some(Ctx::Encode { fds, tag }) => {
            let raw = fd.as_raw_fd();
            let index = match fds.iter().position(|&f| f == raw) {
                Some(i) => i,
                None => {
                    fds.push(raw);
                    fds.len() - 1
                }
            };
            match tag {
                None => Ok(raw),
                Some(_) if index >= crate::sys::socket::MAX_FDS => Err(Error::Handle(
                    "a message carries more than 253 descriptors (SCM_RIGHTS limit)",
                )),
                Some(t) => Ok(tagged_number(*t, index)),
            }
        }
        _ => Err(Error::Handle(
            "shmproc handles can only be serialized as the args of a Process (or Pool task) they are handed to, or in a message over a Connection from Listener::accept or connect",
        )),
    })
}

/// From a handle's `Deserialize` in a spawned child (or a receiver of a message over a
/// socket): takes ownership of the descriptor passed as number `n` (a duplicate when it
/// was adopted before). Fails for a number that was not passed, and outside
/// [`adopting_fds`] and [`adopting_received`] (noting `n` for [`take_wanted_tag`]).
pub(crate) fn adopt_fd(n: i32) -> Result<OwnedFd> {
    CTX.with(|c| match c.borrow_mut().as_mut() {
        Some(Ctx::Decode { inherited, adopted }) => {
            let Some(&(_, fd)) = inherited.iter().find(|(w, _)| *w == n) else {
                return Err(Error::Handle("descriptor was not passed by the parent"));
            };
            if !crate::sys::fd_is_open(fd) {
                return Err(Error::Handle("descriptor was not passed by the parent"));
            }
            if adopted.contains(&n) {
                // Borrow the already-adopted descriptor only to duplicate it.
                let fd = crate::sys::borrow_raw_checked(fd)?;
                return Ok(crate::sys::dup_cloexec(fd)?);
            }
            adopted.push(n);
            crate::sys::own_inherited(fd).map_err(Error::from)
        }
        _ => {
            WANTED.with(|w| w.set(Some(n)));
            Err(Error::Handle(
                "a shmproc handle can only be deserialized by shmproc::init(), or from a message over a Connection from Listener::accept or connect",
            ))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tagged_numbers_are_negative_and_round_trip() {
        for (tag, i) in [(0, 0), (1, 5), (MAX_TAG, 252), (12345, 1023)] {
            let n = tagged_number(tag, i);
            assert!(n < 0);
            assert_eq!(untag(n), Some((tag, i)));
        }
        assert_eq!(untag(3), None);
    }
}
