//! asg-plugin: runs a model bundle with tract on DICOM images and returns an [`Analysis`] whose
//! coordinates are the original image's pixels. Native and wasm32 alike (no threads, no clocks
//! that wasm lacks, no file system in the library's core).

#![forbid(unsafe_code)]

mod analysis;
pub mod batch;
mod check;
mod crops;
#[cfg(feature = "embedded")]
mod embedded;
mod error;
mod outline;
#[cfg(feature = "overlay")]
pub mod overlay;
pub mod results;
mod runtime;

pub use analysis::{
    body_part, is_radiograph_modality, Analysis, BodyPart, FindingScore, Heatmap, ImageInfo,
    ModelInfo, NamedOutput, RegionResult, Timings, ANALYSIS_SCHEMA_VERSION, RADIOGRAPH_MODALITIES,
};
/// The DICOM layer the plugin reads with, for callers that need it directly (the wasm face).
pub use asg_dicom;
pub use check::{
    Evidence, Omission, ReportCheck, SentenceCheck, TripletCheck, Verdict,
    REPORT_CHECK_SCHEMA_VERSION,
};
#[cfg(feature = "embedded")]
pub use embedded::{EMBEDDED_BUNDLE, EMBEDDED_SOURCE};
pub use error::PluginError;
pub use outline::AnatomyOutline;
pub use runtime::{CropModel, CropScores, ModelBundle, OnnxModel, TextEmbeddings, TextModel};
