use std::os::fd::{AsRawFd, RawFd};

use super::*;

#[test]
fn descriptors_above_stderr_are_marked_close_on_exec() {
    let (r, w) = nix::unistd::pipe().unwrap();
    set_cloexec_for_test(r.as_raw_fd(), false);
    set_cloexec_for_test(w.as_raw_fd(), false);
    for fallback in [false, true] {
        match fork().unwrap() {
            Forked::Child => {
                if fallback {
                    cloexec_below(w.as_raw_fd().max(r.as_raw_fd()) + 1);
                } else {
                    cloexec_from_3(0);
                }
                let ok = [r.as_raw_fd(), w.as_raw_fd()].iter().all(|&fd| {
                    // SAFETY: F_GETFD on an open descriptor.
                    let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
                    flags >= 0 && flags & libc::FD_CLOEXEC != 0
                });
                exit_now(if ok { 0 } else { 3 })
            }
            Forked::Parent(pid) => {
                assert_eq!(wait_exitcode(pid, true).unwrap(), Some(0), "{fallback}")
            }
        }
    }
}

fn set_cloexec_for_test(fd: RawFd, on: bool) {
    crate::sys::set_cloexec(fd, on).unwrap();
}
