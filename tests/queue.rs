//! Queue and JoinableQueue behaviour across real forked processes (spawned processes:
//! see `queue_spawn.rs`).

mod common;

use std::time::{Duration, Instant};

use common::{fork_child, serial, this_thread, wait_asleep, watchdog, PARKED};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use shmproc::{pipe, Error, JoinableQueue, Queue, TryGetError, TryPutError};

const T: Duration = Duration::from_secs(60);

/// Bytes of memory held by the items files (large queue items) of this process's queues.
fn item_bytes() -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| {
            std::fs::read_link(e.path()).is_ok_and(|t| {
                t.to_string_lossy()
                    .starts_with("/memfd:shmproc-queue-items")
            })
        })
        .filter_map(|e| std::fs::metadata(e.path()).ok())
        .map(|m| m.blocks() * 512)
        .sum()
}

/// Entries in /dev/shm (large items never go there).
fn dev_shm() -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir("/dev/shm")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// A cheap pseudo-random number (tests need variety, not quality).
fn rand_below(n: u64) -> u64 {
    let t = Instant::now().elapsed().as_nanos() as u64 ^ u64::from(std::process::id());
    let x = t.wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ (std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos() as u64);
    x.wrapping_mul(0x2545_F491_4F6C_DD1D) % n.max(1)
}

const ITEMS: u64 = 400_000;
const PER_PRODUCER: u64 = ITEMS / 2;

#[test]
fn two_producers_two_consumers_deliver_every_item_exactly_once() {
    let _s = serial();
    let _w = watchdog(T + Duration::from_secs(30));
    let q = Queue::<u64>::new().unwrap();
    let (tx, rx) = pipe::<Vec<u8>>().unwrap();
    let mut consumers: Vec<_> = (0..2)
        .map(|_| {
            let (q, tx) = (q.clone(), tx.clone());
            fork_child(move || {
                // How often each item arrived here; each producer's items in order.
                let mut seen = vec![0u8; ITEMS as usize];
                let mut last = [None::<u64>; 2];
                loop {
                    match q.get() {
                        Ok(v) => {
                            let (p, i) = ((v / PER_PRODUCER) as usize, v % PER_PRODUCER);
                            if p > 1 || last[p].is_some_and(|l| l >= i) {
                                return 2;
                            }
                            last[p] = Some(i);
                            seen[v as usize] += 1;
                        }
                        Err(Error::Closed) => break,
                        Err(_) => return 3,
                    }
                }
                tx.send(&seen).map_or(4, |_| 0)
            })
        })
        .collect();
    drop(tx);
    let mut producers: Vec<_> = (0..2u64)
        .map(|p| {
            let q = q.clone();
            fork_child(move || {
                for i in 0..PER_PRODUCER {
                    if q.put(&(p * PER_PRODUCER + i)).is_err() {
                        return 2;
                    }
                }
                0
            })
        })
        .collect();
    for p in &mut producers {
        p.expect_success(T);
    }
    q.close();
    let mut total = vec![0u32; ITEMS as usize];
    for _ in 0..2 {
        let seen = rx.recv_timeout(T).unwrap();
        for (t, s) in total.iter_mut().zip(seen) {
            *t += u32::from(s);
        }
    }
    for c in &mut consumers {
        c.expect_success(T);
    }
    common::assert_exactly_once(&total);
    assert!(q.is_empty());
}

#[test]
fn full_and_empty_on_a_capacity_4_queue() {
    let _s = serial();
    let _w = watchdog(T + Duration::from_secs(30));
    let q = Queue::<u32>::with_capacity(4).unwrap();
    assert_eq!(q.capacity(), 4);
    let q2 = q.clone();
    let mut child = fork_child(move || {
        for i in 0..4 {
            if q2.try_put(&i).is_err() {
                return 2;
            }
        }
        match q2.try_put(&4) {
            Err(TryPutError::Full) => 0,
            _ => 3,
        }
    });
    child.expect_success(T);
    assert!(q.is_full());
    assert_eq!(q.len(), 4);
    assert_eq!(q.try_put(&9), Err(TryPutError::Full));
    assert!(matches!(
        q.put_timeout(&9, Duration::from_millis(20)),
        Err(Error::Timeout)
    ));
    for i in 0..4 {
        assert_eq!(q.try_get(), Ok(i));
    }
    assert_eq!(q.try_get(), Err(TryGetError::Empty));
    assert!(q.is_empty());
    // Exactly 4 fit, whatever their size.
    for i in 0..4 {
        q.try_put(&i).unwrap();
    }
    assert_eq!(q.try_put(&5), Err(TryPutError::Full));
}

