//! Lung crops for the nodule model (`asg-train nodules`): each lung of a JSRT film in the realcxr
//! layout, cut out of the film at its own resolution around the expert lung mask's box (plus a
//! margin, aspect kept) and reduced by area averaging to [`CROP_W`] x [`CROP_H`], with the lung's
//! coverage and the film's nodule in the crop's pixels. A lung is about 120 px wide here (about 1
//! mm a pixel on JSRT's films), where the whole-film model sees it about 55 px wide: a 10 mm
//! nodule is 9-10 px instead of 4.
//!
//! Labels: a JSRT film holds at most one nodule (or mass, above 30 mm), in the lung its lobe names;
//! the other lung, and both lungs of a non-nodule film, have none. Films of other sources have no
//! nodule labels: read only when asked, as nodule-free (see [`crops_of`]).

use crate::data::error::DataError;
use crate::data::imagenome::Split;
use crate::data::masks::{load_mask, LungSide, Mask};
use crate::data::realcxr::{image_path, side_of_lobe, split_of, RealRecord};
use std::path::Path;

/// The crop's width and height in pixels (a lung is about twice as tall as it is wide).
pub const CROP_W: usize = 128;
pub const CROP_H: usize = 256;
/// The margin around the lung's box, as a share of its width and height on each side.
pub const MARGIN: f64 = 0.06;
/// The realcxr layout's JSRT films have 0.35 mm pixels (its README).
pub const JSRT_MM_PER_PX: f64 = 0.35;
/// The largest film decoded (pixels).
const MAX_FILM_PIXELS: u64 = 1 << 26;

/// A nodule in a crop's pixels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Disc {
    pub cx: f64,
    pub cy: f64,
    pub radius: f64,
}

/// One lung of one film, cut out.
#[derive(Debug, Clone)]
pub struct LungCrop {
    /// The record's id.
    pub film: String,
    /// The record's source (`jsrt`, `ieee8023`).
    pub source: String,
    /// 0: the right lung (image left), 1: the left.
    pub lung: usize,
    pub split: Split,
    /// Display values in [0, 1], `CROP_W * CROP_H`, row-major; 0 outside the film.
    pub pixels: Vec<f32>,
    /// The lung's share of each pixel.
    pub mask: Vec<f32>,
    /// The lung's width in crop pixels (its mask's widest row span).
    pub lung_width: f64,
    /// The film's nodule, when it lies in this lung.
    pub nodule: Option<Disc>,
    /// Whether this lung holds a nodule or mass (None where the film's record does not say which
    /// lung holds it).
    pub label: Option<bool>,
    /// JSRT's subtlety of the film's nodule (1 extremely subtle ... 5 obvious).
    pub subtlety: Option<u8>,
}

/// Where a crop lies in its film (`asg_dicom::CropFrame`: the plugin cuts its crops with the same
/// code).
pub use asg_dicom::CropFrame;

/// The frame that fits a lung's box (x0, y0, x1, y1 in film pixels, end exclusive) plus
/// [`MARGIN`] into a [`CROP_W`] x [`CROP_H`] crop, aspect kept, centred.
pub fn frame_around(b: [f64; 4]) -> Option<CropFrame> {
    CropFrame::around(b, MARGIN, CROP_W, CROP_H)
}

/// Resamples a film plane into the crop by area averaging: each crop pixel the mean of the film
/// pixels under it (at least one), 0 where it falls outside the film.
pub fn resample(values: &[f32], width: usize, height: usize, frame: &CropFrame) -> Vec<f32> {
    asg_dicom::crop_area(values, width, height, frame, CROP_W, CROP_H, |v| v)
}

/// The widest row span of a plane's pixels above one half.
pub fn widest_span(plane: &[f32], width: usize) -> f64 {
    plane
        .chunks(width)
        .map(|row| {
            let first = row.iter().position(|&v| v > 0.5);
            let last = row.iter().rposition(|&v| v > 0.5);
            match (first, last) {
                (Some(a), Some(b)) => (b - a + 1) as f64,
                _ => 0.0,
            }
        })
        .fold(0.0, f64::max)
}

