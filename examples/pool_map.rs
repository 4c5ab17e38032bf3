//! `Pool::map(x*x)` over 10^6 `u64` with 5 workers, as Python's `Pool(5).map`
//! (`scripts/py_pool.py`, same input).
//!
//! `cargo run --release --example pool_map [ITEMS] [RUNS]` prints the pool start-up
//! and, per map, the time from the call to the returned `Vec` (encoding, the workers,
//! decoding), for each start method: the median and the best of RUNS.

use std::time::{Duration, Instant};

use shmproc::{Pool, StartMethod};

fn square(x: u64) -> u64 {
    x * x
}

fn main() {
    shmproc::init();
    let mut args = std::env::args().skip(1);
    let items: u64 = args
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let runs: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(11);
    println!("Pool(5).map(x*x) over {items} u64, {runs} runs per start method");
    for method in [StartMethod::Fork, StartMethod::Spawn] {
        let t = Instant::now();
        let pool = Pool::builder()
            .workers(5)
            .start_method(method)
            .build()
            .unwrap();
        let startup = t.elapsed();
        let expect: u64 = (0..items).map(square).fold(0, u64::wrapping_add);
        // Warm-up: page in the rings and the workers' code.
        pool.map(square, 0..items).unwrap();
        let mut times: Vec<Duration> = (0..runs)
            .map(|_| {
                let input: Vec<u64> = (0..items).collect();
                let t = Instant::now();
                let out = pool.map(square, input).unwrap();
                let e = t.elapsed();
                assert_eq!(out.iter().copied().fold(0, u64::wrapping_add), expect);
                e
            })
            .collect();
        times.sort();
        let median = times[times.len() / 2];
        println!(
            "{:<6} start-up {:>9.1?}   map median {:>9.1?} ({:.1} ns/item)   best {:>9.1?}",
            format!("{method:?}").to_lowercase(),
            startup,
            median,
            median.as_nanos() as f64 / items as f64,
            times[0],
        );
        drop(pool);
    }
}
