//! Pool scaling with a CPU-heavy task: the same `map` with 1 and with 2 workers (this
//! machine has 2 cores), median of 5 runs each.
//!
//! `cargo run --release --example pool_scaling`
use std::time::{Duration, Instant};

use shmproc::Pool;

/// About a millisecond of arithmetic per item.
fn heavy(seed: u64) -> u64 {
    let mut x = seed | 1;
    for _ in 0..1_500_000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
    }
    x
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() -> shmproc::Result<()> {
    shmproc::init();
    let items: Vec<u64> = (0..400).collect();
    let expect: Vec<u64> = items.iter().map(|&x| heavy(x)).collect();
    let mut results = Vec::new();
    for workers in [1usize, 2] {
        let pool = Pool::builder().workers(workers).build()?;
        let mut times = Vec::new();
        for _ in 0..5 {
            let t = Instant::now();
            let out = pool.map(heavy, items.iter().copied())?;
            times.push(t.elapsed());
            assert_eq!(out, expect);
        }
        let m = median(times);
        println!(
            "{workers} worker(s): map of {} heavy items: median {m:.1?}",
            items.len()
        );
        results.push(m);
    }
    println!(
        "speed-up with 2 workers on 2 cores: {:.2}x",
        results[0].as_secs_f64() / results[1].as_secs_f64()
    );
    Ok(())
}
