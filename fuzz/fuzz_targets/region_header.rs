//! Any bytes as a region image: validation returns a header or an error, never panics.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(h) = shmproc::fuzzing::region_image(data) {
        // Whatever validates describes no more bytes than there are.
        assert!(h.total_len as usize <= data.len());
    }
});
