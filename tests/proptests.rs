//! Property tests over untrusted bytes (run by `cargo test`; the same decoders are fuzzed
//! by `fuzz/`): a region header or a ring image in any state gives a value or an error,
//! never a panic, an out-of-bounds read, or an endless loop.

use proptest::prelude::*;
use shmproc::fuzzing::test_image;
use shmproc::fuzzing::{region_image, ring_image};
use shmproc::RegionError;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn any_bytes_as_a_region_image_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let _ = region_image(&bytes);
    }

    #[test]
    fn a_valid_region_image_validates(payload in 0usize..300, params in any::<[u64; 4]>()) {
        let img = test_image(payload, params);
        let h = region_image(&img).unwrap();
        prop_assert_eq!(h.params, params);
        prop_assert_eq!(h.total_len as usize, img.len());
    }

    #[test]
    fn any_flipped_bit_in_the_first_64_header_bytes_is_caught(
        payload in 0usize..64, bit in 0usize..(64 * 8), params in any::<[u64; 4]>()
    ) {
        let mut img = test_image(payload, params);
        img[bit / 8] ^= 1 << (bit % 8);
        prop_assert!(region_image(&img).is_err(), "bit {} flipped went unnoticed", bit);
    }

    #[test]
    fn a_truncated_region_image_is_an_error(payload in 1usize..300, cut in 1usize..300) {
        let img = test_image(payload, [0; 4]);
        let cut = cut.min(img.len() - 1).max(1);
        let short = &img[..img.len() - cut];
        let is_truncated = matches!(region_image(short), Err(RegionError::Truncated { .. }));
        prop_assert!(is_truncated);
    }

    #[test]
    fn any_bytes_as_a_ring_image_never_panic_or_loop(bytes in proptest::collection::vec(any::<u8>(), 0..3000)) {
        let _ = ring_image(&bytes);
    }

    #[test]
    fn ring_images_with_plausible_indices_never_panic(
        cap_sel in 0u8..6,
        head in 0u64..4096, ahead in 0u64..4096,
        words in proptest::collection::vec(any::<u64>(), 0..256),
        tags in proptest::collection::vec(0u8..7, 0..256),
    ) {
        // Indices near each other and record headers with the right magic but random
        // kinds (batches too) and lengths: the cases random bytes almost never reach.
        let cap = 64u64 << cap_sel;
        let mut img = vec![0u8; 1 + 640 + cap as usize];
        img[0] = cap_sel;
        let tail = head.wrapping_add(ahead % (cap + 16));
        img[1..9].copy_from_slice(&tail.to_ne_bytes());
        img[1 + 128..1 + 136].copy_from_slice(&head.to_ne_bytes());
        for (i, (w, t)) in words.iter().zip(&tags).enumerate() {
            let off = 1 + 640 + (i * 8) % cap as usize;
            let word = if *t == 0 { *w } else {
                ((0x00A5_C300u64 | u64::from(*t)) << 32) | (w & 0x1FFF)
            };
            img[off..off + 8].copy_from_slice(&word.to_ne_bytes());
        }
        let _ = ring_image(&img);
    }

    #[test]
    fn batch_records_with_random_element_words_never_panic(
        cap_sel in 2u8..6,
        records in proptest::collection::vec((1u64..200, any::<u32>(), 0u64..40, any::<u32>()), 1..8),
    ) {
        // Well-framed batch records (right magic, lengths inside the ring) whose element
        // size, cursor and fingerprint are random: validated, never read out of bounds.
        let cap = 64u64 << cap_sel;
        let mut img = vec![0u8; 1 + 640 + cap as usize];
        img[0] = cap_sel;
        let mut off = 0u64;
        for (len, elem, taken, fp) in records {
            let len = len.min(cap / 4 - 8);
            let size = 8 + len.div_ceil(8) * 8;
            if off + size > cap {
                break;
            }
            let at = 1 + 640 + off as usize;
            let hdr = (0x00A5_C305u64 << 32) | len;
            img[at..at + 8].copy_from_slice(&hdr.to_ne_bytes());
            let info = u64::from(elem % 40) | u64::from(fp) << 32;
            if len >= 16 {
                img[at + 8..at + 16].copy_from_slice(&info.to_ne_bytes());
                img[at + 16..at + 24].copy_from_slice(&taken.to_ne_bytes());
            }
            off += size;
        }
        img[1..9].copy_from_slice(&off.to_ne_bytes());
        let _ = ring_image(&img);
    }
}
