//! The overlay PNG: the image (display window applied) with the anatomy outlines and boxes, the grounded
//! findings coloured by probability, one finding's heatmap blended in, and a legend. Labels are
//! white on a dark band so they read on dark and light images alike. Drawn by hand on an
//! `image::RgbImage` (boxes, an 8x8 bitmap font from font8x8, scaled): no drawing library needed
//! for lines and text this simple.

use crate::analysis::Analysis;
use crate::check::{ReportCheck, Verdict};
use asg_dicom::Image;
use font8x8::UnicodeFonts;
use image::{Rgb, RgbImage};

/// Regions always outlined (thin, cyan) for orientation.
const ORIENTATION: [&str; 4] = [
    "right lung",
    "left lung",
    "cardiac silhouette",
    "mediastinum",
];

/// Colour of a probability: yellow at 0.5 through orange to red at 1.
pub fn probability_colour(p: f32) -> [u8; 3] {
    let t = ((p - 0.5) * 2.0).clamp(0.0, 1.0);
    [255, (220.0 * (1.0 - t)) as u8, 0]
}

/// Colour of a verdict (also used by the viewer's legend).
pub fn verdict_colour(v: Verdict) -> [u8; 3] {
    match v {
        Verdict::Supported => [60, 200, 90],
        Verdict::Uncertain => [230, 200, 40],
        Verdict::Unsupported => [240, 140, 30],
        Verdict::LateralityMismatch => [200, 90, 230],
        Verdict::Contradicted => [235, 50, 50],
        Verdict::NotAssessed | Verdict::NoClaim => [150, 150, 150],
    }
}

/// A label drawn on the overlay: its text and its band `[x0, y0, x1, y1]` (exclusive ends) in
/// image pixels.
#[derive(Debug, Clone, PartialEq)]
pub struct PlacedLabel {
    pub text: String,
    pub rect: [i64; 4],
}

/// The overlay and the labels on it.
#[derive(Debug, Clone)]
pub struct Overlay {
    pub image: RgbImage,
    pub labels: Vec<PlacedLabel>,
}

/// Finds places for labels beside their boxes without covering each other or the rectangles
/// kept free (legend, footer): below the box, inside its top, above it, inside its bottom, at
/// the box's left or right edge, then sliding down and up from below the box; `None` when the
/// image has no free place. The viewer (web/app.js) follows the same rule.
#[derive(Debug, Clone)]
pub struct LabelPlacer {
    width: i64,
    height: i64,
    taken: Vec<[i64; 4]>,
}

impl LabelPlacer {
    /// A placer for an image of `width` x `height`, with `keep_free` rectangles taken.
    pub fn new(width: u32, height: u32, keep_free: &[[i64; 4]]) -> Self {
        LabelPlacer {
            width: width as i64,
            height: height as i64,
            taken: keep_free.to_vec(),
        }
    }

    fn free(&self, x: i64, y: i64, w: i64, h: i64) -> bool {
        self.taken
            .iter()
            .all(|r| x + w <= r[0] || x >= r[2] || y + h <= r[1] || y >= r[3])
    }

    /// A free place `[x0, y0, x1, y1]` for a `w` x `h` label of the box `bbox`, now taken.
    pub fn place(&mut self, bbox: [f32; 4], w: i64, h: i64) -> Option<[i64; 4]> {
        if w > self.width || h > self.height {
            return None;
        }
        let clamp_x = |x: f32| (x.round() as i64).clamp(0, self.width - w);
        let clamp_y = |y: f32| (y.round() as i64).clamp(0, self.height - h);
        let mut xs = vec![clamp_x(bbox[0])];
        let right = clamp_x(bbox[2] - w as f32);
        if right != xs[0] {
            xs.push(right);
        }
        let (hf, y1, y2) = (h as f32, bbox[1], bbox[3]);
        let ys = [y2 + 2.0, y1 + 2.0, y1 - hf - 2.0, y2 - hf - 2.0].map(clamp_y);
        let (height, below) = (self.height, ys[0]);
        let slides = (1..)
            .take_while(move |step| step * h < height)
            .flat_map(move |step| [below + step * h, below - step * h])
            .filter(move |&y| y >= 0 && y <= height - h);
        for y in ys.into_iter().chain(slides) {
            if let Some(&x) = xs.iter().find(|&&x| self.free(x, y, w, h)) {
                let rect = [x, y, x + w, y + h];
                self.taken.push(rect);
                return Some(rect);
            }
        }
        None
    }
}

