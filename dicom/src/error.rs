//! Typed errors: every one names the file (or byte source) and the cause.

use std::fmt;

/// Why a DICOM source could not be read, decoded or written.
#[derive(Debug, thiserror::Error)]
pub enum DicomErrorKind {
    /// The file could not be read or written.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// The bytes are not a DICOM Part 10 stream (or are truncated before the data set).
    #[error("not a readable DICOM file: {0}")]
    NotDicom(String),
    /// A required element is absent.
    #[error("missing element {name} {tag}")]
    MissingElement { name: &'static str, tag: String },
    /// An element is present but its value cannot be used.
    #[error("invalid element {name} {tag}: {reason}")]
    InvalidElement {
        name: &'static str,
        tag: String,
        reason: String,
    },
    /// Rows x Columns x Frames exceeds the configured cap (checked before allocating).
    #[error("image of {rows} x {columns} x {frames} pixels exceeds the cap of {cap} pixels")]
    TooLarge {
        rows: u64,
        columns: u64,
        frames: u64,
        cap: u64,
    },
    /// The object is not an image (a structured report, a presentation state...).
    #[error("not an image object (SOP class {sop_class_uid}): it has no Pixel Data")]
    NotAnImage { sop_class_uid: String },
    /// The transfer syntax cannot be decoded by this build (the browser build says so: native
    /// builds decode more).
    #[error("{}: {name} ({uid})", if cfg!(target_arch = "wasm32") { "not supported in the browser build" } else { "unsupported transfer syntax" })]
    UnsupportedTransferSyntax { name: String, uid: String },
    /// The photometric interpretation is not handled.
    #[error("unsupported photometric interpretation {0}")]
    UnsupportedPhotometric(String),
    /// The pixel data did not decode.
    #[error("pixel data could not be decoded: {0}")]
    Decode(String),
    /// An image handed to the writer is inconsistent.
    #[error("cannot write image: {0}")]
    InvalidImage(String),
}

/// An error about one DICOM source, which it names.
#[derive(Debug)]
pub struct DicomError {
    /// The file path or the caller's name for the byte source.
    pub source_name: String,
    /// What went wrong.
    pub kind: DicomErrorKind,
}

impl DicomError {
    pub(crate) fn new(source_name: &str, kind: DicomErrorKind) -> Self {
        Self {
            source_name: source_name.to_string(),
            kind,
        }
    }
}

impl fmt::Display for DicomError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.source_name, self.kind)
    }
}

/// The message already carries the kind's text, so the kind is not repeated as a source (a `{:#}`
/// chain would print it twice).
impl std::error::Error for DicomError {}
