//! Shared memory is untrusted input: a peer that writes garbage into a ring's indices,
//! a record header or a stream length must give the other side a clear error — never an
//! out-of-bounds read, an unbounded allocation, an endless loop or a crash.
//!
//! The "peer" here maps the channel's memfd a second time (exactly what another process
//! holding the descriptor can do) and scribbles on it; one test does it from a forked
//! child while the parent keeps receiving.

mod common;

use std::fs;
use std::time::Duration;

use common::{fork_child, serial, watchdog};
use shmproc::{Pipe, ProtocolError, RecvError, RecvTimeoutError, TryRecvError};

const T: Duration = Duration::from_secs(60);

// The layout this test pokes at (see src/region and src/ring/spsc.rs): a 128-byte region
// header, then the ring's control block (writer line with `tail` at +0, reader line with
// `head` at +128 and `read` at +136), then the data area.
const REGION_HEADER: usize = 128;
const TAIL: usize = REGION_HEADER;
const HEAD: usize = REGION_HEADER + 128;
const DATA: usize = REGION_HEADER + 640;

const MSG_TAG: u64 = 0x00A5_C301;
const BEGIN_TAG: u64 = 0x00A5_C302;
const BATCH_TAG: u64 = 0x00A5_C305;

/// The memfds of this process whose name marks them as shmproc regions.
fn shmproc_memfds() -> Vec<i32> {
    let mut fds: Vec<i32> = fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| {
            let e = e.ok()?;
            let target = fs::read_link(e.path()).ok()?;
            let fd: i32 = e.file_name().to_str()?.parse().ok()?;
            target.to_str()?.starts_with("/memfd:shmproc").then_some(fd)
        })
        .collect();
    fds.sort();
    fds
}

/// A second mapping of the region behind the newest shmproc memfd.
struct Scribbler {
    map: memmap2::MmapMut,
}

impl Scribbler {
    fn attach(before: &[i32]) -> Scribbler {
        let fd = *shmproc_memfds()
            .iter()
            .rev()
            .find(|fd| !before.contains(fd))
            .expect("a new shmproc memfd");
        let file = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(format!("/proc/self/fd/{fd}"))
            .unwrap();
        // SAFETY: (test code) the mapping is shared with the channel on purpose; the test
        // only writes plain integers into it through volatile stores.
        let map = unsafe { memmap2::MmapMut::map_mut(&file) }.unwrap();
        Scribbler { map }
    }

    fn read_u64(&self, off: usize) -> u64 {
        u64::from_le_bytes(self.map[off..off + 8].try_into().unwrap())
    }

    fn write_u64(&mut self, off: usize, v: u64) {
        let p = self.map[off..off + 8].as_mut_ptr().cast::<u64>();
        // SAFETY: (test code) in bounds (slice above), 8-aligned (offsets are multiples of 8).
        unsafe { p.write_volatile(v) };
    }
}

fn small_pipe() -> (
    shmproc::Sender<Vec<u8>>,
    shmproc::Receiver<Vec<u8>>,
    Scribbler,
) {
    let before = shmproc_memfds();
    let (tx, rx) = Pipe::builder().capacity(4096).build::<Vec<u8>>().unwrap();
    let s = Scribbler::attach(&before);
    (tx, rx, s)
}

/// Sends a 3000-byte message (streamed through the 4 KiB ring) from a thread, and waits
/// until its first record (a BEGIN) is published.
fn start_streaming(
    tx: shmproc::Sender<Vec<u8>>,
    s: &Scribbler,
) -> std::thread::JoinHandle<shmproc::Sender<Vec<u8>>> {
    let sender = std::thread::spawn(move || {
        let _ = tx.send_timeout(&vec![9u8; 3000], Duration::from_secs(5));
        tx
    });
    let t0 = std::time::Instant::now();
    while s.read_u64(TAIL) == 0 && t0.elapsed() < T {
        std::thread::yield_now();
    }
    sender
}

fn is_protocol(e: &RecvTimeoutError) -> bool {
    matches!(e, RecvTimeoutError::Protocol(_))
}

