//! Re-executing the current binary: `fork` + `execve` with only the descriptors the child
//! needs (`close_range`), the executable's identity, and the process-start hooks a
//! spawned child's bootstrap needs (`getauxval(AT_SECURE)`, `atexit`, an `.init_array`
//! entry).
//!
//! Only the system calls and the raw hooks live here; what a spawn job says and when a
//! child trusts it are the `process` module's (`process::job`, `process::boot`).

use std::ffi::{CString, OsString};
use std::io::{self, Read};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::MetadataExt;
use std::sync::OnceLock;

use super::proc::{die_with_parent, exit_now, fork, reset_child_signals, wait_exitcode, Forked};

#[cfg(all(test, not(loom)))]
mod tests;

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
// The executable's identity
// ---------------------------------------------------------------------------------------

/// Identity of an executable file: device, inode, size and modification time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ImageId {
    pub(crate) dev: u64,
    pub(crate) ino: u64,
    pub(crate) size: u64,
    pub(crate) mtime: i64,
    pub(crate) mtime_nsec: i64,
}

impl ImageId {
    /// The identity of the file `path` leads to (following links, as `/proc/<pid>/exe`).
    pub(crate) fn of(path: &str) -> io::Result<ImageId> {
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
pub(crate) fn image_id() -> io::Result<ImageId> {
    static ID: OnceLock<ImageId> = OnceLock::new();
    if let Some(id) = ID.get() {
        return Ok(*id);
    }
    let id = ImageId::of("/proc/self/exe")?;
    Ok(*ID.get_or_init(|| id))
}

// ---------------------------------------------------------------------------------------
// Process-start hooks
// ---------------------------------------------------------------------------------------

/// Whether the kernel started this process in secure-execution mode
/// (`getauxval(AT_SECURE)`: a setuid or setgid program run by another user, or one with
/// file capabilities). glibc ignores `LD_PRELOAD` then; shmproc ignores spawn jobs.
pub(crate) fn secure_execution() -> bool {
    // SAFETY: getauxval only reads the auxiliary vector the kernel gave the process.
    unsafe { libc::getauxval(libc::AT_SECURE) != 0 }
}

/// `atexit(handler)`: `handler` runs when the process exits through `exit` (returning
/// from `main`, `std::process::exit`), not through `_exit`. Registration failing (out of
/// memory) is ignored.
pub(crate) fn atexit(handler: extern "C" fn()) {
    // SAFETY: registers a function with the C signature atexit expects; any `extern "C"
    // fn()` may be called at exit (a panic in it aborts instead of unwinding into libc).
    unsafe { libc::atexit(handler) };
}

/// The C signature of an `.init_array` entry.
pub(crate) type InitArrayFn =
    extern "C" fn(libc::c_int, *const *const libc::c_char, *const *const libc::c_char);

/// What an `.init_array` entry made by [`run_before_main`] does: runs `f`, catching any
/// panic (which must not unwind into the loader); a panic ends the process with exit code
/// 1 and a message on stderr.
pub(crate) fn run_ctor(f: fn()) {
    if std::panic::catch_unwind(f).is_err() {
        super::proc::write_stderr("shmproc: the spawn bootstrap panicked\n");
        exit_now(1)
    }
}

/// `run_before_main!(f)` makes the dynamic loader call `f: fn()` before `main`, in every
/// program that links shmproc: an `.init_array` entry (as C's
/// `__attribute__((constructor))`), kept by `#[used]`, that calls [`run_ctor`]`(f)`.
/// Invoke it once per function, at module level.
macro_rules! run_before_main {
    ($f:path) => {
        const _: () = {
            extern "C" fn ctor(
                _argc: ::libc::c_int,
                _argv: *const *const ::libc::c_char,
                _envp: *const *const ::libc::c_char,
            ) {
                $crate::sys::exec::run_ctor($f)
            }
            #[used]
            #[link_section = ".init_array"]
            static CTOR: $crate::sys::exec::InitArrayFn = ctor;
        };
    };
}
pub(crate) use run_before_main;
