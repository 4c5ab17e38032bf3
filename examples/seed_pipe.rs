//! The seed's pipe experiment, in Rust: a reader process receives the `Receiver` as its
//! argument and reads until `DONE`; the parent sends 10^4, 10^5 and 10^6 integers then
//! `DONE`, timed like the seed (first send until `join()` returns).
//!
//! ```text
//! cargo run --release --example seed_pipe            # spawn (the seed's default)
//! cargo run --release --example seed_pipe -- fork
//! ```
//!
//! The full comparison against OS pipes, sockets, peers and Python is
//! `cargo run --release -p shmproc-peers -- experiment` (see BENCHMARKS.md).
use std::time::Instant;

use serde::{Deserialize, Serialize};
use shmproc::{get_context, pipe, Receiver, StartMethod};

#[derive(Serialize, Deserialize)]
enum Msg {
    Int(u64),
    Done,
}

fn reader_proc(p_output: Receiver<Msg>) {
    // Read from the pipe until DONE, and do nothing with the messages.
    while let Ok(Msg::Int(_)) = p_output.recv() {}
}

fn main() -> shmproc::Result<()> {
    shmproc::init(); // a spawned child runs reader_proc here and exits
    let method = match std::env::args().nth(1).as_deref() {
        Some("fork") => StartMethod::Fork,
        _ => StartMethod::Spawn,
    };
    for count in [10_u64.pow(4), 10_u64.pow(5), 10_u64.pow(6)] {
        let (p_input, p_output) = pipe::<Msg>()?;
        let mut reader_p = get_context(method).process(reader_proc, p_output);
        reader_p.daemon(true);
        reader_p.start()?; // hands p_output to the child: no close() needed here

        let start = Instant::now();
        for ii in 0..count {
            p_input.send(&Msg::Int(ii)).expect("reader alive");
        }
        p_input.send(&Msg::Done).expect("reader alive");
        drop(p_input);
        reader_p.join()?;
        let took = start.elapsed();
        println!(
            "Sending {count} numbers to pipe() took {:.6} seconds ({:.1} M msg/s, {method:?})",
            took.as_secs_f64(),
            count as f64 / took.as_secs_f64() / 1e6
        );
    }
    Ok(())
}
