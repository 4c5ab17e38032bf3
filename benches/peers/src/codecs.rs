//! Codec comparison for the library's default: postcard vs bitcode (serde and native
//! derive) vs wincode. Encode into a reused buffer, decode from a slice, for the seed's
//! `Msg` enum and for a struct with a `Vec<u8>` and a `String`. Simple timed loops; the
//! median of several runs, in nanoseconds per operation.

use std::hint::black_box;
use std::time::Instant;

use serde::{Deserialize, Serialize};

#[derive(
    Serialize,
    Deserialize,
    bitcode::Encode,
    bitcode::Decode,
    wincode::SchemaWrite,
    wincode::SchemaRead,
    Debug,
    Clone,
    PartialEq,
)]
pub enum Msg {
    Int(u64),
    Done,
}

#[derive(
    Serialize,
    Deserialize,
    bitcode::Encode,
    bitcode::Decode,
    wincode::SchemaWrite,
    wincode::SchemaRead,
    Debug,
    Clone,
    PartialEq,
)]
pub struct Rec {
    pub id: u64,
    pub data: Vec<u8>,
    pub name: String,
}

/// `Rec` with `#[serde(with = "serde_bytes")]` on the bytes: serde codecs then see one
/// byte string instead of a sequence of `u8` (the derive-based codecs ignore the attribute).
#[derive(
    Serialize,
    Deserialize,
    bitcode::Encode,
    bitcode::Decode,
    wincode::SchemaWrite,
    wincode::SchemaRead,
    Debug,
    Clone,
    PartialEq,
)]
pub struct RecBytes {
    pub id: u64,
    #[serde(with = "serde_bytes")]
    pub data: Vec<u8>,
    pub name: String,
}

