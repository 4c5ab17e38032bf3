//! The deserializer against `postcard::from_bytes`, the reference: random values round
//! trip, and on any bytes (random, biased towards tags and varint edges, or mutated
//! encodings) both decoders succeed with equal values or both fail; `decode_small` and
//! `decode_word` give what `decode` gives on the same bytes, whatever lies past them.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Debug;

use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::{decode, decode_small, decode_word, encode};

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
enum Msg {
    Int(u64),
    Done,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
enum Kind {
    Unit,
    NewtypeI8(i8),
    Tuple(i16, u16),
    Struct { a: i32, b: u32, c: Option<bool> },
    Nested(Box<Option<Kind>>),
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
struct Unit;

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
struct Newtype(u8);

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
struct TupleStruct(f32, char);

/// Bytes through `serialize_bytes` / `deserialize_byte_buf` (a `Vec<u8>` alone is a
/// sequence).
#[derive(Debug, Clone, PartialEq)]
struct Bytes(Vec<u8>);

impl Serialize for Bytes {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for Bytes {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Bytes;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("bytes")
            }
            fn visit_bytes<E>(self, v: &[u8]) -> Result<Bytes, E> {
                Ok(Bytes(v.to_vec()))
            }
        }
        d.deserialize_byte_buf(V)
    }
}

/// Borrowed bytes through `deserialize_bytes`, copied out.
#[derive(Debug, Clone, PartialEq)]
struct BorrowedBytes(Vec<u8>);

impl<'de> Deserialize<'de> for BorrowedBytes {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = BorrowedBytes;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("bytes")
            }
            fn visit_borrowed_bytes<E>(self, v: &'de [u8]) -> Result<BorrowedBytes, E> {
                Ok(BorrowedBytes(v.to_vec()))
            }
            fn visit_bytes<E>(self, v: &[u8]) -> Result<BorrowedBytes, E> {
                Ok(BorrowedBytes(v.to_vec()))
            }
        }
        d.deserialize_bytes(V)
    }
}

/// A type that asks for `deserialize_any` (postcard refuses it).
#[derive(Debug, PartialEq)]
struct Any;

impl<'de> Deserialize<'de> for Any {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(serde::de::IgnoredAny).map(|_| Any)
    }
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
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
    map: BTreeMap<String, (u8, i64)>,
    /// A fixed hasher: two maps decoded from the same bytes iterate (and print, see
    /// [`alike`]) in the same order.
    hash: HashMap<u16, Vec<u8>, FixedState>,
    usize_: usize,
    isize_: isize,
}

fn kind() -> impl Strategy<Value = Kind> {
    let leaf =
        prop_oneof![
            Just(Kind::Unit),
            any::<i8>().prop_map(Kind::NewtypeI8),
            (any::<i16>(), any::<u16>()).prop_map(|(a, b)| Kind::Tuple(a, b)),
            (any::<i32>(), any::<u32>(), any::<Option<bool>>())
                .prop_map(|(a, b, c)| Kind::Struct { a, b, c }),
        ];
    leaf.prop_recursive(3, 8, 1, |inner| {
        proptest::option::of(inner).prop_map(|k| Kind::Nested(Box::new(k)))
    })
}

fn all() -> impl Strategy<Value = All> {
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
        any::<usize>(),
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
        proptest::collection::hash_map(any::<u16>(), any::<Vec<u8>>(), 0..4),
        any::<isize>(),
    );
    (ints, rest).prop_map(
        |(
            (b, i8_, i16_, i32_, i64_, i128_, u8_, u16_, u32_, u64_, u128_, usize_),
            (f32_, f64_, c, s, bytes, opt, nt, (tf, tc), kinds, map, hash, isize_),
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
            hash: hash.into_iter().collect(),
            usize_,
            isize_,
        },
    )
}

/// A hasher with no per-map random state.
type FixedState = std::hash::BuildHasherDefault<std::collections::hash_map::DefaultHasher>;

