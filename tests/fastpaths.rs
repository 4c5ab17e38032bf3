//! The fastest paths across real forked processes: `Pod` batches (`send_slice`,
//! `recv_slice`, `try_recv_slice`) mixed with per-message sends and receives, and
//! messages in place (`send_with`, `recv_with`), including panics and SIGKILL inside
//! them.

mod common;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Duration;

use common::{fork_child, serial, watchdog};
use shmproc::{pipe, Pipe, RecvError, SendError, TryRecvError};

const T: Duration = Duration::from_secs(60);

/// A small seeded generator (xorshift64*): the same mix for the same seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// The writer's side of a random mix: slices of random length (some many times the
/// ring) and single messages, numbering the elements 0..total.
fn write_mix(tx: &shmproc::Sender<u64>, seed: u64, total: u64) {
    let mut rng = Rng(seed);
    let mut next = 0u64;
    while next < total {
        let n = match rng.below(4) {
            0 => 1 + rng.below(10_000),
            1 => 1 + rng.below(100),
            _ => 1,
        }
        .min(total - next);
        if n == 1 && rng.below(2) == 0 {
            tx.send(&next).unwrap();
        } else {
            let v: Vec<u64> = (next..next + n).collect();
            tx.send_slice(&v).unwrap();
        }
        next += n;
    }
}

/// The reader's side: random `recv_slice`, `try_recv_slice` and `recv` calls (a `recv`
/// that meets a batch gets `Batch` and loses nothing); checks order and exactly-once.
fn read_mix(rx: &shmproc::Receiver<u64>, seed: u64, total: u64) -> Result<(), String> {
    let mut rng = Rng(seed ^ 0xDEAD_BEEF);
    let mut next = 0u64;
    let mut buf = vec![0u64; 5000];
    while next < total {
        let got: Vec<u64> = match rng.below(3) {
            0 => match rx.recv() {
                Ok(v) => vec![v],
                Err(RecvError::Batch) => {
                    let n = 1 + rng.below(buf.len() as u64) as usize;
                    let k = rx.recv_slice(&mut buf[..n]).map_err(|e| e.to_string())?;
                    buf[..k].to_vec()
                }
                Err(e) => return Err(format!("recv: {e}")),
            },
            1 => match rx.try_recv_slice(&mut buf[..1 + rng.below(64) as usize]) {
                Ok(k) if k > 0 => buf[..k].to_vec(),
                Ok(_) => return Err("try_recv_slice returned 0".into()),
                Err(TryRecvError::Empty) => vec![],
                Err(e) => return Err(format!("try_recv_slice: {e}")),
            },
            _ => {
                let n = 1 + rng.below(buf.len() as u64) as usize;
                let k = rx.recv_slice(&mut buf[..n]).map_err(|e| e.to_string())?;
                if k == 0 || k > n {
                    return Err(format!("recv_slice gave {k} of {n}"));
                }
                buf[..k].to_vec()
            }
        };
        for v in got {
            if v != next {
                return Err(format!("got {v}, expected {next}"));
            }
            next += 1;
        }
    }
    match rx.recv() {
        Err(RecvError::Disconnected) => Ok(()),
        other => Err(format!("after the last element: {other:?}")),
    }
}

#[test]
fn random_mixes_of_slices_and_messages_arrive_in_order_exactly_once() {
    let _s = serial();
    let _w = watchdog(T);
    for seed in [1u64, 2, 3, 0x5EED] {
        let total = 200_000;
        // A small ring: slices stream past it, records wrap, the reader keeps pace.
        let (tx, rx) = Pipe::builder().capacity(16 << 10).build::<u64>().unwrap();
        let mut child = fork_child(move || {
            write_mix(&tx, seed, total);
            0
        });
        let res = read_mix(&rx, seed, total);
        child.expect_success(T);
        res.unwrap_or_else(|e| panic!("seed {seed}: {e}"));
    }
}

