//! The spawn job: what a parent writes for a child it re-executes (the format and its
//! parser), and the checks that make the child trust it (the parent-provenance check and
//! the acknowledgement the parent's `start()` waits for).
//!
//! # Trusting a job
//!
//! A job's fields are public information (the executable's `stat`, its symbol table), so
//! the child trusts a job for where it came from, not for what it says: before `main`
//! ([`super::boot`], from an `.init_array` constructor) it checks that its parent process
//! runs this same executable image and is still its parent ([`check_parent`]), and only
//! then acknowledges the job on a pipe the parent's `start()` waits on. In a
//! secure-execution process (`AT_SECURE`: setuid, setgid, file capabilities) it does not
//! read the job at all. The entry point it names is relocated and called by
//! [`crate::sys::reloc`], under the contract of [`EntryPoint::from_offsets`].

use std::ffi::OsStr;
use std::io::{self, Write};
use std::os::fd::{AsFd, OwnedFd, RawFd};
use std::os::unix::fs::FileExt;
use std::time::Duration;

use crate::sys;
use crate::sys::exec::{image_id, ImageId};
use crate::sys::proc::{getppid, read_exact_timeout};
use crate::sys::reloc::{fnv1a, EntryPoint, Offsets, RelocError};

#[cfg(all(test, not(loom)))]
mod tests;

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
    let entry = entry.offsets();
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
    let fd = sys::memfd_create(c"shmproc-job")?;
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

impl From<RelocError> for JobError {
    fn from(e: RelocError) -> JobError {
        match e {
            RelocError::OutsideImage => JobError::Malformed("entry point outside the executable"),
            RelocError::TypeMismatch => JobError::TypeMismatch,
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
    let entry = EntryPoint::from_offsets(Offsets {
        trampoline: c.i64()?,
        target: c.i64()?,
        fingerprint: c.u64()?,
    });
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
    if n < 3 || !sys::fd_is_open(n) {
        return Err(JobError::Malformed(what));
    }
    sys::own_inherited(n).map_err(JobError::Io)
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
    if sys::peer_state(fd.as_fd()) == sys::PeerState::Gone {
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
///
/// Only for a job that passed [`accept`] (or, in the tests, that this process wrote):
/// that is the contract of [`EntryPoint::from_offsets`], which [`parse_job`] used.
pub(crate) fn run_job(job: Job) -> Result<i32, JobError> {
    Ok(job.entry.run(&job.args, &job.fds)?)
}

/// The bootstrap's work on the value of `SHMPROC_CHILD`: reads the job in the descriptor
/// it names, checks it ([`read_job`], [`check_parent`]) and acknowledges it to the
/// waiting parent.
pub(crate) fn accept(value: &OsStr) -> Result<Job, JobError> {
    value
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
                    let _ = sys::set_cloexec(fd, true);
                }
            }
            check_parent(&job)?;
            acknowledge(job.ack)?;
            Ok(job)
        })
}
