use std::time::Instant;

use super::read::STREAM_BYTES;
use super::record::header_word;
use super::*;
use crate::error::ProtocolError;
use crate::sync::owner::Owner;
use crate::sync::waiter::Wait;

#[repr(C, align(128))]
struct Mem([u8; CONTROL_SIZE + 1024]);

fn ring() -> (Box<Mem>, Spsc) {
    let mut m = Box::new(Mem([0; CONTROL_SIZE + 1024]));
    let base = NonNull::new(m.0.as_mut_ptr()).unwrap();
    // The fast paths' wake-ups rely on `membarrier`: register for it first, as a
    // channel does.
    crate::sync::waiter::register_process();
    // SAFETY: the boxed memory is aligned, zeroed, large enough and outlives the ring
    // (returned together; the test drops the ring first).
    let r = unsafe { Spsc::from_raw(base, 1024) };
    (m, r)
}

/// A [`ring`] biased to this thread, the tiny fast path's precondition; `None` where
/// `membarrier` does not work, after checking that the ring is then never biased and
/// its fast path never sends.
fn biased_ring() -> Option<(Box<Mem>, Spsc)> {
    let (m, r) = ring();
    drop(r.acquire_writer(None, || false).unwrap());
    if r.light() {
        return Some((m, r));
    }
    assert_eq!(r.hdr().own.owner.load(Ordering::Relaxed), SHARED);
    assert!(!r.try_send_tiny(1, 1, false));
    None
}

fn recv_all(r: &Spsc) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    while let Some(rec) = r.peek().unwrap() {
        let mut v = Vec::new();
        r.read_into(&rec, 0, rec.len, &mut v);
        r.consume(&rec);
        out.push(v);
    }
    out
}

#[test]
fn records_round_trip_across_the_wrap() {
    let (_m, r) = ring();
    let mut expect = Vec::new();
    for round in 0..200u32 {
        let msg: Vec<u8> = (0..(round % 61) as u8).collect();
        let g = r.acquire_writer(None, || false).unwrap();
        r.write_record(&g, RecKind::Msg, &[&msg], None, || false)
            .unwrap();
        drop(g);
        expect.push(msg);
        if round % 3 == 0 {
            assert_eq!(recv_all(&r), std::mem::take(&mut expect));
        }
    }
    assert_eq!(recv_all(&r), expect);
}

#[test]
fn full_ring_refuses_without_losing() {
    let (_m, r) = ring();
    let g = r.acquire_writer(None, || false).unwrap();
    let msg = [7u8; 100];
    let mut sent = 0;
    while r.reserve(&g, record_size(100)).is_some() {
        r.write_record(&g, RecKind::Msg, &[&msg], None, || false)
            .unwrap();
        sent += 1;
    }
    let err = r.write_record(&g, RecKind::Msg, &[&msg], Some(Instant::now()), || false);
    assert_eq!(err, Err(Wait::TimedOut));
    drop(g);
    let got = recv_all(&r);
    assert_eq!(got.len(), sent);
    assert!(got.iter().all(|m| m == &msg));
}

#[test]
fn corrupt_header_is_a_protocol_error() {
    let (mut m, r) = ring();
    let g = r.acquire_writer(None, || false).unwrap();
    r.write_record(&g, RecKind::Msg, &[b"hello, world"], None, || false)
        .unwrap();
    drop(g);
    // A hostile peer claims a huge length.
    m.0[CONTROL_SIZE..CONTROL_SIZE + 4].copy_from_slice(&u32::MAX.to_ne_bytes());
    assert_eq!(r.peek().unwrap_err(), ProtocolError::BadRecord);
    // ... or a bad tag.
    m.0[CONTROL_SIZE..CONTROL_SIZE + 4].copy_from_slice(&5u32.to_ne_bytes());
    m.0[CONTROL_SIZE + 4] = 0x99;
    assert_eq!(r.peek().unwrap_err(), ProtocolError::BadRecord);
}

/// The word at the reader's position: zero whenever nothing is published there.
fn word_at_head(r: &Spsc) -> u64 {
    r.word(r.hdr().r.head.load(Ordering::Relaxed) & r.mask)
        .load(Ordering::Relaxed)
}

