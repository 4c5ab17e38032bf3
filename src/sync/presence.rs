//! Presence: whether the other side of a two-sided object (the writers and the readers
//! of a pipe) still has an end in any process, in a way that survives `kill -9`.
//!
//! Each side owns a tiny OS pipe as its presence: every process holding an end of that
//! side keeps a write end of it (its *token*); the other side keeps the read end (its
//! *watch*). When the last token closes (the end dropped, or its process killed) the
//! kernel reports POLLHUP on the watch. Asking is a system call (`poll`), so callers
//! ask only before parking and on rare checks, never on a hot path.
//!
//! A [`Presence`] is one process's pair of descriptors for one side. It registers with
//! the hand-off registry as [`Inherited`]: a forked child that was not handed the end
//! releases it, so an end it merely inherited does not keep the other side waiting.

use std::io;
use std::os::fd::{BorrowedFd, OwnedFd};

use crate::sync::handoff::Inherited;
use crate::sys::{self, FdCell, PeerState};

/// One process's presence on one side of a two-sided object: the write end of its
/// side's presence pipe (its token) and the read end of the other side's (its watch).
#[derive(Debug)]
pub(crate) struct Presence {
    token: FdCell,
    watch: FdCell,
}

impl Presence {
    /// The presences of the two sides of a new object, crossed: each holds its own
    /// side's token and watches the other's.
    pub(crate) fn pair() -> io::Result<(Presence, Presence)> {
        // Non-blocking: a writer pokes a `wait()` by writing a byte into its token
        // (see `sync::poke`), which must never block on a full pipe.
        let (watch_0, token_0) = sys::socket::pipe_nonblocking()?; // side 0's presence
        let (watch_1, token_1) = sys::socket::pipe_nonblocking()?; // side 1's presence
        Ok((
            Presence::from_fds(token_0, watch_1),
            Presence::from_fds(token_1, watch_0),
        ))
    }

    /// A presence from descriptors handed over by another process (see [`fds`](Self::fds)).
    pub(crate) fn from_fds(token: OwnedFd, watch: OwnedFd) -> Presence {
        Presence {
            token: FdCell::new(token),
            watch: FdCell::new(watch),
        }
    }

    /// Whether every end of the other side is gone (its last token closed). A released
    /// presence (in a forked child that was not handed the end) counts as gone. A
    /// system call: for slow paths only.
    pub(crate) fn peer_gone(&self) -> bool {
        self.watch
            .get()
            .is_none_or(|fd| sys::peer_state(fd) == PeerState::Gone)
    }

    /// Whether this presence was released (a forked child that was not handed the end):
    /// then [`Presence::peer_gone`] says gone for this process only.
    pub(crate) fn released(&self) -> bool {
        self.watch.get().is_none()
    }

    /// The token and the watch, to hand to a spawned child; `None` once released.
    pub(crate) fn fds(&self) -> Option<(BorrowedFd<'_>, BorrowedFd<'_>)> {
        Some((self.token.get()?, self.watch.get()?))
    }
}

/// A writer wakes a reader's `wait()` by writing a byte into its token: the reader polls
/// the read end (its watch) anyway, for hang-up. See `sync::poke`.
impl super::poke::Poke for Presence {
    fn poke(&self) {
        if let Some(token) = self.token.get() {
            sys::socket::poke(std::os::fd::AsRawFd::as_raw_fd(&token));
        }
    }
}

impl Inherited for Presence {
    fn release_in_child(&self) {
        // SAFETY: the registry calls this in a freshly forked child, which has one
        // thread and has run nothing else yet, or when the end owning this presence is
        // being dropped (the registry's clone is never borrowed from): either way no
        // borrow of the descriptors is alive.
        unsafe {
            self.token.close();
            self.watch.close();
        }
    }
}
