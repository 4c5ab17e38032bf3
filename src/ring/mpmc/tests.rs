use std::time::Instant;

use super::claim::{GetTry, PutTry};
use super::state::{dist, unpack, STAMP_MASK};
use super::wait::{contended, note_contention, CONTENTION, CONTENTION_LIMIT, CONTENTION_WINDOW};
use super::*;
use crate::error::ProtocolError;

struct Mem {
    _buf: Vec<CachePadded<[u8; 128]>>,
}

fn ring(cap: u64) -> (Mem, Mpmc) {
    let n = Mpmc::memory_size(cap) / 128;
    let mut buf: Vec<CachePadded<[u8; 128]>> = (0..n).map(|_| CachePadded([0; 128])).collect();
    let base = NonNull::new(buf.as_mut_ptr().cast::<u8>()).unwrap();
    // SAFETY: the vector is 128-aligned, zeroed, memory_size(cap) bytes, and outlives
    // the ring (returned together; the tests drop the ring first).
    let r = unsafe { Mpmc::from_raw(base, cap) };
    r.init(true);
    (Mem { _buf: buf }, r)
}

const ME: Owner = Owner::new(1, 0);

fn put(r: &Mpmc, v: u8) -> PutTry {
    r.try_put(ME, 1, &[v; 3], &mut |_| Ok(()))
}

fn get(r: &Mpmc) -> Option<Vec<u8>> {
    match r.try_get(ME, &mut |_, b, _| b.to_vec()).unwrap() {
        GetTry::Got(v) => Some(v),
        _ => None,
    }
}

#[test]
fn packing_round_trips_and_distances_wrap() {
    let w = pack(STAMP_MASK, Phase::Reading, 4_194_303);
    assert_eq!(unpack(w), (STAMP_MASK, Phase::Reading, 4_194_303));
    assert_eq!(dist(0, STAMP_MASK), 1);
    assert_eq!(dist(STAMP_MASK, 0), -1);
    assert_eq!(dist(5, 5), 0);
}

#[test]
fn holds_exactly_capacity_items_in_order() {
    for cap in [1u64, 3, 4, 7] {
        let (_m, r) = ring(cap);
        for lap in 0..3u8 {
            for i in 0..cap as u8 {
                assert!(matches!(put(&r, lap * 10 + i), PutTry::Done));
            }
            assert!(matches!(put(&r, 99), PutTry::Full(None)));
            assert_eq!(r.len(), cap);
            for i in 0..cap as u8 {
                assert_eq!(get(&r).unwrap(), vec![lap * 10 + i; 3]);
            }
            assert!(get(&r).is_none());
            assert_eq!(r.len(), 0);
        }
    }
}

#[test]
fn corrupt_length_is_a_protocol_error_and_the_slot_is_consumed() {
    let (_m, r) = ring(2);
    assert!(matches!(put(&r, 1), PutTry::Done));
    assert!(matches!(put(&r, 2), PutTry::Done));
    r.slot(0).meta.store(u64::from(u32::MAX), Ordering::Relaxed);
    assert_eq!(
        r.try_get(ME, &mut |_, b, _| b.to_vec()).unwrap_err(),
        ProtocolError::BadRecord
    );
    assert_eq!(get(&r).unwrap(), vec![2; 3]);
}

#[test]
fn dead_writer_and_dead_reader_slots_are_reclaimed() {
    let (_m, mut r) = ring(2);
    r.set_liveness(|o| o.tid() != 666);
    let dead = Owner::new(666, 0);
    // A producer dies holding a slot: the consumer skips it.
    r.task_add();
    assert!(r.claim_and_abandon(dead, false));
    assert!(matches!(put(&r, 7), PutTry::Done));
    assert_eq!(
        r.get(ME, None, &mut |_, b, _| b.to_vec(), false).unwrap(),
        vec![7; 3]
    );
    assert!(
        r.join(Some(Instant::now())),
        "the lost item's task was counted done"
    );
    // A consumer dies holding a slot: producers reclaim it when full.
    assert!(matches!(put(&r, 8), PutTry::Done));
    assert!(r.claim_and_abandon(dead, true));
    assert!(matches!(put(&r, 9), PutTry::Done));
    r.put(ME, 1, &[10; 3], Some(Instant::now()), &mut |_| Ok(()), true)
        .unwrap();
    assert_eq!(get(&r).unwrap(), vec![9; 3]);
    assert_eq!(get(&r).unwrap(), vec![10; 3]);
}

#[test]
fn collisions_make_one_party_per_role_nap() {
    let (_m, r) = ring(2);
    // A window with few collisions: no nap; with many: a nap.
    CONTENTION.with(|c| c.set((0, 0)));
    assert!(!(0..CONTENTION_WINDOW).any(|_| contended()));
    for _ in 0..CONTENTION_LIMIT {
        note_contention();
    }
    assert!((0..CONTENTION_WINDOW).any(|_| contended()));
    // The nap takes the role's flag and gives it back; a party that finds it taken
    // does not nap.
    r.contention_nap(1, &r.hdr().not_empty, Some(Instant::now()));
    assert_eq!(r.ctl().backoff[1].load(Ordering::Relaxed), 0);
    r.ctl().backoff[0].store(1, Ordering::Relaxed);
    r.contention_nap(0, &r.hdr().not_full, None);
    assert_eq!(r.ctl().backoff[0].load(Ordering::Relaxed), 1);
}

#[test]
fn close_fails_puts_and_fails_gets_once_drained() {
    let (_m, r) = ring(4);
    assert!(matches!(put(&r, 1), PutTry::Done));
    r.close();
    assert!(matches!(put(&r, 2), PutTry::Closed));
    assert_eq!(get(&r).unwrap(), vec![1; 3]);
    assert!(matches!(
        r.try_get(ME, &mut |_, _, _| ()).unwrap(),
        GetTry::Closed
    ));
}

#[test]
fn a_slot_owner_whose_id_was_reused_is_dead() {
    // The pid-reuse case: the slot's owner id names a live task (this very thread), but
    // its recorded start time is another's: the claimer died and its id was reused.
    let (_m, r) = ring(2);
    let me = crate::sync::owner::me();
    let previous = Owner::new(me.tid(), me.start() ^ 1);
    assert!(matches!(put(&r, 1), PutTry::Done));
    assert!(r.claim_and_abandon(previous, true));
    assert!(matches!(put(&r, 2), PutTry::Done));
    // Full: the put needs the abandoned slot, and takes it over.
    r.put(me, 1, &[3; 3], Some(Instant::now()), &mut |_| Ok(()), true)
        .unwrap();
    assert_eq!(get(&r).unwrap(), vec![2; 3]);
    assert_eq!(get(&r).unwrap(), vec![3; 3]);
    // A live owner's slot is not taken: the same claim under our true identity.
    assert!(matches!(put(&r, 4), PutTry::Done));
    assert!(r.claim_and_abandon(me, true));
    assert!(matches!(put(&r, 5), PutTry::Done));
    assert!(matches!(
        r.put(me, 1, &[6; 3], Some(Instant::now()), &mut |_| Ok(()), true),
        Err(PutFail::Full)
    ));
}
