//! The spawn start method: fork + `execve` of the current binary; the child finds its
//! job through [`init`](super::init).

use std::ffi::OsString;
use std::os::fd::{AsRawFd, RawFd};

use serde::de::DeserializeOwned;

use crate::error::{Error, Result};
use crate::handoff;
use crate::sys;
use crate::sys::proc::{self, ExecPlan, Runner};

use super::{flush_stdio, run_catching, Job};

/// The environment variable that marks a spawned child. Its value is only the number of
/// the inherited descriptor (a memfd) holding the job; the arguments travel in there.
pub(super) const CHILD_ENV: &str = "SHMPROC_CHILD";

/// Runs a target in a spawned child: decodes its args (adopting the passed descriptors),
/// calls it, catches a panic.
pub(super) struct SpawnRunner;

impl<A: DeserializeOwned, R> Runner<A, R> for SpawnRunner {
    fn run(target: fn(A) -> R, args: &[u8], fds: &[RawFd]) -> i32 {
        match handoff::decode_in_child::<A>(args, fds) {
            Ok(args) => run_catching(move || drop(target(args))),
            Err(e) => {
                eprintln!("shmproc: spawned child could not decode its arguments: {e}");
                1
            }
        }
    }
}

/// Whether this process is a spawned child whose `main` has not called `init()` yet.
pub(super) fn uninitialised_child() -> bool {
    std::env::var_os(CHILD_ENV).is_some()
}

/// Spawns a child that runs `job`: encodes it (the args are serialized, their shared
/// handles' descriptors listed), writes it to a memfd, forks and re-executes this binary.
/// Returns the child's pid once it has called `execve`; then drops the parent's copy of
/// the args.
pub(super) fn start(job: &mut Option<Box<dyn Job>>, daemon: bool) -> Result<u32> {
    let parts = job
        .as_ref()
        .ok_or(Error::InvalidState("the process has nothing to run"))?;
    let (entry, bytes, fds) = parts.spawn_parts()?;
    let job_fd = proc::write_job(&entry, &fds, &bytes)?;
    let mut keep = fds;
    keep.push(job_fd.as_raw_fd());

    let mut argv: Vec<OsString> = std::env::args_os().collect();
    if argv.is_empty() {
        argv.push("shmproc-child".into());
    }
    let mut env: Vec<(OsString, OsString)> = std::env::vars_os()
        .filter(|(k, _)| k != CHILD_ENV)
        .collect();
    env.push((CHILD_ENV.into(), job_fd.as_raw_fd().to_string().into()));
    let plan = ExecPlan::current_exe(argv, env, keep)?;

    let parent = sys::getpid();
    // Held across fork so that no other child of ours inherits the exec-error pipe.
    let guard = handoff::ForkGuard::acquire();
    let pending = proc::spawn_fork(&plan, daemon.then_some(parent));
    drop(guard);
    let pid = pending?.wait_exec()?;
    drop(job_fd);
    // The child has its own copies of the descriptors now; drop the args normally.
    drop(job.take());
    Ok(pid)
}

/// In a spawned child (marked by [`CHILD_ENV`]): runs the job and exits. Otherwise
/// returns at once.
pub(super) fn run_if_child() {
    let Some(value) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    // Grandchildren started with std::process::Command must not see it; ours set their own.
    std::env::remove_var(CHILD_ENV);
    let code = match value.to_str().and_then(|s| s.parse::<RawFd>().ok()) {
        None => {
            eprintln!("shmproc: {CHILD_ENV} does not name a descriptor");
            1
        }
        Some(n) => match proc::adopt_job_fd(n).and_then(proc::run_job) {
            Ok(code) => code,
            Err(e) => {
                eprintln!("shmproc: spawned child could not run its job: {e}");
                1
            }
        },
    };
    flush_stdio();
    std::process::exit(code)
}
