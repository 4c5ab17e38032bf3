//! Turning values into bytes and back.
//!
//! The default codec is serde with the [postcard] wire format: compact (varints, no
//! field names), specified and stable. The choice was measured against bitcode and
//! wincode; see `BENCHMARKS.md` ("Codec"). Both directions are this module's own code
//! for that format, built for the fast paths; the `postcard` crate is the reference the
//! property tests compare them with. Encoding (`ser`) writes straight into the ring's
//! free space with no intermediate allocation and inlines fully into the send path
//! (`postcard`'s own serializer goes through a byte buffer and a copy per varint); the
//! tests check that both produce identical bytes for every kind of value serde knows.
//! Decoding (`de`) keeps its cursor in a register and reads a varint of up to 3 bytes
//! from one 8-byte load with a few shifts (`postcard` pops one byte at a time through a
//! `Result`); a small record is decoded from the stack buffer it was copied into
//! (`decode_small`) or from a register (`decode_word`, the ring's tiny record). The
//! tests check that it accepts and rejects exactly what `postcard::from_bytes` does,
//! with the same values, on random values and on garbage.
//!
//! [postcard]: https://docs.rs/postcard

use serde::{de::DeserializeOwned, Serialize};

use crate::ring::spsc::RawSink;

mod de;
mod ser;

pub(crate) use ser::WORD_MAX;
use ser::{Out, Ser, SerError, SliceOut, WordOut};

impl Out for &mut RawSink<'_> {
    #[inline(always)]
    fn byte(&mut self, b: u8) -> bool {
        self.push(b)
    }

    #[inline(always)]
    fn bytes(&mut self, b: &[u8]) -> bool {
        self.extend(b)
    }

    #[inline(always)]
    fn varint(&mut self, v: u64) -> bool {
        RawSink::varint(self, v)
    }
}

/// Runs `value`'s serializer over `out`: `Ok(Some(out))` when the encoding fit,
/// `Ok(None)` when `out` ran out of room (the caller tries a larger output), `Err` with
/// the message when the value's `Serialize` failed. Every fixed-size output goes
/// through here.
#[inline(always)]
fn encode_fitting<T: Serialize + ?Sized, O: Out>(value: &T, out: O) -> Result<Option<O>, String> {
    let mut ser = Ser { out };
    match value.serialize(&mut ser) {
        Ok(()) => Ok(Some(ser.out)),
        Err(SerError::Full) => Ok(None),
        Err(e) => Err(e.to_string()),
    }
}

/// Encodes `value` into a reserved ring window: the bytes written, or `None` when the
/// window was too small (encode into a buffer instead).
#[inline(always)]
pub(crate) fn encode_in_place<T: Serialize + ?Sized>(
    value: &T,
    sink: &mut RawSink<'_>,
) -> Result<Option<usize>, String> {
    encode_fitting(value, &mut *sink).map(|fit| fit.map(|s| s.written()))
}

/// Encodes `value` into a register if it takes at most [`WORD_MAX`] (6) bytes:
/// `Some((bytes, len))` with the encoding in the low `len` bytes of `bytes`
/// (little-endian; the other bytes zero), `None` when it is longer.
#[inline(always)]
pub(crate) fn encode_word<T: Serialize + ?Sized>(
    value: &T,
) -> Result<Option<(u64, usize)>, String> {
    encode_fitting(value, WordOut::with_high(0))
        .map(|fit| fit.map(|w| (w.bytes(), w.len() as usize)))
}

/// [`encode_word`] as one word: the encoding in the low bytes, its length in byte 6,
/// and `high` (zero below byte 7) ORed in: a tiny ring record's word, when `high` is
/// its tag. [`word_parts`] takes it apart again.
#[inline(always)]
pub(crate) fn encode_word_tagged<T: Serialize + ?Sized>(
    value: &T,
    high: u64,
) -> Result<Option<u64>, String> {
    encode_fitting(value, WordOut::with_high(high)).map(|fit| fit.map(|w| w.tagged()))
}

