//! Locks, semaphores, events, conditions, barriers and shared values across real forked
//! processes. (The same scenarios under the spawn start method: tests/sync_spawn.rs.)

mod common;

use std::time::{Duration, Instant};

use common::{fork_child, serial, this_thread, wait_asleep, watchdog, Child, PARKED};
use shmproc::{
    Array, Barrier, BarrierError, BoundedSemaphore, Condition, Event, Lock, LockError, LockGuard,
    RLock, Semaphore, Value,
};

const T: Duration = Duration::from_secs(60);

const WAIT: Option<Duration> = Some(Duration::from_secs(30));

/// Appends `x` to a log kept in `log` (element 0 is the length).
fn push(log: &Array<u32>, x: u32) {
    let mut g = log.lock().unwrap();
    let n = g[0] as usize + 1;
    g[n] = x;
    g[0] = n as u32;
}

fn entries(log: &Array<u32>) -> Vec<u32> {
    let v = log.to_vec();
    v[1..=v[0] as usize].to_vec()
}

#[test]
fn the_seeds_three_processes_print_one_after_another_inside_the_lock() {
    let _s = serial();
    let _w = watchdog(T);
    let lock = Lock::new().unwrap();
    let log = Array::<u32>::new(64).unwrap();
    let mut children: Vec<_> = (0..3u32)
        .map(|i| {
            let (lock, log) = (lock.clone(), log.clone());
            fork_child(move || {
                for _ in 0..5 {
                    let _g = lock.lock().unwrap();
                    push(&log, 100 + i); // start marker
                    println!("hello world {i}");
                    std::thread::sleep(Duration::from_millis(2));
                    push(&log, 200 + i); // end marker
                }
                0
            })
        })
        .collect();
    for c in &mut children {
        c.expect_success(T);
    }
    let e = entries(&log);
    assert_eq!(e.len(), 30);
    for pair in e.chunks(2) {
        assert!(pair[0] >= 100 && pair[0] < 103, "log {e:?}");
        assert_eq!(
            pair[1],
            pair[0] + 100,
            "critical sections interleaved: {e:?}"
        );
    }
    assert!(!lock.is_locked());
}

#[test]
fn four_processes_adding_20000_each_under_the_values_lock_give_exactly_80000() {
    let _s = serial();
    let _w = watchdog(T);
    let v = Value::new(0u64).unwrap();
    let mut children: Vec<_> = (0..4)
        .map(|_| {
            let v = v.clone();
            fork_child(move || {
                for _ in 0..20_000 {
                    *v.lock().unwrap() += 1;
                }
                0
            })
        })
        .collect();
    for c in &mut children {
        c.expect_success(T);
    }
    assert_eq!(v.get(), 80_000);
}

#[test]
fn a_sigkilled_holder_gives_the_waiting_locker_owner_died_then_the_lock_works() {
    let _s = serial();
    let _w = watchdog(T);
    let lock = Lock::new().unwrap();
    let held = Event::new().unwrap();
    let (l2, h2) = (lock.clone(), held.clone());
    let mut holder = fork_child(move || {
        let g = l2.lock().unwrap();
        h2.set();
        std::thread::sleep(Duration::from_secs(120));
        drop(g);
        0
    });
    assert!(held.wait(WAIT));
    // A second process waits for the lock while the holder is killed.
    let waiting = Event::new().unwrap();
    let (l3, w3) = (lock.clone(), waiting.clone());
    let mut waiter = fork_child(move || {
        w3.set();
        match l3.lock_timeout(Duration::from_secs(30)) {
            Err(LockError::OwnerDied(g)) => drop(g),
            Ok(_) => return 2,
            Err(_) => return 3,
        }
        // Usable again from this process.
        match l3.lock_timeout(Duration::from_secs(30)) {
            Ok(g) => drop(g),
            Err(_) => return 4,
        }
        0
    });
    assert!(waiting.wait(WAIT));
    waiter.wait_asleep(PARKED, T);
    holder.kill();
    let killed_at = Instant::now();
    waiter.expect_success(T);
    eprintln!("owner death noticed after {:?}", killed_at.elapsed());
    // And from this process, and from yet another one.
    drop(lock.lock_timeout(Duration::from_secs(30)).unwrap());
    let l4 = lock.clone();
    fork_child(move || match l4.lock_timeout(Duration::from_secs(30)) {
        Ok(_) => 0,
        Err(_) => 5,
    })
    .expect_success(T);
    assert!(!lock.is_locked());
}

