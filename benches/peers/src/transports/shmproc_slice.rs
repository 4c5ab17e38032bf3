//! The `Pod` batch row: `u64`s through `pipe::<u64>()` with `Sender::send_slice` and
//! `Receiver::recv_slice` (raw elements, no serde), against the hand-written SPSC ring
//! of `u64` in the same run. Not the seed's payload; the batch target.
//!
//! The writer fills a buffer of [`SLICE`] from a counter (as the raw ring's writer
//! makes its values) and sends it with one `send_slice`; the reader reads with
//! `recv_slice` into a buffer of the same size and checks every element. DONE
//! (`u64::MAX`) follows the last element, as in every raw-`u64` row.

use std::time::Duration;

use shmproc::{get_context, StartMethod};
use shmproc::{Receiver, Sender};

use super::shmproc_rows::{ready_pipe, run_reader};
use super::{Cfg, Seq, DONE};
use crate::proc::EXIT_IO;

/// Elements per `send_slice` and per `recv_slice` buffer.
const SLICE: usize = 4096;

fn slice_reader((rx, ready, count): (Receiver<u64>, Sender<()>, u64)) {
    if ready.send(&()).is_err() {
        std::process::exit(EXIT_IO);
    }
    drop(ready);
    let mut seq = Seq::new();
    let mut buf = vec![0u64; SLICE];
    loop {
        let Ok(k) = rx.recv_slice(&mut buf) else {
            std::process::exit(EXIT_IO)
        };
        for &v in &buf[..k] {
            if v == DONE {
                let code = seq.done(count);
                if code != 0 {
                    std::process::exit(code);
                }
                return;
            }
            seq.int(v);
        }
    }
}

/// `pipe::<u64>()`, `send_slice` of 4096 elements, `recv_slice` into 4096.
pub fn run(count: u64, cfg: &Cfg) -> Result<Duration, String> {
    let (tx, rx) = shmproc::pipe::<u64>().map_err(|e| format!("shmproc::pipe: {e}"))?;
    let (rtx, rrx) = ready_pipe()?;
    let p = get_context(StartMethod::Fork).process(slice_reader, (rx, rtx, count));
    run_reader(p, rrx, cfg, || {
        let mut buf = vec![0u64; SLICE];
        let mut i = 0;
        while i < count {
            let n = (count - i).min(SLICE as u64) as usize;
            for (k, x) in buf[..n].iter_mut().enumerate() {
                *x = i + k as u64;
            }
            tx.send_slice(&buf[..n])
                .map_err(|e| format!("send_slice: {e}"))?;
            i += n as u64;
        }
        tx.send(&DONE).map_err(|e| format!("send: {e}"))
    })
}
