//! Write -> read round trips and bad input, on files this test writes itself.

use asg_dicom::*;
use std::path::Path;

fn sample(rows: u32, columns: u32) -> NewImage {
    NewImage {
        rows,
        columns,
        pixels: (0..rows * columns).map(|i| (i * 7 % 4096) as u16).collect(),
        bits_stored: 12,
        photometric_interpretation: "MONOCHROME2".into(),
        rescale_slope: 0.5,
        rescale_intercept: -100.0,
        window: Some(VoiWindow {
            center: 900.0,
            width: 1800.0,
        }),
        pixel_spacing_mm: Some([0.2, 0.25]),
        view_position: Some("PA".into()),
        modality: "DX".into(),
        sop_class_uid: SOP_CLASS_DX_PRESENTATION.into(),
        study_instance_uid: uid_from_u128(1),
        series_instance_uid: uid_from_u128(2),
        sop_instance_uid: uid_from_u128(3),
        patient_name: "PHANTOM^ONE".into(),
        patient_id: "PH0001".into(),
        study_description: None,
        transfer_syntax: TransferSyntax::ExplicitVrLittleEndian,
    }
}

fn write(dir: &Path, image: &NewImage) -> std::path::PathBuf {
    let path = dir.join("img.dcm");
    write_file(&path, image).unwrap();
    path
}

#[test]
fn written_file_reads_back_with_rescale_applied() {
    let dir = tempfile::tempdir().unwrap();
    let img = sample(30, 40);
    let path = write(dir.path(), &img);
    let read = read_file(&path, &ReadOptions::default()).unwrap();
    assert_eq!((read.width, read.height), (40, 30));
    for (got, stored) in read.pixels.iter().zip(&img.pixels) {
        assert_eq!(*got, *stored as f32 * 0.5 - 100.0);
    }
    assert_eq!(read.meta.pixel_spacing_mm, Some([0.2, 0.25]));
    assert_eq!(read.meta.view_position.as_deref(), Some("PA"));
    assert_eq!(read.meta.sop_instance_uid, uid_from_u128(3));
    assert_eq!(
        read.meta.window,
        Some(VoiWindow {
            center: 900.0,
            width: 1800.0
        })
    );
    // No partial file is left behind.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
}

#[test]
fn bytes_without_preamble_read_too() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), &sample(8, 8));
    let bytes = std::fs::read(&path).unwrap();
    let a = read_bytes(&bytes, "with-preamble", &ReadOptions::default()).unwrap();
    let b = read_bytes(&bytes[128..], "no-preamble", &ReadOptions::default()).unwrap();
    assert_eq!(a.pixels, b.pixels);
}

#[test]
fn display_applies_window_and_monochrome1_inversion() {
    let dir = tempfile::tempdir().unwrap();
    let mut img = sample(4, 4);
    img.window = Some(VoiWindow {
        center: 0.5,
        width: 2.0,
    });
    img.rescale_slope = 1.0;
    img.rescale_intercept = 0.0;
    img.pixels = vec![0; 16];
    img.pixels[0] = 4095;
    let path = write(dir.path(), &img);
    let mono2 = read_file(&path, &ReadOptions::default()).unwrap().display();
    assert_eq!(mono2[0], 1.0);
    assert_eq!(mono2[1], 0.5);
    img.photometric_interpretation = "MONOCHROME1".into();
    let path = write(dir.path(), &img);
    let mono1 = read_file(&path, &ReadOptions::default()).unwrap().display();
    assert_eq!(mono1[0], 0.0);
}

