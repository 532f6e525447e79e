//! Reading a DICOM image: parse with dicom-object, check, decode with dicom-pixeldata.

use crate::error::{DicomError, DicomErrorKind};
use dicom_core::Tag;
use dicom_dictionary_std::tags;
use dicom_object::file::ReadPreamble;
use dicom_object::{DefaultDicomObject, OpenFileOptions};
use dicom_pixeldata::{ConvertOptions, ModalityLutOption, PixelDecoder, VoiLutOption};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Limits checked before anything large is allocated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadOptions {
    /// Largest Rows x Columns x Frames x Samples accepted.
    pub max_pixels: u64,
    /// Largest file accepted, in bytes.
    pub max_file_bytes: u64,
    /// Which frame of a multi-frame image to decode (0-based).
    pub frame: u32,
    /// Also keep the raw stored values ([`Image::stored`]), as pydicom's `pixel_array` gives them.
    pub keep_stored: bool,
}

impl ReadOptions {
    /// The limits of the browser build, where one tab's memory holds the file, the parsed object,
    /// the f32 values and the RGBA rendering at once: files up to 256 MB (a deflated data set may
    /// inflate to as much), images up to 32 M pixels (e.g. 5,792 x 5,792; chest films are 3-12 M).
    pub fn browser() -> Self {
        Self {
            max_pixels: 1 << 25,
            max_file_bytes: 256 << 20,
            ..Self::default()
        }
    }
}

impl Default for ReadOptions {
    fn default() -> Self {
        Self {
            // 16k x 16k single frame, or e.g. 64 frames of 2k x 2k.
            max_pixels: 1 << 28,
            max_file_bytes: 2 << 30,
            frame: 0,
            keep_stored: false,
        }
    }
}

/// A VOI window (centre/width) as DICOM defines it (C.11.2.1.2).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct VoiWindow {
    pub center: f64,
    pub width: f64,
}

impl VoiWindow {
    /// Maps a modality value to [0, 1] with the LINEAR VOI LUT function.
    pub fn apply_linear(&self, x: f64) -> f64 {
        let w = self.width.max(1.0);
        let c = self.center;
        if w <= 1.0 {
            // Width 1 degenerates to a threshold at the centre.
            return if x < c - 0.5 { 0.0 } else { 1.0 };
        }
        let low = c - 0.5 - (w - 1.0) / 2.0;
        let high = c - 0.5 + (w - 1.0) / 2.0;
        if x <= low {
            0.0
        } else if x > high {
            1.0
        } else {
            ((x - (c - 0.5)) / (w - 1.0) + 0.5).clamp(0.0, 1.0)
        }
    }
}

/// The VOI LUT Function (0028,1056) that shapes the window (C.11.2.1.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum VoiFunction {
    #[default]
    #[serde(rename = "LINEAR")]
    Linear,
    #[serde(rename = "LINEAR_EXACT")]
    LinearExact,
    #[serde(rename = "SIGMOID")]
    Sigmoid,
}

impl VoiWindow {
    /// Maps a modality value to [0, 1] with the given VOI LUT function.
    pub fn apply(&self, function: VoiFunction, x: f64) -> f64 {
        match function {
            VoiFunction::Linear => self.apply_linear(x),
            VoiFunction::LinearExact => {
                let (c, w) = (self.center, self.width.max(f64::MIN_POSITIVE));
                if x <= c - w / 2.0 {
                    0.0
                } else if x > c + w / 2.0 {
                    1.0
                } else {
                    ((x - c) / w + 0.5).clamp(0.0, 1.0)
                }
            }
            VoiFunction::Sigmoid => {
                let w = self.width.max(f64::MIN_POSITIVE);
                1.0 / (1.0 + (-4.0 * (x - self.center) / w).exp())
            }
        }
    }
}

/// A VOI LUT from the VOI LUT Sequence (0028,3010), first item: values below `first_mapped` take
/// the first entry, above the last the last; output scaled by 2^bits - 1 to [0, 1].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VoiLut {
    pub first_mapped: i64,
    pub bits: u16,
    pub data: Vec<u16>,
}

impl VoiLut {
    /// The table's entry for value `x` (clamped to the first and last entries; 0 if empty).
    pub fn entry(&self, x: i64) -> u16 {
        let i = (x - self.first_mapped).clamp(0, self.data.len() as i64 - 1);
        self.data.get(i.max(0) as usize).copied().unwrap_or(0)
    }

    /// The entry for `x`, scaled by 2^bits - 1 to [0, 1] (the VOI use).
    pub fn apply(&self, x: f64) -> f64 {
        if self.data.is_empty() {
            return 0.0;
        }
        let max = ((1u64 << self.bits.clamp(1, 16)) - 1) as f64;
        (self.entry(x.round() as i64) as f64 / max).clamp(0.0, 1.0)
    }
}

/// What the viewer and the model need to know about an image; no patient identity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageMeta {
    pub sop_class_uid: String,
    pub sop_instance_uid: String,
    pub study_instance_uid: String,
    pub series_instance_uid: String,
    pub transfer_syntax_uid: String,
    pub modality: Option<String>,
    pub rows: u32,
    pub columns: u32,
    pub frames: u32,
    pub bits_allocated: u16,
    pub bits_stored: u16,
    pub pixel_representation: u16,
    /// 1 for monochrome, 3 for colour (converted to grey for the model; raw samples in `stored`).
    #[serde(default = "one")]
    pub samples_per_pixel: u16,
    pub photometric_interpretation: String,
    pub rescale_slope: f64,
    pub rescale_intercept: f64,
    /// Row spacing, column spacing in mm (Pixel Spacing, else Imager Pixel Spacing).
    pub pixel_spacing_mm: Option<[f64; 2]>,
    pub view_position: Option<String>,
    /// Body Part Examined (0018,0015), as recorded (CHEST, HAND, ABDOMEN...).
    pub body_part_examined: Option<String>,
    pub laterality: Option<String>,
    /// Patient Orientation (0020,0020): the patient directions of the rows and columns, e.g. "L\\F".
    #[serde(default)]
    pub patient_orientation: Option<String>,
    pub window: Option<VoiWindow>,
    /// How the window maps values (LINEAR unless the file says otherwise).
    #[serde(default)]
    pub voi_function: VoiFunction,
    /// The file's VOI LUT, used when it has no window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub voi_lut: Option<VoiLut>,
    /// The Modality LUT Sequence's table: when present it replaces the rescale (C.11.1); its
    /// output values are the modality values (not scaled to 0..1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub modality_lut: Option<VoiLut>,
}

fn one() -> u16 {
    1
}

/// One decoded frame: modality values (rescale applied), row-major, `width * height` of them.
#[derive(Debug, Clone)]
pub struct Image {
    pub width: u32,
    pub height: u32,
    pub pixels: Vec<f32>,
    /// Stored values before any LUT, with their signedness (only with `keep_stored`); for colour,
    /// `samples_per_pixel` values per pixel, interleaved (R, G, B).
    pub stored: Option<Vec<i64>>,
    pub meta: ImageMeta,
}

impl Image {
    /// The image as a radiologist sees it, in [0, 1], white = dense: the file's VOI window with its
    /// VOI LUT Function (LINEAR, LINEAR_EXACT, SIGMOID), else its VOI LUT Sequence, else
    /// [`Image::fallback_window`]; then MONOCHROME1 inversion.
    pub fn display(&self) -> Vec<f32> {
        let to_display = self.display_map();
        self.pixels.iter().map(|&x| to_display(x)).collect()
    }

    /// The linear window a viewer starts from when the user adjusts window/level: the file's VOI
    /// window, else [`Image::fallback_window`] (a VOI LUT Sequence or a SIGMOID function is
    /// honoured by [`Image::display`] until the user changes the window).
    pub fn default_window(&self) -> VoiWindow {
        self.meta.window.unwrap_or_else(|| self.fallback_window())
    }

    /// The window of a file that gives none. Unsigned data of at most 8 bits stored, with no
    /// rescale or Modality LUT, holds display values already (a secondary capture, a digitised
    /// or exported film, a picture put into DICOM by img2dcm): its whole stored range, so
    /// that value v shows as v / (2^bits - 1), exactly as the same picture read as PNG. Any
    /// other data: a robust 0.5-99.5 percentile window.
    pub fn fallback_window(&self) -> VoiWindow {
        let m = &self.meta;
        let display_values = (1..=8).contains(&m.bits_stored)
            && m.pixel_representation == 0
            && m.rescale_slope == 1.0
            && m.rescale_intercept == 0.0
            && m.modality_lut.is_none();
        if display_values {
            let levels = (1u32 << m.bits_stored) as f64;
            VoiWindow {
                center: levels / 2.0,
                width: levels,
            }
        } else {
            percentile_window(&self.pixels)
        }
    }

    /// The display transform of [`Image::display`] as a function of one modality value, so that
    /// callers can apply it on the fly (the model input does, inside its resize).
    pub fn display_map(&self) -> impl Fn(f32) -> f32 {
        let lut = if self.meta.window.is_none() {
            self.meta.voi_lut.clone()
        } else {
            None
        };
        let (window, function) = match self.meta.window {
            Some(w) => (w, self.meta.voi_function),
            None => (self.fallback_window(), VoiFunction::Linear),
        };
        let invert = self.meta.photometric_interpretation == "MONOCHROME1";
        move |x| {
            let v = match &lut {
                Some(l) => l.apply(x as f64) as f32,
                None => window.apply(function, x as f64) as f32,
            };
            if invert {
                1.0 - v
            } else {
                v
            }
        }
    }
}

/// A window spanning the 0.5th to the 99.5th percentile of the values (robust to outliers such as
/// collimator edges and burnt-in markers).
fn percentile_window(pixels: &[f32]) -> VoiWindow {
    // Sample at most ~1M values so the sort stays cheap on large images.
    let step = (pixels.len() / (1 << 20)).max(1);
    let mut sample: Vec<f32> = pixels
        .iter()
        .step_by(step)
        .copied()
        .filter(|v| v.is_finite())
        .collect();
    if sample.is_empty() {
        return VoiWindow {
            center: 0.5,
            width: 1.0,
        };
    }
    sample.sort_unstable_by(|a, b| a.total_cmp(b));
    let at = |q: f64| sample[((sample.len() - 1) as f64 * q).round() as usize] as f64;
    let (lo, hi) = (at(0.005), at(0.995));
    let width = (hi - lo).max(1e-3) + 1.0;
    VoiWindow {
        center: (lo + hi) / 2.0 + 0.5,
        width,
    }
}

