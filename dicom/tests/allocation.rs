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

/// Found by the fuzzer (a 60 s run of fuzz/bytes_to_tensor): the meta group's transfer syntax
/// element with an unknown VR and a length of ~4 GB. Reading files whose data set is in another VR
/// than their meta header says handed the meta group to dicom-object before the length pre-walk,
/// and dicom-object allocated and zero-filled the declared 4 GB (17 s, a timeout).
#[test]
fn a_lying_length_in_the_meta_group_is_refused_before_allocating() {
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
