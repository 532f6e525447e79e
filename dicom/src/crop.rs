//! Cutting a region out of a film at its own resolution: the frame that fits a box (plus a margin,
//! aspect kept, centred) into a fixed-size crop, and area-averaged resampling into it. The
//! trainer cuts its lung crops with it from the expert masks' boxes and the plugin from the
//! predicted lungs', so that both read one definition.

use crate::read::Image;

/// Where a crop lies in its film: the film point at the crop's origin and the crop pixels per film
/// pixel (the same along both axes).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CropFrame {
    pub x0: f64,
    pub y0: f64,
    pub scale: f64,
}

impl CropFrame {
    /// The frame that fits the box `[x0, y0, x1, y1]` (film pixels, end exclusive), grown by
    /// `margin` of its width and height on each side, into a `width` x `height` crop, aspect
    /// kept, centred. None for an empty or non-finite box or an empty crop.
    pub fn around(b: [f64; 4], margin: f64, width: usize, height: usize) -> Option<Self> {
        let (w, h) = (b[2] - b[0], b[3] - b[1]);
        if !(w > 0.0 && h > 0.0 && w.is_finite() && h.is_finite()) || width == 0 || height == 0 {
            return None;
        }
        let grow = 1.0 + 2.0 * margin.max(0.0);
        let (w, h) = (w * grow, h * grow);
        let scale = (width as f64 / w).min(height as f64 / h);
        let (cx, cy) = ((b[0] + b[2]) / 2.0, (b[1] + b[3]) / 2.0);
        Some(Self {
            x0: cx - width as f64 / 2.0 / scale,
            y0: cy - height as f64 / 2.0 / scale,
            scale,
        })
    }

    /// A film point in crop pixels.
    pub fn to_crop(&self, x: f64, y: f64) -> (f64, f64) {
        ((x - self.x0) * self.scale, (y - self.y0) * self.scale)
    }

    /// A crop point in film pixels.
    pub fn to_film(&self, u: f64, v: f64) -> (f64, f64) {
        (self.x0 + u / self.scale, self.y0 + v / self.scale)
    }

    /// The whole film pixels `[start, end)` that crop pixel `i` covers along one axis starting at
    /// film coordinate `origin` (at least one pixel, so an enlarging crop repeats pixels).
    fn span(&self, origin: f64, i: usize) -> (i64, i64) {
        let step = 1.0 / self.scale;
        let start = origin + i as f64 * step;
        let a = start.round() as i64;
        (a, ((start + step).round() as i64).max(a + 1))
    }
}

/// A `width` x `height` crop of a film plane (`film_width` x `film_height`, row-major) by area
/// averaging: each crop pixel the mean of `map` over the whole film pixels under it (at least
/// one), pixels outside the film counting as 0. `map` turns stored values into the values wanted
/// (display values, a mask's 0/1).
pub fn crop_area(
    values: &[f32],
    film_width: usize,
    film_height: usize,
    frame: &CropFrame,
    width: usize,
    height: usize,
    map: impl Fn(f32) -> f32,
) -> Vec<f32> {
    let mut out = vec![0.0f32; width * height];
    if values.len() < film_width * film_height || !(frame.scale.is_finite() && frame.scale > 0.0) {
        return out;
    }
    let clip = |v: i64, n: usize| v.clamp(0, n as i64) as usize;
    let cols: Vec<(i64, i64)> = (0..width).map(|u| frame.span(frame.x0, u)).collect();
    for v in 0..height {
        let (y0, y1) = frame.span(frame.y0, v);
        let (fy0, fy1) = (clip(y0, film_height), clip(y1, film_height));
        for (u, &(x0, x1)) in cols.iter().enumerate() {
            let (fx0, fx1) = (clip(x0, film_width), clip(x1, film_width));
            if fx1 <= fx0 || fy1 <= fy0 {
                continue;
            }
            let mut sum = 0.0f64;
            for y in fy0..fy1 {
                let row = &values[y * film_width + fx0..y * film_width + fx1];
                sum += row.iter().map(|&x| map(x) as f64).sum::<f64>();
            }
            let area = ((x1 - x0) * (y1 - y0)) as f64;
            out[v * width + u] = (sum / area) as f32;
        }
    }
    out
}