/// A large queue's producer naps once when it finds the queue full (so consumers can
/// drain a stretch): a put still honours its timeout, completes once another process
/// makes room, and fails with `Closed` when the queue is closed while it waits.
#[test]
fn a_full_large_queue_times_out_puts_admits_them_on_room_and_closes_them() {
    let _s = serial();
    let _w = watchdog(T + Duration::from_secs(30));
    let q = Queue::<u32>::with_capacity(4096).unwrap();
    for i in 0..4096 {
        q.try_put(&i).unwrap();
    }
    assert!(matches!(
        q.put_timeout(&9, Duration::from_millis(20)),
        Err(Error::Timeout)
    ));
    assert!(matches!(
        q.put_timeout(&9, Duration::ZERO),
        Err(Error::Timeout)
    ));
    // A producer in another process blocks until this one takes an item.
    let q2 = q.clone();
    let mut child = fork_child(move || match q2.put_timeout(&4096, T) {
        Ok(()) => 0,
        Err(_) => 2,
    });
    child.wait_asleep(PARKED, T);
    assert_eq!(q.get_timeout(T).unwrap(), 0);
    child.expect_success(T);
    assert_eq!(q.len(), 4096);
    // A producer blocked on the full queue sees the close.
    let q3 = q.clone();
    let mut child = fork_child(move || match q3.put(&1) {
        Err(Error::Closed) => 0,
        _ => 2,
    });
    child.wait_asleep(PARKED, T);
    q.close();
    child.expect_success(T);
    for i in 1..=4096 {
        assert_eq!(q.get_timeout(T).unwrap(), i);
    }
    assert!(matches!(q.get(), Err(Error::Closed)));
}

#[test]
fn close_in_one_process_closes_for_all_puts_and_for_gets_once_drained() {
    let _s = serial();
    let _w = watchdog(T + Duration::from_secs(30));
    let q = Queue::<String>::with_capacity(8).unwrap();
    q.put(&"kept".to_string()).unwrap();
    let q2 = q.clone();
    let mut child = fork_child(move || {
        q2.close();
        0
    });
    child.expect_success(T);
    assert!(q.is_closed());
    assert!(matches!(q.put(&"late".to_string()), Err(Error::Closed)));
    assert_eq!(q.try_put(&"late".to_string()), Err(TryPutError::Closed));
    assert_eq!(q.get().unwrap(), "kept");
    assert!(matches!(q.get(), Err(Error::Closed)));
    assert_eq!(q.try_get(), Err(TryGetError::Closed));
    assert!(matches!(
        q.get_timeout(Duration::from_secs(5)),
        Err(Error::Closed)
    ));
}

#[test]
fn close_wakes_a_consumer_blocked_in_another_process() {
    let _s = serial();
    let _w = watchdog(T + Duration::from_secs(30));
    let q = Queue::<u8>::with_capacity(2).unwrap();
    let q2 = q.clone();
    let mut child = fork_child(move || match q2.get() {
        Err(Error::Closed) => 0,
        _ => 2,
    });
    child.wait_asleep(PARKED, T);
    q.close();
    child.expect_success(T);
}

#[test]
fn joinable_join_returns_only_after_every_task_done() {
    let _s = serial();
    let _w = watchdog(T + Duration::from_secs(30));
    let q = JoinableQueue::<u32>::with_capacity(16).unwrap();
    let go = Queue::<()>::with_capacity(1).unwrap();
    let (q2, go2) = (q.clone(), go.clone());
    let mut child = fork_child(move || {
        for i in 0..10 {
            if q2.get_timeout(T).ok() != Some(i) {
                return 2;
            }
            if i < 9 && q2.task_done().is_err() {
                return 3;
            }
        }
        // Hold the last task until told.
        if go2.get_timeout(T).is_err() {
            return 4;
        }
        if q2.task_done().is_err() {
            return 5;
        }
        0
    });
    for i in 0..10 {
        q.put(&i).unwrap();
    }
    // Nine of ten done: join must not return.
    assert!(matches!(
        q.join_timeout(Duration::from_millis(300)),
        Err(Error::Timeout)
    ));
    go.put(&()).unwrap();
    q.join().unwrap();
    child.expect_success(T);
    assert!(q.task_done().is_err(), "every task is already done");
}

