//! The async methods against their blocking counterparts and a tokio socket, in one
//! run (needs the `tokio` feature):
//!
//! ```text
//! cargo run --release --features tokio --example async_bench [-- N ROUNDS]
//! ```
//!
//! 1. Throughput: a forked writer sends N of the seed's `Msg` (`Int(i)`, then `Done`)
//!    with blocking `send`; the parent receives them with blocking `recv`, with
//!    `recv_async` in a current-thread runtime, and — the same messages as
//!    length-prefixed postcard frames — from a tokio `UnixStream` (buffered on both
//!    sides). Rounds interleave the three; medians are printed. Timed from the first
//!    send to the `Done`.
//! 2. Wake-up latency: the writer sleeps 1 ms between messages, so the reader is
//!    parked (an awaiting task, or a blocked `recv`) when each arrives, and sends its
//!    clock; the reader takes the difference on arrival.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use shmproc::{pipe, Process, Receiver, Sender};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader, BufWriter};

#[derive(Serialize, Deserialize, Debug, PartialEq)]
enum Msg {
    Int(u64),
    Done,
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

/// Forks a writer that waits for the go signal, then sends `n` messages and `Done`.
fn writer(n: u64) -> (Process, Sender<u8>, Receiver<Msg>) {
    let (tx, rx) = pipe::<Msg>().unwrap();
    let (go_tx, go_rx) = pipe::<u8>().unwrap();
    let mut p = Process::fork(move || {
        go_rx.recv().unwrap();
        for i in 0..n {
            tx.send(&Msg::Int(i)).unwrap();
        }
        tx.send(&Msg::Done).unwrap();
    });
    p.start().unwrap();
    (p, go_tx, rx)
}

fn blocking_round(n: u64) -> Duration {
    let (mut p, go, rx) = writer(n);
    let t = Instant::now();
    go.send(&1).unwrap();
    let mut count = 0;
    while let Msg::Int(_) = rx.recv().unwrap() {
        count += 1;
    }
    let el = t.elapsed();
    assert_eq!(count, n);
    p.join().unwrap();
    el
}

fn async_round(n: u64) -> Duration {
    let (mut p, go, mut rx) = writer(n);
    let el = rt().block_on(async {
        let t = Instant::now();
        go.send(&1).unwrap();
        let mut count = 0;
        while let Msg::Int(_) = rx.recv_async().await.unwrap() {
            count += 1;
        }
        assert_eq!(count, n);
        t.elapsed()
    });
    p.join().unwrap();
    el
}

/// A tokio `UnixStream` carrying length-prefixed postcard frames: `buffered`, the
/// writer batches frames in a `BufWriter` (flushed at the end); otherwise it writes each
/// frame as it goes, as `Framed::send` (a flush per item) does. The reader is buffered.
fn unix_round(n: u64, buffered: bool) -> Duration {
    let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
    let (go_tx, go_rx) = pipe::<u8>().unwrap();
    let mut p = Process::fork(move || {
        go_rx.recv().unwrap();
        rt().block_on(async {
            b.set_nonblocking(true).unwrap();
            let s = tokio::net::UnixStream::from_std(b).unwrap();
            let cap = if buffered { 8192 } else { 0 };
            let mut w = BufWriter::with_capacity(cap, s);
            let mut frame = [0u8; 20];
            for i in (0..n).map(Msg::Int).chain([Msg::Done]) {
                let len = postcard::to_slice(&i, &mut frame[4..]).unwrap().len();
                frame[..4].copy_from_slice(&(len as u32).to_be_bytes());
                w.write_all(&frame[..4 + len]).await.unwrap();
            }
            w.flush().await.unwrap();
        });
    });
    p.start().unwrap();
    let el = rt().block_on(async {
        a.set_nonblocking(true).unwrap();
        let mut r = BufReader::new(tokio::net::UnixStream::from_std(a).unwrap());
        let mut buf = [0u8; 16];
        let t = Instant::now();
        go_tx.send(&1).unwrap();
        let mut count = 0;
        loop {
            let len = r.read_u32().await.unwrap() as usize;
            r.read_exact(&mut buf[..len]).await.unwrap();
            match postcard::from_bytes::<Msg>(&buf[..len]).unwrap() {
                Msg::Int(_) => count += 1,
                Msg::Done => break,
            }
        }
        assert_eq!(count, n);
        t.elapsed()
    });
    p.join().unwrap();
    el
}

/// Wake-up latencies (ns) of `samples` messages sent 1 ms apart to a parked reader.
fn wakeups(samples: usize, awaiting: bool) -> Vec<u64> {
    let (tx, mut rx) = pipe::<u64>().unwrap();
    let mut p = Process::fork(move || {
        for _ in 0..samples {
            std::thread::sleep(Duration::from_millis(1));
            tx.send(&now_ns()).unwrap();
        }
    });
    p.start().unwrap();
    let mut lat = Vec::with_capacity(samples);
    if awaiting {
        rt().block_on(async {
            while let Ok(sent) = rx.recv_async().await {
                lat.push(now_ns().saturating_sub(sent));
            }
        });
    } else {
        while let Ok(sent) = rx.recv() {
            lat.push(now_ns().saturating_sub(sent));
        }
    }
    p.join().unwrap();
    lat.sort_unstable();
    lat
}

fn median(v: &mut [Duration]) -> Duration {
    v.sort_unstable();
    v[v.len() / 2]
}

fn main() {
    shmproc::init();
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let n = args.first().copied().unwrap_or(1_000_000);
    let rounds = args.get(1).copied().unwrap_or(5) as usize;
    let (mut b, mut a, mut u, mut f) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        b.push(blocking_round(n));
        a.push(async_round(n));
        u.push(unix_round(n, true));
        f.push(unix_round(n, false));
    }
    let rate = |d: Duration| n as f64 / d.as_secs_f64() / 1e6;
    let (mb, ma) = (median(&mut b), median(&mut a));
    let (mu, mf) = (median(&mut u), median(&mut f));
    println!(
        "throughput, {n} seed Msg, writer process -> reader, median of {rounds} interleaved rounds"
    );
    println!("  blocking recv            {:8.2} M msg/s", rate(mb));
    println!(
        "  recv_async (current-thread runtime) {:8.2} M msg/s",
        rate(ma)
    );
    println!(
        "  tokio UnixStream, length-prefixed frames, a write per frame {:8.2} M msg/s",
        rate(mf)
    );
    println!(
        "  tokio UnixStream, length-prefixed frames, BufWriter {:8.2} M msg/s",
        rate(mu)
    );
    println!(
        "  recv_async / blocking recv = {:.2}; recv_async / UnixStream: {:.1}x (a write per frame), {:.1}x (BufWriter)",
        mb.as_secs_f64() / ma.as_secs_f64(),
        mf.as_secs_f64() / ma.as_secs_f64(),
        mu.as_secs_f64() / ma.as_secs_f64()
    );
    for (name, awaiting) in [
        ("awaiting task (recv_async)", true),
        ("blocked recv (futex)", false),
    ] {
        let lat = wakeups(500, awaiting);
        let pct = |p: f64| lat[((lat.len() - 1) as f64 * p) as usize] as f64 / 1e3;
        println!(
            "wake-up latency, {name}: median {:.1} us, p90 {:.1} us, p99 {:.1} us ({} samples)",
            pct(0.5),
            pct(0.9),
            pct(0.99),
            lat.len()
        );
    }
}