#[test]
fn a_sigkilled_holder_is_detected_by_a_later_locker_within_a_second() {
    let _s = serial();
    let _w = watchdog(T);
    let v = Value::new(7u32).unwrap();
    let held = Event::new().unwrap();
    let (v2, h2) = (v.clone(), held.clone());
    let mut holder = fork_child(move || {
        let mut g = v2.lock().unwrap();
        *g = 8;
        h2.set();
        std::thread::sleep(Duration::from_secs(120));
        0
    });
    assert!(held.wait(WAIT));
    holder.kill();
    match v.lock_timeout(Duration::from_secs(1)) {
        Err(LockError::OwnerDied(mut g)) => {
            assert_eq!(*g, 8);
            *g = 9;
        }
        other => panic!("expected OwnerDied, got {:?}", other.map(|_| ())),
    }
    assert_eq!(v.get(), 9);
    // try_lock notices a dead holder too.
    let (v2, h2) = (v.clone(), held.clone());
    held.clear();
    let mut holder = fork_child(move || {
        let _g = v2.lock().unwrap();
        h2.set();
        std::thread::sleep(Duration::from_secs(120));
        0
    });
    assert!(held.wait(WAIT));
    holder.kill();
    assert!(matches!(v.try_lock(), Err(LockError::OwnerDied(_))));
}

/// glibc's tst-robust8 in miniature: a child hammers the lock and is SIGKILLed at an
/// arbitrary point, over and over; every time, the next locker gets the lock (normally,
/// or with OwnerDied when the child died inside), and the counter it protects only grows.
#[test]
fn killing_a_busy_locker_at_random_points_never_wedges_the_lock() {
    let _s = serial();
    let _w = watchdog(T);
    let v = Value::new(0u64).unwrap();
    let started = Event::new().unwrap();
    let mut last = 0;
    let mut died_inside = 0;
    for round in 0..12u64 {
        started.clear();
        let (v2, s2) = (v.clone(), started.clone());
        let mut child = fork_child(move || loop {
            let mut g = v2.lock().unwrap_or_else(|e| e.into_guard().unwrap());
            *g += 1;
            s2.set();
        });
        assert!(started.wait(WAIT));
        std::thread::sleep(Duration::from_micros(300 + round * 700));
        child.kill();
        let now = match v.lock_timeout(Duration::from_secs(10)) {
            Ok(g) => *g,
            Err(LockError::OwnerDied(g)) => {
                died_inside += 1;
                *g
            }
            Err(e) => panic!("round {round}: {e}"),
        };
        assert!(now > last, "round {round}: counter {now} after {last}");
        last = now;
    }
    eprintln!("{died_inside} of 12 kills landed inside the critical section");
}

#[test]
fn a_thread_that_exits_holding_the_lock_in_a_live_process_is_an_owner_death() {
    let _s = serial();
    let _w = watchdog(T);
    let lock = Lock::new().unwrap();
    let (done, release) = (Event::new().unwrap(), Event::new().unwrap());
    let (l2, d2, r2) = (lock.clone(), done.clone(), release.clone());
    let mut child = fork_child(move || {
        let l3 = l2.clone();
        std::thread::spawn(move || std::mem::forget(l3.lock().unwrap()))
            .join()
            .unwrap();
        d2.set();
        // Stay alive until the parent has taken the lock over.
        if r2.wait(WAIT) {
            0
        } else {
            2
        }
    });
    assert!(done.wait(WAIT));
    assert!(lock.is_locked());
    match lock.lock_timeout(Duration::from_secs(10)) {
        Err(LockError::OwnerDied(g)) => drop(g),
        other => panic!("expected OwnerDied, got {:?}", other.map(|_| ())),
    }
    release.set();
    child.expect_success(T);
    drop(lock.try_lock().unwrap());
}

