//! The shmproc rows. The library's channel API is being written concurrently; these
//! rows compile against it only with the `shmproc-api` feature of this crate (turn it on
//! by default once `shmproc::pipe`, `duplex` and `Queue` are on main). Without it each row
//! reports "not available" instead of a number.
//!
//! All three use the seed's payload, `Msg` (an integer or DONE), with the library's
//! default codec, forked with `nix::unistd::fork` like every other row: the child
//! inherits its end by memory and loops `recv` until DONE.

#[cfg(not(feature = "shmproc-api"))]
mod imp {
    use std::time::Duration;

    use super::super::Cfg;

    const WHY: &str =
        "not measured: shmproc channel API not on main yet (build with --features shmproc-api)";

    pub fn pipe(_count: u64, _cfg: &Cfg) -> Result<Duration, String> {
        Err(WHY.into())
    }
    pub fn duplex(_count: u64, _cfg: &Cfg) -> Result<Duration, String> {
        Err(WHY.into())
    }
    pub fn queue(_count: u64, _cfg: &Cfg) -> Result<Duration, String> {
        Err(WHY.into())
    }
}

#[cfg(feature = "shmproc-api")]
mod imp {
    use std::time::Duration;

    use super::super::{timed, Cfg, Msg, Seq};
    use crate::proc::EXIT_IO;

    pub fn pipe(count: u64, cfg: &Cfg) -> Result<Duration, String> {
        let (tx, rx) = shmproc::pipe::<Msg>().map_err(|e| format!("shmproc::pipe: {e}"))?;
        timed(
            cfg,
            move |ready| {
                ready.signal();
                let mut seq = Seq::new();
                loop {
                    match rx.recv() {
                        Ok(Msg::Int(v)) => seq.int(v),
                        Ok(Msg::Done) => return seq.done(count),
                        Err(_) => return EXIT_IO,
                    }
                }
            },
            move || {
                for i in 0..count {
                    tx.send(&Msg::Int(i)).map_err(|e| format!("send: {e}"))?;
                }
                tx.send(&Msg::Done).map_err(|e| format!("send: {e}"))
            },
        )
    }

    pub fn duplex(count: u64, cfg: &Cfg) -> Result<Duration, String> {
        let (a, b) = shmproc::duplex::<Msg>().map_err(|e| format!("shmproc::duplex: {e}"))?;
        timed(
            cfg,
            move |ready| {
                ready.signal();
                let mut seq = Seq::new();
                loop {
                    match b.recv() {
                        Ok(Msg::Int(v)) => seq.int(v),
                        Ok(Msg::Done) => return seq.done(count),
                        Err(_) => return EXIT_IO,
                    }
                }
            },
            move || {
                for i in 0..count {
                    a.send(&Msg::Int(i)).map_err(|e| format!("send: {e}"))?;
                }
                a.send(&Msg::Done).map_err(|e| format!("send: {e}"))
            },
        )
    }

    pub fn queue(count: u64, cfg: &Cfg) -> Result<Duration, String> {
        let q = shmproc::Queue::<Msg>::new().map_err(|e| format!("Queue::new: {e}"))?;
        let qr = q.clone();
        timed(
            cfg,
            move |ready| {
                ready.signal();
                let mut seq = Seq::new();
                loop {
                    match qr.get() {
                        Ok(Msg::Int(v)) => seq.int(v),
                        Ok(Msg::Done) => return seq.done(count),
                        Err(_) => return EXIT_IO,
                    }
                }
            },
            move || {
                for i in 0..count {
                    q.put(&Msg::Int(i)).map_err(|e| format!("put: {e}"))?;
                }
                q.put(&Msg::Done).map_err(|e| format!("put: {e}"))
            },
        )
    }
}

pub use imp::{duplex, pipe, queue};
