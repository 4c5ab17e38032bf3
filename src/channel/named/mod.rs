//! Unrelated processes meet by name: [`Listener::bind`], [`Listener::accept`] and
//! [`connect`] (Python's `multiprocessing.connection.Listener` and `Client`), giving a
//! duplex [`Connection`] as fast as [`duplex`](crate::duplex) — it *is* one.

use std::collections::VecDeque;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde::{de::DeserializeOwned, Serialize};

use super::{Connection, Pipe};
use crate::codec;
use crate::error::{Error, Result};
use crate::region::check_name;
use crate::sync::atomic::{AtomicU32, Ordering};
use crate::sync::handoff::{self, InheritedFd};
use crate::sync::poke::{self, Poke};
use crate::sync::waiter::Waiter;
use crate::sys::{self, deadline_after, socket};

/// The longest name: what fits in a socket address (`sun_path`, 108 bytes) after the
/// leading NUL, `shmproc/`, the largest uid and a `/`.
pub const MAX_NAME_LEN: usize = socket::MAX_ABSTRACT - "shmproc/".len() - 10 - 1;

/// How long `accept` waits for the hello of a client that connected (a shmproc client
/// sends it right after connecting, usually before `accept` runs).
const HELLO_TIMEOUT: Duration = Duration::from_secs(5);

const HELLO: &[u8; 8] = b"SHMPRCH1";
const REPLY: &[u8; 8] = b"SHMPRCR1";
const HANDLES: &[u8; 8] = b"SHMPRCF1";
const ACCEPTED: u8 = 0;
const USER_REFUSED: u8 = 1;
const BAD_HELLO: u8 = 2;
/// Handles packets kept for messages not yet received.
const MAX_KEPT: usize = 64;

fn address(uid: u32, name: &str) -> Vec<u8> {
    format!("shmproc/{uid}/{name}").into_bytes()
}

// ------------------------------------------------------------------- per-end hooks

/// What this module and `wait` add to each end of a pipe (`pipe::End`): the socket
/// of a connection made by name, and the poke registration of the ring the end writes
/// (see `sync::poke`).
pub(crate) struct EndHooks {
    side: OnceLock<Side>,
    _poke: Option<poke::Registration>,
}

impl EndHooks {
    /// Registers `poke` for the readable waiter of the ring this end writes, if any.
    pub(crate) fn new(writes: Option<(&Waiter, Arc<dyn Poke>)>) -> EndHooks {
        EndHooks {
            side: OnceLock::new(),
            _poke: writes.map(|(w, p)| poke::register(w, p)),
        }
    }

    /// The socket of a connection made by name.
    pub(crate) fn side(&self) -> Option<&Side> {
        self.side.get()
    }
}

/// The rendezvous socket a connection made by name keeps, for handles in messages.
pub(crate) struct Side {
    sock: OwnedFd,
    next_tag: AtomicU32,
    /// Handles packets read while looking for another one: (tag, descriptors).
    kept: Mutex<VecDeque<(u32, Vec<OwnedFd>)>>,
}

impl Side {
    fn new(sock: OwnedFd) -> Side {
        let start = sys::random_u128().map_or(0, |r| r as u32);
        Side {
            sock,
            next_tag: AtomicU32::new(start),
            kept: Mutex::new(VecDeque::new()),
        }
    }

    /// Encodes `msg` with its handles' descriptors numbered under a fresh tag, and sends
    /// them (waiting for room in the socket until `deadline`). `Ok(None)` when no handle
    /// passed a descriptor (the first encoding failed for another reason); else the
    /// bytes, to send through the ring now.
    pub(crate) fn send_descriptors<T: Serialize + ?Sized>(
        &self,
        msg: &T,
        deadline: Option<Instant>,
    ) -> Result<Option<Vec<u8>>> {
        let tag = self.next_tag.fetch_add(1, Ordering::Relaxed) & handoff::MAX_TAG;
        let (bytes, fds) = handoff::passing_fds_tagged(tag, || codec::encode(msg));
        if fds.is_empty() {
            return Ok(None);
        }
        let bytes = bytes?;
        let mut packet = HANDLES.to_vec();
        packet.extend_from_slice(&tag.to_le_bytes());
        packet.extend_from_slice(&(fds.len() as u32).to_le_bytes());
        send_until(self.sock.as_fd(), &packet, &fds, deadline)?;
        Ok(Some(bytes))
    }

