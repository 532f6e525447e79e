//! The patient: body habitus, positioning and every anatomical structure, in mm on the detector
//! (x to the image's right, y down). The patient's right appears on the image's left, as on a
//! frontal radiograph viewed in the standard orientation.

use crate::raster::{bezier, closed_spline, Ellipsoid, Pt};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// The patient's side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    Right,
    Left,
}

impl Side {
    pub const BOTH: [Side; 2] = [Side::Right, Side::Left];

    /// -1 for the patient's right (image left), +1 for the left.
    pub fn sign(self) -> f64 {
        match self {
            Side::Right => -1.0,
            Side::Left => 1.0,
        }
    }

    pub fn index(self) -> usize {
        match self {
            Side::Right => 0,
            Side::Left => 1,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Side::Right => "right",
            Side::Left => "left",
        }
    }

    pub fn other(self) -> Side {
        match self {
            Side::Right => Side::Left,
            Side::Left => Side::Right,
        }
    }
}

/// Projection: posteroanterior (standing) or anteroposterior (often supine, portable).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum View {
    #[serde(rename = "PA")]
    Pa,
    #[serde(rename = "AP")]
    Ap,
}

impl View {
    pub fn code(self) -> &'static str {
        match self {
            View::Pa => "PA",
            View::Ap => "AP",
        }
    }
}

/// One lung's outline and landmarks.
#[derive(Debug, Clone)]
pub struct Lung {
    pub side: Side,
    /// Closed outline.
    pub outline: Vec<Pt>,
    pub apex: Pt,
    /// The lowest lateral point (the costophrenic angle).
    pub cp_angle: Pt,
    /// Top of the hemidiaphragm's dome.
    pub dome: Pt,
    /// Medial end of the dome (cardiophrenic angle).
    pub medial_base: Pt,
    pub hilum: Pt,
    /// Antero-posterior depth of the lung at its thickest, mm.
    pub depth: f64,
}

/// A rib: posterior arc from the spine to the lateral wall, anterior arc back towards the sternum.
#[derive(Debug, Clone)]
pub struct Rib {
    pub side: Side,
    /// 1-based rib number.
    pub number: usize,
    pub posterior: Vec<Pt>,
    pub anterior: Vec<Pt>,
    pub radius: f64,
}

/// Everything the renderer draws, and what the region boxes are taken from.
#[derive(Debug, Clone)]
pub struct Anatomy {
    pub view: View,
    pub female: bool,
    pub age: u32,
    /// Field of view, mm.
    pub width_mm: f64,
    pub height_mm: f64,
    /// Body midline x (sternum and mediastinum).
    pub mid: f64,
    /// Spine x (differs from `mid` when the patient is rotated).
    pub spine_x: f64,
    /// Inner half-width of the thorax at its widest, mm.
    pub thorax_half_width: f64,
    /// Half-width of the body (soft tissue) at chest level, and its depth.
    pub body_half_width: f64,
    pub body_depth: f64,
    pub shoulder_y: f64,
    pub lungs: [Lung; 2],
    pub heart: Ellipsoid,
    pub aortic_knob: Ellipsoid,
    pub hila: [Ellipsoid; 2],
    pub trachea: Vec<Pt>,
    pub trachea_radius: f64,
    pub carina: Pt,
    pub bronchi: [Vec<Pt>; 2],
    /// Vertebral bodies, top to bottom: centre and half-height; all share `vertebra_half_width`.
    pub vertebrae: Vec<(Pt, f64)>,
    pub vertebra_half_width: f64,
    pub ribs: Vec<Rib>,
    pub clavicles: [Vec<Pt>; 2],
    pub scapulae: [Ellipsoid; 2],
    pub humeral_heads: [Ellipsoid; 2],
    pub breasts: Option<[Ellipsoid; 2]>,
    pub stomach_bubble: Ellipsoid,
    /// Superior vena cava: top and bottom (the cavoatrial junction).
    pub svc: (Pt, Pt),
    /// Collimation: the exposed rectangle, mm.
    pub collimation: [f64; 4],
}

