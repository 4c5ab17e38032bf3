//! A serde deserializer of the [postcard wire format], built for the receive path: it
//! accepts and rejects exactly the inputs `postcard::from_bytes` does and produces the
//! same values (the property tests compare both on random values and on garbage), but
//! keeps its cursor in a register inside each primitive, reads a one-byte varint with
//! one compare, and carries a one-pointer error, so that decoding the seed's
//! `enum Msg { Int(u64), Done }` inlines into a few dozen instructions (`postcard` pops
//! one byte at a time through a `Result` and writes its cursor back per byte).
//!
//! A varint is read from one 8-byte load when 8 bytes are at hand: the input may sit at
//! the front of a larger readable buffer (the stack buffer a small record is copied
//! into, a 16-byte copy of the register holding a tiny record), so that even its last
//! varint usually is; a varint of up to 3 bytes takes a few shifts, a longer one is
//! squeezed out of the word in three steps, and only near the end of a bare slice (or
//! for a varint of 9 or 10 bytes) does an out-of-line loop read byte by byte.
//!
//! As postcard: trailing bytes after the value are ignored; varints may be overlong
//! (`0x80 0x00` is 0) but not longer than the type's maximum (3 bytes for `u16`, 5 for
//! `u32`, 10 for `u64`, 19 for `u128`) nor hold bits beyond its width; bool and
//! Option tags are 0 or 1; a char is a string of 1 to 4 bytes holding exactly one char;
//! `deserialize_any`, `deserialize_identifier` and `deserialize_ignored_any` are errors.
//!
//! [postcard wire format]: https://postcard.jamesmunns.com/wire-format

use serde::de::{self, DeserializeSeed, IntoDeserializer, Visitor};

/// Why a decode failed: one pointer, so that `Result<u64, DeError>` comes back in two
/// registers. Built only on the (cold) error paths.
pub(crate) struct DeError(Box<Message>);

/// The text of a [`DeError`].
struct Message(String);

impl DeError {
    #[cold]
    #[inline(never)]
    fn new(msg: &str) -> Self {
        DeError(Box::new(Message(msg.to_owned())))
    }
}

/// The input ended inside a value.
#[cold]
#[inline(never)]
fn end() -> DeError {
    DeError::new("unexpected end of input")
}

/// Not an error of the input: [`from_word`]'s fast decode met something it leaves to
/// the slice decoder (an enum variant index of two bytes or more), which decodes the
/// same bytes again ([`AGAIN`] marks it).
#[cold]
#[inline(never)]
fn again() -> DeError {
    DeError::new("")
}

/// A varint longer than its type allows, or with bits beyond its width.
#[cold]
#[inline(never)]
fn bad_varint() -> DeError {
    DeError::new("bad varint")
}

impl std::fmt::Display for DeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0 .0)
    }
}

impl std::fmt::Debug for DeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DeError({:?})", self.0 .0)
    }
}

impl std::error::Error for DeError {}

impl de::Error for DeError {
    #[cold]
    #[inline]
    fn custom<T: std::fmt::Display>(msg: T) -> Self {
        DeError::formatted(format_args!("{msg}"))
    }
}

impl DeError {
    /// A value's own error (an unknown variant, an invalid value): formatted out of
    /// line, so that the visitors' error arms stay small where they inline.
    #[cold]
    #[inline(never)]
    fn formatted(args: std::fmt::Arguments<'_>) -> Self {
        DeError(Box::new(Message(args.to_string())))
    }
}

type Res<T> = Result<T, DeError>;

/// Bytes of the longest varint of an integer of `bits` bits (postcard's `varint_max`).
const fn vmax(bits: u32) -> usize {
    bits.div_ceil(7) as usize
}

/// The largest last byte of a varint of `vmax(bits)` bytes (postcard's
/// `max_of_last_byte`): the bits of the type left for it.
const fn vlast(bits: u32) -> u8 {
    ((1u32 << (bits % 7)) - 1) as u8
}

