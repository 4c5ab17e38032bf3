//! Rings in memory: in a region (the channels), on the heap (tests, fuzzing), and the
//! decoder of a ring image in any state.

use std::ptr::NonNull;

use super::record::RecKind;
use super::Spsc;
#[cfg(test)]
use super::CONTROL_SIZE;
use crate::error::ProtocolError;

/// The ring at byte `offset` of a region's payload. The region must outlive the ring
/// (callers keep both in one struct).
pub(crate) fn ring_in_region(
    region: &crate::region::Region,
    offset: usize,
    cap: u64,
) -> crate::Result<Spsc> {
    let end = offset.checked_add(Spsc::memory_size(cap));
    if !Spsc::valid_capacity(cap)
        || offset % 128 != 0
        || end.is_none_or(|e| e > region.payload_len())
    {
        return Err(crate::error::RegionError::Corrupt.into());
    }
    // SAFETY: the payload is 128-aligned and `offset` is a multiple of 128; the ring's
    // `memory_size(cap)` bytes lie inside the validated payload (checked above), which
    // stays mapped while the region lives; zeroed or previously initialized memory is
    // a valid ring of this capacity (the capacity comes from the checksummed header).
    Ok(unsafe { Spsc::from_raw(region.payload().add(offset), cap) })
}

/// A ring in memory of its own on the heap (the fuzz target, the property tests, unit
/// tests), starting from `image`: a control block and data bytes in any state,
/// zero-padded to the ring's size.
pub(crate) struct HeapRing {
    // Declared first, so dropped before the memory it points into.
    ring: Spsc,
    /// Owns the memory `ring` points into (read directly only by tests).
    #[cfg_attr(not(test), allow(dead_code))]
    mem: Vec<Line>,
}

/// 128 bytes, 128-aligned: the unit of a [`HeapRing`]'s memory.
#[repr(C, align(128))]
struct Line([u8; 128]);

impl HeapRing {
    /// A ring of `cap` data bytes holding `image`; `None` if `cap` is not a valid
    /// capacity.
    pub(crate) fn new(cap: u64, image: &[u8]) -> Option<HeapRing> {
        if !Spsc::valid_capacity(cap) {
            return None;
        }
        let size = Spsc::memory_size(cap);
        let mut mem: Vec<Line> = (0..size.div_ceil(128)).map(|_| Line([0; 128])).collect();
        for (i, b) in image.iter().take(size).enumerate() {
            mem[i / 128].0[i % 128] = *b;
        }
        let base = NonNull::new(mem.as_mut_ptr().cast::<u8>()).expect("vec pointer");
        // SAFETY: the vector's buffer is 128-aligned (Line's alignment), holds
        // memory_size(cap) bytes (rounded up to whole lines), never moves (the vector is
        // not resized) and outlives `ring` (dropped first); any byte pattern is a ring
        // state the reader must survive.
        let ring = unsafe { Spsc::from_raw(base, cap) };
        Some(HeapRing { ring, mem })
    }

    /// The ring.
    pub(crate) fn ring(&self) -> &Spsc {
        &self.ring
    }

    /// A copy of data bytes `[from, from + n)` (panics outside the data area).
    #[cfg(test)]
    pub(crate) fn data(&self, from: usize, n: usize) -> Vec<u8> {
        assert!(from + n <= self.ring.cap as usize, "outside the data area");
        let bytes = self.mem.as_ptr().cast::<u8>();
        // SAFETY: [CONTROL_SIZE + from, + n) lies inside the memory (checked above); the
        // caller holds no writer guard or sink writing these bytes concurrently (tests
        // read what a finished encode wrote).
        unsafe { std::slice::from_raw_parts(bytes.add(CONTROL_SIZE + from), n).to_vec() }
    }
}

/// Reads every record of a ring image — a control block followed by `cap` data bytes,
/// in whatever state another process may have left them — as the receiving side does,
/// returning the number of payload bytes read or the first protocol error. Used by the
/// fuzz target and the property tests; `image` shorter than the ring is zero-padded.
pub(crate) fn decode_image(image: &[u8], cap: u64) -> Result<u64, ProtocolError> {
    if cap > 1 << 20 {
        return Err(ProtocolError::BadRecord);
    }
    let heap = HeapRing::new(cap, image).ok_or(ProtocolError::BadRecord)?;
    let ring = heap.ring();
    let mut bytes = 0;
    let mut out = Vec::new();
    let mut small = [0u8; 64];
    // Every record or pad consumes at least 8 bytes of at most `cap` published ones.
    for i in 0..=cap / 8 {
        // Every other record through the receiver's fast path, as `recv` does first.
        if i % 2 == 0 {
            if let Some(n) = ring.take_small(&mut small) {
                bytes += n as u64;
                continue;
            }
        }
        match ring.peek()? {
            None => return Ok(bytes),
            Some(rec) if rec.kind == RecKind::Batch => {
                // As `recv_slice`: one element first (the cursor stays in the record),
                // then the rest, in elements of whatever size the record claims.
                let head = ring.batch_head(&rec)?;
                out.clear();
                out.resize(head.elem as usize, 0);
                let mut k = ring.take_batch(&rec, &head, &mut out);
                if k < head.count - head.taken {
                    let head = ring.batch_head(&rec)?;
                    out.resize(
                        ((head.count - head.taken) * u64::from(head.elem)) as usize,
                        0,
                    );
                    k += ring.take_batch(&rec, &head, &mut out);
                }
                bytes += k * u64::from(head.elem);
            }
            Some(rec) => {
                out.clear();
                ring.read_into(&rec, 0, rec.len, &mut out);
                if rec.kind == RecKind::Begin {
                    let _ = ring.read_u64(&rec);
                }
                bytes += rec.len;
                ring.consume(&rec);
            }
        }
    }
    Err(ProtocolError::BadRecord)
}
