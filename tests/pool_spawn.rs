//! `Pool` with the spawn start method: every scenario of `pool_cases`, in a
//! `harness = false` binary (see Cargo.toml) whose `main` calls `shmproc::init()` first,
//! since spawned workers re-execute this binary. Scenarios run one at a time on the main
//! thread under a watchdog; each checks at its end that no child is left.
//!
//! Filter: `cargo test --test pool_spawn -- SUBSTRING`.

mod pool_cases;

mod harness;

use std::time::Duration;

use shmproc::StartMethod;

const WATCHDOG: Duration = Duration::from_secs(240);

fn main() {
    shmproc::init();
    harness::run(
        "pool_spawn",
        pool_cases::CASES,
        &[StartMethod::Spawn],
        WATCHDOG,
    )
}
