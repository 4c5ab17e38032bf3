use super::header::*;
use super::limits::*;
use super::*;

#[test]
fn memfd_region_round_trips_through_its_descriptor() {
    let r = Region::create(Kind::Test, 4096, [1, 2, 3, 4]).unwrap();
    let fd = sys::dup_cloexec(r.fd()).unwrap();
    let o = Region::open_fd(fd, Kind::Test).unwrap();
    assert_eq!(o.params(), [1, 2, 3, 4]);
    assert_eq!(o.payload_len(), 4096);
}

#[test]
fn mem_available_is_read_in_bytes() {
    let m = "MemTotal:       24731408 kB\nMemFree: 1 kB\nMemAvailable:   24306356 kB\n";
    assert_eq!(mem_available(m), Some(24306356 * 1024));
    assert_eq!(mem_available("MemTotal: 5 kB\n"), None);
    assert_eq!(mem_available("MemAvailable: lots kB\n"), None);
    assert_eq!(mem_available("MemAvailable: 5 MB\n"), None);
}

#[test]
fn cgroup_headrooms_walk_every_enclosing_group_of_v2_and_v1() {
    let files = [
        ("/sys/fs/cgroup/a/b/memory.max", "max\n"),
        ("/sys/fs/cgroup/a/b/memory.current", "100\n"),
        ("/sys/fs/cgroup/a/memory.max", "1000\n"),
        ("/sys/fs/cgroup/a/memory.current", "400\n"),
        (
            "/sys/fs/cgroup/memory/x/memory.limit_in_bytes",
            "9223372036854771712\n",
        ),
        ("/sys/fs/cgroup/memory/x/memory.usage_in_bytes", "5\n"),
        ("/sys/fs/cgroup/memory/memory.limit_in_bytes", "50\n"),
        ("/sys/fs/cgroup/memory/memory.usage_in_bytes", "80\n"),
    ];
    let read = |p: &str| {
        files
            .iter()
            .find(|(f, _)| *f == p)
            .map(|(_, c)| c.to_string())
    };
    let got = cgroup_headrooms("0::/a/b\n4:memory:/x\n3:cpu:/y\ngarbage\n", read);
    // v2: b is unlimited ("max"), a has 600 left; v1: x unlimited, the root over its
    // limit (nothing left).
    assert_eq!(got, [600, 9223372036854771707, 0]);
    assert!(cgroup_headrooms("0::/\n", |_| None).is_empty());
}

#[test]
fn a_region_over_the_memory_limit_is_refused_before_anything_is_reserved() {
    let (limit, _) = memory_limit().expect("/proc/meminfo is readable");
    let e = Region::create(Kind::Test, limit as usize + 1, [0; 4]).unwrap_err();
    assert!(
        matches!(e, Error::CapacityTooLarge { requested, .. } if requested > limit),
        "{e:?}"
    );
    let e = Region::create(Kind::Queue, usize::MAX - 10, [0; 4]).unwrap_err();
    assert!(
        matches!(
            e,
            Error::CapacityTooLarge {
                bound: SizeLimit::Maximum,
                ..
            }
        ),
        "{e:?}"
    );
    assert!(e.to_string().starts_with("queue needs"), "{e}");
    // Timing of the check (it runs only for regions over UNCHECKED_LEN).
    let start = std::time::Instant::now();
    for _ in 0..100 {
        memory_limit();
    }
    eprintln!("memory_limit(): {:?} per call", start.elapsed() / 100);
}

#[test]
fn wrong_kind_is_rejected() {
    let r = Region::create(Kind::Pipe, 64, [0; 4]).unwrap();
    let fd = sys::dup_cloexec(r.fd()).unwrap();
    let e = Region::open_fd(fd, Kind::Queue).unwrap_err();
    assert!(
        matches!(
            e,
            Error::Region(RegionError::WrongKind {
                found: 1,
                expected: 3
            })
        ),
        "{e:?}"
    );
}

