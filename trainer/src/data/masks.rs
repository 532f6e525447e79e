//! Region boxes from anatomy masks, one rule per region, the same anatomy the phantoms' scene
//! graphs describe (`phantom/src/regions.rs`), so that real films and phantoms teach one
//! definition. Boxes are `[x0, y0, x1, y1]` in pixels with exclusive right/bottom edges; sides are
//! the patient's (the patient's right lung is on the image left).
//!
//! | region | rule |
//! |---|---|
//! | lung | the lung mask's box |
//! | upper / mid / lower lung zone | the lung box's width; its height from the lung's top to the costophrenic angle's point, in thirds |
//! | costophrenic angle | around the lung's lowest point in its lateral half (ties: the most lateral): 30% of the lung's width wide (a fifth of it lateral to the point), 33% of it tall (a tenth of that below the point) |
//! | hemidiaphragm | the lung's lower border over the lateral three quarters of its width: from its highest point (the dome) to the costophrenic point, padded by 3% of the lung's width |
//! | apical zone | the lung box above the clavicle's lowest point (at least 8% of the lung's width tall); needs a clavicle mask |
//! | clavicle | the clavicle mask's box |
//! | cardiac silhouette | the heart mask's box |
//! | mediastinum | the cardiomediastinum mask's box |
//! | trachea | the airway mask above the carina (the first row, from the top, below which the airways stay split in two for 2% of the image height) |
//!
//! Sizes relative to the lung's width hold at any pixel spacing; at a 130 mm lung they give the
//! phantoms' millimetre boxes (costophrenic angle 40 x 44 mm, hemidiaphragm pad 4 mm).
//! Conventions differ by source: SCR lungs (JSRT) exclude the heart and mediastinum, the
//! GeneralBlockchain and v7labs lungs include the lung behind the heart. The rules above read
//! only the lung's outer extent, its top, its lateral base and its lateral lower border, which
//! both conventions share; nothing here uses the medial border.

use crate::data::error::{io, DataError};
use std::path::Path;

/// The largest mask decoded (pixels).
const MAX_MASK_PIXELS: u64 = 1 << 26;

/// Decodes a mask PNG, checking that it has the image's size.
pub fn load_mask(path: &Path, width: u32, height: u32) -> Result<Mask, DataError> {
    let bad = |reason: String| DataError::Image {
        path: path.display().to_string(),
        reason,
    };
    let reader = image::ImageReader::open(path)
        .map_err(io(path))?
        .with_guessed_format()
        .map_err(io(path))?;
    let (w, h) = reader.into_dimensions().map_err(|e| bad(e.to_string()))?;
    if (w, h) != (width, height) {
        return Err(bad(format!(
            "mask is {w} x {h}, the image {width} x {height}"
        )));
    }
    if u64::from(w) * u64::from(h) > MAX_MASK_PIXELS {
        return Err(bad(format!("mask of {w} x {h} pixels is too large")));
    }
    let img = image::open(path)
        .map_err(|e| bad(e.to_string()))?
        .into_luma8();
    Mask::from_luma(w as usize, h as usize, img.as_raw())
        .ok_or_else(|| bad("mask size does not match its pixels".into()))
}

/// A binary mask.
#[derive(Debug, Clone, PartialEq)]
pub struct Mask {
    pub width: usize,
    pub height: usize,
    /// Row-major, `width * height`.
    pub data: Vec<bool>,
}

/// Where a lesion is, for the mask-based pointing game: a radiologist's lesion mask (or a JSRT
/// nodule's disc) of one finding, kept at most [`LESION_MAP_SIDE`] cells a side (nearest
/// sampling), in the film's pixel frame.
#[derive(Debug, Clone, PartialEq)]
pub struct LesionMap {
    /// The finding's index (model order).
    pub finding: usize,
    /// The film's size in pixels.
    pub image_width: u32,
    pub image_height: u32,
    cols: usize,
    rows: usize,
    cells: Vec<bool>,
}

/// The largest side of a [`LesionMap`].
pub const LESION_MAP_SIDE: usize = 256;

