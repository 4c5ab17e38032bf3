use std::cell::Cell;
use std::io::Write;
use std::os::fd::{IntoRawFd, OwnedFd, RawFd};
use std::os::unix::fs::FileExt;

use super::*;
use crate::sys::proc::{exit_now, fork, wait_exitcode, Forked};
use crate::sys::reloc::tests::{plus_one, wide_target, Echo, WIDE_RAN};

fn job_of(entry: &EntryPoint, fds: &[RawFd], args: &[u8]) -> Vec<u8> {
    job_bytes(entry, 9, fds, args).unwrap()
}

#[test]
fn job_round_trips_and_runs() {
    let entry = EntryPoint::new::<u32, u32, Echo>(plus_one).unwrap();
    let job = parse_job(&job_of(&entry, &[], &41u32.to_le_bytes())).unwrap();
    assert_eq!(job.ack, 9);
    assert_eq!(run_job(job).unwrap(), 42);
}

#[test]
fn a_job_pairing_a_target_with_another_types_trampoline_is_refused() {
    let entry =
        EntryPoint::mismatched::<u32, u32, Echo, (u64, u64, u64), u32>(wide_target).unwrap();
    let job = parse_job(&job_of(&entry, &[], &41u32.to_le_bytes())).unwrap();
    assert!(matches!(run_job(job), Err(JobError::TypeMismatch)));
    assert!(!WIDE_RAN.with(Cell::get));
}

#[test]
fn corrupt_or_foreign_jobs_are_refused() {
    let entry = EntryPoint::new::<u32, u32, Echo>(plus_one).unwrap();
    let fd = write_job(&entry, 9, &[7], &41u32.to_le_bytes()).unwrap();
    let file = std::fs::File::from(fd);
    let mut bytes = vec![0u8; file.metadata().unwrap().len() as usize];
    file.read_exact_at(&mut bytes, 0).unwrap();
    let job = parse_job(&bytes).unwrap();
    assert_eq!(job.fds, vec![7]);
    assert_eq!(job.entry, entry);
    // Any flipped byte is caught by the checksum (or the length checks).
    for i in 0..bytes.len() {
        let mut b = bytes.clone();
        b[i] ^= 0x40;
        assert!(parse_job(&b).is_err(), "byte {i}");
    }
    assert!(parse_job(&bytes[..bytes.len() - 1]).is_err());
    // A job from another executable is refused before anything runs.
    let mut other = bytes[..bytes.len() - 8].to_vec();
    other[12] ^= 1; // device id
    let sum = fnv1a(&other);
    other.extend_from_slice(&sum.to_le_bytes());
    let mut mfd = std::fs::File::from(crate::sys::memfd_create(c"t").unwrap());
    mfd.write_all(&other).unwrap();
    let n = OwnedFd::from(mfd).into_raw_fd();
    assert!(matches!(read_job(n), Err(JobError::OtherExecutable)));
    assert!(
        !crate::sys::fd_is_open(n),
        "read_job owns and closes the descriptor"
    );
    assert!(matches!(read_job(1), Err(JobError::Malformed(_))));
}

#[test]
fn only_a_parent_running_this_executable_is_trusted() {
    let entry = EntryPoint::new::<u32, u32, Echo>(plus_one).unwrap();
    let job = parse_job(&job_of(&entry, &[], &[])).unwrap();
    // This test binary's parent is cargo (or a shell): not this executable.
    match check_parent(&job) {
        Err(JobError::Untrusted(why)) => assert!(why.contains("not this executable"), "{why}"),
        other => panic!("{other:?}"),
    }
    // A forked child's parent is this process: trusted.
    match fork().unwrap() {
        Forked::Child => exit_now(if check_parent(&job).is_ok() { 0 } else { 3 }),
        Forked::Parent(pid) => assert_eq!(wait_exitcode(pid, true).unwrap(), Some(0)),
    }
}
