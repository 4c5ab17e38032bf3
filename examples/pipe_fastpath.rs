//! Cost of the pipe's send and recv fast paths in one thread (no second core, so no
//! cache-line transfer and no scheduler noise): batches of sends then recvs of the
//! seed's `Msg` through `pipe::<Msg>()`. For profiling, e.g.
//! `valgrind --tool=callgrind target/release/examples/pipe_fastpath 200000`.
//!
//! Prints nanoseconds per message for send and for recv.

use std::time::Instant;

#[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
enum Msg {
    Int(u64),
    Done,
}

fn main() {
    shmproc::init();
    let n: u64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(20_000_000);
    let (tx, rx) = shmproc::pipe::<Msg>().expect("pipe");
    const BATCH: u64 = 4096; // 4096 records of 16 bytes: well inside the 1 MiB ring
    let (mut send_t, mut recv_t) = (0f64, 0f64);
    let mut i = 0u64;
    let mut sum = 0u64;
    while i < n {
        let t = Instant::now();
        for k in 0..BATCH {
            tx.send(&Msg::Int(i + k)).expect("send");
        }
        let t2 = Instant::now();
        for _ in 0..BATCH {
            if let Ok(Msg::Int(v)) = rx.recv() {
                sum = sum.wrapping_add(v);
            }
        }
        send_t += (t2 - t).as_secs_f64();
        recv_t += t2.elapsed().as_secs_f64();
        i += BATCH;
    }
    tx.send(&Msg::Done).expect("send");
    assert_eq!(rx.recv(), Ok(Msg::Done));
    println!(
        "{i} msgs: send {:.2} ns/msg, recv {:.2} ns/msg (checksum {sum})",
        send_t * 1e9 / i as f64,
        recv_t * 1e9 / i as f64
    );
}
