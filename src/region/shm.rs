//! [`SharedMemory`]: a named block of shared memory, compatible with Python's
//! `multiprocessing.shared_memory.SharedMemory`.

use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

use bytemuck::Pod;

use crate::error::{Error, NameProblem, RegionError, Result};
use crate::sys::{self, socket};

/// The longest [`SharedMemory`] name: a file name in `/dev/shm` (`NAME_MAX`).
pub const MAX_SHM_NAME_LEN: usize = 255;

/// The sticky bit: marks a block as created by shmproc (see the module docs).
const MARK: u32 = 0o1000;

/// Checks a name: not empty, no `/`, no NUL, at most `max` bytes.
pub(crate) fn check_name(name: &str, max: usize) -> Result<()> {
    let problem = if name.is_empty() {
        NameProblem::Empty
    } else if name.contains('/') {
        NameProblem::Slash
    } else if name.contains('\0') {
        NameProblem::Nul
    } else if name.len() > max {
        NameProblem::TooLong
    } else {
        return Ok(());
    };
    Err(Error::InvalidName {
        name: name.to_string(),
        problem,
    })
}

/// A named block of shared memory (Python's `multiprocessing.shared_memory.SharedMemory`).
///
/// ```
/// use shmproc::SharedMemory;
///
/// let name = format!("doc-shm-{}", std::process::id());
/// let block = SharedMemory::create(&name, 4096)?;
/// block.write_at(0, b"hello")?;
/// block.write::<u64>(8, &42)?;
///
/// // Another process (or Python's SharedMemory(name)) attaches by name.
/// let other = SharedMemory::open(&name)?;
/// let mut buf = [0u8; 5];
/// other.read_at(0, &mut buf)?;
/// assert_eq!(&buf, b"hello");
/// assert_eq!(other.read::<u64>(8)?, 42);
/// other.atomic_u64(16)?.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
/// assert_eq!(block.read::<u64>(16)?, 1);
/// drop(other);
/// drop(block); // the creator's drop unlinks /dev/shm/<name>
/// assert!(matches!(SharedMemory::open(&name), Err(shmproc::Error::NameNotFound(_))));
/// # Ok::<(), shmproc::Error>(())
/// ```
/// # Layout and names
///
/// The block is `/dev/shm/<name>` (`shm_open("/<name>")`), exactly `size` bytes long,
/// the user's bytes from offset 0: no header. So Python attaches with
/// `SharedMemory(name)` to a block Rust created, and Rust [`open`](SharedMemory::open)s
/// one Python created. Names are the user's choice (as in Python), so guessable: the
/// block is created with `O_CREAT | O_EXCL | O_NOFOLLOW`, mode 0600, and `open` refuses
/// a block of another owner or with wider permissions, and never follows a symlink.
///
/// # Nothing left behind
///
/// The block is unlinked when its creating handle drops (or by an explicit
/// [`unlink`](SharedMemory::unlink), Python's). A creator killed with SIGKILL cannot
/// unlink, so its block stays; the next [`create`](SharedMemory::create) of that name
/// reclaims it. To tell a dead creator from a live one, the creator holds an advisory
/// `flock` on the block for as long as its handle lives (the kernel drops it with the
/// process, however it ends), and marks the block as shmproc's with the sticky bit
/// (mode `01600`: permission bits 0600, the sticky bit ignored on a file). `create`
/// finding the name taken opens it: marked and unlocked means its creator is gone, so
/// it unlinks that block (after checking the name still refers to it) and creates
/// afresh; locked, or unmarked (made by Python or another tool, which hold no lock), is
/// [`Error::NameInUse`]. Processes still mapping a reclaimed block keep their mapping;
/// only the name moves on. Unlike Python's resource tracker (CPython gh-82300), nothing
/// ever unlinks a block whose creator is alive.
///
/// # Access
///
/// Other processes write the block at any time, so it is never lent as `&[u8]` or
/// `&mut [u8]` (that would promise Rust that nobody else writes it). The safe accessors
/// copy, or hand out atomics:
///
/// * [`read_at`](SharedMemory::read_at) / [`write_at`](SharedMemory::write_at): bytes
///   copied out of / into the block at an offset, bounds-checked.
/// * [`read`](SharedMemory::read) / [`write`](SharedMemory::write): one `T: Pod` (any
///   bit pattern valid, no padding: [`bytemuck::Pod`]) copied at any offset, aligned or
///   not.
/// * [`atomic_u32`](SharedMemory::atomic_u32) / [`atomic_u64`](SharedMemory::atomic_u64):
///   a reference to an atomic at an aligned offset, for counters and flags shared with
///   other processes (Python sees the same bytes; its accesses are not atomic).
///
/// A copy racing another process's write may see a mix of old and new bytes (a torn
/// value, never undefined behaviour in the copy itself): coordinate with the atomics or
/// a [`Lock`](crate::Lock). [`as_ptr`](SharedMemory::as_ptr) is there for the rest, with
/// the caller's own `unsafe`. A process that shrinks the block (`ftruncate`) under the
/// others makes their next access past the new end fault (SIGBUS), as in Python: named
/// files cannot be sealed like the crate's own memfd regions.
///
pub struct SharedMemory {
    map: memmap2::MmapRaw,
    /// Open for the handle's life: the creator's `flock` lives on it.
    fd: OwnedFd,
    name: String,
    /// The `shm_open` name: `/` and the name.
    path: CString,
    /// The creating handle: unlinks on drop.
    creator: bool,
    unlinked: AtomicBool,
}

