//! [`wait`]: Python's `multiprocessing.connection.wait`. One thread learns which of
//! many channels, queues, processes and listeners are ready, without a thread each.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use super::{Connection, JoinableQueue, Listener, Queue, Receiver};
use crate::error::Result;
use crate::sync::poke::Poke;
use crate::sync::waiter::{poller_fence, Waiter};
use crate::sys::{self, deadline_after, socket};

/// Longest single `poll` of [`wait`].
const POLL_SLICE: Duration = Duration::from_secs(1);

pub(crate) mod sealed {
    /// Seals [`Ready`](super::Ready); what `wait` needs of an object.
    pub trait Sealed {
        /// What `wait` watches for this object.
        fn watch(&self) -> Watch<'_>;
    }

    /// What [`wait`](super::wait) watches for one object. Not nameable outside the crate.
    pub struct Watch<'a>(pub(crate) &'a dyn super::Source);
}

/// What `wait` needs of an object.
pub(crate) trait Source {
    /// Whether it is ready now (never blocks).
    fn is_ready(&self) -> bool;
    /// The shared wake word to count a poller on and arm, if any.
    fn waiter(&self) -> Option<&Waiter> {
        None
    }
    /// The descriptor to poll for readability (`None`, or -1: nothing to poll).
    fn fd(&self) -> Option<RawFd>;
    /// The descriptor's bytes are pokes: discard them (called when it polled readable
    /// and the object is not ready).
    fn drain(&self) {}
}

/// An object [`wait`] can watch: [`Receiver`], [`Connection`], [`Queue`],
/// [`JoinableQueue`], [`Process`](crate::Process) and [`Listener`]. Sealed: implemented
/// by this crate only; object-safe, so that different kinds mix in one slice.
pub trait Ready: sealed::Sealed {}

/// Waits until at least one of `objects` is ready, or `timeout` passes, and returns the
/// indices of those ready, in order: Python's `multiprocessing.connection.wait`.
///
/// Ready means: a [`Receiver`] or [`Connection`] has a message to read or the other
/// side is gone (its `recv` would not block); a [`Queue`] has an item or is closed; a
/// [`Process`](crate::Process) has ended (a process never started never is); a
/// [`Listener`] has a client waiting (`accept` would not block for the connection).
/// `timeout` `None` waits for ever; `Some(Duration::ZERO)` only looks. A timeout with
/// nothing ready is `Ok(vec![])`, as Python's `[]`, never an error.
///
/// It blocks in `poll(2)`, using no CPU while it waits; writers wake it with one
/// `write` (see below for how a ring is made visible to `poll`).
///
/// ```
/// use std::time::Duration;
/// use shmproc::{duplex, wait, Ready};
///
/// let (a1, b1) = duplex::<u32>()?;
/// let (a2, b2) = duplex::<u32>()?;
/// let (a3, b3) = duplex::<u32>()?;
/// b1.send(&1)?;
/// b3.send(&3)?;
/// let objects: [&dyn Ready; 3] = [&a1, &a2, &a3];
/// assert_eq!(wait(&objects, Some(Duration::from_secs(1)))?, [0, 2]);
/// assert_eq!(a1.recv()?, 1);
/// assert_eq!(a3.recv()?, 3);
/// assert!(wait(&objects, Some(Duration::from_millis(10)))?.is_empty());
/// drop(b2); // end-of-file is ready too
/// assert_eq!(wait(&objects, None)?, [1]);
/// # drop((b1, b3));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # Errors
/// Only an OS error from `poll`.
/// # How it sleeps
///
/// Every object gives `wait` a condition to check without blocking (a message or
/// end-of-file to read, an item or a close, an exit, a client) and a descriptor to
/// `poll(2)`: a pipe end's *watch* (the read end of the other side's presence pipe,
/// which hangs up when that side is gone), a queue's poke pipe, a process's pidfd, a
/// listener's socket. A ring's futex cannot be polled, so a message is made visible to
/// `poll` by its writer, edge-triggered: `wait` counts itself on the ring's wake word as
/// a *poller* and arms it as a sleeper would (see `sync::waiter`); the writer that next
/// publishes finds the word armed, takes the slow path of its wake-up as for any
/// sleeper, sees the poller and writes one byte to the descriptor registered for that
/// word in its own process (`sync::poke`): for a pipe its presence token, whose read end
/// is exactly the watch the waiting side polls. A writer pays nothing while no `wait`
/// is armed, and one `write` per armed `wait` otherwise.
///
/// No wake-up is lost: `wait` arms every word, issues the waiter's barrier, and checks
/// every condition again before it sleeps; a writer that published before the barrier
/// is seen by that check, one after it sees the armed word and pokes. The poke bytes
/// are a hint, drained by a `wait` that finds its object not ready; one that finds it
/// ready leaves them, so that other processes waiting on the same queue wake too.
/// `poll` sleeps at most a second at a time, as a last resort against a poke that
/// cannot come (a writer that kept its end after a fork without being handed it).
///
pub fn wait(objects: &[&dyn Ready], timeout: Option<Duration>) -> Result<Vec<usize>> {
    let sources: Vec<&dyn Source> = objects.iter().map(|o| o.watch().0).collect();
    let ready = || -> Vec<usize> {
        (0..sources.len())
            .filter(|&i| sources[i].is_ready())
            .collect()
    };
    let now = ready();
    if !now.is_empty() || timeout == Some(Duration::ZERO) {
        return Ok(now);
    }
    // `None` waits for ever, as does a timeout too large to add to the clock.
    let deadline = timeout.and_then(deadline_after);
    let waiters: Vec<&Waiter> = sources.iter().filter_map(|s| s.waiter()).collect();
    loop {
        for w in &waiters {
            w.arm_poller();
        }
        poller_fence();
        let mut now = ready();
        let mut fds: Vec<socket::PollFd> = Vec::new();
        let mut polled = Vec::new();
        let mut res = Ok(0);
        if now.is_empty() {
            for (i, s) in sources.iter().enumerate() {
                if let Some(fd) = s.fd().filter(|&fd| fd >= 0) {
                    fds.push(socket::PollFd {
                        fd,
                        events: socket::POLLIN,
                        revents: 0,
                    });
                    polled.push(i);
                }
            }
            let slice = Instant::now().checked_add(POLL_SLICE);
            let until = match (deadline, slice) {
                (Some(d), Some(s)) => Some(d.min(s)),
                (d, s) => d.or(s),
            };
            res = socket::poll(&mut fds, until);
        }
        for w in &waiters {
            w.disarm_poller();
        }
        res?;
        if now.is_empty() {
            now = ready();
            for (k, &i) in polled.iter().enumerate() {
                if fds[k].revents != 0 && !now.contains(&i) {
                    sources[i].drain();
                }
            }
        }
        if !now.is_empty() {
            return Ok(now);
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return Ok(Vec::new());
        }
    }
}

