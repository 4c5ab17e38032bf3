//! The seed's Pipe experiment as a benchmark (shared/seed/multiprocessing-notes.txt):
//! the writer sends 10^4, 10^5 and 10^6 integers then DONE to a reader process, timed
//! from the first send until `join()` returns after DONE. Three transports:
//!
//! * `shmproc::pipe::<Msg>()` with the seed's payload (a serde enum `Int(i)` / `Done`,
//!   the default codec), the reader a forked `shmproc::Process`;
//! * an OS pipe, one `write()` of 8 bytes per message, the reader a forked process that
//!   reads one message per `read` (buffer raised to 1 MiB, shmproc's ring size);
//! * Python's `multiprocessing.Pipe`, the seed's own code (`scripts/seed_pipe.py`), when
//!   `python3` runs (otherwise the row is skipped with a message).
//!
//! Process start-up is never timed (the readers signal "ready" first; the Python script
//! starts its clock after `start()`). Every reader checks it saw exactly `0..count`.
//! Runs are interleaved: each round runs every transport once per count (the order
//! rotating from round to round); a cell is the median rate over the rounds, and a ratio
//! is the median of the ratios within each round. No speed is asserted.
//!
//! ```text
//! cargo bench --bench seed                    # 10^4..10^6, 5 rounds
//! cargo bench --bench seed -- --1e7           # also 10^7 (or SHMPROC_SEED_1E7=1)
//! cargo bench --bench seed -- --rounds 9 --no-python
//! ```
//!
//! `SHMPROC_SEED_ROUNDS` and `SHMPROC_SEED_NO_PYTHON=1` do the same as the flags (for
//! plain `cargo bench`). A bare word is a filter, as criterion's: the bench runs when one
//! is a substring of `seed`. Without `--bench` (`cargo test`) it runs once in a quick
//! mode: 10^2..10^4 messages, one round, no Python.

mod common;

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{os_pipe, record, time_reader, Msg, TIMEOUT};
use shmproc::pipe;

/// The DONE marker of the OS pipe's 8-byte messages.
const DONE: u64 = u64::MAX;

const LABELS: [&str; 3] = [
    "shmproc pipe::<Msg>(), forked reader",
    "OS pipe, write() per 8-byte msg",
    "Python multiprocessing.Pipe (seed)",
];
const IDS: [&str; 3] = ["shmproc_pipe_Msg", "os_pipe", "python_mp_pipe"];
const SHM: usize = 0;
const OS: usize = 1;
const PY: usize = 2;

struct Opts {
    counts: Vec<u64>,
    rounds: usize,
    python: bool,
    quick: bool,
}

/// `None` when a filter excludes this bench.
fn opts() -> Option<Opts> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let env_on = |k: &str| std::env::var(k).is_ok_and(|v| !v.is_empty() && v != "0");
    let mut rounds: usize = std::env::var("SHMPROC_SEED_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let (mut big, mut python) = (
        env_on("SHMPROC_SEED_1E7"),
        !env_on("SHMPROC_SEED_NO_PYTHON"),
    );
    let mut filters = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--1e7" => big = true,
            "--no-python" => python = false,
            "--rounds" => rounds = it.next().and_then(|v| v.parse().ok()).unwrap_or(rounds),
            s if !s.starts_with('-') => filters.push(s),
            _ => {} // --bench and criterion's other flags
        }
    }
    if !filters.is_empty() && !filters.iter().any(|f| "seed".contains(f)) {
        return None;
    }
    if !args.iter().any(|a| a == "--bench") {
        return Some(Opts {
            counts: vec![100, 1_000, 10_000],
            rounds: 1,
            python: false,
            quick: true,
        });
    }
    let mut counts = vec![10_000, 100_000, 1_000_000];
    if big {
        counts.push(10_000_000);
    }
    Some(Opts {
        counts,
        rounds: rounds.max(1),
        python,
        quick: false,
    })
}

/// The seed's experiment through `pipe::<Msg>()`.
fn shmproc_pipe(count: u64) -> Duration {
    let (tx, rx) = pipe::<Msg>().expect("pipe");
    let reader = move || {
        let (mut next, mut ok) = (0, true);
        while let Msg::Int(v) = rx.recv().expect("recv") {
            ok &= v == next;
            next += 1;
        }
        assert!(ok && next == count, "shmproc reader saw the wrong sequence");
    };
    time_reader(reader, || {
        for i in 0..count {
            tx.send(&Msg::Int(i)).expect("send");
        }
        tx.send(&Msg::Done).expect("send");
    })
}

/// The same through an OS pipe: one `write()` and one `read()` per 8-byte message.
fn os_pipe_per_msg(count: u64) -> Duration {
    let (mut r, mut w) = os_pipe();
    let reader = move || {
        let (mut next, mut ok, mut b) = (0, true, [0u8; 8]);
        loop {
            r.read_exact(&mut b).expect("read");
            match u64::from_ne_bytes(b) {
                DONE => break,
                v => ok &= v == next,
            }
            next += 1;
        }
        assert!(ok && next == count, "OS pipe reader saw the wrong sequence");
    };
    time_reader(reader, || {
        for i in 0..count {
            w.write_all(&i.to_ne_bytes()).expect("write");
        }
        w.write_all(&DONE.to_ne_bytes()).expect("write");
    })
}

