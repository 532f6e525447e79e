//! Any bytes -> DICOM image -> display -> model tensor: must return an error or a tensor, never
//! panic, hang or allocate without bound. The caps are lowered (64 K pixels, 1 MB) so that a lying
//! header cannot ask for gigabytes inside the fuzzer's memory limit and each execution stays well
//! under a millisecond: the decoders' paths are the same at any size, and the caps themselves are
//! tested (`size_cap_is_checked_before_decoding`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let options = asg_dicom::ReadOptions {
        max_pixels: 1 << 16,
        max_file_bytes: 1 << 20,
        ..Default::default()
    };
    if let Ok(meta) = asg_dicom::read_meta_bytes(data, "fuzz", &options) {
        let _ = serde_json_like(&meta);
    }
    if let Ok(image) = asg_dicom::read_bytes(data, "fuzz", &options) {
        let input = asg_dicom::preprocess_image(
            &image,
            32,
            asg_dicom::Normalisation {
                mean: 0.5,
                std: 0.25,
            },
        );
        assert_eq!(input.tensor.len(), 32 * 32);
        assert!(input.tensor.iter().all(|v| v.is_finite()));
    }
});

/// Touches every metadata field (formatting walks strings and numbers).
fn serde_json_like(meta: &asg_dicom::ImageMeta) -> usize {
    format!("{meta:?}").len()
}
