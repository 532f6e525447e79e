//! An exported bundle run back by tract (batch 1), as the plugin runs it: the manifest and every
//! file's digest checked, the image plan built once, text plans per number of sentences.

use crate::export::io::{ImagePrediction, TextInputs};
use crate::vocab::{FINDINGS, REGIONS};
use asg_report::TextTokenizer;
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use tract_onnx::prelude::*;

/// Errors loading or running an exported bundle.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("{path}: {reason}")]
    Bundle { path: String, reason: String },
    #[error("{0}")]
    Invalid(String),
}

type Plan = Arc<TypedRunnableModel>;

/// An exported bundle run by tract (batch 1).
pub struct OnnxBundle {
    pub manifest: asg_bundle::Manifest,
    tokenizer: TextTokenizer,
    image: Plan,
    text_bytes: Vec<u8>,
    /// Text plans by number of sentences (the `averaging` input's free dimension).
    text_plans: Mutex<HashMap<usize, Plan>>,
    source: String,
    max_tokens: usize,
    grid: usize,
}

impl OnnxBundle {
    /// Loads and checks a bundle folder written by `asg-train export`.
    pub fn load(dir: &Path) -> Result<Self, BundleError> {
        let err = |path: &Path, reason: String| BundleError::Bundle {
            path: path.display().to_string(),
            reason,
        };
        let read = |name: &str| {
            let p = dir.join(name);
            std::fs::read(&p).map_err(|e| err(&p, e.to_string()))
        };
        let mpath = dir.join(asg_bundle::MANIFEST_FILE);
        let text = String::from_utf8(read(asg_bundle::MANIFEST_FILE)?)
            .map_err(|e| err(&mpath, e.to_string()))?;
        let manifest =
            asg_bundle::Manifest::from_json(&text).map_err(|e| err(&mpath, e.to_string()))?;
        let spec = manifest.text_model.clone().ok_or_else(|| {
            err(
                &mpath,
                "the bundle has no text model (made by asg-train init?)".into(),
            )
        })?;
        let grid = manifest
            .grid
            .ok_or_else(|| err(&mpath, "the manifest names no grid".into()))?
            as usize;
        let verify = |name: &str| -> Result<Vec<u8>, BundleError> {
            let bytes = read(name)?;
            manifest
                .verify_file(name, &bytes)
                .map_err(|e| err(&dir.join(name), e.to_string()))?;
            Ok(bytes)
        };
        let image_bytes = verify(&manifest.image_model)?;
        let text_bytes = verify(&spec.file)?;
        let tok_bytes = verify(&spec.tokenizer)?;
        let tokenizer = TextTokenizer::from_json(&String::from_utf8_lossy(&tok_bytes))
            .map_err(|e| err(&dir.join(&spec.tokenizer), e.to_string()))?;
        let s = manifest.input.size as usize;
        let image = tract_onnx::onnx()
            .model_for_read(&mut &image_bytes[..])
            .and_then(|m| m.with_input_fact(0, f32::fact([1, 1, s, s]).into()))
            .and_then(|m| m.into_optimized())
            .and_then(|m| m.into_runnable())
            .map_err(|e| err(&dir.join(&manifest.image_model), format!("{e:#}")))?;
        Ok(Self {
            max_tokens: spec.max_tokens as usize,
            manifest,
            tokenizer,
            image,
            text_bytes,
            text_plans: Mutex::new(HashMap::new()),
            source: dir.display().to_string(),
            grid,
        })
    }

    fn text_plan(&self, k: usize) -> Result<Plan, BundleError> {
        let mut plans = self
            .text_plans
            .lock()
            .map_err(|_| BundleError::Invalid("text plan cache poisoned".into()))?;
        if let Some(p) = plans.get(&k) {
            return Ok(p.clone());
        }
        let t = self.max_tokens;
        let plan = tract_onnx::onnx()
            .model_for_read(&mut &self.text_bytes[..])
            .and_then(|m| m.with_input_fact(0, i64::fact([1, t]).into()))
            .and_then(|m| m.with_input_fact(1, f32::fact([1, t]).into()))
            .and_then(|m| m.with_input_fact(2, f32::fact([1, k, t]).into()))
            .and_then(|m| m.into_optimized())
            .and_then(|m| m.into_runnable())
            .map_err(|e| BundleError::Bundle {
                path: self.source.clone(),
                reason: format!("text.onnx: {e:#}"),
            })?;
        plans.insert(k, plan.clone());
        Ok(plan)
    }
}

