//! Helpers for tests that fork: a global lock (forking while other test threads run
//! is risky), children that always get reaped, waits that always time out.
#![allow(dead_code)]
// Process-local flags between a test's threads, never in shared memory: std's atomics.
#![allow(clippy::disallowed_types)]

use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use nix::unistd::Pid;
use shmproc::Process;

static FORK_LOCK: Mutex<()> = Mutex::new(());

/// Serializes the tests of one binary that fork.
pub fn serial() -> MutexGuard<'static, ()> {
    FORK_LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// A forked child (a [`shmproc::Process`] started with `Process::fork`, so the
/// library's fork hygiene applies), killed and reaped on drop if still running.
pub struct Child {
    pub proc: Process,
}

/// Forks; the child runs `f` and exits with its return code (1 on panic).
pub fn fork_child(f: impl FnOnce() -> i32 + Send + 'static) -> Child {
    let mut proc = Process::fork(move || {
        let code = f();
        if code != 0 {
            std::process::exit(code);
        }
    });
    proc.start().expect("fork");
    Child { proc }
}

impl Child {
    /// The child's pid.
    pub fn pid(&self) -> Pid {
        Pid::from_raw(self.proc.pid().expect("started") as i32)
    }

    /// Waits for the child to exit, at most `timeout`; kills it (and panics) if it
    /// does not. Returns the exit code in Python's convention.
    pub fn wait(&mut self, timeout: Duration) -> i32 {
        self.proc.join_timeout(timeout).expect("join");
        match self.proc.exitcode() {
            Some(c) => c,
            None => {
                self.kill();
                panic!("child {} did not finish within {timeout:?}", self.pid());
            }
        }
    }

    /// Waits and asserts a zero exit code.
    pub fn expect_success(&mut self, timeout: Duration) {
        let c = self.wait(timeout);
        assert_eq!(c, 0, "child failed");
    }

    /// SIGKILLs the child and reaps it.
    pub fn kill(&mut self) {
        if self.proc.exitcode().is_none() {
            let _ = self.proc.kill();
            let _ = self.proc.join_timeout(Duration::from_secs(10));
        }
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Aborts the whole test process if a test runs longer than `limit` (a hang fails the
/// test instead of the CI job).
pub fn watchdog(limit: Duration) -> impl Drop {
    struct Guard(std::sync::Arc<std::sync::atomic::AtomicBool>);
    impl Drop for Guard {
        fn drop(&mut self) {
            self.0.store(true, std::sync::atomic::Ordering::Relaxed);
        }
    }
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let d = done.clone();
    std::thread::spawn(move || {
        let start = Instant::now();
        while start.elapsed() < limit {
            if d.load(std::sync::atomic::Ordering::Relaxed) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        eprintln!("watchdog: test exceeded {limit:?}, aborting");
        std::process::abort();
    });
    Guard(done)
}

/// What a blocked thread can be asleep in: a futex (a parked waiter) or a nap
/// (`nanosleep`, as `std::thread::sleep` and the waiters' bounded naps use).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Asleep {
    Futex,
    Nap,
}

/// A waiter that has gone to sleep: parked on its futex, or napping between looks at
/// an owner's liveness.
pub const PARKED: &[Asleep] = &[Asleep::Futex, Asleep::Nap];

impl Asleep {
    fn syscalls(self) -> &'static [libc::c_long] {
        match self {
            Asleep::Futex => &[libc::SYS_futex],
            Asleep::Nap => &[libc::SYS_nanosleep, libc::SYS_clock_nanosleep],
        }
    }

    /// A word of the kernel function (`/proc/.../wchan`) such a sleep waits in.
    fn wchan(self) -> &'static str {
        match self {
            Asleep::Futex => "futex",
            Asleep::Nap => "nanosleep",
        }
    }
}

/// The calling thread, as `(pid, tid)`, for a child to watch with [`wait_asleep`].
pub fn this_thread() -> (i32, i32) {
    (
        nix::unistd::getpid().as_raw(),
        nix::unistd::gettid().as_raw(),
    )
}

/// Whether thread `tid` of process `pid` is asleep (`/proc/<pid>/task/<tid>/stat`
/// state `S`) in one of `what`: the system call it is blocked in
/// (`/proc/.../syscall`), or where that file is not readable, the kernel function it
/// waits in (`/proc/.../wchan`).
pub fn is_asleep(pid: i32, tid: i32, what: &[Asleep]) -> bool {
    let dir = format!("/proc/{pid}/task/{tid}");
    let Ok(stat) = std::fs::read_to_string(format!("{dir}/stat")) else {
        return false;
    };
    // The state is the first field after the `)` that closes the command name.
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().next());
    if state != Some("S") {
        return false;
    }
    let syscall = std::fs::read_to_string(format!("{dir}/syscall")).ok();
    if let Some(nr) =
        syscall.and_then(|s| s.split_whitespace().next()?.parse::<libc::c_long>().ok())
    {
        return what.iter().any(|w| w.syscalls().contains(&nr));
    }
    let wchan = std::fs::read_to_string(format!("{dir}/wchan")).unwrap_or_default();
    what.iter().any(|w| wchan.contains(w.wchan()))
}

/// Waits until thread `tid` of process `pid` is asleep in one of `what` (see
/// [`is_asleep`]), looking every millisecond; panics after `timeout`. A test that needs a
/// waiter parked before it acts waits for exactly that, instead of sleeping and hoping.
pub fn wait_asleep(pid: i32, tid: i32, what: &[Asleep], timeout: Duration) {
    let start = Instant::now();
    while !is_asleep(pid, tid, what) {
        assert!(
            start.elapsed() < timeout,
            "thread {tid} of process {pid} did not go to sleep in {what:?} within {timeout:?}"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

impl Child {
    /// Waits until the child (a single thread) is asleep in one of `what`; panics after
    /// `timeout`.
    pub fn wait_asleep(&self, what: &[Asleep], timeout: Duration) {
        let pid = self.pid().as_raw();
        wait_asleep(pid, pid, what, timeout);
    }
}

/// A consumer's record of the items it took, when `producers` producers each put `per`
/// items (producer `p`'s item `i` is `p * per + i`): how often each arrived, and a check
/// that each producer's items come in order.
pub struct Tally {
    pub seen: Vec<u8>,
    last: Vec<Option<u64>>,
    per: u64,
}

impl Tally {
    pub fn new(producers: usize, per: u64) -> Tally {
        Tally {
            seen: vec![0; producers * per as usize],
            last: vec![None; producers],
            per,
        }
    }

    /// Counts item `v`; panics on a foreign item or one out of its producer's order.
    pub fn add(&mut self, v: u64) {
        let (p, i) = ((v / self.per) as usize, v % self.per);
        assert!(p < self.last.len(), "foreign item {v}");
        assert!(self.last[p].is_none_or(|l| l < i), "out of order");
        self.last[p] = Some(i);
        self.seen[v as usize] += 1;
    }
}

/// Asserts that every item arrived exactly once, from the sum of the consumers' counts.
pub fn assert_exactly_once(total: &[u32]) {
    let wrong: Vec<_> = total
        .iter()
        .enumerate()
        .filter(|(_, &n)| n != 1)
        .take(5)
        .collect();
    assert!(
        wrong.is_empty(),
        "items not delivered exactly once: {wrong:?}"
    );
}