/// Equal, or the same when printed (a NaN is not equal to itself).
fn alike<T: Debug + PartialEq>(a: &T, b: &T) -> bool {
    a == b || format!("{a:?}") == format!("{b:?}")
}

/// `decode`, `decode_small` (with zeros and with garbage past the bytes) and, for up
/// to 8 bytes, `decode_word` (garbage in the other bytes of the word) give what
/// `postcard::from_bytes` gives on `bytes`: both an error, or equal values.
fn same<T: DeserializeOwned + Debug + PartialEq>(bytes: &[u8]) -> Result<(), TestCaseError> {
    let want = postcard::from_bytes::<T>(bytes).ok();
    let got = decode::<T>(bytes).ok();
    prop_assert!(
        alike(&got, &want),
        "{}: decode {:?}, postcard {:?} on {:02x?}",
        std::any::type_name::<T>(),
        got,
        want,
        bytes
    );
    if bytes.len() <= 64 {
        for fill in [0u8, 0x80, 0xff] {
            let mut small = [fill; 64];
            small[..bytes.len()].copy_from_slice(bytes);
            let got = decode_small::<T, 64>(&small, bytes.len()).ok();
            prop_assert!(
                alike(&got, &want),
                "decode_small {:?}, postcard {:?} on {:02x?} (then {:02x})",
                got,
                want,
                bytes,
                fill
            );
        }
    }
    if bytes.len() <= 8 {
        for fill in [0u8, 0x80, 0xff] {
            let mut w = [fill; 8];
            w[..bytes.len()].copy_from_slice(bytes);
            let got = decode_word::<T>(u64::from_le_bytes(w), bytes.len()).ok();
            prop_assert!(
                alike(&got, &want),
                "decode_word {:?}, postcard {:?} on {:02x?} (then {:02x})",
                got,
                want,
                bytes,
                fill
            );
        }
    }
    Ok(())
}

/// Borrowed `&str` and bytes: `from_slice` as `postcard::from_bytes`.
fn same_borrowed(bytes: &[u8]) -> Result<(), TestCaseError> {
    let got = super::de::from_slice::<&str>(bytes).ok();
    let want = postcard::from_bytes::<&str>(bytes).ok();
    prop_assert_eq!(got, want);
    let got = super::de::from_slice::<(u8, &str)>(bytes).ok();
    let want = postcard::from_bytes::<(u8, &str)>(bytes).ok();
    prop_assert_eq!(got, want);
    Ok(())
}

/// Every type of the differential, on `bytes`.
fn same_for_all_types(bytes: &[u8]) -> Result<(), TestCaseError> {
    same::<u8>(bytes)?;
    same::<u16>(bytes)?;
    same::<u32>(bytes)?;
    same::<u64>(bytes)?;
    same::<u128>(bytes)?;
    same::<usize>(bytes)?;
    same::<i8>(bytes)?;
    same::<i16>(bytes)?;
    same::<i32>(bytes)?;
    same::<i64>(bytes)?;
    same::<i128>(bytes)?;
    same::<isize>(bytes)?;
    same::<f32>(bytes)?;
    same::<f64>(bytes)?;
    same::<bool>(bytes)?;
    same::<char>(bytes)?;
    same::<String>(bytes)?;
    same::<Vec<u8>>(bytes)?;
    same::<Bytes>(bytes)?;
    same::<BorrowedBytes>(bytes)?;
    same::<Vec<u32>>(bytes)?;
    same::<Vec<i64>>(bytes)?;
    same::<Vec<char>>(bytes)?;
    same::<Option<u16>>(bytes)?;
    same::<Option<Option<bool>>>(bytes)?;
    same::<()>(bytes)?;
    same::<Unit>(bytes)?;
    same::<Newtype>(bytes)?;
    same::<TupleStruct>(bytes)?;
    same::<(u8, i32, Option<char>)>(bytes)?;
    same::<(bool, String, u128)>(bytes)?;
    same::<[u16; 3]>(bytes)?;
    same::<Msg>(bytes)?;
    same::<Kind>(bytes)?;
    same::<Vec<Kind>>(bytes)?;
    same::<Result<u64, String>>(bytes)?;
    same::<HashMap<u16, String>>(bytes)?;
    same::<BTreeMap<String, (u8, i64)>>(bytes)?;
    same::<BTreeMap<u8, Option<Msg>>>(bytes)?;
    same::<All>(bytes)?;
    same::<Any>(bytes)?;
    same::<serde::de::IgnoredAny>(bytes)?;
    same_borrowed(bytes)
}

