//! Anatomy masks of a phantom, in the image's pixels, for the trainer's anatomy head: the lungs
//! (their outlines filled), the heart (its ellipse) and the clavicles (within 7 mm of their
//! axis, the pad their boxes take), named as the realcxr layout names them. Each mask's box is
//! the phantom's box of that region (`regions.rs`), up to a pixel.

use crate::anatomy::{Anatomy, Side};
use crate::raster::{polygon_runs, segment_distance, Pt};

/// A clavicle's half-thickness, mm (its box is the axis's box padded by this).
pub const CLAVICLE_HALF_WIDTH_MM: f64 = 7.0;

/// The masks `(realcxr name, width * height values, 255 inside)`.
pub fn anatomy_masks(a: &Anatomy, width: usize, height: usize) -> Vec<(&'static str, Vec<u8>)> {
    let s = a.width_mm / width.max(1) as f64;
    let centre = |px: usize, py: usize| ((px as f64 + 0.5) * s, (py as f64 + 0.5) * s);
    let mut out = Vec::new();
    for side in Side::BOTH {
        let name = match side {
            Side::Right => "right_lung",
            Side::Left => "left_lung",
        };
        out.push((
            name,
            fill_polygon(&a.lungs[side.index()].outline, width, height, s),
        ));
    }
    // Only the pixels of a box around the structure are visited (films reach 3000 px a side).
    let pixels_of = |b: [f64; 4]| {
        let px = |v: f64, n: usize| ((v / s).max(0.0) as usize).min(n);
        (
            px(b[0], width)..px(b[2] + s, width),
            px(b[1], height)..px(b[3] + s, height),
        )
    };
    let heart = a.heart;
    let mut m = vec![0u8; width * height];
    let (xs, ys) = pixels_of(heart.bbox());
    for py in ys {
        for px in xs.clone() {
            let (x, y) = centre(px, py);
            if heart.path(x, y) > 0.0 {
                m[py * width + px] = 255;
            }
        }
    }
    out.push(("heart", m));
    for side in Side::BOTH {
        let name = match side {
            Side::Right => "right_clavicle",
            Side::Left => "left_clavicle",
        };
        let axis = &a.clavicles[side.index()];
        let mut m = vec![0u8; width * height];
        let pad = CLAVICLE_HALF_WIDTH_MM;
        let b = axis
            .iter()
            .fold([f64::MAX, f64::MAX, f64::MIN, f64::MIN], |b, p| {
                [b[0].min(p.0), b[1].min(p.1), b[2].max(p.0), b[3].max(p.1)]
            });
        let (xs, ys) = pixels_of([b[0] - pad, b[1] - pad, b[2] + pad, b[3] + pad]);
        for py in ys {
            for px in xs.clone() {
                let p: Pt = centre(px, py);
                let near = axis
                    .windows(2)
                    .any(|w| segment_distance(p, w[0], w[1]).0 <= CLAVICLE_HALF_WIDTH_MM);
                if near {
                    m[py * width + px] = 255;
                }
            }
        }
        out.push((name, m));
    }
    out
}

/// A closed polygon (mm) filled by scanlines at pixel centres.
fn fill_polygon(poly: &[Pt], width: usize, height: usize, spacing: f64) -> Vec<u8> {
    let mut m = vec![0u8; width * height];
    polygon_runs(poly, width, height, spacing, |py, p0, p1| {
        m[py * width + p0..py * width + p1].fill(255);
    });
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each mask's box is the phantom's box of its region (in pixels, within 1.5 px).
    #[test]
    fn each_mask_has_its_regions_box() {
        let study = crate::generate(7, 3, &crate::Options::default());
        let (w, h) = (study.rendered.width, study.rendered.height);
        let masks = anatomy_masks(&study.anatomy, w, h);
        let region = |name: &str| {
            study
                .regions
                .iter()
                .find(|r| r.name == name)
                .map(|r| r.bbox)
                .unwrap()
        };
        for (mask, region_name) in [
            ("right_lung", "right lung"),
            ("left_lung", "left lung"),
            ("heart", "cardiac silhouette"),
            ("right_clavicle", "right clavicle"),
            ("left_clavicle", "left clavicle"),
        ] {
            let m = &masks.iter().find(|(n, _)| *n == mask).unwrap().1;
            let (mut x0, mut y0, mut x1, mut y1) = (usize::MAX, usize::MAX, 0, 0);
            for (i, v) in m.iter().enumerate() {
                if *v == 255 {
                    let (x, y) = (i % w, i / w);
                    (x0, y0, x1, y1) = (x0.min(x), y0.min(y), x1.max(x + 1), y1.max(y + 1));
                }
            }
            assert!(x0 < x1, "{mask} is empty");
            let want = region(region_name);
            for (g, w) in [x0, y0, x1, y1].iter().zip(want) {
                assert!(
                    (*g as f64 - w).abs() <= 1.5,
                    "{mask}: mask box {:?}, region box {want:?}",
                    [x0, y0, x1, y1]
                );
            }
        }
    }
}
