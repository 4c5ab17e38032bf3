//! The spawn bootstrap: before `main`, in a process whose environment names a job, reads
//! and checks the job ([`super::job`]) and acknowledges it, so that the parent's
//! `start()` returns as soon as the child is loaded; then keeps it for `init()`.

use std::sync::{Mutex, MutexGuard, Once};

use crate::sys::exec::{atexit, run_before_main, secure_execution};
use crate::sys::proc::{exit_now, write_stderr};

use super::job::{self, Job};

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

/// Where the bootstrap stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    NotChild,
    Secure,
    AwaitingInit,
    InitCalled,
}

struct State {
    stage: Stage,
    /// The accepted job, until `init()` takes it.
    job: Option<Job>,
}

static BOOT_ONCE: Once = Once::new();
static STATE: Mutex<State> = Mutex::new(State {
    stage: Stage::NotChild,
    job: None,
});

fn state() -> MutexGuard<'static, State> {
    STATE.lock().unwrap_or_else(|e| e.into_inner())
}

/// The bootstrap (once per process): when [`CHILD_ENV`] is set, removes it from the
/// environment (grandchildren must not see it); in secure-execution mode stops there;
/// otherwise registers the [`exit_without_init`] hook, reads the job, checks it and
/// acknowledges it to the waiting parent ([`job::accept`]) and keeps it for `init()`. A
/// refused job ends the process with exit code 1 and a message on stderr: its target
/// never runs, nor does `main`.
///
/// Runs before `main` (registered with `run_before_main!` below), so that the parent's
/// `start()` returns as soon as the child is loaded, whether or not `main` calls
/// `init()`; `init()` and `start()` call it too, in case the constructor did not run.
pub(crate) fn boot() {
    BOOT_ONCE.call_once(|| {
        let Some(value) = std::env::var_os(CHILD_ENV) else {
            return;
        };
        std::env::remove_var(CHILD_ENV);
        if secure_execution() {
            state().stage = Stage::Secure;
            return;
        }
        state().stage = Stage::AwaitingInit;
        atexit(exit_without_init);
        match job::accept(&value) {
            Ok(job) => state().job = Some(job),
            Err(e) => {
                write_stderr(&format!("shmproc: spawned child refused its job: {e}\n"));
                exit_now(1)
            }
        }
    });
}

run_before_main!(boot);

/// For `init()`: the bootstrap's outcome, handed out once. Marks `init()` as called.
pub(crate) fn take_boot() -> Boot {
    boot();
    let mut st = state();
    match st.stage {
        Stage::Secure => Boot::Secure,
        Stage::AwaitingInit => {
            st.stage = Stage::InitCalled;
            match st.job.take() {
                Some(job) => Boot::Job(job),
                None => Boot::NotChild,
            }
        }
        Stage::NotChild | Stage::InitCalled => Boot::NotChild,
    }
}

/// Whether this is a spawned child whose `main` has not called `init()` (yet).
pub(crate) fn uninitialised_child() -> bool {
    boot();
    state().stage == Stage::AwaitingInit
}

/// An `atexit` handler, registered in a spawned child: when the process exits without
/// `main` ever calling `init()` (so the target never ran), says so and exits with code
/// 1 instead of whatever `main` returned.
extern "C" fn exit_without_init() {
    if state().stage == Stage::AwaitingInit {
        write_stderr(
            "shmproc: spawned child's main did not call shmproc::init() first, so its target \
             never ran; make shmproc::init() the first statement of main\n",
        );
        exit_now(1)
    }
}