/// The native transfer syntax a data set without meta header is written in, guessed from its first
/// element as other readers do (pydicom with `force=True`, dcmtk): a small group number read big
/// endian means explicit VR big endian; two upper-case letters after the tag that name a VR mean
/// explicit VR little endian; otherwise implicit VR little endian. None if the bytes do not start
/// like a data set at all.
fn guess_transfer_syntax(bytes: &[u8]) -> Option<&'static str> {
    let head: [u8; 8] = bytes.get(..8)?.try_into().ok()?;
    let group_le = u16::from_le_bytes([head[0], head[1]]);
    let group_be = u16::from_be_bytes([head[0], head[1]]);
    let vr = std::str::from_utf8(&head[4..6])
        .ok()
        .and_then(|v| v.parse::<dicom_core::VR>().ok());
    // A data set starts with a low group (0008 at the latest for real files).
    if (0x0002..=0x0010).contains(&group_le) {
        Some(if vr.is_some() {
            "1.2.840.10008.1.2.1"
        } else {
            "1.2.840.10008.1.2"
        })
    } else if (0x0002..=0x0010).contains(&group_be) && vr.is_some() {
        Some("1.2.840.10008.1.2.2")
    } else {
        None
    }
}

/// What the length pre-walk refused, as the error a user reads.
fn walk_error(e: crate::lengths::WalkError) -> DicomErrorKind {
    match e {
        crate::lengths::WalkError::Overrun(overrun) => DicomErrorKind::InvalidElement {
            name: "element",
            tag: tag_text(overrun.tag),
            reason: format!(
                "declares {} bytes but only {} remain in the file (truncated or corrupt)",
                overrun.declared, overrun.remaining
            ),
        },
        crate::lengths::WalkError::InflatesTooLarge { limit } => DicomErrorKind::InvalidElement {
            name: "deflated data set",
            tag: "(0002,0010)".into(),
            reason: format!("inflates to more than {limit} bytes (a deflate bomb?)"),
        },
    }
}

/// A bare data set (no preamble, no "DICM", no meta group): read in the guessed native transfer
/// syntax, after the same length pre-walk, and given a meta group from its own SOP UIDs.
fn parse_without_meta(bytes: &[u8], source_name: &str) -> Result<DefaultDicomObject, DicomError> {
    let err = |kind| DicomError::new(source_name, kind);
    let Some(uid) = guess_transfer_syntax(bytes) else {
        return Err(err(DicomErrorKind::NotDicom(
            "no 'DICM' magic at byte 0 or 128, and the bytes do not start like a DICOM data set"
                .into(),
        )));
    };
    if let Err(e) = crate::lengths::check_dataset(bytes, uid) {
        return Err(err(walk_error(e)));
    }
    use dicom_encoding::transfer_syntax::TransferSyntaxIndex;
    let Some(ts) = dicom_transfer_syntax_registry::TransferSyntaxRegistry.get(uid) else {
        return Err(err(DicomErrorKind::NotDicom(format!(
            "transfer syntax {uid} unknown"
        ))));
    };
    let dataset = dicom_object::InMemDicomObject::read_dataset_with_ts(bytes, ts).map_err(|e| {
        err(DicomErrorKind::NotDicom(format!(
            "no meta header; read as {}: {}",
            ts.name(),
            error_chain(&e)
        )))
    })?;
    let uid_of = |tag: Tag| {
        dataset
            .element_opt(tag)
            .ok()
            .flatten()
            .and_then(|e| {
                e.to_str()
                    .ok()
                    .map(|s| s.trim_end_matches(['\0', ' ']).to_string())
            })
            .filter(|s| !s.is_empty())
    };
    // Without a SOP Class UID the object cannot say what it is; Secondary Capture is the neutral
    // guess for an image, and the header check still requires Pixel Data.
    let sop_class =
        uid_of(tags::SOP_CLASS_UID).unwrap_or_else(|| "1.2.840.10008.5.1.4.1.1.7".into());
    let sop_instance = uid_of(tags::SOP_INSTANCE_UID).unwrap_or_else(|| "2.25.0".into());
    dataset
        .with_meta(
            dicom_object::FileMetaTableBuilder::new()
                .transfer_syntax(uid)
                .media_storage_sop_class_uid(sop_class)
                .media_storage_sop_instance_uid(sop_instance),
        )
        .map_err(|e| err(DicomErrorKind::NotDicom(error_chain(&e))))
}

/// Reads and decodes one frame of a DICOM image file.
pub fn read_file(path: &Path, options: &ReadOptions) -> Result<Image, DicomError> {
    let name = path.display().to_string();
    read_bytes(&read_capped(path, &name, options)?, &name, options)
}

/// A file's bytes, refused before reading when it is larger than `options.max_file_bytes`.
pub fn read_capped(path: &Path, name: &str, options: &ReadOptions) -> Result<Vec<u8>, DicomError> {
    let err = |kind| DicomError::new(name, kind);
    let len = std::fs::metadata(path)
        .map_err(|e| err(DicomErrorKind::Io(e)))?
        .len();
    if len > options.max_file_bytes {
        return Err(err(DicomErrorKind::InvalidElement {
            name: "file",
            tag: String::new(),
            reason: format!("{len} bytes exceeds the cap of {}", options.max_file_bytes),
        }));
    }
    std::fs::read(path).map_err(|e| err(DicomErrorKind::Io(e)))
}

/// While alive, dicom-parser on this thread refuses any value longer than `limit` bytes before
/// allocating it (vendor/dicom-parser's patch): a value cannot be longer than the bytes it is
/// read from, so a lying length, even one the length pre-walk misjudges, costs no more memory
/// than the file itself.
struct ValueLengthLimit(usize);

impl ValueLengthLimit {
    fn new(limit: usize) -> Self {
        Self(dicom_parser::stateful::decode::set_value_length_limit(
            limit,
        ))
    }
}

impl Drop for ValueLengthLimit {
    fn drop(&mut self) {
        dicom_parser::stateful::decode::set_value_length_limit(self.0);
    }
}

/// Parses a DICOM stream (with or without the 128-byte preamble) after checking its size and
/// every declared length.
pub(crate) fn parse_object(
    bytes: &[u8],
    source_name: &str,
    options: &ReadOptions,
) -> Result<DefaultDicomObject, DicomError> {
    let (obj, borrowed) = parse_borrowing(bytes, source_name, options, false)?;
    debug_assert!(borrowed.is_none());
    Ok(obj)
}

/// [`parse_object`], and with `borrow_pixels` for a native little-endian file whose top-level
/// Pixel Data has a defined length: the object parsed up to the Pixel Data only, and the pixel
/// bytes borrowed from `bytes` (never copied: dicom-parser would copy them into the element, and
/// zero-fill the buffer first).
fn parse_borrowing<'a>(
    bytes: &'a [u8],
    source_name: &str,
    options: &ReadOptions,
    borrow_pixels: bool,
) -> Result<(DefaultDicomObject, Option<&'a [u8]>), DicomError> {
    let err = |kind| DicomError::new(source_name, kind);
    let _limit = ValueLengthLimit::new(bytes.len());
    if bytes.len() as u64 > options.max_file_bytes {
        return Err(err(DicomErrorKind::InvalidElement {
            name: "file",
            tag: String::new(),
            reason: format!(
                "{} bytes exceeds the cap of {}",
                bytes.len(),
                options.max_file_bytes
            ),
        }));
    }
    let has_preamble = bytes.len() >= 132 && &bytes[128..132] == b"DICM";
    let has_magic = bytes.len() >= 4 && &bytes[..4] == b"DICM";
    if !has_preamble && !has_magic {
        return Ok((parse_without_meta(bytes, source_name)?, None));
    }
    let body = if has_preamble {
        &bytes[132..]
    } else {
        &bytes[4..]
    };
    if let Some(obj) = dataset_in_other_vr(bytes, body, source_name)? {
        return Ok((obj, None));
    }
    let walk =
        crate::lengths::check(body, options.max_file_bytes).map_err(|e| err(walk_error(e)))?;
    if let Some(dataset) = walk.inflated {
        let _inflated_limit = ValueLengthLimit::new(dataset.len());
        // A deflated data set, inflated once by the walk: read from those bytes.
        let magic = bytes.len() - body.len() - 4;
        let meta = dicom_object::FileMetaTable::from_reader(&bytes[magic..])
            .map_err(|e| err(DicomErrorKind::NotDicom(error_chain(&e))))?;
        use dicom_encoding::transfer_syntax::TransferSyntaxIndex;
        let ts = dicom_transfer_syntax_registry::TransferSyntaxRegistry
            .get("1.2.840.10008.1.2.1")
            .ok_or_else(|| {
                err(DicomErrorKind::NotDicom(
                    "explicit VR little endian unknown".into(),
                ))
            })?;
        let obj = dicom_object::InMemDicomObject::read_dataset_with_ts(dataset.as_slice(), ts)
            .map_err(|e| {
                err(DicomErrorKind::NotDicom(format!(
                    "deflated data set: {}",
                    error_chain(&e)
                )))
            })?;
        return Ok((obj.with_exact_meta(meta), None));
    }
    let preamble = if has_preamble {
        ReadPreamble::Always
    } else {
        ReadPreamble::Never
    };
    if borrow_pixels {
        if let Some(span) = walk.pixels {
            let obj = OpenFileOptions::new()
                .read_preamble(preamble)
                .read_until(tags::PIXEL_DATA)
                .from_reader(bytes)
                .map_err(|e| err(DicomErrorKind::NotDicom(error_chain(&e))))?;
            let little = matches!(
                obj.meta().transfer_syntax().trim_end_matches('\0'),
                "1.2.840.10008.1.2" | "1.2.840.10008.1.2.1"
            );
            if let (true, Some(pixels)) = (little, body.get(span.offset..span.offset + span.len)) {
                return Ok((obj, Some(pixels)));
            }
        }
    }
    let obj = OpenFileOptions::new()
        .read_preamble(preamble)
        .from_reader(bytes)
        .map_err(|e| err(DicomErrorKind::NotDicom(error_chain(&e))))?;
    Ok((obj, None))
}

/// A file whose data set is written with implicit VR while its meta header names an explicit VR
/// little endian syntax (or the reverse), as some writers do (pydicom reads such files by looking
/// at the data set, and so does this): the data set read as it is encoded, after the same length
/// pre-walk, and given its own meta header back, so that compressed pixel data is decoded with the
/// named codec. None when the data set is encoded as its meta header says.
fn dataset_in_other_vr(
    bytes: &[u8],
    body: &[u8],
    source_name: &str,
) -> Result<Option<DefaultDicomObject>, DicomError> {
    let err = |kind| DicomError::new(source_name, kind);
    // (0002,0000) UL, length 4: the meta group's length, then the data set.
    if body.len() < 12 || body[..6] != [0x02, 0x00, 0x00, 0x00, b'U', b'L'] {
        return Ok(None);
    }
    let group_length = u32::from_le_bytes([body[8], body[9], body[10], body[11]]) as usize;
    let (Some(meta_group), Some(dataset)) =
        (body.get(..12 + group_length), body.get(12 + group_length..))
    else {
        return Ok(None);
    };
    // The meta group's own lengths are walked before dicom-object reads it (it would allocate
    // what a lying length declares), and it is handed the meta group's bytes only.
    crate::lengths::check(meta_group, 0).map_err(|e| err(walk_error(e)))?;
    let magic = bytes.len() - body.len() - 4;
    let Ok(meta) =
        dicom_object::FileMetaTable::from_reader(&bytes[magic..magic + 4 + meta_group.len()])
    else {
        return Ok(None);
    };
    let named = meta.transfer_syntax().to_string();
    let Some(found) = guess_transfer_syntax(dataset) else {
        return Ok(None);
    };
    use dicom_encoding::transfer_syntax::TransferSyntaxIndex;
    let registry = dicom_transfer_syntax_registry::TransferSyntaxRegistry;
    let Some(named_ts) = registry.get(&named) else {
        return Ok(None);
    };
    let named_implicit = named == "1.2.840.10008.1.2";
    let little = named_ts.endianness() == dicom_encoding::transfer_syntax::Endianness::Little;
    let deflated = named_ts.name().contains("Deflate");
    let mismatch = match found {
        "1.2.840.10008.1.2" => !named_implicit && little && !deflated,
        "1.2.840.10008.1.2.1" => named_implicit,
        _ => false,
    };
    if !mismatch {
        return Ok(None);
    }
    crate::lengths::check_dataset(dataset, found).map_err(|e| err(walk_error(e)))?;
    let Some(found_ts) = registry.get(found) else {
        return Ok(None);
    };
    let obj =
        dicom_object::InMemDicomObject::read_dataset_with_ts(dataset, found_ts).map_err(|e| {
            err(DicomErrorKind::NotDicom(format!(
                "the data set is not encoded as its meta header's {} says; read as {}: {}",
                named_ts.name(),
                found_ts.name(),
                error_chain(&e)
            )))
        })?;
    Ok(Some(obj.with_exact_meta(meta)))
}

