//! Unrelated processes: `Listener`/`connect`, handles over a named `Connection`, `wait`,
//! and `SharedMemory` (with Python's `multiprocessing.shared_memory` where `python3` is
//! installed).
//!
//! A `harness = false` test: the processes are this binary re-executed with
//! `std::process::Command` (`--role NAME ARGS`), so they share nothing but the name they
//! are given, as a service and its clients started separately would. Tests run one at a
//! time; every wait has a timeout, every child is killed and reaped on the way out, and
//! a watchdog aborts the binary if anything hangs. The last test checks that nothing of
//! ours is left in `/dev/shm` or among the abstract sockets.
//!
//! Filter: `cargo test --test named -- SUBSTRING`.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use shmproc::{
    connect, wait, Array, Barrier, BoundedSemaphore, Condition, Connection, Connector, Error,
    Event, JoinableQueue, Listener, Lock, NameProblem, Process, Queue, RLock, Ready, Receiver,
    RecvError, RecvTimeoutError, Semaphore, Sender, SharedMemory, Value,
};

const WATCHDOG: Duration = Duration::from_secs(300);
const T: Duration = Duration::from_secs(30);
const MILLION: u64 = 1_000_000;
/// Every name these tests use starts so; the leftover check looks for it.
const PREFIX: &str = "shmproc-named-test";

fn name(tag: &str) -> String {
    format!("{PREFIX}-{tag}-{}", std::process::id())
}

// ------------------------------------------------------------------ child processes

