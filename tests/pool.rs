//! `Pool` under the libtest harness with the fork start method (the default): every
//! scenario of `pool_cases`, one test each. The scenarios hold a global lock (they fork,
//! and each checks at its end that this process has no child left) and run under a
//! watchdog. The same scenarios run with spawn in `tests/pool_spawn.rs`.

mod common;
mod pool_cases;

use std::time::Duration;

use shmproc::StartMethod;

fn run(case: fn(StartMethod)) {
    let _g = common::serial();
    let _w = common::watchdog(Duration::from_secs(120));
    case(StartMethod::Fork);
}

macro_rules! fork_tests {
    ($($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                run(pool_cases::$name);
            }
        )*

        #[test]
        fn every_scenario_has_a_fork_test() {
            let ours = [$(stringify!($name)),*];
            for (name, _) in pool_cases::CASES {
                assert!(ours.contains(name), "{name} has no fork test");
            }
        }
    };
}

fork_tests!(
    the_seeds_pool_of_five_maps_one_two_three,
    map_of_100_000_items_keeps_their_order,
    map_chunked_gives_the_same_result_for_any_chunk_size,
    imap_is_ordered_and_yields_before_the_rest_is_done,
    imap_unordered_gives_the_same_multiset,
    plain_and_serde_items_and_results_mix,
    starmap_takes_tuples,
    apply_runs_one_call_in_a_worker,
    apply_async_get_get_timeout_and_ready,
    a_panicking_task_gives_task_panicked_and_the_pool_goes_on,
    a_worker_that_aborts_gives_worker_died_and_is_replaced,
    a_worker_killed_while_idle_is_replaced,
    maxtasksperchild_recycles_workers,
    the_initializer_runs_in_every_worker,
    close_then_join_finishes_queued_work_and_ends_the_workers,
    terminate_kills_the_workers_and_fails_pending_calls,
    dropping_the_pool_leaves_no_child,
    a_pool_is_shared_by_threads,
    bad_configurations_are_errors,
);

// ------------------------------------------------- issue 14: nested pools, stdout held

fn square(x: u64) -> u64 {
    x * x
}

fn sigkills_itself_on_3(x: u64) -> u64 {
    if x == 3 {
        nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL).unwrap();
    }
    x
}

/// A pool task that builds a pool of its own and maps on it: the sum of the squares
/// below `n`, computed by two grandchild workers.
fn sum_of_squares_on_a_nested_pool(n: u64) -> u64 {
    let inner = shmproc::Pool::new(2).expect("a pool inside a pool task");
    let sum = inner
        .map(square, 0..n)
        .expect("a map on the inner pool")
        .iter()
        .sum();
    drop(inner);
    sum
}

/// It used to hang for ever: the worker was forked holding a pool-wide mutex, which it
/// then found locked by itself when the task built a pool.
#[test]
fn a_pool_task_can_build_and_use_a_pool_of_its_own() {
    let _g = common::serial();
    let _w = common::watchdog(Duration::from_secs(120));
    let pool = shmproc::Pool::new(2).unwrap();
    let ns = [10u64, 100, 1000, 7];
    let expect: Vec<u64> = ns.iter().map(|&n| (0..n).map(square).sum()).collect();
    assert_eq!(
        pool.map(sum_of_squares_on_a_nested_pool, ns).unwrap(),
        expect
    );
    drop(pool);
    pool_cases::assert_no_children();
}

/// `Pool::new` and `map` while this thread holds std's stdout lock: the pool's threads
/// fork the workers, and forking used to wait for that lock for ever.
#[test]
fn holding_stdout_does_not_hang_pool_new_or_map() {
    let _g = common::serial();
    let _w = common::watchdog(Duration::from_secs(120));
    let out = std::io::stdout().lock();
    let pool = shmproc::Pool::new(2).unwrap();
    assert_eq!(
        pool.map(square, 0..1000u64).unwrap(),
        (0..1000u64).map(square).collect::<Vec<_>>()
    );
    drop(pool);
    drop(out);
    pool_cases::assert_no_children();
}

/// A worker that dies is replaced by its pool thread, which forks while this thread
/// holds std's stdout lock (the pool was built before the lock was taken).
#[test]
fn holding_stdout_does_not_hang_the_replacement_of_a_dead_worker() {
    let _g = common::serial();
    let _w = common::watchdog(Duration::from_secs(120));
    let pool = shmproc::Pool::new(2).unwrap();
    let out = std::io::stdout().lock();
    assert!(matches!(
        pool.map_chunked(sigkills_itself_on_3, 0..10u64, 2),
        Err(shmproc::Error::WorkerDied {
            signal: Some(9),
            ..
        })
    ));
    assert_eq!(
        pool.map_chunked(square, 0..100u64, 1).unwrap(),
        (0..100u64).map(square).collect::<Vec<_>>()
    );
    drop(pool);
    drop(out);
    pool_cases::assert_no_children();
}

fn pid_of(_: u32) -> u32 {
    std::process::id()
}

/// Builds a pool inside the task and leaves it running (forgotten): the pids of its
/// workers.
fn leaves_a_nested_pool_running(_: u32) -> Vec<u32> {
    let inner = shmproc::Pool::new(2).expect("a pool inside a pool task");
    let pids = inner
        .map_chunked(pid_of, 0..8, 1)
        .expect("a map on the inner pool");
    std::mem::forget(inner);
    pids
}

/// Nested workers are daemons of the outer worker: when the outer pool is dropped (its
/// workers SIGKILLed), they die too; none is left running as an orphan (the reason
/// Python refuses nested pools).
#[test]
fn the_workers_of_a_nested_pool_die_with_the_outer_pool() {
    let _g = common::serial();
    let _w = common::watchdog(Duration::from_secs(120));
    let pool = shmproc::Pool::new(1).unwrap();
    let nested = pool.apply(leaves_a_nested_pool_running, 0).unwrap();
    assert!(!nested.is_empty());
    drop(pool);
    let start = std::time::Instant::now();
    let running = |pid: &u32| {
        std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
            let state = s[s.rfind(')').unwrap() + 1..].trim_start().chars().next();
            !matches!(state, Some('Z') | Some('X'))
        })
    };
    while nested.iter().any(running) {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "nested workers still running: {nested:?}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    pool_cases::assert_no_children();
}
