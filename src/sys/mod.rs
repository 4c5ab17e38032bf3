//! Thin, safe wrappers over the system calls the upper layers need.
//!
//! One pattern for every call, as in nix: `let res = unsafe { libc::call(..) };` then
//! turn `-1` into `io::Error::last_os_error()`. With `region`, `sync` and `ring`, this
//! is the only place where `unsafe` may appear.

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::AtomicU32;
use std::time::{Duration, Instant};

#[cfg(feature = "tokio")]
pub(crate) mod event;
pub(crate) mod exec;
pub(crate) mod proc;
pub(crate) mod reloc;
pub(crate) mod socket;

/// The return types of system calls that report failure as `-1` and `errno`.
trait MinusOne: Copy + PartialEq {
    const MINUS_ONE: Self;
}

impl MinusOne for i32 {
    const MINUS_ONE: Self = -1;
}

impl MinusOne for i64 {
    const MINUS_ONE: Self = -1;
}

impl MinusOne for isize {
    const MINUS_ONE: Self = -1;
}

/// `-1` → the `errno` error; anything else is the call's result (as std's `cvt`).
fn cvt<T: MinusOne>(res: T) -> io::Result<T> {
    if res == T::MINUS_ONE {
        Err(io::Error::last_os_error())
    } else {
        Ok(res)
    }
}

/// Calls `f` until it is not interrupted by a signal (`EINTR`), then [`cvt`]s its result.
fn cvt_r<T: MinusOne>(mut f: impl FnMut() -> T) -> io::Result<T> {
    loop {
        match cvt(f()) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            other => return other,
        }
    }
}

/// The deadline `timeout` from now, or `None` when that instant cannot be represented
/// (`Duration::MAX` and other huge timeouts): no deadline, wait for ever. Every wait of
/// the crate that takes a `Duration` turns it into a deadline here, never with
/// `Instant + Duration` (which panics on overflow).
pub(crate) fn deadline_after(timeout: Duration) -> Option<Instant> {
    Instant::now().checked_add(timeout)
}

/// `memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING)`.
pub(crate) fn memfd_create(name: &CStr) -> io::Result<OwnedFd> {
    // SAFETY: `name` is a valid NUL-terminated string; the flags are constants.
    let fd = cvt(unsafe {
        libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING)
    })?;
    // SAFETY: the kernel just returned this fd to us; nobody else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Frees the pages of `[offset, offset + len)` of a file (`FALLOC_FL_PUNCH_HOLE`,
/// keeping its size): reading the range again gives zeroes.
pub(crate) fn punch_hole(fd: BorrowedFd<'_>, offset: u64, len: u64) -> io::Result<()> {
    let (Ok(off), Ok(len)) = (libc::off_t::try_from(offset), libc::off_t::try_from(len)) else {
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    };
    if len == 0 {
        return Ok(());
    }
    let mode = libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE;
    // SAFETY: fallocate with integer arguments on a valid fd.
    cvt(unsafe { libc::fallocate(fd.as_raw_fd(), mode, off, len) }).map(drop)
}

/// `fallocate(fd, 0, 0, len)`: reserve every page now, so a full tmpfs or memory cgroup
/// is an error here and never a SIGBUS on first touch.
pub(crate) fn fallocate(fd: BorrowedFd<'_>, len: u64) -> io::Result<()> {
    let len =
        libc::off_t::try_from(len).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: plain syscall on a valid fd; no memory is passed.
    match cvt_r(|| unsafe { libc::fallocate(fd.as_raw_fd(), 0, 0, len) }) {
        Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => {
            // Some filesystems lack fallocate: fall back to ftruncate (no reservation).
            // SAFETY: plain syscall on a valid fd.
            cvt(unsafe { libc::ftruncate(fd.as_raw_fd(), len) }).map(drop)
        }
        other => other.map(drop),
    }
}