#[test]
fn a_garbage_record_header_is_a_protocol_error() {
    // One test at a time: each finds its channel among the process's memfds.
    let _s = serial();
    let (tx, rx, mut s) = small_pipe();
    tx.send(&vec![1, 2, 3]).unwrap();
    s.write_u64(DATA, 0xDEAD_BEEF_DEAD_BEEF);
    let e = rx.recv_timeout(T).unwrap_err();
    assert!(is_protocol(&e), "{e:?}");
    // The error is stable, and the receiver stays usable for its other calls.
    assert!(matches!(rx.try_recv(), Err(TryRecvError::Protocol(_))));
    assert!(rx.poll(Some(Duration::ZERO)));
}

#[test]
fn a_record_length_past_the_ring_is_a_protocol_error() {
    // One test at a time: each finds its channel among the process's memfds.
    let _s = serial();
    for len in [u32::MAX as u64, 4096, 4096 - 8 + 1, 1 << 20] {
        let (tx, rx, mut s) = small_pipe();
        tx.send(&vec![7; 16]).unwrap();
        s.write_u64(DATA, (MSG_TAG << 32) | len);
        let e = rx.recv_timeout(T).unwrap_err();
        assert!(is_protocol(&e), "len {len}: {e:?}");
    }
}

#[test]
fn a_tail_index_beyond_the_ring_is_a_protocol_error() {
    // One test at a time: each finds its channel among the process's memfds.
    let _s = serial();
    for bad_tail in [1u64 << 40, u64::MAX, 4096 * 3, 13] {
        let (tx, rx, mut s) = small_pipe();
        tx.send(&vec![7; 16]).unwrap();
        s.write_u64(TAIL, bad_tail);
        // The reader finds records by their headers, not by `tail`: what was published
        // arrives whole...
        assert_eq!(rx.recv_timeout(T).unwrap(), vec![7; 16], "tail {bad_tail}");
        // ... and an empty ring with a garbage `tail` is reported, not waited on.
        let e = rx.recv_timeout(T).unwrap_err();
        assert!(is_protocol(&e), "tail {bad_tail}: {e:?}");
        // The writer survives it: no panic, no wild write (a send may block on the
        // garbage, so it gets a deadline).
        let _ = tx.send_timeout(&vec![1; 16], Duration::from_millis(10));
    }
}

#[test]
fn a_read_index_moved_by_someone_else_is_a_protocol_error_not_a_wild_read() {
    // One test at a time: each finds its channel among the process's memfds.
    let _s = serial();
    for bad_head in [3u64, 1 << 40, u64::MAX, 4096 * 5 + 8] {
        let (tx, rx, mut s) = small_pipe();
        tx.send(&vec![7; 16]).unwrap();
        assert_eq!(s.read_u64(HEAD), 0);
        s.write_u64(HEAD, bad_head);
        // Whatever the reader finds at the garbage position, it reads inside the ring:
        // a record still in the ring (the position masks back onto it: consumed records
        // are not cleared, so a scribbled position may replay one, as a peer that
        // scribbles could forge one), or a protocol error. Never a wild read.
        match rx.recv_timeout(T) {
            Ok(m) => assert_eq!(m, vec![7; 16], "head {bad_head}"),
            Err(e) => assert!(is_protocol(&e), "head {bad_head}: {e:?}"),
        }
        // Scribbling over it again (a garbage `head` can also make the writer believe
        // the ring is full: deadlines): the reader still reads only what is in the ring,
        // and what was sent is not lost.
        s.write_u64(HEAD, 3);
        let sent = tx
            .send_timeout(&vec![8; 16], Duration::from_millis(100))
            .is_ok();
        loop {
            match rx.recv_timeout(Duration::from_millis(if sent { 60_000 } else { 100 })) {
                Ok(m) if m == vec![8; 16] => break,
                Ok(m) => assert_eq!(m, vec![7; 16], "head {bad_head}: a replay at most"),
                Err(RecvTimeoutError::Timeout) => {
                    assert!(!sent, "head {bad_head}: sent but lost");
                    break;
                }
                Err(e) => {
                    assert!(is_protocol(&e), "head {bad_head}: {e:?}");
                    break;
                }
            }
        }
    }
}