#[test]
fn unsealed_memfd_is_rejected() {
    let fd = sys::memfd_create(c"foreign").unwrap();
    sys::fallocate(fd.as_fd(), 4096).unwrap();
    let e = Region::open_fd(fd, Kind::Test).unwrap_err();
    assert!(matches!(e, Error::Region(RegionError::Unsealed)), "{e:?}");
}

#[test]
fn foreign_truncated_versioned_and_corrupt_images_are_rejected() {
    let h = Header::new(Kind::Test, 4096, [7, 0, 0, 0]);
    let img = test_image(4096 - HEADER_LEN, [7, 0, 0, 0]);
    assert_eq!(validate_image(&img).unwrap(), h);
    assert!(matches!(
        validate_image(&img[..2048]),
        Err(RegionError::Truncated { .. })
    ));
    assert!(matches!(
        validate_image(&img[..100]),
        Err(RegionError::Truncated { .. })
    ));
    let mut bad = img.clone();
    bad[0] ^= 1;
    assert_eq!(validate_image(&bad), Err(RegionError::Foreign));
    let mut bad = img.clone();
    bad[8] = VERSION as u8 + 1;
    assert!(matches!(
        validate_image(&bad),
        Err(RegionError::Version { found, .. }) if found == VERSION + 1
    ));
    let mut bad = img.clone();
    bad[30] ^= 0x40;
    assert_eq!(validate_image(&bad), Err(RegionError::Corrupt));
}

#[test]
fn named_region_is_private_and_unlinked_on_drop() {
    let r = Region::create_named(Kind::Test, 4096, [0; 4]).unwrap();
    let name = r.name().unwrap().to_owned();
    let path = format!("/dev/shm{}", name.to_str().unwrap());
    let meta = std::fs::metadata(&path).unwrap();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    let o = Region::open_named(&name, Kind::Test).unwrap();
    assert_eq!(o.payload_len(), 4096);
    drop(o);
    drop(r);
    assert!(std::fs::metadata(&path).is_err(), "segment left behind");
}

#[test]
fn named_create_never_reuses_an_existing_name() {
    let r = Region::create_named(Kind::Test, 64, [0; 4]).unwrap();
    let e = sys::shm_create_excl(r.name().unwrap()).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::AlreadyExists);
}

/// Runs `f` in a forked child and returns its exit code (-1 if it did not finish
/// within 20 s: then it is killed). The child only makes a few syscalls and `_exit`s.
fn in_child(f: impl FnOnce() -> i32) -> i32 {
    // SAFETY: the child runs `f` (syscalls and small allocations, which glibc keeps
    // fork-safe) and leaves with `_exit`, never returning into the test harness.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        let code = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or(101);
        // SAFETY: _exit is async-signal-safe and skips the parent's atexit handlers.
        unsafe { libc::_exit(code) };
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let mut status = 0;
    loop {
        // SAFETY: waitpid on our own child with a valid status pointer.
        let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if r == pid {
            return if libc::WIFEXITED(status) {
                libc::WEXITSTATUS(status)
            } else {
                -1
            };
        }
        if std::time::Instant::now() > deadline {
            // SAFETY: killing and reaping our own child.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                libc::waitpid(pid, &mut status, 0);
            }
            return -1;
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
}

fn is_root() -> bool {
    sys::geteuid() == 0
}

#[test]
fn a_symlink_or_file_planted_at_the_name_is_never_followed_or_reused() {
    let name = CString::new(format!(
        "/shmproc-test-{:032x}",
        sys::random_u128().unwrap()
    ))
    .unwrap();
    let path = format!("/dev/shm{}", name.to_str().unwrap());
    let target = format!("{path}-target");
    std::os::unix::fs::symlink(&target, &path).unwrap();
    let e = sys::shm_create_excl(&name).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::AlreadyExists);
    assert!(
        std::fs::metadata(&target).is_err(),
        "symlink target was created"
    );
    let e = Region::open_named(&name, Kind::Test).unwrap_err();
    assert!(matches!(e, Error::Io(_)), "{e:?}");
    std::fs::remove_file(&path).unwrap();
    // A planted regular file is not reused either.
    std::fs::write(&path, b"planted").unwrap();
    let e = sys::shm_create_excl(&name).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::AlreadyExists);
    std::fs::remove_file(&path).unwrap();
}