/// Fills every data word but the first with a well-formed tiny record ("stale"), as
/// earlier laps leave free space: a reader that looked anywhere but where records
/// lead it would take it for a message.
fn fill_with_stale_records(m: &mut Mem) {
    let stale = record::tiny_word(u64::from_le_bytes(*b"stale\0\0\0"), 5).to_ne_bytes();
    for w in m.0[CONTROL_SIZE + 8..].chunks_exact_mut(8) {
        w.copy_from_slice(&stale);
    }
}

#[test]
fn stale_bytes_in_free_space_are_never_read_through_laps_of_every_record_kind() {
    let (mut m, r) = ring();
    fill_with_stale_records(&mut m);
    let mut small = [0u8; 64];
    for round in 0..300u32 {
        let g = r.acquire_writer(None, || false).unwrap();
        // Tiny (0..=6), whole (7..), and pieces of a stream; ~3 laps of 1 KiB.
        let len = (round * 7) % 90;
        let msg: Vec<u8> = (0..len).map(|i| (i as u8) ^ 0x5a | 1).collect();
        let kind = if round % 11 == 0 {
            RecKind::Chunk
        } else {
            RecKind::Msg
        };
        if round % 5 == 0 && len <= 6 {
            assert!(r.try_write_tiny(
                &g,
                u64::from_le_bytes({
                    let mut w = [0u8; 8];
                    w[..msg.len()].copy_from_slice(&msg);
                    w
                }),
                len as u64
            ));
        } else if round % 3 == 0 && kind == RecKind::Msg && len <= 64 {
            assert!(r.try_write_small(&g, &msg));
        } else {
            r.write_record(&g, kind, &[&msg], None, || false).unwrap();
        }
        drop(g);
        let got = if round % 2 == 0 {
            r.take_small(&mut small).map(|n| small[..n].to_vec())
        } else {
            None
        };
        let got = got.unwrap_or_else(|| {
            let rec = r.peek().unwrap().unwrap();
            let mut v = Vec::new();
            r.read_into(&rec, 0, rec.len, &mut v);
            r.consume(&rec);
            v
        });
        assert_eq!(got, msg, "round {round}");
        // The writer zeroed the word after its record: the reader finds nothing more.
        assert_eq!(r.peek().unwrap().map(|rec| rec.len), None);
        assert_eq!(word_at_head(&r), 0, "round {round}");
    }
}

#[test]
fn a_writer_finds_room_for_the_largest_record_whenever_everything_is_read() {
    // The writer keeps a word free after each record (the next header slot): a writer
    // must still find room for the largest record whenever everything written has been
    // read, even if the reader never looked at an empty ring.
    let (_m, r) = ring();
    let mut out = [0u8; 64];
    for round in 0..2000u64 {
        let len = (round * 37) % (r.max_record() - REC_HDR + 1);
        let msg = vec![(round % 251) as u8 + 1; len as usize];
        let g = r.acquire_writer(None, || false).unwrap();
        r.write_record(&g, RecKind::Msg, &[&msg], Some(Instant::now()), || false)
            .unwrap_or_else(|e| panic!("round {round}, {len} bytes: {e:?}"));
        drop(g);
        match r.take_small(&mut out) {
            Some(n) => assert_eq!(&out[..n], &msg[..]),
            None => {
                let rec = r.peek().unwrap().unwrap();
                let mut v = Vec::new();
                r.read_into(&rec, 0, rec.len, &mut v);
                r.consume(&rec);
                assert_eq!(v, msg);
            }
        }
    }
}

