use std::cell::Cell;

use super::*;
use crate::sys::reloc::tests::{plus_one, thunk_target, Doubler, THUNK_RAN};

#[test]
fn call_entries_round_trip_and_refuse_corruption() {
    let e = CallEntry::new::<u32, u32, Doubler>(plus_one).unwrap();
    let wire = to_wire(e).unwrap();
    let back = from_wire(&wire).unwrap();
    assert_eq!(back, e);
    let mut out = Vec::new();
    back.call(&20u32.to_le_bytes(), &mut out).unwrap();
    assert_eq!(out, 42u32.to_le_bytes());
    for i in 0..wire.len() {
        let mut w = wire;
        w[i] ^= 0x10;
        assert!(from_wire(&w).is_none(), "byte {i}");
    }
    assert!(from_wire(&wire[..WIRE_LEN - 1]).is_none());
    let t = from_wire(&to_wire(CallEntry::thunk(thunk_target).unwrap()).unwrap());
    t.unwrap().call(&[], &mut out).unwrap();
    assert!(THUNK_RAN.with(Cell::get));
}
