//! Unix sockets for the rendezvous of unrelated processes (`channel::named`): a
//! `SOCK_SEQPACKET` socket bound in the abstract namespace, descriptors passed with
//! `SCM_RIGHTS`, the peer's credentials with `SO_PEERCRED`; plus the few file calls that
//! named shared memory and `wait` need (`poll` over many descriptors, `flock`, pokes).

use std::io;
use std::mem::{size_of, MaybeUninit};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::time::Instant;

use super::cvt;

/// Longest abstract address (the bytes after the leading NUL of `sun_path`).
pub(crate) const MAX_ABSTRACT: usize = 107;

/// Most descriptors one `SCM_RIGHTS` message may carry (the kernel's `SCM_MAX_FD`).
pub(crate) const MAX_FDS: usize = 253;

fn abstract_addr(name: &[u8]) -> io::Result<(libc::sockaddr_un, libc::socklen_t)> {
    if name.len() > MAX_ABSTRACT {
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    }
    // SAFETY: sockaddr_un is plain old data; all zeroes is a valid value.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    // sun_path[0] stays 0: the abstract namespace.
    for (dst, src) in addr.sun_path[1..].iter_mut().zip(name) {
        *dst = *src as libc::c_char;
    }
    let len = size_of::<libc::sa_family_t>() + 1 + name.len();
    Ok((addr, len as libc::socklen_t))
}

/// A new `AF_UNIX` `SOCK_SEQPACKET` socket, close-on-exec, non-blocking when asked.
pub(crate) fn seqpacket(nonblocking: bool) -> io::Result<OwnedFd> {
    let mut ty = libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC;
    if nonblocking {
        ty |= libc::SOCK_NONBLOCK;
    }
    // SAFETY: plain syscall with integer arguments.
    let fd = cvt(unsafe { libc::socket(libc::AF_UNIX, ty, 0) })?;
    // SAFETY: the kernel just returned this fd to us; nobody else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Binds `fd` to the abstract address `name` (no file is created; the name is freed
/// when the socket closes, even by SIGKILL) and listens. `EADDRINUSE` when a live socket
/// holds the name.
pub(crate) fn bind_listen_abstract(
    fd: BorrowedFd<'_>,
    name: &[u8],
    backlog: i32,
) -> io::Result<()> {
    let (addr, len) = abstract_addr(name)?;
    // SAFETY: `addr` is a valid sockaddr_un of `len` bytes, alive for the call.
    cvt(unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&addr as *const libc::sockaddr_un).cast(),
            len,
        )
    })?;
    // SAFETY: plain syscall on a valid fd.
    cvt(unsafe { libc::listen(fd.as_raw_fd(), backlog) }).map(drop)
}

/// Connects a socket to the abstract address `name`. `ECONNREFUSED` when nobody listens
/// there; `EAGAIN` on a non-blocking socket when the listener's backlog is full (a Unix
/// socket connects at once otherwise, never `EINPROGRESS`).
pub(crate) fn connect_abstract(fd: BorrowedFd<'_>, name: &[u8]) -> io::Result<()> {
    let (addr, len) = abstract_addr(name)?;
    loop {
        // SAFETY: `addr` is a valid sockaddr_un of `len` bytes, alive for the call.
        let res = unsafe {
            libc::connect(
                fd.as_raw_fd(),
                (&addr as *const libc::sockaddr_un).cast(),
                len,
            )
        };
        match cvt(res) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other.map(drop),
        }
    }
}

/// `accept4(SOCK_CLOEXEC)` on a listening socket: the connection, close-on-exec and
/// blocking. `WouldBlock` when none is pending (the listener is non-blocking).
pub(crate) fn accept(fd: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    loop {
        // SAFETY: null address pointers: we do not ask for the peer's address.
        let res = unsafe {
            libc::accept4(
                fd.as_raw_fd(),
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                libc::SOCK_CLOEXEC,
            )
        };
        match cvt(res) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            // SAFETY: the kernel just returned this fd to us.
            Ok(c) => return Ok(unsafe { OwnedFd::from_raw_fd(c) }),
            Err(e) => return Err(e),
        }
    }
}

/// The credentials the kernel recorded for the other end of a connected Unix socket
/// when it connected (or listened): `(pid, uid, gid)`. They cannot be forged.
pub(crate) fn peer_cred(fd: BorrowedFd<'_>) -> io::Result<(u32, u32, u32)> {
    let mut cred = MaybeUninit::<libc::ucred>::zeroed();
    let mut len = size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: `cred` has room for a ucred and `len` says so; the kernel writes at most that.
    cvt(unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            cred.as_mut_ptr().cast(),
            &mut len,
        )
    })?;
    if len as usize != size_of::<libc::ucred>() {
        return Err(io::Error::from(io::ErrorKind::InvalidData));
    }
    // SAFETY: zero-initialised, then filled by the kernel; every bit pattern is valid.
    let cred = unsafe { cred.assume_init() };
    Ok((cred.pid as u32, cred.uid, cred.gid))
}