/// Seals a memfd against shrinking, growing and further sealing.
pub(crate) fn seal_size(fd: BorrowedFd<'_>) -> io::Result<()> {
    let seals = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_SEAL;
    // SAFETY: fcntl with an integer argument on a valid fd.
    cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_ADD_SEALS, seals) }).map(drop)
}

/// The seals set on a memfd, or `None` when the fd does not support sealing.
pub(crate) fn get_seals(fd: BorrowedFd<'_>) -> Option<i32> {
    // SAFETY: fcntl without argument on a valid fd.
    let res = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GET_SEALS) };
    (res >= 0).then_some(res)
}

/// `fstat` of an fd: (size, owner uid, mode).
pub(crate) fn fstat(fd: BorrowedFd<'_>) -> io::Result<(u64, u32, u32)> {
    let st = nix::sys::stat::fstat(fd.as_raw_fd()).map_err(io::Error::from)?;
    Ok((st.st_size as u64, st.st_uid, st.st_mode))
}

/// The effective uid of this process.
pub(crate) fn geteuid() -> u32 {
    nix::unistd::geteuid().as_raw()
}

/// `shm_open(name, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600)`.
pub(crate) fn shm_create_excl(name: &CStr) -> io::Result<OwnedFd> {
    let flags = libc::O_RDWR | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_CLOEXEC;
    // SAFETY: valid NUL-terminated name; mode is a constant.
    let fd = cvt(unsafe { libc::shm_open(name.as_ptr(), flags, 0o600) })?;
    // SAFETY: fresh fd from the kernel.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // The umask cannot widen the mode, but make sure it is exactly 0600 (a umask of 0077 is fine too).
    // SAFETY: fchmod on a valid fd.
    cvt(unsafe { libc::fchmod(fd.as_raw_fd(), 0o600) })?;
    Ok(fd)
}

/// `shm_open(name, O_RDWR | O_NOFOLLOW | O_CLOEXEC)`.
pub(crate) fn shm_open_existing(name: &CStr) -> io::Result<OwnedFd> {
    let flags = libc::O_RDWR | libc::O_NOFOLLOW | libc::O_CLOEXEC;
    // SAFETY: valid NUL-terminated name.
    let fd = cvt(unsafe { libc::shm_open(name.as_ptr(), flags, 0) })?;
    // SAFETY: fresh fd from the kernel.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `shm_unlink(name)`.
pub(crate) fn shm_unlink(name: &CStr) -> io::Result<()> {
    // SAFETY: valid NUL-terminated name.
    cvt(unsafe { libc::shm_unlink(name.as_ptr()) }).map(drop)
}

/// 16 random bytes from `getrandom`, for unguessable names.
pub(crate) fn random_u128() -> io::Result<u128> {
    let mut buf = [0u8; 16];
    let mut filled = 0;
    while filled < buf.len() {
        let tail = &mut buf[filled..];
        // SAFETY: the pointer and length describe the unfilled tail of `buf`.
        filled +=
            cvt_r(|| unsafe { libc::getrandom(tail.as_mut_ptr().cast(), tail.len(), 0) })? as usize;
    }
    Ok(u128::from_ne_bytes(buf))
}

/// `pipe2(O_CLOEXEC)`: (read end, write end).
pub(crate) fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(io::Error::from)
}

/// `dup` with close-on-exec.
pub(crate) fn dup_cloexec(fd: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    fd.try_clone_to_owned()
}

/// Sets or clears `FD_CLOEXEC`. Async-signal-safe: callable between fork and exec.
pub(crate) fn set_cloexec(fd: RawFd, on: bool) -> io::Result<()> {
    // SAFETY: fcntl F_GETFD/F_SETFD on an fd number; an invalid number gives EBADF.
    let flags = cvt(unsafe { libc::fcntl(fd, libc::F_GETFD) })?;
    let new = if on {
        flags | libc::FD_CLOEXEC
    } else {
        flags & !libc::FD_CLOEXEC
    };
    // SAFETY: as above.
    cvt(unsafe { libc::fcntl(fd, libc::F_SETFD, new) }).map(drop)
}

