//! Sync objects handed to child processes as `Process` args, under both start methods
//! (fork, and spawn: a re-executed binary that receives the handles' descriptors).
//!
//! A `harness = false` test (see Cargo.toml): spawned children re-execute this binary,
//! so `main` calls `shmproc::init()` first. Tests run one at a time on the main thread;
//! a watchdog thread aborts the binary if anything hangs. Children report failure with a
//! non-zero exit code.
//!
//! Filter: `cargo test --test sync_spawn -- SUBSTRING`.

mod harness;

use std::time::{Duration, Instant};

use serde::{de::DeserializeOwned, Serialize};
use shmproc::{get_context, Process, StartMethod};
use shmproc::{
    Array, Barrier, BarrierError, BoundedSemaphore, Condition, Event, Lock, LockError, RLock,
    Semaphore, Value,
};

const WATCHDOG: Duration = Duration::from_secs(240);
const WAIT: Option<Duration> = Some(Duration::from_secs(30));
const LONG: Duration = Duration::from_secs(30);

fn fail(code: i32) -> ! {
    std::process::exit(code)
}

// ---------------------------------------------------------------------------------------
// targets (run in the children)
// ---------------------------------------------------------------------------------------

/// Appends `x` to a log kept in `log` (element 0 is the length).
fn push(log: &Array<u32>, x: u32) {
    let mut g = log.lock().unwrap();
    let n = g[0] as usize + 1;
    g[n] = x;
    g[0] = n as u32;
}

/// The seed's example: `l.acquire(); print('hello world', i); l.release()`.
fn hello_under_lock((lock, log, i): (Lock, Array<u32>, u32)) {
    for _ in 0..3 {
        let _g = lock.lock().unwrap();
        push(&log, 100 + i);
        println!("hello world {i}");
        std::thread::sleep(Duration::from_millis(2));
        push(&log, 200 + i);
    }
}

fn add_20000(v: Value<u64>) {
    for _ in 0..20_000 {
        *v.lock().unwrap() += 1;
    }
}

fn hold_forever((lock, held): (Lock, Event)) {
    let _g = lock.lock().unwrap();
    held.set();
    std::thread::sleep(Duration::from_secs(120));
}

fn hold_until((lock, held, release): (Lock, Event, Event)) {
    let g = lock.lock().unwrap();
    held.set();
    if !release.wait(WAIT) {
        fail(2);
    }
    drop(g);
}

fn lock_once(lock: Lock) {
    match lock.lock_timeout(LONG) {
        Ok(_) => {}
        Err(_) => fail(2),
    }
}

/// Exits 0 when `try_lock` would block, 1 when it succeeds.
fn rlock_probe(r: RLock) {
    match r.try_lock() {
        Err(LockError::WouldBlock) => {}
        Ok(_) => fail(10),
        Err(_) => fail(11),
    }
}

fn take_two(s: Semaphore) {
    if !(s.try_acquire().is_ok() && s.try_acquire().is_ok() && s.try_acquire().is_err()) {
        fail(2);
    }
}

fn release_later(s: Semaphore) {
    std::thread::sleep(Duration::from_millis(50));
    if s.release().is_err() {
        fail(2);
    }
}

fn over_release(s: BoundedSemaphore) {
    if !(s.release().is_ok() && s.release().is_err()) {
        fail(2);
    }
}

fn wait_for_event((ev, ready): (Event, Event)) {
    if ev.wait(Some(Duration::from_millis(10))) {
        fail(2);
    }
    ready.set();
    if !ev.wait(WAIT) {
        fail(3);
    }
}

fn wait_on_condition((c, state, waiting): (Condition, Value<u32>, Event)) {
    let g = c.lock().unwrap();
    waiting.set();
    let (g, ok) = c.wait_for(g, || state.get() == 1, WAIT).unwrap();
    drop(g);
    if !ok {
        fail(2);
    }
}

fn wait_with_the_plain_lock((lock, c, state, waiting): (Lock, Condition, Value<u32>, Event)) {
    let g = lock.lock().unwrap();
    waiting.set();
    let (g, ok) = c.wait_for(g, || state.get() == 1, WAIT).unwrap();
    drop(g);
    if !ok {
        fail(2);
    }
}

fn barrier_party((b, seen, i): (Barrier, Array<u32>, u32)) {
    for round in 0..2 {
        match b.wait(WAIT) {
            Ok(idx) => seen.set(round * 3 + i as usize, 10 + idx as u32),
            Err(_) => fail(2),
        }
    }
}

fn barrier_expect_broken(b: Barrier) {
    if b.wait(WAIT) != Err(BarrierError::Broken) {
        fail(2);
    }
}

fn bump_array((a, k): (Array<u32>, u32)) {
    for round in 0..20 {
        let mut g = a.lock().unwrap();
        for (i, x) in g.iter_mut().enumerate() {
            *x += 1 + k * (i as u32 % 3) + round % 2;
        }
    }
}

