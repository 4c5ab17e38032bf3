//! Throughput across processes: messages per second and bytes per second through a
//! shmproc pipe (the reader a forked process), against an OS pipe in the same run.
//!
//! * `msgs/*`: typed messages, one `send` per message (the seed's `Msg`, `u64`), and the
//!   batch API `send_all` (1024 `u64` per call). Throughput in elements.
//! * `bytes/*`: `send_bytes`/`recv_bytes_into` of 8 B, 64 B, 1 KiB, 64 KiB and 1 MiB
//!   messages, and the same sizes through an OS pipe (`write_all`/`read_exact` per
//!   message). Throughput in bytes; one iteration is one message, so messages/s is
//!   1 / time.
//!
//! * `inplace/*`: 1 MiB messages through a 4 MiB ring (in-place limit 1 MiB):
//!   `send_with` (fill copies the message in) / `recv_with` (read looks at its first and
//!   last byte) against `send_bytes` / `recv_bytes_into` through the same ring size.
//!   Then the same pair where the application makes and uses the message, as a user
//!   of the in-place API would: `made_*` writes each message's 2^17 words from a
//!   sequence number and the reader sums every word and checks the sum. In place the
//!   words are written into the ring and summed there; the copying path writes them
//!   into a buffer, `send_bytes` copies it in, `recv_bytes_into` copies it out, and the
//!   reader sums its copy. And the two halves of the in-place pair alone, to show what
//!   bounds it: `parts_read_only` (the writer lends 1 MiB without writing it, the reader
//!   sums it) and `parts_write_only` (the writer makes the message, the reader looks at
//!   one byte). Throughput in bytes.
//!
//! Run: `cargo bench --bench throughput`. Under `cargo test` every bench runs once.

mod common;

use std::io::{Read, Write};

use common::{os_pipe, Msg, Peer};
use criterion::{BenchmarkId, Criterion, Throughput};
use shmproc::{pipe, Pipe};

const SIZES: [(usize, &str); 5] = [
    (8, "8B"),
    (64, "64B"),
    (1024, "1KiB"),
    (64 << 10, "64KiB"),
    (1 << 20, "1MiB"),
];

fn msgs(c: &mut Criterion) {
    let mut g = c.benchmark_group("msgs");
    g.throughput(Throughput::Elements(1));

    let (tx, rx) = pipe::<Msg>().unwrap();
    let peer = Peer::start(move |n| {
        for _ in 0..n {
            assert!(matches!(rx.recv(), Ok(Msg::Int(_))));
        }
    });
    g.bench_function("shmproc_pipe_seed_Msg", |b| {
        b.iter_custom(|iters| {
            peer.run(iters, |n| {
                for i in 0..n {
                    tx.send(&Msg::Int(i)).unwrap();
                }
            })
        })
    });
    drop(peer);

    let (tx, rx) = pipe::<u64>().unwrap();
    let peer = Peer::start(move |n| {
        for _ in 0..n {
            rx.recv().unwrap();
        }
    });
    g.bench_function("shmproc_pipe_u64", |b| {
        b.iter_custom(|iters| {
            peer.run(iters, |n| {
                for i in 0..n {
                    tx.send(&i).unwrap();
                }
            })
        })
    });
    drop(peer);

    const BATCH: usize = 1024;
    g.throughput(Throughput::Elements(BATCH as u64));
    let (tx, rx) = pipe::<u64>().unwrap();
    let peer = Peer::start(move |n| {
        for _ in 0..n * BATCH as u64 {
            rx.recv().unwrap();
        }
    });
    let batch: Vec<u64> = (0..BATCH as u64).collect();
    g.bench_function("shmproc_send_all_u64_x1024", |b| {
        b.iter_custom(|iters| {
            peer.run(iters, |n| {
                for _ in 0..n {
                    tx.send_all(&batch).unwrap();
                }
            })
        })
    });
    drop(peer);
    g.finish();
}

fn bytes(c: &mut Criterion) {
    let mut g = c.benchmark_group("bytes");
    for (size, name) in SIZES {
        g.throughput(Throughput::Bytes(size as u64));
        if size >= 64 << 10 {
            g.sample_size(20);
        } else {
            g.sample_size(50);
        }
        let msg = vec![0x5au8; size];

        let (tx, rx) = pipe::<()>().unwrap();
        let peer = Peer::start(move |n| {
            let mut buf = Vec::new();
            for _ in 0..n {
                assert_eq!(rx.recv_bytes_into(&mut buf).unwrap(), size);
            }
        });
        g.bench_with_input(BenchmarkId::new("shmproc_pipe", name), &msg, |b, msg| {
            b.iter_custom(|iters| {
                peer.run(iters, |n| {
                    for _ in 0..n {
                        tx.send_bytes(msg).unwrap();
                    }
                })
            })
        });
        drop(peer);

        let (mut r, mut w) = os_pipe();
        let peer = Peer::start(move |n| {
            let mut buf = vec![0u8; size];
            for _ in 0..n {
                r.read_exact(&mut buf).unwrap();
            }
        });
        g.bench_with_input(BenchmarkId::new("os_pipe", name), &msg, |b, msg| {
            b.iter_custom(|iters| {
                peer.run(iters, |n| {
                    for _ in 0..n {
                        w.write_all(msg).unwrap();
                    }
                })
            })
        });
        drop(peer);
    }
    g.finish();
}

