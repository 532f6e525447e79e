//! asg-bundle: the model bundle's manifest (`manifest.json`), written by `asg-train` and checked by
//! the plugin. A bundle is a folder: `manifest.json` plus the ONNX files it lists with their SHA-256.
//! No candle, no tract: both sides share these types without pulling each other in.

#![forbid(unsafe_code)]

pub mod anatomy_check;

pub use anatomy_check::{AnatomyCheck, LungLayout};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// The manifest format this code reads and writes.
pub const FORMAT: &str = "asg-bundle";
/// Its version; bumped on any incompatible change.
pub const FORMAT_VERSION: u32 = 1;
/// The file name of the manifest inside a bundle.
pub const MANIFEST_FILE: &str = "manifest.json";

/// Everything the plugin needs to run a bundle and to explain what it ran.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: String,
    pub format_version: u32,
    /// Model name and version, shown to users.
    pub name: String,
    pub version: String,
    pub description: String,
    /// The image model's input and preprocessing.
    pub input: InputSpec,
    /// The image model's file inside the bundle.
    pub image_model: String,
    /// Its outputs, by ONNX name, with the shape at batch size 1.
    pub outputs: Vec<OutputSpec>,
    /// Finding names, in the order of the finding logits.
    pub findings: Vec<String>,
    /// Probability above which a finding is reported, per finding name.
    pub thresholds: BTreeMap<String, f32>,
    /// SHA-256 (lower-case hex) and size of each file of the bundle.
    pub files: BTreeMap<String, FileDigest>,
    /// How the model was made and how well it does.
    pub training: Training,
    /// Anatomical region names (Chest ImaGenome `bbox_name`), in the order of the region
    /// outputs. Empty for image-level-only bundles.
    #[serde(default)]
    pub regions: Vec<String>,
    /// Side of the square feature grid that attention maps cover (`cells = grid * grid`,
    /// row-major over the model input).
    #[serde(default)]
    pub grid: Option<u32>,
    /// The text model, when the bundle has one.
    #[serde(default)]
    pub text_model: Option<TextModelSpec>,
    /// Probability above which a finding is reported in a region (region-finding head), per
    /// finding name; the image-level threshold where absent.
    #[serde(default)]
    pub region_thresholds: BTreeMap<String, f32>,
    /// Bars for the report check (chosen on the validation split): a verdict that accuses the
    /// report needs the model to be confident, one that doubts it needs the model to be doubtful.
    #[serde(default)]
    pub check_thresholds: Option<CheckThresholds>,
    /// The findings the model was trained to assess (it saw positive labels of them); the
    /// others are scored by the network but must be shown as not assessed. None: all of
    /// `findings` (bundles made before this field).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assessed: Option<Vec<String>>,
    /// The region names of the `anatomy_masks` output's channels, in order, when the image
    /// model has one (probabilities over the model input square, at the side of its last two
    /// dimensions). None: no masks (bundles made before this field, or without an anatomy head).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub anatomy: Option<Vec<String>>,
    /// A second model that reads each lung cut out of the film at about its own resolution and
    /// scores one finding there (the lung-crop nodule model), when the bundle has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crop_model: Option<CropModelSpec>,
    /// The bounds on the image model's lung masks that an upright frontal chest film stays
    /// within ([`anatomy_check`]); an image outside them gets no findings, regions or outlines.
    /// None: no such check (bundles made before it, or without lung masks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub anatomy_check: Option<AnatomyCheck>,
}

/// A lung-crop model: the plugin cuts each of `lungs` out of the film around the image model's
/// box of it (grown by `margin` of its width and height on each side, aspect kept, centred,
/// area-averaged display values), normalises it as the image model's input is normalised
/// (`input.mean`, `input.std`) and gives it, with the lung's share of each `stride` x `stride`
/// cell (from the image model's `anatomy_masks`), to `file`. Its probability replaces the image
/// model's for `finding`, on the image (the most probable lung) and in the regions; the
/// manifest's `thresholds` and `region_thresholds` for `finding` apply to it.
///
/// The ONNX graph takes `crop` `[n, 1, height, width]` and `coverage`
/// `[n, height / stride, width / stride]`, and gives `cells` (per-cell logits, shaped as
/// `coverage`: the heatmap) and the crops' probabilities `[n]` (output `probability_output`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CropModelSpec {
    /// The ONNX file inside the bundle.
    pub file: String,
    /// The finding it scores (one of `findings`).
    pub finding: String,
    /// The regions it reads, each one crop: named in `regions` (their boxes frame the crops) and
    /// in `anatomy` (their masks give the coverage).
    pub lungs: Vec<String>,
    /// The crop's size in pixels (multiples of `stride`).
    pub width: u32,
    pub height: u32,
    /// The margin around a lung's box, as a share of its width and height on each side.
    pub margin: f64,
    /// The side of a cell, in crop pixels.
    pub stride: u32,
    /// The graph's output holding each crop's probability (`[n]`); `cells` holds the logits.
    pub probability_output: String,
    /// What it is and how it was measured, for people.
    pub description: String,
}