/// The lung (0 right, 1 left) a JSRT lobe names ("r.upper lobe(S2)", "left lung").
fn lung_of_lobe(lobe: &str) -> Option<usize> {
    side_of_lobe(lobe).map(|side| match side {
        LungSide::Right => 0,
        LungSide::Left => 1,
    })
}

fn mask_box(m: &Mask) -> Option<[f64; 4]> {
    let b = m.bbox()?;
    Some([b[0] as f64, b[1] as f64, b[2] as f64, b[3] as f64])
}

/// The crops of one record's lungs: a JSRT film's, labelled from its nodule record; with
/// `other_sources`, an ieee8023 film's too, both lungs taken for nodule-free (its records name
/// no nodules: a weak label, right for nearly every film of a COVID-era collection, that teaches
/// the model that pneumonia is not a nodule). None for other films or a film without both lung
/// masks.
pub fn crops_of(
    root: &Path,
    r: &RealRecord,
    other_sources: bool,
) -> Result<Vec<LungCrop>, DataError> {
    let jsrt = r.source == "jsrt";
    if !(jsrt || (other_sources && r.source == "ieee8023")) {
        return Ok(Vec::new());
    }
    let (Some(right), Some(left)) = (r.masks.get("right_lung"), r.masks.get("left_lung")) else {
        return Ok(Vec::new());
    };
    if u64::from(r.width) * u64::from(r.height) > MAX_FILM_PIXELS {
        return Err(DataError::Image {
            path: image_path(root, r).display().to_string(),
            reason: format!("film of {} x {} pixels is too large", r.width, r.height),
        });
    }
    let path = image_path(root, r);
    let film = image::open(&path)
        .map_err(|e| DataError::Image {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?
        .into_luma8();
    let (w, h) = (film.width() as usize, film.height() as usize);
    if (w, h) != (r.width as usize, r.height as usize) {
        return Err(DataError::Image {
            path: path.display().to_string(),
            reason: format!(
                "film is {w} x {h}, its record says {} x {}",
                r.width, r.height
            ),
        });
    }
    let values: Vec<f32> = film.as_raw().iter().map(|&v| v as f32 / 255.0).collect();
    let nodules = r.nodules.clone().unwrap_or_default();
    let normal = (r.finding.as_deref() == Some("normal") || !jsrt) && nodules.is_empty();
    // One nodule per JSRT film: the lung its lobe names holds it, the other does not.
    let holder = match nodules.as_slice() {
        [n] => lung_of_lobe(&n.lobe),
        _ => None,
    };
    let mut out = Vec::new();
    for (lung, mask_file) in [right, left].into_iter().enumerate() {
        let mask = load_mask(&root.join(mask_file), r.width, r.height)?;
        let Some(b) = mask_box(&mask) else {
            continue;
        };
        let Some(frame) = frame_around(b) else {
            continue;
        };
        let plane: Vec<f32> = mask.data.iter().map(|&v| v as u8 as f32).collect();
        let mask_crop = resample(&plane, w, h, &frame);
        let (label, nodule) = if normal {
            (Some(false), None)
        } else if let (Some(hl), [n]) = (holder, nodules.as_slice()) {
            let disc = (hl == lung).then(|| {
                let (cx, cy) = frame.to_crop(n.center[0] as f64, n.center[1] as f64);
                Disc {
                    cx,
                    cy,
                    radius: n.size_mm as f64 / JSRT_MM_PER_PX / 2.0 * frame.scale,
                }
            });
            (Some(hl == lung), disc)
        } else {
            (None, None)
        };
        out.push(LungCrop {
            film: r.id.clone(),
            source: r.source.clone(),
            lung,
            split: split_of(&r.patient_group),
            pixels: resample(&values, w, h, &frame),
            lung_width: widest_span(&mask_crop, CROP_W),
            mask: mask_crop,
            nodule,
            label,
            subtlety: nodules.first().and_then(|n| n.subtlety),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_widest_span_counts_pixels_above_one_half() {
        let plane = [0.0, 0.6, 0.9, 0.4, 0.0, 0.0, 1.0, 1.0, 1.0, 0.7];
        assert_eq!(widest_span(&plane, 5), 4.0);
        assert_eq!(widest_span(&[0.0; 10], 5), 0.0);
    }

    #[test]
    fn a_jsrt_film_gives_two_lungs_the_nodule_in_the_one_its_lobe_names() {
        let dir = crate::data::realcxr::tests::tiny();
        let recs = crate::data::realcxr::read_index(dir.path()).unwrap();
        // a: JSRT with lung masks and a nodule at (15, 20) in the right upper lobe; b: ieee8023
        // (no nodule labels); c: no masks; d: JSRT without lung masks.
        let crops: Vec<LungCrop> = recs
            .iter()
            .flat_map(|r| crops_of(dir.path(), r, false).unwrap())
            .collect();
        assert_eq!(crops.len(), 2);
        let (right, left) = (&crops[0], &crops[1]);
        assert_eq!((right.lung, left.lung), (0, 1));
        assert_eq!((right.label, left.label), (Some(true), Some(false)));
        assert!(left.nodule.is_none());
        // The right lung's box (8, 8)-(28, 56) with its margin, height-limited: 4.76 crop pixels
        // a film pixel; the lung 20 film pixels wide.
        let scale = 256.0 / (48.0 * 1.12);
        assert!(
            (right.lung_width - 20.0 * scale).abs() <= 2.0,
            "{}",
            right.lung_width
        );
        let d = right.nodule.unwrap();
        assert!((d.radius - 12.0 / 0.35 / 2.0 * scale).abs() < 1e-6);
        let (x, y) = (d.cx.round() as usize, d.cy.round() as usize);
        assert!(
            right.mask[y * CROP_W + x] > 0.99,
            "the nodule's centre lies in the lung"
        );
        assert_eq!(right.pixels.len(), CROP_W * CROP_H);
        assert_eq!(right.subtlety, None);
    }

    #[test]
    fn other_sources_lungs_come_as_nodule_free_only_when_asked() {
        let dir = crate::data::realcxr::tests::tiny();
        let recs = crate::data::realcxr::read_index(dir.path()).unwrap();
        let crops: Vec<LungCrop> = recs
            .iter()
            .flat_map(|r| crops_of(dir.path(), r, true).unwrap())
            .collect();
        // a (JSRT) and b (ieee8023, with both lung masks) give two lungs each.
        assert_eq!(crops.len(), 4);
        let b: Vec<&LungCrop> = crops.iter().filter(|c| c.film == "b").collect();
        assert_eq!(b.len(), 2);
        for c in b {
            assert_eq!((c.source.as_str(), c.label), ("ieee8023", Some(false)));
            assert!(c.nodule.is_none() && c.subtlety.is_none());
        }
        assert_eq!(crops[0].label, Some(true), "JSRT's labels are unchanged");
    }

    #[test]
    fn a_film_that_does_not_match_its_record_is_an_error_naming_it() {
        let dir = crate::data::realcxr::tests::tiny();
        let mut recs = crate::data::realcxr::read_index(dir.path()).unwrap();
        recs[0].width = 65;
        let err = crops_of(dir.path(), &recs[0], false)
            .unwrap_err()
            .to_string();
        assert!(err.contains("a.png"), "{err}");
    }

    #[test]
    fn lobes_name_the_patients_side() {
        assert_eq!(lung_of_lobe("r.upper lobe(S2)"), Some(0));
        assert_eq!(lung_of_lobe("left lung"), Some(1));
        assert_eq!(lung_of_lobe("l.lower lobe"), Some(1));
        assert_eq!(lung_of_lobe("hilum"), None);
    }
}
