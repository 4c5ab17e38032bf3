//! Sizes that cannot fit are refused at creation, before any memory is reserved: a
//! pipe, a duplex, a queue and an array far larger than the machine, capacities whose
//! arithmetic overflows, and (as root, on cgroup v1) a pipe larger than what its memory
//! cgroup has left. Every test runs under a memory watchdog that aborts the test process
//! if `MemAvailable` drops by 2 GiB, so a regression (which used to reserve real memory
//! at about 8 GB/s until the machine ran out) can never take the machine down.
// Process-local flags between a test's threads, never in shared memory: std's atomics.
#![allow(clippy::disallowed_types)]

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{fork_child, serial, watchdog};
use shmproc::{Array, Error, Pipe, Queue, SizeLimit};

const T: Duration = Duration::from_secs(60);
/// The watchdog's limit on how much `MemAvailable` may drop during a test.
const MAX_DROP: u64 = 2 << 30;

/// `MemAvailable` in bytes.
fn mem_available() -> u64 {
    let m = std::fs::read_to_string("/proc/meminfo").expect("/proc/meminfo");
    let line = m
        .lines()
        .find(|l| l.starts_with("MemAvailable:"))
        .expect("MemAvailable");
    let kb: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kb * 1024
}

/// Samples `MemAvailable` every 2 ms while alive, and aborts the test process (which
/// frees whatever it reserved) if it drops by more than [`MAX_DROP`].
struct MemoryWatchdog(Arc<AtomicBool>);

impl MemoryWatchdog {
    fn start() -> MemoryWatchdog {
        let done = Arc::new(AtomicBool::new(false));
        let d = done.clone();
        let base = mem_available();
        std::thread::spawn(move || {
            while !d.load(Ordering::Relaxed) {
                let now = mem_available();
                if base.saturating_sub(now) > MAX_DROP {
                    // Straight to fd 2: the harness's capture of `eprintln!` would be
                    // lost with the abort.
                    use std::io::Write;
                    let _ = writeln!(
                        std::io::stderr(),
                        "memory watchdog: MemAvailable fell from {base} to {now} bytes: \
                         something is reserving the machine's memory; aborting"
                    );
                    std::process::abort();
                }
                std::thread::sleep(Duration::from_millis(2));
            }
        });
        MemoryWatchdog(done)
    }
}