#[test]
fn try_lock_would_block_and_lock_timeout_times_out_while_another_process_holds_it() {
    let _s = serial();
    let _w = watchdog(T);
    let lock = Lock::new().unwrap();
    let (held, release) = (Event::new().unwrap(), Event::new().unwrap());
    let (l2, h2, r2) = (lock.clone(), held.clone(), release.clone());
    let mut child = fork_child(move || {
        let g = l2.lock().unwrap();
        h2.set();
        if !r2.wait(WAIT) {
            return 2;
        }
        drop(g);
        0
    });
    assert!(held.wait(WAIT));
    assert!(matches!(lock.try_lock(), Err(LockError::WouldBlock)));
    let t0 = Instant::now();
    assert!(matches!(
        lock.lock_timeout(Duration::from_millis(100)),
        Err(LockError::Timeout)
    ));
    assert!(t0.elapsed() >= Duration::from_millis(100));
    release.set();
    child.expect_success(T);
    drop(lock.lock_timeout(Duration::from_secs(30)).unwrap());
}

#[test]
fn rlock_is_reentrant_for_its_holder_and_exclusive_for_other_processes() {
    let _s = serial();
    let _w = watchdog(T);
    let r = RLock::new().unwrap();
    let (probe, answer) = (Event::new().unwrap(), Value::new(0u32).unwrap());
    let done = Event::new().unwrap();
    let (r2, p2, a2, d2) = (r.clone(), probe.clone(), answer.clone(), done.clone());
    // The child answers each probe with 1 (could lock) or 2 (WouldBlock).
    let mut child = fork_child(move || {
        for _ in 0..3 {
            if !p2.wait(WAIT) {
                return 3;
            }
            p2.clear();
            let got = match r2.try_lock() {
                Ok(g) => {
                    drop(g);
                    1
                }
                Err(LockError::WouldBlock) => 2,
                Err(_) => 4,
            };
            a2.set(got);
            d2.set();
        }
        0
    });
    let ask = || {
        done.clear();
        answer.set(0);
        probe.set();
        assert!(done.wait(WAIT));
        answer.get()
    };
    let outer = r.lock().unwrap();
    let inner = r.lock().unwrap();
    let inner2 = r.try_lock().unwrap();
    assert_eq!(ask(), 2);
    drop(inner2);
    drop(inner);
    assert_eq!(ask(), 2, "still held after dropping the inner levels");
    drop(outer);
    assert_eq!(ask(), 1, "released with the outermost level");
    child.expect_success(T);
}

#[test]
fn semaphore_admits_at_most_its_count_across_processes() {
    let _s = serial();
    let _w = watchdog(T);
    let sem = Semaphore::new(2).unwrap();
    let stats = Array::<u32>::new(2).unwrap(); // [inside now, max inside]
    let mut children: Vec<_> = (0..4)
        .map(|_| {
            let (sem, stats) = (sem.clone(), stats.clone());
            fork_child(move || {
                for _ in 0..10 {
                    if sem.acquire_timeout(Duration::from_secs(30)).is_err() {
                        return 2;
                    }
                    {
                        let mut s = stats.lock().unwrap();
                        s[0] += 1;
                        s[1] = s[1].max(s[0]);
                    }
                    std::thread::sleep(Duration::from_millis(2));
                    stats.lock().unwrap()[0] -= 1;
                    sem.release().unwrap();
                }
                0
            })
        })
        .collect();
    for c in &mut children {
        c.expect_success(T);
    }
    let s = stats.to_vec();
    assert_eq!(s[0], 0);
    assert!(s[1] >= 1 && s[1] <= 2, "max inside {}", s[1]);
    assert_eq!(sem.value(), 2);
    // Counts move across processes: the child takes both units.
    let s2 = sem.clone();
    fork_child(move || {
        if s2.try_acquire().is_ok() && s2.try_acquire().is_ok() && s2.try_acquire().is_err() {
            0
        } else {
            2
        }
    })
    .expect_success(T);
    assert!(matches!(sem.try_acquire(), Err(LockError::WouldBlock)));
    assert!(matches!(
        sem.acquire_timeout(Duration::from_millis(20)),
        Err(LockError::Timeout)
    ));
    // A release in another process wakes a waiter here.
    let s2 = sem.clone();
    let (pid, tid) = this_thread();
    let mut c = fork_child(move || {
        wait_asleep(pid, tid, PARKED, T);
        s2.release().map_or(2, |_| 0)
    });
    sem.acquire_timeout(Duration::from_secs(30)).unwrap();
    c.expect_success(T);
}

