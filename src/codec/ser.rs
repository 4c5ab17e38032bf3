//! A serde serializer that writes the [postcard wire format] byte for byte, built for
//! the send path: every method inlines, and a varint is written with one bounds check
//! (not one per byte plus a copy through a temporary, as `postcard`'s own serializer
//! does through its flavor API). The property tests check that it and `postcard` produce
//! identical bytes for every kind of value serde knows.
//!
//! [postcard wire format]: https://postcard.jamesmunns.com/wire-format

use serde::ser::{self, Serialize};

use crate::ring::spsc::write_varint;

/// Where encoded bytes go: a reserved window of the ring, a vector or a slice.
pub(crate) trait Out {
    /// Appends one byte; false (writing nothing) when it does not fit.
    fn byte(&mut self, b: u8) -> bool;
    /// Appends bytes; false (writing nothing) when they do not fit.
    fn bytes(&mut self, b: &[u8]) -> bool;
    /// Appends `v` as a LEB128 varint (7 bits per byte, low first); false (writing
    /// nothing) when it does not fit.
    #[inline(always)]
    fn varint(&mut self, v: u64) -> bool {
        let mut buf = [0u8; 10];
        let n = write_varint(v, &mut buf);
        self.bytes(&buf[..n])
    }
}

impl Out for &mut Vec<u8> {
    #[inline(always)]
    fn byte(&mut self, b: u8) -> bool {
        self.push(b);
        true
    }

    #[inline(always)]
    fn bytes(&mut self, b: &[u8]) -> bool {
        self.extend_from_slice(b);
        true
    }
}

/// A slice being filled from the front: a caller's buffer, or the stack array where
/// the send path encodes a message first, to learn its size before it touches the ring.
pub(crate) struct SliceOut<'a> {
    pub(crate) buf: &'a mut [u8],
    pub(crate) pos: usize,
}

impl Out for SliceOut<'_> {
    #[inline(always)]
    fn byte(&mut self, b: u8) -> bool {
        match self.buf.get_mut(self.pos) {
            Some(slot) => {
                *slot = b;
                self.pos += 1;
                true
            }
            None => false,
        }
    }

    #[inline(always)]
    fn bytes(&mut self, b: &[u8]) -> bool {
        match self.buf.get_mut(self.pos..self.pos + b.len()) {
            Some(dst) => {
                dst.copy_from_slice(b);
                self.pos += b.len();
                true
            }
            None => false,
        }
    }

    #[inline(always)]
    fn varint(&mut self, mut v: u64) -> bool {
        // One bounds check for the longest varint, none per byte.
        let Some(dst) = self.buf.get_mut(self.pos..self.pos + 10) else {
            let mut tmp = [0u8; 10];
            let n = write_varint(v, &mut tmp);
            return self.bytes(&tmp[..n]);
        };
        let mut i = 0;
        while v >= 0x80 {
            dst[i] = v as u8 | 0x80;
            v >>= 7;
            i += 1;
        }
        dst[i] = v as u8;
        self.pos += i + 1;
        true
    }
}

/// The most bytes [`WordOut`] holds: a tiny ring record's payload (the other two bytes
/// of its word are the record's length and tag), so that a caller that got an
/// encoding from it needs no length check of its own.
pub(crate) const WORD_MAX: u32 = 6;

/// The first [`WORD_MAX`] bytes of an encoding, kept in a register: a message that
/// short is encoded without touching memory (writing bytes one by one and then loading
/// them as a word stalls the store-to-load forwarding of the CPU for a dozen cycles).
///
/// One word holds it all: the bytes in bytes 0 to 5, their count in byte 6
/// ([`LEN_SHIFT`]), and whatever the caller put in byte 7: where a tiny ring record
/// keeps its payload, length and tag. On a path whose writes are all of known lengths
/// (the seed's enum), each write is an `or` of the bytes and a constant.
pub(crate) struct WordOut {
    word: u64,
}

/// Where [`WordOut`] keeps the length.
pub(crate) const LEN_SHIFT: u32 = 48;

