//! Process tests under both start methods, with real child processes.
//!
//! This is a `harness = false` test (see Cargo.toml): spawned children re-execute this
//! binary, so `main` calls `shmproc::init()` first, as every program using spawn must.
//! Tests run one at a time on the main thread (forking beside other test threads is
//! risky); a watchdog thread aborts the binary if anything hangs. Scenarios that need
//! their own process (capturing a child's stdout, a parent to SIGKILL) re-run this binary
//! with `--scenario NAME METHOD`.
//!
//! Filter: `cargo test --test process_spawn -- SUBSTRING`.

mod harness;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::fcntl::{fcntl, FcntlArg, FdFlag, OFlag};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{self, SigSet, SigmaskHow, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};
use shmproc::fuzzing::job_testing;
use shmproc::{get_context, Process, StartMethod};

const WATCHDOG: Duration = Duration::from_secs(240);
use harness::{method_name, METHODS};

// ---------------------------------------------------------------------------------------
// targets
// ---------------------------------------------------------------------------------------

fn hello(name: String) {
    println!("hello {name}");
}

fn nothing(_: ()) {}

fn prints_without_newline(text: String) {
    print!("{text}");
}

/// Exits 0 when a grandchild started with std::process::Command does not see the
/// variable that marked this process as a spawned child.
fn grandchild_env_is_clean(_: ()) {
    let status = Command::new("sh")
        .args(["-c", "test -z \"$SHMPROC_CHILD\""])
        .status()
        .unwrap();
    std::process::exit(if status.success() { 0 } else { 5 });
}

fn panics(msg: String) {
    panic!("{msg}");
}

fn exits_with(code: i32) {
    std::process::exit(code);
}

fn dies_by_sigusr1(_: ()) {
    signal::raise(Signal::SIGUSR1).unwrap();
    std::thread::sleep(Duration::from_secs(5));
}

fn sleeps_ms(ms: u64) {
    std::thread::sleep(Duration::from_millis(ms));
}

/// Creates the file at `path`: the visible effect of a target that must not run.
fn touch_marker(path: String) {
    std::fs::write(path, b"ran").unwrap();
}

/// Of another type than `touch_marker`: creates the file `$SHMPROC_TEST_MARKER` names.
fn touch_env_marker(_: u64) {
    if let Some(path) = std::env::var_os("SHMPROC_TEST_MARKER") {
        let _ = std::fs::write(path, b"ran");
    }
}

/// Sends, for each descriptor number, whether it is open in this process.
fn reports_open_fds((fds, tx): (Vec<i32>, shmproc::Sender<Vec<bool>>)) {
    let open = fds
        .iter()
        .map(|&fd| fcntl(fd, FcntlArg::F_GETFD).is_ok())
        .collect();
    tx.send(&open).unwrap();
}

#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct Args {
    name: String,
    values: Vec<u64>,
    nested: Option<(i8, bool)>,
}

fn checks_args(a: Args) -> Args {
    let expected = Args {
        name: "ünïcode".into(),
        values: (0..1000).collect(),
        nested: Some((-3, true)),
    };
    if a != expected {
        std::process::exit(3);
    }
    a
}

/// The seed's message: an integer or DONE.
#[derive(Serialize, Deserialize, Debug, PartialEq)]
enum Msg {
    Int(u64),
    Done,
}

/// The seed's `reader_proc`: reads until DONE; exits 0 only if every integer arrived in
/// order, 4 on a gap, 5 on a disconnect before DONE.
fn reader_proc(rx: shmproc::Receiver<Msg>) {
    let mut next = 0u64;
    loop {
        match rx.recv() {
            Ok(Msg::Int(i)) if i == next => next += 1,
            Ok(Msg::Int(_)) => std::process::exit(4),
            Ok(Msg::Done) => break,
            Err(_) => std::process::exit(5),
        }
    }
}

/// Echoes every integer back on a duplex connection, +1, until the peer hangs up.
fn echo_plus_one(conn: shmproc::Connection<u64>) {
    while let Ok(x) = conn.recv() {
        if conn.send(&(x + 1)).is_err() {
            break;
        }
    }
}

// ---------------------------------------------------------------------------------------
// helpers
// ---------------------------------------------------------------------------------------

fn parse_method(s: &str) -> StartMethod {
    match s {
        "fork" => StartMethod::Fork,
        "spawn" => StartMethod::Spawn,
        other => panic!("unknown start method {other}"),
    }
}

/// Runs this binary as `--scenario name method`, with stdout and stderr captured.
fn scenario(name: &str, m: StartMethod) -> std::process::Output {
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--scenario", name, method_name(m)])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    out
}

/// State letter of a process from /proc (R, S, Z, ...), `None` once it is gone.
fn proc_state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat[stat.rfind(')')? + 1..].trim_start().chars().next()
}

