//! One evaluation of a model on a split: predictions, the metrics, the report as a table.

use crate::config::Config;
use crate::data::masks::LesionMap;
use crate::data::{self, Record, Split};
use crate::eval::error::EvalError;
use crate::eval::metrics::{
    auroc, bootstrap_auroc, iou, mean_std, peak_cell, pointing_hit, pointing_share, recall_at,
    wilson_interval, Logistic,
};
use crate::eval::models::EvalModel;
use crate::export::io::{text_inputs, ImagePrediction};
use crate::vocab::{FINDINGS, REGIONS};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

/// The splits' names joined by "+" ("validate+test").
pub fn split_names(splits: &[Split]) -> String {
    splits
        .iter()
        .map(|s| format!("{s:?}").to_lowercase())
        .collect::<Vec<_>>()
        .join("+")
}

/// What to evaluate.
#[derive(Debug, Clone)]
pub struct EvalOptions {
    /// The splits evaluated together (e.g. validation and test pooled, for a larger held-out set
    /// of a model whose choice did not look at the validation split).
    pub splits: Vec<Split>,
    /// Evaluate at most this many studies of the split (0: all).
    pub limit: usize,
    /// Run the linear probes (needs features of the training split).
    pub linear_probe: bool,
    /// Seeds for the 1% and 10% probes.
    pub probe_seeds: u64,
    /// Images per forward pass.
    pub batch: usize,
    /// Where to write each film's predictions and labels (JSON lines, see
    /// [`write_predictions`]), for analyses of one's own.
    pub predictions: Option<std::path::PathBuf>,
}

impl Default for EvalOptions {
    fn default() -> Self {
        Self {
            splits: vec![Split::Test],
            limit: 0,
            linear_probe: true,
            probe_seeds: 5,
            batch: 16,
            predictions: None,
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
    /// On films with labels given by experts (the realcxr layout): what the real-film goals
    /// are measured by.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub real_films: Option<RealFilmReport>,
    pub seconds: f64,
}

/// What real films with expert labels measure (the partial labels each film has).
#[derive(Debug, Clone, Serialize)]
pub struct RealFilmReport {
    /// Anatomy box IoU per source (jsrt, ieee, brixia) and region.
    pub box_iou_by_source: BTreeMap<String, PerName>,
    /// Region-level opacity AUROC over the six lung zones (Brixia scores, radiologist masks).
    pub zone_opacity_auroc: Option<f64>,
    pub zone_opacity_cases: usize,
    /// Image-level nodule AUROC (JSRT nodule films against JSRT non-nodule films), of the
    /// image model's nodule score.
    pub nodule_auroc: Option<f64>,
    /// The bundle's lung-crop model file when it, not the image model, scores nodule in the
    /// product: `nodule_auroc` is then not the product's figure (see
    /// [`EvalModel::crop_scored`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nodule_scored_by: Option<String>,
    /// 95% intervals of the three AUROCs (percentile bootstrap over films, a film's zones
    /// drawn together) and of the share of normal films left clean (Wilson): the test splits
    /// are small, and these say how small.
    pub zone_opacity_ci: Option<(f64, f64)>,
    pub nodule_ci: Option<(f64, f64)>,
    pub abnormal_ci: Option<(f64, f64)>,
    pub normal_clean_ci: Option<(f64, f64)>,
    /// Films read as normal, and those with no assessed finding at or above its image-level
    /// threshold (what the viewer, the overlay, the SR, FHIR and the study summaries flag).
    pub normal_films: usize,
    pub normal_clean: usize,
    /// Normal films clean in every region too (the JSON's per-region finding lists).
    pub normal_clean_with_regions: usize,
    /// Copies of the normal films under [`acquisition_stress`], and those left clean: how the
    /// operating point holds on films acquired unlike ours (image level; and in every region).
    pub stressed_normal_films: usize,
    pub stressed_normal_clean: usize,
    pub stressed_normal_clean_with_regions: usize,
    /// Abnormal films with an assessed finding flagged (what the operating point still finds).
    pub abnormal_flagged: usize,
    /// Abnormal (a finding labelled present) against normal films, scored by the assessed
    /// finding furthest above its image-level threshold (in logits): the AUROC, and the two
    /// counts.
    pub abnormal_auroc: Option<f64>,
    /// The same scored by the finding furthest above its threshold on the image or in any
    /// region.
    pub abnormal_auroc_with_regions: Option<f64>,
    pub abnormal_films: usize,
    /// Mask-based pointing game per finding: (hits, cases), a hit when the heatmap's peak cell
    /// overlaps the expert's lesion mask on the film (JSRT nodules: a disc of the nodule's
    /// diameter), for the tag decoder's attention and the region head's maps.
    pub mask_pointing_attention: BTreeMap<String, (usize, usize)>,
    pub mask_pointing_maps: BTreeMap<String, (usize, usize)>,
    /// Where the thresholds come from ("the bundle's manifest" or "0.5").
    pub thresholds: String,
}

/// An evaluated example: model-input labels and boxes, and the report's text.
pub(crate) struct Truth {
    pub(crate) tags: Vec<f32>,
    /// 1 where the film has the tag's label.
    pub(crate) tag_mask: Vec<f32>,
    pub(crate) region_targets: Vec<f32>,
    /// 1 where the film has the region-finding label.
    pub(crate) region_mask: Vec<f32>,
    pub(crate) boxes: Vec<[f32; 4]>,
    pub(crate) present: Vec<bool>,
    pub(crate) report: String,
    pub(crate) ids: Vec<u32>,
    /// Labels given by experts (a real film), and the film's source (its id's prefix).
    pub(crate) given: bool,
    pub(crate) source: String,
    /// A film read as normal (see [`crate::data::GivenLabels::normal`]).
    pub(crate) normal: bool,
    /// Lesions outlined by experts (real films), for the mask-based pointing game.
    pub(crate) lesions: Vec<LesionMap>,
}

fn config_for(model: &dyn EvalModel) -> Config {
    let mut c = Config::default();
    c.model.input_size = model.input_size();
    c.model.max_tokens = model.max_tokens();
    c.train.uncertain_as = 1.0;
    c
}

/// Predictions and truths of records (prepared without augmentation).
pub(crate) fn predict(
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
            let report = r.report_text()?;
            truths.push(Truth {
                tags: e.tags,
                tag_mask: e.tag_mask,
                region_mask: e.region_mask,
                region_targets: e.region_targets,
                boxes: e.boxes,
                present: e.box_present,
                report: report.split_whitespace().collect::<Vec<_>>().join(" "),
                ids: e.ids,
                normal: r.given.as_ref().is_some_and(|g| g.normal),
                given: r.given.is_some(),
                lesions: r.given.as_ref().map_or(Vec::new(), |g| g.lesions.clone()),
                source: r
                    .image_id
                    .split_once('_')
                    .map_or("", |(s, _)| s)
                    .to_string(),
            });
        }
        preds.extend(model.images(&pixels, chunk.len())?);
    }
    Ok((preds, truths))
}

