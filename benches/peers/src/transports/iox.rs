//! iceoryx2 publish-subscribe of a `u64` (DONE = u64::MAX), `ipc::Service`, local only
//! (shared memory under /dev/shm and bookkeeping files under /tmp/iceoryx2; no network).
//! Configured for lossless delivery: safe overflow off, publisher retries until
//! delivered, history 0; the subscriber connects before the timed region and polls
//! (spins) on `receive()`. Every process builds its own node after the fork, and every
//! node is dropped before its process exits, so the service is removed afterwards.
//!
//! The harness uses a private iceoryx2 domain (a file prefix and a root directory unique
//! to this harness process) and removes what iceoryx2 keeps on purpose between runs
//! (its global management segment in /dev/shm, its root directory) in [`cleanup`].

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use iceoryx2::port::backpressure_strategy::BackpressureStrategy;
use iceoryx2::prelude::*;

use super::{timed_setup, Cfg, Seq, DONE};
use crate::proc::EXIT_IO;

const BUFFER: usize = 256;

static SERIAL: AtomicU32 = AtomicU32::new(0);

/// The harness's own iceoryx2 domain: prefix and root path, made from the harness pid
/// (computed in the parent before any fork, so reader and writer agree).
fn domain() -> (String, String) {
    static PID: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    let pid = *PID.get_or_init(std::process::id);
    (
        format!("iox2shmprocbench{pid}_"),
        format!("/tmp/shmproc-bench-iox2-{pid}/"),
    )
}

fn config() -> Result<Config, String> {
    let (prefix, root) = domain();
    let mut c = Config::default();
    c.global.prefix = FileName::new(prefix.as_bytes()).map_err(|e| format!("prefix: {e:?}"))?;
    c.global
        .set_root_path(&Path::new(root.as_bytes()).map_err(|e| format!("root path: {e:?}"))?);
    Ok(c)
}

fn node() -> Result<Node<ipc::Service>, String> {
    NodeBuilder::new()
        .config(&config()?)
        .create::<ipc::Service>()
        .map_err(|e| format!("iceoryx2 node: {e:?}"))
}

/// Removes the private domain's leftovers: /dev/shm entries with its prefix and its root
/// directory. Call only when no iceoryx2 node of this harness is alive.
pub fn cleanup() {
    let (prefix, root) = domain();
    if let Ok(rd) = std::fs::read_dir("/dev/shm") {
        for e in rd.flatten() {
            if e.file_name().to_string_lossy().starts_with(&prefix) {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
    let _ = std::fs::remove_dir_all(root);
}

fn service_name() -> String {
    format!(
        "shmproc-bench/{}/{}",
        std::process::id(),
        SERIAL.fetch_add(1, Ordering::Relaxed)
    )
}

type PubSub =
    iceoryx2::service::port_factory::publish_subscribe::PortFactory<ipc::Service, u64, ()>;

fn open(node: &Node<ipc::Service>, name: &str) -> Result<PubSub, String> {
    let name: ServiceName = name
        .try_into()
        .map_err(|e| format!("service name: {e:?}"))?;
    node.service_builder(&name)
        .publish_subscribe::<u64>()
        .enable_safe_overflow(false)
        .history_size(0)
        .subscriber_max_buffer_size(BUFFER)
        .max_publishers(1)
        .max_subscribers(1)
        .open_or_create()
        .map_err(|e| format!("iceoryx2 service: {e:?}"))
}

fn reader(name: &str, ready: &crate::proc::Ready, count: u64) -> Result<i32, String> {
    let node = node()?;
    let service = open(&node, name)?;
    let sub = service
        .subscriber_builder()
        .create()
        .map_err(|e| format!("subscriber: {e:?}"))?;
    ready.signal();
    let mut seq = Seq::new();
    loop {
        match sub.receive() {
            Ok(Some(sample)) => {
                let v = *sample;
                if v == DONE {
                    return Ok(seq.done(count));
                }
                seq.int(v);
            }
            Ok(None) => std::hint::spin_loop(),
            Err(e) => return Err(format!("receive: {e:?}")),
        }
    }
    // node, service and subscriber drop here, before the child's _exit
}

struct Writer {
    // Field order is drop order: the port, then the service, then the node.
    publisher: iceoryx2::port::publisher::Publisher<ipc::Service, u64, ()>,
    _service: PubSub,
    _node: Node<ipc::Service>,
}

pub fn run(count: u64, cfg: &Cfg) -> Result<Duration, String> {
    set_log_level(LogLevel::Error);
    let _ = domain(); // fix the domain to this (parent) pid before forking
    let name = service_name();
    let name_r = name.clone();
    // The parent's node is made after the fork and after the subscriber is connected
    // (untimed), so the child inherits no iceoryx2 state.
    timed_setup(
        cfg,
        move |ready| match reader(&name_r, ready, count) {
            Ok(code) => code,
            Err(e) => {
                eprintln!("iceoryx2 reader: {e}");
                EXIT_IO
            }
        },
        || {
            let node = node()?;
            let service = open(&node, &name)?;
            let publisher = service
                .publisher_builder()
                .backpressure_strategy(BackpressureStrategy::RetryUntilDelivered)
                .create()
                .map_err(|e| format!("publisher: {e:?}"))?;
            Ok(Writer {
                publisher,
                _service: service,
                _node: node,
            })
        },
        move |w: &Writer| {
            for i in 0..count {
                w.publisher
                    .send_copy(i)
                    .map_err(|e| format!("send: {e:?}"))?;
            }
            w.publisher
                .send_copy(DONE)
                .map_err(|e| format!("send: {e:?}"))?;
            Ok(())
        },
    )
}
