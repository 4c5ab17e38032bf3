//! The async methods (the `tokio` feature) across processes started by both start
//! methods (fork and spawn), the handles travelling as process args.
//!
//! A `harness = false` test with `required-features = ["tokio"]` (see Cargo.toml):
//! spawned children re-execute this binary, so `main` calls `shmproc::init()` first.
//! Tests run one at a time on the main thread; a watchdog thread aborts the binary if
//! anything hangs, and every await of the parent is bounded by a tokio timeout.
//!
//! Run: `cargo test --features tokio --test async_tokio [-- SUBSTRING]`.

mod common;
mod harness;

use std::time::{Duration, Instant};

use shmproc::{get_context, Process, StartMethod};
use shmproc::{pipe, Error, Pipe, Queue, Receiver, RecvError, Sender};

const WATCHDOG: Duration = Duration::from_secs(400);
const T: Duration = Duration::from_secs(60);

const MANY: u64 = 1_000_000;
const RACED: u64 = 100_000;
const QUEUE_ITEMS: u64 = 200_000;
const PER_PRODUCER: u64 = QUEUE_ITEMS / 2;

// ---------------------------------------------------------------------------------------
// helpers
// ---------------------------------------------------------------------------------------

fn current_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn multi_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn start<A>(m: StartMethod, target: fn(A), args: A) -> Process
where
    A: serde::Serialize + serde::de::DeserializeOwned + Send + 'static,
{
    let mut p = get_context(m).process(target, args);
    p.start().unwrap();
    p
}

/// Joins (asynchronously, bounded) and returns the exit code; kills a child that hangs.
async fn join_code(p: &mut Process) -> i32 {
    if tokio::time::timeout(T, p.join_async()).await.is_err() {
        let _ = p.kill();
        let _ = p.join_timeout(T);
        panic!("child did not finish in {T:?}");
    }
    p.exitcode().expect("joined")
}

async fn join_ok(p: &mut Process) {
    assert_eq!(join_code(p).await, 0, "child failed");
}

/// This process's CPU time (user + system) in clock ticks, from /proc/self/stat.
fn cpu_ticks() -> u64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

// ---------------------------------------------------------------------------------------
// child targets
// ---------------------------------------------------------------------------------------

/// Sends `from..from + n` with `send_async` from a current-thread runtime.
fn offset_sender((tx, from, n): (Sender<u64>, u64, u64)) {
    current_thread().block_on(async {
        for i in from..from + n {
            tx.send_async(&i).await.unwrap();
        }
    });
}