impl LesionMap {
    fn build(
        finding: usize,
        w: usize,
        h: usize,
        inside: &dyn Fn(f32, f32) -> bool,
    ) -> Option<Self> {
        if w == 0 || h == 0 {
            return None;
        }
        let scale = (LESION_MAP_SIDE as f32 / w.max(h) as f32).min(1.0);
        let cols = ((w as f32 * scale).round() as usize).max(1);
        let rows = ((h as f32 * scale).round() as usize).max(1);
        let mut cells = vec![false; cols * rows];
        for (i, c) in cells.iter_mut().enumerate() {
            // Each cell is read at its centre, in film pixels.
            let x = ((i % cols) as f32 + 0.5) * w as f32 / cols as f32;
            let y = ((i / cols) as f32 + 0.5) * h as f32 / rows as f32;
            *c = inside(x, y);
        }
        cells.iter().any(|&c| c).then_some(Self {
            finding,
            image_width: w as u32,
            image_height: h as u32,
            cols,
            rows,
            cells,
        })
    }

    /// A lesion mask's map (None when the mask is empty).
    pub fn from_mask(finding: usize, m: &Mask) -> Option<Self> {
        let at = |x: f32, y: f32| {
            let (x, y) = (x as usize, y as usize);
            x < m.width && y < m.height && m.data[y * m.width + x]
        };
        Self::build(finding, m.width, m.height, &at)
    }

    /// A disc of `radius` pixels around `(cx, cy)` on a `width` x `height` film.
    pub fn disc(
        finding: usize,
        width: u32,
        height: u32,
        cx: f32,
        cy: f32,
        radius: f32,
    ) -> Option<Self> {
        let at = |x: f32, y: f32| (x - cx).powi(2) + (y - cy).powi(2) <= radius * radius;
        Self::build(finding, width as usize, height as usize, &at)
    }

    /// Whether any of the lesion lies in the film rectangle `[x0, x1) x [y0, y1)` (its cells whose
    /// centres fall inside; a rectangle smaller than a cell reads the cell under its centre).
    pub fn overlaps(&self, x0: f32, y0: f32, x1: f32, y1: f32) -> bool {
        let (sx, sy) = (
            self.cols as f32 / self.image_width as f32,
            self.rows as f32 / self.image_height as f32,
        );
        let c0 = (x0 * sx - 0.5).ceil().max(0.0) as usize;
        let r0 = (y0 * sy - 0.5).ceil().max(0.0) as usize;
        let c1 = ((x1 * sx - 0.5).ceil().max(0.0) as usize).min(self.cols);
        let r1 = ((y1 * sy - 0.5).ceil().max(0.0) as usize).min(self.rows);
        if c0 >= c1 || r0 >= r1 {
            return self.contains((x0 + x1) / 2.0, (y0 + y1) / 2.0);
        }
        (r0..r1).any(|r| (c0..c1).any(|c| self.cells[r * self.cols + c]))
    }

    /// Whether the film pixel `(x, y)` lies in the lesion (false outside the film).
    pub fn contains(&self, x: f32, y: f32) -> bool {
        if !(x >= 0.0 && y >= 0.0) {
            return false;
        }
        let c = (x * self.cols as f32 / self.image_width as f32) as usize;
        let r = (y * self.rows as f32 / self.image_height as f32) as usize;
        c < self.cols && r < self.rows && self.cells[r * self.cols + c]
    }
}

/// Which lung (the patient's side).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LungSide {
    Right,
    Left,
}

impl LungSide {
    /// The region name prefix.
    pub fn name(self) -> &'static str {
        match self {
            LungSide::Right => "right",
            LungSide::Left => "left",
        }
    }
}

/// A box `[x0, y0, x1, y1]`.
pub type BoxPx = [f32; 4];

/// Whether the point `(x, y)` (film pixels) lies in the box, its right and bottom edges out.
pub fn inside(b: &BoxPx, x: f32, y: f32) -> bool {
    x >= b[0] && x < b[2] && y >= b[1] && y < b[3]
}

impl Mask {
    /// A mask from 8-bit values: set where the value is at least 128.
    pub fn from_luma(width: usize, height: usize, values: &[u8]) -> Option<Self> {
        (values.len() == width * height).then(|| Self {
            width,
            height,
            data: values.iter().map(|&v| v >= 128).collect(),
        })
    }

