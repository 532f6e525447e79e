//! Real chest films with expert labels in the `realcxr` layout (`../shared/realcxr/README.md`):
//! `index.jsonl` (one record per film: image, masks, nodules, Brixia zone scores, diagnosis,
//! patient group, licence), `images/`, `masks/<id>/<structure>.png`.
//!
//! Each film becomes [`RealTargets`]: the region boxes its masks define (the rules of
//! [`crate::data::masks`]) and the finding labels its annotations give, every one of them
//! partial: a region without a box or a finding without a label takes no part in that film's
//! loss. Label rules (one per source of labels):
//! - GeneralBlockchain masks (radiologists marked every class they saw, so an absent class is a
//!   negative): ground-glass opacity -> opacity, consolidation, pleural effusion, pneumothorax,
//!   tubings / endotracheal / nasogastric tube -> tube, central venous line -> line, monitoring
//!   probes (masked or tagged) -> wire; each positive also in the lung (or costophrenic angle)
//!   its mask lies in;
//! - JSRT nodule records: nodule (mass when larger than 30 mm) in the lung of the record's side
//!   and the zone holding the nodule's centre; a JSRT non-nodule film is a negative for nodule
//!   and mass only (it says nothing of other findings), in the image and so in every region;
//! - Brixia zone scores (two radiologists; the higher score is taken): a zone scored 1 or more is
//!   opacity in that lung zone (A-C the patient's right upper/mid/lower, D-F the left), a zone
//!   scored 0 a negative there; the film's opacity is positive when any zone is, negative when
//!   all six are 0;
//! - the ieee8023 diagnosis is the patient's, not a reading of the film: it gives no label here.

use crate::data::anatomy::{Coverage, ANATOMY};
use crate::data::error::{io, DataError};
use crate::data::imagenome::{region_index, Dataset, GivenLabels, Record, ScanStats, Split};
pub use crate::data::masks::load_mask;
use crate::data::masks::{
    apical_zone, inside, lung_regions, trachea, BoxPx, LesionMap, LungSide, Mask,
};
use crate::vocab::{FINDINGS, REGIONS};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The largest `index.jsonl` read, and its largest line.
const MAX_INDEX_BYTES: u64 = 64 << 20;
const MAX_LINE: usize = 1 << 20;

/// One record of `index.jsonl` (the fields the loader uses).
#[derive(Debug, Clone, Deserialize)]
pub struct RealRecord {
    pub id: String,
    pub source: String,
    pub patient_group: String,
    pub view: String,
    pub image: String,
    pub width: u32,
    pub height: u32,
    #[serde(default)]
    pub licence: String,
    #[serde(default)]
    pub finding: Option<String>,
    #[serde(default)]
    pub masks: BTreeMap<String, String>,
    #[serde(default)]
    pub mask_source: BTreeMap<String, String>,
    #[serde(default)]
    pub nodules: Option<Vec<Nodule>>,
    #[serde(default)]
    pub brixia: Option<Brixia>,
    #[serde(default)]
    pub tags_without_mask: Option<Vec<String>>,
    /// Lung boxes drawn by an annotation service (ieee8023), a second reference for the lungs.
    #[serde(default)]
    pub lung_boxes: Option<BTreeMap<String, [f32; 4]>>,
}

/// A JSRT nodule.
#[derive(Debug, Clone, Deserialize)]
pub struct Nodule {
    pub center: [f32; 2],
    pub size_mm: f32,
    pub lobe: String,
    /// JSRT's degree of subtlety: 1 extremely subtle ... 5 obvious.
    #[serde(default)]
    pub subtlety: Option<u8>,
}

/// Brixia scores.
#[derive(Debug, Clone, Deserialize)]
pub struct Brixia {
    pub zones: BTreeMap<String, BrixiaZone>,
}

/// One zone's two readings.
#[derive(Debug, Clone, Deserialize)]
pub struct BrixiaZone {
    pub senior: Option<u8>,
    pub junior: Option<u8>,
}

/// What a film teaches: boxes and labels, each only where the annotations say.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RealTargets {
    /// Region name -> box in image pixels.
    pub boxes: BTreeMap<String, BoxPx>,
    /// Finding -> present, for the findings this film has a label for.
    pub findings: BTreeMap<String, bool>,
    /// (region, finding) -> present, for the region-level labels this film has.
    pub region_findings: BTreeMap<(String, String), bool>,
    /// Lesions outlined by a radiologist (ground glass, consolidation, effusion, pneumothorax)
    /// and JSRT nodules as discs of their diameter, for the mask-based pointing game.
    pub lesions: Vec<LesionMap>,
    /// The anatomy masks of [`ANATOMY`], reduced (None where the film has no such mask).
    pub anatomy: Vec<Option<Coverage>>,
}

