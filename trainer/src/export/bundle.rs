//! Writing a model bundle: the ONNX files and `manifest.json` with their digests.

use crate::export::asg::{image_onnx, text_onnx};
use crate::export::io::{ANATOMY_OUTPUT, IMAGE_OUTPUTS, TEXT_OUTPUTS};
use crate::export::runtime::OnnxBundle;
use crate::export::thin::{new_seeded, ThinConfig, ThinNet};
use crate::model::AsgModel;
use crate::vocab::ANATOMY;
use crate::vocab::{FINDINGS, REGIONS};
use anyhow::Context;
use asg_bundle::{
    FileDigest, InputSpec, Manifest, OutputSpec, Training, FORMAT, FORMAT_VERSION, MANIFEST_FILE,
};
use asg_dicom::{preprocess, read_file, ReadOptions};
use candle_core::{Device, Tensor};
use std::collections::BTreeMap;
use std::path::Path;

/// Normalisation of display values used by our models (the data loader's).
pub use crate::data::NORMALISATION;

/// Writes `manifest` as `dir/manifest.json` ([`write_atomically`]).
pub fn write_manifest(dir: &Path, manifest: &Manifest) -> anyhow::Result<()> {
    write_atomically(dir, MANIFEST_FILE, manifest.to_json().as_bytes())
}

/// Writes `bytes` to `dir/name` under a temporary name first, then renames.
pub fn write_atomically(dir: &Path, name: &str, bytes: &[u8]) -> anyhow::Result<()> {
    let tmp = dir.join(format!(".{name}.partial"));
    std::fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, dir.join(name))
        .with_context(|| format!("renaming {} into place", tmp.display()))?;
    Ok(())
}

/// Exports `model` into the bundle folder `out` (created if needed) and returns its manifest.
pub fn write_thin_bundle(
    model: &ThinNet,
    out: &Path,
    training: Training,
) -> anyhow::Result<Manifest> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let onnx = model.to_onnx()?;
    let cfg = &model.config;
    let findings: Vec<String> = asg_report::FINDINGS.iter().map(|f| f.to_string()).collect();
    anyhow::ensure!(
        findings.len() == cfg.findings,
        "model has {} finding logits for {} findings",
        cfg.findings,
        findings.len()
    );
    let manifest = Manifest {
        format: FORMAT.into(),
        format_version: FORMAT_VERSION,
        name: "asg-thin".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        description: "Thin-slice image model: small CNN, embedding and finding logits.".into(),
        input: InputSpec {
            name: "image".into(),
            size: cfg.input_size as u32,
            letterbox: "aspect kept, centred, black padding; display values (VOI window, MONOCHROME1 inverted) in [0,1], area-averaged".into(),
            mean: NORMALISATION.mean,
            std: NORMALISATION.std,
        },
        image_model: "image.onnx".into(),
        outputs: vec![
            OutputSpec { name: "embedding".into(), shape: vec![1, cfg.embedding_dim], description: "global image embedding, unit L2 norm".into() },
            OutputSpec { name: "finding_logits".into(), shape: vec![1, cfg.findings], description: "one logit per finding, in the order of `findings`".into() },
        ],
        thresholds: findings.iter().map(|f| (f.clone(), 0.5)).collect(),
        findings,
        files: BTreeMap::from([("image.onnx".to_string(), FileDigest::of(&onnx))]),
        training,
        regions: Vec::new(),
        grid: None,
        text_model: None,
        region_thresholds: BTreeMap::new(),
        check_thresholds: None,
        assessed: None,
        crop_model: None,
        anatomy_check: None,
        anatomy: None,
    };
    write_atomically(out, "image.onnx", &onnx)?;
    write_manifest(out, &manifest)?;
    Ok(manifest)
}