/// Per finding name, probabilities from the validation split: `confident` is the lowest
/// probability above which at least 90% of cases are positive (precision 0.9; 1.0 when never
/// reached or when the split has no positive); `doubtful` the probability below which only 10%
/// of the positives fall (recall 0.9; 0.0 when the split has no positive). The confident bars
/// are then raised until the split's normal films reach none.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CheckThresholds {
    pub image_confident: BTreeMap<String, f32>,
    pub image_doubtful: BTreeMap<String, f32>,
    pub region_confident: BTreeMap<String, f32>,
    pub region_doubtful: BTreeMap<String, f32>,
}

/// The text model of a bundle: `text.onnx` and its tokenizer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TextModelSpec {
    /// The ONNX file inside the bundle.
    pub file: String,
    /// The tokenizer file inside the bundle (asg-report's JSON: word vocabulary or WordPiece).
    pub tokenizer: String,
    /// Token positions the model takes (`ids` and `mask` are padded to this).
    pub max_tokens: u32,
    /// Inputs, by ONNX name, with the shape at batch size 1 (0 marks a free dimension).
    pub inputs: Vec<OutputSpec>,
    /// Outputs, by ONNX name, with the shape at batch size 1 (0 marks a free dimension).
    pub outputs: Vec<OutputSpec>,
}

/// The image model's input.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InputSpec {
    /// ONNX input name.
    pub name: String,
    /// Side of the square input, in pixels.
    pub size: u32,
    /// How the image is fitted into the square.
    pub letterbox: String,
    /// Normalisation applied to display values in [0, 1]: (v - mean) / std.
    pub mean: f32,
    pub std: f32,
}

/// One output of a model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutputSpec {
    pub name: String,
    /// Shape at batch size 1.
    pub shape: Vec<usize>,
    pub description: String,
}

/// A file's digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileDigest {
    pub sha256: String,
    pub bytes: u64,
}

/// Provenance and measurements.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Training {
    pub data: String,
    pub steps: u64,
    pub seed: u64,
    pub notes: String,
    #[serde(default)]
    pub metrics: BTreeMap<String, f64>,
}

/// Why a manifest or a bundle file does not match.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ManifestError {
    #[error("manifest.json is not valid: {0}")]
    Syntax(String),
    #[error("manifest.json has format {format:?} version {version}; this build reads {FORMAT:?} version {FORMAT_VERSION}")]
    Version { format: String, version: u32 },
    #[error("manifest.json lists no digest for {0}")]
    Unlisted(String),
    #[error("{file}: SHA-256 is {actual}, the manifest says {expected}")]
    Digest {
        file: String,
        expected: String,
        actual: String,
    },
    #[error("{file}: {actual} bytes, the manifest says {expected}")]
    Size {
        file: String,
        expected: u64,
        actual: u64,
    },
    #[error("manifest.json is inconsistent: {0}")]
    Inconsistent(String),
}

/// Lower-case hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl FileDigest {
    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Self {
            sha256: sha256_hex(bytes),
            bytes: bytes.len() as u64,
        }
    }
}

impl Manifest {
    /// Parses and checks a manifest's own consistency.
    pub fn from_json(text: &str) -> Result<Self, ManifestError> {
        let m: Manifest =
            serde_json::from_str(text).map_err(|e| ManifestError::Syntax(e.to_string()))?;
        if m.format != FORMAT || m.format_version != FORMAT_VERSION {
            return Err(ManifestError::Version {
                format: m.format,
                version: m.format_version,
            });
        }
        m.check()?;
        Ok(m)
    }

