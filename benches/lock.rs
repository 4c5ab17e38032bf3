//! Uncontended lock + unlock of the process-shared primitives (no syscall on this path),
//! beside std's in-process `Mutex`. The comparison with `raw_sync`'s mutex lives in the
//! peers crate: `cargo run --release -p shmproc-peers -- locks`.
//!
//! Run: `cargo bench --bench lock`. Under `cargo test` every bench runs once.

use std::hint::black_box;
use std::time::Duration;

use criterion::Criterion;

fn main() {
    shmproc::init();
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(1))
        .configure_from_args();
    let mut g = c.benchmark_group("lock");
    let lock = shmproc::Lock::new().unwrap();
    g.bench_function("shmproc_lock_unlock", |b| {
        b.iter(|| drop(black_box(lock.lock().ok())))
    });
    let rlock = shmproc::RLock::new().unwrap();
    g.bench_function("shmproc_rlock_unlock", |b| {
        b.iter(|| drop(black_box(rlock.lock().ok())))
    });
    let value = shmproc::Value::new(0u64).unwrap();
    g.bench_function("shmproc_value_add", |b| {
        b.iter(|| {
            if let Ok(mut v) = value.lock() {
                *v += 1;
            }
        })
    });
    let std_mutex = std::sync::Mutex::new(0u64);
    g.bench_function("std_mutex_add", |b| {
        b.iter(|| *std_mutex.lock().unwrap() += 1)
    });
    g.finish();
    c.final_summary();
}
