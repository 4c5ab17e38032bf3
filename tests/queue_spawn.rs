//! Queue tests with children started by both start methods (fork and spawn), the
//! handles travelling as process args.
//!
//! A `harness = false` test (see Cargo.toml): spawned children re-execute this binary,
//! so `main` calls `shmproc::init()` first. Tests run one at a time on the main thread;
//! a watchdog thread aborts the binary if anything hangs.
//!
//! Filter: `cargo test --test queue_spawn -- SUBSTRING`.

mod common;
mod harness;

use std::time::Duration;

use shmproc::{get_context, Process, StartMethod};
use shmproc::{pipe, Error, JoinableQueue, Queue, Sender};

const WATCHDOG: Duration = Duration::from_secs(240);
const T: Duration = Duration::from_secs(60);

const ITEMS: u64 = 400_000;
const PER_PRODUCER: u64 = ITEMS / 2;

// ---------------------------------------------------------------------------------------
// targets
// ---------------------------------------------------------------------------------------

fn producer((q, p): (Queue<u64>, u64)) {
    for i in 0..PER_PRODUCER {
        q.put(&(p * PER_PRODUCER + i)).unwrap();
    }
}

/// Counts how often each item arrived; checks each producer's items come in order.
fn consumer((q, tx): (Queue<u64>, Sender<Vec<u8>>)) {
    let mut tally = common::Tally::new(2, PER_PRODUCER);
    loop {
        match q.get() {
            Ok(v) => tally.add(v),
            Err(Error::Closed) => break,
            Err(e) => panic!("get: {e}"),
        }
    }
    tx.send(&tally.seen).unwrap();
}

fn big_producer(q: Queue<Vec<u8>>) {
    q.put(&pattern(1 << 20, 5)).unwrap();
}

fn worker(q: JoinableQueue<u32>) {
    loop {
        match q.get() {
            Ok(_) => q.task_done().unwrap(),
            Err(Error::Closed) => return,
            Err(e) => panic!("get: {e}"),
        }
    }
}

fn closer(q: Queue<u8>) {
    q.close();
}

// ---------------------------------------------------------------------------------------
// helpers
// ---------------------------------------------------------------------------------------

fn pattern(n: usize, seed: u8) -> Vec<u8> {
    let chunk: Vec<u8> = (0..4093usize)
        .map(|i| (i as u8).wrapping_mul(31) ^ seed)
        .collect();
    let mut v = Vec::with_capacity(n);
    while v.len() < n {
        let k = chunk.len().min(n - v.len());
        v.extend_from_slice(&chunk[..k]);
    }
    v
}

fn start<A>(m: StartMethod, target: fn(A), args: A) -> Process
where
    A: serde::Serialize + serde::de::DeserializeOwned + Send + 'static,
{
    let mut p = get_context(m).process(target, args);
    p.start().unwrap();
    p
}

fn join_ok(p: &mut Process) {
    p.join_timeout(T).unwrap();
    if p.exitcode().is_none() {
        let _ = p.kill();
        let _ = p.join_timeout(T);
        panic!("child did not finish in {T:?}");
    }
    assert_eq!(p.exitcode(), Some(0), "child failed");
}

// ---------------------------------------------------------------------------------------
// tests
// ---------------------------------------------------------------------------------------

fn two_producers_two_consumers_deliver_every_item_exactly_once(m: StartMethod) {
    let q = Queue::<u64>::new().unwrap();
    let (tx, rx) = pipe::<Vec<u8>>().unwrap();
    let mut consumers: Vec<_> = (0..2)
        .map(|_| start(m, consumer, (q.clone(), tx.clone())))
        .collect();
    drop(tx);
    let mut producers: Vec<_> = (0..2).map(|p| start(m, producer, (q.clone(), p))).collect();
    for p in &mut producers {
        join_ok(p);
    }
    q.close();
    let mut total = vec![0u32; ITEMS as usize];
    for _ in 0..2 {
        for (t, s) in total.iter_mut().zip(rx.recv_timeout(T).unwrap()) {
            *t += u32::from(s);
        }
    }
    for c in &mut consumers {
        join_ok(c);
    }
    common::assert_exactly_once(&total);
}

fn a_large_item_from_a_child_arrives_intact(m: StartMethod) {
    let q = Queue::<Vec<u8>>::with_capacity(2).unwrap();
    let mut p = start(m, big_producer, q.clone());
    join_ok(&mut p);
    assert!(q.get_timeout(T).unwrap() == pattern(1 << 20, 5));
}

fn join_waits_for_workers_in_children(m: StartMethod) {
    let q = JoinableQueue::<u32>::with_capacity(64).unwrap();
    let mut workers: Vec<_> = (0..2).map(|_| start(m, worker, q.clone())).collect();
    for i in 0..1000 {
        q.put(&i).unwrap();
    }
    q.join().unwrap();
    assert!(q.is_empty());
    q.close();
    for w in &mut workers {
        join_ok(w);
    }
}

fn close_in_a_child_closes_for_the_parent(m: StartMethod) {
    let q = Queue::<u8>::with_capacity(4).unwrap();
    q.put(&1).unwrap();
    let mut p = start(m, closer, q.clone());
    join_ok(&mut p);
    assert!(matches!(q.put(&2), Err(Error::Closed)));
    assert_eq!(q.get().unwrap(), 1);
    assert!(matches!(q.get(), Err(Error::Closed)));
}

use harness::Test;

const TESTS: &[Test] = &[
    (
        "two_producers_two_consumers_deliver_every_item_exactly_once",
        two_producers_two_consumers_deliver_every_item_exactly_once,
    ),
    (
        "a_large_item_from_a_child_arrives_intact",
        a_large_item_from_a_child_arrives_intact,
    ),
    (
        "join_waits_for_workers_in_children",
        join_waits_for_workers_in_children,
    ),
    (
        "close_in_a_child_closes_for_the_parent",
        close_in_a_child_closes_for_the_parent,
    ),
];

fn main() {
    shmproc::init();
    harness::run("queue_spawn", TESTS, &harness::METHODS, WATCHDOG)
}