/// A child process running a role of this binary: killed and reaped on drop.
struct Kid {
    child: std::process::Child,
    lines: mpsc::Receiver<String>,
    stdin: Option<std::process::ChildStdin>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Kid {
    fn spawn(role: &str, args: &[&str]) -> Kid {
        Self::spawn_cmd(
            Command::new(std::env::current_exe().unwrap())
                .arg("--role")
                .arg(role)
                .args(args),
        )
    }

    fn spawn_cmd(cmd: &mut Command) -> Kid {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn child");
        let out = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stdin = child.stdin.take();
        Kid {
            child,
            lines,
            stdin,
            reader: Some(reader),
        }
    }

    /// The child's next line of output (panics after `T`).
    fn line(&self) -> String {
        self.lines
            .recv_timeout(T)
            .expect("the child printed nothing in time")
    }

    fn expect_line(&self, want: &str) {
        assert_eq!(self.line(), want);
    }

    fn say(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().unwrap();
        writeln!(stdin, "{line}").unwrap();
        stdin.flush().unwrap();
    }

    fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Waits for the exit (killing it after `T`) and returns the exit code (-N: signal N).
    fn wait(&mut self) -> i32 {
        self.stdin = None;
        let deadline = Instant::now() + T;
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                use std::os::unix::process::ExitStatusExt;
                return st.code().unwrap_or_else(|| -st.signal().unwrap_or(0));
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!("child {} did not exit within {T:?}", self.child.id());
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn succeeds(&mut self) {
        assert_eq!(self.wait(), 0, "child failed");
    }

    fn sigkill(&mut self) {
        self.child.kill().unwrap();
        assert_eq!(self.wait(), -9);
    }
}

impl Drop for Kid {
    fn drop(&mut self) {
        self.stdin = None;
        let _ = self.child.kill();
        let _ = self.child.wait();
        // The child is gone: its stdout ends, and the reader with it.
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
    }
}

fn out(line: &str) {
    println!("{line}");
    std::io::stdout().flush().unwrap();
}

// ------------------------------------------------------------------------- handles

/// Every kind of handle, sent in one message.
#[derive(Serialize, Deserialize)]
struct Handles {
    tx: Sender<String>,
    rx: Receiver<String>,
    conn: Connection<u64>,
    queue: Queue<u64>,
    jqueue: JoinableQueue<u64>,
    lock: Lock,
    rlock: RLock,
    sem: Semaphore,
    bsem: BoundedSemaphore,
    event: Event,
    cond: Condition,
    barrier: Barrier,
    value: Value<u64>,
    array: Array<u32>,
}

fn role_handles(name: &str) -> i32 {
    let c = connect::<Handles>(name).unwrap();
    let h = c.recv().unwrap();
    h.tx.send(&"from the client".to_string()).unwrap();
    assert_eq!(h.rx.recv_timeout(T).unwrap(), "to the client");
    let x = h.conn.recv_timeout(T).unwrap();
    h.conn.send(&(x + 1)).unwrap();
    h.queue.put(&7).unwrap();
    assert_eq!(h.jqueue.get_timeout(T).unwrap(), 8);
    h.jqueue.task_done().unwrap();
    {
        let _g = h.lock.lock().unwrap();
        h.value.set(h.value.get() + 100);
    }
    {
        let _a = h.rlock.lock().unwrap();
        let _b = h.rlock.lock().unwrap(); // re-entrant
    }
    h.sem.release().unwrap();
    h.bsem.acquire_timeout(T).unwrap();
    h.array.copy_from_slice(&[1, 2, 3]);
    {
        let g = h.cond.lock().unwrap();
        h.event.set();
        // The server notifies once it has seen the event.
        let (_g, notified) = h.cond.wait_timeout(g, T).unwrap();
        assert!(notified);
    }
    h.barrier.wait(Some(T)).unwrap();
    out("done");
    0
}

fn every_handle_kind_passes_over_a_connection_and_works() {
    let n = name("handles");
    let l = Listener::bind(&n).unwrap();
    let mut kid = Kid::spawn("handles", &[&n]);
    let c = l.accept_timeout::<Handles>(T).unwrap();
    let (tx, from_client) = shmproc::pipe::<String>().unwrap();
    let (to_client, rx) = shmproc::pipe::<String>().unwrap();
    let (conn, here) = shmproc::duplex::<u64>().unwrap();
    let h = Handles {
        tx,
        rx,
        conn,
        queue: Queue::new().unwrap(),
        jqueue: JoinableQueue::new().unwrap(),
        lock: Lock::new().unwrap(),
        rlock: RLock::new().unwrap(),
        sem: Semaphore::new(0).unwrap(),
        bsem: BoundedSemaphore::new(1).unwrap(),
        event: Event::new().unwrap(),
        cond: Condition::new().unwrap(),
        barrier: Barrier::new(2).unwrap(),
        value: Value::new(1).unwrap(),
        array: Array::new([0u32; 3]).unwrap(),
    };
    c.send(&h).unwrap();
    assert_eq!(from_client.recv_timeout(T).unwrap(), "from the client");
    to_client.send(&"to the client".to_string()).unwrap();
    here.send(&41).unwrap();
    assert_eq!(here.recv_timeout(T).unwrap(), 42);
    assert_eq!(h.queue.get_timeout(T).unwrap(), 7);
    h.jqueue.put(&8).unwrap();
    h.jqueue.join_timeout(T).unwrap();
    h.sem.acquire_timeout(T).unwrap();
    assert!(h.event.wait(Some(T)));
    {
        // The client waits on the condition (it released the lock in `wait`).
        let _g = h.cond.lock().unwrap();
        h.cond.notify_all();
    }
    h.barrier.wait(Some(T)).unwrap();
    kid.expect_line("done");
    kid.succeeds();
    let Handles {
        value,
        lock,
        array,
        bsem,
        tx,
        conn,
        ..
    } = h;
    drop((tx, conn));
    assert_eq!(value.get(), 101);
    assert!(!lock.is_locked());
    assert_eq!(array.to_vec(), [1, 2, 3]);
    assert_eq!(bsem.value(), 0);
    // The client's copies went with it, ours with `h`: the ends are disconnected here.
    assert_eq!(
        from_client.recv_timeout(T),
        Err(RecvTimeoutError::Disconnected)
    );
    assert_eq!(here.recv_timeout(T), Err(RecvTimeoutError::Disconnected));
    assert_eq!(
        c.recv_timeout(T).err(),
        Some(RecvTimeoutError::Disconnected)
    );
}

// ------------------------------------------------------------ a million each way

fn role_million(name: &str) -> i32 {
    let c = Connector::new(name).timeout(T).connect::<u64>().unwrap();
    for i in 0..MILLION {
        assert_eq!(c.recv().unwrap(), i);
    }
    for i in 0..MILLION {
        c.send(&(i * 3)).unwrap();
    }
    // Wait for the server to have read everything before leaving.
    assert_eq!(c.recv_timeout(T), Err(RecvTimeoutError::Disconnected));
    0
}

fn a_million_messages_each_way_between_unrelated_processes() {
    let n = name("million");
    let l = Listener::bind(&n).unwrap();
    let mut kid = Kid::spawn("million", &[&n]);
    let c = l.accept_timeout::<u64>(T).unwrap();
    let start = Instant::now();
    for i in 0..MILLION {
        c.send(&i).unwrap();
    }
    for i in 0..MILLION {
        assert_eq!(c.recv().unwrap(), i * 3);
    }
    let took = start.elapsed();
    drop(c);
    kid.succeeds();
    eprintln!(
        "    2 x 10^6 u64 over a named Connection: {took:?} ({:.1} M msg/s, debug build)",
        2.0 * MILLION as f64 / took.as_secs_f64() / 1e6
    );
}

// ------------------------------------------------------------------------------ wait

fn role_three(name: &str) -> i32 {
    let cs: Vec<Connection<u32>> = (0..3).map(|_| connect::<u32>(name).unwrap()).collect();
    cs[2].send(&2).unwrap();
    cs[0].send(&0).unwrap();
    // Echo on the middle one until the server hangs up.
    loop {
        match cs[1].recv_timeout(T) {
            Ok(v) => cs[1].send(&(v + 1)).unwrap(),
            Err(RecvTimeoutError::Disconnected) => return 0,
            Err(e) => panic!("{e:?}"),
        }
    }
}

fn wait_returns_exactly_the_ready_connections() {
    let n = name("three");
    let l = Listener::bind(&n).unwrap();
    let mut kid = Kid::spawn("three", &[&n]);
    let cs: Vec<Connection<u32>> = (0..3).map(|_| l.accept_timeout(T).unwrap()).collect();
    let objects: Vec<&dyn Ready> = cs.iter().map(|c| c as &dyn Ready).collect();
    // The client sends on 2, then 0; never 1 until asked.
    let deadline = Instant::now() + T;
    loop {
        let r = wait(&objects, Some(T)).unwrap();
        assert!(!r.contains(&1), "{r:?}");
        if r == [0, 2] {
            break;
        }
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(wait(&objects, Some(Duration::ZERO)).unwrap(), [0, 2]);
    assert_eq!(cs[0].recv().unwrap(), 0);
    assert_eq!(cs[2].recv().unwrap(), 2);
    assert!(wait(&objects, Some(Duration::from_millis(50)))
        .unwrap()
        .is_empty());
    // A blocked wait is woken by the other process's send (not by a timeout).
    for round in 0..50u32 {
        cs[1].send(&round).unwrap();
        let start = Instant::now();
        assert_eq!(wait(&objects, None).unwrap(), [1]);
        assert!(start.elapsed() < Duration::from_millis(900));
        assert_eq!(cs[1].recv().unwrap(), round + 1);
    }
    // A process in the set: ready when it ends.
    let mut p = Process::fork(|| std::thread::sleep(Duration::from_millis(100)));
    p.start().unwrap();
    let mut all = objects.clone();
    all.push(&p);
    let start = Instant::now();
    assert_eq!(wait(&all, Some(T)).unwrap(), [3]);
    assert!(start.elapsed() >= Duration::from_millis(50));
    drop(all);
    p.join_timeout(T).unwrap();
    assert_eq!(p.exitcode(), Some(0));
    drop(objects);
    drop(cs);
    kid.succeeds();
}

// ------------------------------------------------------------------ crash behaviour

fn role_listener(name: &str) -> i32 {
    let l = Listener::bind(name).unwrap();
    out("bound");
    let _c = l.accept_timeout::<u64>(T).unwrap();
    out("accepted");
    std::thread::sleep(Duration::from_secs(600));
    1
}

fn a_sigkilled_listener_disconnects_its_client_and_frees_the_name() {
    let n = name("killed");
    let mut kid = Kid::spawn("listener", &[&n]);
    kid.expect_line("bound");
    let c = connect::<u64>(&n).unwrap();
    kid.expect_line("accepted");
    let pid = kid.pid();
    let killer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(200));
        // SAFETY: our own child, not yet reaped (the Kid reaps it below).
        unsafe { libc::kill(pid, libc::SIGKILL) };
        Instant::now()
    });
    // Blocked in recv when the listener dies.
    assert_eq!(c.recv(), Err(RecvError::Disconnected));
    let seen = Instant::now();
    let killed = killer.join().unwrap();
    eprintln!(
        "    client saw Disconnected {:?} after the SIGKILL",
        seen.duration_since(killed)
    );
    assert!(
        seen.duration_since(killed) < Duration::from_secs(2),
        "{:?}",
        seen.duration_since(killed)
    );
    assert_eq!(kid.wait(), -9);
    // The name is free at once.
    let l = Listener::bind(&n).unwrap();
    assert!(!abstract_sockets().is_empty());
    drop(l);
    // A client blocked in connect while the listener is killed before accepting.
    let mut kid = Kid::spawn("listener-never-accepts", &[&n]);
    kid.expect_line("bound");
    let n2 = n.clone();
    let t = std::thread::spawn(move || connect::<u64>(&n2).map(drop));
    std::thread::sleep(Duration::from_millis(100));
    kid.sigkill();
    assert!(matches!(
        t.join().unwrap(),
        Err(Error::Disconnected) | Err(Error::NameNotFound(_))
    ));
    drop(Listener::bind(&n).unwrap());
}

