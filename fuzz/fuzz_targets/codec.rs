//! Any bytes decoded as a range of types by the crate's deserializer, three ways (a
//! slice, the front of a stack buffer, the low bytes of a register), against
//! `postcard::from_bytes`, the reference: all fail, or all succeed with the same value;
//! never a panic.
#![no_main]
use std::collections::BTreeMap;
use std::fmt::Debug;

use libfuzzer_sys::fuzz_target;
use serde::{de::DeserializeOwned, Deserialize};

#[derive(Deserialize, Debug)]
#[allow(dead_code)] // read through Debug
enum Kind {
    Unit,
    Newtype(i8),
    Tuple(i16, u16),
    Struct { a: i32, b: u32, c: Option<bool> },
    Nested(Box<Option<Kind>>),
}

#[derive(Deserialize, Debug)]
#[allow(dead_code)] // read through Debug
struct Mix {
    a: u128,
    b: i64,
    c: char,
    d: String,
    e: Vec<Kind>,
    f: (f32, f64),
    g: BTreeMap<u16, Option<u8>>,
}

fn same<T: DeserializeOwned + Debug>(data: &[u8]) {
    // Debug text: equal values print the same (a NaN is not equal to itself).
    let show = |r: Option<T>| r.map(|v| format!("{v:?}"));
    let want = show(postcard::from_bytes::<T>(data).ok());
    assert_eq!(show(shmproc::codec::decode::<T>(data).ok()), want, "decode");
    for fill in [0, 0x80, 0xff] {
        if let Some(r) = shmproc::fuzzing::decode_small::<T>(data, fill) {
            assert_eq!(show(r.ok()), want, "decode_small");
        }
        if let Some(r) = shmproc::fuzzing::decode_word::<T>(data, fill) {
            assert_eq!(show(r.ok()), want, "decode_word");
        }
    }
}

fuzz_target!(|data: &[u8]| {
    same::<u16>(data);
    same::<u32>(data);
    same::<u64>(data);
    same::<i128>(data);
    same::<bool>(data);
    same::<char>(data);
    same::<String>(data);
    same::<Option<u64>>(data);
    same::<Vec<u32>>(data);
    same::<Kind>(data);
    same::<Mix>(data);
});
