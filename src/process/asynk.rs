//! [`Process::join_async`] (the `tokio` feature): the child's pidfd registered with
//! tokio's reactor.

use std::time::Duration;

use super::Process;
use crate::error::Result;
use crate::sync::notify_fd::reactor_fd;

impl Process {
    /// Awaits the child's exit without blocking the thread, then reaps it: the async
    /// [`join`](Process::join). The child's pidfd is registered with tokio's reactor,
    /// so the task sleeps until the kernel reports the exit (no thread, no polling).
    /// `Ok(())` whatever the child did: read the outcome from
    /// [`exitcode`](Process::exitcode). Needs a tokio runtime with I/O enabled. Where
    /// there is no pidfd (kernels before 5.3, valgrind) it looks once a millisecond
    /// from tokio's blocking pool instead.
    ///
    /// # Cancel safety
    /// Cancel-safe: a dropped future leaves the process as it was (not reaped, or
    /// reaped with its exit code kept).
    ///
    /// ```
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// let mut p = shmproc::Process::fork(|| std::process::exit(3));
    /// p.start()?;
    /// p.join_async().await?;
    /// assert_eq!(p.exitcode(), Some(3));
    /// # Ok(()) }
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(demo())?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// As [`join`](Process::join).
    pub async fn join_async(&mut self) -> Result<()> {
        // Errors before start; reaps a child that has exited already.
        self.join_timeout(Duration::ZERO)?;
        if self.exitcode().is_some() {
            return Ok(());
        }
        match self.sentinel() {
            Some(fd) => {
                let fd = reactor_fd(fd)?;
                // Readable once the child has exited; it stays so.
                drop(fd.readable().await?);
            }
            None => {
                while self.exitcode().is_none() {
                    let nap = || std::thread::sleep(Duration::from_millis(1));
                    // A panic or cancellation of the nap is only a shorter nap.
                    let _ = tokio::task::spawn_blocking(nap).await;
                }
            }
        }
        self.join_timeout(Duration::ZERO)
    }
}
