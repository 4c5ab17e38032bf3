//! Shared regions: creation, sizing, mapping and validation of the memory that
//! processes share.
//!
//! A region is an anonymous `memfd` by default: it has no name anywhere, is inherited
//! across `fork`, reaches a spawned child as an inherited descriptor, and is freed by
//! the kernel when the last descriptor and mapping go, so nothing can leak after a
//! crash. Its size is reserved up front with `fallocate` (a full tmpfs or memory cgroup
//! is an error at creation, never a SIGBUS later) and sealed against shrinking, growing
//! and resealing, so a peer cannot truncate it under a reader. A size over half of the
//! memory left (see [`SizeLimit`]) is refused before anything is
//! reserved.
//!
//! The named form (`shm_open`) serves unrelated processes: created with
//! `O_CREAT | O_EXCL | O_NOFOLLOW`, mode 0600, under a 128-bit random name, and
//! unlinked when its creator drops it.
//!
//! Every region starts with a [`Header`] (magic, layout version, object kind, total
//! size, four object parameters, checksum). Opening validates all of it; a foreign,
//! truncated, other-version, wrong-kind or corrupt region is a [`RegionError`].
//!
//! Like memmap2's `MmapRaw`, a `Region` hands out raw pointers only, never references
//! into memory that another process can write.

use std::ffi::{CStr, CString};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::ptr::NonNull;

use crate::error::{Error, RegionError, Result, SizeLimit};
use crate::sys;

mod items;

pub(crate) use items::ItemsFile;

/// "SHMPROC\x01" read as a little-endian u64.
pub(crate) const MAGIC: u64 = u64::from_le_bytes(*b"SHMPROC\x01");
/// Layout version of this build.
pub(crate) const VERSION: u32 = 4;
/// Bytes reserved for the header; the payload starts here (keeps it cache-line aligned).
pub(crate) const HEADER_LEN: usize = 128;

/// Regions up to this size are created without the memory check below (it reads a
/// few `/proc` and `/sys` files): one of them cannot take a machine's memory, and the
/// small objects (locks, default pipes and queues) are created often.
pub(crate) const UNCHECKED_LEN: u64 = 16 << 20;

/// Fails with [`Error::CapacityTooLarge`] when a region of `total` bytes is more than
/// may be reserved now (see [`memory_limit`]); called before any page is reserved.
fn check_len(kind: Kind, total: u64) -> Result<()> {
    if total <= UNCHECKED_LEN {
        return Ok(());
    }
    match memory_limit() {
        Some((limit, bound)) if total > limit => Err(Error::CapacityTooLarge {
            what: kind.what(),
            requested: total,
            limit,
            bound,
        }),
        _ => Ok(()),
    }
}

/// The most one region may reserve now, and which limit that is: half of the memory the
/// kernel reports available (`MemAvailable`), and half of what the process's memory
/// cgroup and each enclosing one has left (v2 `memory.max − memory.current`, v1
/// `memory.limit_in_bytes − memory.usage_in_bytes`). `None` when nothing is readable.
///
/// An anonymous memfd has no size limit of its own: `fallocate` on it takes real
/// memory (about 8 GB/s) until the machine or the cgroup runs out, and its pages are
/// charged as Shmem to nobody's RSS, so the OOM killer would pick other processes.
pub(crate) fn memory_limit() -> Option<(u64, SizeLimit)> {
    let read = |path: &str| std::fs::read_to_string(path).ok();
    let mut best: Option<(u64, SizeLimit)> = None;
    let mut consider = |left: u64, bound: SizeLimit| {
        let half = left / 2;
        if best.is_none_or(|(b, _)| half < b) {
            best = Some((half, bound));
        }
    };
    if let Some(avail) = read("/proc/meminfo").and_then(|m| mem_available(&m)) {
        consider(avail, SizeLimit::MemAvailable);
    }
    if let Some(groups) = read("/proc/self/cgroup") {
        for left in cgroup_headrooms(&groups, read) {
            consider(left, SizeLimit::Cgroup);
        }
    }
    best
}

/// `MemAvailable` of a `/proc/meminfo` text, in bytes.
fn mem_available(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let mut words = line.split_whitespace().skip(1);
    let n: u64 = words.next()?.parse().ok()?;
    match words.next() {
        Some("kB") => n.checked_mul(1024),
        None => Some(n),
        Some(_) => None,
    }
}