#[test]
fn without_a_window_8_bit_data_show_as_stored_and_deeper_data_by_percentiles() {
    let dir = tempfile::tempdir().unwrap();
    let mut img = sample(10, 10);
    img.window = None;
    img.rescale_slope = 1.0;
    img.rescale_intercept = 0.0;
    img.bits_stored = 8;
    // A dull film: stored values 60..159 only.
    img.pixels = (0..100).map(|i| 60 + i as u16).collect();
    let path = write(dir.path(), &img);
    let read = read_file(&path, &ReadOptions::default()).unwrap();
    let shown = read.display();
    for (d, v) in shown.iter().zip(&img.pixels) {
        assert!((d - *v as f32 / 255.0).abs() < 1e-6, "{d} vs {v}");
    }
    assert_eq!(
        read.default_window(),
        VoiWindow {
            center: 128.0,
            width: 256.0
        }
    );
    img.photometric_interpretation = "MONOCHROME1".into();
    let path = write(dir.path(), &img);
    let shown = read_file(&path, &ReadOptions::default()).unwrap().display();
    assert!((shown[0] - (1.0 - 60.0 / 255.0)).abs() < 1e-6);
    // The same values as 12-bit data, or 8-bit data through a rescale, are modality values: the
    // percentile window stretches them over the whole display range.
    img.photometric_interpretation = "MONOCHROME2".into();
    for (bits, slope) in [(12, 1.0), (8, 2.0)] {
        img.bits_stored = bits;
        img.rescale_slope = slope;
        let path = write(dir.path(), &img);
        let shown = read_file(&path, &ReadOptions::default()).unwrap().display();
        assert!(
            shown[0] < 0.02 && shown[99] > 0.98,
            "{bits} bits: {shown:?}"
        );
    }
}

#[test]
fn not_dicom_is_a_typed_error_naming_the_file() {
    let e = read_bytes(
        b"hello, this is not DICOM at all",
        "notes.txt",
        &ReadOptions::default(),
    )
    .unwrap_err();
    assert!(matches!(e.kind, DicomErrorKind::NotDicom(_)), "{e}");
    assert!(e.to_string().starts_with("notes.txt: "), "{e}");
}

#[test]
fn truncation_at_every_byte_never_panics() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), &sample(6, 5));
    let bytes = std::fs::read(&path).unwrap();
    for cut in 0..bytes.len() {
        let r = read_bytes(&bytes[..cut], "cut.dcm", &ReadOptions::default());
        assert!(
            r.is_err(),
            "truncated at {cut} of {} still decoded",
            bytes.len()
        );
    }
}

#[test]
fn size_cap_is_checked_before_decoding() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), &sample(100, 100));
    let opts = ReadOptions {
        max_pixels: 9_999,
        ..ReadOptions::default()
    };
    let e = read_file(&path, &opts).unwrap_err();
    assert!(
        matches!(
            e.kind,
            DicomErrorKind::TooLarge {
                rows: 100,
                columns: 100,
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn writer_refuses_inconsistent_images() {
    let dir = tempfile::tempdir().unwrap();
    let mut img = sample(4, 4);
    img.pixels.pop();
    let e = write_file(&dir.path().join("x.dcm"), &img).unwrap_err();
    assert!(matches!(e.kind, DicomErrorKind::InvalidImage(_)));
    assert!(!dir.path().join("x.dcm").exists());
}

/// Lengths beyond the end of the data are errors found before anything is allocated (dicom-parser
/// would zero-fill a buffer of the declared length first: 4 GB for a 1 KB file).
#[test]
fn lying_lengths_are_errors_not_allocations() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), &sample(16, 16));
    let bytes = std::fs::read(&path).unwrap();
    let header = b"\xE0\x7F\x10\x00OW\x00\x00";
    let at = bytes
        .windows(header.len())
        .position(|w| w == header)
        .expect("pixel data header");
    for len in [0xFFFF_FFF0u32, 0x7FFF_FFFF, 0x0001_0000, 511, 1] {
        let mut bad = bytes.clone();
        bad[at + 8..at + 12].copy_from_slice(&len.to_le_bytes());
        let r = read_bytes(&bad, "lying.dcm", &ReadOptions::default());
        let e = r.expect_err("a lying Pixel Data length must not decode");
        assert!(e.to_string().starts_with("lying.dcm: "), "{e}");
        if len > 1 << 16 {
            assert!(e.to_string().contains("(7FE0,0010): declares"), "{e}");
        }
    }
    // Rows claiming more than the data holds.
    let rows = b"\x28\x00\x10\x00US\x02\x00";
    let at = bytes
        .windows(rows.len())
        .position(|w| w == rows)
        .expect("rows header");
    let mut bad = bytes.clone();
    bad[at + 8..at + 10].copy_from_slice(&60000u16.to_le_bytes());
    let e = read_bytes(&bad, "rows.dcm", &ReadOptions::default()).unwrap_err();
    assert!(e.to_string().contains("Pixel Data"), "{e}");
}