/// Reads and decodes one frame of a DICOM image from memory; `source_name` names it in errors.
/// Accepts streams with or without the 128-byte preamble.
pub fn read_bytes(
    bytes: &[u8],
    source_name: &str,
    options: &ReadOptions,
) -> Result<Image, DicomError> {
    let (obj, pixels) = parse_borrowing(bytes, source_name, options, true)?;
    decode(&obj, pixels, source_name, options)
}

/// Reads and checks a DICOM image's metadata without decoding its pixels.
pub fn read_meta_bytes(
    bytes: &[u8],
    source_name: &str,
    options: &ReadOptions,
) -> Result<ImageMeta, DicomError> {
    let (obj, pixels) = parse_borrowing(bytes, source_name, options, true)?;
    header(&obj, pixels, source_name, options)
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let next = s.to_string();
        if !text.contains(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        source = s.source();
    }
    text
}

fn tag_text(tag: Tag) -> String {
    format!("({:04X},{:04X})", tag.group(), tag.element())
}

struct Elements<'a> {
    obj: &'a DefaultDicomObject,
    source_name: &'a str,
}

impl Elements<'_> {
    fn err(&self, kind: DicomErrorKind) -> DicomError {
        DicomError::new(self.source_name, kind)
    }

    fn string(&self, tag: Tag) -> Option<String> {
        let element = self.obj.element_opt(tag).ok().flatten()?;
        let text = element.to_str().ok()?;
        let trimmed = text.trim_matches(|c: char| c == '\0' || c.is_whitespace());
        (!trimmed.is_empty()).then(|| trimmed.to_string())
    }

    fn required_string(&self, name: &'static str, tag: Tag) -> Result<String, DicomError> {
        self.string(tag).ok_or_else(|| {
            self.err(DicomErrorKind::MissingElement {
                name,
                tag: tag_text(tag),
            })
        })
    }

    /// The element, unless it is absent or holds only padding.
    fn present(&self, tag: Tag) -> Option<&dicom_object::mem::InMemElement> {
        let element = self.obj.element_opt(tag).ok().flatten()?;
        let blank = element
            .to_str()
            .map(|s| {
                s.trim_matches(|c: char| c == '\0' || c.is_whitespace())
                    .is_empty()
            })
            .unwrap_or(false);
        (!blank).then_some(element)
    }

    fn floats(&self, name: &'static str, tag: Tag) -> Result<Option<Vec<f64>>, DicomError> {
        let Some(element) = self.present(tag) else {
            return Ok(None);
        };
        let invalid = |reason: String| {
            self.err(DicomErrorKind::InvalidElement {
                name,
                tag: tag_text(tag),
                reason,
            })
        };
        if element.vr() == dicom_core::VR::UN {
            // A decimal string written with an unknown VR (PS3.5 6.2.2): its bytes are the text.
            let bytes = element
                .value()
                .to_bytes()
                .map_err(|e| invalid(e.to_string()))?;
            return String::from_utf8_lossy(&bytes)
                .trim_matches(|c: char| c == '\0' || c.is_whitespace())
                .split('\\')
                .map(|v| {
                    v.trim().parse::<f64>().map_err(|_| {
                        invalid(format!("{v:?} (encoded as UN) is not a decimal number"))
                    })
                })
                .collect::<Result<Vec<f64>, _>>()
                .map(Some);
        }
        element
            .to_multi_float64()
            .map(Some)
            .map_err(|e| invalid(e.to_string()))
    }

    fn float(&self, name: &'static str, tag: Tag) -> Result<Option<f64>, DicomError> {
        Ok(self.floats(name, tag)?.and_then(|v| v.first().copied()))
    }

    fn uint(&self, name: &'static str, tag: Tag) -> Result<Option<u32>, DicomError> {
        let Some(element) = self.present(tag) else {
            return Ok(None);
        };
        if element.vr() == dicom_core::VR::UN {
            // Its bytes would be read as numbers one by one: refused rather than misread.
            return Err(self.err(DicomErrorKind::InvalidElement {
                name,
                tag: tag_text(tag),
                reason: "encoded with an unknown VR (UN); its binary value is not read".into(),
            }));
        }
        element.to_int::<u32>().map(Some).map_err(|e| {
            self.err(DicomErrorKind::InvalidElement {
                name,
                tag: tag_text(tag),
                reason: e.to_string(),
            })
        })
    }

    fn required_uint(&self, name: &'static str, tag: Tag) -> Result<u32, DicomError> {
        self.uint(name, tag)?.ok_or_else(|| {
            self.err(DicomErrorKind::MissingElement {
                name,
                tag: tag_text(tag),
            })
        })
    }
}

