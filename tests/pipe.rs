//! Pipe and duplex behaviour across real forked processes.
// Process-local flags between a test's threads, never in shared memory: std's atomics.
#![allow(clippy::disallowed_types)]

mod common;

use std::time::Duration;

use common::{fork_child, serial, this_thread, wait_asleep, watchdog, Asleep, PARKED};
use serde::{Deserialize, Serialize};
use shmproc::{
    duplex, pipe, Pipe, RecvError, RecvTimeoutError, SendError, SendTimeoutError, TryRecvError,
    TrySendError,
};

const T: Duration = Duration::from_secs(60);

#[derive(Serialize, Deserialize, Debug, PartialEq)]
enum Msg {
    Int(u64),
    Done,
}

#[test]
fn million_messages_arrive_in_order_without_loss() {
    let _s = serial();
    let _w = watchdog(T);
    let (tx, rx) = pipe::<Msg>().unwrap();
    let mut child = fork_child(move || {
        let mut next = 0u64;
        loop {
            match rx.recv().unwrap() {
                Msg::Int(i) => {
                    if i != next {
                        return 2;
                    }
                    next += 1;
                }
                Msg::Done => return if next == 1_000_000 { 0 } else { 3 },
            }
        }
    });
    for i in 0..1_000_000u64 {
        tx.send(&Msg::Int(i)).unwrap();
    }
    tx.send(&Msg::Done).unwrap();
    child.expect_success(T);
}

#[test]
fn sizes_from_zero_bytes_to_many_times_the_ring_round_trip() {
    let _s = serial();
    let _w = watchdog(T);
    let (tx, rx) = Pipe::builder().capacity(4096).build::<Vec<u8>>().unwrap();
    let sizes = [
        0usize,
        1,
        7,
        8,
        9,
        100,
        1000,
        1023,
        1024,
        1025,
        4096,
        10_000,
        1 << 20,
        3 << 20,
    ];
    let mut child = fork_child(move || {
        for (i, &n) in sizes.iter().enumerate() {
            let v: Vec<u8> = (0..n).map(|j| (j * 31 + i) as u8).collect();
            tx.send(&v).unwrap();
        }
        0
    });
    for (i, &n) in sizes.iter().enumerate() {
        let v = rx.recv_timeout(T).unwrap();
        assert_eq!(v.len(), n);
        assert!(
            v.iter().enumerate().all(|(j, b)| *b == (j * 31 + i) as u8),
            "bytes of message {i} differ"
        );
    }
    child.expect_success(T);
    assert_eq!(rx.recv(), Err(RecvError::Disconnected));
}

#[test]
fn a_256_mib_message_goes_through_the_default_pipe() {
    let _s = serial();
    let _w = watchdog(T);
    let (tx, rx) = pipe::<()>().unwrap();
    const N: usize = 256 << 20;
    let mut child = fork_child(move || {
        let mut v = vec![0u8; N];
        for (i, b) in v.iter_mut().enumerate().step_by(4093) {
            *b = (i % 251) as u8;
        }
        tx.send_bytes(&v).unwrap();
        0
    });
    let v = rx.recv_bytes().unwrap();
    assert_eq!(v.len(), N);
    assert!(v
        .iter()
        .enumerate()
        .step_by(4093)
        .all(|(i, b)| *b == (i % 251) as u8));
    child.expect_success(T);
}

#[test]
fn reader_sees_disconnected_when_the_writer_process_drops_its_end() {
    let _s = serial();
    let _w = watchdog(T);
    let (tx, rx) = pipe::<u32>().unwrap();
    let mut child = fork_child(move || {
        tx.send(&1).unwrap();
        drop(tx);
        // Stay alive (until killed): the drop, not the exit, must disconnect.
        std::thread::sleep(2 * T);
        0
    });
    // The parent's own copy of tx went into the closure and is dropped with it here.
    assert_eq!(rx.recv_timeout(T), Ok(1));
    // No wall-clock bound: the watchdog ends a hang, and the child must still be alive
    // when the disconnect is seen.
    assert_eq!(rx.recv_timeout(T), Err(RecvTimeoutError::Disconnected));
    assert!(
        child.proc.is_alive(),
        "disconnect noticed only at child exit"
    );
    child.kill();
}