    fn get(&self, x: usize, y: usize) -> bool {
        self.data[y * self.width + x]
    }

    /// The set pixels' box (exclusive right/bottom edges), None when empty.
    pub fn bbox(&self) -> Option<BoxPx> {
        let (mut x0, mut y0, mut x1, mut y1) = (usize::MAX, usize::MAX, 0, 0);
        for y in 0..self.height {
            for x in 0..self.width {
                if self.get(x, y) {
                    x0 = x0.min(x);
                    y0 = y0.min(y);
                    x1 = x1.max(x + 1);
                    y1 = y1.max(y + 1);
                }
            }
        }
        (x0 != usize::MAX).then_some([x0 as f32, y0 as f32, x1 as f32, y1 as f32])
    }

    /// Per column in `x0..x1`, the lowest set row (None where the column is empty).
    fn lower_border(&self, x0: usize, x1: usize) -> Vec<(usize, Option<usize>)> {
        (x0..x1)
            .map(|x| (x, (0..self.height).rev().find(|&y| self.get(x, y))))
            .collect()
    }
}

/// The lung's lowest point in its lateral half (ties: the most lateral), the costophrenic
/// angle's point, in pixel centres.
pub fn costophrenic_point(lung: &Mask, side: LungSide) -> Option<(f32, f32)> {
    let b = lung.bbox()?;
    let (x0, x1) = (b[0] as usize, b[2] as usize);
    let mid = (x0 + x1) / 2;
    let lateral: Vec<usize> = match side {
        // The patient's right lung is on the image left: its lateral half is the left half.
        LungSide::Right => (x0..mid.max(x0 + 1)).collect(),
        LungSide::Left => (mid.min(x1 - 1)..x1).rev().collect(),
    };
    let mut best: Option<(usize, usize)> = None;
    // Columns from the most lateral inwards: a strictly lower point replaces the best.
    for x in lateral {
        if let Some(y) = (0..lung.height).rev().find(|&y| lung.get(x, y)) {
            if best.is_none_or(|(_, by)| y > by) {
                best = Some((x, y));
            }
        }
    }
    best.map(|(x, y)| (x as f32 + 0.5, y as f32 + 0.5))
}

/// The lung box and the regions derived from the lung mask alone: the lung, its three zones,
/// the costophrenic angle and the hemidiaphragm, as (region name, box).
pub fn lung_regions(lung: &Mask, side: LungSide) -> Vec<(String, BoxPx)> {
    let Some(b) = lung.bbox() else {
        return Vec::new();
    };
    let Some(cp) = costophrenic_point(lung, side) else {
        return Vec::new();
    };
    let n = side.name();
    let w = b[2] - b[0];
    let top = b[1];
    let bottom = cp.1.max(top + 3.0);
    let third = (bottom - top) / 3.0;
    let mut out = vec![
        (format!("{n} lung"), b),
        (
            format!("{n} upper lung zone"),
            [b[0], top, b[2], top + third],
        ),
        (
            format!("{n} mid lung zone"),
            [b[0], top + third, b[2], top + 2.0 * third],
        ),
        (
            format!("{n} lower lung zone"),
            [b[0], top + 2.0 * third, b[2], bottom],
        ),
    ];
    let (lateral, medial) = (0.06 * w, 0.24 * w);
    let cp_box = match side {
        LungSide::Right => [
            cp.0 - lateral,
            cp.1 - 0.30 * w,
            cp.0 + medial,
            cp.1 + 0.03 * w,
        ],
        LungSide::Left => [
            cp.0 - medial,
            cp.1 - 0.30 * w,
            cp.0 + lateral,
            cp.1 + 0.03 * w,
        ],
    };
    out.push((format!("{n} costophrenic angle"), cp_box));
    // The lower border over the lateral three quarters of the lung's width.
    let (x0, x1) = (b[0] as usize, b[2] as usize);
    let span = ((x1 - x0) * 3).div_ceil(4);
    let (c0, c1) = match side {
        LungSide::Right => (x0, x0 + span),
        LungSide::Left => (x1 - span, x1),
    };
    let dome = lung
        .lower_border(c0, c1)
        .into_iter()
        .filter_map(|(_, y)| y)
        .min();
    if let Some(dome) = dome {
        let pad = 0.03 * w;
        let (mx, lx) = match side {
            LungSide::Right => (c1 as f32, cp.0),
            LungSide::Left => (c0 as f32, cp.0),
        };
        out.push((
            format!("{n} hemidiaphragm"),
            [mx.min(lx), dome as f32 - pad, mx.max(lx), cp.1 + pad],
        ));
    }
    out
}