/// Bytes likely to be tags, lengths and varint edges: mostly small values, some
/// continuation bytes and some anything.
fn biased_byte() -> impl Strategy<Value = u8> {
    prop_oneof![
        4 => 0u8..6,
        2 => prop::sample::select(vec![0x0f, 0x10, 0x7f, 0x80, 0x81, 0xc3, 0xe2, 0xf0, 0xff]),
        2 => any::<u8>(),
    ]
}

/// Values of every primitive type round trip through `encode` and `decode`.
macro_rules! round_trips {
    ($($name:ident: $t:ty,)*) => {
        proptest! {
            $(
                #[test]
                fn $name(v in any::<$t>()) {
                    let bytes = encode(&v).unwrap();
                    let back = decode::<$t>(&bytes).unwrap();
                    prop_assert!(alike(&back, &v));
                    same::<$t>(&bytes)?;
                }
            )*
        }
    };
}

round_trips! {
    rt_u8: u8, rt_u16: u16, rt_u32: u32, rt_u64: u64, rt_u128: u128, rt_usize: usize,
    rt_i8: i8, rt_i16: i16, rt_i32: i32, rt_i64: i64, rt_i128: i128, rt_isize: isize,
    rt_f32: f32, rt_f64: f64, rt_bool: bool, rt_char: char, rt_string: String,
    rt_vec_u8: Vec<u8>, rt_vec_u64: Vec<u64>, rt_option: Option<u32>,
    rt_tuple: (u8, i16, Option<char>, String),
    rt_hash: HashMap<u16, String>, rt_btree: BTreeMap<i32, Vec<bool>>,
}

proptest! {
    /// Random values of every kind serde knows round trip; their encodings, truncated
    /// or with a byte changed, decode as postcard decodes them.
    #[test]
    fn values_round_trip_and_mutations_match_postcard(
        v in all(),
        cut in any::<prop::sample::Index>(),
        at in any::<prop::sample::Index>(),
        byte in biased_byte(),
    ) {
        let bytes = encode(&v).unwrap();
        prop_assert!(alike(&decode::<All>(&bytes).unwrap(), &v));
        same::<All>(&bytes)?;
        let cut = cut.index(bytes.len() + 1);
        same::<All>(&bytes[..cut])?;
        if !bytes.is_empty() {
            let mut changed = bytes.clone();
            changed[at.index(bytes.len())] = byte;
            same::<All>(&changed)?;
        }
        for k in &v.kinds {
            let bytes = encode(k).unwrap();
            prop_assert_eq!(&decode::<Kind>(&bytes).unwrap(), k);
            same_for_all_types(&bytes)?;
        }
    }

    /// Random bytes: both decoders fail, or both succeed with equal values.
    #[test]
    fn garbage_matches_postcard(bytes in proptest::collection::vec(any::<u8>(), 0..48)) {
        same_for_all_types(&bytes)?;
    }

    /// Bytes biased towards small tags, lengths and varint edges (so that more of them
    /// decode): as postcard.
    #[test]
    fn near_valid_garbage_matches_postcard(
        bytes in proptest::collection::vec(biased_byte(), 0..24),
    ) {
        same_for_all_types(&bytes)?;
    }

    /// `decode_word` of any word and any length up to 8 is `decode` of those bytes.
    #[test]
    fn decode_word_is_decode_of_the_low_bytes(
        word in any::<u64>(),
        biased in proptest::array::uniform8(biased_byte()),
    ) {
        for w in [word, u64::from_le_bytes(biased)] {
            for len in 0..=8 {
                let bytes = &w.to_le_bytes()[..len];
                fn check<T: DeserializeOwned + Debug + PartialEq>(
                    w: u64,
                    bytes: &[u8],
                ) -> Result<(), TestCaseError> {
                    let got = decode_word::<T>(w, bytes.len()).ok();
                    let want = decode::<T>(bytes).ok();
                    prop_assert!(alike(&got, &want), "{:?} {:?} on {:02x?}", got, want, bytes);
                    Ok(())
                }
                check::<u64>(w, bytes)?;
                check::<u32>(w, bytes)?;
                check::<u16>(w, bytes)?;
                check::<i64>(w, bytes)?;
                check::<Msg>(w, bytes)?;
                check::<Option<u32>>(w, bytes)?;
                check::<(u8, u16, bool)>(w, bytes)?;
                check::<f32>(w, bytes)?;
                check::<f64>(w, bytes)?;
                check::<char>(w, bytes)?;
                check::<String>(w, bytes)?;
                check::<Kind>(w, bytes)?;
                check::<u128>(w, bytes)?;
                same_for_all_types(bytes)?;
            }
        }
    }
}

