use std::cell::Cell;

use super::*;
use crate::sys::reloc::Caller;

struct Doubler;
impl Caller<u32, u32> for Doubler {
    fn call(target: fn(u32) -> u32, input: &[u8], out: &mut Vec<u8>) {
        let x = u32::from_le_bytes(input.try_into().unwrap());
        out.extend_from_slice(&(2 * target(x)).to_le_bytes());
    }
}

fn plus_one(x: u32) -> u32 {
    x + 1
}

thread_local! {
    /// Whether `thunk_target` ran on this thread (a target runs on its caller's thread).
    static THUNK_RAN: Cell<bool> = const { Cell::new(false) };
}

fn thunk_target() {
    THUNK_RAN.with(|r| r.set(true));
}

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