/// The apical zone: the lung box above the clavicle's lowest point (at least 8% of the lung's
/// width tall).
pub fn apical_zone(lung: &Mask, clavicle: &Mask) -> Option<BoxPx> {
    let b = lung.bbox()?;
    let c = clavicle.bbox()?;
    let min_h = 0.08 * (b[2] - b[0]);
    Some([b[0], b[1], b[2], c[3].max(b[1] + min_h).min(b[3])])
}

/// The trachea: the airway mask above the carina, the first row from the top below which the
/// airways stay split in two (two or more separate runs) for 2% of the image height.
pub fn trachea(airways: &Mask) -> Option<BoxPx> {
    let b = airways.bbox()?;
    let runs = |y: usize| {
        let mut n = 0;
        let mut inside = false;
        for x in 0..airways.width {
            let v = airways.get(x, y);
            if v && !inside {
                n += 1;
            }
            inside = v;
        }
        n
    };
    let (top, bottom) = (b[1] as usize, b[3] as usize);
    let hold = (airways.height / 50).max(2);
    let carina = (top..bottom).find(|&y| (y..(y + hold).min(bottom)).all(|r| runs(r) >= 2))?;
    if carina <= top + 1 {
        return None;
    }
    let above = Mask {
        width: airways.width,
        height: carina,
        data: airways.data[..carina * airways.width].to_vec(),
    };
    above.bbox()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lesion_maps_keep_where_the_lesion_is() {
        // A 600 x 300 mask with a block at x 100..200, y 50..100: sampled to 256 x 128 cells.
        let (w, h) = (600, 300);
        let data = (0..w * h)
            .map(|i| (100..200).contains(&(i % w)) && (50..100).contains(&(i / w)))
            .collect();
        let m = Mask {
            width: w,
            height: h,
            data,
        };
        let l = LesionMap::from_mask(3, &m).unwrap();
        assert_eq!((l.finding, l.image_width, l.image_height), (3, 600, 300));
        assert!(l.contains(150.0, 75.0));
        assert!(!l.contains(250.0, 75.0) && !l.contains(150.0, 150.0));
        assert!(!l.contains(-1.0, 75.0) && !l.contains(150.0, 400.0) && !l.contains(f32::NAN, 1.0));
        // Rectangles: touching the block's corner, beside it, and one smaller than a cell.
        assert!(l.overlaps(190.0, 90.0, 300.0, 200.0));
        assert!(!l.overlaps(205.0, 0.0, 600.0, 300.0));
        assert!(l.overlaps(150.0, 75.0, 150.5, 75.5));
        assert!(!l.overlaps(-50.0, -50.0, -10.0, -10.0));
        // An empty mask has no map; a disc is round.
        let empty = Mask {
            width: 8,
            height: 8,
            data: vec![false; 64],
        };
        assert!(LesionMap::from_mask(0, &empty).is_none());
        let d = LesionMap::disc(0, 100, 100, 50.0, 50.0, 10.0).unwrap();
        assert!(d.contains(50.0, 50.0) && d.contains(56.0, 56.0) && !d.contains(59.0, 59.0));
    }

    /// A mask with the set pixels given by `f(x, y)`.
    fn mask(w: usize, h: usize, f: impl Fn(usize, usize) -> bool) -> Mask {
        Mask {
            width: w,
            height: h,
            data: (0..w * h).map(|i| f(i % w, i / w)).collect(),
        }
    }

    #[test]
    fn a_rectangle_gives_its_box_and_empty_masks_give_none() {
        let m = mask(10, 8, |x, y| (2..7).contains(&x) && (1..5).contains(&y));
        assert_eq!(m.bbox(), Some([2.0, 1.0, 7.0, 5.0]));
        assert_eq!(mask(4, 4, |_, _| false).bbox(), None);
        assert!(
            Mask::from_luma(2, 2, &[0, 255, 127, 128]).unwrap().data
                == vec![false, true, false, true]
        );
        assert!(Mask::from_luma(2, 2, &[0]).is_none());
    }

    /// A right lung (image left) as a triangle-ish shape: its lowest point is at the lateral
    /// (left) edge, and the base rises medially.
    fn right_lung() -> Mask {
        // Columns 10..50, top row 10; bottom row per column from 90 (x = 10) rising to 70 (x = 49).
        mask(100, 100, |x, y| {
            (10..50).contains(&x) && y >= 10 && y <= 90 - (x - 10) / 2
        })
    }

    #[test]
    fn the_costophrenic_point_is_the_lowest_lateral_one() {
        let cp = costophrenic_point(&right_lung(), LungSide::Right).unwrap();
        assert_eq!(cp, (10.5, 90.5));
        // The mirror image: a left lung on the image right.
        let m = right_lung();
        let mirrored = mask(100, 100, |x, y| m.get(99 - x, y));
        let cp = costophrenic_point(&mirrored, LungSide::Left).unwrap();
        assert_eq!(cp, (89.5, 90.5));
    }

    #[test]
    fn zones_divide_the_height_to_the_costophrenic_point_in_thirds() {
        let r = lung_regions(&right_lung(), LungSide::Right);
        let get = |n: &str| r.iter().find(|(k, _)| k == n).unwrap().1;
        assert_eq!(get("right lung"), [10.0, 10.0, 50.0, 91.0]);
        let (up, mid, low) = (
            get("right upper lung zone"),
            get("right mid lung zone"),
            get("right lower lung zone"),
        );
        assert_eq!(up[1], 10.0);
        assert!((up[3] - (10.0 + 80.5 / 3.0)).abs() < 1e-4);
        assert_eq!(up[3], mid[1]);
        assert_eq!(mid[3], low[1]);
        assert_eq!(low[3], 90.5);
        assert_eq!((low[0], low[2]), (10.0, 50.0));
        // The angle's box: 40 px lung -> 12 px wide, 2.4 lateral and 9.6 medial of the point.
        let cp = get("right costophrenic angle");
        for (got, want) in cp
            .iter()
            .zip([10.5 - 2.4, 90.5 - 12.0, 10.5 + 9.6, 90.5 + 1.2])
        {
            assert!((got - want).abs() < 1e-4, "{cp:?}");
        }
        // The hemidiaphragm: the lower border's highest point over the lateral 30 columns
        // (x 10..40: y = 90 - 29/2 = 76 at x = 39) down to the point.
        let hd = get("right hemidiaphragm");
        assert!((hd[1] - (76.0 - 1.2)).abs() < 1e-4, "{hd:?}");
        assert!((hd[3] - (90.5 + 1.2)).abs() < 1e-4, "{hd:?}");
        assert_eq!((hd[0], hd[2]), (10.5, 40.0));
    }

    #[test]
    fn the_apical_zone_ends_at_the_clavicle() {
        let clav = mask(100, 100, |x, y| {
            (20..45).contains(&x) && (15..22).contains(&y)
        });
        assert_eq!(
            apical_zone(&right_lung(), &clav),
            Some([10.0, 10.0, 50.0, 22.0])
        );
        // A clavicle above the lung gives the minimum height.
        let high = mask(100, 100, |x, y| {
            (20..45).contains(&x) && (2..5).contains(&y)
        });
        assert_eq!(
            apical_zone(&right_lung(), &high),
            Some([10.0, 10.0, 50.0, 13.2])
        );
    }

    #[test]
    fn the_trachea_stops_at_the_carina() {
        // A vertical tube x 48..52 from y 10 to 40, then two bronchi from y 40 down.
        let airways = mask(100, 100, |x, y| {
            ((48..52).contains(&x) && (10..40).contains(&y))
                || ((40..46).contains(&x) || (54..60).contains(&x)) && (40..70).contains(&y)
        });
        assert_eq!(trachea(&airways), Some([48.0, 10.0, 52.0, 40.0]));
        // A tube that never splits has no carina.
        let tube = mask(100, 100, |x, y| {
            (48..52).contains(&x) && (10..60).contains(&y)
        });
        assert_eq!(trachea(&tube), None);
    }
}