/// Reads and checks everything but the pixels.
fn header(
    obj: &DefaultDicomObject,
    borrowed: Option<&[u8]>,
    source_name: &str,
    options: &ReadOptions,
) -> Result<ImageMeta, DicomError> {
    let el = Elements { obj, source_name };
    let sop_class_uid = el.string(tags::SOP_CLASS_UID).unwrap_or_else(|| {
        obj.meta()
            .media_storage_sop_class_uid()
            .trim_end_matches('\0')
            .to_string()
    });
    if borrowed.is_none() && obj.element_opt(tags::PIXEL_DATA).ok().flatten().is_none() {
        return Err(el.err(DicomErrorKind::NotAnImage { sop_class_uid }));
    }
    let transfer_syntax_uid = obj
        .meta()
        .transfer_syntax()
        .trim_end_matches('\0')
        .to_string();
    let rows = el.required_uint("Rows", tags::ROWS)?;
    let columns = el.required_uint("Columns", tags::COLUMNS)?;
    let frames = el
        .uint("Number of Frames", tags::NUMBER_OF_FRAMES)?
        .unwrap_or(1);
    let samples = el
        .uint("Samples per Pixel", tags::SAMPLES_PER_PIXEL)?
        .unwrap_or(1);
    let bits_allocated = el.required_uint("Bits Allocated", tags::BITS_ALLOCATED)?;
    let bits_stored = el
        .uint("Bits Stored", tags::BITS_STORED)?
        .unwrap_or(bits_allocated);
    let pixel_representation = el
        .uint("Pixel Representation", tags::PIXEL_REPRESENTATION)?
        .unwrap_or(0);
    for (name, tag, value) in [
        ("Rows", tags::ROWS, rows),
        ("Columns", tags::COLUMNS, columns),
        ("Number of Frames", tags::NUMBER_OF_FRAMES, frames),
    ] {
        if value == 0 {
            return Err(el.err(DicomErrorKind::InvalidElement {
                name,
                tag: tag_text(tag),
                reason: "must be at least 1".into(),
            }));
        }
    }
    if !matches!(bits_allocated, 1 | 8 | 16 | 32)
        || bits_stored == 0
        || bits_stored > bits_allocated
    {
        return Err(el.err(DicomErrorKind::InvalidElement {
            name: "Bits Allocated",
            tag: tag_text(tags::BITS_ALLOCATED),
            reason: format!("bits allocated {bits_allocated} with bits stored {bits_stored}"),
        }));
    }
    let total = rows as u64 * columns as u64 * frames as u64 * samples as u64;
    if total > options.max_pixels {
        return Err(el.err(DicomErrorKind::TooLarge {
            rows: rows as u64,
            columns: columns as u64,
            frames: frames as u64,
            cap: options.max_pixels,
        }));
    }
    if options.frame >= frames {
        return Err(el.err(DicomErrorKind::InvalidElement {
            name: "Number of Frames",
            tag: tag_text(tags::NUMBER_OF_FRAMES),
            reason: format!("frame {} requested, the image has {frames}", options.frame),
        }));
    }
    let photometric = el.required_string(
        "Photometric Interpretation",
        tags::PHOTOMETRIC_INTERPRETATION,
    )?;
    let colour = matches!(
        photometric.as_str(),
        "RGB" | "YBR_FULL" | "YBR_FULL_422" | "YBR_RCT" | "YBR_ICT"
    );
    let palette = photometric == "PALETTE COLOR";
    if !is_encapsulated(obj) && matches!(photometric.as_str(), "YBR_RCT" | "YBR_ICT") {
        return Err(el.err(DicomErrorKind::InvalidElement {
            name: "Photometric Interpretation",
            tag: tag_text(tags::PHOTOMETRIC_INTERPRETATION),
            reason: format!("{photometric} is defined only for JPEG 2000 pixel data, and this Pixel Data is native (uncompressed)"),
        }));
    }
    if !is_encapsulated(obj) && photometric == "YBR_FULL_422" && !columns.is_multiple_of(2) {
        return Err(el.err(DicomErrorKind::InvalidElement {
            name: "Columns",
            tag: tag_text(tags::COLUMNS),
            reason: format!(
                "{columns} columns: YBR_FULL_422 pairs pixels, so the count must be even"
            ),
        }));
    }
    if transfer_syntax_uid == "1.2.840.10008.1.2.5" {
        check_rle(obj, options.frame, rows, columns, samples, bits_allocated).map_err(
            |reason| {
                el.err(DicomErrorKind::InvalidElement {
                    name: "Pixel Data",
                    tag: tag_text(tags::PIXEL_DATA),
                    reason,
                })
            },
        )?;
    }
    if let Some(reason) = codestream_mismatch(obj, rows, columns, samples, bits_allocated) {
        return Err(el.err(DicomErrorKind::InvalidElement {
            name: "Pixel Data",
            tag: tag_text(tags::PIXEL_DATA),
            reason,
        }));
    }
    if let Some(signed) = j2k_signedness(obj) {
        if signed != (pixel_representation == 1) {
            return Err(el.err(DicomErrorKind::InvalidElement {
                name: "Pixel Representation",
                tag: tag_text(tags::PIXEL_REPRESENTATION),
                reason: format!(
                    "{pixel_representation} ({}), but the JPEG 2000 codestream says {}: which one holds is ambiguous, so the file is not decoded",
                    if pixel_representation == 1 { "signed" } else { "unsigned" },
                    if signed { "signed" } else { "unsigned" }
                ),
            }));
        }
    }
    if colour
        && !cfg!(feature = "codecs")
        && jpeg_colour_override(obj, &photometric) == Some(JpegColour::AsStored)
    {
        return Err(el.err(DicomErrorKind::UnsupportedPhotometric(format!(
            "{photometric} JPEG stored without the YCbCr transform (components named R, G, B, or no JFIF/Adobe marker): the JPEG decoder would convert it as YCbCr"
        ))));
    }
    if !(photometric == "MONOCHROME1" || photometric == "MONOCHROME2" || colour || palette) {
        return Err(el.err(DicomErrorKind::UnsupportedPhotometric(photometric)));
    }
    if samples != if colour { 3 } else { 1 } {
        return Err(el.err(DicomErrorKind::InvalidElement {
            name: "Samples per Pixel",
            tag: tag_text(tags::SAMPLES_PER_PIXEL),
            reason: format!("{samples} samples for {photometric}"),
        }));
    }
    use dicom_encoding::transfer_syntax::TransferSyntaxIndex;
    let registry = dicom_transfer_syntax_registry::TransferSyntaxRegistry;
    let Some(ts) = registry.get(&transfer_syntax_uid) else {
        return Err(el.err(DicomErrorKind::UnsupportedTransferSyntax {
            name: "unknown transfer syntax".into(),
            uid: transfer_syntax_uid,
        }));
    };
    let unsupported = || {
        el.err(DicomErrorKind::UnsupportedTransferSyntax {
            name: ts.name().to_string(),
            uid: transfer_syntax_uid.clone(),
        })
    };
    if ts.is_unsupported_pixel_encapsulation() {
        return Err(unsupported());
    }
    // The Pixel Data's form must be the one its transfer syntax prescribes (PS3.5 A.4): the
    // codecs read a native value as a compressed stream and the reverse (the JPEG adapter then
    // overran its buffer; found by the fuzz campaign).
    let fragmented = is_encapsulated(obj);
    if ts.is_encapsulated_pixel_data() != fragmented {
        return Err(el.err(DicomErrorKind::InvalidElement {
            name: "Pixel Data",
            tag: tag_text(tags::PIXEL_DATA),
            reason: format!(
                "{} under {}, which prescribes {} pixel data",
                if fragmented {
                    "encapsulated (fragments)"
                } else {
                    "a native value"
                },
                ts.name(),
                if fragmented { "native" } else { "encapsulated" }
            ),
        }));
    }
    if !ts.can_decode_all() {
        return Err(unsupported());
    }
    if !ts.is_encapsulated_pixel_data() {
        // Native pixel data: its length must cover every frame before we slice it. Measured,
        // not copied (`to_bytes` would copy OW data to count it).
        let have = match borrowed {
            Some(b) => b.len() as u64,
            None => {
                let element = obj
                    .element(tags::PIXEL_DATA)
                    .map_err(|e| el.err(DicomErrorKind::Decode(e.to_string())))?;
                match element.value() {
                    dicom_core::value::Value::Primitive(p) => p.calculate_byte_len() as u64,
                    other => other.to_bytes().map(|b| b.len() as u64).unwrap_or(0),
                }
            }
        };
        let samples_total =
            crate::native::samples_per_frame(rows, columns, samples, &photometric) * frames as u64;
        let need = if bits_allocated == 1 {
            samples_total.div_ceil(8)
        } else {
            samples_total * (bits_allocated as u64 / 8)
        };
        if have < need {
            return Err(el.err(DicomErrorKind::InvalidElement {
                name: "Pixel Data",
                tag: tag_text(tags::PIXEL_DATA),
                reason: format!(
                    "{have} bytes, but Rows x Columns x Frames x Bits Allocated needs {need}"
                ),
            }));
        }
    }
    let spacing = match el.floats("Pixel Spacing", tags::PIXEL_SPACING)? {
        Some(v) => Some(v),
        None => el.floats("Imager Pixel Spacing", tags::IMAGER_PIXEL_SPACING)?,
    };
    let pixel_spacing_mm = spacing.and_then(|v| match v.as_slice() {
        [r, c, ..] if *r > 0.0 && *c > 0.0 => Some([*r, *c]),
        _ => None,
    });
    let voi_function = match el.string(tags::VOILUT_FUNCTION).as_deref() {
        None | Some("") | Some("LINEAR") => VoiFunction::Linear,
        Some("LINEAR_EXACT") => VoiFunction::LinearExact,
        Some("SIGMOID") => VoiFunction::Sigmoid,
        Some(other) => {
            return Err(el.err(DicomErrorKind::InvalidElement {
                name: "VOI LUT Function",
                tag: tag_text(tags::VOILUT_FUNCTION),
                reason: format!("{other:?} is not LINEAR, LINEAR_EXACT or SIGMOID"),
            }))
        }
    };
    let window = match (
        el.float("Window Center", tags::WINDOW_CENTER)?,
        el.float("Window Width", tags::WINDOW_WIDTH)?,
    ) {
        // LINEAR needs a width of at least 1 (C.11.2.1.2); the others any positive width.
        (Some(center), Some(width))
            if center.is_finite()
                && width.is_finite()
                && (width >= 1.0 || (voi_function != VoiFunction::Linear && width > 0.0)) =>
        {
            Some(VoiWindow { center, width })
        }
        _ => None,
    };
    let (rescale_slope, rescale_intercept) = rescale(obj, &el, options.frame)?;
    let voi_lut = voi_lut_sequence(obj, &el)?;
    let modality_lut = lut_sequence(
        obj,
        &el,
        tags::MODALITY_LUT_SEQUENCE,
        "Modality LUT Sequence",
    )?;
    let meta = ImageMeta {
        sop_instance_uid: el.string(tags::SOP_INSTANCE_UID).unwrap_or_default(),
        study_instance_uid: el.string(tags::STUDY_INSTANCE_UID).unwrap_or_default(),
        series_instance_uid: el.string(tags::SERIES_INSTANCE_UID).unwrap_or_default(),
        sop_class_uid,
        transfer_syntax_uid,
        modality: el.string(tags::MODALITY),
        rows,
        columns,
        frames,
        bits_allocated: bits_allocated as u16,
        bits_stored: bits_stored as u16,
        pixel_representation: pixel_representation as u16,
        samples_per_pixel: samples as u16,
        photometric_interpretation: photometric,
        rescale_slope,
        rescale_intercept,
        pixel_spacing_mm,
        view_position: el.string(tags::VIEW_POSITION),
        body_part_examined: el.string(tags::BODY_PART_EXAMINED),
        laterality: el
            .string(tags::IMAGE_LATERALITY)
            .or_else(|| el.string(tags::LATERALITY)),
        patient_orientation: el.string(tags::PATIENT_ORIENTATION),
        window,
        voi_function,
        voi_lut,
        modality_lut,
    };
    Ok(meta)
}

/// The rescale slope and intercept of one frame: the top-level attributes, else the frame's item of
/// the Per-Frame Functional Groups Sequence, else the Shared Functional Groups Sequence (enhanced
/// multi-frame objects keep them in a Pixel Value Transformation Sequence there, C.7.6.16.2.9).
fn rescale(obj: &DefaultDicomObject, el: &Elements, frame: u32) -> Result<(f64, f64), DicomError> {
    let slope = el.float("Rescale Slope", tags::RESCALE_SLOPE)?;
    let intercept = el.float("Rescale Intercept", tags::RESCALE_INTERCEPT)?;
    if slope.is_some() || intercept.is_some() {
        return Ok((slope.unwrap_or(1.0), intercept.unwrap_or(0.0)));
    }
    let in_group = |group: Option<&dicom_object::InMemDicomObject>| -> Option<(f64, f64)> {
        let transform = group?
            .element_opt(tags::PIXEL_VALUE_TRANSFORMATION_SEQUENCE)
            .ok()
            .flatten()?
            .items()?
            .first()?;
        let number = |tag| {
            transform
                .element_opt(tag)
                .ok()
                .flatten()
                .and_then(|e| e.to_float64().ok())
                .filter(|v| v.is_finite())
        };
        let (s, i) = (number(tags::RESCALE_SLOPE), number(tags::RESCALE_INTERCEPT));
        (s.is_some() || i.is_some()).then(|| (s.unwrap_or(1.0), i.unwrap_or(0.0)))
    };
    let items = |tag| obj.element_opt(tag).ok().flatten().and_then(|e| e.items());
    let per_frame = items(tags::PER_FRAME_FUNCTIONAL_GROUPS_SEQUENCE)
        .and_then(|items| in_group(items.get(frame as usize)));
    let shared =
        || items(tags::SHARED_FUNCTIONAL_GROUPS_SEQUENCE).and_then(|items| in_group(items.first()));
    Ok(per_frame.or_else(shared).unwrap_or((1.0, 0.0)))
}

/// The first item of the VOI LUT Sequence, checked: descriptor (entries, first mapped value,
/// bits) against the data's length. 0 entries means 65536 (C.11.2.1.1).
fn voi_lut_sequence(obj: &DefaultDicomObject, el: &Elements) -> Result<Option<VoiLut>, DicomError> {
    lut_sequence(obj, el, tags::VOILUT_SEQUENCE, "VOI LUT Sequence")
}

/// The first item of a LUT sequence (VOI or Modality), checked.
fn lut_sequence(
    obj: &DefaultDicomObject,
    el: &Elements,
    tag: Tag,
    name: &'static str,
) -> Result<Option<VoiLut>, DicomError> {
    let Some(seq) = obj.element_opt(tag).ok().flatten() else {
        return Ok(None);
    };
    let Some(item) = seq.items().and_then(|items| items.first()) else {
        return Ok(None);
    };
    let invalid = |reason: String| {
        el.err(DicomErrorKind::InvalidElement {
            name,
            tag: tag_text(tag),
            reason,
        })
    };
    let descriptor: Vec<i64> = item
        .element(tags::LUT_DESCRIPTOR)
        .ok()
        .and_then(|e| e.value().to_multi_int::<i64>().ok())
        .ok_or_else(|| invalid("no readable LUT Descriptor".into()))?;
    let [entries, first, bits] = descriptor[..] else {
        return Err(invalid(format!(
            "LUT Descriptor has {} values, want 3",
            descriptor.len()
        )));
    };
    let entries = if entries == 0 {
        65536
    } else {
        entries as usize
    };
    // The first mapped value is US or SS by the image's pixel representation: a US value above
    // 32767 on signed data is negative.
    let first = if first > 32767
        && el.uint("Pixel Representation", tags::PIXEL_REPRESENTATION)? == Some(1)
    {
        first - 65536
    } else {
        first
    };
    if !(1..=16).contains(&bits) {
        return Err(invalid(format!("LUT Descriptor bits {bits}, want 1..=16")));
    }
    let data: Vec<u16> = item
        .element(tags::LUT_DATA)
        .ok()
        .and_then(|e| e.value().to_multi_int::<u16>().ok())
        .ok_or_else(|| invalid("no readable LUT Data".into()))?;
    if data.len() < entries {
        return Err(invalid(format!(
            "LUT Data has {} entries, the descriptor says {entries}",
            data.len()
        )));
    }
    Ok(Some(VoiLut {
        first_mapped: first,
        bits: bits as u16,
        data: data[..entries].to_vec(),
    }))
}

