//! asg-dicom: DICOM files -> calibrated pixels -> model input; and the writer used by the phantom
//! generator and the tests.
//!
//! Reading and pixel decoding are dicom-rs (`dicom-object`, `dicom-pixeldata`); this crate adds the
//! checks a clinical archive needs (size caps before allocating, typed errors that name the file and
//! the element), the display transform (VOI window, MONOCHROME1 inversion) and the model's
//! letterboxed, normalised input with the exact transform back to image pixels.

#![forbid(unsafe_code)]

mod crop;
mod error;
pub mod index;
mod lengths;
mod native;
pub mod npy;
#[cfg(feature = "pictures")]
pub mod picture;
mod preprocess;
mod read;
pub mod sr;
mod write;

pub use crop::{crop_area, crop_display, CropFrame};
pub use error::{DicomError, DicomErrorKind};
pub use preprocess::{
    area_resize, area_resize_map, preprocess, preprocess_image, Letterbox, ModelInput,
    Normalisation,
};
pub use read::{
    read_bytes, read_capped, read_file, read_meta_bytes, Image, ImageMeta, ReadOptions,
    VoiFunction, VoiLut, VoiWindow,
};
pub use write::{
    uid_from_u128, write_file, NewImage, TransferSyntax, SOP_CLASS_DX_PRESENTATION,
    SOP_CLASS_SECONDARY_CAPTURE,
};