/// The encoding and its length in a word from [`encode_word_tagged`].
#[inline(always)]
pub(crate) fn word_parts(tagged: u64) -> (u64, usize) {
    let w = WordOut::from_tagged(tagged);
    (w.bytes(), w.len() as usize)
}

/// Encodes `value` into `buf` if it fits: `Some(len)`, `None` when it does not (encode
/// into a vector instead). The send path encodes small messages into a stack buffer
/// this way, so that their size is known before the ring is touched.
#[inline(always)]
pub(crate) fn encode_to_slice<T: Serialize + ?Sized>(
    value: &T,
    buf: &mut [u8],
) -> Result<Option<usize>, String> {
    encode_fitting(value, SliceOut { buf, pos: 0 }).map(|fit| fit.map(|s| s.pos))
}

/// Encodes `value`, appending to `out`.
pub fn encode_into<T: Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) -> crate::Result<()> {
    let mut ser = Ser { out };
    value
        .serialize(&mut ser)
        .map_err(|e| crate::Error::Codec(e.to_string()))
}

/// Encodes `value` into a new vector.
pub fn encode<T: Serialize + ?Sized>(value: &T) -> crate::Result<Vec<u8>> {
    let mut out = Vec::new();
    encode_into(value, &mut out)?;
    Ok(out)
}

/// Decodes a `T` from the front of `bytes` (as `postcard::from_bytes`, bytes after the
/// value are ignored).
#[inline]
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> crate::Result<T> {
    de::from_slice(bytes).map_err(codec_error)
}

/// Decodes a `T` from the low `len` (at most 8) bytes of `word`, little-endian, as
/// [`encode_word`] produces them: the receive path of a tiny record, the payload in
/// one register. The same result as `decode(&word.to_le_bytes()[..len])`, whatever the
/// other bytes of `word` hold; an error when `len > 8`.
#[inline(always)]
pub(crate) fn decode_word<T: DeserializeOwned>(word: u64, len: usize) -> crate::Result<T> {
    de::from_word(word, len).map_err(codec_error)
}

/// Decodes a `T` from the first `len` bytes of `buf` (`N` a power of two, at least
/// 16): the same result as `decode(&buf[..len])`, an error when `len > N`. The receive
/// path of a small record copied into a stack buffer: a varint is read with no bounds
/// check per byte.
#[inline(always)]
pub(crate) fn decode_small<T: DeserializeOwned, const N: usize>(
    buf: &[u8; N],
    len: usize,
) -> crate::Result<T> {
    de::from_array(buf, len).map_err(codec_error)
}

/// A decode error as the crate's error (out of line: only the error paths get here).
#[cold]
#[inline(never)]
fn codec_error(e: de::DeError) -> crate::Error {
    crate::Error::Codec(e.to_string())
}

