//! Process control: `fork`, `fork` + `execve` of the current binary, `waitpid`, pidfds,
//! signals, `prctl(PR_SET_PDEATHSIG)`, and finding a function again in a re-executed
//! image.
//!
//! Everything here is a safe function; the `unsafe` blocks and their reasoning stay in
//! this file. The `process` module above builds `Process` from these pieces.
//!
//! # Finding a target in a spawned child
//!
//! A spawned child is a fresh `execve` of the current executable, so code addresses
//! differ from the parent's only by the load address (ASLR moves the whole image). The
//! parent records the offsets, from a fixed anchor function, of a monomorphized
//! trampoline (`trampoline::<A, R, X>`) and of the target `fn(A) -> R`, with a
//! fingerprint of the trampoline's types; the child adds its own anchor address back, and
//! the trampoline compares the fingerprint with its own before it calls anything.
//!
//! # Trusting a job
//!
//! A job's fields are public information (the executable's `stat`, its symbol table), so
//! the child trusts a job for where it came from, not for what it says: before `main`
//! ([`boot`], from an `.init_array` constructor) it checks that its parent process runs
//! this same executable image and is still its parent, and only then acknowledges the job
//! on a pipe the parent's `start()` waits on. In a secure-execution process
//! (`AT_SECURE`: setuid, setgid, file capabilities) it does not read the job at all.

use std::ffi::{CString, OsString};
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use super::cvt;

/// Which side of a `fork` we are on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Forked {
    /// The new process. Only the thread that called `fork` exists here.
    Child,
    /// The calling process; the child's pid.
    Parent(u32),
}

/// `fork()`.
///
/// In the child only the calling thread exists: a lock that another thread held at the
/// moment of the fork stays locked forever there. Callers keep the child's own work to
/// what is safe in that state (see the `process` module docs), and end the child with
/// [`exit_now`].
pub(crate) fn fork() -> io::Result<Forked> {
    // SAFETY: fork has no memory-safety preconditions of its own. What makes it hazardous
    // in a multi-threaded program is that the child has one thread and may find locks held
    // forever; that is a liveness hazard (a deadlock), not undefined behaviour, for locks
    // written in Rust. glibc's malloc and stdio re-initialise their locks in the child
    // (atfork handlers). The callers in this crate document the remaining hazards and
    // do only the documented work in the child.
    let res = unsafe { libc::fork() };
    match res {
        -1 => Err(io::Error::last_os_error()),
        0 => Ok(Forked::Child),
        pid => Ok(Forked::Parent(pid as u32)),
    }
}

/// `_exit(code)`: ends the process at once, without running `atexit` handlers, C stdio
/// flushing or any destructor. The way a forked child ends, so it never runs the
/// parent's clean-up code a second time. Flush what must be flushed first.
pub(crate) fn exit_now(code: i32) -> ! {
    // SAFETY: _exit is async-signal-safe and never returns; nothing is left half-done
    // that the process could observe afterwards.
    unsafe { libc::_exit(code) }
}

/// The exit code [`arm_exit_alarm`]'s handler ends the process with.
static ALARM_EXIT_CODE: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(1);

extern "C" fn exit_on_alarm(_: libc::c_int) {
    exit_now(ALARM_EXIT_CODE.load(std::sync::atomic::Ordering::Relaxed))
}

/// On the way out of a child: makes the process `_exit(code)` from a SIGALRM handler if
/// it still runs `secs` seconds from now, unless [`disarm_exit_alarm`] comes first. For a
/// last step that may block for ever on a lock held at the fork by a thread that the
/// child does not have (std's stdout lock, which has no `try_lock`). Replaces the
/// SIGALRM handler and any pending `alarm`, and unblocks SIGALRM on this thread: call it
/// only when the child's own code is done.
pub(crate) fn arm_exit_alarm(code: i32, secs: u32) {
    ALARM_EXIT_CODE.store(code, std::sync::atomic::Ordering::Relaxed);
    let handler: extern "C" fn(libc::c_int) = exit_on_alarm;
    // SAFETY: a zeroed sigaction with a handler that only calls `_exit` (async-signal-
    // safe) and an empty mask is a valid argument; sigaction, pthread_sigmask and alarm
    // only read our stack values.
    unsafe {
        let mut act: libc::sigaction = std::mem::zeroed();
        act.sa_sigaction = handler as libc::sighandler_t;
        libc::sigemptyset(&mut act.sa_mask);
        libc::sigaction(libc::SIGALRM, &act, std::ptr::null_mut());
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGALRM);
        libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
        libc::alarm(secs);
    }
}

/// Cancels the alarm of [`arm_exit_alarm`].
pub(crate) fn disarm_exit_alarm() {
    // SAFETY: alarm(0) takes an integer and cancels the pending alarm.
    unsafe { libc::alarm(0) };
}

/// The parent's process id.
pub(crate) fn getppid() -> u32 {
    // SAFETY: getppid has no arguments and cannot fail.
    unsafe { libc::getppid() as u32 }
}

/// In a freshly forked child: asks the kernel to SIGKILL this process when the *thread*
/// that forked it exits, then checks that the parent (`parent`, recorded before the fork)
/// is still there; if it already died, kills itself at once. Async-signal-safe.
pub(crate) fn die_with_parent(parent: u32) {
    // SAFETY: prctl with integer arguments only.
    let res = unsafe {
        libc::prctl(
            libc::PR_SET_PDEATHSIG,
            libc::SIGKILL as libc::c_ulong,
            0,
            0,
            0,
        )
    };
    if res == -1 || getppid() != parent {
        // The parent died before the death signal was armed (or it could not be armed):
        // die now, as the death signal would have made us.
        // SAFETY: kill with integer arguments; signalling ourselves.
        unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
        exit_now(137);
    }
}

/// In a freshly forked child: restores the default action of SIGTERM and unblocks it, so
/// that `Process::terminate` ends the child with signal 15 whatever the parent did with
/// the signal. Async-signal-safe.
pub(crate) fn reset_child_signals() {
    // SAFETY: a zeroed sigaction with SIG_DFL and an empty mask is a valid argument;
    // sigaction and sigprocmask are async-signal-safe and only read our stack values.
    unsafe {
        let mut act: libc::sigaction = std::mem::zeroed();
        act.sa_sigaction = libc::SIG_DFL;
        libc::sigemptyset(&mut act.sa_mask);
        libc::sigaction(libc::SIGTERM, &act, std::ptr::null_mut());
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigprocmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
    }
}

