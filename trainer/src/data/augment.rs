//! Augmentation that moves the boxes with the image: zoom, shift, contrast and noise.

use crate::config::{AugmentConfig, NORMALISATION};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

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

pub(crate) fn augment(
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

#[cfg(test)]
mod tests {
    use super::*;

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