#[test]
fn bounded_semaphore_refuses_over_release_in_any_process() {
    let _s = serial();
    let _w = watchdog(T);
    let sem = BoundedSemaphore::new(1).unwrap();
    assert!(sem.release().is_err());
    sem.acquire().unwrap();
    let s2 = sem.clone();
    fork_child(move || {
        if s2.release().is_ok() && s2.release().is_err() {
            0
        } else {
            2
        }
    })
    .expect_success(T);
    assert_eq!(sem.value(), 1);
    sem.try_acquire().unwrap();
}

#[test]
fn event_set_in_one_process_wakes_a_waiting_process() {
    let _s = serial();
    let _w = watchdog(T);
    let (ev, ready) = (Event::new().unwrap(), Event::new().unwrap());
    let (e2, r2) = (ev.clone(), ready.clone());
    let mut child = fork_child(move || {
        if e2.wait(Some(Duration::from_millis(20))) {
            return 2; // not set yet
        }
        r2.set();
        if !e2.wait(WAIT) {
            return 3;
        }
        if e2.is_set() {
            0
        } else {
            4
        }
    });
    assert!(ready.wait(WAIT));
    child.wait_asleep(PARKED, T);
    ev.set();
    child.expect_success(T);
    ev.clear();
    assert!(!ev.is_set());
    assert!(!ev.wait(Some(Duration::from_millis(10))));
}

#[test]
fn condition_notify_wakes_a_process_waiting_for_a_predicate() {
    let _s = serial();
    let _w = watchdog(T);
    let cond = Condition::new().unwrap();
    let state = Value::new(0u32).unwrap();
    let waiting = Event::new().unwrap();
    let mut children: Vec<_> = (0..2)
        .map(|_| {
            let (c2, s2, w2) = (cond.clone(), state.clone(), waiting.clone());
            fork_child(move || {
                let g = c2.lock().unwrap();
                w2.set();
                let (g, ok) = c2
                    .wait_for(g, || s2.get() == 1, Some(Duration::from_secs(30)))
                    .unwrap();
                drop(g);
                if ok {
                    0
                } else {
                    2
                }
            })
        })
        .collect();
    assert!(waiting.wait(WAIT));
    for c in &children {
        c.wait_asleep(PARKED, T);
    }
    {
        let _g = cond.lock().unwrap();
        state.set(1);
        cond.notify_all();
    }
    for c in &mut children {
        c.expect_success(T);
    }
    // wait_timeout without a notify reports the timeout.
    let g = cond.lock().unwrap();
    let (g, notified) = cond.wait_timeout(g, Duration::from_millis(30)).unwrap();
    assert!(!notified);
    drop(g);
    // A single notify from another process wakes a plain wait.
    let (c2, w2) = (cond.clone(), waiting.clone());
    waiting.clear();
    let g = cond.lock().unwrap();
    let mut child = fork_child(move || {
        if !w2.wait(WAIT) {
            return 2;
        }
        let _g = c2.lock().unwrap(); // we released it inside wait
        c2.notify();
        0
    });
    waiting.set();
    let (g, notified) = cond.wait_timeout(g, Duration::from_secs(30)).unwrap();
    assert!(notified);
    drop(g);
    child.expect_success(T);
}