/// Waits until `pid` no longer runs (gone, or a zombie: then reaps it when it is ours,
/// e.g. an orphan reparented to this subreaper). Returns how long it took, or `None`.
fn wait_dead(pid: u32, timeout: Duration) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < timeout {
        match proc_state(pid) {
            None => return Some(start.elapsed()),
            Some('Z') | Some('X') => {
                let t = start.elapsed();
                let _ = waitpid(Pid::from_raw(pid as i32), Some(WaitPidFlag::WNOHANG));
                return Some(t);
            }
            _ => std::thread::sleep(Duration::from_millis(2)),
        }
    }
    None
}

/// Waits until `/proc/pid` is gone entirely (reaped by its parent).
fn wait_reaped(pid: u32, timeout: Duration) -> bool {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if proc_state(pid).is_none() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    false
}

/// A fresh directory for one test's files, removed by [`TempDir`]'s drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(parent: &Path, tag: &str) -> TempDir {
        let dir = parent.join(format!("shmproc-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Clears close-on-exec on `fd`, so that a child started with `Command` inherits it.
fn inheritable(fd: &impl AsRawFd) {
    fcntl(fd.as_raw_fd(), FcntlArg::F_SETFD(FdFlag::empty())).unwrap();
}

/// Writes a job to `path` and opens it as an inheritable descriptor.
fn job_file(path: &Path, bytes: &[u8]) -> std::fs::File {
    std::fs::write(path, bytes).unwrap();
    let f = std::fs::File::open(path).unwrap();
    inheritable(&f);
    f
}

/// A pipe for a job's acknowledgement: the read end stays here (close-on-exec), the
/// write end is inheritable.
fn ack_pipe() -> (OwnedFd, OwnedFd) {
    let (r, w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).unwrap();
    inheritable(&w);
    (r, w)
}

/// Whether the child acknowledged its job on `ack_r` (a byte is waiting there).
fn acknowledged(ack_r: &OwnedFd) -> bool {
    let mut fds = [PollFd::new(
        std::os::fd::AsFd::as_fd(ack_r),
        PollFlags::POLLIN,
    )];
    poll(&mut fds, PollTimeout::ZERO).unwrap() == 1 && {
        let mut b = [0u8; 1];
        nix::unistd::read(ack_r.as_raw_fd(), &mut b).unwrap() == 1
    }
}

fn show(out: &std::process::Output) -> String {
    format!(
        "status {:?}\n--- stdout\n{}--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Sets a file's modification time by path (`utimensat`), which works on a running
/// executable too.
fn set_mtime(path: &Path, t: std::time::SystemTime) {
    let d = t.duration_since(std::time::UNIX_EPOCH).unwrap();
    let ts = nix::sys::time::TimeSpec::new(d.as_secs() as i64, d.subsec_nanos() as i64);
    nix::sys::stat::utimensat(
        None,
        path,
        &ts,
        &ts,
        nix::sys::stat::UtimensatFlags::FollowSymlink,
    )
    .unwrap();
}

/// AT_SECURE from this process's auxiliary vector (/proc/self/auxv: pairs of words).
fn at_secure() -> u64 {
    const AT_SECURE: u64 = 23;
    let auxv = std::fs::read("/proc/self/auxv").unwrap();
    auxv.chunks_exact(16)
        .map(|p| {
            let word = |b: &[u8]| u64::from_ne_bytes(b.try_into().unwrap());
            (word(&p[..8]), word(&p[8..]))
        })
        .find(|&(key, _)| key == AT_SECURE)
        .map_or(0, |(_, v)| v)
}

fn run<A, R>(m: StartMethod, f: fn(A) -> R, args: A) -> Process
where
    A: Serialize + serde::de::DeserializeOwned + Send + 'static,
    R: 'static,
{
    let mut p = get_context(m).process(f, args);
    p.start().unwrap();
    p.join_timeout(Duration::from_secs(30)).unwrap();
    if p.exitcode().is_none() {
        let _ = p.kill();
        let _ = p.join();
        panic!("child did not exit within 30 s");
    }
    p
}

// ---------------------------------------------------------------------------------------
// tests
// ---------------------------------------------------------------------------------------

fn seed_pipe_experiment_with_a_reader_that_receives_the_receiver(m: StartMethod) {
    for count in [10_000u64, 100_000] {
        let (tx, rx) = shmproc::pipe::<Msg>().unwrap();
        let mut reader = get_context(m).process(reader_proc, rx);
        reader.daemon(true);
        reader.start().unwrap();
        for i in 0..count {
            tx.send(&Msg::Int(i)).unwrap();
        }
        tx.send(&Msg::Done).unwrap();
        drop(tx);
        reader.join_timeout(Duration::from_secs(30)).unwrap();
        assert_eq!(reader.exitcode(), Some(0), "reader failed at count {count}");
    }
}

fn a_duplex_connection_passed_as_args_works_both_ways(m: StartMethod) {
    let (a, b) = shmproc::duplex::<u64>().unwrap();
    let mut p = get_context(m).process(echo_plus_one, b);
    p.start().unwrap();
    for i in 0..1000u64 {
        a.send(&i).unwrap();
        assert_eq!(a.recv_timeout(Duration::from_secs(10)), Ok(i + 1));
    }
    drop(a);
    p.join_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(p.exitcode(), Some(0));
}

fn the_parent_copy_of_a_passed_receiver_is_gone_after_start(m: StartMethod) {
    // start() hands the Receiver to the child and drops the parent's copy: when the
    // child exits without reading, the sender sees Disconnected (nobody else reads).
    let (tx, rx) = shmproc::Pipe::builder()
        .capacity(4096)
        .build::<u64>()
        .unwrap();
    let mut p = get_context(m).process(|_rx: shmproc::Receiver<u64>| {}, rx);
    p.start().unwrap();
    p.join_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(p.exitcode(), Some(0));
    let mut res = Ok(());
    for i in 0..10_000u64 {
        res = tx
            .send_timeout(&i, Duration::from_secs(10))
            .map_err(|e| format!("{e:?}"));
        if res.is_err() {
            break;
        }
    }
    assert_eq!(res, Err("Disconnected".to_string()));
}

fn hello_bob_prints_in_the_child(m: StartMethod) {
    let out = scenario("hello", m);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello bob\n");
    assert!(
        out.status.success(),
        "scenario failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn unflushed_output_is_flushed_before_the_child_exits(m: StartMethod) {
    let out = scenario("partial", m);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "a line without its end"
    );
    assert!(out.status.success());
}

fn the_child_marker_does_not_leak_to_grandchildren(m: StartMethod) {
    assert_eq!(run(m, grandchild_env_is_clean, ()).exitcode(), Some(0));
}

fn a_spawned_child_whose_main_skips_init_exits_1_and_says_why(m: StartMethod) {
    if m != StartMethod::Spawn {
        return;
    }
    // The scenario runs this binary's main without init(); so does its spawned child,
    // whose start() must fail and whose exit must not look like success.
    let dir = TempDir::new(&std::env::temp_dir(), "no-init");
    let marker = dir.path("marker");
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--scenario", "no-init", method_name(m)])
        .env("SHMPROC_TEST_SKIP_INIT", "1")
        .env("SHMPROC_TEST_MARKER", &marker)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{}", show(&out));
    assert!(stdout.contains("exitcode Some(1)"), "{}", show(&out));
    assert!(
        stderr.contains("spawned child's main did not call shmproc::init() first"),
        "{}",
        show(&out)
    );
    assert!(
        stderr.contains("start() in the child: invalid state"),
        "{}",
        show(&out)
    );
    assert!(!marker.exists(), "the target ran");
}

fn a_job_handed_over_by_another_program_never_runs(m: StartMethod) {
    if m != StartMethod::Spawn {
        return;
    }
    let dir = TempDir::new(&std::env::temp_dir(), "forged");
    let marker = dir.path("marker");
    let bin = std::env::current_exe().unwrap();
    let (ack_r, ack_w) = ack_pipe();
    let bytes = job_testing::job_bytes(
        touch_marker,
        &marker.to_str().unwrap().to_string(),
        ack_w.as_raw_fd(),
    )
    .unwrap();
    let job = job_file(&dir.path("job"), &bytes);
    let fd = job.as_raw_fd().to_string();
    let victim = ["--scenario", "victim", method_name(m)];

    // Other programs hand the job over: a shell that forks the binary (not exec), and
    // python's subprocess when there is a python3.
    let mut sh = Command::new("sh");
    sh.arg("-c")
        .arg("\"$0\" \"$@\"; exit $?")
        .arg(&bin)
        .args(victim);
    let mut parents = vec![("sh", sh)];
    if Command::new("python3")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        let mut py = Command::new("python3");
        py.arg("-c")
            .arg("import subprocess, sys; sys.exit(subprocess.call(sys.argv[1:], close_fds=False))")
            .arg(&bin)
            .args(victim);
        parents.push(("python3", py));
    } else {
        eprintln!("    python3 not found: only sh hands the job over");
    }
    for (name, mut cmd) in parents {
        let out = cmd
            .env("SHMPROC_CHILD", &fd)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{name}: {}", show(&out));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(
                "refusing a spawn job not handed over by a parent process of this same executable"
            ),
            "{name}: {}",
            show(&out)
        );
        assert!(!marker.exists(), "{name}: the forged job's target ran");
        eprintln!("    {name}: {}", stderr.trim());
        assert!(!acknowledged(&ack_r), "{name}: the job was acknowledged");
    }

    // Control: the same job handed over by a process of this executable (this one) runs,
    // which is what the threat model allows (that process already runs this code).
    let out = Command::new(&bin)
        .args(victim)
        .env("SHMPROC_CHILD", &fd)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert!(
        marker.exists(),
        "the control job did not run: {}",
        show(&out)
    );
    assert!(acknowledged(&ack_r), "the control job was not acknowledged");
}

fn a_job_pairing_a_target_with_another_types_trampoline_never_runs(m: StartMethod) {
    if m != StartMethod::Spawn {
        return;
    }
    let dir = TempDir::new(&std::env::temp_dir(), "mismatch");
    let marker = dir.path("marker");
    let (ack_r, ack_w) = ack_pipe();
    // The trampoline of fn(String), the target touch_env_marker: fn(u64).
    let bytes = job_testing::mismatched_job_bytes(
        touch_marker,
        touch_env_marker,
        &"unused".to_string(),
        ack_w.as_raw_fd(),
    )
    .unwrap();
    let job = job_file(&dir.path("job"), &bytes);
    // Handed over by this process, a parent of the same executable: the job passes the
    // parent check and is acknowledged; its trampoline must still refuse it.
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--scenario", "victim", method_name(m)])
        .env("SHMPROC_CHILD", job.as_raw_fd().to_string())
        .env("SHMPROC_TEST_MARKER", &marker)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("type fingerprint mismatch"),
        "{}",
        show(&out)
    );
    assert!(!marker.exists(), "the mismatched target ran");
    assert!(
        acknowledged(&ack_r),
        "the job did not get past the parent check"
    );
}