/// `waitpid(pid)` on one specific child (never `-1`: children the program forked itself
/// are not ours to reap). Returns `None` when `block` is false and the child still runs,
/// otherwise the exit code in Python's convention: `n` after `exit(n)`, `-N` after death
/// by signal `N`.
pub(crate) fn wait_exitcode(pid: u32, block: bool) -> io::Result<Option<i32>> {
    let flags = if block { 0 } else { libc::WNOHANG };
    loop {
        let mut status: libc::c_int = 0;
        // SAFETY: `status` is a valid out-pointer for the duration of the call.
        let res = unsafe { libc::waitpid(pid as libc::pid_t, &mut status, flags) };
        if res == -1 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if res == 0 {
            return Ok(None);
        }
        if libc::WIFEXITED(status) {
            return Ok(Some(libc::WEXITSTATUS(status)));
        }
        if libc::WIFSIGNALED(status) {
            return Ok(Some(-libc::WTERMSIG(status)));
        }
        // Stopped or continued (not requested, but be safe): keep waiting.
        if !block {
            return Ok(None);
        }
    }
}

/// `pidfd_open(pid, 0)` (Linux 5.3+): a descriptor that becomes readable when the child
/// exits, so waiting with a timeout is one `poll`.
pub(crate) fn pidfd_open(pid: u32) -> io::Result<OwnedFd> {
    // SAFETY: integer arguments only.
    let res = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    if res < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned this descriptor to us; pidfds are close-on-exec.
    Ok(unsafe { OwnedFd::from_raw_fd(res as RawFd) })
}

/// Waits until `fd` is readable (or hung up), for at most `timeout` (`None`, or a timeout
/// too large to add to the clock such as `Duration::MAX`: for ever). Returns whether it
/// became ready. Retries on `EINTR` with the remaining time.
pub(crate) fn poll_readable(fd: BorrowedFd<'_>, timeout: Option<Duration>) -> io::Result<bool> {
    let deadline = timeout.and_then(super::deadline_after);
    loop {
        let mut pfd = libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let ts;
        let ts_ptr = match deadline {
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                ts = libc::timespec {
                    tv_sec: left.as_secs().min(i64::MAX as u64 / 2) as libc::time_t,
                    tv_nsec: left.subsec_nanos() as libc::c_long,
                };
                &ts as *const libc::timespec
            }
            None => std::ptr::null(),
        };
        // SAFETY: one valid pollfd; `ts_ptr` is null or points to `ts`, alive for the
        // call; a null signal mask leaves the mask unchanged.
        let n = unsafe { libc::ppoll(&mut pfd, 1, ts_ptr, std::ptr::null()) };
        match n {
            -1 => {
                let e = io::Error::last_os_error();
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(e);
                }
            }
            0 => return Ok(false),
            _ => return Ok(true),
        }
    }
}

/// The two signals `Process` sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Signal {
    /// SIGTERM (15).
    Term,
    /// SIGKILL (9).
    Kill,
}

/// `kill(pid, sig)`. The caller guarantees `pid` is its own child not yet reaped (a
/// zombie keeps its pid, so the number cannot have been reused).
pub(crate) fn send_signal(pid: u32, sig: Signal) -> io::Result<()> {
    let sig = match sig {
        Signal::Term => libc::SIGTERM,
        Signal::Kill => libc::SIGKILL,
    };
    // SAFETY: integer arguments only.
    cvt(unsafe { libc::kill(pid as libc::pid_t, sig) }).map(drop)
}

/// Reads exactly `buf.len()` bytes from a pipe, waiting at most `timeout` for each piece.
/// `UnexpectedEof` when the writer closed early, `TimedOut` when it stalled.
pub(crate) fn read_exact_timeout(
    fd: &OwnedFd,
    buf: &mut [u8],
    timeout: Duration,
) -> io::Result<()> {
    let mut file = std::fs::File::from(fd.try_clone()?);
    let mut done = 0;
    while done < buf.len() {
        if !poll_readable(fd.as_fd(), Some(timeout))? {
            return Err(io::Error::from(io::ErrorKind::TimedOut));
        }
        match file.read(&mut buf[done..]) {
            Ok(0) => return Err(io::Error::from(io::ErrorKind::UnexpectedEof)),
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Writes `msg` to fd 2 with `write(2)`, bypassing std's `Stderr` and its lock (which a
/// forked child may find held for ever by a thread of the parent). Best effort: errors
/// are ignored, as `eprintln!` would panic on them.
pub(crate) fn write_stderr(msg: &str) {
    let mut rest = msg.as_bytes();
    while !rest.is_empty() {
        // SAFETY: `rest` is valid for reads of `rest.len()` bytes for the call.
        let n = unsafe { libc::write(2, rest.as_ptr().cast(), rest.len()) };
        match n {
            n if n > 0 => rest = &rest[n as usize..],
            -1 if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted => {}
            _ => return,
        }
    }
}

/// Writes all of `bytes` to a pipe.
pub(crate) fn write_all(fd: &OwnedFd, bytes: &[u8]) -> io::Result<()> {
    std::fs::File::from(fd.try_clone()?).write_all(bytes)
}

// ---------------------------------------------------------------------------------------
// fork + execve of the current binary
// ---------------------------------------------------------------------------------------

/// Everything `execve` needs, prepared in the parent, so that the child between `fork`
/// and `execve` only makes async-signal-safe system calls (no allocation, no locks).
pub(crate) struct ExecPlan {
    path: CString,
    _argv: Vec<CString>,
    argv_ptrs: Vec<*const libc::c_char>,
    _envp: Vec<CString>,
    envp_ptrs: Vec<*const libc::c_char>,
    keep_fds: Vec<RawFd>,
    /// One past the highest descriptor number the child may hold (the soft
    /// `RLIMIT_NOFILE`), for kernels without `close_range`.
    fd_limit: RawFd,
}

impl ExecPlan {
    /// Plans `execve(<current executable>, argv, env)`, keeping `keep_fds` open across it
    /// (their close-on-exec flag is cleared in the child only) and no other descriptor
    /// above 2. Entries containing a NUL byte are an `InvalidInput` error.
    pub(crate) fn current_exe(
        argv: Vec<OsString>,
        env: Vec<(OsString, OsString)>,
        keep_fds: Vec<RawFd>,
    ) -> io::Result<ExecPlan> {
        let cstr = |v: Vec<u8>| {
            CString::new(v)
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL byte in argv or env"))
        };
        // The executable's path as the kernel (or a tool like valgrind, which runs the
        // program under its own binary) reports it; `/proc/self/exe` itself when that path
        // is gone. The child checks the image identity either way.
        let path = match std::env::current_exe() {
            Ok(p) if p.exists() => cstr(p.into_os_string().into_vec())?,
            _ => cstr(b"/proc/self/exe".to_vec())?,
        };
        let argv = argv
            .into_iter()
            .map(|a| cstr(a.into_vec()))
            .collect::<io::Result<Vec<_>>>()?;
        let envp = env
            .into_iter()
            .map(|(k, v)| {
                let mut kv = k.into_vec();
                kv.push(b'=');
                kv.extend_from_slice(&v.into_vec());
                cstr(kv)
            })
            .collect::<io::Result<Vec<_>>>()?;
        let mut argv_ptrs: Vec<_> = argv.iter().map(|a| a.as_ptr()).collect();
        argv_ptrs.push(std::ptr::null());
        let mut envp_ptrs: Vec<_> = envp.iter().map(|a| a.as_ptr()).collect();
        envp_ptrs.push(std::ptr::null());
        let fd_limit =
            match nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE) {
                // Linux's default ceiling (fs.nr_open) on descriptor numbers.
                Ok((soft, _)) => soft.min(1 << 20) as RawFd,
                Err(_) => 1 << 20,
            };
        Ok(ExecPlan {
            path,
            _argv: argv,
            argv_ptrs,
            _envp: envp,
            envp_ptrs,
            keep_fds,
            fd_limit,
        })
    }
}

/// A child forked by [`spawn_fork`] that may still be on its way to `execve`.
pub(crate) struct PendingExec {
    pid: u32,
    err_r: OwnedFd,
}

/// Forks a child that immediately `execve`s `plan`. Between the two it only: arms the
/// parent-death signal when `daemon_parent` is given ([`die_with_parent`]), restores
/// SIGTERM ([`reset_child_signals`]), marks every descriptor above 2 close-on-exec
/// ([`cloexec_from_3`]: as Python's spawn, only the descriptors the child needs cross
/// `execve`) and clears the flag on the descriptors to keep, and on failure reports
/// `errno` through a close-on-exec pipe and `_exit(127)`s.
///
/// Take the process-wide fork lock around this call, so that no other child of ours is
/// forked while the error pipe's write end exists in the parent; then call
/// [`PendingExec::wait_exec`] after releasing the lock.
pub(crate) fn spawn_fork(plan: &ExecPlan, daemon_parent: Option<u32>) -> io::Result<PendingExec> {
    let (err_r, err_w) = super::pipe()?;
    match fork()? {
        Forked::Child => {
            // Only async-signal-safe calls from here to execve/_exit: no allocation.
            if let Some(parent) = daemon_parent {
                die_with_parent(parent);
            }
            reset_child_signals();
            cloexec_from_3(plan.fd_limit);
            let mut errno = 0;
            for &fd in &plan.keep_fds {
                if super::set_cloexec(fd, false).is_err() {
                    errno = errno_now();
                    break;
                }
            }
            if errno == 0 {
                // SAFETY: path, argv and envp are NUL-terminated strings in arrays ending
                // with a null pointer, prepared by ExecPlan and alive (owned by `plan`).
                unsafe {
                    libc::execve(
                        plan.path.as_ptr(),
                        plan.argv_ptrs.as_ptr(),
                        plan.envp_ptrs.as_ptr(),
                    )
                };
                errno = errno_now();
            }
            let bytes = errno.to_ne_bytes();
            // SAFETY: writes 4 bytes from a live stack buffer; write is async-signal-safe.
            unsafe { libc::write(err_w.as_raw_fd(), bytes.as_ptr().cast(), bytes.len()) };
            exit_now(127)
        }
        Forked::Parent(pid) => {
            drop(err_w);
            Ok(PendingExec { pid, err_r })
        }
    }
}

/// `CLOSE_RANGE_CLOEXEC` (Linux 5.11): mark the range close-on-exec instead of closing it.
const CLOSE_RANGE_CLOEXEC: libc::c_uint = 1 << 2;

/// Marks every descriptor from 3 up close-on-exec: one `close_range(3, ~0,
/// CLOSE_RANGE_CLOEXEC)` (Linux 5.11+), else [`cloexec_below`] up to `fd_limit`.
/// Async-signal-safe, no allocation: for the child between `fork` and `execve`.
fn cloexec_from_3(fd_limit: RawFd) {
    // SAFETY: close_range with integer arguments only touches this process's fd table.
    let res = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            3 as libc::c_uint,
            libc::c_uint::MAX,
            CLOSE_RANGE_CLOEXEC,
        )
    };
    if res != 0 {
        cloexec_below(fd_limit);
    }
}

