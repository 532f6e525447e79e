//! Lying lengths must be refused before anything of their size is allocated: checked with a
//! counting global allocator (the largest single allocation while reading), not with a clock.

use asg_dicom::*;
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

struct Counting;
static LARGEST: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LARGEST.fetch_max(layout.size(), Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        LARGEST.fetch_max(layout.size(), Ordering::Relaxed);
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LARGEST.fetch_max(new_size, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// The counter is global: the tests here run one at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Found by the fuzzer (a 60 s run of fuzz/bytes_to_tensor): the meta group's transfer syntax
/// element with an unknown VR and a length of ~4 GB. Reading files whose data set is in another VR
/// than their meta header says handed the meta group to dicom-object before the length pre-walk,
/// and dicom-object allocated and zero-filled the declared 4 GB (17 s, a timeout).
/// A Part 10 preamble, "DICM" and a meta group of `meta` (its group length first).
fn part10_head(meta: &[u8]) -> Vec<u8> {
    let mut file = vec![0u8; 128];
    file.extend(b"DICM");
    file.extend([0x02, 0x00, 0x00, 0x00, b'U', b'L', 4, 0]);
    file.extend((meta.len() as u32).to_le_bytes());
    file.extend(meta);
    file
}

#[test]
fn a_lying_length_in_the_meta_group_is_refused_before_allocating() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let image = NewImage {
        rows: 4,
        columns: 4,
        pixels: vec![7; 16],
        bits_stored: 12,
        photometric_interpretation: "MONOCHROME2".into(),
        rescale_slope: 1.0,
        rescale_intercept: 0.0,
        window: None,
        pixel_spacing_mm: None,
        view_position: None,
        modality: "DX".into(),
        sop_class_uid: SOP_CLASS_DX_PRESENTATION.into(),
        study_instance_uid: uid_from_u128(1),
        series_instance_uid: uid_from_u128(2),
        sop_instance_uid: uid_from_u128(3),
        patient_name: "PHANTOM^ONE".into(),
        patient_id: "PH0001".into(),
        study_description: None,
        transfer_syntax: TransferSyntax::ExplicitVrLittleEndian,
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.dcm");
    write_file(&path, &image).unwrap();
    let mut bytes = std::fs::read(&path).unwrap();
    let header = b"\x02\x00\x10\x00UI";
    let at = bytes
        .windows(header.len())
        .position(|w| w == header)
        .expect("transfer syntax header");
    // VR "82" (unknown: read as UN, 2 reserved bytes and a 4-byte length), length 0xFFFFFFD0.
    bytes[at + 4..at + 6].copy_from_slice(b"82");
    bytes[at + 6..at + 12].copy_from_slice(&[0, 0, 0xD0, 0xFF, 0xFF, 0xFF]);
    LARGEST.store(0, Ordering::Relaxed);
    let e = read_bytes(&bytes, "meta.dcm", &ReadOptions::default()).unwrap_err();
    let largest = LARGEST.load(Ordering::Relaxed);
    assert!(e.to_string().contains("(0002,0010): declares"), "{e}");
    assert!(largest < 1 << 20, "largest allocation {largest} bytes");
}

/// A 16 x 16 data set holding a JPEG whose frame header claims 60,000 x 60,000 pixels: jpeg-decoder
/// allocated what the stream said (21 GB, then a panic) before this check. Refused unallocated,
/// for JPEG, JPEG-LS and JPEG 2000 headers alike.
#[test]
fn a_compressed_stream_claiming_more_pixels_than_the_data_set_is_refused_before_decoding() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    use dicom_core::value::{PixelFragmentSequence, Value};
    use dicom_core::{DataElement, VR};
    use dicom_dictionary_std::tags;
    let image = NewImage {
        rows: 16,
        columns: 16,
        pixels: vec![7; 256],
        bits_stored: 8,
        photometric_interpretation: "MONOCHROME2".into(),
        rescale_slope: 1.0,
        rescale_intercept: 0.0,
        window: None,
        pixel_spacing_mm: None,
        view_position: None,
        modality: "DX".into(),
        sop_class_uid: SOP_CLASS_DX_PRESENTATION.into(),
        study_instance_uid: uid_from_u128(1),
        series_instance_uid: uid_from_u128(2),
        sop_instance_uid: uid_from_u128(3),
        patient_name: "PHANTOM^ONE".into(),
        patient_id: "PH0001".into(),
        study_description: None,
        transfer_syntax: TransferSyntax::ExplicitVrLittleEndian,
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.dcm");
    write_file(&path, &image).unwrap();
    // SOF0 (baseline), SOF55 (JPEG-LS) and a JPEG 2000 SIZ, each declaring 60000 x 60000.
    let jpeg = |marker: u8| {
        vec![
            0xFF, 0xD8, 0xFF, marker, 0x00, 0x0B, 0x08, 0xEA, 0x60, 0xEA, 0x60, 0x01, 0x01, 0x11,
            0x00, 0xFF, 0xD9, 0x00,
        ]
    };
    let mut j2k = vec![0xFF, 0x4F, 0xFF, 0x51, 0x00, 0x29, 0x00, 0x00];
    j2k.extend(60000u32.to_be_bytes());
    j2k.extend(60000u32.to_be_bytes());
    j2k.extend([0u8; 8]);
    // Found by the 10 M campaign (a panic in dicom-rs's JPEG adapter, which copies the decoded
    // frame into a buffer sized from the data set): the right size but 3 components for 1 sample.
    let three_components = vec![
        0xFF, 0xD8, 0xFF, 0xC0, 0x00, 0x11, 0x08, 0x00, 0x10, 0x00, 0x10, 0x03, 0x01, 0x11, 0x00,
        0x02, 0x11, 0x00, 0x03, 0x11, 0x00, 0xFF, 0xD9,
    ];
    for (uid, stream, name) in [
        ("1.2.840.10008.1.2.4.50", three_components, "3 components"),
        ("1.2.840.10008.1.2.4.50", jpeg(0xC0), "JPEG"),
        ("1.2.840.10008.1.2.4.80", jpeg(0xF7), "JPEG-LS"),
        ("1.2.840.10008.1.2.4.90", j2k.clone(), "JPEG 2000"),
    ] {
        let mut obj = dicom_object::open_file(&path).unwrap();
        obj.put(DataElement::new(
            tags::PIXEL_DATA,
            VR::OB,
            Value::PixelSequence(PixelFragmentSequence::new(Vec::<u32>::new(), vec![stream])),
        ));
        obj.update_meta(|m| m.transfer_syntax = uid.to_string());
        let mut bytes = Vec::new();
        obj.write_all(&mut bytes).unwrap();
        LARGEST.store(0, Ordering::Relaxed);
        let e = read_bytes(&bytes, "lying.dcm", &ReadOptions::default()).unwrap_err();
        let largest = LARGEST.load(Ordering::Relaxed);
        let want = if name == "3 components" {
            "the JPEG stream has 3 components, the data set 1 samples per pixel".to_string()
        } else {
            format!("the {name} stream says 60000 x 60000 pixels, the data set 16 x 16")
        };
        assert!(e.to_string().contains(&want), "{e}");
        assert!(
            largest < 1 << 20,
            "{name}: largest allocation {largest} bytes"
        );
    }
}

/// A deflated data set that inflates past the reader's file cap (the browser's is 256 MB) is
/// refused while inflating, with the buffer never grown past the cap.
#[test]
fn a_deflate_bomb_is_refused_without_buffering_more_than_the_cap() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let image = NewImage {
        rows: 1024,
        columns: 1024,
        pixels: vec![0; 1024 * 1024],
        bits_stored: 12,
        photometric_interpretation: "MONOCHROME2".into(),
        rescale_slope: 1.0,
        rescale_intercept: 0.0,
        window: None,
        pixel_spacing_mm: None,
        view_position: None,
        modality: "DX".into(),
        sop_class_uid: SOP_CLASS_DX_PRESENTATION.into(),
        study_instance_uid: uid_from_u128(1),
        series_instance_uid: uid_from_u128(2),
        sop_instance_uid: uid_from_u128(3),
        patient_name: "PHANTOM^ONE".into(),
        patient_id: "PH0001".into(),
        study_description: None,
        transfer_syntax: TransferSyntax::DeflatedExplicitVrLittleEndian,
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bomb.dcm");
    write_file(&path, &image).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    assert!(bytes.len() < 64 * 1024, "{} bytes", bytes.len());
    let cap = 1u64 << 20; // 2 MB of pixels inflate past a 1 MB cap
    let options = ReadOptions {
        max_file_bytes: cap,
        ..Default::default()
    };
    LARGEST.store(0, Ordering::Relaxed);
    let e = read_bytes(&bytes, "bomb.dcm", &options).unwrap_err();
    let largest = LARGEST.load(Ordering::Relaxed);
    assert!(
        e.to_string()
            .contains("inflates to more than 1048576 bytes"),
        "{e}"
    );
    assert!(
        largest as u64 <= cap + 1,
        "largest allocation {largest} bytes"
    );
    // Under the default cap the same file reads.
    assert!(read_bytes(&bytes, "bomb.dcm", &ReadOptions::default()).is_ok());
}

/// Found by the fuzzer (the 10 M campaign, a 13 s slow unit): a meta group holding an element of
/// another group inside its group length. The length pre-walk ended the meta group at that
/// element and tried to inflate from there (not a deflate stream: nothing walked), while
/// dicom-object reads the meta group by its length, inflated the real data set and allocated the
/// 2.5 GB one of its elements declared. The pre-walk now ends the meta group where its length says.
#[test]
fn a_foreign_element_inside_the_meta_group_does_not_hide_a_deflated_lie() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    use std::io::Write;
    fn element(tag: (u16, u16), vr: &[u8; 2], value: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend(tag.0.to_le_bytes());
        out.extend(tag.1.to_le_bytes());
        out.extend(vr);
        out.extend((value.len() as u16).to_le_bytes());
        out.extend(value);
        out
    }
    let mut meta = Vec::new();
    meta.extend(element((2, 0x10), b"UI", b"1.2.840.10008.1.2.1.99"));
    meta.extend(element((0x3020, 0x16), b"AE", b"CLUNIE1 "));
    let mut file = vec![0u8; 128];
    file.extend(b"DICM");
    file.extend(element((2, 0), b"UL", &(meta.len() as u32).to_le_bytes()));
    file.extend(&meta);
    // The data set: Rows, then an OB element declaring 2.5 GB with a few bytes behind it.
    let mut dataset = element((0x28, 0x10), b"US", &16u16.to_le_bytes());
    dataset.extend([0x8A, 0x8A, 0x8A, 0x8A, b'O', b'B', 0, 0]);
    dataset.extend(2_500_000_000u32.to_le_bytes());
    dataset.extend([0u8; 64]);
    let mut deflate =
        flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
    deflate.write_all(&dataset).unwrap();
    file.extend(deflate.finish().unwrap());
    LARGEST.store(0, Ordering::Relaxed);
    let e = read_bytes(&file, "meta.dcm", &ReadOptions::default()).unwrap_err();
    let largest = LARGEST.load(Ordering::Relaxed);
    assert!(
        e.to_string()
            .contains("(8A8A,8A8A): declares 2500000000 bytes"),
        "{e}"
    );
    assert!(largest < 1 << 20, "largest allocation {largest} bytes");
}

/// Found by the fuzz campaign (a timeout and a slow unit, 1.9 GB allocated): an item tag where an
/// element is expected. dicom-parser reads it as tag + 4-byte length and skips a value of that
/// length, while the pre-walk stepped into it as an item and read its bytes as elements; from
/// there the two saw different headers and the parser allocated what the walk never checked. The
/// walk now tracks sequences and items as the parser does. Here the stray item's 12 bytes look, to
/// the old walk, like an element that jumps over the parser's next header: an OB of 1 GB.
#[test]
fn an_item_outside_a_sequence_is_walked_as_the_parser_reads_it() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    fn element(tag: (u16, u16), vr: &[u8; 2], value: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend(tag.0.to_le_bytes());
        out.extend(tag.1.to_le_bytes());
        out.extend(vr);
        out.extend((value.len() as u16).to_le_bytes());
        out.extend(value);
        out
    }
    let mut meta = Vec::new();
    meta.extend(element((2, 0x10), b"UI", b"1.2.840.10008.1.2.1\0"));
    let mut file = vec![0u8; 128];
    file.extend(b"DICM");
    file.extend(element((2, 0), b"UL", &(meta.len() as u32).to_le_bytes()));
    file.extend(&meta);
    file.extend(element((0x28, 0x10), b"US", &16u16.to_le_bytes()));
    // A stray item of 12 bytes: to the parser a value, to the old walk an OB of 100 bytes.
    file.extend([0xFE, 0xFF, 0x00, 0xE0, 12, 0, 0, 0]);
    file.extend([0x09, 0x00, 0x10, 0x00, b'O', b'B', 0, 0, 100, 0, 0, 0]);
    // The parser's next header: an OB claiming 1 GB.
    file.extend([0x09, 0x00, 0x12, 0x00, b'O', b'B', 0, 0, 0, 0, 0, 0x40]);
    file.extend([0u8; 128]);
    LARGEST.store(0, Ordering::Relaxed);
    let e = read_bytes(&file, "stray.dcm", &ReadOptions::default()).unwrap_err();
    let largest = LARGEST.load(Ordering::Relaxed);
    assert!(
        e.to_string()
            .contains("(0009,0012): declares 1073741824 bytes"),
        "{e}"
    );
    assert!(largest < 1 << 20, "largest allocation {largest} bytes");
}