fn role_listener_never_accepts(name: &str) -> i32 {
    let _l = Listener::bind(name).unwrap();
    out("bound");
    std::thread::sleep(Duration::from_secs(600));
    1
}

fn a_forked_child_keeps_a_listener_only_when_handed_it() {
    let n = name("forked");
    let l = Listener::bind(&n).unwrap();
    let mut bystander = Process::fork(|| std::thread::sleep(Duration::from_millis(500)));
    bystander.start().unwrap();
    drop(l);
    // The child inherited the socket but was not handed the listener: it closes it as it
    // starts (fork hygiene runs in the child, right after the fork).
    let deadline = Instant::now() + Duration::from_millis(400);
    let l = loop {
        match Listener::bind(&n) {
            Ok(l) => break l,
            Err(Error::NameInUse(_)) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(1))
            }
            Err(e) => panic!("{e:?} (the child still holds the name)"),
        }
    };
    assert!(bystander.is_alive());
    // Prefork: a listener moved into the child's closure stays open there.
    let mut server = Process::fork(move || {
        let c = l.accept_timeout::<u32>(T).unwrap();
        c.send(&(c.recv_timeout(T).unwrap() * 2)).unwrap();
    });
    server.start().unwrap();
    let c = connect::<u32>(&n).unwrap();
    c.send(&21).unwrap();
    assert_eq!(c.recv_timeout(T).unwrap(), 42);
    server.join_timeout(T).unwrap();
    assert_eq!(server.exitcode(), Some(0));
    bystander.join_timeout(T).unwrap();
    assert_eq!(bystander.exitcode(), Some(0));
    drop(Listener::bind(&n).unwrap());
}

