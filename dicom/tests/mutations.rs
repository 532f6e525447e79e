//! A bounded, deterministic stand-in for fuzzing on stable Rust: thousands of mutated DICOM files
//! (random bytes, boundary values in length-like positions, truncations, spliced headers) go
//! through bytes -> image -> display -> model tensor. None may panic; the reader either decodes or
//! returns a typed error naming the source.

use asg_dicom::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn base_file(rows: u32, columns: u32, photometric: &str) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("base.dcm");
    let image = NewImage {
        rows,
        columns,
        pixels: (0..rows * columns)
            .map(|i| (i * 37 % 4096) as u16)
            .collect(),
        bits_stored: 12,
        photometric_interpretation: photometric.into(),
        rescale_slope: 1.5,
        rescale_intercept: -20.0,
        window: Some(VoiWindow {
            center: 1000.0,
            width: 3000.0,
        }),
        pixel_spacing_mm: Some([0.15, 0.15]),
        view_position: Some("AP".into()),
        modality: "CR".into(),
        sop_class_uid: SOP_CLASS_SECONDARY_CAPTURE.into(),
        study_instance_uid: uid_from_u128(11),
        series_instance_uid: uid_from_u128(12),
        sop_instance_uid: uid_from_u128(13),
        patient_name: "MUTANT^X".into(),
        patient_id: "M1".into(),
        study_description: Some("mutations".into()),
        transfer_syntax: TransferSyntax::ExplicitVrLittleEndian,
    };
    write_file(&path, &image).unwrap();
    std::fs::read(&path).unwrap()
}

fn mutate(rng: &mut ChaCha8Rng, base: &[u8]) -> Vec<u8> {
    let mut b = base.to_vec();
    for _ in 0..rng.random_range(1..4) {
        match rng.random_range(0..5) {
            0 => {
                let at = rng.random_range(0..b.len());
                b[at] = rng.random();
            }
            1 => {
                // A 16- or 32-bit boundary value somewhere (lengths, rows, columns, bits).
                let vals: [u32; 8] = [
                    0,
                    1,
                    0xFFFF,
                    0xFFFF_FFFF,
                    0x7FFF_FFFF,
                    0xFFFF_FFF0,
                    0x8000,
                    b.len() as u32,
                ];
                let v = vals[rng.random_range(0..vals.len())];
                let at = rng.random_range(0..b.len().saturating_sub(4).max(1));
                let n = if rng.random() { 2 } else { 4 };
                for (i, byte) in v.to_le_bytes().iter().take(n).enumerate() {
                    if at + i < b.len() {
                        b[at + i] = *byte;
                    }
                }
            }
            2 => {
                let cut = rng.random_range(0..b.len());
                b.truncate(cut);
                if b.is_empty() {
                    return b;
                }
            }
            3 => {
                // Duplicate a run of bytes elsewhere (spliced headers).
                let from = rng.random_range(0..b.len());
                let len = rng.random_range(1..=16).min(b.len() - from);
                let chunk = b[from..from + len].to_vec();
                let at = rng.random_range(0..b.len());
                b.splice(at..at, chunk);
            }
            _ => {
                let at = rng.random_range(0..b.len());
                b.remove(at);
                if b.is_empty() {
                    return b;
                }
            }
        }
    }
    b
}

#[test]
fn mutated_files_never_panic() {
    let bases = [
        base_file(12, 10, "MONOCHROME2"),
        base_file(7, 9, "MONOCHROME1"),
    ];
    let mut rng = ChaCha8Rng::seed_from_u64(20261130);
    let (mut decoded, mut refused) = (0, 0);
    for i in 0..4000 {
        let base = &bases[i % bases.len()];
        let bytes = mutate(&mut rng, base);
        // Kept on disk while it runs, so that a hang can be reproduced.
        std::fs::write(std::env::temp_dir().join("asg-last-mutant.dcm"), &bytes).unwrap();
        let result = std::panic::catch_unwind(|| {
            match read_bytes(&bytes, "mutant.dcm", &ReadOptions::default()) {
                Ok(img) => {
                    let display = img.display();
                    let input = preprocess(
                        &display,
                        img.width,
                        img.height,
                        32,
                        Normalisation {
                            mean: 0.5,
                            std: 0.25,
                        },
                    );
                    assert!(
                        input.tensor.iter().all(|v| v.is_finite()),
                        "non-finite model input"
                    );
                    true
                }
                Err(e) => {
                    assert!(e.to_string().starts_with("mutant.dcm: "), "{e}");
                    false
                }
            }
        });
        match result {
            Ok(true) => decoded += 1,
            Ok(false) => refused += 1,
            Err(_) => {
                let path = std::env::temp_dir().join(format!("asg-mutant-{i}.dcm"));
                std::fs::write(&path, &bytes).unwrap();
                panic!("mutation {i} panicked; the file is at {}", path.display());
            }
        }
    }
    eprintln!("{decoded} mutants decoded, {refused} refused with an error");
    assert!(
        decoded > 100 && refused > 100,
        "{decoded} decoded, {refused} refused"
    );
}
