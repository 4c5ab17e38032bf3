//! shmproc-peers: the seed's pipe experiment across shmproc and its peers, and the codec
//! comparison. See BENCHMARKS.md at the repository root and scripts/bench.sh.
//!
//! ```text
//! shmproc-peers [experiment|codecs|all] [--counts 10000,100000,1000000] [--runs 5]
//!               [--only ID,ID] [--no-python] [--python-max N] [--timeout-secs S]
//!               [--codec-runs N] [--codec-scale N] [--out DIR]
//! ```

#![warn(clippy::undocumented_unsafe_blocks)]
#![deny(unsafe_op_in_unsafe_fn)]
// The peer transports are other designs, built on std's atomics on purpose.
#![allow(clippy::disallowed_types)]

mod codecs;
mod experiment;
mod locks;
mod proc;
mod queues;
mod transports;

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

struct Args {
    cmd: String,
    exp: experiment::Opts,
    codec_runs: usize,
    codec_scale: u64,
    out: Option<PathBuf>,
}

const USAGE: &str = "usage: shmproc-peers [experiment|codecs|all|list] [--counts 10000,100000,1000000] [--runs 5] \
[--only ID,ID] [--no-python] [--python-max N] [--timeout-secs S] [--codec-runs N] [--codec-scale N] [--out DIR]";

fn parse() -> Result<Args, String> {
    let mut a = Args {
        cmd: "all".into(),
        exp: experiment::Opts {
            counts: vec![10_000, 100_000, 1_000_000],
            runs: 5,
            only: None,
            python: true,
            python_max: 1_000_000,
            timeout: Duration::from_secs(120),
        },
        codec_runs: 5,
        codec_scale: 1,
        out: None,
    };
    let mut it = std::env::args().skip(1);
    let mut first = true;
    while let Some(arg) = it.next() {
        let mut val = |name: &str| it.next().ok_or_else(|| format!("{name} needs a value"));
        match arg.as_str() {
            "experiment" | "codecs" | "locks" | "queues" | "all" | "list" if first => {
                a.cmd = arg.clone()
            }
            "--counts" => {
                a.exp.counts = val("--counts")?
                    .split(',')
                    .map(|s| {
                        s.trim()
                            .parse::<u64>()
                            .map_err(|e| format!("--counts: {e}"))
                    })
                    .collect::<Result<_, _>>()?
            }
            "--runs" => a.exp.runs = val("--runs")?.parse().map_err(|e| format!("--runs: {e}"))?,
            "--only" => a.exp.only = Some(val("--only")?.split(',').map(str::to_string).collect()),
            "--no-python" => a.exp.python = false,
            "--python-max" => {
                a.exp.python_max = val("--python-max")?
                    .parse()
                    .map_err(|e| format!("--python-max: {e}"))?
            }
            "--timeout-secs" => {
                a.exp.timeout = Duration::from_secs(
                    val("--timeout-secs")?
                        .parse()
                        .map_err(|e| format!("--timeout-secs: {e}"))?,
                )
            }
            "--codec-runs" => {
                a.codec_runs = val("--codec-runs")?
                    .parse()
                    .map_err(|e| format!("--codec-runs: {e}"))?
            }
            "--codec-scale" => {
                a.codec_scale = val("--codec-scale")?
                    .parse()
                    .map_err(|e| format!("--codec-scale: {e}"))?
            }
            "--out" => a.out = Some(PathBuf::from(val("--out")?)),
            "-h" | "--help" => return Err(USAGE.into()),
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
        first = false;
    }
    if a.exp.runs == 0 || a.codec_runs == 0 {
        return Err("--runs and --codec-runs must be at least 1".into());
    }
    Ok(a)
}

fn codec_table(rs: &[codecs::Result1]) -> String {
    let mut s = String::from(
        "| codec | payload | encoded bytes | encode ns | decode ns | encode+decode ns |\n|---|---|---|---|---|---|\n",
    );
    for r in rs {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {:.1} | {:.1} | {:.1} |",
            r.codec,
            r.payload,
            r.size,
            r.encode_ns,
            r.decode_ns,
            r.encode_ns + r.decode_ns
        );
    }
    s
}

fn codec_csv(rs: &[codecs::Result1]) -> String {
    let mut s = String::from("codec,payload,encoded_bytes,encode_ns,decode_ns\n");
    for r in rs {
        let _ = writeln!(
            s,
            "\"{}\",\"{}\",{},{:.2},{:.2}",
            r.codec, r.payload, r.size, r.encode_ns, r.decode_ns
        );
    }
    s
}

fn main() {
    // First: a reader started with StartMethod::Spawn re-runs this binary and runs its
    // target here.
    shmproc::init();
    let args = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    if args.cmd == "list" {
        for t in transports::all() {
            println!("{:<16} {}", t.id, t.label);
        }
        for r in transports::python::ROWS.iter() {
            println!("{:<16} {}", r.id, r.label);
        }
        return;
    }
    let mut failed = false;
    if args.cmd == "experiment" || args.cmd == "all" {
        let rows = experiment::run(&args.exp);
        let mut table = experiment::table(&rows, &args.exp.counts, args.exp.runs);
        table.push_str("\nTargets (DESIGN.md), same run:\n\n");
        table.push_str(&experiment::targets(&rows, &args.exp.counts));
        println!("{table}");
        if let Some(dir) = &args.out {
            if let Err(e) = experiment::write_csv(dir, &rows)
                .and_then(|()| std::fs::write(dir.join("experiment-table.md"), &table))
            {
                eprintln!("writing {}: {e}", dir.display());
                failed = true;
            }
        }
        // A transport that should always work here failing is a harness bug: exit non-zero.
        for r in &rows {
            if ["os-pipe", "spsc-ring", "shmproc-pipe"].contains(&r.id.as_str())
                && r.cells.iter().any(|c| c.secs.is_empty())
            {
                failed = true;
            }
        }
    }
    if args.cmd == "queues" || args.cmd == "all" {
        match queues::run(2_000_000, 3) {
            Ok(t) => {
                println!("{t}");
                if let Some(dir) = &args.out {
                    let _ = std::fs::create_dir_all(dir);
                    let _ = std::fs::write(dir.join("queues.md"), &t);
                }
            }
            Err(e) => {
                eprintln!("queues: {e}");
                failed = true;
            }
        }
    }
    if args.cmd == "locks" || args.cmd == "all" {
        match locks::run(5) {
            Ok(t) => {
                println!("{t}");
                if let Some(dir) = &args.out {
                    let _ = std::fs::create_dir_all(dir);
                    let _ = std::fs::write(dir.join("locks.md"), &t);
                }
            }
            Err(e) => {
                eprintln!("locks: {e}");
                failed = true;
            }
        }
    }
    if args.cmd == "codecs" || args.cmd == "all" {
        let rs = codecs::run_all(args.codec_runs, args.codec_scale);
        let t = codec_table(&rs);
        println!(
            "Codecs: median of {} runs, ns per operation\n\n{t}",
            args.codec_runs
        );
        if let Some(dir) = &args.out {
            let _ = std::fs::create_dir_all(dir);
            if let Err(e) = std::fs::write(dir.join("codecs.csv"), codec_csv(&rs))
                .and_then(|()| std::fs::write(dir.join("codecs-table.md"), &t))
            {
                eprintln!("writing {}: {e}", dir.display());
                failed = true;
            }
        }
    }
    if failed {
        std::process::exit(1);
    }
}
