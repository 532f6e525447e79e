//! The analysis of one image: what the model outputs, in terms a viewer can draw.

use crate::error::PluginError;
use crate::runtime::ModelBundle;
use asg_dicom::{preprocess_image, read_bytes, Image, Letterbox, Normalisation, ReadOptions};
use serde::{Deserialize, Serialize};
use web_time::Instant;

/// Version of the JSON layout of [`Analysis`]; bumped on incompatible change (3: `outputs`
/// only on request).
pub const ANALYSIS_SCHEMA_VERSION: u32 = 3;

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
    /// The study the image belongs to (for per-study summaries).
    #[serde(default)]
    pub study_instance_uid: String,
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
    /// Probability at or above the manifest's threshold (never for a finding not assessed).
    pub present: bool,
    /// Whether the model was trained to assess this finding (the manifest's `assessed` list);
    /// a finding not assessed is scored by the network but says nothing and is never present.
    #[serde(default = "assessed_default")]
    pub assessed: bool,
    /// Regions whose region-level probability for this finding is at or above its region
    /// threshold, most probable first.
    #[serde(default)]
    pub regions: Vec<String>,
    /// Where the model looks for this finding (the tag decoder's attention).
    #[serde(default)]
    pub heatmap: Option<Heatmap>,
}

fn assessed_default() -> bool {
    true
}

/// A finding's attention over the model input's grid.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Heatmap {
    /// Cells per side; `values` is `grid * grid`, row-major over the model input square (map it
    /// to the image through `letterbox`).
    pub grid: u32,
    /// Which output it comes from: `finding_maps` (the region-finding head per cell; `max` is a
    /// probability) or `tag_attention` (attention weights).
    #[serde(default)]
    pub source: String,
    /// The largest cell's value before scaling.
    #[serde(default)]
    pub max: f32,
    /// Scaled so that the largest cell is 1.
    pub values: Vec<f32>,
    /// Centre of the peak cell, in the original image's pixels.
    pub peak: [f32; 2],
    /// The smallest anatomical region whose box holds the peak.
    pub peak_region: Option<String>,
}

/// The box of a structure whose mask had specks left out of its outline becomes the part of
/// it the kept parts span: the model's box spans every pixel of the mask, specks included (a
/// stray blob above a lung stretched its box), while the outline the viewer draws leaves them
/// out. A lung's zones and apical zone, read off its mask by the same rules, are clipped to its
/// new box. Structures without specks keep the model's boxes, and so do the clavicles: thin,
/// their masks often break into pieces that are bone, not specks (snapped, the left clavicle's
/// box IoU fell from 0.743 to 0.730 on the realcxr validation and test films, while the ieee8023
/// lungs rose from 0.870 / 0.862 to 0.880 / 0.875 and the mediastinum from 0.792 to 0.809).
fn snap_boxes_to_outlines(
    regions: &mut [RegionResult],
    anatomy: &[crate::outline::AnatomyOutline],
) {
    let intersect = |a: [f32; 4], b: [f32; 4]| -> Option<[f32; 4]> {
        let c = [
            a[0].max(b[0]),
            a[1].max(b[1]),
            a[2].min(b[2]),
            a[3].min(b[3]),
        ];
        (c[0] < c[2] && c[1] < c[3]).then_some(c)
    };
    for outline in anatomy
        .iter()
        .filter(|o| o.specks_left_out > 0 && !o.name.ends_with("clavicle"))
    {
        let Some(extent) = outline.extent() else {
            continue;
        };
        let Some(snapped) = regions
            .iter_mut()
            .find(|r| r.name == outline.name)
            .and_then(|r| {
                r.bbox = intersect(r.bbox, extent)?;
                Some(r.bbox)
            })
        else {
            continue;
        };
        let Some(side) = outline.name.strip_suffix(" lung") else {
            continue;
        };
        let zones = [
            "upper lung zone",
            "mid lung zone",
            "lower lung zone",
            "apical zone",
        ]
        .map(|z| format!("{side} {z}"));
        for r in regions.iter_mut().filter(|r| zones.contains(&r.name)) {
            if let Some(b) = intersect(r.bbox, snapped) {
                r.bbox = b;
            }
        }
    }
}

