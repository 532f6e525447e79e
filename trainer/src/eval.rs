//! `asg-train eval`: the paper's protocols and the viewer's questions, measured on a split of a
//! data set in the Chest ImaGenome layout, for a Candle run or an exported bundle (run by tract,
//! so the numbers are those of what the plugin runs).
//!
//! Labels come from the reports (as in training: the parser's tags, uncertain counted as
//! positive), boxes from the scene graphs. Metrics (see [`crate::metrics`]):
//! - image-level AUROC per finding (tag decoder logits) and region-level AUROC per finding
//!   (region logits over the predicted boxes, pooled over every region with a true box);
//! - anatomy box IoU per region;
//! - the pointing game: the peak of a finding's attention map (and, separately, of its
//!   region-head map) lies in a true box of a region
//!   whose report sentence has the finding;
//! - image <-> report retrieval R@1/5/10 (identical reports count as one);
//! - zero-shot AUROC: similarity to "there is {finding}" minus similarity to "no {finding}";
//! - linear probing: logistic regression on frozen pooled features trained on 1%, 10% and 100%
//!   of the training split (several seeds at 1% and 10%), AUROC on the evaluated split.

use crate::asg::{AsgModel, FINDINGS, REGIONS};
use crate::config::Config;
use crate::data::{self, Record, Split};
use crate::export::{image_outputs, text_inputs, text_outputs, TextInputs};
use crate::metrics::{auroc, iou, mean_std, pointing_hit, recall_at, Logistic};
use asg_report::TextTokenizer;
use candle_core::{Device, Tensor};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Mutex;
use tract_onnx::prelude::*;

