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
//!   Throughput in bytes.
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

fn in_place(c: &mut Criterion) {
    const SIZE: usize = 1 << 20;
    const RING: usize = 4 << 20;
    let mut g = c.benchmark_group("inplace");
    g.throughput(Throughput::Bytes(SIZE as u64));
    g.sample_size(20);
    let msg = vec![0x5au8; SIZE];
    let check = |b: &[u8]| b.len() == SIZE && b[0] == 0x5a && b[SIZE - 1] == 0x5a;

    let (tx, rx) = Pipe::builder().capacity(RING).build::<()>().unwrap();
    let peer = Peer::start(move |n| {
        for _ in 0..n {
            assert!(rx.recv_with(check).unwrap());
        }
    });
    g.bench_function("send_with_recv_with_1MiB", |b| {
        b.iter_custom(|iters| {
            peer.run(iters, |n| {
                for _ in 0..n {
                    tx.send_with(SIZE, |buf| buf.copy_from_slice(&msg)).unwrap();
                }
            })
        })
    });
    drop(peer);

    let (tx, rx) = Pipe::builder().capacity(RING).build::<()>().unwrap();
    let peer = Peer::start(move |n| {
        let mut buf = Vec::new();
        for _ in 0..n {
            rx.recv_bytes_into(&mut buf).unwrap();
            assert!(check(&buf));
        }
    });
    g.bench_function("send_bytes_recv_bytes_into_1MiB", |b| {
        b.iter_custom(|iters| {
            peer.run(iters, |n| {
                for _ in 0..n {
                    tx.send_bytes(&msg).unwrap();
                }
            })
        })
    });
    drop(peer);
    g.finish();
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