/// Marks every open descriptor in `3..fd_limit` close-on-exec, one `fcntl` at a time (the
/// fallback for kernels without `CLOSE_RANGE_CLOEXEC`). Async-signal-safe.
fn cloexec_below(fd_limit: RawFd) {
    for fd in 3..fd_limit {
        // SAFETY: fcntl F_GETFD/F_SETFD on an fd number; EBADF when it is not open.
        unsafe {
            let flags = libc::fcntl(fd, libc::F_GETFD);
            if flags >= 0 && flags & libc::FD_CLOEXEC == 0 {
                libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC);
            }
        }
    }
}

fn errno_now() -> i32 {
    io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EIO)
}

impl PendingExec {
    /// Waits until the child has called `execve` (the error pipe closes) and returns its
    /// pid; when `execve` failed, reaps the child and returns the error.
    pub(crate) fn wait_exec(self) -> io::Result<u32> {
        let mut buf = [0u8; 4];
        let mut file = std::fs::File::from(self.err_r);
        let mut got = 0;
        loop {
            match file.read(&mut buf[got..]) {
                Ok(0) => break,
                Ok(n) => {
                    got += n;
                    if got == buf.len() {
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        if got == 0 {
            return Ok(self.pid);
        }
        let _ = wait_exitcode(self.pid, true);
        if got == buf.len() {
            Err(io::Error::from_raw_os_error(i32::from_ne_bytes(buf)))
        } else {
            Err(io::Error::other("spawned child failed before execve"))
        }
    }
}

// ---------------------------------------------------------------------------------------
// Finding a function again in a re-executed image
// ---------------------------------------------------------------------------------------

/// Identity of an executable file: device, inode, size and modification time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ImageId {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: i64,
    mtime_nsec: i64,
}

impl ImageId {
    /// The identity of the file `path` leads to (following links, as `/proc/<pid>/exe`).
    fn of(path: &str) -> io::Result<ImageId> {
        let m = std::fs::metadata(path)?;
        Ok(ImageId {
            dev: m.dev(),
            ino: m.ino(),
            size: m.size(),
            mtime: m.mtime(),
            mtime_nsec: m.mtime_nsec(),
        })
    }
}

/// The identity of the running executable (`/proc/self/exe`).
fn image_id() -> io::Result<ImageId> {
    static ID: OnceLock<ImageId> = OnceLock::new();
    if let Some(id) = ID.get() {
        return Ok(*id);
    }
    let id = ImageId::of("/proc/self/exe")?;
    Ok(*ID.get_or_init(|| id))
}

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
/// not a defence against forgery (anyone can compute it); see [`check_parent`] for that.
fn fnv1a(bytes: &[u8]) -> u64 {
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

/// The type of every spawn trampoline: (type fingerprint, target address, encoded args,
/// inherited fds) → exit code, or [`JobError::TypeMismatch`] without calling anything.
type Trampoline = fn(u64, usize, &[u8], &[RawFd]) -> Result<i32, JobError>;

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
) -> Result<i32, JobError> {
    if fingerprint != type_fingerprint::<A, R, X>() {
        return Err(JobError::TypeMismatch);
    }
    // SAFETY: this trampoline is only ever named by `EntryPoint::new::<A, R, X>`, which
    // records it together with the address (as an offset) of a `fn(A) -> R` and the
    // fingerprint of `(A, R, X)`, checked just above. `run_job` gets here only for a job
    // that a parent process running this same executable wrote with `write_job` and is
    // waiting on (`check_parent`; the identity of the image checked), relocated into this
    // image (offsets from the anchor do not change when the loader moves the image), so
    // `target` is that function's address; a fn pointer and a usize have the same size
    // and `target` is non-null.
    let f = unsafe { std::mem::transmute::<usize, fn(A) -> R>(target) };
    Ok(X::run(f, args, fds))
}

/// A target and its trampoline, as offsets from the anchor, valid in any process running
/// the same executable, with the trampoline's type fingerprint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct EntryPoint {
    trampoline: i64,
    target: i64,
    fingerprint: u64,
}

/// Offsets from the anchor of a trampoline and a target, or `Unsupported` when either
/// lives outside the loaded object that holds shmproc (a function in another shared
/// library cannot be found by offset).
fn offsets(tramp: usize, target: usize) -> io::Result<(i64, i64)> {
    let anchor = anchor_addr();
    let base = object_base(anchor);
    if object_base(target) != base || object_base(tramp) != base {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "the target function is not in the same executable as shmproc; a spawned process cannot find it",
        ));
    }
    let off = |a: usize| (a as i64).wrapping_sub(anchor as i64);
    Ok((off(tramp), off(target)))
}

