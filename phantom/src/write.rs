//! Writing a study as files laid out as MIMIC-CXR and Chest ImaGenome lay theirs out, so that one
//! loader reads both:
//!
//! ```text
//! OUT/files/p1X/p<subject>/s<study>/<image id>.dcm     the image (asg-dicom writer)
//! OUT/files/p1X/p<subject>/s<study>.txt                the report
//! OUT/silver_dataset/scene_graph/<image id>_SceneGraph.json
//! OUT/truth/<image id>.json                            everything the generator knows
//! OUT/anatomy/<image id>/<name>.png                     anatomy masks (lungs, heart, clavicles)
//! ```

use crate::anatomy::Side;
use crate::report::Report;
use crate::Study;
use asg_dicom::{uid_from_u128, write_file, DicomError, NewImage, VoiWindow};
use image::ImageEncoder;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Computed Radiography Image Storage.
pub const SOP_CLASS_CR: &str = "1.2.840.10008.5.1.4.1.1.1";

/// Errors from writing a study.
#[derive(Debug, thiserror::Error)]
pub enum PhantomError {
    #[error(transparent)]
    Dicom(#[from] DicomError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Which split a study belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[repr(usize)]
pub enum SplitName {
    Train,
    Validate,
    Test,
}

impl SplitName {
    pub fn name(self) -> &'static str {
        match self {
            SplitName::Train => "train",
            SplitName::Validate => "validate",
            SplitName::Test => "test",
        }
    }
}

/// Where a study's files went.
#[derive(Debug, Clone)]
pub struct WrittenStudy {
    pub dicom: PathBuf,
    pub report: PathBuf,
    pub scene_graph: PathBuf,
    pub truth: PathBuf,
}

/// Everything the generator knows about an image (`truth/<image id>.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Truth {
    pub image_id: String,
    pub study_id: u64,
    pub subject_id: u64,
    pub split: SplitName,
    pub view: crate::View,
    pub width: usize,
    pub height: usize,
    pub pixel_spacing_mm: f64,
    pub format: crate::Format,
    pub cardiothoracic_ratio: f64,
    /// Tags the image shows (from the rendered findings, whatever the report says).
    pub image_tags: Vec<String>,
    /// The 40-tag vector of `image_tags`, in the model's order.
    pub tag_vector: Vec<f32>,
    pub findings: crate::Findings,
    pub regions: Vec<crate::RegionBox>,
    pub report: Report,
}

/// The tags a study's image shows.
pub fn image_tags(study: &Study) -> Vec<String> {
    let f = &study.findings;
    let mut tags: Vec<&str> = Vec::new();
    if f.effusion != [None, None] {
        tags.push("pleural effusion");
    }
    if !f.consolidation.is_empty() {
        tags.extend(["consolidation", "opacity"]);
    }
    if !f.atelectasis.is_empty() {
        tags.extend(["atelectasis", "opacity"]);
    }
    if f.pneumothorax.is_some() {
        tags.push("pneumothorax");
    }
    if f.cardiomegaly {
        tags.push("cardiomegaly");
    }
    if f.edema.is_some() {
        tags.push("edema");
    }
    if !f.nodules.is_empty() {
        tags.push("nodule");
    }
    if !f.masses.is_empty() {
        tags.push("mass");
    }
    if f.endotracheal_tube || f.enteric_tube || f.chest_tube.is_some() {
        tags.push("tube");
    }
    if f.central_line.is_some() {
        tags.push("line");
    }
    if f.pacemaker.is_some() {
        tags.extend(["pacemaker", "wire"]);
    }
    if f.rib_fracture.is_some() {
        tags.push("fracture");
    }
    let mut out: Vec<String> = Vec::new();
    for t in tags {
        if !out.iter().any(|o| o == t) {
            out.push(t.to_string());
        }
    }
    out
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> PhantomError + '_ {
    move |source| PhantomError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Writes `text` under a temporary name and renames it into place.
pub fn write_atomic_text(path: &Path, text: &str) -> Result<(), PhantomError> {
    write_atomic(path, text.as_bytes())
}

/// Writes `bytes` under a temporary name and renames it into place.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), PhantomError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
    }
    let tmp = path.with_extension("partial");
    std::fs::write(&tmp, bytes).map_err(io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io(path))
}

/// The DICOM image of a study.
pub fn dicom_image(study: &Study, index_name: &str) -> NewImage {
    let r = &study.rendered;
    let max = ((1u32 << r.bits_stored) - 1) as u16;
    let pixels: Vec<u16> = if study.format.monochrome1 {
        r.pixels.iter().map(|p| max - p).collect()
    } else {
        r.pixels.clone()
    };
    let seed = crate::image_seed(study.study_id, study.index) as u128;
    let uid = |k: u128| uid_from_u128((seed << 8 | k) + (1u128 << 100));
    let cr = seed.is_multiple_of(5);
    NewImage {
        rows: r.height as u32,
        columns: r.width as u32,
        pixels,
        bits_stored: r.bits_stored,
        photometric_interpretation: if study.format.monochrome1 {
            "MONOCHROME1".into()
        } else {
            "MONOCHROME2".into()
        },
        rescale_slope: 1.0,
        rescale_intercept: 0.0,
        window: Some(VoiWindow {
            center: (max as f64 + 1.0) / 2.0,
            width: max as f64 + 1.0,
        }),
        pixel_spacing_mm: Some([r.spacing, r.spacing]),
        view_position: Some(study.anatomy.view.code().into()),
        modality: if cr { "CR".into() } else { "DX".into() },
        sop_class_uid: if cr {
            SOP_CLASS_CR.into()
        } else {
            asg_dicom::SOP_CLASS_DX_PRESENTATION.into()
        },
        study_instance_uid: uid(1),
        series_instance_uid: uid(2),
        sop_instance_uid: uid(3),
        patient_name: format!("PHANTOM^{index_name}"),
        patient_id: format!("PH{}", study.subject_id),
        study_description: Some("Synthetic chest phantom".into()),
        transfer_syntax: study.format.transfer_syntax,
    }
}