/// One JSON line per film: its id, split and source, whether it is read as normal, the image
/// finding logits and the region-finding logits (`[regions][findings]`), and its labels as the
/// loss sees them (`tags` / `tag_mask` per finding; `region_labels` as
/// `[region, finding, target]` for every region-finding label the film has). No pixels, no
/// report text.
pub(crate) fn write_predictions(
    path: &Path,
    records: &[&Record],
    preds: &[ImagePrediction],
    truths: &[Truth],
) -> Result<(), EvalError> {
    use std::io::Write;
    let write_error = |source| EvalError::Write {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::create(path).map_err(write_error)?;
    let mut out = std::io::BufWriter::new(file);
    for ((r, p), t) in records.iter().zip(preds).zip(truths) {
        let region_logits: Vec<&[f32]> = p.region_logits.chunks(FINDINGS).collect();
        let region_labels: Vec<(usize, usize, f32)> = (0..REGIONS * FINDINGS)
            .filter(|&k| t.region_mask[k] > 0.5)
            .map(|k| (k / FINDINGS, k % FINDINGS, t.region_targets[k]))
            .collect();
        let line = serde_json::json!({
            "id": r.image_id,
            "split": format!("{:?}", r.split).to_lowercase(),
            "source": t.source,
            "normal": t.normal,
            "given": t.given,
            "finding_logits": p.finding_logits,
            "region_logits": region_logits,
            "tags": t.tags,
            "tag_mask": t.tag_mask,
            "region_labels": region_labels,
        });
        writeln!(out, "{line}").map_err(write_error)?;
    }
    out.flush().map_err(write_error)
}

/// The acquisition stress drawn on normal films to measure (and set thresholds against) the
/// films of sources we do not have: somewhat past the training augmentation of
/// `configs/real.toml` in every effect (rotation 10 degrees, display curves gamma 0.5-2.0,
/// zoom 0.85-1.15, 8% shifts, contrast 20%, JPEG round trips, burned-in markers and
/// collimation on half or a third of the copies, edge enhancement and the percentile window of a
/// DICOM without a VOI window on half).
pub fn acquisition_stress() -> crate::config::AugmentConfig {
    crate::config::AugmentConfig {
        scale: [0.85, 1.15],
        shift: 0.08,
        contrast: 0.2,
        noise: 0.03,
        rotation_deg: 10.0,
        gamma: [0.5, 2.0],
        jpeg: 0.5,
        markers: 0.5,
        collimation: 0.3,
        sharpen: 0.5,
        rewindow: 0.5,
        nodules: 0.0,
        ..Default::default()
    }
}

/// The copies of normal films drawn under [`acquisition_stress`] by default.
pub const STRESS_COPIES: usize = 4;

/// Predictions on `copies` copies of each record under [`acquisition_stress`] (seeded, so a
/// run is repeatable).
pub(crate) fn predict_stressed(
    model: &dyn EvalModel,
    records: &[&Record],
    copies: usize,
    batch: usize,
    seed: u64,
) -> Result<Vec<ImagePrediction>, EvalError> {
    use rand::SeedableRng;
    let mut config = config_for(model);
    config.augment = acquisition_stress();
    let s = model.input_size();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let copies: Vec<&Record> = records
        .iter()
        .flat_map(|r| std::iter::repeat_n(*r, copies))
        .collect();
    let mut preds = Vec::with_capacity(copies.len());
    for chunk in copies.chunks(batch.max(1)) {
        let mut pixels = Vec::with_capacity(chunk.len() * s * s);
        for r in chunk {
            let e = data::prepare(r, model.tokenizer(), &config, Some(&mut rng))?;
            pixels.extend_from_slice(&e.image);
        }
        preds.extend(model.images(&pixels, chunk.len())?);
    }
    Ok(preds)
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
    let dataset = data::scan_any(data_root)?;
    let mut records: Vec<&Record> = dataset
        .records
        .iter()
        .filter(|r| options.splits.contains(&r.split))
        .collect();
    if options.limit > 0 {
        records.truncate(options.limit);
    }
    if records.is_empty() {
        return Err(EvalError::Invalid(format!(
            "{}: no studies in the {} split",
            data_root.display(),
            split_names(&options.splits)
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
    if let Some(path) = &options.predictions {
        write_predictions(path, &records, &preds, &truths)?;
    }
    let n = preds.len();
    let g = model.grid();

    let label = |t: &Truth, f: usize| t.tags[f] > 0.5;
    // Labels that a film does not have (real films are labelled in part) are left out.
    let known = |t: &Truth, f: usize| t.tag_mask[f] > 0.5;
    let positives = findings
        .iter()
        .enumerate()
        .map(|(f, name)| (name.clone(), truths.iter().filter(|t| label(t, f)).count()))
        .collect();

    // Image- and region-level AUROC.
    let image_auroc = (0..FINDINGS)
        .map(|f| {
            let pairs = preds.iter().zip(&truths).filter(|(_, t)| known(t, f));
            let (s, l): (Vec<f32>, Vec<bool>) = pairs
                .map(|(p, t)| (p.finding_logits[f], label(t, f)))
                .unzip();
            auroc(&s, &l)
        })
        .collect();
    let region_auroc = (0..FINDINGS)
        .map(|f| {
            let mut s = Vec::new();
            let mut l = Vec::new();
            for (p, t) in preds.iter().zip(&truths) {
                for r in 0..REGIONS {
                    if t.present[r] && t.region_mask[r * FINDINGS + f] > 0.5 {
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

    let real_films = if truths.iter().any(|t| t.given) {
        let normals: Vec<&Record> = records
            .iter()
            .zip(&truths)
            .filter(|(_, t)| t.normal)
            .map(|(r, _)| *r)
            .collect();
        progress(&format!(
            "{} normal films x {STRESS_COPIES} under acquisition stress",
            normals.len()
        ));
        let stressed = predict_stressed(model, &normals, STRESS_COPIES, 16, 0x5EED)?;
        Some(real_film_report(
            model, &preds, &truths, &stressed, &regions,
        ))
    } else {
        None
    };

    Ok(EvalReport {
        model: model.describe(),
        data: data_root.display().to_string(),
        split: split_names(&options.splits),
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
        real_films,
        seconds: start.elapsed().as_secs_f64(),
    })
}

/// The real-film measures (see [`RealFilmReport`]).
fn real_film_report(
    model: &dyn EvalModel,
    preds: &[ImagePrediction],
    truths: &[Truth],
    stressed_normals: &[ImagePrediction],
    regions: &[String],
) -> RealFilmReport {
    let mut by_source: BTreeMap<String, PerName> = BTreeMap::new();
    let sources: std::collections::BTreeSet<&str> = truths
        .iter()
        .filter(|t| t.given)
        .map(|t| t.source.as_str())
        .collect();
    for s in sources {
        let iou_of = |r: usize| {
            let v: Vec<f64> = preds
                .iter()
                .zip(truths)
                .filter(|(_, t)| t.given && t.source == s && t.present[r])
                .map(|(p, t)| {
                    let b = &p.boxes[r * 4..r * 4 + 4];
                    iou([b[0], b[1], b[2], b[3]], t.boxes[r])
                })
                .collect();
            (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
        };
        by_source.insert(
            s.to_string(),
            PerName::new(regions, (0..REGIONS).map(iou_of).collect()),
        );
    }
    let opacity = asg_report::finding_index("opacity").unwrap_or(0);
    let zones: Vec<usize> = [
        "right upper lung zone",
        "right mid lung zone",
        "right lower lung zone",
        "left upper lung zone",
        "left mid lung zone",
        "left lower lung zone",
    ]
    .iter()
    .filter_map(|z| asg_report::REGIONS.iter().position(|r| r.name == *z))
    .collect();
    // Each film's labelled zones, kept together for the bootstrap.
    let zone_groups: Vec<Vec<(f32, bool)>> = preds
        .iter()
        .zip(truths)
        .filter(|(_, t)| t.given)
        .map(|(p, t)| {
            zones
                .iter()
                .map(|&z| z * FINDINGS + opacity)
                .filter(|&k| t.region_mask[k] > 0.5)
                .map(|k| (p.region_logits[k], t.region_targets[k] > 0.5))
                .collect::<Vec<_>>()
        })
        .filter(|film| !film.is_empty())
        .collect();
    let (s, l): (Vec<f32>, Vec<bool>) = zone_groups.iter().flatten().copied().unzip();
    let zone_opacity_auroc = auroc(&s, &l);
    let singles = |s: &[f32], l: &[bool]| -> Vec<Vec<(f32, bool)>> {
        s.iter().zip(l).map(|(&a, &b)| vec![(a, b)]).collect()
    };
    let nodule = asg_report::finding_index("nodule").unwrap_or(0);
    let (ns, nl): (Vec<f32>, Vec<bool>) = preds
        .iter()
        .zip(truths)
        .filter(|(_, t)| t.given && t.source == "jsrt" && t.tag_mask[nodule] > 0.5)
        .map(|(p, t)| (p.finding_logits[nodule], t.tags[nodule] > 0.5))
        .unzip();
    let (thresholds, region_thresholds, assessed, from) = match model.operating_point() {
        Some(op) => (
            op.thresholds,
            op.region_thresholds,
            op.assessed,
            "the bundle's manifest",
        ),
        None => (
            BTreeMap::new(),
            BTreeMap::new(),
            None,
            "0.5 for every finding",
        ),
    };
    // How far (in logits) the most suspicious assessed finding is above its bar on the image
    // (what the viewer, the SR and FHIR flag), and with the regions (where the JSON's region
    // lists flag it too): a normal film is clean when this is below 0.
    // Both in one pass: (the image's, the image's and the regions').
    let suspicion = |p: &ImagePrediction| -> (f32, f32) {
        let logit = |t: f32| {
            let t = t.clamp(1e-6, 1.0 - 1e-6);
            (t / (1.0 - t)).ln()
        };
        let regions = p.region_logits.len() / FINDINGS;
        asg_report::FINDINGS
            .iter()
            .enumerate()
            .filter(|(_, name)| {
                assessed
                    .as_ref()
                    .is_none_or(|a| a.iter().any(|x| x == *name))
            })
            .map(|(f, name)| {
                let t = thresholds.get(*name).copied().unwrap_or(0.5);
                let rt = region_thresholds.get(*name).copied().unwrap_or(t);
                let in_regions = (0..regions)
                    .map(|r| p.region_logits[r * FINDINGS + f])
                    .fold(f32::NEG_INFINITY, f32::max);
                let image = p.finding_logits[f] - logit(t);
                (image, image.max(in_regions - logit(rt)))
            })
            .fold((f32::NEG_INFINITY, f32::NEG_INFINITY), |(a, b), (x, y)| {
                (a.max(x), b.max(y))
            })
    };
    let flagged = |p: &ImagePrediction| suspicion(p).0 >= 0.0;
    let flagged_with_regions = |p: &ImagePrediction| suspicion(p).1 >= 0.0;
    let normals: Vec<&ImagePrediction> = preds
        .iter()
        .zip(truths)
        .filter(|(_, t)| t.normal)
        .map(|(p, _)| p)
        .collect();
    // Abnormal against normal: by that suspicion.
    let (mut ab_scores, mut ab_scores_with_regions, mut ab_labels) =
        (Vec::new(), Vec::new(), Vec::new());
    for (p, t) in preds.iter().zip(truths) {
        let abnormal = t.given && (0..FINDINGS).any(|f| t.tag_mask[f] > 0.5 && t.tags[f] > 0.5);
        if t.normal || abnormal {
            let (image, with_regions) = suspicion(p);
            ab_scores.push(image);
            ab_scores_with_regions.push(with_regions);
            ab_labels.push(abnormal && !t.normal);
        }
    }
    let abnormal_films = ab_labels.iter().filter(|&&a| a).count();
    let abnormal_flagged = ab_scores
        .iter()
        .zip(&ab_labels)
        .filter(|(s, &a)| a && **s >= 0.0)
        .count();
    let mask_pointing = |map: &dyn Fn(&ImagePrediction) -> &[f32]| {
        let mut out: BTreeMap<String, (usize, usize)> = BTreeMap::new();
        let (g, size) = (model.grid(), model.input_size());
        for (p, t) in preds.iter().zip(truths) {
            for l in &t.lesions {
                if let Some(hit) = mask_pointing_hit(map(p), g, size, l) {
                    let e = out
                        .entry(asg_report::FINDINGS[l.finding].to_string())
                        .or_default();
                    e.0 += hit as usize;
                    e.1 += 1;
                }
            }
        }
        out
    };
    let normal_clean = normals.iter().filter(|p| !flagged(p)).count();
    RealFilmReport {
        zone_opacity_ci: bootstrap_auroc(&zone_groups, BOOTSTRAP_REPS, 1),
        nodule_ci: bootstrap_auroc(&singles(&ns, &nl), BOOTSTRAP_REPS, 2),
        abnormal_ci: bootstrap_auroc(&singles(&ab_scores, &ab_labels), BOOTSTRAP_REPS, 3),
        normal_clean_ci: wilson_interval(normal_clean, normals.len()),
        mask_pointing_attention: mask_pointing(&|p| &p.tag_attention),
        mask_pointing_maps: mask_pointing(&|p| &p.finding_maps),
        abnormal_auroc: auroc(&ab_scores, &ab_labels),
        abnormal_auroc_with_regions: auroc(&ab_scores_with_regions, &ab_labels),
        abnormal_films,
        box_iou_by_source: by_source,
        zone_opacity_auroc,
        zone_opacity_cases: s.len(),
        nodule_auroc: auroc(&ns, &nl),
        nodule_scored_by: model
            .crop_scored()
            .filter(|(finding, _)| finding == "nodule")
            .map(|(_, file)| file),
        normal_films: normals.len(),
        normal_clean,
        normal_clean_with_regions: normals.iter().filter(|p| !flagged_with_regions(p)).count(),
        stressed_normal_films: stressed_normals.len(),
        stressed_normal_clean: stressed_normals.iter().filter(|p| !flagged(p)).count(),
        stressed_normal_clean_with_regions: stressed_normals
            .iter()
            .filter(|p| !flagged_with_regions(p))
            .count(),
        abnormal_flagged,
        thresholds: from.to_string(),
    }
}

/// Resamples behind each bootstrap interval.
const BOOTSTRAP_REPS: usize = 2000;

/// Whether the peak of a finding's `[findings, g * g]` heatmap points into the lesion: its
/// cell's footprint, mapped back through the letterbox to the film, overlaps the lesion (the
/// heatmap locates no finer than a cell). None without a heatmap.
fn mask_pointing_hit(maps: &[f32], g: usize, size: usize, lesion: &LesionMap) -> Option<bool> {
    let cells = g * g;
    let heat = maps.get(lesion.finding * cells..(lesion.finding + 1) * cells)?;
    let peak = peak_cell(heat)?;
    let lb = asg_dicom::Letterbox::new(lesion.image_width, lesion.image_height, size as u32);
    let cell = size as f64 / g as f64;
    let (col, row) = ((peak % g) as f64, (peak / g) as f64);
    let (x0, y0) = lb.to_image(col * cell, row * cell);
    let (x1, y1) = lb.to_image((col + 1.0) * cell, (row + 1.0) * cell);
    Some(lesion.overlaps(x0 as f32, y0 as f32, x1 as f32, y1 as f32))
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
        // Partly labelled sets: a finding is probed only where every film has its label.
        if chosen.iter().any(|&i| train_truths[i].tag_mask[f] < 0.5)
            || test_truths.iter().any(|t| t.tag_mask[f] < 0.5)
        {
            continue;
        }
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

/// " (95% CI lo-hi)", or nothing without an interval.
fn fmt_ci(ci: Option<(f64, f64)>) -> String {
    ci.map(|(lo, hi)| format!(" (95% CI {lo:.2}-{hi:.2})"))
        .unwrap_or_default()
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
        s += "\n| finding | positives | image AUROC | region AUROC | zero-shot AUROC | pointing in the labelled region box (attention) | same (maps) |\n|---|---|---|---|---|---|---|\n";
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
        if let Some(r) = &self.real_films {
            s += "\nReal films with expert labels:\n\n| measure | value | over |\n|---|---|---|\n";
            s += &format!(
                "| normal films with nothing flagged (thresholds: {}) | {}{} | {} of {} normal films ({} clean in every region too) |\n",
                r.thresholds,
                fmt((r.normal_films > 0).then(|| r.normal_clean as f64 / r.normal_films as f64)),
                fmt_ci(r.normal_clean_ci),
                r.normal_clean,
                r.normal_films,
                r.normal_clean_with_regions
            );
            s += &format!(
                "| normal films under acquisition stress with nothing flagged | {} | {} of {} copies ({} clean in every region too) |\n",
                fmt((r.stressed_normal_films > 0)
                    .then(|| r.stressed_normal_clean as f64 / r.stressed_normal_films as f64)),
                r.stressed_normal_clean,
                r.stressed_normal_films,
                r.stressed_normal_clean_with_regions
            );
            s += &format!(
                "| abnormal films with an assessed finding flagged | {} | {} of {} abnormal films |\n",
                fmt((r.abnormal_films > 0)
                    .then(|| r.abnormal_flagged as f64 / r.abnormal_films as f64)),
                r.abnormal_flagged,
                r.abnormal_films
            );
            s += &format!(
                "| lung-zone opacity AUROC (Brixia zones, radiologist masks) | {}{} | {} zones |\n",
                fmt(r.zone_opacity_auroc),
                fmt_ci(r.zone_opacity_ci),
                r.zone_opacity_cases
            );
            match &r.nodule_scored_by {
                None => {
                    s += &format!(
                        "| nodule AUROC (JSRT) | {}{} | |\n",
                        fmt(r.nodule_auroc),
                        fmt_ci(r.nodule_ci)
                    )
                }
                Some(file) => {
                    s += &format!(
                        "| nodule AUROC (JSRT), the image model's score: in the product {file} scores nodule, not measured here (scripts/nodule_product.py) | {}{} | |\n",
                        fmt(r.nodule_auroc),
                        fmt_ci(r.nodule_ci)
                    )
                }
            }
            s += &format!(
                "| abnormal vs normal films AUROC (the assessed finding furthest above its threshold) | {}{} | {} abnormal, {} normal films |\n",
                fmt(r.abnormal_auroc),
                fmt_ci(r.abnormal_ci),
                r.abnormal_films,
                r.normal_films
            );
            s += &format!(
                "| abnormal vs normal films AUROC, the regions' thresholds too | {} | |\n",
                fmt(r.abnormal_auroc_with_regions),
            );
            let pointing = |m: &BTreeMap<String, (usize, usize)>| {
                let (_, c, share) = pointing_share(m);
                let per: Vec<String> = m.iter().map(|(k, (h, c))| format!("{k} {h}/{c}")).collect();
                (fmt(share), format!("{c} lesions ({})", per.join(", ")))
            };
            let (v, over) = pointing(&r.mask_pointing_attention);
            s += &format!(
                "| mask pointing game, tag attention (peak cell on the expert's lesion mask) | {v} | {over} |\n"
            );
            let (v, over) = pointing(&r.mask_pointing_maps);
            s += &format!("| mask pointing game, region-head maps | {v} | {over} |\n");
            let key = [
                "right lung",
                "left lung",
                "cardiac silhouette",
                "right clavicle",
                "left clavicle",
                "mediastinum",
                "trachea",
            ];
            s += "\n| source | ";
            s += &key.join(" | ");
            s += " | mean over regions with a box |\n|---|";
            s += &"---|".repeat(key.len() + 1);
            s += "\n";
            for (source, p) in &r.box_iou_by_source {
                let cells: Vec<String> = key
                    .iter()
                    .map(|k| fmt(p.values.get(*k).copied().flatten()))
                    .collect();
                s += &format!("| {source} | {} | {} |\n", cells.join(" | "), fmt(p.mean));
            }
        }
        s
    }

    /// Flat metrics for a bundle manifest.
    pub fn summary(&self) -> BTreeMap<String, f64> {
        let mut m = BTreeMap::new();
        // JSON has no NaN: a measure that is not a number (a probe with no finding to probe on
        // a partly labelled set) is left out rather than written as null.
        let mut put = |k: &str, v: Option<f64>| {
            if let Some(v) = v.filter(|v| v.is_finite()) {
                m.insert(k.to_string(), v);
            }
        };
        put("image_auroc_mean", self.image_auroc.mean);
        put("region_auroc_mean", self.region_auroc.mean);
        put("zero_shot_auroc_mean", self.zero_shot_auroc.mean);
        put("box_iou_mean", self.box_iou.mean);
        put("pointing_game_attention_mean", self.pointing_game.mean);
        put("pointing_game_maps_mean", self.pointing_game_cam.mean);
        if let Some(r) = &self.real_films {
            put(
                "real_normal_clean_share",
                (r.normal_films > 0).then(|| r.normal_clean as f64 / r.normal_films as f64),
            );
            put(
                "real_normal_clean_share_with_regions",
                (r.normal_films > 0)
                    .then(|| r.normal_clean_with_regions as f64 / r.normal_films as f64),
            );
            put(
                "real_stressed_normal_clean_share",
                (r.stressed_normal_films > 0)
                    .then(|| r.stressed_normal_clean as f64 / r.stressed_normal_films as f64),
            );
            put(
                "real_abnormal_flagged_share",
                (r.abnormal_films > 0).then(|| r.abnormal_flagged as f64 / r.abnormal_films as f64),
            );
            put("real_zone_opacity_auroc", r.zone_opacity_auroc);
            // With a crop model scoring nodule, the image model's figure is not the product's:
            // it goes under its own name, and the product's is left out.
            if r.nodule_scored_by.is_some() {
                put("real_nodule_auroc_image_model", r.nodule_auroc);
            } else {
                put("real_nodule_auroc", r.nodule_auroc);
            }
            put("real_abnormal_auroc", r.abnormal_auroc);
            put(
                "real_abnormal_auroc_with_regions",
                r.abnormal_auroc_with_regions,
            );
            put(
                "real_mask_pointing_attention",
                pointing_share(&r.mask_pointing_attention).2,
            );
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A model that only answers `operating_point` and `crop_scored` (the real-film report asks
    /// nothing else).
    #[derive(Default)]
    struct Thresholded(
        crate::eval::models::OperatingPoint,
        Option<(String, String)>,
    );
    impl EvalModel for Thresholded {
        fn input_size(&self) -> usize {
            1
        }
        fn max_tokens(&self) -> usize {
            1
        }
        fn grid(&self) -> usize {
            1
        }
        fn tokenizer(&self) -> &asg_report::TextTokenizer {
            unreachable!("not used")
        }
        fn images(&self, _: &[f32], _: usize) -> Result<Vec<ImagePrediction>, EvalError> {
            unreachable!("not used")
        }
        fn text(&self, _: &crate::export::TextInputs) -> Result<(Vec<f32>, Vec<f32>), EvalError> {
            unreachable!("not used")
        }
        fn describe(&self) -> String {
            "hand-made".into()
        }
        fn operating_point(&self) -> Option<crate::eval::models::OperatingPoint> {
            Some(self.0.clone())
        }
        fn crop_scored(&self) -> Option<(String, String)> {
            self.1.clone()
        }
    }

    fn film(source: &str, normal: bool, nodule: Option<bool>) -> Truth {
        let f = asg_report::finding_index("nodule").unwrap();
        let mut tags = vec![0.0; FINDINGS];
        let mut tag_mask = vec![0.0; FINDINGS];
        if let Some(n) = nodule {
            tags[f] = n as u8 as f32;
            tag_mask[f] = 1.0;
        }
        Truth {
            tags,
            tag_mask,
            region_targets: vec![0.0; REGIONS * FINDINGS],
            region_mask: vec![0.0; REGIONS * FINDINGS],
            boxes: vec![[0.0, 0.0, 0.5, 0.5]; REGIONS],
            present: vec![false; REGIONS],
            report: String::new(),
            ids: vec![],
            normal,
            given: true,
            source: source.into(),
            lesions: vec![],
        }
    }

    fn pred(nodule_logit: f32, effusion_logit: f32) -> ImagePrediction {
        let mut logits = vec![-9.0; FINDINGS];
        logits[asg_report::finding_index("nodule").unwrap()] = nodule_logit;
        logits[asg_report::finding_index("pleural effusion").unwrap()] = effusion_logit;
        ImagePrediction {
            embedding: vec![],
            features: vec![],
            finding_logits: logits,
            tag_attention: vec![],
            boxes: vec![0.0; REGIONS * 4],
            region_embeddings: vec![],
            region_logits: vec![-9.0; REGIONS * FINDINGS],
            finding_maps: vec![],
        }
    }

    #[test]
    fn the_manifest_summary_leaves_out_what_is_not_a_number() {
        let none = || PerName::new(&[], vec![]);
        let report = EvalReport {
            model: String::new(),
            data: String::new(),
            split: "test".into(),
            images: 1,
            positives: BTreeMap::new(),
            image_auroc: PerName::new(&["a".to_string()], vec![Some(0.75)]),
            region_auroc: none(),
            box_iou: none(),
            pointing_game: none(),
            pointing_overall: (0, 0),
            pointing_game_cam: none(),
            pointing_overall_cam: (0, 0),
            retrieval_image_to_report: BTreeMap::new(),
            retrieval_report_to_image: BTreeMap::new(),
            zero_shot_auroc: none(),
            linear_probe: vec![ProbeResult {
                fraction: 1.0,
                train_images: 0,
                per_seed: vec![None],
                mean: f64::NAN,
                std: f64::NAN,
            }],
            real_films: None,
            seconds: 0.0,
        };
        let s = report.summary();
        assert_eq!(s.get("image_auroc_mean"), Some(&0.75));
        assert!(s.values().all(|v| v.is_finite()), "{s:?}");
        assert!(!s.keys().any(|k| k.starts_with("linear_probe")), "{s:?}");
    }

    #[test]
    fn the_real_film_report_of_a_hand_case() {
        // Three JSRT films: two with a nodule (logits 2, 0), one normal (logit 1) on which
        // the model also says effusion at p 0.73 (logit 1).
        let truths = vec![
            film("jsrt", false, Some(true)),
            film("jsrt", false, Some(true)),
            film("jsrt", true, Some(false)),
        ];
        let preds = vec![pred(2.0, -9.0), pred(0.0, -9.0), pred(1.0, 1.0)];
        let names: Vec<String> = asg_report::REGIONS
            .iter()
            .map(|r| r.name.to_string())
            .collect();
        let model = Thresholded::default();
        let r = real_film_report(&model, &preds, &truths, &[], &names);
        // Nodule scores 2 and 0 against 1: one of two pairs ordered right.
        assert_eq!(r.nodule_auroc, Some(0.5));
        // Abnormal (the two nodule films) against normal, by the finding furthest above 0.5
        // (logit 0): 2 and 0 against 1.
        assert_eq!((r.abnormal_auroc, r.abnormal_films), (Some(0.5), 2));
        // At 0.5 the normal film is flagged (nodule 0.73 and effusion 0.73).
        assert_eq!((r.normal_films, r.normal_clean), (1, 0));
        // With effusion not assessed and the nodule threshold at 0.8 it is clean.
        let th = BTreeMap::from([("nodule".to_string(), 0.8f32)]);
        let model = Thresholded(
            crate::eval::models::OperatingPoint {
                thresholds: th.clone(),
                assessed: Some(vec!["nodule".into()]),
                region_thresholds: BTreeMap::new(),
            },
            None,
        );
        // Two stressed copies of the normal film: one at nodule logit 2 (p 0.88) is flagged.
        let stressed = vec![pred(2.0, 5.0), pred(0.5, 5.0)];
        let r = real_film_report(&model, &preds, &truths, &stressed, &names);
        assert_eq!((r.normal_films, r.normal_clean), (1, 1));
        assert_eq!((r.stressed_normal_films, r.stressed_normal_clean), (2, 1));
        // Of the nodule films only the one at p 0.88 reaches 0.8.
        assert_eq!((r.abnormal_films, r.abnormal_flagged), (2, 1));
        assert_eq!(r.thresholds, "the bundle's manifest");
        // A region's nodule logit 1 (p 0.73) flags the normal film only under a region
        // threshold below it (the image-level 0.8 where the manifest sets none), and then
        // ranks it above the nodule film at logit 0.
        let mut preds = preds;
        let zone = asg_report::REGIONS
            .iter()
            .position(|r| r.name == "right upper lung zone")
            .unwrap();
        preds[2].region_logits[zone * FINDINGS + asg_report::finding_index("nodule").unwrap()] =
            1.0;
        let r = real_film_report(&model, &preds, &truths, &[], &names);
        assert_eq!(
            (r.normal_films, r.normal_clean, r.normal_clean_with_regions),
            (1, 1, 1)
        );
        let model = Thresholded(
            crate::eval::models::OperatingPoint {
                thresholds: th,
                assessed: Some(vec!["nodule".into()]),
                region_thresholds: BTreeMap::from([("nodule".to_string(), 0.5f32)]),
            },
            None,
        );
        let r = real_film_report(&model, &preds, &truths, &[], &names);
        assert_eq!(
            (r.normal_films, r.normal_clean, r.normal_clean_with_regions),
            (1, 1, 0)
        );
        // Suspicions: 2 - logit(0.8) (0.61) and 0 - logit(0.8) against the region's 1 - 0:
        // with the regions the normal film is the most suspicious; on the image alone
        // (1 - logit(0.8)) it ranks between.
        assert_eq!(r.abnormal_auroc_with_regions, Some(0.0));
        assert_eq!(r.abnormal_auroc, Some(0.5));
    }

    #[test]
    fn a_bundle_whose_crop_model_scores_nodule_does_not_report_the_image_models_as_its_own() {
        let truths = vec![
            film("jsrt", false, Some(true)),
            film("jsrt", true, Some(false)),
        ];
        let preds = vec![pred(2.0, -9.0), pred(1.0, -9.0)];
        let names: Vec<String> = asg_report::REGIONS
            .iter()
            .map(|r| r.name.to_string())
            .collect();
        let plain = real_film_report(&Thresholded::default(), &preds, &truths, &[], &names);
        assert_eq!(
            (plain.nodule_auroc, plain.nodule_scored_by.as_deref()),
            (Some(1.0), None)
        );
        let crop = Thresholded(
            Default::default(),
            Some(("nodule".into(), "nodule.onnx".into())),
        );
        let r = real_film_report(&crop, &preds, &truths, &[], &names);
        assert_eq!(r.nodule_auroc, Some(1.0));
        assert_eq!(r.nodule_scored_by.as_deref(), Some("nodule.onnx"));
        // A crop model of another finding leaves nodule the image model's.
        let other = Thresholded(
            Default::default(),
            Some(("opacity".into(), "opacity.onnx".into())),
        );
        let o = real_film_report(&other, &preds, &truths, &[], &names);
        assert_eq!(o.nodule_scored_by, None);
        // The summary (the manifest's metrics) and the table say whose figure it is.
        let report = |real: RealFilmReport| EvalReport {
            model: String::new(),
            data: String::new(),
            split: "test".into(),
            images: 2,
            positives: BTreeMap::new(),
            image_auroc: PerName::new(&[], vec![]),
            region_auroc: PerName::new(&[], vec![]),
            box_iou: PerName::new(&[], vec![]),
            pointing_game: PerName::new(&[], vec![]),
            pointing_overall: (0, 0),
            pointing_game_cam: PerName::new(&[], vec![]),
            pointing_overall_cam: (0, 0),
            retrieval_image_to_report: BTreeMap::new(),
            retrieval_report_to_image: BTreeMap::new(),
            zero_shot_auroc: PerName::new(&[], vec![]),
            linear_probe: vec![],
            real_films: Some(real),
            seconds: 0.0,
        };
        let (plain, crop) = (report(plain), report(r));
        assert_eq!(plain.summary().get("real_nodule_auroc"), Some(&1.0));
        assert_eq!(plain.summary().get("real_nodule_auroc_image_model"), None);
        assert_eq!(crop.summary().get("real_nodule_auroc"), None);
        assert_eq!(
            crop.summary().get("real_nodule_auroc_image_model"),
            Some(&1.0)
        );
        assert!(!plain.table().contains("nodule.onnx"));
        assert!(crop
            .table()
            .contains("the image model's score: in the product nodule.onnx scores nodule"));
    }

    #[test]
    fn the_mask_pointing_game_maps_the_peak_back_through_the_letterbox() {
        // A 100 x 50 film in a 64 px input: scale 0.64, content 64 x 32 from row 16. On a 4 x 4
        // grid, cell (1, 1) spans input 16..32, film x 25..50, y 0..25; cell (3, 3) spans
        // input 48..64, below the film.
        let f = asg_report::finding_index("nodule").unwrap();
        let lesion = LesionMap::disc(f, 100, 50, 37.5, 12.5, 5.0).unwrap();
        let mut maps = vec![0.0f32; FINDINGS * 16];
        maps[f * 16 + 5] = 1.0;
        assert_eq!(mask_pointing_hit(&maps, 4, 64, &lesion), Some(true));
        maps[f * 16 + 15] = 2.0;
        assert_eq!(mask_pointing_hit(&maps, 4, 64, &lesion), Some(false));
        // A disc reaching into the cell from its right neighbour is a hit; one further off is not.
        maps[f * 16 + 15] = 0.0;
        let edge = LesionMap::disc(f, 100, 50, 53.0, 12.5, 5.0).unwrap();
        assert_eq!(mask_pointing_hit(&maps, 4, 64, &edge), Some(true));
        let away = LesionMap::disc(f, 100, 50, 60.0, 30.0, 5.0).unwrap();
        assert_eq!(mask_pointing_hit(&maps, 4, 64, &away), Some(false));
        // No heatmap (a bundle without one): no case.
        assert_eq!(mask_pointing_hit(&[], 4, 64, &lesion), None);
    }
}