/// Reads `index.jsonl` under `root`.
pub fn read_index(root: &Path) -> Result<Vec<RealRecord>, DataError> {
    let path = root.join("index.jsonl");
    let meta = std::fs::metadata(&path).map_err(io(&path))?;
    if meta.len() > MAX_INDEX_BYTES {
        return Err(DataError::Layout {
            path: path.display().to_string(),
            reason: format!("larger than {MAX_INDEX_BYTES} bytes"),
        });
    }
    let text = std::fs::read_to_string(&path).map_err(io(&path))?;
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let at = || format!("{}:{}", path.display(), n + 1);
        if line.len() > MAX_LINE {
            return Err(DataError::Layout {
                path: at(),
                reason: format!("line longer than {MAX_LINE} bytes"),
            });
        }
        let r: RealRecord =
            serde_json::from_str(line).map_err(|source| DataError::Json { path: at(), source })?;
        if r.id.is_empty()
            || r.id.contains(['/', '\\'])
            || r.image.contains("..")
            || r.masks.values().any(|p| p.contains(".."))
        {
            return Err(DataError::Layout {
                path: at(),
                reason: format!("record {:?}: an id or path that leaves the folder", r.id),
            });
        }
        out.push(r);
    }
    Ok(out)
}

pub fn side_of_lobe(lobe: &str) -> Option<LungSide> {
    let l = lobe.trim().to_ascii_lowercase();
    if l.starts_with("r.") || l.starts_with("right") {
        Some(LungSide::Right)
    } else if l.starts_with("l.") || l.starts_with("left") {
        Some(LungSide::Left)
    } else {
        None
    }
}