/// Writes a study's files under `out` (layout in the module doc).
pub fn write_study(
    out: &Path,
    study: &Study,
    split: SplitName,
) -> Result<WrittenStudy, PhantomError> {
    let subject = format!("p{}", study.subject_id);
    let group = format!("p{}", study.subject_id / 1_000_000);
    let study_dir = out.join("files").join(group).join(&subject);
    let dicom = study_dir
        .join(format!("s{}", study.study_id))
        .join(format!("{}.dcm", study.image_id));
    if let Some(dir) = dicom.parent() {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
    }
    write_file(&dicom, &dicom_image(study, &format!("{:05}", study.index)))?;
    let report = study_dir.join(format!("s{}.txt", study.study_id));
    write_atomic(&report, study.report.text.as_bytes())?;
    let scene_graph = out
        .join("silver_dataset")
        .join("scene_graph")
        .join(format!("{}_SceneGraph.json", study.image_id));
    let sg = crate::scene_graph::scene_graph(study);
    write_atomic(&scene_graph, sg.to_string().as_bytes())?;
    let tags = image_tags(study);
    let mut tag_vector = vec![0.0f32; asg_report::FINDINGS.len()];
    for t in &tags {
        if let Some(i) = asg_report::finding_index(t) {
            tag_vector[i] = 1.0;
        }
    }
    let truth = Truth {
        image_id: study.image_id.clone(),
        study_id: study.study_id,
        subject_id: study.subject_id,
        split,
        view: study.anatomy.view,
        width: study.rendered.width,
        height: study.rendered.height,
        pixel_spacing_mm: study.rendered.spacing,
        format: study.format,
        cardiothoracic_ratio: study.anatomy.cardiothoracic_ratio(),
        image_tags: tags,
        tag_vector,
        findings: study.findings.clone(),
        regions: study.regions.clone(),
        report: study.report.clone(),
    };
    let (w, h) = (study.rendered.width, study.rendered.height);
    let anatomy_dir = out.join("anatomy").join(&study.image_id);
    std::fs::create_dir_all(&anatomy_dir).map_err(io(&anatomy_dir))?;
    for (name, mask) in crate::masks::anatomy_masks(&study.anatomy, w, h) {
        let path = anatomy_dir.join(format!("{name}.png"));
        let mut png = Vec::new();
        image::codecs::png::PngEncoder::new(&mut png)
            .write_image(&mask, w as u32, h as u32, image::ExtendedColorType::L8)
            .map_err(|e| PhantomError::Io {
                path: path.clone(),
                source: std::io::Error::other(e),
            })?;
        write_atomic(&path, &png)?;
    }
    let truth_path = out.join("truth").join(format!("{}.json", study.image_id));
    let text = serde_json::to_vec_pretty(&truth).map_err(|e| PhantomError::Io {
        path: truth_path.clone(),
        source: e.into(),
    })?;
    write_atomic(&truth_path, &text)?;
    Ok(WrittenStudy {
        dicom,
        report,
        scene_graph,
        truth: truth_path,
    })
}

/// A small fixed-format phantom for tests and calibration: study `index` of the set `seed`,
/// `size` pixels square, explicit VR little endian, 12 bits, MONOCHROME2, written flat as
/// `<out>/phantom_<index>.dcm` with its truth as `<out>/phantom_<index>.json`. Returns the DICOM path.
pub fn write_phantom(
    out: &Path,
    size: u32,
    seed: u64,
    index: u32,
) -> Result<PathBuf, PhantomError> {
    let options = crate::Options {
        size,
        normal_share: 0.3,
        vary_format: false,
    };
    let study = crate::generate(seed, index as u64, &options);
    let stem = format!("phantom_{index:05}");
    let dcm = out.join(format!("{stem}.dcm"));
    write_file(&dcm, &dicom_image(&study, &format!("{index:05}")))?;
    let truth = serde_json::json!({
        "image": format!("{stem}.dcm"),
        "seed": seed,
        "index": index,
        "view": study.anatomy.view.code(),
        "width": study.rendered.width,
        "height": study.rendered.height,
        "regions": study.regions,
        "image_tags": image_tags(&study),
        "report": study.report.text,
    });
    write_atomic(
        &out.join(format!("{stem}.json")),
        truth.to_string().as_bytes(),
    )?;
    Ok(dcm)
}

/// The side named by a region ("right ...", "left ..."), if any.
pub fn region_side(region: &str) -> Option<Side> {
    if region.starts_with("right") {
        Some(Side::Right)
    } else if region.starts_with("left") {
        Some(Side::Left)
    } else {
        None
    }
}
