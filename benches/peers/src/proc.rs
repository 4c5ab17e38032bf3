//! Process plumbing for the experiment: fork a reader, tell the writer when the reader
//! is ready, and wait for the reader with a timeout (kill and reap when it runs over).

use std::io::{Read, Write};
use std::os::fd::{AsFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{fork, ForkResult, Pid};

/// Exit code a reader uses when it saw the wrong number or order of messages.
pub const EXIT_BAD_DATA: i32 = 3;
/// Exit code a reader uses when its setup or a receive failed.
pub const EXIT_IO: i32 = 4;
/// Exit code of a reader that panicked.
pub const EXIT_PANIC: i32 = 5;

/// A forked child that is killed and reaped when dropped unless it was waited for.
pub struct Child {
    pid: Pid,
    pidfd: Option<OwnedFd>,
    reaped: bool,
}

/// One byte sent from the reader to the writer once the reader is set up, so that setup
/// (opening a service, mapping memory) is not part of the timed region.
pub struct Ready {
    read: std::fs::File,
    write: std::fs::File,
}

impl Ready {
    pub fn new() -> Result<Self, String> {
        let (r, w) = nix::unistd::pipe().map_err(|e| format!("pipe: {e}"))?;
        Ok(Self {
            read: std::fs::File::from(r),
            write: std::fs::File::from(w),
        })
    }

    /// Called in the child.
    pub fn signal(&self) {
        let _ = (&self.write).write_all(&[1]);
    }

    /// Called in the parent: waits for the child's byte, at most `timeout`.
    pub fn wait(&self, timeout: Duration) -> Result<(), String> {
        let mut fds = [PollFd::new(self.read.as_fd(), PollFlags::POLLIN)];
        let ms = PollTimeout::try_from(timeout.as_millis().min(i32::MAX as u128) as i32)
            .unwrap_or(PollTimeout::MAX);
        match poll(&mut fds, ms) {
            Ok(0) => return Err("reader not ready in time".into()),
            Ok(_) => {}
            Err(e) => return Err(format!("poll: {e}")),
        }
        let mut b = [0u8; 1];
        match (&self.read).read(&mut b) {
            Ok(1) => Ok(()),
            _ => Err("reader died before it was ready".into()),
        }
    }
}

fn pidfd_open(pid: Pid) -> Option<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1; no memory is
    // passed to the kernel.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid.as_raw(), 0) };
    if fd < 0 {
        None
    } else {
        // SAFETY: the syscall returned a fresh fd that nothing else owns.
        Some(unsafe { OwnedFd::from_raw_fd(fd as i32) })
    }
}

/// Forks; the child runs `f` and exits with its return value (never returning, never
/// running the parent's destructors). The caller must be single-threaded.
pub fn fork_child<F: FnOnce() -> i32>(f: F) -> Result<Child, String> {
    // Flush what the parent buffered, or the child would print it again.
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    // SAFETY: the harness is single-threaded when it forks (no transport starts a thread
    // before the fork), so the child may allocate and run arbitrary code; the child leaves
    // through `_exit` and never returns into the caller's frames.
    match unsafe { fork() }.map_err(|e| format!("fork: {e}"))? {
        ForkResult::Child => {
            let code = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
                Ok(c) => c,
                Err(_) => EXIT_PANIC,
            };
            // SAFETY: _exit ends the process without running atexit handlers or the
            // destructors of state the child shares with the parent (mappings, files).
            unsafe { libc::_exit(code) }
        }
        ForkResult::Parent { child } => Ok(Child {
            pid: child,
            pidfd: pidfd_open(child),
            reaped: false,
        }),
    }
}

impl Child {
    /// Waits for the child to exit, at most `timeout`; on timeout kills and reaps it.
    /// Ok(()) only when it exited with status 0.
    pub fn wait(&mut self, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        if let Some(fd) = &self.pidfd {
            // The pidfd becomes readable when the child exits: no sleep-and-poll.
            loop {
                let left = deadline.saturating_duration_since(Instant::now());
                let ms = left.as_millis().min(i32::MAX as u128) as i32;
                let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
                match poll(
                    &mut fds,
                    PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX),
                ) {
                    Ok(0) => return self.kill_and_reap("timed out"),
                    Ok(_) => break,
                    Err(nix::errno::Errno::EINTR) => continue,
                    Err(e) => return Err(format!("poll(pidfd): {e}")),
                }
            }
            let st = waitpid(self.pid, None).map_err(|e| format!("waitpid: {e}"))?;
            self.reaped = true;
            return status_result(st);
        }
        // No pidfd (old kernel): poll waitpid with a short sleep.
        loop {
            match waitpid(self.pid, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) => {}
                Ok(st) => {
                    self.reaped = true;
                    return status_result(st);
                }
                Err(e) => return Err(format!("waitpid: {e}")),
            }
            if Instant::now() >= deadline {
                return self.kill_and_reap("timed out");
            }
            std::thread::sleep(Duration::from_micros(50));
        }
    }

    fn kill_and_reap(&mut self, why: &str) -> Result<(), String> {
        let _ = kill(self.pid, Signal::SIGKILL);
        let _ = waitpid(self.pid, None);
        self.reaped = true;
        Err(format!("reader {why}; killed"))
    }
}

fn status_result(st: WaitStatus) -> Result<(), String> {
    match st {
        WaitStatus::Exited(_, 0) => Ok(()),
        WaitStatus::Exited(_, EXIT_BAD_DATA) => Err("reader saw wrong data".into()),
        WaitStatus::Exited(_, EXIT_IO) => Err("reader failed (setup or recv error)".into()),
        WaitStatus::Exited(_, EXIT_PANIC) => Err("reader panicked".into()),
        WaitStatus::Exited(_, c) => Err(format!("reader exited with {c}")),
        WaitStatus::Signaled(_, s, _) => Err(format!("reader killed by {s}")),
        other => Err(format!("reader: {other:?}")),
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        if !self.reaped {
            let _ = kill(self.pid, Signal::SIGKILL);
            let _ = waitpid(self.pid, None);
        }
    }
}
