//! Processes: Python's `multiprocessing.Process` for Rust. The user's guide (start
//! methods, fork safety, exit codes, daemons) is on [`Process`], re-exported at the root.

#[cfg(feature = "tokio")]
mod asynk;
mod boot;
mod fork;
mod job;
mod ready;
mod spawn;
#[cfg(all(test, not(loom)))]
mod tests;

use std::fmt;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde::{de::DeserializeOwned, Serialize};

use crate::error::{Error, Result};
use crate::sys::proc::{self, Signal};
use crate::sys::reloc::EntryPoint;

pub(crate) use job::JobError;

/// How a [`Process`] is started. See [Start methods](Process#start-methods).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum StartMethod {
    /// `fork(2)`: the child is a copy of the parent. Fast; read [what is safe in a forked
    /// child](Process#what-is-safe-in-a-forked-child) about threads. The default.
    #[default]
    Fork,
    /// `fork(2)` + `execve(2)` of the current binary: a fresh image that runs the target
    /// from [`init`]. Needs `shmproc::init()` first in `main`.
    Spawn,
}

/// A start method to create processes with, as Python's `multiprocessing.get_context`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Context {
    method: StartMethod,
}

/// The context for a start method: `get_context(StartMethod::Spawn).process(f, args)`.
pub fn get_context(method: StartMethod) -> Context {
    Context { method }
}

impl Context {
    /// This context's start method.
    pub fn start_method(&self) -> StartMethod {
        self.method
    }

    /// A process (not started yet) that will run `target(args)` with this context's
    /// start method. `R`'s value is dropped, as in Python.
    pub fn process<A, R>(&self, target: fn(A) -> R, args: A) -> Process
    where
        A: Serialize + DeserializeOwned + Send + 'static,
        R: 'static,
    {
        Process::with_job(self.method, Box::new(TargetJob { target, args }))
    }
}

/// What a child runs.
trait Job: Send {
    /// Runs in a forked child (may panic; the caller catches it).
    fn run(self: Box<Self>);
    /// For spawn: the entry point, the encoded args and the descriptors they pass.
    fn spawn_parts(&self) -> Result<(EntryPoint, Vec<u8>, Vec<std::os::fd::RawFd>)>;
}

struct TargetJob<A, R> {
    target: fn(A) -> R,
    args: A,
}

impl<A, R> Job for TargetJob<A, R>
where
    A: Serialize + DeserializeOwned + Send + 'static,
    R: 'static,
{
    fn run(self: Box<Self>) {
        drop((self.target)(self.args));
    }

    fn spawn_parts(&self) -> Result<(EntryPoint, Vec<u8>, Vec<std::os::fd::RawFd>)> {
        let entry = EntryPoint::new::<A, R, spawn::SpawnRunner>(self.target)?;
        let (bytes, fds) = spawn::encode_for_spawn(&self.args)?;
        Ok((entry, bytes, fds))
    }
}

struct ClosureJob<F>(F);

impl<F: FnOnce() + Send + 'static> Job for ClosureJob<F> {
    fn run(self: Box<Self>) {
        (self.0)()
    }

    fn spawn_parts(&self) -> Result<(EntryPoint, Vec<u8>, Vec<std::os::fd::RawFd>)> {
        Err(Error::InvalidState(
            "a Process::fork closure can only be started by fork",
        ))
    }
}

#[derive(Debug)]
enum State {
    New,
    Running { pid: u32 },
    Exited { pid: u32, code: i32 },
}

