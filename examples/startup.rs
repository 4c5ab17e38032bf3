//! Process start-up cost: `start()` + `join()` of a trivial target, for each start
//! method, as Python's `Process(target=f).start(); join()` (`scripts/py_startup.py`).
//!
//! `cargo run --release --example startup [ITERATIONS]` prints the median, the 10th and
//! the 90th percentile per start method, and the median of `start()` alone (for spawn it
//! returns once the child has loaded and accepted its job).

use std::time::{Duration, Instant};

use shmproc::{get_context, StartMethod};

fn noop(_: ()) {}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn main() {
    shmproc::init();
    let iters: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(200);
    println!("process start-up: start() + join() of a no-op target, {iters} runs each");
    for method in [StartMethod::Fork, StartMethod::Spawn] {
        let ctx = get_context(method);
        // Warm-up: page in the binary, the allocator, /proc/self/exe.
        for _ in 0..5 {
            let mut p = ctx.process(noop, ());
            p.start().unwrap();
            p.join().unwrap();
        }
        let (mut times, mut starts): (Vec<Duration>, Vec<Duration>) = (0..iters)
            .map(|_| {
                let t = Instant::now();
                let mut p = ctx.process(noop, ());
                p.start().unwrap();
                let started = t.elapsed();
                p.join().unwrap();
                let e = t.elapsed();
                assert_eq!(p.exitcode(), Some(0));
                (e, started)
            })
            .unzip();
        times.sort();
        starts.sort();
        println!(
            "{:<6} median {:>9.1?}   p10 {:>9.1?}   p90 {:>9.1?}   (start() alone: median {:>9.1?})",
            format!("{method:?}").to_lowercase(),
            percentile(&times, 0.5),
            percentile(&times, 0.1),
            percentile(&times, 0.9),
            percentile(&starts, 0.5),
        );
    }
}
