//! [`ItemsFile`]: where a queue keeps the items too large for a slot.
//!
//! An anonymous memfd shared by every handle of the queue like its region (inherited
//! by a forked child, passed by descriptor to a spawned one), never mapped and never in
//! `/dev/shm`: it goes away with the last process that holds it, however it ends. Slot
//! `i` owns the 4 GiB window at offset `i × 2^32` of this sparse file. Items are written
//! with `pwrite` and read with `pread` (so a full memory cgroup is an error, never a
//! SIGBUS), and a read item's pages are freed with `FALLOC_FL_PUNCH_HOLE`.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::FileExt;

use crate::sys;

/// Each slot's window: 4 GiB, the largest item.
const WINDOW_SHIFT: u32 = 32;
/// Slots whose window fits in a file (offsets below 2^62).
const MAX_SLOT: u64 = 1 << 30;
/// Freeing rounds an item's length up to this (whole pages; a partial page is only
/// zeroed).
const FREE_GRANULE: u64 = 1 << 16;

/// A sparse file of one 4 GiB window per queue slot (see the module docs).
#[derive(Debug)]
pub(crate) struct ItemsFile {
    file: File,
}

impl ItemsFile {
    /// A new, empty items file.
    pub(crate) fn create() -> io::Result<ItemsFile> {
        Ok(ItemsFile::from_fd(sys::memfd_create(
            c"shmproc-queue-items",
        )?))
    }

    /// The items file another process handed over.
    pub(crate) fn from_fd(fd: OwnedFd) -> ItemsFile {
        ItemsFile {
            file: File::from(fd),
        }
    }

    /// The descriptor, to hand to another process.
    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }

    /// The offset of slot `slot`'s window.
    fn window(slot: u64) -> io::Result<u64> {
        if slot >= MAX_SLOT {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "queue too large for items over 104 bytes (2^30 slots at most)",
            ));
        }
        Ok(slot << WINDOW_SHIFT)
    }

    /// Writes an item into slot `slot`'s window (the caller holds the slot).
    pub(crate) fn write(&self, slot: u64, bytes: &[u8]) -> io::Result<()> {
        self.file.write_all_at(bytes, Self::window(slot)?)
    }

    /// Reads the `len`-byte item in slot `slot`'s window (the caller holds the slot).
    pub(crate) fn read(&self, slot: u64, len: u64) -> io::Result<Vec<u8>> {
        let off = Self::window(slot)?;
        let n = usize::try_from(len).map_err(|_| io::Error::from(io::ErrorKind::InvalidData))?;
        let mut buf = vec![0u8; n];
        self.file.read_exact_at(&mut buf, off)?;
        Ok(buf)
    }

    /// Frees the pages of a `len`-byte item in slot `slot`'s window: whole pages, never
    /// past the window. Best effort: a failure leaves the pages to the next item.
    pub(crate) fn free(&self, slot: u64, len: u64) {
        if let Ok(off) = Self::window(slot) {
            let window = 1 << WINDOW_SHIFT;
            // A length past the window (a corrupt descriptor) frees the whole window.
            let span = len
                .checked_next_multiple_of(FREE_GRANULE)
                .map_or(window, |l| l.min(window));
            let _ = sys::punch_hole(self.fd(), off, span);
        }
    }

    /// Bytes of memory the file holds.
    #[cfg(test)]
    pub(crate) fn allocated(&self) -> u64 {
        use std::os::unix::fs::MetadataExt;
        self.file.metadata().unwrap().blocks() * 512
    }
}
