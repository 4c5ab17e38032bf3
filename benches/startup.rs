//! Process start-up: `start()` + `join()` of a child that does nothing, with the fork
//! and spawn start methods (reported on their own, never inside throughput figures).
//!
//! Spawn re-executes this binary, so `main` calls `shmproc::init()` first (criterion's
//! `criterion_main!` would not).
//!
//! Run: `cargo bench --bench startup`. Under `cargo test` every bench runs once.

use std::time::Duration;

use criterion::Criterion;
use shmproc::{get_context, Process, StartMethod};

fn nothing(_: ()) {}

fn startup(c: &mut Criterion) {
    let mut g = c.benchmark_group("startup");
    g.sample_size(20);
    g.bench_function("fork_closure", |b| {
        b.iter(|| {
            let mut p = Process::fork(|| {});
            p.start().unwrap();
            p.join().unwrap();
            assert_eq!(p.exitcode(), Some(0));
        })
    });
    for (name, method) in [
        ("fork_fn", StartMethod::Fork),
        ("spawn_fn", StartMethod::Spawn),
    ] {
        g.bench_function(name, |b| {
            b.iter(|| {
                let mut p = get_context(method).process(nothing, ());
                p.start().unwrap();
                p.join().unwrap();
                assert_eq!(p.exitcode(), Some(0));
            })
        });
    }
    g.finish();
}

fn main() {
    shmproc::init();
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    startup(&mut c);
    c.final_summary();
}