/// Found by the fuzz campaign (a slow unit, then a timeout; 4 GB allocated): dicom-parser reads a
/// binary numeric value as whole numbers, so an SL of 6 bytes consumes 4 and the next header is read
/// 2 bytes early. The pre-walk skipped all 6 and checked other headers than the parser read. It now
/// follows the bytes the parser consumes. Here the parser's next header is an OB of 1 GB; the old
/// walk saw a harmless 2-byte US there.
#[test]
fn a_numeric_value_of_odd_length_is_walked_as_the_parser_reads_it() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    fn element(tag: (u16, u16), vr: &[u8; 2], value: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend(tag.0.to_le_bytes());
        out.extend(tag.1.to_le_bytes());
        out.extend(vr);
        out.extend((value.len() as u16).to_le_bytes());
        out.extend(value);
        out
    }
    let mut meta = Vec::new();
    meta.extend(element((2, 0x10), b"UI", b"1.2.840.10008.1.2.1\0"));
    let mut file = vec![0u8; 128];
    file.extend(b"DICM");
    file.extend(element((2, 0), b"UL", &(meta.len() as u32).to_le_bytes()));
    file.extend(&meta);
    // SL of 6 bytes: 4 read, then the parser reads (0009,0010) OB with length 0x40000002.
    file.extend(element((0x0008, 0x0102), b"SL", &[0, 0, 0, 0, 0x09, 0x00]));
    file.extend([0x10, 0x00, b'O', b'B', b'U', b'S', 0x02, 0x00, 0x00, 0x40]);
    file.extend([0u8; 64]);
    LARGEST.store(0, Ordering::Relaxed);
    let e = read_bytes(&file, "odd.dcm", &ReadOptions::default()).unwrap_err();
    let largest = LARGEST.load(Ordering::Relaxed);
    assert!(
        e.to_string()
            .contains("(0009,0010): declares 1073741826 bytes"),
        "{e}"
    );
    assert!(largest < 1 << 20, "largest allocation {largest} bytes");
}