/// `n` bytes that neither repeat nor compress much (an xorshift stream).
fn bytes(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

pub struct Result1 {
    pub codec: &'static str,
    pub payload: &'static str,
    pub size: usize,
    pub encode_ns: f64,
    pub decode_ns: f64,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// Times `f` over `iters` calls, `runs` times; median ns per call.
fn time_ns(runs: usize, iters: u64, mut f: impl FnMut(u64)) -> f64 {
    // one warm-up pass
    for i in 0..iters.min(10_000) {
        f(i);
    }
    let mut per = Vec::with_capacity(runs);
    for _ in 0..runs {
        let t = Instant::now();
        for i in 0..iters {
            f(i);
        }
        per.push(t.elapsed().as_nanos() as f64 / iters as f64);
    }
    median(per)
}

trait Codec {
    const NAME: &'static str;
    /// Encodes `v`; the encoding is `buf[..returned]`.
    fn encode<T: Both>(v: &T, buf: &mut Vec<u8>) -> usize;
    fn decode<T: Both>(bytes: &[u8]) -> T;
}

/// What every codec under test needs of a payload type.
trait Both:
    Serialize
    + for<'de> Deserialize<'de>
    + bitcode::Encode
    + for<'a> bitcode::Decode<'a>
    + wincode::SchemaWrite<wincode::config::DefaultConfig, Src = Self>
    + for<'de> wincode::SchemaRead<'de, wincode::config::DefaultConfig, Dst = Self>
{
}
impl Both for Msg {}
impl Both for Rec {}
impl Both for RecBytes {}

struct Postcard;
impl Codec for Postcard {
    const NAME: &'static str = "postcard 1 (serde, to_extend Vec)";
    fn encode<T: Both>(v: &T, buf: &mut Vec<u8>) -> usize {
        buf.clear();
        let taken = std::mem::take(buf);
        *buf = postcard::to_extend(v, taken).expect("postcard encode");
        buf.len()
    }
    fn decode<T: Both>(bytes: &[u8]) -> T {
        postcard::from_bytes(bytes).expect("postcard decode")
    }
}

/// postcard writing into a preallocated slice, as a ring writer would (encode in place).
struct PostcardSlice;
impl Codec for PostcardSlice {
    const NAME: &'static str = "postcard 1 (serde, to_slice)";
    fn encode<T: Both>(v: &T, buf: &mut Vec<u8>) -> usize {
        if buf.len() < 64 * 1024 {
            buf.resize(64 * 1024, 0); // once; later calls reuse it
        }
        postcard::to_slice(v, &mut buf[..])
            .expect("postcard encode")
            .len()
    }
    fn decode<T: Both>(bytes: &[u8]) -> T {
        postcard::from_bytes(bytes).expect("postcard decode")
    }
}

struct BitcodeSerde;
impl Codec for BitcodeSerde {
    const NAME: &'static str = "bitcode 0.6 (serde)";
    fn encode<T: Both>(v: &T, buf: &mut Vec<u8>) -> usize {
        *buf = bitcode::serialize(v).expect("bitcode encode");
        buf.len()
    }
    fn decode<T: Both>(bytes: &[u8]) -> T {
        bitcode::deserialize(bytes).expect("bitcode decode")
    }
}

struct BitcodeNative;
impl Codec for BitcodeNative {
    const NAME: &'static str = "bitcode 0.6 (derive)";
    fn encode<T: Both>(v: &T, buf: &mut Vec<u8>) -> usize {
        *buf = bitcode::encode(v);
        buf.len()
    }
    fn decode<T: Both>(bytes: &[u8]) -> T {
        bitcode::decode(bytes).expect("bitcode decode")
    }
}

struct Wincode;
impl Codec for Wincode {
    const NAME: &'static str = "wincode 0.6 (derive)";
    fn encode<T: Both>(v: &T, buf: &mut Vec<u8>) -> usize {
        buf.clear();
        wincode::serialize_into(&mut *buf, v).expect("wincode encode");
        buf.len()
    }
    fn decode<T: Both>(bytes: &[u8]) -> T {
        wincode::deserialize(bytes).expect("wincode decode")
    }
}

fn one<C: Codec, T: Both + Clone + PartialEq + std::fmt::Debug>(
    payload: &'static str,
    make: impl Fn(u64) -> T,
    runs: usize,
    iters: u64,
) -> Result1 {
    let mut buf = Vec::with_capacity(4096);
    let sample = make(7);
    let size = C::encode(&sample, &mut buf);
    assert_eq!(
        C::decode::<T>(&buf[..size]),
        sample,
        "{} round trip",
        C::NAME
    );
    let values: Vec<T> = (0..64).map(&make).collect();
    let encode_ns = time_ns(runs, iters, |i| {
        let n = C::encode(black_box(&values[(i & 63) as usize]), &mut buf);
        black_box((&buf, n));
    });
    let encoded: Vec<Vec<u8>> = values
        .iter()
        .map(|v| {
            let mut b = Vec::new();
            let n = C::encode(v, &mut b);
            b.truncate(n);
            b
        })
        .collect();
    let decode_ns = time_ns(runs, iters, |i| {
        let v: T = C::decode(black_box(&encoded[(i & 63) as usize]));
        black_box(v);
    });
    Result1 {
        codec: C::NAME,
        payload,
        size,
        encode_ns,
        decode_ns,
    }
}

fn payload_set<C: Codec>(runs: usize, scale: u64, out: &mut Vec<Result1>) {
    out.push(one::<C, Msg>(
        "Msg::Int(u64)",
        |i| Msg::Int(i * 1_000_003),
        runs,
        2_000_000 * scale,
    ));
    out.push(one::<C, Msg>(
        "Msg::Done",
        |_| Msg::Done,
        runs,
        2_000_000 * scale,
    ));
    for (n, iters) in [(64usize, 500_000u64), (4096, 50_000)] {
        let name = |k: u64| format!("worker-{k:09}");
        let label: &'static str = if n == 64 {
            "Rec{u64, Vec<u8> 64 B, String 16 B}"
        } else {
            "Rec{u64, Vec<u8> 4 KiB, String 16 B}"
        };
        out.push(one::<C, Rec>(
            label,
            |i| Rec {
                id: i,
                data: bytes(n, i),
                name: name(i),
            },
            runs,
            iters * scale,
        ));
        let label: &'static str = if n == 64 {
            "same, serde_bytes on the Vec<u8>, 64 B"
        } else {
            "same, serde_bytes on the Vec<u8>, 4 KiB"
        };
        out.push(one::<C, RecBytes>(
            label,
            |i| RecBytes {
                id: i,
                data: bytes(n, i),
                name: name(i),
            },
            runs,
            iters * scale,
        ));
    }
}

/// Runs every codec on every payload. `scale` multiplies the loop lengths (0 = smoke test).
pub fn run_all(runs: usize, scale: u64) -> Vec<Result1> {
    let scale = scale.max(1);
    let mut out = Vec::new();
    eprintln!("codecs: postcard");
    payload_set::<Postcard>(runs, scale, &mut out);
    eprintln!("codecs: postcard (to_slice)");
    payload_set::<PostcardSlice>(runs, scale, &mut out);
    eprintln!("codecs: bitcode (serde)");
    payload_set::<BitcodeSerde>(runs, scale, &mut out);
    eprintln!("codecs: bitcode (derive)");
    payload_set::<BitcodeNative>(runs, scale, &mut out);
    eprintln!("codecs: wincode");
    payload_set::<Wincode>(runs, scale, &mut out);
    out
}
