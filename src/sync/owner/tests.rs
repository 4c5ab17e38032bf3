use std::time::{Duration, Instant};

use super::*;

/// The owner that `child` (which exits at once) is once it has become a zombie: exited,
/// not reaped, as every child is until its parent waits for it.
fn zombie_owner(child: &std::process::Child) -> Owner {
    let pid = child.id();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some((b'Z', start)) = crate::sys::task_state(pid) {
            return Owner::new(pid, start as u32);
        }
        assert!(Instant::now() < deadline, "the child never became a zombie");
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn the_calling_thread_is_alive_and_known_by_its_start_time() {
    let m = me();
    assert_eq!(m, me(), "cached");
    assert_eq!(m.tid(), crate::sys::gettid());
    assert_ne!(m.start(), 0);
    assert!(m.exists() && m.is_alive());
    assert_eq!(Owner::from_tag(m.tag()), m);
    let other = std::thread::spawn(me).join().unwrap();
    assert_ne!(other.tid(), m.tid(), "one identity per thread");
}

#[test]
fn a_live_task_with_another_start_time_is_a_reused_id_and_dead() {
    // The pid-reuse case: the id names a running task, but not the one recorded.
    let m = me();
    let reused = Owner::new(m.tid(), m.start().wrapping_add(1));
    assert!(reused.exists(), "kill(tid, 0) alone cannot tell");
    assert!(!reused.is_alive());
    // Another live process (our parent), recorded with a wrong start time.
    let ppid = std::os::unix::process::parent_id();
    let (_, start) = crate::sys::task_state(ppid).expect("the parent runs");
    assert!(Owner::new(ppid, start as u32).is_alive());
    assert!(!Owner::new(ppid, (start as u32).wrapping_add(100)).is_alive());
    // An unknown start time proves nothing either way: alive.
    assert!(Owner::new(ppid, 0).is_alive());
}

#[test]
fn a_zombie_is_dead_though_it_answers_kill() {
    let mut child = std::process::Command::new("true")
        .spawn()
        .expect("spawn true");
    let z = zombie_owner(&child);
    assert!(z.exists());
    assert!(!z.is_alive());
    assert!(
        !Owner::new(z.tid(), 0).is_alive(),
        "dead whatever its start time"
    );
    child.wait().unwrap();
    assert!(!z.exists());
}

#[test]
fn a_thread_that_exited_is_dead() {
    let gone = std::thread::spawn(me).join().unwrap();
    assert!(!gone.is_alive());
}

#[test]
fn garbage_ids_are_dead() {
    for tid in [0, 1 << 22, u32::MAX] {
        assert!(!Owner::new(tid, 0).is_alive(), "tid {tid}");
    }
}

#[test]
fn a_recorded_tag_counts_only_for_its_own_tid() {
    let m = me();
    assert_eq!(Owner::recorded(m.tid(), m.tag()), m);
    assert_eq!(
        Owner::recorded(m.tid() + 1, m.tag()),
        Owner::new(m.tid() + 1, 0)
    );
    assert_eq!(Owner::recorded(m.tid(), 0), Owner::new(m.tid(), 0));
}

#[test]
fn a_forked_child_computes_its_own_identity() {
    use crate::sys::proc::Forked;
    let parent = me();
    match crate::sys::proc::fork().expect("fork") {
        Forked::Child => {
            // The parent's cached identity must not survive into the child.
            let child = me();
            let ok = child != parent && child.tid() == crate::sys::gettid() && child == me();
            crate::sys::proc::exit_now(if ok { 0 } else { 1 });
        }
        Forked::Parent(pid) => {
            let deadline = Instant::now() + Duration::from_secs(30);
            let code = loop {
                if let Some(code) = crate::sys::proc::wait_exitcode(pid, false).expect("wait") {
                    break code;
                }
                if Instant::now() > deadline {
                    // The watchdog: kill and reap, then fail.
                    let _ = std::process::Command::new("kill")
                        .args(["-9", &pid.to_string()])
                        .status();
                    let _ = crate::sys::proc::wait_exitcode(pid, true);
                    panic!("the child did not exit");
                }
                std::thread::sleep(Duration::from_millis(1));
            };
            assert_eq!(code, 0, "the child saw its parent's identity");
        }
    }
}
