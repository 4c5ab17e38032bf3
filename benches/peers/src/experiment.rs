//! The seed's experiment across every transport: one table, medians, ratio to OS pipe.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use crate::transports::{self, python, Cfg};

pub struct Opts {
    pub counts: Vec<u64>,
    pub runs: usize,
    pub only: Option<Vec<String>>,
    pub python: bool,
    pub python_max: u64,
    pub timeout: Duration,
}

pub struct Cell {
    pub count: u64,
    pub secs: Vec<f64>,
    pub note: Option<String>,
}

impl Cell {
    pub fn median(&self) -> Option<f64> {
        if self.secs.is_empty() {
            return None;
        }
        let mut v = self.secs.clone();
        v.sort_by(|a, b| a.total_cmp(b));
        let n = v.len();
        Some(if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        })
    }
}

pub struct Row {
    pub id: String,
    pub label: String,
    pub cells: Vec<Cell>,
}

fn wanted(opts: &Opts, id: &str) -> bool {
    opts.only.as_ref().is_none_or(|o| o.iter().any(|w| w == id))
}

pub fn run(opts: &Opts) -> Vec<Row> {
    let cfg = Cfg {
        timeout: opts.timeout,
    };
    let list: Vec<_> = transports::all()
        .into_iter()
        .filter(|t| wanted(opts, t.id))
        .collect();
    let mut rows: Vec<Row> = list
        .iter()
        .map(|t| Row {
            id: t.id.to_string(),
            label: t.label.to_string(),
            cells: opts
                .counts
                .iter()
                .map(|&count| Cell {
                    count,
                    secs: vec![],
                    note: None,
                })
                .collect(),
        })
        .collect();
    // Runs are the outer loop so that a burst of noise from the shared machine spreads
    // over every transport instead of landing on one row.
    for run in 0..opts.runs {
        for (t, row) in list.iter().zip(rows.iter_mut()) {
            for cell in row.cells.iter_mut() {
                if cell.note.is_some() {
                    continue; // failed before: do not retry every run
                }
                eprint!(
                    "\r\x1b[2K[run {}/{}] {:<36} n={:<9}",
                    run + 1,
                    opts.runs,
                    t.label,
                    cell.count
                );
                match (t.run)(cell.count, &cfg) {
                    Ok(d) => cell.secs.push(d.as_secs_f64()),
                    Err(e) => {
                        eprintln!("\n  {}: {e}", t.id);
                        cell.note = Some(e);
                    }
                }
            }
        }
    }
    eprintln!();
    transports::iox::cleanup();
    if opts.python && python::ROWS.iter().any(|r| wanted(opts, r.id)) {
        let pyv = python::python_version();
        for row in python::ROWS.iter().filter(|r| wanted(opts, r.id)) {
            let mut r = Row {
                id: row.id.to_string(),
                label: row.label.to_string(),
                cells: opts
                    .counts
                    .iter()
                    .map(|&count| Cell {
                        count,
                        secs: vec![],
                        note: None,
                    })
                    .collect(),
            };
            let counts: Vec<u64> = opts
                .counts
                .iter()
                .copied()
                .filter(|&c| c <= opts.python_max)
                .collect();
            for cell in r.cells.iter_mut().filter(|c| c.count > opts.python_max) {
                cell.note = Some(format!("skipped: above --python-max {}", opts.python_max));
            }
            match &pyv {
                Err(e) => {
                    for c in r.cells.iter_mut() {
                        c.note = Some(format!("skipped: {e}"));
                    }
                }
                Ok(_) if counts.is_empty() => {}
                Ok(_) => {
                    eprintln!(
                        "[python] {} counts {:?} x {} runs",
                        row.label, counts, opts.runs
                    );
                    // Generous: Python needs ~5 s per 10^6 messages.
                    let budget = Duration::from_secs(60)
                        + Duration::from_secs_f64(
                            counts.iter().sum::<u64>() as f64 * opts.runs as f64 * 20e-6,
                        );
                    match python::run(row, &counts, opts.runs, budget) {
                        Ok(ms) => {
                            for (c, s) in ms {
                                if let Some(cell) = r.cells.iter_mut().find(|x| x.count == c) {
                                    cell.secs.push(s);
                                }
                            }
                        }
                        Err(e) => {
                            eprintln!("  {}: {e}", row.id);
                            for c in r.cells.iter_mut().filter(|c| c.note.is_none()) {
                                c.note = Some(e.clone());
                            }
                        }
                    }
                }
            }
            rows.push(r);
        }
    }
    rows
}

pub fn count_name(c: u64) -> String {
    let mut p = 0;
    let mut x = c;
    while x >= 10 && x.is_multiple_of(10) {
        x /= 10;
        p += 1;
    }
    if x == 1 && p > 0 {
        format!("10^{p}")
    } else {
        c.to_string()
    }
}

fn fmt_time(s: f64) -> String {
    if s < 1e-3 {
        format!("{:.0} µs", s * 1e6)
    } else if s < 1.0 {
        format!("{:.2} ms", s * 1e3)
    } else {
        format!("{:.2} s", s)
    }
}

pub fn fmt_rate(r: f64) -> String {
    if r >= 1e9 {
        format!("{:.2} G/s", r / 1e9)
    } else if r >= 1e6 {
        format!("{:.1} M/s", r / 1e6)
    } else {
        format!("{:.0} k/s", r / 1e3)
    }
}

