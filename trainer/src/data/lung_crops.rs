//! Lung crops for the nodule model (`asg-train nodules`): each lung of a JSRT film in the realcxr
//! layout, cut out of the film at its own resolution around the expert lung mask's box (plus a
//! margin, aspect kept) and reduced by area averaging to [`CROP_W`] x [`CROP_H`], with the lung's
//! coverage and the film's nodule in the crop's pixels. A lung is about 120 px wide here (about 1
//! mm a pixel on JSRT's films), where the whole-film model sees it about 55 px wide: a 10 mm
//! nodule is 9-10 px instead of 4.
//!
//! Labels: a JSRT film holds at most one nodule (or mass, above 30 mm), in the lung its lobe names;
//! the other lung, and both lungs of a non-nodule film, have none. Films of other sources have no
//! nodule labels and are not read.

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

/// Where a crop lies in its film: the film pixel at the crop's origin and the crop pixels per film
/// pixel.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CropFrame {
    pub x0: f64,
    pub y0: f64,
    pub scale: f64,
}

impl CropFrame {
    /// The frame that fits the box (x0, y0, x1, y1 in film pixels, end exclusive) plus
    /// [`MARGIN`] into the crop, aspect kept, centred.
    pub fn around(b: [f64; 4]) -> Option<Self> {
        let (w, h) = (b[2] - b[0], b[3] - b[1]);
        if !(w > 0.0 && h > 0.0) {
            return None;
        }
        let (w, h) = (w * (1.0 + 2.0 * MARGIN), h * (1.0 + 2.0 * MARGIN));
        let scale = (CROP_W as f64 / w).min(CROP_H as f64 / h);
        let (cx, cy) = ((b[0] + b[2]) / 2.0, (b[1] + b[3]) / 2.0);
        Some(Self {
            x0: cx - CROP_W as f64 / 2.0 / scale,
            y0: cy - CROP_H as f64 / 2.0 / scale,
            scale,
        })
    }

    /// A film point in crop pixels.
    pub fn to_crop(&self, x: f64, y: f64) -> (f64, f64) {
        ((x - self.x0) * self.scale, (y - self.y0) * self.scale)
    }
}

/// A summed-area table of a plane, for area averages over any rectangle.
struct Integral {
    width: usize,
    height: usize,
    sums: Vec<f64>,
}

impl Integral {
    fn new(values: &[f32], width: usize, height: usize) -> Self {
        let mut sums = vec![0.0f64; (width + 1) * (height + 1)];
        for y in 0..height {
            let mut row = 0.0;
            for x in 0..width {
                row += values[y * width + x] as f64;
                sums[(y + 1) * (width + 1) + x + 1] = sums[y * (width + 1) + x + 1] + row;
            }
        }
        Self {
            width,
            height,
            sums,
        }
    }

    /// The sum over whole pixels [x0, x1) x [y0, y1), clipped to the plane.
    fn sum(&self, x0: i64, y0: i64, x1: i64, y1: i64) -> f64 {
        let cx = |v: i64| v.clamp(0, self.width as i64) as usize;
        let cy = |v: i64| v.clamp(0, self.height as i64) as usize;
        let (x0, x1, y0, y1) = (cx(x0), cx(x1), cy(y0), cy(y1));
        if x1 <= x0 || y1 <= y0 {
            return 0.0;
        }
        let w = self.width + 1;
        self.sums[y1 * w + x1] - self.sums[y0 * w + x1] - self.sums[y1 * w + x0]
            + self.sums[y0 * w + x0]
    }
}

/// Resamples a film plane into the crop by area averaging: each crop pixel the mean of the film
/// pixels under it (at least one), 0 where it falls outside the film.
pub fn resample(values: &[f32], width: usize, height: usize, frame: &CropFrame) -> Vec<f32> {
    let table = Integral::new(values, width, height);
    let step = 1.0 / frame.scale;
    let mut out = vec![0.0f32; CROP_W * CROP_H];
    for v in 0..CROP_H {
        let fy0 = frame.y0 + v as f64 * step;
        let (y0, y1) = (
            fy0.round() as i64,
            ((fy0 + step).round() as i64).max(fy0.round() as i64 + 1),
        );
        for u in 0..CROP_W {
            let fx0 = frame.x0 + u as f64 * step;
            let (x0, x1) = (
                fx0.round() as i64,
                ((fx0 + step).round() as i64).max(fx0.round() as i64 + 1),
            );
            let area = ((x1 - x0) * (y1 - y0)) as f64;
            out[v * CROP_W + u] = (table.sum(x0, y0, x1, y1) / area) as f32;
        }
    }
    out
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

/// The crops of one JSRT record's lungs (none for other sources or a film without both lung
/// masks).
pub fn crops_of(root: &Path, r: &RealRecord) -> Result<Vec<LungCrop>, DataError> {
    if r.source != "jsrt" {
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
    let normal = r.finding.as_deref() == Some("normal") && nodules.is_empty();
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
        let Some(frame) = CropFrame::around(b) else {
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
    fn a_box_fits_the_crop_with_its_margin_and_aspect() {
        // 100 x 400 film pixels: height-limited (400 * 1.12 = 448 -> 256 px).
        let f = CropFrame::around([50.0, 100.0, 150.0, 500.0]).unwrap();
        assert!((f.scale - 256.0 / 448.0).abs() < 1e-9);
        let (x, y) = f.to_crop(100.0, 300.0);
        assert!(
            (x - 64.0).abs() < 1e-9 && (y - 128.0).abs() < 1e-9,
            "{x} {y}"
        );
        let (_, top) = f.to_crop(100.0, 100.0);
        assert!((top - 0.06 * 400.0 * f.scale).abs() < 1e-6);
        assert!(CropFrame::around([5.0, 5.0, 5.0, 9.0]).is_none());
    }

    #[test]
    fn resampling_averages_areas_and_leaves_the_outside_black() {
        // A 40 x 40 film, its left half 1: the crop of the whole film averages 2 x 2 blocks or so.
        let (w, h) = (40, 40);
        let film: Vec<f32> = (0..w * h)
            .map(|i| if i % w < 20 { 1.0 } else { 0.0 })
            .collect();
        let f = CropFrame::around([0.0, 0.0, 40.0, 40.0]).unwrap();
        let crop = resample(&film, w, h, &f);
        let mean: f32 = crop.iter().sum::<f32>() / crop.len() as f32;
        // The film fills about 114 x 114 of the 128 x 256 crop, its left half lit: about a fifth.
        assert!(mean > 0.15 && mean < 0.30, "{mean}");
        assert_eq!(crop[0], 0.0, "outside the film is black");
        let (cx, cy) = f.to_crop(10.0, 20.0);
        assert_eq!(crop[cy as usize * CROP_W + cx as usize], 1.0);
        let (cx, cy) = f.to_crop(30.0, 20.0);
        assert_eq!(crop[cy as usize * CROP_W + cx as usize], 0.0);
    }

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
            .flat_map(|r| crops_of(dir.path(), r).unwrap())
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
    fn a_film_that_does_not_match_its_record_is_an_error_naming_it() {
        let dir = crate::data::realcxr::tests::tiny();
        let mut recs = crate::data::realcxr::read_index(dir.path()).unwrap();
        recs[0].width = 65;
        let err = crops_of(dir.path(), &recs[0]).unwrap_err().to_string();
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