/// A single-frame JPEG-LS image whose stream carries one 0x00 byte between the entropy-coded data
/// and EOI (`.. 00 FF D9`, as NEMA's WG-04 JPEG-LS samples do; CharLS 2.3 and later refuse it,
/// team-charls/charls#365 and #437, while CharLS 2.2, DCMTK, GDCM and pydicom's decoder read it):
/// a copy of the object with that byte removed, to retry with. None for any other image.
fn jpegls_without_stray_zero(
    obj: &DefaultDicomObject,
    meta: &ImageMeta,
) -> Option<DefaultDicomObject> {
    if !matches!(
        meta.transfer_syntax_uid.as_str(),
        "1.2.840.10008.1.2.4.80" | "1.2.840.10008.1.2.4.81"
    ) || meta.frames != 1
    {
        return None;
    }
    let fragments = obj
        .element_opt(tags::PIXEL_DATA)
        .ok()
        .flatten()?
        .fragments()?;
    let mut stream: Vec<u8> = fragments.iter().flat_map(|f| f.iter().copied()).collect();
    // Fragments are padded to an even length: a 0x00 may follow EOI.
    let end = stream.windows(2).rposition(|w| w == [0xFF, 0xD9])?;
    if end == 0 || stream[end - 1] != 0x00 {
        return None;
    }
    stream.remove(end - 1);
    let mut copy = obj.clone();
    copy.put(dicom_core::DataElement::new(
        tags::PIXEL_DATA,
        dicom_core::VR::OB,
        dicom_core::value::Value::PixelSequence(dicom_core::value::PixelFragmentSequence::new(
            Vec::<u32>::new(),
            vec![stream],
        )),
    ));
    Some(copy)
}

/// Whether the Pixel Data is encapsulated (fragments).
fn is_encapsulated(obj: &DefaultDicomObject) -> bool {
    obj.element_opt(tags::PIXEL_DATA)
        .ok()
        .flatten()
        .is_some_and(|e| e.fragments().is_some())
}

/// The first fragment of encapsulated Pixel Data (borrowed, not copied).
fn first_fragment(obj: &DefaultDicomObject) -> Option<&[u8]> {
    obj.element_opt(tags::PIXEL_DATA)
        .ok()
        .flatten()
        .and_then(|e| e.fragments())
        .and_then(|f| f.first())
        .map(|f| f.as_slice())
}

/// How a colour JPEG frame's components are to be read, when jpeg-decoder on its own would read
/// them otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum JpegColour {
    /// Stored as R, G, B: no transform.
    AsStored,
}

/// A colour JPEG frame whose colour space jpeg-decoder would guess differently from the other
/// readers (libjpeg, GDCM, pydicom): three components identified as 'R', 'G', 'B' (libjpeg's
/// convention), or, for Photometric Interpretation RGB, neither a JFIF (APP0) nor an Adobe (APP14)
/// marker and component ids other than JFIF's 1, 2, 3 (the DICOM attribute is then the only
/// statement of the colour space; an Adobe marker too short to hold its transform flag counts as
/// none, jpeg-decoder ignores it too): stored as they are, as pydicom and GDCM read them. None
/// when jpeg-decoder's own reading is right.
fn jpeg_colour_override(obj: &DefaultDicomObject, photometric: &str) -> Option<JpegColour> {
    let b = first_fragment(obj)?;
    let (mut jfif, mut adobe) = (false, false);
    let mut i = 0;
    while i + 1 < b.len() {
        if b[i] != 0xFF {
            i += 1;
            continue;
        }
        match b[i + 1] {
            0xE0 if b.get(i + 4..i + 8) == Some(b"JFIF") => jfif = true,
            0xEE if b.get(i + 4..i + 9) == Some(b"Adobe") => {
                // Length(2) "Adobe"(5) version(2) flags0(2) flags1(2) transform(1).
                let length = b
                    .get(i + 2..i + 4)
                    .map(|l| u16::from_be_bytes([l[0], l[1]]))
                    .unwrap_or(0);
                adobe = length >= 12 + 2;
            }
            0xC0..=0xC2 => {
                // SOF: length(2) precision(1) height(2) width(2) components(1), then 3 bytes each.
                let start = i + 2;
                if b.get(start + 7) != Some(&3) {
                    return None;
                }
                let ids: Vec<u8> = (0..3)
                    .filter_map(|k| b.get(start + 8 + 3 * k).copied())
                    .collect();
                let as_stored = ids == [b'R', b'G', b'B']
                    || (photometric == "RGB" && !jfif && !adobe && ids != [1, 2, 3]);
                return as_stored.then_some(JpegColour::AsStored);
            }
            0xDA => return None,
            _ => {}
        }
        i += 1;
    }
    None
}

/// A colour JPEG frame decoded with jpeg-decoder told which colour space the components are in
/// ([`jpeg_colour_override`]): R, G, B samples.
#[cfg(feature = "codecs")]
fn jpeg_colour_frame(
    obj: &DefaultDicomObject,
    meta: &ImageMeta,
    frame: u32,
    colour: JpegColour,
) -> Result<Vec<i64>, String> {
    let fragments = obj
        .element_opt(tags::PIXEL_DATA)
        .ok()
        .flatten()
        .and_then(|e| e.fragments())
        .ok_or("JPEG pixel data is not encapsulated")?;
    let data = jpeg_frame_bytes(fragments, meta, frame).ok_or(
        "a multi-frame JPEG with fragments spanning frames, stored without the colour transform, is not read",
    )?;
    let mut decoder = jpeg_decoder::Decoder::new(data.as_slice());
    // "RGB" copies the components as they are (jpeg-decoder 0.3's "None" keeps only one).
    decoder.set_color_transform(match colour {
        JpegColour::AsStored => jpeg_decoder::ColorTransform::RGB,
    });
    let (rows, columns) = (meta.rows as usize, meta.columns as usize);
    decoder.set_max_decoding_buffer_size(rows * columns * 3);
    let pixels = decoder
        .decode()
        .map_err(|e| format!("JPEG decoder failure: {e}"))?;
    let info = decoder
        .info()
        .ok_or("JPEG decoder gave no frame information")?;
    if info.width as usize != columns
        || info.height as usize != rows
        || info.pixel_format != jpeg_decoder::PixelFormat::RGB24
    {
        return Err(format!(
            "the JPEG stream is {} x {} {:?}, the data set says {rows} x {columns} colour",
            info.height, info.width, info.pixel_format
        ));
    }
    Ok(pixels.into_iter().map(i64::from).collect())
}

/// The bytes of JPEG frame `frame`: every fragment of a single-frame image, or the frame's own
/// fragment when there is one fragment a frame. None when fragments span frames.
#[cfg(feature = "codecs")]
fn jpeg_frame_bytes(
    fragments: &[dicom_core::value::InMemFragment],
    meta: &ImageMeta,
    frame: u32,
) -> Option<Vec<u8>> {
    if meta.frames == 1 {
        Some(fragments.iter().flat_map(|f| f.iter().copied()).collect())
    } else if fragments.len() == meta.frames as usize {
        Some(
            fragments
                .get(frame as usize)
                .map(|f| f.to_vec())
                .unwrap_or_default(),
        )
    } else {
        None
    }
}

/// The sample precision of a DCT JPEG frame (SOF0-SOF2: baseline, extended, progressive) when it
/// is over 8 bits (JPEG Extended's 12-bit process 4), which jpeg-decoder cannot decode. None for
/// 8-bit DCT, lossless JPEG (SOF3, which jpeg-decoder reads at any precision) and other syntaxes.
fn jpeg_dct_precision_over_8(obj: &DefaultDicomObject) -> Option<u32> {
    let ts = obj.meta().transfer_syntax().trim_end_matches('\0');
    if !matches!(
        ts,
        "1.2.840.10008.1.2.4.50" | "1.2.840.10008.1.2.4.51" | "1.2.840.10008.1.2.4.55"
    ) {
        return None;
    }
    let b = first_fragment(obj)?;
    let at = jpeg_frame_header(b)?;
    let marker = *b.get(at.checked_sub(3)?)?;
    let precision = *b.get(at)? as u32;
    (matches!(marker, 0xC0..=0xC2) && precision > 8).then_some(precision)
}

/// A grey JPEG frame of 9 to 12 bits per sample, decoded by libjpeg-turbo (asg-jpeg12, the
/// `jpeg12` feature) into stored values, then read as native 16-bit data is.
#[cfg(feature = "jpeg12")]
fn decode_jpeg12(
    obj: &DefaultDicomObject,
    precision: u32,
    meta: ImageMeta,
    el: &Elements,
    options: &ReadOptions,
) -> Result<Image, DicomError> {
    if meta.samples_per_pixel != 1 || meta.bits_allocated != 16 {
        return Err(el.err(DicomErrorKind::Decode(format!(
            "a {precision}-bit JPEG with {} samples per pixel and {} bits allocated: only grey 12-bit JPEG in 16 bits allocated is read",
            meta.samples_per_pixel, meta.bits_allocated
        ))));
    }
    let fragments = obj
        .element_opt(tags::PIXEL_DATA)
        .ok()
        .flatten()
        .and_then(|e| e.fragments())
        .ok_or_else(|| {
            el.err(DicomErrorKind::Decode(
                "JPEG pixel data is not encapsulated".into(),
            ))
        })?;
    let data = jpeg_frame_bytes(fragments, &meta, options.frame).ok_or_else(|| {
        el.err(DicomErrorKind::Decode(
            "a multi-frame 12-bit JPEG with fragments spanning frames is not read".into(),
        ))
    })?;
    let cap = (meta.rows as u64 * meta.columns as u64).min(options.max_pixels);
    let decoded = asg_jpeg12::decode_grey12(&data, cap)
        .map_err(|e| el.err(DicomErrorKind::Decode(format!("12-bit JPEG: {e}"))))?;
    if (decoded.height, decoded.width) != (meta.rows, meta.columns) {
        return Err(el.err(DicomErrorKind::Decode(format!(
            "the 12-bit JPEG stream decoded to {} x {}, the data set says {} x {}",
            decoded.height, decoded.width, meta.rows, meta.columns
        ))));
    }
    let frame = crate::native::NativeFrame::from_words(
        &decoded.samples,
        meta.bits_stored as u32,
        meta.pixel_representation == 1,
    );
    decode_native(&frame, false, meta, el, options)
}

