//! The runner of the `harness = false` test binaries (spawned children re-execute the
//! test binary, so it needs a `main` that calls `shmproc::init()` first). Tests run one
//! at a time on the main thread (forking beside other test threads is risky), under
//! every start method given; a watchdog aborts the binary if anything hangs.
//!
//! Filter: `cargo test --test NAME -- SUBSTRING`.
#![allow(dead_code)]

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};

use shmproc::StartMethod;

/// A named test, run once per start method.
pub type Test = (&'static str, fn(StartMethod));

/// Both start methods.
pub const METHODS: [StartMethod; 2] = [StartMethod::Fork, StartMethod::Spawn];

/// The name a start method gets in test names and scenario arguments.
pub fn method_name(m: StartMethod) -> &'static str {
    match m {
        StartMethod::Fork => "fork",
        StartMethod::Spawn => "spawn",
    }
}

/// Runs `tests` under each of `methods` (filtered by the command line's non-flag
/// arguments, less those matching a `--skip PATTERN`, as libtest's), prints one line
/// per test and a summary, and exits 1 if any failed. Call it after `shmproc::init()`.
pub fn run(binary: &str, tests: &[Test], methods: &[StartMethod], watchdog: Duration) -> ! {
    let name = binary.to_string();
    std::thread::spawn(move || {
        std::thread::sleep(watchdog);
        eprintln!("watchdog: {name} still running after {watchdog:?}; aborting");
        std::process::abort();
    });
    let (mut filter, mut skip) = (Vec::new(), Vec::new());
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        if a == "--skip" {
            skip.extend(args.next());
        } else if !a.starts_with('-') {
            filter.push(a);
        }
    }
    let (mut passed, mut failed) = (0, Vec::new());
    for (name, test) in tests {
        for &m in methods {
            let full = format!("{name}::{}", method_name(m));
            if !filter.is_empty() && !filter.iter().any(|f| full.contains(f.as_str())) {
                continue;
            }
            if skip.iter().any(|f| full.contains(f.as_str())) {
                continue;
            }
            let t = Instant::now();
            match catch_unwind(AssertUnwindSafe(|| test(m))) {
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
    }
    println!("\n{binary}: {passed} passed, {} failed", failed.len());
    for f in &failed {
        println!("    {f}");
    }
    std::process::exit(if failed.is_empty() { 0 } else { 1 })
}
