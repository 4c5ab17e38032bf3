//! Many producers and many consumers across processes, same run: shmproc `Queue<u64>`
//! against a ring of `u64` in a `shared_memory` segment guarded by one `raw_sync` mutex
//! (the naive baseline), for P producers + P consumers, P = 1, 2, 4. Start-up is not
//! timed: every child waits on a shared "go" flag; the clock stops when all have exited.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use raw_sync::locks::{LockInit, Mutex};
use shared_memory::ShmemConf;

use crate::proc::{fork_child, Child};

const CAP: usize = 4096;

#[repr(C)]
struct State {
    head: u64,
    tail: u64,
    consumed: u64,
    slots: [u64; CAP],
}

fn wait_go(go: &AtomicU32) {
    while go.load(Ordering::Acquire) == 0 {
        std::hint::spin_loop();
    }
}

fn finish(mut kids: Vec<Child>, start: Instant) -> Result<Duration, String> {
    for k in kids.iter_mut() {
        k.wait(Duration::from_secs(120))?;
    }
    Ok(start.elapsed())
}

/// shmproc `Queue<u64>`: producers put `items / p` each; consumers get until closed.
fn shmproc_queue(items: u64, p: u64) -> Result<Duration, String> {
    let q = shmproc::Queue::<u64>::new().map_err(|e| e.to_string())?;
    let go = shmproc::Value::new(0u32).map_err(|e| e.to_string())?;
    let per = items / p;
    let mut producers = Vec::new();
    let mut consumers = Vec::new();
    for k in 0..p {
        let (q, go) = (q.clone(), go.clone());
        producers.push(fork_child(move || {
            while go.get() == 0 {
                std::hint::spin_loop();
            }
            for i in k * per..(k + 1) * per {
                if q.put(&i).is_err() {
                    return 4;
                }
            }
            0
        })?);
    }
    for _ in 0..p {
        let (q, go) = (q.clone(), go.clone());
        consumers.push(fork_child(move || {
            while go.get() == 0 {
                std::hint::spin_loop();
            }
            while q.get().is_ok() {}
            0
        })?);
    }
    let start = Instant::now();
    go.set(1);
    for c in producers.iter_mut() {
        c.wait(Duration::from_secs(120))?;
    }
    q.close();
    finish(consumers, start)
}

/// The naive baseline: one `raw_sync` mutex around a ring in a `shared_memory` segment.
fn mutex_queue(items: u64, p: u64) -> Result<Duration, String> {
    let lock_room = 128usize;
    let size = lock_room + 64 + std::mem::size_of::<State>();
    let mut shmem = ShmemConf::new()
        .size(size)
        .create()
        .map_err(|e| format!("shared_memory: {e}"))?;
    let id = std::ffi::CString::new(shmem.get_os_id()).map_err(|e| e.to_string())?;
    // SAFETY: shm_unlink takes a NUL-terminated name; the mapping stays valid.
    unsafe { libc::shm_unlink(id.as_ptr()) };
    shmem.set_owner(false);
    let base = shmem.as_ptr();
    // SAFETY: `base + lock_room` is inside the segment, 64-byte aligned; the go flag
    // lives there, the ring state right after it.
    let go = unsafe { &*base.add(lock_room).cast::<AtomicU32>() };
    // SAFETY: as above; `data` is the region the mutex guards.
    let data = unsafe { base.add(lock_room + 64) };
    // SAFETY: `base` has `lock_room` writable bytes for the mutex; the segment outlives it.
    let (lock, _) = unsafe { Mutex::new(base, data) }.map_err(|e| format!("raw_sync: {e}"))?;
    let lock = &*lock;
    let per = items / p;
    let total = per * p;
    let mut kids = Vec::new();
    for k in 0..p {
        kids.push(fork_child(|| {
            wait_go(go);
            let mut i = k * per;
            while i < (k + 1) * per {
                let Ok(g) = lock.lock() else { return 4 };
                // SAFETY: the guard gives exclusive access to the State behind `data`.
                let st = unsafe { &mut *(*g).cast::<State>() };
                if st.tail - st.head < CAP as u64 {
                    st.slots[(st.tail % CAP as u64) as usize] = i;
                    st.tail += 1;
                    i += 1;
                }
            }
            0
        })?);
    }
    for _ in 0..p {
        kids.push(fork_child(|| {
            wait_go(go);
            loop {
                let Ok(g) = lock.lock() else { return 4 };
                // SAFETY: as above.
                let st = unsafe { &mut *(*g).cast::<State>() };
                if st.consumed >= total {
                    return 0;
                }
                if st.head < st.tail {
                    let _ = st.slots[(st.head % CAP as u64) as usize];
                    st.head += 1;
                    st.consumed += 1;
                }
            }
        })?);
    }
    let start = Instant::now();
    go.store(1, Ordering::Release);
    finish(kids, start)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// Runs both for P = 1, 2, 4 (`runs` each, median) and returns a Markdown table.
pub fn run(items: u64, runs: usize) -> Result<String, String> {
    let mut t = String::from(
        "| producers → consumers | shmproc `Queue<u64>` | `shared_memory` + `raw_sync` mutex queue | ratio |\n|---|---|---|---|\n",
    );
    for p in [1u64, 2, 4] {
        let mut a = Vec::new();
        let mut b = Vec::new();
        for _ in 0..runs {
            eprint!("\r[queues] P={p}      ");
            a.push(shmproc_queue(items, p)?);
            b.push(mutex_queue(items, p)?);
        }
        let (a, b) = (median(a), median(b));
        let rate = |d: Duration| items as f64 / d.as_secs_f64() / 1e6;
        t += &format!(
            "| {p} → {p} | {:.2} M items/s | {:.2} M items/s | {:.1}× |\n",
            rate(a),
            rate(b),
            b.as_secs_f64() / a.as_secs_f64()
        );
    }
    eprintln!();
    Ok(t + &format!("\n{items} `u64` items per run, median of {runs} runs, same run.\n"))
}
