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
    /// Region-level thresholds per finding (the image-level one where absent), as the plugin
    /// flags a finding in a region.
    pub region_thresholds: BTreeMap<String, f32>,
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
    /// The finding a bundle's lung-crop model scores, and that model's file: in the product
    /// that finding's probabilities come from it, which this evaluation does not run (it needs
    /// the full-resolution films; `scripts/nodule_product.py` measures it through `asg
    /// analyze`). None: every finding is the image model's.
    fn crop_scored(&self) -> Option<(String, String)> {
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
        let mut assessed = self.manifest.assessed.clone();
        // The finding a crop model scores is the plugin's to measure (it cuts the crops from the
        // image model's lungs; scripts/nodule_product.py runs it): this evaluation reads the
        // image model alone, so that finding counts here as not assessed.
        if let Some(crop) = &self.manifest.crop_model {
            assessed
                .get_or_insert_with(|| self.manifest.findings.clone())
                .retain(|f| *f != crop.finding);
        }
        Some(OperatingPoint {
            thresholds: self.manifest.thresholds.clone(),
            assessed,
            region_thresholds: self.manifest.region_thresholds.clone(),
        })
    }
    fn crop_scored(&self) -> Option<(String, String)> {
        self.manifest
            .crop_model
            .as_ref()
            .map(|c| (c.finding.clone(), c.file.clone()))
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

/// Several models read as one: the finding and region logits are the members' means; everything
/// else (boxes, heatmaps, embeddings, text, tokenizer, operating point) is the first member's,
/// the primary. A member whose input is smaller than the primary's gets the primary's input
/// area-averaged down to its size (a larger one is refused). For measuring what an ensemble would
/// bring before building one into a bundle.
pub struct Ensemble {
    pub members: Vec<Box<dyn EvalModel>>,
}

impl Ensemble {
    pub fn new(members: Vec<Box<dyn EvalModel>>) -> Result<Self, EvalError> {
        let primary = members
            .first()
            .ok_or_else(|| EvalError::Invalid("an ensemble needs at least one model".into()))?;
        let size = primary.input_size();
        if let Some(m) = members.iter().find(|m| m.input_size() > size) {
            return Err(EvalError::Invalid(format!(
                "{} takes {} px, more than the primary's {size}: put the largest model first",
                m.describe(),
                m.input_size()
            )));
        }
        Ok(Self { members })
    }
}

impl EvalModel for Ensemble {
    fn input_size(&self) -> usize {
        self.members[0].input_size()
    }
    fn max_tokens(&self) -> usize {
        self.members[0].max_tokens()
    }
    fn grid(&self) -> usize {
        self.members[0].grid()
    }
    fn tokenizer(&self) -> &TextTokenizer {
        self.members[0].tokenizer()
    }
    fn images(&self, pixels: &[f32], n: usize) -> Result<Vec<ImagePrediction>, EvalError> {
        let s = self.input_size();
        let mut out = self.members[0].images(pixels, n)?;
        for m in &self.members[1..] {
            let t = m.input_size();
            let resized: std::borrow::Cow<[f32]> = if t == s {
                pixels.into()
            } else {
                pixels
                    .chunks(s * s)
                    .flat_map(|img| {
                        asg_dicom::area_resize(img, s as u32, s as u32, t as u32, t as u32)
                    })
                    .collect::<Vec<f32>>()
                    .into()
            };
            for (acc, p) in out.iter_mut().zip(m.images(&resized, n)?) {
                if acc.finding_logits.len() != p.finding_logits.len()
                    || acc.region_logits.len() != p.region_logits.len()
                {
                    return Err(EvalError::Invalid(format!(
                        "{} has other findings or regions than {}",
                        m.describe(),
                        self.members[0].describe()
                    )));
                }
                acc.finding_logits
                    .iter_mut()
                    .zip(&p.finding_logits)
                    .for_each(|(a, b)| *a += b);
                acc.region_logits
                    .iter_mut()
                    .zip(&p.region_logits)
                    .for_each(|(a, b)| *a += b);
            }
        }
        let k = self.members.len() as f32;
        for p in &mut out {
            p.finding_logits.iter_mut().for_each(|v| *v /= k);
            p.region_logits.iter_mut().for_each(|v| *v /= k);
        }
        Ok(out)
    }
    fn text(&self, inputs: &TextInputs) -> Result<(Vec<f32>, Vec<f32>), EvalError> {
        self.members[0].text(inputs)
    }
    fn describe(&self) -> String {
        let names: Vec<String> = self.members.iter().map(|m| m.describe()).collect();
        format!(
            "ensemble (mean finding and region logits; boxes, maps and text from the first) of {}",
            names.join(" + ")
        )
    }
    fn operating_point(&self) -> Option<OperatingPoint> {
        self.members[0].operating_point()
    }
}
