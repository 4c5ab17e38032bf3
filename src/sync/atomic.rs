//! The one place atomics come from: std's, or loom's under `cfg(loom)`, so the
//! protocols built on them can be model-checked.
//!
//! `clippy.toml` disallows std's atomic types everywhere else (the private `sys` keeps
//! process-local ones, which loom need not model). The types here are aliases, not
//! re-exports, so that code naming `sync::atomic::AtomicU64` passes that rule while code
//! naming `std::sync::atomic::AtomicU64` does not.
#![allow(clippy::disallowed_types)]

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{fence, Ordering};
#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{fence, Ordering};

/// A 32-bit atomic: std's, or loom's under `cfg(loom)`.
#[cfg(loom)]
pub(crate) type AtomicU32 = loom::sync::atomic::AtomicU32;
/// A 32-bit atomic: std's, or loom's under `cfg(loom)`.
#[cfg(not(loom))]
pub(crate) type AtomicU32 = std::sync::atomic::AtomicU32;

/// A 64-bit atomic: std's, or loom's under `cfg(loom)`.
#[cfg(loom)]
pub(crate) type AtomicU64 = loom::sync::atomic::AtomicU64;
/// A 64-bit atomic: std's, or loom's under `cfg(loom)`.
#[cfg(not(loom))]
pub(crate) type AtomicU64 = std::sync::atomic::AtomicU64;

/// A flag for the unit tests' helper threads (they do not run under loom).
#[cfg(all(test, not(loom)))]
pub(crate) type AtomicBool = std::sync::atomic::AtomicBool;

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
