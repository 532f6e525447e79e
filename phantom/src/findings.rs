//! What is wrong with the patient (and what hardware they carry): sampled with plausible
//! prevalences and co-occurrences, placed in the anatomy by side, zone and extent.

use crate::anatomy::{Anatomy, Side, View};
use crate::raster::Pt;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// A third of a lung's height.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Zone {
    Upper,
    Mid,
    Lower,
}

impl Zone {
    pub const ALL: [Zone; 3] = [Zone::Upper, Zone::Mid, Zone::Lower];

    pub fn name(self) -> &'static str {
        match self {
            Zone::Upper => "upper",
            Zone::Mid => "mid",
            Zone::Lower => "lower",
        }
    }

    /// The Chest ImaGenome region of this zone on `side`.
    pub fn region(self, side: Side) -> String {
        format!("{} {} lung zone", side.name(), self.name())
    }
}

/// A rounded lesion or patch: side, zone, centre (mm) and radius (mm).
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Blob {
    pub side: Side,
    pub zone: Zone,
    pub center: Pt,
    pub radius: f64,
}

/// Three grades, used for the words of the report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Grade {
    Small,
    Moderate,
    Large,
}

impl Grade {
    fn of(x: f64, lo: f64, hi: f64) -> Grade {
        if x < lo {
            Grade::Small
        } else if x < hi {
            Grade::Moderate
        } else {
            Grade::Large
        }
    }
}

/// All findings of one image. Empty means a normal study.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Findings {
    /// Pleural effusion per side (right, left): height of the fluid as a fraction of the lung's.
    pub effusion: [Option<f64>; 2],
    pub consolidation: Vec<Blob>,
    /// Plate-like atelectasis: a band in a lower or mid zone.
    pub atelectasis: Vec<Blob>,
    /// Side and how far the lung has fallen away from the chest wall (fraction of its size).
    pub pneumothorax: Option<(Side, f64)>,
    /// Cardiothoracic ratio > 0.5.
    pub cardiomegaly: bool,
    /// Pulmonary edema severity in 0..1.
    pub edema: Option<f64>,
    pub nodules: Vec<Blob>,
    pub masses: Vec<Blob>,
    pub endotracheal_tube: bool,
    pub enteric_tube: bool,
    pub central_line: Option<Side>,
    pub chest_tube: Option<Side>,
    pub pacemaker: Option<Side>,
    /// Side, rib number, position along the posterior arc (0..1).
    pub rib_fracture: Option<(Side, usize, f64)>,
    pub elevated_hemidiaphragm: Option<Side>,
}

impl Findings {
    /// True when nothing is there.
    pub fn is_normal(&self) -> bool {
        self.effusion == [None, None]
            && self.consolidation.is_empty()
            && self.atelectasis.is_empty()
            && self.pneumothorax.is_none()
            && !self.cardiomegaly
            && self.edema.is_none()
            && self.nodules.is_empty()
            && self.masses.is_empty()
            && !self.has_devices()
            && self.rib_fracture.is_none()
            && self.elevated_hemidiaphragm.is_none()
    }

    pub fn has_devices(&self) -> bool {
        self.endotracheal_tube
            || self.enteric_tube
            || self.central_line.is_some()
            || self.chest_tube.is_some()
            || self.pacemaker.is_some()
    }

    pub fn effusion_grade(f: f64) -> Grade {
        Grade::of(f, 0.14, 0.26)
    }

    pub fn pneumothorax_grade(f: f64) -> Grade {
        Grade::of(f, 0.14, 0.24)
    }
}

/// The study-level choices made before the anatomy is drawn.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    pub view: View,
    pub normal: bool,
    pub cardiomegaly: bool,
    pub ctr: f64,
    pub elevated: Option<Side>,
}

/// Draws the view, normality, heart size and diaphragm (which shape the anatomy).
pub fn plan(rng: &mut ChaCha8Rng, normal_share: f64) -> Plan {
    let view = if rng.random_bool(0.3) {
        View::Ap
    } else {
        View::Pa
    };
    let normal = rng.random_bool(normal_share.clamp(0.0, 1.0));
    let cardiomegaly = !normal && rng.random_bool(0.28);
    let ctr = if cardiomegaly {
        rng.random_range(0.53..0.66)
    } else {
        rng.random_range(0.38..0.47)
    };
    let elevated = (!normal && rng.random_bool(0.05)).then(|| pick_side(rng));
    Plan {
        view,
        normal,
        cardiomegaly,
        ctr,
        elevated,
    }
}

fn pick_side(rng: &mut ChaCha8Rng) -> Side {
    if rng.random_bool(0.5) {
        Side::Right
    } else {
        Side::Left
    }
}

/// The horizontal extent of a lung at height y: (min x, max x), if the lung reaches that height.
pub fn lung_span(anatomy: &Anatomy, side: Side, y: f64) -> Option<(f64, f64)> {
    let mut xs = Vec::new();
    crate::raster::scanline_crossings(&anatomy.lungs[side.index()].outline, y, &mut xs);
    let lo = xs.iter().cloned().fold(f64::MAX, f64::min);
    let hi = xs.iter().cloned().fold(f64::MIN, f64::max);
    (xs.len() >= 2 && hi > lo).then_some((lo, hi))
}

