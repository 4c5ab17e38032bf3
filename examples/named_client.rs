//! A client of `examples/named_server.rs`, started on its own (another terminal, another
//! program): it finds the server by name. See that example for how to run both.

use serde::{Deserialize, Serialize};
use shmproc::{connect, Value};

// The same message type as the server's (in a real project: a crate both depend on).
#[derive(Serialize, Deserialize, Debug)]
enum Msg {
    Welcome { id: u32, visits: Value<u64> },
    Add(i64, i64),
    Sum(i64),
    Shout(String),
    Loud(String),
}

fn main() -> shmproc::Result<()> {
    shmproc::init();
    let name = std::env::var("SHMPROC_DEMO_NAME").unwrap_or_else(|_| "shmproc-demo".to_string());
    let conn = match connect::<Msg>(&name) {
        Ok(c) => c,
        Err(shmproc::Error::NameNotFound(_)) => {
            eprintln!("no server: start `cargo run --example named_server` first");
            std::process::exit(2);
        }
        Err(e) => return Err(e),
    };
    let Ok(Msg::Welcome { id, visits }) = conn.recv() else {
        panic!("the server did not welcome us");
    };
    // A handle that came in a message: the same counter the server and every other
    // client see.
    let n = {
        let mut v = visits.lock().expect("counter lock");
        *v += 1;
        *v
    };
    println!("I am client {id}, visit number {n}");
    conn.send(&Msg::Add(40, 2)).unwrap();
    if let Ok(Msg::Sum(s)) = conn.recv() {
        println!("40 + 2 = {s}");
    }
    conn.send(&Msg::Shout(format!("hello from client {id}")))
        .unwrap();
    if let Ok(Msg::Loud(s)) = conn.recv() {
        println!("the server shouts back: {s}");
    }
    Ok(())
}