fn a_setuid_program_ignores_spawn_jobs_and_refuses_to_spawn(m: StartMethod) {
    if m != StartMethod::Spawn {
        return;
    }
    if !nix::unistd::geteuid().is_root() {
        println!("    skipped: needs root to make a setuid-root copy of this binary");
        return;
    }
    let bin = std::env::current_exe().unwrap();
    // Next to the binary (the target directory), not in /tmp, which may be nosuid.
    let dir = TempDir::new(bin.parent().unwrap(), "setuid");
    let flags = nix::sys::statvfs::statvfs(&dir.0).unwrap().flags();
    if flags.contains(nix::sys::statvfs::FsFlags::ST_NOSUID) {
        println!("    skipped: {} is on a nosuid filesystem", dir.0.display());
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let copy = dir.path("victim");
    std::fs::copy(&bin, &copy).unwrap();
    std::fs::set_permissions(&dir.0, std::fs::Permissions::from_mode(0o755)).unwrap();
    nix::unistd::chown(&copy, Some(0.into()), Some(0.into())).unwrap();
    std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o4755)).unwrap();
    let marker = dir.path("marker");

    // The copy itself writes a job for its own image (offsets and identity are public
    // information: a forger can compute the same bytes).
    let job_path = dir.path("job");
    let out = Command::new(&copy)
        .args(["--scenario", "write-job", method_name(m)])
        .env("SHMPROC_TEST_JOB", &job_path)
        .env("SHMPROC_TEST_MARKER", &marker)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", show(&out));
    let job = job_file(&job_path, &std::fs::read(&job_path).unwrap());
    let fd = job.as_raw_fd().to_string();

    // Control: handed over by a process of the copy, the job runs (as root here).
    let out = Command::new(&copy)
        .args(["--scenario", "hand-over", method_name(m)])
        .env("SHMPROC_TEST_JOB_FD", &fd)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", show(&out));
    assert!(
        marker.exists(),
        "the control job did not run: {}",
        show(&out)
    );
    std::fs::remove_file(&marker).unwrap();

    // The attack: run the setuid copy as nobody, with the job in its environment and an
    // acknowledgement pipe at the number the job names.
    let (ack_r, ack_w) = ack_pipe();
    nix::unistd::dup2(ack_w.as_raw_fd(), 100).unwrap();
    drop(ack_w);
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(&copy)
        .args(["--scenario", "secure", method_name(m)])
        .env("SHMPROC_CHILD", &fd)
        .env("SHMPROC_TEST_MARKER", &marker)
        .stdin(Stdio::null())
        .output();
    nix::unistd::close(100).unwrap();
    let out = match out {
        Ok(out) => out,
        Err(e) => {
            println!("    skipped: setpriv could not run: {e}");
            return;
        }
    };
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{}", show(&out));
    assert!(stdout.contains("AT_SECURE=1"), "{}", show(&out));
    assert!(stdout.contains("euid=0 uid=65534"), "{}", show(&out));
    assert!(
        stderr.contains("ignoring SHMPROC_CHILD: this process runs in secure-execution mode"),
        "{}",
        show(&out)
    );
    assert!(
        stdout.contains("spawn refused: spawn: spawn is refused in a secure-execution process"),
        "{}",
        show(&out)
    );
    assert!(
        stdout.contains("pool refused: spawn: spawn is refused in a secure-execution process"),
        "{}",
        show(&out)
    );
    assert!(!marker.exists(), "the forged job ran in the setuid process");
    assert!(
        !acknowledged(&ack_r),
        "the setuid process acknowledged the job"
    );
}