#[test]
fn joinable_join_waits_for_task_done_in_several_consumer_processes() {
    let _s = serial();
    let _w = watchdog(T + Duration::from_secs(30));
    let q = JoinableQueue::<u64>::new().unwrap();
    let done = Queue::<u64>::new().unwrap();
    let mut kids: Vec<_> = (0..2)
        .map(|_| {
            let (q, done) = (q.clone(), done.clone());
            fork_child(move || loop {
                match q.get() {
                    Ok(v) => {
                        std::thread::sleep(Duration::from_micros(50));
                        if done.put(&v).is_err() || q.task_done().is_err() {
                            return 2;
                        }
                    }
                    Err(Error::Closed) => return 0,
                    Err(_) => return 3,
                }
            })
        })
        .collect();
    for i in 0..500 {
        q.put(&i).unwrap();
    }
    q.join().unwrap();
    // join returned: all 500 were processed (each recorded before its task_done).
    assert_eq!(done.len(), 500);
    q.close();
    for k in &mut kids {
        k.expect_success(T);
    }
}

#[test]
fn a_consumer_killed_holding_a_slot_leaves_the_queue_usable() {
    let _s = serial();
    let _w = watchdog(T + Duration::from_secs(30));
    let q = Queue::<u32>::with_capacity(4).unwrap();
    for i in 1..=4 {
        q.put(&i).unwrap();
    }
    let (q2, ready) = (q.clone(), Queue::<()>::with_capacity(1).unwrap());
    let ready2 = ready.clone();
    let mut child = fork_child(move || {
        // Take item 1 and die before releasing its slot.
        if !q2.__claim_and_abandon(true) {
            return 2;
        }
        let _ = ready2.put(&());
        std::thread::sleep(Duration::from_secs(60));
        0
    });
    ready.get_timeout(T).unwrap();
    child.kill();
    assert_eq!(q.get().unwrap(), 2);
    assert_eq!(q.get().unwrap(), 3);
    assert_eq!(q.get().unwrap(), 4);
    // The dead consumer's slot is the one the fourth put below needs.
    for i in 5..=8 {
        q.put_timeout(&i, T).unwrap();
    }
    assert_eq!(q.len(), 4);
    for i in 5..=8 {
        assert_eq!(q.get().unwrap(), i);
    }
}

#[test]
fn a_producer_killed_holding_a_slot_leaves_the_queue_usable() {
    let _s = serial();
    let _w = watchdog(T + Duration::from_secs(30));
    let q = JoinableQueue::<u32>::with_capacity(4).unwrap();
    let (q2, ready) = (q.clone(), Queue::<()>::with_capacity(1).unwrap());
    let ready2 = ready.clone();
    let mut child = fork_child(move || {
        // Claim the first slot and die before publishing it.
        if !q2.__claim_and_abandon(false) {
            return 2;
        }
        let _ = ready2.put(&());
        std::thread::sleep(Duration::from_secs(60));
        0
    });
    ready.get_timeout(T).unwrap();
    // A consumer blocked behind the claimed slot notices its owner's death.
    let q3 = q.clone();
    let mut consumer = fork_child(move || match q3.get_timeout(T) {
        Ok(7) => q3.task_done().map_or(3, |_| 0),
        _ => 2,
    });
    consumer.wait_asleep(PARKED, T);
    q.put(&7).unwrap();
    child.kill();
    consumer.expect_success(T);
    for i in 0..4 {
        q.put(&i).unwrap();
    }
    for i in 0..4 {
        assert_eq!(q.get().unwrap(), i);
        q.task_done().unwrap();
    }
    q.join_timeout(T).unwrap();
}

