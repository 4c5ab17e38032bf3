//! Every example of the seed notes (`multiprocessing-notes.txt`), in Rust:
//! Pool.map, Process + join, daemon, fork vs spawn, Queue, Pipe, Lock.
//! The pipe throughput experiment has its own program: `examples/seed_pipe.rs`.
//!
//! `cargo run --example seed`
use std::time::Duration;

use serde::{Deserialize, Serialize};
use shmproc::{duplex, get_context, Connection, Lock, Pool, Process, Queue, StartMethod};

// --- Pool: `with Pool(5) as p: print(p.map(f, [1, 2, 3]))` -------------------------
fn f(x: u64) -> u64 {
    x * x
}

// --- Process: `p = Process(target=f, args=('bob',)); p.start(); p.join()` ----------
fn hello(name: String) {
    println!("hello {name}");
}

// --- Queue: `q.put([42, None, 'hello'])` -------------------------------------------
#[derive(Serialize, Deserialize, Debug, PartialEq)]
enum Item {
    Int(i64),
    None,
    Str(String),
}

fn put_list(q: Queue<Vec<Item>>) {
    q.put(&vec![Item::Int(42), Item::None, Item::Str("hello".into())])
        .unwrap();
}

// --- Pipe: the child sends on its end of a duplex Pipe() ---------------------------
fn pipe_child(conn: Connection<Vec<Item>>) {
    conn.send(&vec![Item::Int(42), Item::None, Item::Str("hello".into())])
        .unwrap();
}

// --- Lock: three processes print one after another ---------------------------------
fn locked_print((l, i): (Lock, u32)) {
    let _guard = l.lock().unwrap_or_else(|e| match e {
        shmproc::LockError::OwnerDied(g) => g,
        other => panic!("{other}"),
    });
    println!("hello world {i}");
    std::thread::sleep(Duration::from_millis(100)); // the seed sleeps 3 s
}

fn main() -> shmproc::Result<()> {
    shmproc::init(); // Python's `if __name__ == '__main__':`

    // Pool: dropping the pool at the end of the block terminates it, like __exit__.
    {
        let p = Pool::new(5)?;
        println!("{:?}", p.map(f, [1, 2, 3])?);
    }

    // Process + join, under both start methods (spawn = fork + execve).
    for method in [StartMethod::Fork, StartMethod::Spawn] {
        let mut p = get_context(method).process(hello, "bob".to_string());
        p.start()?;
        p.join()?;
    }

    // daemon: killed with its parent; here we just show the flag and the exit code.
    let mut d = Process::new(hello, "daemon".to_string());
    d.daemon(true);
    d.start()?;
    d.join()?;
    println!("daemon exit code {:?}", d.exitcode());

    // Queue
    let q = Queue::<Vec<Item>>::new()?;
    let mut p = Process::new(put_list, q.clone());
    p.start()?;
    println!("{:?}", q.get()?); // [Int(42), None, Str("hello")]
    p.join()?;

    // Pipe: `parent_conn, child_conn = Pipe()`
    let (parent_conn, child_conn) = duplex::<Vec<Item>>()?;
    let mut p = Process::new(pipe_child, child_conn);
    p.start()?;
    println!("{:?}", parent_conn.recv().expect("child sends"));
    p.join()?;

    // Lock: for num in range(3): Process(target=f, args=(lock, num)).start(); join()
    let lock = Lock::new()?;
    for num in 0..3 {
        let mut p = Process::new(locked_print, (lock.clone(), num));
        p.start()?;
        p.join()?;
    }
    Ok(())
}
