//! Byte-stream transports: an OS pipe and a Unix socketpair, 8 bytes per message.
//! The writer makes one `write()` per message (or uses a `BufWriter`); the reader reads
//! whatever is available into a 64 KiB buffer and splits it into 8-byte messages.

use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::time::Duration;

use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
use nix::unistd::pipe;

use super::{timed, Cfg, Seq, DONE};
use crate::proc::{Ready, EXIT_IO};

fn read_stream(mut input: File, ready: &Ready, count: u64) -> i32 {
    ready.signal();
    let mut seq = Seq::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut have = 0usize; // bytes in buf not yet consumed (a partial message)
    loop {
        let n = match input.read(&mut buf[have..]) {
            Ok(0) => return EXIT_IO, // EOF before DONE
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => return EXIT_IO,
        };
        let end = have + n;
        let whole = end / 8 * 8;
        for chunk in buf[..whole].chunks_exact(8) {
            let v = u64::from_ne_bytes(chunk.try_into().expect("8 bytes"));
            if v == DONE {
                return seq.done(count);
            }
            seq.int(v);
        }
        buf.copy_within(whole..end, 0);
        have = end - whole;
    }
}

fn write_each(mut out: File, count: u64) -> Result<(), String> {
    for i in 0..count {
        out.write_all(&i.to_ne_bytes())
            .map_err(|e| format!("write: {e}"))?;
    }
    out.write_all(&DONE.to_ne_bytes())
        .map_err(|e| format!("write: {e}"))?;
    Ok(())
}

/// OS pipe, one `write()` of 8 bytes per message.
pub fn os_pipe(count: u64, cfg: &Cfg) -> Result<Duration, String> {
    let (r, w) = pipe().map_err(|e| format!("pipe: {e}"))?;
    let (r, w) = (File::from(r), File::from(w));
    timed(
        cfg,
        move |ready| read_stream(r, ready, count),
        move || write_each(w, count),
    )
}

/// OS pipe with a `BufWriter` (8 KiB) in front of it.
pub fn os_pipe_buffered(count: u64, cfg: &Cfg) -> Result<Duration, String> {
    let (r, w) = pipe().map_err(|e| format!("pipe: {e}"))?;
    let (r, w) = (File::from(r), File::from(w));
    timed(
        cfg,
        move |ready| read_stream(r, ready, count),
        move || {
            let mut out = BufWriter::new(w);
            for i in 0..count {
                out.write_all(&i.to_ne_bytes())
                    .map_err(|e| format!("write: {e}"))?;
            }
            out.write_all(&DONE.to_ne_bytes())
                .map_err(|e| format!("write: {e}"))?;
            out.flush().map_err(|e| format!("flush: {e}"))
        },
    )
}

/// Unix stream socketpair, one `write()` per message.
pub fn unix_socketpair(count: u64, cfg: &Cfg) -> Result<Duration, String> {
    let (a, b) = socketpair(
        AddressFamily::Unix,
        SockType::Stream,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .map_err(|e| format!("socketpair: {e}"))?;
    let (a, b) = (File::from(a), File::from(b));
    timed(
        cfg,
        move |ready| read_stream(b, ready, count),
        move || write_each(a, count),
    )
}