#[test]
fn an_absurd_stream_length_is_refused_without_allocating_it() {
    // One test at a time: each finds its channel among the process's memfds.
    let _s = serial();
    let before = shmproc_memfds();
    let (tx, rx) = Pipe::builder()
        .capacity(4096)
        .max_message(1 << 20)
        .build::<Vec<u8>>()
        .unwrap();
    let mut s = Scribbler::attach(&before);
    // A real streamed message (larger than a quarter of the ring) starts with BEGIN;
    // rewrite its total to 2^62 bytes.
    let sender = start_streaming(tx, &s);
    let hdr = s.read_u64(DATA);
    assert_eq!(hdr >> 32, BEGIN_TAG, "first record is a BEGIN");
    s.write_u64(DATA + 8, 1 << 62);
    let e = rx.recv_timeout(T).unwrap_err();
    assert!(
        matches!(
            e,
            RecvTimeoutError::Protocol(ProtocolError::TooLarge { len, max })
                if len == 1 << 62 && max == 1 << 20
        ),
        "{e:?}"
    );
    // The rest of the refused stream is skipped, and the channel carries on.
    let tx = sender.join().unwrap();
    tx.send(&vec![1, 2]).unwrap();
    assert_eq!(rx.recv_timeout(T), Ok(vec![1, 2]));
}

#[test]
fn a_stream_longer_than_announced_is_a_protocol_error() {
    // One test at a time: each finds its channel among the process's memfds.
    let _s = serial();
    let before = shmproc_memfds();
    let (tx, rx) = Pipe::builder().capacity(4096).build::<Vec<u8>>().unwrap();
    let mut s = Scribbler::attach(&before);
    let sender = start_streaming(tx, &s);
    // Announce fewer bytes than the pieces carry.
    s.write_u64(DATA + 8, 10);
    let e = rx.recv_timeout(T).unwrap_err();
    assert!(is_protocol(&e), "{e:?}");
    drop(sender.join().unwrap());
}

#[test]
fn a_peer_process_scribbling_at_random_never_crashes_or_hangs_the_reader() {
    let _s = serial();
    let _w = watchdog(T);
    for round in 0..20u64 {
        let before = shmproc_memfds();
        let (tx, rx) = Pipe::builder().capacity(4096).build::<Vec<u64>>().unwrap();
        let s = Scribbler::attach(&before);
        let len = s.map.len();
        // The hostile peer: a separate process writing random words all over the ring.
        let mut peer = fork_child(move || {
            let mut s = s;
            let mut x = 0x9E37_79B9_7F4A_7C15u64 ^ round;
            for _ in 0..2000 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let off = (REGION_HEADER + (x as usize % (len - REGION_HEADER))) & !7;
                s.write_u64(off, x.rotate_left(23));
                std::thread::sleep(Duration::from_micros(50));
            }
            0
        });
        // A well-behaved writer keeps sending meanwhile.
        let writer = std::thread::spawn(move || {
            for i in 0..2000u64 {
                if tx
                    .send_timeout(&vec![i; (i % 700) as usize], Duration::from_millis(200))
                    .is_err()
                {
                    break;
                }
            }
        });
        let (mut ok, mut bad) = (0u32, 0u32);
        loop {
            match rx.recv_timeout(Duration::from_millis(300)) {
                Ok(_) => ok += 1,
                Err(RecvTimeoutError::Timeout) | Err(RecvTimeoutError::Disconnected) => break,
                Err(_) => {
                    bad += 1;
                    if bad > 50 {
                        break;
                    }
                }
            }
        }
        drop(rx);
        writer.join().unwrap();
        peer.expect_success(T);
        assert!(ok + bad > 0, "round {round}: nothing happened at all");
    }
    // Reaching here means: no crash, no hang, no abort on an absurd allocation.
}