// -------------------------------------------------------------------- bad input

fn role_garbage(name: &str) -> i32 {
    // A peer that is not shmproc: a raw SEQPACKET socket sending junk (and a descriptor).
    // SAFETY: geteuid cannot fail.
    let addr = format!("shmproc/{}/{name}", unsafe { libc::geteuid() });
    let fd = raw_seqpacket_connect(&addr).expect("connect");
    let junk = b"\x00\xffGET / HTTP/1.1\r\n\r\n";
    let devnull = std::fs::File::open("/dev/null").unwrap();
    raw_send_with_fd(fd, junk, std::os::fd::AsRawFd::as_raw_fd(&devnull));
    let mut buf = [0u8; 32];
    // SAFETY: reads into a local buffer from our own socket.
    let n = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), 0) };
    // SAFETY: our own descriptor.
    unsafe { libc::close(fd) };
    if &buf[..n.max(0) as usize] == b"SHMPRCR1\x02" {
        0
    } else {
        3
    }
}

fn raw_seqpacket_connect(addr: &str) -> Option<i32> {
    // SAFETY: plain socket calls on our own descriptor with a valid sockaddr_un.
    unsafe {
        let fd = libc::socket(libc::AF_UNIX, libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC, 0);
        let mut sa: libc::sockaddr_un = std::mem::zeroed();
        sa.sun_family = libc::AF_UNIX as _;
        for (d, s) in sa.sun_path[1..].iter_mut().zip(addr.as_bytes()) {
            *d = *s as libc::c_char;
        }
        let len = (std::mem::size_of::<libc::sa_family_t>() + 1 + addr.len()) as u32;
        if libc::connect(fd, (&sa as *const libc::sockaddr_un).cast(), len) != 0 {
            libc::close(fd);
            return None;
        }
        Some(fd)
    }
}

fn raw_bind_listen(addr: &str) -> Option<i32> {
    // SAFETY: as above.
    unsafe {
        let fd = libc::socket(libc::AF_UNIX, libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC, 0);
        let mut sa: libc::sockaddr_un = std::mem::zeroed();
        sa.sun_family = libc::AF_UNIX as _;
        for (d, s) in sa.sun_path[1..].iter_mut().zip(addr.as_bytes()) {
            *d = *s as libc::c_char;
        }
        let len = (std::mem::size_of::<libc::sa_family_t>() + 1 + addr.len()) as u32;
        if libc::bind(fd, (&sa as *const libc::sockaddr_un).cast(), len) != 0
            || libc::listen(fd, 8) != 0
        {
            libc::close(fd);
            return None;
        }
        Some(fd)
    }
}