/// The addresses in this image of a trampoline and a target given as offsets, when both
/// lie inside the loaded object that holds the anchor.
fn relocate(trampoline: i64, target: i64) -> Result<(usize, usize), JobError> {
    let anchor = anchor_addr();
    let tramp = (anchor as i64).wrapping_add(trampoline) as usize;
    let target = (anchor as i64).wrapping_add(target) as usize;
    let base = object_base(anchor);
    if tramp == 0 || target == 0 || object_base(tramp) != base || object_base(target) != base {
        return Err(JobError::Malformed("entry point outside the executable"));
    }
    Ok((tramp, target))
}

impl EntryPoint {
    /// Records `target` with the trampoline for its types. Fails when the target does not
    /// live in the same loaded object as this crate.
    pub(crate) fn new<A, R, X: Runner<A, R>>(target: fn(A) -> R) -> io::Result<EntryPoint> {
        let tramp = trampoline::<A, R, X> as Trampoline as usize;
        let (trampoline, target) = offsets(tramp, target as usize)?;
        Ok(EntryPoint {
            trampoline,
            target,
            fingerprint: type_fingerprint::<A, R, X>(),
        })
    }

    /// Records `target` with the trampoline of *other* types, as only a forger (or a bug)
    /// would: for the tests that show the trampoline refuses it.
    pub(crate) fn mismatched<A, R, X: Runner<A, R>, B, S>(
        target: fn(B) -> S,
    ) -> io::Result<EntryPoint> {
        let tramp = trampoline::<A, R, X> as Trampoline as usize;
        let (trampoline, target) = offsets(tramp, target as usize)?;
        Ok(EntryPoint {
            trampoline,
            target,
            fingerprint: type_fingerprint::<B, S, X>(),
        })
    }
}

const JOB_MAGIC: [u8; 8] = *b"SHMPJOB\x01";
const JOB_VERSION: u32 = 2;
const MAX_JOB_FDS: usize = 1 << 16;

/// The bytes of a spawn job: magic, version, executable identity, entry point (two
/// offsets and the type fingerprint), the number of the pipe to acknowledge on, the
/// descriptors to adopt, the encoded args, and a checksum (against corruption only).
pub(crate) fn job_bytes(
    entry: &EntryPoint,
    ack: RawFd,
    fds: &[RawFd],
    args: &[u8],
) -> io::Result<Vec<u8>> {
    if fds.len() > MAX_JOB_FDS {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "too many descriptors to pass",
        ));
    }
    let id = image_id()?;
    let mut buf = Vec::with_capacity(112 + fds.len() * 4 + args.len());
    buf.extend_from_slice(&JOB_MAGIC);
    buf.extend_from_slice(&JOB_VERSION.to_le_bytes());
    for v in [id.dev, id.ino, id.size] {
        buf.extend_from_slice(&v.to_le_bytes());
    }
    for v in [id.mtime, id.mtime_nsec, entry.trampoline, entry.target] {
        buf.extend_from_slice(&v.to_le_bytes());
    }
    buf.extend_from_slice(&entry.fingerprint.to_le_bytes());
    buf.extend_from_slice(&ack.to_le_bytes());
    buf.extend_from_slice(&(fds.len() as u32).to_le_bytes());
    for fd in fds {
        buf.extend_from_slice(&fd.to_le_bytes());
    }
    buf.extend_from_slice(&(args.len() as u64).to_le_bytes());
    buf.extend_from_slice(args);
    let sum = fnv1a(&buf);
    buf.extend_from_slice(&sum.to_le_bytes());
    Ok(buf)
}

/// Writes a spawn job ([`job_bytes`]) into a new memfd (close-on-exec; the caller keeps
/// it open across `execve` and passes its number to the child).
pub(crate) fn write_job(
    entry: &EntryPoint,
    ack: RawFd,
    fds: &[RawFd],
    args: &[u8],
) -> io::Result<OwnedFd> {
    let buf = job_bytes(entry, ack, fds, args)?;
    let fd = super::memfd_create(c"shmproc-job")?;
    let mut file = std::fs::File::from(fd);
    file.write_all(&buf)?;
    Ok(OwnedFd::from(file))
}

/// Why a spawn job could not be run.
#[derive(Debug)]
pub(crate) enum JobError {
    /// The job descriptor could not be read.
    Io(io::Error),
    /// Bad magic, version, length or checksum.
    Malformed(&'static str),
    /// The job was written by another executable.
    OtherExecutable,
    /// The process that started this one is not a process of this executable still
    /// waiting for it: the job is not trusted.
    Untrusted(String),
    /// The entry point pairs a target with the trampoline of other types.
    TypeMismatch,
}

impl std::fmt::Display for JobError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            JobError::Io(e) => write!(f, "reading the spawn job: {e}"),
            JobError::Malformed(what) => write!(f, "malformed spawn job: {what}"),
            JobError::OtherExecutable => {
                f.write_str("the spawn job was made by another executable than this one")
            }
            JobError::Untrusted(why) => write!(
                f,
                "refusing a spawn job not handed over by a parent process of this same executable: {why}"
            ),
            JobError::TypeMismatch => f.write_str(
                "the spawn job pairs its target with the trampoline of other types (type fingerprint mismatch)",
            ),
        }
    }
}

struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], JobError> {
        if self.0.len() < n {
            return Err(JobError::Malformed("truncated"));
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }
    fn u32(&mut self) -> Result<u32, JobError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self) -> Result<u64, JobError> {
        let b = self.take(8)?;
        let mut w = [0u8; 8];
        w.copy_from_slice(b);
        Ok(u64::from_le_bytes(w))
    }
    fn i64(&mut self) -> Result<i64, JobError> {
        Ok(self.u64()? as i64)
    }
}

/// A job read in the spawned child; run it with [`run_job`].
#[derive(Debug)]
pub(crate) struct Job {
    id: ImageId,
    entry: EntryPoint,
    ack: RawFd,
    fds: Vec<RawFd>,
    args: Vec<u8>,
}

fn parse_job(bytes: &[u8]) -> Result<Job, JobError> {
    if bytes.len() < 8 + 8 {
        return Err(JobError::Malformed("truncated"));
    }
    let (body, sum) = bytes.split_at(bytes.len() - 8);
    if fnv1a(body) != Cursor(sum).u64()? {
        return Err(JobError::Malformed("checksum mismatch"));
    }
    let mut c = Cursor(body);
    if c.take(8)? != JOB_MAGIC {
        return Err(JobError::Malformed("bad magic"));
    }
    if c.u32()? != JOB_VERSION {
        return Err(JobError::Malformed("unknown version"));
    }
    let id = ImageId {
        dev: c.u64()?,
        ino: c.u64()?,
        size: c.u64()?,
        mtime: c.i64()?,
        mtime_nsec: c.i64()?,
    };
    let entry = EntryPoint {
        trampoline: c.i64()?,
        target: c.i64()?,
        fingerprint: c.u64()?,
    };
    let ack = c.u32()? as RawFd;
    let nfds = c.u32()? as usize;
    if nfds > MAX_JOB_FDS {
        return Err(JobError::Malformed("too many descriptors"));
    }
    let fds = (0..nfds)
        .map(|_| c.u32().map(|v| v as RawFd))
        .collect::<Result<Vec<_>, _>>()?;
    let len = usize::try_from(c.u64()?).map_err(|_| JobError::Malformed("args too long"))?;
    let args = c.take(len)?.to_vec();
    if !c.0.is_empty() {
        return Err(JobError::Malformed("trailing bytes"));
    }
    Ok(Job {
        id,
        entry,
        ack,
        fds,
        args,
    })
}

/// Takes ownership of a descriptor whose number the parent handed over (the job, the
/// acknowledgement pipe). Numbers 0–2 (the standard streams) and closed numbers are
/// refused.
fn adopt_fd(n: RawFd, what: &'static str) -> Result<OwnedFd, JobError> {
    if n < 3 || !super::fd_is_open(n) {
        return Err(JobError::Malformed(what));
    }
    super::own_inherited(n).map_err(JobError::Io)
}

/// Reads and parses the job in descriptor `n` (a memfd, or any readable file) and checks
/// it names this executable.
fn read_job(n: RawFd) -> Result<Job, JobError> {
    let file = std::fs::File::from(adopt_fd(n, "the job descriptor is not open")?);
    let len = file.metadata().map_err(JobError::Io)?.len();
    if len > (1 << 40) {
        return Err(JobError::Malformed("too long"));
    }
    let mut bytes = vec![0u8; len as usize];
    // The parent's write left the shared file offset at the end: read by position.
    file.read_exact_at(&mut bytes, 0).map_err(JobError::Io)?;
    drop(file);
    let job = parse_job(&bytes)?;
    if job.id != image_id().map_err(JobError::Io)? {
        return Err(JobError::OtherExecutable);
    }
    Ok(job)
}

/// Checks where a job came from: the parent of this process must be running this same
/// executable image (its `/proc/<ppid>/exe` has the identity of our own `/proc/self/exe`,
/// which the job names too) and must still be our parent afterwards (had it died, we
/// would have been reparented and `getppid()` would have changed; a zombie parent cannot
/// have been replaced by a process reusing its pid). A legitimate parent is alive here:
/// `start()` waits for [`acknowledge`], which comes after this check.
///
/// Anybody can write a job that passes the other checks (its fields are public
/// information), so this is what keeps other programs out: only a process of this
/// executable can have its job run, and that already runs this executable's code.
fn check_parent(job: &Job) -> Result<(), JobError> {
    let own = image_id().map_err(JobError::Io)?;
    if job.id != own {
        return Err(JobError::OtherExecutable);
    }
    let ppid = getppid();
    if ppid == 0 {
        return Err(JobError::Untrusted(
            "the parent process is outside this pid namespace".into(),
        ));
    }
    let exe = format!("/proc/{ppid}/exe");
    let parent = ImageId::of(&exe).map_err(|e| {
        JobError::Untrusted(format!(
            "cannot identify the executable of the parent process {ppid}: {e}"
        ))
    })?;
    if parent != own {
        let path = std::fs::read_link(&exe)
            .map(|p| p.display().to_string())
            .unwrap_or_else(|_| "another executable".into());
        return Err(JobError::Untrusted(format!(
            "the parent process {ppid} runs {path}, not this executable"
        )));
    }
    if getppid() != ppid {
        return Err(JobError::Untrusted(
            "the parent process exited during the check".into(),
        ));
    }
    Ok(())
}

/// The byte a child writes on its acknowledgement pipe once its job is validated.
const ACK: u8 = b'A';

/// Tells the parent, waiting in `start()`, that the job passed [`check_parent`]; closes
/// the pipe. Refuses when nobody reads the pipe any more (the parent gave up).
fn acknowledge(ack: RawFd) -> Result<(), JobError> {
    let fd = adopt_fd(ack, "the acknowledgement descriptor is not open")?;
    if super::peer_state(fd.as_fd()) == super::PeerState::Gone {
        return Err(JobError::Untrusted(
            "nobody waits for this child's acknowledgement".into(),
        ));
    }
    std::fs::File::from(fd)
        .write_all(&[ACK])
        .map_err(|e| JobError::Untrusted(format!("acknowledging the job: {e}")))
}

/// How a spawned child's acknowledgement went, seen from the parent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ack {
    /// The child validated its job; it runs the target next.
    Accepted,
    /// The pipe closed without an acknowledgement: the child exited (or exec'd something
    /// else) before validating its job. Its target never ran.
    Gone,
    /// No answer within the time allowed.
    TimedOut,
}

/// In `start()`, after `execve`: waits at most `timeout` for the child's acknowledgement
/// on the read end of the pipe whose write end was passed in the job.
pub(crate) fn wait_ack(ack_r: &OwnedFd, timeout: Duration) -> io::Result<Ack> {
    let mut b = [0u8; 1];
    match read_exact_timeout(ack_r, &mut b, timeout) {
        Ok(()) if b[0] == ACK => Ok(Ack::Accepted),
        Ok(()) => Ok(Ack::Gone),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(Ack::Gone),
        Err(e) if e.kind() == io::ErrorKind::TimedOut => Ok(Ack::TimedOut),
        Err(e) => Err(e),
    }
}