#[test]
fn an_abandoned_encode_is_never_read() {
    let (m, r) = ring();
    let g = r.acquire_writer(None, || false).unwrap();
    let (off, window) = r.reserve(&g, 64).unwrap();
    {
        let mut sink = r.sink(&g, off, window - REC_HDR);
        assert!(sink.extend(&[0xEE; 40]));
        assert!(sink.varint(u64::MAX));
        assert!(m.0[CONTROL_SIZE..].iter().any(|&b| b != 0));
        // Dropped without commit_sink: the encoder gave up (or a Serialize panicked).
    }
    assert_eq!(
        r.peek().unwrap().map(|rec| rec.len),
        None,
        "nothing published"
    );
    // A committed sink's bytes stay, and come out whole.
    let (off, window) = r.reserve(&g, 64).unwrap();
    let mut sink = r.sink(&g, off, window - REC_HDR);
    assert!(sink.extend(b"kept bytes"));
    r.commit_sink(&g, off, RecKind::Msg, sink);
    drop(g);
    assert_eq!(recv_all(&r), vec![b"kept bytes".to_vec()]);
    assert_eq!(word_at_head(&r), 0);
}

#[test]
fn a_reader_that_died_inside_a_receive_leaves_its_message_to_the_next() {
    let (_m, r) = ring();
    let g = r.acquire_writer(None, || false).unwrap();
    for msg in [&b"first message"[..], b"second message", b"third"] {
        r.write_record(&g, RecKind::Msg, &[msg], None, || false)
            .unwrap();
    }
    drop(g);
    // A reader finds the first record and dies before handing it back (`head` is the
    // only position, moved when a message is consumed): the next reader gets it, whole.
    let rec = r.peek().unwrap().unwrap();
    assert_eq!(rec.len, 13);
    assert_eq!(
        recv_all(&r),
        vec![
            b"first message".to_vec(),
            b"second message".to_vec(),
            b"third".to_vec()
        ]
    );
    assert_eq!(word_at_head(&r), 0);
}

#[test]
fn a_writer_taking_over_from_a_dead_one_repairs_tail_and_ignores_its_leftovers() {
    let (m, r) = ring();
    let g = r.acquire_writer(None, || false).unwrap();
    r.write_record(&g, RecKind::Msg, &[b"counted"], None, || false)
        .unwrap();
    let tail = r.hdr().w.tail.load(Ordering::Relaxed);
    // Published, but the writer died before counting it in `tail`...
    r.write_record(&g, RecKind::Msg, &[b"not counted"], None, || false)
        .unwrap();
    r.hdr().w.tail.store(tail, Ordering::Relaxed);
    let end = tail + record_size(11);
    // ... and after writing half of a third record it never published.
    let garbage = CONTROL_SIZE + (end + REC_HDR) as usize;
    let mut m = m;
    m.0[garbage..garbage + 100].fill(0xA7);
    drop(g);
    r.hdr().own.owner.store(SHARED, Ordering::Relaxed);
    let g = r.acquire_writer(None, || false).unwrap();
    assert_eq!(
        r.hdr().w.tail.load(Ordering::Relaxed),
        end,
        "tail walked past it"
    );
    r.write_record(&g, RecKind::Msg, &[b"after"], None, || false)
        .unwrap();
    drop(g);
    assert_eq!(
        recv_all(&r),
        vec![
            b"counted".to_vec(),
            b"not counted".to_vec(),
            b"after".to_vec()
        ]
    );
    assert_eq!(word_at_head(&r), 0);
}

#[test]
fn a_writer_taking_over_after_the_reader_consumed_uncounted_records_writes_after_them() {
    // The dead writer published two records without counting them in `tail`, and the
    // reader consumed one of them: the next writer goes on after the second, not at
    // `tail` (behind the reader) nor at `head` (over the unread one).
    let (_m, r) = ring();
    let g = r.acquire_writer(None, || false).unwrap();
    let tail = r.hdr().w.tail.load(Ordering::Relaxed);
    for msg in [&b"uncounted one"[..], b"uncounted two"] {
        r.write_record(&g, RecKind::Msg, &[msg], None, || false)
            .unwrap();
    }
    r.hdr().w.tail.store(tail, Ordering::Relaxed);
    drop(g);
    let rec = r.peek().unwrap().unwrap();
    r.consume(&rec);
    r.hdr().own.owner.store(SHARED, Ordering::Relaxed);
    let g = r.acquire_writer(None, || false).unwrap();
    assert_eq!(
        r.hdr().w.tail.load(Ordering::Relaxed),
        tail + 2 * record_size(13)
    );
    r.write_record(&g, RecKind::Msg, &[b"after"], None, || false)
        .unwrap();
    drop(g);
    assert_eq!(
        recv_all(&r),
        vec![b"uncounted two".to_vec(), b"after".to_vec()]
    );
}