    /// Decodes `bytes`, which failed to decode outside a hand-off: when a handle in it
    /// asked for descriptors, again with the ones its handles packet brought.
    pub(crate) fn decode<T: DeserializeOwned>(&self, bytes: &[u8]) -> Result<T> {
        handoff::clear_wanted();
        let first = codec::decode::<T>(bytes);
        let Some(tag) = handoff::take_wanted_tag() else {
            return first;
        };
        let fds = self.take_packet(tag)?;
        let received = fds
            .into_iter()
            .enumerate()
            .map(|(i, fd)| (handoff::tagged_number(tag, i), fd))
            .collect();
        handoff::adopting_received(received, || codec::decode(bytes))
    }

    /// The descriptors of the handles packet tagged `tag`: kept already, or read now
    /// (it was sent before its message, so it is there).
    fn take_packet(&self, tag: u32) -> Result<Vec<OwnedFd>> {
        let mut kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(i) = kept.iter().position(|(t, _)| *t == tag) {
            return Ok(kept.remove(i).map(|(_, f)| f).unwrap_or_default());
        }
        let missing =
            || Error::Handshake("the descriptors of a message with handles did not arrive".into());
        loop {
            let mut buf = [0u8; 64];
            let p = match socket::recv_packet(self.sock.as_fd(), &mut buf, true) {
                Ok(p) => p,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Err(missing()),
                Err(e) => return Err(e.into()),
            };
            if p.len == 0 && p.fds.is_empty() {
                return Err(missing());
            }
            let (t, n) = parse_handles(&buf[..p.len]).ok_or_else(|| {
                Error::Handshake("garbage on a connection's socket instead of descriptors".into())
            })?;
            if p.truncated || n as usize != p.fds.len() {
                // Its message cannot be decoded; the descriptors close here.
                continue;
            }
            if t == tag {
                return Ok(p.fds);
            }
            if kept.len() == MAX_KEPT {
                kept.pop_front();
            }
            kept.push_back((t, p.fds));
        }
    }
}

fn parse_handles(b: &[u8]) -> Option<(u32, u32)> {
    if b.len() != 16 || &b[..8] != HANDLES {
        return None;
    }
    let tag = u32::from_le_bytes(b[8..12].try_into().ok()?);
    let n = u32::from_le_bytes(b[12..16].try_into().ok()?);
    Some((tag, n))
}

/// Sends a packet, waiting for room until `deadline` (`None`: for ever). A peer gone
/// (`EPIPE`, `ECONNRESET`) is `Disconnected`; the deadline passing, `Timeout`.
fn send_until(
    sock: BorrowedFd<'_>,
    bytes: &[u8],
    fds: &[RawFd],
    deadline: Option<Instant>,
) -> Result<()> {
    loop {
        match socket::send_packet(sock, bytes, fds, true) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                let mut p = [socket::PollFd {
                    fd: sock.as_raw_fd(),
                    events: socket::POLLOUT,
                    revents: 0,
                }];
                if socket::poll(&mut p, deadline)? == 0 {
                    return Err(Error::Timeout);
                }
            }
            Err(e) if gone(&e) => return Err(Error::Disconnected),
            Err(e) => return Err(e.into()),
        }
    }
}

fn gone(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::BrokenPipe
            | std::io::ErrorKind::ConnectionReset
            | std::io::ErrorKind::NotConnected
    )
}

/// Waits until `sock` has a packet or `deadline` passes: `Ok(false)` on timeout.
fn readable_by(sock: BorrowedFd<'_>, deadline: Option<Instant>) -> Result<bool> {
    let mut p = [socket::PollFd {
        fd: sock.as_raw_fd(),
        events: socket::POLLIN,
        revents: 0,
    }];
    Ok(socket::poll(&mut p, deadline)? > 0)
}

// ------------------------------------------------------------------------ Listener

/// Who may connect to a listener besides its own user.
#[derive(Debug, Clone, Default)]
enum Allowed {
    #[default]
    SameUser,
    Uids(Vec<u32>),
    Anyone,
}