/// A 4 KiB `u64` pipe holding one batch of `1, 2, 3, 4` (`send_slice`), its record at the
/// start of the data: header, element word, cursor word, elements.
fn pipe_with_a_batch() -> (shmproc::Sender<u64>, shmproc::Receiver<u64>, Scribbler) {
    let before = shmproc_memfds();
    let (tx, rx) = Pipe::builder().capacity(4096).build::<u64>().unwrap();
    let s = Scribbler::attach(&before);
    tx.send_slice(&[1, 2, 3, 4]).unwrap();
    assert_eq!(s.read_u64(DATA), (BATCH_TAG << 32) | (16 + 32));
    assert_eq!(s.read_u64(DATA + 8) as u32, 8, "element size");
    (tx, rx, s)
}

#[test]
fn hostile_batch_headers_are_protocol_errors_never_garbage_elements() {
    // One test at a time: each finds its channel among the process's memfds.
    let _s = serial();
    let fp = |s: &Scribbler| s.read_u64(DATA + 8) & !0xFFFF_FFFF;
    // (offset, value) pairs, each making the record impossible.
    type Poke = Box<dyn Fn(&Scribbler) -> u64>;
    let cases: [(&str, usize, Poke); 7] = [
        ("element size 0", DATA + 8, Box::new(fp)),
        (
            "elements not whole",
            DATA + 8,
            Box::new(move |s| fp(s) | 12),
        ),
        ("cursor at the end", DATA + 16, Box::new(|_| 4)),
        ("cursor past the end", DATA + 16, Box::new(|_| u64::MAX)),
        (
            "no room for the words",
            DATA,
            Box::new(|_| (BATCH_TAG << 32) | 8),
        ),
        ("no elements", DATA, Box::new(|_| (BATCH_TAG << 32) | 16)),
        (
            "past the ring",
            DATA,
            Box::new(|_| (BATCH_TAG << 32) | 4096),
        ),
    ];
    for (what, off, value) in cases {
        let (tx, rx, mut s) = pipe_with_a_batch();
        let v = value(&s);
        s.write_u64(off, v);
        let mut buf = [0u64; 8];
        match rx.recv_slice(&mut buf) {
            Err(RecvError::Protocol(_)) => {}
            other => panic!("{what}: {other:?}"),
        }
        // The writer survives it (with a deadline: the ring may look full).
        let _ = tx.send_timeout(&5, Duration::from_millis(10));
    }
}

#[test]
fn a_batch_of_another_element_type_is_refused_and_kept() {
    // One test at a time: each finds its channel among the process's memfds.
    let _s = serial();
    // Another fingerprint, same size; then another size that divides the bytes.
    for word in [8u64 | 0x1234_5678 << 32, 4u64] {
        let (_tx, rx, mut s) = pipe_with_a_batch();
        let good = s.read_u64(DATA + 8);
        s.write_u64(DATA + 8, word);
        let mut buf = [0u64; 8];
        match rx.recv_slice(&mut buf) {
            Err(RecvError::WrongElement { size, expected: 8 }) if size == word as u32 => {}
            other => panic!("word {word:#x}: {other:?}"),
        }
        // Nothing was consumed: put the word back and the elements are all there.
        s.write_u64(DATA + 8, good);
        assert_eq!(rx.recv_slice(&mut buf), Ok(4));
        assert_eq!(buf[..4], [1, 2, 3, 4]);
    }
}

#[test]
fn a_partly_read_batch_keeps_its_cursor_in_the_record() {
    // One test at a time: each finds its channel among the process's memfds.
    let _s = serial();
    let (_tx, rx, s) = pipe_with_a_batch();
    let mut buf = [0u64; 3];
    assert_eq!(rx.recv_slice(&mut buf), Ok(3));
    assert_eq!(s.read_u64(DATA + 16), 3, "the cursor");
    assert_eq!(rx.recv_slice(&mut buf), Ok(1));
    assert_eq!(buf[0], 4);
}