/// A point well inside `zone` of the lung on `side`.
fn place(rng: &mut ChaCha8Rng, a: &Anatomy, side: Side, zone: Zone, radius: f64) -> Blob {
    let z = a.zone_bounds(side);
    let i = Zone::ALL.iter().position(|q| *q == zone).unwrap_or(0);
    let (mut y0, mut y1) = (z[i], z[i + 1]);
    if zone == Zone::Upper {
        y0 += (y1 - y0) * 0.3;
    }
    if zone == Zone::Lower {
        // Above the dome, where the lung is wide.
        y1 = y1.min(a.lungs[side.index()].dome.1 - 5.0).max(y0 + 1.0);
    }
    for _ in 0..20 {
        let y = rng.random_range(y0..y1);
        if let Some((lo, hi)) = lung_span(a, side, y) {
            let m = (hi - lo) * 0.2 + radius * 0.5;
            if hi - lo > 2.0 * m {
                let x = rng.random_range(lo + m..hi - m);
                return Blob {
                    side,
                    zone,
                    center: (x, y),
                    radius,
                };
            }
        }
    }
    let l = &a.lungs[side.index()];
    Blob {
        side,
        zone,
        center: ((l.hilum.0 + l.cp_angle.0) / 2.0, (y0 + y1) / 2.0),
        radius,
    }
}

fn zone(rng: &mut ChaCha8Rng, weights: [f64; 3]) -> Zone {
    let total: f64 = weights.iter().sum();
    let mut r = rng.random_range(0.0..total);
    for (z, w) in Zone::ALL.iter().zip(weights) {
        if r < w {
            return *z;
        }
        r -= w;
    }
    Zone::Lower
}

/// Draws the findings of an abnormal study (nothing for a normal one).
pub fn sample(rng: &mut ChaCha8Rng, plan: &Plan, a: &Anatomy) -> Findings {
    let mut f = Findings {
        cardiomegaly: plan.cardiomegaly,
        elevated_hemidiaphragm: plan.elevated,
        ..Findings::default()
    };
    if plan.normal {
        return f;
    }
    let ap = plan.view == View::Ap;
    // Devices: an intensive-care patient on a portable AP film carries most of them.
    f.endotracheal_tube = ap && rng.random_bool(0.4);
    f.enteric_tube = rng.random_bool(if f.endotracheal_tube {
        0.8
    } else if ap {
        0.15
    } else {
        0.02
    });
    if rng.random_bool(if ap { 0.45 } else { 0.08 }) {
        f.central_line = Some(if rng.random_bool(0.7) {
            Side::Right
        } else {
            Side::Left
        });
    }
    if rng.random_bool(0.09) {
        f.pacemaker = Some(if rng.random_bool(0.8) {
            Side::Left
        } else {
            Side::Right
        });
    }
    f.edema = rng
        .random_bool(if f.cardiomegaly { 0.4 } else { 0.1 })
        .then(|| rng.random_range(0.3..1.0));
    for side in Side::BOTH {
        let p = if f.edema.is_some() { 0.55 } else { 0.15 };
        if rng.random_bool(p) {
            f.effusion[side.index()] = Some(rng.random_range(0.07..0.34));
        }
    }
    if rng.random_bool(0.2) {
        let side = pick_side(rng);
        let z = zone(rng, [0.2, 0.3, 0.5]);
        let r = rng.random_range(22.0..42.0);
        f.consolidation.push(place(rng, a, side, z, r));
        if rng.random_bool(0.15) {
            let z = zone(rng, [0.2, 0.3, 0.5]);
            f.consolidation
                .push(place(rng, a, side.other(), z, r * 0.8));
        }
    }
    let effusion_sides: Vec<Side> = Side::BOTH
        .into_iter()
        .filter(|s| f.effusion[s.index()].is_some())
        .collect();
    if rng.random_bool(0.15) || (!effusion_sides.is_empty() && rng.random_bool(0.35)) {
        let side = effusion_sides
            .first()
            .copied()
            .unwrap_or_else(|| pick_side(rng));
        let z = zone(rng, [0.0, 0.25, 0.75]);
        let r = rng.random_range(25.0..45.0);
        f.atelectasis.push(place(rng, a, side, z, r));
    }
    if rng.random_bool(if ap { 0.08 } else { 0.04 }) {
        f.pneumothorax = Some((pick_side(rng), rng.random_range(0.07..0.32)));
    }
    if f.pneumothorax.is_some() && rng.random_bool(0.5) {
        f.chest_tube = f.pneumothorax.map(|p| p.0);
    } else if rng.random_bool(0.03) {
        f.chest_tube = Some(pick_side(rng));
    }
    if rng.random_bool(0.08) {
        let n = if rng.random_bool(0.2) { 2 } else { 1 };
        for _ in 0..n {
            let side = pick_side(rng);
            let z = zone(rng, [0.4, 0.35, 0.25]);
            let r = rng.random_range(4.0..12.0);
            f.nodules.push(place(rng, a, side, z, r));
        }
    }
    if rng.random_bool(0.04) {
        let side = pick_side(rng);
        let z = zone(rng, [0.45, 0.35, 0.2]);
        let r = rng.random_range(18.0..34.0);
        f.masses.push(place(rng, a, side, z, r));
    }
    if rng.random_bool(0.04) {
        f.rib_fracture = Some((
            pick_side(rng),
            rng.random_range(4..9),
            rng.random_range(0.45..0.85),
        ));
    }
    f
}
