//! `ipc-channel`: an `IpcSender<Msg>`/`IpcReceiver<Msg>` pair made before the fork (on
//! Linux it is a SOCK_SEQPACKET socket pair, each message serialised with bincode and
//! sent with one `sendmsg`). The forked reader inherits the receiver.

use std::time::Duration;

use ipc_channel::ipc;

use super::{timed, Cfg, Msg, Seq};
use crate::proc::EXIT_IO;

pub fn run(count: u64, cfg: &Cfg) -> Result<Duration, String> {
    let (tx, rx) = ipc::channel::<Msg>().map_err(|e| format!("ipc::channel: {e}"))?;
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
                tx.send(Msg::Int(i)).map_err(|e| format!("ipc send: {e}"))?;
            }
            tx.send(Msg::Done).map_err(|e| format!("ipc send: {e}"))
        },
    )
}