#[cfg(test)]
mod de_tests;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_an_enum_and_a_struct() {
        #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
        enum Msg {
            Int(u64),
            Done,
        }
        for m in [Msg::Int(0), Msg::Int(u64::MAX), Msg::Done] {
            assert_eq!(decode::<Msg>(&encode(&m).unwrap()).unwrap(), m);
        }
        let v = (String::from("hello"), vec![1u8, 2, 3], 42i32);
        let mut buf = vec![9];
        encode_into(&v, &mut buf).unwrap();
        assert_eq!(buf[0], 9);
        assert_eq!(decode::<(String, Vec<u8>, i32)>(&buf[1..]).unwrap(), v);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(decode::<(String, u64)>(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff]).is_err());
        assert!(decode::<Vec<u64>>(&[0xff, 0xff, 0xff, 0xff, 0x0f]).is_err());
    }

    /// Every kind of value serde knows, for the differential test against postcard.
    #[derive(serde::Serialize, Debug, Clone)]
    enum Kind {
        Unit,
        NewtypeI8(i8),
        Tuple(i16, u16),
        Struct { a: i32, b: u32, c: Option<bool> },
    }

    #[derive(serde::Serialize, Debug, Clone)]
    struct Unit;

    #[derive(serde::Serialize, Debug, Clone)]
    struct Newtype(u8);

    #[derive(serde::Serialize, Debug, Clone)]
    struct TupleStruct(f32, char);

    /// Bytes through `serialize_bytes` (a `Vec<u8>` alone would be a sequence).
    #[derive(Debug, Clone)]
    struct Bytes(Vec<u8>);

    impl serde::Serialize for Bytes {
        fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            s.serialize_bytes(&self.0)
        }
    }

    /// A value formatted through `collect_str`.
    #[derive(Debug, Clone)]
    struct Display(i64);

    impl serde::Serialize for Display {
        fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            s.collect_str(&format_args!("<{}>", self.0))
        }
    }

    #[derive(serde::Serialize, Debug, Clone)]
    struct All {
        b: bool,
        i8_: i8,
        i16_: i16,
        i32_: i32,
        i64_: i64,
        i128_: i128,
        u8_: u8,
        u16_: u16,
        u32_: u32,
        u64_: u64,
        u128_: u128,
        f32_: f32,
        f64_: f64,
        c: char,
        s: String,
        bytes: Bytes,
        opt: Option<u64>,
        unit: (),
        unit_struct: Unit,
        newtype: Newtype,
        tuple_struct: TupleStruct,
        kinds: Vec<Kind>,
        map: std::collections::BTreeMap<String, (u8, i64)>,
        display: Display,
    }

    fn kind() -> impl proptest::strategy::Strategy<Value = Kind> {
        use proptest::prelude::*;
        prop_oneof![
            Just(Kind::Unit),
            any::<i8>().prop_map(Kind::NewtypeI8),
            (any::<i16>(), any::<u16>()).prop_map(|(a, b)| Kind::Tuple(a, b)),
            (any::<i32>(), any::<u32>(), any::<Option<bool>>())
                .prop_map(|(a, b, c)| Kind::Struct { a, b, c }),
        ]
    }

    fn all() -> impl proptest::strategy::Strategy<Value = All> {
        use proptest::prelude::*;
        let ints = (
            any::<bool>(),
            any::<i8>(),
            any::<i16>(),
            any::<i32>(),
            any::<i64>(),
            any::<i128>(),
            any::<u8>(),
            any::<u16>(),
            any::<u32>(),
            any::<u64>(),
            any::<u128>(),
        );
        let rest = (
            any::<f32>(),
            any::<f64>(),
            any::<char>(),
            ".{0,40}",
            proptest::collection::vec(any::<u8>(), 0..300),
            any::<Option<u64>>(),
            any::<u8>(),
            (any::<f32>(), any::<char>()),
            proptest::collection::vec(kind(), 0..8),
            proptest::collection::btree_map(".{0,8}", any::<(u8, i64)>(), 0..6),
            any::<i64>(),
        );
        (ints, rest).prop_map(
            |(
                (b, i8_, i16_, i32_, i64_, i128_, u8_, u16_, u32_, u64_, u128_),
                (f32_, f64_, c, s, bytes, opt, nt, (tf, tc), kinds, map, d),
            )| All {
                b,
                i8_,
                i16_,
                i32_,
                i64_,
                i128_,
                u8_,
                u16_,
                u32_,
                u64_,
                u128_,
                f32_,
                f64_,
                c,
                s,
                bytes: Bytes(bytes),
                opt,
                unit: (),
                unit_struct: Unit,
                newtype: Newtype(nt),
                tuple_struct: TupleStruct(tf, tc),
                kinds,
                map,
                display: Display(d),
            },
        )
    }

    proptest::proptest! {
        /// The serializer writes exactly postcard's bytes, into a vector, into a slice
        /// (or reports that it does not fit) and into a ring window.
        #[test]
        fn encodes_exactly_as_postcard(v in all(), room in 0usize..600) {
            let want = postcard::to_stdvec(&v).unwrap();
            proptest::prop_assert_eq!(&encode(&v).unwrap(), &want);
            let mut buf = vec![0u8; room];
            match encode_to_slice(&v, &mut buf).unwrap() {
                Some(n) => proptest::prop_assert_eq!(&buf[..n], &want[..]),
                None => proptest::prop_assert!(want.len() > room),
            }
            proptest::prop_assert_eq!(ring_encode(&v, room as u64), want.len() <= room);
            check_word_and_small(&v, &want)?;
            for k in &v.kinds {
                check_word_and_small(k, &postcard::to_stdvec(k).unwrap())?;
            }
        }

        /// Every u64 (and so every varint length) round-trips through postcard's decoder.
        #[test]
        fn varints_of_every_length(shift in 0u32..64, low in proptest::prelude::any::<u64>()) {
            let v = low >> shift;
            let bytes = encode(&v).unwrap();
            proptest::prop_assert_eq!(&bytes, &postcard::to_stdvec(&v).unwrap());
            proptest::prop_assert_eq!(decode::<u64>(&bytes).unwrap(), v);
            check_word_and_small(&v, &bytes)?;
            // And behind other bytes in the register (a variant index first).
            let e: Result<u64, ()> = Ok(v);
            check_word_and_small(&e, &postcard::to_stdvec(&e).unwrap())?;
            check_word_and_small(&(v as u32, v as u16), &postcard::to_stdvec(&(v as u32, v as u16)).unwrap())?;
        }
    }

    /// The register and stack-buffer encoders give postcard's bytes `want`, or say the
    /// value does not fit (more than `WORD_MAX` or 64 bytes).
    fn check_word_and_small<T: serde::Serialize>(
        v: &T,
        want: &[u8],
    ) -> Result<(), proptest::test_runner::TestCaseError> {
        match encode_word(v).unwrap() {
            Some((word, n)) => {
                proptest::prop_assert_eq!(&word.to_le_bytes()[..n], want);
                if n < 8 {
                    proptest::prop_assert_eq!(word >> (8 * n), 0, "bytes beyond the encoding");
                }
                // The same as one word: length in byte 6, the caller's byte 7 kept.
                let high = 0xA7 << 56;
                let tagged = encode_word_tagged(v, high).unwrap();
                proptest::prop_assert_eq!(tagged, Some(word | (n as u64) << 48 | high));
                proptest::prop_assert_eq!(word_parts(tagged.unwrap()), (word, n));
            }
            None => {
                proptest::prop_assert!(want.len() > WORD_MAX as usize);
                proptest::prop_assert_eq!(encode_word_tagged(v, 0).unwrap(), None);
            }
        }
        let mut buf = [0u8; 64];
        match encode_to_slice(v, &mut buf).unwrap() {
            Some(n) => proptest::prop_assert_eq!(&buf[..n], want),
            None => proptest::prop_assert!(want.len() > 64),
        }
        Ok(())
    }

    /// Encodes `v` in place into a fresh ring's window of `room` bytes; whether it fit.
    /// When it does, the bytes in the ring are postcard's.
    fn ring_encode<T: serde::Serialize>(v: &T, room: u64) -> bool {
        use crate::ring::spsc::{HeapRing, REC_HDR};
        let heap = HeapRing::new(4096, &[]).unwrap();
        let ring = heap.ring();
        let g = ring.acquire_writer(None, || false).unwrap();
        let (off, window) = ring.reserve(&g, 64).unwrap();
        let max = room.min(window - REC_HDR);
        let fit = {
            let mut sink = ring.sink(&g, off, max);
            match encode_in_place(v, &mut sink).unwrap() {
                Some(n) => {
                    let want = postcard::to_stdvec(v).unwrap();
                    assert_eq!(heap.data((off + REC_HDR) as usize, n), want);
                    true
                }
                None => false,
            }
        };
        drop(g);
        fit
    }

    #[test]
    fn unknown_length_sequences_are_an_error_not_a_panic() {
        struct Unsized;
        impl serde::Serialize for Unsized {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                use serde::ser::SerializeSeq;
                let mut seq = s.serialize_seq(None)?;
                seq.serialize_element(&1u8)?;
                seq.end()
            }
        }
        assert!(postcard::to_stdvec(&Unsized).is_err());
        assert!(encode(&Unsized).is_err());
    }
}