/// The films's boxes and labels (see the module's rules). Masks are read from under `root`.
pub fn targets(root: &Path, r: &RealRecord) -> Result<RealTargets, DataError> {
    let mut t = RealTargets::default();
    let load = |name: &str| -> Result<Option<Mask>, DataError> {
        match r.masks.get(name) {
            Some(rel) => Ok(Some(load_mask(&root.join(rel), r.width, r.height)?)),
            None => Ok(None),
        }
    };
    // Anatomy: the anatomy head's masks are decoded once and kept for the box rules below.
    let mut anatomy: BTreeMap<&str, Option<Mask>> = BTreeMap::new();
    for (_, key) in ANATOMY {
        let m = load(key)?;
        t.anatomy.push(m.as_ref().and_then(Coverage::from_mask));
        anatomy.insert(key, m);
    }
    let mask = |name: &str| -> Result<Option<Mask>, DataError> {
        match anatomy.get(name) {
            Some(m) => Ok(m.clone()),
            None => load(name),
        }
    };
    let mut lungs: BTreeMap<&str, Mask> = BTreeMap::new();
    for (key, side) in [
        ("right_lung", LungSide::Right),
        ("left_lung", LungSide::Left),
    ] {
        if let Some(m) = mask(key)? {
            for (name, b) in lung_regions(&m, side) {
                t.boxes.insert(name, b);
            }
            if let Some(c) = mask(&format!("{}_clavicle", side.name()))? {
                if let Some(b) = apical_zone(&m, &c) {
                    t.boxes.insert(format!("{} apical zone", side.name()), b);
                }
                if let Some(b) = c.bbox() {
                    t.boxes.insert(format!("{} clavicle", side.name()), b);
                }
            }
            lungs.insert(side.name(), m);
        }
    }
    if let Some(b) = mask("heart")?.and_then(|m| m.bbox()) {
        t.boxes.insert("cardiac silhouette".into(), b);
    }
    if let Some(b) = mask("cardiomediastinum")?.and_then(|m| m.bbox()) {
        t.boxes.insert("mediastinum".into(), b);
    }
    if let Some(b) = mask("airways")?.and_then(|m| trachea(&m)) {
        t.boxes.insert("trachea".into(), b);
    }

    // GeneralBlockchain: every class marked, so an unmarked class is absent.
    let radiologist = r.mask_source.values().any(|s| s == "generalblockchain");
    if radiologist {
        let classes: [(&str, &[&str]); 7] = [
            ("opacity", &["ggo"]),
            ("consolidation", &["consolidation"]),
            ("pleural effusion", &["pleural_effusion"]),
            ("pneumothorax", &["pneumothorax"]),
            ("tube", &["tube", "ett", "ng_tube"]),
            ("line", &["cvl"]),
            ("wire", &["probe"]),
        ];
        let tagged = r.tags_without_mask.clone().unwrap_or_default();
        for (finding, structures) in classes {
            let mut present = false;
            for s in structures {
                if tagged.iter().any(|x| x == s) {
                    present = true;
                }
                let Some(m) = mask(s)? else { continue };
                if m.bbox().is_none() {
                    continue;
                }
                present = true;
                if let Some(l) = asg_report::finding_index(finding)
                    .filter(|_| {
                        matches!(
                            finding,
                            "opacity" | "consolidation" | "pneumothorax" | "pleural effusion"
                        )
                    })
                    .and_then(|fi| LesionMap::from_mask(fi, &m))
                {
                    t.lesions.push(l);
                }
                // The lungs and zones the lesion lies in (and, the mask being complete, not in
                // the others).
                if matches!(
                    finding,
                    "opacity" | "consolidation" | "pneumothorax" | "pleural effusion"
                ) {
                    for (side, lung) in &lungs {
                        let rows_overlap = |y0: f32, y1: f32| {
                            let w = lung.width;
                            let y0 = y0.max(0.0) as usize;
                            let y1 = (y1.max(0.0) as usize).min(lung.height);
                            (y0..y1)
                                .any(|y| (0..w).any(|x| m.data[y * w + x] && lung.data[y * w + x]))
                        };
                        let regions: Vec<String> = if finding == "pleural effusion" {
                            vec![format!("{side} costophrenic angle"), format!("{side} lung")]
                        } else {
                            vec![
                                format!("{side} lung"),
                                format!("{side} upper lung zone"),
                                format!("{side} mid lung zone"),
                                format!("{side} lower lung zone"),
                            ]
                        };
                        for region in regions {
                            let hit = match t.boxes.get(&region) {
                                Some(b) if !region.ends_with(" lung") => rows_overlap(b[1], b[3]),
                                _ => rows_overlap(0.0, lung.height as f32),
                            };
                            let e = t
                                .region_findings
                                .entry((region, finding.into()))
                                .or_insert(false);
                            *e |= hit;
                        }
                    }
                }
            }
            t.findings.insert(finding.into(), present);
        }
    }

    // JSRT nodules.
    if r.source == "jsrt" {
        let nodules = r.nodules.clone().unwrap_or_default();
        // A film of the non-nodule class: no nodule or mass in the image, so none in any region
        // either (`given_labels` carries an image-level negative to every region).
        if r.finding.as_deref() == Some("normal") && nodules.is_empty() {
            t.findings.insert("nodule".into(), false);
            t.findings.insert("mass".into(), false);
        }
        // A JSRT film holds at most one nodule: where it is not, there is none.
        if nodules.len() == 1 {
            for s in ["right", "left"] {
                for zone in [
                    "lung",
                    "upper lung zone",
                    "mid lung zone",
                    "lower lung zone",
                ] {
                    for f in ["nodule", "mass"] {
                        t.region_findings
                            .insert((format!("{s} {zone}"), f.into()), false);
                    }
                }
            }
        }
        for n in &nodules {
            let finding = if n.size_mm > 30.0 { "mass" } else { "nodule" };
            t.findings.insert(finding.into(), true);
            // The layout's JSRT films have 0.35 mm pixels (its README: the nodule box's side is
            // `size_mm / 0.35` px): a disc of the nodule's diameter.
            let radius = n.size_mm / 0.35 / 2.0;
            if let Some(l) = asg_report::finding_index(finding).and_then(|fi| {
                LesionMap::disc(fi, r.width, r.height, n.center[0], n.center[1], radius)
            }) {
                t.lesions.push(l);
            }
            let Some(side) = side_of_lobe(&n.lobe) else {
                continue;
            };
            let s = side.name();
            t.region_findings
                .insert((format!("{s} lung"), finding.into()), true);
            for zone in ["upper", "mid", "lower"] {
                let name = format!("{s} {zone} lung zone");
                if t.boxes
                    .get(&name)
                    .is_some_and(|b| inside(b, n.center[0], n.center[1]))
                {
                    t.region_findings.insert((name, finding.into()), true);
                }
            }
        }
    }

    // Brixia zones: the higher of the two readings.
    if let Some(bx) = &r.brixia {
        let mut any = false;
        let mut all_read = true;
        for (letter, region) in [
            ("A", "right upper lung zone"),
            ("B", "right mid lung zone"),
            ("C", "right lower lung zone"),
            ("D", "left upper lung zone"),
            ("E", "left mid lung zone"),
            ("F", "left lower lung zone"),
        ] {
            let score = bx.zones.get(letter).and_then(|z| z.senior.max(z.junior));
            let Some(score) = score else {
                all_read = false;
                continue;
            };
            t.region_findings
                .insert((region.into(), "opacity".into()), score > 0);
            any |= score > 0;
        }
        for side in ["right", "left"] {
            let zones: Vec<Option<bool>> = ["upper", "mid", "lower"]
                .iter()
                .map(|z| {
                    t.region_findings
                        .get(&(format!("{side} {z} lung zone"), "opacity".to_string()))
                        .copied()
                })
                .collect();
            if zones.contains(&Some(true)) {
                t.region_findings
                    .insert((format!("{side} lung"), "opacity".into()), true);
            } else if zones.iter().all(|z| *z == Some(false)) {
                t.region_findings
                    .insert((format!("{side} lung"), "opacity".into()), false);
            }
        }
        if any {
            t.findings.insert("opacity".into(), true);
        } else if all_read && !t.findings.get("opacity").copied().unwrap_or(false) {
            t.findings.insert("opacity".into(), false);
        }
    }
    Ok(t)
}

