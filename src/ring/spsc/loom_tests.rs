use std::ptr::NonNull;

use super::*;
use crate::sync::waiter::Wait;
use loom::sync::Arc;

#[repr(C)]
struct Mem {
    hdr: SpscHeader,
    data: [u8; 64],
}

/// Owns the loom-constructed control block and the data bytes the ring points into.
struct Shared {
    mem: *mut Mem,
    ring: Spsc,
}
// SAFETY: the ring's memory is atomics plus bytes handed between the two threads by
// the ring protocol under test; the Box is freed only in Drop, after both threads end.
unsafe impl Send for Shared {}
// SAFETY: as above.
unsafe impl Sync for Shared {}

impl Drop for Shared {
    fn drop(&mut self) {
        // SAFETY: `mem` came from Box::into_raw in `new` and is freed once.
        drop(unsafe { Box::from_raw(self.mem) });
    }
}

fn new() -> Arc<Shared> {
    let mem = Box::into_raw(Box::new(Mem {
        hdr: SpscHeader::default(),
        data: [0; 64],
    }));
    let base = NonNull::new(mem.cast::<u8>()).expect("box pointer");
    // SAFETY: `mem` is a live, 128-aligned (SpscHeader's alignment) block of
    // CONTROL_SIZE + 64 bytes (repr(C): data right after the header), freed only
    // when Shared drops; an initialized header is an empty ring.
    let ring = unsafe { Spsc::from_raw(base, 64) };
    Arc::new(Shared { mem, ring })
}

/// Publish and consume across the wrap (records of 16, 16, 16, 8 and 16 bytes in a
/// 64-byte ring force a pad and waits for room), with the reader parking and the
/// writer waking it: every message arrives whole and in order, nobody sleeps
/// through a wake-up (a lost one would spin loom's futex model forever).
const LENS: [usize; 5] = [8, 8, 8, 0, 8];

#[test]
fn publish_consume_and_wake_across_the_wrap() {
    let mut model = loom::model::Builder::new();
    model.preemption_bound = Some(2);
    model.check(|| {
        let s = new();
        let s2 = s.clone();
        let writer = loom::thread::spawn(move || {
            let r = &s2.ring;
            for (i, len) in LENS.into_iter().enumerate() {
                let msg = vec![i as u8 + 1; len];
                let g = r.acquire_writer(None, || false).expect("writer");
                r.write_record(&g, RecKind::Msg, &[&msg], None, || false)
                    .expect("room");
            }
        });
        let r = &s.ring;
        let mut got = Vec::new();
        while got.len() < LENS.len() {
            match r.peek().expect("valid records") {
                Some(rec) => {
                    let mut v = Vec::new();
                    r.read_into(&rec, 0, rec.len, &mut v);
                    r.consume(&rec);
                    got.push(v);
                }
                None => {
                    assert_eq!(r.wait_readable(None, || false, None), Wait::Ready);
                }
            }
        }
        writer.join().unwrap();
        let expect: Vec<Vec<u8>> = LENS
            .iter()
            .enumerate()
            .map(|(i, &len)| vec![i as u8 + 1; len])
            .collect();
        assert_eq!(got, expect);
    });
}

/// The tiny fast path's stops (`Spsc::set_limit`'s Dekker pair): a limit a writer
/// computes while another process closes the fast path, or drops a reader end, never
/// outlives the flag: once both are done, the fast path sends nothing.
#[test]
fn a_closed_or_poisoned_fast_path_stays_shut_whatever_limit_a_writer_stores() {
    for close in [true, false] {
        loom::model(move || {
            let s = new();
            drop(s.ring.acquire_writer(None, || false).expect("writer"));
            let s2 = s.clone();
            let other = loom::thread::spawn(move || {
                if close {
                    s2.ring.close_fast_path();
                } else {
                    s2.ring.note_reader_drop();
                }
            });
            // A send whose cold path computes a limit, racing with the other thread.
            let _ = s.ring.try_send_tiny(1, 1, false);
            other.join().unwrap();
            assert_eq!(s.ring.hdr().w.limit.load(Ordering::Relaxed), NO_ROOM);
            assert!(!s.ring.try_send_tiny(2, 1, false));
        });
    }
}
