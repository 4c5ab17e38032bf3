//! Cost of the pipe's send and recv fast paths in one thread (no second core, so no
//! cache-line transfer and no scheduler noise): batches of sends then recvs through
//! `pipe::<T>()`. For profiling, e.g.
//! `valgrind --tool=callgrind target/release/examples/pipe_fastpath 200000`;
//! `scripts/instr_per_msg.sh` counts instructions per message with it.
//!
//! ```text
//! pipe_fastpath [N] [MODE]    N messages (default 2*10^7); MODE:
//!   msg   the seed's `Msg::Int(i)` through `pipe::<Msg>()` (the default)
//!   u64   `i` through `pipe::<u64>()`
//!   send_slice  `u64`s through `pipe::<u64>()`: `send_slice` of BATCH, `recv_slice`
//!               of BATCH (counted per element)
//!   recv_slice  `u64`s sent one by one with `send`, read with `recv_slice` of BATCH
//!               (counted per element)
//! ```
//!
//! Prints nanoseconds per message for send and for recv.

use std::time::Instant;

use serde::{de::DeserializeOwned, Serialize};

#[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
enum Msg {
    Int(u64),
    Done,
}

/// Sends `n` messages `make(i)` (rounded up to whole batches of [`BATCH`]) in batches,
/// receiving each batch after sending it, then `last`; `value` reads a received message back (for the
/// checksum, so nothing is optimised away).
/// Messages per batch: 4096 records of 16 bytes, well inside the 1 MiB ring. A constant
/// trip count (a variable one costs the seed's `Msg` ~5 more instructions per message),
/// so scripts/instr_per_msg.sh passes multiples of it.
const BATCH: u64 = 4096;

fn run<T>(n: u64, make: fn(u64) -> T, value: fn(T) -> u64, last: T)
where
    T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let (tx, rx) = shmproc::pipe::<T>().expect("pipe");
    let (mut send_t, mut recv_t) = (0f64, 0f64);
    let mut i = 0u64;
    let mut sum = 0u64;
    while i < n {
        let t = Instant::now();
        for k in 0..BATCH {
            tx.send(&make(i + k)).expect("send");
        }
        let t2 = Instant::now();
        for _ in 0..BATCH {
            if let Ok(v) = rx.recv() {
                sum = sum.wrapping_add(value(v));
            }
        }
        send_t += (t2 - t).as_secs_f64();
        recv_t += t2.elapsed().as_secs_f64();
        i += BATCH;
    }
    tx.send(&last).expect("send");
    assert_eq!(rx.recv(), Ok(last));
    println!(
        "{i} msgs: send {:.2} ns/msg, recv {:.2} ns/msg (checksum {sum})",
        send_t * 1e9 / i as f64,
        recv_t * 1e9 / i as f64
    );
}

/// `n` `u64`s (whole batches of [`BATCH`]) through `pipe::<u64>()`, read with
/// `recv_slice` into a buffer of `BATCH`; sent with one `send_slice` per batch when
/// `slices`, else one `send` each.
#[inline(never)] // kept out of `main`, so the `msg` and `u64` rows compile as before
fn run_slices(n: u64, slices: bool) {
    let (tx, rx) = shmproc::pipe::<u64>().expect("pipe");
    let (mut send_t, mut recv_t) = (0f64, 0f64);
    let mut out = vec![0u64; BATCH as usize];
    let mut items = vec![0u64; BATCH as usize];
    let mut i = 0u64;
    let mut sum = 0u64;
    while i < n {
        let t = Instant::now();
        if slices {
            for (k, x) in items.iter_mut().enumerate() {
                *x = i + k as u64;
            }
            tx.send_slice(&items).expect("send_slice");
        } else {
            for k in 0..BATCH {
                tx.send(&(i + k)).expect("send");
            }
        }
        let t2 = Instant::now();
        let mut got = 0;
        while got < BATCH as usize {
            let k = rx.recv_slice(&mut out[got..]).expect("recv_slice");
            got += k;
        }
        sum = out.iter().fold(sum, |s, &v| s.wrapping_add(v));
        send_t += (t2 - t).as_secs_f64();
        recv_t += t2.elapsed().as_secs_f64();
        i += BATCH;
    }
    println!(
        "{i} elements: send {:.3} ns/elem, recv_slice {:.3} ns/elem (checksum {sum})",
        send_t * 1e9 / i as f64,
        recv_t * 1e9 / i as f64
    );
}

fn main() {
    shmproc::init();
    let mut args = std::env::args().skip(1);
    let n: u64 = args
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20_000_000);
    match args.next().as_deref().unwrap_or("msg") {
        "msg" => run(
            n,
            Msg::Int,
            |m| match m {
                Msg::Int(v) => v,
                Msg::Done => 0,
            },
            Msg::Done,
        ),
        "u64" => run(n, |i| i, |v| v, u64::MAX),
        // The `Pod` batch rows (issue 16 item 3), counted per element.
        "send_slice" => run_slices(n, true),
        "recv_slice" => run_slices(n, false),
        other => {
            eprintln!("unknown mode {other:?}: expected msg, u64, send_slice or recv_slice");
            std::process::exit(2);
        }
    }
}