/// In a spawned child: relocates the job's entry point into this image and runs it
/// through its trampoline (which checks the type fingerprint first). Returns the exit
/// code the runner chose.
pub(crate) fn run_job(job: Job) -> Result<i32, JobError> {
    let (tramp, target) = relocate(job.entry.trampoline, job.entry.target)?;
    // SAFETY: `tramp` is the address of a `trampoline::<A, R, X>` instance, whose type
    // is `Trampoline`: the job was written by `write_job` from an `EntryPoint::new` in the
    // parent process, which runs this same executable and was alive and waiting for us
    // when the job was checked (`check_parent`, before this job could reach `run_job`),
    // and offsets from the anchor do not change when the loader moves the image. The
    // trampoline checks the type fingerprint before it uses `target`.
    let f = unsafe { std::mem::transmute::<usize, Trampoline>(tramp) };
    f(job.entry.fingerprint, target, &job.args, &job.fds)
}

// ---------------------------------------------------------------------------------------
// The spawn bootstrap: before `main`, in a process whose environment names a job
// ---------------------------------------------------------------------------------------

/// The environment variable that marks a spawned child. Its value is only the number of
/// the inherited descriptor (a memfd) holding the job; the arguments travel in there.
pub(crate) const CHILD_ENV: &str = "SHMPROC_CHILD";

/// What the bootstrap found in this process.
#[derive(Debug)]
pub(crate) enum Boot {
    /// Not a spawned child (or [`take_boot`] was already called).
    NotChild,
    /// The environment named a job, but this process runs in secure-execution mode
    /// (setuid, setgid, file capabilities): the job was not even read.
    Secure,
    /// A job that passed every check, acknowledged to the parent; run it now.
    Job(Job),
}

const NOT_CHILD: u8 = 0;
const SECURE: u8 = 1;
const AWAITING_INIT: u8 = 2;
const INIT_CALLED: u8 = 3;

static BOOT_ONCE: std::sync::Once = std::sync::Once::new();
static BOOT_STATE: AtomicU8 = AtomicU8::new(NOT_CHILD);
static BOOT_JOB: Mutex<Option<Job>> = Mutex::new(None);

/// Whether the kernel started this process in secure-execution mode
/// (`getauxval(AT_SECURE)`: a setuid or setgid program run by another user, or one with
/// file capabilities). glibc ignores `LD_PRELOAD` then; shmproc ignores spawn jobs.
pub(crate) fn secure_execution() -> bool {
    // SAFETY: getauxval only reads the auxiliary vector the kernel gave the process.
    unsafe { libc::getauxval(libc::AT_SECURE) != 0 }
}

/// The bootstrap (once per process): when [`CHILD_ENV`] is set, removes it from the
/// environment (grandchildren must not see it); in secure-execution mode stops there;
/// otherwise registers the [`exit_without_init`] hook, reads the job, checks it
/// ([`read_job`], [`check_parent`]), acknowledges it to the waiting parent and keeps it
/// for `init()`. A refused job ends the process with exit code 1 and a message on
/// stderr: its target never runs, nor does `main`.
///
/// Runs before `main` from [`BOOT_CTOR`], so that the parent's `start()` returns as soon
/// as the child is loaded, whether or not `main` calls `init()`; `init()` and `start()`
/// call it too, in case the constructor did not run.
pub(crate) fn boot() {
    BOOT_ONCE.call_once(|| {
        let Some(value) = std::env::var_os(CHILD_ENV) else {
            return;
        };
        std::env::remove_var(CHILD_ENV);
        if secure_execution() {
            BOOT_STATE.store(SECURE, Ordering::SeqCst);
            return;
        }
        BOOT_STATE.store(AWAITING_INIT, Ordering::SeqCst);
        // SAFETY: registers a handler with the C signature atexit expects; it only reads
        // an atomic, writes to fd 2 and calls _exit.
        unsafe { libc::atexit(exit_without_init) };
        let accepted = value
            .to_str()
            .and_then(|s| s.parse::<RawFd>().ok())
            .ok_or(JobError::Malformed(
                "SHMPROC_CHILD does not name a descriptor",
            ))
            .and_then(read_job)
            .and_then(|job| {
                // Listed descriptors must not leak into processes this one starts before
                // (or without) adopting them.
                for &fd in &job.fds {
                    if fd > 2 {
                        let _ = super::set_cloexec(fd, true);
                    }
                }
                check_parent(&job)?;
                acknowledge(job.ack)?;
                Ok(job)
            });
        match accepted {
            Ok(job) => *BOOT_JOB.lock().unwrap_or_else(|e| e.into_inner()) = Some(job),
            Err(e) => {
                write_stderr(&format!("shmproc: spawned child refused its job: {e}\n"));
                exit_now(1)
            }
        }
    });
}

/// For `init()`: the bootstrap's outcome, handed out once. Marks `init()` as called.
pub(crate) fn take_boot() -> Boot {
    boot();
    match BOOT_STATE.load(Ordering::SeqCst) {
        SECURE => Boot::Secure,
        AWAITING_INIT => {
            BOOT_STATE.store(INIT_CALLED, Ordering::SeqCst);
            match BOOT_JOB.lock().unwrap_or_else(|e| e.into_inner()).take() {
                Some(job) => Boot::Job(job),
                None => Boot::NotChild,
            }
        }
        _ => Boot::NotChild,
    }
}

/// Whether this is a spawned child whose `main` has not called `init()` (yet).
pub(crate) fn uninitialised_child() -> bool {
    boot();
    BOOT_STATE.load(Ordering::SeqCst) == AWAITING_INIT
}

/// An `atexit` handler, registered in a spawned child: when the process exits without
/// `main` ever calling `init()` (so the target never ran), says so and exits with code
/// 1 instead of whatever `main` returned.
extern "C" fn exit_without_init() {
    if BOOT_STATE.load(Ordering::SeqCst) == AWAITING_INIT {
        write_stderr(
            "shmproc: spawned child's main did not call shmproc::init() first, so its target \
             never ran; make shmproc::init() the first statement of main\n",
        );
        exit_now(1)
    }
}

/// The C signature of an `.init_array` entry.
type InitArrayFn =
    extern "C" fn(libc::c_int, *const *const libc::c_char, *const *const libc::c_char);

/// Runs [`boot`] before `main` (the dynamic loader calls every `.init_array` entry, as for
/// C's `__attribute__((constructor))`), catching any panic (which must not unwind into
/// the loader).
extern "C" fn boot_ctor(
    _argc: libc::c_int,
    _argv: *const *const libc::c_char,
    _envp: *const *const libc::c_char,
) {
    if std::panic::catch_unwind(boot).is_err() {
        write_stderr("shmproc: the spawn bootstrap panicked\n");
        exit_now(1)
    }
}