/// What a waiter process of [`cond_waiters`] reports in its entry of the results array.
const NOTIFIED: u32 = 1;
const TIMED_OUT: u32 = 2;
/// `wait_timeout` said "timed out" before its timeout had passed.
const EARLY: u32 = 3;

/// Forks one process per timeout in `timeouts`; process `i` takes the lock, counts
/// itself in `entered`, calls `wait_timeout(timeouts[i])` and records the outcome in
/// `res[i]` (`NOTIFIED`, `TIMED_OUT` or `EARLY`).
fn cond_waiters(
    cond: &Condition,
    timeouts: &[Duration],
    entered: &Value<u32>,
    res: &Array<u32>,
) -> Vec<Child> {
    timeouts
        .iter()
        .enumerate()
        .map(|(i, &timeout)| {
            let (c, e, r) = (cond.clone(), entered.clone(), res.clone());
            fork_child(move || {
                let g = c.lock().unwrap();
                e.set(e.get() + 1);
                let start = Instant::now();
                let (g, notified) = c.wait_timeout(g, timeout).unwrap();
                drop(g);
                let outcome = match notified {
                    true => NOTIFIED,
                    false if start.elapsed() >= timeout => TIMED_OUT,
                    false => EARLY,
                };
                r.lock().unwrap()[i] = outcome;
                0
            })
        })
        .collect()
}

/// Takes the condition's lock once `n` waiters have entered their wait (each counts
/// itself under the lock, and `wait` queues it before it releases the lock).
fn when_waiting<'a>(cond: &'a Condition, entered: &Value<u32>, n: u32) -> LockGuard<'a> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let g = cond.lock().unwrap();
        if entered.get() == n {
            return g;
        }
        drop(g);
        assert!(Instant::now() < deadline, "waiters did not start");
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn outcomes(children: &mut [Child], res: &Array<u32>) -> Vec<u32> {
    for c in children.iter_mut() {
        c.expect_success(T);
    }
    let mut v = res.to_vec();
    v.sort_unstable();
    v
}

#[test]
fn one_notify_releases_exactly_one_of_two_waiting_processes_the_other_times_out() {
    let _s = serial();
    let _w = watchdog(T);
    let cond = Condition::new().unwrap();
    let entered = Value::new(0u32).unwrap();
    let res = Array::<u32>::new(2).unwrap();
    let timeout = Duration::from_millis(1500);
    let mut children = cond_waiters(&cond, &[timeout, timeout], &entered, &res);
    let g = when_waiting(&cond, &entered, 2);
    cond.notify();
    drop(g);
    // Python: the one not woken returns False after its timeout. It used to return
    // true (the notify counter had changed).
    assert_eq!(outcomes(&mut children, &res), [NOTIFIED, TIMED_OUT]);
}

#[test]
fn notify_all_releases_every_waiting_process_and_notify_n_exactly_n() {
    let _s = serial();
    let _w = watchdog(T);
    let cond = Condition::new().unwrap();
    let entered = Value::new(0u32).unwrap();
    let res = Array::<u32>::new(3).unwrap();
    let long = Duration::from_secs(30);
    let mut children = cond_waiters(&cond, &[long; 3], &entered, &res);
    let g = when_waiting(&cond, &entered, 3);
    cond.notify_all();
    drop(g);
    assert_eq!(outcomes(&mut children, &res), [NOTIFIED; 3]);

    let (entered, res) = (Value::new(0u32).unwrap(), Array::<u32>::new(3).unwrap());
    let t = Duration::from_millis(1500);
    let mut children = cond_waiters(&cond, &[t; 3], &entered, &res);
    let g = when_waiting(&cond, &entered, 3);
    cond.notify_n(2);
    drop(g);
    assert_eq!(
        outcomes(&mut children, &res),
        [NOTIFIED, NOTIFIED, TIMED_OUT]
    );
}

