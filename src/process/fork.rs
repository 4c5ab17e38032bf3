//! The fork start method: the child is a copy of the parent and runs the job from
//! memory; nothing is serialized.

use std::time::Duration;

use crate::error::{Error, Result};
use crate::sync::handoff;
use crate::sys;
use crate::sys::proc::{self, Forked};

use super::{exit_child, run_catching, Job};

/// How long a forked child waits for the parent to send the hand-off ids. The parent
/// writes them right after `fork` returns, so this only bounds a stopped parent.
const IDS_TIMEOUT: Duration = Duration::from_secs(60);
/// More ids than any real argument list holds: a larger count is a corrupt message.
const MAX_IDS: u64 = 1 << 24;

/// Forks a child that runs `job`. In the parent, drops the parent's copy of the job
/// (recording which shared handles it held) and returns the child's pid; in the child,
/// never returns.
pub(super) fn start(job: &mut Option<Box<dyn Job>>, daemon: bool) -> Result<u32> {
    if job.is_none() {
        return Err(Error::InvalidState("the process has nothing to run"));
    }
    let parent = sys::getpid();
    // The hand-off registry (and the creation lock) is the only lock held across fork:
    // the child never finds it held by a thread that does not exist there, and our other
    // forks cannot inherit the pipe below. std's stdout and stderr locks are NOT taken:
    // std has no `try_lock` for them, so taking them would block this thread for ever
    // whenever another thread holds one (a `stdout().lock()` kept while it waits for this
    // start, or for a pool that forks on its own threads). The child copes instead: its
    // own messages go straight to fd 2 and its exit flush never waits for ever
    // (`flush_stdio`); the `Process` docs say what that leaves to the job.
    let guard = handoff::ForkGuard::acquire();
    let (ids_r, ids_w) = match sys::pipe() {
        Ok(p) => p,
        Err(e) => {
            drop(guard);
            return Err(e.into());
        }
    };
    match proc::fork() {
        Err(e) => {
            drop(guard);
            Err(e.into())
        }
        Ok(Forked::Child) => {
            if daemon {
                proc::die_with_parent(parent);
            }
            proc::reset_child_signals();
            drop(ids_w);
            let ids = match read_ids(&ids_r) {
                Ok(ids) => ids,
                Err(e) => {
                    proc::write_stderr(&format!(
                        "shmproc: forked child could not receive its hand-off from the parent: {e}\n"
                    ));
                    proc::exit_now(1)
                }
            };
            drop(ids_r);
            // Inherited ends that the child was not handed stop keeping channels open.
            guard.release_inherited_except(&ids);
            let code = match job.take() {
                Some(job) => run_catching(move || job.run()),
                None => 0,
            };
            exit_child(code)
        }
        Ok(Forked::Parent(pid)) => {
            drop(guard);
            drop(ids_r);
            // As Python's start() deletes _args: the child owns what it was handed.
            let ids = handoff::record_drops(job.take());
            let mut msg = Vec::with_capacity(8 * (ids.len() + 1));
            msg.extend_from_slice(&(ids.len() as u64).to_le_bytes());
            for id in &ids {
                msg.extend_from_slice(&id.to_le_bytes());
            }
            // A write error means the child is already gone; its exit code tells the rest.
            let _ = proc::write_all(&ids_w, &msg);
            Ok(pid)
        }
    }
}

/// Reads the count-prefixed id list. Not "until EOF": another child forked meanwhile by
/// code outside shmproc may hold a copy of the write end.
fn read_ids(fd: &std::os::fd::OwnedFd) -> std::io::Result<Vec<u64>> {
    let mut n = [0u8; 8];
    proc::read_exact_timeout(fd, &mut n, IDS_TIMEOUT)?;
    let n = u64::from_le_bytes(n);
    if n > MAX_IDS {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "bad id count",
        ));
    }
    let mut buf = vec![0u8; n as usize * 8];
    proc::read_exact_timeout(fd, &mut buf, IDS_TIMEOUT)?;
    Ok(buf
        .chunks_exact(8)
        .map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes")))
        .collect())
}
