//! Wake-ups for async waiters (the `tokio` feature): an eventfd per [`Waiter`], which a
//! waker signals only when an async waiter is registered on that waiter.
//!
//! # Protocol
//!
//! An async waiter (a task awaiting a receive, a send, a put or a get) never sleeps on
//! the futex. It registers on the shared [`Waiter`] (its `external` count, next to
//! the futex word, once per wait), arms the word as a blocking waiter does
//! ([`Waiter::arm_for_async`]: the `SLEEPERS` bit and the full barrier), re-checks its
//! condition, and only then awaits its object's wake-up descriptor, registered with
//! tokio's reactor through [`AsyncFd`]. A waker runs the unchanged fast path: a
//! compiler fence and one load of the word. When it finds `SLEEPERS` set it clears it
//! and calls `FUTEX_WAKE` as before, and (out of line, [`wake_async`]) adds the count
//! of registered async waiters to the eventfd. So there is no system call per message,
//! and none at all while no task waits; and as for blocking waiters, either the
//! waiter's re-check sees the change or the waker sees the armed word: no lost wake-up.
//! Blocking and async waiters share the word and can be mixed.
//!
//! The eventfd is in semaphore mode: a wake-up of `n` units lets each of `n` waiters
//! (in any processes) take one unit, re-check and arm again; a unit left over (its
//! waiter finished or was dropped without taking it) costs the next waiter one extra
//! look. Each process finds the eventfd of a waiter it holds through a table keyed by
//! the waiter's address in its own mapping ([`register`]), which fork cannot copy
//! while it is locked (it is only locked under the hand-off registry's creation lock,
//! which `fork` takes exclusively).
//!
//! A waiter may also watch a presence descriptor (`sync::presence`): its POLLHUP, when
//! the other side's last end is gone (dropped, or its process killed), wakes the task
//! too, so a SIGKILLed peer ends an await with `Disconnected`, never a task that waits
//! for ever.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

use super::atomic::Ordering;
use super::handoff;
use super::waiter::Waiter;
use crate::error::{Error, Result};
use crate::sys::{self, event, PeerState};

/// The wake-up descriptor of the async waiters of one [`Waiter`]: an eventfd shared by
/// every process that holds the object (inherited by a forked child, passed to a
/// spawned one like the object's other descriptors).
#[derive(Debug)]
pub(crate) struct NotifyFd(OwnedFd);

impl NotifyFd {
    /// A new eventfd.
    pub(crate) fn new() -> io::Result<Arc<NotifyFd>> {
        Ok(Arc::new(NotifyFd(event::eventfd()?)))
    }

    /// The eventfd handed over by another process.
    pub(crate) fn from_fd(fd: OwnedFd) -> Arc<NotifyFd> {
        Arc::new(NotifyFd(fd))
    }