/// The varint at the front of `buf` as postcard reads an integer whose longest varint
/// is `max` bytes, the last at most `last`: its value and length. Byte by byte, out of
/// line: only for a varint that does not end within the 8 bytes at hand, or near the
/// end of the buffer.
#[inline(never)]
fn varint_bytes(buf: &[u8], max: usize, last: u8) -> Res<(u64, usize)> {
    let mut v = 0u64;
    for i in 0..max.min(10) {
        let Some(&b) = buf.get(i) else {
            return Err(end());
        };
        v |= u64::from(b & 0x7f) << (7 * i);
        if b < 0x80 {
            if i == max - 1 && b > last {
                return Err(bad_varint());
            }
            return Ok((v, i + 1));
        }
    }
    Err(bad_varint())
}

/// The varint in the low bytes of `w` (little-endian, up to 8 bytes): its value (up to
/// 56 bits) and length, or length 0 when no byte of `w` ends it.
#[inline]
fn varint_in_word(w: u64) -> (u64, usize) {
    const HI: u64 = 0x8080_8080_8080_8080;
    let stops = !w & HI;
    if stops == 0 {
        return (0, 0);
    }
    // The bits up to and including the first byte without a continuation bit.
    let bits = stops.trailing_zeros() + 1;
    let mut x = w & !HI & (u64::MAX >> (64 - bits));
    // Squeeze out the continuation bits: 7-bit groups into 14, 28, then 56.
    x = (x & 0x007f_007f_007f_007f) | (x >> 1 & 0x3f80_3f80_3f80_3f80);
    x = (x & 0x0000_3fff_0000_3fff) | (x >> 2 & 0x0fff_c000_0fff_c000);
    x = (x & 0x0000_0000_0fff_ffff) | (x >> 4 & 0x00ff_ffff_f000_0000);
    (x, bits as usize / 8)
}

/// A varint of 3 to 8 bytes at the bottom of `w` (the first byte or two have their
/// continuation bit), as postcard reads one of `BITS` bits: its value and length, or
/// length 0 when it does not end in `w`, is longer than `BITS` allows, or has bits
/// beyond `BITS` (the caller's [`word_varint_error`] then says which). Out of line,
/// registers in and out.
#[inline(never)]
fn word_varint_long<const BITS: u32>(w: u64) -> (u64, usize) {
    match varint_in_word(w) {
        (v, n) if n != 0 && n <= vmax(BITS) && (BITS >= 64 || v >> BITS == 0) => (v, n),
        _ => (0, 0),
    }
}

/// The error of a varint at `p` in the low `len` (at most 8) bytes of `word` that
/// [`Src::word_varint`] could not read: the one [`varint_long`] gives for those bytes.
/// By value, so that the caller's copy of the word is not kept for this path alone.
#[cold]
#[inline(never)]
fn word_varint_error<const BITS: u32>(word: u64, len: usize, p: usize) -> DeError {
    let bytes = word.to_le_bytes();
    match varint_long::<BITS>(&bytes[..len.min(8)], None, p) {
        Err(e) => e,
        // Not reached: the word holds every byte of `bytes` from `p` on.
        Ok(_) => bad_varint(),
    }
}

/// [`Src::varint`] of 4 bytes or more, or without 8 bytes at hand, at `p` in `bytes`:
/// the value and the position after it. `word` is the 8 bytes at `p` when the caller
/// has them (read from a copy the way `Src::word_at` does: never loaded again here at
/// an odd offset, which would stall on the copy's stores).
#[inline(never)]
fn varint_long<const BITS: u32>(bytes: &[u8], word: Option<u64>, p: usize) -> Res<(u64, usize)> {
    let max = vmax(BITS);
    // The caller's 8 bytes at `p` (from `Src::word_at`), or loaded from a bare slice.
    let word = word.or_else(|| {
        bytes
            .get(p..)
            .and_then(|s| s.first_chunk::<8>())
            .map(|w| u64::from_le_bytes(*w))
    });
    let by_bytes = || varint_bytes(bytes.get(p..).unwrap_or(&[]), max, vlast(BITS));
    let (v, n) = match word {
        Some(w) => match varint_in_word(w) {
            (_, 0) if max <= 8 => return Err(bad_varint()),
            (_, 0) => by_bytes()?,
            (v, n) => {
                if n > max || (BITS < 64 && v >> BITS != 0) {
                    return Err(bad_varint());
                }
                (v, n)
            }
        },
        None => by_bytes()?,
    };
    let np = p + n;
    if np > bytes.len() {
        return Err(end());
    }
    Ok((v, np))
}