#[test]
fn a_notify_after_a_waiters_timeout_goes_to_the_next_waiter_not_to_the_withdrawn_one() {
    let _s = serial();
    let _w = watchdog(T);
    let cond = Condition::new().unwrap();
    let entered = Value::new(0u32).unwrap();
    let res = Array::<u32>::new(2).unwrap();
    // The first in the queue gives up after 100 ms; the second would wait 30 s.
    let mut first = cond_waiters(&cond, &[Duration::from_millis(100)], &entered, &res);
    drop(when_waiting(&cond, &entered, 1));
    let (e2, r2) = (Value::new(0u32).unwrap(), Array::<u32>::new(2).unwrap());
    let mut second = cond_waiters(&cond, &[Duration::from_secs(30)], &e2, &r2);
    drop(when_waiting(&cond, &e2, 1));
    first[0].expect_success(T);
    assert_eq!(res.to_vec()[0], TIMED_OUT);
    {
        let _g = cond.lock().unwrap();
        cond.notify();
    }
    second[0].expect_success(T);
    assert_eq!(r2.to_vec()[0], NOTIFIED);
}

#[test]
fn a_waiter_sigkilled_while_waiting_takes_at_most_one_notify_with_it() {
    let _s = serial();
    let _w = watchdog(T);
    let cond = Condition::new().unwrap();
    let entered = Value::new(0u32).unwrap();
    let res = Array::<u32>::new(2).unwrap();
    let long = Duration::from_secs(30);
    let mut victim = cond_waiters(&cond, &[long], &entered, &res);
    drop(when_waiting(&cond, &entered, 1));
    let (e2, r2) = (Value::new(0u32).unwrap(), Array::<u32>::new(2).unwrap());
    let mut live = cond_waiters(&cond, &[long], &e2, &r2);
    drop(when_waiting(&cond, &e2, 1));
    victim[0].kill();
    // The first notify reaches the dead waiter (documented); the second the live one.
    for _ in 0..2 {
        let _g = cond.lock().unwrap();
        cond.notify();
    }
    live[0].expect_success(T);
    assert_eq!(r2.to_vec()[0], NOTIFIED);
}

#[test]
fn a_condition_built_on_an_existing_lock_accepts_that_locks_guards() {
    let _s = serial();
    let _w = watchdog(T);
    let lock = Lock::new().unwrap();
    let cond = Condition::with_lock(&lock).unwrap();
    let state = Value::new(0u32).unwrap();
    let waiting = Event::new().unwrap();
    let (l2, c2, s2, w2) = (lock.clone(), cond.clone(), state.clone(), waiting.clone());
    let mut child = fork_child(move || {
        let g = l2.lock().unwrap(); // the plain lock's guard
        w2.set();
        let (g, ok) = c2.wait_for(g, || s2.get() == 1, WAIT).unwrap();
        drop(g);
        if ok {
            0
        } else {
            2
        }
    });
    assert!(waiting.wait(WAIT));
    {
        let _g = cond.lock().unwrap(); // the condition's guard: the same lock
        assert!(lock.is_locked());
        state.set(1);
        cond.notify();
    }
    child.expect_success(T);
    assert!(!lock.is_locked());
}

#[test]
#[should_panic(expected = "guard of another lock")]
fn waiting_with_a_guard_of_an_unrelated_lock_panics() {
    // Serialized with the tests that fork: a child forked while this thread panics would
    // find std's backtrace lock held for ever.
    let _s = serial();
    let cond = Condition::new().unwrap();
    let other = Lock::new().unwrap();
    let g = other.lock().unwrap();
    let _ = cond.wait_timeout(g, Duration::from_millis(1));
}

