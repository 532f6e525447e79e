//! Anatomy mask targets for the model's anatomy head: the expert masks of the regions whose box
//! rule is "the mask's box" ([`ANATOMY`]), kept small per film ([`Coverage`]) and resampled into
//! the model input's frame, through the letterbox and the augmentation's geometry, at the head's
//! resolution. A film without a mask of a region leaves that channel unknown (no loss).

use crate::data::augment::Geometry;
use crate::data::masks::Mask;
use asg_dicom::Letterbox;

pub use crate::vocab::ANATOMY;

/// The largest side a [`Coverage`] keeps.
pub const COVERAGE_SIDE: usize = 128;

/// A mask reduced to at most [`COVERAGE_SIDE`] cells a side: each cell the share of its film
/// pixels inside the mask. 16 KiB a mask, so every film's masks can stay in memory.
#[derive(Debug, Clone, PartialEq)]
pub struct Coverage {
    /// The film's size in pixels.
    pub image_width: usize,
    pub image_height: usize,
    cols: usize,
    rows: usize,
    cells: Vec<f32>,
}

impl Coverage {
    /// Reduces `mask` (the film's size) by area counting.
    pub fn from_mask(mask: &Mask) -> Option<Self> {
        let (w, h) = (mask.width, mask.height);
        if w == 0 || h == 0 || mask.data.len() != w * h {
            return None;
        }
        let scale = (COVERAGE_SIDE as f64 / w.max(h) as f64).min(1.0);
        let cols = ((w as f64 * scale).round() as usize).max(1);
        let rows = ((h as f64 * scale).round() as usize).max(1);
        let mut count = vec![0u32; cols * rows];
        let mut total = vec![0u32; cols * rows];
        for y in 0..h {
            let cy = (y * rows / h).min(rows - 1);
            for x in 0..w {
                let cx = (x * cols / w).min(cols - 1);
                total[cy * cols + cx] += 1;
                count[cy * cols + cx] += mask.data[y * w + x] as u32;
            }
        }
        Some(Self {
            image_width: w,
            image_height: h,
            cols,
            rows,
            cells: count
                .iter()
                .zip(&total)
                .map(|(&c, &t)| c as f32 / t.max(1) as f32)
                .collect(),
        })
    }

    /// The coverage at film coordinates (continuous pixels), bilinear between cell centres; 0
    /// outside the film.
    pub fn sample(&self, x: f64, y: f64) -> f32 {
        if x < 0.0 || y < 0.0 || x >= self.image_width as f64 || y >= self.image_height as f64 {
            return 0.0;
        }
        let u = (x * self.cols as f64 / self.image_width as f64 - 0.5).max(0.0);
        let v = (y * self.rows as f64 / self.image_height as f64 - 0.5).max(0.0);
        let (x0, y0) = (
            (u.floor() as usize).min(self.cols - 1),
            (v.floor() as usize).min(self.rows - 1),
        );
        let (x1, y1) = ((x0 + 1).min(self.cols - 1), (y0 + 1).min(self.rows - 1));
        let (fx, fy) = ((u - x0 as f64) as f32, (v - y0 as f64) as f32);
        let at = |xx: usize, yy: usize| self.cells[yy * self.cols + xx];
        (at(x0, y0) * (1.0 - fx) + at(x1, y0) * fx) * (1.0 - fy)
            + (at(x0, y1) * (1.0 - fx) + at(x1, y1) * fx) * fy
    }
}