/// Without the `jpeg12` feature (the browser build): refused with what would read it.
#[cfg(not(feature = "jpeg12"))]
fn decode_jpeg12(
    _obj: &DefaultDicomObject,
    precision: u32,
    meta: ImageMeta,
    el: &Elements,
    _options: &ReadOptions,
) -> Result<Image, DicomError> {
    Err(el.err(DicomErrorKind::Decode(format!(
        "{precision}-bit lossy JPEG ({}) is decoded by the native build only (the jpeg12 codec, libjpeg-turbo); convert it with dcmdjpeg or gdcmconv --raw",
        meta.transfer_syntax_uid
    ))))
}

/// Validates an RLE Lossless frame before dicom-rs decodes it (its decoder indexes past short
/// segments and panics; upstream issue): the 64-byte header's segment count and offsets, and that
/// every segment's PackBits runs produce at least Rows x Columns bytes. Reads, never allocates.
fn check_rle(
    obj: &DefaultDicomObject,
    frame: u32,
    rows: u32,
    columns: u32,
    samples: u32,
    bits_allocated: u32,
) -> Result<(), String> {
    let element = obj.element(tags::PIXEL_DATA).map_err(|e| e.to_string())?;
    let Some(fragments) = element.fragments() else {
        return Err("RLE Lossless pixel data is not encapsulated".into());
    };
    let Some(f) = fragments.get(frame as usize) else {
        return Err(format!("no RLE fragment for frame {frame}"));
    };
    let f: &[u8] = f;
    if f.len() < 64 {
        return Err(format!(
            "RLE fragment of {} bytes, shorter than its 64-byte header",
            f.len()
        ));
    }
    let u32_at = |p: usize| u32::from_le_bytes([f[p], f[p + 1], f[p + 2], f[p + 3]]) as usize;
    let want_segments = (samples * (bits_allocated / 8).max(1)) as usize;
    let segments = u32_at(0);
    if segments != want_segments || segments > 15 {
        return Err(format!(
            "RLE header declares {segments} segments, {samples} samples of {bits_allocated} bits need {want_segments}"
        ));
    }
    let need = rows as usize * columns as usize;
    for k in 0..segments {
        let start = u32_at(4 + 4 * k);
        let end = if k + 1 < segments {
            u32_at(8 + 4 * k)
        } else {
            f.len()
        };
        if start < 64 || start > end || end > f.len() {
            return Err(format!(
                "RLE segment {k} spans bytes {start}..{end} of a {}-byte fragment",
                f.len()
            ));
        }
        // PackBits: n in 0..=127 copies n + 1 bytes; n in 129..=255 repeats the next byte 257 - n
        // times; 128 is a no-op.
        let seg = &f[start..end];
        let (mut i, mut out) = (0usize, 0usize);
        while i < seg.len() && out < need {
            let n = seg[i] as usize;
            if n < 128 {
                // A literal run cut short by the segment's end yields what is there.
                out += (n + 1).min(seg.len() - i - 1);
                i += n + 2;
            } else if n > 128 {
                if i + 1 < seg.len() {
                    out += 257 - n;
                }
                i += 2;
            } else {
                i += 1;
            }
        }
        if out < need {
            return Err(format!(
                "RLE segment {k} decodes to {out} bytes, Rows x Columns needs {need}"
            ));
        }
    }
    Ok(())
}

/// What a compressed frame's own header declares.
struct Codestream {
    format: &'static str,
    rows: u32,
    columns: u32,
    /// Components and sample precision (JPEG and JPEG-LS only).
    components: Option<u32>,
    precision: Option<u32>,
}

/// [`codestream_size`] with components and precision.
fn codestream_header(b: &[u8]) -> Option<Codestream> {
    let (format, rows, columns) = codestream_size(b)?;
    let mut out = Codestream {
        format,
        rows,
        columns,
        components: None,
        precision: None,
    };
    if format != "JPEG 2000" {
        if let Some(at) = jpeg_frame_header(b) {
            out.precision = b.get(at).map(|&p| p as u32);
            out.components = b.get(at + 5).map(|&n| n as u32);
        }
    }
    Some(out)
}

/// Where a JPEG or JPEG-LS stream's start-of-frame parameters begin (the precision byte), by
/// walking the marker segments.
fn jpeg_frame_header(b: &[u8]) -> Option<usize> {
    if !b.starts_with(&[0xFF, 0xD8]) {
        return None;
    }
    let mut i = 2;
    loop {
        while b.get(i) == Some(&0xFF) && b.get(i + 1) == Some(&0xFF) {
            i += 1;
        }
        if b.get(i) != Some(&0xFF) {
            return None;
        }
        let marker = *b.get(i + 1)?;
        if matches!(marker, 0x01 | 0xD0..=0xD7) {
            i += 2;
            continue;
        }
        if matches!(marker, 0xD9 | 0xDA) {
            return None;
        }
        let length = u16::from_be_bytes([*b.get(i + 2)?, *b.get(i + 3)?]) as usize;
        if matches!(marker, 0xC0..=0xC3 | 0xC5..=0xC7 | 0xC9..=0xCB | 0xCD..=0xCF | 0xF7) {
            return Some(i + 4);
        }
        i += 2 + length;
    }
}

/// The image size a compressed frame's own header declares: a JPEG or JPEG-LS start-of-frame
/// (found by walking the marker segments, never by searching the entropy-coded data) or a JPEG
/// 2000 SIZ marker, as (format, rows, columns). None when the fragment starts with neither.
fn codestream_size(b: &[u8]) -> Option<(&'static str, u32, u32)> {
    if b.starts_with(&[0xFF, 0xD8]) {
        // No frame header before the scan or the end: reported as 0 x 0 (a mismatch).
        let Some(at) = jpeg_frame_header(b) else {
            return Some(("JPEG", 0, 0));
        };
        let rows = u16::from_be_bytes([*b.get(at + 1)?, *b.get(at + 2)?]) as u32;
        let columns = u16::from_be_bytes([*b.get(at + 3)?, *b.get(at + 4)?]) as u32;
        // SOF55 (0xF7) is JPEG-LS's frame header.
        let format = if b.get(at - 3) == Some(&0xF7) {
            "JPEG-LS"
        } else {
            "JPEG"
        };
        return Some((format, rows, columns));
    }
    // A raw codestream (SOC then SIZ), or one inside a JP2 file's boxes (signature box first).
    const JP2: [u8; 8] = [0, 0, 0, 0x0C, b'j', b'P', b' ', b' '];
    let at = if b.starts_with(&[0xFF, 0x4F, 0xFF, 0x51]) {
        0
    } else if b.starts_with(&JP2) {
        b.get(..b.len().min(4096))?
            .windows(4)
            .position(|w| w == [0xFF, 0x4F, 0xFF, 0x51])?
    } else {
        return None;
    };
    let u32_at =
        |p: usize| -> Option<u32> { Some(u32::from_be_bytes(b.get(p..p + 4)?.try_into().ok()?)) };
    // SOC(2) SIZ(2) Lsiz(2) Rsiz(2) Xsiz Ysiz XOsiz YOsiz (4 each).
    let (x, y) = (u32_at(at + 8)?, u32_at(at + 12)?);
    let (x0, y0) = (u32_at(at + 16)?, u32_at(at + 20)?);
    Some(("JPEG 2000", y.saturating_sub(y0), x.saturating_sub(x0)))
}

/// A compressed frame whose own header disagrees with the data set (checked on every fragment that
/// starts a JPEG, JPEG-LS or JPEG 2000 stream): another size than Rows x Columns (the decoders
/// allocate what the stream says, so a 16 x 16 data set holding a stream that claims 60,000 x
/// 60,000 pixels would ask for gigabytes past every cap), or for JPEG and JPEG-LS more components
/// than Samples per Pixel or samples wider than Bits Allocated (dicom-rs's JPEG adapter copies
/// the decoded frame into a buffer sized from the data set, and panicked when it was longer). The
/// reason, for the first such stream.
fn codestream_mismatch(
    obj: &DefaultDicomObject,
    rows: u32,
    columns: u32,
    samples: u32,
    bits_allocated: u32,
) -> Option<String> {
    let ts = obj.meta().transfer_syntax().trim_end_matches('\0');
    let compressed = ts
        .strip_prefix("1.2.840.10008.1.2.4.")
        .and_then(|n| n.parse::<u32>().ok())
        .is_some_and(|n| matches!(n, 50..=70 | 80 | 81 | 90..=93 | 201..=203));
    if !compressed {
        return None;
    }
    let fragments = obj
        .element_opt(tags::PIXEL_DATA)
        .ok()
        .flatten()?
        .fragments()?;
    fragments.iter().filter_map(|f| codestream_header(f)).find_map(|c| {
        let name = c.format;
        if (c.rows, c.columns) != (rows, columns) {
            return Some(format!(
                "the {name} stream says {} x {} pixels, the data set {rows} x {columns}: not decoded (the decoder would allocate what the stream says)",
                c.rows, c.columns
            ));
        }
        if let Some(n) = c.components.filter(|&n| n != samples) {
            return Some(format!(
                "the {name} stream has {n} components, the data set {samples} samples per pixel"
            ));
        }
        if let Some(p) = c.precision.filter(|&p| (p > 8 && bits_allocated < 16) || p > 16) {
            return Some(format!(
                "the {name} stream's samples are {p} bits, more than the {bits_allocated} bits allocated"
            ));
        }
        None
    })
}

/// The signedness of the first component in a JPEG 2000 codestream's SIZ marker, if the Pixel
/// Data holds one (raw codestream or inside a JP2 box).
fn j2k_signedness(obj: &DefaultDicomObject) -> Option<bool> {
    let b = first_fragment(obj)?;
    let at = b.windows(4).position(|w| w == [0xFF, 0x4F, 0xFF, 0x51])?;
    // SOC, SIZ: Lsiz(2) Rsiz(2) 8 x 4-byte sizes, Csiz(2), then Ssiz of component 0.
    let ssiz = *b.get(at + 4 + 2 + 2 + 32 + 2)?;
    Some(ssiz & 0x80 != 0)
}

/// Colour frames decoded by dicom-pixeldata: the raw samples (R, G, B interleaved; planar files
/// interleaved here). Compressed YBR data arrive as RGB from the decoders.
fn decoded_colour_samples(
    decoded: &dicom_pixeldata::DecodedPixelData,
    meta: &ImageMeta,
    el: &Elements,
) -> Result<Vec<i64>, DicomError> {
    use dicom_pixeldata::PlanarConfiguration;
    let pi = decoded.photometric_interpretation().to_string();
    if pi.trim() != "RGB" {
        return Err(el.err(DicomErrorKind::UnsupportedPhotometric(format!(
            "{} decoded as {}, not RGB",
            meta.photometric_interpretation,
            pi.trim()
        ))));
    }
    let n = meta.rows as usize * meta.columns as usize;
    match decoded.planar_configuration() {
        PlanarConfiguration::Standard => {
            let raw = ConvertOptions::new()
                .with_modality_lut(ModalityLutOption::None)
                .with_voi_lut(VoiLutOption::Identity);
            decoded
                .to_vec_frame_with_options(0, &raw)
                .map_err(|e| el.err(DicomErrorKind::Decode(error_chain(&e))))
        }
        PlanarConfiguration::PixelFirst => {
            let bytes = decoded
                .frame_data(0)
                .map_err(|e| el.err(DicomErrorKind::Decode(error_chain(&e))))?;
            let planes: Vec<i64> = match meta.bits_allocated {
                8 => bytes.iter().map(|&b| b as i64).collect(),
                16 => bytes
                    .chunks_exact(2)
                    .map(|c| u16::from_le_bytes([c[0], c[1]]) as i64)
                    .collect(),
                other => {
                    return Err(el.err(DicomErrorKind::Decode(format!(
                        "planar colour with {other} bits allocated is not supported"
                    ))))
                }
            };
            Ok(interleave_planes(&planes, n))
        }
    }
}