#[test]
fn a_named_region_readable_by_others_is_refused() {
    let r = Region::create_named(Kind::Test, 64, [0; 4]).unwrap();
    let name = r.name().unwrap().to_owned();
    let path = format!("/dev/shm{}", name.to_str().unwrap());
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let e = Region::open_named(&name, Kind::Test).unwrap_err();
    assert!(matches!(e, Error::Region(RegionError::Untrusted)), "{e:?}");
}

#[test]
fn another_user_cannot_open_a_named_region() {
    if !is_root() {
        eprintln!("skipped: needs root to switch to user nobody");
        return;
    }
    let r = Region::create_named(Kind::Test, 64, [0; 4]).unwrap();
    let name = r.name().unwrap().to_owned();
    let code = in_child(|| {
        // SAFETY: plain syscalls; the child drops to nobody (65534) for good.
        unsafe {
            if libc::setgid(65534) != 0 || libc::setuid(65534) != 0 {
                return 2;
            }
        }
        match sys::shm_open_existing(&name) {
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => 0,
            Err(_) => 3,
            Ok(_) => 4,
        }
    });
    assert_eq!(
        code, 0,
        "user nobody could open (4) or got another error (3)"
    );
}

#[test]
fn a_full_tmpfs_fails_at_creation_not_with_sigbus_later() {
    if !is_root() {
        eprintln!("skipped: needs root to mount a small tmpfs in a mount namespace");
        return;
    }
    let code = in_child(|| {
        // SAFETY: plain syscalls in the child; the mount namespace is the child's own.
        unsafe {
            if libc::unshare(libc::CLONE_NEWNS) != 0 {
                return 10;
            }
            if libc::mount(
                c"none".as_ptr(),
                c"/".as_ptr(),
                std::ptr::null(),
                libc::MS_REC | libc::MS_PRIVATE,
                std::ptr::null(),
            ) != 0
            {
                return 11;
            }
            if libc::mount(
                c"tmpfs".as_ptr(),
                c"/dev/shm".as_ptr(),
                c"tmpfs".as_ptr(),
                0,
                c"size=1m".as_ptr().cast(),
            ) != 0
            {
                return 12;
            }
        }
        // 4 MiB on a 1 MiB tmpfs: an error now, not a SIGBUS on first touch.
        match Region::create_named(Kind::Test, 4 << 20, [0; 4]) {
            Err(Error::Io(e)) if e.raw_os_error() == Some(libc::ENOSPC) => {}
            Err(_) => return 2,
            Ok(_) => return 3,
        }
        // Nothing is left behind, and a region that fits still works.
        if std::fs::read_dir("/dev/shm")
            .map(|d| d.count())
            .unwrap_or(99)
            != 0
        {
            return 4;
        }
        match Region::create_named(Kind::Test, 64 << 10, [0; 4]) {
            Ok(_) => 0,
            Err(_) => 5,
        }
    });
    assert!(
        code == 0 || code == 10 || code == 12,
        "child reported {code}"
    );
    if code != 0 {
        eprintln!("skipped: no mount namespace here (code {code})");
    }
}

#[test]
fn a_memfd_region_beyond_the_file_size_limit_fails_at_creation() {
    let code = in_child(|| {
        let lim = libc::rlimit {
            rlim_cur: 1 << 20,
            rlim_max: 1 << 20,
        };
        // SAFETY: plain syscalls in the child; SIGXFSZ ignored so the error comes back.
        unsafe {
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            if libc::setrlimit(libc::RLIMIT_FSIZE, &lim) != 0 {
                return 10;
            }
        }
        match Region::create(Kind::Test, 8 << 20, [0; 4]) {
            Err(Error::Io(_)) => 0,
            Err(_) => 2,
            Ok(_) => 3,
        }
    });
    assert_eq!(code, 0);
}
