//! The one place atomics come from: std's, or loom's under `cfg(loom)`, so the
//! protocols built on them can be model-checked.

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};
#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};

/// A compiler-only fence: the fast side of an asymmetric barrier (the slow side issues
/// `membarrier`). Under loom it is modelled as a full fence.
#[inline(always)]
pub(crate) fn light_fence() {
    #[cfg(loom)]
    loom::sync::atomic::fence(Ordering::SeqCst);
    #[cfg(not(loom))]
    std::sync::atomic::compiler_fence(Ordering::SeqCst);
}

/// Pads and aligns a value to 128 bytes (two cache lines: adjacent-line prefetch), so
/// that the fields one process writes never share a line with the other's.
#[repr(C, align(128))]
#[derive(Default)]
pub(crate) struct CachePadded<T>(pub(crate) T);

impl<T> std::ops::Deref for CachePadded<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}
