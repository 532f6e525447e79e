//! The model's input: area-averaging resize, letterbox to a square, normalisation; and the exact
//! transform between model-input and original-image pixel coordinates.

use crate::read::Image;
use serde::{Deserialize, Serialize};

/// Per-pixel normalisation applied after the display transform: `(v - mean) / std`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Normalisation {
    pub mean: f32,
    pub std: f32,
}

/// Where an image sits inside the square model input. Coordinates are continuous, in pixel
/// units, with (0, 0) the top-left corner of the top-left pixel.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Letterbox {
    /// Side of the square model input.
    pub size: u32,
    pub image_width: u32,
    pub image_height: u32,
    /// The resized image's extent inside the square.
    pub content_width: u32,
    pub content_height: u32,
    /// Left and top padding.
    pub offset_x: u32,
    pub offset_y: u32,
}

impl Letterbox {
    /// Fits a `width` x `height` image into a `size` square, keeping its aspect ratio, centred.
    pub fn new(width: u32, height: u32, size: u32) -> Self {
        let (width, height, size) = (width.max(1), height.max(1), size.max(1));
        let scale = size as f64 / width.max(height) as f64;
        let content_width = ((width as f64 * scale).round() as u32).clamp(1, size);
        let content_height = ((height as f64 * scale).round() as u32).clamp(1, size);
        Self {
            size,
            image_width: width,
            image_height: height,
            content_width,
            content_height,
            offset_x: (size - content_width) / 2,
            offset_y: (size - content_height) / 2,
        }
    }

    fn scale(&self) -> (f64, f64) {
        (
            self.content_width as f64 / self.image_width as f64,
            self.content_height as f64 / self.image_height as f64,
        )
    }

    /// Original-image coordinates -> model-input coordinates.
    pub fn to_model(&self, x: f64, y: f64) -> (f64, f64) {
        let (sx, sy) = self.scale();
        (self.offset_x as f64 + x * sx, self.offset_y as f64 + y * sy)
    }

    /// Model-input coordinates -> original-image coordinates (not clamped).
    pub fn to_image(&self, x: f64, y: f64) -> (f64, f64) {
        let (sx, sy) = self.scale();
        (
            (x - self.offset_x as f64) / sx,
            (y - self.offset_y as f64) / sy,
        )
    }
}

/// A `[1, 1, size, size]` tensor, row-major, and where the image lies in it.
#[derive(Debug, Clone)]
pub struct ModelInput {
    pub tensor: Vec<f32>,
    pub letterbox: Letterbox,
}

/// Resizes a single-channel image by area averaging: each output pixel is the mean of the source
/// area it covers, with fractional pixels weighted by their coverage (no aliasing on downscaling).
pub fn area_resize(
    src: &[f32],
    width: u32,
    height: u32,
    out_width: u32,
    out_height: u32,
) -> Vec<f32> {
    area_resize_map(src, width, height, out_width, out_height, |v| v)
}

/// [`area_resize`] of `map` applied to each source value, without materialising the mapped image.
pub fn area_resize_map(
    src: &[f32],
    width: u32,
    height: u32,
    out_width: u32,
    out_height: u32,
    map: impl Fn(f32) -> f32,
) -> Vec<f32> {
    let (w, h) = (width as usize, height as usize);
    let (ow, oh) = (out_width as usize, out_height as usize);
    if w == 0 || h == 0 || ow == 0 || oh == 0 || src.len() < w * h {
        return vec![0.0; ow * oh];
    }
    if w % ow == 0 && h % oh == 0 {
        return block_mean_map(src, w, h, ow, oh, map);
    }
    let cols = axis_weights(w, ow);
    let rows = axis_weights(h, oh);
    // Horizontal pass: h x ow.
    let mut tmp = vec![0.0f32; h * ow];
    for y in 0..h {
        let line = &src[y * w..(y + 1) * w];
        for (ox, taps) in cols.iter().enumerate() {
            tmp[y * ow + ox] = taps.iter().map(|&(i, wt)| map(line[i]) * wt).sum();
        }
    }
    // Vertical pass: oh x ow.
    let mut out = vec![0.0f32; oh * ow];
    for (oy, taps) in rows.iter().enumerate() {
        let dst = &mut out[oy * ow..(oy + 1) * ow];
        for &(i, wt) in taps {
            let line = &tmp[i * ow..(i + 1) * ow];
            for (d, s) in dst.iter_mut().zip(line) {
                *d += s * wt;
            }
        }
    }
    out
}

