//! The call entry on the wire: how a task message names its target, so that a forked or
//! a spawned worker finds it.
//!
//! ```text
//! [trampoline offset: i64][target offset: i64][type fingerprint: u64][checksum: u64]
//! ```
//!
//! all little-endian: the [`CallEntry`]'s offsets, and an FNV-1a checksum of them keyed by
//! this executable's identity (device, inode, size, mtime), so that corrupt bytes or
//! bytes from another executable are refused. The checksum is no defence against forgery;
//! a worker trusts a task for the channel it came on, private to it and its pool (the
//! contract of [`CallEntry::from_offsets`]).

use std::io;

use crate::sys::exec::image_id;
use crate::sys::reloc::{fnv1a, CallEntry, Offsets};

#[cfg(all(test, not(loom)))]
mod tests;

/// Bytes of [`to_wire`].
pub(super) const WIRE_LEN: usize = 32;

fn checksum(o: &Offsets) -> io::Result<u64> {
    let id = image_id()?;
    let mut b = Vec::with_capacity(64);
    for v in [id.dev, id.ino, id.size, o.fingerprint] {
        b.extend_from_slice(&v.to_le_bytes());
    }
    for v in [id.mtime, id.mtime_nsec, o.trampoline, o.target] {
        b.extend_from_slice(&v.to_le_bytes());
    }
    Ok(fnv1a(&b))
}

/// The entry as bytes: the two offsets, the type fingerprint and a checksum keyed by
/// this executable's identity.
pub(super) fn to_wire(entry: CallEntry) -> io::Result<[u8; WIRE_LEN]> {
    let o = entry.offsets();
    let mut w = [0u8; WIRE_LEN];
    w[..8].copy_from_slice(&o.trampoline.to_le_bytes());
    w[8..16].copy_from_slice(&o.target.to_le_bytes());
    w[16..24].copy_from_slice(&o.fingerprint.to_le_bytes());
    w[24..].copy_from_slice(&checksum(&o)?.to_le_bytes());
    Ok(w)
}

/// Reads an entry written by [`to_wire`] in a process running this same executable;
/// `None` for anything else (short, corrupt, another executable).
pub(super) fn from_wire(w: &[u8]) -> Option<CallEntry> {
    let w = w.get(..WIRE_LEN)?;
    let word = |i: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&w[8 * i..8 * i + 8]);
        u64::from_le_bytes(b)
    };
    let o = Offsets {
        trampoline: word(0) as i64,
        target: word(1) as i64,
        fingerprint: word(2),
    };
    // Bytes that passed the checksum were written by `to_wire` in a process running this
    // executable: the contract of `from_offsets`, for a task on the pool's own channel.
    (checksum(&o).ok()? == word(3)).then(|| CallEntry::from_offsets(o))
}