fn range(rng: &mut ChaCha8Rng, lo: f64, hi: f64) -> f64 {
    rng.random_range(lo..hi)
}

impl Anatomy {
    /// Draws a patient. `elevated` raises one hemidiaphragm; `ctr` is the cardiothoracic ratio.
    pub fn sample(
        rng: &mut ChaCha8Rng,
        view: View,
        width_mm: f64,
        height_mm: f64,
        ctr: f64,
        elevated: Option<Side>,
    ) -> Self {
        let female = rng.random_bool(0.5);
        let age = rng.random_range(20..95);
        let habitus = range(rng, 0.88, 1.12);
        let sex_scale = if female { 0.93 } else { 1.0 };
        let scale = habitus * sex_scale * (width_mm / 430.0).clamp(0.8, 1.2);
        let tw = 140.0 * scale;
        let mid = width_mm / 2.0 + range(rng, -15.0, 15.0);
        // Rotation: the spinous processes move off the midline, the sternum the other way.
        let rotation = range(rng, -8.0, 8.0);
        let spine_x = mid + rotation;
        let apex_y = range(rng, 40.0, 70.0) * (height_mm / 430.0).powi(2);
        let inspiration = if view == View::Ap {
            range(rng, 0.78, 0.95)
        } else {
            range(rng, 0.88, 1.06)
        };
        // The technologist fits the lungs on the detector: the bases stay in the field.
        let h = (250.0 * scale * inspiration).min(height_mm - apex_y - 75.0);
        let mut dome_y = [apex_y + h, apex_y + h + range(rng, 6.0, 20.0)];
        if let Some(side) = elevated {
            dome_y[side.index()] -= range(rng, 28.0, 45.0);
        }
        let md_top = range(rng, 18.0, 26.0);
        let md_base = [range(rng, 26.0, 40.0), range(rng, 30.0, 45.0)];
        let depth = 150.0 * scale * range(rng, 0.9, 1.1);

        let lung = |side: Side, rng: &mut ChaCha8Rng| {
            let s = side.sign();
            let i = side.index();
            let x = |off: f64| mid + s * off;
            let dy = dome_y[i];
            let lat = tw * range(rng, 0.95, 1.02);
            let apex = (x(md_top + range(rng, 14.0, 24.0)), apex_y);
            let cp = (x(lat - 6.0), dy + range(rng, 18.0, 28.0));
            let dome = (
                x(md_base[i] + (lat - md_base[i]) * range(rng, 0.3, 0.45)),
                dy,
            );
            let medial_base = (x(md_base[i]), dy + range(rng, 8.0, 16.0));
            let ctrl = [
                apex,
                (x(lat * 0.72), apex_y + 0.12 * h),
                (x(lat * 0.97), apex_y + 0.45 * h),
                (x(lat), apex_y + 0.75 * h),
                cp,
                (x(lat * 0.72), dy + 5.0),
                dome,
                medial_base,
                (x(md_base[i] - 4.0), apex_y + 0.5 * h),
                (x(md_top), apex_y + 0.2 * h),
                (x(md_top + 6.0), apex_y + 0.06 * h),
            ];
            let mut outline = closed_spline(&ctrl, 10);
            // Keep a sharp costophrenic angle: the spline's overshoot around it is cut off.
            for p in outline.iter_mut() {
                p.1 = p.1.min(cp.1);
            }
            let hilum = (
                x(md_base[i] + if side == Side::Left { 14.0 } else { 10.0 }),
                apex_y + if side == Side::Left { 0.38 } else { 0.42 } * h,
            );
            Lung {
                side,
                outline,
                apex,
                cp_angle: cp,
                dome,
                medial_base,
                hilum,
                depth,
            }
        };
        let lungs = [lung(Side::Right, rng), lung(Side::Left, rng)];

        // Heart: its horizontal width is ctr x the thorax's inner width.
        let heart_width = ctr * 2.0 * tw;
        let angle: f64 = range(rng, 0.45, 0.65);
        let ratio = 0.74;
        let a = (heart_width / 2.0) / (angle.cos().powi(2) + (ratio * angle.sin()).powi(2)).sqrt();
        let b = a * ratio;
        let heart_probe = Ellipsoid {
            center: (0.0, 0.0),
            a,
            b,
            c: 1.0,
            angle,
        };
        let (hx, hy) = heart_probe.half_extent();
        let right_border = mid - heart_width * range(rng, 0.28, 0.36);
        let base_y = (dome_y[0] + dome_y[1]) / 2.0 + 8.0;
        let heart = Ellipsoid {
            center: (right_border + hx, base_y - hy * 0.9),
            a,
            b,
            c: range(rng, 68.0, 80.0),
            angle,
        };
        let knob = Ellipsoid {
            center: (mid + range(rng, 20.0, 30.0), apex_y + 0.2 * h),
            a: range(rng, 13.0, 18.0),
            b: range(rng, 12.0, 16.0),
            c: 18.0,
            angle: 0.0,
        };
        let hila = [0, 1].map(|i| Ellipsoid {
            center: lungs[i].hilum,
            a: 10.0,
            b: 26.0,
            c: 16.0,
            angle: if i == 0 { 0.3 } else { -0.3 },
        });

        let carina = (mid + rotation * 0.3, apex_y + 0.3 * h);
        let trachea = vec![(mid + rotation * 0.5, 0.0), carina];
        let bronchi = [0, 1].map(|i| {
            let hl = lungs[i].hilum;
            bezier(carina, ((carina.0 + hl.0) / 2.0, carina.1 + 12.0), hl, 6)
        });

        // Vertebrae from above the field down past the diaphragm.
        let vh = 12.0 * scale;
        let gap = 4.0 * scale;
        let mut vertebrae = Vec::new();
        let mut y = apex_y - 3.5 * (2.0 * vh + gap);
        while y < height_mm + 30.0 {
            vertebrae.push(((spine_x, y), vh));
            y += 2.0 * vh + gap;
        }
        // T1 is the vertebra whose centre lies just above the lung apex level.
        let t1 = vertebrae
            .iter()
            .position(|(c, _)| c.1 > apex_y - 25.0)
            .unwrap_or(0);

        let mut ribs = Vec::new();
        for side in Side::BOTH {
            let s = side.sign();
            for k in 0..11 {
                let Some(&((_, vy), _)) = vertebrae.get(t1 + k) else {
                    break;
                };
                let kf = k as f64;
                let start = (spine_x + s * 20.0, vy);
                let lateral = (mid + s * (tw + 6.0), vy + 28.0 + kf * 4.0);
                let posterior = bezier(
                    start,
                    (mid + s * tw * 0.62, vy - 16.0 + kf * 1.5),
                    lateral,
                    12,
                );
                let end = (mid + s * range(rng, 28.0, 40.0), vy + 70.0 + kf * 9.0);
                let anterior = bezier(
                    lateral,
                    (mid + s * tw * 0.78, vy + 48.0 + kf * 6.0),
                    end,
                    10,
                );
                ribs.push(Rib {
                    side,
                    number: k + 1,
                    posterior,
                    anterior,
                    radius: 5.0 * scale + kf * 0.15,
                });
            }
        }

        let clavicles = [Side::Right, Side::Left].map(|side| {
            let s = side.sign();
            let tilt = range(rng, -8.0, 8.0);
            bezier(
                (mid + s * 16.0, apex_y + 18.0),
                (mid + s * 70.0, apex_y - 6.0 + tilt),
                (mid + s * (tw + 28.0), apex_y - 14.0 + tilt),
                14,
            )
        });
        let scapulae = Side::BOTH.map(|side| Ellipsoid {
            center: (mid + side.sign() * (tw + 8.0), apex_y + 70.0),
            a: 24.0,
            b: 72.0,
            c: 7.0,
            angle: side.sign() * -0.25,
        });
        let humeral_heads = Side::BOTH.map(|side| Ellipsoid {
            center: (mid + side.sign() * (tw + 52.0), apex_y - 4.0),
            a: 26.0,
            b: 26.0,
            c: 26.0,
            angle: 0.0,
        });
        let breasts = female.then(|| {
            let size = range(rng, 0.7, 1.2);
            Side::BOTH.map(|side| Ellipsoid {
                center: (
                    mid + side.sign() * tw * 0.6,
                    (dome_y[0] + dome_y[1]) / 2.0 - 15.0,
                ),
                a: 70.0 * size,
                b: 52.0 * size,
                c: 38.0 * size,
                angle: side.sign() * 0.15,
            })
        });
        let stomach_bubble = Ellipsoid {
            center: (mid + range(rng, 45.0, 75.0), dome_y[1] + 28.0),
            a: range(rng, 20.0, 40.0),
            b: range(rng, 10.0, 18.0),
            c: 30.0,
            angle: 0.0,
        };
        let svc_top = (mid - md_top - 4.0, apex_y + 0.12 * h);
        let cavoatrial = (right_border + 6.0, heart.center.1 - hy * 0.55);
        let collimation = {
            let m = |rng: &mut ChaCha8Rng| {
                if rng.random_bool(0.6) {
                    range(rng, 5.0, 25.0)
                } else {
                    0.0
                }
            };
            [m(rng), m(rng), width_mm - m(rng), height_mm - m(rng)]
        };
        Anatomy {
            view,
            female,
            age,
            width_mm,
            height_mm,
            mid,
            spine_x,
            thorax_half_width: tw,
            body_half_width: tw + range(rng, 14.0, 40.0) * habitus,
            body_depth: range(rng, 190.0, 270.0) * habitus,
            shoulder_y: apex_y - 20.0,
            lungs,
            heart,
            aortic_knob: knob,
            hila,
            trachea,
            trachea_radius: range(rng, 7.0, 9.5),
            carina,
            bronchi,
            vertebrae,
            vertebra_half_width: 21.0 * scale,
            ribs,
            clavicles,
            scapulae,
            humeral_heads,
            breasts,
            stomach_bubble,
            svc: (svc_top, cavoatrial),
            collimation,
        }
    }

