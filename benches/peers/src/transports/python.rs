//! Python's multiprocessing.Pipe and Queue running the seed's own code
//! (scripts/seed_pipe.py and scripts/seed_queue.py). The scripts time themselves and
//! print one JSON line per measurement; the harness runs them with a timeout (killing the
//! whole process group when it runs over) and collects the lines.

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub struct PyRow {
    pub id: &'static str,
    pub label: &'static str,
    pub script: &'static str,
}

pub const ROWS: [PyRow; 2] = [
    PyRow {
        id: "python-mp-pipe",
        label: "Python multiprocessing.Pipe (seed)",
        script: "seed_pipe.py",
    },
    PyRow {
        id: "python-mp-queue",
        label: "Python multiprocessing.Queue",
        script: "seed_queue.py",
    },
];

/// Where the scripts are: `$SHMPROC_SCRIPTS`, else `<repo>/scripts` as seen at build time.
pub fn scripts_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("SHMPROC_SCRIPTS") {
        return PathBuf::from(d);
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts")
}

/// `python3 --version`, or why there is no Python.
pub fn python_version() -> Result<String, String> {
    let out = Command::new("python3")
        .arg("--version")
        .output()
        .map_err(|e| format!("python3 not runnable: {e}"))?;
    if !out.status.success() {
        return Err("python3 --version failed".into());
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Runs one script for `counts` x `runs`; returns (count, seconds) per measurement.
pub fn run(
    row: &PyRow,
    counts: &[u64],
    runs: usize,
    timeout: Duration,
) -> Result<Vec<(u64, f64)>, String> {
    let script = scripts_dir().join(row.script);
    if !script.exists() {
        return Err(format!("{} not found", script.display()));
    }
    let counts_arg = counts
        .iter()
        .map(|c| c.to_string())
        .collect::<Vec<_>>()
        .join(",");
    let mut child = Command::new("python3")
        .arg(&script)
        .arg("--counts")
        .arg(&counts_arg)
        .arg("--runs")
        .arg(runs.to_string())
        .stdout(Stdio::piped())
        .process_group(0) // so a timeout can kill the script and its reader together
        .spawn()
        .map_err(|e| format!("python3: {e}"))?;
    let mut stdout = child.stdout.take().expect("piped");
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(st)) => break st,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            Ok(None) | Err(_) => {
                // SAFETY: kill(2) with a negative pid signals the process group we made.
                unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
                let _ = child.wait();
                let _ = reader.join();
                return Err(format!(
                    "{} timed out after {timeout:?}; killed",
                    row.script
                ));
            }
        }
    };
    let text = reader.join().unwrap_or_default();
    if !status.success() {
        return Err(format!("{} failed: {status}", row.script));
    }
    let mut out = Vec::new();
    for line in text.lines() {
        let v: serde_json::Value =
            serde_json::from_str(line).map_err(|e| format!("bad line {line:?}: {e}"))?;
        let (Some(c), Some(s)) = (v["count"].as_u64(), v["seconds"].as_f64()) else {
            return Err(format!("bad line {line:?}"));
        };
        out.push((c, s));
    }
    Ok(out)
}
