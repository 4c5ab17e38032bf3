use super::*;

#[test]
fn a_thread_that_exits_holding_the_lock_is_a_dead_owner() {
    let l = std::sync::Arc::new(RawLock::new());
    let l2 = l.clone();
    std::thread::spawn(move || assert_eq!(l2.lock(me(), None), Ok(Got::Normal)))
        .join()
        .unwrap();
    assert!(l.is_locked());
    let deadline = Instant::now() + Duration::from_secs(30);
    assert_eq!(l.lock(me(), Some(deadline)), Ok(Got::OwnerDied));
    assert!(l.held_by(me()));
    l.unlock();
    assert_eq!(l.try_lock(me()), Ok(Got::Normal));
    l.unlock();
}

#[test]
fn a_live_holder_blocks_try_lock_and_times_out_lock() {
    let l = std::sync::Arc::new(RawLock::new());
    let (tx, rx) = std::sync::mpsc::channel();
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let l2 = l.clone();
    let t = std::thread::spawn(move || {
        assert_eq!(l2.lock(me(), None), Ok(Got::Normal));
        tx.send(()).unwrap();
        done_rx.recv().unwrap();
        l2.unlock();
    });
    rx.recv().unwrap();
    assert_eq!(l.try_lock(me()), Err(Fail::WouldBlock));
    let d = Instant::now() + Duration::from_millis(60);
    assert_eq!(l.lock(me(), Some(d)), Err(Fail::Timeout));
    assert!(Instant::now() >= d);
    done_tx.send(()).unwrap();
    let d = Instant::now() + Duration::from_secs(30);
    assert_eq!(l.lock(me(), Some(d)), Ok(Got::Normal));
    l.unlock();
    t.join().unwrap();
}

#[test]
fn garbage_in_the_word_is_recovered_not_trusted() {
    for garbage in [
        RESERVED | 5,
        MAX_TID + 1,
        TID_MASK,
        WAITERS | RESERVED,
        u32::MAX,
    ] {
        let l = RawLock::new();
        l.word.store(garbage, Ordering::Relaxed);
        l.owner_tag.store(u64::MAX, Ordering::Relaxed);
        assert_eq!(l.try_lock(me()), Ok(Got::OwnerDied), "word {garbage:#x}");
        l.unlock();
        assert_eq!(l.try_lock(me()), Ok(Got::Normal));
        l.unlock();
    }
}

#[test]
fn a_reused_tid_is_detected_by_its_start_time() {
    // This thread "held" the lock in a previous life: same tid, other start time.
    let l = RawLock::new();
    let m = me();
    let previous = Owner::new(m.tid(), m.start().wrapping_add(1));
    l.word.store(m.tid(), Ordering::Relaxed);
    l.owner_tag.store(previous.tag(), Ordering::Relaxed);
    assert_eq!(l.try_lock(m), Ok(Got::OwnerDied));
    l.unlock();
    // A waiting locker notices it within a park slice.
    assert_eq!(l.lock(previous, None), Ok(Got::Normal));
    l.word.fetch_or(WAITERS, Ordering::Relaxed);
    let deadline = Instant::now() + Duration::from_secs(30);
    assert_eq!(l.lock(m, Some(deadline)), Ok(Got::OwnerDied));
    l.unlock();
}

#[test]
fn a_locker_whose_deadline_passed_takes_a_reused_tid_at_its_last_look() {
    // The last look before a timeout is the full check, as try_lock's.
    let l = RawLock::new();
    let m = me();
    assert_eq!(
        l.lock(Owner::new(m.tid(), m.start() ^ 1), None),
        Ok(Got::Normal)
    );
    assert_eq!(l.lock(m, Some(Instant::now())), Ok(Got::OwnerDied));
    l.unlock();
}

#[test]
fn abort_ends_a_wait_for_a_live_holder_and_wake_waiters_makes_it_ask_again() {
    let l = std::sync::Arc::new(RawLock::new());
    let stop = std::sync::Arc::new(crate::sync::atomic::AtomicBool::new(false));
    assert_eq!(l.lock(me(), None), Ok(Got::Normal));
    let (l2, stop2) = (l.clone(), stop.clone());
    let t = std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(30);
        l2.lock_or_abort(me(), Some(deadline), || {
            stop2.load(std::sync::atomic::Ordering::Relaxed)
        })
    });
    // Once the waiter is parked (WAITERS set), ask it to stop.
    let t0 = Instant::now();
    while l.word.load(Ordering::Relaxed) & WAITERS == 0 {
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "the waiter never parked"
        );
        std::thread::yield_now();
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    l.wake_waiters();
    assert_eq!(t.join().unwrap(), Err(Wait::Aborted));
    assert!(l.held_by(me()));
    l.unlock();
    let soon = Some(Instant::now() + Duration::from_millis(5));
    assert_eq!(l.lock_or_abort(me(), soon, || false), Ok(Got::Normal));
    l.unlock();
}