impl std::fmt::Debug for SharedMemory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedMemory")
            .field("name", &self.name)
            .field("len", &self.map.len())
            .field("creator", &self.creator)
            .finish()
    }
}

fn shm_path(name: &str) -> Result<CString> {
    check_name(name, MAX_SHM_NAME_LEN)?;
    CString::new(format!("/{name}")).map_err(|_| Error::InvalidState("name contains NUL"))
}

/// Whether `/dev/shm/<name>` is (still) the file open as `fd`.
fn names_this_file(name: &str, fd: &OwnedFd) -> bool {
    use std::os::unix::fs::MetadataExt;
    let Ok(id) = sys::file_id(fd.as_fd()) else {
        return false;
    };
    std::fs::symlink_metadata(format!("/dev/shm/{name}")).is_ok_and(|m| (m.dev(), m.ino()) == id)
}

impl SharedMemory {
    /// Creates the block `/dev/shm/<name>`, `size` bytes long (zeroed; reserved now, so
    /// a full `/dev/shm` is an error here, never a SIGBUS later): Python's
    /// `SharedMemory(name, create=True, size=size)`. A block of that name left by a
    /// shmproc creator that died is reclaimed (see [`SharedMemory`]).
    ///
    /// # Errors
    /// [`Error::InvalidName`] for an empty name, one with `/` or NUL, or over 255 bytes;
    /// `InvalidState` for a size of 0; [`Error::NameInUse`] when a live creator has the
    /// name, or a block of it was not made by shmproc (Python's, for one); an OS error
    /// (`ENOSPC` when `/dev/shm` is full).
    pub fn create(name: &str, size: usize) -> Result<SharedMemory> {
        let path = shm_path(name)?;
        if size == 0 {
            return Err(Error::InvalidState(
                "a shared memory block needs a size above 0",
            ));
        }
        let len = u64::try_from(size).map_err(|_| Error::InvalidState("size too large"))?;
        for _ in 0..3 {
            match sys::shm_create_excl(&path) {
                Ok(fd) => return Self::init_created(name, path, fd, len),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    Self::reclaim(name, &path)?;
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(Error::NameInUse(name.to_string()))
    }

    fn init_created(name: &str, path: CString, fd: OwnedFd, len: u64) -> Result<SharedMemory> {
        let set_up = || -> Result<memmap2::MmapRaw> {
            // Lock first, then mark: a marked block is always one whose creator locked it.
            if !socket::try_lock_exclusive(fd.as_fd())? {
                return Err(Error::NameInUse(name.to_string()));
            }
            socket::fchmod(fd.as_fd(), 0o600 | MARK)?;
            sys::fallocate(fd.as_fd(), len)?;
            Ok(memmap2::MmapOptions::new()
                .len(len as usize)
                .map_raw(fd.as_raw_fd())?)
        };
        match set_up() {
            Ok(map) => Ok(SharedMemory {
                map,
                fd,
                name: name.to_string(),
                path,
                creator: true,
                unlinked: AtomicBool::new(false),
            }),
            Err(e) => {
                let _ = sys::shm_unlink(&path);
                Err(e)
            }
        }
    }

    /// The name is taken: unlinks the block when its creator is gone (marked, unlocked,
    /// still under the name); `NameInUse` when it lives or the block is not shmproc's.
    fn reclaim(name: &str, path: &CString) -> Result<()> {
        let in_use = || Error::NameInUse(name.to_string());
        let fd = match sys::shm_open_existing(path) {
            Ok(fd) => fd,
            // Gone meanwhile: create again.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            // A symlink (ELOOP) or a file we may not open: not ours.
            Err(_) => return Err(in_use()),
        };
        let (_, uid, mode) = sys::fstat(fd.as_fd())?;
        if uid != sys::geteuid() || mode & MARK == 0 || mode & 0o077 != 0 {
            return Err(in_use());
        }
        if !socket::try_lock_exclusive(fd.as_fd())? {
            return Err(in_use());
        }
        // Its creator is gone. Unlink it only if the name still refers to it (another
        // process may have reclaimed it and created a new block meanwhile).
        if names_this_file(name, &fd) {
            match sys::shm_unlink(path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// Attaches to the block `/dev/shm/<name>`, created by shmproc or by Python's
    /// `SharedMemory(name, create=True, ...)`; its length is the block's size.
    ///
    /// # Errors
    /// [`Error::InvalidName`] as for `create`; [`Error::NameNotFound`] when no block has
    /// the name; [`RegionError::Untrusted`] for a block of another user or with
    /// permissions wider than 0600, or a symlink; `InvalidState` for an empty block.
    pub fn open(name: &str) -> Result<SharedMemory> {
        let path = shm_path(name)?;
        let fd = match sys::shm_open_existing(&path) {
            Ok(fd) => fd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::NameNotFound(name.to_string()))
            }
            Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
                return Err(RegionError::Untrusted.into())
            }
            Err(e) => return Err(e.into()),
        };
        let (size, uid, mode) = sys::fstat(fd.as_fd())?;
        if uid != sys::geteuid() || mode & 0o077 != 0 {
            return Err(RegionError::Untrusted.into());
        }
        let len = usize::try_from(size).map_err(|_| RegionError::Corrupt)?;
        if len == 0 {
            return Err(Error::InvalidState("the shared memory block is empty"));
        }
        let map = memmap2::MmapOptions::new()
            .len(len)
            .map_raw(fd.as_raw_fd())?;
        Ok(SharedMemory {
            map,
            fd,
            name: name.to_string(),
            path,
            creator: false,
            unlinked: AtomicBool::new(false),
        })
    }

    /// The name (without the leading `/`, as Python's `.name`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The size in bytes.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether the size is 0 (never: an empty block cannot be created or opened).
    pub fn is_empty(&self) -> bool {
        self.map.len() == 0
    }

    /// The start of the block in this process. Other processes write it at any time:
    /// reading or writing through it is the caller's `unsafe`, with no reference to the
    /// memory (see [`SharedMemory`]).
    pub fn as_ptr(&self) -> *mut u8 {
        self.map.as_mut_ptr()
    }

    /// Whether this handle created the block (and unlinks it on drop).
    pub fn is_creator(&self) -> bool {
        self.creator
    }

    /// Removes the name (Python's `unlink()`): the block lives on for every process that
    /// has it mapped, and goes with the last of them; no new process can attach. A
    /// creator's drop does not unlink it again. Only the block this handle maps is
    /// unlinked: a name that already refers to another block is left alone.
    ///
    /// # Errors
    /// An OS error from `shm_unlink`.
    pub fn unlink(&self) -> Result<()> {
        if self.unlinked.swap(true, Ordering::AcqRel) || !names_this_file(&self.name, &self.fd) {
            return Ok(());
        }
        match sys::shm_unlink(&self.path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    fn range(&self, offset: usize, len: usize) -> Result<*mut u8> {
        match offset.checked_add(len) {
            Some(end) if end <= self.map.len() => {
                // SAFETY: offset <= end <= the mapping's length: in bounds (or one past).
                Ok(unsafe { self.map.as_mut_ptr().add(offset) })
            }
            _ => Err(Error::OutOfBounds {
                offset: offset as u64,
                len: len as u64,
                size: self.map.len() as u64,
            }),
        }
    }

    /// Copies `buf.len()` bytes at `offset` out of the block.
    ///
    /// # Errors
    /// [`Error::OutOfBounds`] when the range does not fit in the block.
    pub fn read_at(&self, offset: usize, buf: &mut [u8]) -> Result<()> {
        let src = self.range(offset, buf.len())?;
        // SAFETY: `src..src + buf.len()` is inside the mapping (checked by `range`),
        // which lives as long as `self`; `buf` is our own memory, not in the mapping.
        // No reference to the shared bytes is formed: a concurrent writer can only make
        // the copy see a mix of old and new bytes.
        unsafe { std::ptr::copy_nonoverlapping(src, buf.as_mut_ptr(), buf.len()) };
        Ok(())
    }

    /// Copies `data` into the block at `offset`.
    ///
    /// # Errors
    /// [`Error::OutOfBounds`] when the range does not fit in the block.
    pub fn write_at(&self, offset: usize, data: &[u8]) -> Result<()> {
        let dst = self.range(offset, data.len())?;
        // SAFETY: as in `read_at`, the other way round: `dst` is inside the mapping.
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), dst, data.len()) };
        Ok(())
    }

    /// Copies a `T` out of the block at `offset` (any alignment).
    ///
    /// # Errors
    /// [`Error::OutOfBounds`] when it does not fit in the block.
    pub fn read<T: Pod>(&self, offset: usize) -> Result<T> {
        let mut v = T::zeroed();
        self.read_at(offset, bytemuck::bytes_of_mut(&mut v))?;
        Ok(v)
    }

    /// Copies `value` into the block at `offset` (any alignment).
    ///
    /// # Errors
    /// [`Error::OutOfBounds`] when it does not fit in the block.
    pub fn write<T: Pod>(&self, offset: usize, value: &T) -> Result<()> {
        self.write_at(offset, bytemuck::bytes_of(value))
    }

    fn atomic<A>(&self, offset: usize) -> Result<&A> {
        let p = self.range(offset, std::mem::size_of::<A>())?;
        if p as usize % std::mem::align_of::<A>() != 0 {
            return Err(Error::InvalidState(
                "offset not aligned for an atomic of this size",
            ));
        }
        // SAFETY: the bytes are inside the mapping, which lives as long as `&self`, and
        // aligned for `A`; `A` is an atomic integer (interior mutability, any bit
        // pattern valid), so a shared reference stays sound while other processes
        // change the bytes.
        Ok(unsafe { &*p.cast::<A>() })
    }

    /// The 4 bytes at `offset` (a multiple of 4) as an atomic, shared with every process
    /// that maps the block.
    ///
    /// # Errors
    /// [`Error::OutOfBounds`]; `InvalidState` for an unaligned offset.
    pub fn atomic_u32(&self, offset: usize) -> Result<&AtomicU32> {
        self.atomic(offset)
    }

    /// The 8 bytes at `offset` (a multiple of 8) as an atomic, shared with every process
    /// that maps the block.
    ///
    /// # Errors
    /// [`Error::OutOfBounds`]; `InvalidState` for an unaligned offset.
    pub fn atomic_u64(&self, offset: usize) -> Result<&AtomicU64> {
        self.atomic(offset)
    }
}

impl Drop for SharedMemory {
    fn drop(&mut self) {
        if self.creator {
            let _ = self.unlink();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unique(tag: &str) -> String {
        format!(
            "shmproc-test-{tag}-{}-{:x}",
            std::process::id(),
            sys::random_u128().unwrap() as u32
        )
    }

    #[test]
    fn the_block_is_exactly_size_long_mode_0600_and_unlinked_on_drop() {
        use std::os::unix::fs::PermissionsExt;
        let name = unique("layout");
        let b = SharedMemory::create(&name, 1000).unwrap();
        let meta = std::fs::metadata(format!("/dev/shm/{name}")).unwrap();
        assert_eq!(meta.len(), 1000);
        assert_eq!(meta.permissions().mode() & 0o7777, 0o1600);
        assert!(matches!(
            SharedMemory::create(&name, 10),
            Err(Error::NameInUse(_))
        ));
        b.write_at(995, b"abcde").unwrap();
        assert!(matches!(
            b.write_at(996, b"abcde"),
            Err(Error::OutOfBounds {
                offset: 996,
                len: 5,
                size: 1000
            })
        ));
        assert!(b.read::<u64>(usize::MAX - 2).is_err());
        assert!(b.atomic_u64(4).is_err());
        let o = SharedMemory::open(&name).unwrap();
        assert_eq!(o.len(), 1000);
        assert!(!o.is_creator());
        let mut buf = [0u8; 5];
        o.read_at(995, &mut buf).unwrap();
        assert_eq!(&buf, b"abcde");
        drop(o); // an attacher's drop does not unlink
        assert!(std::fs::metadata(format!("/dev/shm/{name}")).is_ok());
        drop(b);
        assert!(std::fs::metadata(format!("/dev/shm/{name}")).is_err());
        assert!(matches!(
            SharedMemory::open(&name),
            Err(Error::NameNotFound(_))
        ));
    }

    #[test]
    fn a_foreign_block_is_never_reclaimed_and_a_dead_creators_is() {
        let name = unique("foreign");
        let path = format!("/dev/shm/{name}");
        // A block someone else made (no mark, no lock), as Python's would be.
        std::fs::write(&path, [0u8; 64]).unwrap();
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .unwrap();
        assert!(matches!(
            SharedMemory::create(&name, 64),
            Err(Error::NameInUse(_))
        ));
        assert_eq!(SharedMemory::open(&name).unwrap().len(), 64);
        // Marked but unlocked: a shmproc creator that died.
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o1600))
            .unwrap();
        let b = SharedMemory::create(&name, 128).unwrap();
        assert_eq!(b.len(), 128);
        drop(b);
        assert!(std::fs::metadata(&path).is_err());
    }

    #[test]
    fn bad_names_and_sizes_are_refused() {
        assert!(matches!(
            SharedMemory::create("a/b", 1),
            Err(Error::InvalidName { .. })
        ));
        assert!(matches!(
            SharedMemory::create(&"n".repeat(256), 1),
            Err(Error::InvalidName { .. })
        ));
        assert!(matches!(
            SharedMemory::create(&unique("zero"), 0),
            Err(Error::InvalidState(_))
        ));
        let name = unique("link");
        std::os::unix::fs::symlink("/etc/passwd", format!("/dev/shm/{name}")).unwrap();
        let e = SharedMemory::open(&name).unwrap_err();
        assert!(matches!(e, Error::Region(RegionError::Untrusted)), "{e:?}");
        assert!(matches!(
            SharedMemory::create(&name, 8),
            Err(Error::NameInUse(_))
        ));
        std::fs::remove_file(format!("/dev/shm/{name}")).unwrap();
    }
}