/// Planar colour (R plane, G plane, B plane) interleaved pixel by pixel; what is missing reads
/// short and is caught by the caller's length check.
fn interleave_planes(planes: &[i64], n: usize) -> Vec<i64> {
    if planes.len() < 3 * n {
        return planes.to_vec();
    }
    (0..n)
        .flat_map(|i| [planes[i], planes[n + i], planes[2 * n + i]])
        .collect()
}

/// A colour frame from its R, G, B samples (interleaved): the samples kept as stored, and grey for
/// the model as ITU-R BT.601 luma (0.299 R + 0.587 G + 0.114 B), full-range display.
fn colour_image(
    samples: Vec<i64>,
    mut meta: ImageMeta,
    el: &Elements,
    options: &ReadOptions,
) -> Result<Image, DicomError> {
    let n = meta.rows as usize * meta.columns as usize;
    if samples.len() != 3 * n {
        return Err(el.err(DicomErrorKind::Decode(format!(
            "decoded {} samples for a {} x {} colour frame",
            samples.len(),
            meta.rows,
            meta.columns
        ))));
    }
    let pixels: Vec<f32> = samples
        .chunks_exact(3)
        .map(|c| (0.299 * c[0] as f64 + 0.587 * c[1] as f64 + 0.114 * c[2] as f64) as f32)
        .collect();
    if meta.window.is_none() {
        // Colour images use their full range.
        let max = ((1u64 << meta.bits_stored.min(32)) - 1) as f64;
        meta.window = Some(VoiWindow {
            center: (max + 1.0) / 2.0,
            width: max + 1.0,
        });
    }
    Ok(Image {
        width: meta.columns,
        height: meta.rows,
        pixels,
        stored: options.keep_stored.then_some(samples),
        meta,
    })
}

/// One Palette Color Lookup Table (descriptor and data, or segmented data, C.7.9), scaled to 0..1.
fn palette_lut(
    el: &Elements,
    descriptor: Tag,
    data: Tag,
    segmented: Tag,
    name: &'static str,
) -> Result<(i64, Vec<f32>), DicomError> {
    let invalid = |reason: String| {
        el.err(DicomErrorKind::InvalidElement {
            name,
            tag: tag_text(descriptor),
            reason,
        })
    };
    let d: Vec<i64> = el
        .obj
        .element(descriptor)
        .ok()
        .and_then(|e| e.value().to_multi_int::<i64>().ok())
        .ok_or_else(|| invalid("missing or unreadable".into()))?;
    let [entries, first, bits] = d[..] else {
        return Err(invalid(format!("{} values, want 3", d.len())));
    };
    let entries = if entries == 0 {
        65536
    } else {
        entries as usize
    };
    if !(bits == 8 || bits == 16) {
        return Err(invalid(format!("{bits} bits per entry, want 8 or 16")));
    }
    let read = |tag: Tag| {
        el.obj
            .element(tag)
            .ok()
            .and_then(|e| e.value().to_multi_int::<u16>().ok())
    };
    let values: Vec<u16> = match read(data) {
        Some(v) => v,
        None => {
            let seg = read(segmented).ok_or_else(|| {
                invalid("neither its data nor its segmented data element is readable".into())
            })?;
            expand_segmented_lut(&seg, entries).map_err(invalid)?
        }
    };
    if values.len() < entries {
        return Err(invalid(format!(
            "{} entries of data, the descriptor says {entries}",
            values.len()
        )));
    }
    // 8-bit entries are stored one per 16-bit word (C.7.6.3.1.5); some writers put them in the
    // high byte.
    let table = &values[..entries];
    let max = table.iter().copied().max().unwrap_or(0);
    let lut = if bits == 8 {
        let high_byte = max > 255;
        table
            .iter()
            .map(|&v| (if high_byte { v >> 8 } else { v & 0xFF }) as f32 / 255.0)
            .collect()
    } else {
        table.iter().map(|&v| v as f32 / 65535.0).collect()
    };
    Ok((first, lut))
}

/// Expands segmented palette colour LUT data (C.7.9.2): discrete segments (opcode 0, n values),
/// linear segments (opcode 1: n values from the previous one to the given end, rounded half to
/// even as pydicom does), indirect segments (opcode 2: n segments copied from a word offset, which
/// may not themselves be indirect). Never grows past `entries`.
fn expand_segmented_lut(data: &[u16], entries: usize) -> Result<Vec<u16>, String> {
    fn run(
        data: &[u16],
        start: usize,
        max_segments: Option<usize>,
        previous: Option<u16>,
        out: &mut Vec<u16>,
        entries: usize,
        nested: bool,
    ) -> Result<(), String> {
        let (mut at, mut segments) = (start, 0usize);
        while at + 1 < data.len() && max_segments.is_none_or(|m| segments < m) {
            let (opcode, n) = (data[at], data[at + 1] as usize);
            at += 2;
            if out.len() + n > entries {
                return Err(format!(
                    "segmented data expands past the descriptor's {entries} entries"
                ));
            }
            match opcode {
                0 => {
                    let values = data
                        .get(at..at + n)
                        .ok_or("a discrete segment runs past the data")?;
                    out.extend_from_slice(values);
                    at += n;
                }
                1 => {
                    let y0 = out
                        .last()
                        .copied()
                        .or(previous)
                        .ok_or("a linear segment cannot come first")?
                        as f64;
                    let y1 = *data.get(at).ok_or("a linear segment runs past the data")? as f64;
                    at += 1;
                    // numpy.linspace(y0 + step, y1, n), rounded half to even.
                    let step = (y1 - y0) / n.max(1) as f64;
                    let start = y0 + step;
                    let delta = if n > 1 {
                        (y1 - start) / (n - 1) as f64
                    } else {
                        0.0
                    };
                    for i in 0..n {
                        let v = if i + 1 == n {
                            y1
                        } else {
                            start + i as f64 * delta
                        };
                        out.push(v.round_ties_even().clamp(0.0, 65535.0) as u16);
                    }
                }
                2 if !nested => {
                    let (lo, hi) = match data.get(at..at + 2) {
                        Some(&[lo, hi]) => (lo as usize, hi as usize),
                        _ => return Err("an indirect segment runs past the data".into()),
                    };
                    at += 2;
                    let last = out.last().copied();
                    if last.is_none() {
                        return Err("an indirect segment cannot come first".into());
                    }
                    run(data, hi << 16 | lo, Some(n), last, out, entries, true)?;
                }
                2 => return Err("an indirect segment copies another indirect segment".into()),
                other => return Err(format!("unknown segment type {other}")),
            }
            segments += 1;
        }
        Ok(())
    }
    let mut out = Vec::new();
    run(data, 0, None, None, &mut out, entries, false)?;
    Ok(out)
}

/// PALETTE COLOR: stored indices kept (as pydicom gives them), and for the model the grey (BT.601
/// luma) of the colour each index maps to through the three tables; full-range display.
fn palette_image(
    indices: Vec<i64>,
    mut meta: ImageMeta,
    el: &Elements,
    options: &ReadOptions,
) -> Result<Image, DicomError> {
    let (rf, red) = palette_lut(
        el,
        tags::RED_PALETTE_COLOR_LOOKUP_TABLE_DESCRIPTOR,
        tags::RED_PALETTE_COLOR_LOOKUP_TABLE_DATA,
        tags::SEGMENTED_RED_PALETTE_COLOR_LOOKUP_TABLE_DATA,
        "Red Palette Color Lookup Table Descriptor",
    )?;
    let (gf, green) = palette_lut(
        el,
        tags::GREEN_PALETTE_COLOR_LOOKUP_TABLE_DESCRIPTOR,
        tags::GREEN_PALETTE_COLOR_LOOKUP_TABLE_DATA,
        tags::SEGMENTED_GREEN_PALETTE_COLOR_LOOKUP_TABLE_DATA,
        "Green Palette Color Lookup Table Descriptor",
    )?;
    let (bf, blue) = palette_lut(
        el,
        tags::BLUE_PALETTE_COLOR_LOOKUP_TABLE_DESCRIPTOR,
        tags::BLUE_PALETTE_COLOR_LOOKUP_TABLE_DATA,
        tags::SEGMENTED_BLUE_PALETTE_COLOR_LOOKUP_TABLE_DATA,
        "Blue Palette Color Lookup Table Descriptor",
    )?;
    let at =
        |lut: &[f32], first: i64, i: i64| lut[(i - first).clamp(0, lut.len() as i64 - 1) as usize];
    let pixels: Vec<f32> = indices
        .iter()
        .map(|&i| 0.299 * at(&red, rf, i) + 0.587 * at(&green, gf, i) + 0.114 * at(&blue, bf, i))
        .collect();
    if pixels.len() as u64 != meta.rows as u64 * meta.columns as u64 {
        return Err(el.err(DicomErrorKind::Decode(format!(
            "decoded {} values for a {} x {} frame",
            pixels.len(),
            meta.rows,
            meta.columns
        ))));
    }
    // The model sees grey in 0..1: display it as is.
    meta.window = Some(VoiWindow {
        center: 0.5,
        width: 1.0 + f64::EPSILON,
    });
    meta.voi_function = VoiFunction::LinearExact;
    Ok(Image {
        width: meta.columns,
        height: meta.rows,
        pixels,
        stored: options.keep_stored.then_some(indices),
        meta,
    })
}