/// The image of a record.
pub fn image_path(root: &Path, r: &RealRecord) -> PathBuf {
    root.join(&r.image)
}

/// Whether a film is read as normal: JSRT's non-nodule class (normal PA films), or an ieee8023
/// film whose case is "No Finding".
pub fn is_normal(r: &RealRecord) -> bool {
    match r.source.as_str() {
        "jsrt" => r.finding.as_deref() == Some("normal"),
        "ieee8023" => r.finding.as_deref() == Some("No Finding"),
        _ => false,
    }
}

/// The split of a patient group: a fixed hash of its name (FNV-1a), 70% train, 15% validate,
/// 15% test, so that no patient's films cross splits and the split never depends on the set.
pub fn split_of(group: &str) -> Split {
    match asg_phantom::set::split_of_group(group) {
        asg_phantom::write::SplitName::Train => Split::Train,
        asg_phantom::write::SplitName::Validate => Split::Validate,
        asg_phantom::write::SplitName::Test => Split::Test,
    }
}

/// The labels as model targets: per finding and per (region, finding), known or not. A finding
/// known absent from the film is absent from every region.
pub fn given_labels(t: &RealTargets, normal: bool) -> GivenLabels {
    let mut tags = vec![None; FINDINGS];
    let mut regions = vec![None; REGIONS * FINDINGS];
    for (f, &present) in &t.findings {
        let Some(fi) = asg_report::finding_index(f) else {
            continue;
        };
        tags[fi] = Some(if present { 1.0 } else { 0.0 });
        if !present {
            for r in 0..REGIONS {
                regions[r * FINDINGS + fi] = Some(0.0);
            }
        }
    }
    for ((region, f), &present) in &t.region_findings {
        let (Some(ri), Some(fi)) = (region_index(region), asg_report::finding_index(f)) else {
            continue;
        };
        regions[ri * FINDINGS + fi] = Some(if present { 1.0 } else { 0.0 });
    }
    GivenLabels {
        text: write_text(t),
        tags,
        regions,
        normal,
        lesions: t.lesions.clone(),
    }
}