/// A child process running a function: Python's `multiprocessing.Process`.
///
/// Create it with [`Process::new`] (the default start method, [`StartMethod::Fork`]),
/// [`Context::process`] (a chosen start method) or [`Process::fork`] (a capturing
/// closure); then [`start`](Process::start) it and [`join`](Process::join) it. `start`
/// hands the args to the child and drops the parent's copy, as Python's `start()` deletes
/// `_args`. The sections below cover start methods, fork safety, exit codes and
/// daemons.
///
/// # Examples
///
/// ```
/// use shmproc::Process;
///
/// fn square_and_exit(x: i32) {
///     std::process::exit(x * x);
/// }
///
/// let mut p = Process::new(square_and_exit, 3);
/// p.start().unwrap();
/// p.join().unwrap();
/// assert_eq!(p.exitcode(), Some(9));
///
/// let mut q = Process::fork(|| panic!("boom"));
/// q.start().unwrap();
/// q.join().unwrap();
/// assert_eq!(q.exitcode(), Some(1));
/// ```
///
/// ```no_run
/// use shmproc::Process;
///
/// fn f(name: String) {
///     println!("hello {name}");
/// }
///
/// fn main() {
///     shmproc::init(); // first statement: a spawned child runs its target here
///     let mut p = Process::new(f, "bob".to_string());
///     p.start().unwrap();
///     p.join().unwrap();
///     assert_eq!(p.exitcode(), Some(0));
/// }
/// ```
///
/// # Start methods
///
/// As in Python, spawn = fork + execve:
///
/// * [`StartMethod::Fork`] — the child is a copy of the parent (`fork(2)`). The target
///   and its args reach the child by memory, nothing is serialized, and start-up is a
///   fraction of a millisecond. **This is the default** of [`Process::new`]: it is the
///   fastest, it needs no [`init`] call, it works in any test harness, and
///   it is what Python used on Linux for decades. Prefer `Spawn` in a program with many
///   threads (see below).
/// * [`StartMethod::Spawn`] — the child re-executes the current binary
///   (`/proc/self/exe`) with the parent's command line and environment, plus one
///   variable, `SHMPROC_CHILD`, that names an inherited descriptor holding the job. The
///   args are serialized (serde); shared handles (pipe ends, queues, locks) pass their
///   file descriptors, which the child inherits. `main` must call
///   [`shmproc::init()`](init) **first**: in a spawned child it runs the target and
///   exits, in any other process it returns at once (it is the counterpart of Python's
///   `if __name__ == '__main__':`). A forgotten `init()` cannot go unnoticed: starting a
///   process from a spawned child that has not called `init()` is an error (so it cannot
///   multiply processes), and such a child exits with code 1 and says why on its stderr
///   whatever its `main` returned, so the parent's [`Process::exitcode`] shows it.
///
/// The target is a plain `fn(A) -> R` (a non-capturing closure coerces); its return value
/// is dropped, as in Python. A spawned child finds it again without any registry: the
/// parent sends the offset of the function (and of a trampoline monomorphized for `A` and
/// `R`, with a fingerprint of those types that the trampoline checks before it calls
/// anything) from a fixed point in the executable, together with the executable's
/// identity (device, inode, size, mtime of `/proc/self/exe`); the child refuses a job made
/// by another executable. The target must live in the executable itself, not in a shared
/// library loaded separately.
///
/// Only the descriptors the child needs cross `execve`: those of the shared handles in
/// its args (and the job's own). Every other descriptor of the parent is closed in the
/// child, whether or not it was opened close-on-exec, as Python's spawn does.
///
/// ## Who can make a spawned child run what (the threat model)
///
/// A spawned child learns what to run from its environment (`SHMPROC_CHILD`) and an
/// inherited descriptor, and whoever can set a process's environment and descriptors
/// could write such a job. So [`init`] (in fact a constructor that runs before `main`)
/// trusts a job for where it came from, not for what it says: the child's parent process
/// must run this same executable image (its `/proc/<ppid>/exe` has the identity of the
/// child's own executable, and the job names it too), and must still be the parent after
/// the check. The parent's `start()` waits (at most 30 s, less if the child dies) until
/// the child has checked the job and acknowledged it on a pipe passed in the job, so a
/// legitimate parent is alive during the check even if its program exits right after
/// `start()`. A job handed over by any other program (a shell, a script exec'ing the
/// binary with `SHMPROC_CHILD` and a descriptor) is refused: the child exits with code 1
/// and a message on stderr, and the target never runs.
///
/// * **Whoever can set a process's environment and descriptors can run only the
///   program's own code.** In a normal process, a forger needs code already running in
///   this executable to have a job accepted, and can then run any spawn target with
///   arguments of their choosing: nothing that `LD_PRELOAD` or `ptrace` would not give
///   them already.
/// * **In a secure-execution process** (`getauxval(AT_SECURE)`: a setuid or setgid program
///   run by another user, or one with file capabilities) a job is never read: `init()`
///   removes `SHMPROC_CHILD` and returns, and `main` runs as usual. Only `main` can run
///   there. Spawning from such a process fails at [`Process::start`] (and a spawn `Pool`
///   at creation) with [`Error::Spawn`]; the fork start method works.
///
/// The check reads `/proc/<ppid>/exe`, so a parent that made itself non-dumpable
/// (`PR_SET_DUMPABLE` 0) cannot spawn: its children refuse their jobs, and `start()`
/// returns [`Error::Spawn`].
///
/// # Spawned children inside `cargo test`
///
/// A spawned child re-runs the test binary, so the binary's `main` must call `init()`.
/// The default libtest harness has no such hook: put spawn tests in an integration test
/// with its own `main`:
///
/// ```toml
/// [[test]]
/// name = "my_spawn_tests"
/// harness = false
/// ```
///
/// ```no_run
/// // tests/my_spawn_tests.rs
/// fn work(n: u32) { assert_eq!(n, 7) }
///
/// fn main() {
///     shmproc::init();
///     use shmproc::{get_context, StartMethod};
///     let mut p = get_context(StartMethod::Spawn).process(work, 7);
///     p.start().unwrap();
///     p.join().unwrap();
///     assert_eq!(p.exitcode(), Some(0));
/// }
/// ```
///
/// Fork works under the normal harness, with one caveat: libtest captures `print!` per
/// test in memory, so a forked child's `println!` goes to the child's copy of that buffer
/// and is lost. Run with `--nocapture`, or use a `harness = false` test, to see it.
///
/// # What is safe in a forked child
///
/// Only the thread that called `fork` exists in the child (the seed's caution). Every
/// lock that another thread held at that instant stays locked forever in the child, and
/// the child blocks if it takes it. So, in a `Fork` child of a multi-threaded program:
///
/// * memory allocation is fine (glibc's `malloc` re-initialises its locks at fork), and
///   so is starting threads (a [`Pool`](crate::Pool) inside a pool task works);
/// * shmproc's own hand-off registry is locked across the fork, so it is consistent;
/// * std's `stdout` and `stderr` are **not** locked across the fork (see below): if
///   another thread of the parent held one of them at that instant (inside a
///   `println!`, or a [`std::io::Stdout::lock`] it keeps), a `println!`/`eprintln!` in
///   the child blocks for ever. A child that must print in such a program can write to
///   fd 1 or 2 directly (`File::from(std::io::stdout().as_fd().try_clone_to_owned()?)`
///   takes no lock), or use [`StartMethod::Spawn`];
/// * any `Mutex` of your own, `std::env` (its lock), loggers, and runtimes whose worker
///   threads are gone (tokio, rayon: do not use them in the child; start a new one) are
///   not covered either;
/// * a single-threaded parent, or one whose other threads only wait on channels and
///   futexes, is safe.
///
/// When in doubt, use [`StartMethod::Spawn`]: the child starts from a fresh image.
///
/// ## What is held across fork
///
/// [`Process::start`] holds exactly one lock of its own across `fork`: shmproc's
/// hand-off registry (with the lock under which shared handles are created), so that
/// no child inherits a half-registered handle. It takes no lock of std's and none of
/// yours, so it never waits for a lock that the caller or another thread holds: a
/// thread that keeps `std::io::stdout().lock()` while it starts processes, builds a
/// [`Pool`](crate::Pool) or waits for one (whose threads fork replacements), or joins a
/// thread that starts one, does not hang. (std's stdout lock has no `try_lock`; holding
/// it across fork, as shmproc once did, made exactly those cases wait for ever.) The
/// price is the bullet above: a child forked while *another* thread held std's lock
/// cannot print through std. The forking thread's own locks are its own in the child,
/// as they are re-entrant: a `StdoutLock` of the forking thread still lets the child
/// print.
///
/// A forked child ends with `_exit` after flushing what its code left in std's stdout
/// buffer (a `print!` without a newline); the parent's `atexit` handlers and the
/// destructors of the parent's stack frames never run in it. That flush never blocks for
/// ever: an `alarm` armed before it ends the child (with its exit code) if stdout's lock
/// has not come within a second, leaving that unflushed text unwritten (std's own exit
/// gives up at once, with a `try_lock` it does not offer to others). So a child's SIGALRM
/// handler and pending alarm are replaced once its code is done. std's stderr has no
/// buffer. shmproc's own messages in a child (a failed hand-off) are written to fd 2
/// directly.
///
/// # Exit codes
///
/// [`Process::exitcode`] follows Python: `None` while the child runs, `0` when the target
/// returned, `1` when it panicked (the default panic hook prints the message on the
/// child's stderr; with `panic = "abort"` the child dies of SIGABRT instead, `-6`), `n`
/// after `std::process::exit(n)`, and `-N` when a signal `N` killed it
/// ([`terminate`](Process::terminate): `-15`; [`kill`](Process::kill): `-9`). The child
/// restores SIGTERM's default action, so it cannot catch it by accident of inheritance.
///
/// # Daemons, zombies and the end of the parent
///
/// A daemon child ([`Process::daemon`]) dies with its parent, even when the parent is
/// killed with SIGKILL: right after the fork the child sets `PR_SET_PDEATHSIG(SIGKILL)`
/// and then checks that its parent is still the process that forked it (it may have died
/// before the signal was armed). Linux sends the death signal when the **thread** that
/// forked the child exits, not the whole process: start daemons from a thread that lives
/// as long as they should (the main thread, typically).
///
/// No zombie is ever left: [`join`](Process::join) reaps the child; dropping a started,
/// unjoined `Process` kills and reaps a daemon, and lets a non-daemon run on, reaped by a
/// small thread that waits for that one pid. shmproc waits only for the pids it forked,
/// never for "any child", so children that the program created by other means are left
/// to their owners. Unlike Python, a program that returns from `main` does not wait for
/// non-daemon children it did not join.
pub struct Process {
    job: Option<Box<dyn Job>>,
    method: StartMethod,
    daemon: bool,
    state: Mutex<State>,
    /// Readable once the child has exited (a pidfd); `None` before start.
    pidfd: Option<OwnedFd>,
}