/// The 8 bytes at `p` of a bare slice, zero-padded near its end (out of line).
#[inline]
fn slice_word(bytes: &[u8], p: usize) -> u64 {
    match bytes.get(p..).and_then(|s| s.first_chunk::<8>()) {
        Some(w) => u64::from_le_bytes(*w),
        None => tail_word(bytes, p),
    }
}

/// The 8 bytes at `p` of a stack copy just written (`decode_small`): two aligned loads
/// and a funnel shift. A load at `p` would span two of the stores that wrote the copy,
/// which the CPU cannot forward to it (the seed's receive loop spent half its time on
/// such a load); the copy is written with aligned stores of 8 bytes or more, and an
/// aligned 8-byte load lies inside one of them. Bytes past `wide` read as zero.
#[inline]
fn funnel_word<const N: usize>(wide: &[u8; N], p: usize) -> u64 {
    let at = |i: usize| {
        wide.get(i..)
            .and_then(|s| s.first_chunk::<8>())
            .map_or(0, |c| u64::from_le_bytes(*c))
    };
    let i = p & !7;
    let sh = 8 * (p & 7) as u32;
    // `hi << (64 - sh)`, with no shift by 64 when `sh` is 0.
    at(i) >> sh | (at(i + 8) << 1) << (63 - sh)
}

/// The bytes of `bytes` from `p` on (fewer than 8) in the low bytes of a word, the
/// others zero: from at most two overlapping loads.
#[inline(never)]
fn tail_word(bytes: &[u8], p: usize) -> u64 {
    let len = bytes.len();
    if let Some(last) = bytes.last_chunk::<8>() {
        // The last 8 bytes end at `len`: the wanted ones are their top `len - p`.
        let k = len.saturating_sub(p) as u32;
        return u64::from_le_bytes(*last)
            .checked_shr(8 * (8 - k.min(8)))
            .unwrap_or(0);
    }
    // The whole of `bytes` (fewer than 8) from two overlapping loads of 4 or 2 bytes
    // (the bytes both hold are equal).
    let whole = match (bytes.first_chunk::<4>(), bytes.last_chunk::<4>()) {
        (Some(a), Some(b)) => {
            u64::from(u32::from_le_bytes(*a)) | u64::from(u32::from_le_bytes(*b)) << (8 * (len - 4))
        }
        _ => match (bytes.first_chunk::<2>(), bytes.last_chunk::<2>()) {
            (Some(a), Some(b)) => {
                u64::from(u16::from_le_bytes(*a))
                    | u64::from(u16::from_le_bytes(*b)) << (8 * (len - 2))
            }
            _ => bytes.first().map_or(0, |&b| u64::from(b)),
        },
    };
    whole.checked_shr(8 * p as u32).unwrap_or(0)
}

/// Where the deserializer reads from: `bytes`, the input, at the front of `wide`, which
/// may hold more readable bytes after it (a register's copy, a stack buffer), so that
/// a varint loads 8 bytes at once more often. Every method keeps the cursor in a local
/// and writes it back once.
pub(crate) struct Src<'de, const N: usize> {
    bytes: &'de [u8],
    wide: &'de [u8; N],
    pos: usize,
    /// A word's copy (`N == WORD`): its first 8 bytes, by value, so that a varint reads
    /// a register, not the copy (which only `bytes` needs, for what is not a varint).
    /// 0 otherwise.
    word: u64,
}

/// [`Src::pos`] once a word's decode met something it leaves to the slice decoder
/// ([`again`]): past any input, so every later read fails and the position stays,
/// and [`from_word`] decodes the message again that way whatever the `Deserialize` made
/// of the error (one that swallows it must not leave a different value).
const AGAIN: usize = usize::MAX;

impl<'de> Src<'de, 0> {
    /// Reads `bytes` (with no wider buffer: 8-byte loads from `bytes` itself).
    #[inline]
    pub(crate) fn new(bytes: &'de [u8]) -> Self {
        Src {
            bytes,
            wide: &[],
            pos: 0,
            word: 0,
        }
    }
}

