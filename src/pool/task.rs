//! A task on its way to a worker, and the byte buffers that carry tasks and replies
//! between the pool's threads, reused from call to call so that moving a chunk costs
//! copies, not fresh pages.

use std::ops::Range;
use std::sync::{Arc, Mutex};

use super::plain::Items;

/// Buffers larger than this are not kept for reuse.
const SPARE_MAX_BYTES: usize = 1 << 20;

/// A task message, or what it is made of.
pub(super) enum Task {
    /// Encoded by the caller ([`super::worker::encode_task`]).
    Encoded(Vec<u8>),
    /// A chunk of a call's shared plain input: written out by the pool thread that sends
    /// it, into a buffer it reuses.
    Slice {
        header: Arc<[u8]>,
        items: Arc<dyn Items>,
        range: Range<usize>,
    },
}

impl Task {
    /// The length of the task message.
    pub(super) fn len(&self) -> usize {
        match self {
            Task::Encoded(m) => m.len(),
            Task::Slice {
                header,
                items,
                range,
            } => header.len() + items.bytes(range.clone()).len(),
        }
    }

    /// The task message: in place, or written into `stage`. The one place a chunk of
    /// plain items is copied before the pipe.
    pub(super) fn message<'a>(&'a self, stage: &'a mut Vec<u8>) -> &'a [u8] {
        match self {
            Task::Encoded(m) => m,
            Task::Slice {
                header,
                items,
                range,
            } => {
                let bytes = items.bytes(range.clone());
                stage.clear();
                stage.reserve(header.len() + bytes.len());
                stage.extend_from_slice(header);
                stage.extend_from_slice(bytes);
                stage
            }
        }
    }
}

/// Reply buffers handed back by the callers once decoded, for the pool threads to
/// receive into.
pub(super) struct Spare {
    bufs: Mutex<Vec<Vec<u8>>>,
    keep: usize,
}

impl Spare {
    /// Keeps at most `keep` buffers.
    pub(super) fn new(keep: usize) -> Spare {
        Spare {
            bufs: Mutex::new(Vec::new()),
            keep,
        }
    }

    /// A buffer to receive into: a spare one, or a new one.
    pub(super) fn take(&self) -> Vec<u8> {
        self.bufs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop()
            .unwrap_or_default()
    }

    /// Hands `buf` back for reuse (dropped when too large or when enough are kept).
    pub(super) fn give(&self, buf: Vec<u8>) {
        if buf.capacity() == 0 || buf.capacity() > SPARE_MAX_BYTES {
            return;
        }
        let mut bufs = self.bufs.lock().unwrap_or_else(|e| e.into_inner());
        if bufs.len() < self.keep {
            bufs.push(buf);
        }
    }
}