/// Found by the fuzz campaign (a timeout, 2.8 GB): a sequence element inside the meta group. The
/// pre-walk stepped into it as a sequence and stopped at the next element, which was not an item;
/// dicom-object's meta reader reads every value raw by its length and allocated the 1 GB the
/// transfer syntax element (written as UN) declared. The walk now reads the meta group as that
/// reader does.
#[test]
fn a_sequence_inside_the_meta_group_does_not_end_the_walk() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut meta = Vec::new();
    meta.extend([0x28, 0x00, 0x10, 0x30, b'S', b'Q', 0, 0, 2, 0, 0, 0, 0, 1]);
    meta.extend([0x02, 0x00, 0x10, 0x00, b'U', b'N', 0, 0, 0, 0, 0, 0x40]);
    meta.extend(b"1.2.840.10008.1.2.1\0");
    let mut file = part10_head(&meta);
    file.extend([0u8; 64]);
    LARGEST.store(0, Ordering::Relaxed);
    let e = read_bytes(&file, "meta.dcm", &ReadOptions::default()).unwrap_err();
    let largest = LARGEST.load(Ordering::Relaxed);
    assert!(
        e.to_string()
            .contains("(0002,0010): declares 1073741824 bytes"),
        "{e}"
    );
    assert!(largest < 1 << 20, "largest allocation {largest} bytes");
}