impl<'de, const N: usize> Src<'de, N> {
    /// The 8 bytes at `p`: from `wide` (a stack copy of a small record), or, with no
    /// wider buffer (`N == 0`), from `bytes`, zero-padded near its end (out of line).
    /// The bytes past the input never decide anything: a varint that runs into them
    /// ends past it. (A word's copy, `N == WORD`, is read by [`Self::word_varint`].)
    #[inline(always)]
    fn word_at(&self, p: usize) -> u64 {
        if N == 0 {
            slice_word(self.bytes, p)
        } else {
            funnel_word(self.wide, p)
        }
    }

    /// Reads the first `len` bytes of `wide`; `None` when it is shorter.
    #[inline]
    pub(crate) fn within(wide: &'de [u8; N], len: usize) -> Option<Self> {
        Some(Src {
            bytes: wide.get(..len)?,
            wide,
            pos: 0,
            word: 0,
        })
    }

    /// The next byte.
    #[inline]
    fn byte(&mut self) -> Res<u8> {
        let p = self.pos;
        match self.bytes.get(p) {
            Some(&b) => {
                self.pos = p + 1;
                Ok(b)
            }
            None => Err(end()),
        }
    }

    /// A varint of an unsigned integer of `BITS` (at most 64) bits, as postcard reads
    /// it: at most `vmax(BITS)` bytes, overlong encodings accepted, no bits beyond the
    /// type's width. Varints of up to 3 bytes inline, the rest out of line.
    #[inline]
    fn varint<const BITS: u32>(&mut self) -> Res<u64> {
        let p = self.pos;
        if N == 0 {
            // A bare slice: up to 3 bytes one by one (near its end no 8 bytes are at
            // hand, and most inputs are short), longer varints out of line.
            let (v, n) = match self.bytes.get(p..) {
                Some(&[b0, ..]) if b0 < 0x80 => (u64::from(b0), 1),
                Some(&[b0, b1, ..]) if b1 < 0x80 => (u64::from(b0 & 0x7f) | u64::from(b1) << 7, 2),
                Some(&[b0, b1, b2, ..]) if b2 < 0x80 => {
                    let v = u64::from(b0 & 0x7f) | u64::from(b1 & 0x7f) << 7 | u64::from(b2) << 14;
                    if BITS < 21 && v >> BITS != 0 {
                        return Err(bad_varint());
                    }
                    (v, 3)
                }
                // Longer, or cut short (an error): out of line.
                _ => return self.varint_long_at::<BITS>(p, None),
            };
            self.pos = p + n;
            return Ok(v);
        }
        if N == WORD {
            return self.word_varint::<BITS>(p);
        }
        let w = self.word_at(p);
        let (v, n) = if w & 0x80 == 0 {
            (w & 0x7f, 1)
        } else if w & 0x8000 == 0 {
            ((w & 0x7f) | (w >> 1 & 0x3f80), 2)
        } else if w & 0x80_0000 == 0 {
            let v = (w & 0x7f) | (w >> 1 & 0x3f80) | (w >> 2 & 0x1f_c000);
            if BITS < 21 && v >> BITS != 0 {
                return Err(bad_varint());
            }
            (v, 3)
        } else {
            return self.varint_long_at::<BITS>(p, Some(w));
        };
        let np = p + n;
        if np > self.bytes.len() {
            return Err(end());
        }
        self.pos = np;
        Ok(v)
    }