/// Whether an fd number is open in this process.
pub(crate) fn fd_is_open(fd: RawFd) -> bool {
    // SAFETY: F_GETFD on any number is harmless; EBADF when it is not open.
    unsafe { libc::fcntl(fd, libc::F_GETFD) != -1 }
}

/// What `poll` said about one fd.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PeerState {
    /// The other side still has an open end.
    Alive,
    /// Every end on the other side is closed (POLLHUP on a read end, POLLERR on a write end).
    Gone,
}

/// Polls a liveness pipe end without blocking. A read end reports `Gone` once every write
/// end is closed; a write end reports `Gone` once every read end is closed.
pub(crate) fn peer_state(fd: BorrowedFd<'_>) -> PeerState {
    let mut pfd = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: 0,
        revents: 0,
    };
    // SAFETY: one valid pollfd, zero timeout. A failure leaves `revents` 0: alive.
    let _ = cvt_r(|| unsafe { libc::poll(&mut pfd, 1, 0) });
    if pfd.revents & (libc::POLLHUP | libc::POLLERR | libc::POLLNVAL) != 0 {
        PeerState::Gone
    } else {
        PeerState::Alive
    }
}

/// `FUTEX_WAIT` (shared, not private: the word may live in memory mapped by several
/// processes) on `word` while it holds `expected`, for at most `timeout`.
/// Returns on wake-up, on a value mismatch, on timeout or on a signal; callers re-check.
#[cfg_attr(loom, allow(dead_code))] // loom models the futex in `sync::waiter`
pub(crate) fn futex_wait(word: &AtomicU32, expected: u32, timeout: Option<Duration>) {
    let ts;
    let ts_ptr = match timeout {
        Some(t) => {
            ts = libc::timespec {
                tv_sec: t.as_secs().min(i64::MAX as u64) as libc::time_t,
                tv_nsec: t.subsec_nanos() as libc::c_long,
            };
            &ts as *const libc::timespec
        }
        None => std::ptr::null(),
    };
    // SAFETY: `word` is a live, aligned u32 for the duration of the call; the kernel only
    // reads it. `ts_ptr` is null or points to `ts`, alive until the call returns.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT,
            expected,
            ts_ptr,
        );
    }
}

/// `FUTEX_WAKE` (shared) of up to `n` waiters on `word`.
#[cfg_attr(loom, allow(dead_code))] // loom models the futex in `sync::waiter`
pub(crate) fn futex_wake(word: &AtomicU32, n: u32) {
    let n = n.min(i32::MAX as u32) as libc::c_int;
    // SAFETY: `word` is a live, aligned u32; FUTEX_WAKE does not access memory.
    unsafe {
        libc::syscall(libc::SYS_futex, word.as_ptr(), libc::FUTEX_WAKE, n);
    }
}

const MEMBARRIER_CMD_GLOBAL_EXPEDITED: libc::c_int = 1 << 1;
const MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED: libc::c_int = 1 << 2;

/// Registers this process for expedited global memory barriers, so that a peer's
/// [`membarrier_global`] forces a full fence on whichever CPU runs one of our threads.
/// Returns whether the kernel supports it. Cheap and idempotent.
pub(crate) fn membarrier_register() -> bool {
    // SAFETY: membarrier takes only integer arguments.
    let res = unsafe {
        libc::syscall(
            libc::SYS_membarrier,
            MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED,
            0,
            0,
        )
    };
    res == 0
}

/// Whether this process may rely on `membarrier` (0 unknown, 1 yes, 2 no), and for
/// which pid it registered (a forked child must register again).
static MEMBARRIER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// [`membarrier_register`] once per process (a forked child registers again); cheap
/// after the first call. Returns whether this process may rely on `membarrier`.
#[cfg_attr(loom, allow(dead_code))] // loom models the fences without membarrier
pub(crate) fn membarrier_register_process() -> bool {
    let pid = u64::from(getpid());
    let state = MEMBARRIER.load(std::sync::atomic::Ordering::Relaxed);
    if state >> 2 == pid && state & 3 != 0 {
        return state & 3 == 1;
    }
    let ok = membarrier_register();
    MEMBARRIER.store(
        (pid << 2) | if ok { 1 } else { 2 },
        std::sync::atomic::Ordering::Relaxed,
    );
    ok
}

