//! Pool scenarios, written once and run under each start method: `tests/pool.rs` runs
//! them with fork under the libtest harness, `tests/pool_spawn.rs` with spawn in a
//! `harness = false` binary whose `main` calls `shmproc::init()`.
//!
//! Every scenario checks at its end that no worker (and no zombie) is left: the caller
//! holds a lock so that no other scenario runs meanwhile.
#![allow(dead_code)]
// Process-local flags between a test's threads, never in shared memory: std's atomics.
#![allow(clippy::disallowed_types)]

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use shmproc::{get_context, Error, Pool, StartMethod};

// ---------------------------------------------------------------------------- targets

fn square(x: u64) -> u64 {
    x * x
}

fn describe(x: u32) -> String {
    format!("<{x}>")
}

fn add((a, b, c): (i64, i64, String)) -> String {
    format!("{c}{}", a + b)
}

fn halve(x: u8) -> u8 {
    x / 2
}

fn negate(x: i128) -> i128 {
    -x
}

fn root(x: f64) -> f64 {
    x.sqrt()
}

fn low_half(x: u64) -> u32 {
    x as u32
}

fn length(s: String) -> u64 {
    s.len() as u64
}

fn sum_pair((a, b): (u64, u64)) -> u64 {
    a + b
}

fn not(b: bool) -> bool {
    !b
}

fn widens_or_panics_on_13(x: u32) -> u64 {
    if x == 13 {
        panic!("bad item {x}");
    }
    u64::from(x) << 32
}

/// A result that refuses to be encoded.
#[derive(Debug, serde::Deserialize)]
pub struct Unencodable;

impl serde::Serialize for Unencodable {
    fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        Err(serde::ser::Error::custom("Unencodable refuses"))
    }
}

fn unencodable(_: u32) -> Unencodable {
    Unencodable
}

fn pid_of(_: u32) -> u32 {
    std::process::id()
}

/// `pid_of` that takes a millisecond, so that a call's tasks spread over the workers.
fn slow_pid_of(x: u32) -> u32 {
    std::thread::sleep(std::time::Duration::from_millis(1));
    pid_of(x)
}

fn panics_on_13(x: u32) -> u32 {
    if x == 13 {
        panic!("bad item {x}");
    }
    x
}

fn aborts_on_7(x: u32) -> u32 {
    if x == 7 {
        std::process::abort();
    }
    x
}

fn exits_on_5(x: u32) -> u32 {
    if x == 5 {
        std::process::exit(42);
    }
    x
}

fn sigkills_itself_on_3(x: u32) -> u32 {
    if x == 3 {
        nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL).unwrap();
    }
    x
}