#[test]
fn a_pad_at_offset_zero_is_a_protocol_error_not_an_endless_loop() {
    // Found by the property tests: with a garbage `head` the reader cannot zero what
    // it skips, and a pad spanning the whole ring was found again on every turn.
    let (mut m, r) = ring();
    m.0[CONTROL_SIZE..CONTROL_SIZE + 8]
        .copy_from_slice(&header_word(RecKind::Pad, 1024 - REC_HDR).to_ne_bytes());
    r.hdr().r.head.store(1 << 40, Ordering::Relaxed);
    assert_eq!(r.peek().unwrap_err(), ProtocolError::BadRecord);
}

#[test]
fn take_small_takes_only_whole_small_messages_and_leaves_the_rest_to_peek() {
    let (_m, r) = ring();
    let mut out = [0u8; 16];
    assert_eq!(r.take_small(&mut out), None, "empty ring");
    let g = r.acquire_writer(None, || false).unwrap();
    // 0..=16 bytes are small; 17 bytes and stream pieces are not.
    for n in 0..=17u8 {
        let msg: Vec<u8> = (0..n).map(|i| i ^ n).collect();
        r.write_record(&g, RecKind::Msg, &[&msg], None, || false)
            .unwrap();
    }
    r.write_record(
        &g,
        RecKind::Begin,
        &[&3u64.to_ne_bytes(), b"abc"],
        None,
        || false,
    )
    .unwrap();
    drop(g);
    for n in 0..=16u8 {
        let len = r.take_small(&mut out).expect("a small message");
        let want: Vec<u8> = (0..n).map(|i| i ^ n).collect();
        assert_eq!(&out[..len], &want[..]);
    }
    assert_eq!(r.take_small(&mut out), None, "17 bytes: the general path");
    let rec = r.peek().unwrap().unwrap();
    assert_eq!((rec.kind, rec.len), (RecKind::Msg, 17));
    r.consume(&rec);
    assert_eq!(r.take_small(&mut out), None, "a stream's first piece");
    assert_eq!(r.peek().unwrap().unwrap().kind, RecKind::Begin);

    // A corrupt header is not taken (peek reports it).
    let (mut m2, r2) = ring();
    let g = r2.acquire_writer(None, || false).unwrap();
    r2.write_record(&g, RecKind::Msg, &[b"hi there"], None, || false)
        .unwrap();
    drop(g);
    m2.0[CONTROL_SIZE..CONTROL_SIZE + 4].copy_from_slice(&1000u32.to_ne_bytes());
    assert_eq!(r2.take_small(&mut [0u8; 2048]), None);
    assert_eq!(r2.peek().unwrap_err(), ProtocolError::BadRecord);
}

/// Fills the free space after the tail with garbage, as a writer that died inside a
/// send may have left it; returns the garbage's byte range in `m`.
fn scribble_free_space(m: &mut Mem, r: &Spsc) -> std::ops::Range<usize> {
    let tail = r.hdr().w.tail.load(Ordering::Relaxed);
    let from = CONTROL_SIZE + (tail + REC_HDR) as usize;
    m.0[from..from + 100].fill(0xA7);
    from..from + 100
}

#[test]
fn a_biased_writer_whose_id_was_reused_is_dead_inside_its_send() {
    // The pid-reuse case: the owner's thread id names a live task (this very thread),
    // but another start time: it is not the writer that announced the send.
    let (mut m, r) = ring();
    let me = crate::sync::owner::me();
    let previous = Owner::new(me.tid(), me.start() ^ 1);
    r.hdr().own.owner.store(previous.tag(), Ordering::Relaxed);
    r.hdr().own.in_send.store(1, Ordering::Relaxed);
    let garbage = scribble_free_space(&mut m, &r);
    let deadline = Some(Instant::now() + std::time::Duration::from_secs(30));
    let g = r.acquire_writer(deadline, || false).expect("the role");
    assert_eq!(r.hdr().own.owner.load(Ordering::Relaxed), SHARED);
    assert_eq!(r.hdr().own.in_send.load(Ordering::Relaxed), 0);
    assert!(m.0[garbage].iter().all(|&b| b == 0xA7), "left as it was");
    r.write_record(&g, RecKind::Msg, &[b"after"], None, || false)
        .unwrap();
    drop(g);
    assert_eq!(recv_all(&r), vec![b"after".to_vec()]);
}

