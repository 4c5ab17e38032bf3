//! A named `Connection` (`Listener::accept` / `connect`, between this process and a
//! separately started one) against `duplex()` (handed to a forked child), in the same
//! run; and the latency of `connect` + `accept`.
//!
//! ```text
//! cargo run --release --example named_bench            # 10^6 messages, 7 rounds
//! cargo run --release --example named_bench -- 100000 3
//! ```
//!
//! Throughput: the parent sends N `u64` then waits for the receiver's count back (first
//! send until the count arrives); rounds alternate the two kinds, and the medians and the
//! median of the same-round ratios are printed. Latency: a client process connects 1000
//! times in a row (each `connect` returns once `accept` has answered); for scale, the
//! cost of `duplex()` alone (the rings `connect` makes).
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use shmproc::{duplex, Connection, Connector, Listener, Process};

/// What the receiver does with a connection: counts N messages, sends the count back.
fn receive(conn: &Connection<u64>, n: u64) {
    let mut sum = 0u64;
    for _ in 0..n {
        sum = sum.wrapping_add(conn.recv().expect("sender alive"));
    }
    conn.send(&sum).expect("sender alive");
}

fn transfer(conn: &Connection<u64>, n: u64) -> Duration {
    let start = Instant::now();
    for i in 0..n {
        conn.send(&i).expect("receiver alive");
    }
    let sum = conn.recv().expect("receiver alive");
    let took = start.elapsed();
    assert_eq!(sum, (0..n).fold(0u64, |a, b| a.wrapping_add(b)));
    took
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() -> shmproc::Result<()> {
    shmproc::init();
    let args: Vec<String> = std::env::args().collect();
    // A separately started client: `--client NAME N ROUNDS` or `--connects NAME K`.
    if args.len() >= 4 && args[1] == "--client" {
        let (n, rounds): (u64, u32) = (args[3].parse().unwrap(), args[4].parse().unwrap());
        let conn = Connector::new(&args[2])
            .timeout(Duration::from_secs(30))
            .connect::<u64>()?;
        for _ in 0..rounds {
            receive(&conn, n);
        }
        return Ok(());
    }
    if args.len() >= 4 && args[1] == "--connects" {
        let k: usize = args[3].parse().unwrap();
        let mut lat = Vec::with_capacity(k);
        for _ in 0..k {
            let t = Instant::now();
            let c = shmproc::connect::<u8>(&args[2])?;
            lat.push(t.elapsed().as_secs_f64() * 1e6);
            drop(c);
        }
        let med = median(&mut lat);
        let p99 = lat[lat.len() * 99 / 100];
        println!("connect + accept: median {med:.1} µs, p99 {p99:.1} µs ({k} connections)");
        return Ok(());
    }
    let n: u64 = args
        .get(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let rounds: u32 = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(7);
    let exe = std::env::current_exe()?;
    let name = format!("named-bench-{}", std::process::id());

    // The named connection: a process started on its own, meeting us by name.
    let listener = Listener::bind(&name)?;
    let mut client = Command::new(&exe)
        .args(["--client", &name, &n.to_string(), &rounds.to_string()])
        .stdout(Stdio::inherit())
        .spawn()?;
    let named = listener.accept_timeout::<u64>(Duration::from_secs(30))?;
    // duplex(): the other end handed to a forked child.
    let (here, there) = duplex::<u64>()?;
    let mut child = Process::fork(move || {
        for _ in 0..rounds {
            receive(&there, n);
        }
    });
    child.start()?;

    let (mut t_named, mut t_duplex, mut ratio) = (Vec::new(), Vec::new(), Vec::new());
    for r in 0..rounds {
        // Alternate which goes first.
        let (a, b) = if r % 2 == 0 {
            let a = transfer(&named, n);
            (a, transfer(&here, n))
        } else {
            let b = transfer(&here, n);
            (transfer(&named, n), b)
        };
        let mps = |d: Duration| n as f64 / d.as_secs_f64() / 1e6;
        println!(
            "round {r}: named {:7.1} M msg/s   duplex() {:7.1} M msg/s",
            mps(a),
            mps(b)
        );
        t_named.push(mps(a));
        t_duplex.push(mps(b));
        ratio.push(mps(a) / mps(b));
    }
    child.join()?;
    client.wait()?;
    println!(
        "median of {rounds} rounds, {n} u64 one way: named Connection {:.1} M msg/s, duplex() {:.1} M msg/s, named/duplex {:.2}",
        median(&mut t_named),
        median(&mut t_duplex),
        median(&mut ratio)
    );

    // connect + accept latency: a client process connecting again and again.
    let k = 1000;
    let mut client = Command::new(&exe)
        .args(["--connects", &name, &k.to_string()])
        .stdout(Stdio::inherit())
        .spawn()?;
    for _ in 0..k {
        drop(listener.accept_timeout::<u8>(Duration::from_secs(30))?);
    }
    client.wait()?;
    // For scale: what making the rings costs (connect does it once per connection).
    let mut lat = Vec::with_capacity(k);
    for _ in 0..k {
        let t = Instant::now();
        let pair = duplex::<u8>()?;
        lat.push(t.elapsed().as_secs_f64() * 1e6);
        drop(pair);
    }
    println!(
        "duplex() alone (two 1 MiB rings, made and reserved): median {:.1} µs",
        median(&mut lat)
    );
    Ok(())
}