#[test]
fn consumers_sigkilled_at_random_never_wedge_or_duplicate() {
    let _s = serial();
    let _w = watchdog(T + Duration::from_secs(30));
    for _round in 0..10 {
        let q = Queue::<u64>::with_capacity(8).unwrap();
        let q2 = q.clone();
        let mut child = fork_child(move || loop {
            let _ = q2.get();
        });
        let kill_at = rand_below(3000);
        let mut last = None;
        let mut check = |v: u64| {
            assert!(last.is_none_or(|l| l < v), "{v} after {last:?}");
            last = Some(v);
        };
        for i in 0..3000u64 {
            if i == kill_at {
                child.kill();
            }
            if i >= kill_at && q.is_full() {
                check(q.try_get().unwrap());
            }
            q.put_timeout(&i, T).unwrap();
        }
        // Whatever the dead consumer did not take arrives once, in order.
        while let Ok(v) = q.try_get() {
            check(v);
        }
        assert_eq!(last, Some(2999));
        q.put(&1).unwrap();
        assert_eq!(q.get().unwrap(), 1);
    }
}

#[test]
fn producers_sigkilled_at_random_never_wedge_or_duplicate() {
    let _s = serial();
    let _w = watchdog(T + Duration::from_secs(30));
    for _round in 0..10 {
        let q = Queue::<u64>::with_capacity(8).unwrap();
        let q2 = q.clone();
        let mut child = fork_child(move || {
            for i in 0.. {
                let _ = q2.put(&i);
            }
            0
        });
        let mut last = None;
        for _ in 0..rand_below(3000) {
            let v = q.get_timeout(T).unwrap();
            assert!(last.is_none_or(|l| l < v));
            last = Some(v);
        }
        child.kill();
        // The rest arrives once, in order, past a slot the producer may have died in.
        while let Ok(v) = q.try_get() {
            assert!(last.is_none_or(|l| l < v), "{v} after {last:?}");
            last = Some(v);
        }
        q.put(&u64::MAX).unwrap();
        assert_eq!(q.get_timeout(T).unwrap(), u64::MAX);
        assert!(q.is_empty());
    }
}

/// Bytes that serialize as one byte string (fast even in debug builds).
#[derive(Debug, PartialEq)]
struct Blob(Vec<u8>);

impl Serialize for Blob {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for Blob {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Blob;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("bytes")
            }
            fn visit_bytes<E>(self, v: &[u8]) -> Result<Blob, E> {
                Ok(Blob(v.to_vec()))
            }
            fn visit_byte_buf<E>(self, v: Vec<u8>) -> Result<Blob, E> {
                Ok(Blob(v))
            }
        }
        d.deserialize_byte_buf(V)
    }
}

/// `n` bytes: a 4093-byte (prime) pattern that depends on `seed`, repeated, so a
/// misplaced piece shows (built by whole chunks: fast in debug builds).
fn blob(n: usize, seed: u8) -> Blob {
    let chunk: Vec<u8> = (0..4093usize)
        .map(|i| (i as u8).wrapping_mul(31) ^ seed)
        .collect();
    let mut v = Vec::with_capacity(n);
    while v.len() < n {
        let k = chunk.len().min(n - v.len());
        v.extend_from_slice(&chunk[..k]);
    }
    Blob(v)
}

#[test]
fn one_and_sixty_four_mib_items_pass_between_processes() {
    let _s = serial();
    let _w = watchdog(T + Duration::from_secs(30));
    let shm_before = dev_shm();
    let q = Queue::<Blob>::with_capacity(4).unwrap();
    let q2 = q.clone();
    let mut child = fork_child(move || {
        for (n, seed) in [(1 << 20, 1u8), (64 << 20, 2), (100, 3)] {
            if q2.put(&blob(n, seed)).is_err() {
                return 2;
            }
        }
        0
    });
    child.expect_success(T);
    // The producer is gone; its items wait in the queue.
    assert_eq!(q.len(), 3);
    for (n, seed) in [(1 << 20, 1u8), (64 << 20, 2), (100, 3)] {
        let b = q.get_timeout(T).unwrap();
        assert_eq!(b.0.len(), n);
        assert!(b == blob(n, seed), "item of {n} bytes differs");
    }
    assert_eq!(item_bytes(), 0, "pages of consumed items are freed");
    assert_eq!(dev_shm(), shm_before, "nothing in /dev/shm");
}

