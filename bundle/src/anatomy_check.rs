//! Whether an image looks like an upright frontal chest film, read off the image model's own
//! lung masks: two lungs, side by side, level with each other, each tall and large enough. An
//! image that fails (a blank or noisy picture, another body part, a film turned on its side or
//! cut in half) gets no findings, regions or outlines instead of false ones. The thresholds are
//! the bundle's (`anatomy_check` in the manifest), set below the range the model's masks take on
//! real chest films (`scripts/anatomy_check.py` measures that range and writes them).

use serde::{Deserialize, Serialize};

/// The manifest's thresholds; every share is of the image's extent inside the model input (the
/// letterbox's content), so padding does not count.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnatomyCheck {
    /// Smallest area each lung's mask must cover, as a share of the image.
    pub min_lung_area: f32,
    /// Smallest height of each lung's mask, as a share of the image's height.
    pub min_lung_height: f32,
    /// Smallest horizontal distance from the right lung's centre to the left lung's (the right
    /// lung on the image's left), as a share of the image's width.
    pub min_lung_separation: f32,
    /// Smallest overlap of the two lungs' vertical extents, as a share of the shorter one.
    pub min_lung_overlap: f32,
    /// How the thresholds were chosen (the films, the margin).
    #[serde(default)]
    pub description: String,
}

/// What the lung masks say about an image: the measures [`AnatomyCheck`] bounds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LungLayout {
    /// (right, left) lung: area, as a share of the image.
    pub area: [f32; 2],
    /// (right, left) lung: height, as a share of the image's height.
    pub height: [f32; 2],
    /// Left lung's centre minus the right lung's, as a share of the width (negative: swapped).
    pub separation: f32,
    /// Overlap of the lungs' vertical extents, as a share of the shorter (0 when one is empty).
    pub overlap: f32,
}

/// One lung mask's cells above one half, inside the content: (count, sum of x, min y, max y).
fn lung_cells(mask: &[f32], side: usize, content: [f32; 4]) -> (usize, f32, f32, f32) {
    let [x0, y0, x1, y1] = content;
    let (mut n, mut sx, mut top, mut bottom) = (0usize, 0f32, f32::INFINITY, f32::NEG_INFINITY);
    for (i, &p) in mask.iter().enumerate().take(side * side) {
        let (x, y) = ((i % side) as f32 + 0.5, (i / side) as f32 + 0.5);
        if p > 0.5 && x >= x0 && x <= x1 && y >= y0 && y <= y1 {
            n += 1;
            sx += x;
            top = top.min(y - 0.5);
            bottom = bottom.max(y + 0.5);
        }
    }
    (n, sx, top, bottom)
}

impl LungLayout {
    /// Measures the right and left lung masks (probabilities, `side` x `side`, over the model
    /// input square); `content` is the image's extent in mask cells: x0, y0, x1, y1.
    pub fn measure(right: &[f32], left: &[f32], side: usize, content: [f32; 4]) -> Self {
        let [x0, y0, x1, y1] = content;
        let (w, h) = ((x1 - x0).max(1e-6), (y1 - y0).max(1e-6));
        let cells_in = (w * h).max(1e-6);
        let r = lung_cells(right, side, content);
        let l = lung_cells(left, side, content);
        let area = |c: &(usize, f32, f32, f32)| c.0 as f32 / cells_in;
        let height = |c: &(usize, f32, f32, f32)| {
            if c.0 == 0 {
                0.0
            } else {
                (c.3 - c.2) / h
            }
        };
        let centre = |c: &(usize, f32, f32, f32)| (c.1 / c.0.max(1) as f32 - x0) / w;
        let separation = if r.0 == 0 || l.0 == 0 {
            0.0
        } else {
            centre(&l) - centre(&r)
        };
        let overlap = if r.0 == 0 || l.0 == 0 {
            0.0
        } else {
            let shared = r.3.min(l.3) - r.2.max(l.2);
            (shared / (r.3 - r.2).min(l.3 - l.2)).max(0.0)
        };
        Self {
            area: [area(&r), area(&l)],
            height: [height(&r), height(&l)],
            separation,
            overlap,
        }
    }
}

