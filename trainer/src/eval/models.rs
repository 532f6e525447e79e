//! What evaluation runs: a Candle run or an exported bundle (run by tract), behind one trait.

use crate::config::Config;
use crate::eval::error::EvalError;
use crate::export::io::{image_outputs, text_outputs, ImagePrediction, TextInputs};
use crate::export::runtime::OnnxBundle;
use crate::model::AsgModel;
use asg_report::TextTokenizer;
use candle_core::{Device, Tensor};
use std::collections::BTreeMap;
use std::path::Path;

/// A model to evaluate: Candle weights or an ONNX bundle.
/// The thresholds and assessed findings a user's results would use.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OperatingPoint {
    /// Image-level thresholds per finding (0.5 where absent).
    pub thresholds: BTreeMap<String, f32>,
    /// The assessed findings (None: all).
    pub assessed: Option<Vec<String>>,
}

pub trait EvalModel: Sync {
    fn input_size(&self) -> usize;
    fn max_tokens(&self) -> usize;
    fn grid(&self) -> usize;
    fn tokenizer(&self) -> &TextTokenizer;
    /// `n` normalised images `[n, 1, s, s]` -> their predictions.
    fn images(&self, pixels: &[f32], n: usize) -> Result<Vec<ImagePrediction>, EvalError>;
    /// One text -> (report embedding, sentence embeddings `[k, embed]`).
    fn text(&self, inputs: &TextInputs) -> Result<(Vec<f32>, Vec<f32>), EvalError>;
    /// What is evaluated, for the report.
    fn describe(&self) -> String;
    /// The image-level thresholds and the assessed findings a user's results would use (a
    /// bundle's manifest); None: 0.5 for every finding, all assessed (a Candle run).
    fn operating_point(&self) -> Option<OperatingPoint> {
        None
    }
}

fn split_rows(t: &Tensor) -> Result<Vec<Vec<f32>>, EvalError> {
    let n = t.dim(0)?;
    (0..n)
        .map(|i| Ok(t.get(i)?.flatten_all()?.to_vec1()?))
        .collect()
}

/// A Candle run.
pub struct CandleModel {
    pub config: Config,
    pub tokenizer: TextTokenizer,
    pub model: AsgModel,
    pub source: String,
}

impl CandleModel {
    pub fn load(run: &Path) -> Result<Self, EvalError> {
        let r = crate::train::load_run(run, &Device::Cpu)?;
        Ok(Self {
            config: r.config,
            tokenizer: r.tokenizer,
            model: r.model,
            source: run.display().to_string(),
        })
    }
}

impl EvalModel for CandleModel {
    fn input_size(&self) -> usize {
        self.config.model.input_size
    }
    fn max_tokens(&self) -> usize {
        self.config.model.max_tokens
    }
    fn grid(&self) -> usize {
        AsgModel::grid_side(&self.config.model)
    }
    fn tokenizer(&self) -> &TextTokenizer {
        &self.tokenizer
    }
    fn images(&self, pixels: &[f32], n: usize) -> Result<Vec<ImagePrediction>, EvalError> {
        let s = self.input_size();
        let x = Tensor::from_slice(pixels, (n, 1, s, s), &Device::Cpu)?;
        let outs = image_outputs(&self.model, &x)?;
        let rows: Vec<Vec<Vec<f32>>> = outs.iter().map(split_rows).collect::<Result<_, _>>()?;
        Ok((0..n)
            .map(|i| ImagePrediction {
                embedding: rows[0][i].clone(),
                features: rows[1][i].clone(),
                finding_logits: rows[2][i].clone(),
                tag_attention: rows[3][i].clone(),
                boxes: rows[4][i].clone(),
                region_embeddings: rows[5][i].clone(),
                region_logits: rows[6][i].clone(),
                finding_maps: rows[7][i].clone(),
            })
            .collect())
    }
    fn text(&self, inputs: &TextInputs) -> Result<(Vec<f32>, Vec<f32>), EvalError> {
        let t = self.max_tokens();
        let ids: Vec<u32> = inputs.ids.iter().map(|&i| i as u32).collect();
        let ids = Tensor::from_vec(ids, (1, t), &Device::Cpu)?;
        let mask = Tensor::from_slice(&inputs.mask, (1, t), &Device::Cpu)?;
        let avg = Tensor::from_slice(&inputs.averaging, (1, inputs.sentences, t), &Device::Cpu)?;
        let out = text_outputs(&self.model, &ids, &mask, &avg)?;
        Ok((
            out[0].flatten_all()?.to_vec1()?,
            out[1].flatten_all()?.to_vec1()?,
        ))
    }
    fn describe(&self) -> String {
        format!("Candle run {}", self.source)
    }
}

impl EvalModel for OnnxBundle {
    fn input_size(&self) -> usize {
        OnnxBundle::input_size(self)
    }
    fn max_tokens(&self) -> usize {
        OnnxBundle::max_tokens(self)
    }
    fn grid(&self) -> usize {
        OnnxBundle::grid(self)
    }
    fn tokenizer(&self) -> &TextTokenizer {
        OnnxBundle::tokenizer(self)
    }
    fn images(&self, pixels: &[f32], n: usize) -> Result<Vec<ImagePrediction>, EvalError> {
        Ok(OnnxBundle::images(self, pixels, n)?)
    }
    fn text(&self, inputs: &TextInputs) -> Result<(Vec<f32>, Vec<f32>), EvalError> {
        Ok(OnnxBundle::text(self, inputs)?)
    }
    fn describe(&self) -> String {
        OnnxBundle::describe(self)
    }
    fn operating_point(&self) -> Option<OperatingPoint> {
        Some(OperatingPoint {
            thresholds: self.manifest.thresholds.clone(),
            assessed: self.manifest.assessed.clone(),
        })
    }
}

/// Loads a run folder (Candle) or a bundle folder (tract), telling them apart by
/// `manifest.json`.
pub fn load_model(path: &Path) -> Result<Box<dyn EvalModel>, EvalError> {
    if path.join(asg_bundle::MANIFEST_FILE).is_file() {
        Ok(Box::new(OnnxBundle::load(path)?))
    } else {
        Ok(Box::new(CandleModel::load(path)?))
    }
}
