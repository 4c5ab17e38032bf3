use super::*;
use loom::sync::atomic::AtomicUsize;
use loom::sync::Arc;

/// Two threads lock, check exclusion, unlock, twice each: mutual exclusion holds and
/// nobody sleeps through an unlock (a lost wake-up deadlocks the model).
#[test]
fn loom_lock_excludes_and_never_loses_a_wakeup() {
    let mut b = loom::model::Builder::new();
    b.preemption_bound = Some(3);
    b.check(|| {
        let l = Arc::new((RawLock::new(), AtomicUsize::new(0)));
        let mut ts = Vec::new();
        for _ in 0..2 {
            let l = l.clone();
            ts.push(loom::thread::spawn(move || {
                for _ in 0..2 {
                    let me = me();
                    assert_eq!(l.0.lock(me, None), Ok(Got::Normal));
                    assert_eq!(l.1.fetch_add(1, Ordering::Relaxed), 0);
                    l.1.fetch_sub(1, Ordering::Relaxed);
                    l.0.unlock();
                }
            }));
        }
        let me = me();
        assert_eq!(l.0.lock(me, None), Ok(Got::Normal));
        assert_eq!(l.1.fetch_add(1, Ordering::Relaxed), 0);
        l.1.fetch_sub(1, Ordering::Relaxed);
        l.0.unlock();
        for t in ts {
            t.join().unwrap();
        }
        assert!(!l.0.is_locked());
    });
}

/// try_lock never succeeds while another thread holds the lock.
#[test]
fn loom_try_lock_respects_the_holder() {
    loom::model(|| {
        let l = Arc::new((RawLock::new(), AtomicUsize::new(0)));
        let l2 = l.clone();
        let t = loom::thread::spawn(move || {
            let me = me();
            if l2.0.try_lock(me) == Ok(Got::Normal) {
                assert_eq!(l2.1.fetch_add(1, Ordering::Relaxed), 0);
                l2.1.fetch_sub(1, Ordering::Relaxed);
                l2.0.unlock();
            }
        });
        let me = me();
        assert_eq!(l.0.lock(me, None), Ok(Got::Normal));
        assert_eq!(l.1.fetch_add(1, Ordering::Relaxed), 0);
        l.1.fetch_sub(1, Ordering::Relaxed);
        l.0.unlock();
        t.join().unwrap();
    });
}