fn decode(
    obj: &DefaultDicomObject,
    borrowed: Option<&[u8]>,
    source_name: &str,
    options: &ReadOptions,
) -> Result<Image, DicomError> {
    let meta = header(obj, borrowed, source_name, options)?;
    let el = Elements { obj, source_name };
    let (rows, columns) = (meta.rows, meta.columns);
    let count = crate::native::samples_per_frame(
        rows,
        columns,
        meta.samples_per_pixel as u32,
        &meta.photometric_interpretation,
    ) as usize;
    if let Some(pixels) = borrowed {
        let frame = crate::native::NativeFrame::from_le_frame(
            pixels,
            options.frame,
            count,
            meta.bits_allocated as u32,
            meta.bits_stored as u32,
            meta.pixel_representation == 1,
        )
        .ok_or_else(|| {
            el.err(DicomErrorKind::Decode(format!(
                "{} bytes of pixel data do not hold frame {}",
                pixels.len(),
                options.frame
            )))
        })?;
        let planar = el.uint("Planar Configuration", tags::PLANAR_CONFIGURATION)? == Some(1);
        return decode_native(&frame, planar, meta, &el, options);
    }
    if let Some(frame) = crate::native::NativeFrame::borrow(
        obj,
        options.frame,
        count,
        meta.bits_allocated as u32,
        meta.bits_stored as u32,
        meta.pixel_representation == 1,
    ) {
        let planar = el.uint("Planar Configuration", tags::PLANAR_CONFIGURATION)? == Some(1);
        return decode_native(&frame, planar, meta, &el, options);
    }
    if meta.transfer_syntax_uid == "1.2.840.10008.1.2.5" && meta.bits_allocated >= 8 {
        let fragment = obj
            .element_opt(tags::PIXEL_DATA)
            .ok()
            .flatten()
            .and_then(|e| e.fragments())
            .and_then(|f| f.get(options.frame as usize))
            .map(|f| f.as_slice())
            .unwrap_or_default();
        let bytes = crate::native::rle_decode(
            fragment,
            rows as usize * columns as usize,
            meta.samples_per_pixel as usize,
            meta.bits_allocated as usize / 8,
        )
        .map_err(|reason| el.err(DicomErrorKind::Decode(reason)))?;
        let frame = crate::native::NativeFrame::from_le_frame(
            &bytes,
            0,
            count,
            meta.bits_allocated as u32,
            meta.bits_stored as u32,
            meta.pixel_representation == 1,
        )
        .ok_or_else(|| el.err(DicomErrorKind::Decode("short RLE frame".into())))?;
        // The RLE decoder above interleaves the samples whatever the Planar Configuration says.
        return decode_native(&frame, false, meta, &el, options);
    }
    #[cfg(feature = "codecs")]
    if let Some(colour) = (meta.samples_per_pixel == 3)
        .then(|| jpeg_colour_override(obj, &meta.photometric_interpretation))
        .flatten()
    {
        let samples = jpeg_colour_frame(obj, &meta, options.frame, colour)
            .map_err(|reason| el.err(DicomErrorKind::Decode(reason)))?;
        return colour_image(samples, meta, &el, options);
    }
    if let Some(precision) = jpeg_dct_precision_over_8(obj) {
        return decode_jpeg12(obj, precision, meta, &el, options);
    }
    if meta.bits_allocated == 32 || meta.bits_allocated == 1 {
        return Err(el.err(DicomErrorKind::Decode(format!(
            "{} bits allocated in {} pixel data: only native pixel data of that depth is read",
            meta.bits_allocated, meta.transfer_syntax_uid
        ))));
    }
    let fixed;
    let decoded = match obj.decode_pixel_data_frame(options.frame) {
        Ok(d) => d,
        Err(e) => {
            fixed = jpegls_without_stray_zero(obj, &meta)
                .ok_or_else(|| el.err(DicomErrorKind::Decode(error_chain(&e))))?;
            // Retried once without the byte; if that fails too, the first error stands.
            fixed
                .decode_pixel_data_frame(options.frame)
                .map_err(|_| el.err(DicomErrorKind::Decode(error_chain(&e))))?
        }
    };
    if meta.samples_per_pixel == 3 {
        let samples = decoded_colour_samples(&decoded, &meta, &el)?;
        return colour_image(samples, meta, &el, options);
    }
    if meta.photometric_interpretation == "PALETTE COLOR" {
        let raw = ConvertOptions::new()
            .with_modality_lut(ModalityLutOption::None)
            .with_voi_lut(VoiLutOption::Identity);
        let indices: Vec<i64> = decoded
            .to_vec_frame_with_options(0, &raw)
            .map_err(|e| el.err(DicomErrorKind::Decode(error_chain(&e))))?;
        return palette_image(indices, meta, &el, options);
    }
    let pixels: Vec<f32> = if let Some(lut) = &meta.modality_lut {
        // The Modality LUT Sequence replaces the rescale: a table lookup of the stored values.
        let raw = ConvertOptions::new()
            .with_modality_lut(ModalityLutOption::None)
            .with_voi_lut(VoiLutOption::Identity);
        let stored: Vec<i64> = decoded
            .to_vec_frame_with_options(0, &raw)
            .map_err(|e| el.err(DicomErrorKind::Decode(error_chain(&e))))?;
        stored.iter().map(|&v| lut.entry(v) as f32).collect()
    } else {
        // The rescale read here (UN-encoded and functional-group values included), not
        // dicom-pixeldata's own reading of it.
        let convert = ConvertOptions::new()
            .with_modality_lut(ModalityLutOption::Override(dicom_pixeldata::Rescale::new(
                meta.rescale_slope,
                meta.rescale_intercept,
            )))
            .with_voi_lut(VoiLutOption::Identity);
        decoded
            .to_vec_frame_with_options(0, &convert)
            .map_err(|e| el.err(DicomErrorKind::Decode(error_chain(&e))))?
    };
    if pixels.len() as u64 != rows as u64 * columns as u64 {
        return Err(el.err(DicomErrorKind::Decode(format!(
            "decoded {} values for a {rows} x {columns} frame",
            pixels.len()
        ))));
    }
    let stored = if options.keep_stored {
        let raw = ConvertOptions::new().with_modality_lut(ModalityLutOption::None);
        let values: Vec<i64> = decoded
            .to_vec_frame_with_options(0, &raw)
            .map_err(|e| el.err(DicomErrorKind::Decode(error_chain(&e))))?;
        Some(values)
    } else {
        None
    };
    Ok(Image {
        width: columns,
        height: rows,
        pixels,
        stored,
        meta,
    })
}

/// A frame of native pixel data, read in place ([`crate::native`]): monochrome values rescaled
/// (or looked up in the Modality LUT) in one pass over the stored samples; colour (RGB, YBR_FULL,
/// YBR_FULL_422, either planar configuration: `planar` when the samples are stored plane by plane)
/// and palette indices as the other paths give them.
fn decode_native(
    frame: &crate::native::NativeFrame,
    planar: bool,
    meta: ImageMeta,
    el: &Elements,
    options: &ReadOptions,
) -> Result<Image, DicomError> {
    let n = meta.rows as usize * meta.columns as usize;
    let photometric = meta.photometric_interpretation.as_str();
    if meta.samples_per_pixel == 3 {
        let planar = planar && photometric != "YBR_FULL_422";
        let mut samples = frame.stored();
        if planar {
            samples = interleave_planes(&samples, n);
        }
        if photometric == "YBR_FULL" || photometric == "YBR_FULL_422" {
            samples = crate::native::ybr_to_rgb(
                &samples,
                n,
                meta.bits_stored as u32,
                photometric == "YBR_FULL_422",
            )
            .ok_or_else(|| {
                el.err(DicomErrorKind::Decode(format!(
                    "{} samples for a {} x {} {photometric} frame",
                    samples.len(),
                    meta.rows,
                    meta.columns
                )))
            })?;
        }
        return colour_image(samples, meta, el, options);
    }
    if photometric == "PALETTE COLOR" {
        return palette_image(frame.stored(), meta, el, options);
    }
    let (pixels, stored) = match &meta.modality_lut {
        Some(lut) => {
            let stored = frame.stored();
            let pixels = stored.iter().map(|&v| lut.entry(v) as f32).collect();
            (pixels, options.keep_stored.then_some(stored))
        }
        None => (
            frame.rescaled(meta.rescale_slope, meta.rescale_intercept),
            options.keep_stored.then(|| frame.stored()),
        ),
    };
    if pixels.len() != n {
        return Err(el.err(DicomErrorKind::Decode(format!(
            "decoded {} values for a {} x {} frame",
            pixels.len(),
            meta.rows,
            meta.columns
        ))));
    }
    Ok(Image {
        width: meta.columns,
        height: meta.rows,
        pixels,
        stored,
        meta,
    })
}

#[cfg(test)]
mod tests {
    use super::expand_segmented_lut;

    #[test]
    fn the_value_length_limit_refuses_a_longer_value_before_allocating_it() {
        // Explicit VR little endian: meta group, then an OB of 1000 bytes.
        let element = |tag: (u16, u16), vr: &[u8; 2], value: &[u8]| {
            let mut out = Vec::new();
            out.extend(tag.0.to_le_bytes());
            out.extend(tag.1.to_le_bytes());
            out.extend(vr);
            out.extend((value.len() as u16).to_le_bytes());
            out.extend(value);
            out
        };
        let meta = element((2, 0x10), b"UI", b"1.2.840.10008.1.2.1\0");
        let mut file = vec![0u8; 128];
        file.extend(b"DICM");
        file.extend(element((2, 0), b"UL", &(meta.len() as u32).to_le_bytes()));
        file.extend(&meta);
        file.extend([0x09, 0x00, 0x10, 0x00, b'O', b'B', 0, 0]);
        file.extend(1000u32.to_le_bytes());
        file.extend([7u8; 1000]);
        let parse = || {
            dicom_object::OpenFileOptions::new()
                .read_preamble(dicom_object::file::ReadPreamble::Always)
                .from_reader(file.as_slice())
        };
        {
            let _limit = super::ValueLengthLimit::new(100);
            let e = parse().map(|_| ()).unwrap_err();
            assert!(
                super::error_chain(&e).contains("declares 1000 bytes, more than the 100 allowed"),
                "{}",
                super::error_chain(&e)
            );
        }
        // The limit is restored when the guard goes.
        assert!(parse().is_ok());
    }

    #[test]
    fn segmented_palettes_expand_as_hand_computed() {
        // Discrete 10 20 30, then linear to 50 over 2 entries: 40 50.
        assert_eq!(
            expand_segmented_lut(&[0, 3, 10, 20, 30, 1, 2, 50], 256),
            Ok(vec![10, 20, 30, 40, 50])
        );
        // Linear 0 -> 3 over 2: 1.5 rounds half to even (2), then 3.
        assert_eq!(
            expand_segmented_lut(&[0, 1, 0, 1, 2, 3], 256),
            Ok(vec![0, 2, 3])
        );
        // Indirect: one segment copied from word offset 0 (low word first).
        assert_eq!(
            expand_segmented_lut(&[0, 2, 5, 6, 2, 1, 0, 0], 256),
            Ok(vec![5, 6, 5, 6])
        );
        // A trailing pad word is ignored.
        assert_eq!(expand_segmented_lut(&[0, 1, 7, 0], 256), Ok(vec![7]));
    }

    #[test]
    fn bad_segmented_palettes_are_refused_not_expanded_without_bound() {
        assert!(expand_segmented_lut(&[1, 2, 9], 256).is_err()); // linear first
        assert!(expand_segmented_lut(&[0, 5, 1, 2], 256).is_err()); // runs past the data
        assert!(expand_segmented_lut(&[0, 2, 1, 2, 1, 300, 9], 256).is_err()); // past the entries
        assert!(expand_segmented_lut(&[0, 1, 1, 2, 1, 3, 0, 0], 256).is_err()); // indirect -> itself
        assert!(expand_segmented_lut(&[7, 1, 1], 256).is_err()); // unknown opcode
    }
}