impl fmt::Debug for Process {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Process")
            .field("method", &self.method)
            .field("daemon", &self.daemon)
            .field("pid", &self.pid())
            .field("exitcode", &self.exitcode())
            .finish()
    }
}

impl Process {
    /// A process (not started yet) that will run `target(args)` with the default start
    /// method, [`StartMethod::Fork`] (fast, no `init()` needed; see the
    /// [start methods](Process#start-methods) for when to choose `Spawn` with [`get_context`]).
    pub fn new<A, R>(target: fn(A) -> R, args: A) -> Process
    where
        A: Serialize + DeserializeOwned + Send + 'static,
        R: 'static,
    {
        get_context(StartMethod::default()).process(target, args)
    }

    /// A process (not started yet) that will run the closure `f` in a forked child. The
    /// closure may capture anything; it reaches the child by memory, so this is for the
    /// fork start method only.
    pub fn fork<F: FnOnce() + Send + 'static>(f: F) -> Process {
        Process::with_job(StartMethod::Fork, Box::new(ClosureJob(f)))
    }

    fn with_job(method: StartMethod, job: Box<dyn Job>) -> Process {
        Process {
            job: Some(job),
            method,
            daemon: false,
            state: Mutex::new(State::New),
            pidfd: None,
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Makes the child a daemon (or not): it dies when the parent dies, even by SIGKILL,
    /// and a dropped unjoined daemon is killed. Call before [`start`](Process::start);
    /// later calls have no effect on the running child. Start daemons from a long-lived
    /// thread: Linux delivers the death signal when the *thread* that forked exits.
    pub fn daemon(&mut self, daemon: bool) -> &mut Self {
        self.daemon = daemon;
        self
    }

    /// Whether this process is (or will be started as) a daemon.
    pub fn is_daemon(&self) -> bool {
        self.daemon
    }

    /// The start method this process uses.
    pub fn start_method(&self) -> StartMethod {
        self.method
    }

    /// Starts the child. It hands the args (or the closure) to the child and drops the
    /// parent's copy.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidState`] when called a second time, or in a spawned child whose
    /// `main` did not call [`init`] first; [`Error::Handle`] or
    /// [`Error::Codec`] when spawn cannot serialize the args; [`Error::Spawn`] for spawn
    /// in a secure-execution (setuid, setgid, file-capability) process, or when the
    /// spawned child exited or hung before it accepted its job (the target never ran;
    /// the child was reaped); [`Error::Io`] when `fork`, `execve` or a pipe fails. After
    /// an error the process can be started again.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmproc::Process;
    ///
    /// fn work(n: u32) {
    ///     assert_eq!(n, 7);
    /// }
    ///
    /// let mut p = Process::new(work, 7);
    /// p.start()?;
    /// assert!(p.start().is_err()); // once only
    /// p.join()?;
    /// assert_eq!(p.exitcode(), Some(0));
    /// # Ok::<(), shmproc::Error>(())
    /// ```
    pub fn start(&mut self) -> Result<()> {
        if !matches!(*self.state(), State::New) {
            return Err(Error::InvalidState("a process can be started only once"));
        }
        if spawn::uninitialised_child() {
            return Err(Error::InvalidState(
                "this is a spawned child whose main() did not call shmproc::init() first",
            ));
        }
        let pid = match self.method {
            StartMethod::Fork => fork::start(&mut self.job, self.daemon)?,
            StartMethod::Spawn => spawn::start(&mut self.job, self.daemon)?,
        };
        // None only on kernels older than 5.3; join_timeout then falls back to polling.
        self.pidfd = proc::pidfd_open(pid).ok();
        *self.state() = State::Running { pid };
        Ok(())
    }

    /// Waits until the child exits, then reaps it. Returns within a millisecond of the
    /// exit (it blocks in `waitpid`). `Ok(())` whatever the child did: read the outcome
    /// from [`exitcode`](Process::exitcode).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidState`] before `start`; [`Error::Io`] when `waitpid` fails (for
    /// example another part of the program reaped the child with `waitpid(-1)`).
    ///
    /// # Examples
    ///
    /// ```
    /// use shmproc::Process;
    ///
    /// let mut p = Process::fork(|| std::process::exit(3));
    /// p.start()?;
    /// p.join()?; // Ok whatever the child did: its outcome is in exitcode()
    /// assert_eq!(p.exitcode(), Some(3));
    /// assert!(!p.is_alive());
    /// # Ok::<(), shmproc::Error>(())
    /// ```
    pub fn join(&mut self) -> Result<()> {
        let state = self.state.get_mut().unwrap_or_else(|e| e.into_inner());
        match *state {
            State::New => Err(Error::InvalidState("join() before start()")),
            State::Exited { .. } => Ok(()),
            State::Running { pid, .. } => {
                if let Some(code) = proc::wait_exitcode(pid, true)? {
                    *state = State::Exited { pid, code };
                }
                Ok(())
            }
        }
    }

    /// Waits at most `timeout` for the child to exit (a `poll` on its pidfd), reaping it
    /// if it did. `Ok(())` also when the time passes and the child still runs;
    /// [`exitcode`](Process::exitcode) is `None` then. A timeout too large to add to the
    /// clock (`Duration::MAX`) waits for ever, as [`join`](Process::join).
    ///
    /// # Errors
    ///
    /// As [`join`](Process::join).
    pub fn join_timeout(&mut self, timeout: Duration) -> Result<()> {
        let state = self.state.get_mut().unwrap_or_else(|e| e.into_inner());
        let pid = match *state {
            State::New => return Err(Error::InvalidState("join_timeout() before start()")),
            State::Exited { .. } => return Ok(()),
            State::Running { pid } => pid,
        };
        let code = match &self.pidfd {
            Some(fd) => {
                proc::poll_readable(fd.as_fd(), Some(timeout))?;
                proc::wait_exitcode(pid, false)?
            }
            None => {
                // No pidfd (kernels before 5.3, valgrind): poll the status with a short
                // sleep. The call that reaps the child returns its code: keep it.
                let deadline = crate::sys::deadline_after(timeout);
                loop {
                    let code = proc::wait_exitcode(pid, false)?;
                    if code.is_some() || deadline.is_some_and(|d| Instant::now() >= d) {
                        break code;
                    }
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        };
        if let Some(code) = code {
            *state = State::Exited { pid, code };
        }
        Ok(())
    }

    /// The child's exit code, Python's convention: `None` before start and while it
    /// runs, `0` when the target returned, `1` when it panicked, `n` after
    /// `std::process::exit(n)`, `-N` when signal `N` killed it.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// use shmproc::Process;
    ///
    /// let mut p = Process::fork(|| std::thread::sleep(Duration::from_secs(60)));
    /// assert_eq!(p.exitcode(), None); // not started
    /// p.start()?;
    /// assert_eq!(p.exitcode(), None); // running
    /// p.kill()?;
    /// p.join()?;
    /// assert_eq!(p.exitcode(), Some(-9)); // killed by SIGKILL
    ///
    /// let mut q = Process::fork(|| panic!("boom"));
    /// q.start()?;
    /// q.join()?;
    /// assert_eq!(q.exitcode(), Some(1)); // panicked
    /// # Ok::<(), shmproc::Error>(())
    /// ```
    pub fn exitcode(&self) -> Option<i32> {
        let mut state = self.state();
        match *state {
            State::New => None,
            State::Exited { code, .. } => Some(code),
            State::Running { pid, .. } => match proc::wait_exitcode(pid, false) {
                Ok(Some(code)) => {
                    *state = State::Exited { pid, code };
                    Some(code)
                }
                _ => None,
            },
        }
    }

    /// Whether the child was started and has not exited yet.
    pub fn is_alive(&self) -> bool {
        let running = matches!(*self.state(), State::Running { .. });
        running && self.exitcode().is_none()
    }

    /// The child's process id, once started (it stays available after the exit).
    pub fn pid(&self) -> Option<u32> {
        match *self.state() {
            State::New => None,
            State::Running { pid, .. } | State::Exited { pid, .. } => Some(pid),
        }
    }

    /// A descriptor that becomes readable when the child exits (its pidfd), like Python's
    /// `Process.sentinel`: poll many of them to wait for the first of several children.
    /// `None` before start (and on kernels older than 5.3). Reading the exit code still
    /// goes through [`exitcode`](Process::exitcode) or [`join`](Process::join).
    pub fn sentinel(&self) -> Option<BorrowedFd<'_>> {
        self.pidfd.as_ref().map(|fd| fd.as_fd())
    }

    /// Sends SIGTERM. The child does not catch it, so it dies and
    /// [`exitcode`](Process::exitcode) becomes `Some(-15)` (unless the target installed
    /// its own handler). Nothing happens when the child has already exited and was
    /// reaped.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidState`] before `start`; [`Error::Io`] when `kill` fails.
    pub fn terminate(&self) -> Result<()> {
        self.signal(Signal::Term)
    }

    /// Sends SIGKILL: [`exitcode`](Process::exitcode) becomes `Some(-9)`.
    ///
    /// # Errors
    ///
    /// As [`terminate`](Process::terminate).
    pub fn kill(&self) -> Result<()> {
        self.signal(Signal::Kill)
    }

    fn signal(&self, sig: Signal) -> Result<()> {
        // The state lock is held across kill(): the child cannot be reaped meanwhile, and
        // an unreaped child (even a zombie) keeps its pid, so the signal cannot reach a
        // process that reused the number.
        let state = self.state();
        match *state {
            State::New => Err(Error::InvalidState("the process was not started")),
            State::Exited { .. } => Ok(()),
            State::Running { pid, .. } => Ok(proc::send_signal(pid, sig)?),
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let daemon = self.daemon;
        let state = self.state.get_mut().unwrap_or_else(|e| e.into_inner());
        if let State::Running { pid, .. } = *state {
            if daemon {
                let _ = proc::send_signal(pid, Signal::Kill);
                let _ = proc::wait_exitcode(pid, true);
            } else if let Ok(None) = proc::wait_exitcode(pid, false) {
                reap_later(pid);
            }
        }
    }
}

/// Reaps a still-running child when it exits, from a small thread blocked in
/// `waitpid(pid)` (that pid only). If no thread can be created, the zombie stays until
/// this process exits.
fn reap_later(pid: u32) {
    let _ = std::thread::Builder::new()
        .name(format!("shmproc-reap-{pid}"))
        .stack_size(64 * 1024)
        .spawn(move || {
            let _ = proc::wait_exitcode(pid, true);
        });
}

/// Runs a job, turning a panic into exit code 1 (the panic hook has printed the message).
fn run_catching(f: impl FnOnce()) -> i32 {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(()) => 0,
        Err(payload) => {
            // Dropping a payload can panic again; the process is about to exit anyway.
            std::mem::forget(payload);
            1
        }
    }
}

/// Flushes a spawned child's stdout and stderr before it exits. A spawned child is a
/// fresh image: no thread it lacks can hold their locks (forked children end with
/// [`exit_child`] instead).
pub(crate) fn flush_stdio() {
    use std::io::Write;
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
}

/// How long a child's exit waits for std's stdout lock before it ends without the flush.
const STDOUT_GRACE_SECS: u32 = 1;

/// Ends a forked child (or a pool worker): flushes what its code left in std's stdout
/// buffer (a `print!` without a newline), then `_exit(code)`s. Never blocks for ever.
///
/// std's stdout lock has no `try_lock`, and a forked child may find it held for ever by
/// a thread of the parent that it does not have. So an alarm is armed first: if the lock
/// has not come within [`STDOUT_GRACE_SECS`], its handler `_exit`s with `code`, and the
/// buffer stays unwritten (as std's own exit leaves it when its `try_lock` fails). Once
/// the lock is taken the alarm is cancelled and the flush takes as long as a blocking
/// write does. The lock is re-entrant: when this thread holds it already (its guard was
/// alive at the fork), the flush goes through at once. std's stderr has no buffer.
pub(crate) fn exit_child(code: i32) -> ! {
    use std::io::Write;
    proc::arm_exit_alarm(code, STDOUT_GRACE_SECS);
    let mut out = std::io::stdout().lock();
    proc::disarm_exit_alarm();
    let _ = out.flush();
    drop(out);
    proc::exit_now(code)
}

/// Call this first in `main`: in a child started with [`StartMethod::Spawn`] it runs the
/// child's target and exits the process; in every other process it returns at once.
/// The crate root offers it as `shmproc::init` too.
///
/// The job was already read and checked before `main`: a job that was not handed over by
/// a parent process of this same executable ends the process with exit code 1 there. In
/// a secure-execution process (setuid, setgid, file capabilities) the job is ignored and
/// `init()` returns. See [the threat model](Process#who-can-make-a-spawned-child-run-what-the-threat-model).
pub fn init() {
    spawn::run_if_child();
}

/// Spawn jobs made by hand, for the tests of the spawn bootstrap's defences (a job handed
/// to the executable by another program, a job pairing a target with the trampoline of
/// other types). Not part of the stable API.
#[doc(hidden)]
pub mod job_testing {
    use std::os::fd::RawFd;

    use serde::{de::DeserializeOwned, Serialize};

    use crate::error::{Error, Result};
    use crate::sys::reloc::EntryPoint;

    use super::job;

    fn plain_args<A: Serialize>(args: &A) -> Result<Vec<u8>> {
        let (bytes, fds) = super::spawn::encode_for_spawn(args)?;
        if !fds.is_empty() {
            return Err(Error::InvalidState("job_testing args cannot hold handles"));
        }
        Ok(bytes)
    }

    /// The bytes of the job `start()` would write for `target(args)`, naming `ack` as the
    /// acknowledgement descriptor. `args` must not hold shmproc handles.
    pub fn job_bytes<A, R>(target: fn(A) -> R, args: &A, ack: RawFd) -> Result<Vec<u8>>
    where
        A: Serialize + DeserializeOwned,
    {
        let entry = EntryPoint::new::<A, R, super::spawn::SpawnRunner>(target)?;
        Ok(job::job_bytes(&entry, ack, &[], &plain_args(args)?)?)
    }

    /// The bytes of a job pairing `target` (a `fn(B) -> S`) with the trampoline of
    /// `fn(A) -> R` (the type of `_trampoline_of`) and args encoded as `A`, as only a
    /// forger or a bug would write.
    pub fn mismatched_job_bytes<A, R, B, S>(
        _trampoline_of: fn(A) -> R,
        target: fn(B) -> S,
        args: &A,
        ack: RawFd,
    ) -> Result<Vec<u8>>
    where
        A: Serialize + DeserializeOwned,
    {
        let entry = EntryPoint::mismatched::<A, R, super::spawn::SpawnRunner, B, S>(target)?;
        Ok(job::job_bytes(&entry, ack, &[], &plain_args(args)?)?)
    }
}
