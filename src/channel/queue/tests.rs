use super::shared::KIND_INLINE;
use super::*;
use crate::codec;
use crate::error::ProtocolError;

/// Bytes of memory the queue's items file holds.
fn allocated<T>(q: &Queue<T>) -> u64 {
    q.shared.items.allocated()
}

#[test]
fn handles_are_send_and_sync() {
    fn check<X: Send + Sync + Clone>() {}
    check::<Queue<String>>();
    check::<JoinableQueue<Vec<u8>>>();
}

#[test]
fn inline_and_side_items_round_trip_in_order() {
    let q = Queue::<Vec<u8>>::with_capacity(8).unwrap();
    let sizes = [0usize, 1, INLINE - 2, INLINE, INLINE + 1, 5000, 1 << 20];
    for (i, &n) in sizes.iter().enumerate() {
        q.put(&vec![i as u8; n]).unwrap();
    }
    assert!(
        allocated(&q) >= 1 << 20,
        "large items live in the items file"
    );
    for (i, &n) in sizes.iter().enumerate() {
        assert_eq!(q.get().unwrap(), vec![i as u8; n]);
    }
    assert_eq!(allocated(&q), 0, "consumed items' pages are freed");
}

#[test]
fn corrupt_slots_are_errors_and_the_queue_goes_on() {
    let q = Queue::<Vec<u8>>::with_capacity(8).unwrap();
    let ring = &q.shared.ring;
    // Unknown kind.
    q.put(&vec![1]).unwrap();
    ring.poke_meta(0, (77 << 32) | 2);
    assert!(matches!(
        q.get(),
        Err(Error::Protocol(ProtocolError::BadRecord))
    ));
    // Length beyond the slot.
    q.put(&vec![2]).unwrap();
    ring.poke_meta(1, (u64::from(KIND_INLINE) << 32) | 4096);
    assert_eq!(q.try_get(), Err(TryGetError::Protocol));
    // A large item whose descriptor claims a shorter length: a codec error, and its
    // pages are freed all the same.
    q.put(&vec![3; 1000]).unwrap();
    for (i, b) in 5u64.to_le_bytes().iter().enumerate() {
        ring.poke_data(2, i, *b);
    }
    assert!(matches!(q.get(), Err(Error::Codec(_))));
    assert_eq!(allocated(&q), 0);
    // A large item whose descriptor claims more than the limit: refused, pages freed.
    q.put(&vec![4; 1000]).unwrap();
    ring.poke_data(3, 7, 0x01);
    assert!(matches!(
        q.get(),
        Err(Error::Protocol(ProtocolError::TooLarge { .. }))
    ));
    assert_eq!(allocated(&q), 0);
    // Bytes that are not a T.
    q.put(&vec![5]).unwrap();
    ring.poke_data(4, 0, 0xFF);
    assert!(matches!(q.get(), Err(Error::Codec(_))));
    q.put(&vec![6]).unwrap();
    assert_eq!(q.get().unwrap(), vec![6]);
}

#[test]
fn zero_capacity_is_an_error() {
    assert!(matches!(
        Queue::<u8>::with_capacity(0),
        Err(Error::InvalidState(_))
    ));
}

#[test]
fn serializing_outside_a_handoff_is_a_handle_error() {
    let q = Queue::<u8>::new().unwrap();
    assert!(codec::encode(&q).is_err());
}

#[test]
fn task_done_too_often_is_an_error() {
    let q = JoinableQueue::<u8>::with_capacity(1).unwrap();
    assert!(q.task_done().is_err());
    q.put(&1).unwrap();
    assert!(matches!(
        q.join_timeout(Duration::from_millis(10)),
        Err(Error::Timeout)
    ));
    q.get().unwrap();
    q.task_done().unwrap();
    q.join().unwrap();
}
