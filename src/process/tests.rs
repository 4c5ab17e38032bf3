use super::*;

/// The wait without a pidfd (kernels before 5.3, valgrind) takes a huge timeout as
/// for ever too: it used to panic adding `Duration::MAX` to the clock.
#[test]
fn join_timeout_without_a_pidfd_takes_duration_max() {
    let mut p = Process::fork(|| {
        std::thread::sleep(Duration::from_millis(20));
        std::process::exit(4)
    });
    p.start().unwrap();
    p.pidfd = None;
    // A watchdog: a hang fails the test run instead of blocking it.
    let (done, finished) = std::sync::mpsc::channel::<()>();
    std::thread::spawn(move || {
        let waited = finished.recv_timeout(Duration::from_secs(60));
        if waited == Err(std::sync::mpsc::RecvTimeoutError::Timeout) {
            eprintln!("watchdog: join_timeout(Duration::MAX) hung");
            std::process::abort();
        }
    });
    p.join_timeout(Duration::MAX).unwrap();
    drop(done);
    assert_eq!(p.exitcode(), Some(4));
}