fn start_reports_a_child_that_refused_its_job_and_reaps_it(m: StartMethod) {
    if m != StartMethod::Spawn {
        return;
    }
    // A copy of this binary whose modification time changes between two spawns: the
    // second child finds another executable identity than its job names and refuses it.
    let dir = TempDir::new(&std::env::temp_dir(), "touched");
    let copy = dir.path("copy");
    std::fs::copy(std::env::current_exe().unwrap(), &copy).unwrap();
    let out = Command::new(&copy)
        .args(["--scenario", "touched-exe", method_name(m)])
        .env("SHMPROC_TEST_MARKER", dir.path("marker"))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{}", show(&out));
    assert!(stdout.contains("first: exitcode Some(0)"), "{}", show(&out));
    assert!(
        stdout.contains("second: spawn: the spawned child")
            && stdout.contains("exited (exit code 1) before accepting its job"),
        "{}",
        show(&out)
    );
    assert!(stdout.contains("children left: 0"), "{}", show(&out));
    assert!(
        stderr.contains("the spawn job was made by another executable than this one"),
        "{}",
        show(&out)
    );
    assert!(!dir.path("marker").exists(), "the refused job's target ran");
}

fn only_the_descriptors_a_spawned_child_needs_cross_exec(m: StartMethod) {
    if m != StartMethod::Spawn {
        return; // a forked child shares every descriptor by design
    }
    // Descriptors without close-on-exec, at numbers the child will not reuse.
    let (r, w) = nix::unistd::pipe().unwrap();
    let file = std::fs::File::open("/proc/self/exe").unwrap();
    let mut leaky = Vec::new();
    for (i, fd) in [r.as_raw_fd(), w.as_raw_fd(), file.as_raw_fd()]
        .into_iter()
        .enumerate()
    {
        let n = 500 + i as i32;
        nix::unistd::dup2(fd, n).unwrap(); // dup2 clears close-on-exec
        assert_eq!(fcntl(n, FcntlArg::F_GETFD).unwrap(), 0);
        leaky.push(n);
    }
    let (tx, rx) = shmproc::pipe::<Vec<bool>>().unwrap();
    let mut p = get_context(m).process(reports_open_fds, (leaky.clone(), tx));
    p.start().unwrap();
    // The handle passed in the args works; the other descriptors did not cross.
    let open = rx.recv_timeout(Duration::from_secs(30));
    p.join_timeout(Duration::from_secs(30)).unwrap();
    for &n in &leaky {
        assert!(
            fcntl(n, FcntlArg::F_GETFD).is_ok(),
            "still open in the parent"
        );
        nix::unistd::close(n).unwrap();
    }
    assert_eq!(open, Ok(vec![false, false, false]));
    assert_eq!(p.exitcode(), Some(0));
}

