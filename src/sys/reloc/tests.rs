//! Also the fixtures of the tests of the formats that carry offsets (`process::job`,
//! `pool::entry`).

use std::cell::Cell;

use super::*;

/// Runs a `fn(u32) -> u32` on 4 little-endian bytes; the exit code is the result.
pub(crate) struct Echo;
impl Runner<u32, u32> for Echo {
    fn run(target: fn(u32) -> u32, args: &[u8], _fds: &[RawFd]) -> i32 {
        target(u32::from_le_bytes(args.try_into().unwrap())) as i32
    }
}

/// Calls a `fn(u32) -> u32` on 4 little-endian bytes and appends twice the result.
pub(crate) struct Doubler;
impl Caller<u32, u32> for Doubler {
    fn call(target: fn(u32) -> u32, input: &[u8], out: &mut Vec<u8>) {
        let x = u32::from_le_bytes(input.try_into().unwrap());
        out.extend_from_slice(&(2 * target(x)).to_le_bytes());
    }
}

pub(crate) fn plus_one(x: u32) -> u32 {
    x + 1
}

thread_local! {
    /// Whether `wide_target` ran on this thread (a target runs on its caller's thread).
    pub(crate) static WIDE_RAN: Cell<bool> = const { Cell::new(false) };
    /// Whether `thunk_target` ran on this thread.
    pub(crate) static THUNK_RAN: Cell<bool> = const { Cell::new(false) };
}

/// A target of other types than `plus_one`'s, to pair with its trampoline.
pub(crate) fn wide_target(_: (u64, u64, u64)) -> u32 {
    WIDE_RAN.with(|r| r.set(true));
    0
}

/// A plain `fn()`, as a pool's initializer.
pub(crate) fn thunk_target() {
    THUNK_RAN.with(|r| r.set(true));
}

#[test]
fn type_fingerprints_tell_types_apart() {
    let a = type_fingerprint::<u32, u32, Echo>();
    assert_eq!(a, type_fingerprint::<u32, u32, Echo>());
    assert_ne!(a, type_fingerprint::<u64, u32, Echo>());
    assert_ne!(a, type_fingerprint::<u32, i32, Echo>());
    assert_ne!(a, type_fingerprint::<u32, u32, Doubler>());
    assert_ne!(a, thunk_fingerprint());
}

#[test]
fn entry_points_survive_their_offsets_and_run() {
    let entry = EntryPoint::new::<u32, u32, Echo>(plus_one).unwrap();
    let back = EntryPoint::from_offsets(entry.offsets());
    assert_eq!(back, entry);
    assert_eq!(back.run(&41u32.to_le_bytes(), &[]), Ok(42));
}

#[test]
fn an_entry_point_pairing_a_target_with_another_types_trampoline_is_refused() {
    let entry =
        EntryPoint::mismatched::<u32, u32, Echo, (u64, u64, u64), u32>(wide_target).unwrap();
    assert_eq!(
        entry.run(&41u32.to_le_bytes(), &[]),
        Err(RelocError::TypeMismatch)
    );
    assert!(!WIDE_RAN.with(Cell::get));
}

#[test]
fn offsets_outside_the_executable_are_refused() {
    let entry = EntryPoint::new::<u32, u32, Echo>(plus_one).unwrap();
    let far = Offsets {
        target: i64::MIN / 2,
        ..entry.offsets()
    };
    assert_eq!(
        EntryPoint::from_offsets(far).run(&[0; 4], &[]),
        Err(RelocError::OutsideImage)
    );
    let call = CallEntry::new::<u32, u32, Doubler>(plus_one).unwrap();
    let far = Offsets {
        trampoline: i64::MIN / 2,
        ..call.offsets()
    };
    assert_eq!(
        CallEntry::from_offsets(far).call(&[0; 4], &mut Vec::new()),
        Err(RelocError::OutsideImage)
    );
}

#[test]
fn call_entries_call_their_targets() {
    let e = CallEntry::new::<u32, u32, Doubler>(plus_one).unwrap();
    let mut out = Vec::new();
    CallEntry::from_offsets(e.offsets())
        .call(&20u32.to_le_bytes(), &mut out)
        .unwrap();
    assert_eq!(out, 42u32.to_le_bytes());
    let t = CallEntry::thunk(thunk_target).unwrap();
    CallEntry::from_offsets(t.offsets())
        .call(&[], &mut out)
        .unwrap();
    assert!(THUNK_RAN.with(Cell::get));
}

#[test]
fn a_call_entry_pairing_a_target_with_another_types_trampoline_is_refused() {
    // The trampoline of (u32, u32) with the address of a fn((u64, u64, u64)) -> u32,
    // and the fingerprint of the target's types: the trampoline refuses it.
    let right = CallEntry::new::<u32, u32, Doubler>(plus_one).unwrap();
    let wide = wide_target as fn((u64, u64, u64)) -> u32 as usize;
    let target = Offsets::of(anchor_addr(), wide, 0).unwrap().target;
    let forged = CallEntry::from_offsets(Offsets {
        target,
        fingerprint: type_fingerprint::<(u64, u64, u64), u32, Doubler>(),
        ..right.offsets()
    });
    let mut out = Vec::new();
    assert_eq!(
        forged.call(&20u32.to_le_bytes(), &mut out),
        Err(RelocError::TypeMismatch)
    );
    assert!(out.is_empty());
    assert!(!WIDE_RAN.with(Cell::get));
    // A thunk's trampoline with a task's fingerprint, and the other way round.
    let thunk = CallEntry::thunk(thunk_target).unwrap();
    for bad in [
        Offsets {
            fingerprint: right.offsets().fingerprint,
            ..thunk.offsets()
        },
        Offsets {
            fingerprint: thunk.offsets().fingerprint,
            ..right.offsets()
        },
    ] {
        assert_eq!(
            CallEntry::from_offsets(bad).call(&20u32.to_le_bytes(), &mut out),
            Err(RelocError::TypeMismatch)
        );
    }
}