#[test]
fn a_lying_length_inside_a_sequence_is_caught() {
    // Explicit VR LE data set: an SQ of undefined length holding one item with a text element
    // that claims 0x7FFF_FFF0 bytes.
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), &sample(4, 4));
    let bytes = std::fs::read(&path).unwrap();
    let header = b"\x28\x00\x02\x00US"; // Samples per Pixel: insert the sequence before it
    let at = bytes
        .windows(header.len())
        .position(|w| w == header)
        .unwrap();
    let mut seq = Vec::new();
    seq.extend_from_slice(b"\x08\x00\x15\x11SQ\x00\x00\xFF\xFF\xFF\xFF"); // (0008,1115)
    seq.extend_from_slice(b"\xFE\xFF\x00\xE0\xFF\xFF\xFF\xFF"); // item, undefined length
    seq.extend_from_slice(b"\x08\x00\x3E\x10UT\x00\x00\xF0\xFF\xFF\x7F"); // (0008,103E) UT
    let mut bad = bytes[..at].to_vec();
    bad.extend_from_slice(&seq);
    bad.extend_from_slice(&bytes[at..]);
    let e = read_bytes(&bad, "nested.dcm", &ReadOptions::default()).unwrap_err();
    assert!(
        e.to_string()
            .contains("(0008,103E): declares 2147483632 bytes"),
        "{e}"
    );
}

#[test]
fn fused_preprocessing_equals_display_then_resize_exactly() {
    let dir = tempfile::tempdir().unwrap();
    for (photometric, window) in [
        (
            "MONOCHROME2",
            Some(VoiWindow {
                center: 900.0,
                width: 1800.0,
            }),
        ),
        ("MONOCHROME1", None),
    ] {
        let mut img = sample(61, 47);
        img.photometric_interpretation = photometric.into();
        img.window = window;
        let path = write(dir.path(), &img);
        let read = read_file(&path, &ReadOptions::default()).unwrap();
        let norm = Normalisation {
            mean: 0.5,
            std: 0.25,
        };
        let a = preprocess(&read.display(), read.width, read.height, 32, norm);
        let b = preprocess_image(&read, 32, norm);
        assert_eq!(a.letterbox, b.letterbox);
        assert_eq!(a.tensor, b.tensor, "{photometric}");
    }
}

#[test]
fn a_crop_of_the_display_values_equals_cropping_the_display_image() {
    let dir = tempfile::tempdir().unwrap();
    let mut img = sample(61, 47);
    img.photometric_interpretation = "MONOCHROME1".into();
    let path = write(dir.path(), &img);
    let read = read_file(&path, &ReadOptions::default()).unwrap();
    let frame = asg_dicom::CropFrame::around([5.0, 3.0, 40.0, 44.0], 0.06, 16, 32).unwrap();
    let (w, h) = (read.width as usize, read.height as usize);
    let a = asg_dicom::crop_area(&read.display(), w, h, &frame, 16, 32, |v| v);
    let b = asg_dicom::crop_display(&read, &frame, 16, 32);
    assert_eq!(a, b);
    assert!(a.iter().any(|&v| v > 0.0));
}

#[test]
fn every_written_transfer_syntax_and_bit_depth_reads_back_exactly() {
    let dir = tempfile::tempdir().unwrap();
    for ts in [
        TransferSyntax::ExplicitVrLittleEndian,
        TransferSyntax::ImplicitVrLittleEndian,
        TransferSyntax::DeflatedExplicitVrLittleEndian,
    ] {
        for bits in [8u16, 10, 12, 16] {
            let mut img = sample(7, 9); // odd pixel count: the 8-bit Pixel Data is padded
            let max = ((1u32 << bits) - 1) as u16;
            img.pixels = (0..63u32)
                .map(|i| ((i * 977) % (max as u32 + 1)) as u16)
                .collect();
            img.bits_stored = bits;
            img.transfer_syntax = ts;
            img.rescale_slope = 1.0;
            img.rescale_intercept = 0.0;
            let path = write(dir.path(), &img);
            let read = read_file(
                &path,
                &ReadOptions {
                    keep_stored: true,
                    ..Default::default()
                },
            )
            .unwrap_or_else(|e| panic!("{ts:?} {bits}: {e}"));
            let stored: Vec<i64> = img.pixels.iter().map(|&p| p as i64).collect();
            assert_eq!(read.stored.as_deref(), Some(&stored[..]), "{ts:?} {bits}");
            assert_eq!(read.meta.transfer_syntax_uid, ts.uid(), "{ts:?}");
        }
    }
}