/// An anatomical region found in the image.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegionResult {
    /// Chest ImaGenome region name.
    pub name: String,
    /// x1, y1, x2, y2 in the original image's pixels (clipped to the image).
    pub bbox: [f32; 4],
    /// Region-level probability of each finding, in the order of the manifest's findings.
    pub probabilities: Vec<f32>,
    /// Findings at or above their region threshold here.
    pub findings: Vec<String>,
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
    /// Of `postprocess_ms`: cutting the lung crops and running the crop model (bundles with one).
    #[serde(default)]
    pub crop_model_ms: f64,
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
    /// Anatomical regions (bundles with a box head; empty otherwise).
    #[serde(default)]
    pub regions: Vec<RegionResult>,
    /// Outlines of the anatomy the model segments (lungs, heart, clavicles, mediastinum), in
    /// image pixels; bundles without an `anatomy_masks` output give none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub anatomy: Vec<crate::outline::AnatomyOutline>,
    /// The model's raw outputs (attention maps, finding maps, embeddings: ~150 KB of numbers).
    /// Always filled by [`ModelBundle::analyze`] (the report check reads `region_embeddings`);
    /// left out of the JSON the CLI and the Python package write unless asked for
    /// (`--raw-outputs`, `raw_outputs=True`), and never written when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub outputs: Vec<NamedOutput>,
    pub timings: Timings,
}

impl Analysis {
    /// The findings present on the image or at or above their region threshold in any region,
    /// sorted, each once. The viewer, the overlay, the SR and FHIR show only the findings
    /// present on the image (with the regions that carry them); the region lists of the JSON
    /// hold the others too.
    pub fn flagged_in_regions_too(&self) -> Vec<&str> {
        let mut present: Vec<&str> = self
            .findings
            .iter()
            .filter(|f| f.present)
            .map(|f| f.name.as_str())
            .chain(
                self.regions
                    .iter()
                    .flat_map(|r| r.findings.iter().map(String::as_str)),
            )
            .collect();
        present.sort_unstable();
        present.dedup();
        present
    }

    /// The analysis without its raw outputs (what a JSON result holds by default).
    pub fn without_outputs(&self) -> Analysis {
        Analysis {
            schema_version: self.schema_version,
            model: self.model.clone(),
            image: self.image.clone(),
            warnings: self.warnings.clone(),
            letterbox: self.letterbox,
            findings: self.findings.clone(),
            regions: self.regions.clone(),
            anatomy: self.anatomy.clone(),
            outputs: Vec::new(),
            timings: self.timings.clone(),
        }
    }
}

/// A model-input pixel mapped back through the letterbox to the image's pixels, clipped to
/// the image.
fn image_pixel(letterbox: &Letterbox, image: &Image, x: f64, y: f64) -> (f32, f32) {
    let (ix, iy) = letterbox.to_image(x, y);
    (
        ix.clamp(0.0, image.width as f64) as f32,
        iy.clamp(0.0, image.height as f64) as f32,
    )
}

fn ms_since(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e3
}

/// The smallest region whose box holds the image point (x, y).
pub(crate) fn smallest_region_at(regions: &[RegionResult], x: f32, y: f32) -> Option<String> {
    regions
        .iter()
        .filter(|r| x >= r.bbox[0] && x <= r.bbox[2] && y >= r.bbox[1] && y <= r.bbox[3])
        .min_by(|a, b| area(a.bbox).total_cmp(&area(b.bbox)))
        .map(|r| r.name.clone())
}