#[test]
fn recv_on_a_batch_is_an_error_and_the_batch_stays_for_recv_slice() {
    let _s = serial();
    let _w = watchdog(T);
    let (tx, rx) = pipe::<u64>().unwrap();
    let mut child = fork_child(move || {
        tx.send(&7).unwrap();
        tx.send_slice(&[1, 2, 3]).unwrap();
        0
    });
    child.expect_success(T);
    assert_eq!(rx.recv(), Ok(7));
    assert_eq!(rx.recv(), Err(RecvError::Batch));
    assert_eq!(rx.recv_bytes(), Err(RecvError::Batch));
    assert_eq!(rx.recv_with(|b| b.len()), Err(RecvError::Batch));
    assert!(RecvError::Batch.to_string().contains("recv_slice"));
    let mut buf = [0u64; 2];
    assert_eq!(rx.recv_slice(&mut buf), Ok(2));
    assert_eq!(buf, [1, 2]);
    // Partly read: still a batch at the head.
    assert_eq!(rx.recv(), Err(RecvError::Batch));
    assert_eq!(rx.recv_slice(&mut buf), Ok(1));
    assert_eq!(buf[0], 3);
    assert_eq!(rx.recv_slice(&mut buf), Err(RecvError::Disconnected));
    assert_eq!(rx.try_recv_slice(&mut buf), Err(TryRecvError::Disconnected));
}

#[test]
fn a_writer_killed_inside_a_streaming_send_slice_leaves_whole_elements_then_disconnected() {
    let _s = serial();
    let _w = watchdog(T);
    for round in 0..4u64 {
        let (tx, rx) = Pipe::builder().capacity(8 << 10).build::<u64>().unwrap();
        let (note_tx, note_rx) = pipe::<u64>().unwrap();
        let mut child = fork_child(move || {
            note_tx.send(&0).unwrap();
            // 8 MB through an 8 KiB ring: killed somewhere inside.
            let v: Vec<u64> = (0..1_000_000).collect();
            tx.send_slice(&v).unwrap();
            note_tx.send(&1).unwrap();
            std::thread::sleep(Duration::from_secs(600));
            0
        });
        assert_eq!(note_rx.recv(), Ok(0));
        let mut next = 0u64;
        let mut buf = vec![0u64; 1000];
        // Read some, then kill the writer mid-slice, at a point varying by round.
        while next < 50_000 + round * 77_777 {
            let k = rx.recv_slice(&mut buf).unwrap();
            for &v in &buf[..k] {
                assert_eq!(v, next);
                next += 1;
            }
        }
        child.kill();
        loop {
            match rx.recv_slice(&mut buf) {
                Ok(k) => {
                    for &v in &buf[..k] {
                        assert_eq!(v, next, "a torn or repeated element");
                        next += 1;
                    }
                }
                Err(RecvError::Disconnected) => break,
                Err(e) => panic!("after the kill: {e}"),
            }
        }
        assert!(next < 1_000_000, "the writer was killed inside the slice");
    }
}