impl WordOut {
    /// An empty encoding whose byte 7 is `high`'s (its bytes 6 and below zero).
    #[inline(always)]
    pub(crate) fn with_high(high: u64) -> WordOut {
        debug_assert_eq!(high & ((0xFF << LEN_SHIFT) | ((1 << LEN_SHIFT) - 1)), 0);
        WordOut { word: high }
    }

    /// The encoding a [`WordOut::tagged`] word holds, to take apart again.
    #[inline(always)]
    pub(crate) fn from_tagged(word: u64) -> WordOut {
        WordOut { word }
    }

    /// The bytes written so far.
    #[inline(always)]
    pub(crate) fn len(&self) -> u32 {
        (self.word >> LEN_SHIFT) as u32 & 0xFF
    }

    /// The encoding alone (bytes 6 and 7 zero).
    #[inline(always)]
    pub(crate) fn bytes(&self) -> u64 {
        self.word & ((1 << LEN_SHIFT) - 1)
    }

    /// The whole word: the encoding, its length and the caller's byte 7.
    #[inline(always)]
    pub(crate) fn tagged(&self) -> u64 {
        self.word
    }

    /// Appends the `n` low bytes of `enc` (the others zero), if they fit.
    #[inline(always)]
    fn put(&mut self, enc: u64, n: u32) -> bool {
        let len = self.len();
        if len + n > WORD_MAX {
            return false;
        }
        self.word = (self.word | enc << (8 * len)) + (u64::from(n) << LEN_SHIFT);
        true
    }
}

impl Out for WordOut {
    #[inline(always)]
    fn byte(&mut self, b: u8) -> bool {
        self.put(u64::from(b), 1)
    }

    #[inline(always)]
    fn bytes(&mut self, b: &[u8]) -> bool {
        if self.len() as usize + b.len() > WORD_MAX as usize {
            return false;
        }
        for &x in b {
            // Fits: checked for all of them above.
            self.put(u64::from(x), 1);
        }
        true
    }

    #[inline(always)]
    fn varint(&mut self, v: u64) -> bool {
        // The common short varints without a loop, each placed on its own branch (where
        // its length, and so the word's length byte, is a constant); the rest 7 bits at
        // a time.
        if v < 1 << 7 {
            self.put(v, 1)
        } else if v < 1 << 14 {
            self.put((v & 0x7f) | 0x80 | (v >> 7) << 8, 2)
        } else if v < 1 << 21 {
            self.put(
                (v & 0x7f) | 0x80 | ((v >> 7) & 0x7f | 0x80) << 8 | (v >> 14) << 16,
                3,
            )
        } else {
            // ceil(significant bits / 7) bytes.
            let n = (64 - v.leading_zeros()).div_ceil(7);
            if n > 8 {
                return false;
            }
            let mut enc = 0u64;
            let mut x = v;
            for i in 0..n {
                enc |= ((x & 0x7f) | 0x80) << (8 * i);
                x >>= 7;
            }
            self.put(enc & !(0x80 << (8 * (n - 1))), n)
        }
    }
}

/// Why an encode failed.
#[derive(Debug)]
pub(crate) enum SerError {
    /// The output had no room (only fixed-size outputs).
    Full,
    /// A sequence or map without a known length (postcard writes the length first).
    LengthUnknown,
    /// The value's `Serialize` implementation failed.
    Custom(String),
}

