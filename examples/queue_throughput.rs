//! Queue throughput between processes: P producer and P consumer processes move `u64`
//! items through one `Queue<u64>` (default capacity), for P = 1, 2, 4.
//!
//! `cargo run --release --example queue_throughput [ITEMS [P]]` (default 4,000,000 items
//! per configuration, 3 runs each; the best run is printed). Process start-up is
//! excluded: children wait for a start signal; the clock stops when every consumer has
//! exited after the queue was closed and drained.

use std::time::{Duration, Instant};

use shmproc::{Error, Process, Queue};

fn run(pairs: u64, items: u64) -> Duration {
    let q = Queue::<u64>::new().unwrap();
    let go = Queue::<()>::with_capacity(16).unwrap();
    let per = items / pairs;
    let mut kids = Vec::new();
    for p in 0..pairs {
        let (q, go) = (q.clone(), go.clone());
        let mut c = Process::fork(move || {
            go.get().unwrap();
            for i in 0..per {
                q.put(&(p * per + i)).unwrap();
            }
        });
        c.start().unwrap();
        kids.push(c);
    }
    for _ in 0..pairs {
        let (q, go) = (q.clone(), go.clone());
        let mut c = Process::fork(move || {
            go.get().unwrap();
            let mut n = 0u64;
            loop {
                match q.get() {
                    Ok(v) => n = n.wrapping_add(v),
                    Err(Error::Closed) => break,
                    Err(e) => panic!("{e}"),
                }
            }
            std::hint::black_box(n);
        });
        c.start().unwrap();
        kids.push(c);
    }
    std::thread::sleep(Duration::from_millis(50));
    let t = Instant::now();
    for _ in 0..2 * pairs {
        go.put(&()).unwrap();
    }
    let (producers, consumers) = kids.split_at_mut(pairs as usize);
    for p in producers {
        p.join().unwrap();
        assert_eq!(p.exitcode(), Some(0));
    }
    q.close();
    for c in consumers {
        c.join().unwrap();
        assert_eq!(c.exitcode(), Some(0));
    }
    t.elapsed()
}

fn main() {
    shmproc::init();
    let items: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(4_000_000);
    println!(
        "Queue<u64>, {items} items, {} cores; best of 3",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let only: Option<u64> = std::env::args().nth(2).and_then(|a| a.parse().ok());
    for pairs in [1u64, 2, 4] {
        if only.is_some_and(|o| o != pairs) {
            continue;
        }
        let best = (0..3).map(|_| run(pairs, items)).min().unwrap();
        println!(
            "{pairs} -> {pairs}: {:>8.2} M items/s ({best:?})",
            items as f64 / best.as_secs_f64() / 1e6
        );
    }
}
