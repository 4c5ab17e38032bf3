use super::*;
use loom::sync::Arc;

/// Units given in one thread are all taken in another; no wake-up is lost.
#[test]
fn loom_semaphore_units_are_neither_lost_nor_duplicated() {
    let mut b = loom::model::Builder::new();
    b.preemption_bound = Some(2);
    b.check(|| {
        let blk = Arc::new(Block::new());
        let b2 = blk.clone();
        let t = loom::thread::spawn(move || {
            assert!(give(&b2, u32::MAX));
            assert!(give(&b2, u32::MAX));
        });
        assert!(take(&blk, Deadline::FOREVER).is_ok());
        assert!(take(&blk, Deadline::FOREVER).is_ok());
        t.join().unwrap();
        assert_eq!(blk.count.load(Ordering::SeqCst), 0);
        assert!(!try_take(&blk));
    });
}
