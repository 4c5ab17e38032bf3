//! The record format: header words, tiny records, sizes.

/// Record header size; also the alignment of every record.
pub(crate) const REC_HDR: u64 = 8;
/// Room a writer keeps after every record it publishes: the next header slot, which it
/// zeroes before the record's header goes out (see `Spsc::publish_at`).
pub(crate) const NEXT_SLOT: u64 = 8;
/// The smallest window worth encoding into in place (an encoder writes without knowing
/// the size first).
pub(crate) const MIN_WINDOW: u64 = 64;
const TAG_MAGIC: u32 = 0x00A5_C300;
const TAG_MASK: u32 = 0xFFFF_FF00;
/// Byte 7 of a tiny record (byte 7 of every other header is 0).
pub(crate) const TINY_TAG: u64 = 0xA7;
/// A tiny record's tag in its place, byte 7 of the word (its length goes in byte 6,
/// its payload below).
pub(crate) const TINY_HIGH: u64 = TINY_TAG << 56;
/// The largest message held in a tiny record (bytes 0-5 of its word).
pub(crate) const TINY_MAX: u64 = 6;

/// The kinds of record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum RecKind {
    /// A whole message.
    Msg = 1,
    /// The first piece of a streamed message; the payload starts with the u64 total.
    Begin = 2,
    /// A further piece of a streamed message.
    Chunk = 3,
    /// Skip to the end of the ring.
    Pad = 4,
    /// Plain-data elements (`send_slice`): a word of element size and type fingerprint,
    /// a word of the reader's cursor (elements taken so far), then the elements (see
    /// `batch.rs`).
    Batch = 5,
}

impl RecKind {
    fn from_tag(tag: u32) -> Option<RecKind> {
        if tag & TAG_MASK != TAG_MAGIC {
            return None;
        }
        match tag & 0xFF {
            1 => Some(RecKind::Msg),
            2 => Some(RecKind::Begin),
            3 => Some(RecKind::Chunk),
            4 => Some(RecKind::Pad),
            5 => Some(RecKind::Batch),
            _ => None,
        }
    }

    pub(super) fn tag(self) -> u32 {
        TAG_MAGIC | self as u32
    }
}

#[inline(always)]
pub(super) const fn align8(n: u64) -> u64 {
    (n + 7) & !7
}

/// Space a record with `len` payload bytes occupies.
#[inline(always)]
pub(crate) const fn record_size(len: u64) -> u64 {
    REC_HDR + align8(len)
}

/// Decodes a record header word (the fuzzable part of the reader); a tiny record is a
/// `Msg` whose payload is in the word itself (see [`tiny_len`]).
#[inline]
pub(crate) fn parse_header(word: u64) -> Option<(RecKind, u64)> {
    if let Some(len) = tiny_len(word) {
        return Some((RecKind::Msg, len));
    }
    let len = word & 0xFFFF_FFFF;
    let kind = RecKind::from_tag((word >> 32) as u32)?;
    Some((kind, len))
}

/// The payload length of a tiny record's word, `None` if the word is not one.
#[inline(always)]
pub(super) fn tiny_len(word: u64) -> Option<u64> {
    let len = (word >> 48) & 0xFF;
    (word >> 56 == TINY_TAG && len <= TINY_MAX).then_some(len)
}

/// The word of a tiny record holding `payload`, `len <= TINY_MAX` bytes with nothing
/// beyond them (from the library's own encoder, or masked by the caller).
#[inline(always)]
pub(super) fn tiny_word(payload: u64, len: u64) -> u64 {
    debug_assert!(len <= TINY_MAX && payload >> (8 * len) == 0);
    TINY_HIGH | (len << 48) | payload
}

#[inline(always)]
pub(super) fn header_word(kind: RecKind, len: u64) -> u64 {
    debug_assert!(len <= u64::from(u32::MAX));
    (u64::from(kind.tag()) << 32) | len
}

/// A validated header of a record ready to read.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Record {
    pub(crate) kind: RecKind,
    /// Payload bytes.
    pub(crate) len: u64,
    pub(super) off: u64,
    /// The reader's position (`head`) at this record.
    pub(super) pos: u64,
    /// The record's header word (a tiny record's payload is in it).
    pub(super) word: u64,
}

impl Record {
    /// Space the record occupies.
    #[inline(always)]
    pub(super) fn size(&self) -> u64 {
        if tiny_len(self.word).is_some() {
            REC_HDR
        } else {
            record_size(self.len)
        }
    }
}
