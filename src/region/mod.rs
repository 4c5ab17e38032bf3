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

mod header;
mod items;
mod limits;
// `SharedMemory` hands out std's atomics over a user's bytes (`atomic_u32`, `atomic_u64`,
// its public API, the same layout Python sees) and keeps a process-local flag: no crate
// protocol that loom models lives there.
#[allow(clippy::disallowed_types)]
mod shm;
#[cfg(test)]
mod tests;

pub(crate) use shm::check_name;
pub use shm::{SharedMemory, MAX_SHM_NAME_LEN};

pub use header::{test_image, Header};
pub(crate) use header::{validate_image, Kind, HEADER_LEN};
pub(crate) use items::ItemsFile;
use limits::check_len;

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
