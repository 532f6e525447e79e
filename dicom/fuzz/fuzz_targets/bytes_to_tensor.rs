//! Any bytes -> DICOM image -> display -> model tensor: must return an error or a tensor, never
//! panic, hang or allocate without bound (the caps are lowered so that a lying header cannot ask
//! for gigabytes inside the fuzzer's memory limit).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let options = asg_dicom::ReadOptions {
        max_pixels: 1 << 20,
        max_file_bytes: 1 << 22,
        ..Default::default()
    };
    if let Ok(meta) = asg_dicom::read_meta_bytes(data, "fuzz", &options) {
        let _ = serde_json_like(&meta);
    }
    if let Ok(image) = asg_dicom::read_bytes(data, "fuzz", &options) {
        let input = asg_dicom::preprocess_image(
            &image,
            64,
            asg_dicom::Normalisation {
                mean: 0.5,
                std: 0.25,
            },
        );
        assert_eq!(input.tensor.len(), 64 * 64);
        assert!(input.tensor.iter().all(|v| v.is_finite()));
    }
});

/// Touches every metadata field (formatting walks strings and numbers).
fn serde_json_like(meta: &asg_dicom::ImageMeta) -> usize {
    format!("{meta:?}").len()
}