/// Found by the 10 M campaign at 7.2 M executions (a panic in dicom-rs's JPEG adapter): Pixel
/// Data as a native value (VR UN) under JPEG Baseline; the codec decoded the value as a stream
/// of another size than the data set's and overran its buffer. The Pixel Data's form must be the
/// one the transfer syntax prescribes.
#[test]
fn native_pixel_data_under_a_compressed_syntax_is_refused() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut meta = Vec::new();
    meta.extend([0x02, 0x00, 0x10, 0x00, b'U', b'I', 22, 0]);
    meta.extend(b"1.2.840.10008.1.2.4.50");
    let mut file = part10_head(&meta);
    for (tag, value) in [
        (0x0002u16, 3u16),
        (0x0010, 3),
        (0x0011, 3),
        (0x0100, 8),
        (0x0101, 8),
    ] {
        file.extend([0x28, 0x00]);
        file.extend(tag.to_le_bytes());
        file.extend([b'U', b'S', 2, 0]);
        file.extend(value.to_le_bytes());
    }
    file.extend([0x28, 0x00, 0x04, 0x00, b'C', b'S', 8, 0]);
    file.extend(b"YBR_FULL");
    let jpeg = [
        0xFFu8, 0xD8, 0xFF, 0xC0, 0x00, 0x11, 0x08, 0x01, 0x00, 0x01, 0x00, 0x03,
    ];
    file.extend([0xE0, 0x7F, 0x10, 0x00, b'U', b'N', 0, 0]);
    file.extend((jpeg.len() as u32).to_le_bytes());
    file.extend(jpeg);
    let e = read_bytes(&file, "un.dcm", &ReadOptions::default()).unwrap_err();
    assert!(
        e.to_string().contains(
            "a native value under JPEG Baseline (Process 1), which prescribes encapsulated"
        ),
        "{e}"
    );
}
