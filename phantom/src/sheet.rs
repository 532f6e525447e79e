//! A contact sheet: generated images in a grid with some region boxes and their findings drawn,
//! so a reader can judge the realism at a glance. Text uses the public-domain 8x8 bitmap font of
//! the `font8x8` crate.

use crate::Study;
use font8x8::UnicodeFonts;
use image::{Rgb, RgbImage};

/// The regions drawn, with their colours.
const DRAWN: &[(&str, [u8; 3])] = &[
    ("right lung", [80, 160, 255]),
    ("left lung", [80, 160, 255]),
    ("cardiac silhouette", [255, 80, 80]),
    ("trachea", [80, 255, 120]),
    ("right clavicle", [255, 220, 60]),
    ("left clavicle", [255, 220, 60]),
    ("right costophrenic angle", [60, 240, 240]),
    ("left costophrenic angle", [60, 240, 240]),
];

fn draw_text(img: &mut RgbImage, x: u32, y: u32, text: &str, colour: [u8; 3]) {
    for (k, ch) in text.chars().enumerate() {
        let Some(glyph) = font8x8::BASIC_FONTS.get(ch) else {
            continue;
        };
        for (row, bits) in glyph.iter().enumerate() {
            for col in 0..8 {
                if bits & (1 << col) != 0 {
                    let (px, py) = (x + k as u32 * 8 + col, y + row as u32);
                    if px < img.width() && py < img.height() {
                        img.put_pixel(px, py, Rgb(colour));
                    }
                }
            }
        }
    }
}

fn draw_rect(img: &mut RgbImage, b: [f64; 4], colour: [u8; 3], ox: u32, oy: u32, scale: f64) {
    let (x0, y0) = ((b[0] * scale) as u32 + ox, (b[1] * scale) as u32 + oy);
    let (x1, y1) = ((b[2] * scale) as u32 + ox, (b[3] * scale) as u32 + oy);
    for x in x0..=x1 {
        for y in [y0, y1] {
            if x < img.width() && y < img.height() {
                img.put_pixel(x, y, Rgb(colour));
            }
        }
    }
    for y in y0..=y1 {
        for x in [x0, x1] {
            if x < img.width() && y < img.height() {
                img.put_pixel(x, y, Rgb(colour));
            }
        }
    }
}

/// Short words for the findings of a study, wrapped into lines of `width` characters.
fn caption(study: &Study, width: usize) -> Vec<String> {
    let f = &study.findings;
    let mut words: Vec<String> = vec![study.anatomy.view.code().to_string()];
    let side = |s: crate::Side| if s == crate::Side::Right { "R" } else { "L" };
    for s in crate::Side::BOTH {
        if f.effusion[s.index()].is_some() {
            words.push(format!("effusion {}", side(s)));
        }
    }
    for c in &f.consolidation {
        words.push(format!(
            "consol {}{}",
            side(c.side),
            &c.zone.name()[..1].to_uppercase()
        ));
    }
    for c in &f.atelectasis {
        words.push(format!("atelect {}", side(c.side)));
    }
    if let Some((s, _)) = f.pneumothorax {
        words.push(format!("PTX {}", side(s)));
    }
    if f.cardiomegaly {
        words.push(format!("CTR {:.2}", study.anatomy.cardiothoracic_ratio()));
    }
    if f.edema.is_some() {
        words.push("edema".into());
    }
    if !f.nodules.is_empty() {
        words.push("nodule".into());
    }
    if !f.masses.is_empty() {
        words.push("mass".into());
    }
    if f.endotracheal_tube {
        words.push("ETT".into());
    }
    if f.enteric_tube {
        words.push("NGT".into());
    }
    if f.central_line.is_some() {
        words.push("CVC".into());
    }
    if f.chest_tube.is_some() {
        words.push("chest tube".into());
    }
    if f.pacemaker.is_some() {
        words.push("pacer".into());
    }
    if f.rib_fracture.is_some() {
        words.push("rib fx".into());
    }
    if let Some(s) = f.elevated_hemidiaphragm {
        words.push(format!("high diaphragm {}", side(s)));
    }
    if f.is_normal() {
        words.push("normal".into());
    }
    let mut lines = vec![String::new()];
    for w in words {
        let cur = lines.last_mut().expect("one line");
        if !cur.is_empty() && cur.len() + 2 + w.len() > width {
            lines.push(w);
        } else {
            if !cur.is_empty() {
                cur.push_str(", ");
            }
            cur.push_str(&w);
        }
    }
    lines
}

/// Lays `studies` out `columns` per row, each image scaled to `tile` pixels on its longer side.
pub fn contact_sheet(studies: &[Study], columns: usize, tile: u32) -> RgbImage {
    let columns = columns.max(1);
    let rows = studies.len().div_ceil(columns).max(1);
    let text_h = 3 * 10 + 4;
    let (cw, ch) = (tile + 8, tile + 8 + text_h);
    let mut img = RgbImage::from_pixel(cw * columns as u32, ch * rows as u32, Rgb([24, 24, 24]));
    for (k, st) in studies.iter().enumerate() {
        let (ox, oy) = ((k % columns) as u32 * cw + 4, (k / columns) as u32 * ch + 4);
        let r = &st.rendered;
        let scale = tile as f64 / r.width.max(r.height) as f64;
        let max = ((1u32 << r.bits_stored) - 1) as f64;
        let (tw, th) = (
            (r.width as f64 * scale) as u32,
            (r.height as f64 * scale) as u32,
        );
        for ty in 0..th {
            for tx in 0..tw {
                // Box average of the source pixels under the tile pixel.
                let (x0, x1) = (
                    (tx as f64 / scale) as usize,
                    (((tx + 1) as f64 / scale) as usize)
                        .min(r.width)
                        .max((tx as f64 / scale) as usize + 1),
                );
                let (y0, y1) = (
                    (ty as f64 / scale) as usize,
                    (((ty + 1) as f64 / scale) as usize)
                        .min(r.height)
                        .max((ty as f64 / scale) as usize + 1),
                );
                let mut sum = 0.0;
                let mut n = 0.0f64;
                for y in y0..y1.min(r.height) {
                    for x in x0..x1.min(r.width) {
                        sum += r.pixels[y * r.width + x] as f64;
                        n += 1.0;
                    }
                }
                let v = (sum / n.max(1.0) / max * 255.0) as u8;
                img.put_pixel(ox + tx, oy + ty, Rgb([v, v, v]));
            }
        }
        for (name, colour) in DRAWN {
            if let Some(b) = st.regions.iter().find(|b| b.name == *name) {
                draw_rect(&mut img, b.bbox, *colour, ox, oy, scale);
            }
        }
        for (i, line) in caption(st, (tile / 8) as usize).iter().take(3).enumerate() {
            draw_text(
                &mut img,
                ox,
                oy + tile + 4 + i as u32 * 10,
                line,
                [230, 230, 230],
            );
        }
    }
    img
}
