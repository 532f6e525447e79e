//! Synthetic nodules drawn into real films' lungs (lesion insertion, `augment.nodules`): the real
//! films hold 89 training nodules, too few for a small CNN to learn what a nodule looks like
//! against real ribs, vessels and hila; a drawn nodule on a real background teaches that, with
//! a label that is exact by construction.
//!
//! The nodule is the projection of a sphere (thickness ∝ (1 - ρ²)^e, e = 0.5 for a sharp rim, up
//! to 1.5 for an ill-defined edge), a little elliptic and lobulated, added to the display values inside one lung's expert mask, before the acquisition
//! augmentation (so display curves, JPEG and noise treat it as they treat a real one). Sizes and
//! contrasts follow JSRT's nodules as measured on this data: diameters 8-30 mm (median 15), the
//! core 0.00-0.10 brighter than the ring around it in display units (median 0.04); the diameter
//! in pixels is scaled by the lung's width (a lung is about 122 mm wide on JSRT's films), so films
//! of unknown spacing get nodules of the same size relative to the chest.

use crate::config::NORMALISATION;
use crate::data::anatomy::Coverage;
use asg_dicom::Letterbox;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

/// The width of an adult lung on a PA film, in mm (median of JSRT/SCR lung masks).
pub const LUNG_WIDTH_MM: f64 = 122.0;
/// Diameters drawn, in mm (log-uniform; 30 mm is the nodule/mass boundary).
pub const DIAMETER_MM: [f64; 2] = [8.0, 30.0];
/// Peak contrasts drawn by default, in display units (0..1) (`augment.nodule_contrast`).
pub use crate::config::NODULE_CONTRAST as CONTRAST;
/// Sub-samples per pixel along each axis (the profile averaged over the pixel's area, as the
/// letterbox's area resampling averages a real nodule).
const SUPERSAMPLE: usize = 4;
/// Tries at a centre whose whole disc lies in the lung.
const TRIES: usize = 30;

/// A nodule drawn into a film.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Drawn {
    /// 0: the right lung (ANATOMY's channel 0), 1: the left.
    pub lung: usize,
    /// Centre in the film's pixels.
    pub centre_image: (f64, f64),
    /// Radius in the film's pixels (the larger semi-axis).
    pub radius_image: f64,
    /// Centre and radius in model-input pixels.
    pub centre_model: (f64, f64),
    pub radius_model: f64,
    /// Peak contrast in display units.
    pub contrast: f64,
}

/// The lung's coverage rasterised at the model input (pre-augmentation), with its columns' span.
fn lung_plane(c: &Coverage, lb: &Letterbox, size: usize) -> (Vec<f32>, f64) {
    let mut plane = vec![0.0f32; size * size];
    let (mut x0, mut x1) = (usize::MAX, 0usize);
    for y in 0..size {
        for x in 0..size {
            let (ix, iy) = lb.to_image(x as f64 + 0.5, y as f64 + 0.5);
            let v = c.sample(ix, iy);
            plane[y * size + x] = v;
            if v > 0.5 {
                x0 = x0.min(x);
                x1 = x1.max(x);
            }
        }
    }
    let width = if x1 >= x0 && x0 != usize::MAX {
        (x1 - x0 + 1) as f64
    } else {
        0.0
    };
    (plane, width)
}

/// Draws one nodule into `image` (`size` x `size`, normalised by [`NORMALISATION`]) inside the
/// right or left lung of `lungs` (ANATOMY's channels 0 and 1; None where the film has no such
/// mask), its peak contrast drawn from `contrast` (display units). None (and the image
/// untouched) when neither lung has a place for it.
pub fn draw(
    image: &mut [f32],
    size: usize,
    lungs: [Option<&Coverage>; 2],
    letterbox: &Letterbox,
    contrast: [f64; 2],
    rng: &mut ChaCha8Rng,
) -> Option<Drawn> {
    if !(contrast[0] >= 0.0 && contrast[0] < contrast[1]) {
        return None;
    }
    if image.len() != size * size || size == 0 {
        return None;
    }
    let sides: Vec<usize> = (0..2).filter(|&i| lungs[i].is_some()).collect();
    if sides.is_empty() {
        return None;
    }
    let lung = sides[rng.random_range(0..sides.len())];
    let coverage = lungs[lung]?;
    let (plane, width) = lung_plane(coverage, letterbox, size);
    let gain = 1.0 / NORMALISATION.std as f64;
    let (mx, my, radius, contrast) =
        draw_in_plane(image, size, size, &plane, width, contrast, gain, rng)?;
    let to_image = letterbox.image_width as f64 / letterbox.content_width.max(1) as f64;
    Some(Drawn {
        lung,
        centre_image: letterbox.to_image(mx, my),
        radius_image: radius * to_image,
        centre_model: (mx, my),
        radius_model: radius,
        contrast,
    })
}