// ---------------------------------------------------------------------------------------
// helpers
// ---------------------------------------------------------------------------------------

fn start<A, R>(m: StartMethod, f: fn(A) -> R, args: A) -> Process
where
    A: Serialize + DeserializeOwned + Send + 'static,
    R: 'static,
{
    let mut p = get_context(m).process(f, args);
    p.start().unwrap();
    p
}

/// Joins (killing it after 60 s) and returns the exit code.
fn finish(mut p: Process) -> i32 {
    p.join_timeout(Duration::from_secs(60)).unwrap();
    match p.exitcode() {
        Some(c) => c,
        None => {
            let _ = p.kill();
            let _ = p.join();
            panic!("child did not exit within 60 s");
        }
    }
}

fn kill(mut p: Process) {
    p.kill().unwrap();
    p.join().unwrap();
}

// ---------------------------------------------------------------------------------------
// tests
// ---------------------------------------------------------------------------------------

fn the_seeds_three_processes_print_one_after_another_inside_the_lock(m: StartMethod) {
    let lock = Lock::new().unwrap();
    let log = Array::<u32>::new(32).unwrap();
    let ps: Vec<_> = (0..3)
        .map(|i| start(m, hello_under_lock, (lock.clone(), log.clone(), i)))
        .collect();
    for p in ps {
        assert_eq!(finish(p), 0);
    }
    let v = log.to_vec();
    let e = &v[1..=v[0] as usize];
    assert_eq!(e.len(), 18);
    for pair in e.chunks(2) {
        assert!((100..103).contains(&pair[0]), "log {e:?}");
        assert_eq!(
            pair[1],
            pair[0] + 100,
            "critical sections interleaved: {e:?}"
        );
    }
}

fn four_processes_adding_20000_each_give_exactly_80000(m: StartMethod) {
    let v = Value::new(0u64).unwrap();
    let ps: Vec<_> = (0..4).map(|_| start(m, add_20000, v.clone())).collect();
    for p in ps {
        assert_eq!(finish(p), 0);
    }
    assert_eq!(v.get(), 80_000);
}

fn a_sigkilled_holder_gives_the_next_locker_owner_died_then_the_lock_works(m: StartMethod) {
    let lock = Lock::new().unwrap();
    let held = Event::new().unwrap();
    let holder = start(m, hold_forever, (lock.clone(), held.clone()));
    assert!(held.wait(WAIT));
    kill(holder);
    match lock.lock_timeout(Duration::from_secs(1)) {
        Err(LockError::OwnerDied(g)) => drop(g),
        other => panic!("expected OwnerDied, got {:?}", other.map(|_| ())),
    }
    drop(lock.lock_timeout(LONG).unwrap());
    assert_eq!(finish(start(m, lock_once, lock.clone())), 0);
    assert!(!lock.is_locked());
}

fn try_lock_would_block_and_lock_timeout_times_out_while_a_child_holds_it(m: StartMethod) {
    let lock = Lock::new().unwrap();
    let (held, release) = (Event::new().unwrap(), Event::new().unwrap());
    let p = start(m, hold_until, (lock.clone(), held.clone(), release.clone()));
    assert!(held.wait(WAIT));
    assert!(matches!(lock.try_lock(), Err(LockError::WouldBlock)));
    assert!(matches!(
        lock.lock_timeout(Duration::from_millis(50)),
        Err(LockError::Timeout)
    ));
    release.set();
    assert_eq!(finish(p), 0);
    drop(lock.lock_timeout(LONG).unwrap());
}

fn rlock_nests_for_its_holder_and_excludes_a_child(m: StartMethod) {
    let r = RLock::new().unwrap();
    let a = r.lock().unwrap();
    let b = r.lock().unwrap();
    assert_eq!(finish(start(m, rlock_probe, r.clone())), 0);
    drop(b);
    assert_eq!(finish(start(m, rlock_probe, r.clone())), 0);
    drop(a);
    assert_eq!(
        finish(start(m, rlock_probe, r.clone())),
        10,
        "free after the outer level"
    );
}

fn semaphore_units_move_between_processes(m: StartMethod) {
    let s = Semaphore::new(2).unwrap();
    assert_eq!(finish(start(m, take_two, s.clone())), 0);
    assert!(matches!(s.try_acquire(), Err(LockError::WouldBlock)));
    let p = start(m, release_later, s.clone());
    s.acquire_timeout(LONG).unwrap();
    assert_eq!(finish(p), 0);
    let b = BoundedSemaphore::new(1).unwrap();
    b.acquire().unwrap();
    assert_eq!(finish(start(m, over_release, b.clone())), 0);
    assert_eq!(b.value(), 1);
}

fn event_set_wakes_a_waiting_child(m: StartMethod) {
    let (ev, ready) = (Event::new().unwrap(), Event::new().unwrap());
    let p = start(m, wait_for_event, (ev.clone(), ready.clone()));
    assert!(ready.wait(WAIT));
    std::thread::sleep(Duration::from_millis(20));
    ev.set();
    assert_eq!(finish(p), 0);
}