/// A short report written from the labels (for the text losses; not a reading): the positives
/// with their most specific regions, then the known negatives.
pub fn write_text(t: &RealTargets) -> String {
    let mut sentences = Vec::new();
    for (f, &present) in &t.findings {
        if !present {
            continue;
        }
        let mut places: Vec<&str> = t
            .region_findings
            .iter()
            .filter(|((_, rf), p)| rf == f && **p)
            .map(|((r, _), _)| r.as_str())
            .collect();
        // A zone says more than its lung.
        let zones: Vec<&str> = places
            .iter()
            .copied()
            .filter(|r| !r.ends_with(" lung"))
            .collect();
        if !zones.is_empty() {
            places = zones;
        }
        let mut s = f.clone();
        if let Some((first, rest)) = places.split_first() {
            s.push_str(&format!(" in the {first}"));
            for r in rest {
                s.push_str(&format!(" and the {r}"));
            }
        }
        let mut c = s.chars();
        let s: String = match c.next() {
            Some(h) => h.to_uppercase().chain(c).collect(),
            None => s,
        };
        sentences.push(format!("{s}."));
    }
    let negatives: Vec<&str> = t
        .findings
        .iter()
        .filter(|(_, p)| !**p)
        .map(|(f, _)| f.as_str())
        .collect();
    if !negatives.is_empty() {
        sentences.push(format!("No {}.", negatives.join(" or ")));
    }
    format!("FINDINGS: {}", sentences.join(" "))
}

