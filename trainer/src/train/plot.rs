//! The loss curve of a run as a PNG: every loss term of `log.jsonl`, each divided by its first
//! value, against the step, on a log scale. Drawn with the `image` crate; text in the
//! public-domain 8x8 font of `font8x8`.

use font8x8::UnicodeFonts;
use image::{Rgb, RgbImage};
use std::collections::BTreeMap;
use std::path::Path;

const COLOURS: [[u8; 3]; 8] = [
    [31, 119, 180],
    [255, 127, 14],
    [44, 160, 44],
    [214, 39, 40],
    [148, 103, 189],
    [140, 86, 75],
    [227, 119, 194],
    [20, 20, 20],
];

fn text(img: &mut RgbImage, x: u32, y: u32, s: &str, c: [u8; 3]) {
    for (k, ch) in s.chars().enumerate() {
        if let Some(g) = font8x8::BASIC_FONTS.get(ch) {
            for (row, bits) in g.iter().enumerate() {
                for col in 0..8 {
                    if bits & (1 << col) != 0 {
                        let (px, py) = (x + k as u32 * 8 + col, y + row as u32);
                        if px < img.width() && py < img.height() {
                            img.put_pixel(px, py, Rgb(c));
                        }
                    }
                }
            }
        }
    }
}

fn line(img: &mut RgbImage, a: (f64, f64), b: (f64, f64), c: [u8; 3]) {
    let n = ((b.0 - a.0).abs().max((b.1 - a.1).abs()) as usize).max(1);
    for i in 0..=n {
        let t = i as f64 / n as f64;
        let (x, y) = (a.0 + (b.0 - a.0) * t, a.1 + (b.1 - a.1) * t);
        if x >= 0.0 && y >= 0.0 && (x as u32) < img.width() && (y as u32) < img.height() {
            img.put_pixel(x as u32, y as u32, Rgb(c));
        }
    }
}

/// Reads the log (the last line per step wins, as a resumed run appends) and draws the curves.
pub fn loss_curve(log: &Path, png: &Path) -> Result<(), String> {
    let text_in = std::fs::read_to_string(log).map_err(|e| format!("{}: {e}", log.display()))?;
    let mut rows: BTreeMap<u64, serde_json::Value> = BTreeMap::new();
    for l in text_in.lines().filter(|l| !l.trim().is_empty()) {
        let v: serde_json::Value =
            serde_json::from_str(l).map_err(|e| format!("{}: {e}", log.display()))?;
        if let Some(s) = v["step"].as_u64() {
            rows.insert(s, v);
        }
    }
    let mut names: Vec<&str> = crate::model::losses::LOSS_NAMES.to_vec();
    names.push("total");
    let (w, h) = (900u32, 520u32);
    let (left, right, top, bottom) = (60.0, 160.0, 30.0, 50.0);
    let mut img = RgbImage::from_pixel(w, h, Rgb([255, 255, 255]));
    let steps: Vec<u64> = rows.keys().copied().collect();
    let (s0, s1) = (
        *steps.first().unwrap_or(&0) as f64,
        (*steps.last().unwrap_or(&1) as f64).max(1.0),
    );
    // y: log10 of value / first value, from just below the smallest ratio (at most 1e-6) to 10^0.5.
    let mut smallest: f64 = 1.0;
    for name in &names {
        let series: Vec<f64> = rows.values().filter_map(|v| v[*name].as_f64()).collect();
        if let Some(&first) = series.iter().find(|x| **x > 0.0) {
            for x in &series {
                if *x > 0.0 {
                    smallest = smallest.min(x / first);
                }
            }
        }
    }
    let ylo = (smallest.log10().floor()).clamp(-6.0, -1.0);
    let yhi = 0.5;
    let px = |s: f64| left + (s - s0) / (s1 - s0).max(1.0) * (w as f64 - left - right);
    let py = |r: f64| {
        let v = r.max(1e-12).log10().clamp(ylo, yhi);
        top + (yhi - v) / (yhi - ylo) * (h as f64 - top - bottom)
    };
    for d in (ylo as i32..=0).map(f64::from) {
        let y = py(10f64.powf(d));
        line(&mut img, (left, y), (w as f64 - right, y), [225, 225, 225]);
        text(&mut img, 4, y as u32 - 4, &format!("1e{d}"), [90, 90, 90]);
    }
    line(&mut img, (left, top), (left, h as f64 - bottom), [0, 0, 0]);
    line(
        &mut img,
        (left, h as f64 - bottom),
        (w as f64 - right, h as f64 - bottom),
        [0, 0, 0],
    );
    text(
        &mut img,
        left as u32,
        h - 30,
        &format!("step {s0} .. {s1}"),
        [0, 0, 0],
    );
    text(
        &mut img,
        left as u32,
        8,
        "loss / first loss (log scale)",
        [0, 0, 0],
    );
    for (k, name) in names.iter().enumerate() {
        let c = COLOURS[k % COLOURS.len()];
        let series: Vec<(f64, f64)> = rows
            .iter()
            .filter_map(|(s, v)| v[*name].as_f64().map(|x| (*s as f64, x)))
            .collect();
        let Some(&(_, first)) = series.iter().find(|(_, x)| *x > 0.0) else {
            continue;
        };
        for pair in series.windows(2) {
            line(
                &mut img,
                (px(pair[0].0), py(pair[0].1 / first)),
                (px(pair[1].0), py(pair[1].1 / first)),
                c,
            );
        }
        text(
            &mut img,
            w - right as u32 + 10,
            top as u32 + k as u32 * 14,
            name,
            c,
        );
    }
    let tmp = png.with_extension("partial.png");
    img.save(&tmp)
        .map_err(|e| format!("{}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, png).map_err(|e| format!("{}: {e}", png.display()))
}