#[test]
fn decode_word_rejects_a_length_over_8() {
    assert!(decode_word::<()>(0, 9).is_err());
    assert!(decode_word::<u8>(0, usize::MAX).is_err());
    assert!(decode_small::<(), 32>(&[0; 32], 33).is_err());
}

/// The edges, one by one, against postcard.
#[test]
fn edges_match_postcard() {
    let cases: &[&[u8]] = &[
        // Overlong varints (accepted), the longest ones, and one byte too many.
        &[0x80, 0x00],
        &[0xff, 0x03],
        &[0xff, 0xff, 0x03],
        &[0xff, 0xff, 0x04],
        &[0x80, 0x80, 0x00],
        &[0xff, 0xff, 0xff, 0xff, 0x0f],
        &[0xff, 0xff, 0xff, 0xff, 0x10],
        &[0x80, 0x80, 0x80, 0x80, 0x00],
        &[0x80, 0x80, 0x80, 0x80, 0x80, 0x00],
        &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01],
        &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02],
        &[0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00],
        &[
            0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00,
        ],
        &[0xff; 18],
        &[
            0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
            0xff, 0xff, 0xff, 0xff, 0x03,
        ],
        &[
            0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
            0xff, 0xff, 0xff, 0xff, 0x04,
        ],
        // Truncated.
        &[],
        &[0x80],
        &[0x01],
        &[0x03, b'a'],
        // Tags: bool and Option 0, 1, 2.
        &[0x00, 0x00],
        &[0x01, 0x01],
        &[0x02, 0x00],
        // Chars: one of 1..4 bytes, 5 bytes, two chars, invalid UTF-8, empty.
        &[0x01, b'a'],
        &[0x02, 0xc3, 0xa9],
        &[0x04, 0xf0, 0x9f, 0x98, 0x80],
        &[0x05, 0xf0, 0x9f, 0x98, 0x80, 0x00],
        &[0x02, b'a', b'b'],
        &[0x01, 0xff],
        &[0x00],
        // Strings: invalid UTF-8, a surrogate, a length past the end.
        &[0x02, 0xc3, 0x28],
        &[0x03, 0xed, 0xa0, 0x80],
        &[0x7f, b'a'],
        &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01],
        // Trailing bytes (ignored).
        &[0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09],
        // Enum variants: known, unknown, a huge index.
        &[0x00, 0x05],
        &[0x01],
        &[0x02],
        &[0x05, 0x00],
        &[0xff, 0xff, 0xff, 0xff, 0x0f],
    ];
    for bytes in cases {
        same_for_all_types(bytes).unwrap();
    }
    // A few expected verdicts, so that the differential cannot pass by both being wrong.
    assert_eq!(decode::<u64>(&[0x80, 0x00]).unwrap(), 0);
    assert_eq!(decode::<u16>(&[0xff, 0xff, 0x03]).unwrap(), u16::MAX);
    assert!(decode::<u16>(&[0xff, 0xff, 0x04]).is_err());
    assert!(decode::<u64>(&[0x80; 11]).is_err());
    assert!(decode::<bool>(&[2]).is_err());
    assert!(decode::<Option<u8>>(&[2, 0]).is_err());
    assert_eq!(decode::<u8>(&[7, 8, 9]).unwrap(), 7);
    assert_eq!(decode::<char>(&[0x02, 0xc3, 0xa9]).unwrap(), 'é');
    assert!(decode::<char>(&[0x02, b'a', b'b']).is_err());
    assert!(decode::<Any>(&[0]).is_err());
    assert!(decode::<serde::de::IgnoredAny>(&[0]).is_err());
    assert!(decode_word::<Msg>(0x0102_0300, 1).is_err());
    assert_eq!(
        decode_word::<Msg>(0xffff_0000_0101_0300, 4).unwrap(),
        Msg::Int(3)
    );
    assert_eq!(decode_word::<Msg>(0x0180_8100, 4).unwrap(), Msg::Int(16385));
    assert_eq!(decode_word::<Msg>(0xff01, 1).unwrap(), Msg::Done);
}

