//! The header at offset 0 of every region: magic, layout version, object kind, total
//! size, four object parameters and an FNV-1a checksum over them, and its validation.

use crate::error::RegionError;

/// "SHMPROC\x01" read as a little-endian u64.
pub(crate) const MAGIC: u64 = u64::from_le_bytes(*b"SHMPROC\x01");
/// Layout version of this build. 5: the ring's writer zeroes the word after each record
/// it publishes and the reader clears nothing (`ring::spsc`), so a version-4 peer would
/// misread free space. 6: the ring's writer keeps a `limit` for its tiny fast path and
/// the position of its next look at the reader (`look_at`) on its line, which a
/// version-5 writer would leave stale.
pub(crate) const VERSION: u32 = 6;
/// Bytes reserved for the header; the payload starts here (keeps it cache-line aligned).
pub(crate) const HEADER_LEN: usize = 128;

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
    pub(super) fn what(self) -> &'static str {
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
    pub(super) fn new(kind: Kind, total_len: u64, params: [u64; 4]) -> Header {
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
