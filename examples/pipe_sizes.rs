//! Messages per second through a pipe by message size: a forked reader process
//! `recv_bytes_into`s `count` messages that the parent `send_bytes`, for sizes from 8 B
//! to 4 KiB. Prints one line per size: ns per message and bandwidth.
//!
//! ```text
//! cargo run --release --example pipe_sizes [count] [ring capacity in bytes]
//! ```
use std::time::Instant;

use shmproc::{Pipe, Process, Receiver};

fn reader((rx, count, size): (Receiver<()>, u64, usize)) {
    let mut buf = Vec::new();
    for _ in 0..count {
        match rx.recv_bytes_into(&mut buf) {
            Ok(n) if n == size => {}
            _ => std::process::exit(3),
        }
    }
}

fn main() -> shmproc::Result<()> {
    shmproc::init();
    let count: u64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let capacity: usize = std::env::args()
        .nth(2)
        .and_then(|s| s.parse().ok())
        .unwrap_or(shmproc::DEFAULT_CAPACITY);
    for size in [8usize, 16, 32, 48, 56, 64, 72, 96, 128, 256, 1024, 4096] {
        let (tx, rx) = Pipe::builder().capacity(capacity).build::<()>()?;
        let msg = vec![0x5a_u8; size];
        let mut p = Process::new(reader, (rx, count, size));
        p.start()?;
        let start = Instant::now();
        for _ in 0..count {
            tx.send_bytes(&msg).expect("reader alive");
        }
        p.join()?;
        let took = start.elapsed().as_secs_f64();
        assert_eq!(p.exitcode(), Some(0), "reader saw a wrong message");
        println!(
            "{size:>5} B: {:>7.1} ns/msg, {:>6.2} GiB/s",
            took * 1e9 / count as f64,
            (size as f64 * count as f64) / took / (1u64 << 30) as f64
        );
    }
    Ok(())
}
