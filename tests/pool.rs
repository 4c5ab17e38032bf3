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