/// A nodule drawn into one plane: `image` (`width` x `height`) gets `gain` times the profile of
/// a nodule whose peak contrast is drawn from `contrast`, centred where its whole disc lies in
/// `lung` (the lung's share of each pixel, same size), its diameter scaled by `lung_width` (the
/// lung's width in these pixels: [`DIAMETER_MM`] of [`LUNG_WIDTH_MM`]). Returns the centre, the
/// radius (both in these pixels) and the contrast drawn, or None (the image untouched) when the
/// lung is too small or has no place for it. The random draws come in one fixed order.
#[allow(clippy::too_many_arguments)]
pub fn draw_in_plane(
    image: &mut [f32],
    width: usize,
    height: usize,
    lung: &[f32],
    lung_width: f64,
    contrast: [f64; 2],
    gain: f64,
    rng: &mut ChaCha8Rng,
) -> Option<(f64, f64, f64, f64)> {
    if !(contrast[0] >= 0.0 && contrast[0] < contrast[1]) {
        return None;
    }
    if image.len() != width * height || lung.len() != width * height || lung_width < 4.0 {
        return None;
    }
    let plane = lung;
    let diameter_mm = (rng.random_range(DIAMETER_MM[0].ln()..DIAMETER_MM[1].ln())).exp();
    let radius = diameter_mm / LUNG_WIDTH_MM * lung_width / 2.0;
    let contrast = rng.random_range(contrast[0]..contrast[1]);
    let ratio = rng.random_range(0.8..1.0);
    let tilt = rng.random_range(0.0..std::f64::consts::PI);
    let lobes = rng.random_range(3..7) as f64;
    let lobe_amp = rng.random_range(0.0..0.12);
    let phase = rng.random_range(0.0..std::f64::consts::TAU);
    // 0.5: a sphere's sharp rim; up to 1.5: a blurred, ill-defined edge.
    let edge = rng.random_range(0.5..1.5);
    let inside: Vec<usize> = (0..width * height).filter(|&i| plane[i] > 0.9).collect();
    if inside.is_empty() {
        return None;
    }
    // A centre whose whole nodule (its lobes and the pixels its rim touches) lies in the lung.
    let outer = radius * (1.0 + lobe_amp) + 1.0;
    let reach = outer.ceil() as i64;
    let mut centre = None;
    for _ in 0..TRIES {
        let i = inside[rng.random_range(0..inside.len())];
        let (cx, cy) = ((i % width) as i64, (i / width) as i64);
        let fits = (-reach..=reach).all(|dy| {
            (-reach..=reach).all(|dx| {
                if ((dx * dx + dy * dy) as f64) > outer * outer {
                    return true;
                }
                let (x, y) = (cx + dx, cy + dy);
                x >= 0
                    && y >= 0
                    && (x as usize) < width
                    && (y as usize) < height
                    && plane[y as usize * width + x as usize] > 0.5
            })
        });
        if fits {
            centre = Some((
                cx as f64 + rng.random_range(0.0..1.0),
                cy as f64 + rng.random_range(0.0..1.0),
            ));
            break;
        }
    }
    let (mx, my) = centre?;
    let (sin, cos) = tilt.sin_cos();
    // The profile at a point: the sphere's projected thickness over a lobulated ellipse.
    let profile = |x: f64, y: f64| -> f64 {
        let (dx, dy) = (x - mx, y - my);
        let (u, v) = (cos * dx + sin * dy, -sin * dx + cos * dy);
        let theta = v.atan2(u);
        let r = radius * (1.0 + lobe_amp * (lobes * theta + phase).sin());
        let rho2 = (u / r).powi(2) + (v / (r * ratio)).powi(2);
        (1.0 - rho2).max(0.0).powf(edge)
    };
    let add = contrast * gain;
    let span = radius * (1.0 + lobe_amp) + 1.0;
    let (x0, x1) = (
        ((mx - span).floor().max(0.0)) as usize,
        ((mx + span).ceil() as usize).min(width),
    );
    let (y0, y1) = (
        ((my - span).floor().max(0.0)) as usize,
        ((my + span).ceil() as usize).min(height),
    );
    let step = 1.0 / SUPERSAMPLE as f64;
    for y in y0..y1 {
        for x in x0..x1 {
            let mut sum = 0.0;
            for sy in 0..SUPERSAMPLE {
                for sx in 0..SUPERSAMPLE {
                    sum += profile(
                        x as f64 + (sx as f64 + 0.5) * step,
                        y as f64 + (sy as f64 + 0.5) * step,
                    );
                }
            }
            let p = sum / (SUPERSAMPLE * SUPERSAMPLE) as f64;
            if p > 0.0 {
                image[y * width + x] += (add * p) as f32;
            }
        }
    }
    Some((mx, my, radius, contrast))
}