impl std::fmt::Display for SerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SerError::Full => f.write_str("the output buffer is full"),
            SerError::LengthUnknown => {
                f.write_str("a sequence or map of unknown length cannot be encoded")
            }
            SerError::Custom(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for SerError {}

impl ser::Error for SerError {
    fn custom<T: std::fmt::Display>(msg: T) -> Self {
        SerError::Custom(msg.to_string())
    }
}

/// The serializer over an [`Out`].
pub(crate) struct Ser<O> {
    pub(crate) out: O,
}

type Res = Result<(), SerError>;

impl<O: Out> Ser<O> {
    #[inline(always)]
    fn byte(&mut self, b: u8) -> Res {
        if self.out.byte(b) {
            Ok(())
        } else {
            Err(SerError::Full)
        }
    }

    #[inline(always)]
    fn bytes(&mut self, b: &[u8]) -> Res {
        if self.out.bytes(b) {
            Ok(())
        } else {
            Err(SerError::Full)
        }
    }

    #[inline(always)]
    fn varint(&mut self, v: u64) -> Res {
        if self.out.varint(v) {
            Ok(())
        } else {
            Err(SerError::Full)
        }
    }

    #[inline]
    fn varint128(&mut self, mut v: u128) -> Res {
        let mut buf = [0u8; 19];
        let mut i = 0;
        while v >= 0x80 {
            buf[i] = v as u8 | 0x80;
            v >>= 7;
            i += 1;
        }
        buf[i] = v as u8;
        self.bytes(&buf[..=i])
    }

    #[inline(always)]
    fn len(&mut self, len: Option<usize>) -> Res {
        self.varint(len.ok_or(SerError::LengthUnknown)? as u64)
    }
}

impl<O: Out> ser::Serializer for &mut Ser<O> {
    type Ok = ();
    type Error = SerError;
    type SerializeSeq = Self;
    type SerializeTuple = Self;
    type SerializeTupleStruct = Self;
    type SerializeTupleVariant = Self;
    type SerializeMap = Self;
    type SerializeStruct = Self;
    type SerializeStructVariant = Self;

    #[inline(always)]
    fn is_human_readable(&self) -> bool {
        false
    }

    #[inline(always)]
    fn serialize_bool(self, v: bool) -> Res {
        self.byte(u8::from(v))
    }

    #[inline(always)]
    fn serialize_i8(self, v: i8) -> Res {
        self.byte(v as u8)
    }

    #[inline(always)]
    fn serialize_i16(self, v: i16) -> Res {
        self.varint(u64::from(((v << 1) ^ (v >> 15)) as u16))
    }

    #[inline(always)]
    fn serialize_i32(self, v: i32) -> Res {
        self.varint(u64::from(((v << 1) ^ (v >> 31)) as u32))
    }

    #[inline(always)]
    fn serialize_i64(self, v: i64) -> Res {
        self.varint(((v << 1) ^ (v >> 63)) as u64)
    }

    #[inline]
    fn serialize_i128(self, v: i128) -> Res {
        self.varint128(((v << 1) ^ (v >> 127)) as u128)
    }

    #[inline(always)]
    fn serialize_u8(self, v: u8) -> Res {
        self.byte(v)
    }

    #[inline(always)]
    fn serialize_u16(self, v: u16) -> Res {
        self.varint(u64::from(v))
    }

    #[inline(always)]
    fn serialize_u32(self, v: u32) -> Res {
        self.varint(u64::from(v))
    }

    #[inline(always)]
    fn serialize_u64(self, v: u64) -> Res {
        self.varint(v)
    }

    #[inline]
    fn serialize_u128(self, v: u128) -> Res {
        self.varint128(v)
    }

    #[inline(always)]
    fn serialize_f32(self, v: f32) -> Res {
        self.bytes(&v.to_le_bytes())
    }

    #[inline(always)]
    fn serialize_f64(self, v: f64) -> Res {
        self.bytes(&v.to_le_bytes())
    }

    #[inline]
    fn serialize_char(self, v: char) -> Res {
        let mut buf = [0u8; 4];
        self.serialize_str(v.encode_utf8(&mut buf))
    }

    #[inline]
    fn serialize_str(self, v: &str) -> Res {
        self.serialize_bytes(v.as_bytes())
    }

    #[inline]
    fn serialize_bytes(self, v: &[u8]) -> Res {
        self.varint(v.len() as u64)?;
        self.bytes(v)
    }

    #[inline(always)]
    fn serialize_none(self) -> Res {
        self.byte(0)
    }

    #[inline(always)]
    fn serialize_some<T: ?Sized + Serialize>(self, value: &T) -> Res {
        self.byte(1)?;
        value.serialize(self)
    }

    #[inline(always)]
    fn serialize_unit(self) -> Res {
        Ok(())
    }

    #[inline(always)]
    fn serialize_unit_struct(self, _name: &'static str) -> Res {
        Ok(())
    }

    #[inline(always)]
    fn serialize_unit_variant(
        self,
        _name: &'static str,
        index: u32,
        _variant: &'static str,
    ) -> Res {
        self.varint(u64::from(index))
    }

    #[inline(always)]
    fn serialize_newtype_struct<T: ?Sized + Serialize>(
        self,
        _name: &'static str,
        value: &T,
    ) -> Res {
        value.serialize(self)
    }

    #[inline(always)]
    fn serialize_newtype_variant<T: ?Sized + Serialize>(
        self,
        _name: &'static str,
        index: u32,
        _variant: &'static str,
        value: &T,
    ) -> Res {
        self.varint(u64::from(index))?;
        value.serialize(self)
    }

    #[inline]
    fn serialize_seq(self, len: Option<usize>) -> Result<Self, SerError> {
        self.len(len)?;
        Ok(self)
    }

    #[inline(always)]
    fn serialize_tuple(self, _len: usize) -> Result<Self, SerError> {
        Ok(self)
    }

    #[inline(always)]
    fn serialize_tuple_struct(self, _name: &'static str, _len: usize) -> Result<Self, SerError> {
        Ok(self)
    }

    #[inline(always)]
    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        index: u32,
        _variant: &'static str,
        _len: usize,
    ) -> Result<Self, SerError> {
        self.varint(u64::from(index))?;
        Ok(self)
    }

    #[inline]
    fn serialize_map(self, len: Option<usize>) -> Result<Self, SerError> {
        self.len(len)?;
        Ok(self)
    }

    #[inline(always)]
    fn serialize_struct(self, _name: &'static str, _len: usize) -> Result<Self, SerError> {
        Ok(self)
    }

    #[inline(always)]
    fn serialize_struct_variant(
        self,
        _name: &'static str,
        index: u32,
        _variant: &'static str,
        _len: usize,
    ) -> Result<Self, SerError> {
        self.varint(u64::from(index))?;
        Ok(self)
    }

    /// As postcard: the formatted text as a string (length first).
    fn collect_str<T: ?Sized + std::fmt::Display>(self, value: &T) -> Res {
        self.serialize_str(&value.to_string())
    }
}

