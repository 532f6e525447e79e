//! Training data: Chest ImaGenome scene graphs joined with MIMIC-CXR reports and images (DICOM or
//! JPG), laid out as the datasets lay them out (the phantom generator writes the same layout):
//!
//! ```text
//! ROOT/silver_dataset/scene_graph/<dicom_id>_SceneGraph.json   Chest ImaGenome
//! ROOT/files/p1X/p<subject>/s<study>/<dicom_id>.dcm | .jpg      MIMIC-CXR / MIMIC-CXR-JPG
//! ROOT/files/p1X/p<subject>/s<study>.txt                        MIMIC-CXR reports
//! ROOT/mimic-cxr-2.0.0-split.csv                                dicom_id,study_id,subject_id,split
//! ```
//!
//! Every box is validated (negative, zero area or outside the image: skipped and counted). Examples
//! are prepared (decode, letterbox, augmentation that moves the boxes, report parsing through
//! asg-report, tokens) on worker threads ahead of the model.

use crate::data::error::{io, DataError};
use crate::vocab::REGIONS;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Which split.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    Train,
    Validate,
    Test,
}

/// One image with its report and boxes (original pixel coordinates).
#[derive(Debug, Clone)]
pub struct Record {
    pub image_id: String,
    pub image: PathBuf,
    /// The report file (empty when the labels and their text are `given`).
    pub report: PathBuf,
    pub split: Split,
    pub boxes: Vec<Option<[f32; 4]>>,
    /// Labels given with the image instead of parsed from a report (real films annotated by
    /// experts), with the text written from them.
    pub given: Option<GivenLabels>,
    /// How many times the record counts in the training order (its source's weight).
    pub weight: u32,
    /// Expert anatomy masks, one per [`crate::data::anatomy::ANATOMY`] channel (None where the
    /// film has none); None for sources without masks.
    pub anatomy: Option<std::sync::Arc<Vec<Option<crate::data::anatomy::Coverage>>>>,
}

/// Labels that come with an image, each finding or (region, finding) known or not: an unknown
/// one takes no part in the loss.
#[derive(Debug, Clone, PartialEq)]
pub struct GivenLabels {
    /// A report written from the labels (not a radiologist's reading), for the text losses.
    pub text: String,
    /// Per finding (the model's order): the target, or None when unknown.
    pub tags: Vec<Option<f32>>,
    /// `[REGIONS * FINDINGS]`: the target, or None when unknown.
    pub regions: Vec<Option<f32>>,
    /// A film read as normal (JSRT's non-nodule class, an ieee8023 "No Finding"): the films the
    /// thresholds must leave clean.
    pub normal: bool,
    /// Lesions outlined by experts, for the mask-based pointing game (not a training target).
    pub lesions: Vec<crate::data::masks::LesionMap>,
}

impl Record {
    /// The report text: the given one, else the report file read.
    pub fn report_text(&self) -> Result<String, DataError> {
        match &self.given {
            Some(g) => Ok(g.text.clone()),
            None => std::fs::read_to_string(&self.report).map_err(io(&self.report)),
        }
    }
}

/// What the scan found and skipped.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct ScanStats {
    pub scene_graphs: usize,
    pub records: usize,
    pub missing_image: usize,
    pub missing_report: usize,
    pub not_in_split: usize,
    pub boxes: usize,
    pub boxes_negative: usize,
    pub boxes_zero_area: usize,
    pub boxes_not_finite: usize,
    pub unknown_regions: usize,
    /// Counted when examples are prepared (the image size is known then).
    pub boxes_outside_image: usize,
}

/// A scanned data set.
#[derive(Debug, Clone)]
pub struct Dataset {
    pub root: PathBuf,
    pub records: Vec<Record>,
    pub stats: ScanStats,
}

pub(crate) fn region_index(name: &str) -> Option<usize> {
    asg_report::REGIONS.iter().position(|r| r.name == name)
}

/// Reads the split file: dicom_id -> (study, subject, split).
fn read_split(path: &Path) -> Result<HashMap<String, (String, String, Split)>, DataError> {
    let text = std::fs::read_to_string(path).map_err(io(path))?;
    let mut lines = text.lines();
    let header: Vec<&str> = lines
        .next()
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .collect();
    let col = |name: &str| {
        header
            .iter()
            .position(|h| *h == name)
            .ok_or_else(|| DataError::Layout {
                path: path.display().to_string(),
                reason: format!("no column {name:?} in the header {header:?}"),
            })
    };
    let (d, st, su, sp) = (
        col("dicom_id")?,
        col("study_id")?,
        col("subject_id")?,
        col("split")?,
    );
    let mut out = HashMap::new();
    for (n, line) in lines.enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let cols: Vec<&str> = line.split(',').map(str::trim).collect();
        let get = |i: usize| {
            cols.get(i).copied().ok_or_else(|| DataError::Layout {
                path: path.display().to_string(),
                reason: format!("line {}: {} columns", n + 2, cols.len()),
            })
        };
        let split = match get(sp)? {
            "train" => Split::Train,
            "validate" | "val" | "valid" => Split::Validate,
            "test" => Split::Test,
            other => {
                return Err(DataError::Layout {
                    path: path.display().to_string(),
                    reason: format!("line {}: unknown split {other:?}", n + 2),
                })
            }
        };
        out.insert(
            get(d)?.to_string(),
            (get(st)?.to_string(), get(su)?.to_string(), split),
        );
    }
    Ok(out)
}