// ----------------------------------------------------------------- implementations

impl<T> sealed::Sealed for Receiver<T> {
    fn watch(&self) -> sealed::Watch<'_> {
        sealed::Watch(self)
    }
}
impl<T> Ready for Receiver<T> {}

impl<T> sealed::Sealed for Connection<T> {
    fn watch(&self) -> sealed::Watch<'_> {
        sealed::Watch(self)
    }
}
impl<T> Ready for Connection<T> {}

impl<T> sealed::Sealed for Queue<T> {
    fn watch(&self) -> sealed::Watch<'_> {
        sealed::Watch(self)
    }
}
impl<T> Ready for Queue<T> {}

impl<T> sealed::Sealed for JoinableQueue<T> {
    fn watch(&self) -> sealed::Watch<'_> {
        sealed::Watch(self)
    }
}
impl<T> Ready for JoinableQueue<T> {}

impl sealed::Sealed for Listener {
    fn watch(&self) -> sealed::Watch<'_> {
        sealed::Watch(self)
    }
}
impl Ready for Listener {}

/// A pipe end: readable when its ring has a record, or the other side is gone.
fn end_source(end: &super::pipe::End) -> &dyn Source {
    end
}

impl Source for super::pipe::End {
    fn is_ready(&self) -> bool {
        match self.read_ring() {
            Some(rx) => rx.has_data() || self.peer_gone(),
            None => self.peer_gone(),
        }
    }

    fn waiter(&self) -> Option<&Waiter> {
        self.read_ring().map(|rx| rx.readable_waiter())
    }

    fn fd(&self) -> Option<RawFd> {
        Some(self.watch_fd())
    }

    fn drain(&self) {
        if let Ok(fd) = sys::borrow_raw_checked(self.watch_fd()) {
            socket::drain(fd);
        }
    }
}

impl<T> Source for Receiver<T> {
    fn is_ready(&self) -> bool {
        end_source(self.end()).is_ready()
    }
    fn waiter(&self) -> Option<&Waiter> {
        end_source(self.end()).waiter()
    }
    fn fd(&self) -> Option<RawFd> {
        end_source(self.end()).fd()
    }
    fn drain(&self) {
        end_source(self.end()).drain()
    }
}

impl<T> Source for Connection<T> {
    fn is_ready(&self) -> bool {
        end_source(self.end()).is_ready()
    }
    fn waiter(&self) -> Option<&Waiter> {
        end_source(self.end()).waiter()
    }
    fn fd(&self) -> Option<RawFd> {
        end_source(self.end()).fd()
    }
    fn drain(&self) {
        end_source(self.end()).drain()
    }
}

impl<T> Source for Queue<T> {
    fn is_ready(&self) -> bool {
        self.shared().ready_for_get()
    }
    fn waiter(&self) -> Option<&Waiter> {
        Some(self.shared().not_empty_waiter())
    }
    fn fd(&self) -> Option<RawFd> {
        Some(self.shared().poke_pipe().read_fd())
    }
    fn drain(&self) {
        self.shared().poke_pipe().drain()
    }
}

