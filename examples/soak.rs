//! Soak: every channel kind at once, random message sizes, random SIGKILLs, for a bounded
//! time; ends with a count of messages sent, received, lost and in flight.
//!
//! ```text
//! cargo run --release --example soak              # about a minute
//! SOAK_SECS=10 cargo run --release --example soak
//! ```
//!
//! Each round runs, side by side:
//! * a **pipe** writer process streaming self-checking messages of 0 B to 4× the ring,
//!   SIGKILLed at a random moment;
//! * a **duplex** echo process, SIGKILLed at a random moment while the parent talks to it;
//! * two **queue** producer processes and one consumer process, one of them SIGKILLed at
//!   a random moment, the parent consuming too.
//!
//! Senders count what they sent in a shared `Value` after each send returns. A message
//! whose send had begun when its process was killed is *in flight*: it may or may not
//! arrive. Everything else must arrive exactly once, whole and in order: `lost` must be 0.
//! The program exits 1 otherwise.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use shmproc::{duplex, Connection, Pipe, Process, Queue, RecvTimeoutError, Sender, Value};

/// xorshift: reproducible randomness without a dependency.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct Item {
    producer: u32,
    seq: u64,
    body: Vec<u8>,
}

fn body(seq: u64, max: u64) -> Vec<u8> {
    let mut r = Rng(seq.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let len = match r.below(8) {
        0 => 0,
        1..=5 => r.below(256),
        _ => r.below(max),
    };
    (0..len).map(|i| (seq.wrapping_add(i) * 7) as u8).collect()
}

#[derive(Default, Debug)]
struct Tally {
    sent: u64,
    received: u64,
    lost: u64,
    in_flight: u64,
    corrupt: u64,
    kills: u64,
}

impl Tally {
    /// `sent` completed sends; `received` deliveries (gapless from 0, checked by the caller).
    fn account(&mut self, sent: u64, received: u64) {
        self.sent += sent;
        self.received += received.min(sent);
        if received < sent {
            self.lost += sent - received;
        } else {
            // Delivered, but the sender died before it could count it.
            self.in_flight += received - sent;
        }
    }
}

const RING: usize = 16 << 10;

fn pipe_writer(args: (Sender<Item>, Value<u64>)) {
    let (tx, sent) = args;
    for seq in 0.. {
        let item = Item {
            producer: 0,
            seq,
            body: body(seq, 4 * RING as u64),
        };
        if tx.send(&item).is_err() {
            return;
        }
        sent.set(seq + 1);
    }
}

fn echo(conn: Connection<Item>) {
    while let Ok(item) = conn.recv() {
        if conn.send(&item).is_err() {
            return;
        }
    }
}

fn producer(args: (Queue<Item>, Value<u64>, u32)) {
    let (q, sent, id) = args;
    for seq in 0..20_000 {
        let item = Item {
            producer: id,
            seq,
            body: body(seq, 2048),
        };
        if q.put(&item).is_err() {
            return;
        }
        sent.set(seq + 1);
    }
}

fn consumer(args: (Queue<Item>, Sender<Item>)) {
    let (q, out) = args;
    // Forwards what it takes to the parent, so the parent sees every delivered item.
    while let Ok(item) = q.get_timeout(Duration::from_millis(300)) {
        if out.send(&item).is_err() {
            return;
        }
    }
}

fn kill_after(p: &mut Process, d: Duration, t: &mut Tally) {
    std::thread::sleep(d);
    if p.kill().is_ok() {
        t.kills += 1;
    }
}

fn round(
    rng: &mut Rng,
    pipes: &mut Tally,
    duplexes: &mut Tally,
    queues: &mut Tally,
) -> shmproc::Result<()> {
    // --- pipe: a writer streaming, killed at random -------------------------------
    let (tx, rx) = Pipe::builder().capacity(RING).build::<Item>()?;
    let sent = Value::new(0u64)?;
    let mut writer = Process::new(pipe_writer, (tx, sent.clone()));
    writer.start()?;
    let kill_at = Duration::from_millis(rng.below(60));
    let reader = std::thread::spawn(move || {
        let (mut next, mut corrupt) = (0u64, 0u64);
        loop {
            match rx.recv_timeout(Duration::from_secs(10)) {
                Ok(item) => {
                    if item.seq != next || item.body != body(item.seq, 4 * RING as u64) {
                        corrupt += 1;
                    }
                    next = item.seq + 1;
                }
                Err(RecvTimeoutError::Disconnected) => return (next, corrupt),
                Err(e) => panic!("pipe reader: {e:?}"),
            }
        }
    });

    // --- duplex: an echo process, killed at random while we talk ------------------
    let (here, there) = duplex::<Item>()?;
    let mut echoer = Process::new(echo, there);
    echoer.start()?;
    let echo_kill = Duration::from_millis(rng.below(60));
    let talker = std::thread::spawn(move || {
        let (mut sent, mut back, mut corrupt) = (0u64, 0u64, 0u64);
        for seq in 0.. {
            let item = Item {
                producer: 9,
                seq,
                body: body(seq, 8 * RING as u64),
            };
            if here.send(&item).is_err() {
                break;
            }
            sent += 1;
            match here.recv_timeout(Duration::from_secs(10)) {
                Ok(got) => {
                    back += 1;
                    corrupt += u64::from(got != item);
                }
                Err(RecvTimeoutError::Disconnected) => break,
                Err(e) => panic!("duplex: {e:?}"),
            }
        }
        (sent, back, corrupt)
    });

    // --- queue: two producers and a consumer process, one of the three killed ------
    let q = Queue::<Item>::with_capacity(64)?;
    let counts = [Value::new(0u64)?, Value::new(0u64)?];
    let mut prods: Vec<Process> = (0..2u32)
        .map(|id| Process::new(producer, (q.clone(), counts[id as usize].clone(), id)))
        .collect();
    let (fwd_tx, fwd_rx) = shmproc::pipe::<Item>()?;
    let mut cons = Process::new(consumer, (q.clone(), fwd_tx));
    for p in prods.iter_mut() {
        p.start()?;
    }
    cons.start()?;
    let victim = rng.below(3) as usize;
    let q_kill = Duration::from_millis(rng.below(40));

    // Kill the pipe writer, the echo process and one queue process at their times.
    let mut kills = [(kill_at, 0usize), (echo_kill, 1), (q_kill, 2)];
    kills.sort();
    let start = Instant::now();
    let (mut tp, mut td, mut tq) = (Tally::default(), Tally::default(), Tally::default());
    for (at, which) in kills {
        let wait = at.saturating_sub(start.elapsed());
        match which {
            0 => kill_after(&mut writer, wait, &mut tp),
            1 => kill_after(&mut echoer, wait, &mut td),
            _ => {
                let p = if victim < 2 {
                    &mut prods[victim]
                } else {
                    &mut cons
                };
                kill_after(p, wait, &mut tq);
            }
        }
    }

    // Pipe: everything the writer finished sending arrived, in order, whole.
    writer.join()?;
    let (received, corrupt) = reader.join().expect("pipe reader");
    tp.corrupt += corrupt;
    tp.account(sent.get(), received);

    // Duplex: every echo that came back matched.
    echoer.join()?;
    let (d_sent, d_back, d_corrupt) = talker.join().expect("duplex talker");
    td.corrupt += d_corrupt;
    td.sent += d_sent;
    td.received += d_back;
    td.in_flight += d_sent - d_back; // the one outstanding when the echoer died

    // Queue: the parent consumes too; then drains what is left once producers finish.
    // Two consumers (the parent and the consumer process): items of one producer may
    // arrive out of order, so track each sequence number once.
    let mut seen = vec![vec![false; 20_000]; 2];
    let mut take = |item: Item, t: &mut Tally| {
        let p = item.producer as usize;
        let ok = p < 2 && (item.seq as usize) < 20_000 && item.body == body(item.seq, 2048);
        if !ok || std::mem::replace(&mut seen[p][item.seq as usize], true) {
            t.corrupt += 1; // garbage or a duplicate
        }
    };
    for p in prods.iter_mut() {
        while p.exitcode().is_none() {
            while let Ok(item) = q.try_get() {
                take(item, &mut tq);
            }
            while let Ok(item) = fwd_rx.try_recv() {
                take(item, &mut tq);
            }
            p.join_timeout(Duration::from_millis(1))?;
        }
    }
    // The producers are done; keep draining both paths until the consumer process has
    // gone (it stops after 2 s without items) and its forwarding pipe is disconnected.
    while cons.exitcode().is_none() {
        while let Ok(item) = q.try_get() {
            take(item, &mut tq);
        }
        while let Ok(item) = fwd_rx.try_recv() {
            take(item, &mut tq);
        }
        cons.join_timeout(Duration::from_millis(1))?;
    }
    while let Ok(item) = q.try_get() {
        take(item, &mut tq);
    }
    while let Ok(item) = fwd_rx.recv_timeout(Duration::from_secs(5)) {
        take(item, &mut tq);
    }
    // Only the consumer process can lose an item whose put had returned: the one it
    // held (taken from the queue, not yet forwarded) when it was killed. A producer
    // killed mid-put had not counted that item, so it is not "sent".
    let mut consumer_allowance = u64::from(victim == 2);
    for (i, c) in counts.iter().enumerate() {
        let s = c.get();
        // Items the producer finished putting that never arrived.
        let missing = seen[i][..s as usize].iter().filter(|b| !**b).count() as u64;
        // Arrived, though the producer died before counting it.
        let extra = seen[i][s as usize..].iter().filter(|b| **b).count() as u64;
        let in_flight = missing.min(consumer_allowance);
        consumer_allowance -= in_flight;
        tq.lost += missing - in_flight;
        tq.in_flight += in_flight + extra;
        tq.sent += s;
        tq.received += s - missing;
    }
    for (acc, t) in [(pipes, tp), (duplexes, td), (queues, tq)] {
        acc.sent += t.sent;
        acc.received += t.received;
        acc.lost += t.lost;
        acc.in_flight += t.in_flight;
        acc.corrupt += t.corrupt;
        acc.kills += t.kills;
    }
    Ok(())
}

fn main() -> shmproc::Result<()> {
    shmproc::init();
    let secs: u64 = std::env::var("SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    let mut rng = Rng(0x50A4_0001 ^ secs);
    let (mut p, mut d, mut q) = (Tally::default(), Tally::default(), Tally::default());
    let start = Instant::now();
    let mut rounds = 0;
    while start.elapsed() < Duration::from_secs(secs) {
        round(&mut rng, &mut p, &mut d, &mut q)?;
        rounds += 1;
        if rounds % 20 == 0 {
            eprintln!("soak: {rounds} rounds, {:.0?} elapsed", start.elapsed());
        }
    }
    println!("soak: {rounds} rounds in {:.1?}", start.elapsed());
    println!("| channel | kills | sent | received | lost | in flight (killed process) | corrupt |");
    println!("|---|---|---|---|---|---|---|");
    for (name, t) in [("pipe", &p), ("duplex", &d), ("queue", &q)] {
        println!(
            "| {name} | {} | {} | {} | {} | {} | {} |",
            t.kills, t.sent, t.received, t.lost, t.in_flight, t.corrupt
        );
    }
    let bad = p.lost + d.lost + q.lost + p.corrupt + d.corrupt + q.corrupt;
    if bad != 0 {
        eprintln!("soak: FAILED ({bad} lost or corrupt)");
        std::process::exit(1);
    }
    Ok(())
}