struct Canvas {
    img: RgbImage,
    scale: u32,
}

impl Canvas {
    fn blend(&mut self, x: i64, y: i64, c: [u8; 3], alpha: f32) {
        if x < 0 || y < 0 || x >= self.img.width() as i64 || y >= self.img.height() as i64 {
            return;
        }
        let p = self.img.get_pixel_mut(x as u32, y as u32);
        for (dst, &src) in p.0.iter_mut().zip(&c) {
            *dst = (*dst as f32 * (1.0 - alpha) + src as f32 * alpha).round() as u8;
        }
    }

    fn rect(&mut self, b: [f32; 4], c: [u8; 3], thickness: u32) {
        let (x1, y1, x2, y2) = (b[0] as i64, b[1] as i64, b[2] as i64, b[3] as i64);
        for t in 0..thickness as i64 {
            for x in x1..=x2 {
                self.blend(x, y1 + t, c, 1.0);
                self.blend(x, y2 - t, c, 1.0);
            }
            for y in y1..=y2 {
                self.blend(x1 + t, y, c, 1.0);
                self.blend(x2 - t, y, c, 1.0);
            }
        }
    }

    /// A closed ring's segments, `thickness` pixels wide (a square pen stepped a pixel at a
    /// time along each segment).
    fn ring(&mut self, points: &[[f32; 2]], c: [u8; 3], thickness: u32) {
        let t = thickness.max(1) as i64;
        for pair in points.windows(2) {
            let ([x0, y0], [x1, y1]) = (pair[0], pair[1]);
            let steps = (x1 - x0).abs().max((y1 - y0).abs()).ceil().clamp(1.0, 1e5) as i64;
            for k in 0..=steps {
                let f = k as f32 / steps as f32;
                let (x, y) = (x0 + f * (x1 - x0), y0 + f * (y1 - y0));
                let (x, y) = (x.round() as i64 - t / 2, y.round() as i64 - t / 2);
                for dy in 0..t {
                    for dx in 0..t {
                        self.blend(x + dx, y + dy, c, 1.0);
                    }
                }
            }
        }
    }

    fn fill(&mut self, x: i64, y: i64, w: i64, h: i64, c: [u8; 3], alpha: f32) {
        for yy in y..y + h {
            for xx in x..x + w {
                self.blend(xx, yy, c, alpha);
            }
        }
    }

    /// The size of a label's band.
    fn label_size(&self, text: &str) -> (i64, i64) {
        let s = self.scale as i64;
        ((text.chars().count() as i64 * 8 + 4) * s, 12 * s)
    }

    /// Text on a dark band at `x, y`; returns the band's height.
    fn label(&mut self, x: i64, y: i64, text: &str, c: [u8; 3]) -> i64 {
        let s = self.scale as i64;
        let (w, h) = self.label_size(text);
        self.fill(x, y, w, h, [0, 0, 0], 0.65);
        for (k, ch) in text.chars().enumerate() {
            let Some(glyph) = font8x8::BASIC_FONTS.get(ch) else {
                continue;
            };
            for (row, bits) in glyph.iter().enumerate() {
                for col in 0..8 {
                    if bits & (1 << col) != 0 {
                        let gx = x + (2 + k as i64 * 8 + col) * s;
                        let gy = y + (2 + row as i64) * s;
                        self.fill(gx, gy, s, s, c, 1.0);
                    }
                }
            }
        }
        h
    }
}

/// Draws the overlay. `heatmap_of` names the finding whose heatmap is blended (default: the most
/// probable present finding).
pub fn render_overlay(
    image: &Image,
    analysis: &Analysis,
    check: Option<&ReportCheck>,
    heatmap_of: Option<&str>,
) -> RgbImage {
    render_overlay_labelled(image, analysis, check, heatmap_of).image
}