#[test]
fn a_shared_mode_lock_holder_whose_id_was_reused_is_a_dead_writer() {
    let (mut m, r) = ring();
    let me = crate::sync::owner::me();
    r.hdr().own.owner.store(SHARED, Ordering::Relaxed);
    let previous = Owner::new(me.tid(), me.start() ^ 1);
    assert!(r.hdr().own.lock.try_lock(previous).is_ok());
    let garbage = scribble_free_space(&mut m, &r);
    let deadline = Some(Instant::now() + std::time::Duration::from_secs(30));
    let g = r.acquire_writer(deadline, || false).expect("the role");
    assert!(m.0[garbage].iter().all(|&b| b == 0xA7), "left as it was");
    r.write_record(&g, RecKind::Msg, &[b"after"], None, || false)
        .unwrap();
    drop(g);
    assert!(!r.hdr().own.lock.is_locked());
    assert_eq!(recv_all(&r), vec![b"after".to_vec()]);
}

#[test]
fn a_live_shared_mode_holder_makes_writers_time_out_or_abort() {
    let (_m, r) = ring();
    r.hdr().own.owner.store(SHARED, Ordering::Relaxed);
    // Another live process holds the lock: our parent, with its true start time.
    let ppid = std::os::unix::process::parent_id();
    let (_, start) = crate::sys::task_state(ppid).expect("the parent runs");
    assert!(r
        .hdr()
        .own
        .lock
        .try_lock(Owner::new(ppid, start as u32))
        .is_ok());
    assert!(matches!(
        r.acquire_writer(Some(Instant::now()), || false),
        Err(Wait::TimedOut)
    ));
    let later = Some(Instant::now() + std::time::Duration::from_secs(30));
    assert!(matches!(
        r.acquire_writer(later, || true),
        Err(Wait::Aborted)
    ));
    r.hdr().own.lock.unlock();
    assert!(r.acquire_writer(Some(Instant::now()), || false).is_ok());
}

#[test]
fn the_tiny_fast_paths_send_and_take_in_order_and_step_aside_for_anything_else() {
    let (_m, r) = ring();
    // No owner yet: the fast path does not take the role (the general path does).
    assert!(!r.try_send_tiny(1, 1, false));
    let Some((_m, r)) = biased_ring() else {
        return;
    };
    // Now biased to this thread: tiny sends until the ring is full (one word kept free
    // after the last record), across the wrap.
    let mut sent = 0u64;
    while r.try_send_tiny(sent & 0xFFFF, 2, false) {
        sent += 1;
    }
    assert_eq!(sent, 1024 / 8 - 1);
    let mut got = 0u64;
    while let Some((word, len)) = r.take_tiny(TINY_MAX) {
        assert_eq!((word & 0xFFFF, len), (got & 0xFFFF, 2));
        got += 1;
        if got % 3 == 0 {
            assert!(r.try_send_tiny(sent & 0xFFFF, 2, false));
            sent += 1;
        }
    }
    assert_eq!(got, sent);
    // A tiny record longer than the caller's limit, or any other record, is left to the
    // general path.
    assert!(r.try_send_tiny(7, 5, false));
    assert_eq!(r.take_tiny(4), None);
    assert_eq!(
        r.take_tiny(TINY_MAX).map(|(w, n)| (w & 0xFF, n)),
        Some((7, 5))
    );
    let g = r.acquire_writer(None, || false).unwrap();
    r.write_record(&g, RecKind::Msg, &[b"not tiny at all"], None, || false)
        .unwrap();
    drop(g);
    assert_eq!(r.take_tiny(TINY_MAX), None);
    assert_eq!(recv_all(&r), vec![b"not tiny at all".to_vec()]);
    // Revoked bias: the fast path steps aside.
    r.hdr().own.owner.store(SHARED, Ordering::Relaxed);
    assert!(!r.try_send_tiny(1, 1, false));
}

