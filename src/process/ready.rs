//! A [`Process`] in [`crate::wait`]: ready once it has ended (its pidfd polls readable,
//! Python's `Process.sentinel`). A process never started is never ready.

use std::os::fd::{AsRawFd, RawFd};

use super::Process;
use crate::channel::wait::{sealed, Ready, Source};

impl Source for Process {
    fn is_ready(&self) -> bool {
        // A non-blocking look (and reap) when it has exited; `None` while it runs and
        // before start.
        self.exitcode().is_some()
    }

    fn fd(&self) -> Option<RawFd> {
        // Without a pidfd (kernels before 5.3, valgrind) `wait` looks again at least
        // once a second.
        self.sentinel().map(|fd| fd.as_raw_fd())
    }
}

impl sealed::Sealed for Process {
    fn watch(&self) -> sealed::Watch<'_> {
        sealed::Watch(self)
    }
}

impl Ready for Process {}
