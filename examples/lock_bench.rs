//! Sanity measurement (not a benchmark): uncontended lock + unlock of a shmproc `Lock`,
//! `RLock` and `Value<u64>` increment, next to `std::sync::Mutex`, in ns per pair; then
//! two forked processes incrementing one `Value<u64>` (contended: spins and futex parks).
//!
//! `cargo run --release --example lock_bench`

use std::hint::black_box;
use std::time::Instant;

fn per_op(n: u64, mut f: impl FnMut()) -> f64 {
    for _ in 0..n / 10 {
        f(); // warm-up
    }
    let t = Instant::now();
    for _ in 0..n {
        f();
    }
    t.elapsed().as_nanos() as f64 / n as f64
}

fn main() {
    shmproc::init();
    const N: u64 = 10_000_000;
    let lock = shmproc::Lock::new().unwrap();
    let rlock = shmproc::RLock::new().unwrap();
    let value = shmproc::Value::new(0u64).unwrap();
    let mutex = std::sync::Mutex::new(0u64);
    for round in 0..3 {
        let l = per_op(N, || drop(black_box(lock.lock().ok())));
        let r = per_op(N, || drop(black_box(rlock.lock().ok())));
        let v = per_op(N, || {
            if let Ok(mut g) = value.lock() {
                *g += 1;
            }
        });
        let m = per_op(N, || {
            *mutex.lock().unwrap() += 1;
        });
        println!(
            "round {round}: Lock {l:.1} ns, RLock {r:.1} ns, Value<u64> += 1 {v:.1} ns, std Mutex += 1 {m:.1} ns (lock + unlock)"
        );
    }
    const C: u64 = 1_000_000;
    let shared = shmproc::Value::new(0u64).unwrap();
    let t = Instant::now();
    let children: Vec<_> = (0..2)
        .map(|_| {
            let v = shared.clone();
            let mut p = shmproc::Process::fork(move || {
                for _ in 0..C {
                    *v.lock().unwrap_or_else(|e| e.into_guard().unwrap()) += 1;
                }
            });
            p.start().unwrap();
            p
        })
        .collect();
    for mut p in children {
        p.join().unwrap();
        assert_eq!(p.exitcode(), Some(0));
    }
    let el = t.elapsed();
    assert_eq!(shared.get(), 2 * C);
    println!(
        "contended: 2 processes x {C} increments of one Value<u64>: {:.1} ns per increment (incl. fork)",
        el.as_nanos() as f64 / (2 * C) as f64
    );
}