/// Sends 0..n with blocking sends, pausing now and then so that the reader's timer
/// wins some races.
fn bursty_sender((tx, n): (Sender<u64>, u64)) {
    for i in 0..n {
        tx.send(&i).unwrap();
        if i % 5_000 == 0 {
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

/// Sends one message, then hangs holding the sender until killed.
fn hanging_sender(tx: Sender<u64>) {
    tx.send(&1).unwrap();
    loop {
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// Sends one message when told to (a message on `go`), then exits.
fn sender_on_cue((tx, go): (Sender<u64>, Receiver<u8>)) {
    go.recv().unwrap();
    tx.send(&42).unwrap();
}

/// Receives everything with blocking receives, slowly at first, and sends back the sum.
fn slow_reader((rx, back): (Receiver<Vec<u8>>, Sender<u64>)) {
    std::thread::sleep(Duration::from_millis(50));
    let mut total = 0u64;
    while let Ok(v) = rx.recv() {
        total += v.iter().map(|&b| u64::from(b)).sum::<u64>();
    }
    back.send(&total).unwrap();
}

fn queue_producer((q, p): (Queue<u64>, u64)) {
    current_thread().block_on(async {
        for i in 0..PER_PRODUCER {
            q.put_async(&(p * PER_PRODUCER + i)).await.unwrap();
        }
    });
}

/// Takes items with `get_async` until the queue is closed; sends back how often each
/// item arrived, checking that each producer's items come in order ([`common::Tally`]).
fn queue_consumer((q, tx): (Queue<u64>, Sender<Vec<u8>>)) {
    let seen = current_thread().block_on(async {
        let mut tally = common::Tally::new(2, PER_PRODUCER);
        loop {
            match q.get_async().await {
                Ok(v) => tally.add(v),
                Err(Error::Closed) => break tally.seen,
                Err(e) => panic!("get: {e}"),
            }
        }
    });
    tx.send(&seen).unwrap();
}

fn exit_with(code: i32) {
    if code == 99 {
        panic!("a panicking target exits with 1");
    }
    if code == -9 {
        std::thread::sleep(Duration::from_secs(600));
    }
    std::process::exit(code);
}

// ---------------------------------------------------------------------------------------
// tests
// ---------------------------------------------------------------------------------------

fn a_million_messages_arrive_in_order_through_recv_async(m: StartMethod) {
    let (tx, mut rx) = pipe::<u64>().unwrap();
    let mut p = start(m, offset_sender, (tx, 0, MANY));
    let rt = multi_thread();
    rt.block_on(async {
        // tokio::spawn on the multi-thread runtime: the recv_async future is Send.
        let reader = tokio::spawn(async move {
            for want in 0..MANY {
                assert_eq!(rx.recv_async().await, Ok(want));
            }
            assert_eq!(rx.recv_async().await, Err(RecvError::Disconnected));
        });
        tokio::time::timeout(T, reader).await.unwrap().unwrap();
        join_ok(&mut p).await;
    });
}

fn recv_async_raced_against_a_sleep_delivers_each_message_exactly_once(m: StartMethod) {
    let (tx, mut rx) = pipe::<u64>().unwrap();
    let mut p = start(m, bursty_sender, (tx, RACED));
    let (mut want, mut timeouts) = (0u64, 0u64);
    current_thread().block_on(async {
        let deadline = Instant::now() + T;
        loop {
            assert!(Instant::now() < deadline, "stuck at {want}");
            tokio::select! {
                r = rx.recv_async() => match r {
                    Ok(v) => {
                        assert_eq!(v, want, "lost or repeated message");
                        want += 1;
                    }
                    Err(RecvError::Disconnected) => break,
                    Err(e) => panic!("recv_async: {e}"),
                },
                _ = tokio::time::sleep(Duration::from_micros(50)) => timeouts += 1,
            }
        }
        join_ok(&mut p).await;
    });
    assert_eq!(want, RACED);
    assert!(timeouts > 0, "the sleep never won: nothing was cancelled");
}

fn a_writer_killed_while_the_reader_awaits_wakes_it_with_disconnected(m: StartMethod) {
    let (tx, mut rx) = pipe::<u64>().unwrap();
    let mut p = start(m, hanging_sender, tx);
    current_thread().block_on(async {
        let first = tokio::time::timeout(T, rx.recv_async()).await.unwrap();
        assert_eq!(first, Ok(1));
        let killer = async {
            tokio::time::sleep(Duration::from_millis(100)).await;
            p.kill().unwrap();
        };
        let (got, ()) = tokio::join!(tokio::time::timeout(T, rx.recv_async()), killer);
        assert_eq!(got.expect("woken"), Err(RecvError::Disconnected));
        assert_eq!(join_code(&mut p).await, -9);
    });
}

fn two_async_producers_and_two_async_consumers_move_every_item_once(m: StartMethod) {
    // A small queue: producers and consumers both wait, on full and on empty.
    let q = Queue::<u64>::with_capacity(64).unwrap();
    let (tx, rx) = pipe::<Vec<u8>>().unwrap();
    let mut consumers: Vec<_> = (0..2)
        .map(|_| start(m, queue_consumer, (q.clone(), tx.clone())))
        .collect();
    drop(tx);
    let mut producers: Vec<_> = (0..2)
        .map(|p| start(m, queue_producer, (q.clone(), p)))
        .collect();
    current_thread().block_on(async {
        for p in &mut producers {
            join_ok(p).await;
        }
        q.close();
        let mut total = vec![0u32; QUEUE_ITEMS as usize];
        let mut rx = rx;
        for _ in 0..2 {
            let seen = tokio::time::timeout(T, rx.recv_async())
                .await
                .unwrap()
                .unwrap();
            for (t, s) in total.iter_mut().zip(seen) {
                *t += u32::from(s);
            }
        }
        for c in &mut consumers {
            join_ok(c).await;
        }
        common::assert_exactly_once(&total);
    });
}

fn join_async_gives_each_exit_code(m: StartMethod) {
    current_thread().block_on(async {
        for code in [0, 3, 99, -9] {
            let mut p = start(m, exit_with, code);
            if code == -9 {
                tokio::time::sleep(Duration::from_millis(20)).await;
                p.kill().unwrap();
            }
            let want = if code == 99 { 1 } else { code };
            assert_eq!(join_code(&mut p).await, want);
            // Joined and reaped: joining again returns at once.
            p.join_async().await.unwrap();
        }
        let mut never = get_context(m).process(exit_with, 0);
        assert!(matches!(
            never.join_async().await,
            Err(Error::InvalidState(_))
        ));
    });
}

fn an_idle_awaiting_task_uses_no_cpu_and_wakes_on_the_next_message(m: StartMethod) {
    let (tx, mut rx) = pipe::<u64>().unwrap();
    let (go_tx, go_rx) = pipe::<u8>().unwrap();
    let mut p = start(m, sender_on_cue, (tx, go_rx));
    current_thread().block_on(async {
        let reader = tokio::spawn(async move { rx.recv_async().await });
        // Let the reader park, then measure this whole process over ~200 ms.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let (t0, c0) = (Instant::now(), cpu_ticks());
        tokio::time::sleep(Duration::from_millis(200)).await;
        let (spent, elapsed) = (cpu_ticks() - c0, t0.elapsed());
        assert!(!reader.is_finished(), "nothing was sent yet");
        // A spinning or polling task would take ~20 ticks (10 ms each) here.
        assert!(
            spent <= 3,
            "an idle awaiting task took {spent} ticks of CPU in {elapsed:?}"
        );
        go_tx.send(&1).unwrap();
        let got = tokio::time::timeout(T, reader).await.unwrap().unwrap();
        assert_eq!(got, Ok(42));
        join_ok(&mut p).await;
    });
}

fn send_async_waits_for_room_and_streams_a_message_larger_than_the_ring(m: StartMethod) {
    let (tx, rx) = Pipe::builder().capacity(4096).build::<Vec<u8>>().unwrap();
    let (back_tx, back_rx) = pipe::<u64>().unwrap();
    let mut p = start(m, slow_reader, (rx, back_tx));
    let msgs: Vec<Vec<u8>> = (0..200u32).map(|i| vec![(i % 251) as u8; 300]).collect();
    let big = vec![7u8; 100_000];
    multi_thread().block_on(async {
        let sender = tokio::spawn(async move {
            for m in &msgs {
                tx.send_async(m).await.unwrap();
            }
            tx.send_async(&big).await.unwrap();
        });
        tokio::time::timeout(T, sender).await.unwrap().unwrap();
        let want: u64 = (0..200u64).map(|i| (i % 251) * 300).sum::<u64>() + 7 * 100_000;
        let mut back_rx = back_rx;
        let got = tokio::time::timeout(T, back_rx.recv_async()).await.unwrap();
        assert_eq!(got, Ok(want));
        join_ok(&mut p).await;
    });
}

fn blocking_and_async_receives_mix_on_one_receiver(m: StartMethod) {
    let (tx, mut rx) = pipe::<u64>().unwrap();
    let mut p = start(m, bursty_sender, (tx, 20_000));
    current_thread().block_on(async {
        let mut want = 0;
        loop {
            let r = if want % 2 == 0 {
                rx.recv_async().await
            } else {
                rx.recv()
            };
            match r {
                Ok(v) => {
                    assert_eq!(v, want);
                    want += 1;
                }
                Err(RecvError::Disconnected) => break,
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(want, 20_000);
        join_ok(&mut p).await;
    });
}

fn a_stream_of_messages_from_a_child_ends_when_the_writer_is_gone(m: StartMethod) {
    use futures_core::Stream;
    let (tx, mut rx) = pipe::<u64>().unwrap();
    let mut p = start(m, bursty_sender, (tx, 20_000));
    multi_thread().block_on(async {
        let reader = tokio::spawn(async move {
            // The stream is Send: a spawned task may hold it across awaits.
            let mut s = std::pin::pin!(rx.stream());
            let mut want = 0u64;
            while let Some(m) = std::future::poll_fn(|cx| s.as_mut().poll_next(cx)).await {
                assert_eq!(m, Ok(want));
                want += 1;
            }
            want
        });
        let got = tokio::time::timeout(T, reader).await.unwrap().unwrap();
        assert_eq!(got, 20_000);
        join_ok(&mut p).await;
    });
}

fn two_async_senders_in_two_processes_share_a_small_ring(m: StartMethod) {
    let (tx, mut rx) = Pipe::builder().capacity(256).build::<u64>().unwrap();
    const EACH: u64 = 20_000;
    let mut senders: Vec<_> = (0..2u64)
        .map(|k| start(m, offset_sender, (tx.clone(), k * EACH, EACH)))
        .collect();
    drop(tx);
    current_thread().block_on(async {
        let mut tally = common::Tally::new(2, EACH);
        loop {
            match tokio::time::timeout(T, rx.recv_async()).await.unwrap() {
                Ok(v) => tally.add(v),
                Err(RecvError::Disconnected) => break,
                Err(e) => panic!("{e}"),
            }
        }
        let total: Vec<u32> = tally.seen.iter().map(|&n| u32::from(n)).collect();
        common::assert_exactly_once(&total);
        for p in &mut senders {
            join_ok(p).await;
        }
    });
}

use harness::Test;

const TESTS: &[Test] = &[
    (
        "a_million_messages_arrive_in_order_through_recv_async",
        a_million_messages_arrive_in_order_through_recv_async,
    ),
    (
        "recv_async_raced_against_a_sleep_delivers_each_message_exactly_once",
        recv_async_raced_against_a_sleep_delivers_each_message_exactly_once,
    ),
    (
        "a_writer_killed_while_the_reader_awaits_wakes_it_with_disconnected",
        a_writer_killed_while_the_reader_awaits_wakes_it_with_disconnected,
    ),
    (
        "two_async_producers_and_two_async_consumers_move_every_item_once",
        two_async_producers_and_two_async_consumers_move_every_item_once,
    ),
    (
        "join_async_gives_each_exit_code",
        join_async_gives_each_exit_code,
    ),
    (
        "an_idle_awaiting_task_uses_no_cpu_and_wakes_on_the_next_message",
        an_idle_awaiting_task_uses_no_cpu_and_wakes_on_the_next_message,
    ),
    (
        "send_async_waits_for_room_and_streams_a_message_larger_than_the_ring",
        send_async_waits_for_room_and_streams_a_message_larger_than_the_ring,
    ),
    (
        "blocking_and_async_receives_mix_on_one_receiver",
        blocking_and_async_receives_mix_on_one_receiver,
    ),
    (
        "a_stream_of_messages_from_a_child_ends_when_the_writer_is_gone",
        a_stream_of_messages_from_a_child_ends_when_the_writer_is_gone,
    ),
    (
        "two_async_senders_in_two_processes_share_a_small_ring",
        two_async_senders_in_two_processes_share_a_small_ring,
    ),
];

fn main() {
    shmproc::init();
    harness::run("async_tokio", TESTS, &harness::METHODS, WATCHDOG)
}