/// The regions that list finding `name` (index `f`), most probable first.
pub(crate) fn regions_carrying(regions: &[RegionResult], f: usize, name: &str) -> Vec<String> {
    let mut carrying: Vec<(f32, &str)> = regions
        .iter()
        .filter(|r| r.findings.iter().any(|n| n == name))
        .map(|r| {
            (
                r.probabilities.get(f).copied().unwrap_or(0.0),
                r.name.as_str(),
            )
        })
        .collect();
    carrying.sort_by(|a, b| b.0.total_cmp(&a.0));
    carrying.into_iter().map(|(_, n)| n.to_string()).collect()
}

fn area(b: [f32; 4]) -> f32 {
    (b[2] - b[0]).max(0.0) * (b[3] - b[1]).max(0.0)
}

pub(crate) fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

/// The DICOM modalities of projection radiographs: computed and digital radiography (DR is
/// retired), radiographic imaging, and OT, which film digitisers and picture converters
/// (dcmtk's img2dcm) write.
pub const RADIOGRAPH_MODALITIES: [&str; 5] = ["CR", "DX", "DR", "RG", "OT"];

/// Whether a Modality (0008,0060) value is one the model reads (case and padding ignored).
pub fn is_radiograph_modality(modality: &str) -> bool {
    let m = modality.trim().to_ascii_uppercase();
    m.is_empty() || RADIOGRAPH_MODALITIES.contains(&m.as_str())
}

/// What a Body Part Examined (0018,0015) value says about the film.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyPart {
    /// The chest (CHEST, THORAX, LUNG, CHESTABDOMEN, "Chest PA", TORAX...).
    Chest,
    /// A part that is not the chest: a hand, a knee, an abdomen, a spine...
    Other,
    /// A value this list does not know (read as a chest film, with a warning).
    Unknown,
}

/// Words of Body Part Examined values that name the chest (DICOM PS3.16 CID 4031 terms and
/// variants seen in archives), matched inside the value with spaces and punctuation removed.
const CHEST_WORDS: [&str; 8] = [
    "CHEST", "THORAX", "TORAX", "THORAC", "LUNG", "PULM", "CXR", "POUMON",
];

/// Body Part Examined values of radiographs that are not of the chest (CID 4031 and common
/// abbreviations), matched at the start of the value with spaces and punctuation removed.
const OTHER_PARTS: [&str; 52] = [
    "ABDOMEN",
    "ABD",
    "ANKLE",
    "ARM",
    "BREAST",
    "CALCANEUS",
    "CLAVICLE",
    "COCCYX",
    "CSPINE",
    "ELBOW",
    "EXTREMITY",
    "FACE",
    "FEMUR",
    "FIBULA",
    "FINGER",
    "FOOT",
    "FOREARM",
    "HAND",
    "HEAD",
    "HEEL",
    "HIP",
    "HUMERUS",
    "JAW",
    "KNEE",
    "KUB",
    "LEG",
    "LOWEXM",
    "LOWERLIMB",
    "LSPINE",
    "MANDIBLE",
    "NECK",
    "NOSE",
    "ORBIT",
    "PATELLA",
    "PELVIS",
    "RADIUS",
    "SACRUM",
    "SCAPULA",
    "SHOULDER",
    "SINUS",
    "SKULL",
    "SSPINE",
    "THIGH",
    "TIBIA",
    "TMJ",
    "TOE",
    "TSPINE",
    "ULNA",
    "UPPEXM",
    "UPPERLIMB",
    "WRIST",
    "ZYGOMA",
];

/// Classifies a Body Part Examined value. A spine film is not a chest film even when it names
/// the thoracic spine; a value that names the chest and more (CHESTABDOMEN) is the chest.
pub fn body_part(value: &str) -> BodyPart {
    let v: String = value
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_uppercase())
        .collect();
    if v.contains("SPINE") {
        BodyPart::Other
    } else if CHEST_WORDS.iter().any(|w| v.contains(w)) {
        BodyPart::Chest
    } else if OTHER_PARTS.iter().any(|p| v.starts_with(p)) {
        BodyPart::Other
    } else {
        BodyPart::Unknown
    }
}

