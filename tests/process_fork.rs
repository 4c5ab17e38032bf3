//! `Process` under the normal libtest harness, fork start method (the default): it needs
//! no `init()`. Tests that fork hold a global mutex until their children are reaped, so no
//! other test thread of ours forks meanwhile; every wait is bounded.

mod common;

use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::sync::Mutex;
use std::time::Duration;

use shmproc::{get_context, Process, StartMethod};

static FORK: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    FORK.lock().unwrap_or_else(|e| e.into_inner())
}

/// Joins with a deadline; kills and fails if the child is still running.
fn join_bounded(p: &mut Process) {
    p.join_timeout(Duration::from_secs(30)).unwrap();
    if p.exitcode().is_none() {
        let _ = p.kill();
        let _ = p.join();
        panic!("child still running after 30 s");
    }
}

fn exit_with(code: i32) {
    std::process::exit(code)
}

fn returns(_: ()) {}

fn panics(_: ()) {
    panic!("expected panic in a forked child");
}

#[test]
fn the_default_start_method_is_fork() {
    assert_eq!(StartMethod::default(), StartMethod::Fork);
    assert_eq!(Process::new(exit_with, 0).start_method(), StartMethod::Fork);
    assert_eq!(
        get_context(StartMethod::Spawn).start_method(),
        StartMethod::Spawn
    );
}

#[test]
fn process_new_runs_the_target_in_a_child() {
    let _g = serial();
    let mut p = Process::new(exit_with, 42);
    p.start().unwrap();
    assert_ne!(p.pid(), Some(std::process::id()));
    join_bounded(&mut p);
    assert_eq!(p.exitcode(), Some(42));
}

#[test]
fn a_panicking_target_exits_with_1() {
    let _g = serial();
    let mut p = Process::new(panics, ());
    p.start().unwrap();
    join_bounded(&mut p);
    assert_eq!(p.exitcode(), Some(1));
}

#[test]
fn fork_closures_capture_the_parents_state() {
    let _g = serial();
    let table: Vec<i32> = vec![3, 4, 5];
    let mut p = Process::fork(move || std::process::exit(table.iter().product::<i32>() % 256));
    p.start().unwrap();
    join_bounded(&mut p);
    assert_eq!(p.exitcode(), Some(60));
}

#[test]
fn the_childs_memory_is_its_own() {
    let _g = serial();
    let mut p = Process::fork(|| {
        let mut v = vec![0u8; 1 << 20];
        v.iter_mut().for_each(|b| *b = 1);
        std::process::exit(v.iter().map(|&b| b as usize).sum::<usize>() as i32 % 256)
    });
    p.start().unwrap();
    join_bounded(&mut p);
    assert_eq!(p.exitcode(), Some(0)); // 2^20 % 256
}

#[test]
fn daemon_flag_is_kept_and_a_dropped_daemon_is_reaped() {
    let _g = serial();
    let mut p = Process::fork(|| std::thread::sleep(Duration::from_secs(30)));
    p.daemon(true);
    assert!(p.is_daemon());
    p.start().unwrap();
    let pid = p.pid().unwrap();
    drop(p);
    assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists());
}

/// `join_timeout(Duration::MAX)` waits for the child (it panicked adding to the clock).
#[test]
fn join_timeout_duration_max_returns_when_the_child_exits() {
    let _g = serial();
    let _w = common::watchdog(Duration::from_secs(60));
    let mut p = Process::fork(|| {
        std::thread::sleep(Duration::from_millis(50));
        std::process::exit(7)
    });
    p.start().unwrap();
    p.join_timeout(Duration::MAX).unwrap();
    assert_eq!(p.exitcode(), Some(7));
}

/// This thread holds std's stdout lock while another thread starts a process and joins
/// it, and this thread joins that thread: `start` used to take the lock across fork and
/// wait for it for ever. The child, which finds stdout locked for ever by a thread it
/// does not have, still ends (its exit flush gives up on the lock).
#[test]
fn a_process_started_on_another_thread_while_this_one_holds_stdout_does_not_hang() {
    let _g = serial();
    let _w = common::watchdog(Duration::from_secs(60));
    let out = std::io::stdout().lock();
    let starter = std::thread::spawn(|| {
        let mut p = Process::new(returns, ());
        p.start().unwrap();
        join_bounded(&mut p);
        p.exitcode()
    });
    assert_eq!(starter.join().unwrap(), Some(0));
    drop(out);
}

/// A child forked by the thread that holds std's stdout lock owns that lock (it is
/// re-entrant, and the child's one thread is that thread): it prints, and what it left
/// in std's buffer without a newline is flushed at its exit.
#[test]
fn a_child_forked_by_the_thread_holding_stdout_still_prints() {
    let _g = serial();
    let _w = common::watchdog(Duration::from_secs(60));
    let out = std::io::stdout().lock();
    let (r, w) = nix::unistd::pipe().unwrap();
    let mut p = Process::fork(move || {
        nix::unistd::dup2(w.as_raw_fd(), 1).unwrap();
        drop(w);
        let mut out = std::io::stdout();
        writeln!(out, "hello from the child").unwrap();
        write!(out, "and a line without its end").unwrap();
    });
    p.start().unwrap(); // drops the parent's copy of `w`
    let mut got = String::new();
    std::fs::File::from(r).read_to_string(&mut got).unwrap();
    join_bounded(&mut p);
    drop(out);
    assert_eq!(got, "hello from the child\nand a line without its end");
    assert_eq!(p.exitcode(), Some(0));
}