fn exit_code_zero_when_the_target_returns(m: StartMethod) {
    assert_eq!(run(m, nothing, ()).exitcode(), Some(0));
}

fn exit_code_one_and_message_on_stderr_when_the_target_panics(m: StartMethod) {
    let out = scenario("panic", m);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("the child's own panic message"),
        "stderr: {stderr}"
    );
    assert_eq!(
        out.status.code(),
        Some(1),
        "the scenario exits with the child's exitcode"
    );
}

fn exit_code_n_after_process_exit_n(m: StartMethod) {
    assert_eq!(run(m, exits_with, 7).exitcode(), Some(7));
    assert_eq!(run(m, exits_with, 255).exitcode(), Some(255));
}

fn exit_code_minus_signal_when_killed_by_a_signal(m: StartMethod) {
    assert_eq!(
        run(m, dies_by_sigusr1, ()).exitcode(),
        Some(-(Signal::SIGUSR1 as i32))
    );
}

fn args_reach_the_child_intact(m: StartMethod) {
    let args = Args {
        name: "ünïcode".into(),
        values: (0..1000).collect(),
        nested: Some((-3, true)),
    };
    assert_eq!(run(m, checks_args, args).exitcode(), Some(0));
}

fn terminate_gives_minus_15(m: StartMethod) {
    let mut p = get_context(m).process(sleeps_ms, 30_000);
    p.start().unwrap();
    assert!(p.is_alive());
    p.terminate().unwrap();
    p.join().unwrap();
    assert_eq!(p.exitcode(), Some(-15));
    assert!(!p.is_alive());
    // Signalling an exited, reaped child does nothing.
    p.terminate().unwrap();
    p.kill().unwrap();
}

fn terminate_works_even_when_the_parent_blocks_sigterm(m: StartMethod) {
    let mut set = SigSet::empty();
    set.add(Signal::SIGTERM);
    signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&set), None).unwrap();
    let mut p = get_context(m).process(sleeps_ms, 30_000);
    let started = p.start();
    signal::sigprocmask(SigmaskHow::SIG_UNBLOCK, Some(&set), None).unwrap();
    started.unwrap();
    // Give a forked child the time to reach its target (the reset happens before).
    std::thread::sleep(Duration::from_millis(50));
    p.terminate().unwrap();
    p.join_timeout(Duration::from_secs(10)).unwrap();
    if p.exitcode().is_none() {
        p.kill().unwrap();
        p.join().unwrap();
    }
    assert_eq!(p.exitcode(), Some(-15));
}