/// The bootstrap's entry in `.init_array`; `#[used]` keeps it in every program that links
/// shmproc.
#[used]
#[link_section = ".init_array"]
static BOOT_CTOR: InitArrayFn = boot_ctor;

// ---------------------------------------------------------------------------------------
// Calling a function by offset, many times, in a long-lived worker (the pool)
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
    // into this image only for an entry that passed its checksum (keyed by this
    // executable's identity) and whose addresses lie in this executable, so `target` is
    // that function's address; a fn pointer and a usize have the same size and `target`
    // is non-null.
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

/// A function and the trampoline that calls it, as offsets from the anchor, with the
/// trampoline's type fingerprint: valid in any process running the same executable (a
/// forked or a spawned worker), and sent over a channel many times, unlike
/// [`EntryPoint`] which starts a process once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CallEntry {
    trampoline: i64,
    target: i64,
    fingerprint: u64,
}

impl CallEntry {
    /// Bytes of [`to_wire`](Self::to_wire).
    pub(crate) const WIRE_LEN: usize = 32;

    fn from_addrs(tramp: usize, target: usize, fingerprint: u64) -> io::Result<CallEntry> {
        let (trampoline, target) = offsets(tramp, target)?;
        Ok(CallEntry {
            trampoline,
            target,
            fingerprint,
        })
    }

    /// Records `target` with the trampoline that runs it through `X`.
    pub(crate) fn new<A, R, X: Caller<A, R>>(target: fn(A) -> R) -> io::Result<CallEntry> {
        let tramp = call_trampoline::<A, R, X> as CallTrampoline as usize;
        Self::from_addrs(tramp, target as usize, type_fingerprint::<A, R, X>())
    }

    /// Records a plain `fn()` (an initializer); [`call`](Self::call) runs it and ignores
    /// the input and output.
    pub(crate) fn thunk(target: fn()) -> io::Result<CallEntry> {
        let tramp = thunk_trampoline as CallTrampoline as usize;
        Self::from_addrs(tramp, target as usize, thunk_fingerprint())
    }

    fn checksum(&self) -> io::Result<u64> {
        let id = image_id()?;
        let mut b = Vec::with_capacity(64);
        for v in [id.dev, id.ino, id.size, self.fingerprint] {
            b.extend_from_slice(&v.to_le_bytes());
        }
        for v in [id.mtime, id.mtime_nsec, self.trampoline, self.target] {
            b.extend_from_slice(&v.to_le_bytes());
        }
        Ok(fnv1a(&b))
    }

    /// The entry as bytes: the two offsets, the type fingerprint and a checksum keyed by
    /// this executable's identity.
    pub(crate) fn to_wire(self) -> io::Result<[u8; Self::WIRE_LEN]> {
        let mut w = [0u8; Self::WIRE_LEN];
        w[..8].copy_from_slice(&self.trampoline.to_le_bytes());
        w[8..16].copy_from_slice(&self.target.to_le_bytes());
        w[16..24].copy_from_slice(&self.fingerprint.to_le_bytes());
        w[24..].copy_from_slice(&self.checksum()?.to_le_bytes());
        Ok(w)
    }

    /// Reads an entry written by [`to_wire`](Self::to_wire) in a process running this
    /// same executable; `None` for anything else (short, corrupt, another executable).
    pub(crate) fn from_wire(w: &[u8]) -> Option<CallEntry> {
        let w = w.get(..Self::WIRE_LEN)?;
        let mut c = Cursor(w);
        let entry = CallEntry {
            trampoline: c.i64().ok()?,
            target: c.i64().ok()?,
            fingerprint: c.u64().ok()?,
        };
        (entry.checksum().ok()? == c.u64().ok()?).then_some(entry)
    }

