//! The overlay PNG: the image (display window applied) with the anatomy boxes, the grounded
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

struct Canvas {
    img: RgbImage,
    scale: u32,
    /// Rectangles `[x0, y0, x1, y1]` that labels move down out of: the legend's corner and the
    /// labels placed so far.
    keep_out: Vec<[i64; 4]>,
    /// Whether labels keep out of each other (not the legend's own lines).
    avoid: bool,
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

    fn fill(&mut self, x: i64, y: i64, w: i64, h: i64, c: [u8; 3], alpha: f32) {
        for yy in y..y + h {
            for xx in x..x + w {
                self.blend(xx, yy, c, alpha);
            }
        }
    }

    /// Text on a dark band; returns the band's height.
    fn label(&mut self, x: i64, y: i64, text: &str, c: [u8; 3]) -> i64 {
        let s = self.scale as i64;
        let w = (text.chars().count() as i64 * 8 + 4) * s;
        let h = 12 * s;
        let x = x.clamp(0, (self.img.width() as i64 - w).max(0));
        let mut y = y.clamp(0, (self.img.height() as i64 - h).max(0));
        // Bounded: each step moves below one rectangle.
        for _ in 0..=self.keep_out.len() {
            match self
                .keep_out
                .iter()
                .find(|r| x < r[2] && x + w > r[0] && y < r[3] && y + h > r[1])
            {
                Some(r) => y = r[3],
                None => break,
            }
        }
        let y = y.clamp(0, (self.img.height() as i64 - h).max(0));
        if self.avoid {
            self.keep_out.push([x, y, x + w, y + h]);
        }
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
    let display = image.display();
    let (w, h) = (image.width, image.height);
    let mut img = RgbImage::new(w, h);
    for (i, p) in img.pixels_mut().enumerate() {
        let v = (display.get(i).copied().unwrap_or(0.0).clamp(0.0, 1.0) * 255.0).round() as u8;
        *p = Rgb([v, v, v]);
    }
    let scale = ((w.max(h) + 300) / 600).max(1);
    let mut c = Canvas {
        img,
        scale,
        keep_out: Vec::new(),
        avoid: true,
    };
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
    c.keep_out.push(legend_rect);

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
        let s = scale as i64;
        c.label(
            8 * s,
            h as i64 - 30 * s,
            &format!("heatmap: {} ({:.2})", f.name, f.probability),
            [255, 200, 0],
        );
    }

    // Orientation boxes, then the regions that carry findings.
    for r in analysis
        .regions
        .iter()
        .filter(|r| ORIENTATION.contains(&r.name.as_str()))
    {
        c.rect(r.bbox, [0, 200, 220], scale);
        c.label(r.bbox[0] as i64, r.bbox[1] as i64, &r.name, [0, 220, 240]);
    }
    for finding in analysis.findings.iter().filter(|f| f.present) {
        for region in finding.regions.iter().take(2) {
            let Some(r) = analysis.regions.iter().find(|r| &r.name == region) else {
                continue;
            };
            let fi = analysis
                .findings
                .iter()
                .position(|x| x.name == finding.name);
            let p = fi
                .and_then(|i| r.probabilities.get(i))
                .copied()
                .unwrap_or(0.0);
            let colour = probability_colour(p);
            c.rect(r.bbox, colour, 2 * scale);
            // Below the box, or inside its top where below would reach the footer.
            let band = h as i64 - 32 * scale as i64;
            let below = r.bbox[3] as i64 + 2;
            let ly = if below + 12 * scale as i64 > band {
                r.bbox[1] as i64 + 2
            } else {
                below
            };
            let lx = (r.bbox[0] as i64).max(0);
            c.label(
                lx,
                ly,
                &format!("{}: {} {:.2}", r.name, finding.name, p),
                colour,
            );
        }
    }

    // The legend, drawn where it was kept free.
    c.keep_out.clear();
    c.avoid = false;
    let mut ly = legend_rect[1];
    for (text, colour) in &legend {
        ly += c.label(legend_rect[0], ly, text, *colour);
    }
    if let Some(check) = check {
        for b in check.omissions.iter().filter_map(|o| o.bbox) {
            c.rect(b, [235, 50, 50], scale);
        }
    }
    let _ = ly;
    c.label(
        8 * s,
        h as i64 - 15 * s,
        "research use only - not for diagnosis",
        [200, 200, 200],
    );
    c.img
}