#[test]
fn the_tiny_fast_path_stops_where_a_look_is_due_after_a_dropped_reader_and_once_closed() {
    let Some((_m, r)) = biased_ring() else {
        return;
    };
    let send_take = |i: u64| {
        let sent = r.try_send_tiny(i, 1, false);
        if sent {
            assert_eq!(r.take_tiny(TINY_MAX).map(|(w, _)| w & 0xFF), Some(i & 0xFF));
        }
        sent
    };
    // Never asked to look: the fast path goes on, and the general path would look.
    for i in 0..200 {
        assert!(send_take(i));
    }
    assert!(r.look_due());
    // A look due 80 bytes on: nine tiny records, whose last ends with the word after
    // it at 80; then the fast path stops, and the general path's look is due.
    r.renew_look(80);
    assert!(!r.look_due());
    let mut n = 0;
    while send_take(n) {
        n += 1;
        assert!(n < 100, "the fast path never stopped");
    }
    assert_eq!(n, 9);
    assert!(r.look_due());
    r.renew_look(80);
    assert!(!r.look_due() && send_take(1));
    // A general-path record of any size counts as one tiny record toward the look.
    r.renew_look(80);
    let g = r.acquire_writer(None, || false).unwrap();
    r.write_record(&g, RecKind::Msg, &[&[7u8; 200]], None, || false)
        .unwrap();
    drop(g);
    assert_eq!(recv_all(&r), vec![vec![7u8; 200]]);
    assert!(!r.look_due());
    let mut n = 0;
    while send_take(n) {
        n += 1;
        assert!(n < 100, "the fast path never stopped");
    }
    assert_eq!(n, 8, "nine records in all, as nine tiny ones");
    r.renew_look(80);
    // A dropped reader end stops it at once, whatever room there is, until a look.
    r.note_reader_drop();
    assert!(!send_take(2) && !send_take(3));
    r.renew_look(80);
    assert!(send_take(4));
    // Closed for good: no look, reload or room opens it again.
    r.close_fast_path();
    assert!(!send_take(5));
    r.renew_look(800);
    assert!(!send_take(6) && !send_take(7));
    assert!(!r.set_limit(1 << 20));
    assert!(!send_take(8));
    // The general path still writes.
    let g = r.acquire_writer(None, || false).unwrap();
    assert!(r.try_write_tiny(&g, 9, 1));
    drop(g);
    assert_eq!(r.take_tiny(TINY_MAX).map(|(w, _)| w & 0xFF), Some(9));
    // A reader end dropped before the first send stops that one too (`tail` 0).
    let Some((_m2, r2)) = biased_ring() else {
        return;
    };
    r2.note_reader_drop();
    assert!(!r2.try_send_tiny(1, 1, false));
    // An end made meanwhile (`arm_look`) neither clears that nor puts a look off.
    r2.arm_look(1 << 20);
    assert!(!r2.try_send_tiny(1, 1, false));
    r2.renew_look(80);
    assert!(r2.try_send_tiny(1, 1, false));
    r2.arm_look(1 << 20);
    let mut n = 1;
    while r2.try_send_tiny(1, 1, false) {
        n += 1;
        assert!(r2.take_tiny(TINY_MAX).is_some());
        assert!(n < 100, "arm_look put the due look off");
    }
    assert_eq!(n, 9);
    // A `head` a peer scribbled ahead of `tail`: no room, now or at the next send.
    let Some((_m3, r3)) = biased_ring() else {
        return;
    };
    r3.hdr().r.head.store(1 << 30, Ordering::Relaxed);
    assert!(!r3.try_send_tiny(1, 1, false));
    assert!(!r3.try_send_tiny(1, 1, false));
}

