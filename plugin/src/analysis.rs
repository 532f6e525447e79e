//! The analysis of one image: what the model outputs, in terms a viewer can draw.

use crate::error::PluginError;
use crate::runtime::ModelBundle;
use asg_dicom::{preprocess_image, read_bytes, Image, Letterbox, Normalisation, ReadOptions};
use serde::{Deserialize, Serialize};
use web_time::Instant;

/// Version of the JSON layout of [`Analysis`]; bumped on incompatible change.
pub const ANALYSIS_SCHEMA_VERSION: u32 = 1;

/// The model that produced an analysis.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelInfo {
    pub name: String,
    pub version: String,
    pub image_sha256: String,
}

/// The analysed image (no patient identity).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageInfo {
    pub width: u32,
    pub height: u32,
    pub sop_instance_uid: String,
    pub modality: Option<String>,
    pub view_position: Option<String>,
    pub photometric_interpretation: String,
    pub pixel_spacing_mm: Option<[f64; 2]>,
}

/// A finding's score.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FindingScore {
    pub name: String,
    pub logit: f32,
    pub probability: f32,
    /// Probability at or above the manifest's threshold.
    pub present: bool,
}

/// One raw model output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NamedOutput {
    pub name: String,
    pub shape: Vec<usize>,
    pub values: Vec<f32>,
}

/// Milliseconds spent in each stage.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Timings {
    pub decode_ms: f64,
    pub preprocess_ms: f64,
    pub inference_ms: f64,
    pub postprocess_ms: f64,
    pub total_ms: f64,
}

/// Everything the plugin says about one image.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Analysis {
    pub schema_version: u32,
    pub model: ModelInfo,
    pub image: ImageInfo,
    /// Things the user should know (a lateral view, a missing view position...).
    pub warnings: Vec<String>,
    /// Where the image sits in the model input; boxes are mapped back through it.
    pub letterbox: Letterbox,
    pub findings: Vec<FindingScore>,
    pub outputs: Vec<NamedOutput>,
    pub timings: Timings,
}

fn ms_since(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e3
}

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

/// Warnings about views the model was not made for.
fn view_warnings(image: &Image) -> Vec<String> {
    match image.meta.view_position.as_deref().map(str::to_ascii_uppercase).as_deref() {
        Some("PA") | Some("AP") => vec![],
        Some(v) if v.contains('L') => vec![format!(
            "view position {v} is not frontal: the model was trained on PA/AP views; results are unreliable"
        )],
        Some(v) => vec![format!("view position {v} is not PA or AP: results may be unreliable")],
        None => vec!["view position not recorded: assumed frontal".to_string()],
    }
}

impl ModelBundle {
    /// Decodes a DICOM file held in memory and analyses it; `source_name` names it in errors.
    pub fn analyze_dicom(
        &self,
        bytes: &[u8],
        source_name: &str,
        options: &ReadOptions,
    ) -> Result<Analysis, PluginError> {
        self.analyze_dicom_image(bytes, source_name, options)
            .map(|(analysis, _)| analysis)
    }

    /// Like [`ModelBundle::analyze_dicom`], also returning the decoded image (for a viewer that
    /// draws it: one decode serves both).
    pub fn analyze_dicom_image(
        &self,
        bytes: &[u8],
        source_name: &str,
        options: &ReadOptions,
    ) -> Result<(Analysis, Image), PluginError> {
        let start = Instant::now();
        let image = read_bytes(bytes, source_name, options)?;
        let decode_ms = ms_since(start);
        let mut analysis = self.analyze(&image)?;
        analysis.timings.decode_ms = decode_ms;
        analysis.timings.total_ms += decode_ms;
        Ok((analysis, image))
    }

    /// Analyses a decoded image.
    pub fn analyze(&self, image: &Image) -> Result<Analysis, PluginError> {
        let m = &self.manifest;
        let t0 = Instant::now();
        let norm = Normalisation {
            mean: m.input.mean,
            std: m.input.std,
        };
        let input = preprocess_image(image, m.input.size, norm);
        let preprocess_ms = ms_since(t0);

        let t1 = Instant::now();
        let values = self
            .image_model
            .run(input.tensor)
            .map_err(|e| PluginError::Model {
                bundle: self.source.clone(),
                reason: format!("inference failed: {e:#}"),
            })?;
        let inference_ms = ms_since(t1);

        let t2 = Instant::now();
        let outputs: Vec<NamedOutput> = self
            .image_model
            .output_names()
            .iter()
            .zip(self.image_model.output_shapes())
            .zip(values)
            .map(|((name, shape), values)| NamedOutput {
                name: name.clone(),
                shape: shape.clone(),
                values,
            })
            .collect();
        let findings = match outputs.iter().find(|o| o.name == "finding_logits") {
            Some(logits) => m
                .findings
                .iter()
                .zip(&logits.values)
                .map(|(name, &logit)| {
                    let probability = sigmoid(logit);
                    FindingScore {
                        name: name.clone(),
                        logit,
                        probability,
                        present: probability >= m.threshold(name),
                    }
                })
                .collect(),
            None => vec![],
        };
        let postprocess_ms = ms_since(t2);
        Ok(Analysis {
            schema_version: ANALYSIS_SCHEMA_VERSION,
            model: ModelInfo {
                name: m.name.clone(),
                version: m.version.clone(),
                image_sha256: self.image_sha256.clone(),
            },
            image: ImageInfo {
                width: image.width,
                height: image.height,
                sop_instance_uid: image.meta.sop_instance_uid.clone(),
                modality: image.meta.modality.clone(),
                view_position: image.meta.view_position.clone(),
                photometric_interpretation: image.meta.photometric_interpretation.clone(),
                pixel_spacing_mm: image.meta.pixel_spacing_mm,
            },
            warnings: view_warnings(image),
            letterbox: input.letterbox,
            findings,
            outputs,
            timings: Timings {
                decode_ms: 0.0,
                preprocess_ms,
                inference_ms,
                postprocess_ms,
                total_ms: preprocess_ms + inference_ms + postprocess_ms,
            },
        })
    }
}