/// A film's anatomy targets in the model input's frame: `[ANATOMY.len() * side * side]` soft
/// targets (0..1, row-major per channel) and `[ANATOMY.len()]` 1 where the channel is known.
/// `geometry` is the augmentation's (None: none); `side`, the head's.
pub fn targets(
    masks: &[Option<Coverage>],
    letterbox: &Letterbox,
    geometry: Option<&Geometry>,
    size: usize,
    side: usize,
) -> (Vec<f32>, Vec<f32>) {
    let mut out = vec![0.0f32; ANATOMY.len() * side * side];
    let mut known = vec![0.0f32; ANATOMY.len()];
    let cell = size as f64 / side as f64;
    for (ch, m) in masks.iter().enumerate().take(ANATOMY.len()) {
        let Some(m) = m else { continue };
        known[ch] = 1.0;
        let plane = &mut out[ch * side * side..(ch + 1) * side * side];
        for i in 0..side {
            for j in 0..side {
                let (u, v) = ((j as f64 + 0.5) * cell, (i as f64 + 0.5) * cell);
                let (u, v) = match geometry {
                    Some(g) => g.source(u, v, size),
                    None => (u, v),
                };
                let (x, y) = letterbox.to_image(u, v);
                plane[i * side + j] = m.sample(x, y);
            }
        }
    }
    (out, known)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rect(w: usize, h: usize, x0: usize, y0: usize, x1: usize, y1: usize) -> Mask {
        Mask {
            width: w,
            height: h,
            data: (0..w * h)
                .map(|i| (x0..x1).contains(&(i % w)) && (y0..y1).contains(&(i / w)))
                .collect(),
        }
    }

    #[test]
    fn coverage_keeps_the_share_of_each_cell_inside_the_mask() {
        // 256 x 256 film, halved to 128: a rectangle on even edges covers whole cells, one on
        // an odd edge half of its border cells.
        let c = Coverage::from_mask(&rect(256, 256, 64, 32, 128, 96)).unwrap();
        assert_eq!((c.cols, c.rows), (128, 128));
        assert_eq!(c.cells[16 * 128 + 32], 1.0);
        assert_eq!(c.cells[16 * 128 + 31], 0.0);
        let c = Coverage::from_mask(&rect(256, 256, 65, 32, 128, 96)).unwrap();
        assert_eq!(c.cells[16 * 128 + 32], 0.5);
        // Small films stay as they are.
        let c = Coverage::from_mask(&rect(40, 20, 0, 0, 10, 20)).unwrap();
        assert_eq!((c.cols, c.rows), (40, 20));
        assert_eq!(c.sample(5.0, 10.0), 1.0);
        assert_eq!(c.sample(30.0, 10.0), 0.0);
        assert_eq!(c.sample(-1.0, 10.0), 0.0);
    }

    #[test]
    fn targets_follow_the_letterbox_and_the_augmentation() {
        // A 200 x 100 film, its left half a mask, letterboxed into 64: content 64 x 32 from
        // row 16. The head is 16 x 16, cells of 4 px.
        let film = rect(200, 100, 0, 0, 100, 100);
        let masks = vec![Some(Coverage::from_mask(&film).unwrap()), None];
        let lb = Letterbox::new(200, 100, 64);
        let (t, known) = targets(&masks, &lb, None, 64, 16);
        assert_eq!(known, vec![1.0, 0.0, 0.0, 0.0, 0.0, 0.0]);
        let at = |t: &[f32], i: usize, j: usize| t[i * 16 + j];
        assert_eq!(at(&t, 8, 2), 1.0); // inside the film's left half
        assert_eq!(at(&t, 8, 13), 0.0); // its right half
        assert_eq!(at(&t, 1, 2), 0.0); // the letterbox's padding
        assert!(t[256..].iter().all(|v| *v == 0.0)); // unknown channels stay 0

        // A shift of 16 px to the right moves the mask by 4 cells.
        let g = Geometry {
            zoom: 1.0,
            angle: 0.0,
            shift: (16.0, 0.0),
        };
        let (moved, _) = targets(&masks, &lb, Some(&g), 64, 16);
        let inside = |t: &[f32]| -> Vec<usize> { (0..16).filter(|&j| at(t, 8, j) > 0.5).collect() };
        assert_eq!(inside(&t), (0..8).collect::<Vec<_>>());
        assert_eq!(inside(&moved), (4..12).collect::<Vec<_>>());
    }
}