/// Writes `img`, then edits the file with dicom-object (elements our writer does not write).
fn write_with(
    dir: &Path,
    img: &NewImage,
    edit: impl FnOnce(&mut dicom_object::DefaultDicomObject),
) -> std::path::PathBuf {
    let path = write(dir, img);
    let mut obj = dicom_object::open_file(&path).unwrap();
    edit(&mut obj);
    obj.write_to_file(&path).unwrap();
    path
}

#[test]
fn voi_lut_functions_and_the_voi_lut_sequence_shape_the_display() {
    use dicom_core::{value::PrimitiveValue, DataElement, VR};
    use dicom_dictionary_std::tags;
    let dir = tempfile::tempdir().unwrap();
    let mut img = sample(1, 5);
    img.pixels = vec![0, 100, 150, 200, 300];
    img.rescale_slope = 1.0;
    img.rescale_intercept = 0.0;
    img.window = Some(VoiWindow {
        center: 150.0,
        width: 100.0,
    });
    for (function, want) in [
        // LINEAR_EXACT: ((x - c) / w + 0.5), clamped.
        ("LINEAR_EXACT", [0.0, 0.0, 0.5, 1.0, 1.0]),
        // SIGMOID: 1 / (1 + exp(-4 (x - c) / w)).
        (
            "SIGMOID",
            [
                1.0 / (1.0 + 6f64.exp()),
                1.0 / (1.0 + 2f64.exp()),
                0.5,
                1.0 / (1.0 + (-2f64).exp()),
                1.0 / (1.0 + (-6f64).exp()),
            ],
        ),
    ] {
        let path = write_with(dir.path(), &img, |obj| {
            obj.put(DataElement::new(
                tags::VOILUT_FUNCTION,
                VR::CS,
                PrimitiveValue::from(function),
            ));
        });
        let read = read_file(&path, &ReadOptions::default()).unwrap();
        let got = read.display();
        for (g, w) in got.iter().zip(want) {
            assert!(
                (*g as f64 - w).abs() < 1e-6,
                "{function}: {got:?} vs {want:?}"
            );
        }
    }
    // An unknown function is a named error.
    let path = write_with(dir.path(), &img, |obj| {
        obj.put(DataElement::new(
            tags::VOILUT_FUNCTION,
            VR::CS,
            PrimitiveValue::from("CUBIC"),
        ));
    });
    let e = read_file(&path, &ReadOptions::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("VOI LUT Function") && e.contains("CUBIC"), "{e}");

    // No window, a VOI LUT Sequence: 4 entries from 100, 8 bits.
    let mut no_window = img.clone();
    no_window.window = None;
    let lut_item = || {
        dicom_object::InMemDicomObject::from_element_iter([
            DataElement::new(
                tags::LUT_DESCRIPTOR,
                VR::US,
                PrimitiveValue::U16(vec![4u16, 100, 8].into()),
            ),
            DataElement::new(
                tags::LUT_DATA,
                VR::OW,
                PrimitiveValue::U16(vec![0u16, 51, 102, 255].into()),
            ),
        ])
    };
    let path = write_with(dir.path(), &no_window, |obj| {
        obj.put(DataElement::new(
            tags::VOILUT_SEQUENCE,
            VR::SQ,
            dicom_core::value::DataSetSequence::from(vec![lut_item()]),
        ));
    });
    let read = read_file(&path, &ReadOptions::default()).unwrap();
    // 0 -> below the first mapped value: entry 0; 100 -> 0; 150, 200, 300 -> past the end: 255.
    let want = [0.0, 0.0, 1.0, 1.0, 1.0];
    assert_eq!(read.display(), want.map(|v| v as f32));
    assert_eq!(
        read.meta.voi_lut.as_ref().unwrap().data,
        vec![0, 51, 102, 255]
    );
}