fn baseline(rows: &[Row], idx: usize) -> Option<f64> {
    rows.iter()
        .find(|r| r.id == "os-pipe")
        .and_then(|r| r.cells[idx].median())
}

/// The table, as Markdown (fits a terminal too).
pub fn table(rows: &[Row], counts: &[u64], runs: usize) -> String {
    let mut s = String::new();
    let _ = write!(s, "| transport |");
    for c in counts {
        let _ = write!(s, " {} msgs: time / rate / vs pipe |", count_name(*c));
    }
    let _ = write!(s, "\n|---|");
    for _ in counts {
        let _ = write!(s, "---|");
    }
    s.push('\n');
    let mut notes = Vec::new();
    for r in rows {
        let _ = write!(s, "| {} |", r.label);
        for (i, cell) in r.cells.iter().enumerate() {
            match cell.median() {
                Some(m) => {
                    let rate = cell.count as f64 / m;
                    let ratio = baseline(rows, i)
                        .map(|b| format!("{:.2}×", b / m))
                        .unwrap_or_else(|| "–".into());
                    let _ = write!(s, " {} / {} / {} |", fmt_time(m), fmt_rate(rate), ratio);
                }
                None => {
                    let n = cell.note.clone().unwrap_or_else(|| "no data".into());
                    if !notes.contains(&(r.label.clone(), n.clone())) {
                        notes.push((r.label.clone(), n));
                    }
                    let _ = write!(s, " n/a |");
                }
            }
        }
        s.push('\n');
    }
    let _ = writeln!(
        s,
        "\nMedian of {runs} runs per cell; time from the first send until the reader is joined after DONE; \
         \"vs pipe\" = OS-pipe time / this time, same run (higher is faster)."
    );
    for (label, n) in notes {
        let _ = writeln!(s, "- {label}: {n}");
    }
    s
}

fn median_of(rows: &[Row], id: &str, idx: usize) -> Option<f64> {
    rows.iter()
        .find(|r| r.id == id)
        .and_then(|r| r.cells.get(idx))
        .and_then(Cell::median)
}

/// DESIGN.md's targets for the seed's experiment, as ratios measured in this run: the
/// headline row (`shmproc-pipe`: `pipe::<Msg>()`, forked reader) against the raw SPSC
/// ring of `u64`, the OS pipe and Python's `multiprocessing.Pipe`.
pub fn targets(rows: &[Row], counts: &[u64]) -> String {
    let mut s = String::from(
        "| messages | shmproc pipe::<Msg>() | share of raw SPSC ring (target ≥ 50%) | × OS pipe (target ≥ 50×) | × Python Pipe (target ≥ 500×) |\n|---|---|---|---|---|\n",
    );
    let fmt = |v: Option<f64>, pct: bool, target: f64| match v {
        Some(x) if pct => format!("{:.1}% {}", x * 100.0, if x >= target { "✓" } else { "✗" }),
        Some(x) => format!("{:.1}× {}", x, if x >= target { "✓" } else { "✗" }),
        None => "n/a".into(),
    };
    for (i, &c) in counts.iter().enumerate() {
        let Some(shm) = median_of(rows, "shmproc-pipe", i) else {
            continue;
        };
        let ring = median_of(rows, "spsc-ring", i).map(|t| t / shm);
        let os = median_of(rows, "os-pipe", i).map(|t| t / shm);
        let py = median_of(rows, "python-mp-pipe", i).map(|t| t / shm);
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} |",
            count_name(c),
            fmt_rate(c as f64 / shm),
            fmt(ring, true, 0.5),
            fmt(os, false, 50.0),
            fmt(py, false, 500.0)
        );
    }
    s
}

/// bench-results/experiment-raw.csv and experiment-summary.csv.
pub fn write_csv(dir: &Path, rows: &[Row]) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let mut raw = String::from("transport,count,run,seconds\n");
    let mut sum = String::from(
        "transport,label,count,runs,median_s,min_s,max_s,msgs_per_s,ratio_vs_os_pipe,note\n",
    );
    for r in rows {
        for (i, c) in r.cells.iter().enumerate() {
            for (k, s) in c.secs.iter().enumerate() {
                let _ = writeln!(raw, "{},{},{},{:.9}", r.id, c.count, k, s);
            }
            let note = c.note.clone().unwrap_or_default().replace(['"', ','], ";");
            match c.median() {
                Some(m) => {
                    let min = c.secs.iter().copied().fold(f64::INFINITY, f64::min);
                    let max = c.secs.iter().copied().fold(0.0, f64::max);
                    let ratio = baseline(rows, i)
                        .map(|b| format!("{:.4}", b / m))
                        .unwrap_or_default();
                    let _ = writeln!(
                        sum,
                        "{},\"{}\",{},{},{:.9},{:.9},{:.9},{:.1},{},{}",
                        r.id,
                        r.label,
                        c.count,
                        c.secs.len(),
                        m,
                        min,
                        max,
                        c.count as f64 / m,
                        ratio,
                        note
                    );
                }
                None => {
                    let _ = writeln!(sum, "{},\"{}\",{},0,,,,,,{}", r.id, r.label, c.count, note);
                }
            }
        }
    }
    std::fs::write(dir.join("experiment-raw.csv"), raw)?;
    std::fs::write(dir.join("experiment-summary.csv"), sum)
}
