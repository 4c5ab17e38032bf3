//! Process control: `fork`, `_exit`, `waitpid`, pidfds, `poll`, signals,
//! `prctl(PR_SET_PDEATHSIG)`, and the pipe I/O a child and its parent use before any
//! channel exists.
//!
//! Everything here is a safe function; the `unsafe` blocks and their reasoning stay in
//! this file. The `process` module above builds `Process` from these pieces; re-executing
//! the binary is [`super::exec`], finding a function again in it [`super::reloc`].

use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

use super::{cvt, cvt_r};

#[cfg(all(test, not(loom)))]
mod tests;

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
/// what is safe in that state (see the `Process` docs), and end the child with
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
    // A handler that only calls `_exit`, which is async-signal-safe.
    set_action_and_unblock(libc::SIGALRM, handler as libc::sighandler_t);
    // SAFETY: alarm takes an integer.
    unsafe { libc::alarm(secs) };
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
    set_action_and_unblock(libc::SIGTERM, libc::SIG_DFL);
}

/// Sets the action of `sig` to `action` (`SIG_DFL`, or the address of an
/// `extern "C" fn(c_int)` handler that is async-signal-safe) with an empty mask and no
/// flags, then unblocks `sig` on this thread. Async-signal-safe.
fn set_action_and_unblock(sig: libc::c_int, action: libc::sighandler_t) {
    // SAFETY: a zeroed sigaction with `action` (SIG_DFL or a handler as the caller
    // promises) and an empty mask is a valid argument; sigaction and pthread_sigmask (on
    // Linux, sigprocmask for this thread) are async-signal-safe and only read our stack
    // values.
    unsafe {
        let mut act: libc::sigaction = std::mem::zeroed();
        act.sa_sigaction = action;
        libc::sigemptyset(&mut act.sa_mask);
        libc::sigaction(sig, &act, std::ptr::null_mut());
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, sig);
        libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
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
        let res = cvt_r(|| unsafe { libc::waitpid(pid as libc::pid_t, &mut status, flags) })?;
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
        let ts = deadline.map(super::timespec_left);
        let ts_ptr = ts
            .as_ref()
            .map_or(std::ptr::null(), |t| t as *const libc::timespec);
        // SAFETY: one valid pollfd; `ts_ptr` is null or points to `ts`, alive for the
        // call; a null signal mask leaves the mask unchanged.
        match cvt(unsafe { libc::ppoll(&mut pfd, 1, ts_ptr, std::ptr::null()) }) {
            // Interrupted: again, with the time that is left.
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
            Ok(n) => return Ok(n > 0),
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