/// A name that unrelated processes [`connect`] to: Python's
/// `multiprocessing.connection.Listener`.
///
/// Bound in the abstract socket namespace (see below): nothing is
/// left behind however the process ends, and the next `bind` of the name works as soon
/// as the process is gone. Only processes of the same user may connect, unless the
/// [builder](Listener::builder) says otherwise.
///
/// ```
/// use shmproc::{connect, Listener};
///
/// let name = format!("doc-listener-{}", std::process::id());
/// let listener = Listener::bind(&name)?;
/// let client = std::thread::spawn(move || -> shmproc::Result<String> {
///     let conn = connect::<String>(&name)?;
///     conn.send(&"hello".to_string()).unwrap();
///     Ok(conn.recv().unwrap())
/// });
/// let conn = listener.accept::<String>()?;
/// let got = conn.recv().unwrap();
/// conn.send(&format!("{got}, world")).unwrap();
/// assert_eq!(client.join().unwrap()?, "hello, world");
/// # Ok::<(), shmproc::Error>(())
/// ```
/// # The meeting place: an abstract Unix socket
///
/// A listener is a `SOCK_SEQPACKET` Unix socket bound in Linux's *abstract namespace*
/// at `"\0shmproc/<uid>/<name>"`. An abstract address is no file: it exists exactly as
/// long as the socket, so a listener that is SIGKILLed frees its name with its last
/// descriptor and leaves nothing behind that could block the next `bind` (a socket file
/// in a 0700 directory, the other choice, stays behind after a crash; so does the
/// directory). Names are short strings, not paths, and each user has their own: the uid
/// is part of the address.
///
/// The abstract namespace has no permissions, so privacy comes from credentials the
/// kernel records at `connect` and nobody can forge (`SO_PEERCRED`): `accept` refuses a
/// client of another user ([`Error::PeerRefused`]; the client gets [`Error::Refused`])
/// unless [`ListenerBuilder::allow_uid`] or [`ListenerBuilder::allow_any_user`] widened
/// it, and `connect` refuses a listener that does not run as the expected user (someone
/// else bound the name first: [`Error::PeerRefused`]). Another user can still *take* a
/// name first (then `bind` fails with [`Error::NameInUse`]); they cannot impersonate the
/// listener.
///
/// # What crosses the socket
///
/// `connect` creates a duplex pipe (`duplex()`: two SPSC rings in one memfd, and each
/// side's presence pipe) and sends the listener's end over the socket: its bytes as the
/// handle serialization makes them for a spawned child, its descriptors (the memfd and
/// the presence pipe ends) with `SCM_RIGHTS` (see `sync::handoff`). Nothing gets a name
/// in `/dev/shm`; the ring memory goes away with the last process that maps it.
/// Disconnection is exactly that of `duplex()`: a peer that drops its end or dies
/// (SIGKILL) closes its presence pipe, and the other side sees `Disconnected`.
///
/// The packets, each one `SOCK_SEQPACKET` record:
///
/// | packet | bytes | descriptors |
/// |---|---|---|
/// | hello (client → listener) | `SHMPRCH1`, the end's serialized bytes | the end's |
/// | reply (listener → client) | `SHMPRCR1`, one code: 0 accepted, 1 user refused, 2 bad hello | none |
/// | handles (either way, later) | `SHMPRCF1`, tag (u32 LE), count (u32 LE) | a message's |
///
/// # Handles inside messages
///
/// A message over such a connection may hold shmproc handles (`Sender`, `Receiver`,
/// `Connection`, `Queue`, `JoinableQueue`, `Lock` and the other sync types, `Value`,
/// `Array`); they arrive working, as they do as a `Process`'s args. The connection keeps
/// its rendezvous socket for this. The message's bytes go through the ring as any
/// message; its descriptors go over the socket first, as a *handles* packet under a
/// 20-bit tag, and the handles in the bytes name them by tag and index (see
/// `sync::handoff`). A message without handles costs nothing more than on `duplex()`:
/// only a send whose encoding fails (a handle outside any hand-off) looks at the socket,
/// and only a receive whose decoding fails (a handle asking for its descriptors) reads
/// it. The receiver takes the packet with the tag its message names; packets it meets
/// first are kept until their message comes (a packet whose message was never sent,
/// because a `try_send` found the ring full after the packet went, is dropped once 64
/// newer ones are kept). One message carries at most 253 descriptors (`SCM_MAX_FD`).
/// `send_all` does not carry handles. A connection made by name and handed on to
/// another process (as args or in a message) carries handles no more there: the socket
/// stays with the process that connected or accepted.
///
pub struct Listener {
    /// The listening socket, registered for fork hygiene: a child forked by
    /// [`crate::Process`] closes it unless the listener moved into the child's closure (a
    /// prefork server), so the name goes with the listening process, not with its
    /// longest-lived child.
    fd: Arc<InheritedFd>,
    reg_id: u64,
    name: String,
    allowed: Allowed,
}