/// [`area_resize_map`] for whole-number factors (2048 -> 128, say): each output is the plain mean
/// of its block, summed in four lanes per row (the general path's one-tap-at-a-time sum was the
/// preprocessing's cost).
fn block_mean_map(
    src: &[f32],
    w: usize,
    h: usize,
    ow: usize,
    oh: usize,
    map: impl Fn(f32) -> f32,
) -> Vec<f32> {
    let (fx, fy) = (w / ow, h / oh);
    let scale = 1.0 / (fx * fy) as f32;
    let mut out = vec![0.0f32; ow * oh];
    let mut acc = vec![0.0f32; ow];
    for oy in 0..oh {
        acc.iter_mut().for_each(|a| *a = 0.0);
        for y in oy * fy..(oy + 1) * fy {
            let line = &src[y * w..(y + 1) * w];
            for (a, block) in acc.iter_mut().zip(line.chunks_exact(fx)) {
                let mut lanes = [0.0f32; 4];
                let quads = block.chunks_exact(4);
                let rest = quads.remainder();
                for q in quads {
                    lanes[0] += map(q[0]);
                    lanes[1] += map(q[1]);
                    lanes[2] += map(q[2]);
                    lanes[3] += map(q[3]);
                }
                let mut sum = (lanes[0] + lanes[1]) + (lanes[2] + lanes[3]);
                for &v in rest {
                    sum += map(v);
                }
                *a += sum;
            }
        }
        for (o, a) in out[oy * ow..(oy + 1) * ow].iter_mut().zip(&acc) {
            *o = a * scale;
        }
    }
    out
}

/// For each output index along an axis, the source indices it covers and their normalised weights.
fn axis_weights(n: usize, out: usize) -> Vec<Vec<(usize, f32)>> {
    let ratio = n as f64 / out as f64;
    (0..out)
        .map(|o| {
            let (start, end) = (o as f64 * ratio, (o as f64 + 1.0) * ratio);
            let first = start.floor() as usize;
            let last = (end.ceil() as usize).min(n);
            let mut taps: Vec<(usize, f32)> = (first..last)
                .map(|i| {
                    let cover = (end.min(i as f64 + 1.0) - start.max(i as f64)).max(0.0);
                    (i, (cover / ratio) as f32)
                })
                .filter(|&(_, wt)| wt > 0.0)
                .collect();
            let total: f32 = taps.iter().map(|t| t.1).sum();
            if total > 0.0 {
                taps.iter_mut().for_each(|t| t.1 /= total);
            }
            taps
        })
        .collect()
}

/// Builds the model input from a display image in [0, 1]: area resize into the letterbox, black
/// padding, then normalisation.
pub fn preprocess(
    display: &[f32],
    width: u32,
    height: u32,
    size: u32,
    norm: Normalisation,
) -> ModelInput {
    let letterbox = Letterbox::new(width, height, size);
    let resized = area_resize(
        display,
        width,
        height,
        letterbox.content_width,
        letterbox.content_height,
    );
    place(&resized, letterbox, norm)
}

