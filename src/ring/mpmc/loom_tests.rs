use super::claim::{GetTry, PutTry};
use super::*;
use loom::sync::Arc;

struct Heap {
    _hdr: Box<MpmcHeader>,
    _slots: Vec<Slot>,
    ring: Mpmc,
}

fn heap_ring(cap: u64, alive: fn(Owner) -> bool) -> Arc<Heap> {
    let mut hdr = Box::new(MpmcHeader::default());
    let mut slots: Vec<Slot> = (0..cap).map(Slot::new).collect();
    let ring = Mpmc {
        hdr: NonNull::from(&mut *hdr),
        slots: NonNull::new(slots.as_mut_ptr()).unwrap(),
        cap,
        alive,
        hook: None,
    };
    Arc::new(Heap {
        _hdr: hdr,
        _slots: slots,
        ring,
    })
}

fn owner(tid: u32) -> Owner {
    Owner::new(tid, 0)
}

fn put_spin(r: &Mpmc, pid: u32, v: u8) {
    loop {
        match r.try_put(owner(pid), 0, &[v], &mut |_| Ok(())) {
            PutTry::Done => return,
            PutTry::Full(Some(b)) => {
                r.reclaim_if_dead(owner(pid), b);
            }
            _ => {}
        }
        loom::thread::yield_now();
    }
}

fn get_spin(r: &Mpmc, pid: u32) -> u8 {
    loop {
        match r.try_get(owner(pid), &mut |_, b, _| b[0]).unwrap() {
            GetTry::Got(v) => return v,
            GetTry::Empty(Some(b)) => {
                r.reclaim_if_dead(owner(pid), b);
            }
            _ => {}
        }
        loom::thread::yield_now();
    }
}

/// Two producers race for the two free slots of a ring: both succeed (no spinning
/// needed), the indexes end right, and a consumer then sees both items once.
#[test]
fn loom_two_producers_race_for_slots() {
    let mut b = loom::model::Builder::new();
    b.preemption_bound = Some(4);
    b.check(|| {
        let h = heap_ring(2, |_| true);
        let h2 = h.clone();
        let p = loom::thread::spawn(move || {
            assert!(matches!(
                h2.ring.try_put(owner(1), 0, &[10], &mut |_| Ok(())),
                PutTry::Done
            ));
        });
        assert!(matches!(
            h.ring.try_put(owner(2), 0, &[20], &mut |_| Ok(())),
            PutTry::Done
        ));
        p.join().unwrap();
        assert_eq!(h.ring.len(), 2);
        let mut got = vec![get_spin(&h.ring, 3), get_spin(&h.ring, 3)];
        got.sort_unstable();
        assert_eq!(got, vec![10, 20]);
    });
}

/// Two consumers race for the two items of a full ring: each item is taken once.
#[test]
fn loom_two_consumers_race_for_items() {
    let mut b = loom::model::Builder::new();
    b.preemption_bound = Some(4);
    b.check(|| {
        let h = heap_ring(2, |_| true);
        put_spin(&h.ring, 3, 1);
        put_spin(&h.ring, 3, 2);
        let h2 = h.clone();
        let c = loom::thread::spawn(move || {
            match h2.ring.try_get(owner(1), &mut |_, b, _| b[0]).unwrap() {
                GetTry::Got(v) => v,
                other => panic!("{other:?}"),
            }
        });
        let mine = match h.ring.try_get(owner(2), &mut |_, b, _| b[0]).unwrap() {
            GetTry::Got(v) => v,
            other => panic!("{other:?}"),
        };
        let mut got = vec![mine, c.join().unwrap()];
        got.sort_unstable();
        assert_eq!(got, vec![1, 2]);
        assert_eq!(h.ring.len(), 0);
    });
}

/// A producer and a consumer pass two items through one slot (the wrap-around):
/// the data written before the Release publish is what the consumer reads, and
/// the producer never overwrites an item not yet taken.
#[test]
fn loom_producer_consumer_through_one_slot() {
    let mut b = loom::model::Builder::new();
    b.preemption_bound = Some(4);
    b.check(|| {
        let h = heap_ring(1, |_| true);
        let h2 = h.clone();
        let p = loom::thread::spawn(move || {
            put_spin(&h2.ring, 1, 1);
            put_spin(&h2.ring, 1, 2);
        });
        assert_eq!(get_spin(&h.ring, 2), 1);
        assert_eq!(get_spin(&h.ring, 2), 2);
        p.join().unwrap();
    });
}

/// A producer "dies" holding the only slot (pid 9 is dead): a consumer and a live
/// producer racing to reclaim it never lose the live item or deliver the dead one.
#[test]
fn loom_dead_writer_is_skipped_once() {
    let mut b = loom::model::Builder::new();
    b.preemption_bound = Some(4);
    b.check(|| {
        let h = heap_ring(1, |o| o.tid() != 9);
        assert!(h.ring.claim_and_abandon(owner(9), false));
        let h2 = h.clone();
        let p = loom::thread::spawn(move || put_spin(&h2.ring, 1, 5));
        assert_eq!(get_spin(&h.ring, 2), 5);
        p.join().unwrap();
        assert_eq!(h.ring.len(), 0);
    });
}
