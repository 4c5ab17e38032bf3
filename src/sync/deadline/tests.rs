use super::*;

#[test]
fn each_constructor_says_how_long_to_wait() {
    assert!(Deadline::Now.is_now());
    assert_eq!(Deadline::FOREVER.instant(), None);
    assert_eq!(Deadline::after(Duration::MAX), Deadline::FOREVER);
    assert_eq!(Deadline::within(None), Deadline::FOREVER);
    let before = Instant::now();
    let Deadline::Until(Some(d)) = Deadline::within(Some(Duration::from_secs(1))) else {
        panic!("a finite timeout has an instant");
    };
    assert!(d >= before + Duration::from_secs(1));
    assert!(Deadline::Now.instant().is_some_and(|now| now >= before));
}