    /// The cardiothoracic ratio as drawn: the heart's widest horizontal extent over the thorax's
    /// inner width (measured between the lungs' lateral borders).
    pub fn cardiothoracic_ratio(&self) -> f64 {
        let (hx, _) = self.heart.half_extent();
        let lat = |l: &Lung| {
            l.outline
                .iter()
                .map(|p| (p.0 - self.mid).abs())
                .fold(0.0, f64::max)
        };
        2.0 * hx / (lat(&self.lungs[0]) + lat(&self.lungs[1]))
    }

    /// The soft-tissue half-width of the body at height y (neck above the shoulders).
    pub fn body_half_width_at(&self, y: f64) -> f64 {
        let neck = 55.0;
        if y < self.shoulder_y - 30.0 {
            neck
        } else if y < self.shoulder_y + 20.0 {
            let t = (y - (self.shoulder_y - 30.0)) / 50.0;
            neck + (self.body_half_width + 30.0 - neck) * t.sqrt()
        } else {
            self.body_half_width
                + 30.0 * (1.0 - ((y - self.shoulder_y - 20.0) / 120.0).clamp(0.0, 1.0))
        }
    }

    /// Lung zone boundaries (upper/mid/lower thirds of the lung's height), y in mm.
    pub fn zone_bounds(&self, side: Side) -> [f64; 4] {
        let l = &self.lungs[side.index()];
        let top = l.apex.1;
        let bottom = l.cp_angle.1;
        let h = bottom - top;
        [top, top + h / 3.0, top + 2.0 * h / 3.0, bottom]
    }
}
