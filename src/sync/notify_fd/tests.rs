use crate::sync::atomic::AtomicBool;
use std::time::Duration;

use super::*;

#[test]
fn a_waker_signals_the_eventfd_only_while_an_async_waiter_is_registered() {
    let w = Waiter::new();
    let n = NotifyFd::new().unwrap();
    let reg = register(&[(&w, &n)]);
    // A parked waiter that is not async (the word armed, no registration): no unit.
    w.arm_for_async();
    w.wake_all();
    assert!(!event::eventfd_take(n.fd()));
    // One async waiter: one unit per wake-up, and only for a wake-up that found it armed.
    let mut park = AsyncPark::new(&w, &n, None);
    park.arm();
    w.wake_all();
    assert!(event::eventfd_take(n.fd()));
    assert!(!event::eventfd_take(n.fd()));
    w.wake_all();
    assert!(
        !event::eventfd_take(n.fd()),
        "disarmed by the first wake-up"
    );
    // Dropped: its registration is gone with it.
    drop(park);
    w.arm_for_async();
    w.wake_all();
    assert!(!event::eventfd_take(n.fd()));
    // Unregistered from the table: this process no longer knows the eventfd.
    let mut park = AsyncPark::new(&w, &n, None);
    park.arm();
    drop(reg);
    w.wake_all();
    assert!(!event::eventfd_take(n.fd()));
}

#[test]
fn a_parked_task_is_woken_by_a_thread_that_publishes() {
    let w = Arc::new((Waiter::new(), AtomicBool::new(false)));
    let n = NotifyFd::new().unwrap();
    let _reg = register(&[(&w.0, &n)]);
    let w2 = w.clone();
    let t = std::thread::spawn(move || {
        // Publish only once the task has registered (it is about to park, or parked).
        while w2.0.external.load(Ordering::Acquire) == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
        std::thread::sleep(Duration::from_millis(5));
        w2.1.store(true, std::sync::atomic::Ordering::Release);
        w2.0.wake_all();
    });
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .unwrap();
    let looks = rt.block_on(async {
        let mut park = AsyncPark::new(&w.0, &n, None);
        let mut looks = 0;
        park_until(&mut park, |_| {
            looks += 1;
            if w.1.load(std::sync::atomic::Ordering::Acquire) {
                Step::Done(())
            } else {
                Step::Park
            }
        })
        .await;
        looks
    });
    t.join().unwrap();
    // At least before arming and after arming found nothing; the wake-up ended it.
    assert!(looks >= 2, "{looks} looks");
}
