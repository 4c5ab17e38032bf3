//! The slot state word: `stamp: 40 bits | phase: 2 bits | tid: 22 bits` (see the
//! module docs of `mpmc`).

const ID_MASK: u64 = (1 << 22) - 1;
const PHASE_SHIFT: u32 = 22;
const STAMP_SHIFT: u32 = 24;
pub(super) const STAMP_MASK: u64 = (1 << 40) - 1;

/// What a slot's owner is doing, or what the slot holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
    Empty = 0,
    Writing = 1,
    Full = 2,
    Reading = 3,
}

#[inline(always)]
pub(super) fn pack(pos: u64, phase: Phase, tid: u32) -> u64 {
    ((pos & STAMP_MASK) << STAMP_SHIFT)
        | ((phase as u64) << PHASE_SHIFT)
        | (u64::from(tid) & ID_MASK)
}

#[inline(always)]
pub(super) fn unpack(w: u64) -> (u64, Phase, u32) {
    let phase = match (w >> PHASE_SHIFT) & 3 {
        0 => Phase::Empty,
        1 => Phase::Writing,
        2 => Phase::Full,
        _ => Phase::Reading,
    };
    (w >> STAMP_SHIFT, phase, (w & ID_MASK) as u32)
}

/// `stamp - pos` as a signed distance in the 40-bit stamp space.
#[inline(always)]
pub(super) fn dist(stamp: u64, pos: u64) -> i64 {
    let d = stamp.wrapping_sub(pos) & STAMP_MASK;
    ((d << 24) as i64) >> 24
}