impl std::fmt::Debug for Listener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Listener")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// Configures a [`Listener`]: who besides its own user may connect.
#[derive(Debug, Clone, Default)]
pub struct ListenerBuilder {
    allowed: Allowed,
}

impl ListenerBuilder {
    /// Also accepts clients running as user `uid` (they connect with
    /// [`Connector::owner`] set to this listener's uid).
    pub fn allow_uid(mut self, uid: u32) -> Self {
        match &mut self.allowed {
            Allowed::SameUser => self.allowed = Allowed::Uids(vec![uid]),
            Allowed::Uids(v) => v.push(uid),
            Allowed::Anyone => {}
        }
        self
    }

    /// Accepts clients of every user. Anyone on the machine (in this network namespace)
    /// can then connect; use it only for a service meant for everyone.
    pub fn allow_any_user(mut self) -> Self {
        self.allowed = Allowed::Anyone;
        self
    }

    /// Binds the listener to `name`.
    ///
    /// # Errors
    /// [`Error::InvalidName`] for an empty name, one with `/` or NUL, or one longer than
    /// [`MAX_NAME_LEN`]; [`Error::NameInUse`] when a live listener has it.
    pub fn bind(self, name: &str) -> Result<Listener> {
        check_name(name, MAX_NAME_LEN)?;
        let _creating = handoff::creating();
        let sock = socket::seqpacket(true)?;
        match socket::bind_listen_abstract(sock.as_fd(), &address(sys::geteuid(), name), 128) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
                return Err(Error::NameInUse(name.to_string()))
            }
            Err(e) => return Err(e.into()),
        }
        let fd = Arc::new(InheritedFd::new(sock));
        let reg_id = handoff::register(fd.clone());
        Ok(Listener {
            fd,
            reg_id,
            name: name.to_string(),
            allowed: self.allowed,
        })
    }
}

impl Listener {
    /// Binds a listener to `name`, for clients of this user.
    ///
    /// # Errors
    /// As [`ListenerBuilder::bind`].
    pub fn bind(name: &str) -> Result<Listener> {
        ListenerBuilder::default().bind(name)
    }

    /// A builder, to let other users connect.
    pub fn builder() -> ListenerBuilder {
        ListenerBuilder::default()
    }

    /// The name it is bound to.
    pub fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn raw_fd(&self) -> RawFd {
        self.fd.get().map_or(-1, |fd| fd.as_raw_fd())
    }

    /// Waits for a client and returns the connection to it.
    ///
    /// # Errors
    /// A client that is refused or broke the protocol is an error for this call only;
    /// the listener goes on (call `accept` again): [`Error::PeerRefused`] for a client
    /// of a user not allowed (it gets [`Error::Refused`]), [`Error::Handshake`] for one
    /// that sent something else than a shmproc hello (within 5 s of connecting), or
    /// whose descriptors are not a shmproc channel; [`Error::Disconnected`] for one that
    /// went away before it was accepted.
    pub fn accept<T: Serialize + DeserializeOwned>(&self) -> Result<Connection<T>> {
        self.accept_by(None)
    }

    /// [`accept`](Self::accept), waiting at most `timeout` for a client to connect
    /// ([`Error::Timeout`] then). A client that connected in time gets up to 5 s more to
    /// send its hello.
    pub fn accept_timeout<T: Serialize + DeserializeOwned>(
        &self,
        timeout: Duration,
    ) -> Result<Connection<T>> {
        self.accept_by(deadline_after(timeout))
    }