#[test]
fn sigkill_of_the_writer_mid_stream_gives_disconnected_and_no_torn_message() {
    let _s = serial();
    let _w = watchdog(T);
    for round in 0..5u64 {
        let (tx, rx) = Pipe::builder().capacity(4096).build::<Vec<u64>>().unwrap();
        let mut child = fork_child(move || {
            let mut i = 0u64;
            loop {
                // Messages larger than the ring: streamed in pieces.
                let v: Vec<u64> = (i..i + 1500).collect();
                tx.send(&v).unwrap();
                i += 1;
            }
        });
        let mut got = 0u64;
        loop {
            match rx.recv_timeout(T) {
                Ok(v) => {
                    assert_eq!(v.len(), 1500);
                    assert!(
                        v.iter().enumerate().all(|(k, x)| *x == got + k as u64),
                        "torn message"
                    );
                    got += 1;
                    if got == 20 + round * 7 {
                        child.kill();
                    }
                }
                Err(RecvTimeoutError::Disconnected) => break,
                Err(e) => panic!("unexpected {e:?}"),
            }
        }
        assert!(got >= 20 + round * 7);
    }
}

#[test]
fn writer_sees_disconnected_after_the_reader_is_killed() {
    let _s = serial();
    let _w = watchdog(T);
    let (tx, rx) = Pipe::builder().capacity(1024).build::<u64>().unwrap();
    let mut child = fork_child(move || {
        let _ = rx.recv();
        std::thread::sleep(Duration::from_secs(60));
        0
    });
    tx.send(&0).unwrap();
    child.wait_asleep(&[Asleep::Nap], T); // it took the message and sleeps
    child.kill();
    let mut res = Ok(());
    for i in 0..10_000u64 {
        res = tx.send(&i);
        if res.is_err() {
            break;
        }
    }
    assert_eq!(res, Err(SendError::Disconnected));
}

#[test]
fn try_send_reports_full_without_losing_anything() {
    let (tx, rx) = Pipe::builder().capacity(256).build::<u64>().unwrap();
    let mut sent = 0u64;
    loop {
        match tx.try_send(&sent) {
            Ok(()) => sent += 1,
            Err(TrySendError::Full) => break,
            Err(e) => panic!("{e:?}"),
        }
    }
    assert!(sent > 5);
    for i in 0..sent {
        assert_eq!(rx.try_recv(), Ok(i));
    }
    assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
    tx.try_send(&99).unwrap();
    assert_eq!(rx.recv(), Ok(99));
}

#[test]
fn recv_timeout_times_out_on_an_idle_pipe() {
    let (_tx, rx) = pipe::<u8>().unwrap();
    let start = std::time::Instant::now();
    assert_eq!(
        rx.recv_timeout(Duration::from_millis(100)),
        Err(RecvTimeoutError::Timeout)
    );
    assert!(start.elapsed() >= Duration::from_millis(100));
    assert!(!rx.poll(Some(Duration::from_millis(10))));
}

#[test]
fn oversized_messages_are_refused_at_send() {
    let (tx, rx) = Pipe::builder().max_message(16).build::<Vec<u8>>().unwrap();
    assert!(matches!(
        tx.send(&vec![0u8; 100]),
        Err(SendError::TooLarge { .. })
    ));
    assert!(matches!(
        tx.send_bytes(&[0u8; 17]),
        Err(SendError::TooLarge { len: 17, max: 16 })
    ));
    tx.send(&vec![1u8; 3]).unwrap();
    assert_eq!(rx.recv().unwrap(), vec![1u8; 3]);
}

#[test]
fn duplex_ping_pong_across_processes() {
    let _s = serial();
    let _w = watchdog(T);
    let (a, b) = duplex::<u64>().unwrap();
    let mut child = fork_child(move || {
        for x in b.iter() {
            b.send(&(x + 1)).unwrap();
        }
        0
    });
    let mut x = 0;
    for _ in 0..10_000 {
        a.send(&x).unwrap();
        x = a.recv_timeout(T).unwrap();
    }
    assert_eq!(x, 10_000);
    drop(a);
    child.expect_success(T);
}