    /// The descriptor, to hand to a spawned child.
    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

/// The eventfds a parent passed to this spawned child ([`pass_all`]); `expect` of them.
pub(crate) fn adopt_all(fds: &[i32], expect: usize) -> Result<Vec<Arc<NotifyFd>>> {
    if fds.len() != expect {
        return Err(Error::Handle("wrong number of wake-up descriptors"));
    }
    fds.iter()
        .map(|&n| Ok(NotifyFd::from_fd(handoff::adopt_fd(n)?)))
        .collect()
}

/// Passes eventfds to a spawned child (see `handoff`).
pub(crate) fn pass_all(fds: &[Arc<NotifyFd>]) -> Result<Vec<i32>> {
    fds.iter().map(|n| handoff::pass_fd(n.fd())).collect()
}

struct Entry {
    /// The waiter's address in this process.
    waiter: usize,
    notify: Arc<NotifyFd>,
    id: u64,
}

struct Table {
    next: u64,
    entries: Vec<Entry>,
}

static TABLE: Mutex<Table> = Mutex::new(Table {
    next: 1,
    entries: Vec::new(),
});

/// Locks the table under the hand-off creation lock (shared), so that no fork copies
/// it locked into a child.
fn table() -> (handoff::Creating, MutexGuard<'static, Table>) {
    let creating = handoff::creating();
    let table = TABLE.lock().unwrap_or_else(|e| e.into_inner());
    (creating, table)
}

/// This process's registration of the wake-up descriptors of some waiters (see
/// [`register`]); removed when dropped.
#[derive(Debug, Default)]
pub(crate) struct Registration(Vec<u64>);

/// Registers, for this process, which eventfd wakes the async waiters of each waiter
/// (at its address in this process's mapping), until the registration is dropped. The
/// waiters' memory must stay mapped until then.
pub(crate) fn register(pairs: &[(&Waiter, &Arc<NotifyFd>)]) -> Registration {
    let (_creating, mut t) = table();
    let ids = pairs
        .iter()
        .map(|(w, n)| {
            let id = t.next;
            t.next += 1;
            t.entries.push(Entry {
                waiter: *w as *const Waiter as usize,
                notify: Arc::clone(n),
                id,
            });
            id
        })
        .collect();
    Registration(ids)
}

impl Drop for Registration {
    fn drop(&mut self) {
        if self.0.is_empty() {
            return;
        }
        let (_creating, mut t) = table();
        t.entries.retain(|e| !self.0.contains(&e.id));
    }
}

/// Called by a waker that cleared `SLEEPERS` on `w` (out of line, after its
/// `FUTEX_WAKE`): signals the async waiters registered on `w`, if there are any, with
/// one unit each.
#[cold]
#[inline(never)]
pub(super) fn wake_async(w: &Waiter) {
    // Acquire, and the waker's CAS on the word before it: pairs with the waiter's
    // registration, which precedes its arming RMW on the word.
    let n = w.external.load(Ordering::Acquire);
    if n == 0 {
        return;
    }
    let addr = w as *const Waiter as usize;
    let (_creating, t) = table();
    if let Some(e) = t.entries.iter().find(|e| e.waiter == addr) {
        event::eventfd_add(e.notify.fd(), u64::from(n));
    }
}

/// One task's wait on a [`Waiter`]: registers as an async waiter when first armed,
/// unregisters when dropped (so a dropped future leaves no registration behind).
pub(crate) struct AsyncPark<'a> {
    waiter: &'a Waiter,
    notify: &'a NotifyFd,
    watch: Option<BorrowedFd<'a>>,
    entered: bool,
    /// Duplicates of the eventfd and of the watch, registered with the reactor (a
    /// duplicate each, so that tasks of one process waiting on one object at once each
    /// have their own registration).
    polled: Option<(AsyncFd<OwnedFd>, Option<AsyncFd<OwnedFd>>)>,
    /// Registration with the reactor failed: the next poll returns at once.
    retry: bool,
}

