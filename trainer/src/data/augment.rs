//! Augmentation that moves the boxes with the image (zoom, shift, rotation), and what real
//! acquisition does to a film without moving anything: display curves (gamma), collimation
//! bands, burned-in text and side markers, 8-bit JPEG compression, edge enhancement, the
//! percentile window of a DICOM film without one, contrast and noise.

use crate::config::{AugmentConfig, NORMALISATION};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

/// Resamples a square image with a zoom and a rotation (`angle` in radians; positive turns the
/// picture clockwise on screen, y running down) about the centre and a shift (bilinear),
/// padding with `pad`: output(x) = input(R(-angle) (x - c - shift) / zoom + c).
fn affine(
    img: &[f32],
    size: usize,
    zoom: f64,
    angle: f64,
    shift: (f64, f64),
    pad: f32,
) -> Vec<f32> {
    let c = size as f64 / 2.0;
    let (sin, cos) = angle.sin_cos();
    let mut out = vec![pad; size * size];
    for y in 0..size {
        for x in 0..size {
            let (dx, dy) = (
                (x as f64 + 0.5 - c - shift.0) / zoom,
                (y as f64 + 0.5 - c - shift.1) / zoom,
            );
            let sx = cos * dx + sin * dy + c - 0.5;
            let sy = -sin * dx + cos * dy + c - 0.5;
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

/// Where the augmentation moved the picture: a zoom and a rotation about the centre and a
/// shift, as [`affine`] applies them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Geometry {
    pub zoom: f64,
    /// Radians; positive turns the picture clockwise on screen.
    pub angle: f64,
    /// Pixels of the model input.
    pub shift: (f64, f64),
}

impl Geometry {
    /// The point of the input picture (continuous model-input pixels) that lands at `(u, v)` of
    /// the augmented one.
    pub fn source(&self, u: f64, v: f64, size: usize) -> (f64, f64) {
        let c = size as f64 / 2.0;
        let (sin, cos) = self.angle.sin_cos();
        let (dx, dy) = (
            (u - c - self.shift.0) / self.zoom,
            (v - c - self.shift.1) / self.zoom,
        );
        (cos * dx + sin * dy + c, -sin * dx + cos * dy + c)
    }
}

/// Augments an image and its boxes in place, and says where the picture moved (for targets
/// that move with it, such as anatomy masks). `normal`: a film read as normal, which
/// `a.zoom_in` may zoom in on (no label of it can leave the view).
pub(crate) fn augment(
    image: &mut Vec<f32>,
    boxes: &mut [[f32; 4]],
    present: &mut [bool],
    size: usize,
    a: &AugmentConfig,
    normal: bool,
    rng: &mut ChaCha8Rng,
) -> Geometry {
    // (No draw without zoom_in: the recipes made before it run as they did.)
    let range = if normal && a.zoom_in > 0.0 && rng.random_bool(a.zoom_in) {
        a.zoom_in_scale
    } else {
        a.scale
    };
    let zoom = if range[1] > range[0] {
        rng.random_range(range[0]..range[1])
    } else {
        range[0]
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
    let angle = if a.rotation_deg > 0.0 {
        rng.random_range(-a.rotation_deg..a.rotation_deg)
            .to_radians()
    } else {
        0.0
    };
    let pad = (0.0 - NORMALISATION.mean) / NORMALISATION.std;
    *image = affine(image, size, zoom, angle, shift, pad);
    // A box goes where its content goes. Anatomy is rounded (lungs, heart, zones), so a
    // rotated box is the box around the moved ellipse inscribed in it: half-widths
    // sqrt((a cos)^2 + (b sin)^2) and sqrt((a sin)^2 + (b cos)^2). The box around the moved
    // corners would inflate a lung's box by ~20% at 7 degrees and teach loose boxes.
    let (sin, cos) = angle.sin_cos();
    for (b, p) in boxes.iter_mut().zip(present.iter_mut()) {
        if !*p {
            continue;
        }
        let (cx, cy) = ((b[0] + b[2]) as f64 / 2.0, (b[1] + b[3]) as f64 / 2.0);
        let (ha, hb) = ((b[2] - b[0]) as f64 / 2.0, (b[3] - b[1]) as f64 / 2.0);
        let (dx, dy) = ((cx - 0.5) * zoom, (cy - 0.5) * zoom);
        let (ncx, ncy) = (
            cos * dx - sin * dy + 0.5 + shift.0 / size as f64,
            sin * dx + cos * dy + 0.5 + shift.1 / size as f64,
        );
        let hw = zoom * ((ha * cos).powi(2) + (hb * sin).powi(2)).sqrt();
        let hh = zoom * ((ha * sin).powi(2) + (hb * cos).powi(2)).sqrt();
        *b = [ncx - hw, ncy - hh, ncx + hw, ncy + hh].map(|v| v.clamp(0.0, 1.0) as f32);
        if b[2] - b[0] < 1e-3 || b[3] - b[1] < 1e-3 {
            *p = false; // moved out of the field
        }
    }
    acquisition(image, size, a, rng);
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
    Geometry { zoom, angle, shift }
}

/// What acquisition and export do to a film, in display values (0 black .. 1 white): a
/// display curve, a collimation band, burned-in markers, an 8-bit JPEG round trip.
fn acquisition(image: &mut [f32], size: usize, a: &AugmentConfig, rng: &mut ChaCha8Rng) {
    let (m, sd) = (NORMALISATION.mean, NORMALISATION.std);
    let touched = a.gamma[1] > a.gamma[0]
        || a.gamma[0] != 1.0
        || a.jpeg > 0.0
        || a.markers > 0.0
        || a.collimation > 0.0
        || a.sharpen > 0.0
        || a.rewindow > 0.0;
    if !touched || size == 0 {
        return;
    }
    let mut d: Vec<f32> = image
        .iter()
        .map(|&v| (v * sd + m).clamp(0.0, 1.0))
        .collect();
    if a.gamma[1] > a.gamma[0] && a.gamma[0] > 0.0 {
        let g = rng.random_range(a.gamma[0].ln()..a.gamma[1].ln()).exp() as f32;
        d.iter_mut().for_each(|v| *v = v.powf(g));
    } else if a.gamma[0] > 0.0 && a.gamma[0] != 1.0 {
        let g = a.gamma[0] as f32;
        d.iter_mut().for_each(|v| *v = v.powf(g));
    }
    if a.sharpen > 0.0 && rng.random_bool(a.sharpen.min(1.0)) {
        let radius = ((rng.random_range(0.01..0.04) * size as f64).round() as usize).max(1);
        let amount = rng.random_range(0.3..1.5) as f32;
        let blurred = box_blur(&d, size, radius);
        for (v, b) in d.iter_mut().zip(blurred) {
            *v = (*v + amount * (*v - b)).clamp(0.0, 1.0);
        }
    }
    if a.collimation > 0.0 && rng.random_bool(a.collimation.min(1.0)) {
        let width = rng.random_range(0.02..0.12) * size as f64;
        let w = (width as usize).max(1);
        let value = if rng.random_bool(0.5) {
            rng.random_range(0.0..0.1)
        } else {
            rng.random_range(0.85..1.0)
        };
        let edge = rng.random_range(0..4);
        for y in 0..size {
            for x in 0..size {
                let inside = match edge {
                    0 => x < w,
                    1 => x >= size - w.min(size),
                    2 => y < w,
                    _ => y >= size - w.min(size),
                };
                if inside {
                    d[y * size + x] = value;
                }
            }
        }
    }
    if a.markers > 0.0 && rng.random_bool(a.markers.min(1.0)) {
        // One to three glyph-like marks (a letter's two strokes) in the outer fifth.
        for _ in 0..rng.random_range(1..=3) {
            let h = ((rng.random_range(0.03..0.08) * size as f64) as usize).max(2);
            let w = (h * 2 / 3).max(2);
            let band = (size / 5).max(1);
            let x0 = if rng.random_bool(0.5) {
                rng.random_range(0..band)
            } else {
                size.saturating_sub(band + w) + rng.random_range(0..band)
            };
            let y0 = rng.random_range(0..size.saturating_sub(h).max(1));
            let value = rng.random_range(0.85f32..1.0);
            let thick = (h / 6).max(1);
            for y in y0..(y0 + h).min(size) {
                for x in x0..(x0 + w).min(size) {
                    let vertical = x < x0 + thick;
                    let foot = y + thick >= y0 + h;
                    if vertical || foot {
                        d[y * size + x] = value;
                    }
                }
            }
        }
    }
    if a.jpeg > 0.0 && rng.random_bool(a.jpeg.min(1.0)) {
        let quality = rng.random_range(40..=95u8);
        let bytes: Vec<u8> = d.iter().map(|&v| (v * 255.0).round() as u8).collect();
        if let Some(back) = jpeg_round_trip(&bytes, size as u32, quality) {
            for (v, b) in d.iter_mut().zip(back) {
                *v = b as f32 / 255.0;
            }
        }
    }
    if a.rewindow > 0.0 && rng.random_bool(a.rewindow.min(1.0)) {
        percentile_window(&mut d);
    }
    for (v, dv) in image.iter_mut().zip(d) {
        *v = (dv - m) / sd;
    }
}

/// The mean over a (2 radius + 1)² square about each pixel, the square cut at the borders
/// (two passes of running sums).
fn box_blur(d: &[f32], size: usize, radius: usize) -> Vec<f32> {
    let pass = |src: &[f32], horizontal: bool| -> Vec<f32> {
        let mut out = vec![0.0f32; src.len()];
        for line in 0..size {
            let at = |i: usize| {
                if horizontal {
                    line * size + i
                } else {
                    i * size + line
                }
            };
            let mut prefix = vec![0.0f64; size + 1];
            for i in 0..size {
                prefix[i + 1] = prefix[i] + src[at(i)] as f64;
            }
            for i in 0..size {
                let (lo, hi) = (i.saturating_sub(radius), (i + radius + 1).min(size));
                out[at(i)] = ((prefix[hi] - prefix[lo]) / (hi - lo) as f64) as f32;
            }
        }
        out
    };
    pass(&pass(d, true), false)
}

/// Stretches display values linearly from their 0.5 to their 99.5 percentile onto 0..1, as
/// the plugin displays a DICOM film that has no VOI window (`asg_dicom`'s default window).
fn percentile_window(d: &mut [f32]) {
    if d.is_empty() {
        return;
    }
    let mut sorted = d.to_vec();
    sorted.sort_by(|a, b| a.total_cmp(b));
    let q = |p: f64| sorted[((sorted.len() - 1) as f64 * p).round() as usize];
    let (lo, hi) = (q(0.005), q(0.995));
    if hi - lo < 1e-6 {
        return;
    }
    d.iter_mut()
        .for_each(|v| *v = ((*v - lo) / (hi - lo)).clamp(0.0, 1.0));
}

/// Encodes a square 8-bit image as JPEG at `quality` and decodes it (None if the codec fails,
/// which leaves the film as it was).
fn jpeg_round_trip(bytes: &[u8], size: u32, quality: u8) -> Option<Vec<u8>> {
    let mut buf = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut buf, quality)
        .encode(bytes, size, size, image::ExtendedColorType::L8)
        .ok()?;
    let img = image::load_from_memory_with_format(&buf, image::ImageFormat::Jpeg).ok()?;
    let luma = img.into_luma8();
    (luma.width() == size && luma.height() == size).then(|| luma.into_raw())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_affine_resample_moves_a_point_as_the_boxes_move() {
        let size = 32;
        let mut img = vec![0.0f32; size * size];
        img[8 * size + 8] = 1.0; // pixel centre (8.5, 8.5) -> normalised 0.2656
        let (zoom, shift) = (1.25, (2.0, -1.0));
        let out = affine(&img, size, zoom, 0.0, shift, 0.0);
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

    /// A bright dot at pixel (8, 20) of a 32 px image and a small box around it: after a zoom,
    /// a 10 degree rotation and a shift, the dot's centre of mass stays inside the moved box.
    #[test]
    fn a_rotated_point_stays_in_its_rotated_box() {
        let size = 32;
        let mut img = vec![-5.0f32; size * size];
        img[20 * size + 8] = 10.0;
        let mut boxes = vec![[7.0 / 32.0, 19.0 / 32.0, 10.0 / 32.0, 22.0 / 32.0]];
        let mut present = vec![true];
        let a = AugmentConfig {
            scale: [1.1, 1.1],
            shift: 0.0,
            contrast: 0.0,
            noise: 0.0,
            rotation_deg: 10.0,
            ..Default::default()
        };
        let mut rng = <ChaCha8Rng as rand::SeedableRng>::seed_from_u64(3);
        let geometry = augment(
            &mut img,
            &mut boxes,
            &mut present,
            size,
            &a,
            false,
            &mut rng,
        );
        let (mut bx, mut by, mut sum) = (0.0, 0.0, 0.0);
        for y in 0..size {
            for x in 0..size {
                let v = (img[y * size + x] + 5.0).max(0.0) as f64;
                bx += v * (x as f64 + 0.5);
                by += v * (y as f64 + 0.5);
                sum += v;
            }
        }
        let (cx, cy) = ((bx / sum / 32.0) as f32, (by / sum / 32.0) as f32);
        let b = boxes[0];
        assert!(present[0]);
        assert!(
            b[0] < cx && cx < b[2] && b[1] < cy && cy < b[3],
            "{cx} {cy} {b:?}"
        );
        // The geometry it returns leads the moved dot back to where it was (pixel centre 8.5,
        // 20.5): what the anatomy masks are resampled with.
        assert!(geometry.angle.abs() > 1e-3);
        let (sx, sy) = geometry.source(cx as f64 * 32.0, cy as f64 * 32.0, size);
        assert!(
            (sx - 8.5).abs() < 0.3 && (sy - 20.5).abs() < 0.3,
            "{sx} {sy}"
        );
        // A square's inscribed circle turns into itself: the box only zooms (3 px * 1.1).
        assert!(((b[2] - b[0]) - 3.3 / 32.0).abs() < 1e-4, "{b:?}");
        // Without rotation the rule is the plain zoom and shift of the corners.
        let mut boxes = vec![[0.2f32, 0.3, 0.5, 0.9]];
        let mut present = vec![true];
        let a = AugmentConfig {
            scale: [1.0, 1.0],
            shift: 0.0,
            contrast: 0.0,
            noise: 0.0,
            ..Default::default()
        };
        augment(
            &mut img,
            &mut boxes,
            &mut present,
            size,
            &a,
            false,
            &mut rng,
        );
        for (got, want) in boxes[0].iter().zip([0.2f32, 0.3, 0.5, 0.9]) {
            assert!((got - want).abs() < 1e-6, "{:?}", boxes[0]);
        }
    }

    #[test]
    fn only_normal_films_are_zoomed_in_on() {
        // zoom_in always, to exactly 2: a normal film's centred box doubles; another film's
        // keeps the ordinary scale (1) and its box.
        let a = AugmentConfig {
            scale: [1.0, 1.0],
            shift: 0.0,
            contrast: 0.0,
            noise: 0.0,
            zoom_in: 1.0,
            zoom_in_scale: [2.0, 2.0],
            ..Default::default()
        };
        let mut rng = <ChaCha8Rng as rand::SeedableRng>::seed_from_u64(5);
        for (normal, want) in [
            (true, [0.3f32, 0.3, 0.7, 0.7]),
            (false, [0.4, 0.4, 0.6, 0.6]),
        ] {
            let mut img = vec![0.0f32; 16 * 16];
            let mut boxes = vec![[0.4f32, 0.4, 0.6, 0.6]];
            let mut present = vec![true];
            let g = augment(&mut img, &mut boxes, &mut present, 16, &a, normal, &mut rng);
            assert_eq!(g.zoom, if normal { 2.0 } else { 1.0 });
            for (got, w) in boxes[0].iter().zip(want) {
                assert!((got - w).abs() < 1e-6, "{normal}: {:?}", boxes[0]);
            }
        }
        // Without zoom_in nothing is drawn for it: the same rng gives the same zoom as before.
        let plain = AugmentConfig {
            scale: [0.9, 1.1],
            ..Default::default()
        };
        let draw = |normal: bool| {
            let mut rng = <ChaCha8Rng as rand::SeedableRng>::seed_from_u64(9);
            let mut img = vec![0.0f32; 16 * 16];
            augment(&mut img, &mut [], &mut [], 16, &plain, normal, &mut rng).zoom
        };
        assert_eq!(draw(true), draw(false));
    }

    #[test]
    fn acquisition_effects_change_display_values_only_where_asked() {
        let size = 64;
        let mid = (0.5 - NORMALISATION.mean) / NORMALISATION.std;
        let plain = vec![mid; size * size];
        let mut rng = <ChaCha8Rng as rand::SeedableRng>::seed_from_u64(1);
        // All off: untouched.
        let mut img = plain.clone();
        acquisition(&mut img, size, &AugmentConfig::default(), &mut rng);
        assert_eq!(img, plain);
        // A gamma of 2 darkens mid grey to 0.25.
        let mut img = plain.clone();
        let a = AugmentConfig {
            gamma: [2.0, 2.0],
            ..Default::default()
        };
        acquisition(&mut img, size, &a, &mut rng);
        let d = img[0] * NORMALISATION.std + NORMALISATION.mean;
        assert!((d - 0.25).abs() < 1e-4, "{d}");
        // Markers always: bright pixels appear, only in the outer fifths left and right.
        let a = AugmentConfig {
            markers: 1.0,
            ..Default::default()
        };
        let mut img = plain.clone();
        acquisition(&mut img, size, &a, &mut rng);
        let bright: Vec<usize> = (0..size * size)
            .filter(|&i| img[i] * NORMALISATION.std + NORMALISATION.mean > 0.8)
            .collect();
        assert!(!bright.is_empty());
        assert!(bright.iter().all(|&i| {
            let x = i % size;
            x < size / 5 + size / 10 || x >= size - size / 5 - size / 10
        }));
        // A JPEG round trip keeps a flat grey within a grey level or two.
        let a = AugmentConfig {
            jpeg: 1.0,
            ..Default::default()
        };
        let mut img = plain.clone();
        acquisition(&mut img, size, &a, &mut rng);
        let d = img[size * 32 + 32] * NORMALISATION.std + NORMALISATION.mean;
        assert!((d - 0.5).abs() < 3.0 / 255.0, "{d}");
        // Collimation always: one edge's strip is dark or bright.
        let a = AugmentConfig {
            collimation: 1.0,
            ..Default::default()
        };
        let mut img = plain.clone();
        acquisition(&mut img, size, &a, &mut rng);
        let changed = img.iter().filter(|&&v| (v - mid).abs() > 0.5).count();
        assert!(
            changed >= size && changed <= size * size * 13 / 100,
            "{changed}"
        );
    }

    /// Display values of a model-input image.
    fn display(img: &[f32]) -> Vec<f32> {
        img.iter()
            .map(|v| v * NORMALISATION.std + NORMALISATION.mean)
            .collect()
    }

    #[test]
    fn edge_enhancement_leaves_flat_grey_and_steepens_an_edge() {
        let size = 64;
        let to_input = |d: f32| (d - NORMALISATION.mean) / NORMALISATION.std;
        let a = AugmentConfig {
            sharpen: 1.0,
            ..Default::default()
        };
        let mut rng = <ChaCha8Rng as rand::SeedableRng>::seed_from_u64(2);
        let flat = vec![to_input(0.5); size * size];
        let mut img = flat.clone();
        acquisition(&mut img, size, &a, &mut rng);
        assert!(display(&img).iter().all(|d| (d - 0.5).abs() < 1e-5));
        // A vertical edge from 0.3 to 0.7: undershoot on the dark side, overshoot on the bright.
        let edge: Vec<f32> = (0..size * size)
            .map(|i| to_input(if i % size < size / 2 { 0.3 } else { 0.7 }))
            .collect();
        let mut img = edge.clone();
        acquisition(&mut img, size, &a, &mut rng);
        let d = display(&img);
        let row = 32 * size;
        assert!(
            d[row + size / 2 - 1] < 0.3 - 1e-3,
            "{}",
            d[row + size / 2 - 1]
        );
        assert!(d[row + size / 2] > 0.7 + 1e-3, "{}", d[row + size / 2]);
        // Far from the edge (past any radius drawn, 4% of 64 px rounds to 3) nothing changes.
        assert!((d[row] - 0.3).abs() < 1e-5 && (d[row + size - 1] - 0.7).abs() < 1e-5);
        // The box blur is the mean of the square cut at the borders.
        let ramp: Vec<f32> = (0..9).map(|i| i as f32).collect();
        let b = box_blur(&ramp, 3, 1);
        assert_eq!(b[0], (0.0 + 1.0 + 3.0 + 4.0) / 4.0);
        assert_eq!(b[4], 4.0);
    }

    #[test]
    fn the_percentile_window_stretches_a_dull_film_to_full_range() {
        let size = 20;
        // Display values 0.4..0.6 in a ramp: stretched onto 0..1, order kept.
        let ramp: Vec<f32> = (0..size * size)
            .map(|i| 0.4 + 0.2 * i as f32 / (size * size - 1) as f32)
            .collect();
        let mut d = ramp.clone();
        percentile_window(&mut d);
        assert!(d[0] == 0.0 && d[size * size - 1] == 1.0);
        assert!(d.windows(2).all(|w| w[0] <= w[1]));
        assert!(
            (d[size * size / 2] - 0.5).abs() < 0.01,
            "{}",
            d[size * size / 2]
        );
        // A flat film is left as it is.
        let mut flat = vec![0.5f32; 16];
        percentile_window(&mut flat);
        assert!(flat.iter().all(|&v| v == 0.5));
    }
}
