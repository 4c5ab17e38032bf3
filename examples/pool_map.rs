//! `Pool::map(x*x)` over 10^6 `u64` with 5 workers, as Python's `Pool(5).map`
//! (`scripts/py_pool.py`, same input, same measurement), and `imap` / `imap_unordered`
//! (chunks of one item, Python's default) over fewer items.
//!
//! `cargo run --release --example pool_map [ITEMS] [RUNS] [IMAP_ITEMS] [fork|spawn|both]`
//! (defaults 1000000, 5, 100000, fork) prints, per start method, the pool start-up and,
//! per call, the time from the call to the last result (encoding, the workers,
//! decoding): the median and the best of RUNS, and the median time per item. The pool is
//! started outside the timing, and the input is a prebuilt `Vec<u64>` (a fresh copy per
//! run, made before the clock starts).

use std::time::{Duration, Instant};

use shmproc::{get_context, StartMethod};

fn square(x: u64) -> u64 {
    x.wrapping_mul(x)
}

/// Median and best of `runs` timings of `f` (given a fresh copy of `input`).
fn time_runs(
    runs: usize,
    input: &[u64],
    mut f: impl FnMut(Vec<u64>) -> u64,
) -> (Duration, Duration) {
    let expect: u64 = input.iter().copied().map(square).fold(0, u64::wrapping_add);
    let mut times: Vec<Duration> = (0..runs)
        .map(|_| {
            let data = input.to_vec();
            let t = Instant::now();
            let sum = f(data);
            let e = t.elapsed();
            assert_eq!(sum, expect);
            e
        })
        .collect();
    times.sort();
    (times[times.len() / 2], times[0])
}

fn report(what: &str, method: StartMethod, items: usize, (median, best): (Duration, Duration)) {
    println!(
        "{:<6} {what:<15} {items:>8} items  median {:>9.2?} ({:>7.1} ns/item)   best {:>9.2?}",
        format!("{method:?}").to_lowercase(),
        median,
        median.as_nanos() as f64 / items as f64,
        best,
    );
}

fn main() {
    shmproc::init();
    let mut args = std::env::args().skip(1);
    let mut num = |d: usize| args.next().and_then(|a| a.parse().ok()).unwrap_or(d);
    let items = num(1_000_000);
    let runs = num(5).max(1);
    let imap_items = num(100_000);
    let methods = match std::env::args().nth(4).as_deref() {
        Some("spawn") => vec![StartMethod::Spawn],
        Some("both") => vec![StartMethod::Fork, StartMethod::Spawn],
        _ => vec![StartMethod::Fork],
    };
    println!(
        "shmproc Pool(5): map(x*x) over {items} u64, imap/imap_unordered over {imap_items}, \
         {runs} runs each"
    );
    let input: Vec<u64> = (0..items as u64).collect();
    let imap_input: Vec<u64> = (0..imap_items as u64).collect();
    let sum = |v: Vec<u64>| v.into_iter().fold(0, u64::wrapping_add);
    for method in methods {
        let t = Instant::now();
        let pool = get_context(method).pool(5).unwrap();
        let startup = t.elapsed();
        println!(
            "{:<6} start-up {startup:.1?}",
            format!("{method:?}").to_lowercase()
        );
        // Warm-up: page in the rings and the workers' code.
        pool.map(square, input.clone()).unwrap();
        let m = time_runs(runs, &input, |v| sum(pool.map(square, v).unwrap()));
        report("map", method, items, m);
        for (what, ordered) in [("imap", true), ("imap_unordered", false)] {
            let t = time_runs(runs, &imap_input, |v| {
                let results: Box<dyn Iterator<Item = shmproc::Result<u64>>> = if ordered {
                    Box::new(pool.imap(square, v).unwrap())
                } else {
                    Box::new(pool.imap_unordered(square, v).unwrap())
                };
                results.map(|r| r.unwrap()).fold(0, u64::wrapping_add)
            });
            report(what, method, imap_items, t);
        }
        drop(pool);
    }
}
