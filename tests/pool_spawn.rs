//! `Pool` with the spawn start method: every scenario of `pool_cases`, in a
//! `harness = false` binary (see Cargo.toml) whose `main` calls `shmproc::init()` first,
//! since spawned workers re-execute this binary. Scenarios run one at a time on the main
//! thread under a watchdog; each checks at its end that no child is left.
//!
//! Filter: `cargo test --test pool_spawn -- SUBSTRING`.

mod pool_cases;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};

use shmproc::StartMethod;

const WATCHDOG: Duration = Duration::from_secs(240);

fn main() {
    shmproc::init();
    std::thread::spawn(|| {
        std::thread::sleep(WATCHDOG);
        eprintln!("watchdog: pool spawn tests still running after {WATCHDOG:?}; aborting");
        std::process::abort();
    });
    let args: Vec<String> = std::env::args().skip(1).collect();
    let filter: Vec<&String> = args.iter().filter(|a| !a.starts_with('-')).collect();
    let (mut passed, mut failed) = (0, Vec::new());
    for (name, case) in pool_cases::CASES {
        let full = format!("{name}::spawn");
        if !filter.is_empty() && !filter.iter().any(|f| full.contains(f.as_str())) {
            continue;
        }
        let t = Instant::now();
        match catch_unwind(AssertUnwindSafe(|| case(StartMethod::Spawn))) {
            Ok(()) => {
                passed += 1;
                println!("test {full} ... ok ({:?})", t.elapsed());
            }
            Err(_) => {
                println!("test {full} ... FAILED");
                failed.push(full);
            }
        }
    }
    println!("\npool_spawn: {passed} passed, {} failed", failed.len());
    if !failed.is_empty() {
        for f in &failed {
            println!("    {f}");
        }
        std::process::exit(1);
    }
}