/// The report sentence list of `text` (written by `realcxr::write_text`) with the drawn nodule
/// in it: "Nodule in the <zone>." before the negatives, and "nodule" taken out of them.
pub fn with_nodule(text: &str, place: &str) -> String {
    let body = text.strip_prefix("FINDINGS: ").unwrap_or(text);
    let mut sentences: Vec<String> = Vec::new();
    for s in body.split_inclusive(". ").map(str::trim) {
        if s.is_empty() {
            continue;
        }
        let s = s.strip_suffix('.').unwrap_or(s);
        if let Some(list) = s.strip_prefix("No ") {
            let kept: Vec<&str> = list.split(" or ").filter(|f| *f != "nodule").collect();
            if !kept.is_empty() {
                sentences.push(format!("No {}.", kept.join(" or ")));
            }
        } else {
            sentences.push(format!("{s}."));
        }
    }
    let at = sentences
        .iter()
        .position(|s| s.starts_with("No "))
        .unwrap_or(sentences.len());
    sentences.insert(at, format!("Nodule in the {place}."));
    format!("FINDINGS: {}", sentences.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::masks::Mask;
    use rand::SeedableRng;

    fn rect(w: usize, h: usize, x0: usize, y0: usize, x1: usize, y1: usize) -> Coverage {
        Coverage::from_mask(&Mask {
            width: w,
            height: h,
            data: (0..w * h)
                .map(|i| (x0..x1).contains(&(i % w)) && (y0..y1).contains(&(i / w)))
                .collect(),
        })
        .unwrap()
    }

    #[test]
    fn a_nodule_lies_inside_its_lung_with_the_drawn_size_and_contrast() {
        // A 400 x 400 film at 100 px: the right lung the film's left half-ish, 160 px wide
        // (40 model px), the left lung absent.
        let right = rect(400, 400, 40, 60, 200, 360);
        let lb = Letterbox::new(400, 400, 100);
        for seed in 0..20 {
            let mut img = vec![0.0f32; 100 * 100];
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            let d = draw(&mut img, 100, [Some(&right), None], &lb, CONTRAST, &mut rng).unwrap();
            assert_eq!(d.lung, 0);
            // Diameter from 8/122 to 30/122 of the lung's 40 px.
            let dia = 2.0 * d.radius_model;
            assert!((2.6..=9.9).contains(&dia), "diameter {dia}");
            assert!((d.radius_image - 4.0 * d.radius_model).abs() < 1e-9);
            let (cx, cy) = d.centre_model;
            assert!(
                (10.0..50.0).contains(&cx) && (15.0..90.0).contains(&cy),
                "{cx} {cy}"
            );
            assert!((d.centre_image.0 - 4.0 * cx).abs() < 1e-6);
            // Everything added lies within the nodule's reach, none outside the lung, and the
            // peak is near the drawn contrast (the pixel's average of the sphere's cap).
            let peak = img.iter().cloned().fold(0.0f32, f32::max) as f64 * 0.25;
            assert!(
                peak <= d.contrast + 1e-6 && peak > 0.5 * d.contrast,
                "{peak}"
            );
            for (i, &v) in img.iter().enumerate() {
                if v == 0.0 {
                    continue;
                }
                let (x, y) = ((i % 100) as f64 + 0.5, (i / 100) as f64 + 0.5);
                let r = ((x - cx).powi(2) + (y - cy).powi(2)).sqrt();
                assert!(r <= d.radius_model * 1.12 + 1.5, "added at {r} px");
                assert!((10.0..50.0).contains(&x) && (15.0..90.0).contains(&y));
            }
        }
    }

    #[test]
    fn no_lung_no_nodule() {
        let lb = Letterbox::new(400, 400, 100);
        let mut img = vec![0.5f32; 100 * 100];
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        assert_eq!(
            draw(&mut img, 100, [None, None], &lb, CONTRAST, &mut rng),
            None
        );
        // A lung too small to hold a nodule.
        let tiny = rect(400, 400, 100, 100, 104, 104);
        assert_eq!(
            draw(&mut img, 100, [None, Some(&tiny)], &lb, CONTRAST, &mut rng),
            None
        );
        assert!(img.iter().all(|v| *v == 0.5));
        // A contrast range that is empty or negative draws nothing.
        let right = rect(400, 400, 40, 60, 200, 360);
        for bad in [[0.1, 0.05], [-0.1, 0.1], [f64::NAN, 0.1]] {
            assert_eq!(
                draw(&mut img, 100, [Some(&right), None], &lb, bad, &mut rng),
                None
            );
        }
        assert!(img.iter().all(|v| *v == 0.5));
        // An image of the wrong size is left alone.
        let mut small = vec![0.0f32; 10];
        assert_eq!(
            draw(
                &mut small,
                100,
                [Some(&right), None],
                &lb,
                CONTRAST,
                &mut rng
            ),
            None
        );
    }

    #[test]
    fn the_report_names_the_drawn_nodule_and_no_longer_denies_it() {
        assert_eq!(
            with_nodule(
                "FINDINGS: No mass or nodule or opacity.",
                "right upper lung zone"
            ),
            "FINDINGS: Nodule in the right upper lung zone. No mass or opacity."
        );
        assert_eq!(
            with_nodule(
                "FINDINGS: Opacity in the left lower lung zone. No nodule.",
                "left lung"
            ),
            "FINDINGS: Opacity in the left lower lung zone. Nodule in the left lung."
        );
        assert_eq!(
            with_nodule("FINDINGS: ", "left lung"),
            "FINDINGS: Nodule in the left lung."
        );
    }
}