#[test]
fn barrier_of_three_processes_releases_them_together_with_distinct_indices() {
    let _s = serial();
    let _w = watchdog(T);
    let b = Barrier::new(3).unwrap();
    let seen = Array::<u32>::new(6).unwrap();
    let mut children: Vec<_> = (0..3usize)
        .map(|i| {
            let (b, seen) = (b.clone(), seen.clone());
            fork_child(move || {
                for round in 0..2 {
                    match b.wait(WAIT) {
                        Ok(idx) => seen.set(round * 3 + i, 10 + idx as u32),
                        Err(_) => return 2,
                    }
                }
                0
            })
        })
        .collect();
    for c in &mut children {
        c.expect_success(T);
    }
    let v = seen.to_vec();
    for round in v.chunks(3) {
        let mut r = round.to_vec();
        r.sort_unstable();
        assert_eq!(r, [10, 11, 12], "indices {v:?}");
    }
    assert_eq!(b.n_waiting(), 0);
}

#[test]
fn a_barrier_wait_that_times_out_breaks_it_for_every_process_until_reset() {
    let _s = serial();
    let _w = watchdog(T);
    let b = Barrier::new(3).unwrap();
    let b2 = b.clone();
    // One other party arrives and waits; the third never comes.
    let mut child = fork_child(move || match b2.wait(WAIT) {
        Err(BarrierError::Broken) => 0,
        _ => 2,
    });
    let t0 = Instant::now();
    while b.n_waiting() != 1 {
        assert!(t0.elapsed() < Duration::from_secs(30));
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(
        b.wait(Some(Duration::from_millis(50))),
        Err(BarrierError::Timeout)
    );
    child.expect_success(T);
    assert!(b.broken());
    assert_eq!(b.wait(WAIT), Err(BarrierError::Broken));
    b.reset();
    assert!(!b.broken());
    let mut children: Vec<_> = (0..2)
        .map(|_| {
            let b2 = b.clone();
            fork_child(move || b2.wait(WAIT).map_or(2, |_| 0))
        })
        .collect();
    b.wait(WAIT).unwrap();
    for c in &mut children {
        c.expect_success(T);
    }
}

#[test]
fn an_array_of_1000_u32_updated_from_two_processes_keeps_every_update() {
    let _s = serial();
    let _w = watchdog(T);
    let a = Array::<u32>::new(1000).unwrap();
    let mut children: Vec<_> = (0..2u32)
        .map(|k| {
            let a = a.clone();
            fork_child(move || {
                for round in 0..50 {
                    let mut g = a.lock().unwrap();
                    for (i, x) in g.iter_mut().enumerate() {
                        *x += 1 + k * (i as u32 % 3) + round % 2;
                    }
                }
                0
            })
        })
        .collect();
    for c in &mut children {
        c.expect_success(T);
    }
    let v = a.to_vec();
    for (i, x) in v.iter().enumerate() {
        let i = i as u32;
        // 50 rounds each: +1 per round from both, +k*(i%3) from k=1, +1 every odd round.
        assert_eq!(*x, 2 * 50 + 50 * (i % 3) + 2 * 25, "element {i}");
    }
    assert_eq!(a.len(), 1000);
}

#[test]
fn value_and_array_start_from_their_initializers() {
    let v = Value::new([1u16, 2, 3]).unwrap();
    assert_eq!(v.get(), [1, 2, 3]);
    let a = Array::new(vec![5i64, -6]).unwrap();
    assert_eq!(a.to_vec(), [5, -6]);
    let e = Array::<u8>::new(0).unwrap();
    assert!(e.is_empty() && e.to_vec().is_empty());
}

#[test]
fn handles_are_clone_send_sync() {
    fn check<T: Clone + Send + Sync>() {}
    check::<Lock>();
    check::<RLock>();
    check::<Semaphore>();
    check::<BoundedSemaphore>();
    check::<Event>();
    check::<Condition>();
    check::<Barrier>();
    check::<Value<u64>>();
    check::<Array<u32>>();
}

#[test]
fn serializing_a_handle_outside_a_process_hand_off_is_an_error() {
    let lock = Lock::new().unwrap();
    assert!(shmproc::codec::encode(&lock).is_err());
    let v = Value::new(1u8).unwrap();
    assert!(shmproc::codec::encode(&v).is_err());
    let b = Barrier::new(2).unwrap();
    assert!(shmproc::codec::encode(&b).is_err());
}