/// [`preprocess`] straight from a decoded image: the display transform is applied inside the
/// resize, so no full-size display copy is made. Gives exactly `preprocess(&image.display(), ..)`.
pub fn preprocess_image(image: &Image, size: u32, norm: Normalisation) -> ModelInput {
    let letterbox = Letterbox::new(image.width, image.height, size);
    let map = image.display_map();
    let resized = match integer_range(&image.pixels) {
        // Integer-valued pixels (stored values through an integer rescale, the usual case): the
        // display transform is tabulated once per value instead of evaluated per pixel. The
        // table holds exactly `map(v)`, so the result is the same.
        Some((lo, hi)) => {
            let lut: Vec<f32> = (lo..=hi).map(|v| map(v as f32)).collect();
            area_resize_map(
                &image.pixels,
                image.width,
                image.height,
                letterbox.content_width,
                letterbox.content_height,
                |x| lut[(x as i64 - lo) as usize],
            )
        }
        None => area_resize_map(
            &image.pixels,
            image.width,
            image.height,
            letterbox.content_width,
            letterbox.content_height,
            map,
        ),
    };
    place(&resized, letterbox, norm)
}

/// The range of `pixels` when every value is an integer and the range spans at most 2^17 values
/// (a table of the display transform is then cheap).
pub(crate) fn integer_range(pixels: &[f32]) -> Option<(i64, i64)> {
    // (v + C) - C rounds v to an integer for |v| < 2^22 (C = 1.5 * 2^23), so v is an integer
    // exactly when it comes back unchanged; NaN never does. Eight independent lanes of adds and
    // compares vectorise, where `fract` is a libm call per pixel.
    const C: f32 = 12_582_912.0;
    const LANES: usize = 8;
    let mut lo = [f32::INFINITY; LANES];
    let mut hi = [f32::NEG_INFINITY; LANES];
    let mut ok = [true; LANES];
    let chunks = pixels.chunks_exact(LANES);
    let rest = chunks.remainder();
    for chunk in chunks {
        for k in 0..LANES {
            let v = chunk[k];
            ok[k] &= (v + C) - C == v;
            lo[k] = if v < lo[k] { v } else { lo[k] };
            hi[k] = if v > hi[k] { v } else { hi[k] };
        }
    }
    for &v in rest {
        ok[0] &= (v + C) - C == v;
        lo[0] = if v < lo[0] { v } else { lo[0] };
        hi[0] = if v > hi[0] { v } else { hi[0] };
    }
    let lo = lo.iter().copied().fold(f32::INFINITY, f32::min);
    let hi = hi.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let limit = (1u32 << 22) as f32;
    if !(ok.iter().all(|&b| b) && lo > -limit && hi < limit) || hi - lo > (1 << 17) as f32 {
        return None;
    }
    Some((lo as i64, hi as i64))
}