fn condition_notify_all_wakes_waiting_children(m: StartMethod) {
    let c = Condition::new().unwrap();
    let state = Value::new(0u32).unwrap();
    let waiting = Event::new().unwrap();
    let p = start(
        m,
        wait_on_condition,
        (c.clone(), state.clone(), waiting.clone()),
    );
    assert!(waiting.wait(WAIT));
    std::thread::sleep(Duration::from_millis(20));
    {
        let _g = c.lock().unwrap();
        state.set(1);
        c.notify_all();
    }
    assert_eq!(finish(p), 0);
}

fn condition_with_an_existing_lock_takes_that_locks_guard_in_a_child(m: StartMethod) {
    let lock = Lock::new().unwrap();
    let c = Condition::with_lock(&lock).unwrap();
    let state = Value::new(0u32).unwrap();
    let waiting = Event::new().unwrap();
    let args = (lock.clone(), c.clone(), state.clone(), waiting.clone());
    let p = start(m, wait_with_the_plain_lock, args);
    assert!(waiting.wait(WAIT));
    {
        let _g = lock.lock().unwrap();
        state.set(1);
        c.notify();
    }
    assert_eq!(finish(p), 0);
}

fn barrier_of_three_children_with_distinct_indices(m: StartMethod) {
    let b = Barrier::new(3).unwrap();
    let seen = Array::<u32>::new(6).unwrap();
    let ps: Vec<_> = (0..3)
        .map(|i| start(m, barrier_party, (b.clone(), seen.clone(), i)))
        .collect();
    for p in ps {
        assert_eq!(finish(p), 0);
    }
    for round in seen.to_vec().chunks(3) {
        let mut r = round.to_vec();
        r.sort_unstable();
        assert_eq!(r, [10, 11, 12]);
    }
}

fn a_timed_out_barrier_is_broken_for_a_waiting_child(m: StartMethod) {
    let b = Barrier::new(3).unwrap();
    let p = start(m, barrier_expect_broken, b.clone());
    let t0 = Instant::now();
    while b.n_waiting() != 1 {
        assert!(t0.elapsed() < LONG);
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(
        b.wait(Some(Duration::from_millis(30))),
        Err(BarrierError::Timeout)
    );
    assert_eq!(finish(p), 0);
    assert!(b.broken());
}

fn an_array_of_1000_u32_updated_from_two_children(m: StartMethod) {
    let a = Array::<u32>::new(1000).unwrap();
    let ps: Vec<_> = (0..2)
        .map(|k| start(m, bump_array, (a.clone(), k)))
        .collect();
    for p in ps {
        assert_eq!(finish(p), 0);
    }
    for (i, x) in a.to_vec().iter().enumerate() {
        let i = i as u32;
        assert_eq!(*x, 2 * 20 + 20 * (i % 3) + 2 * 10, "element {i}");
    }
}

use harness::Test;

const TESTS: &[Test] = &[
    (
        "the_seeds_three_processes_print_one_after_another_inside_the_lock",
        the_seeds_three_processes_print_one_after_another_inside_the_lock,
    ),
    (
        "four_processes_adding_20000_each_give_exactly_80000",
        four_processes_adding_20000_each_give_exactly_80000,
    ),
    (
        "a_sigkilled_holder_gives_the_next_locker_owner_died_then_the_lock_works",
        a_sigkilled_holder_gives_the_next_locker_owner_died_then_the_lock_works,
    ),
    (
        "try_lock_would_block_and_lock_timeout_times_out_while_a_child_holds_it",
        try_lock_would_block_and_lock_timeout_times_out_while_a_child_holds_it,
    ),
    (
        "rlock_nests_for_its_holder_and_excludes_a_child",
        rlock_nests_for_its_holder_and_excludes_a_child,
    ),
    (
        "semaphore_units_move_between_processes",
        semaphore_units_move_between_processes,
    ),
    (
        "event_set_wakes_a_waiting_child",
        event_set_wakes_a_waiting_child,
    ),
    (
        "condition_notify_all_wakes_waiting_children",
        condition_notify_all_wakes_waiting_children,
    ),
    (
        "condition_with_an_existing_lock_takes_that_locks_guard_in_a_child",
        condition_with_an_existing_lock_takes_that_locks_guard_in_a_child,
    ),
    (
        "barrier_of_three_children_with_distinct_indices",
        barrier_of_three_children_with_distinct_indices,
    ),
    (
        "a_timed_out_barrier_is_broken_for_a_waiting_child",
        a_timed_out_barrier_is_broken_for_a_waiting_child,
    ),
    (
        "an_array_of_1000_u32_updated_from_two_children",
        an_array_of_1000_u32_updated_from_two_children,
    ),
];

fn main() {
    shmproc::init();
    harness::run("sync_spawn", TESTS, &harness::METHODS, WATCHDOG)
}