    /// [`Self::varint`] in a word's copy (`N == WORD`, at most 8 bytes of input): the
    /// bytes from `p` on, shifted down from the word's first 8 (a load at `p` would span
    /// the two stores that wrote the copy, see `funnel_word`). Varints of up to 3 bytes
    /// inline; longer ones, and every failure, in one out-of-line call each, registers
    /// in and out: the less this body holds, the likelier LLVM inlines the caller's
    /// serde-derived code (before this function, `u64::deserialize` in the seed's
    /// `Msg` cost 330 against a threshold of 325 and stayed a call: 179 instructions
    /// per message, 163 with it).
    ///
    /// Reading past the input (`len` bytes) is not checked here: [`from_word`] checks
    /// once, at the end, that the decode ended within it (one compare for the whole
    /// message, not one per field; the bytes past it are in the word, and what a decode
    /// makes of them is discarded).
    #[inline(always)]
    fn word_varint<const BITS: u32>(&mut self, p: usize) -> Res<u64> {
        // Past the word: past the input too. An error at once, so that a decode that
        // ran past the input (a sequence of a garbage length, say) stops within 8 reads.
        if p >= 8 {
            return Err(end());
        }
        let w = self.word >> (8 * p);
        // The position after it on each branch (a constant there when `p` is).
        let (v, np) = if w & 0x80 == 0 {
            (w & 0x7f, p + 1)
        } else if w & 0x8000 == 0 {
            ((w & 0x7f) | (w >> 1 & 0x3f80), p + 2)
        } else if w & 0x80_0000 == 0 && BITS >= 21 {
            ((w & 0x7f) | (w >> 1 & 0x3f80) | (w >> 2 & 0x1f_c000), p + 3)
        } else {
            // 3 bytes or more; 0 when it does not end in `w` or is too long for `BITS`.
            match word_varint_long::<BITS>(w) {
                (_, 0) => return Err(word_varint_error::<BITS>(self.word, self.bytes.len(), p)),
                (v, n) => (v, p + n),
            }
        };
        self.pos = np;
        Ok(v)
    }

    /// An enum's variant index in a word's copy (`N == WORD`): a one-byte varint
    /// inline; a longer one (an enum of 128 variants or more) has [`from_word`] decode
    /// the message again the slice's way ([`again`]). So the position after it is a
    /// constant on the inline path, and the next field is read with constant shifts.
    #[inline(always)]
    fn word_variant(&mut self) -> Res<u32> {
        let p = self.pos;
        if p >= 8 {
            return Err(end());
        }
        let w = self.word >> (8 * p);
        if w & 0x80 != 0 {
            self.pos = AGAIN;
            return Err(again());
        }
        self.pos = p + 1;
        // The byte as it is (its top bit is clear): the compiler then tests the byte
        // it already tested for that bit.
        Ok((w & 0xff) as u32)
    }

    /// [`varint_long`] at `p`, the cursor moved past it. Only values cross the call,
    /// so that the deserializer can stay in registers.
    #[inline(always)]
    fn varint_long_at<const BITS: u32>(&mut self, p: usize, word: Option<u64>) -> Res<u64> {
        let (v, np) = varint_long::<BITS>(self.bytes, word, p)?;
        self.pos = np;
        Ok(v)
    }

    /// A `u128` varint (19 bytes at most, the last at most 3), byte by byte: rare.
    #[inline]
    fn varint128(&mut self) -> Res<u128> {
        const MAX: usize = vmax(128);
        let mut v = 0u128;
        for i in 0..MAX {
            let b = self.byte()?;
            v |= u128::from(b & 0x7f) << (7 * i);
            if b < 0x80 {
                if i == MAX - 1 && b > vlast(128) {
                    return Err(bad_varint());
                }
                return Ok(v);
            }
        }
        Err(bad_varint())
    }

    /// The next `n` bytes.
    #[inline]
    fn take(&mut self, n: usize) -> Res<&'de [u8]> {
        let p = self.pos;
        let bytes = self.bytes;
        match p.checked_add(n).and_then(|e| bytes.get(p..e)) {
            Some(s) => {
                self.pos = p + n;
                Ok(s)
            }
            None => Err(end()),
        }
    }

    /// The next `M` bytes, copied.
    #[inline]
    fn array<const M: usize>(&mut self) -> Res<[u8; M]> {
        let p = self.pos;
        match self.bytes.get(p..).and_then(|s| s.first_chunk::<M>()) {
            Some(a) => {
                self.pos = p + M;
                Ok(*a)
            }
            None => Err(end()),
        }
    }

    /// How many bytes are left (none when a word's decode read past the input, which
    /// [`from_word`] reports at the end).
    #[inline]
    fn remaining(&self) -> usize {
        self.bytes.len().saturating_sub(self.pos)
    }
}

/// The size of the copy of a word that [`from_word`] reads (only a copy of a word has
/// this size: `Src::word_varint` reads it from its first 8 bytes).
const WORD: usize = 16;

/// The deserializer over a [`Src`].
pub(crate) struct De<'de, const N: usize> {
    pub(crate) src: Src<'de, N>,
}

