//! The default codec (postcard, through `shmproc::codec`) on the payloads the pipes
//! carry: the seed's `Msg`, a `u64`, a small struct with a string, and 1 KiB of bytes.
//! The comparison with other codecs (bitcode, wincode) lives in the peers crate:
//! `cargo run --release -p shmproc-peers -- codecs`.
//!
//! Run: `cargo bench --bench codec`. Under `cargo test` every bench runs once.

mod common;

use std::hint::black_box;
use std::time::Duration;

use common::Msg;
use criterion::Criterion;
use serde::{de::DeserializeOwned, Deserialize, Serialize};

#[derive(Serialize, Deserialize, PartialEq, Debug)]
struct Record {
    id: u64,
    name: String,
    score: f64,
    tags: Vec<u32>,
}

fn pair<T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug>(
    c: &mut Criterion,
    name: &str,
    v: &T,
) {
    let mut g = c.benchmark_group(format!("codec/{name}"));
    let mut buf = Vec::new();
    g.bench_function("encode", |b| {
        b.iter(|| {
            buf.clear();
            shmproc::codec::encode_into(black_box(v), &mut buf).unwrap();
        })
    });
    let bytes = shmproc::codec::encode(v).unwrap();
    g.bench_function("decode", |b| {
        b.iter(|| shmproc::codec::decode::<T>(black_box(&bytes)).unwrap())
    });
    assert_eq!(&shmproc::codec::decode::<T>(&bytes).unwrap(), v);
    g.finish();
}

fn main() {
    shmproc::init();
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(1))
        .configure_from_args();
    pair(&mut c, "seed_Msg", &Msg::Int(123_456));
    pair(&mut c, "u64", &u64::MAX);
    pair(
        &mut c,
        "struct",
        &Record {
            id: 42,
            name: "a worker's result".into(),
            score: 0.25,
            tags: vec![1, 2, 3, 4],
        },
    );
    pair(&mut c, "vec_u8_1KiB", &vec![7u8; 1024]);
    c.final_summary();
}
