//! Who holds something in shared memory, and whether it still runs: the one liveness
//! rule behind the robust lock ([`RawLock`](super::raw::RawLock)), the queue ring's slot
//! claims and the pipe ring's writer role.
//!
//! # Identity
//!
//! An [`Owner`] is a thread: its kernel task id (`tid`, unique in the system while the
//! task exists; a process's first thread has the process's id) and the low 32 bits of its
//! start time (field 22 of `/proc/<tid>/stat`, clock ticks since boot), packed into one
//! word, the *tag* (`tid << 32 | start`), that fits next to whatever the owner holds.
//! [`me`] is the calling thread's, computed once per thread and again in a forked child.
//!
//! # The rule
//!
//! A recorded owner is alive while a task with its id exists, has not exited, and
//! started at the recorded time:
//!
//! * no task with that id (`kill(tid, 0)` says `ESRCH`): dead;
//! * a zombie (killed, not yet reaped by its parent) still answers `kill`, but will never
//!   release anything: dead;
//! * a task with that id but another start time: the id was reused by someone else, and
//!   the owner is dead;
//! * a start time of 0 means "not known" (a holder's tag is written just after its
//!   claim, so a checker may find the claim without it): then only the first two count.
//!
//! A process that dies ends all its threads, so its owners die with it; a thread that
//! exits while holding something is a dead owner too, in any process.
//!
//! Two checks of different cost: [`Owner::exists`] is one `kill(tid, 0)` (cheap enough
//! before every sleep), [`Owner::is_alive`] also reads `/proc/<tid>/stat` (slow paths,
//! at most once per slice of waiting).
//!
//! Limits: ids mean something only when every process shares one pid namespace; a start
//! time is compared in its low 32 bits (at 100 ticks a second, a reused id whose start
//! differs by a multiple of 497 days passes for the owner).

#[cfg(not(loom))]
use std::cell::Cell;

/// A thread that holds (or may hold) something in shared memory; see the module docs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Owner(u64);

impl Owner {
    /// The owner with task id `tid` and start time `start` (low 32 bits; 0: unknown).
    pub(crate) const fn new(tid: u32, start: u32) -> Owner {
        Owner(((tid as u64) << 32) | start as u64)
    }

    /// The owner a tag stands for (a tag read from shared memory may be garbage: such an
    /// owner is simply not alive).
    #[inline(always)]
    pub(crate) const fn from_tag(tag: u64) -> Owner {
        Owner(tag)
    }

    /// The holder named by `tid` in a lock word or claim, with the tag recorded next to
    /// it: the tag's start time counts only if the tag was written for this very `tid`
    /// (otherwise it is a previous holder's, or not written yet), else it is unknown.
    pub(crate) fn recorded(tid: u32, tag: u64) -> Owner {
        let tagged = Owner::from_tag(tag);
        if tagged.tid() == tid {
            tagged
        } else {
            Owner::new(tid, 0)
        }
    }

    /// `tid << 32 | start`: never 0 for a real thread, and below 2^54 (task ids are below
    /// 2^22), so the top bits are free for a holder's flags.
    #[inline(always)]
    pub(crate) const fn tag(self) -> u64 {
        self.0
    }

    /// The kernel task id.
    #[inline(always)]
    pub(crate) const fn tid(self) -> u32 {
        (self.0 >> 32) as u32
    }

    /// The low 32 bits of the start time; 0: unknown.
    #[cfg_attr(loom, allow(dead_code))]
    #[inline(always)]
    pub(crate) const fn start(self) -> u32 {
        self.0 as u32
    }

    /// Whether a task with this id exists (one `kill(tid, 0)`): false means dead; true
    /// may still be a zombie or a reused id ([`Owner::is_alive`] tells).
    pub(crate) fn exists(self) -> bool {
        #[cfg(loom)]
        return true;
        #[cfg(not(loom))]
        crate::sys::pid_alive(self.tid())
    }

    /// Whether the owner still runs: [`Owner::exists`], not exited, and (when its start
    /// time is known) started when recorded. Reads `/proc`: for slow paths.
    pub(crate) fn is_alive(self) -> bool {
        #[cfg(loom)]
        return true;
        #[cfg(not(loom))]
        {
            if !self.exists() {
                return false;
            }
            match crate::sys::task_state(self.tid()) {
                Some((state, start)) => {
                    !exited(state) && (self.start() == 0 || start as u32 == self.start())
                }
                // Unreadable: gone since the `kill` (or /proc is hidden from us): ask again.
                None => self.exists(),
            }
        }
    }
}

/// Whether a `/proc` state letter is that of a task that has exited (`Z` zombie,
/// `X`/`x` dead) but may still answer `kill(tid, 0)`.
#[cfg(not(loom))]
fn exited(state: u8) -> bool {
    matches!(state, b'Z' | b'X' | b'x')
}

#[cfg(not(loom))]
thread_local! {
    /// This thread's identity once computed; [`UNKNOWN`] (no thread's tag, nor the
    /// empty owner word 0, nor `SHARED`) before, and again in a forked child (a forked
    /// child's thread has another id and start time: [`forget_me`] clears it there).
    static ME: Cell<Owner> = const { Cell::new(UNKNOWN) };
}

/// [`ME`] before it is computed: all ones, which no tag is (a thread id is below 2^22).
#[cfg(not(loom))]
const UNKNOWN: Owner = Owner(u64::MAX);

/// The calling thread's tag as cached, or a value that is no thread's tag (nor 0) when
/// not computed yet: a fast path compares an owner word with it and, on a mismatch,
/// takes its slow path, which calls [`me`]. One thread-local load, no branch.
#[cfg(not(loom))]
#[inline(always)]
pub(crate) fn cached_tag() -> u64 {
    ME.get().0
}

/// Under loom: [`me`]'s tag.
#[cfg(loom)]
pub(crate) fn cached_tag() -> u64 {
    me().tag()
}

/// The calling thread, cached per thread: one thread-local load on every call but the
/// first (a writer asks on every send), recomputed after a fork.
#[cfg(not(loom))]
#[inline]
pub(crate) fn me() -> Owner {
    let me = ME.get();
    if me != UNKNOWN {
        return me;
    }
    compute_me()
}

/// Runs in a forked child (`pthread_atfork`), in its only thread, the one that forked:
/// its cached identity is its parent thread's, so it is computed again. (Other
/// threads' caches do not exist in the child.) Only a thread-local store:
/// async-signal-safe.
#[cfg(not(loom))]
extern "C" fn forget_me() {
    let _ = ME.try_with(|c| c.set(UNKNOWN));
}

#[cfg(not(loom))]
#[cold]
#[inline(never)]
fn compute_me() -> Owner {
    // Registered before any identity is cached, so no cache outlives a fork.
    static AT_FORK: std::sync::Once = std::sync::Once::new();
    AT_FORK.call_once(|| crate::sys::at_fork_child(forget_me));
    let tid = crate::sys::gettid();
    let start = crate::sys::task_state(tid).map_or(0, |(_, t)| t);
    let me = Owner::new(tid, start as u32);
    ME.set(me);
    me
}

/// Under loom: a distinct small id per loom thread (its threads share one kernel task),
/// with a fixed start time.
#[cfg(loom)]
pub(crate) fn me() -> Owner {
    let id = loom::thread::current().id();
    let n: u32 = format!("{id:?}")
        .chars()
        .filter(|c| c.is_ascii_digit())
        .collect::<String>()
        .parse()
        .unwrap_or(0);
    Owner::new(n + 1, 7)
}

#[cfg(all(test, not(loom)))]
mod tests;