impl AnatomyCheck {
    /// Why `layout` is not an upright frontal chest film's, or None when it is.
    pub fn failure(&self, layout: &LungLayout) -> Option<String> {
        let pct = |v: f32| format!("{:.0}%", 100.0 * v);
        for (k, side) in ["right", "left"].iter().enumerate() {
            if layout.area[k] < self.min_lung_area {
                return Some(format!(
                    "the {side} lung covers {} of the image, where a chest film's covers at least {}",
                    pct(layout.area[k]),
                    pct(self.min_lung_area)
                ));
            }
            if layout.height[k] < self.min_lung_height {
                return Some(format!(
                    "the {side} lung is {} of the image's height, where a chest film's is at least {}",
                    pct(layout.height[k]),
                    pct(self.min_lung_height)
                ));
            }
        }
        if layout.separation < self.min_lung_separation {
            return Some(format!(
                "the lungs' centres are {} of the width apart, where a chest film's are at least {}",
                pct(layout.separation),
                pct(self.min_lung_separation)
            ));
        }
        if layout.overlap < self.min_lung_overlap {
            return Some(format!(
                "the lungs overlap {} in height, where a chest film's overlap at least {}",
                pct(layout.overlap),
                pct(self.min_lung_overlap)
            ));
        }
        None
    }

    /// Whether every threshold is a share in 0..=1.
    pub fn is_valid(&self) -> bool {
        [
            self.min_lung_area,
            self.min_lung_height,
            self.min_lung_separation,
            self.min_lung_overlap,
        ]
        .iter()
        .all(|v| v.is_finite() && (0.0..=1.0).contains(v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `side` x `side` mask with the cells of columns `xs` and rows `ys` at 0.9.
    fn block(side: usize, xs: std::ops::Range<usize>, ys: std::ops::Range<usize>) -> Vec<f32> {
        let mut m = vec![0.1; side * side];
        for y in ys {
            for x in xs.clone() {
                m[y * side + x] = 0.9;
            }
        }
        m
    }

    fn check() -> AnatomyCheck {
        AnatomyCheck {
            min_lung_area: 0.03,
            min_lung_height: 0.2,
            min_lung_separation: 0.15,
            min_lung_overlap: 0.5,
            description: String::new(),
        }
    }

    #[test]
    fn two_lungs_side_by_side_pass_and_are_measured_in_the_content() {
        // A 10 x 10 grid whose content is rows 2..8 (padding above and below): lungs of 3 x 5
        // cells at columns 1..4 and 6..9, rows 2..7.
        let content = [0.0, 2.0, 10.0, 8.0];
        let right = block(10, 1..4, 2..7);
        let left = block(10, 6..9, 2..7);
        let m = LungLayout::measure(&right, &left, 10, content);
        assert!((m.area[0] - 15.0 / 60.0).abs() < 1e-6, "{m:?}");
        assert!((m.height[1] - 5.0 / 6.0).abs() < 1e-6, "{m:?}");
        // Centres at x 3.0 and 8.0: 5 of 10 cells apart.
        assert!((m.separation - 0.5).abs() < 1e-6, "{m:?}");
        assert!((m.overlap - 1.0).abs() < 1e-6, "{m:?}");
        assert_eq!(check().failure(&m), None);
        // Cells in the padding do not count.
        let mut padded = right.clone();
        padded[9 * 10 + 1] = 0.9;
        assert_eq!(LungLayout::measure(&padded, &left, 10, content), m);
    }

    #[test]
    fn a_missing_lung_stacked_lungs_and_swapped_lungs_fail_with_the_reason() {
        let content = [0.0, 0.0, 10.0, 10.0];
        let lung = block(10, 1..4, 2..8);
        let none = vec![0.0; 100];
        let m = LungLayout::measure(&lung, &none, 10, content);
        assert_eq!(m.area[1], 0.0);
        let why = check().failure(&m).unwrap();
        assert!(
            why.starts_with("the left lung covers 0% of the image"),
            "{why}"
        );
        // One above the other (a film on its side): side by side fails first at 0 apart.
        let upper = block(10, 3..7, 0..4);
        let lower = block(10, 3..7, 6..10);
        let m = LungLayout::measure(&upper, &lower, 10, content);
        assert_eq!(m.overlap, 0.0);
        let why = check().failure(&m).unwrap();
        assert!(why.contains("apart"), "{why}");
        // Side by side but not level.
        let high = block(10, 1..4, 0..4);
        let low = block(10, 6..9, 5..9);
        let why = check()
            .failure(&LungLayout::measure(&high, &low, 10, content))
            .unwrap();
        assert!(why.contains("overlap 0% in height"), "{why}");
        // The right lung on the image's right: a negative separation.
        let m = LungLayout::measure(&block(10, 6..9, 2..8), &lung, 10, content);
        assert!(m.separation < 0.0);
        assert!(check().failure(&m).is_some());
    }

    #[test]
    fn thresholds_must_be_shares() {
        assert!(check().is_valid());
        let mut c = check();
        c.min_lung_overlap = 1.5;
        assert!(!c.is_valid());
        c.min_lung_overlap = f32::NAN;
        assert!(!c.is_valid());
    }
}