/// What each memory cgroup enclosing this process has left, in bytes, from the text of
/// `/proc/self/cgroup` (`hierarchy:controllers:path` lines) and `read` (a file's text).
/// Unlimited cgroups and unreadable files give nothing.
fn cgroup_headrooms(groups: &str, read: impl Fn(&str) -> Option<String>) -> Vec<u64> {
    let mut out = Vec::new();
    for line in groups.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(id), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        // (mount points to look under, limit file, usage file)
        let (bases, limit_file, usage_file): (&[&str], _, _) =
            if id == "0" && controllers.is_empty() {
                (
                    &["/sys/fs/cgroup", "/sys/fs/cgroup/unified"],
                    "memory.max",
                    "memory.current",
                )
            } else if controllers.split(',').any(|c| c == "memory") {
                (
                    &["/sys/fs/cgroup/memory"],
                    "memory.limit_in_bytes",
                    "memory.usage_in_bytes",
                )
            } else {
                continue;
            };
        for base in bases {
            // The cgroup's own directory, then each parent up to the mount point (in a
            // container without a cgroup namespace the path does not exist under the
            // mount, whose root is then the container's own group).
            let mut p = path.trim_end_matches('/');
            loop {
                let dir = format!("{base}{p}");
                let num = |f: &str| read(&format!("{dir}/{f}"))?.trim().parse::<u64>().ok();
                if let (Some(limit), Some(usage)) = (num(limit_file), num(usage_file)) {
                    out.push(limit.saturating_sub(usage));
                }
                match p.rfind('/') {
                    Some(i) => p = &p[..i],
                    None => break,
                }
            }
        }
    }
    out
}

/// What a region holds; part of the header so a pipe is never opened as a lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub(crate) enum Kind {
    /// A simplex pipe: one SPSC ring.
    Pipe = 1,
    /// A duplex pipe: two SPSC rings.
    Duplex = 2,
    /// A bounded MPMC queue.
    #[allow(dead_code)] // constructed by channel::queue (in progress)
    Queue = 3,
    /// A synchronization primitive or shared value.
    #[allow(dead_code)] // constructed by sync's primitives (in progress)
    Sync = 4,
    /// Free for tests and tools.
    Test = 0xFF,
}

impl Kind {
    /// What a region of this kind is, in an error message.
    fn what(self) -> &'static str {
        match self {
            Kind::Pipe => "pipe",
            Kind::Duplex => "duplex pipe",
            Kind::Queue => "queue",
            Kind::Sync => "shared array",
            Kind::Test => "region",
        }
    }
}

/// The region header, at offset 0 of every region. Written once by the creator before
/// the region is shared; read-only afterwards.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// The magic bytes `SHMPROC\x01`.
    pub magic: u64,
    /// The layout version (1).
    pub version: u32,
    /// The object kind.
    pub kind: u32,
    /// Total bytes of the region, header included.
    pub total_len: u64,
    /// Object parameters (capacity, limits), covered by the checksum.
    pub params: [u64; 4],
    /// FNV-1a of every field above.
    pub checksum: u64,
}

const _: () = assert!(std::mem::size_of::<Header>() <= HEADER_LEN);

impl Header {
    fn new(kind: Kind, total_len: u64, params: [u64; 4]) -> Header {
        let mut h = Header {
            magic: MAGIC,
            version: VERSION,
            kind: kind as u32,
            total_len,
            params,
            checksum: 0,
        };
        h.checksum = h.compute_checksum();
        h
    }

    fn compute_checksum(&self) -> u64 {
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        let mut feed = |v: u64| {
            for b in v.to_le_bytes() {
                hash ^= u64::from(b);
                hash = hash.wrapping_mul(0x0100_0000_01b3);
            }
        };
        feed(self.magic);
        feed(u64::from(self.version) | (u64::from(self.kind) << 32));
        feed(self.total_len);
        self.params.iter().for_each(|p| feed(*p));
        hash
    }