#[test]
fn two_writer_processes_never_interleave_bytes() {
    let _s = serial();
    let _w = watchdog(T);
    let (tx, rx) = Pipe::builder().capacity(8192).build::<Vec<u32>>().unwrap();
    let mut kids: Vec<_> = (0..2u32)
        .map(|k| {
            let tx = tx.clone();
            fork_child(move || {
                for i in 0..2000u32 {
                    // Some messages are streamed (larger than a quarter of the ring).
                    let n = if i % 10 == 0 { 3000 } else { 5 + (i % 40) };
                    tx.send(&vec![k * 1_000_000 + i; n as usize]).unwrap();
                }
                0
            })
        })
        .collect();
    drop(tx);
    let mut next = [0u32; 2];
    while let Ok(v) = rx.recv_timeout(T) {
        let k = (v[0] / 1_000_000) as usize;
        let i = v[0] % 1_000_000;
        assert!(v.iter().all(|x| *x == v[0]), "interleaved message");
        assert_eq!(i, next[k], "writer {k} out of order");
        next[k] += 1;
    }
    assert_eq!(next, [2000, 2000]);
    for k in &mut kids {
        k.expect_success(T);
    }
}

#[test]
fn handles_refuse_to_serialize_outside_a_process_handoff() {
    let (tx, _rx) = pipe::<u8>().unwrap();
    let err = postcard::to_stdvec(&tx).unwrap_err();
    assert!(!err.to_string().is_empty());
}

