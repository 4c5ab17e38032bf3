//! Ping-pong round-trip latency between two processes over `duplex::<u64>()`, in
//! busy-spin mode (both sides poll with `try_recv`) and blocking mode (`recv`: spin
//! briefly, then park on a futex), against an OS-pipe ping-pong (two pipes, blocking
//! `read`). Every round trip is also recorded in an HDR histogram; its median, p99 and
//! p99.9 are printed at the end (and appended to `$SHMPROC_BENCH_OUT/latency.csv`).
//!
//! Run: `cargo bench --bench latency`. Under `cargo test` every bench runs once.

mod common;

use std::cell::RefCell;
use std::io::{Read, Write};
use std::time::{Duration, Instant};

use common::{os_pipe, record};
use criterion::Criterion;
use hdrhistogram::Histogram;
use shmproc::Process;
use shmproc::{duplex, TryRecvError};

/// A forked echo process; killed and reaped on drop.
struct Echo(Process);

impl Echo {
    fn start(f: impl FnOnce() + Send + 'static) -> Echo {
        let mut p = Process::fork(f);
        p.daemon(true);
        p.start().expect("fork the echo peer");
        Echo(p)
    }
}

impl Drop for Echo {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.join();
    }
}

fn histogram() -> RefCell<Histogram<u64>> {
    RefCell::new(Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("bounds"))
}

fn report(name: &str, h: &Histogram<u64>) {
    record(
        "latency.csv",
        "bench,samples,median_ns,p99_ns,p999_ns,max_ns",
        &format!(
            "{name},{},{},{},{},{}",
            h.len(),
            h.value_at_quantile(0.5),
            h.value_at_quantile(0.99),
            h.value_at_quantile(0.999),
            h.max()
        ),
    );
}

/// Times `iters` round trips with `rt`, recording each in `h`.
fn round_trips(iters: u64, h: &RefCell<Histogram<u64>>, mut rt: impl FnMut(u64)) -> Duration {
    let mut h = h.borrow_mut();
    let mut total = Duration::ZERO;
    for i in 0..iters {
        let t = Instant::now();
        rt(i);
        let d = t.elapsed();
        total += d;
        let _ = h.record(d.as_nanos().max(1) as u64);
    }
    total
}

fn ping_pong(c: &mut Criterion) {
    let mut g = c.benchmark_group("pingpong");

    // Busy-spin: both sides poll.
    let (a, b) = duplex::<u64>().unwrap();
    let echo = Echo::start(move || loop {
        match b.try_recv() {
            Ok(x) => {
                if b.send(&x).is_err() {
                    return;
                }
            }
            Err(TryRecvError::Empty) => std::hint::spin_loop(),
            Err(_) => return,
        }
    });
    let h = histogram();
    g.bench_function("shmproc_duplex_spin", |bch| {
        bch.iter_custom(|iters| {
            round_trips(iters, &h, |i| {
                a.send(&i).unwrap();
                loop {
                    match a.try_recv() {
                        Ok(x) => {
                            assert_eq!(x, i);
                            break;
                        }
                        Err(TryRecvError::Empty) => std::hint::spin_loop(),
                        Err(e) => panic!("{e:?}"),
                    }
                }
            })
        })
    });
    report("shmproc_duplex_spin", &h.borrow());
    drop(echo);

    // Blocking: recv (spin briefly, then futex).
    let (a, b) = duplex::<u64>().unwrap();
    let echo = Echo::start(move || {
        for x in b.iter() {
            if b.send(&x).is_err() {
                return;
            }
        }
    });
    let h = histogram();
    g.bench_function("shmproc_duplex_blocking", |bch| {
        bch.iter_custom(|iters| {
            round_trips(iters, &h, |i| {
                a.send(&i).unwrap();
                assert_eq!(a.recv().unwrap(), i);
            })
        })
    });
    report("shmproc_duplex_blocking", &h.borrow());
    drop(echo);

    // OS pipes: one each way, blocking read/write of 8 bytes.
    let (mut r1, mut w1) = os_pipe();
    let (mut r2, mut w2) = os_pipe();
    let echo = Echo::start(move || {
        let mut buf = [0u8; 8];
        while r1.read_exact(&mut buf).is_ok() {
            if w2.write_all(&buf).is_err() {
                return;
            }
        }
    });
    let h = histogram();
    g.bench_function("os_pipe_blocking", |bch| {
        bch.iter_custom(|iters| {
            round_trips(iters, &h, |i| {
                w1.write_all(&i.to_ne_bytes()).unwrap();
                let mut buf = [0u8; 8];
                r2.read_exact(&mut buf).unwrap();
                assert_eq!(u64::from_ne_bytes(buf), i);
            })
        })
    });
    report("os_pipe_blocking", &h.borrow());
    drop(echo);
    g.finish();
}

fn main() {
    shmproc::init();
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    ping_pong(&mut c);
    c.final_summary();
}
