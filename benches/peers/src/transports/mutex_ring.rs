//! The naive baseline: a ring of `u64` in a `shared_memory` segment, every push and pop
//! under a process-shared `raw_sync` mutex (one lock/unlock per message on each side).
//! The segment is unlinked from /dev/shm right after it is made; the forked reader
//! inherits the mapping, so nothing is left behind even if the harness is killed.

use std::time::Duration;

use raw_sync::locks::{LockImpl, LockInit, Mutex};
use shared_memory::ShmemConf;

use super::{timed, Cfg, Seq, DONE};
use crate::proc::EXIT_IO;

const CAP: u64 = 4096;

#[repr(C)]
struct State {
    head: u64,
    tail: u64,
    slots: [u64; CAP as usize],
}

pub fn run(count: u64, cfg: &Cfg) -> Result<Duration, String> {
    let lock_room = 128usize;
    let size = lock_room + std::mem::size_of::<State>();
    let mut shmem = ShmemConf::new()
        .size(size)
        .create()
        .map_err(|e| format!("shared_memory: {e}"))?;
    let id = std::ffi::CString::new(shmem.get_os_id()).map_err(|e| e.to_string())?;
    // SAFETY: shm_unlink takes a NUL-terminated name; the mapping stays valid after the
    // name is gone.
    unsafe { libc::shm_unlink(id.as_ptr()) };
    shmem.set_owner(false); // already unlinked; drop only unmaps

    let base = shmem.as_ptr();
    if Mutex::size_of(Some(base)) > lock_room {
        return Err("raw_sync mutex larger than expected".into());
    }
    // SAFETY: `base + lock_room` is inside the segment and 8-aligned (the segment is
    // page-aligned, lock_room is 128), with room for a State after it.
    let data = unsafe { base.add(lock_room) };
    // SAFETY: `base` points at `lock_room` writable bytes of the new segment, where the
    // mutex is initialised; `data` is the region it guards. The segment outlives the lock.
    let (lock, _) = unsafe { Mutex::new(base, data) }.map_err(|e| format!("raw_sync: {e}"))?;
    let lock: &dyn LockImpl = &*lock;

    // The segment is zero-filled: head = tail = 0.
    timed(
        cfg,
        move |ready| {
            ready.signal();
            let mut seq = Seq::new();
            loop {
                let got = {
                    let Ok(g) = lock.lock() else { return EXIT_IO };
                    // SAFETY: the guard gives exclusive access to the State behind `data`.
                    let st = unsafe { &mut *(*g).cast::<State>() };
                    if st.head < st.tail {
                        let v = st.slots[(st.head % CAP) as usize];
                        st.head += 1;
                        Some(v)
                    } else {
                        None
                    }
                };
                match got {
                    Some(DONE) => return seq.done(count),
                    Some(v) => seq.int(v),
                    None => std::hint::spin_loop(),
                }
            }
        },
        move || {
            let push = |v: u64| -> Result<(), String> {
                loop {
                    let g = lock.lock().map_err(|e| format!("lock: {e}"))?;
                    // SAFETY: the guard gives exclusive access to the State behind `data`.
                    let st = unsafe { &mut *(*g).cast::<State>() };
                    if st.tail - st.head < CAP {
                        st.slots[(st.tail % CAP) as usize] = v;
                        st.tail += 1;
                        return Ok(());
                    }
                    drop(g);
                    std::hint::spin_loop();
                }
            };
            for i in 0..count {
                push(i)?;
            }
            push(DONE)
        },
    )
}