    /// Runs the target through its trampoline on `input`, appending to `out`.
    ///
    /// # Errors
    ///
    /// When the entry's addresses fall outside this executable, or its type fingerprint
    /// is not its trampoline's (then nothing runs).
    pub(crate) fn call(&self, input: &[u8], out: &mut Vec<u8>) -> Result<(), JobError> {
        let (tramp, target) = relocate(self.trampoline, self.target)?;
        // SAFETY: a `CallEntry` exists only from `new`/`thunk` in this process, or from
        // `from_wire` on bytes whose checksum, keyed by this executable's identity,
        // matched: bytes written by `to_wire` in a process running this same executable
        // (a pool's parent, over a channel private to it and this worker). Offsets from
        // the anchor do not change when the loader moves the image, so `tramp` is the
        // address of a `call_trampoline::<A, R, X>` or of `thunk_trampoline`, both of
        // type `CallTrampoline`; each checks the type fingerprint before using `target`.
        let f = unsafe { std::mem::transmute::<usize, CallTrampoline>(tramp) };
        if f(self.fingerprint, target, input, out) {
            Ok(())
        } else {
            Err(JobError::TypeMismatch)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::IntoRawFd;

    struct Echo;
    impl Runner<u32, u32> for Echo {
        fn run(target: fn(u32) -> u32, args: &[u8], _fds: &[RawFd]) -> i32 {
            target(u32::from_le_bytes(args.try_into().unwrap())) as i32
        }
    }

    fn plus_one(x: u32) -> u32 {
        x + 1
    }

    static WIDE_RAN: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    fn wide_target(_: (u64, u64, u64)) -> u32 {
        WIDE_RAN.store(true, std::sync::atomic::Ordering::SeqCst);
        0
    }

    struct Doubler;
    impl Caller<u32, u32> for Doubler {
        fn call(target: fn(u32) -> u32, input: &[u8], out: &mut Vec<u8>) {
            let x = u32::from_le_bytes(input.try_into().unwrap());
            out.extend_from_slice(&(2 * target(x)).to_le_bytes());
        }
    }

    static THUNK_RAN: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    fn thunk_target() {
        THUNK_RAN.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    fn job_of(entry: &EntryPoint, fds: &[RawFd], args: &[u8]) -> Vec<u8> {
        job_bytes(entry, 9, fds, args).unwrap()
    }

    #[test]
    fn call_entries_round_trip_and_refuse_corruption() {
        let e = CallEntry::new::<u32, u32, Doubler>(plus_one).unwrap();
        let wire = e.to_wire().unwrap();
        let back = CallEntry::from_wire(&wire).unwrap();
        assert_eq!(back, e);
        let mut out = Vec::new();
        back.call(&20u32.to_le_bytes(), &mut out).unwrap();
        assert_eq!(out, 42u32.to_le_bytes());
        for i in 0..wire.len() {
            let mut w = wire;
            w[i] ^= 0x10;
            assert!(CallEntry::from_wire(&w).is_none(), "byte {i}");
        }
        assert!(CallEntry::from_wire(&wire[..CallEntry::WIRE_LEN - 1]).is_none());
        let t = CallEntry::from_wire(&CallEntry::thunk(thunk_target).unwrap().to_wire().unwrap());
        t.unwrap().call(&[], &mut out).unwrap();
        assert!(THUNK_RAN.load(std::sync::atomic::Ordering::SeqCst));
    }

    #[test]
    fn a_call_entry_pairing_a_target_with_another_types_trampoline_is_refused() {
        // The trampoline of (u32, u32) with the address of a fn((u64, u64, u64)) -> u32,
        // and the fingerprint of the target's types: the trampoline refuses it.
        let right = CallEntry::new::<u32, u32, Doubler>(plus_one).unwrap();
        let wide = wide_target as fn((u64, u64, u64)) -> u32 as usize;
        let (_, target) = offsets(anchor_addr(), wide).unwrap();
        let forged = CallEntry {
            target,
            fingerprint: type_fingerprint::<(u64, u64, u64), u32, Doubler>(),
            ..right
        };
        let wire = forged.to_wire().unwrap();
        let back = CallEntry::from_wire(&wire).unwrap();
        let mut out = Vec::new();
        assert!(matches!(
            back.call(&20u32.to_le_bytes(), &mut out),
            Err(JobError::TypeMismatch)
        ));
        assert!(out.is_empty());
        assert!(!WIDE_RAN.load(std::sync::atomic::Ordering::SeqCst));
        // A thunk's trampoline with a task's fingerprint, and the other way round.
        let thunk = CallEntry::thunk(thunk_target).unwrap();
        for bad in [
            CallEntry {
                fingerprint: right.fingerprint,
                ..thunk
            },
            CallEntry {
                fingerprint: thunk.fingerprint,
                ..right
            },
        ] {
            assert!(matches!(
                bad.call(&20u32.to_le_bytes(), &mut out),
                Err(JobError::TypeMismatch)
            ));
        }
    }

    #[test]
    fn type_fingerprints_tell_types_apart() {
        let a = type_fingerprint::<u32, u32, Echo>();
        assert_eq!(a, type_fingerprint::<u32, u32, Echo>());
        assert_ne!(a, type_fingerprint::<u64, u32, Echo>());
        assert_ne!(a, type_fingerprint::<u32, i32, Echo>());
        assert_ne!(a, type_fingerprint::<u32, u32, Doubler>());
        assert_ne!(a, thunk_fingerprint());
    }

    #[test]
    fn job_round_trips_and_runs() {
        let entry = EntryPoint::new::<u32, u32, Echo>(plus_one).unwrap();
        let job = parse_job(&job_of(&entry, &[], &41u32.to_le_bytes())).unwrap();
        assert_eq!(job.ack, 9);
        assert_eq!(run_job(job).unwrap(), 42);
    }

    #[test]
    fn a_job_pairing_a_target_with_another_types_trampoline_is_refused() {
        let entry =
            EntryPoint::mismatched::<u32, u32, Echo, (u64, u64, u64), u32>(wide_target).unwrap();
        let job = parse_job(&job_of(&entry, &[], &41u32.to_le_bytes())).unwrap();
        assert!(matches!(run_job(job), Err(JobError::TypeMismatch)));
        assert!(!WIDE_RAN.load(std::sync::atomic::Ordering::SeqCst));
    }

    #[test]
    fn corrupt_or_foreign_jobs_are_refused() {
        let entry = EntryPoint::new::<u32, u32, Echo>(plus_one).unwrap();
        let fd = write_job(&entry, 9, &[7], &41u32.to_le_bytes()).unwrap();
        let file = std::fs::File::from(fd);
        let mut bytes = vec![0u8; file.metadata().unwrap().len() as usize];
        file.read_exact_at(&mut bytes, 0).unwrap();
        let job = parse_job(&bytes).unwrap();
        assert_eq!(job.fds, vec![7]);
        assert_eq!(job.entry, entry);
        // Any flipped byte is caught by the checksum (or the length checks).
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x40;
            assert!(parse_job(&b).is_err(), "byte {i}");
        }
        assert!(parse_job(&bytes[..bytes.len() - 1]).is_err());
        // A job from another executable is refused before anything runs.
        let mut other = bytes[..bytes.len() - 8].to_vec();
        other[12] ^= 1; // device id
        let sum = fnv1a(&other);
        other.extend_from_slice(&sum.to_le_bytes());
        let mut mfd = std::fs::File::from(crate::sys::memfd_create(c"t").unwrap());
        mfd.write_all(&other).unwrap();
        let n = OwnedFd::from(mfd).into_raw_fd();
        assert!(matches!(read_job(n), Err(JobError::OtherExecutable)));
        assert!(
            !crate::sys::fd_is_open(n),
            "read_job owns and closes the descriptor"
        );
        assert!(matches!(read_job(1), Err(JobError::Malformed(_))));
    }

    #[test]
    fn only_a_parent_running_this_executable_is_trusted() {
        let entry = EntryPoint::new::<u32, u32, Echo>(plus_one).unwrap();
        let job = parse_job(&job_of(&entry, &[], &[])).unwrap();
        // This test binary's parent is cargo (or a shell): not this executable.
        match check_parent(&job) {
            Err(JobError::Untrusted(why)) => assert!(why.contains("not this executable"), "{why}"),
            other => panic!("{other:?}"),
        }
        // A forked child's parent is this process: trusted.
        match fork().unwrap() {
            Forked::Child => exit_now(if check_parent(&job).is_ok() { 0 } else { 3 }),
            Forked::Parent(pid) => assert_eq!(wait_exitcode(pid, true).unwrap(), Some(0)),
        }
    }

    #[test]
    fn descriptors_above_stderr_are_marked_close_on_exec() {
        let (r, w) = nix::unistd::pipe().unwrap();
        set_cloexec_for_test(r.as_raw_fd(), false);
        set_cloexec_for_test(w.as_raw_fd(), false);
        for fallback in [false, true] {
            match fork().unwrap() {
                Forked::Child => {
                    if fallback {
                        cloexec_below(w.as_raw_fd().max(r.as_raw_fd()) + 1);
                    } else {
                        cloexec_from_3(0);
                    }
                    let ok = [r.as_raw_fd(), w.as_raw_fd()].iter().all(|&fd| {
                        // SAFETY: F_GETFD on an open descriptor.
                        let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
                        flags >= 0 && flags & libc::FD_CLOEXEC != 0
                    });
                    exit_now(if ok { 0 } else { 3 })
                }
                Forked::Parent(pid) => {
                    assert_eq!(wait_exitcode(pid, true).unwrap(), Some(0), "{fallback}")
                }
            }
        }
    }

    fn set_cloexec_for_test(fd: RawFd, on: bool) {
        crate::sys::set_cloexec(fd, on).unwrap();
    }

    #[test]
    fn exit_codes_follow_pythons_convention() {
        for (code, expect) in [(0, 0), (3, 3)] {
            match fork().unwrap() {
                Forked::Child => exit_now(code),
                Forked::Parent(pid) => assert_eq!(wait_exitcode(pid, true).unwrap(), Some(expect)),
            }
        }
    }
}
