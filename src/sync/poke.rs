//! Pokes: the descriptors a waker writes to so that a `wait()` sleeping in `poll(2)`
//! wakes up (see the "pollers" section of [`super::waiter`]).
//!
//! A [`Waiter`] lives in shared memory and knows no descriptor; each process registers,
//! per waiter *in its own mapping* (keyed by address), what to poke when it wakes that
//! waiter while `pollers` is not zero: for a pipe, the writer's presence token (the read
//! end is the reader's watch); for a queue, the write end of the queue's poke pipe,
//! which every holder polls. The table is consulted only on the slow path of a wake with
//! pollers present: never on a send or put that finds nobody asleep.
//!
//! A registration holds an `Arc` of its [`Poke`], which reads its descriptor when it
//! pokes (a released descriptor reads as -1 and is skipped), so a stale entry never
//! writes to a descriptor number that was closed and reused.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use super::waiter::Waiter;

/// Something that wakes the pollers of a waiter: writes a byte to a non-blocking pipe.
pub(crate) trait Poke: Send + Sync {
    /// Pokes. Must not block.
    fn poke(&self);
}

struct Entry {
    id: u64,
    poke: Arc<dyn Poke>,
}

struct Table {
    next: u64,
    by_addr: BTreeMap<usize, Entry>,
}

static TABLE: Mutex<Table> = Mutex::new(Table {
    next: 1,
    by_addr: BTreeMap::new(),
});

fn table() -> MutexGuard<'static, Table> {
    TABLE.lock().unwrap_or_else(|e| e.into_inner())
}

/// Taken by `handoff::ForkGuard` across `fork`, so a child never finds the table locked
/// by a thread that does not exist there.
pub(crate) fn lock_for_fork() -> ForkLock {
    ForkLock(table())
}

/// The poke table, locked across a `fork`.
pub(crate) struct ForkLock(#[allow(dead_code)] MutexGuard<'static, Table>);

/// What to poke when this process wakes `waiter` (in this mapping) with pollers present;
/// unregistered on drop.
pub(crate) struct Registration {
    addr: usize,
    id: u64,
}

impl std::fmt::Debug for Registration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registration").finish_non_exhaustive()
    }
}

/// Registers `poke` for `waiter`. A later registration of the same address (a new
/// mapping where an old one was) replaces the old one.
pub(crate) fn register(waiter: &Waiter, poke: Arc<dyn Poke>) -> Registration {
    let addr = waiter as *const Waiter as usize;
    let mut t = table();
    let id = t.next;
    t.next += 1;
    t.by_addr.insert(addr, Entry { id, poke });
    Registration { addr, id }
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut t = table();
        if t.by_addr.get(&self.addr).is_some_and(|e| e.id == self.id) {
            t.by_addr.remove(&self.addr);
        }
    }
}

/// Pokes what this process registered for `waiter`, if anything.
pub(crate) fn poke(waiter: &Waiter) {
    let addr = waiter as *const Waiter as usize;
    let t = table();
    if let Some(e) = t.by_addr.get(&addr) {
        e.poke.poke();
    }
}
