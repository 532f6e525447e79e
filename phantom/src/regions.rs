//! The 29 Chest ImaGenome region boxes, taken from the rendered geometry (mm on the detector),
//! converted to pixels and clipped to the image.

use crate::anatomy::{Anatomy, Side};
use crate::raster::{polygon_bbox, Pt};
use serde::{Deserialize, Serialize};

/// A named box in image pixels: x1, y1, x2, y2 (x2, y2 exclusive edges, in pixel units).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegionBox {
    pub name: String,
    pub bbox: [f64; 4],
}

fn around(p: Pt, hw: f64, hh: f64) -> [f64; 4] {
    [p.0 - hw, p.1 - hh, p.0 + hw, p.1 + hh]
}

fn points_bbox(pts: &[Pt], pad: f64) -> [f64; 4] {
    let b = polygon_bbox(pts);
    [b[0] - pad, b[1] - pad, b[2] + pad, b[3] + pad]
}

/// The 29 boxes in mm, in the order of `asg_report::REGIONS`.
pub fn region_boxes_mm(a: &Anatomy) -> Vec<(String, [f64; 4])> {
    let mut out: Vec<(String, [f64; 4])> = Vec::new();
    for side in Side::BOTH {
        let l = &a.lungs[side.index()];
        let lung = polygon_bbox(&l.outline);
        let z = a.zone_bounds(side);
        let n = side.name();
        let zone = |y0: f64, y1: f64| [lung[0], y0, lung[2], y1];
        out.push((format!("{n} lung"), lung));
        out.push((format!("{n} upper lung zone"), zone(z[0], z[1])));
        out.push((format!("{n} mid lung zone"), zone(z[1], z[2])));
        out.push((format!("{n} lower lung zone"), zone(z[2], z[3])));
        out.push((format!("{n} hilar structures"), around(l.hilum, 22.0, 32.0)));
        // Apical zone: the lung above the clavicle's medial half.
        let clav = &a.clavicles[side.index()];
        let clav_y = clav.iter().map(|p| p.1).fold(f64::MIN, f64::max);
        out.push((
            format!("{n} apical zone"),
            [lung[0], lung[1], lung[2], clav_y.max(lung[1] + 20.0)],
        ));
        let cp = l.cp_angle;
        let s = side.sign();
        let cp_box = if s < 0.0 {
            [cp.0 - 8.0, cp.1 - 40.0, cp.0 + 32.0, cp.1 + 4.0]
        } else {
            [cp.0 - 32.0, cp.1 - 40.0, cp.0 + 8.0, cp.1 + 4.0]
        };
        out.push((format!("{n} costophrenic angle"), cp_box));
        let (mx, lx) = (l.medial_base.0, cp.0);
        out.push((
            format!("{n} hemidiaphragm"),
            [mx.min(lx), l.dome.1 - 6.0, mx.max(lx), cp.1 + 6.0],
        ));
    }
    let carina = a.carina;
    out.push((
        "trachea".into(),
        [
            carina.0 - a.trachea_radius - 6.0,
            a.lungs[0].apex.1.min(a.lungs[1].apex.1) - 30.0,
            carina.0 + a.trachea_radius + 6.0,
            carina.1,
        ],
    ));
    let v_top = a.lungs[0].apex.1.min(a.lungs[1].apex.1) - 20.0;
    let v_bottom = a.lungs[0].cp_angle.1.max(a.lungs[1].cp_angle.1);
    out.push((
        "spine".into(),
        [
            a.spine_x - a.vertebra_half_width,
            v_top,
            a.spine_x + a.vertebra_half_width,
            v_bottom,
        ],
    ));
    for side in Side::BOTH {
        out.push((
            format!("{} clavicle", side.name()),
            points_bbox(&a.clavicles[side.index()], 7.0),
        ));
    }
    out.push(("aortic arch".into(), a.aortic_knob.bbox()));
    let med_left = a.lungs[0].medial_base.0.max(a.svc.0 .0 - 6.0);
    let med_right = a.lungs[1].medial_base.0;
    let heart = a.heart.bbox();
    let top = a.lungs[0].apex.1.min(a.lungs[1].apex.1);
    let mediastinum = [
        med_left.min(heart[0]),
        top,
        med_right.max(heart[2]),
        heart[3],
    ];
    out.push(("mediastinum".into(), mediastinum));
    out.push((
        "upper mediastinum".into(),
        [a.svc.0 .0 - 6.0, top, a.aortic_knob.bbox()[2], carina.1],
    ));
    let (svc_top, cavo) = a.svc;
    out.push((
        "svc".into(),
        [svc_top.0 - 8.0, svc_top.1, svc_top.0 + 10.0, cavo.1],
    ));
    out.push(("cardiac silhouette".into(), heart));
    out.push(("cavoatrial junction".into(), around(cavo, 10.0, 10.0)));
    let ra = [
        heart[0],
        cavo.1,
        heart[0] + (heart[2] - heart[0]) * 0.4,
        heart[3],
    ];
    out.push(("right atrium".into(), ra));
    out.push(("carina".into(), around(carina, 12.0, 10.0)));
    let dome = a.lungs[0].dome.1.min(a.lungs[1].dome.1);
    out.push((
        "abdomen".into(),
        [
            a.mid - a.body_half_width * 0.95,
            dome,
            a.mid + a.body_half_width * 0.95,
            a.height_mm,
        ],
    ));
    // Keep the order of the report crate's list.
    let names = asg_report::REGIONS;
    let mut ordered = Vec::with_capacity(names.len());
    for n in names {
        if let Some(pos) = out.iter().position(|(name, _)| name == n.name) {
            ordered.push(out.swap_remove(pos));
        }
    }
    ordered
}

/// The 29 boxes in image pixels, clipped to the image.
pub fn region_boxes(a: &Anatomy, width: usize, height: usize) -> Vec<RegionBox> {
    let s = a.width_mm / width as f64;
    region_boxes_mm(a)
        .into_iter()
        .map(|(name, b)| {
            let clip = |v: f64, n: usize| (v / s).clamp(0.0, n as f64);
            let mut bbox = [
                clip(b[0], width),
                clip(b[1], height),
                clip(b[2], width),
                clip(b[3], height),
            ];
            // Never an empty box: at least one pixel.
            if bbox[2] - bbox[0] < 1.0 {
                bbox[2] = (bbox[0] + 1.0).min(width as f64);
                bbox[0] = bbox[2] - 1.0;
            }
            if bbox[3] - bbox[1] < 1.0 {
                bbox[3] = (bbox[1] + 1.0).min(height as f64);
                bbox[1] = bbox[3] - 1.0;
            }
            RegionBox {
                name,
                bbox: bbox.map(|v| (v * 10.0).round() / 10.0),
            }
        })
        .collect()
}