    /// Serialises the manifest as pretty JSON.
    pub fn to_json(&self) -> String {
        // A manifest holds only strings, numbers and maps with string keys: always serialisable.
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    fn check(&self) -> Result<(), ManifestError> {
        let bad = |s: String| Err(ManifestError::Inconsistent(s));
        if self.input.size == 0 || self.input.size > 4096 {
            return bad(format!("input size {} is not in 1..=4096", self.input.size));
        }
        if !(self.input.std.is_finite() && self.input.std > 0.0 && self.input.mean.is_finite()) {
            return bad(format!(
                "normalisation mean {} std {} is not usable",
                self.input.mean, self.input.std
            ));
        }
        if let Some(logits) = self.outputs.iter().find(|o| o.name == "finding_logits") {
            if logits.shape != [1, self.findings.len()] {
                return bad(format!(
                    "finding_logits has shape {:?} but {} findings are named",
                    logits.shape,
                    self.findings.len()
                ));
            }
        }
        if let Some(t) = &self.text_model {
            for f in [&t.file, &t.tokenizer] {
                if !self.files.contains_key(f) {
                    return bad(format!("text model file {f:?} has no digest"));
                }
            }
            if t.max_tokens == 0 || t.max_tokens > 4096 {
                return bad(format!(
                    "text max_tokens {} is not in 1..=4096",
                    t.max_tokens
                ));
            }
        }
        if let Some(boxes) = self.outputs.iter().find(|o| o.name == "region_boxes") {
            if boxes.shape != [1, self.regions.len(), 4] {
                return bad(format!(
                    "region_boxes has shape {:?} but {} regions are named",
                    boxes.shape,
                    self.regions.len()
                ));
            }
        }
        for name in self.thresholds.keys().chain(self.region_thresholds.keys()) {
            if !self.findings.contains(name) {
                return bad(format!("threshold for unknown finding {name:?}"));
            }
        }
        for name in self.assessed.iter().flatten() {
            if !self.findings.contains(name) {
                return bad(format!(
                    "assessed finding {name:?} is not one of the findings"
                ));
            }
        }
        if let Some(names) = &self.anatomy {
            let Some(masks) = self.outputs.iter().find(|o| o.name == "anatomy_masks") else {
                return bad("anatomy structures are named but no anatomy_masks output".into());
            };
            let square = masks.shape.len() == 4 && masks.shape[2] == masks.shape[3];
            if !square || masks.shape[0] != 1 || masks.shape[1] != names.len() {
                return bad(format!(
                    "anatomy_masks has shape {:?} but {} structures are named (want [1, {}, side, side])",
                    masks.shape,
                    names.len(),
                    names.len()
                ));
            }
            if masks.shape[2] == 0 || masks.shape[2] > 1024 {
                return bad(format!(
                    "anatomy_masks side {} is not in 1..=1024",
                    masks.shape[2]
                ));
            }
        }
        if let Some(c) = &self.crop_model {
            self.check_crop_model(c)?;
        }
        if let Some(c) = &self.anatomy_check {
            let anatomy = self.anatomy.as_deref().unwrap_or_default();
            if !["right lung", "left lung"]
                .iter()
                .all(|l| anatomy.iter().any(|a| a == l))
            {
                return bad(
                    "anatomy_check needs the right and left lung among the anatomy structures"
                        .into(),
                );
            }
            if !c.is_valid() {
                return bad(format!(
                    "anatomy_check thresholds must be shares in 0..=1: {c:?}"
                ));
            }
        }
        Ok(())
    }

    fn check_crop_model(&self, c: &CropModelSpec) -> Result<(), ManifestError> {
        let bad = |s: String| Err(ManifestError::Inconsistent(s));
        if !self.files.contains_key(&c.file) {
            return bad(format!("crop model file {:?} has no digest", c.file));
        }
        if !self.findings.contains(&c.finding) {
            return bad(format!(
                "crop model finding {:?} is not one of the findings",
                c.finding
            ));
        }
        if c.lungs.is_empty() || c.lungs.len() > 8 {
            return bad(format!("crop model reads {} lungs (1..=8)", c.lungs.len()));
        }
        let anatomy = self.anatomy.as_deref().unwrap_or_default();
        for lung in &c.lungs {
            if !self.regions.contains(lung) || !anatomy.contains(lung) {
                return bad(format!(
                    "crop model lung {lung:?} is not both a region and an anatomy structure"
                ));
            }
        }
        let fits = |v: u32| v > 0 && v <= 2048 && c.stride > 0 && v.is_multiple_of(c.stride);
        if !fits(c.width) || !fits(c.height) {
            return bad(format!(
                "crop model crop {} x {} is not in 1..=2048 in whole cells of {}",
                c.width, c.height, c.stride
            ));
        }
        if !(c.margin.is_finite() && (0.0..=1.0).contains(&c.margin)) {
            return bad(format!("crop model margin {} is not in 0..=1", c.margin));
        }
        Ok(())
    }

    /// Checks `bytes` against the digest listed for `file`.
    pub fn verify_file(&self, file: &str, bytes: &[u8]) -> Result<(), ManifestError> {
        let listed = self
            .files
            .get(file)
            .ok_or_else(|| ManifestError::Unlisted(file.to_string()))?;
        if listed.bytes != bytes.len() as u64 {
            return Err(ManifestError::Size {
                file: file.to_string(),
                expected: listed.bytes,
                actual: bytes.len() as u64,
            });
        }
        let actual = sha256_hex(bytes);
        if actual != listed.sha256 {
            return Err(ManifestError::Digest {
                file: file.to_string(),
                expected: listed.sha256.clone(),
                actual,
            });
        }
        Ok(())
    }

    /// The region-level probability threshold of a finding (the image-level one when the
    /// manifest sets none).
    pub fn region_threshold(&self, finding: &str) -> f32 {
        self.region_thresholds
            .get(finding)
            .copied()
            .unwrap_or_else(|| self.threshold(finding))
    }

    /// The probability threshold of a finding (0.5 when the manifest sets none).
    pub fn threshold(&self, finding: &str) -> f32 {
        self.thresholds.get(finding).copied().unwrap_or(0.5)
    }

    /// Whether the model was trained to assess `finding` (every named finding when the
    /// manifest has no `assessed` list).
    pub fn is_assessed(&self, finding: &str) -> bool {
        match &self.assessed {
            Some(list) => list.iter().any(|f| f == finding),
            None => self.findings.iter().any(|f| f == finding),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest() -> Manifest {
        Manifest {
            format: FORMAT.into(),
            format_version: FORMAT_VERSION,
            name: "t".into(),
            version: "0".into(),
            description: String::new(),
            input: InputSpec {
                name: "image".into(),
                size: 64,
                letterbox: "centre".into(),
                mean: 0.5,
                std: 0.25,
            },
            image_model: "image.onnx".into(),
            outputs: vec![OutputSpec {
                name: "finding_logits".into(),
                shape: vec![1, 2],
                description: String::new(),
            }],
            findings: vec!["a".into(), "b".into()],
            thresholds: BTreeMap::from([("a".into(), 0.3)]),
            files: BTreeMap::from([("image.onnx".into(), FileDigest::of(b"abc"))]),
            training: Training {
                data: "none".into(),
                steps: 0,
                seed: 0,
                notes: String::new(),
                metrics: BTreeMap::new(),
            },
            regions: Vec::new(),
            anatomy: None,
            grid: None,
            text_model: None,
            region_thresholds: BTreeMap::new(),
            check_thresholds: None,
            assessed: None,
            crop_model: None,
            anatomy_check: None,
        }
    }

    #[test]
    fn sha256_matches_the_published_test_vector() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn round_trip_and_verification() {
        let m = manifest();
        let back = Manifest::from_json(&m.to_json()).unwrap();
        assert_eq!(back, m);
        assert!(m.verify_file("image.onnx", b"abc").is_ok());
        assert!(matches!(
            m.verify_file("image.onnx", b"abd"),
            Err(ManifestError::Digest { .. })
        ));
        assert!(matches!(
            m.verify_file("image.onnx", b"ab"),
            Err(ManifestError::Size { .. })
        ));
        assert!(matches!(
            m.verify_file("text.onnx", b"ab"),
            Err(ManifestError::Unlisted(_))
        ));
        assert_eq!(m.threshold("a"), 0.3);
        assert_eq!(m.threshold("b"), 0.5);
    }

    #[test]
    fn inconsistent_manifests_are_refused_with_the_reason() {
        let mut m = manifest();
        m.findings.pop();
        let e = Manifest::from_json(&m.to_json()).unwrap_err();
        assert!(
            e.to_string()
                .contains("finding_logits has shape [1, 2] but 1 findings"),
            "{e}"
        );
        let mut m = manifest();
        m.format_version = 99;
        assert!(matches!(
            Manifest::from_json(&m.to_json()),
            Err(ManifestError::Version { .. })
        ));
        assert!(matches!(
            Manifest::from_json("{"),
            Err(ManifestError::Syntax(_))
        ));
        // Anatomy structures need a square masks output with one channel each.
        let mut m = manifest();
        m.anatomy = Some(vec!["right lung".into(), "left lung".into()]);
        let e = Manifest::from_json(&m.to_json()).unwrap_err().to_string();
        assert!(e.contains("no anatomy_masks output"), "{e}");
        m.outputs.push(OutputSpec {
            name: "anatomy_masks".into(),
            shape: vec![1, 3, 40, 40],
            description: String::new(),
        });
        let e = Manifest::from_json(&m.to_json()).unwrap_err().to_string();
        assert!(e.contains("[1, 3, 40, 40] but 2 structures"), "{e}");
        m.outputs[1].shape = vec![1, 2, 40, 40];
        assert_eq!(Manifest::from_json(&m.to_json()).unwrap(), m);
        // An anatomy check reads both lungs' masks, and its thresholds are shares.
        let check = AnatomyCheck {
            min_lung_area: 0.02,
            min_lung_height: 0.15,
            min_lung_separation: 0.13,
            min_lung_overlap: 0.4,
            description: "hand-made".into(),
        };
        m.anatomy_check = Some(check.clone());
        assert_eq!(Manifest::from_json(&m.to_json()).unwrap(), m);
        m.anatomy_check = Some(AnatomyCheck {
            min_lung_overlap: 2.0,
            ..check.clone()
        });
        let e = Manifest::from_json(&m.to_json()).unwrap_err().to_string();
        assert!(e.contains("must be shares in 0..=1"), "{e}");
        m.anatomy_check = Some(check);
        m.anatomy = Some(vec!["right lung".into(), "heart".into()]);
        let e = Manifest::from_json(&m.to_json()).unwrap_err().to_string();
        assert!(
            e.contains("anatomy_check needs the right and left lung"),
            "{e}"
        );
    }

    #[test]
    fn a_crop_model_needs_its_file_finding_and_lungs() {
        let mut m = manifest();
        m.regions = vec!["right lung".into()];
        m.anatomy = Some(vec!["right lung".into()]);
        m.outputs.push(OutputSpec {
            name: "anatomy_masks".into(),
            shape: vec![1, 1, 40, 40],
            description: String::new(),
        });
        m.outputs.push(OutputSpec {
            name: "region_boxes".into(),
            shape: vec![1, 1, 4],
            description: String::new(),
        });
        m.crop_model = Some(CropModelSpec {
            file: "crop.onnx".into(),
            finding: "b".into(),
            lungs: vec!["right lung".into()],
            width: 128,
            height: 256,
            margin: 0.06,
            stride: 8,
            probability_output: "nodule".into(),
            description: String::new(),
        });
        let refused = |m: &Manifest| Manifest::from_json(&m.to_json()).unwrap_err().to_string();
        assert!(
            refused(&m).contains("\"crop.onnx\" has no digest"),
            "{}",
            refused(&m)
        );
        m.files.insert("crop.onnx".into(), FileDigest::of(b"x"));
        assert_eq!(Manifest::from_json(&m.to_json()).unwrap(), m);
        let mut bad = m.clone();
        bad.crop_model.as_mut().unwrap().finding = "z".into();
        assert!(refused(&bad).contains("finding \"z\""), "{}", refused(&bad));
        let mut bad = m.clone();
        bad.crop_model.as_mut().unwrap().lungs = vec!["left lung".into()];
        assert!(
            refused(&bad).contains("\"left lung\" is not both"),
            "{}",
            refused(&bad)
        );
        let mut bad = m.clone();
        bad.crop_model.as_mut().unwrap().width = 100;
        assert!(refused(&bad).contains("100 x 256"), "{}", refused(&bad));
        let mut bad = m.clone();
        bad.crop_model.as_mut().unwrap().margin = 2.0;
        assert!(refused(&bad).contains("margin"), "{}", refused(&bad));
    }
}