    /// Reads a header from the first bytes of `bytes` (little-endian, as written).
    pub fn parse(bytes: &[u8]) -> Result<Header, RegionError> {
        if bytes.len() < HEADER_LEN {
            return Err(RegionError::Truncated {
                actual: bytes.len() as u64,
                expected: HEADER_LEN as u64,
            });
        }
        let u64_at = |o: usize| u64::from_ne_bytes(bytes[o..o + 8].try_into().expect("8 bytes"));
        let u32_at = |o: usize| u32::from_ne_bytes(bytes[o..o + 4].try_into().expect("4 bytes"));
        Ok(Header {
            magic: u64_at(0),
            version: u32_at(8),
            kind: u32_at(12),
            total_len: u64_at(16),
            params: [u64_at(24), u64_at(32), u64_at(40), u64_at(48)],
            checksum: u64_at(56),
        })
    }

    /// Checks the header against the region's real size and the kind expected.
    pub fn validate(&self, actual_len: u64, kind: Option<u32>) -> Result<(), RegionError> {
        if self.magic != MAGIC {
            return Err(RegionError::Foreign);
        }
        if self.version != VERSION {
            return Err(RegionError::Version {
                found: self.version,
                expected: VERSION,
            });
        }
        if self.checksum != self.compute_checksum() {
            return Err(RegionError::Corrupt);
        }
        if self.total_len < HEADER_LEN as u64 || self.total_len > actual_len {
            return Err(RegionError::Truncated {
                actual: actual_len,
                expected: self.total_len,
            });
        }
        if let Some(k) = kind {
            if self.kind != k {
                return Err(RegionError::WrongKind {
                    found: self.kind,
                    expected: k,
                });
            }
        }
        Ok(())
    }
}

/// A valid image of a region of kind `Test` with `payload_len` zero bytes after the
/// header: the starting point of the property tests that corrupt it.
#[doc(hidden)]
pub fn test_image(payload_len: usize, params: [u64; 4]) -> Vec<u8> {
    let total = HEADER_LEN + payload_len;
    let h = Header::new(Kind::Test, total as u64, params);
    let mut v = vec![0u8; total];
    v[0..8].copy_from_slice(&h.magic.to_ne_bytes());
    v[8..12].copy_from_slice(&h.version.to_ne_bytes());
    v[12..16].copy_from_slice(&h.kind.to_ne_bytes());
    v[16..24].copy_from_slice(&h.total_len.to_ne_bytes());
    for (i, p) in h.params.iter().enumerate() {
        v[24 + 8 * i..32 + 8 * i].copy_from_slice(&p.to_ne_bytes());
    }
    v[56..64].copy_from_slice(&h.checksum.to_ne_bytes());
    v
}

/// Parses and validates a region image held in local memory (for tools and fuzzing).
pub fn validate_image(bytes: &[u8]) -> Result<Header, RegionError> {
    let h = Header::parse(bytes)?;
    h.validate(bytes.len() as u64, None)?;
    Ok(h)
}

/// A mapped shared region.
pub(crate) struct Region {
    map: memmap2::MmapRaw,
    fd: OwnedFd,
    header: Header,
    name: Option<CString>,
}

impl std::fmt::Debug for Region {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Region")
            .field("len", &self.map.len())
            .field("kind", &self.header.kind)
            .finish()
    }
}

impl Region {
    /// Creates an anonymous (memfd) region with `payload_len` bytes after the header.
    /// The payload is zero-filled.
    pub(crate) fn create(kind: Kind, payload_len: usize, params: [u64; 4]) -> Result<Region> {
        let fd = sys::memfd_create(c"shmproc")?;
        Self::init(fd, kind, payload_len, params, None, true)
    }

    /// Creates a named (`shm_open`) region under a fresh unguessable name; it is
    /// unlinked when this `Region` is dropped.
    #[allow(dead_code)]
    pub(crate) fn create_named(kind: Kind, payload_len: usize, params: [u64; 4]) -> Result<Region> {
        let name = CString::new(format!("/shmproc-{:032x}", sys::random_u128()?))
            .map_err(|_| Error::InvalidState("name contains NUL"))?;
        let fd = sys::shm_create_excl(&name)?;
        match Self::init(fd, kind, payload_len, params, Some(name.clone()), false) {
            Ok(r) => Ok(r),
            Err(e) => {
                let _ = sys::shm_unlink(&name);
                Err(e)
            }
        }
    }