#[test]
fn a_patient_tiny_send_into_a_nearly_full_ring_still_goes_when_the_reader_frees_no_more() {
    // The writer gives the reader a few microseconds to free more room than one record
    // needs (no per-message ping-pong on the reader's line when the ring is full), but
    // never waits for room a stopped reader will not free: with one record's room left
    // and nobody reading, the send goes through, and the next finds the ring full.
    let Some((_m, r)) = biased_ring() else {
        return;
    };
    let mut sent = 0u64;
    while r.try_send_tiny(sent, 1, false) {
        sent += 1;
    }
    let rec = r.peek().unwrap().unwrap();
    r.consume(&rec);
    assert!(
        r.try_send_tiny(0x55, 1, true),
        "one record's room is enough"
    );
    assert!(!r.try_send_tiny(0x56, 1, true), "and then the ring is full");
    let mut got = Vec::new();
    while let Some((word, len)) = r.take_tiny(TINY_MAX) {
        assert_eq!(len, 1);
        got.push(word & 0xFF);
    }
    assert_eq!(got.len() as u64, sent, "the others, then the patient send");
    assert_eq!(got.last(), Some(&0x55));
}

#[test]
fn a_reader_at_a_streaming_writers_heels_pauses_longer_each_time_and_never_in_ping_pong() {
    let Some((_m, r)) = biased_ring() else {
        return;
    };
    let mut pace = Pace::default();
    let wait = |pace: &mut Pace| {
        assert_eq!(r.wait_readable(None, || false, Some(pace)), Wait::Ready);
        pace.pause()
    };
    // One message at a time (ping-pong): the reader looks at once.
    for i in 0..10 {
        assert!(r.try_send_tiny(i, 1, false));
        assert_eq!(wait(&mut pace), 0);
        assert!(r.take_tiny(TINY_MAX).is_some());
    }
    // A stream the reader keeps catching up with: 8, 16, ... spin hints, at most 128.
    let mut pauses = Vec::new();
    for _ in 0..7 {
        for i in 0..(STREAM_BYTES / REC_HDR) {
            assert!(r.try_send_tiny(i, 1, false));
            assert!(r.take_tiny(TINY_MAX).is_some());
        }
        assert!(r.try_send_tiny(1, 1, false));
        pauses.push(wait(&mut pace));
        assert!(r.take_tiny(TINY_MAX).is_some());
    }
    assert_eq!(pauses, [8, 16, 32, 64, 128, 128, 128]);
    // A wait the writer kept waiting (more than two looks) starts the doubling again.
    std::thread::scope(|s| {
        let w = s.spawn(|| {
            std::thread::sleep(std::time::Duration::from_millis(20));
            let g = r.acquire_writer(None, || false).unwrap();
            r.write_record(&g, RecKind::Msg, &[b"late"], None, || false)
                .unwrap();
        });
        for i in 0..(STREAM_BYTES / REC_HDR) {
            assert!(r.try_send_tiny(i, 1, false));
            assert!(r.take_tiny(TINY_MAX).is_some());
        }
        assert_eq!(
            r.wait_readable(None, || false, Some(&mut pace)),
            Wait::Ready
        );
        w.join().unwrap();
    });
    assert_eq!(pace.pause(), 0);
    assert_eq!(recv_all(&r), vec![b"late".to_vec()]);
}

#[test]
fn the_largest_records_of_the_largest_rings_still_fit_their_headers() {
    use super::record::parse_header;
    for shift in 10..=40 {
        let cap = 1u64 << shift;
        let (rec, in_place) = (max_record_of(cap), max_in_place_of(cap));
        if shift <= 33 {
            assert_eq!((rec, in_place), (cap / 4, cap / 4), "cap 2^{shift}");
        }
        // The longest payload of a whole record, streamed piece or in-place message
        // reads back from its header as written, with its kind.
        for (kind, len) in [
            (RecKind::Msg, rec - REC_HDR),
            (RecKind::Chunk, rec - REC_HDR),
            (RecKind::Msg, in_place),
        ] {
            assert_eq!(
                parse_header(header_word(kind, len)),
                Some((kind, len)),
                "cap 2^{shift}, {kind:?} of {len} bytes"
            );
        }
    }
}