impl Drop for MemoryWatchdog {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Asserts a `CapacityTooLarge` about `what` over `bound`, and a message that says so.
fn assert_too_large<T: std::fmt::Debug>(r: shmproc::Result<T>, what: &str, bound: SizeLimit) {
    let e = r.expect_err("a size that cannot fit was accepted");
    let text = e.to_string();
    match e {
        Error::CapacityTooLarge {
            what: w,
            bound: b,
            requested,
            limit,
        } => {
            assert_eq!((w, b), (what, bound), "{text}");
            assert!(requested > limit, "{text}");
        }
        other => panic!("expected CapacityTooLarge, got {other:?}"),
    }
    assert!(text.starts_with(what), "{text}");
    assert!(!text.contains("message"), "names a message: {text}");
}

/// The limit a huge request trips over on this machine (half of MemAvailable unless a
/// memory cgroup leaves less).
fn memory_bound() -> SizeLimit {
    SizeLimit::MemAvailable
}

#[test]
fn a_pipe_duplex_queue_and_array_larger_than_the_machine_fail_at_once() {
    let _w = watchdog(T);
    let _m = MemoryWatchdog::start();
    if mem_available() / 2 > 1 << 38 {
        eprintln!("skipped: this machine has more than 512 GiB available");
        return;
    }
    assert_too_large(
        Pipe::builder().capacity(1 << 40).build::<u64>(),
        "pipe",
        memory_bound(),
    );
    assert_too_large(
        Pipe::builder().capacity(1 << 38).build_duplex::<u64>(),
        "duplex pipe",
        memory_bound(),
    );
    assert_too_large(
        Queue::<u64>::with_capacity(1 << 32),
        "queue",
        memory_bound(),
    );
    assert_too_large(
        Array::<u8>::new(4usize << 40),
        "shared array",
        memory_bound(),
    );
}

#[test]
fn capacities_whose_arithmetic_overflows_are_errors_not_panics() {
    let _w = watchdog(T);
    let _m = MemoryWatchdog::start();
    for cap in [(1 << 40) + 1, 1 << 63, (1 << 63) + 1, usize::MAX] {
        assert_too_large(
            Pipe::builder().capacity(cap).build::<u8>(),
            "pipe capacity",
            SizeLimit::Maximum,
        );
        assert_too_large(
            Pipe::builder().capacity(cap).build_duplex::<u8>(),
            "pipe capacity",
            SizeLimit::Maximum,
        );
    }
    for items in [(1 << 32) + 1, 1 << 63, usize::MAX] {
        assert_too_large(
            Queue::<u8>::with_capacity(items),
            "queue",
            SizeLimit::Maximum,
        );
    }
    assert_too_large(
        Array::<u64>::new(usize::MAX / 4),
        "shared array",
        SizeLimit::Maximum,
    );
    assert_too_large(
        Array::<[u8; 4096]>::new(usize::MAX / 1024),
        "shared array",
        SizeLimit::Maximum,
    );
    assert_too_large(
        Array::<u8>::new(usize::MAX - 64),
        "shared array",
        SizeLimit::Maximum,
    );
}

#[test]
fn normal_and_checked_sizes_still_work() {
    let _w = watchdog(T);
    let _m = MemoryWatchdog::start();
    // Below the size that is checked, and (32 MiB) above it.
    for cap in [4096, 1 << 20, 32 << 20] {
        let (tx, rx) = Pipe::builder().capacity(cap).build::<Vec<u8>>().unwrap();
        tx.send(&vec![7; 1000]).unwrap();
        assert_eq!(rx.recv().unwrap(), vec![7; 1000]);
        let (a, b) = Pipe::builder().capacity(cap).build_duplex::<u32>().unwrap();
        a.send(&1).unwrap();
        assert_eq!(b.recv().unwrap(), 1);
    }
    for items in [1, 1024, 1 << 18] {
        let q = Queue::<u64>::with_capacity(items).unwrap();
        q.put(&5).unwrap();
        assert_eq!(q.get().unwrap(), 5);
    }
    let a = Array::<u64>::new(8 << 20).unwrap(); // 64 MiB
    a.lock().unwrap()[(8 << 20) - 1] = 3;
    assert_eq!(a.to_vec()[(8 << 20) - 1], 3);
}

/// This process's memory cgroup directory (cgroup v1), if there is one we can write.
fn v1_memory_cgroup() -> Option<String> {
    let groups = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let path = groups.lines().find_map(|l| {
        let mut p = l.splitn(3, ':');
        let (_, ctl, path) = (p.next()?, p.next()?, p.next()?);
        ctl.split(',')
            .any(|c| c == "memory")
            .then(|| path.to_string())
    })?;
    let dir = format!("/sys/fs/cgroup/memory{}", path.trim_end_matches('/'));
    std::path::Path::new(&format!("{dir}/memory.limit_in_bytes"))
        .exists()
        .then_some(dir)
}

#[test]
fn a_pipe_larger_than_what_the_memory_cgroup_has_left_fails_at_once() {
    let Some(parent) = v1_memory_cgroup() else {
        eprintln!("skipped: no cgroup v1 memory controller here");
        return;
    };
    let _s = serial();
    let _w = watchdog(T);
    let _m = MemoryWatchdog::start();
    let dir = format!("{parent}/shmproc-limits-{}", std::process::id());
    if std::fs::create_dir(&dir).is_err() {
        eprintln!("skipped: cannot create a memory cgroup (not root?)");
        return;
    }
    let limit: u64 = 256 << 20;
    std::fs::write(format!("{dir}/memory.limit_in_bytes"), limit.to_string()).unwrap();
    let procs = format!("{dir}/cgroup.procs");
    let mut child = fork_child(move || {
        if std::fs::write(&procs, std::process::id().to_string()).is_err() {
            return 10;
        }
        // 200 MiB: over half of the 256 MiB the cgroup allows (MemAvailable is larger).
        match Pipe::builder().capacity(200 << 20).build::<u8>() {
            Err(Error::CapacityTooLarge {
                bound: SizeLimit::Cgroup,
                ..
            }) => {}
            Err(e) => {
                eprintln!("{e}");
                return 2;
            }
            Ok(_) => return 3,
        }
        // 32 MiB is checked and fits.
        match Pipe::builder().capacity(32 << 20).build::<u8>() {
            Ok((tx, rx)) => {
                tx.send(&9).unwrap();
                if rx.recv().unwrap() != 9 {
                    return 5;
                }
                0
            }
            Err(_) => 4,
        }
    });
    let code = child.wait(T);
    // Charges of the dead child move to the parent group; the directory goes.
    let _ = std::fs::remove_dir(&dir);
    assert_eq!(code, 0, "child failed (10: could not join the cgroup)");
}