/// Scans a realcxr folder into records: boxes from the masks (clipped to the image), the labels
/// given, the split by patient group. Films whose image is missing are counted and skipped.
pub fn scan(root: &Path) -> Result<Dataset, DataError> {
    let mut stats = ScanStats::default();
    let mut records = Vec::new();
    for r in read_index(root)? {
        let image = image_path(root, &r);
        if !image.is_file() {
            stats.missing_image += 1;
            continue;
        }
        let t = targets(root, &r)?;
        let (w, h) = (r.width as f32, r.height as f32);
        let boxes: Vec<Option<[f32; 4]>> = asg_report::REGIONS
            .iter()
            .map(|reg| {
                t.boxes.get(reg.name).map(|b| {
                    [
                        b[0].clamp(0.0, w),
                        b[1].clamp(0.0, h),
                        b[2].clamp(0.0, w),
                        b[3].clamp(0.0, h),
                    ]
                })
            })
            .collect();
        stats.boxes += boxes.iter().filter(|b| b.is_some()).count();
        stats.records += 1;
        records.push(Record {
            image_id: r.id.clone(),
            image,
            report: PathBuf::new(),
            split: split_of(&r.patient_group),
            boxes,
            given: Some(given_labels(&t, is_normal(&r))),
            weight: 1,
            anatomy: t
                .anatomy
                .iter()
                .any(Option::is_some)
                .then(|| std::sync::Arc::new(t.anatomy.clone())),
        });
    }
    Ok(Dataset {
        root: root.to_path_buf(),
        records,
        stats,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A tiny realcxr folder: one JSRT-like film with lung, heart and clavicle masks and a
    /// nodule, one GeneralBlockchain-like film with a ground-glass mask in the left lung, one
    /// Brixia-scored film without masks.
    pub(crate) fn tiny() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("images")).unwrap();
        let (w, h) = (64u32, 64u32);
        let save = |rel: &str, f: &dyn Fn(u32, u32) -> bool| {
            let p = root.join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            image::GrayImage::from_fn(w, h, |x, y| image::Luma([if f(x, y) { 255 } else { 0 }]))
                .save(p)
                .unwrap();
        };
        let right = |x: u32, y: u32| (8..28).contains(&x) && (8..56).contains(&y);
        let left = |x: u32, y: u32| (36..56).contains(&x) && (8..56).contains(&y);
        for id in ["a", "b"] {
            save(&format!("images/{id}.png"), &|_, _| false);
            save(&format!("masks/{id}/right_lung.png"), &right);
            save(&format!("masks/{id}/left_lung.png"), &left);
        }
        save("masks/a/heart.png", &|x, y| {
            (24..44).contains(&x) && (36..54).contains(&y)
        });
        save("masks/a/right_clavicle.png", &|x, y| {
            (10..30).contains(&x) && (10..14).contains(&y)
        });
        save("masks/b/ggo.png", &|x, y| {
            (40..50).contains(&x) && (40..50).contains(&y)
        });
        save("images/c.png", &|_, _| false);
        save("images/d.png", &|_, _| false);
        let index = [
            r#"{"id": "a", "source": "jsrt", "patient_group": "jsrt:a", "view": "PA", "image": "images/a.png", "width": 64, "height": 64, "finding": "nodule", "masks": {"right_lung": "masks/a/right_lung.png", "left_lung": "masks/a/left_lung.png", "heart": "masks/a/heart.png", "right_clavicle": "masks/a/right_clavicle.png"}, "mask_source": {"right_lung": "scr"}, "nodules": [{"center": [15.0, 20.0], "size_mm": 12.0, "lobe": "r.upper lobe(S1)"}]}"#,
            r#"{"id": "b", "source": "ieee8023", "patient_group": "ieee:1", "view": "AP", "image": "images/b.png", "width": 64, "height": 64, "finding": "COVID-19", "masks": {"right_lung": "masks/b/right_lung.png", "left_lung": "masks/b/left_lung.png", "ggo": "masks/b/ggo.png"}, "mask_source": {"right_lung": "generalblockchain", "left_lung": "generalblockchain", "ggo": "generalblockchain"}, "tags_without_mask": ["probe"]}"#,
            r#"{"id": "c", "source": "brixia", "patient_group": "brixia:x", "view": "frontal", "image": "images/c.png", "width": 64, "height": 64, "finding": null, "masks": {}, "mask_source": {}, "brixia": {"zones": {"A": {"region": "right_upper", "senior": 0, "junior": 0}, "B": {"region": "right_middle", "senior": 0, "junior": 1}, "C": {"region": "right_lower", "senior": 0, "junior": 0}, "D": {"region": "left_upper", "senior": 0, "junior": 0}, "E": {"region": "left_middle", "senior": 0, "junior": 0}, "F": {"region": "left_lower", "senior": 0, "junior": 0}}}}"#,
            r#"{"id": "d", "source": "jsrt", "patient_group": "jsrt:d", "view": "PA", "image": "images/d.png", "width": 64, "height": 64, "finding": "normal", "masks": {}, "mask_source": {}, "nodules": []}"#,
        ];
        std::fs::write(root.join("index.jsonl"), index.join("\n")).unwrap();
        dir
    }

    #[test]
    fn a_jsrt_film_gives_its_anatomy_and_its_nodule_in_the_right_upper_zone() {
        let dir = tiny();
        let recs = read_index(dir.path()).unwrap();
        assert_eq!(recs.len(), 4);
        let t = targets(dir.path(), &recs[0]).unwrap();
        assert_eq!(t.boxes["right lung"], [8.0, 8.0, 28.0, 56.0]);
        assert_eq!(t.boxes["cardiac silhouette"], [24.0, 36.0, 44.0, 54.0]);
        // The anatomy head's masks: lungs, heart and the right clavicle; no left clavicle or
        // cardiomediastinum on this film.
        let has: Vec<bool> = t.anatomy.iter().map(Option::is_some).collect();
        assert_eq!(has, [true, true, true, true, false, false]);
        let heart = t.anatomy[2].as_ref().unwrap();
        assert_eq!(
            (heart.sample(30.0, 40.0), heart.sample(10.0, 40.0)),
            (1.0, 0.0)
        );
        assert_eq!(t.boxes["right clavicle"], [10.0, 10.0, 30.0, 14.0]);
        assert_eq!(t.boxes["right apical zone"], [8.0, 8.0, 28.0, 14.0]);
        assert!(t.boxes.contains_key("left lower lung zone"));
        assert!(
            !t.boxes.contains_key("left apical zone"),
            "no left clavicle mask"
        );
        assert!(!t.boxes.contains_key("trachea"));
        assert_eq!(t.findings, BTreeMap::from([("nodule".to_string(), true)]));
        let key = |r: &str| (r.to_string(), "nodule".to_string());
        assert_eq!(
            t.region_findings.get(&key("right upper lung zone")),
            Some(&true)
        );
        assert_eq!(t.region_findings.get(&key("right lung")), Some(&true));
        assert_eq!(
            t.region_findings.get(&key("right mid lung zone")),
            Some(&false)
        );
    }

    #[test]
    fn radiologist_masks_label_every_class_and_brixia_labels_zones() {
        let dir = tiny();
        let recs = read_index(dir.path()).unwrap();
        let t = targets(dir.path(), &recs[1]).unwrap();
        assert!(t.findings["opacity"]);
        assert!(!t.findings["consolidation"]);
        assert!(!t.findings["pneumothorax"]);
        assert!(t.findings["wire"], "tagged probe");
        let key = |r: &str| (r.to_string(), "opacity".to_string());
        assert_eq!(t.region_findings.get(&key("left lung")), Some(&true));
        assert_eq!(t.region_findings.get(&key("right lung")), Some(&false));
        // No nodule label on a COVID film.
        assert!(!t.findings.contains_key("nodule"));

        let t = targets(dir.path(), &recs[2]).unwrap();
        assert!(t.boxes.is_empty());
        assert!(t.findings["opacity"], "the junior reader scored zone B");
        assert_eq!(
            t.region_findings.get(&key("right mid lung zone")),
            Some(&true)
        );
        assert_eq!(
            t.region_findings.get(&key("left lower lung zone")),
            Some(&false)
        );
    }

    #[test]
    fn a_drawn_nodule_is_labelled_in_its_lung_and_zone_and_named_in_the_text() {
        use crate::config::{AugmentConfig, Config};
        use crate::data::example::prepare;
        use asg_report::{TextTokenizer, Tokenizer};
        use rand::SeedableRng;
        let dir = tiny();
        let set = scan(dir.path()).unwrap();
        let tok = TextTokenizer::Word(Tokenizer::train(["nodule opacity wire"], 100, 1));
        let nod = asg_report::finding_index("nodule").unwrap();
        let zones: Vec<usize> = ["right", "left"]
            .iter()
            .flat_map(|s| {
                ["upper", "mid", "lower"].map(|z| region_index(&format!("{s} {z} lung zone")))
            })
            .map(Option::unwrap)
            .collect();
        let mut config = Config::default();
        config.model.input_size = 64;
        // No geometry, curve or noise: what changes is the nodule alone.
        config.augment = AugmentConfig {
            scale: [1.0, 1.0],
            shift: 0.0,
            contrast: 0.0,
            noise: 0.0,
            ..AugmentConfig::default()
        };
        let rng = |seed| rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let b = &set.records[1];
        let plain = prepare(b, &tok, &config, Some(&mut rng(3))).unwrap();
        assert_eq!(
            plain.tag_mask[nod], 0.0,
            "an ieee8023 film says nothing of nodules"
        );
        config.augment.nodules = 1.0;
        for seed in 0..8 {
            let e = prepare(b, &tok, &config, Some(&mut rng(seed))).unwrap();
            assert_eq!((e.tags[nod], e.tag_mask[nod]), (1.0, 1.0));
            // Brighter in one lung (x 8..28 or 36..56, y 8..56 of the 64 px film), nowhere else.
            let mut xs = Vec::new();
            for (i, (a, p)) in e.image.iter().zip(&plain.image).enumerate() {
                assert!(a >= p, "a nodule only adds");
                if a > p {
                    let (x, y) = (i % 64, i / 64);
                    assert!((8..56).contains(&y) && !(28..36).contains(&x), "{x} {y}");
                    assert!((8..56).contains(&x));
                    xs.push(x);
                }
            }
            assert!(!xs.is_empty());
            let right = xs.iter().all(|&x| x < 32);
            assert!(right || xs.iter().all(|&x| x >= 32), "in one lung");
            let lung = region_index(if right { "right lung" } else { "left lung" }).unwrap();
            let other = region_index(if right { "left lung" } else { "right lung" }).unwrap();
            assert_eq!(e.region_targets[lung * FINDINGS + nod], 1.0);
            assert_eq!(e.region_mask[lung * FINDINGS + nod], 1.0);
            assert_eq!(
                e.region_mask[other * FINDINGS + nod],
                0.0,
                "still unknown there"
            );
            let in_zones: Vec<usize> = zones
                .iter()
                .copied()
                .filter(|z| e.region_targets[z * FINDINGS + nod] == 1.0)
                .collect();
            assert_eq!(in_zones.len(), 1, "in one zone of the lung's three");
        }
        // The films holding a nodule already get none drawn, nor do those without lung masks,
        // and neither draws from the rng.
        for r in [&set.records[0], &set.records[2]] {
            let drawn = prepare(r, &tok, &config, Some(&mut rng(5))).unwrap();
            config.augment.nodules = 0.0;
            let not = prepare(r, &tok, &config, Some(&mut rng(5))).unwrap();
            config.augment.nodules = 1.0;
            assert_eq!(drawn.image, not.image);
            assert_eq!(drawn.ids, not.ids);
        }
        // Evaluation (no rng) never draws.
        let e = prepare(b, &tok, &config, None).unwrap();
        assert_eq!(e.tag_mask[nod], 0.0);
    }

    #[test]
    fn the_scan_gives_partial_labels_and_text_and_splits_by_group() {
        let dir = tiny();
        let set = scan(dir.path()).unwrap();
        assert_eq!(set.records.len(), 4);
        let a = set.records[0].given.as_ref().unwrap();
        let nod = asg_report::finding_index("nodule").unwrap();
        let pneumo = asg_report::finding_index("pneumothorax").unwrap();
        assert_eq!(a.tags[nod], Some(1.0));
        assert_eq!(
            a.tags[pneumo], None,
            "a JSRT film says nothing of pneumothorax"
        );
        let rz = region_index("right upper lung zone").unwrap();
        let lz = region_index("left lower lung zone").unwrap();
        assert_eq!(a.regions[rz * FINDINGS + nod], Some(1.0));
        assert_eq!(
            a.regions[lz * FINDINGS + nod],
            Some(0.0),
            "one nodule per JSRT film"
        );
        assert_eq!(a.text, "FINDINGS: Nodule in the right upper lung zone.");
        assert!(!a.normal, "a nodule film");
        // A non-nodule JSRT film: no nodule in the image, nor in any lung or zone (the image's
        // negative carried to every region).
        let d = set.records[3].given.as_ref().unwrap();
        assert!(d.normal);
        assert_eq!(d.tags[nod], Some(0.0));
        for region in [
            "right lung",
            "left upper lung zone",
            "right lower lung zone",
        ] {
            let k = region_index(region).unwrap() * FINDINGS + nod;
            assert_eq!(d.regions[k], Some(0.0), "{region}");
        }
        assert!(
            !set.records[1].given.as_ref().unwrap().normal,
            "a COVID-19 case"
        );
        let b = set.records[1].given.as_ref().unwrap();
        assert_eq!(b.tags[pneumo], Some(0.0));
        let rl = region_index("right lung").unwrap();
        assert_eq!(
            b.regions[rl * FINDINGS + pneumo],
            Some(0.0),
            "absent everywhere"
        );
        assert!(b.text.contains("No consolidation or"), "{}", b.text);
        let op = asg_report::finding_index("opacity").unwrap();
        assert_eq!(
            b.regions[rl * FINDINGS + op],
            Some(0.0),
            "the ground glass is in the left lung"
        );
        // The split follows the group alone.
        assert_eq!(split_of("jsrt:a"), split_of("jsrt:a"));
        let splits: Vec<Split> = (0..200).map(|i| split_of(&format!("g{i}"))).collect();
        let train = splits.iter().filter(|s| **s == Split::Train).count();
        assert!((120..160).contains(&train), "{train} of 200 in train");
    }

    #[test]
    fn bad_records_and_masks_are_named_errors() {
        let dir = tiny();
        let root = dir.path();
        std::fs::write(root.join("index.jsonl"), "{\"id\": 3}\n").unwrap();
        let e = read_index(root).unwrap_err().to_string();
        assert!(e.contains("index.jsonl:1"), "{e}");
        std::fs::write(
            root.join("index.jsonl"),
            r#"{"id": "x", "source": "jsrt", "patient_group": "g", "view": "PA", "image": "../../etc/passwd", "width": 1, "height": 1}"#,
        )
        .unwrap();
        assert!(read_index(root)
            .unwrap_err()
            .to_string()
            .contains("leaves the folder"));
        let e = load_mask(&root.join("masks/a/heart.png"), 32, 32)
            .unwrap_err()
            .to_string();
        assert!(e.contains("heart.png") && e.contains("64 x 64"), "{e}");
    }

    /// The whole shared set, when present: every record reads, and the boxes its masks give
    /// exist for the films that have masks.
    #[test]
    fn the_shared_realcxr_set_reads_whole() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/realcxr");
        if !root.join("index.jsonl").is_file() {
            eprintln!(
                "skipped: ../shared/realcxr is not here (the real-film loader check needs it)"
            );
            return;
        }
        let recs = read_index(&root).unwrap();
        assert_eq!(recs.len(), 655);
        let mut with_lungs = 0;
        let mut nodules = 0;
        for r in recs.iter().filter(|r| r.source == "jsrt").take(12) {
            let t = targets(&root, r).unwrap();
            assert!(t.boxes.contains_key("right lung") && t.boxes.contains_key("left lung"));
            // The patient's right lung is on the image left.
            assert!(
                t.boxes["right lung"][0] < t.boxes["left lung"][0],
                "{}",
                r.id
            );
            with_lungs += 1;
            nodules += t.findings.get("nodule").copied().unwrap_or(false) as usize;
        }
        assert_eq!(with_lungs, 12);
        assert!(nodules > 0);
    }
}