/// Normalises the resized content and places it in the padded square.
fn place(resized: &[f32], letterbox: Letterbox, norm: Normalisation) -> ModelInput {
    let s = letterbox.size as usize;
    let std = if norm.std.abs() > f32::EPSILON {
        norm.std
    } else {
        1.0
    };
    let pad = (0.0 - norm.mean) / std;
    let mut tensor = vec![pad; s * s];
    let (cw, ch) = (
        letterbox.content_width as usize,
        letterbox.content_height as usize,
    );
    let (ox, oy) = (letterbox.offset_x as usize, letterbox.offset_y as usize);
    for y in 0..ch {
        let row = &resized[y * cw..(y + 1) * cw];
        let dst = &mut tensor[(oy + y) * s + ox..(oy + y) * s + ox + cw];
        for (d, v) in dst.iter_mut().zip(row) {
            *d = (v - norm.mean) / std;
        }
    }
    ModelInput { tensor, letterbox }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_factor_resizing_equals_the_general_area_average() {
        // 12 x 8 -> 3 x 2 (factors 4), against the general path forced through a non-divisible
        // detour: the same means within rounding.
        let src: Vec<f32> = (0..96).map(|i| ((i * 37) % 101) as f32 / 7.0).collect();
        let fast = area_resize(&src, 12, 8, 3, 2);
        let cols = axis_weights(12, 3);
        let rows = axis_weights(8, 2);
        for oy in 0..2 {
            for ox in 0..3 {
                let mut want = 0.0f32;
                for &(y, wy) in &rows[oy] {
                    for &(x, wx) in &cols[ox] {
                        want += src[y * 12 + x] * wx * wy;
                    }
                }
                assert!((fast[oy * 3 + ox] - want).abs() < 1e-4, "{oy},{ox}");
            }
        }
        // A single block (5 wide, a remainder after the quads).
        let one = area_resize(&[1.0, 2.0, 3.0, 4.0, 5.0], 5, 1, 1, 1);
        assert!((one[0] - 3.0).abs() < 1e-6);
    }

    #[test]
    fn integer_range_accepts_integers_only() {
        let ints: Vec<f32> = (0..37).map(|i| (i * 97 % 4096) as f32 - 1024.0).collect();
        let lo = ints.iter().copied().fold(f32::INFINITY, f32::min) as i64;
        let hi = ints.iter().copied().fold(f32::NEG_INFINITY, f32::max) as i64;
        assert_eq!(integer_range(&ints), Some((lo, hi)));
        let mut half = ints.clone();
        half[20] += 0.5;
        assert_eq!(integer_range(&half), None);
        let mut nan = ints.clone();
        nan[36] = f32::NAN;
        assert_eq!(integer_range(&nan), None);
        assert_eq!(integer_range(&[0.0, 1e7]), None);
        assert_eq!(integer_range(&[-3.0, 2.0, 7.0]), Some((-3, 7)));
    }

    #[test]
    fn letterbox_round_trip_is_exact() {
        for &(w, h, s) in &[
            (2000u32, 2500u32, 224u32),
            (3000, 2000, 256),
            (7, 5, 64),
            (512, 512, 128),
        ] {
            let lb = Letterbox::new(w, h, s);
            assert!(lb.content_width <= s && lb.content_height <= s);
            assert!(lb.content_width == s || lb.content_height == s);
            for &(x, y) in &[
                (0.0, 0.0),
                (w as f64, h as f64),
                (w as f64 * 0.37, h as f64 * 0.81),
            ] {
                let (mx, my) = lb.to_model(x, y);
                let (bx, by) = lb.to_image(mx, my);
                assert!(
                    (bx - x).abs() < 1e-9 && (by - y).abs() < 1e-9,
                    "{w}x{h}: {x},{y} -> {bx},{by}"
                );
            }
            // The image's corners land on the content's corners.
            let (x1, y1) = lb.to_model(w as f64, h as f64);
            assert_eq!(
                (x1, y1),
                (
                    (lb.offset_x + lb.content_width) as f64,
                    (lb.offset_y + lb.content_height) as f64
                )
            );
        }
    }

    #[test]
    fn area_resize_averages_blocks_exactly() {
        // 4x4 -> 2x2: each output is the mean of a 2x2 block.
        let src: Vec<f32> = (0..16).map(|v| v as f32).collect();
        let out = area_resize(&src, 4, 4, 2, 2);
        assert_eq!(out, vec![2.5, 4.5, 10.5, 12.5]);
    }

    #[test]
    fn area_resize_fractional_cover_keeps_the_mean() {
        // 3 -> 2 along x: output 0 covers pixel 0 fully and half of pixel 1.
        let src = vec![0.0, 3.0, 6.0];
        let out = area_resize(&src, 3, 1, 2, 1);
        assert!(
            (out[0] - 1.0).abs() < 1e-6 && (out[1] - 5.0).abs() < 1e-6,
            "{out:?}"
        );
        let mean_in: f32 = src.iter().sum::<f32>() / 3.0;
        let mean_out: f32 = out.iter().sum::<f32>() / 2.0;
        assert!((mean_in - mean_out).abs() < 1e-6);
    }

    #[test]
    fn preprocess_pads_and_normalises() {
        let display = vec![1.0f32; 4 * 2]; // 4 wide, 2 high
        let input = preprocess(
            &display,
            4,
            2,
            4,
            Normalisation {
                mean: 0.5,
                std: 0.25,
            },
        );
        assert_eq!(input.letterbox.content_height, 2);
        assert_eq!(input.letterbox.offset_y, 1);
        let pad = -2.0;
        let content = 2.0;
        let expect: Vec<f32> = (0..16)
            .map(|i| if (4..12).contains(&i) { content } else { pad })
            .collect();
        assert_eq!(input.tensor, expect);
    }
}