impl<const N: usize> De<'_, N> {
    #[inline]
    fn u16(&mut self) -> Res<u16> {
        Ok(self.src.varint::<16>()? as u16)
    }

    #[inline]
    fn u32(&mut self) -> Res<u32> {
        Ok(self.src.varint::<32>()? as u32)
    }

    #[inline]
    fn u64(&mut self) -> Res<u64> {
        self.src.varint::<64>()
    }

    /// A length, a `usize` varint (as wide as postcard reads it on this target).
    #[inline]
    fn usize(&mut self) -> Res<usize> {
        let n = self.src.varint::<{ usize::BITS }>()? as usize;
        // A length read past a word's input (which a word's varints do not check,
        // `Src::word_varint`) is an error now, not at the end: a garbage length of
        // elements that read nothing would otherwise loop that many times first.
        if N == WORD && self.src.pos > self.src.bytes.len() {
            return Err(end());
        }
        Ok(n)
    }
}

/// A sequence, tuple or struct of `len` elements.
struct Seq<'a, 'de, const N: usize> {
    de: &'a mut De<'de, N>,
    len: usize,
}

impl<'de, const N: usize> de::SeqAccess<'de> for Seq<'_, 'de, N> {
    type Error = DeError;

    #[inline]
    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Res<Option<T::Value>> {
        if self.len > 0 {
            self.len -= 1;
            Ok(Some(seed.deserialize(&mut *self.de)?))
        } else {
            Ok(None)
        }
    }

    #[inline]
    fn size_hint(&self) -> Option<usize> {
        // As postcard: no hint when the input cannot hold that many elements.
        if self.de.src.remaining() < self.len {
            None
        } else {
            Some(self.len)
        }
    }
}

/// A map of `len` entries.
struct Map<'a, 'de, const N: usize> {
    de: &'a mut De<'de, N>,
    len: usize,
}

impl<'de, const N: usize> de::MapAccess<'de> for Map<'_, 'de, N> {
    type Error = DeError;

    #[inline]
    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Res<Option<K::Value>> {
        if self.len > 0 {
            self.len -= 1;
            Ok(Some(seed.deserialize(&mut *self.de)?))
        } else {
            Ok(None)
        }
    }

    #[inline]
    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Res<V::Value> {
        seed.deserialize(&mut *self.de)
    }

    #[inline]
    fn size_hint(&self) -> Option<usize> {
        Some(self.len)
    }
}

/// What postcard cannot decode (it is not self-describing).
#[cold]
#[inline(never)]
fn wont() -> DeError {
    DeError::new("postcard is not self-describing: deserialize_any, identifiers and ignored values are not supported")
}