/// Any enum variant index, as a unit variant: an enum of as many variants as it takes.
#[derive(Debug, PartialEq)]
struct Idx(u32);

impl<'de> Deserialize<'de> for Idx {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Idx;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a unit variant")
            }
            fn visit_enum<A: serde::de::EnumAccess<'de>>(self, a: A) -> Result<Idx, A::Error> {
                use serde::de::VariantAccess;
                let (i, v) = a.variant::<u32>()?;
                v.unit_variant()?;
                Ok(Idx(i))
            }
        }
        d.deserialize_enum("Idx", &[], V)
    }
}

/// A `T`, or `None` where it did not decode: a `Deserialize` that swallows errors.
#[derive(Debug, PartialEq)]
struct Swallow<T>(Option<T>);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Swallow<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Swallow(T::deserialize(d).ok()))
    }
}

#[test]
fn a_word_with_a_long_variant_index_decodes_as_the_slice_does_even_when_the_error_is_swallowed() {
    // Index 128 takes two bytes: the word's decode leaves it to the slice decoder.
    let bytes = [0x80, 0x01];
    let word = u64::from(u16::from_le_bytes(bytes));
    assert_eq!(decode::<Idx>(&bytes).unwrap(), Idx(128));
    assert_eq!(decode_word::<Idx>(word, 2).unwrap(), Idx(128));
    assert_eq!(
        decode_word::<Swallow<Idx>>(word, 2).unwrap(),
        Swallow(Some(Idx(128)))
    );
    assert_eq!(decode_word::<Idx>(0x05, 1).unwrap(), Idx(5));
    // Cut short: an error on both paths.
    assert!(decode::<Idx>(&bytes[..1]).is_err());
    assert!(decode_word::<Idx>(word, 1).is_err());
}

thread_local! {
    static READ: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

/// An element that reads nothing, counted (in `READ`), and an error after 1000 reads.
struct Counted;

impl<'de> Deserialize<'de> for Counted {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        <()>::deserialize(d)?;
        let n = READ.with(|r| {
            r.set(r.get() + 1);
            r.get()
        });
        if n > 1000 {
            return Err(serde::de::Error::custom("looped"));
        }
        Ok(Counted)
    }
}

#[test]
fn a_garbage_length_in_a_word_is_an_error_at_once_not_a_long_loop() {
    // Six bytes of continuation: the length varint runs into the word's bytes past the
    // input; a sequence of elements that read nothing must not loop over that length.
    let word = 0xA706_FFFF_FFFF_FFFF;
    READ.with(|r| r.set(0));
    assert!(decode_word::<Vec<Counted>>(word, 6).is_err());
    assert_eq!(
        READ.with(|r| r.get()),
        0,
        "elements read after a length past the input"
    );
    assert!(decode::<Vec<()>>(&word.to_le_bytes()[..6]).is_err());
}