#[test]
fn large_items_lost_with_a_dead_consumer_have_their_pages_freed() {
    let _s = serial();
    let _w = watchdog(T + Duration::from_secs(30));
    let before = item_bytes();
    let q = Queue::<Blob>::with_capacity(1).unwrap();
    q.put(&blob(1 << 20, 9)).unwrap();
    assert!(item_bytes() >= before + (1 << 20));
    let (q2, ready) = (q.clone(), Queue::<()>::with_capacity(1).unwrap());
    let ready2 = ready.clone();
    let mut child = fork_child(move || {
        if !q2.__claim_and_abandon(true) {
            return 2;
        }
        let _ = ready2.put(&());
        std::thread::sleep(Duration::from_secs(60));
        0
    });
    ready.get_timeout(T).unwrap();
    child.kill();
    // The next put needs the dead consumer's slot: it reclaims it and frees its pages.
    q.put_timeout(&blob(10, 1), T).unwrap();
    assert_eq!(item_bytes(), before);
    assert_eq!(q.get().unwrap(), blob(10, 1));
}

#[test]
fn get_timeout_on_an_empty_queue_times_out() {
    let _s = serial();
    let _w = watchdog(T + Duration::from_secs(30));
    let q = Queue::<u64>::new().unwrap();
    let t = Instant::now();
    assert!(matches!(
        q.get_timeout(Duration::from_millis(100)),
        Err(Error::Timeout)
    ));
    assert!(t.elapsed() >= Duration::from_millis(100));
    assert_eq!(q.try_get(), Err(TryGetError::Empty));
}

#[test]
fn a_blocked_put_resumes_when_a_consumer_process_makes_room() {
    let _s = serial();
    let _w = watchdog(T + Duration::from_secs(30));
    let q = Queue::<u64>::with_capacity(2).unwrap();
    q.put(&0).unwrap();
    q.put(&1).unwrap();
    let q2 = q.clone();
    let (pid, tid) = this_thread();
    let mut child = fork_child(move || {
        wait_asleep(pid, tid, PARKED, T);
        for i in 0..3 {
            if q2.get_timeout(T).ok() != Some(i) {
                return 2;
            }
        }
        0
    });
    q.put(&2).unwrap();
    child.expect_success(T);
}

#[test]
fn a_killed_consumer_not_yet_reaped_does_not_wedge_the_queue() {
    // A process killed while it holds a slot stays a zombie until its parent reaps it,
    // and a zombie still answers kill(pid, 0). The others must not wait for the reaping.
    let _s = serial();
    let _w = watchdog(T + Duration::from_secs(30));
    let q = Queue::<u32>::with_capacity(2).unwrap();
    q.put(&1).unwrap();
    q.put(&2).unwrap();
    let (q2, ready) = (q.clone(), Queue::<()>::with_capacity(1).unwrap());
    let ready2 = ready.clone();
    let mut child = fork_child(move || {
        if !q2.__claim_and_abandon(true) {
            return 2;
        }
        let _ = ready2.put(&());
        std::thread::sleep(Duration::from_secs(60));
        0
    });
    ready.get_timeout(T).unwrap();
    // SIGKILL without reaping: the child stays a zombie while we use the queue.
    nix::sys::signal::kill(child.pid(), nix::sys::signal::Signal::SIGKILL).unwrap();
    let t0 = Instant::now();
    while std::fs::read_to_string(format!("/proc/{}/stat", child.pid()))
        .map(|s| !s.contains(") Z"))
        .unwrap_or(false)
    {
        assert!(t0.elapsed() < T, "child did not become a zombie");
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(q.get_timeout(T).unwrap(), 2);
    // The zombie's slot is the one this put needs.
    q.put_timeout(&3, Duration::from_secs(5)).unwrap();
    q.put_timeout(&4, Duration::from_secs(5)).unwrap();
    assert_eq!(q.get_timeout(T).unwrap(), 3);
    assert_eq!(q.get_timeout(T).unwrap(), 4);
    child.kill(); // reaps it
}