/// Whether the image's View Position is a lateral (or decubitus, or left oblique) one: "LL",
/// "RL", "LATERAL", "LLD"...; PA and AP are frontal, a missing one is taken for frontal.
fn is_lateral(image: &Image) -> bool {
    image
        .meta
        .view_position
        .as_deref()
        .map(|v| v.trim().to_ascii_uppercase())
        .is_some_and(|v| v != "PA" && v != "AP" && v.contains('L'))
}

/// Warnings about views the model was not made for.
fn view_warnings(image: &Image) -> Vec<String> {
    match image.meta.view_position.as_deref().map(str::to_ascii_uppercase).as_deref() {
        Some("PA") | Some("AP") => vec![],
        Some(v) if is_lateral(image) => vec![format!(
            "view position {v} is not frontal: the model reads PA/AP films, so it gives no findings, regions or outlines for this image"
        )],
        Some(v) => vec![format!("view position {v} is not PA or AP: results may be unreliable")],
        None => vec!["view position not recorded: assumed frontal".to_string()],
    }
}

fn output<'a>(outputs: &'a [NamedOutput], name: &str) -> Option<&'a NamedOutput> {
    outputs.iter().find(|o| o.name == name)
}

/// The plane of the `anatomy_masks` channel of structure `name` (`side` x `side`
/// probabilities, `side` the output's last dimension); None when `names` has no such structure
/// or the output is too short to hold it.
pub(crate) fn mask_plane<'a>(
    masks: &'a NamedOutput,
    names: &[String],
    name: &str,
) -> Option<&'a [f32]> {
    let side = masks.shape.last().copied().unwrap_or(0);
    let k = names.iter().position(|n| n == name)?;
    masks.values.get(k * side * side..(k + 1) * side * side)
}

impl ModelBundle {
    fn bad_output(&self, reason: String) -> PluginError {
        PluginError::Model {
            bundle: self.source.clone(),
            reason,
        }
    }