fn kill_gives_minus_9(m: StartMethod) {
    let mut p = get_context(m).process(sleeps_ms, 30_000);
    p.start().unwrap();
    p.kill().unwrap();
    p.join().unwrap();
    assert_eq!(p.exitcode(), Some(-9));
}

fn join_timeout_on_a_running_child_returns_with_no_exitcode(m: StartMethod) {
    let mut p = get_context(m).process(sleeps_ms, 30_000);
    p.start().unwrap();
    let t = Instant::now();
    p.join_timeout(Duration::from_millis(200)).unwrap();
    assert!(t.elapsed() >= Duration::from_millis(200));
    assert_eq!(p.exitcode(), None);
    assert!(p.is_alive());
    p.kill().unwrap();
    p.join_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(p.exitcode(), Some(-9));
}

fn join_returns_promptly_after_the_child_exits(m: StartMethod) {
    let mut p = get_context(m).process(sleeps_ms, 300);
    p.start().unwrap();
    p.join_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(p.exitcode(), Some(0));
    p.join().unwrap(); // again: a no-op
}

fn daemon_dies_soon_after_its_parent_is_sigkilled(m: StartMethod) {
    let mut parent = Command::new(std::env::current_exe().unwrap())
        .args(["--scenario", "daemon-parent", method_name(m)])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(parent.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let daemon: u32 = line.trim().parse().unwrap_or_else(|_| {
        let _ = parent.kill();
        let _ = parent.wait();
        panic!("no daemon pid from the parent: {line:?}")
    });
    assert!(
        proc_state(daemon).is_some_and(|s| s != 'Z'),
        "the daemon runs"
    );
    parent.kill().unwrap(); // SIGKILL
    parent.wait().unwrap();
    let took = wait_dead(daemon, Duration::from_secs(2));
    if took.is_none() {
        let _ = signal::kill(Pid::from_raw(daemon as i32), Signal::SIGKILL);
        let _ = wait_dead(daemon, Duration::from_secs(2));
    }
    let took = took.expect("the daemon outlived its SIGKILLed parent by more than 2 s");
    eprintln!("    daemon died {took:?} after its parent");
}

fn dropping_an_unjoined_child_leaves_no_zombie(m: StartMethod) {
    let mut p = get_context(m).process(sleeps_ms, 300);
    p.start().unwrap();
    let pid = p.pid().unwrap();
    drop(p);
    assert!(proc_state(pid).is_some(), "a dropped non-daemon runs on");
    assert!(
        wait_reaped(pid, Duration::from_secs(10)),
        "the child is reaped after it exits"
    );
}

fn dropping_an_unjoined_daemon_kills_and_reaps_it(m: StartMethod) {
    let mut p = get_context(m).process(sleeps_ms, 30_000);
    p.daemon(true);
    p.start().unwrap();
    let pid = p.pid().unwrap();
    drop(p);
    assert_eq!(proc_state(pid), None, "killed and reaped by drop");
}

fn lifecycle_errors(m: StartMethod) {
    let mut p = get_context(m).process(nothing, ());
    assert!(p.join().is_err(), "join before start");
    assert!(p.join_timeout(Duration::from_millis(1)).is_err());
    assert!(p.terminate().is_err());
    assert!(p.kill().is_err());
    assert_eq!(p.exitcode(), None);
    assert_eq!(p.pid(), None);
    assert!(p.sentinel().is_none());
    assert!(!p.is_alive());
    p.start().unwrap();
    assert!(p.pid().is_some());
    assert!(p.start().is_err(), "start twice");
    // valgrind does not implement pidfd_open: the sentinel is absent there, by design.
    let under_valgrind = std::env::var("LD_PRELOAD").is_ok_and(|v| v.contains("vgpreload"));
    if !under_valgrind {
        let sentinel = p.sentinel().expect("a pidfd once started");
        let mut fds = [PollFd::new(sentinel, PollFlags::POLLIN)];
        assert_eq!(
            poll(&mut fds, PollTimeout::from(30_000u16)).unwrap(),
            1,
            "readable on exit"
        );
    }
    p.join().unwrap();
    assert_eq!(p.exitcode(), Some(0));
    assert!(p.pid().is_some());
}

fn many_children_in_a_row(m: StartMethod) {
    let mut ps: Vec<Process> = (0..8)
        .map(|i| get_context(m).process(exits_with, i))
        .collect();
    for p in &mut ps {
        p.start().unwrap();
    }
    for (i, p) in ps.iter_mut().enumerate() {
        p.join().unwrap();
        assert_eq!(p.exitcode(), Some(i as i32));
    }
}

fn fork_closure_captures_state(m: StartMethod) {
    if m != StartMethod::Fork {
        return;
    }
    let data: Vec<i32> = (1..=10).collect();
    let mut p = Process::fork(move || std::process::exit(data.iter().sum()));
    p.start().unwrap();
    p.join().unwrap();
    assert_eq!(p.exitcode(), Some(55));
}

// ---------------------------------------------------------------------------------------
// scenarios: run in a process of their own
// ---------------------------------------------------------------------------------------

fn run_scenario(name: &str, m: StartMethod) -> ! {
    let code = match name {
        "hello" => {
            let mut p = get_context(m).process(hello, "bob".to_string());
            p.start().unwrap();
            p.join().unwrap();
            p.exitcode()
        }
        "panic" => {
            let mut p = get_context(m).process(panics, "the child's own panic message".to_string());
            p.start().unwrap();
            p.join().unwrap();
            p.exitcode()
        }
        "partial" => {
            let mut p = get_context(m)
                .process(prints_without_newline, "a line without its end".to_string());
            p.start().unwrap();
            p.join().unwrap();
            p.exitcode()
        }
        "no-init" => {
            // main() skipped init() (SHMPROC_TEST_SKIP_INIT): in the spawned child, which
            // runs this again, start() fails, and returning 0 must not look like success.
            let marker = std::env::var("SHMPROC_TEST_MARKER").unwrap();
            let mut p = get_context(m).process(touch_marker, marker);
            match p.start() {
                Err(e) => eprintln!("start() in the child: {e}"),
                Ok(()) => {
                    p.join_timeout(Duration::from_secs(30)).unwrap();
                    println!("exitcode {:?}", p.exitcode());
                    if p.exitcode().is_none() {
                        let _ = p.kill();
                        let _ = p.join();
                    }
                }
            }
            Some(0)
        }
        "touched-exe" => {
            let mut p = get_context(m).process(nothing, ());
            p.start().unwrap();
            p.join_timeout(Duration::from_secs(30)).unwrap();
            println!("first: exitcode {:?}", p.exitcode());
            // The running image cannot be opened for writing (ETXTBSY): set its time by
            // path.
            let exe = std::env::current_exe().unwrap();
            let later = std::time::SystemTime::now() + Duration::from_secs(3600);
            set_mtime(&exe, later);
            let marker = std::env::var("SHMPROC_TEST_MARKER").unwrap();
            let mut q = get_context(m).process(touch_marker, marker);
            match q.start() {
                Err(e) => println!("second: {e}"),
                Ok(()) => {
                    let _ = q.join_timeout(Duration::from_secs(30));
                    println!("second: started, exitcode {:?}", q.exitcode());
                }
            }
            let children: usize = std::fs::read_dir("/proc/self/task")
                .unwrap()
                .map(|t| {
                    let path = t.unwrap().path().join("children");
                    std::fs::read_to_string(path)
                        .unwrap_or_default()
                        .split_whitespace()
                        .count()
                })
                .sum();
            println!("children left: {children}");
            Some(0)
        }
        "victim" => {
            // Reached only when no job ran.
            println!("victim main ran");
            Some(0)
        }
        "write-job" => {
            let marker = std::env::var("SHMPROC_TEST_MARKER").unwrap();
            let bytes = job_testing::job_bytes(touch_marker, &marker, 100).unwrap();
            std::fs::write(std::env::var("SHMPROC_TEST_JOB").unwrap(), bytes).unwrap();
            Some(0)
        }
        "hand-over" => {
            // Hands the job on descriptor $SHMPROC_TEST_JOB_FD to a child of this binary.
            let (_ack_r, ack_w) = ack_pipe();
            nix::unistd::dup2(ack_w.as_raw_fd(), 100).unwrap();
            let out = Command::new(std::env::current_exe().unwrap())
                .args(["--scenario", "victim", method_name(m)])
                .env(
                    "SHMPROC_CHILD",
                    std::env::var("SHMPROC_TEST_JOB_FD").unwrap(),
                )
                .output()
                .unwrap();
            eprint!("{}", show(&out));
            out.status.code()
        }
        "secure" => {
            // A setuid copy run by nobody: init() above ignored the job; main runs.
            println!("AT_SECURE={}", at_secure());
            println!(
                "euid={} uid={}",
                nix::unistd::geteuid(),
                nix::unistd::getuid()
            );
            let marker = std::env::var("SHMPROC_TEST_MARKER").unwrap();
            let mut p = get_context(m).process(touch_marker, marker);
            match p.start() {
                Err(e) => println!("spawn refused: {e}"),
                Ok(()) => {
                    println!("spawn started");
                    let _ = p.join_timeout(Duration::from_secs(30));
                }
            }
            match shmproc::Pool::builder()
                .workers(1)
                .start_method(StartMethod::Spawn)
                .build()
            {
                Err(e) => println!("pool refused: {e}"),
                Ok(_) => println!("pool started"),
            }
            Some(0)
        }
        "daemon-parent" => {
            let mut p = get_context(m).process(sleeps_ms, 60_000);
            p.daemon(true);
            p.start().unwrap();
            println!("{}", p.pid().unwrap());
            std::io::Write::flush(&mut std::io::stdout()).unwrap();
            std::thread::sleep(Duration::from_secs(60));
            Some(0)
        }
        other => panic!("unknown scenario {other}"),
    };
    std::process::exit(code.unwrap_or(99))
}

use harness::Test;

const TESTS: &[Test] = &[
    (
        "hello_bob_prints_in_the_child",
        hello_bob_prints_in_the_child,
    ),
    (
        "unflushed_output_is_flushed_before_the_child_exits",
        unflushed_output_is_flushed_before_the_child_exits,
    ),
    (
        "the_child_marker_does_not_leak_to_grandchildren",
        the_child_marker_does_not_leak_to_grandchildren,
    ),
    (
        "a_spawned_child_whose_main_skips_init_exits_1_and_says_why",
        a_spawned_child_whose_main_skips_init_exits_1_and_says_why,
    ),
    (
        "a_job_handed_over_by_another_program_never_runs",
        a_job_handed_over_by_another_program_never_runs,
    ),
    (
        "a_job_pairing_a_target_with_another_types_trampoline_never_runs",
        a_job_pairing_a_target_with_another_types_trampoline_never_runs,
    ),
    (
        "a_setuid_program_ignores_spawn_jobs_and_refuses_to_spawn",
        a_setuid_program_ignores_spawn_jobs_and_refuses_to_spawn,
    ),
    (
        "start_reports_a_child_that_refused_its_job_and_reaps_it",
        start_reports_a_child_that_refused_its_job_and_reaps_it,
    ),
    (
        "only_the_descriptors_a_spawned_child_needs_cross_exec",
        only_the_descriptors_a_spawned_child_needs_cross_exec,
    ),
    (
        "exit_code_zero_when_the_target_returns",
        exit_code_zero_when_the_target_returns,
    ),
    (
        "exit_code_one_and_message_on_stderr_when_the_target_panics",
        exit_code_one_and_message_on_stderr_when_the_target_panics,
    ),
    (
        "exit_code_n_after_process_exit_n",
        exit_code_n_after_process_exit_n,
    ),
    (
        "exit_code_minus_signal_when_killed_by_a_signal",
        exit_code_minus_signal_when_killed_by_a_signal,
    ),
    ("args_reach_the_child_intact", args_reach_the_child_intact),
    ("terminate_gives_minus_15", terminate_gives_minus_15),
    (
        "terminate_works_even_when_the_parent_blocks_sigterm",
        terminate_works_even_when_the_parent_blocks_sigterm,
    ),
    ("kill_gives_minus_9", kill_gives_minus_9),
    (
        "join_timeout_on_a_running_child_returns_with_no_exitcode",
        join_timeout_on_a_running_child_returns_with_no_exitcode,
    ),
    (
        "join_returns_promptly_after_the_child_exits",
        join_returns_promptly_after_the_child_exits,
    ),
    (
        "daemon_dies_soon_after_its_parent_is_sigkilled",
        daemon_dies_soon_after_its_parent_is_sigkilled,
    ),
    (
        "dropping_an_unjoined_child_leaves_no_zombie",
        dropping_an_unjoined_child_leaves_no_zombie,
    ),
    (
        "dropping_an_unjoined_daemon_kills_and_reaps_it",
        dropping_an_unjoined_daemon_kills_and_reaps_it,
    ),
    ("lifecycle_errors", lifecycle_errors),
    ("many_children_in_a_row", many_children_in_a_row),
    ("fork_closure_captures_state", fork_closure_captures_state),
    (
        "seed_pipe_experiment_with_a_reader_that_receives_the_receiver",
        seed_pipe_experiment_with_a_reader_that_receives_the_receiver,
    ),
    (
        "a_duplex_connection_passed_as_args_works_both_ways",
        a_duplex_connection_passed_as_args_works_both_ways,
    ),
    (
        "the_parent_copy_of_a_passed_receiver_is_gone_after_start",
        the_parent_copy_of_a_passed_receiver_is_gone_after_start,
    ),
];

fn main() {
    // The no-init scenario (and its spawned child) runs main without init().
    if std::env::var_os("SHMPROC_TEST_SKIP_INIT").is_none() {
        shmproc::init();
    }
    let args: Vec<String> = std::env::args().collect();
    if args.len() == 4 && args[1] == "--scenario" {
        run_scenario(&args[2], parse_method(&args[3]));
    }
    // Orphans (the daemon of a SIGKILLed scenario) are reparented to us, so we can see
    // them die and reap them.
    nix::sys::prctl::set_child_subreaper(true).unwrap();
    harness::run("process_spawn", TESTS, &METHODS, WATCHDOG)
}