/// Room for the control message of [`MAX_FDS`] descriptors, aligned as `cmsghdr`.
#[repr(C)]
struct CmsgBuf {
    _align: [libc::cmsghdr; 0],
    bytes: [u8; 1088],
}

const _: () = assert!(
    // CMSG_SPACE(MAX_FDS * 4) on 64-bit Linux: 16-byte header + 1012 bytes, rounded to 8.
    16 + MAX_FDS * 4 + 8 <= 1088
);

/// Sends `bytes` as one packet with `fds` attached (`SCM_RIGHTS`), without `SIGPIPE`.
/// Non-blocking when `nonblocking` (`WouldBlock` when the peer's queue is full).
pub(crate) fn send_packet(
    fd: BorrowedFd<'_>,
    bytes: &[u8],
    fds: &[RawFd],
    nonblocking: bool,
) -> io::Result<()> {
    if fds.len() > MAX_FDS {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "more than 253 descriptors in one message",
        ));
    }
    let mut iov = libc::iovec {
        iov_base: bytes.as_ptr() as *mut libc::c_void,
        iov_len: bytes.len(),
    };
    let mut cbuf = CmsgBuf {
        _align: [],
        bytes: [0; 1088],
    };
    // SAFETY: msghdr is plain old data; all zeroes is a valid (empty) value.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    if !fds.is_empty() {
        let data_len = std::mem::size_of_val(fds) as u32;
        // SAFETY: CMSG_SPACE is a pure computation.
        let space = unsafe { libc::CMSG_SPACE(data_len) } as usize;
        msg.msg_control = cbuf.bytes.as_mut_ptr().cast();
        msg.msg_controllen = space as _;
        // SAFETY: msg_control points to `space` <= 1088 zeroed, cmsghdr-aligned bytes,
        // so CMSG_FIRSTHDR returns a header inside them, and CMSG_DATA of it has room for
        // `data_len` bytes (that is what CMSG_SPACE(data_len) reserved).
        unsafe {
            let c = libc::CMSG_FIRSTHDR(&msg);
            (*c).cmsg_level = libc::SOL_SOCKET;
            (*c).cmsg_type = libc::SCM_RIGHTS;
            (*c).cmsg_len = libc::CMSG_LEN(data_len) as _;
            std::ptr::copy_nonoverlapping(
                fds.as_ptr().cast::<u8>(),
                libc::CMSG_DATA(c),
                data_len as usize,
            );
        }
    }
    let flags = libc::MSG_NOSIGNAL | if nonblocking { libc::MSG_DONTWAIT } else { 0 };
    loop {
        // SAFETY: `msg` points to `iov` (over `bytes`) and `cbuf`, all alive for the call.
        let n = unsafe { libc::sendmsg(fd.as_raw_fd(), &msg, flags) };
        if n >= 0 {
            // SEQPACKET sends a packet whole or not at all.
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// One received packet.
pub(crate) struct Packet {
    /// The packet's bytes (at most the buffer's length).
    pub(crate) len: usize,
    /// The descriptors that came with it (close-on-exec).
    pub(crate) fds: Vec<OwnedFd>,
    /// The packet was longer than the buffer, or had more descriptors than fit: the
    /// rest is lost (and any descriptor past the room closed by the kernel).
    pub(crate) truncated: bool,
}

/// Receives one packet into `buf`, with its descriptors (`MSG_CMSG_CLOEXEC`). A packet
/// of length 0 with no descriptors is end-of-file (the peer closed). Non-blocking when
/// `nonblocking`.
pub(crate) fn recv_packet(
    fd: BorrowedFd<'_>,
    buf: &mut [u8],
    nonblocking: bool,
) -> io::Result<Packet> {
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    let mut cbuf = CmsgBuf {
        _align: [],
        bytes: [0; 1088],
    };
    // SAFETY: msghdr is plain old data; all zeroes is a valid (empty) value.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cbuf.bytes.as_mut_ptr().cast();
    msg.msg_controllen = cbuf.bytes.len() as _;
    let flags = libc::MSG_CMSG_CLOEXEC | if nonblocking { libc::MSG_DONTWAIT } else { 0 };
    let n = loop {
        // SAFETY: `msg` points to `iov` (over `buf`) and `cbuf`, alive for the call; the
        // kernel writes at most their lengths.
        let n = unsafe { libc::recvmsg(fd.as_raw_fd(), &mut msg, flags) };
        if n >= 0 {
            break n as usize;
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    };
    let mut fds = Vec::new();
    // SAFETY: the kernel filled msg_control with `msg_controllen` bytes of well-formed
    // control messages; CMSG_FIRSTHDR/CMSG_NXTHDR walk only inside them.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_RIGHTS {
                let data = libc::CMSG_DATA(c);
                let bytes = (*c).cmsg_len as usize - (data as usize - c as usize);
                for i in 0..bytes / size_of::<RawFd>() {
                    let raw = data
                        .add(i * size_of::<RawFd>())
                        .cast::<RawFd>()
                        .read_unaligned();
                    // The kernel installed these descriptors in this process for us.
                    fds.push(OwnedFd::from_raw_fd(raw));
                }
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
    }
    let truncated = msg.msg_flags & (libc::MSG_TRUNC | libc::MSG_CTRUNC) != 0;
    Ok(Packet {
        len: n,
        fds,
        truncated,
    })
}

/// One descriptor to [`poll`]: what to watch for and, after the call, what happened.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PollFd {
    pub(crate) fd: RawFd,
    pub(crate) events: i16,
    pub(crate) revents: i16,
}

/// `POLLIN`: readable (data, a pending connection, an exited pidfd).
pub(crate) const POLLIN: i16 = libc::POLLIN;
/// `POLLOUT`: writable (room in a socket's or pipe's buffer).
pub(crate) const POLLOUT: i16 = libc::POLLOUT;

/// `ppoll` over `fds` until one is ready or `deadline` (`None`: no deadline) passes.
/// Returns how many are ready (0 at the deadline); retries on `EINTR`.
pub(crate) fn poll(fds: &mut [PollFd], deadline: Option<Instant>) -> io::Result<usize> {
    let mut raw: Vec<libc::pollfd> = fds
        .iter()
        .map(|p| libc::pollfd {
            fd: p.fd,
            events: p.events,
            revents: 0,
        })
        .collect();
    loop {
        let ts = deadline.map(super::timespec_left);
        let ts_ptr = ts
            .as_ref()
            .map_or(std::ptr::null(), |t| t as *const libc::timespec);
        // SAFETY: `raw` holds `raw.len()` valid pollfds; `ts_ptr` is null or points to
        // `ts`, alive for the call; a null signal mask leaves the mask unchanged.
        let n = unsafe {
            libc::ppoll(
                raw.as_mut_ptr(),
                raw.len() as libc::nfds_t,
                ts_ptr,
                std::ptr::null(),
            )
        };
        if n >= 0 {
            for (p, r) in fds.iter_mut().zip(&raw) {
                p.revents = r.revents;
            }
            return Ok(n as usize);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Whether `fd` is readable now (`POLLIN`, or hung up).
pub(crate) fn readable_now(fd: BorrowedFd<'_>) -> bool {
    let mut p = [PollFd {
        fd: fd.as_raw_fd(),
        events: POLLIN,
        revents: 0,
    }];
    matches!(poll(&mut p, Some(Instant::now())), Ok(n) if n > 0)
        && p[0].revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0
}

/// Writes one byte to a non-blocking pipe, ignoring a full pipe (then the reader has
/// bytes to see already) and every other error (a poke is a hint).
pub(crate) fn poke(fd: RawFd) {
    if fd < 0 {
        return;
    }
    let b = 1u8;
    // SAFETY: a one-byte write from a live local; an fd number that is not open gives EBADF.
    let _ = unsafe { libc::write(fd, (&b as *const u8).cast(), 1) };
}

/// Reads and discards whatever a non-blocking pipe holds.
pub(crate) fn drain(fd: BorrowedFd<'_>) {
    let mut buf = [0u8; 256];
    loop {
        // SAFETY: reads at most `buf.len()` bytes into `buf`.
        let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n < buf.len() as isize {
            if n == -1 && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return;
        }
    }
}

/// `pipe2(O_CLOEXEC | O_NONBLOCK)`: (read end, write end). For pipes nobody reads or
/// writes blocking: presence pipes (polled for hang-up, poked by [`poke`]).
pub(crate) fn pipe_nonblocking() -> io::Result<(OwnedFd, OwnedFd)> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC | nix::fcntl::OFlag::O_NONBLOCK)
        .map_err(io::Error::from)
}

/// `flock(LOCK_EX | LOCK_NB)`: `Ok(true)` when taken, `Ok(false)` when another open
/// file description holds a lock on the file.
pub(crate) fn try_lock_exclusive(fd: BorrowedFd<'_>) -> io::Result<bool> {
    loop {
        // SAFETY: plain syscall on a valid fd.
        let res = unsafe { libc::flock(fd.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        match cvt(res) {
            Ok(_) => return Ok(true),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
}

/// `fchmod(fd, mode)`.
pub(crate) fn fchmod(fd: BorrowedFd<'_>, mode: u32) -> io::Result<()> {
    // SAFETY: plain syscall on a valid fd.
    cvt(unsafe { libc::fchmod(fd.as_raw_fd(), mode as libc::mode_t) }).map(drop)
}
