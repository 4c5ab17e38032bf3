//! Every wait that takes a timeout, called with `Duration::MAX` (or `Some(Duration::MAX)`)
//! while another process makes the awaited thing happen: it must wait for it and return,
//! never panic on the overflow of `Instant + Duration` (issue 14, item 3). One table, one
//! row per method; the rows run one after the other under one watchdog, and a failing
//! row is reported by name.

mod common;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::thread::sleep;
use std::time::Duration;

use common::{fork_child, serial, watchdog};
use shmproc::{
    duplex, pipe, Array, Barrier, BoundedSemaphore, Condition, Event, JoinableQueue, Lock, Pipe,
    Pool, Process, Queue, RLock, Semaphore, TrySendError, Value,
};

const MAX: Duration = Duration::MAX;
/// How long a helper process waits before it makes the awaited thing happen, so that the
/// caller is usually already waiting.
const LATER: Duration = Duration::from_millis(20);
/// Each helper child must have exited this long after the row's wait returned.
const CHILD_LIMIT: Duration = Duration::from_secs(30);

fn square_later(x: u64) -> u64 {
    sleep(LATER);
    x * x
}

/// A lock-like row: the child takes the lock, says so, holds it a moment, releases it;
/// the parent then waits for the lock with `Duration::MAX`.
macro_rules! lock_row {
    ($name:expr, $make:expr) => {
        ($name, || {
            let lock = $make;
            let held = Event::new().unwrap();
            let (l, h) = (lock.clone(), held.clone());
            let mut child = fork_child(move || {
                let g = l.lock().unwrap();
                h.set();
                sleep(LATER);
                drop(g);
                0
            });
            assert!(held.wait(Some(MAX)));
            assert!(lock.lock_timeout(MAX).is_ok());
            child.expect_success(CHILD_LIMIT);
        })
    };
}

