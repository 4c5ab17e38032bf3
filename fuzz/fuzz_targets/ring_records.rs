//! Any bytes as a ring's control block and data, read the way a receiver reads them (batch
//! records too, partly then wholly):
//! records or a protocol error, never an out-of-bounds read (ASan), a panic or a hang.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(bytes) = shmproc::fuzzing::ring_image(data) {
        // Never more payload than the ring holds (2 KiB at most).
        assert!(bytes <= 2048);
    }
});
