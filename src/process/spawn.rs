//! The spawn start method: fork + `execve` of the current binary; the child finds its
//! job through [`init`](super::init).

use std::ffi::OsString;
use std::os::fd::{AsRawFd, RawFd};
use std::time::Duration;

use serde::{de::DeserializeOwned, Serialize};

use crate::error::{Error, Result};
use crate::sync::handoff;
use crate::sys;
use crate::sys::exec::{self, ExecPlan};
use crate::sys::proc;
use crate::sys::reloc::Runner;

use super::boot::{self, Boot, CHILD_ENV};
use super::job::{run_job, wait_ack, write_job, Ack};
use super::{flush_stdio, run_catching, Job};

/// How long `start()` waits for a spawned child to load and accept its job.
const ACK_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs a target in a spawned child: decodes its args (adopting the passed descriptors),
/// calls it, catches a panic.
pub(super) struct SpawnRunner;

impl<A: DeserializeOwned, R> Runner<A, R> for SpawnRunner {
    fn run(target: fn(A) -> R, args: &[u8], fds: &[RawFd]) -> i32 {
        match decode_in_child::<A>(args, fds) {
            Ok(args) => run_catching(move || drop(target(args))),
            Err(e) => {
                eprintln!("shmproc: spawned child could not decode its arguments: {e}");
                1
            }
        }
    }
}

/// Serializes `args` for a spawned child. Returns the bytes and the descriptors the child
/// must inherit (clear `FD_CLOEXEC` on them between fork and exec).
pub(super) fn encode_for_spawn<A: Serialize>(args: &A) -> Result<(Vec<u8>, Vec<RawFd>)> {
    let (res, fds) = handoff::passing_fds(|| postcard::to_stdvec(args));
    let bytes = res.map_err(|e| match e {
        postcard::Error::SerdeSerCustom => {
            Error::Handle("a handle could not be passed to the child")
        }
        e => Error::Codec(e.to_string()),
    })?;
    Ok((bytes, fds))
}

/// Decodes args in a spawned child; `inherited` lists the descriptors the parent passed.
fn decode_in_child<A: DeserializeOwned>(bytes: &[u8], inherited: &[RawFd]) -> Result<A> {
    handoff::adopting_fds(inherited, || postcard::from_bytes(bytes))
        .map_err(|e| Error::Codec(format!("decoding process arguments: {e}")))
}

/// Whether this process is a spawned child whose `main` has not called `init()` yet.
pub(super) fn uninitialised_child() -> bool {
    boot::uninitialised_child()
}

/// Why spawn is refused in a secure-execution process.
const SECURE_REFUSAL: &str = "spawn is refused in a secure-execution process (setuid, setgid or \
    file capabilities: AT_SECURE); a re-executed child could not trust its job there. Use \
    StartMethod::Fork";

/// Spawns a child that runs `job`: encodes it (the args are serialized, their shared
/// handles' descriptors listed), writes it to a memfd, forks and re-executes this binary,
/// and waits until the child has checked and accepted the job (it acknowledges on a pipe
/// passed in the job). Returns the child's pid; then drops the parent's copy of the args.
pub(super) fn start(job: &mut Option<Box<dyn Job>>, daemon: bool) -> Result<u32> {
    if exec::secure_execution() {
        return Err(Error::Spawn(SECURE_REFUSAL.into()));
    }
    let parts = job
        .as_ref()
        .ok_or(Error::InvalidState("the process has nothing to run"))?;
    let (entry, bytes, fds) = parts.spawn_parts()?;
    // Held from here across fork so that no other child of ours inherits the
    // acknowledgement pipe's write end (which must close when this child exits) or the
    // exec-error pipe.
    let guard = handoff::ForkGuard::acquire();
    let (ack_r, ack_w) = sys::pipe()?;
    let job_fd = write_job(&entry, ack_w.as_raw_fd(), &fds, &bytes)?;
    let mut keep = fds;
    keep.push(job_fd.as_raw_fd());
    keep.push(ack_w.as_raw_fd());

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
    let pending = exec::spawn_fork(&plan, daemon.then_some(parent));
    drop(ack_w);
    drop(guard);
    let pid = pending?.wait_exec()?;
    drop(job_fd);
    match wait_ack(&ack_r, ACK_TIMEOUT) {
        Ok(Ack::Accepted) => {}
        outcome => {
            // The child has not run its target and never will: end it, report why.
            let timed_out = matches!(outcome, Ok(Ack::TimedOut));
            if !matches!(outcome, Ok(Ack::Gone)) {
                let _ = proc::send_signal(pid, proc::Signal::Kill);
            }
            let code = proc::wait_exitcode(pid, true).ok().flatten();
            outcome?;
            return Err(Error::Spawn(if timed_out {
                format!(
                    "the spawned child {pid} did not accept its job within {ACK_TIMEOUT:?}; it was killed"
                )
            } else {
                format!(
                    "the spawned child {pid} exited (exit code {}) before accepting its job; its stderr says why",
                    code.map_or("unknown".to_string(), |c| c.to_string())
                )
            }));
        }
    }
    // The child has its own copies of the descriptors now; drop the args normally.
    drop(job.take());
    Ok(pid)
}

/// In a spawned child (marked by [`CHILD_ENV`]): runs the job the bootstrap accepted and
/// exits. Otherwise returns at once; in a secure-execution process it ignores the job.
pub(super) fn run_if_child() {
    let job = match boot::take_boot() {
        Boot::NotChild => return,
        Boot::Secure => {
            eprintln!(
                "shmproc: ignoring {CHILD_ENV}: this process runs in secure-execution mode \
                 (setuid, setgid or file capabilities), where spawn jobs are not trusted"
            );
            return;
        }
        Boot::Job(job) => job,
    };
    let code = match run_job(job) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("shmproc: spawned child refused its job: {e}");
            1
        }
    };
    flush_stdio();
    std::process::exit(code)
}
