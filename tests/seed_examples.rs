//! Runs `examples/seed.rs` (every example of the seed notes, in Rust) as its own
//! process and checks what it prints. `cargo test` builds the examples first.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn example(name: &str) -> std::path::PathBuf {
    // target/<profile>/deps/seed_examples-<hash> -> target/<profile>/examples/<name>
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap().join("examples");
    dir.join(name)
}

#[test]
fn every_seed_example_runs_and_prints_what_python_prints() {
    let path = example("seed");
    assert!(path.exists(), "{} not built", path.display());
    let mut child = Command::new(&path)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("examples/seed did not finish in time");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    assert!(status.success(), "exit {status:?}, output:\n{out}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines,
        [
            "[1, 4, 9]",
            "hello bob",
            "hello bob",
            "hello daemon",
            "daemon exit code Some(0)",
            "[Int(42), None, Str(\"hello\")]",
            "[Int(42), None, Str(\"hello\")]",
            "hello world 0",
            "hello world 1",
            "hello world 2",
        ]
    );
}
