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

use crate::asg::{FINDINGS, REGIONS};
use crate::config::{AugmentConfig, Config};
use asg_dicom::{Letterbox, Normalisation};
use asg_report::{Existence, TextTokenizer, Tokenizer};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// The normalisation of the model input (as the bundle's manifest states it).
pub const NORMALISATION: Normalisation = Normalisation {
    mean: 0.5,
    std: 0.25,
};

/// Errors reading a data set.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("{path}: {reason}")]
    Layout { path: String, reason: String },
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: not valid JSON: {source}")]
    Json {
        path: String,
        source: serde_json::Error,
    },
    #[error(transparent)]
    Dicom(#[from] asg_dicom::DicomError),
    #[error("{path}: {reason}")]
    Image { path: String, reason: String },
}

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
    pub report: PathBuf,
    pub split: Split,
    pub boxes: Vec<Option<[f32; 4]>>,
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

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> DataError + '_ {
    move |source| DataError::Io {
        path: path.display().to_string(),
        source,
    }
}

fn region_index(name: &str) -> Option<usize> {
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
        records.push(Record {
            image_id,
            image,
            report,
            split: which,
            boxes,
        });
    }
    Ok(Dataset {
        root: root.to_path_buf(),
        records,
        stats,
    })
}

/// A decoded grey image in [0, 1].
fn load_image(path: &Path) -> Result<(Vec<f32>, u32, u32), DataError> {
    let is_dicom = path
        .extension()
        .is_some_and(|x| x.eq_ignore_ascii_case("dcm"));
    if is_dicom {
        let img = asg_dicom::read_file(path, &Default::default())?;
        Ok((img.display(), img.width, img.height))
    } else {
        let img = image::open(path).map_err(|e| DataError::Image {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        let g = img.to_luma8();
        let (w, h) = g.dimensions();
        Ok((
            g.into_raw().into_iter().map(|v| v as f32 / 255.0).collect(),
            w,
            h,
        ))
    }
}

/// One prepared example.
#[derive(Debug, Clone)]
pub struct Example {
    /// `[size * size]`, normalised.
    pub image: Vec<f32>,
    /// Boxes in 0..1 of the model input, and whether each is present.
    pub boxes: Vec<[f32; 4]>,
    pub box_present: Vec<bool>,
    pub ids: Vec<u32>,
    pub tags: Vec<f32>,
    /// `[REGIONS * FINDINGS]`.
    pub region_targets: Vec<f32>,
    /// Regions that sentences name (with a box), and the token positions of those sentences.
    pub region_sentences: Vec<(usize, Vec<usize>)>,
    /// Boxes dropped because they lay outside the image.
    pub boxes_outside: usize,
}

/// Resamples a square image with a zoom about the centre and a shift (bilinear), padding with
/// `pad`: output(x) = input((x - c - shift) / zoom + c).
fn affine(img: &[f32], size: usize, zoom: f64, shift: (f64, f64), pad: f32) -> Vec<f32> {
    let c = size as f64 / 2.0;
    let mut out = vec![pad; size * size];
    for y in 0..size {
        for x in 0..size {
            let sx = (x as f64 + 0.5 - c - shift.0) / zoom + c - 0.5;
            let sy = (y as f64 + 0.5 - c - shift.1) / zoom + c - 0.5;
            if sx < 0.0 || sy < 0.0 || sx > (size - 1) as f64 || sy > (size - 1) as f64 {
                continue;
            }
            let (x0, y0) = (sx.floor() as usize, sy.floor() as usize);
            let (x1, y1) = ((x0 + 1).min(size - 1), (y0 + 1).min(size - 1));
            let (fx, fy) = ((sx - x0 as f64) as f32, (sy - y0 as f64) as f32);
            let at = |xx: usize, yy: usize| img[yy * size + xx];
            out[y * size + x] = (at(x0, y0) * (1.0 - fx) + at(x1, y0) * fx) * (1.0 - fy)
                + (at(x0, y1) * (1.0 - fx) + at(x1, y1) * fx) * fy;
        }
    }
    out
}

/// Prepares a record: `rng` drives the augmentation (None: no augmentation).
pub fn prepare(
    record: &Record,
    tokenizer: &TextTokenizer,
    config: &Config,
    rng: Option<&mut ChaCha8Rng>,
) -> Result<Example, DataError> {
    let size = config.model.input_size;
    let (pixels, w, h) = load_image(&record.image)?;
    let input = asg_dicom::preprocess(&pixels, w, h, size as u32, NORMALISATION);
    let lb: Letterbox = input.letterbox;
    let mut image = input.tensor;
    let mut boxes = vec![[0.0f32; 4]; REGIONS];
    let mut present = vec![false; REGIONS];
    let mut outside = 0;
    for (r, b) in record.boxes.iter().enumerate() {
        let Some(b) = b else { continue };
        if b[2] > w as f32 + 0.5 || b[3] > h as f32 + 0.5 {
            outside += 1;
            continue;
        }
        let (x1, y1) = lb.to_model(b[0] as f64, b[1] as f64);
        let (x2, y2) = lb.to_model(b[2] as f64, b[3] as f64);
        boxes[r] = [x1, y1, x2, y2].map(|v| (v / size as f64) as f32);
        present[r] = true;
    }
    if let Some(rng) = rng {
        augment(
            &mut image,
            &mut boxes,
            &mut present,
            size,
            &config.augment,
            rng,
        );
    }
    let text = std::fs::read_to_string(&record.report).map_err(io(&record.report))?;
    let parsed = asg_report::parse(&text);
    let tags = parsed.tag_vector(config.train.uncertain_as);
    let mut region_targets = vec![0.0f32; REGIONS * FINDINGS];
    for (region, findings) in parsed.region_findings() {
        // A finding in a zone is also in the lung that holds it.
        let mut regions = vec![region.clone()];
        let mut cur = region.clone();
        while let Some(parent) = asg_report::region_parent(&cur) {
            regions.push(parent.to_string());
            cur = parent.to_string();
        }
        for reg in regions {
            let Some(r) = region_index(&reg) else {
                continue;
            };
            for (finding, existence) in &findings {
                let Some(f) = asg_report::finding_index(finding) else {
                    continue;
                };
                let v = match existence {
                    Existence::Positive => 1.0,
                    Existence::Uncertain => config.train.uncertain_as,
                    _ => 0.0,
                };
                let slot = &mut region_targets[r * FINDINGS + f];
                *slot = slot.max(v);
            }
        }
    }
    let encoding = tokenizer.encode(&text, config.model.max_tokens);
    let mut per_region: Vec<Vec<usize>> = vec![Vec::new(); REGIONS];
    for s in &parsed.sentences {
        if s.section
            .as_deref()
            .is_some_and(|sec| !matches!(sec, "findings" | "impression"))
        {
            continue;
        }
        let toks = encoding.tokens_in(s.start, s.end);
        if toks.is_empty() {
            continue;
        }
        for t in &s.triplets {
            if let Some(r) = region_index(&t.region) {
                for &k in &toks {
                    if !per_region[r].contains(&k) {
                        per_region[r].push(k);
                    }
                }
            }
        }
    }
    let region_sentences = per_region
        .into_iter()
        .enumerate()
        .filter(|(r, toks)| present[*r] && !toks.is_empty())
        .collect();
    Ok(Example {
        image,
        boxes,
        box_present: present,
        ids: encoding.ids,
        tags,
        region_targets,
        region_sentences,
        boxes_outside: outside,
    })
}

fn augment(
    image: &mut Vec<f32>,
    boxes: &mut [[f32; 4]],
    present: &mut [bool],
    size: usize,
    a: &AugmentConfig,
    rng: &mut ChaCha8Rng,
) {
    let zoom = if a.scale[1] > a.scale[0] {
        rng.random_range(a.scale[0]..a.scale[1])
    } else {
        a.scale[0]
    };
    let max_shift = a.shift * size as f64;
    let shift = if max_shift > 0.0 {
        (
            rng.random_range(-max_shift..max_shift),
            rng.random_range(-max_shift..max_shift),
        )
    } else {
        (0.0, 0.0)
    };
    let pad = (0.0 - NORMALISATION.mean) / NORMALISATION.std;
    *image = affine(image, size, zoom, shift, pad);
    let c = 0.5;
    for (b, p) in boxes.iter_mut().zip(present.iter_mut()) {
        if !*p {
            continue;
        }
        let tr =
            |v: f32, s: f64| (((v as f64 - c) * zoom + c + s / size as f64) as f32).clamp(0.0, 1.0);
        *b = [
            tr(b[0], shift.0),
            tr(b[1], shift.1),
            tr(b[2], shift.0),
            tr(b[3], shift.1),
        ];
        if b[2] - b[0] < 1e-3 || b[3] - b[1] < 1e-3 {
            *p = false; // moved out of the field
        }
    }
    let contrast = if a.contrast > 0.0 {
        1.0 + rng.random_range(-a.contrast..a.contrast)
    } else {
        1.0
    } as f32;
    let mean = image.iter().sum::<f32>() / image.len().max(1) as f32;
    for v in image.iter_mut() {
        let noise = if a.noise > 0.0 {
            let u1: f64 = rng.random_range(1e-12..1.0);
            let u2: f64 = rng.random_range(0.0..1.0);
            ((-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos() * a.noise) as f32
        } else {
            0.0
        };
        *v = (*v - mean) * contrast + mean + noise;
    }
}

/// Trains the tokenizer on the reports of the training split.
pub fn train_tokenizer(data: &Dataset, vocab_size: usize) -> Result<Tokenizer, DataError> {
    let mut texts = Vec::new();
    for r in data.records.iter().filter(|r| r.split == Split::Train) {
        texts.push(std::fs::read_to_string(&r.report).map_err(io(&r.report))?);
    }
    Ok(Tokenizer::train(
        texts.iter().map(String::as_str),
        vocab_size,
        2,
    ))
}

/// The order of the training examples for an epoch: a seeded shuffle.
pub fn epoch_order(n: usize, seed: u64, epoch: u64) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ epoch.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    for i in (1..n).rev() {
        let j = rng.random_range(0..=i);
        order.swap(i, j);
    }
    order
}

/// The examples of training step `step`: batch `step` of the endless seeded epoch sequence, so a
/// resumed run sees exactly the batches the uninterrupted one would have.
pub fn batch_indices(n: usize, batch: usize, seed: u64, step: u64) -> Vec<usize> {
    let per_epoch = (n / batch).max(1) as u64;
    let epoch = step / per_epoch;
    let k = (step % per_epoch) as usize;
    let order = epoch_order(n, seed, epoch);
    (0..batch)
        .map(|i| order[(k * batch + i) % n.max(1)])
        .collect()
}

/// The augmentation generator of one example of one step.
pub fn example_rng(seed: u64, step: u64, slot: usize) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(
        seed.wrapping_mul(0x2545_F491_4F6C_DD1D)
            ^ step.wrapping_mul(0x9E37_79B9_7F4A_7C15)
            ^ slot as u64,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_boxes_are_skipped_and_counted() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::write(
            root.join("mimic-cxr-2.0.0-split.csv"),
            "dicom_id,study_id,subject_id,split\nimg1,50000001,10000001,train\nimg2,50000002,10000002,test\n",
        )
        .unwrap();
        let sg = root.join("silver_dataset/scene_graph");
        std::fs::create_dir_all(&sg).unwrap();
        let obj = |name: &str, b: [f64; 4]| serde_json::json!({"bbox_name": name, "original_x1": b[0], "original_y1": b[1], "original_x2": b[2], "original_y2": b[3]});
        let graph = serde_json::json!({
            "image_id": "img1",
            "objects": [
                obj("right lung", [10.0, 10.0, 50.0, 90.0]),
                obj("left lung", [-5.0, 10.0, 50.0, 90.0]),
                obj("trachea", [30.0, 10.0, 30.0, 40.0]),
                obj("spine", [10.0, 10.0, 5000.0, 90.0]),
                obj("left ear", [1.0, 1.0, 2.0, 2.0]),
            ],
        });
        std::fs::write(sg.join("img1_SceneGraph.json"), graph.to_string()).unwrap();
        std::fs::write(
            sg.join("img2_SceneGraph.json"),
            r#"{"image_id": "img2", "objects": []}"#,
        )
        .unwrap();
        std::fs::write(
            sg.join("img3_SceneGraph.json"),
            r#"{"image_id": "img3", "objects": []}"#,
        )
        .unwrap();
        let study = root.join("files/p10/p10000001");
        std::fs::create_dir_all(study.join("s50000001")).unwrap();
        image::GrayImage::from_pixel(100, 100, image::Luma([128u8]))
            .save(study.join("s50000001/img1.png"))
            .unwrap();
        std::fs::write(
            study.join("s50000001.txt"),
            "FINDINGS: Small right pleural effusion.",
        )
        .unwrap();
        let set = scan(root).unwrap();
        assert_eq!(set.records.len(), 1);
        let s = &set.stats;
        assert_eq!((s.scene_graphs, s.missing_image, s.not_in_split), (3, 1, 1));
        assert_eq!(
            (
                s.boxes,
                s.boxes_negative,
                s.boxes_zero_area,
                s.unknown_regions
            ),
            (4, 1, 1, 1)
        );
        let r = &set.records[0];
        assert_eq!(r.boxes.iter().filter(|b| b.is_some()).count(), 2);
        // The box past the image's edge is dropped when the image is read.
        let config = Config::default();
        let tok = TextTokenizer::Word(Tokenizer::train(["small right pleural effusion"], 100, 1));
        let e = prepare(r, &tok, &config, None).unwrap();
        assert_eq!(e.boxes_outside, 1);
        assert_eq!(e.box_present.iter().filter(|p| **p).count(), 1);
        assert_eq!(e.tags[0], 1.0); // pleural effusion
                                    // A missing split file is a clear error.
        std::fs::remove_file(root.join("mimic-cxr-2.0.0-split.csv")).unwrap();
        let err = scan(root).unwrap_err().to_string();
        assert!(err.contains("mimic-cxr-2.0.0-split.csv"), "{err}");
    }

    #[test]
    fn batches_cover_an_epoch_and_are_reproducible() {
        let mut seen: Vec<usize> = (0..3).flat_map(|s| batch_indices(12, 4, 9, s)).collect();
        seen.sort();
        assert_eq!(seen, (0..12).collect::<Vec<_>>());
        assert_eq!(batch_indices(12, 4, 9, 5), batch_indices(12, 4, 9, 5));
        assert_ne!(batch_indices(12, 4, 9, 0), batch_indices(12, 4, 9, 3));
    }

    #[test]
    fn the_affine_resample_moves_a_point_as_the_boxes_move() {
        let size = 32;
        let mut img = vec![0.0f32; size * size];
        img[8 * size + 8] = 1.0; // pixel centre (8.5, 8.5) -> normalised 0.2656
        let (zoom, shift) = (1.25, (2.0, -1.0));
        let out = affine(&img, size, zoom, shift, 0.0);
        let (mut bx, mut by, mut sum) = (0.0, 0.0, 0.0);
        for y in 0..size {
            for x in 0..size {
                let v = out[y * size + x] as f64;
                bx += v * (x as f64 + 0.5);
                by += v * (y as f64 + 0.5);
                sum += v;
            }
        }
        let want = |p: f64, s: f64| ((p / size as f64 - 0.5) * zoom + 0.5) * size as f64 + s;
        assert!(
            (bx / sum - want(8.5, 2.0)).abs() < 0.3,
            "{} {}",
            bx / sum,
            want(8.5, 2.0)
        );
        assert!((by / sum - want(8.5, -1.0)).abs() < 0.3);
    }
}