fn tract_err(e: impl std::fmt::Display) -> BundleError {
    BundleError::Invalid(format!("tract: {e}"))
}

fn values(v: &TValue) -> Result<Vec<f32>, BundleError> {
    Ok(v.to_plain_array_view::<f32>()
        .map_err(tract_err)?
        .iter()
        .copied()
        .collect())
}

impl OnnxBundle {
    /// Side of the square model input.
    pub fn input_size(&self) -> usize {
        self.manifest.input.size as usize
    }
    /// Tokens `text.onnx` takes.
    pub fn max_tokens(&self) -> usize {
        self.max_tokens
    }
    /// Side of the local feature grid.
    pub fn grid(&self) -> usize {
        self.grid
    }
    /// The tokenizer the text model was trained with.
    pub fn tokenizer(&self) -> &TextTokenizer {
        &self.tokenizer
    }

    /// `n` normalised images `[n, 1, s, s]` -> their predictions.
    pub fn images(&self, pixels: &[f32], n: usize) -> Result<Vec<ImagePrediction>, BundleError> {
        let s = self.input_size();
        let mut out = Vec::with_capacity(n);
        for img in pixels.chunks(s * s).take(n) {
            let x = tract_ndarray::ArrayD::from_shape_vec(vec![1, 1, s, s], img.to_vec())
                .map_err(tract_err)?
                .into_tensor();
            let o = self.image.run(tvec!(x.into())).map_err(tract_err)?;
            if o.len() < 8 {
                return Err(BundleError::Invalid(format!(
                    "{}: image.onnx has {} outputs, expected 8",
                    self.source,
                    o.len()
                )));
            }
            let p = ImagePrediction {
                embedding: values(&o[0])?,
                features: values(&o[1])?,
                finding_logits: values(&o[2])?,
                tag_attention: values(&o[3])?,
                boxes: values(&o[4])?,
                region_embeddings: values(&o[5])?,
                region_logits: values(&o[6])?,
                finding_maps: values(&o[7])?,
            };
            let cells = self.grid * self.grid;
            let sizes = [
                (p.finding_logits.len(), FINDINGS),
                (p.tag_attention.len(), FINDINGS * cells),
                (p.boxes.len(), REGIONS * 4),
                (p.region_logits.len(), REGIONS * FINDINGS),
                (p.finding_maps.len(), FINDINGS * cells),
            ];
            if let Some((got, want)) = sizes.iter().find(|(g, w)| g != w) {
                return Err(BundleError::Invalid(format!(
                    "{}: image.onnx gave {got} values where {want} were expected",
                    self.source
                )));
            }
            out.push(p);
        }
        Ok(out)
    }
    /// One text -> (report embedding, sentence embeddings `[k, embed]`).
    pub fn text(&self, inputs: &TextInputs) -> Result<(Vec<f32>, Vec<f32>), BundleError> {
        let t = self.max_tokens;
        let k = inputs.sentences;
        let plan = self.text_plan(k)?;
        let ids = tract_ndarray::ArrayD::from_shape_vec(vec![1, t], inputs.ids.clone())
            .map_err(tract_err)?;
        let mask = tract_ndarray::ArrayD::from_shape_vec(vec![1, t], inputs.mask.clone())
            .map_err(tract_err)?;
        let avg = tract_ndarray::ArrayD::from_shape_vec(vec![1, k, t], inputs.averaging.clone())
            .map_err(tract_err)?;
        let o = plan
            .run(tvec!(
                ids.into_tensor().into(),
                mask.into_tensor().into(),
                avg.into_tensor().into()
            ))
            .map_err(tract_err)?;
        Ok((values(&o[0])?, values(&o[1])?))
    }
    /// What is run, for reports.
    pub fn describe(&self) -> String {
        format!(
            "bundle {} ({} {}) run by tract",
            self.source, self.manifest.name, self.manifest.version
        )
    }
}