#[test]
fn an_archive_groups_into_sorted_studies_and_series_and_names_what_is_not_an_image() {
    let dir = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    // Two studies; study 10 has two series; written in a shuffled order.
    for (k, (study, series, sop)) in [
        (20u128, 21u128, 202u128),
        (10, 12, 122),
        (10, 11, 112),
        (10, 11, 111),
    ]
    .into_iter()
    .enumerate()
    {
        let mut img = sample(4, 4);
        img.study_instance_uid = uid_from_u128(study);
        img.series_instance_uid = uid_from_u128(series);
        img.sop_instance_uid = uid_from_u128(sop);
        let path = dir.path().join(format!("f{k}.dcm"));
        write_file(&path, &img).unwrap();
        files.push(path);
    }
    // A DICOM object without pixel data (as a structured report is), and a text file.
    let sr = dir.path().join("sr.dcm");
    std::fs::copy(&files[0], &sr).unwrap();
    let mut obj = dicom_object::open_file(&sr).unwrap();
    obj.remove_element(dicom_dictionary_std::tags::PIXEL_DATA);
    obj.write_to_file(&sr).unwrap();
    let txt = dir.path().join("notes.dcm");
    std::fs::write(&txt, "not dicom").unwrap();
    files.push(sr.clone());
    files.push(txt.clone());
    let index = asg_dicom::index::index(&files, &ReadOptions::default());
    type Tree<'a> = Vec<(&'a str, Vec<(&'a str, Vec<&'a str>)>)>;
    let uids: Tree = index
        .studies
        .iter()
        .map(|s| {
            (
                s.study_instance_uid.as_str(),
                s.series
                    .iter()
                    .map(|se| {
                        (
                            se.series_instance_uid.as_str(),
                            se.instances
                                .iter()
                                .map(|i| i.sop_instance_uid.as_str())
                                .collect(),
                        )
                    })
                    .collect(),
            )
        })
        .collect();
    assert_eq!(
        uids,
        vec![
            (
                "2.25.10",
                vec![
                    ("2.25.11", vec!["2.25.111", "2.25.112"]),
                    ("2.25.12", vec!["2.25.122"])
                ]
            ),
            ("2.25.20", vec![("2.25.21", vec!["2.25.202"])]),
        ]
    );
    assert_eq!(index.skipped.len(), 2);
    let sr_skip = index.skipped.iter().find(|s| s.path == sr).unwrap();
    assert!(sr_skip.not_an_image, "{sr_skip:?}");
    let txt_skip = index.skipped.iter().find(|s| s.path == txt).unwrap();
    assert!(
        !txt_skip.not_an_image && txt_skip.reason.contains("notes.dcm"),
        "{txt_skip:?}"
    );
}