impl<T> Source for JoinableQueue<T> {
    fn is_ready(&self) -> bool {
        self.shared().ready_for_get()
    }
    fn waiter(&self) -> Option<&Waiter> {
        Some(self.shared().not_empty_waiter())
    }
    fn fd(&self) -> Option<RawFd> {
        Some(self.shared().poke_pipe().read_fd())
    }
    fn drain(&self) {
        self.shared().poke_pipe().drain()
    }
}

impl Source for Listener {
    fn is_ready(&self) -> bool {
        sys::borrow_raw_checked(self.raw_fd()).is_ok_and(socket::readable_now)
    }
    fn fd(&self) -> Option<RawFd> {
        Some(self.raw_fd())
    }
}

/// A queue's poke pipe: every holder of the queue keeps both ends; a putter that wakes
/// a `wait` writes a byte to it (see `sync::poke`), every waiting holder polls it.
pub(crate) struct PokePipe {
    read: OwnedFd,
    write: std::sync::Arc<PokeEnd>,
    _reg: crate::sync::poke::Registration,
}

/// The write end of a [`PokePipe`].
struct PokeEnd(OwnedFd);

impl Poke for PokeEnd {
    fn poke(&self) {
        socket::poke(self.0.as_raw_fd());
    }
}

impl PokePipe {
    /// A new pipe (non-blocking both ends), registered for `waiter`.
    pub(crate) fn create(waiter: &Waiter) -> Result<PokePipe> {
        let (r, w) = socket::pipe_nonblocking()?;
        Ok(PokePipe::from_fds(waiter, r, w))
    }

    /// The pipe from ends handed over (already non-blocking), registered for `waiter`.
    pub(crate) fn from_fds(waiter: &Waiter, read: OwnedFd, write: OwnedFd) -> PokePipe {
        let write = std::sync::Arc::new(PokeEnd(write));
        let reg = crate::sync::poke::register(waiter, write.clone());
        PokePipe {
            read,
            write,
            _reg: reg,
        }
    }

    /// The read end, polled by `wait`.
    pub(crate) fn read_fd(&self) -> RawFd {
        self.read.as_raw_fd()
    }

    /// Both ends, to hand to another process.
    pub(crate) fn fds(&self) -> (BorrowedFd<'_>, BorrowedFd<'_>) {
        (self.read.as_fd(), self.write.0.as_fd())
    }

    fn drain(&self) {
        socket::drain(self.read.as_fd());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{duplex, pipe};

    #[test]
    fn a_send_from_another_thread_wakes_a_wait_at_once() {
        let (a, b) = duplex::<u32>().unwrap();
        let (tx, rx) = pipe::<u32>().unwrap();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            tx.send(&9).unwrap();
            tx
        });
        let start = Instant::now();
        let objects: [&dyn Ready; 2] = [&a, &rx];
        assert_eq!(wait(&objects, Some(Duration::from_secs(10))).unwrap(), [1]);
        // Woken by the poke, not by the one-second slice.
        assert!(
            start.elapsed() < Duration::from_millis(900),
            "{:?}",
            start.elapsed()
        );
        assert_eq!(rx.recv().unwrap(), 9);
        let tx = t.join().unwrap();
        // Many rounds: no wake-up is lost.
        let t = std::thread::spawn(move || {
            for i in 0..2000 {
                if i % 3 == 0 {
                    std::thread::yield_now();
                }
                b.send(&i).unwrap();
            }
            b
        });
        let mut got = 0;
        while got < 2000 {
            let r = wait(&objects, Some(Duration::from_secs(10))).unwrap();
            assert_eq!(r, [0]);
            while let Ok(v) = a.try_recv() {
                assert_eq!(v, got);
                got += 1;
            }
        }
        drop((t.join().unwrap(), tx));
    }

    #[test]
    fn queues_listeners_and_hang_ups_are_ready() {
        let q = Queue::<u32>::new().unwrap();
        let q2 = q.clone();
        let (a, b) = duplex::<u32>().unwrap();
        let name = format!(
            "wait-{}-{:x}",
            std::process::id(),
            sys::random_u128().unwrap() as u32
        );
        let l = Listener::bind(&name).unwrap();
        let objects: [&dyn Ready; 3] = [&q, &a, &l];
        assert!(wait(&objects, Some(Duration::ZERO)).unwrap().is_empty());
        assert!(wait(&objects, Some(Duration::from_millis(30)))
            .unwrap()
            .is_empty());
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            q2.put(&1).unwrap();
        });
        assert_eq!(wait(&objects, None).unwrap(), [0]);
        t.join().unwrap();
        assert_eq!(q.get().unwrap(), 1);
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            drop(b);
        });
        assert_eq!(wait(&objects, None).unwrap(), [1]);
        t.join().unwrap();
        let n2 = name.clone();
        let t = std::thread::spawn(move || crate::connect::<u8>(&n2).map(drop));
        let objects: [&dyn Ready; 2] = [&q, &l];
        assert_eq!(wait(&objects, Some(Duration::from_secs(10))).unwrap(), [1]);
        drop(l.accept::<u8>().unwrap());
        t.join().unwrap().unwrap();
        q.close();
        assert_eq!(wait(&objects, None).unwrap(), [0]);
    }
}