/// [`render_overlay`], also telling where each label went. Boxes are labelled only for present
/// findings (their regions at or above the region threshold); a label with no free place is
/// left out, its box drawn.
pub fn render_overlay_labelled(
    image: &Image,
    analysis: &Analysis,
    check: Option<&ReportCheck>,
    heatmap_of: Option<&str>,
) -> Overlay {
    let display = image.display();
    let (w, h) = (image.width, image.height);
    let mut img = RgbImage::new(w, h);
    for (i, p) in img.pixels_mut().enumerate() {
        let v = (display.get(i).copied().unwrap_or(0.0).clamp(0.0, 1.0) * 255.0).round() as u8;
        *p = Rgb([v, v, v]);
    }
    let scale = ((w.max(h) + 300) / 600).max(1);
    let mut c = Canvas { img, scale };
    // The legend (top left): the model, the colour scale and the report check's tally; other
    // labels keep out of its corner.
    let mut legend: Vec<(String, [u8; 3])> = vec![(
        format!("{} {}", analysis.model.name, analysis.model.version),
        [255, 255, 255],
    )];
    for p in [0.5f32, 0.75, 1.0] {
        legend.push((format!("p = {p:.2}"), probability_colour(p)));
    }
    if let Some(check) = check {
        for v in [
            Verdict::Contradicted,
            Verdict::LateralityMismatch,
            Verdict::Unsupported,
            Verdict::Uncertain,
            Verdict::Supported,
        ] {
            let key = format!("{v:?}").to_lowercase();
            let n = check.counts.get(&key).copied().unwrap_or(0);
            if n > 0 {
                legend.push((format!("report: {n} {key}"), verdict_colour(v)));
            }
        }
        for o in &check.omissions {
            legend.push((
                format!("not in report: {} {:.2}", o.finding, o.probability),
                [235, 50, 50],
            ));
        }
    }
    let s = scale as i64;
    let widest = legend
        .iter()
        .map(|(t, _)| t.chars().count())
        .max()
        .unwrap_or(0) as i64;
    let legend_rect = [
        8 * s,
        8 * s,
        8 * s + (widest * 8 + 4) * s,
        8 * s + legend.len() as i64 * 12 * s,
    ];
    // The footer band (heatmap name, research-use line) is kept free too.
    let footer_rect = [0, h as i64 - 32 * s, w as i64, h as i64];
    let mut placer = LabelPlacer::new(w, h, &[legend_rect, footer_rect]);
    let mut labels = Vec::new();

    // Heatmap.
    let chosen = match heatmap_of {
        Some(name) => analysis.findings.iter().find(|f| f.name == name),
        None => analysis
            .findings
            .iter()
            .filter(|f| f.present && f.heatmap.is_some())
            .max_by(|a, b| a.probability.total_cmp(&b.probability)),
    };
    if let Some((f, hm)) = chosen.and_then(|f| f.heatmap.as_ref().map(|h| (f, h))) {
        let g = hm.grid as usize;
        let lb = &analysis.letterbox;
        let size = lb.size as f64;
        for y in 0..h {
            for x in 0..w {
                let (mx, my) = lb.to_model(x as f64 + 0.5, y as f64 + 0.5);
                // Bilinear over cell centres.
                let gx = (mx / size * g as f64 - 0.5).clamp(0.0, (g - 1) as f64);
                let gy = (my / size * g as f64 - 0.5).clamp(0.0, (g - 1) as f64);
                let (x0, y0) = (gx.floor() as usize, gy.floor() as usize);
                let (x1, y1) = ((x0 + 1).min(g - 1), (y0 + 1).min(g - 1));
                let (fx, fy) = ((gx - x0 as f64) as f32, (gy - y0 as f64) as f32);
                let at = |cx: usize, cy: usize| hm.values.get(cy * g + cx).copied().unwrap_or(0.0);
                let v = (at(x0, y0) * (1.0 - fx) + at(x1, y0) * fx) * (1.0 - fy)
                    + (at(x0, y1) * (1.0 - fx) + at(x1, y1) * fx) * fy;
                if v > 0.3 {
                    let colour = [255, (255.0 * (1.0 - v)) as u8, 0];
                    c.blend(x as i64, y as i64, colour, 0.45 * (v - 0.3) / 0.7);
                }
            }
        }
        let text = format!("heatmap: {} ({:.2})", f.name, f.probability);
        c.label(8 * s, h as i64 - 30 * s, &text, [255, 200, 0]);
        let (lw, lh) = c.label_size(&text);
        let rect = [8 * s, h as i64 - 30 * s, 8 * s + lw, h as i64 - 30 * s + lh];
        labels.push(PlacedLabel { text, rect });
    }

    // The boxes: orientation (thin, cyan), then the regions that carry present findings; then
    // their labels, findings first (they matter most when space runs out).
    let orientation: Vec<_> = analysis
        .regions
        .iter()
        .filter(|r| ORIENTATION.contains(&r.name.as_str()))
        .collect();
    let mut grounded = Vec::new();
    for (fi, finding) in analysis.findings.iter().enumerate() {
        if !finding.present || !finding.assessed {
            continue;
        }
        for region in finding.regions.iter().take(2) {
            let Some(r) = analysis.regions.iter().find(|r| &r.name == region) else {
                continue;
            };
            let p = r.probabilities.get(fi).copied().unwrap_or(0.0);
            grounded.push((r, format!("{}: {} {:.2}", r.name, finding.name, p), p));
        }
    }
    // The segmented anatomy is outlined; an outlined structure needs no box as well (its label
    // stays).
    let mut outlined = Vec::new();
    for o in analysis.anatomy.iter().filter(|o| !o.rings.is_empty()) {
        for ring in &o.rings {
            c.ring(ring, [0, 200, 220], scale);
        }
        outlined.push(o.name.as_str());
    }
    for r in &orientation {
        if !outlined.contains(&r.name.as_str()) {
            c.rect(r.bbox, [0, 200, 220], scale);
        }
    }
    for (r, _, p) in &grounded {
        c.rect(r.bbox, probability_colour(*p), 2 * scale);
    }
    let wanted = grounded
        .iter()
        .map(|(r, text, p)| (r.bbox, text.clone(), probability_colour(*p)))
        .chain(
            orientation
                .iter()
                .map(|r| (r.bbox, r.name.clone(), [0, 220, 240])),
        );
    for (bbox, text, colour) in wanted {
        let (lw, lh) = c.label_size(&text);
        if let Some(rect) = placer.place(bbox, lw, lh) {
            c.label(rect[0], rect[1], &text, colour);
            labels.push(PlacedLabel { text, rect });
        }
    }

    // The legend, drawn where it was kept free.
    let mut ly = legend_rect[1];
    for (text, colour) in &legend {
        ly += c.label(legend_rect[0], ly, text, *colour);
    }
    if let Some(check) = check {
        for b in check.omissions.iter().filter_map(|o| o.bbox) {
            c.rect(b, [235, 50, 50], scale);
        }
    }
    c.label(
        8 * s,
        h as i64 - 15 * s,
        "research use only - not for diagnosis",
        [200, 200, 200],
    );
    Overlay {
        image: c.img,
        labels,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn overlaps(a: [i64; 4], b: [i64; 4]) -> bool {
        a[0] < b[2] && b[0] < a[2] && a[1] < b[3] && b[1] < a[3]
    }

    #[test]
    fn a_ring_colours_its_border_and_leaves_its_inside() {
        let mut c = Canvas {
            img: RgbImage::new(20, 20),
            scale: 1,
        };
        let square = [
            [4.0, 4.0],
            [14.0, 4.0],
            [14.0, 14.0],
            [4.0, 14.0],
            [4.0, 4.0],
        ];
        c.ring(&square, [0, 200, 220], 1);
        let lit = |x, y| c.img.get_pixel(x, y).0 == [0, 200, 220];
        for k in 4..=14 {
            assert!(lit(k, 4) && lit(k, 14) && lit(4, k) && lit(14, k), "{k}");
        }
        assert!(!lit(9, 9) && !lit(2, 2) && !lit(16, 9));
    }

    #[test]
    fn labels_of_the_same_box_go_to_different_free_places() {
        let legend = [0, 0, 50, 30];
        let mut placer = LabelPlacer::new(200, 100, &[legend]);
        let bbox = [10.0, 10.0, 120.0, 60.0];
        let mut got = Vec::new();
        for _ in 0..6 {
            got.push(placer.place(bbox, 60, 12).unwrap());
        }
        // The first goes just below the box.
        assert_eq!(got[0], [10, 62, 70, 74]);
        for (i, a) in got.iter().enumerate() {
            assert!(
                a[0] >= 0 && a[1] >= 0 && a[2] <= 200 && a[3] <= 100,
                "{a:?}"
            );
            assert!(!overlaps(*a, legend), "{a:?} covers the legend");
            for b in &got[i + 1..] {
                assert!(!overlaps(*a, *b), "{a:?} and {b:?} overlap");
            }
        }
    }

    #[test]
    fn a_full_image_leaves_labels_out_instead_of_piling_them() {
        let mut placer = LabelPlacer::new(40, 24, &[]);
        let bbox = [0.0, 0.0, 40.0, 24.0];
        assert!(placer.place(bbox, 40, 12).is_some());
        assert!(placer.place(bbox, 40, 12).is_some());
        assert_eq!(placer.place(bbox, 40, 12), None);
        // Wider than the image: no place at all.
        assert_eq!(LabelPlacer::new(40, 24, &[]).place(bbox, 41, 12), None);
    }
}