#[test]
fn rgb_images_keep_their_samples_and_give_luma_to_the_model() {
    use dicom_core::{value::PrimitiveValue, DataElement, VR};
    use dicom_dictionary_std::tags;
    let dir = tempfile::tempdir().unwrap();
    let mut img = sample(1, 2);
    img.bits_stored = 8;
    img.pixels = vec![0, 0];
    img.window = None;
    img.rescale_slope = 1.0;
    img.rescale_intercept = 0.0;
    // Two pixels: pure red and white, interleaved; then the same planar (R plane, G, B).
    for (planar, data) in [
        (0u16, vec![255u8, 0, 0, 255, 255, 255]),
        (1, vec![255, 255, 0, 255, 0, 255]),
    ] {
        let path = write_with(dir.path(), &img, |obj| {
            obj.put(DataElement::new(
                tags::SAMPLES_PER_PIXEL,
                VR::US,
                PrimitiveValue::from(3u16),
            ));
            obj.put(DataElement::new(
                tags::PHOTOMETRIC_INTERPRETATION,
                VR::CS,
                PrimitiveValue::from("RGB"),
            ));
            obj.put(DataElement::new(
                tags::PLANAR_CONFIGURATION,
                VR::US,
                PrimitiveValue::from(planar),
            ));
            obj.put(DataElement::new(
                tags::PIXEL_DATA,
                VR::OB,
                PrimitiveValue::U8(data.clone().into()),
            ));
        });
        let read = read_file(
            &path,
            &ReadOptions {
                keep_stored: true,
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(read.meta.samples_per_pixel, 3);
        assert_eq!(
            read.stored.as_deref().unwrap(),
            &[255, 0, 0, 255, 255, 255],
            "planar {planar}"
        );
        assert!((read.pixels[0] - 0.299 * 255.0).abs() < 1e-3);
        assert!((read.pixels[1] - 255.0).abs() < 1e-3);
        // Full range for colour: white is 1.
        assert!((read.display()[1] - 1.0).abs() < 1e-3);
    }
    // Native YBR_FULL and YBR_FULL_422 become RGB (PS3.3 C.7.6.3.1.2, as pydicom converts):
    // neutral chroma is grey; Y 0 with Cb = Cr = 0 is R 0, G 0.344136 x 128 + 0.714136 x 128 =
    // 135.4 -> 135, B 0.
    for (photometric, data, want) in [
        (
            "YBR_FULL",
            vec![90u8, 128, 128, 0, 0, 0],
            vec![90i64, 90, 90, 0, 135, 0],
        ),
        (
            "YBR_FULL_422",
            vec![90u8, 0, 128, 128],
            vec![90i64, 90, 90, 0, 0, 0],
        ),
    ] {
        let path = write_with(dir.path(), &img, |obj| {
            obj.put(DataElement::new(
                tags::SAMPLES_PER_PIXEL,
                VR::US,
                PrimitiveValue::from(3u16),
            ));
            obj.put(DataElement::new(
                tags::PHOTOMETRIC_INTERPRETATION,
                VR::CS,
                PrimitiveValue::from(photometric),
            ));
            obj.put(DataElement::new(
                tags::PIXEL_DATA,
                VR::OB,
                PrimitiveValue::U8(data.clone().into()),
            ));
        });
        let read = read_file(
            &path,
            &ReadOptions {
                keep_stored: true,
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(read.stored.as_deref().unwrap(), &want[..], "{photometric}");
    }
    // YBR_FULL_422 data one byte short of Rows x Columns x 2 is refused, not read past its end.
    let path = write_with(dir.path(), &img, |obj| {
        obj.put(DataElement::new(
            tags::SAMPLES_PER_PIXEL,
            VR::US,
            PrimitiveValue::from(3u16),
        ));
        obj.put(DataElement::new(
            tags::PHOTOMETRIC_INTERPRETATION,
            VR::CS,
            PrimitiveValue::from("YBR_FULL_422"),
        ));
        obj.put(DataElement::new(
            tags::PIXEL_DATA,
            VR::OB,
            PrimitiveValue::U8(vec![0u8; 2].into()),
        ));
    });
    let e = read_file(&path, &ReadOptions::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("2 bytes") && e.contains("needs 4"), "{e}");
}

#[test]
fn a_dicomdir_that_points_outside_its_folder_is_refused() {
    use dicom_core::{value::PrimitiveValue, DataElement, VR};
    use dicom_dictionary_std::tags;
    let dir = tempfile::tempdir().unwrap();
    for (id, ok) in [
        (vec!["IMG", "A1"], true),
        (vec!["..", "etc", "passwd"], false),
    ] {
        let record = dicom_object::InMemDicomObject::from_element_iter([
            DataElement::new(
                tags::DIRECTORY_RECORD_TYPE,
                VR::CS,
                PrimitiveValue::from("IMAGE"),
            ),
            DataElement::new(
                tags::REFERENCED_FILE_ID,
                VR::CS,
                PrimitiveValue::Strs(id.iter().map(|s| s.to_string()).collect()),
            ),
        ]);
        let obj = dicom_object::InMemDicomObject::from_element_iter([DataElement::new(
            tags::DIRECTORY_RECORD_SEQUENCE,
            VR::SQ,
            dicom_core::value::DataSetSequence::from(vec![record]),
        )]);
        let file = obj
            .with_meta(
                dicom_object::FileMetaTableBuilder::new()
                    .transfer_syntax("1.2.840.10008.1.2.1")
                    .media_storage_sop_class_uid(asg_dicom::index::SOP_CLASS_DICOMDIR)
                    .media_storage_sop_instance_uid("2.25.1"),
            )
            .unwrap();
        let path = dir.path().join("DICOMDIR");
        file.write_to_file(&path).unwrap();
        let got = asg_dicom::index::dicomdir_files(&path);
        if ok {
            assert_eq!(got.unwrap(), vec![dir.path().join("IMG").join("A1")]);
        } else {
            let e = got.unwrap_err().to_string();
            assert!(
                e.contains("leave the DICOMDIR's folder") && e.contains("DICOMDIR"),
                "{e}"
            );
        }
    }
}

#[test]
fn a_data_set_without_preamble_or_meta_header_reads_in_its_guessed_syntax() {
    let dir = tempfile::tempdir().unwrap();
    for ts in [
        TransferSyntax::ExplicitVrLittleEndian,
        TransferSyntax::ImplicitVrLittleEndian,
    ] {
        let mut img = sample(3, 5);
        img.transfer_syntax = ts;
        let path = write(dir.path(), &img);
        let bytes = std::fs::read(&path).unwrap();
        // Preamble (128) + "DICM" + the meta group, whose length is the value of (0002,0000).
        let group_len = u32::from_le_bytes(bytes[140..144].try_into().unwrap()) as usize;
        let bare = &bytes[144 + group_len..];
        let want = read_bytes(&bytes, "with meta", &ReadOptions::default()).unwrap();
        let got = read_bytes(bare, "bare", &ReadOptions::default()).unwrap();
        assert_eq!(got.pixels, want.pixels, "{ts:?}");
        assert_eq!(got.meta.transfer_syntax_uid, ts.uid());
        assert_eq!(got.meta.sop_instance_uid, want.meta.sop_instance_uid);
    }
    let e = read_bytes(
        b"plain text, not a data set",
        "t.txt",
        &ReadOptions::default(),
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("t.txt") && e.contains("do not start like a DICOM data set"),
        "{e}"
    );
}

/// Found by the fuzzer (fuzz/bytes_to_tensor): a short RLE segment made dicom-rs's RLE decoder index past
/// its buffer and panic. asg-dicom now validates RLE frames before decoding.
#[test]
fn a_short_rle_segment_is_an_error_not_a_panic() {
    use dicom_core::value::{PixelFragmentSequence, Value};
    use dicom_core::{DataElement, VR};
    use dicom_dictionary_std::tags;
    let dir = tempfile::tempdir().unwrap();
    let mut img = sample(4, 4);
    img.bits_stored = 8;
    img.pixels = vec![7; 16];
    let path = write(dir.path(), &img);
    let obj = dicom_object::open_file(&path).unwrap();
    let mut fragment = vec![0u8; 64];
    fragment[0] = 1; // one segment
    fragment[4] = 64; // starting right after the header
    fragment.extend_from_slice(&[0x00, 0x05]); // a literal run of one byte: 1 of the 16 needed
    let mut data = obj.into_inner();
    data.put(DataElement::new(
        tags::PIXEL_DATA,
        VR::OB,
        Value::PixelSequence(PixelFragmentSequence::new(vec![], vec![fragment])),
    ));
    let rle = data
        .with_meta(
            dicom_object::FileMetaTableBuilder::new()
                .transfer_syntax("1.2.840.10008.1.2.5")
                .media_storage_sop_class_uid(SOP_CLASS_DX_PRESENTATION)
                .media_storage_sop_instance_uid("2.25.3"),
        )
        .unwrap();
    let rle_path = dir.path().join("rle.dcm");
    rle.write_to_file(&rle_path).unwrap();
    let e = read_file(&rle_path, &ReadOptions::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("RLE segment 0 decodes to 1 bytes"), "{e}");
}

#[test]
fn a_modality_lut_sequence_replaces_the_rescale_and_orientation_is_reported() {
    use dicom_core::{value::PrimitiveValue, DataElement, VR};
    use dicom_dictionary_std::tags;
    let dir = tempfile::tempdir().unwrap();
    let mut img = sample(1, 4);
    img.pixels = vec![0, 1, 2, 9];
    img.rescale_slope = 100.0; // must be ignored: the LUT wins
    let item = dicom_object::InMemDicomObject::from_element_iter([
        DataElement::new(
            tags::LUT_DESCRIPTOR,
            VR::US,
            PrimitiveValue::U16(vec![3u16, 0, 16].into()),
        ),
        DataElement::new(
            tags::LUT_DATA,
            VR::OW,
            PrimitiveValue::U16(vec![10u16, 20, 30].into()),
        ),
    ]);
    let path = write_with(dir.path(), &img, |obj| {
        obj.put(DataElement::new(
            tags::MODALITY_LUT_SEQUENCE,
            VR::SQ,
            dicom_core::value::DataSetSequence::from(vec![item]),
        ));
    });
    let read = read_file(&path, &ReadOptions::default()).unwrap();
    assert_eq!(read.pixels, vec![10.0, 20.0, 30.0, 30.0]);
    assert_eq!(read.meta.patient_orientation.as_deref(), Some("L\\F"));
}

/// Found by the fuzzer (fuzz/bytes_to_tensor, a 60 s CI run): in a deflated data set an element declared
/// 3.7 GB, and dicom-parser zero-filled that much before finding the stream short (37 s, and
/// gigabytes). The length pre-walk now inflates a deflated data set (capped) and walks it too.
#[test]
#[cfg(feature = "codecs")]
fn a_lying_length_inside_a_deflated_data_set_is_refused_before_allocating() {
    use std::io::{Read, Write};
    let dir = tempfile::tempdir().unwrap();
    let mut img = sample(4, 4);
    img.transfer_syntax = TransferSyntax::DeflatedExplicitVrLittleEndian;
    let path = write(dir.path(), &img);
    let bytes = std::fs::read(&path).unwrap();
    // Preamble, "DICM", (0002,0000) UL 4 = the meta group's length after it.
    let meta_len = u32::from_le_bytes(bytes[140..144].try_into().unwrap()) as usize;
    let start = 144 + meta_len;
    let mut inflated = Vec::new();
    flate2::read::DeflateDecoder::new(&bytes[start..])
        .read_to_end(&mut inflated)
        .unwrap();
    // A private element (0009,0010) OB declaring 0xF0000000 bytes, then a few.
    inflated.extend_from_slice(&[0x09, 0x00, 0x10, 0x00, b'O', b'B', 0, 0]);
    inflated.extend_from_slice(&0xF000_0000u32.to_le_bytes());
    inflated.extend_from_slice(&[1, 2, 3, 4]);
    let mut enc = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(&inflated).unwrap();
    let mut lying = bytes[..start].to_vec();
    lying.extend(enc.finish().unwrap());
    let lying_path = dir.path().join("lying.dcm");
    std::fs::write(&lying_path, &lying).unwrap();
    let e = read_file(&lying_path, &ReadOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("(0009,0010)") && e.contains("declares 4026531840 bytes but only"),
        "{e}"
    );
    // The file as written still reads.
    assert_eq!(read_file(&path, &ReadOptions::default()).unwrap().width, 4);
}

#[test]
fn decimal_strings_written_as_un_are_read_as_text_not_as_bytes() {
    use dicom_core::{value::PrimitiveValue, DataElement, VR};
    use dicom_dictionary_std::tags;
    let dir = tempfile::tempdir().unwrap();
    let mut img = sample(1, 3);
    img.pixels = vec![0, 10, 20];
    for (slope, intercept, want) in [("2 ", "-5", Some([-5.0f32, 15.0, 35.0])), ("x", "0", None)] {
        let path = write_with(dir.path(), &img, |obj| {
            for (tag, text) in [
                (tags::RESCALE_SLOPE, slope),
                (tags::RESCALE_INTERCEPT, intercept),
            ] {
                obj.put(DataElement::new(
                    tag,
                    VR::UN,
                    PrimitiveValue::U8(text.as_bytes().to_vec().into()),
                ));
            }
        });
        match (read_file(&path, &ReadOptions::default()), want) {
            (Ok(image), Some(want)) => assert_eq!(image.pixels, want),
            (Err(e), None) => assert!(e.to_string().contains("encoded as UN"), "{e}"),
            (other, _) => panic!("slope {slope:?}: {other:?}"),
        }
    }
}

/// NEMA WG-04's JPEG-LS lossless MR1 (in ../shared/dicom-cases, not committed) carries one 0x00
/// byte before EOI that CharLS 2.3+ refuses; it must decode identical to its uncompressed original.
#[test]
#[cfg(feature = "jpegls")]
fn the_wg04_jpeg_ls_file_decodes_identical_to_its_original() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/dicom-cases");
    let (jls, unc) = (dir.join("MR1_JLSL.dcm"), dir.join("MR1_UNC.dcm"));
    if !jls.exists() || !unc.exists() {
        eprintln!("skipped: {} absent (the shared DICOM cases)", dir.display());
        return;
    }
    let options = ReadOptions {
        keep_stored: true,
        ..Default::default()
    };
    let a = read_file(&jls, &options).unwrap();
    let b = read_file(&unc, &options).unwrap();
    assert_eq!((a.width, a.height), (512, 512));
    assert_eq!(a.stored, b.stored);
    assert_eq!(a.pixels, b.pixels);
}
