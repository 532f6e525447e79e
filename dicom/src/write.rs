//! Writing single-frame monochrome DX and Secondary Capture images (explicit or implicit VR little
//! endian, or deflated explicit VR little endian; 8 or 16 bits allocated), used by the phantom
//! generator and by tests. Files are written under a temporary name and
//! renamed, so a failed write never leaves a half file under the final name.

use crate::error::{DicomError, DicomErrorKind};
use crate::read::VoiWindow;
use dicom_core::value::PrimitiveValue;
use dicom_core::{DataElement, Tag, VR};
use dicom_dictionary_std::tags;
use dicom_object::{FileMetaTableBuilder, InMemDicomObject};
use std::path::Path;

/// Digital X-Ray Image Storage - For Presentation.
pub const SOP_CLASS_DX_PRESENTATION: &str = "1.2.840.10008.5.1.4.1.1.1.1";
/// Secondary Capture Image Storage.
pub const SOP_CLASS_SECONDARY_CAPTURE: &str = "1.2.840.10008.5.1.4.1.1.7";

/// The transfer syntaxes the writer produces (native pixel data).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub enum TransferSyntax {
    #[default]
    ExplicitVrLittleEndian,
    ImplicitVrLittleEndian,
    /// Needs the `codecs` feature (deflate).
    DeflatedExplicitVrLittleEndian,
}

impl TransferSyntax {
    /// The transfer syntax UID.
    pub fn uid(self) -> &'static str {
        match self {
            TransferSyntax::ExplicitVrLittleEndian => "1.2.840.10008.1.2.1",
            TransferSyntax::ImplicitVrLittleEndian => "1.2.840.10008.1.2",
            TransferSyntax::DeflatedExplicitVrLittleEndian => "1.2.840.10008.1.2.1.99",
        }
    }
}
/// Our implementation class UID (under the UUID-derived root 2.25).
pub(crate) const IMPLEMENTATION_CLASS_UID: &str = "2.25.302043462331953486468745563893361840923";

/// A UID under the 2.25 root (ISO/IEC 9834-8), from a 128-bit number.
pub fn uid_from_u128(n: u128) -> String {
    format!("2.25.{n}")
}

/// A monochrome single-frame image to write, with its identity.
#[derive(Debug, Clone)]
pub struct NewImage {
    pub rows: u32,
    pub columns: u32,
    /// Stored values, row-major, `rows * columns` of them, each below `2^bits_stored`.
    pub pixels: Vec<u16>,
    pub bits_stored: u16,
    /// "MONOCHROME1" or "MONOCHROME2".
    pub photometric_interpretation: String,
    pub rescale_slope: f64,
    pub rescale_intercept: f64,
    pub window: Option<VoiWindow>,
    /// Row, column spacing in mm.
    pub pixel_spacing_mm: Option<[f64; 2]>,
    pub view_position: Option<String>,
    /// "DX", "CR" or "OT".
    pub modality: String,
    pub sop_class_uid: String,
    pub study_instance_uid: String,
    pub series_instance_uid: String,
    pub sop_instance_uid: String,
    pub patient_name: String,
    pub patient_id: String,
    pub study_description: Option<String>,
    pub transfer_syntax: TransferSyntax,
}

fn ds(v: f64) -> String {
    // DS is at most 16 characters.
    let mut s = format!("{v}");
    if s.len() > 16 {
        s = format!("{v:.6e}");
    }
    s
}

impl NewImage {
    fn validate(&self) -> Result<(), String> {
        if self.rows == 0 || self.columns == 0 || self.rows > 65535 || self.columns > 65535 {
            return Err(format!(
                "{} x {} is not a valid image size",
                self.rows, self.columns
            ));
        }
        if self.pixels.len() != self.rows as usize * self.columns as usize {
            return Err(format!(
                "{} pixels for a {} x {} image",
                self.pixels.len(),
                self.rows,
                self.columns
            ));
        }
        if !(1..=16).contains(&self.bits_stored) {
            return Err(format!("bits stored {} is not in 1..=16", self.bits_stored));
        }
        let max = if self.bits_stored == 16 {
            u16::MAX
        } else {
            (1u16 << self.bits_stored) - 1
        };
        if let Some(p) = self.pixels.iter().find(|&&p| p > max) {
            return Err(format!(
                "pixel value {p} does not fit in {} bits",
                self.bits_stored
            ));
        }
        if !matches!(
            self.photometric_interpretation.as_str(),
            "MONOCHROME1" | "MONOCHROME2"
        ) {
            return Err(format!(
                "photometric interpretation {}",
                self.photometric_interpretation
            ));
        }
        Ok(())
    }