/// Implements one of serde's compound-serializer traits: every element in order, no
/// delimiters (lengths, when the format has them, were written at the start).
macro_rules! compound {
    ($trait:ident, $method:ident $(, $key:ident)?) => {
        impl<O: Out> ser::$trait for &mut Ser<O> {
            type Ok = ();
            type Error = SerError;

            #[inline(always)]
            fn $method<T: ?Sized + Serialize>(
                &mut self,
                $($key: &'static str,)?
                value: &T,
            ) -> Res {
                $(let _ = $key;)?
                value.serialize(&mut **self)
            }

            #[inline(always)]
            fn end(self) -> Res {
                Ok(())
            }
        }
    };
}

compound!(SerializeSeq, serialize_element);
compound!(SerializeTuple, serialize_element);
compound!(SerializeTupleStruct, serialize_field);
compound!(SerializeTupleVariant, serialize_field);
compound!(SerializeStruct, serialize_field, _key);
compound!(SerializeStructVariant, serialize_field, _key);

impl<O: Out> ser::SerializeMap for &mut Ser<O> {
    type Ok = ();
    type Error = SerError;

    #[inline(always)]
    fn serialize_key<T: ?Sized + Serialize>(&mut self, key: &T) -> Res {
        key.serialize(&mut **self)
    }

    #[inline(always)]
    fn serialize_value<T: ?Sized + Serialize>(&mut self, value: &T) -> Res {
        value.serialize(&mut **self)
    }

    #[inline(always)]
    fn end(self) -> Res {
        Ok(())
    }
}