    /// Regions with their boxes in image pixels and findings; fills each finding's regions and
    /// heatmap. Bundles without region outputs give no regions.
    fn regions(
        &self,
        outputs: &[NamedOutput],
        letterbox: &Letterbox,
        image: &Image,
        findings: &mut [FindingScore],
        anatomy: &[crate::outline::AnatomyOutline],
    ) -> Result<Vec<RegionResult>, PluginError> {
        let m = &self.manifest;
        let nf = m.findings.len();
        let nr = m.regions.len();
        let (Some(boxes), Some(logits)) = (
            output(outputs, "region_boxes"),
            output(outputs, "region_logits"),
        ) else {
            return Ok(Vec::new());
        };
        if boxes.values.len() != nr * 4 || logits.values.len() != nr * nf {
            return Err(self.bad_output(format!(
                "region outputs hold {} boxes and {} logits for {nr} regions and {nf} findings",
                boxes.values.len(),
                logits.values.len()
            )));
        }
        let size = letterbox.size as f64;
        let to_image = |x: f64, y: f64| image_pixel(letterbox, image, x * size, y * size);
        let mut regions = Vec::with_capacity(nr);
        for (r, name) in m.regions.iter().enumerate() {
            let b = &boxes.values[r * 4..r * 4 + 4];
            let (x1, y1) = to_image(b[0] as f64, b[1] as f64);
            let (x2, y2) = to_image(b[2] as f64, b[3] as f64);
            let probabilities: Vec<f32> = logits.values[r * nf..(r + 1) * nf]
                .iter()
                .map(|&l| sigmoid(l))
                .collect();
            let present = m
                .findings
                .iter()
                .zip(&probabilities)
                .filter(|(f, &p)| m.is_assessed(f) && p >= m.region_threshold(f))
                .map(|(f, _)| f.clone())
                .collect();
            regions.push(RegionResult {
                name: name.clone(),
                bbox: [x1, y1, x2, y2],
                probabilities,
                findings: present,
            });
        }
        snap_boxes_to_outlines(&mut regions, anatomy);
        for (f, finding) in findings.iter_mut().enumerate() {
            finding.regions = regions_carrying(&regions, f, &finding.name);
        }
        // The heatmap: the tag decoder's attention (it points at findings better than the region
        // head's per-cell maps: pointing game 0.51 against 0.14 on the default model's test
        // split, see its model card); the maps where a bundle has no attention.
        let (map, source) = match (
            output(outputs, "tag_attention"),
            output(outputs, "finding_maps"),
        ) {
            (Some(a), _) => (Some(a), "tag_attention"),
            (None, Some(m)) => (Some(m), "finding_maps"),
            (None, None) => (None, ""),
        };
        if let (Some(attention), Some(g)) = (map, m.grid) {
            let g = g as usize;
            let cells = g * g;
            if attention.values.len() != nf * cells {
                return Err(self.bad_output(format!(
                    "{source} holds {} values for {nf} findings and a {g}x{g} grid",
                    attention.values.len()
                )));
            }
            for (f, finding) in findings.iter_mut().enumerate() {
                let a = &attention.values[f * cells..(f + 1) * cells];
                // Class activation maps are logits: shown as probabilities.
                let a: Vec<f32> = if source == "finding_maps" {
                    a.iter().map(|&v| sigmoid(v)).collect()
                } else {
                    a.to_vec()
                };
                let (peak, max) =
                    a.iter().enumerate().fold(
                        (0, f32::MIN),
                        |acc, (i, &v)| if v > acc.1 { (i, v) } else { acc },
                    );
                let values = a.iter().map(|v| v / max.max(1e-12)).collect();
                let (px, py) = (
                    ((peak % g) as f64 + 0.5) / g as f64,
                    ((peak / g) as f64 + 0.5) / g as f64,
                );
                let (ix, iy) = to_image(px, py);
                let peak_region = smallest_region_at(&regions, ix, iy);
                finding.heatmap = Some(Heatmap {
                    grid: g as u32,
                    source: source.to_string(),
                    max: max.max(0.0),
                    values,
                    peak: [ix, iy],
                    peak_region,
                });
            }
        }
        Ok(regions)
    }

    /// The anatomy outlines in image pixels, when the bundle names anatomy structures and its
    /// model gives their masks.
    fn anatomy(
        &self,
        outputs: &[NamedOutput],
        letterbox: &Letterbox,
        image: &Image,
    ) -> Result<Vec<crate::outline::AnatomyOutline>, PluginError> {
        let (Some(names), Some(masks)) = (&self.manifest.anatomy, output(outputs, "anatomy_masks"))
        else {
            return Ok(Vec::new());
        };
        let side = masks.shape.last().copied().unwrap_or(0);
        let to_image = |x: f64, y: f64| image_pixel(letterbox, image, x, y);
        crate::outline::outlines(&masks.values, names, side, letterbox.size as f64, &to_image)
            .map_err(|reason| self.bad_output(reason))
    }

    /// Why the image does not look like an upright frontal chest film by the bundle's
    /// [`asg_bundle::AnatomyCheck`] on the image model's lung masks; None when it does, or when
    /// the bundle has no such check.
    fn implausible_anatomy(
        &self,
        outputs: &[NamedOutput],
        letterbox: &Letterbox,
    ) -> Option<String> {
        let check = self.manifest.anatomy_check.as_ref()?;
        let names = self.manifest.anatomy.as_ref()?;
        let masks = output(outputs, "anatomy_masks")?;
        let side = masks.shape.last().copied().unwrap_or(0);
        let right = mask_plane(masks, names, "right lung")?;
        let left = mask_plane(masks, names, "left lung")?;
        // The image's extent inside the input square, in mask cells.
        let cell = side as f32 / letterbox.size.max(1) as f32;
        let content = [
            letterbox.offset_x as f32 * cell,
            letterbox.offset_y as f32 * cell,
            (letterbox.offset_x + letterbox.content_width) as f32 * cell,
            (letterbox.offset_y + letterbox.content_height) as f32 * cell,
        ];
        check.failure(&asg_bundle::LungLayout::measure(right, left, side, content))
    }

