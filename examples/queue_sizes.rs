//! Queue throughput by item size between one producer and one consumer process:
//! inline items (up to 104 encoded bytes) versus side-file items.
//!
//! `cargo run --release --example queue_sizes`

use std::time::Instant;

use shmproc::{Process, Queue};

fn run(size: usize, items: usize) -> f64 {
    let q = Queue::<Vec<u8>>::with_capacity(1024).unwrap();
    let q2 = q.clone();
    let mut c = Process::fork(move || {
        for _ in 0..items {
            std::hint::black_box(q2.get().unwrap());
        }
    });
    c.start().unwrap();
    let item = vec![7u8; size];
    let t = Instant::now();
    for _ in 0..items {
        q.put(&item).unwrap();
    }
    c.join().unwrap();
    assert_eq!(c.exitcode(), Some(0));
    items as f64 / t.elapsed().as_secs_f64()
}

fn main() {
    shmproc::init();
    for (size, items) in [
        (8, 1_000_000),
        (100, 1_000_000),
        (200, 20_000),
        (4096, 20_000),
        (1 << 20, 500),
    ] {
        let rate = run(size, items);
        println!(
            "{size:>8} B: {:>10.0} items/s  {:>8.1} MB/s",
            rate,
            rate * size as f64 / 1e6
        );
    }
}
