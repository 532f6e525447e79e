//! One study prepared for the model: the image decoded (DICOM through asg-dicom, JPG/PNG through
//! `image`), letterboxed and normalised, augmented, with its boxes, tag vector, region targets,
//! region sentences and tokens; and the tokenizer trained on the training reports.

use crate::config::{Config, NORMALISATION};
use crate::data::anatomy;
use crate::data::augment::augment;
use crate::data::error::DataError;
use crate::data::imagenome::{region_index, Dataset, Record, Split};
use crate::vocab::{FINDINGS, REGIONS};
use asg_dicom::Letterbox;
use asg_report::{Existence, TextTokenizer, Tokenizer};
use rand_chacha::ChaCha8Rng;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

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

/// A film decoded and letterboxed to the model input, before augmentation.
#[derive(Debug)]
struct Letterboxed {
    tensor: Vec<f32>,
    letterbox: Letterbox,
    width: u32,
    height: u32,
}

fn letterboxed(path: &Path, size: usize) -> Result<Letterboxed, DataError> {
    let (pixels, width, height) = load_image(path)?;
    let input = asg_dicom::preprocess(&pixels, width, height, size as u32, NORMALISATION);
    Ok(Letterboxed {
        tensor: input.tensor,
        letterbox: input.letterbox,
        width,
        height,
    })
}

/// Films decoded and letterboxed once per run instead of once per step: a real 1024 px PNG
/// costs tens of milliseconds to decode and resize, and a weighted film is drawn every few
/// steps. Kept by path and input size up to a byte budget; past it, films are decoded each time.
/// Augmentation runs after the cache, so a run is the same with or without it.
#[derive(Debug)]
pub struct ImageCache {
    films: Mutex<HashMap<(PathBuf, usize), Arc<Letterboxed>>>,
    used: AtomicUsize,
    budget: usize,
}

impl ImageCache {
    /// A cache that holds up to `budget_bytes` of letterboxed films.
    pub fn new(budget_bytes: usize) -> Self {
        Self {
            films: Mutex::new(HashMap::new()),
            used: AtomicUsize::new(0),
            budget: budget_bytes,
        }
    }