fn sleeps_ms(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

/// Waits (at most 30 s) until `dir/go` exists, unless `i` is 0; returns `i`.
fn waits_for_go((i, dir): (u64, String)) -> u64 {
    if i != 0 {
        let go = Path::new(&dir).join("go");
        let start = Instant::now();
        while !go.exists() {
            if start.elapsed() > Duration::from_secs(30) {
                panic!("no go after 30 s");
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    i
}

static INITIALIZED: AtomicU64 = AtomicU64::new(0);

fn init_worker() {
    INITIALIZED.store(4242, Ordering::SeqCst);
}

fn read_initialized(_: ()) -> u64 {
    INITIALIZED.load(Ordering::SeqCst)
}

fn init_panics() {
    panic!("initializer says no");
}

// ---------------------------------------------------------------------------- helpers

/// Pids of this process's children, zombies included (from `/proc/*/stat`).
pub fn children() -> HashSet<u32> {
    let me = std::process::id();
    let mut out = HashSet::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let Some(close) = stat.rfind(')') else {
            continue;
        };
        let ppid = stat[close + 2..]
            .split_whitespace()
            .nth(1)
            .and_then(|p| p.parse::<u32>().ok());
        if ppid == Some(me) {
            out.insert(pid);
        }
    }
    out
}

/// Asserts that this process has no child left.
pub fn assert_no_children() {
    let left = children();
    assert!(left.is_empty(), "children left: {left:?}");
}

fn pool(m: StartMethod, n: usize) -> Pool {
    get_context(m).pool(n).expect("pool")
}

fn temp_dir(tag: &str) -> PathBuf {
    static N: AtomicU64 = AtomicU64::new(0);
    let d = std::env::temp_dir().join(format!(
        "shmproc-pool-{tag}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

// ---------------------------------------------------------------------------- scenarios

/// The seed's `Pool(5).map(f, [1, 2, 3]) == [1, 4, 9]`.
pub fn the_seeds_pool_of_five_maps_one_two_three(m: StartMethod) {
    let p = pool(m, 5);
    assert_eq!(p.map(square, [1, 2, 3]).unwrap(), vec![1, 4, 9]);
    assert_eq!(p.workers(), 5);
    assert_eq!(p.start_method(), m);
    drop(p);
    assert_no_children();
}

pub fn map_of_100_000_items_keeps_their_order(m: StartMethod) {
    let p = pool(m, 3);
    let got = p.map(square, 0..100_000u64).unwrap();
    assert_eq!(got.len(), 100_000);
    assert!(got
        .iter()
        .enumerate()
        .all(|(i, &v)| v == (i as u64) * (i as u64)));
    assert_eq!(p.map(square, Vec::<u64>::new()).unwrap(), Vec::<u64>::new());
    drop(p);
    assert_no_children();
}

pub fn map_chunked_gives_the_same_result_for_any_chunk_size(m: StartMethod) {
    let p = pool(m, 2);
    let expect: Vec<String> = (0..250).map(describe).collect();
    for chunksize in [0, 1, 7, 100, 249, 250, 10_000] {
        assert_eq!(
            p.map_chunked(describe, 0..250, chunksize).unwrap(),
            expect,
            "chunksize {chunksize}"
        );
    }
    drop(p);
    assert_no_children();
}

pub fn imap_is_ordered_and_yields_before_the_rest_is_done(m: StartMethod) {
    let p = pool(m, 3);
    assert_eq!(
        p.imap(square, 0..50u64)
            .unwrap()
            .collect::<Result<Vec<_>, _>>()
            .unwrap(),
        (0..50u64).map(square).collect::<Vec<_>>()
    );
    // Every item but the first blocks until `go` exists: the first result must come out
    // while the others still wait (a non-lazy imap would time out here).
    let dir = temp_dir("imap");
    let d = dir.to_string_lossy().into_owned();
    let mut it = p
        .imap(waits_for_go, (0..6u64).map(|i| (i, d.clone())))
        .unwrap();
    assert_eq!(it.next().unwrap().unwrap(), 0);
    std::fs::write(dir.join("go"), b"").unwrap();
    assert_eq!(
        it.collect::<Result<Vec<_>, _>>().unwrap(),
        vec![1, 2, 3, 4, 5]
    );
    std::fs::remove_dir_all(&dir).unwrap();
    // Chunked, and dropped half-way: the pool goes on.
    let mut it = p.imap_chunked(square, 0..1000u64, 10).unwrap();
    assert_eq!(it.next().unwrap().unwrap(), 0);
    assert_eq!(it.next().unwrap().unwrap(), 1);
    drop(it);
    assert_eq!(p.map(square, [3]).unwrap(), vec![9]);
    drop(p);
    assert_no_children();
}

pub fn imap_unordered_gives_the_same_multiset(m: StartMethod) {
    let p = pool(m, 3);
    let mut got: Vec<u64> = p
        .imap_unordered(sleeps_ms, [30, 0, 20, 0, 10, 0, 5, 1])
        .unwrap()
        .map(|r| r.unwrap())
        .collect();
    got.sort_unstable();
    assert_eq!(got, vec![0, 0, 0, 1, 5, 10, 20, 30]);
    let mut got: Vec<u64> = p
        .imap_unordered_chunked(square, 0..500u64, 16)
        .unwrap()
        .map(|r| r.unwrap())
        .collect();
    got.sort_unstable();
    assert_eq!(got, (0..500u64).map(square).collect::<Vec<_>>());
    drop(p);
    assert_no_children();
}

/// Items and results of primitive number types travel as raw bytes, others through
/// serde, in every mix; every chunk size, `imap` too, and a panic in a raw chunk.
pub fn plain_and_serde_items_and_results_mix(m: StartMethod) {
    let p = pool(m, 3);
    let bytes: Vec<u8> = (0..=255).collect();
    for chunksize in [1, 7, 256, 1000] {
        assert_eq!(
            p.map_chunked(halve, bytes.clone(), chunksize).unwrap(),
            bytes.iter().map(|&b| halve(b)).collect::<Vec<_>>()
        );
    }
    let wide: Vec<i128> = (0..1000).map(|i| (i as i128) << 100).collect();
    assert_eq!(
        p.map(negate, wide.clone()).unwrap(),
        wide.iter().map(|&x| -x).collect::<Vec<_>>()
    );
    let floats: Vec<f64> = (0..1000).map(f64::from).collect();
    assert_eq!(
        p.map(root, floats.clone()).unwrap(),
        floats.iter().map(|x| x.sqrt()).collect::<Vec<_>>()
    );
    let big: Vec<u64> = (0..10_000u64).map(|i| i * 0x1_0000_0001).collect();
    assert_eq!(
        p.map(low_half, big.clone()).unwrap(),
        big.iter().map(|&x| x as u32).collect::<Vec<_>>()
    );
    assert_eq!(
        p.map(describe, 0..300u32).unwrap(),
        (0..300).map(describe).collect::<Vec<_>>()
    );
    let words: Vec<String> = (0..300).map(|i| "x".repeat(i % 17)).collect();
    assert_eq!(
        p.map(length, words.clone()).unwrap(),
        words.iter().map(|w| w.len() as u64).collect::<Vec<_>>()
    );
    assert_eq!(p.map(sum_pair, [(1, 2), (3, 4)]).unwrap(), vec![3, 7]);
    assert_eq!(p.map(not, [true, false]).unwrap(), vec![false, true]);
    assert_eq!(p.map(halve, Vec::<u8>::new()).unwrap(), Vec::<u8>::new());
    // Raw chunks of 800 KB and of 1.2 MB, more than the 1 MiB pipe holds.
    let many: Vec<u64> = (0..300_000).collect();
    for chunksize in [100_000, 150_000] {
        assert_eq!(
            p.map_chunked(square, many.clone(), chunksize).unwrap(),
            many.iter().map(|&x| x * x).collect::<Vec<_>>()
        );
    }
    assert_eq!(
        p.imap_chunked(low_half, big.clone(), 333)
            .unwrap()
            .collect::<Result<Vec<_>, _>>()
            .unwrap(),
        big.iter().map(|&x| x as u32).collect::<Vec<_>>()
    );
    let mut got: Vec<u8> = p
        .imap_unordered_chunked(halve, bytes.clone(), 10)
        .unwrap()
        .map(|r| r.unwrap())
        .collect();
    got.sort_unstable();
    let mut expect: Vec<u8> = bytes.iter().map(|&b| halve(b)).collect();
    expect.sort_unstable();
    assert_eq!(got, expect);
    // A panic in a chunk read as raw bytes with results of another type.
    match p.map_chunked(widens_or_panics_on_13, 0..40u32, 5) {
        Err(Error::TaskPanicked(msg)) => assert!(msg.contains("bad item 13"), "{msg}"),
        other => panic!("expected TaskPanicked, got {other:?}"),
    }
    let results: Vec<_> = p
        .imap_chunked(widens_or_panics_on_13, 0..20u32, 5)
        .unwrap()
        .collect();
    assert_eq!(results.len(), 20);
    assert!(results[10..15]
        .iter()
        .all(|r| matches!(r, Err(Error::TaskPanicked(_)))));
    assert_eq!(*results[15].as_ref().unwrap(), 15u64 << 32);
    assert_eq!(p.apply(low_half, 1 << 40 | 5).unwrap(), 5);
    // Raw items, results that fail to encode: a codec error naming the step, and the
    // pool goes on.
    match p.map(unencodable, 0..10u32) {
        Err(Error::Codec(msg)) => {
            assert!(msg.contains("encoding the task's result"), "{msg}");
            assert!(msg.contains("Unencodable refuses"), "{msg}");
        }
        other => panic!("expected a codec error, got {other:?}"),
    }
    assert_eq!(p.map(halve, [4u8]).unwrap(), vec![2]);
    drop(p);
    assert_no_children();
}

pub fn starmap_takes_tuples(m: StartMethod) {
    let p = pool(m, 2);
    let got = p
        .starmap(add, [(1, 2, "a".to_string()), (-5, 3, "b".to_string())])
        .unwrap();
    assert_eq!(got, vec!["a3".to_string(), "b-2".to_string()]);
    drop(p);
    assert_no_children();
}

pub fn apply_runs_one_call_in_a_worker(m: StartMethod) {
    let p = pool(m, 2);
    assert_eq!(p.apply(square, 12).unwrap(), 144);
    let worker = p.apply(pid_of, 0).unwrap();
    assert_ne!(worker, std::process::id());
    assert!(children().contains(&worker));
    drop(p);
    assert_no_children();
}

pub fn apply_async_get_get_timeout_and_ready(m: StartMethod) {
    let p = pool(m, 2);
    let dir = temp_dir("async");
    let r = p
        .apply_async(waits_for_go, (7, dir.to_string_lossy().into_owned()))
        .unwrap();
    assert!(!r.ready());
    assert!(matches!(
        r.get_timeout(Duration::from_millis(20)),
        Err(Error::Timeout)
    ));
    assert!(!r.wait(Some(Duration::from_millis(1))));
    std::fs::write(dir.join("go"), b"").unwrap();
    assert_eq!(r.get_timeout(Duration::from_secs(30)).unwrap(), 7);
    assert!(r.ready());
    assert_eq!(r.get().unwrap(), 7, "get can be called again");
    std::fs::remove_dir_all(&dir).unwrap();
    let many: Vec<_> = (0..20u64)
        .map(|i| p.apply_async(square, i).unwrap())
        .collect();
    for (i, r) in many.iter().enumerate() {
        assert_eq!(r.get().unwrap(), (i * i) as u64);
    }
    drop(p);
    assert_no_children();
}

pub fn a_panicking_task_gives_task_panicked_and_the_pool_goes_on(m: StartMethod) {
    let p = pool(m, 2);
    // Both workers' pids: one call may be served by one worker alone (the other still
    // starting, or parked while the first drains the tasks), so ask until both answered.
    let mut pids: HashSet<u32> = HashSet::new();
    for _ in 0..500 {
        pids.extend(p.map_chunked(slow_pid_of, 0..4, 1).unwrap());
        if pids.len() == 2 {
            break;
        }
    }
    assert_eq!(pids.len(), 2, "both workers took tasks: {pids:?}");
    match p.map(panics_on_13, 0..40) {
        Err(Error::TaskPanicked(msg)) => assert_eq!(msg, "bad item 13"),
        other => panic!("expected TaskPanicked, got {other:?}"),
    }
    match p.apply(panics_on_13, 13) {
        Err(Error::TaskPanicked(msg)) => assert_eq!(msg, "bad item 13"),
        other => panic!("expected TaskPanicked, got {other:?}"),
    }
    let r: Vec<_> = p.imap(panics_on_13, 12..15).unwrap().collect();
    assert_eq!(r[0].as_ref().unwrap(), &12);
    assert!(matches!(&r[1], Err(Error::TaskPanicked(m)) if m == "bad item 13"));
    assert_eq!(r[2].as_ref().unwrap(), &14);
    assert_eq!(
        p.map(panics_on_13, 0..10).unwrap(),
        (0..10).collect::<Vec<_>>()
    );
    // The workers survived their panics: still the same processes.
    let after: HashSet<u32> = p
        .map_chunked(pid_of, 0..20, 1)
        .unwrap()
        .into_iter()
        .collect();
    assert!(after.is_subset(&pids), "{after:?} vs {pids:?}");
    drop(p);
    assert_no_children();
}

pub fn a_worker_that_aborts_gives_worker_died_and_is_replaced(m: StartMethod) {
    let p = pool(m, 2);
    match p.map(aborts_on_7, 0..20) {
        Err(Error::WorkerDied { pid, signal, code }) => {
            assert_eq!(signal, Some(6), "SIGABRT");
            assert_eq!(code, None);
            assert!(!children().contains(&pid), "the dead worker was reaped");
        }
        other => panic!("expected WorkerDied, got {other:?}"),
    }
    assert_eq!(
        p.map(square, 0..100u64).unwrap(),
        (0..100u64).map(square).collect::<Vec<_>>()
    );
    match p.apply(exits_on_5, 5) {
        Err(Error::WorkerDied { signal, code, .. }) => {
            assert_eq!((signal, code), (None, Some(42)));
        }
        other => panic!("expected WorkerDied, got {other:?}"),
    }
    match p.map_chunked(sigkills_itself_on_3, 0..10, 2) {
        Err(Error::WorkerDied { signal, code, .. }) => {
            assert_eq!((signal, code), (Some(9), None));
        }
        other => panic!("expected WorkerDied, got {other:?}"),
    }
    // Item by item: only the item the worker died on is lost; the chunks sent ahead to
    // it and never started run on another worker, each exactly once, in order.
    for _ in 0..3 {
        let results: Vec<_> = p.imap(aborts_on_7, 0..30).unwrap().collect();
        assert_eq!(results.len(), 30);
        for (i, r) in results.iter().enumerate() {
            match (i, r) {
                (7, Err(Error::WorkerDied { signal, .. })) => assert_eq!(*signal, Some(6)),
                (7, other) => panic!("item 7: expected WorkerDied, got {other:?}"),
                (i, r) => assert_eq!(*r.as_ref().unwrap(), i as u32),
            }
        }
    }
    // Two workers again, both able to work.
    let pids: HashSet<u32> = p
        .map_chunked(pid_of, 0..40, 1)
        .unwrap()
        .into_iter()
        .collect();
    assert!(!pids.is_empty() && pids.len() <= 2);
    drop(p);
    assert_no_children();
}

pub fn a_worker_killed_while_idle_is_replaced(m: StartMethod) {
    let p = pool(m, 1);
    let pid = p.apply(pid_of, 0).unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    // Whether the pool notices before or after handing it the task, the call ends, and
    // the next one runs on a new worker.
    let _ = p.apply(square, 3);
    let new = p.apply(pid_of, 0).unwrap();
    assert_ne!(new, pid);
    assert_eq!(p.apply(square, 4).unwrap(), 16);
    drop(p);
    assert_no_children();
}

pub fn maxtasksperchild_recycles_workers(m: StartMethod) {
    let p = Pool::builder()
        .workers(2)
        .start_method(m)
        .maxtasksperchild(1)
        .build()
        .unwrap();
    let pids = p.map_chunked(pid_of, 0..6, 1).unwrap();
    let distinct: HashSet<u32> = pids.iter().copied().collect();
    assert_eq!(distinct.len(), 6, "one task per worker: {pids:?}");
    drop(p);
    let p = Pool::builder()
        .workers(1)
        .start_method(m)
        .maxtasksperchild(3)
        .build()
        .unwrap();
    let pids = p.map_chunked(pid_of, 0..9, 1).unwrap();
    let distinct: HashSet<u32> = pids.iter().copied().collect();
    assert_eq!(distinct.len(), 3, "three tasks per worker: {pids:?}");
    assert!(pids.chunks(3).all(|c| c[0] == c[1] && c[1] == c[2]));
    drop(p);
    assert_no_children();
}

pub fn the_initializer_runs_in_every_worker(m: StartMethod) {
    let p = Pool::builder()
        .workers(3)
        .start_method(m)
        .initializer(init_worker)
        .maxtasksperchild(2)
        .build()
        .unwrap();
    let got = p.map_chunked(read_initialized, vec![(); 12], 1).unwrap();
    assert_eq!(got, vec![4242; 12]);
    drop(p);
    let p = Pool::builder()
        .workers(1)
        .start_method(m)
        .initializer(init_panics)
        .build()
        .unwrap();
    for _ in 0..2 {
        match p.apply(square, 2) {
            Err(Error::TaskPanicked(msg)) => assert!(msg.contains("initializer says no"), "{msg}"),
            other => panic!("expected TaskPanicked, got {other:?}"),
        }
    }
    drop(p);
    assert_no_children();
}

pub fn close_then_join_finishes_queued_work_and_ends_the_workers(m: StartMethod) {
    let p = pool(m, 2);
    let pending: Vec<_> = (0..10u64)
        .map(|i| p.apply_async(sleeps_ms, i).unwrap())
        .collect();
    assert!(matches!(p.join(), Err(Error::InvalidState(_))));
    p.close();
    assert!(matches!(p.map(square, [1]), Err(Error::Closed)));
    assert!(matches!(p.apply_async(square, 1), Err(Error::Closed)));
    assert!(p.imap(square, [1]).is_err());
    p.join().unwrap();
    for (i, r) in pending.iter().enumerate() {
        assert!(r.ready());
        assert_eq!(r.get().unwrap(), i as u64);
    }
    assert_no_children();
    p.join().unwrap();
    drop(p);
    assert_no_children();
}

pub fn terminate_kills_the_workers_and_fails_pending_calls(m: StartMethod) {
    let p = pool(m, 2);
    let workers: HashSet<u32> = p
        .map_chunked(pid_of, 0..10, 1)
        .unwrap()
        .into_iter()
        .collect();
    let busy: Vec<_> = (0..5)
        .map(|_| p.apply_async(sleeps_ms, 60_000).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(50));
    p.terminate();
    for r in &busy {
        assert!(matches!(
            r.get_timeout(Duration::from_secs(10)),
            Err(Error::Closed)
        ));
    }
    assert!(matches!(p.apply(square, 1), Err(Error::Closed)));
    let left = children();
    assert!(left.is_disjoint(&workers) && left.is_empty(), "{left:?}");
    p.terminate();
    p.join().unwrap();
}

pub fn dropping_the_pool_leaves_no_child(m: StartMethod) {
    let p = pool(m, 3);
    let pids: HashSet<u32> = p
        .map_chunked(pid_of, 0..12, 1)
        .unwrap()
        .into_iter()
        .collect();
    assert!(pids.is_subset(&children()));
    let _busy = p.apply_async(sleeps_ms, 60_000).unwrap();
    drop(p);
    assert_no_children();
    for pid in pids {
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists(),
            "worker {pid} still exists"
        );
    }
}

pub fn a_pool_is_shared_by_threads(m: StartMethod) {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Pool>();
    assert_send_sync::<shmproc::AsyncResult<String>>();
    let p = pool(m, 2);
    std::thread::scope(|s| {
        let hs: Vec<_> = (0..3u64)
            .map(|t| {
                let p = &p;
                s.spawn(move || p.map(square, t * 1000..(t + 1) * 1000).unwrap())
            })
            .collect();
        for (t, h) in hs.into_iter().enumerate() {
            let t = t as u64;
            assert_eq!(
                h.join().unwrap(),
                (t * 1000..(t + 1) * 1000).map(square).collect::<Vec<_>>()
            );
        }
    });
    drop(p);
    assert_no_children();
}

pub fn bad_configurations_are_errors(m: StartMethod) {
    assert!(matches!(
        Pool::builder().workers(0).start_method(m).build(),
        Err(Error::InvalidState(_))
    ));
    assert!(matches!(
        Pool::builder()
            .workers(1)
            .maxtasksperchild(0)
            .start_method(m)
            .build(),
        Err(Error::InvalidState(_))
    ));
    assert_no_children();
}

/// Every scenario, by name.
/// A scenario, run under one start method.
pub type Case = fn(StartMethod);

pub const CASES: &[(&str, Case)] = &[
    (
        "the_seeds_pool_of_five_maps_one_two_three",
        the_seeds_pool_of_five_maps_one_two_three,
    ),
    (
        "map_of_100_000_items_keeps_their_order",
        map_of_100_000_items_keeps_their_order,
    ),
    (
        "map_chunked_gives_the_same_result_for_any_chunk_size",
        map_chunked_gives_the_same_result_for_any_chunk_size,
    ),
    (
        "imap_is_ordered_and_yields_before_the_rest_is_done",
        imap_is_ordered_and_yields_before_the_rest_is_done,
    ),
    (
        "imap_unordered_gives_the_same_multiset",
        imap_unordered_gives_the_same_multiset,
    ),
    (
        "plain_and_serde_items_and_results_mix",
        plain_and_serde_items_and_results_mix,
    ),
    ("starmap_takes_tuples", starmap_takes_tuples),
    (
        "apply_runs_one_call_in_a_worker",
        apply_runs_one_call_in_a_worker,
    ),
    (
        "apply_async_get_get_timeout_and_ready",
        apply_async_get_get_timeout_and_ready,
    ),
    (
        "a_panicking_task_gives_task_panicked_and_the_pool_goes_on",
        a_panicking_task_gives_task_panicked_and_the_pool_goes_on,
    ),
    (
        "a_worker_that_aborts_gives_worker_died_and_is_replaced",
        a_worker_that_aborts_gives_worker_died_and_is_replaced,
    ),
    (
        "a_worker_killed_while_idle_is_replaced",
        a_worker_killed_while_idle_is_replaced,
    ),
    (
        "maxtasksperchild_recycles_workers",
        maxtasksperchild_recycles_workers,
    ),
    (
        "the_initializer_runs_in_every_worker",
        the_initializer_runs_in_every_worker,
    ),
    (
        "close_then_join_finishes_queued_work_and_ends_the_workers",
        close_then_join_finishes_queued_work_and_ends_the_workers,
    ),
    (
        "terminate_kills_the_workers_and_fails_pending_calls",
        terminate_kills_the_workers_and_fails_pending_calls,
    ),
    (
        "dropping_the_pool_leaves_no_child",
        dropping_the_pool_leaves_no_child,
    ),
    ("a_pool_is_shared_by_threads", a_pool_is_shared_by_threads),
    (
        "bad_configurations_are_errors",
        bad_configurations_are_errors,
    ),
];