type Row = (&'static str, fn());

fn rows() -> Vec<Row> {
    vec![
        ("Receiver::recv_timeout", || {
            let (tx, rx) = pipe::<u32>().unwrap();
            let mut child = fork_child(move || {
                sleep(LATER);
                tx.send(&7).unwrap();
                0
            });
            assert_eq!(rx.recv_timeout(MAX), Ok(7));
            child.expect_success(CHILD_LIMIT);
        }),
        ("Receiver::poll(Some(MAX))", || {
            let (tx, rx) = pipe::<u32>().unwrap();
            let mut child = fork_child(move || {
                sleep(LATER);
                tx.send(&7).unwrap();
                0
            });
            assert!(rx.poll(Some(MAX)));
            assert_eq!(rx.try_recv(), Ok(7));
            child.expect_success(CHILD_LIMIT);
        }),
        ("Connection::recv_timeout and poll(Some(MAX))", || {
            let (a, b) = duplex::<u32>().unwrap();
            let mut child = fork_child(move || {
                sleep(LATER);
                b.send(&1).unwrap();
                sleep(LATER);
                b.send(&2).unwrap();
                // The parent's poll below must see this message before the end goes.
                b.recv_timeout(Duration::from_secs(20)).unwrap();
                0
            });
            assert_eq!(a.recv_timeout(MAX), Ok(1));
            assert!(a.poll(Some(MAX)));
            assert_eq!(a.try_recv(), Ok(2));
            a.send(&0).unwrap();
            child.expect_success(CHILD_LIMIT);
        }),
        ("Sender::send_timeout on a full ring", || {
            let (tx, rx) = Pipe::builder().capacity(4096).build::<u64>().unwrap();
            let mut sent = 0u64;
            loop {
                match tx.try_send(&sent) {
                    Ok(()) => sent += 1,
                    Err(TrySendError::Full) => break,
                    Err(e) => panic!("{e:?}"),
                }
            }
            let mut child = fork_child(move || {
                sleep(LATER);
                for i in 0..sent {
                    if rx.recv() != Ok(i) {
                        return 2;
                    }
                }
                if rx.recv() == Ok(u64::MAX) {
                    0
                } else {
                    3
                }
            });
            assert_eq!(tx.send_timeout(&u64::MAX, MAX), Ok(()));
            child.expect_success(CHILD_LIMIT);
        }),
        ("Queue::get_timeout", || {
            let q = Queue::<u32>::new().unwrap();
            let q2 = q.clone();
            let mut child = fork_child(move || {
                sleep(LATER);
                q2.put(&5).unwrap();
                0
            });
            assert_eq!(q.get_timeout(MAX).unwrap(), 5);
            child.expect_success(CHILD_LIMIT);
        }),
        ("Queue::put_timeout on a full queue", || {
            let q = Queue::<u32>::with_capacity(1).unwrap();
            q.put(&1).unwrap();
            let q2 = q.clone();
            let mut child = fork_child(move || {
                sleep(LATER);
                let ok = q2.get().unwrap() == 1 && q2.get().unwrap() == 2;
                if ok {
                    0
                } else {
                    2
                }
            });
            q.put_timeout(&2, MAX).unwrap();
            child.expect_success(CHILD_LIMIT);
        }),
        ("JoinableQueue::join_timeout", || {
            let q = JoinableQueue::<u32>::new().unwrap();
            q.put(&1).unwrap();
            let q2 = q.clone();
            let mut child = fork_child(move || {
                sleep(LATER);
                q2.get().unwrap();
                q2.task_done().unwrap();
                0
            });
            q.join_timeout(MAX).unwrap();
            child.expect_success(CHILD_LIMIT);
        }),
        lock_row!("Lock::lock_timeout", Lock::new().unwrap()),
        lock_row!("RLock::lock_timeout", RLock::new().unwrap()),
        lock_row!("Condition::lock_timeout", Condition::new().unwrap()),
        lock_row!("Value::lock_timeout", Value::new(0u64).unwrap()),
        lock_row!("Array::lock_timeout", Array::<u64>::new([0u64; 4]).unwrap()),
        ("Condition::wait_timeout and wait_for(Some(MAX))", || {
            let cond = Condition::new().unwrap();
            let flag = Value::new(0u32).unwrap();
            let (c, f) = (cond.clone(), flag.clone());
            // The parent holds the condition's lock until it waits, so the child's
            // notifies (under the lock) come while it waits.
            let mut g = cond.lock().unwrap();
            let mut child = fork_child(move || {
                for v in 1..=2 {
                    sleep(LATER);
                    let g = c.lock().unwrap();
                    f.set(v);
                    c.notify_all();
                    drop(g);
                }
                0
            });
            while flag.get() < 1 {
                g = cond.wait_timeout(g, MAX).unwrap().0;
            }
            let (g, ok) = cond.wait_for(g, || flag.get() == 2, Some(MAX)).unwrap();
            assert!(ok);
            drop(g);
            child.expect_success(CHILD_LIMIT);
        }),
        ("Semaphore::acquire_timeout", || {
            let s = Semaphore::new(0).unwrap();
            let s2 = s.clone();
            let mut child = fork_child(move || {
                sleep(LATER);
                s2.release().unwrap();
                0
            });
            assert!(s.acquire_timeout(MAX).is_ok());
            child.expect_success(CHILD_LIMIT);
        }),
        ("BoundedSemaphore::acquire_timeout", || {
            let s = BoundedSemaphore::new(1).unwrap();
            s.acquire_timeout(Duration::ZERO).unwrap();
            let s2 = s.clone();
            let mut child = fork_child(move || {
                sleep(LATER);
                s2.release().unwrap();
                0
            });
            assert!(s.acquire_timeout(MAX).is_ok());
            child.expect_success(CHILD_LIMIT);
        }),
        ("Event::wait(Some(MAX))", || {
            let e = Event::new().unwrap();
            let e2 = e.clone();
            let mut child = fork_child(move || {
                sleep(LATER);
                e2.set();
                0
            });
            assert!(e.wait(Some(MAX)));
            child.expect_success(CHILD_LIMIT);
        }),
        ("Barrier::wait(Some(MAX))", || {
            let b = Barrier::new(2).unwrap();
            let b2 = b.clone();
            let mut child = fork_child(move || {
                sleep(LATER);
                i32::from(b2.wait(Some(Duration::from_secs(20))).is_err())
            });
            assert!(b.wait(Some(MAX)).is_ok());
            child.expect_success(CHILD_LIMIT);
        }),
        ("AsyncResult::get_timeout and wait(Some(MAX))", || {
            let pool = Pool::new(1).unwrap();
            let r = pool.apply_async(square_later, 3).unwrap();
            assert!(r.wait(Some(MAX)));
            assert_eq!(r.get_timeout(MAX).unwrap(), 9);
            let r = pool.apply_async(square_later, 4).unwrap();
            assert_eq!(r.get_timeout(MAX).unwrap(), 16);
        }),
        ("Process::join_timeout", || {
            let mut p = Process::fork(|| {
                sleep(LATER);
                std::process::exit(3)
            });
            p.start().unwrap();
            p.join_timeout(MAX).unwrap();
            assert_eq!(p.exitcode(), Some(3));
        }),
    ]
}

#[test]
fn every_timeout_wait_accepts_duration_max_and_returns_when_the_thing_arrives() {
    let _s = serial();
    let _w = watchdog(Duration::from_secs(120));
    let mut failed = Vec::new();
    for (name, row) in rows() {
        if let Err(e) = catch_unwind(AssertUnwindSafe(row)) {
            let msg = e
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            failed.push(format!("{name}: {msg}"));
        }
    }
    assert!(
        failed.is_empty(),
        "rows that failed:\n{}",
        failed.join("\n")
    );
}