    /// Runs the lung-crop model on the lungs the image model found and puts its answer into the
    /// findings and regions ([`crate::crops`]). A lung without a box is left out with a warning;
    /// with neither, the finding is not assessed on this image.
    #[allow(clippy::too_many_arguments)]
    fn read_crops(
        &self,
        model: &crate::runtime::CropModel,
        image: &Image,
        letterbox: &Letterbox,
        outputs: &[NamedOutput],
        findings: &mut [FindingScore],
        regions: &mut [RegionResult],
        warnings: &mut Vec<String>,
    ) -> Result<(), PluginError> {
        let m = &self.manifest;
        let spec = &model.spec;
        let Some(f) = m.findings.iter().position(|n| *n == spec.finding) else {
            return Err(self.bad_output(format!(
                "the crop model's finding {:?} is not a finding",
                spec.finding
            )));
        };
        let (Some(names), Some(masks)) = (&m.anatomy, output(outputs, "anatomy_masks")) else {
            return Err(
                self.bad_output("the crop model needs the image model's anatomy_masks".into())
            );
        };
        let mut inputs = crate::crops::crop_inputs(
            spec,
            image,
            letterbox,
            regions,
            names,
            masks,
            Normalisation {
                mean: m.input.mean,
                std: m.input.std,
            },
        )
        .map_err(|reason| self.bad_output(reason))?;
        let missing: Vec<&str> = spec
            .lungs
            .iter()
            .zip(&inputs.frames)
            .filter(|(_, frame)| frame.is_none())
            .map(|(n, _)| n.as_str())
            .collect();
        if missing.len() == spec.lungs.len() {
            if let Some(finding) = findings.get_mut(f) {
                finding.assessed = false;
                finding.present = false;
                finding.regions.clear();
                finding.heatmap = None;
            }
            warnings.push(format!(
                "no lung was found, so {} is not assessed on this image",
                spec.finding
            ));
            return Ok(());
        }
        if !missing.is_empty() {
            warnings.push(format!(
                "{} not found: {} is read in the other lung only",
                missing.join(" and "),
                spec.finding
            ));
        }
        // The crops go to the model (not needed after); the coverage stays for the cells.
        let scores = model
            .run(std::mem::take(&mut inputs.crops), inputs.coverage.clone())
            .map_err(|e| PluginError::Model {
                bundle: self.source.clone(),
                reason: format!("{} failed: {e:#}", spec.file),
            })?;
        crate::crops::apply_crop_scores(
            spec,
            &inputs,
            &scores,
            f,
            findings,
            regions,
            letterbox,
            image,
            m.threshold(&spec.finding),
            m.region_threshold(&spec.finding),
        );
        Ok(())
    }

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
        if let Some(m) = image.meta.modality.as_deref() {
            if !is_radiograph_modality(m) {
                return Err(PluginError::NotARadiograph {
                    source_name: source_name.to_string(),
                    modality: m.to_string(),
                });
            }
        }
        let part_kind = image
            .meta
            .body_part_examined
            .as_deref()
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(|p| (p, body_part(p)));
        if let Some((p, BodyPart::Other)) = part_kind {
            return Err(PluginError::NotAChest {
                source_name: source_name.to_string(),
                body_part: p.to_string(),
            });
        }
        let mut analysis = self.analyze(&image)?;
        if let Some((p, BodyPart::Unknown)) = part_kind {
            analysis.warnings.push(format!(
                "body part examined {p} is not one known to be the chest: read as a chest film"
            ));
        }
        analysis.timings.decode_ms = decode_ms;
        analysis.timings.total_ms += decode_ms;
        Ok((analysis, image))
    }

    /// Reads a DICOM file or a PNG/JPEG picture held in memory (told apart by their first bytes)
    /// and analyses it, returning the decoded image too. A picture's analysis opens its warnings
    /// with what a picture lacks (spacing, view, identity); its decoding is timed as DICOM's is.
    #[cfg(feature = "pictures")]
    pub fn analyze_input(
        &self,
        bytes: &[u8],
        source_name: &str,
        options: &ReadOptions,
    ) -> Result<(Analysis, Image), PluginError> {
        use asg_dicom::picture;
        let Some(format) = picture::picture_format(bytes) else {
            return self.analyze_dicom_image(bytes, source_name, options);
        };
        let start = Instant::now();
        let image = picture::read_picture(bytes, source_name, options)?;
        let decode_ms = ms_since(start);
        let mut analysis = self.analyze(&image)?;
        analysis.timings.decode_ms = decode_ms;
        analysis.timings.total_ms += decode_ms;
        analysis
            .warnings
            .insert(0, picture::picture_warning(format));
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
                    let assessed = m.is_assessed(name);
                    FindingScore {
                        name: name.clone(),
                        logit,
                        probability,
                        present: assessed && probability >= m.threshold(name),
                        assessed,
                        regions: Vec::new(),
                        heatmap: None,
                    }
                })
                .collect(),
            None => vec![],
        };
        let mut findings = findings;
        let mut warnings = view_warnings(image);
        let mut crop_model_ms = 0.0;
        let lateral = is_lateral(image);
        let implausible = if lateral {
            None
        } else {
            self.implausible_anatomy(&outputs, &input.letterbox)
        };
        if let Some(why) = &implausible {
            warnings.push(format!(
                "the model did not find the lungs of an upright frontal chest film: {why}. Another \
                 body part, a blank picture, or a film rotated, flipped or cut? It gives no \
                 findings, regions or outlines for this image"
            ));
        }
        let (regions, anatomy) = if lateral || implausible.is_some() {
            // The model reads upright frontal chest films: on a lateral, or where it cannot find
            // such a film's lungs, its findings would be false alarms and its boxes nonsense, so
            // it says nothing (the warning says why).
            for f in &mut findings {
                f.present = false;
                f.assessed = false;
            }
            (Vec::new(), Vec::new())
        } else {
            let anatomy = self.anatomy(&outputs, &input.letterbox, image)?;
            let mut regions =
                self.regions(&outputs, &input.letterbox, image, &mut findings, &anatomy)?;
            if let Some(model) = &self.crop_model {
                let t = Instant::now();
                self.read_crops(
                    model,
                    image,
                    &input.letterbox,
                    &outputs,
                    &mut findings,
                    &mut regions,
                    &mut warnings,
                )?;
                crop_model_ms = ms_since(t);
            }
            (regions, anatomy)
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
                study_instance_uid: image.meta.study_instance_uid.clone(),
                modality: image.meta.modality.clone(),
                view_position: image.meta.view_position.clone(),
                photometric_interpretation: image.meta.photometric_interpretation.clone(),
                pixel_spacing_mm: image.meta.pixel_spacing_mm,
            },
            warnings,
            letterbox: input.letterbox,
            findings,
            regions,
            anatomy,
            outputs,
            timings: Timings {
                decode_ms: 0.0,
                preprocess_ms,
                inference_ms,
                crop_model_ms,
                postprocess_ms,
                total_ms: preprocess_ms + inference_ms + postprocess_ms,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::{
        body_part, is_radiograph_modality, snap_boxes_to_outlines, BodyPart, RegionResult,
    };
    use crate::outline::AnatomyOutline;

    #[test]
    fn body_parts_examined_are_told_apart() {
        for chest in [
            "CHEST",
            "chest",
            "Chest PA",
            "THORAX",
            "TORAX",
            "CHESTABDOMEN",
            "LUNG",
            "CXR",
            "PORTABLE CHEST",
            "THORACIC CAVITY",
        ] {
            assert_eq!(body_part(chest), BodyPart::Chest, "{chest}");
        }
        for other in [
            "HAND",
            "Knee",
            "ABDOMEN",
            "PELVIS",
            "SKULL",
            "TSPINE",
            "T-SPINE",
            "THORACIC SPINE",
            "LSPINE",
            "SHOULDER",
            "WRIST",
            "FOOT",
            "hip left",
        ] {
            assert_eq!(body_part(other), BodyPart::Other, "{other}");
        }
        for unknown in ["PORTABLE", "", "ICU", "XR"] {
            assert_eq!(body_part(unknown), BodyPart::Unknown, "{unknown}");
        }
    }

    #[test]
    fn radiograph_modalities_whatever_their_case_and_padding() {
        for m in ["CR", "DX", "dx", " DR ", "RG", "OT", "", "  "] {
            assert!(is_radiograph_modality(m), "{m:?}");
        }
        for m in ["MR", "CT", "US", "MG", "XA", "NM", "PT", "SR", "DXX"] {
            assert!(!is_radiograph_modality(m), "{m:?}");
        }
    }

    fn region(name: &str, bbox: [f32; 4]) -> RegionResult {
        RegionResult {
            name: name.into(),
            bbox,
            probabilities: vec![],
            findings: vec![],
        }
    }

    fn square(x1: f32, y1: f32, x2: f32, y2: f32) -> Vec<[f32; 2]> {
        vec![[x1, y1], [x2, y1], [x2, y2], [x1, y2], [x1, y1]]
    }

    #[test]
    fn a_speck_no_longer_stretches_its_structure_or_its_zones() {
        // The right lung's mask: the lung at x 10..40, y 20..90, and a speck at y 2..6 that
        // stretched the model's box (and its upper zone) to the top. The heart has no speck and
        // keeps the model's box though its outline differs a little.
        let mut regions = vec![
            region("right lung", [10.0, 2.0, 40.0, 90.0]),
            region("right upper lung zone", [10.0, 2.0, 40.0, 31.0]),
            region("right apical zone", [10.0, 2.0, 40.0, 12.0]),
            region("right mid lung zone", [10.0, 31.0, 40.0, 60.0]),
            region("left lung", [50.0, 20.0, 80.0, 90.0]),
            region("left upper lung zone", [50.0, 20.0, 80.0, 43.0]),
            region("cardiac silhouette", [35.0, 50.0, 65.0, 85.0]),
            region("left clavicle", [50.0, 5.0, 80.0, 12.0]),
        ];
        let anatomy = vec![
            AnatomyOutline {
                name: "right lung".into(),
                rings: vec![square(10.0, 20.0, 40.0, 90.0)],
                specks_left_out: 1,
            },
            AnatomyOutline {
                name: "cardiac silhouette".into(),
                rings: vec![square(36.0, 51.0, 64.0, 84.0)],
                specks_left_out: 0,
            },
            AnatomyOutline {
                name: "left clavicle".into(),
                rings: vec![square(50.0, 5.0, 70.0, 12.0)],
                specks_left_out: 1,
            },
        ];
        snap_boxes_to_outlines(&mut regions, &anatomy);
        let bbox = |n: &str| regions.iter().find(|r| r.name == n).unwrap().bbox;
        assert_eq!(bbox("right lung"), [10.0, 20.0, 40.0, 90.0]);
        assert_eq!(bbox("right upper lung zone"), [10.0, 20.0, 40.0, 31.0]);
        assert_eq!(bbox("right mid lung zone"), [10.0, 31.0, 40.0, 60.0]);
        // A zone wholly outside the kept lung keeps its box rather than none.
        assert_eq!(bbox("right apical zone"), [10.0, 2.0, 40.0, 12.0]);
        assert_eq!(bbox("left upper lung zone"), [50.0, 20.0, 80.0, 43.0]);
        assert_eq!(bbox("cardiac silhouette"), [35.0, 50.0, 65.0, 85.0]);
        // A clavicle's smaller piece is bone: its box stays whole.
        assert_eq!(bbox("left clavicle"), [50.0, 5.0, 80.0, 12.0]);
    }
}
