//! Unit tests of `named`: names, the hello and handles over a connection.

use super::*;

fn unique(tag: &str) -> String {
    format!(
        "t-{tag}-{}-{:x}",
        std::process::id(),
        sys::random_u128().unwrap() as u32
    )
}

#[test]
fn names_are_checked() {
    use crate::NameProblem;
    for (n, p) in [
        ("", NameProblem::Empty),
        ("a/b", NameProblem::Slash),
        ("a\0b", NameProblem::Nul),
    ] {
        match Listener::bind(n) {
            Err(Error::InvalidName { problem, .. }) => assert_eq!(problem, p),
            other => panic!("{other:?}"),
        }
    }
    let long = "x".repeat(MAX_NAME_LEN + 1);
    assert!(matches!(
        Listener::bind(&long),
        Err(Error::InvalidName { .. })
    ));
    let ok = "y".repeat(MAX_NAME_LEN);
    drop(Listener::bind(&ok).unwrap());
}

#[test]
fn connect_accept_round_trip_and_errors() {
    let name = unique("rt");
    let l = Listener::bind(&name).unwrap();
    assert!(matches!(Listener::bind(&name), Err(Error::NameInUse(_))));
    let n2 = name.clone();
    let t = std::thread::spawn(move || {
        let c = connect::<u64>(&n2).unwrap();
        assert!(c.is_named());
        for i in 0..1000 {
            c.send(&i).unwrap();
        }
        c.recv().unwrap()
    });
    let c = l.accept::<u64>().unwrap();
    let sum: u64 = (0..1000).map(|_| c.recv().unwrap()).sum();
    c.send(&sum).unwrap();
    assert_eq!(t.join().unwrap(), 499500);
    drop(c);
    drop(l);
    assert!(matches!(connect::<u64>(&name), Err(Error::NameNotFound(_))));
    assert!(matches!(
        Listener::bind(&name)
            .unwrap()
            .accept_timeout::<u64>(Duration::from_millis(20)),
        Err(Error::Timeout)
    ));
}

#[test]
fn garbage_on_the_socket_is_a_handshake_error_and_the_listener_goes_on() {
    let name = unique("garbage");
    let l = Listener::bind(&name).unwrap();
    let s = socket::seqpacket(false).unwrap();
    socket::connect_abstract(s.as_fd(), &address(sys::geteuid(), &name)).unwrap();
    socket::send_packet(s.as_fd(), b"GET / HTTP/1.0", &[], false).unwrap();
    match l.accept::<u8>() {
        Err(Error::Handshake(_)) => {}
        other => panic!("{other:?}"),
    }
    let mut buf = [0u8; 16];
    let p = socket::recv_packet(s.as_fd(), &mut buf, false).unwrap();
    assert_eq!(&buf[..p.len], b"SHMPRCR1\x02");
    let n2 = name.clone();
    let t = std::thread::spawn(move || connect::<u8>(&n2).unwrap().recv().unwrap());
    l.accept::<u8>().unwrap().send(&7).unwrap();
    assert_eq!(t.join().unwrap(), 7);
}

#[test]
fn a_connect_to_a_listener_that_never_accepts_times_out_even_past_the_backlog() {
    let name = unique("backlog");
    let l = Listener::bind(&name).unwrap();
    let c = Connector::new(&name).timeout(Duration::from_millis(2));
    for _ in 0..140 {
        assert!(matches!(c.connect::<u8>(), Err(Error::Timeout)));
    }
    // The clients that gave up are gone: accepting them reports so, and the
    // listener serves the next one.
    let mut gone = 0;
    while let Err(e) = l.accept_timeout::<u8>(Duration::from_millis(50)) {
        match e {
            Error::Disconnected => gone += 1,
            Error::Timeout => break,
            other => panic!("{other:?}"),
        }
    }
    assert!(gone >= 128, "{gone}");
    let n2 = name.clone();
    let t = std::thread::spawn(move || connect::<u8>(&n2).unwrap().recv().unwrap());
    l.accept_timeout::<u8>(Duration::from_secs(10))
        .unwrap()
        .send(&1)
        .unwrap();
    assert_eq!(t.join().unwrap(), 1);
}

#[test]
fn handles_travel_inside_messages() {
    let name = unique("handles");
    let l = Listener::bind(&name).unwrap();
    let n2 = name.clone();
    let t = std::thread::spawn(move || {
        let c = connect::<(u32, crate::Sender<String>)>(&n2).unwrap();
        let (tx, rx) = crate::pipe::<String>().unwrap();
        c.send(&(5, tx)).unwrap();
        rx.recv().unwrap()
    });
    let c = l.accept::<(u32, crate::Sender<String>)>().unwrap();
    let (n, tx) = c.recv().unwrap();
    tx.send(&format!("got {n}")).unwrap();
    assert_eq!(t.join().unwrap(), "got 5");
}