    fn init(
        fd: OwnedFd,
        kind: Kind,
        payload_len: usize,
        params: [u64; 4],
        name: Option<CString>,
        seal: bool,
    ) -> Result<Region> {
        let too_large = Error::CapacityTooLarge {
            what: kind.what(),
            requested: (payload_len as u64).saturating_add(HEADER_LEN as u64),
            limit: isize::MAX as u64,
            bound: SizeLimit::Maximum,
        };
        let total = HEADER_LEN
            .checked_add(payload_len)
            .filter(|&t| t <= isize::MAX as usize)
            .ok_or(too_large)?;
        // Before any page is reserved: a size that cannot fit is an error now.
        check_len(kind, total as u64)?;
        sys::fallocate(fd.as_fd(), total as u64)?;
        if seal {
            sys::seal_size(fd.as_fd())?;
        }
        let map = memmap2::MmapOptions::new()
            .len(total)
            .map_raw(fd.as_raw_fd())?;
        let header = Header::new(kind, total as u64, params);
        // SAFETY: the mapping is `total >= HEADER_LEN` bytes, page aligned, and private
        // to this process until the region is handed out, so nobody races this write.
        unsafe { map.as_mut_ptr().cast::<Header>().write(header) };
        Ok(Region {
            map,
            fd,
            header,
            name,
        })
    }

    /// Maps and validates a region received as a descriptor (memfd or shm).
    pub(crate) fn open_fd(fd: OwnedFd, kind: Kind) -> Result<Region> {
        let (size, _uid, _mode) = sys::fstat(fd.as_fd())?;
        if let Some(seals) = sys::get_seals(fd.as_fd()) {
            // A memfd must be sealed against shrinking, or a peer could truncate it under us.
            if seals & libc::F_SEAL_SHRINK == 0 {
                return Err(RegionError::Unsealed.into());
            }
        }
        Self::map_validated(fd, size, kind, None)
    }

    /// Opens a named region created by [`Region::create_named`] in another process.
    #[allow(dead_code)]
    pub(crate) fn open_named(name: &CStr, kind: Kind) -> Result<Region> {
        let fd = sys::shm_open_existing(name)?;
        let (size, uid, mode) = sys::fstat(fd.as_fd())?;
        if uid != sys::geteuid() || mode & 0o077 != 0 {
            return Err(RegionError::Untrusted.into());
        }
        Self::map_validated(fd, size, kind, None)
    }

    fn map_validated(fd: OwnedFd, size: u64, kind: Kind, name: Option<CString>) -> Result<Region> {
        if size < HEADER_LEN as u64 {
            return Err(RegionError::Truncated {
                actual: size,
                expected: HEADER_LEN as u64,
            }
            .into());
        }
        let len = usize::try_from(size).map_err(|_| RegionError::Corrupt)?;
        let map = memmap2::MmapOptions::new()
            .len(len)
            .map_raw(fd.as_raw_fd())?;
        let mut raw = [0u8; HEADER_LEN];
        // SAFETY: the mapping has at least HEADER_LEN bytes (checked above, and the memfd
        // is sealed against shrinking); we copy them out without forming a reference, so
        // a concurrent writer can only make us read garbage, which validation rejects.
        unsafe { std::ptr::copy_nonoverlapping(map.as_ptr(), raw.as_mut_ptr(), HEADER_LEN) };
        let header = Header::parse(&raw)?;
        header.validate(size, Some(kind as u32))?;
        Ok(Region {
            map,
            fd,
            header,
            name,
        })
    }

    /// Start of the payload (right after the header), 128-byte aligned.
    pub(crate) fn payload(&self) -> NonNull<u8> {
        // SAFETY: HEADER_LEN <= total length (validated), so the offset stays in the mapping.
        let p = unsafe { self.map.as_mut_ptr().add(HEADER_LEN) };
        NonNull::new(p).expect("mmap never returns null")
    }

    /// Payload length in bytes, as the validated header says (never more than is mapped).
    pub(crate) fn payload_len(&self) -> usize {
        self.header.total_len as usize - HEADER_LEN
    }

    /// The object parameters stored in the header.
    pub(crate) fn params(&self) -> [u64; 4] {
        self.header.params
    }

    /// The region's descriptor, to pass to a child.
    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// The `shm_open` name of a named region.
    #[allow(dead_code)]
    pub(crate) fn name(&self) -> Option<&CStr> {
        self.name.as_deref()
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        if let Some(name) = &self.name {
            let _ = sys::shm_unlink(name);
        }
    }
}

#[cfg(test)]
mod tests {
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
}
