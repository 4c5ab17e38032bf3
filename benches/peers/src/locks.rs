//! Uncontended lock + unlock, same run: shmproc `Lock` against `raw_sync::locks::Mutex`
//! in a `shared_memory` segment (the design card's naive baseline) and std's `Mutex`.

use std::time::Instant;

use raw_sync::locks::{LockInit, Mutex};
use shared_memory::ShmemConf;

const ITERS: u32 = 20_000_000;

fn ns_per_op(mut f: impl FnMut()) -> f64 {
    let t = Instant::now();
    for _ in 0..ITERS {
        f();
    }
    t.elapsed().as_nanos() as f64 / f64::from(ITERS)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

pub fn run(runs: usize) -> Result<String, String> {
    let shm = shmproc::Lock::new().map_err(|e| e.to_string())?;
    let mut seg = ShmemConf::new()
        .size(4096)
        .create()
        .map_err(|e| format!("shared_memory: {e}"))?;
    let id = std::ffi::CString::new(seg.get_os_id()).map_err(|e| e.to_string())?;
    // SAFETY: shm_unlink takes a NUL-terminated name; the mapping stays valid.
    unsafe { libc::shm_unlink(id.as_ptr()) };
    seg.set_owner(false);
    let base = seg.as_ptr();
    // SAFETY: the segment has 4096 writable bytes; the mutex takes the first 128 and
    // guards the bytes after them; the segment outlives the lock.
    let (raw, _) =
        unsafe { Mutex::new(base, base.add(128)) }.map_err(|e| format!("raw_sync: {e}"))?;
    let std_m = std::sync::Mutex::new(0u64);
    let (mut a, mut b, mut c) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..runs {
        a.push(ns_per_op(|| drop(shm.lock().ok())));
        b.push(ns_per_op(|| drop(raw.lock().ok())));
        c.push(ns_per_op(|| drop(std_m.lock().ok())));
    }
    Ok(format!(
        "| lock | lock + unlock, uncontended (median of {runs} runs of {ITERS}) |\n|---|---|\n\
         | shmproc::Lock (process-shared, robust) | {:.1} ns |\n\
         | raw_sync::locks::Mutex in a shared_memory segment | {:.1} ns |\n\
         | std::sync::Mutex (one process only) | {:.1} ns |\n",
        median(a),
        median(b),
        median(c)
    ))
}
