//! How large a region may be now: half of the memory the kernel and the enclosing
//! memory cgroups have left, checked before any page is reserved.

use crate::error::{Error, Result, SizeLimit};

use super::Kind;

/// Regions up to this size are created without the memory check below (it reads a
/// few `/proc` and `/sys` files): one of them cannot take a machine's memory, and the
/// small objects (locks, default pipes and queues) are created often.
pub(crate) const UNCHECKED_LEN: u64 = 16 << 20;

/// Fails with [`Error::CapacityTooLarge`] when a region of `total` bytes is more than
/// may be reserved now (see [`memory_limit`]); called before any page is reserved.
pub(super) fn check_len(kind: Kind, total: u64) -> Result<()> {
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
pub(super) fn mem_available(meminfo: &str) -> Option<u64> {
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
pub(super) fn cgroup_headrooms(groups: &str, read: impl Fn(&str) -> Option<String>) -> Vec<u64> {
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
