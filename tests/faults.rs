//! Fault injection across real processes: SIGKILL of a writer or a reader at random
//! points, hundreds of times, with random delays and message sizes (many larger than the
//! ring, so kills land mid-stream). After each kill: no hang, no torn, duplicated or
//! reordered message delivered, the right error (`Disconnected`) reported.

mod common;

use std::time::{Duration, Instant};

use common::{fork_child, serial, watchdog};
use shmproc::fuzzing::DEAD_READER_SENDS;
use shmproc::{Pipe, RecvTimeoutError, SendError, SendTimeoutError, TrySendError};

const T: Duration = Duration::from_secs(120);

/// A tiny deterministic generator (xorshift), so a failing round can be replayed.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Message `seq` of a round: its length and every byte follow from `seq`, so the reader
/// can check it is whole.
fn message(seq: u64, ring: u64) -> Vec<u8> {
    let mut r = Rng(seq.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let len = match r.below(10) {
        0 => 0,
        1..=6 => r.below(200),
        7 | 8 => r.below(ring),
        _ => ring + r.below(3 * ring), // streamed in pieces
    } as usize;
    let mut v = Vec::with_capacity(len + 8);
    v.extend_from_slice(&seq.to_le_bytes());
    v.extend((0..len).map(|i| (seq as usize).wrapping_mul(31).wrapping_add(i) as u8));
    v
}

fn check(v: &[u8], expected_seq: u64, ring: u64) {
    assert!(v.len() >= 8, "message shorter than its sequence number");
    let seq = u64::from_le_bytes(v[..8].try_into().unwrap());
    assert_eq!(seq, expected_seq, "duplicated, lost or reordered message");
    assert!(v == message(seq, ring), "torn message {seq}");
}

#[test]
fn sigkill_of_the_writer_at_random_points_never_delivers_a_torn_message() {
    let _s = serial();
    let _w = watchdog(T);
    let mut rng = Rng(0x5EED_0001);
    let rounds = 200;
    let (mut delivered, mut mid_stream) = (0u64, 0u32);
    for round in 0..rounds {
        let ring = [4096u64, 16384][round % 2];
        let (tx, rx) = Pipe::builder()
            .capacity(ring as usize)
            .build::<Vec<u8>>()
            .unwrap();
        let mut child = fork_child(move || {
            for seq in 0.. {
                tx.send(&message(seq, ring)).unwrap();
            }
            0
        });
        let delay = Duration::from_micros(rng.below(20_000));
        let start = Instant::now();
        let mut next = 0u64;
        let mut killed = false;
        loop {
            if !killed && start.elapsed() >= delay {
                child.kill();
                killed = true;
            }
            match rx.recv_timeout(Duration::from_millis(if killed { 5000 } else { 1 })) {
                Ok(v) => {
                    check(&v, next, ring);
                    next += 1;
                }
                Err(RecvTimeoutError::Timeout) if !killed => {}
                Err(RecvTimeoutError::Disconnected) if killed => break,
                Err(e) => panic!("round {round}: unexpected {e:?} (killed: {killed})"),
            }
        }
        delivered += next;
        // Was the writer killed in the middle of a message larger than the ring?
        if message(next, ring).len() as u64 > ring {
            mid_stream += 1;
        }
    }
    eprintln!(
        "{rounds} writer kills: {delivered} whole messages delivered, \
         {mid_stream} kills while the next message was a streamed one"
    );
    assert!(
        mid_stream > 0,
        "no kill landed on a streamed message; widen the sizes"
    );
}

#[test]
fn sigkill_of_the_reader_at_random_points_gives_the_writer_disconnected() {
    let _s = serial();
    let _w = watchdog(T);
    let mut rng = Rng(0x5EED_0002);
    for round in 0..100 {
        let ring = 4096u64;
        let (tx, rx) = Pipe::builder()
            .capacity(ring as usize)
            .build::<()>()
            .unwrap();
        let mut child = fork_child(move || {
            while rx.recv().is_ok() {}
            0
        });
        let delay = Duration::from_micros(rng.below(3000));
        let start = Instant::now();
        let mut killed = false;
        loop {
            if !killed && start.elapsed() >= delay {
                child.kill();
                killed = true;
            }
            match tx.send_timeout(&(), Duration::from_millis(1)) {
                Ok(()) => {}
                Err(SendTimeoutError::Timeout) if !killed => continue,
                Err(SendTimeoutError::Disconnected) if killed => break,
                Err(e) => panic!("round {round}: unexpected {e:?} (killed: {killed})"),
            }
        }
    }
}

#[test]
fn a_sigkilled_reader_is_noticed_within_dead_reader_sends_and_for_good() {
    // The reader consumes everything up to its death (so its `head` has just moved, the
    // writer's cheap reason to skip asking the kernel), at a random point of the writer's
    // check interval. Before: 131,071 sends into the default ring returned Ok.
    let _s = serial();
    let _w = watchdog(T);
    let mut rng = Rng(0x5EED_0003);
    for round in 0..20 {
        let (tx, rx) = Pipe::builder().build::<u64>().unwrap();
        let (ack_tx, ack_rx) = Pipe::builder().build::<u64>().unwrap();
        let mut child = fork_child(move || {
            let mut n = 0u64;
            while let Ok(x) = rx.recv() {
                if x == u64::MAX {
                    ack_tx.send(&n).unwrap();
                } else {
                    n += 1;
                }
            }
            0
        });
        let before = rng.below(5000);
        for i in 0..before {
            tx.send(&i).unwrap();
        }
        tx.send(&u64::MAX).unwrap();
        assert_eq!(ack_rx.recv_timeout(T), Ok(before), "round {round}");
        child.kill(); // SIGKILL and reap
        let mut ok = 0u32;
        let err = loop {
            match tx.send(&1) {
                Ok(()) => ok += 1,
                Err(e) => break e,
            }
            assert!(
                ok < DEAD_READER_SENDS,
                "round {round}: {ok} sends to a dead reader"
            );
        };
        assert_eq!(err, SendError::Disconnected, "round {round}");
        for _ in 0..1000 {
            assert_eq!(tx.send(&1), Err(SendError::Disconnected), "round {round}");
            assert_eq!(
                tx.try_send(&1),
                Err(TrySendError::Disconnected),
                "round {round}"
            );
        }
    }
}

#[test]
fn try_send_to_a_sigkilled_reader_says_disconnected_never_full() {
    let _s = serial();
    let _w = watchdog(T);
    // A full ring: before, try_send said Full for ever. Now at the first call.
    let (tx, rx) = Pipe::builder().capacity(4096).build::<u64>().unwrap();
    let mut child = fork_child(move || {
        let _keep = rx;
        std::thread::sleep(Duration::from_secs(60));
        0
    });
    let mut sent = 0;
    while tx.try_send(&sent).is_ok() {
        sent += 1;
    }
    assert_eq!(tx.try_send(&0), Err(TrySendError::Full), "reader alive");
    child.kill();
    // A full try_send asks the kernel at most every 100 µs (the call above just did).
    std::thread::sleep(Duration::from_millis(1));
    for _ in 0..1000 {
        assert_eq!(tx.try_send(&0), Err(TrySendError::Disconnected));
    }
    assert_eq!(tx.send(&0), Err(SendError::Disconnected));
    // Room to spare (64 KiB: 8192 messages): within DEAD_READER_SENDS calls, never Full.
    let (tx, rx) = Pipe::builder().capacity(1 << 16).build::<u64>().unwrap();
    let mut child = fork_child(move || {
        let _keep = rx;
        std::thread::sleep(Duration::from_secs(60));
        0
    });
    tx.try_send(&0).unwrap();
    child.kill();
    let mut ok = 0u32;
    let err = loop {
        match tx.try_send(&1) {
            Ok(()) => ok += 1,
            Err(e) => break e,
        }
        assert!(ok < DEAD_READER_SENDS, "{ok} try_sends to a dead reader");
    };
    assert_eq!(err, TrySendError::Disconnected);
    assert_eq!(tx.try_send(&1), Err(TrySendError::Disconnected));
}

/// Message `seq` of writer `w` (0 or 1): its first byte names the writer. The victim
/// (0) sends messages of an eighth to a quarter of the ring, encoded in place, so that a
/// kill often lands mid-encode and leaves bytes in the free space; the survivor (1) sends
/// short ones, which leave those bytes just past its records, where the reader looks
/// next.
fn tagged(w: u8, seq: u64, ring: u64) -> Vec<u8> {
    let mut r = Rng(seq.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ u64::from(w) | 1);
    let len = if w == 0 {
        ring / 8 + r.below(ring / 8 - 64)
    } else {
        r.below(40)
    } as usize;
    let mut v = Vec::with_capacity(len + 9);
    v.push(w);
    v.extend_from_slice(&seq.to_le_bytes());
    v.extend((0..len).map(|i| (seq as usize).wrapping_mul(31).wrapping_add(i) as u8 | 0x80));
    v
}

#[test]
fn a_writer_killed_mid_send_leaves_the_ring_sound_for_the_other_writer() {
    // Two writer processes share the sending end (so every send takes the ring's writer
    // lock); one is SIGKILLed at a random point, often in the middle of a send, leaving
    // bytes it never published in the free space, or a record it published but did not
    // count in `tail`. The survivor takes the lock over from the dead holder, repairs the
    // ring and goes on: all of its messages arrive whole and in order, the victim's as a
    // whole, ordered prefix, and nothing torn or garbled is ever delivered.
    let _s = serial();
    let _w = watchdog(T);
    let mut rng = Rng(0x5EED_0003);
    let rounds = 40;
    const SURVIVOR_SENDS: u64 = 400;
    let mut victim_delivered = 0u64;
    for round in 0..rounds {
        // Rings large enough that the victim mostly finds room and encodes in place
        // (its pushes of 2-16 KiB byte by byte are where kills land).
        let ring = [16384u64, 65536][round % 2];
        let (tx, rx) = Pipe::builder()
            .capacity(ring as usize)
            .build::<Vec<u8>>()
            .unwrap();
        let victim_tx = tx.clone();
        let mut victim = fork_child(move || {
            for seq in 0.. {
                victim_tx.send(&tagged(0, seq, ring)).unwrap();
            }
            0
        });
        let survivor_tx = tx.clone();
        let mut survivor = fork_child(move || {
            for seq in 0..SURVIVOR_SENDS {
                survivor_tx.send(&tagged(1, seq, ring)).unwrap();
                // Pauses let the reader catch up with the last record, and look at the
                // word past it.
                if seq % 4 == 0 {
                    std::thread::sleep(Duration::from_micros(30));
                }
            }
            0
        });
        drop(tx);
        let delay = Duration::from_micros(rng.below(10_000));
        let start = Instant::now();
        let mut next = [0u64; 2];
        let mut killed = false;
        loop {
            if !killed && start.elapsed() >= delay {
                victim.kill();
                killed = true;
            }
            match rx.recv_timeout(Duration::from_millis(if killed { 10_000 } else { 1 })) {
                Ok(v) => {
                    let w = v[0];
                    assert!(w < 2, "round {round}: garbled message");
                    let seq = next[w as usize];
                    assert!(
                        v == tagged(w, seq, ring),
                        "round {round}: writer {w}'s message {seq} torn, lost or reordered"
                    );
                    next[w as usize] += 1;
                }
                Err(RecvTimeoutError::Timeout) if !killed => {}
                Err(RecvTimeoutError::Disconnected) if killed => break,
                Err(e) => panic!("round {round}: unexpected {e:?} (killed: {killed})"),
            }
        }
        assert_eq!(
            next[1], SURVIVOR_SENDS,
            "round {round}: the survivor lost messages"
        );
        survivor.expect_success(T);
        victim_delivered += next[0];
    }
    eprintln!(
        "{rounds} rounds: {victim_delivered} of the victims' messages delivered before their \
         kills, every survivor message delivered"
    );
}
