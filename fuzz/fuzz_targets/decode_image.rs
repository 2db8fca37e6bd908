//! Image decoding as `lverse.images.load` runs it on a file: any bytes either decode into
//! an RGB image and preprocess to the model's input, or give an error; never a panic, an
//! abort or a hang. Compiles lverse's own `image_decode.rs` and `resample.rs` as they are.
#![no_main]

#[allow(dead_code)] // what the fuzzer does not call (MAX_SIZE)
#[path = "../../src/image_decode.rs"]
mod image_decode;
#[path = "../../src/resample.rs"]
mod resample;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(image) = image_decode::decode_rgb(data) {
        // The default model's 64 px and the paper's 256 px (any other size takes the
        // same code paths).
        for size in [64, 256] {
            if let Ok(chw) = image_decode::preprocess(&image, size) {
                assert_eq!(chw.len(), 3 * (size * size) as usize);
                assert!(chw.iter().all(|v| (-1.0..=1.0).contains(v)));
            }
        }
    }
});