    /// The bytes of film now held.
    pub fn bytes(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    fn get(&self, path: &Path, size: usize) -> Result<Arc<Letterboxed>, DataError> {
        let key = (path.to_path_buf(), size);
        if let Some(hit) = self.films.lock().ok().and_then(|m| m.get(&key).cloned()) {
            return Ok(hit);
        }
        // Decoded outside the lock: two workers may decode one film at once, which is harmless.
        let film = Arc::new(letterboxed(path, size)?);
        let bytes = film.tensor.len() * std::mem::size_of::<f32>();
        if self.used.load(Ordering::Relaxed) + bytes <= self.budget {
            if let Ok(mut m) = self.films.lock() {
                if m.insert(key, film.clone()).is_none() {
                    self.used.fetch_add(bytes, Ordering::Relaxed);
                }
            }
        }
        Ok(film)
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
    /// 1 where the tag's target is known, 0 where it takes no part in the loss.
    pub tag_mask: Vec<f32>,
    /// `[REGIONS * FINDINGS]`.
    pub region_targets: Vec<f32>,
    /// `[REGIONS * FINDINGS]`: 1 where the region-finding target is known.
    pub region_mask: Vec<f32>,
    /// Regions that sentences name (with a box), and the token positions of those sentences.
    pub region_sentences: Vec<(usize, Vec<usize>)>,
    /// Boxes dropped because they lay outside the image.
    pub boxes_outside: usize,
    /// The anatomy head's targets `[ANATOMY.len() * side * side]` and which channels are known
    /// `[ANATOMY.len()]` (both empty when the model has no anatomy head).
    pub anatomy: Vec<f32>,
    pub anatomy_known: Vec<f32>,
    /// Lesion-cell targets on the feature grid (empty unless a lesion loss is on).
    pub lesions: crate::data::lesions::LesionCells,
}

/// Prepares a record: `rng` drives the augmentation (None: no augmentation).
pub fn prepare(
    record: &Record,
    tokenizer: &TextTokenizer,
    config: &Config,
    rng: Option<&mut ChaCha8Rng>,
) -> Result<Example, DataError> {
    prepare_cached(record, tokenizer, config, rng, None)
}

/// [`prepare`], with the decoded film taken from (and kept in) `cache` when one is given.
pub fn prepare_cached(
    record: &Record,
    tokenizer: &TextTokenizer,
    config: &Config,
    rng: Option<&mut ChaCha8Rng>,
    cache: Option<&ImageCache>,
) -> Result<Example, DataError> {
    let size = config.model.input_size;
    let film = match cache {
        Some(c) => c.get(&record.image, size)?,
        None => Arc::new(letterboxed(&record.image, size)?),
    };
    let (lb, w, h): (Letterbox, u32, u32) = (film.letterbox, film.width, film.height);
    // A film the cache holds is copied (augmentation changes it); one decoded here is moved.
    let mut image = Arc::try_unwrap(film).map_or_else(|kept| kept.tensor.clone(), |f| f.tensor);
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
    let mut rng = rng;
    let drawn = draw_nodule(record, config, &mut image, &lb, (w, h), rng.as_deref_mut());
    let geometry = rng.map(|rng| {
        augment(
            &mut image,
            &mut boxes,
            &mut present,
            size,
            &config.augment,
            record.given.as_ref().is_some_and(|g| g.normal) && drawn.is_none(),
            rng,
        )
    });
    let (anatomy, anatomy_known) = if config.model.anatomy_head {
        let side = crate::vocab::anatomy_side(size, config.model.anatomy_from_stage);
        match &record.anatomy {
            Some(masks) => {
                let film = (w as usize, h as usize);
                if let Some(m) = masks
                    .iter()
                    .flatten()
                    .find(|m| (m.image_width, m.image_height) != film)
                {
                    return Err(DataError::Layout {
                        path: record.image.display().to_string(),
                        reason: format!(
                            "an anatomy mask is {} x {}, the film {} x {}",
                            m.image_width, m.image_height, film.0, film.1
                        ),
                    });
                }
                anatomy::targets(masks, &lb, geometry.as_ref(), size, side)
            }
            None => (
                vec![0.0; anatomy::ANATOMY.len() * side * side],
                vec![0.0; anatomy::ANATOMY.len()],
            ),
        }
    } else {
        (Vec::new(), Vec::new())
    };
    let nodule = asg_report::finding_index("nodule");
    // The drawn nodule's lesion disc, beside the film's own lesions.
    let with_drawn = match (&drawn, nodule, &record.given) {
        (Some(d), Some(fi), Some(g))
            if config.loss.lesion > 0.0 || config.loss.lesion_attention > 0.0 =>
        {
            let mut g = g.clone();
            g.lesions.extend(crate::data::masks::LesionMap::disc(
                fi,
                w,
                h,
                d.drawn.centre_image.0 as f32,
                d.drawn.centre_image.1 as f32,
                d.drawn.radius_image as f32,
            ));
            Some(g)
        }
        _ => None,
    };
    let lesions = if config.loss.lesion > 0.0 || config.loss.lesion_attention > 0.0 {
        crate::data::lesions::cell_targets(
            with_drawn.as_ref().or(record.given.as_ref()),
            &lb,
            geometry.as_ref(),
            size,
            config.model.grid_side(),
            FINDINGS,
        )
    } else {
        Default::default()
    };
    let mut text = record.report_text()?;
    if let Some(d) = &drawn {
        text = crate::data::nodules::with_nodule(&text, &d.place);
    }
    let parsed = asg_report::parse(&text);
    let mut tags = parsed.tag_vector(config.train.uncertain_as);
    let mut tag_mask = vec![1.0f32; FINDINGS];
    let mut region_mask = vec![1.0f32; REGIONS * FINDINGS];
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
    // Labels given with the image replace the parsed ones; the unknown ones are masked out.
    if let Some(g) = &record.given {
        for (f, v) in g.tags.iter().enumerate().take(FINDINGS) {
            tags[f] = v.unwrap_or(0.0);
            tag_mask[f] = if v.is_some() { 1.0 } else { 0.0 };
        }
        for (i, v) in g.regions.iter().enumerate().take(REGIONS * FINDINGS) {
            region_targets[i] = v.unwrap_or(0.0);
            region_mask[i] = if v.is_some() { 1.0 } else { 0.0 };
        }
    }
    // The drawn nodule: on the film, in its lung and in its zone.
    if let (Some(d), Some(fi)) = (&drawn, nodule) {
        tags[fi] = 1.0;
        tag_mask[fi] = 1.0;
        for region in &d.regions {
            region_targets[region * FINDINGS + fi] = 1.0;
            region_mask[region * FINDINGS + fi] = 1.0;
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
        tag_mask,
        region_targets,
        region_mask,
        region_sentences,
        boxes_outside: outside,
        anatomy,
        anatomy_known,
        lesions,
    })
}

/// A synthetic nodule drawn into a film, and where its labels go.
#[derive(Debug, Clone)]
struct DrawnNodule {
    drawn: crate::data::nodules::Drawn,
    /// The most specific region holding it (its lung zone, else its lung), for the text.
    place: String,
    /// Region indices labelled with it: its lung and its lung zone.
    regions: Vec<usize>,
}

/// Draws a synthetic nodule into a real training film at the chance `augment.nodules`
/// (`data::nodules`): only films with given labels and a lung mask of the film's size, and none
/// that holds a nodule or a mass already. Draws nothing from `rng` when the chance is 0, so
/// recipes without it train exactly as before.
fn draw_nodule(
    record: &Record,
    config: &Config,
    image: &mut [f32],
    lb: &Letterbox,
    (w, h): (u32, u32),
    rng: Option<&mut ChaCha8Rng>,
) -> Option<DrawnNodule> {
    use rand::Rng;
    let chance = config.augment.nodules;
    let rng = rng.filter(|_| chance > 0.0)?;
    let given = record.given.as_ref()?;
    let masks = record.anatomy.as_ref()?;
    let has = |f: &str| {
        asg_report::finding_index(f)
            .and_then(|i| given.tags.get(i).copied().flatten())
            .is_some_and(|v| v > 0.5)
    };
    if has("nodule") || has("mass") {
        return None;
    }
    let lung = |i: usize| {
        masks
            .get(i)
            .and_then(|m| m.as_ref())
            .filter(|m| (m.image_width, m.image_height) == (w as usize, h as usize))
    };
    if lung(0).is_none() && lung(1).is_none() {
        return None;
    }
    if !rng.random_bool(chance.min(1.0)) {
        return None;
    }
    let size = config.model.input_size;
    let drawn = crate::data::nodules::draw(
        image,
        size,
        [lung(0), lung(1)],
        lb,
        config.augment.nodule_contrast,
        rng,
    )?;
    let side = if drawn.lung == 0 { "right" } else { "left" };
    let (x, y) = drawn.centre_image;
    let mut place = format!("{side} lung");
    let mut regions: Vec<usize> = region_index(&place).into_iter().collect();
    for zone in ["upper", "mid", "lower"] {
        let name = format!("{side} {zone} lung zone");
        let Some(r) = region_index(&name) else {
            continue;
        };
        let holds = record.boxes.get(r).copied().flatten();
        if holds.is_some_and(|b| crate::data::masks::inside(&b, x as f32, y as f32)) {
            regions.push(r);
            place = name;
            break;
        }
    }
    Some(DrawnNodule {
        drawn,
        place,
        regions,
    })
}

/// Per finding (the model's order), how many of `records` have it positive: their given
/// labels, else their report parsed (uncertain counting as `uncertain_as`, positive above 0.5).
/// The export offers only findings the training data had positives of.
pub fn positive_counts(records: &[Record], uncertain_as: f32) -> Result<Vec<usize>, DataError> {
    let mut counts = vec![0usize; FINDINGS];
    for r in records {
        let tags: Vec<f32> = match &r.given {
            Some(g) => g.tags.iter().map(|t| t.unwrap_or(0.0)).collect(),
            None => asg_report::parse(&r.report_text()?).tag_vector(uncertain_as),
        };
        for (c, t) in counts.iter_mut().zip(tags) {
            *c += (t > 0.5) as usize;
        }
    }
    Ok(counts)
}

/// Trains the tokenizer on the reports of the training split.
pub fn train_tokenizer(data: &Dataset, vocab_size: usize) -> Result<Tokenizer, DataError> {
    let mut texts = Vec::new();
    for r in data.records.iter().filter(|r| r.split == Split::Train) {
        texts.push(r.report_text()?);
    }
    Ok(Tokenizer::train(
        texts.iter().map(String::as_str),
        vocab_size,
        2,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::imagenome::scan;

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
}