impl<'a> AsyncPark<'a> {
    /// A wait on `waiter`, woken through `notify`, and by POLLHUP on `watch` if given.
    pub(crate) fn new(
        waiter: &'a Waiter,
        notify: &'a NotifyFd,
        watch: Option<BorrowedFd<'a>>,
    ) -> AsyncPark<'a> {
        AsyncPark {
            waiter,
            notify,
            watch,
            entered: false,
            polled: None,
            retry: false,
        }
    }

    /// Registers as an async waiter (once) and arms the word. The caller re-checks its
    /// condition next, and awaits [`AsyncPark::wait`] only if it still does not hold.
    pub(crate) fn arm(&mut self) {
        if !self.entered {
            self.waiter.external.fetch_add(1, Ordering::SeqCst);
            self.entered = true;
        }
        self.waiter.arm_for_async();
    }

    /// Waits until the eventfd gives a unit or the watch reports its peer gone. May
    /// return spuriously: the caller re-checks, arms and waits again.
    pub(crate) async fn wait(&mut self) {
        std::future::poll_fn(|cx| self.poll_wait(cx)).await
    }

    fn register(&self) -> io::Result<(AsyncFd<OwnedFd>, Option<AsyncFd<OwnedFd>>)> {
        let notify = reactor_fd(self.notify.fd())?;
        let watch = self.watch.map(reactor_fd).transpose()?;
        Ok((notify, watch))
    }

    fn poll_wait(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if self.retry {
            self.retry = false;
            return Poll::Ready(());
        }
        if self.polled.is_none() {
            match self.register() {
                Ok(p) => self.polled = Some(p),
                Err(_) => {
                    // No reactor registration (out of descriptors or epoll watches):
                    // look again on the next turn of the scheduler rather than hang.
                    self.retry = true;
                    cx.waker().wake_by_ref();
                    return Poll::Pending;
                }
            }
        }
        let (notify, watch) = self.polled.as_ref().expect("registered above");
        loop {
            match notify.poll_read_ready(cx) {
                Poll::Ready(Ok(mut ready)) => {
                    if event::eventfd_take(self.notify.fd()) {
                        return Poll::Ready(());
                    }
                    // Another waiter took the unit: wait for the next one.
                    ready.clear_ready();
                }
                // The runtime is shutting down: let the caller look once more.
                Poll::Ready(Err(_)) => return Poll::Ready(()),
                Poll::Pending => break,
            }
        }
        if let Some(watch) = watch {
            // Readable is POLLHUP (the peer is gone: for good, never cleared), or a
            // `wait()` poke: a writer that finds external waiters on the word (pollers
            // and async tasks share one count) also writes a byte into its presence
            // token (`sync::poke`). The bytes are left for `wait()` to drain; a poke
            // only clears the readiness (the next write is a new edge) and returns, a
            // spurious wake-up the caller re-checks.
            if let Poll::Ready(ready) = watch.poll_read_ready(cx) {
                if let Ok(mut ready) = ready {
                    if sys::peer_state(watch.get_ref().as_fd()) == PeerState::Alive {
                        ready.clear_ready();
                    }
                }
                return Poll::Ready(());
            }
        }
        Poll::Pending
    }
}

/// What a look at an object found, for [`park_until`].
pub(crate) enum Step<R> {
    /// Finished (done, or failed for good).
    Done(R),
    /// Nothing yet: sleep until a waker signals.
    Park,
    /// Nothing yet, but another party is in the middle of an operation that ends in a
    /// moment (it holds the writer role, or a slot it claimed): look again after one
    /// turn of the scheduler rather than sleep (its end may signal nobody).
    Yield,
}

/// The one async wait: `attempt(armed)` until it is [`Step::Done`]. After a look that
/// found nothing, arms `park` and looks again (`armed` true: the look must also check
/// whether the other side is gone, and finish if so); only a second look that finds
/// nothing sleeps. Dropping the future between looks takes nothing.
pub(crate) async fn park_until<R>(
    park: &mut AsyncPark<'_>,
    mut attempt: impl FnMut(bool) -> Step<R>,
) -> R {
    let mut armed = false;
    loop {
        // Nothing of `R` lives across an await (the future is `Send` whatever `R` is).
        let sleep = match attempt(armed) {
            Step::Done(r) => return r,
            Step::Park => true,
            Step::Yield => false,
        };
        if !armed {
            park.arm();
            armed = true;
            continue;
        }
        if sleep {
            park.wait().await;
        } else {
            yield_once().await;
        }
        armed = false;
    }
}

/// Gives the scheduler one turn (wakes itself, then is ready on the next poll).
pub(crate) async fn yield_once() {
    let mut yielded = false;
    std::future::poll_fn(|cx| {
        if yielded {
            return Poll::Ready(());
        }
        yielded = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    })
    .await
}

/// A duplicate of `fd`, registered with the current tokio reactor for readability.
/// Panics outside a tokio runtime (as tokio's own I/O types do).
pub(crate) fn reactor_fd(fd: BorrowedFd<'_>) -> io::Result<AsyncFd<OwnedFd>> {
    let dup = fd.try_clone_to_owned()?;
    // SAFETY: the AsyncFd owns `dup`, an open descriptor that stays open (and refers to
    // the same file) until the AsyncFd is dropped; `OwnedFd::as_raw_fd` always returns it.
    unsafe { AsyncFd::register_with_interest(dup, Interest::READABLE) }
        .map_err(|e| e.into_parts().1)
}

impl Drop for AsyncPark<'_> {
    fn drop(&mut self) {
        if self.entered {
            self.waiter.external.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests;