/// [`crop_area`] of a decoded image's display values (its VOI window or LUT, MONOCHROME1
/// inverted: what [`Image::display`] gives), without a full-size display copy.
pub fn crop_display(image: &Image, frame: &CropFrame, width: usize, height: usize) -> Vec<f32> {
    let map = image.display_map();
    let (w, h) = (image.width as usize, image.height as usize);
    match crate::preprocess::integer_range(&image.pixels) {
        Some((lo, hi)) => {
            let lut: Vec<f32> = (lo..=hi).map(|v| map(v as f32)).collect();
            crop_area(&image.pixels, w, h, frame, width, height, |x| {
                lut[(x as i64 - lo) as usize]
            })
        }
        None => crop_area(&image.pixels, w, h, frame, width, height, map),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_box_fits_the_crop_with_its_margin_and_aspect() {
        // 100 x 400 film pixels into 128 x 256: height-limited (400 * 1.12 = 448 -> 256 px).
        let f = CropFrame::around([50.0, 100.0, 150.0, 500.0], 0.06, 128, 256).unwrap();
        assert!((f.scale - 256.0 / 448.0).abs() < 1e-9);
        let (x, y) = f.to_crop(100.0, 300.0);
        assert!(
            (x - 64.0).abs() < 1e-9 && (y - 128.0).abs() < 1e-9,
            "{x} {y}"
        );
        let (_, top) = f.to_crop(100.0, 100.0);
        assert!((top - 0.06 * 400.0 * f.scale).abs() < 1e-6);
        let (fx, fy) = f.to_film(x, y);
        assert!((fx - 100.0).abs() < 1e-9 && (fy - 300.0).abs() < 1e-9);
        assert!(CropFrame::around([5.0, 5.0, 5.0, 9.0], 0.06, 128, 256).is_none());
        assert!(CropFrame::around([0.0, 0.0, f64::NAN, 9.0], 0.06, 128, 256).is_none());
        assert!(CropFrame::around([0.0, 0.0, 9.0, 9.0], 0.06, 0, 256).is_none());
    }

    #[test]
    fn cropping_averages_areas_and_leaves_the_outside_black() {
        // A 40 x 40 film, its left half 1, cut whole into 128 x 256.
        let (w, h) = (40, 40);
        let film: Vec<f32> = (0..w * h)
            .map(|i| if i % w < 20 { 1.0 } else { 0.0 })
            .collect();
        let f = CropFrame::around([0.0, 0.0, 40.0, 40.0], 0.06, 128, 256).unwrap();
        let crop = crop_area(&film, w, h, &f, 128, 256, |v| v);
        let mean: f32 = crop.iter().sum::<f32>() / crop.len() as f32;
        // The film fills about 114 x 114 of the 128 x 256 crop, its left half lit: about a fifth.
        assert!(mean > 0.15 && mean < 0.30, "{mean}");
        assert_eq!(crop[0], 0.0, "outside the film is black");
        let (cx, cy) = f.to_crop(10.0, 20.0);
        assert_eq!(crop[cy as usize * 128 + cx as usize], 1.0);
        let (cx, cy) = f.to_crop(30.0, 20.0);
        assert_eq!(crop[cy as usize * 128 + cx as usize], 0.0);
    }

    #[test]
    fn a_shrinking_crop_is_the_mean_of_each_block() {
        // A 8 x 8 film of values 0..63 cut whole (no margin) into 4 x 4: 2 x 2 block means.
        let film: Vec<f32> = (0..64).map(|i| i as f32).collect();
        let f = CropFrame::around([0.0, 0.0, 8.0, 8.0], 0.0, 4, 4).unwrap();
        let crop = crop_area(&film, 8, 8, &f, 4, 4, |v| v);
        assert_eq!(crop[0], (0.0 + 1.0 + 8.0 + 9.0) / 4.0);
        assert_eq!(crop[15], (54.0 + 55.0 + 62.0 + 63.0) / 4.0);
        // The map applies before averaging.
        let doubled = crop_area(&film, 8, 8, &f, 4, 4, |v| 2.0 * v);
        assert_eq!(doubled[5], 2.0 * crop[5]);
        // A plane shorter than it claims gives black, not a panic.
        assert!(crop_area(&film[..10], 8, 8, &f, 4, 4, |v| v)
            .iter()
            .all(|&v| v == 0.0));
    }
}