/// Whether [`membarrier_register_process`] found membarrier working (in this process
/// or, until the child registers, the one it was forked from).
#[inline(always)]
#[cfg_attr(loom, allow(dead_code))]
pub(crate) fn membarrier_ready() -> bool {
    MEMBARRIER.load(std::sync::atomic::Ordering::Relaxed) & 3 == 1
}

/// Issues a full memory barrier on every CPU running a thread of a registered process:
/// the slow side of an asymmetric Dekker handshake (the fast side then needs only a
/// compiler fence). Returns false when the kernel refused.
pub(crate) fn membarrier_global() -> bool {
    // SAFETY: membarrier takes only integer arguments.
    let res = unsafe { libc::syscall(libc::SYS_membarrier, MEMBARRIER_CMD_GLOBAL_EXPEDITED, 0, 0) };
    cvt(res).is_ok()
}

/// The calling thread's kernel id.
#[cfg_attr(loom, allow(dead_code))] // `sync::owner` models liveness under loom
pub(crate) fn gettid() -> u32 {
    // SAFETY: gettid has no arguments and cannot fail.
    unsafe { libc::gettid() as u32 }
}

/// This process's id.
pub(crate) fn getpid() -> u32 {
    std::process::id()
}

/// Whether a process (or thread) id names a live task. `kill(pid, 0)`: ESRCH means dead;
/// EPERM means alive but not ours. A pid can be reused, so callers pair it with the
/// start time of [`task_state`] (`sync::owner` holds the rule).
#[cfg_attr(loom, allow(dead_code))] // `sync::owner` models liveness under loom
pub(crate) fn pid_alive(pid: u32) -> bool {
    if pid == 0 || pid > i32::MAX as u32 {
        return false;
    }
    // SAFETY: signal 0 performs only the existence and permission checks.
    let res = unsafe { libc::kill(pid as libc::pid_t, 0) };
    res == 0 || io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
}

/// Closes a raw fd number owned by the caller (used only on fds taken from an
/// `AtomicI32` slot, where no `OwnedFd` exists).
pub(crate) fn close_raw(fd: RawFd) {
    if fd >= 0 {
        // SAFETY: the caller owns `fd` and forgets it after this call.
        drop(unsafe { OwnedFd::from_raw_fd(fd) });
    }
}

/// Borrows an fd number that the caller knows to be open (checked with `F_GETFD`) for
/// as long as the returned value lives.
pub(crate) fn borrow_raw_checked(fd: RawFd) -> io::Result<BorrowedFd<'static>> {
    if !fd_is_open(fd) {
        return Err(io::Error::from_raw_os_error(libc::EBADF));
    }
    // SAFETY: the fd is open (checked above); callers use the borrow only immediately,
    // to duplicate a descriptor that this process adopted and keeps open.
    Ok(unsafe { BorrowedFd::borrow_raw(fd) })
}

/// The time left until `deadline` as a `timespec` for `ppoll` (zero once it has passed;
/// capped far beyond any real wait, so the conversion cannot overflow).
fn timespec_left(deadline: Instant) -> libc::timespec {
    let left = deadline.saturating_duration_since(Instant::now());
    libc::timespec {
        tv_sec: left.as_secs().min(i64::MAX as u64 / 2) as libc::time_t,
        tv_nsec: left.subsec_nanos() as libc::c_long,
    }
}

/// An owned file descriptor that can be closed through a shared reference, once: the
/// `OwnedFd` of a process-local object that a freshly forked child must close while
/// other references to the object exist (see `sync::presence`). A process-local std
/// atomic holding the number, `-1` once closed; never in shared memory.
pub(crate) struct FdCell(std::sync::atomic::AtomicI32);