#[test]
fn send_with_messages_are_bytes_messages_read_in_place_or_by_recv_bytes() {
    let _s = serial();
    let _w = watchdog(T);
    let (tx, rx) = Pipe::builder().capacity(64 << 10).build::<u32>().unwrap();
    let limit = tx.in_place_limit();
    assert_eq!(limit, 16 << 10);
    let mut child = fork_child(move || {
        for len in [0usize, 1, 6, 7, 100, 4096, 16 << 10] {
            let r = tx
                .send_with(len, |b| {
                    assert!(b.iter().all(|&x| x == 0), "fill finds zeroed space");
                    for (i, x) in b.iter_mut().enumerate() {
                        *x = (i % 251) as u8;
                    }
                    len
                })
                .unwrap();
            assert_eq!(r, len);
        }
        match tx.send_with((16 << 10) + 1, |_| ()) {
            Err(SendError::TooLargeInPlace { len, max }) if len == max + 1 => {}
            other => panic!("over the limit: {other:?}"),
        }
        // Streamed (four times the ring): readable with recv_with through a copy.
        tx.send_bytes(&vec![9u8; 256 << 10]).unwrap();
        0
    });
    for (k, len) in [0usize, 1, 6, 7, 100, 4096, 16 << 10]
        .into_iter()
        .enumerate()
    {
        let want: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        if k % 2 == 0 {
            assert!(rx.recv_with(|b| b == &want[..]).unwrap(), "len {len}");
        } else {
            assert_eq!(rx.recv_bytes().unwrap(), want, "len {len}");
        }
    }
    let n = rx
        .recv_with(|b| {
            assert!(b.iter().all(|&x| x == 9));
            b.len()
        })
        .unwrap();
    assert_eq!(n, 256 << 10);
    child.expect_success(T);
    assert_eq!(rx.recv_with(|b| b.len()), Err(RecvError::Disconnected));
}

#[test]
fn a_panic_in_fill_publishes_nothing_and_the_ring_works_on() {
    let _s = serial();
    let _w = watchdog(T);
    let (tx, rx) = Pipe::builder().capacity(4096).build::<u64>().unwrap();
    let mut child = fork_child(move || {
        for round in 0..100usize {
            let len = 8 + round * 9 % 1000;
            let r = catch_unwind(AssertUnwindSafe(|| {
                tx.send_with(len, |b| {
                    b[..len / 2].fill(0xEE);
                    panic!("fill gives up");
                })
            }));
            assert!(r.is_err(), "the panic propagates");
            // The space the aborted fill wrote is lent again (not cleared: `fill` writes
            // every byte it sends); the reader sees only this message.
            tx.send_with(len, |b| b.fill(round as u8)).unwrap();
            tx.send(&(round as u64)).unwrap();
        }
        0
    });
    for round in 0..100usize {
        let len = 8 + round * 9 % 1000;
        let ok = rx
            .recv_with(|b| b.len() == len && b.iter().all(|&x| x == round as u8))
            .unwrap();
        assert!(ok, "round {round}");
        assert_eq!(rx.recv(), Ok(round as u64));
    }
    child.expect_success(T);
    assert_eq!(rx.recv(), Err(RecvError::Disconnected));
}

#[test]
fn a_panic_in_read_consumes_nothing() {
    // Serialized with the tests that fork: a child forked while this thread panics would
    // find std's backtrace lock held for ever and hang in its own panic.
    let _s = serial();
    let (tx, rx) = pipe::<u64>().unwrap();
    tx.send_bytes(&[1u8; 100]).unwrap();
    let r = catch_unwind(AssertUnwindSafe(|| {
        rx.recv_with(|_| panic!("read gives up"))
    }));
    assert!(r.is_err());
    assert_eq!(rx.recv_bytes().unwrap(), vec![1u8; 100]);
}

#[test]
fn a_writer_killed_inside_send_with_publishes_nothing_then_disconnected() {
    let _s = serial();
    let _w = watchdog(T);
    for len in [5usize, 3000, 16 << 10] {
        let (tx, rx) = Pipe::builder().capacity(64 << 10).build::<u64>().unwrap();
        let (note_tx, note_rx) = pipe::<u64>().unwrap();
        let mut child = fork_child(move || {
            tx.send(&1).unwrap();
            tx.send_with(len, |b| {
                b[..len / 2].fill(0xAB);
                note_tx.send(&2).unwrap();
                std::thread::sleep(Duration::from_secs(600));
            })
            .unwrap();
            0
        });
        assert_eq!(note_rx.recv(), Ok(2));
        child.kill();
        assert_eq!(rx.recv(), Ok(1));
        assert_eq!(rx.recv_with(|b| b.len()), Err(RecvError::Disconnected));
    }
}