/// The anatomy masks a set may carry beside its scene graphs (the phantoms write them):
/// `anatomy/<image id>/<name>.png`, named as the realcxr layout names them (`right_lung`, `heart`
/// ...). None when the folder is absent; a mask that does not decode is an error naming it.
fn read_anatomy(
    root: &Path,
    image_id: &str,
) -> Result<Option<std::sync::Arc<Vec<Option<crate::data::anatomy::Coverage>>>>, DataError> {
    let dir = root.join("anatomy").join(image_id);
    if image_id.contains(['/', '\\']) || image_id.contains("..") || !dir.is_dir() {
        return Ok(None);
    }
    let mut masks = Vec::new();
    for (_, name) in crate::vocab::ANATOMY {
        let path = dir.join(format!("{name}.png"));
        if !path.is_file() {
            masks.push(None);
            continue;
        }
        let (w, h) = image::image_dimensions(&path).map_err(|e| DataError::Image {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        let mask = crate::data::masks::load_mask(&path, w, h)?;
        masks.push(crate::data::anatomy::Coverage::from_mask(&mask));
    }
    Ok(masks
        .iter()
        .any(Option::is_some)
        .then(|| std::sync::Arc::new(masks)))
}

/// Finds the scene graphs, joins them with the split file, the images and the reports, and
/// validates the boxes.
pub fn scan(root: &Path) -> Result<Dataset, DataError> {
    let graphs_dir = root.join("silver_dataset").join("scene_graph");
    let split_path = root.join("mimic-cxr-2.0.0-split.csv");
    if !graphs_dir.is_dir() {
        return Err(DataError::Layout {
            path: root.display().to_string(),
            reason: "no silver_dataset/scene_graph folder (see trainer/README.md for the layout)"
                .into(),
        });
    }
    let split = read_split(&split_path)?;
    let mut names: Vec<PathBuf> = std::fs::read_dir(&graphs_dir)
        .map_err(io(&graphs_dir))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.to_string_lossy().ends_with("_SceneGraph.json"))
        .collect();
    names.sort();
    let mut stats = ScanStats::default();
    let mut records = Vec::new();
    for path in names {
        stats.scene_graphs += 1;
        let text = std::fs::read_to_string(&path).map_err(io(&path))?;
        let graph: serde_json::Value =
            serde_json::from_str(&text).map_err(|source| DataError::Json {
                path: path.display().to_string(),
                source,
            })?;
        let image_id = graph["image_id"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| {
                path.file_name()
                    .map(|n| {
                        n.to_string_lossy()
                            .trim_end_matches("_SceneGraph.json")
                            .to_string()
                    })
                    .unwrap_or_default()
            });
        let Some((study, subject, which)) = split.get(&image_id).cloned() else {
            stats.not_in_split += 1;
            continue;
        };
        let group = format!("p{}", &subject[..subject.len().min(2)]);
        let study_dir = root.join("files").join(group).join(format!("p{subject}"));
        let image_dir = study_dir.join(format!("s{study}"));
        let image = ["dcm", "jpg", "jpeg", "png"]
            .iter()
            .map(|x| image_dir.join(format!("{image_id}.{x}")))
            .find(|p| p.is_file());
        let Some(image) = image else {
            stats.missing_image += 1;
            continue;
        };
        let report = study_dir.join(format!("s{study}.txt"));
        if !report.is_file() {
            stats.missing_report += 1;
            continue;
        }
        let mut boxes = vec![None; REGIONS];
        for o in graph["objects"].as_array().into_iter().flatten() {
            let name = o["bbox_name"].as_str().unwrap_or("");
            let Some(r) = region_index(name) else {
                stats.unknown_regions += 1;
                continue;
            };
            stats.boxes += 1;
            let v = |k: &str| o[k].as_f64().unwrap_or(f64::NAN) as f32;
            let b = [
                v("original_x1"),
                v("original_y1"),
                v("original_x2"),
                v("original_y2"),
            ];
            if b.iter().any(|x| !x.is_finite()) {
                stats.boxes_not_finite += 1;
            } else if b.iter().any(|x| *x < 0.0) {
                stats.boxes_negative += 1;
            } else if b[2] <= b[0] || b[3] <= b[1] {
                stats.boxes_zero_area += 1;
            } else {
                boxes[r] = Some(b);
            }
        }
        stats.records += 1;
        let anatomy = read_anatomy(root, &image_id)?;
        records.push(Record {
            image_id,
            image,
            report,
            split: which,
            boxes,
            given: None,
            weight: 1,
            anatomy,
        });
    }
    Ok(Dataset {
        root: root.to_path_buf(),
        records,
        stats,
    })
}