impl<'de, const N: usize> de::Deserializer<'de> for &mut De<'de, N> {
    type Error = DeError;

    #[inline]
    fn is_human_readable(&self) -> bool {
        false
    }

    #[inline]
    fn deserialize_any<V: Visitor<'de>>(self, _visitor: V) -> Res<V::Value> {
        Err(wont())
    }

    #[inline]
    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Res<V::Value> {
        match self.src.byte()? {
            0 => visitor.visit_bool(false),
            1 => visitor.visit_bool(true),
            _ => Err(DeError::new("bad bool (not 0 or 1)")),
        }
    }

    #[inline]
    fn deserialize_i8<V: Visitor<'de>>(self, visitor: V) -> Res<V::Value> {
        visitor.visit_i8(self.src.byte()? as i8)
    }

    #[inline]
    fn deserialize_i16<V: Visitor<'de>>(self, visitor: V) -> Res<V::Value> {
        let n = self.u16()?;
        visitor.visit_i16((n >> 1) as i16 ^ -((n & 1) as i16))
    }

    #[inline]
    fn deserialize_i32<V: Visitor<'de>>(self, visitor: V) -> Res<V::Value> {
        let n = self.u32()?;
        visitor.visit_i32((n >> 1) as i32 ^ -((n & 1) as i32))
    }

    #[inline]
    fn deserialize_i64<V: Visitor<'de>>(self, visitor: V) -> Res<V::Value> {
        let n = self.u64()?;
        visitor.visit_i64((n >> 1) as i64 ^ -((n & 1) as i64))
    }

    #[inline]
    fn deserialize_i128<V: Visitor<'de>>(self, visitor: V) -> Res<V::Value> {
        let n = self.src.varint128()?;
        visitor.visit_i128((n >> 1) as i128 ^ -((n & 1) as i128))
    }

    #[inline]
    fn deserialize_u8<V: Visitor<'de>>(self, visitor: V) -> Res<V::Value> {
        visitor.visit_u8(self.src.byte()?)
    }

    #[inline]
    fn deserialize_u16<V: Visitor<'de>>(self, visitor: V) -> Res<V::Value> {
        visitor.visit_u16(self.u16()?)
    }

    #[inline]
    fn deserialize_u32<V: Visitor<'de>>(self, visitor: V) -> Res<V::Value> {
        visitor.visit_u32(self.u32()?)
    }

    #[inline]
    fn deserialize_u64<V: Visitor<'de>>(self, visitor: V) -> Res<V::Value> {
        visitor.visit_u64(self.u64()?)
    }

    #[inline]
    fn deserialize_u128<V: Visitor<'de>>(self, visitor: V) -> Res<V::Value> {
        visitor.visit_u128(self.src.varint128()?)
    }

    #[inline]
    fn deserialize_f32<V: Visitor<'de>>(self, visitor: V) -> Res<V::Value> {
        visitor.visit_f32(f32::from_le_bytes(self.src.array::<4>()?))
    }

    #[inline]
    fn deserialize_f64<V: Visitor<'de>>(self, visitor: V) -> Res<V::Value> {
        visitor.visit_f64(f64::from_le_bytes(self.src.array::<8>()?))
    }

    #[inline]
    fn deserialize_char<V: Visitor<'de>>(self, visitor: V) -> Res<V::Value> {
        let n = self.usize()?;
        if n > 4 {
            return Err(DeError::new("bad char (longer than 4 bytes)"));
        }
        let bytes = self.src.take(n)?;
        let mut chars = match std::str::from_utf8(bytes) {
            Ok(s) => s.chars(),
            Err(_) => return Err(DeError::new("bad char (invalid UTF-8)")),
        };
        match (chars.next(), chars.next()) {
            (Some(c), None) => visitor.visit_char(c),
            _ => Err(DeError::new("bad char (not exactly one)")),
        }
    }

    #[inline]
    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Res<V::Value> {
        let n = self.usize()?;
        let bytes = self.src.take(n)?;
        match std::str::from_utf8(bytes) {
            Ok(s) => visitor.visit_borrowed_str(s),
            Err(_) => Err(DeError::new("bad string (invalid UTF-8)")),
        }
    }

    #[inline]
    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Res<V::Value> {
        let n = self.usize()?;
        let bytes = self.src.take(n)?;
        match std::str::from_utf8(bytes) {
            Ok(s) => visitor.visit_str(s),
            Err(_) => Err(DeError::new("bad string (invalid UTF-8)")),
        }
    }

    #[inline]
    fn deserialize_bytes<V: Visitor<'de>>(self, visitor: V) -> Res<V::Value> {
        let n = self.usize()?;
        visitor.visit_borrowed_bytes(self.src.take(n)?)
    }

    #[inline]
    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Res<V::Value> {
        let n = self.usize()?;
        visitor.visit_bytes(self.src.take(n)?)
    }

    #[inline]
    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Res<V::Value> {
        match self.src.byte()? {
            0 => visitor.visit_none(),
            1 => visitor.visit_some(self),
            _ => Err(DeError::new("bad option tag (not 0 or 1)")),
        }
    }

    #[inline]
    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Res<V::Value> {
        visitor.visit_unit()
    }

    #[inline]
    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Res<V::Value> {
        visitor.visit_unit()
    }

    #[inline]
    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Res<V::Value> {
        visitor.visit_newtype_struct(self)
    }

    #[inline]
    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Res<V::Value> {
        let len = self.usize()?;
        visitor.visit_seq(Seq { de: self, len })
    }

    #[inline]
    fn deserialize_tuple<V: Visitor<'de>>(self, len: usize, visitor: V) -> Res<V::Value> {
        visitor.visit_seq(Seq { de: self, len })
    }

    #[inline]
    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        len: usize,
        visitor: V,
    ) -> Res<V::Value> {
        visitor.visit_seq(Seq { de: self, len })
    }

    #[inline]
    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Res<V::Value> {
        let len = self.usize()?;
        visitor.visit_map(Map { de: self, len })
    }

    #[inline]
    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Res<V::Value> {
        visitor.visit_seq(Seq {
            de: self,
            len: fields.len(),
        })
    }

    #[inline]
    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Res<V::Value> {
        visitor.visit_enum(self)
    }

    #[inline]
    fn deserialize_identifier<V: Visitor<'de>>(self, _visitor: V) -> Res<V::Value> {
        Err(wont())
    }

    #[inline]
    fn deserialize_ignored_any<V: Visitor<'de>>(self, _visitor: V) -> Res<V::Value> {
        Err(wont())
    }
}