    fn to_object(&self) -> InMemDicomObject {
        let mut obj = InMemDicomObject::new_empty();
        let mut put_str = |tag: Tag, vr: VR, value: &str| {
            obj.put(DataElement::new(tag, vr, PrimitiveValue::from(value)));
        };
        put_str(tags::SPECIFIC_CHARACTER_SET, VR::CS, "ISO_IR 192");
        put_str(tags::IMAGE_TYPE, VR::CS, "DERIVED\\PRIMARY");
        put_str(tags::SOP_CLASS_UID, VR::UI, &self.sop_class_uid);
        put_str(tags::SOP_INSTANCE_UID, VR::UI, &self.sop_instance_uid);
        put_str(tags::STUDY_INSTANCE_UID, VR::UI, &self.study_instance_uid);
        put_str(tags::SERIES_INSTANCE_UID, VR::UI, &self.series_instance_uid);
        put_str(tags::MODALITY, VR::CS, &self.modality);
        put_str(tags::PATIENT_NAME, VR::PN, &self.patient_name);
        put_str(tags::PATIENT_ID, VR::LO, &self.patient_id);
        put_str(tags::STUDY_ID, VR::SH, "1");
        put_str(tags::SERIES_NUMBER, VR::IS, "1");
        put_str(tags::INSTANCE_NUMBER, VR::IS, "1");
        put_str(tags::BODY_PART_EXAMINED, VR::CS, "CHEST");
        // Rows run toward the patient's left, columns toward the feet: a frontal film shown as
        // radiologists read it, the patient's right on the image's left (PS3.3 C.7.6.1.1.1).
        put_str(tags::PATIENT_ORIENTATION, VR::CS, "L\\F");
        put_str(tags::PRESENTATION_INTENT_TYPE, VR::CS, "FOR PRESENTATION");
        if let Some(desc) = &self.study_description {
            put_str(tags::STUDY_DESCRIPTION, VR::LO, desc);
        }
        if let Some(view) = &self.view_position {
            put_str(tags::VIEW_POSITION, VR::CS, view);
        }
        put_str(
            tags::PHOTOMETRIC_INTERPRETATION,
            VR::CS,
            &self.photometric_interpretation,
        );
        put_str(tags::RESCALE_INTERCEPT, VR::DS, &ds(self.rescale_intercept));
        put_str(tags::RESCALE_SLOPE, VR::DS, &ds(self.rescale_slope));
        put_str(tags::RESCALE_TYPE, VR::LO, "US");
        if let Some(w) = self.window {
            put_str(tags::WINDOW_CENTER, VR::DS, &ds(w.center));
            put_str(tags::WINDOW_WIDTH, VR::DS, &ds(w.width));
            put_str(tags::VOILUT_FUNCTION, VR::CS, "LINEAR");
        }
        if let Some([r, c]) = self.pixel_spacing_mm {
            let spacing = format!("{}\\{}", ds(r), ds(c));
            put_str(tags::PIXEL_SPACING, VR::DS, &spacing);
            put_str(tags::IMAGER_PIXEL_SPACING, VR::DS, &spacing);
        }
        let mut put_us = |tag: Tag, v: u16| {
            obj.put(DataElement::new(tag, VR::US, PrimitiveValue::from(v)));
        };
        put_us(tags::SAMPLES_PER_PIXEL, 1);
        put_us(tags::ROWS, self.rows as u16);
        put_us(tags::COLUMNS, self.columns as u16);
        // 8 bits allocated when the values fit, as 8-bit detectors and secondary captures do.
        let eight = self.bits_stored <= 8;
        put_us(tags::BITS_ALLOCATED, if eight { 8 } else { 16 });
        put_us(tags::BITS_STORED, self.bits_stored);
        put_us(tags::HIGH_BIT, self.bits_stored - 1);
        put_us(tags::PIXEL_REPRESENTATION, 0);
        if eight {
            let mut bytes: Vec<u8> = self.pixels.iter().map(|&p| p as u8).collect();
            if bytes.len() % 2 == 1 {
                bytes.push(0);
            }
            obj.put(DataElement::new(
                tags::PIXEL_DATA,
                VR::OB,
                PrimitiveValue::U8(bytes.into()),
            ));
        } else {
            obj.put(DataElement::new(
                tags::PIXEL_DATA,
                VR::OW,
                PrimitiveValue::U16(self.pixels.clone().into()),
            ));
        }
        obj
    }
}

/// Writes `image` as a DICOM Part 10 file (preamble, meta header, the image's transfer syntax).
/// The file appears under `path` only once it is complete.
pub fn write_file(path: &Path, image: &NewImage) -> Result<(), DicomError> {
    let name = path.display().to_string();
    let err = |kind| DicomError::new(&name, kind);
    image
        .validate()
        .map_err(|reason| err(DicomErrorKind::InvalidImage(reason)))?;
    let file = image
        .to_object()
        .with_meta(
            FileMetaTableBuilder::new()
                .transfer_syntax(image.transfer_syntax.uid())
                .implementation_class_uid(IMPLEMENTATION_CLASS_UID)
                .implementation_version_name("ASG_0_1"),
        )
        .map_err(|e| err(DicomErrorKind::InvalidImage(e.to_string())))?;
    write_atomically(path, &file)
}

/// Writes a Part 10 file under a temporary name beside `path`, then renames it, so that a failed
/// write never leaves a half file under the final name.
pub(crate) fn write_atomically(
    path: &Path,
    file: &dicom_object::FileDicomObject<InMemDicomObject>,
) -> Result<(), DicomError> {
    let name = path.display().to_string();
    let err = |kind| DicomError::new(&name, kind);
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let file_name = path
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_else(|| "file.dcm".into());
    let tmp = dir.join(format!(".{file_name}.partial"));
    let result = file
        .write_to_file(&tmp)
        .map_err(|e| err(DicomErrorKind::Io(std::io::Error::other(e.to_string()))))
        .and_then(|_| std::fs::rename(&tmp, path).map_err(|e| err(DicomErrorKind::Io(e))));
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}