fn raw_send_with_fd(sock: i32, bytes: &[u8], fd: i32) {
    // SAFETY: a msghdr over local buffers; one SCM_RIGHTS descriptor.
    unsafe {
        let mut iov = libc::iovec {
            iov_base: bytes.as_ptr() as *mut _,
            iov_len: bytes.len(),
        };
        let mut cbuf = [0u64; 4];
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = cbuf.as_mut_ptr().cast();
        msg.msg_controllen = libc::CMSG_SPACE(4) as _;
        let c = libc::CMSG_FIRSTHDR(&msg);
        (*c).cmsg_level = libc::SOL_SOCKET;
        (*c).cmsg_type = libc::SCM_RIGHTS;
        (*c).cmsg_len = libc::CMSG_LEN(4) as _;
        libc::CMSG_DATA(c).cast::<i32>().write_unaligned(fd);
        assert!(libc::sendmsg(sock, &msg, libc::MSG_NOSIGNAL) >= 0);
    }
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

fn bad_input_gets_distinct_errors_and_leaks_nothing() {
    let problem = |r: shmproc::Result<Listener>| match r {
        Err(e @ Error::InvalidName { .. }) => {
            eprintln!("    {e}");
            match e {
                Error::InvalidName { problem, .. } => problem,
                _ => unreachable!(),
            }
        }
        other => panic!("{other:?}"),
    };
    assert_eq!(problem(Listener::bind("a/b")), NameProblem::Slash);
    assert_eq!(problem(Listener::bind("a\0b")), NameProblem::Nul);
    assert_eq!(problem(Listener::bind("")), NameProblem::Empty);
    assert_eq!(
        problem(Listener::bind(&"x".repeat(shmproc::MAX_NAME_LEN + 1))),
        NameProblem::TooLong
    );
    assert!(matches!(
        connect::<u8>("a/b"),
        Err(Error::InvalidName { .. })
    ));
    assert!(matches!(
        SharedMemory::create("a/b", 8),
        Err(Error::InvalidName { .. })
    ));
    let n = name("bad");
    assert!(matches!(connect::<u8>(&n), Err(Error::NameNotFound(_))));
    assert!(matches!(
        SharedMemory::open(&n),
        Err(Error::NameNotFound(_))
    ));
    let fds = open_fds();
    let l = Listener::bind(&n).unwrap();
    assert!(matches!(Listener::bind(&n), Err(Error::NameInUse(_))));
    // Garbage from another process: an error for that accept, then the listener goes on.
    {
        let mut kid = Kid::spawn("garbage", &[&n]);
        match l.accept_timeout::<u8>(T) {
            Err(Error::Handshake(msg)) => assert!(msg.contains("hello"), "{msg}"),
            other => panic!("{other:?}"),
        }
        kid.succeeds();
    }
    {
        let mut kid = Kid::spawn("echo-once", &[&n]);
        let c = l.accept_timeout::<u8>(T).unwrap();
        c.send(&5).unwrap();
        assert_eq!(c.recv_timeout(T).unwrap(), 6);
        drop(c);
        kid.succeeds();
    }
    drop(l);
    // The junk descriptor, the sockets, the rings: all closed.
    assert_eq!(open_fds(), fds);
}

fn role_echo_once(name: &str) -> i32 {
    let c = connect::<u8>(name).unwrap();
    let v = c.recv_timeout(T).unwrap();
    c.send(&(v + 1)).unwrap();
    assert_eq!(c.recv_timeout(T), Err(RecvTimeoutError::Disconnected));
    0
}

/// Runs `f` in a child forked by `Process::fork` that drops to user nobody first.
fn as_nobody(f: fn(String) -> i32, arg: String) -> Process {
    let mut p = Process::fork(move || {
        // SAFETY: plain syscalls in the forked child; it drops to nobody for good.
        unsafe {
            if libc::setgroups(0, std::ptr::null()) != 0
                || libc::setgid(65534) != 0
                || libc::setuid(65534) != 0
            {
                std::process::exit(90);
            }
        }
        std::process::exit(f(arg));
    });
    p.start().unwrap();
    p
}

fn nobody_connects(spec: String) -> i32 {
    let (n, owner) = spec.split_once(' ').unwrap();
    let c = Connector::new(n).owner(owner.parse().unwrap()).timeout(T);
    match c.connect::<u64>() {
        Err(Error::Refused) => 10,
        Ok(conn) => {
            let v = conn.recv_timeout(T).unwrap();
            conn.send(&(v + 1)).unwrap();
            let _ = conn.recv_timeout(T);
            11
        }
        Err(e) => {
            eprintln!("nobody: {e:?}");
            12
        }
    }
}

fn nobody_squats(spec: String) -> i32 {
    let (n, owner) = spec.split_once(' ').unwrap();
    // Bind *our* user's address for the name: the abstract namespace lets anyone.
    match raw_bind_listen(&format!("shmproc/{owner}/{n}")) {
        Some(_fd) => {
            std::thread::sleep(Duration::from_secs(600));
            0
        }
        None => 20,
    }
}

fn another_user_is_refused() {
    // SAFETY: geteuid cannot fail.
    let me = unsafe { libc::geteuid() };
    if me != 0 {
        eprintln!("    skipped: needs root to run a child as user nobody (65534)");
        return;
    }
    let n = name("nobody");
    let l = Listener::bind(&n).unwrap();
    let mut p = as_nobody(nobody_connects, format!("{n} {me}"));
    match l.accept_timeout::<u64>(T) {
        Err(Error::PeerRefused { uid: 65534, pid }) => assert_eq!(Some(pid), p.pid()),
        other => panic!("{other:?}"),
    }
    p.join_timeout(T).unwrap();
    assert_eq!(p.exitcode(), Some(10), "the client saw Refused");
    // Widened on purpose: nobody may connect.
    drop(l);
    let l = Listener::builder().allow_uid(65534).bind(&n).unwrap();
    let mut p = as_nobody(nobody_connects, format!("{n} {me}"));
    let c = l.accept_timeout::<u64>(T).unwrap();
    c.send(&1).unwrap();
    assert_eq!(c.recv_timeout(T).unwrap(), 2);
    drop(c);
    p.join_timeout(T).unwrap();
    assert_eq!(p.exitcode(), Some(11));
    drop(l);
    // Another user holding our name: bind says so, connect refuses to talk to it.
    let mut p = as_nobody(nobody_squats, format!("{n} {me}"));
    let deadline = Instant::now() + T;
    loop {
        match Listener::bind(&n) {
            Err(Error::NameInUse(_)) => break,
            Ok(l) => drop(l),
            Err(e) => panic!("{e:?}"),
        }
        assert!(Instant::now() < deadline, "the squatter never bound");
        std::thread::sleep(Duration::from_millis(5));
    }
    match connect::<u64>(&n) {
        Err(Error::PeerRefused { uid: 65534, .. }) => {}
        other => panic!("{other:?}"),
    }
    p.kill().unwrap();
    p.join_timeout(T).unwrap();
    assert_eq!(p.exitcode(), Some(-9));
    drop(Listener::bind(&n).unwrap());
}

// ------------------------------------------------------------------ SharedMemory

fn role_shm_read(name: &str) -> i32 {
    let b = SharedMemory::open(name).unwrap();
    let mut buf = [0u8; 5];
    b.read_at(0, &mut buf).unwrap();
    assert_eq!(&buf, b"hello");
    assert_eq!(b.read::<u64>(64).unwrap(), 0xfeed);
    b.write_at(5, b"world").unwrap();
    b.atomic_u64(128)
        .unwrap()
        .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    0
}

fn role_shm_hang(name: &str) -> i32 {
    let b = SharedMemory::create(name, 4096).unwrap();
    b.write_at(0, b"left behind").unwrap();
    out("created");
    std::thread::sleep(Duration::from_secs(600));
    1
}

fn role_shm_read_python(name: &str) -> i32 {
    let b = SharedMemory::open(name).unwrap();
    let mut buf = [0u8; 12];
    b.read_at(0, &mut buf).unwrap();
    assert_eq!(&buf, b"from python!");
    b.write_at(12, b"+rust").unwrap();
    0
}

const PY_ATTACH: &str = r#"
import sys
from multiprocessing import shared_memory, resource_tracker
shm = shared_memory.SharedMemory(name=sys.argv[1])
try:  # attaching must not make Python's tracker unlink the block at exit (gh-82300)
    resource_tracker.unregister(shm._name, "shared_memory")
except Exception:
    pass
assert bytes(shm.buf[:10]) == b"helloworld", bytes(shm.buf[:10])
shm.buf[10:16] = b"python"
print(shm.size, flush=True)
shm.close()
"#;

const PY_CREATE: &str = r#"
import sys
from multiprocessing import shared_memory
shm = shared_memory.SharedMemory(name=sys.argv[1], create=True, size=4096)
shm.buf[:12] = b"from python!"
print("ready", flush=True)
sys.stdin.readline()
assert bytes(shm.buf[12:17]) == b"+rust", bytes(shm.buf[:17])
shm.close()
shm.unlink()
print("done", flush=True)
"#;

fn python3() -> bool {
    Command::new("python3")
        .args(["-c", "import multiprocessing.shared_memory"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn shared_memory_is_read_in_another_process_and_in_python() {
    let n = name("shm");
    let b = SharedMemory::create(&n, 4096).unwrap();
    b.write_at(0, b"hello").unwrap();
    b.write::<u64>(64, &0xfeed).unwrap();
    Kid::spawn("shm-read", &[&n]).succeeds();
    let mut buf = [0u8; 10];
    b.read_at(0, &mut buf).unwrap();
    assert_eq!(&buf, b"helloworld");
    assert_eq!(b.read::<u64>(128).unwrap(), 1);
    if !python3() {
        eprintln!(
            "    python3 (with multiprocessing.shared_memory) not found: Python part skipped"
        );
        return;
    }
    // Rust creates, Python attaches.
    let mut py = Kid::spawn_cmd(Command::new("python3").args(["-c", PY_ATTACH, &n]));
    py.expect_line("4096");
    py.succeeds();
    let mut buf = [0u8; 16];
    b.read_at(0, &mut buf).unwrap();
    assert_eq!(&buf, b"helloworldpython");
    drop(b);
    assert!(std::fs::metadata(format!("/dev/shm/{n}")).is_err());
    // Python creates, Rust attaches.
    let n = name("shm-py");
    let mut py = Kid::spawn_cmd(Command::new("python3").args(["-c", PY_CREATE, &n]));
    py.expect_line("ready");
    Kid::spawn("shm-read-python", &[&n]).succeeds();
    // Rust's create does not take a block Python made (no shmproc mark, no lock).
    assert!(matches!(
        SharedMemory::create(&n, 64),
        Err(Error::NameInUse(_))
    ));
    py.say("go");
    py.expect_line("done");
    py.succeeds();
    assert!(std::fs::metadata(format!("/dev/shm/{n}")).is_err());
}

fn a_sigkilled_creators_block_is_reclaimed_by_the_next_create() {
    let n = name("reclaim");
    let path = format!("/dev/shm/{n}");
    let mut kid = Kid::spawn("shm-hang", &[&n]);
    kid.expect_line("created");
    // While the creator lives, the name is its own.
    assert!(matches!(
        SharedMemory::create(&n, 64),
        Err(Error::NameInUse(_))
    ));
    kid.sigkill();
    // Its block stays (nobody could unlink it) ...
    let left = SharedMemory::open(&n).unwrap();
    let mut buf = [0u8; 11];
    left.read_at(0, &mut buf).unwrap();
    assert_eq!(&buf, b"left behind");
    assert!(std::fs::metadata(&path).is_ok());
    // ... until the next create of the name.
    let b = SharedMemory::create(&n, 64).unwrap();
    assert_eq!(b.len(), 64);
    assert_eq!(b.read::<u64>(0).unwrap(), 0);
    // The old mapping still works for whoever had it.
    left.read_at(0, &mut buf).unwrap();
    assert_eq!(&buf, b"left behind");
    drop(left);
    drop(b);
    assert!(std::fs::metadata(&path).is_err());
}

// ------------------------------------------------------------ the README's pair

fn example(name: &str) -> std::path::PathBuf {
    // target/<profile>/deps/named-<hash> -> target/<profile>/examples/<name>
    let exe = std::env::current_exe().unwrap();
    exe.parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("examples")
        .join(name)
}

fn the_readme_examples_serve_two_clients() {
    let (server, client) = (example("named_server"), example("named_client"));
    if !server.exists() || !client.exists() {
        eprintln!("    skipped: examples not built (cargo test builds them)");
        return;
    }
    let n = name("demo");
    let mut s = Kid::spawn_cmd(Command::new(&server).arg("2").env("SHMPROC_DEMO_NAME", &n));
    assert!(s.line().starts_with("serving"));
    for i in 1..=2 {
        let mut c = Kid::spawn_cmd(Command::new(&client).env("SHMPROC_DEMO_NAME", &n));
        c.expect_line(&format!("I am client {i}, visit number {i}"));
        c.expect_line("40 + 2 = 42");
        c.expect_line(&format!("the server shouts back: HELLO FROM CLIENT {i}"));
        c.succeeds();
    }
    s.succeeds();
}

// ---------------------------------------------------------------- leftovers

/// Our abstract sockets still bound (from `/proc/net/unix`).
fn abstract_sockets() -> Vec<String> {
    // SAFETY: geteuid cannot fail.
    let uid = unsafe { libc::geteuid() };
    let mine = format!("@shmproc/{uid}/{PREFIX}-");
    std::fs::read_to_string("/proc/net/unix")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_whitespace().nth(7))
        .filter(|p| p.starts_with(&mine))
        .map(String::from)
        .collect()
}

fn nothing_of_ours_is_left_behind() {
    let shm: Vec<String> = std::fs::read_dir("/dev/shm")
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(PREFIX))
        .collect();
    assert!(shm.is_empty(), "left in /dev/shm: {shm:?}");
    let socks = abstract_sockets();
    assert!(socks.is_empty(), "sockets still bound: {socks:?}");
}

// --------------------------------------------------------------------------- main

type Test = (&'static str, fn());

const TESTS: &[Test] = &[
    (
        "a_million_messages_each_way_between_unrelated_processes",
        a_million_messages_each_way_between_unrelated_processes,
    ),
    (
        "every_handle_kind_passes_over_a_connection_and_works",
        every_handle_kind_passes_over_a_connection_and_works,
    ),
    (
        "wait_returns_exactly_the_ready_connections",
        wait_returns_exactly_the_ready_connections,
    ),
    (
        "a_sigkilled_listener_disconnects_its_client_and_frees_the_name",
        a_sigkilled_listener_disconnects_its_client_and_frees_the_name,
    ),
    (
        "a_forked_child_keeps_a_listener_only_when_handed_it",
        a_forked_child_keeps_a_listener_only_when_handed_it,
    ),
    (
        "bad_input_gets_distinct_errors_and_leaks_nothing",
        bad_input_gets_distinct_errors_and_leaks_nothing,
    ),
    ("another_user_is_refused", another_user_is_refused),
    (
        "shared_memory_is_read_in_another_process_and_in_python",
        shared_memory_is_read_in_another_process_and_in_python,
    ),
    (
        "a_sigkilled_creators_block_is_reclaimed_by_the_next_create",
        a_sigkilled_creators_block_is_reclaimed_by_the_next_create,
    ),
    (
        "the_readme_examples_serve_two_clients",
        the_readme_examples_serve_two_clients,
    ),
    (
        "nothing_of_ours_is_left_behind",
        nothing_of_ours_is_left_behind,
    ),
];

fn run_role(role: &str, arg: &str) -> i32 {
    match role {
        "million" => role_million(arg),
        "handles" => role_handles(arg),
        "three" => role_three(arg),
        "listener" => role_listener(arg),
        "listener-never-accepts" => role_listener_never_accepts(arg),
        "garbage" => role_garbage(arg),
        "echo-once" => role_echo_once(arg),
        "shm-read" => role_shm_read(arg),
        "shm-hang" => role_shm_hang(arg),
        "shm-read-python" => role_shm_read_python(arg),
        _ => {
            eprintln!("unknown role {role}");
            2
        }
    }
}

fn main() {
    shmproc::init();
    let args: Vec<String> = std::env::args().collect();
    if args.len() >= 4 && args[1] == "--role" {
        // A child: dies with the test binary, whatever happens to it.
        // SAFETY: prctl with integer arguments.
        unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
        std::process::exit(run_role(&args[2], &args[3]));
    }
    std::thread::spawn(|| {
        std::thread::sleep(WATCHDOG);
        eprintln!("watchdog: tests/named.rs still running after {WATCHDOG:?}; aborting");
        std::process::abort();
    });
    let filter: Vec<&String> = args[1..].iter().filter(|a| !a.starts_with('-')).collect();
    let (mut passed, mut failed) = (0, Vec::new());
    for (name, test) in TESTS {
        if !filter.is_empty() && !filter.iter().any(|f| name.contains(f.as_str())) {
            continue;
        }
        let t = Instant::now();
        match std::panic::catch_unwind(test) {
            Ok(()) => {
                passed += 1;
                println!("test {name} ... ok ({:?})", t.elapsed());
            }
            Err(_) => {
                println!("test {name} ... FAILED");
                failed.push(name);
            }
        }
    }
    println!("\nnamed: {passed} passed, {} failed", failed.len());
    for f in &failed {
        println!("    {f}");
    }
    std::process::exit(if failed.is_empty() { 0 } else { 1 })
}