impl<'de, const N: usize> de::EnumAccess<'de> for &mut De<'de, N> {
    type Error = DeError;
    type Variant = Self;

    #[inline]
    fn variant_seed<V: DeserializeSeed<'de>>(self, seed: V) -> Res<(V::Value, Self)> {
        let index = if N == WORD {
            self.src.word_variant()?
        } else {
            self.u32()?
        };
        let v = seed.deserialize(IntoDeserializer::<DeError>::into_deserializer(index))?;
        Ok((v, self))
    }
}

impl<'de, const N: usize> de::VariantAccess<'de> for &mut De<'de, N> {
    type Error = DeError;

    #[inline]
    fn unit_variant(self) -> Res<()> {
        Ok(())
    }

    #[inline]
    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Res<T::Value> {
        seed.deserialize(self)
    }

    #[inline]
    fn tuple_variant<V: Visitor<'de>>(self, len: usize, visitor: V) -> Res<V::Value> {
        visitor.visit_seq(Seq { de: self, len })
    }

    #[inline]
    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Res<V::Value> {
        visitor.visit_seq(Seq {
            de: self,
            len: fields.len(),
        })
    }
}

/// Decodes a `T` from the front of `bytes` (trailing bytes are ignored, as postcard
/// does).
#[inline(always)]
pub(crate) fn from_slice<'de, T: de::Deserialize<'de>>(bytes: &'de [u8]) -> Res<T> {
    T::deserialize(&mut De {
        src: Src::new(bytes),
    })
}

/// Decodes a `T` from the low `len` (at most 8) bytes of `word`, little-endian: as
/// [`from_slice`] of `&word.to_le_bytes()[..len]`, whatever the other bytes hold. An
/// error when `len > 8`.
#[inline(always)]
pub(crate) fn from_word<T: de::DeserializeOwned>(word: u64, len: usize) -> Res<T> {
    if len > 8 {
        return Err(end());
    }
    let mut buf = [0u8; WORD];
    buf[..8].copy_from_slice(&word.to_le_bytes());
    let Some(src) = Src::within(&buf, len) else {
        return Err(end());
    };
    let mut de = De {
        src: Src { word, ..src },
    };
    match T::deserialize(&mut de) {
        // Varints are read without a bounds check each (`Src::word_varint`): the one
        // check, whether the decode ended within the input.
        Ok(v) if de.src.pos <= len => Ok(v),
        _ if de.src.pos == AGAIN => from_word_again(word, len),
        Ok(_) => Err(end()),
        Err(e) => Err(e),
    }
}

/// [`from_word`] the slice's way, for what its fast decode leaves to it ([`again`]).
#[cold]
#[inline(never)]
fn from_word_again<T: de::DeserializeOwned>(word: u64, len: usize) -> Res<T> {
    from_slice(&word.to_le_bytes()[..len])
}

/// Decodes a `T` from the first `len` bytes of `buf`: as [`from_slice`] of
/// `&buf[..len]`, an error when `len > N`. For the stack buffer a small record was
/// copied into (no bounds check per byte of a varint).
#[inline(always)]
pub(crate) fn from_array<T: de::DeserializeOwned, const N: usize>(
    buf: &[u8; N],
    len: usize,
) -> Res<T> {
    // A buffer of WORD bytes would be read as a word's copy (`Src::word_varint`).
    const { assert!(N != WORD) };
    match Src::within(buf, len) {
        Some(src) => T::deserialize(&mut De { src }),
        None => Err(end()),
    }
}
