//! `eventfd`: the wake-up descriptors of async waiters (`sync::notify_fd`).

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use super::cvt;

/// `eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK | EFD_SEMAPHORE)`: each read takes one unit
/// of the counter, so one wake-up of `n` units lets `n` waiters each take one.
pub(crate) fn eventfd() -> io::Result<OwnedFd> {
    let flags = libc::EFD_CLOEXEC | libc::EFD_NONBLOCK | libc::EFD_SEMAPHORE;
    // SAFETY: integer arguments only.
    let fd = cvt(unsafe { libc::eventfd(0, flags) })?;
    // SAFETY: the kernel just returned this descriptor to us; nobody else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Adds `n` units to an eventfd's counter (waking whoever polls it). A counter that
/// would overflow (`EAGAIN`: nobody has read for 2^64 wake-ups) is left as it is: it is
/// readable already.
pub(crate) fn eventfd_add(fd: BorrowedFd<'_>, n: u64) {
    let buf = n.to_ne_bytes();
    loop {
        // SAFETY: `buf` is 8 valid bytes for the duration of the call.
        let res = unsafe { libc::write(fd.as_raw_fd(), buf.as_ptr().cast(), 8) };
        if res == -1 && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
            continue;
        }
        return;
    }
}

/// Takes one unit from an eventfd's counter without blocking: `false` when it was zero.
pub(crate) fn eventfd_take(fd: BorrowedFd<'_>) -> bool {
    let mut buf = [0u8; 8];
    loop {
        // SAFETY: `buf` is 8 writable bytes for the duration of the call.
        let res = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), 8) };
        if res == -1 && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
            continue;
        }
        return res == 8;
    }
}