/// The in-place benches' message size and ring.
const IN_PLACE_SIZE: usize = 1 << 20;
const IN_PLACE_RING: usize = 4 << 20;

fn in_place(c: &mut Criterion) {
    const SIZE: usize = IN_PLACE_SIZE;
    let mut g = c.benchmark_group("inplace");
    g.throughput(Throughput::Bytes(SIZE as u64));
    g.sample_size(20);
    let msg = vec![0x5au8; SIZE];
    let check = |b: &[u8]| assert!(b.len() == SIZE && b[0] == 0x5a && b[SIZE - 1] == 0x5a);

    // A prebuilt message: `fill` copies it in, `read` looks at two bytes.
    in_place_pair(&mut g, "send_with_recv_with_1MiB", check, |buf, _| {
        buf.copy_from_slice(&msg)
    });
    copying_pair(
        &mut g,
        "send_bytes_recv_bytes_into_1MiB",
        check,
        &msg,
        |_, _| {},
    );
    // The message made and used by the application: one word per 8 bytes from a
    // sequence number, summed by the reader.
    let made = |b: &[u8]| assert_eq!(word_sum(b), made_sum(word_at(b, 0)));
    in_place_pair(&mut g, "made_send_with_recv_with_1MiB", made, make);
    // The two halves of the made pair alone.
    in_place_pair(
        &mut g,
        "parts_read_only_1MiB",
        |b| {
            std::hint::black_box(word_sum(b));
        },
        |_, _| {},
    );
    in_place_pair(
        &mut g,
        "parts_write_only_1MiB",
        |b| assert!(!b.is_empty()),
        make,
    );
    let zeros = vec![0; SIZE];
    copying_pair(
        &mut g,
        "made_send_bytes_recv_bytes_into_1MiB",
        made,
        &zeros,
        make,
    );
    g.finish();
}

/// An `inplace` bench: the writer `send_with`s messages that `fill(buf, seq)` writes
/// (`seq` counting from 1), a forked reader `recv_with`s each into `read`.
fn in_place_pair(
    g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    name: &str,
    read: impl Fn(&[u8]) + Copy + Send + 'static,
    mut fill: impl FnMut(&mut [u8], u64),
) {
    let (tx, rx) = Pipe::builder()
        .capacity(IN_PLACE_RING)
        .build::<()>()
        .unwrap();
    let peer = Peer::start(move |n| {
        for _ in 0..n {
            rx.recv_with(read).unwrap();
        }
    });
    let mut seq = 0u64;
    g.bench_function(name, |b| {
        b.iter_custom(|iters| {
            peer.run(iters, |n| {
                for _ in 0..n {
                    seq += 1;
                    tx.send_with(IN_PLACE_SIZE, |buf| fill(buf, seq)).unwrap();
                }
            })
        })
    });
}

/// [`in_place_pair`] through the copying calls: `fill` writes the writer's buffer
/// (which starts as `first`), `send_bytes` copies it into the ring, the reader
/// `recv_bytes_into`s its own buffer and `read`s that.
fn copying_pair(
    g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    name: &str,
    read: impl Fn(&[u8]) + Copy + Send + 'static,
    first: &[u8],
    mut fill: impl FnMut(&mut [u8], u64),
) {
    let (tx, rx) = Pipe::builder()
        .capacity(IN_PLACE_RING)
        .build::<()>()
        .unwrap();
    let peer = Peer::start(move |n| {
        let mut buf = Vec::new();
        for _ in 0..n {
            rx.recv_bytes_into(&mut buf).unwrap();
            read(&buf);
        }
    });
    let mut msg = first.to_vec();
    let mut seq = 0u64;
    g.bench_function(name, |b| {
        b.iter_custom(|iters| {
            peer.run(iters, |n| {
                for _ in 0..n {
                    seq += 1;
                    fill(&mut msg, seq);
                    tx.send_bytes(&msg).unwrap();
                }
            })
        })
    });
}

/// Writes message `seq`: word `i` (8 bytes, little-endian) is `seq + i`.
fn make(buf: &mut [u8], seq: u64) {
    for (i, w) in buf.chunks_exact_mut(8).enumerate() {
        w.copy_from_slice(&(seq + i as u64).to_le_bytes());
    }
}

/// Word `i` of a message.
fn word_at(buf: &[u8], i: usize) -> u64 {
    u64::from_le_bytes(buf[8 * i..8 * i + 8].try_into().unwrap())
}

/// The wrapping sum of a message's words.
fn word_sum(buf: &[u8]) -> u64 {
    buf.chunks_exact(8).fold(0u64, |s, w| {
        s.wrapping_add(u64::from_le_bytes(w.try_into().unwrap()))
    })
}

/// [`word_sum`] of the 1 MiB message [`make`] writes for `seq`.
fn made_sum(seq: u64) -> u64 {
    let n = (1u64 << 20) / 8;
    seq.wrapping_mul(n).wrapping_add(n * (n - 1) / 2)
}

fn main() {
    // First: a spawned child runs its target here (this binary spawns none, but every
    // shmproc program starts this way).
    shmproc::init();
    let mut c = Criterion::default()
        .warm_up_time(std::time::Duration::from_secs(1))
        .measurement_time(std::time::Duration::from_secs(3))
        .configure_from_args();
    msgs(&mut c);
    bytes(&mut c);
    in_place(&mut c);
    c.final_summary();
}