/// Errors of an evaluation.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    #[error(transparent)]
    Data(#[from] data::DataError),
    #[error(transparent)]
    Train(#[from] crate::train::TrainError),
    #[error("{path}: {reason}")]
    Bundle { path: String, reason: String },
    #[error("{0}")]
    Invalid(String),
}

/// One image's outputs, flattened per output.
#[derive(Debug, Clone)]
pub struct ImagePrediction {
    pub embedding: Vec<f32>,
    pub features: Vec<f32>,
    pub finding_logits: Vec<f32>,
    /// `[findings, cells]`.
    pub tag_attention: Vec<f32>,
    /// `[regions, 4]` in 0..1 of the model input.
    pub boxes: Vec<f32>,
    pub region_embeddings: Vec<f32>,
    /// `[regions, findings]`.
    pub region_logits: Vec<f32>,
    /// `[findings, cells]`: the region head per cell (class activation maps).
    pub finding_maps: Vec<f32>,
}

/// A model to evaluate: Candle weights or an ONNX bundle.
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
    pub fn load(dir: &Path) -> Result<Self, EvalError> {
        let err = |path: &Path, reason: String| EvalError::Bundle {
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
        let verify = |name: &str| -> Result<Vec<u8>, EvalError> {
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

    fn text_plan(&self, k: usize) -> Result<Plan, EvalError> {
        let mut plans = self
            .text_plans
            .lock()
            .map_err(|_| EvalError::Invalid("text plan cache poisoned".into()))?;
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
            .map_err(|e| EvalError::Bundle {
                path: self.source.clone(),
                reason: format!("text.onnx: {e:#}"),
            })?;
        plans.insert(k, plan.clone());
        Ok(plan)
    }
}

fn tract_err(e: impl std::fmt::Display) -> EvalError {
    EvalError::Invalid(format!("tract: {e}"))
}

fn values(v: &TValue) -> Result<Vec<f32>, EvalError> {
    Ok(v.to_plain_array_view::<f32>()
        .map_err(tract_err)?
        .iter()
        .copied()
        .collect())
}

impl EvalModel for OnnxBundle {
    fn input_size(&self) -> usize {
        self.manifest.input.size as usize
    }
    fn max_tokens(&self) -> usize {
        self.max_tokens
    }
    fn grid(&self) -> usize {
        self.grid
    }
    fn tokenizer(&self) -> &TextTokenizer {
        &self.tokenizer
    }
    fn images(&self, pixels: &[f32], n: usize) -> Result<Vec<ImagePrediction>, EvalError> {
        let s = self.input_size();
        let mut out = Vec::with_capacity(n);
        for img in pixels.chunks(s * s).take(n) {
            let x = tract_ndarray::ArrayD::from_shape_vec(vec![1, 1, s, s], img.to_vec())
                .map_err(tract_err)?
                .into_tensor();
            let o = self.image.run(tvec!(x.into())).map_err(tract_err)?;
            if o.len() < 8 {
                return Err(EvalError::Invalid(format!(
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
                return Err(EvalError::Invalid(format!(
                    "{}: image.onnx gave {got} values where {want} were expected",
                    self.source
                )));
            }
            out.push(p);
        }
        Ok(out)
    }
    fn text(&self, inputs: &TextInputs) -> Result<(Vec<f32>, Vec<f32>), EvalError> {
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
    fn describe(&self) -> String {
        format!(
            "bundle {} ({} {}) run by tract",
            self.source, self.manifest.name, self.manifest.version
        )
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

/// What to evaluate.
#[derive(Debug, Clone)]
pub struct EvalOptions {
    pub split: Split,
    /// Evaluate at most this many studies of the split (0: all).
    pub limit: usize,
    /// Run the linear probes (needs features of the training split).
    pub linear_probe: bool,
    /// Seeds for the 1% and 10% probes.
    pub probe_seeds: u64,
    /// Images per forward pass.
    pub batch: usize,
}

impl Default for EvalOptions {
    fn default() -> Self {
        Self {
            split: Split::Test,
            limit: 0,
            linear_probe: true,
            probe_seeds: 5,
            batch: 16,
        }
    }
}

/// A per-finding (or per-region) metric with its mean over the defined values.
#[derive(Debug, Clone, Serialize)]
pub struct PerName {
    /// Mean over the names where the metric is defined.
    pub mean: Option<f64>,
    /// How many names it is defined for.
    pub defined: usize,
    pub values: BTreeMap<String, Option<f64>>,
}

impl PerName {
    fn new(names: &[String], values: Vec<Option<f64>>) -> Self {
        let defined: Vec<f64> = values.iter().flatten().copied().collect();
        Self {
            mean: (!defined.is_empty()).then(|| defined.iter().sum::<f64>() / defined.len() as f64),
            defined: defined.len(),
            values: names.iter().cloned().zip(values).collect(),
        }
    }
}

/// Linear-probe AUROC at one label fraction.
#[derive(Debug, Clone, Serialize)]
pub struct ProbeResult {
    /// Share of the training split used.
    pub fraction: f64,
    /// Training images per seed.
    pub train_images: usize,
    /// Mean AUROC over findings, per seed.
    pub per_seed: Vec<Option<f64>>,
    pub mean: f64,
    pub std: f64,
}

/// Everything `asg-train eval` measures.
#[derive(Debug, Clone, Serialize)]
pub struct EvalReport {
    pub model: String,
    pub data: String,
    pub split: String,
    pub images: usize,
    /// Positive images per finding in the evaluated split.
    pub positives: BTreeMap<String, usize>,
    pub image_auroc: PerName,
    pub region_auroc: PerName,
    pub box_iou: PerName,
    /// With the tag decoder's attention as the heatmap.
    pub pointing_game: PerName,
    /// (hits, cases) over all findings.
    pub pointing_overall: (usize, usize),
    /// With the region head's class activation maps (`finding_maps`) as the heatmap.
    pub pointing_game_cam: PerName,
    pub pointing_overall_cam: (usize, usize),
    pub retrieval_image_to_report: BTreeMap<String, f64>,
    pub retrieval_report_to_image: BTreeMap<String, f64>,
    pub zero_shot_auroc: PerName,
    pub linear_probe: Vec<ProbeResult>,
    pub seconds: f64,
}

/// An evaluated example: model-input labels and boxes, and the report's text.
struct Truth {
    tags: Vec<f32>,
    region_targets: Vec<f32>,
    boxes: Vec<[f32; 4]>,
    present: Vec<bool>,
    report: String,
    ids: Vec<u32>,
}

fn config_for(model: &dyn EvalModel) -> Config {
    let mut c = Config::default();
    c.model.input_size = model.input_size();
    c.model.max_tokens = model.max_tokens();
    c.train.uncertain_as = 1.0;
    c
}

/// Predictions and truths of records (prepared without augmentation).
fn predict(
    model: &dyn EvalModel,
    records: &[&Record],
    batch: usize,
) -> Result<(Vec<ImagePrediction>, Vec<Truth>), EvalError> {
    let config = config_for(model);
    let s = model.input_size();
    let mut preds = Vec::with_capacity(records.len());
    let mut truths = Vec::with_capacity(records.len());
    for chunk in records.chunks(batch.max(1)) {
        let mut pixels = Vec::with_capacity(chunk.len() * s * s);
        for r in chunk {
            let e = data::prepare(r, model.tokenizer(), &config, None)?;
            pixels.extend_from_slice(&e.image);
            let report = std::fs::read_to_string(&r.report)
                .map_err(|e| EvalError::Invalid(format!("{}: {e}", r.report.display())))?;
            truths.push(Truth {
                tags: e.tags,
                region_targets: e.region_targets,
                boxes: e.boxes,
                present: e.box_present,
                report: report.split_whitespace().collect::<Vec<_>>().join(" "),
                ids: e.ids,
            });
        }
        preds.extend(model.images(&pixels, chunk.len())?);
    }
    Ok((preds, truths))
}

fn report_embedding(model: &dyn EvalModel, ids: &[u32]) -> Result<Vec<f32>, EvalError> {
    let inputs = text_inputs(ids, &[vec![0]], model.max_tokens());
    Ok(model.text(&inputs)?.0)
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Runs the evaluation of `model` on `data` (Chest ImaGenome layout).
pub fn evaluate(
    model: &dyn EvalModel,
    data_root: &Path,
    options: &EvalOptions,
    progress: &dyn Fn(&str),
) -> Result<EvalReport, EvalError> {
    let start = std::time::Instant::now();
    let dataset = data::scan(data_root)?;
    let mut records: Vec<&Record> = dataset
        .records
        .iter()
        .filter(|r| r.split == options.split)
        .collect();
    if options.limit > 0 {
        records.truncate(options.limit);
    }
    if records.is_empty() {
        return Err(EvalError::Invalid(format!(
            "{}: no studies in the {:?} split",
            data_root.display(),
            options.split
        )));
    }
    let findings: Vec<String> = asg_report::FINDINGS.iter().map(|f| f.to_string()).collect();
    let regions: Vec<String> = asg_report::REGIONS
        .iter()
        .map(|r| r.name.to_string())
        .collect();
    if findings.len() != FINDINGS || regions.len() != REGIONS {
        return Err(EvalError::Invalid(
            "vocabulary and model sizes differ".into(),
        ));
    }
    progress(&format!("predicting {} images", records.len()));
    let (preds, truths) = predict(model, &records, options.batch)?;
    let n = preds.len();
    let g = model.grid();

    let label = |t: &Truth, f: usize| t.tags[f] > 0.5;
    let positives = findings
        .iter()
        .enumerate()
        .map(|(f, name)| (name.clone(), truths.iter().filter(|t| label(t, f)).count()))
        .collect();

    // Image- and region-level AUROC.
    let image_auroc = (0..FINDINGS)
        .map(|f| {
            let s: Vec<f32> = preds.iter().map(|p| p.finding_logits[f]).collect();
            let l: Vec<bool> = truths.iter().map(|t| label(t, f)).collect();
            auroc(&s, &l)
        })
        .collect();
    let region_auroc = (0..FINDINGS)
        .map(|f| {
            let mut s = Vec::new();
            let mut l = Vec::new();
            for (p, t) in preds.iter().zip(&truths) {
                for r in 0..REGIONS {
                    if t.present[r] {
                        s.push(p.region_logits[r * FINDINGS + f]);
                        l.push(t.region_targets[r * FINDINGS + f] > 0.5);
                    }
                }
            }
            auroc(&s, &l)
        })
        .collect();

    // Anatomy boxes.
    let box_iou = (0..REGIONS)
        .map(|r| {
            let v: Vec<f64> = preds
                .iter()
                .zip(&truths)
                .filter(|(_, t)| t.present[r])
                .map(|(p, t)| {
                    let b = &p.boxes[r * 4..r * 4 + 4];
                    iou([b[0], b[1], b[2], b[3]], t.boxes[r])
                })
                .collect();
            (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
        })
        .collect();

    // Pointing game, for both heatmaps.
    let cells = g * g;
    let pointing_of = |map: &dyn Fn(&ImagePrediction) -> &[f32]| {
        let mut overall = (0usize, 0usize);
        let per: Vec<Option<f64>> = (0..FINDINGS)
            .map(|f| {
                let (mut hits, mut cases) = (0usize, 0usize);
                for (p, t) in preds.iter().zip(&truths) {
                    let boxes: Vec<[f32; 4]> = (0..REGIONS)
                        .filter(|&r| t.present[r] && t.region_targets[r * FINDINGS + f] > 0.5)
                        .map(|r| t.boxes[r])
                        .collect();
                    let Some(heat) = map(p).get(f * cells..(f + 1) * cells) else {
                        continue;
                    };
                    if let Some(hit) = pointing_hit(heat, g, &boxes) {
                        cases += 1;
                        hits += hit as usize;
                    }
                }
                overall.0 += hits;
                overall.1 += cases;
                (cases > 0).then(|| hits as f64 / cases as f64)
            })
            .collect();
        (per, overall)
    };
    let (pointing, overall) = pointing_of(&|p| &p.tag_attention);
    let (pointing_cam, overall_cam) = pointing_of(&|p| &p.finding_maps);

    // Retrieval.
    progress("embedding reports");
    let mut reports = Vec::with_capacity(n);
    for t in &truths {
        reports.extend(report_embedding(model, &t.ids)?);
    }
    let e = reports.len() / n.max(1);
    let images: Vec<f32> = preds.iter().flat_map(|p| p.embedding.clone()).collect();
    let mut group_of: HashMap<&str, usize> = HashMap::new();
    let groups: Vec<usize> = truths
        .iter()
        .map(|t| {
            let next = group_of.len();
            *group_of.entry(t.report.as_str()).or_insert(next)
        })
        .collect();
    let ks = [1, 5, 10];
    let named = |v: Vec<f64>| -> BTreeMap<String, f64> {
        ks.iter().map(|k| format!("R@{k}")).zip(v).collect()
    };
    let i2t = named(recall_at(&images, &reports, e, &groups, &ks));
    let t2i = named(recall_at(&reports, &images, e, &groups, &ks));

    // Zero-shot classification from prompts.
    progress("zero-shot prompts");
    let mut zero_shot = Vec::with_capacity(FINDINGS);
    for (f, name) in findings.iter().enumerate() {
        let prompt = |text: &str| -> Result<Vec<f32>, EvalError> {
            let enc = model.tokenizer().encode(text, model.max_tokens());
            report_embedding(model, &enc.ids)
        };
        let pos = prompt(&format!("FINDINGS: There is {name}."))?;
        let neg = prompt(&format!("FINDINGS: No {name}."))?;
        let s: Vec<f32> = preds
            .iter()
            .map(|p| dot(&p.embedding, &pos) - dot(&p.embedding, &neg))
            .collect();
        let l: Vec<bool> = truths.iter().map(|t| label(t, f)).collect();
        zero_shot.push(auroc(&s, &l));
    }

    // Linear probes on frozen features.
    let mut probes = Vec::new();
    if options.linear_probe {
        let train: Vec<&Record> = dataset
            .records
            .iter()
            .filter(|r| r.split == Split::Train)
            .collect();
        if train.is_empty() {
            return Err(EvalError::Invalid(format!(
                "{}: no training split for the linear probe (use --no-probe)",
                data_root.display()
            )));
        }
        progress(&format!("features of {} training images", train.len()));
        let (train_preds, train_truths) = predict(model, &train, options.batch)?;
        let test_x: Vec<Vec<f64>> = preds
            .iter()
            .map(|p| p.features.iter().map(|&v| v as f64).collect())
            .collect();
        for (fraction, seeds) in [
            (0.01, options.probe_seeds),
            (0.1, options.probe_seeds),
            (1.0, 1),
        ] {
            let take = ((train.len() as f64 * fraction).round() as usize).clamp(2, train.len());
            let mut per_seed = Vec::new();
            for seed in 0..seeds.max(1) {
                let order = data::epoch_order(train.len(), 1000 + seed, 0);
                let chosen: Vec<usize> = order.into_iter().take(take).collect();
                per_seed.push(probe(
                    &chosen,
                    &train_preds,
                    &train_truths,
                    &test_x,
                    &truths,
                ));
            }
            let vals: Vec<f64> = per_seed.iter().flatten().copied().collect();
            let (mean, std) = mean_std(&vals);
            progress(&format!("linear probe {:.0}%: {mean:.3}", fraction * 100.0));
            probes.push(ProbeResult {
                fraction,
                train_images: take,
                per_seed,
                mean,
                std,
            });
        }
    }

    Ok(EvalReport {
        model: model.describe(),
        data: data_root.display().to_string(),
        split: format!("{:?}", options.split).to_lowercase(),
        images: n,
        positives,
        image_auroc: PerName::new(&findings, image_auroc),
        region_auroc: PerName::new(&findings, region_auroc),
        box_iou: PerName::new(&regions, box_iou),
        pointing_game: PerName::new(&findings, pointing),
        pointing_overall: overall,
        pointing_game_cam: PerName::new(&findings, pointing_cam),
        pointing_overall_cam: overall_cam,
        retrieval_image_to_report: i2t,
        retrieval_report_to_image: t2i,
        zero_shot_auroc: PerName::new(&findings, zero_shot),
        linear_probe: probes,
        seconds: start.elapsed().as_secs_f64(),
    })
}

/// Mean test AUROC over findings of logistic regressions trained on the `chosen` training
/// examples (features standardised on them; L2 1e-2 relative to the mean loss). A finding with
/// one class in the chosen set gets a constant score (AUROC 0.5 where defined).
fn probe(
    chosen: &[usize],
    train: &[ImagePrediction],
    train_truths: &[Truth],
    test_x: &[Vec<f64>],
    test_truths: &[Truth],
) -> Option<f64> {
    let d = train.first()?.features.len();
    let n = chosen.len();
    let mut mean = vec![0.0f64; d];
    for &i in chosen {
        for (m, v) in mean.iter_mut().zip(&train[i].features) {
            *m += *v as f64 / n as f64;
        }
    }
    let mut sd = vec![0.0f64; d];
    for &i in chosen {
        for ((s, v), m) in sd.iter_mut().zip(&train[i].features).zip(&mean) {
            *s += (*v as f64 - m).powi(2) / n as f64;
        }
    }
    let sd: Vec<f64> = sd.iter().map(|s| s.sqrt().max(1e-6)).collect();
    let standard = |row: &[f64]| -> Vec<f64> {
        row.iter()
            .zip(&mean)
            .zip(&sd)
            .map(|((v, m), s)| (v - m) / s)
            .collect()
    };
    let x: Vec<f64> = chosen
        .iter()
        .flat_map(|&i| {
            let row: Vec<f64> = train[i].features.iter().map(|&v| v as f64).collect();
            standard(&row)
        })
        .collect();
    let tx: Vec<f64> = test_x.iter().flat_map(|r| standard(r)).collect();
    let mut aurocs = Vec::new();
    for f in 0..FINDINGS {
        let y: Vec<bool> = chosen
            .iter()
            .map(|&i| train_truths[i].tags[f] > 0.5)
            .collect();
        let model = Logistic::fit(&x, &y, d, 1e-2, 15);
        let scores: Vec<f32> = model.decision(&tx).iter().map(|&v| v as f32).collect();
        let labels: Vec<bool> = test_truths.iter().map(|t| t.tags[f] > 0.5).collect();
        if let Some(a) = auroc(&scores, &labels) {
            aurocs.push(a);
        }
    }
    (!aurocs.is_empty()).then(|| aurocs.iter().sum::<f64>() / aurocs.len() as f64)
}

fn fmt(v: Option<f64>) -> String {
    v.map(|x| format!("{x:.3}")).unwrap_or_else(|| "—".into())
}

impl EvalReport {
    /// The report as printed tables (Markdown).
    pub fn table(&self) -> String {
        let mut s = String::new();
        s += &format!(
            "Evaluation of {} on {} ({} split, {} images, {:.0} s)\n\n",
            self.model, self.data, self.split, self.images, self.seconds
        );
        s += "| metric | value | defined for |\n|---|---|---|\n";
        let row = |name: &str, p: &PerName, of: &str| {
            format!("| {name} | {} | {} {of} |\n", fmt(p.mean), p.defined)
        };
        s += &row("image-level AUROC (mean)", &self.image_auroc, "findings");
        s += &row("region-level AUROC (mean)", &self.region_auroc, "findings");
        s += &row("zero-shot AUROC (mean)", &self.zero_shot_auroc, "findings");
        s += &row("anatomy box IoU (mean)", &self.box_iou, "regions");
        s += &row(
            "pointing game, tag attention (mean over findings)",
            &self.pointing_game,
            "findings",
        );
        let (h, c) = self.pointing_overall;
        s += &format!(
            "| pointing game, tag attention (all cases) | {} | {c} cases |\n",
            fmt((c > 0).then(|| h as f64 / c as f64))
        );
        s += &row(
            "pointing game, region-head maps (mean over findings)",
            &self.pointing_game_cam,
            "findings",
        );
        let (h, c) = self.pointing_overall_cam;
        s += &format!(
            "| pointing game, region-head maps (all cases) | {} | {c} cases |\n",
            fmt((c > 0).then(|| h as f64 / c as f64))
        );
        for (dir, m) in [
            ("image → report", &self.retrieval_image_to_report),
            ("report → image", &self.retrieval_report_to_image),
        ] {
            for k in ["R@1", "R@5", "R@10"] {
                if let Some(v) = m.get(k) {
                    s += &format!(
                        "| retrieval {dir} {k} | {v:.3} | {} queries |\n",
                        self.images
                    );
                }
            }
        }
        for p in &self.linear_probe {
            s += &format!(
                "| linear probe {}% labels ({} images, {} seed{}) | {:.3} ± {:.3} | |\n",
                p.fraction * 100.0,
                p.train_images,
                p.per_seed.len(),
                if p.per_seed.len() == 1 { "" } else { "s" },
                p.mean,
                p.std
            );
        }
        s += "\n| finding | positives | image AUROC | region AUROC | zero-shot AUROC | pointing (attention) | pointing (maps) |\n|---|---|---|---|---|---|---|\n";
        for (name, pos) in &self.positives {
            let get = |p: &PerName| fmt(p.values.get(name).copied().flatten());
            s += &format!(
                "| {name} | {pos} | {} | {} | {} | {} | {} |\n",
                get(&self.image_auroc),
                get(&self.region_auroc),
                get(&self.zero_shot_auroc),
                get(&self.pointing_game),
                get(&self.pointing_game_cam)
            );
        }
        s += "\n| region | box IoU |\n|---|---|\n";
        for (name, v) in &self.box_iou.values {
            s += &format!("| {name} | {} |\n", fmt(*v));
        }
        s
    }

    /// Flat metrics for a bundle manifest.
    pub fn summary(&self) -> BTreeMap<String, f64> {
        let mut m = BTreeMap::new();
        let mut put = |k: &str, v: Option<f64>| {
            if let Some(v) = v {
                m.insert(k.to_string(), v);
            }
        };
        put("image_auroc_mean", self.image_auroc.mean);
        put("region_auroc_mean", self.region_auroc.mean);
        put("zero_shot_auroc_mean", self.zero_shot_auroc.mean);
        put("box_iou_mean", self.box_iou.mean);
        put("pointing_game_attention_mean", self.pointing_game.mean);
        put("pointing_game_maps_mean", self.pointing_game_cam.mean);
        for (k, v) in &self.retrieval_image_to_report {
            put(&format!("retrieval_i2t_{k}"), Some(*v));
        }
        for p in &self.linear_probe {
            put(
                &format!("linear_probe_{}pct", p.fraction * 100.0),
                Some(p.mean),
            );
        }
        put("test_images", Some(self.images as f64));
        m
    }
}

/// Probability thresholds per finding name: image level (tag decoder) and region level.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Thresholds {
    pub image: BTreeMap<String, f32>,
    pub region: BTreeMap<String, f32>,
    /// The report check's confident and doubtful bars.
    pub check: Option<asg_bundle::CheckThresholds>,
}

impl Thresholds {
    /// 0.5 for every finding at both levels.
    pub fn half() -> Self {
        let all: BTreeMap<String, f32> = asg_report::FINDINGS
            .iter()
            .map(|f| (f.to_string(), 0.5))
            .collect();
        Self {
            image: all.clone(),
            region: all,
            check: None,
        }
    }
}

/// The probability with the best F1 over `(logit, label)` pairs (ties: the higher threshold),
/// clamped to 0.01..=0.99; 0.5 when there is no positive.
pub fn best_f1_threshold(mut pairs: Vec<(f32, bool)>) -> f32 {
    let total_pos = pairs.iter().filter(|p| p.1).count();
    if total_pos == 0 {
        return 0.5;
    }
    for p in pairs.iter_mut() {
        p.0 = 1.0 / (1.0 + (-p.0).exp());
    }
    pairs.sort_by(|a, b| b.0.total_cmp(&a.0));
    let (mut tp, mut fp) = (0usize, 0usize);
    let (mut best, mut best_t) = (-1.0f64, 0.5f32);
    for (i, &(p, pos)) in pairs.iter().enumerate() {
        if pos {
            tp += 1;
        } else {
            fp += 1;
        }
        // Only cut between distinct probabilities.
        if pairs.get(i + 1).is_some_and(|n| n.0 == p) {
            continue;
        }
        let f1 = 2.0 * tp as f64 / (2 * tp + fp + (total_pos - tp)) as f64;
        if f1 > best {
            best = f1;
            best_t = p;
        }
    }
    best_t.clamp(0.01, 0.99)
}

/// The lowest probability above which at least `precision` of the pairs are positive (1.0 when
/// no cut reaches it; 0.5 without positives).
pub fn precision_threshold(mut pairs: Vec<(f32, bool)>, precision: f64) -> f32 {
    if !pairs.iter().any(|p| p.1) {
        return 0.5;
    }
    for p in pairs.iter_mut() {
        p.0 = 1.0 / (1.0 + (-p.0).exp());
    }
    pairs.sort_by(|a, b| b.0.total_cmp(&a.0));
    let (mut tp, mut n) = (0usize, 0usize);
    let mut best = 1.0f32;
    for (i, &(p, pos)) in pairs.iter().enumerate() {
        n += 1;
        tp += pos as usize;
        if pairs.get(i + 1).is_some_and(|next| next.0 == p) {
            continue;
        }
        if tp as f64 / n as f64 >= precision {
            best = p;
        }
    }
    best
}

/// The probability below which only `miss` of the positives fall (0.5 without positives).
pub fn recall_threshold(pairs: Vec<(f32, bool)>, miss: f64) -> f32 {
    let mut pos: Vec<f32> = pairs
        .iter()
        .filter(|p| p.1)
        .map(|p| 1.0 / (1.0 + (-p.0).exp()))
        .collect();
    if pos.is_empty() {
        return 0.5;
    }
    pos.sort_by(|a, b| a.total_cmp(b));
    pos[((pos.len() as f64 * miss).floor() as usize).min(pos.len() - 1)]
}

/// Per finding, the image-level and region-level thresholds with the best F1 on `split`.
pub fn choose_thresholds(
    model: &dyn EvalModel,
    data_root: &Path,
    split: Split,
    batch: usize,
) -> Result<Thresholds, EvalError> {
    let dataset = data::scan(data_root)?;
    let records: Vec<&Record> = dataset
        .records
        .iter()
        .filter(|r| r.split == split)
        .collect();
    if records.is_empty() {
        return Err(EvalError::Invalid(format!(
            "{}: no studies in the {split:?} split to choose thresholds on",
            data_root.display()
        )));
    }
    let (preds, truths) = predict(model, &records, batch)?;
    let mut out = Thresholds::default();
    let mut check = asg_bundle::CheckThresholds::default();
    for (f, name) in asg_report::FINDINGS.iter().enumerate() {
        let image: Vec<(f32, bool)> = preds
            .iter()
            .zip(&truths)
            .map(|(p, t)| (p.finding_logits[f], t.tags[f] > 0.5))
            .collect();
        let mut region = Vec::new();
        for (p, t) in preds.iter().zip(&truths) {
            for r in 0..REGIONS {
                if t.present[r] {
                    region.push((
                        p.region_logits[r * FINDINGS + f],
                        t.region_targets[r * FINDINGS + f] > 0.5,
                    ));
                }
            }
        }
        let key = name.to_string();
        check
            .image_confident
            .insert(key.clone(), precision_threshold(image.clone(), 0.9));
        check
            .image_doubtful
            .insert(key.clone(), recall_threshold(image.clone(), 0.1));
        check
            .region_confident
            .insert(key.clone(), precision_threshold(region.clone(), 0.9));
        check
            .region_doubtful
            .insert(key.clone(), recall_threshold(region.clone(), 0.1));
        out.image.insert(key.clone(), best_f1_threshold(image));
        out.region.insert(key, best_f1_threshold(region));
    }
    out.check = Some(check);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn logit(p: f32) -> f32 {
        (p / (1.0 - p)).ln()
    }

    #[test]
    fn the_best_f1_threshold_of_a_hand_case() {
        // Cuts at 0.9: F1 2/3; 0.8: 1/2; 0.7: 4/5; 0.2: 2/3.
        let pairs = vec![
            (logit(0.9), true),
            (logit(0.8), false),
            (logit(0.7), true),
            (logit(0.2), false),
        ];
        assert!((best_f1_threshold(pairs) - 0.7).abs() < 1e-5);
        assert_eq!(best_f1_threshold(vec![(0.0, false), (1.0, false)]), 0.5);
    }

    #[test]
    fn precision_and_recall_bars_of_a_hand_case() {
        // Probabilities 0.9 (+), 0.8 (+), 0.7 (-), 0.6 (+), 0.2 (-).
        let pairs = vec![
            (logit(0.9), true),
            (logit(0.8), true),
            (logit(0.7), false),
            (logit(0.6), true),
            (logit(0.2), false),
        ];
        // Precision at cuts: 0.9 -> 1, 0.8 -> 1, 0.7 -> 2/3, 0.6 -> 3/4, 0.2 -> 3/5.
        assert!((precision_threshold(pairs.clone(), 0.9) - 0.8).abs() < 1e-5);
        assert!((precision_threshold(pairs.clone(), 0.7) - 0.6).abs() < 1e-5);
        assert_eq!(
            precision_threshold(vec![(0.0, false), (2.0, false)], 0.9),
            0.5
        );
        assert_eq!(
            precision_threshold(vec![(2.0, false), (0.0, true)], 0.9),
            1.0
        );
        // Positives 0.6, 0.8, 0.9: the lowest third falls below 0.8.
        assert!((recall_threshold(pairs.clone(), 0.1) - 0.6).abs() < 1e-5);
        assert!((recall_threshold(pairs, 0.34) - 0.8).abs() < 1e-5);
    }
}