    fn accept_by<T: Serialize + DeserializeOwned>(
        &self,
        deadline: Option<Instant>,
    ) -> Result<Connection<T>> {
        let fd = sys::borrow_raw_checked(self.raw_fd())
            .map_err(|_| Error::InvalidState("the listener was released in a forked child"))?;
        let sock = loop {
            match socket::accept(fd) {
                Ok(c) => break c,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    if !readable_by(fd, deadline)? {
                        return Err(Error::Timeout);
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionAborted => continue,
                Err(e) => return Err(e.into()),
            }
        };
        let (pid, uid, _) = socket::peer_cred(sock.as_fd())?;
        let allowed = uid == sys::geteuid()
            || match &self.allowed {
                Allowed::SameUser => false,
                Allowed::Uids(v) => v.contains(&uid),
                Allowed::Anyone => true,
            };
        if !allowed {
            reply(&sock, USER_REFUSED);
            return Err(Error::PeerRefused { pid, uid });
        }
        match hello::<T>(&sock) {
            Ok(conn) => {
                if !reply(&sock, ACCEPTED) {
                    // The client went away meanwhile; its end of the channel went too.
                    return Err(Error::Disconnected);
                }
                let _ = conn.end().hooks.side.set(Side::new(sock));
                Ok(conn)
            }
            Err(e) => {
                if !matches!(e, Error::Disconnected) {
                    reply(&sock, BAD_HELLO);
                }
                Err(e)
            }
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        // A listener moved into a forked child's closure stays open there (prefork).
        handoff::note_drop(self.reg_id);
        handoff::unregister_and_release(self.reg_id);
    }
}

/// Sends a reply packet; whether it went.
fn reply(sock: &OwnedFd, code: u8) -> bool {
    let mut b = REPLY.to_vec();
    b.push(code);
    socket::send_packet(sock.as_fd(), &b, &[], true).is_ok()
}

/// Reads and checks a client's hello on a just accepted socket.
fn hello<T: Serialize + DeserializeOwned>(sock: &OwnedFd) -> Result<Connection<T>> {
    let bad = |what: &str| Error::Handshake(what.to_string());
    if !readable_by(sock.as_fd(), deadline_after(HELLO_TIMEOUT))? {
        return Err(bad("the client sent no hello within 5 s"));
    }
    let mut buf = [0u8; 512];
    let p = match socket::recv_packet(sock.as_fd(), &mut buf, true) {
        Ok(p) => p,
        Err(e) if gone(&e) => return Err(Error::Disconnected),
        Err(e) => return Err(e.into()),
    };
    if p.len == 0 && p.fds.is_empty() {
        return Err(Error::Disconnected);
    }
    if p.truncated {
        return Err(bad("the hello was longer than any shmproc hello"));
    }
    let Some(wire) = buf[..p.len].strip_prefix(HELLO.as_slice()) else {
        return Err(bad("the client sent something else than a shmproc hello"));
    };
    let received = p
        .fds
        .into_iter()
        .enumerate()
        .map(|(i, fd)| (handoff::tagged_number(0, i), fd))
        .collect();
    handoff::adopting_received(received, || codec::decode::<Connection<T>>(wire))
        .map_err(|e| Error::Handshake(format!("the hello is not a shmproc channel: {e}")))
}

// ------------------------------------------------------------------------- connect

/// Connects to the [`Listener`] bound to `name` by this user, and waits until it
/// accepts: Python's `multiprocessing.connection.Client(address)`.
///
/// # Errors
/// [`Error::InvalidName`] for a name that cannot be one; [`Error::NameNotFound`] at once
/// when no listener has it; [`Error::PeerRefused`] when the listener runs as another
/// user; [`Error::Refused`] when it does not accept this user; [`Error::Disconnected`]
/// when it went away before accepting.
pub fn connect<T: Serialize + DeserializeOwned>(name: &str) -> Result<Connection<T>> {
    Connector::new(name).connect()
}

/// [`connect`], waiting at most `timeout` for the listener to accept
/// ([`Error::Timeout`]).
pub fn connect_timeout<T: Serialize + DeserializeOwned>(
    name: &str,
    timeout: Duration,
) -> Result<Connection<T>> {
    Connector::new(name).timeout(timeout).connect()
}

/// Options of a connection by name: whose listener, how long to wait, ring sizes.
#[derive(Debug, Clone)]
pub struct Connector {
    name: String,
    owner: Option<u32>,
    timeout: Option<Duration>,
    pipe: crate::PipeBuilder,
}

impl Connector {
    /// A connection to the listener bound to `name` (by this user, unless
    /// [`owner`](Self::owner) says another).
    pub fn new(name: &str) -> Connector {
        Connector {
            name: name.to_string(),
            owner: None,
            timeout: None,
            pipe: Pipe::builder(),
        }
    }

    /// Connects to the listener of user `uid` (which must allow this user, see
    /// [`ListenerBuilder::allow_uid`]), and only if it runs as `uid`.
    pub fn owner(mut self, uid: u32) -> Self {
        self.owner = Some(uid);
        self
    }

    /// Waits at most `timeout` for the listener to accept.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// The capacity of each direction's ring, in bytes (as [`PipeBuilder::capacity`](crate::PipeBuilder::capacity)).
    pub fn capacity(mut self, bytes: usize) -> Self {
        self.pipe = self.pipe.capacity(bytes);
        self
    }

    /// The largest message, in encoded bytes (as [`PipeBuilder::max_message`](crate::PipeBuilder::max_message)).
    pub fn max_message(mut self, bytes: usize) -> Self {
        self.pipe = self.pipe.max_message(bytes);
        self
    }

    /// Connects. Errors as [`connect`].
    pub fn connect<T: Serialize + DeserializeOwned>(&self) -> Result<Connection<T>> {
        check_name(&self.name, MAX_NAME_LEN)?;
        let deadline = self.timeout.and_then(deadline_after);
        let owner = self.owner.unwrap_or_else(sys::geteuid);
        // Non-blocking: every later step waits in `poll` with the deadline, and a
        // connect to a listener whose backlog is full says so (`EAGAIN`) instead of
        // blocking past it.
        let sock = socket::seqpacket(true)?;
        let addr = address(owner, &self.name);
        let mut nap = Duration::from_micros(100);
        loop {
            match socket::connect_abstract(sock.as_fd(), &addr) {
                Ok(()) => break,
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                    return Err(Error::NameNotFound(self.name.clone()))
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    // The listener is alive but has 128 clients waiting: try again.
                    if deadline.is_some_and(|d| Instant::now() + nap > d) {
                        return Err(Error::Timeout);
                    }
                    std::thread::sleep(nap);
                    nap = (nap * 2).min(Duration::from_millis(10));
                }
                Err(e) => return Err(e.into()),
            }
        }
        let (pid, uid, _) = socket::peer_cred(sock.as_fd())?;
        if uid != owner {
            return Err(Error::PeerRefused { pid, uid });
        }
        let (mine, theirs) = self.pipe.build_duplex::<T>()?;
        let (wire, fds) = handoff::passing_fds_tagged(0, || codec::encode(&theirs));
        let mut packet = HELLO.to_vec();
        packet.extend_from_slice(&wire?);
        let sent = send_until(sock.as_fd(), &packet, &fds, deadline);
        // The descriptors are in flight (or the send failed): our copy can go.
        drop(theirs);
        match sent {
            Ok(()) => {
                if !readable_by(sock.as_fd(), deadline)? {
                    return Err(Error::Timeout);
                }
            }
            // A listener that refuses this user replies and closes without reading the
            // hello, maybe before it went: its reply may be waiting all the same.
            Err(Error::Disconnected) => {}
            Err(e) => return Err(e),
        }
        match read_reply(&sock)? {
            Some(ACCEPTED) => {
                let _ = mine.end().hooks.side.set(Side::new(sock));
                Ok(mine)
            }
            Some(USER_REFUSED) => Err(Error::Refused),
            Some(BAD_HELLO) => Err(Error::Handshake(
                "the listener could not use this client's hello".into(),
            )),
            Some(_) => Err(Error::Handshake(
                "the listener sent something else than a shmproc reply".into(),
            )),
            None => Err(Error::Disconnected),
        }
    }
}

/// Reads the listener's reply, if one is there: its code (`u8::MAX` for something that
/// is no reply). The kernel reports a reset (the listener closed with our hello unread)
/// before the packets queued ahead of it: look past it once.
fn read_reply(sock: &OwnedFd) -> Result<Option<u8>> {
    for _ in 0..2 {
        let mut buf = [0u8; 16];
        match socket::recv_packet(sock.as_fd(), &mut buf, true) {
            Ok(p) if p.len == 0 && p.fds.is_empty() => return Ok(None),
            Ok(p) => {
                return Ok(Some(match buf[..p.len].strip_prefix(REPLY.as_slice()) {
                    Some(&[code]) => code,
                    _ => u8::MAX,
                }))
            }
            Err(e) if gone(&e) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(None),
            Err(e) => return Err(e.into()),
        }
    }
    Ok(None)
}

impl<T> Connection<T> {
    /// Whether this connection was made by name ([`Listener::accept`] or [`connect`]),
    /// so that messages over it may carry handles.
    pub fn is_named(&self) -> bool {
        self.end().hooks.side().is_some()
    }
}

#[cfg(test)]
mod tests;