/// Builds the untrained thin-slice bundle: seeded random weights, batch-norm statistics calibrated
/// on `calibration` phantom radiographs read back through asg-dicom.
pub fn init_thin_bundle(
    out: &Path,
    seed: u64,
    input_size: usize,
    calibration: u32,
) -> anyhow::Result<Manifest> {
    let config = ThinConfig {
        input_size,
        ..ThinConfig::default()
    };
    let (model, _vars) = new_seeded(config, seed)?;
    let tmp = tempfile_dir()?;
    let mut batch = Vec::new();
    for i in 0..calibration {
        let path = asg_phantom::write_phantom(tmp.path(), 256, seed, i)?;
        let image = read_file(&path, &ReadOptions::default())?;
        let input = preprocess(
            &image.display(),
            image.width,
            image.height,
            input_size as u32,
            NORMALISATION,
        );
        batch.push(Tensor::from_vec(
            input.tensor,
            (1, 1, input_size, input_size),
            &Device::Cpu,
        )?);
    }
    if !batch.is_empty() {
        let stacked = Tensor::cat(&batch, 0)?;
        // A few passes so the running statistics converge (momentum 0.1).
        model.calibrate(&vec![stacked; 20])?;
    }
    write_thin_bundle(
        &model,
        out,
        Training {
            data: format!("none (random init, seed {seed}); batch norm calibrated on {calibration} phantoms"),
            steps: 0,
            seed,
            notes: "UNTRAINED thin-slice model: its outputs carry no medical meaning. Not for diagnosis.".into(),
            metrics: BTreeMap::new(),
        },
    )
}

/// A scratch folder that removes itself.
pub struct ScratchDir(std::path::PathBuf);