/// One run of `scripts/seed_pipe.py` at `count`: the seconds it measured.
fn python_pipe(count: u64) -> Result<f64, String> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/seed_pipe.py");
    let mut child = std::os::unix::process::CommandExt::process_group(
        Command::new("python3")
            .arg(&script)
            .args(["--counts", &count.to_string(), "--runs", "1"])
            .stdout(Stdio::piped()),
        0, // its own group, so a timeout kills the script and its reader together
    )
    .spawn()
    .map_err(|e| format!("python3: {e}"))?;
    let deadline = Instant::now() + TIMEOUT;
    let status = loop {
        match child.try_wait() {
            Ok(Some(st)) => break st,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
            _ => {
                let pg = nix::unistd::Pid::from_raw(child.id() as i32);
                let _ = nix::sys::signal::killpg(pg, nix::sys::signal::Signal::SIGKILL);
                let _ = child.wait();
                return Err(format!("{} timed out; killed", script.display()));
            }
        }
    };
    let mut out = String::new();
    let _ = child.stdout.take().map(|mut s| s.read_to_string(&mut out));
    if !status.success() {
        return Err(format!("{} failed: {status}", script.display()));
    }
    // One JSON line: {"transport": ..., "count": N, "run": 0, "seconds": S}
    out.split("\"seconds\":")
        .nth(1)
        .and_then(|s| s.trim().trim_end_matches('}').trim().parse().ok())
        .ok_or_else(|| format!("no \"seconds\" in {out:?}"))
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    Some(if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    })
}

fn rate(r: f64) -> String {
    match r {
        r if r >= 1e9 => format!("{:.2} G/s", r / 1e9),
        r if r >= 1e6 => format!("{:.1} M/s", r / 1e6),
        r => format!("{:.0} k/s", r / 1e3),
    }
}

fn count_label(c: u64) -> String {
    match c.checked_ilog10() {
        Some(k) if 10u64.pow(k) == c => format!("10^{k}"),
        _ => c.to_string(),
    }
}

/// Messages per second of every run: `runs[count][round][transport]`.
type Runs = Vec<Vec<[Option<f64>; 3]>>;

fn print_table(o: &Opts, runs: &Runs) {
    let cells = |f: &dyn Fn(&[Option<f64>; 3]) -> Option<f64>| -> Vec<Option<f64>> {
        runs.iter()
            .map(|rounds| median(rounds.iter().filter_map(f).collect()))
            .collect()
    };
    let head: Vec<String> = o.counts.iter().map(|&c| count_label(c)).collect();
    println!(
        "\n| transport, msg/s (median of {} rounds) | {} |",
        o.rounds,
        head.join(" | ")
    );
    println!("|---|{}", "---|".repeat(o.counts.len()));
    let row = |name: &str, v: Vec<Option<f64>>, fmt: &dyn Fn(f64) -> String| {
        let v: Vec<String> = v.into_iter().map(|x| x.map_or("n/a".into(), fmt)).collect();
        println!("| {name} | {} |", v.join(" | "));
    };
    for t in [SHM, OS, PY] {
        row(LABELS[t], cells(&|r| r[t]), &rate);
    }
    let ratio = |x: f64| format!("{x:.1}×");
    row(
        "shmproc / OS pipe, same round",
        cells(&|r| Some(r[SHM]? / r[OS]?)),
        &ratio,
    );
    row(
        "shmproc / Python, same round",
        cells(&|r| Some(r[SHM]? / r[PY]?)),
        &ratio,
    );

    let shm = cells(&|r| r[SHM]);
    for i in 1..o.counts.len() {
        if let (Some(a), Some(b)) = (shm[i - 1], shm[i]) {
            let (sa, sb) = (count_label(o.counts[i - 1]), count_label(o.counts[i]));
            let check = if o.counts[i] == 1_000_000 {
                " (the ring wraps from here: target within 1.5×, i.e. ≥ 0.67×)"
            } else {
                ""
            };
            println!("shmproc rate, {sb} cell / {sa} cell: {:.2}×{check}", b / a);
        }
    }
    println!("\nper-run msg/s, in round order:");
    for (ci, rounds) in runs.iter().enumerate() {
        for t in [SHM, OS, PY] {
            let v: Vec<String> = rounds.iter().filter_map(|r| r[t]).map(rate).collect();
            if !v.is_empty() {
                println!(
                    "  {:>5} {:<38} {}",
                    count_label(o.counts[ci]),
                    LABELS[t],
                    v.join(", ")
                );
            }
        }
    }
}

fn main() {
    shmproc::init();
    let Some(mut o) = opts() else {
        return;
    };
    if o.quick {
        println!("seed: quick mode (no --bench): tiny counts, one round, no Python; the numbers mean nothing");
    }
    if o.python {
        if let Err(e) = Command::new("python3")
            .arg("--version")
            .output()
            .map_err(|e| e.to_string())
            .and_then(|out| {
                if out.status.success() {
                    Ok(())
                } else {
                    Err(out.status.to_string())
                }
            })
        {
            println!("seed: python3 not runnable ({e}): skipping the Python row");
            o.python = false;
        }
    }
    let mut runs: Runs = vec![Vec::with_capacity(o.rounds); o.counts.len()];
    for round in 0..o.rounds {
        for (ci, &count) in o.counts.iter().enumerate() {
            let mut cell = [None; 3];
            for k in 0..3 {
                let t = (k + round) % 3; // rotate the order from round to round
                let secs = match t {
                    SHM => shmproc_pipe(count).as_secs_f64(),
                    OS => os_pipe_per_msg(count).as_secs_f64(),
                    _ if !o.python => continue,
                    _ => match python_pipe(count) {
                        Ok(s) => s,
                        Err(e) => {
                            println!("seed: Python run failed ({e}): skipping the Python row");
                            o.python = false;
                            continue;
                        }
                    },
                };
                cell[t] = Some(count as f64 / secs);
                record(
                    "seed.csv",
                    "transport,count,round,seconds,msgs_per_s",
                    &format!(
                        "{},{count},{round},{secs:.9},{:.0}",
                        IDS[t],
                        count as f64 / secs
                    ),
                );
            }
            runs[ci].push(cell);
        }
    }
    print_table(&o, &runs);
}