impl FdCell {
    pub(crate) fn new(fd: OwnedFd) -> FdCell {
        FdCell(std::sync::atomic::AtomicI32::new(
            std::os::fd::IntoRawFd::into_raw_fd(fd),
        ))
    }

    /// The descriptor, or `None` once [`close`](Self::close)d.
    pub(crate) fn get(&self) -> Option<BorrowedFd<'_>> {
        let fd = self.0.load(std::sync::atomic::Ordering::Acquire);
        // SAFETY: the cell owns `fd` until `close`, whose contract is that no borrow
        // from here is alive then; `&self` keeps the cell (and so the fd) alive.
        (fd >= 0).then(|| unsafe { BorrowedFd::borrow_raw(fd) })
    }

    /// Closes the descriptor; later calls do nothing.
    ///
    /// # Safety
    ///
    /// No borrow from [`get`](Self::get) may be alive, in any thread: call it only
    /// where nothing else uses the cell (in a freshly forked child, which has one
    /// thread, or when the object owning the cell is being dropped).
    pub(crate) unsafe fn close(&self) {
        close_raw(self.0.swap(-1, std::sync::atomic::Ordering::AcqRel));
    }
}

impl Drop for FdCell {
    fn drop(&mut self) {
        // SAFETY: `&mut self`: no borrow from `get` is alive.
        unsafe { self.close() }
    }
}

impl std::fmt::Debug for FdCell {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("FdCell").field(&self.0).finish()
    }
}

/// Takes ownership of a descriptor inherited across `execve`, marking it close-on-exec
/// again so that our own later spawns do not leak it.
pub(crate) fn own_inherited(fd: RawFd) -> io::Result<OwnedFd> {
    set_cloexec(fd, true)?;
    // SAFETY: the fd is open (set_cloexec succeeded), was passed to this process by its
    // parent for this purpose, and the hand-off context adopts each number only once.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

static FORK_GENERATION: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
static ATFORK: std::sync::Once = std::sync::Once::new();

extern "C" fn bump_fork_generation() {
    FORK_GENERATION.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
}

/// Registers `handler` to run in the child after every `fork` (`pthread_atfork`), in
/// the thread that forked (the child's only thread). It must be async-signal-safe.
#[cfg_attr(loom, allow(dead_code))] // `sync::owner` caches no identity under loom
pub(crate) fn at_fork_child(handler: extern "C" fn()) {
    // SAFETY: registers a handler the caller vouches for (async-signal-safe).
    unsafe { libc::pthread_atfork(None, None, Some(handler)) };
}

/// A number that changes in a child after every `fork` (through `pthread_atfork`), so
/// per-thread caches of the pid and tid can tell they were inherited.
#[inline]
pub(crate) fn fork_generation() -> u64 {
    ATFORK.call_once(|| {
        // SAFETY: registers a handler that only bumps an atomic (async-signal-safe).
        unsafe { libc::pthread_atfork(None, None, Some(bump_fork_generation)) };
    });
    FORK_GENERATION.load(std::sync::atomic::Ordering::Relaxed)
}

/// The state letter (field 3 of `/proc/<tid>/stat`: `R`, `S`, `Z`, ...) and start time
/// (field 22, clock ticks since boot) of a task. `None` when it is gone. A zombie (`Z`)
/// or dead (`X`) task still answers `kill(tid, 0)`; this tells it apart.
#[cfg_attr(loom, allow(dead_code))] // `sync::owner` models liveness under loom
pub(crate) fn task_state(tid: u32) -> Option<(u8, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{tid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_ascii_whitespace();
    let state = *fields.next()?.as_bytes().first()?;
    let start = fields.nth(18)?.parse().ok()?;
    Some((state, start))
}

/// The (device, inode) pair of an fd: two descriptors (or two mappings) name the same
/// file exactly when these are equal.
pub(crate) fn file_id(fd: BorrowedFd<'_>) -> io::Result<(u64, u64)> {
    let st = nix::sys::stat::fstat(fd.as_raw_fd()).map_err(io::Error::from)?;
    Ok((st.st_dev, st.st_ino))
}