impl ScratchDir {
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn tempfile_dir() -> anyhow::Result<ScratchDir> {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let dir = std::env::temp_dir().join(format!("asg-train-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(ScratchDir(dir))
}

/// Writes the whole ASG model (with the tokenizer it was trained with) as a bundle:
/// `image.onnx`, `text.onnx`, `tokenizer.json` and `manifest.json` (with each file's SHA-256),
/// then loads it back in tract to check that it runs.
pub fn write_asg_bundle(
    model: &AsgModel,
    text_tokenizer: &asg_report::TextTokenizer,
    out: &Path,
    name: &str,
    thresholds: Thresholds,
    assessed: Option<Vec<String>>,
    training: Training,
) -> anyhow::Result<Manifest> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let cfg = &model.config;
    let image = image_onnx(model)?;
    let text = text_onnx(model)?;
    let tokenizer = text_tokenizer.to_json();
    let g = AsgModel::grid_side(cfg);
    let c = match cfg.encoder.as_str() {
        "cnn" => cfg.channels.last().copied().unwrap_or(0),
        other => anyhow::bail!("export of the {other:?} encoder is not supported"),
    };
    let e = cfg.embed_dim;
    let shapes: [Vec<usize>; 8] = [
        vec![1, e],
        vec![1, c],
        vec![1, FINDINGS],
        vec![1, FINDINGS, g * g],
        vec![1, REGIONS, 4],
        vec![1, REGIONS, e],
        vec![1, REGIONS, FINDINGS],
        vec![1, FINDINGS, g * g],
    ];
    let t = cfg.max_tokens;
    let spec = |(n, d): &(&str, &str), shape: Vec<usize>| OutputSpec {
        name: n.to_string(),
        shape,
        description: d.to_string(),
    };
    let findings: Vec<String> = asg_report::FINDINGS.iter().map(|f| f.to_string()).collect();
    let manifest = Manifest {
        format: FORMAT.into(),
        format_version: FORMAT_VERSION,
        name: name.into(),
        version: env!("CARGO_PKG_VERSION").into(),
        description: format!(
            "ASG: {}x{} input, CNN channels {:?}, embedding {e}, grid {g}x{g}; image-level and region-level findings, heatmaps, 29 anatomy boxes, report and sentence embeddings",
            cfg.input_size, cfg.input_size, cfg.channels
        ),
        input: InputSpec {
            name: "image".into(),
            size: cfg.input_size as u32,
            letterbox: "aspect kept, centred, black padding; display values (VOI window, MONOCHROME1 inverted) in [0,1], area-averaged".into(),
            mean: NORMALISATION.mean,
            std: NORMALISATION.std,
        },
        image_model: "image.onnx".into(),
        outputs: IMAGE_OUTPUTS
            .iter()
            .zip(shapes)
            .map(|(o, s)| spec(o, s))
            .chain(model.anatomy.as_ref().map(|_| {
                let side = crate::vocab::anatomy_side(cfg.input_size, cfg.anatomy_from_stage);
                spec(&ANATOMY_OUTPUT, vec![1, ANATOMY.len(), side, side])
            }))
            .collect(),
        anatomy: model
            .anatomy
            .as_ref()
            .map(|_| ANATOMY.iter().map(|(name, _)| name.to_string()).collect()),
        thresholds: thresholds.image,
        region_thresholds: thresholds.region,
        check_thresholds: thresholds.check,
        assessed,
        crop_model: None,
        anatomy_check: None,
        findings,
        files: BTreeMap::from([
            ("image.onnx".to_string(), FileDigest::of(&image)),
            ("text.onnx".to_string(), FileDigest::of(&text)),
            ("tokenizer.json".to_string(), FileDigest::of(tokenizer.as_bytes())),
        ]),
        training,
        regions: asg_report::REGIONS.iter().map(|r| r.name.to_string()).collect(),
        grid: Some(g as u32),
        text_model: Some(asg_bundle::TextModelSpec {
            file: "text.onnx".into(),
            tokenizer: "tokenizer.json".into(),
            max_tokens: t as u32,
            inputs: vec![
                OutputSpec { name: "ids".into(), shape: vec![1, t], description: "int64 token ids, padded".into() },
                OutputSpec { name: "mask".into(), shape: vec![1, t], description: "1 for tokens, 0 for padding".into() },
                OutputSpec { name: "averaging".into(), shape: vec![1, 0, t], description: "[b, sentences, tokens] rows averaging each sentence's tokens".into() },
            ],
            outputs: vec![
                spec(&TEXT_OUTPUTS[0], vec![1, e]),
                spec(&TEXT_OUTPUTS[1], vec![1, 0, e]),
            ],
        }),
    };
    let json = manifest.to_json();
    // Check the manifest's own consistency before writing anything.
    Manifest::from_json(&json).map_err(|e| anyhow::anyhow!("{e}"))?;
    write_atomically(out, "image.onnx", &image)?;
    write_atomically(out, "text.onnx", &text)?;
    write_atomically(out, "tokenizer.json", tokenizer.as_bytes())?;
    write_atomically(out, MANIFEST_FILE, json.as_bytes())?;

    OnnxBundle::load(out)
        .with_context(|| format!("loading the written bundle {} back", out.display()))?;
    Ok(manifest)
}

/// The findings a bundle offers, in the order of `asg_report::FINDINGS`: those the training
/// data had positives of (`trained`: positives per finding; None, a run made before the counts
/// were kept: all), and, when the thresholds were chosen on data, only those its validation
/// split had positives of and told apart too (`validated`): a threshold chosen on negatives
/// alone was never measured on the kind of film it is used on (a finding only phantoms show, on
/// real films), and one on a score at chance flags films at random.
/// None: all findings.
pub fn assessed_findings(
    trained: Option<&BTreeMap<String, u64>>,
    validated: Option<&std::collections::BTreeSet<String>>,
) -> Option<Vec<String>> {
    if trained.is_none() && validated.is_none() {
        return None;
    }
    Some(
        asg_report::FINDINGS
            .iter()
            .filter(|f| trained.is_none_or(|t| t.get(**f).copied().unwrap_or(0) > 0))
            .filter(|f| validated.is_none_or(|v| v.contains(**f)))
            .map(|f| f.to_string())
            .collect(),
    )
}

/// Withholds `findings` from a bundle's manifest: they are no longer offered (the CLI, the
/// viewer and the report check say "not assessed" instead of scoring them), with `why` recorded
/// in `training.notes`. For a finding whose score was found not to measure it (a probe showed
/// the model does not see it) though it passed the export's validation rule. The weights and
/// thresholds are untouched. A name outside the vocabulary, or one not offered, is an error.
pub fn withhold(manifest: &mut Manifest, findings: &[String], why: &str) -> anyhow::Result<()> {
    if why.trim().is_empty() {
        anyhow::bail!("say why the findings are withheld (--why)");
    }
    let mut offered: Vec<String> = match &manifest.assessed {
        Some(a) => a.clone(),
        None => manifest.findings.clone(),
    };
    for f in findings {
        if !manifest.findings.contains(f) {
            anyhow::bail!("{f:?} is not a finding of this bundle");
        }
        let Some(at) = offered.iter().position(|o| o == f) else {
            anyhow::bail!("{f:?} is not offered by this bundle already");
        };
        offered.remove(at);
    }
    manifest.assessed = Some(offered);
    manifest.training.notes = format!(
        "{}; withheld by asg-train {} withhold: {} ({})",
        manifest.training.notes,
        env!("CARGO_PKG_VERSION"),
        findings.join(", "),
        why.trim()
    );
    Ok(())
}

/// The file name of the lung-crop nodule model inside a bundle.
pub const NODULE_MODEL_FILE: &str = "nodule.onnx";

/// Adds the lung-crop nodule model (`nodule.onnx` bytes, as `asg-train nodules` writes them) to a
/// bundle's manifest: its digest and its `crop_model` spec (the crop geometry of
/// [`crate::data::lung_crops`]), with `provenance` kept in the training notes. With `offer`
/// (image-level and lung-level thresholds) "nodule" becomes an assessed finding scored by it: the
/// report check's bars for it are the threshold to accuse and 0 to doubt (the crop model misses
/// many subtle nodules, so its silence is no reason to doubt a report that names one). Without,
/// the plugin runs it and shows its probability, but nodule stays not assessed.
pub fn attach_nodule_model(
    manifest: &mut Manifest,
    onnx: &[u8],
    provenance: &str,
    offer: Option<(f32, f32)>,
) -> anyhow::Result<()> {
    use crate::data::lung_crops::{CROP_H, CROP_W, MARGIN};
    let finding = "nodule";
    if !manifest.findings.iter().any(|f| f == finding) {
        anyhow::bail!("the bundle has no finding {finding:?}");
    }
    if (manifest.input.mean, manifest.input.std) != (NORMALISATION.mean, NORMALISATION.std) {
        anyhow::bail!(
            "the bundle normalises its input with mean {} std {}, the nodule model was trained with {} / {}",
            manifest.input.mean,
            manifest.input.std,
            NORMALISATION.mean,
            NORMALISATION.std
        );
    }
    manifest
        .files
        .insert(NODULE_MODEL_FILE.into(), FileDigest::of(onnx));
    let first = manifest.crop_model.is_none();
    manifest.crop_model = Some(asg_bundle::CropModelSpec {
        file: NODULE_MODEL_FILE.into(),
        finding: finding.into(),
        lungs: vec!["right lung".into(), "left lung".into()],
        width: CROP_W as u32,
        height: CROP_H as u32,
        margin: MARGIN,
        stride: crate::model::nodule_net::STRIDE as u32,
        probability_output: "nodule".into(),
        description: format!(
            "lung-crop nodule model (asg-train nodules): each lung cut out around the image model's lung box at about 1 mm a pixel, a CNN with a nodule logit per 8 x 8 cell pooled over the lung; {provenance}"
        ),
    });
    if first {
        manifest.training.notes = format!(
            "{}; nodule scored by the lung-crop model ({provenance})",
            manifest.training.notes
        );
    }
    if let Some((image, region)) = offer {
        for t in [image, region] {
            if !(t.is_finite() && t > 0.0 && t <= 1.0) {
                anyhow::bail!("threshold {t} is not in (0, 1]");
            }
        }
        manifest.thresholds.insert(finding.into(), image);
        manifest.region_thresholds.insert(finding.into(), region);
        if let Some(list) = manifest.assessed.as_mut() {
            if !list.iter().any(|f| f == finding) {
                list.push(finding.into());
            }
        }
        let bars = manifest
            .check_thresholds
            .get_or_insert_with(Default::default);
        bars.image_confident.insert(finding.into(), image);
        bars.region_confident.insert(finding.into(), region);
        bars.image_doubtful.insert(finding.into(), 0.0);
        bars.region_doubtful.insert(finding.into(), 0.0);
    }
    // The manifest's own checks (the lungs are regions and anatomy structures...).
    *manifest = Manifest::from_json(&manifest.to_json())?;
    Ok(())
}

/// Probability thresholds per finding name: image level (tag decoder) and region level.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Thresholds {
    pub image: BTreeMap<String, f32>,
    pub region: BTreeMap<String, f32>,
    /// The report check's confident and doubtful bars.
    pub check: Option<asg_bundle::CheckThresholds>,
    /// The findings the split these thresholds were chosen on had positives of and told from
    /// its negatives (AUROC at least `eval::thresholds::MIN_VALIDATION_AUROC`, at image or
    /// region level); None: not chosen on data. A finding outside it has a threshold nobody
    /// measured, so it is not offered (see `asg-train export`).
    pub validated: Option<std::collections::BTreeSet<String>>,
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
            validated: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_finding_is_offered_only_with_positives_in_training_and_validation() {
        let trained: BTreeMap<String, u64> = [("opacity", 12), ("pneumothorax", 40), ("edema", 0)]
            .iter()
            .map(|(k, v)| (k.to_string(), *v))
            .collect();
        let validated: std::collections::BTreeSet<String> = ["opacity", "nodule"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        // Pneumothorax was trained (phantoms) but the validation split had none: not offered;
        // nodule was validated but never trained; edema had no positive.
        assert_eq!(
            assessed_findings(Some(&trained), Some(&validated)),
            Some(vec!["opacity".to_string()])
        );
        let only_trained = assessed_findings(Some(&trained), None).unwrap();
        assert!(only_trained.contains(&"pneumothorax".to_string()));
        assert!(!only_trained.contains(&"edema".to_string()));
        assert_eq!(
            assessed_findings(None, Some(&validated)),
            Some(
                asg_report::FINDINGS
                    .iter()
                    .filter(|f| validated.contains(**f))
                    .map(|f| f.to_string())
                    .collect()
            )
        );
        assert_eq!(assessed_findings(None, None), None);
    }

    #[test]
    fn a_withheld_finding_is_no_longer_offered_and_the_reason_is_kept() {
        let text = std::fs::read_to_string("../models/default/manifest.json").unwrap();
        let mut m: Manifest = serde_json::from_str(&text).unwrap();
        m.assessed = Some(vec!["opacity".into(), "nodule".into()]);
        let err = |m: &mut Manifest, f: &str, why: &str| {
            withhold(m, &[f.to_string()], why).unwrap_err().to_string()
        };
        assert!(err(&mut m, "shoulder", "x").contains("not a finding of this bundle"));
        assert!(err(&mut m, "tube", "x").contains("not offered"));
        assert!(err(&mut m, "nodule", " ").contains("--why"));
        assert_eq!(m.assessed, Some(vec!["opacity".into(), "nodule".into()]));
        withhold(&mut m, &["nodule".to_string()], "the probe").unwrap();
        assert_eq!(m.assessed, Some(vec!["opacity".to_string()]));
        assert!(
            m.training.notes.ends_with("withhold: nodule (the probe)"),
            "{}",
            m.training.notes
        );
        // A bundle that offered everything offers all but the withheld.
        m.assessed = None;
        withhold(&mut m, &["tube".to_string()], "why").unwrap();
        let offered = m.assessed.unwrap();
        assert_eq!(offered.len(), m.findings.len() - 1);
        assert!(!offered.contains(&"tube".to_string()));
    }
}