#[test]
fn ends_created_while_another_thread_forks_never_leak_into_the_child() {
    // A thread creates pipes and drops their senders at once, while this thread forks
    // children that live for a while. An end whose descriptors a child copied before
    // fork hygiene knew them would keep its pipe open until that child exits.
    let _s = serial();
    let _w = watchdog(T);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop2 = stop.clone();
    let creator = std::thread::spawn(move || {
        let mut held_open = 0;
        let mut created = 0;
        while !stop2.load(std::sync::atomic::Ordering::Relaxed) {
            let (tx, rx) = pipe::<u8>().unwrap();
            drop(tx);
            created += 1;
            if rx.recv_timeout(Duration::from_millis(500)) != Err(RecvTimeoutError::Disconnected) {
                held_open += 1;
            }
        }
        (created, held_open)
    });
    let mut kids = Vec::new();
    for _ in 0..150 {
        kids.push(fork_child(|| {
            std::thread::sleep(Duration::from_millis(700));
            0
        }));
        std::thread::sleep(Duration::from_micros(300));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (created, held_open) = creator.join().unwrap();
    for mut k in kids {
        k.expect_success(T);
    }
    assert!(created > 0);
    assert_eq!(
        held_open, 0,
        "{held_open} of {created} pipes were kept open by a child"
    );
}

#[test]
fn send_all_delivers_every_batch_in_order_across_processes() {
    let _s = serial();
    let _w = watchdog(T);
    // A small ring, so batches wrap (padding) and fill it (publish, wait, go on).
    let (tx, rx) = Pipe::builder().capacity(4096).build::<u64>().unwrap();
    let mut child = fork_child(move || {
        for i in 0..200_000u64 {
            if rx.recv_timeout(T) != Ok(i) {
                return 2;
            }
        }
        match rx.recv_timeout(T) {
            Err(RecvTimeoutError::Disconnected) => 0,
            _ => 3,
        }
    });
    let mut next = 0u64;
    for len in [1usize, 7, 1000, 0, 3000, 1] {
        let batch: Vec<u64> = (next..next + len as u64).collect();
        tx.send_all(&batch).unwrap();
        next += len as u64;
    }
    while next < 200_000 {
        let batch: Vec<u64> = (next..(next + 1024).min(200_000)).collect();
        tx.send_all(&batch).unwrap();
        next += batch.len() as u64;
    }
    drop(tx);
    child.expect_success(T);
}

#[test]
fn send_all_mixes_small_and_streamed_messages() {
    let _s = serial();
    let _w = watchdog(T);
    let (tx, rx) = Pipe::builder().capacity(1024).build::<Vec<u8>>().unwrap();
    // 0 bytes to 10 rings' worth: in place, copied whole, and streamed in pieces.
    let msgs: Vec<Vec<u8>> = [0usize, 5, 60, 200, 255, 300, 10_240, 3, 1]
        .iter()
        .enumerate()
        .map(|(k, &n)| (0..n).map(|i| (i * 31 + k) as u8).collect())
        .collect();
    let expect = msgs.clone();
    let mut child = fork_child(move || {
        for m in &expect {
            if rx.recv_timeout(T).as_ref() != Ok(m) {
                return 2;
            }
        }
        0
    });
    tx.send_all(&msgs).unwrap();
    child.expect_success(T);
}

#[test]
fn send_all_publishes_the_whole_batch_before_returning() {
    let (tx, rx) = pipe::<u64>().unwrap();
    tx.send_all(&[]).unwrap();
    assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
    tx.send_all(&[1, 2, 3]).unwrap();
    for i in 1..=3 {
        assert_eq!(rx.try_recv(), Ok(i));
    }
    assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
    let (a, b) = duplex::<u64>().unwrap();
    a.send_all(&[7, 8]).unwrap();
    assert_eq!((b.try_recv(), b.try_recv()), (Ok(7), Ok(8)));
}

#[test]
fn send_all_reports_disconnected_and_stops_when_the_reader_is_gone() {
    // Serialized with the tests that fork: a child forked by another test between the
    // pipe's creation and the drop holds the read end until its fork hygiene releases it
    // (the sticky check then notices within DEAD_READER_SENDS sends, not at once).
    let _s = serial();
    let (tx, rx) = pipe::<u64>().unwrap();
    drop(rx);
    assert_eq!(tx.send_all(&[1, 2, 3]), Err(SendError::Disconnected));
}

#[test]
fn send_all_refuses_an_oversized_message_after_sending_the_ones_before() {
    let (tx, rx) = Pipe::builder().max_message(16).build::<Vec<u8>>().unwrap();
    let res = tx.send_all(&[vec![1u8; 2], vec![0u8; 100], vec![3u8; 2]]);
    assert!(matches!(res, Err(SendError::TooLarge { .. })));
    assert_eq!(rx.try_recv(), Ok(vec![1u8; 2]));
    assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
}

#[test]
fn a_busy_try_recv_loop_sees_a_dead_writer_within_64_calls() {
    // try_recv asks the kernel about the writers only on the first empty call and then
    // every 64th (a poll() per call made busy-spinning slower than blocking).
    let _s = serial();
    let _w = watchdog(T);
    let (tx, rx) = pipe::<u32>().unwrap();
    let mut child = fork_child(move || {
        tx.send(&1).unwrap();
        std::thread::sleep(Duration::from_secs(60));
        0
    });
    assert_eq!(rx.recv_timeout(T), Ok(1));
    for _ in 0..1000 {
        assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
    }
    child.kill(); // SIGKILL and reap: every descriptor of the writer is closed now
    let mut calls = 0;
    loop {
        calls += 1;
        match rx.try_recv() {
            Err(TryRecvError::Empty) => assert!(calls <= 64, "still Empty after {calls} calls"),
            Err(TryRecvError::Disconnected) => break,
            other => panic!("unexpected {other:?}"),
        }
    }
}

/// Every way of sending, once, through `tx` (or a clone of it): all must say
/// `Disconnected`.
fn assert_every_send_fails(tx: &shmproc::Sender<u64>, what: &str) {
    assert_eq!(tx.send(&1), Err(SendError::Disconnected), "{what}: send");
    assert_eq!(
        tx.try_send(&1),
        Err(TrySendError::Disconnected),
        "{what}: try_send"
    );
    assert_eq!(
        tx.send_timeout(&1, Duration::from_secs(1)),
        Err(SendTimeoutError::Disconnected),
        "{what}: send_timeout"
    );
    assert_eq!(
        tx.send_bytes(&[1]),
        Err(SendError::Disconnected),
        "{what}: send_bytes"
    );
    assert_eq!(
        tx.send_all(&[1, 2]),
        Err(SendError::Disconnected),
        "{what}: send_all"
    );
}

#[test]
fn every_send_fails_once_the_reader_process_dropped_its_end_not_just_the_first() {
    // Python raises BrokenPipeError on every send. Before: the first send failed, and the
    // next 131,071 returned Ok into the default ring, lost.
    let _s = serial();
    let _w = watchdog(T);
    let (tx, rx) = pipe::<u64>().unwrap();
    let (ack_tx, ack_rx) = pipe::<u8>().unwrap();
    let mut child = fork_child(move || {
        assert_eq!(rx.recv(), Ok(7));
        drop(rx);
        ack_tx.send(&1).unwrap();
        // Stay alive: the drop, not the exit, disconnects.
        std::thread::sleep(Duration::from_secs(60));
        0
    });
    let early_clone = tx.clone();
    tx.send(&7).unwrap();
    assert_eq!(ack_rx.recv_timeout(T), Ok(1));
    for i in 0..200_000u64 {
        assert_eq!(
            tx.send(&i),
            Err(SendError::Disconnected),
            "send {i} after the drop"
        );
    }
    assert_every_send_fails(&tx, "the sender");
    assert_every_send_fails(&early_clone, "a clone made before");
    assert_every_send_fails(&tx.clone(), "a clone made after");
    child.kill();
}

#[test]
fn a_connection_whose_recv_saw_the_peer_gone_fails_every_send_at_once() {
    // The peer process dies in two ways: SIGKILLed (nothing dropped: before, every send
    // returned Ok while recv said Disconnected) and exiting normally (its end dropped:
    // before, the first send failed and the next ones returned Ok).
    let _s = serial();
    let _w = watchdog(T);
    for killed in [true, false] {
        let (a, b) = duplex::<u64>().unwrap();
        let mut child = fork_child(move || {
            b.send(&5).unwrap();
            if killed {
                std::thread::sleep(Duration::from_secs(60));
            }
            0
        });
        assert_eq!(a.recv_timeout(T), Ok(5));
        if killed {
            child.kill();
        } else {
            child.expect_success(T);
        }
        assert_eq!(a.recv_timeout(T), Err(RecvTimeoutError::Disconnected));
        for i in 0..10_000u64 {
            assert_eq!(
                a.send(&i),
                Err(SendError::Disconnected),
                "send {i} (killed: {killed})"
            );
        }
        assert_eq!(a.try_send(&1), Err(TrySendError::Disconnected));
        assert_eq!(
            a.send_timeout(&1, Duration::from_secs(1)),
            Err(SendTimeoutError::Disconnected)
        );
        assert_eq!(a.send_bytes(&[1]), Err(SendError::Disconnected));
        assert_eq!(a.send_all(&[1, 2]), Err(SendError::Disconnected));
        assert_eq!(a.try_recv(), Err(TryRecvError::Disconnected));
    }
}

#[test]
fn try_send_of_a_message_that_never_fits_the_ring_says_needs_streaming_not_full() {
    // A 4 KiB ring: records of at most 1 KiB; try_send needs room for every piece of a
    // streamed message and a record of padding at once, so 3 pieces of 1016 bytes less
    // the 8-byte total: 3040 bytes. Before, anything larger said Full for ever.
    let (tx, rx) = Pipe::builder().capacity(4096).build::<Vec<u8>>().unwrap();
    let max = 3040u64;
    // A Vec<u8> of 128..16384 bytes encodes as 2 bytes of length and the bytes.
    let exactly = vec![1u8; max as usize - 2];
    let over = vec![2u8; max as usize - 1];
    let huge = vec![3u8; 1 << 16];
    assert_eq!(
        tx.try_send(&over),
        Err(TrySendError::NeedsStreaming { len: max + 1, max })
    );
    let err = tx.try_send(&huge).unwrap_err();
    assert_eq!(
        err,
        TrySendError::NeedsStreaming {
            len: (1 << 16) + 3,
            max
        }
    );
    let text = err.to_string();
    assert!(
        text.contains("send_timeout") && text.contains("65539"),
        "{text}"
    );
    // Nothing was written; the largest message try_send can place goes into the empty ring.
    assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
    tx.try_send(&exactly).unwrap();
    assert_eq!(rx.try_recv(), Ok(exactly));
    // `send` streams what try_send refuses.
    let reader = std::thread::spawn(move || rx.recv());
    tx.send(&huge).unwrap();
    assert_eq!(reader.join().unwrap(), Ok(huge));
}

#[test]
fn try_send_over_max_message_says_too_large_whatever_the_ring() {
    let (tx, rx) = Pipe::builder()
        .capacity(4096)
        .max_message(100)
        .build::<Vec<u8>>()
        .unwrap();
    // Over the limit and within the ring, and over both: TooLarge, never Full.
    for n in [200usize, 1 << 16] {
        assert!(
            matches!(
                tx.try_send(&vec![0u8; n]),
                Err(TrySendError::TooLarge { max: 100, .. })
            ),
            "{n} bytes"
        );
    }
    assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
    tx.try_send(&vec![4u8; 10]).unwrap();
    assert_eq!(rx.try_recv(), Ok(vec![4u8; 10]));
}

/// `poll(None)` waits for ever, as Python's `poll(None)` (it used to return at once):
/// it returns `true` when a message comes from another process, and `true` at the end
/// of the stream; `poll(Some(Duration::ZERO))` does not wait; `poll(Some(Duration::MAX))`
/// waits (it used to panic).
#[test]
fn poll_none_waits_for_a_message_from_another_process_and_for_eof() {
    let _s = serial();
    let _w = watchdog(T);
    let (tx, rx) = pipe::<u32>().unwrap();
    let (go_tx, go_rx) = pipe::<u8>().unwrap();
    let (pid, tid) = this_thread();
    let mut child = fork_child(move || {
        for v in [1, 2] {
            if go_rx.recv() != Ok(0) {
                return 2;
            }
            wait_asleep(pid, tid, PARKED, T); // the parent waits in poll
            tx.send(&v).unwrap();
        }
        if go_rx.recv() != Ok(0) {
            return 3;
        }
        wait_asleep(pid, tid, PARKED, T);
        0 // drops tx: end of stream
    });
    assert!(!rx.poll(Some(Duration::ZERO)));
    go_tx.send(&0).unwrap();
    assert!(rx.poll(None));
    assert_eq!(rx.try_recv(), Ok(1));
    go_tx.send(&0).unwrap();
    assert!(rx.poll(Some(Duration::MAX)));
    assert_eq!(rx.try_recv(), Ok(2));
    assert!(!rx.poll(Some(Duration::ZERO)));
    go_tx.send(&0).unwrap();
    assert!(rx.poll(None));
    assert_eq!(rx.try_recv(), Err(TryRecvError::Disconnected));
    child.expect_success(T);
}

/// The bytes of message `i` of [`bytes_of_every_size_arrive_whole_in_order_through_every_receive`]:
/// its size cycles through the tiny (up to 6 bytes), small (up to 64), general and
/// streamed (over a quarter of the 8 KiB ring) paths.
fn numbered_bytes(i: u32) -> Vec<u8> {
    let n = match i % 8 {
        0 => 0,
        1 => 1 + (i / 8) % 6,
        2 => 6,
        3 => 7 + (i / 8) % 58,
        4 => 64,
        5 => 65 + (i / 8) % 900,
        6 if i % 80 == 6 => 5000,
        _ => 8,
    };
    (0..n).map(|j| (i.wrapping_mul(31) + j) as u8).collect()
}

#[test]
fn bytes_of_every_size_arrive_whole_in_order_through_every_receive() {
    let _s = serial();
    let _w = watchdog(T);
    const N: u32 = 20_000;
    let (tx, rx) = Pipe::builder().capacity(8192).build::<()>().unwrap();
    let mut child = fork_child(move || {
        for i in 0..N {
            tx.send_bytes(&numbered_bytes(i)).unwrap();
        }
        0
    });
    let mut buf = vec![0xEE; 3];
    for i in 0..N {
        // recv_bytes_into (into a buffer holding the last message), recv_bytes and
        // recv_with in turn.
        let got = match i % 3 {
            0 => {
                let n = rx.recv_bytes_into(&mut buf).unwrap();
                assert_eq!(n, buf.len());
                buf.clone()
            }
            1 => rx.recv_bytes().unwrap(),
            _ => rx.recv_with(|b| b.to_vec()).unwrap(),
        };
        assert_eq!(got, numbered_bytes(i), "message {i}");
    }
    child.expect_success(T);
    assert_eq!(rx.recv_bytes(), Err(RecvError::Disconnected));
}
