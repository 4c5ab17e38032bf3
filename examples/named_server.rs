//! A service that unrelated programs reach by name. Run it in one terminal:
//!
//! ```sh
//! cargo run --example named_server          # serves until Ctrl-C
//! cargo run --example named_server -- 2     # or: stops after 2 clients have left
//! ```
//!
//! and `cargo run --example named_client` in another (several at once, if you like).
//!
//! One thread serves every client: `wait` says which of the listener and the
//! connections is ready (Python's `multiprocessing.connection.wait`). Each client gets a
//! handle on a shared counter (`Value<u64>`) in its welcome message: handles travel over
//! a named connection and work in the other process.

use serde::{Deserialize, Serialize};
use shmproc::{wait, Connection, Listener, Ready, Value};

/// The name clients connect to (per user: another user's server of the same name is
/// another server). `SHMPROC_DEMO_NAME` overrides it (the tests run the pair so).
fn name() -> String {
    std::env::var("SHMPROC_DEMO_NAME").unwrap_or_else(|_| "shmproc-demo".to_string())
}

/// Everything that goes over a connection, both ways.
#[derive(Serialize, Deserialize, Debug)]
enum Msg {
    /// Server → client, first: the client's number and the shared visit counter.
    Welcome { id: u32, visits: Value<u64> },
    /// Client → server: add these.
    Add(i64, i64),
    /// Server → client.
    Sum(i64),
    /// Client → server: shout this.
    Shout(String),
    /// Server → client.
    Loud(String),
}

fn main() -> shmproc::Result<()> {
    shmproc::init();
    let stop_after: Option<u32> = std::env::args().nth(1).and_then(|a| a.parse().ok());
    let listener = Listener::bind(&name())?;
    let visits = Value::new(0u64)?;
    println!("serving {:?} (pid {})", name(), std::process::id());
    let mut clients: Vec<(u32, Connection<Msg>)> = Vec::new();
    let (mut next_id, mut gone) = (1u32, 0u32);
    loop {
        let mut objects: Vec<&dyn Ready> = vec![&listener];
        objects.extend(clients.iter().map(|(_, c)| c as &dyn Ready));
        let ready = wait(&objects, None)?;
        let mut closed = Vec::new();
        for i in ready {
            if i == 0 {
                match listener.accept::<Msg>() {
                    Ok(conn) => {
                        println!("client {next_id} connected");
                        // A send to a client that is gone fails; its next recv says so.
                        let _ = conn.send(&Msg::Welcome {
                            id: next_id,
                            visits: visits.clone(),
                        });
                        clients.push((next_id, conn));
                        next_id += 1;
                    }
                    // A refused or broken client is its own problem: serve on.
                    Err(e) => eprintln!("refused a client: {e}"),
                }
                continue;
            }
            let (id, conn) = &clients[i - 1];
            match conn.recv() {
                Ok(Msg::Add(a, b)) => {
                    let _ = conn.send(&Msg::Sum(a + b));
                }
                Ok(Msg::Shout(s)) => {
                    let _ = conn.send(&Msg::Loud(s.to_uppercase()));
                }
                Ok(other) => eprintln!("client {id} sent {other:?}"),
                Err(_) => {
                    // Disconnected: it dropped its end, exited or was killed.
                    println!("client {id} left; visits so far: {}", visits.get());
                    closed.push(i - 1);
                }
            }
        }
        for i in closed.into_iter().rev() {
            clients.remove(i);
            gone += 1;
        }
        if stop_after.is_some_and(|n| gone >= n) {
            println!("done after {gone} clients");
            return Ok(());
        }
    }
}
