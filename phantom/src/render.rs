//! X-ray projection: the attenuation of every structure summed along the beam (line integrals of
//! ellipsoids, tubes and lung volumes), then the detector: transmission exp(-sum), scatter, quantum
//! noise, log, edge enhancement, and the mapping to stored values.

use crate::anatomy::{Anatomy, Side, View};
use crate::findings::{lung_span, Findings};
use crate::raster::{bezier, blur, polygon_depth_field, Ellipsoid, Field, Pt, Tube};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

/// Linear attenuation coefficients, per mm, at a typical chest beam (~60 keV effective), as
/// differences from the soft tissue that a structure replaces.
const MU_SOFT: f64 = 0.020;
/// Lung air replacing soft tissue (parenchyma keeps about a quarter of tissue density).
const MU_LUNG_AIR: f64 = -0.015;
const MU_PARENCHYMA: f64 = 0.005;
const MU_AIR: f64 = -MU_SOFT;
const MU_BONE: f64 = 0.03;
const MU_METAL: f64 = 0.45;
const MU_CONTRAST: f64 = 0.12;

/// The rendered image: stored values and what the detector settings were.
#[derive(Debug, Clone)]
pub struct Rendered {
    pub width: usize,
    pub height: usize,
    /// mm per pixel.
    pub spacing: f64,
    pub pixels: Vec<u16>,
    pub bits_stored: u16,
}

/// How the detector turns transmission into stored values.
#[derive(Debug, Clone, Copy)]
pub struct Detector {
    pub bits_stored: u16,
    /// Photons per pixel at full transmission (sets the noise).
    pub photons: f64,
    /// Scatter-to-primary ratio.
    pub scatter: f64,
    /// Edge enhancement strength.
    pub sharpen: f64,
    /// Contrast curve exponent applied to the log image.
    pub gamma: f64,
}

impl Detector {
    pub fn sample(rng: &mut ChaCha8Rng, bits_stored: u16, view: View) -> Self {
        Self {
            bits_stored,
            photons: rng.random_range(3_000.0..30_000.0),
            scatter: if view == View::Ap {
                rng.random_range(0.3..0.7)
            } else {
                rng.random_range(0.15..0.4)
            },
            sharpen: rng.random_range(0.3..1.0),
            gamma: rng.random_range(0.85..1.2),
        }
    }
}

/// The lung's air path length field (before findings), mm.
fn lung_depth(a: &Anatomy, side: Side, w: usize, h: usize, s: f64) -> Field {
    let lung = &a.lungs[side.index()];
    let mut f = polygon_depth_field(&lung.outline, w, h, s);
    let apex_y = lung.apex.1;
    let depth = lung.depth;
    let bbox = crate::raster::polygon_bbox(&lung.outline);
    f.for_box(bbox, |v, _x, y| {
        if *v > 0.0 {
            let edge = (*v as f64 / 45.0).min(1.0).sqrt();
            let apex = ((y - apex_y) / 70.0).clamp(0.05, 1.0).sqrt();
            *v = (depth * edge * apex) as f32;
        }
    });
    f
}

/// Fraction of the air replaced by fluid or tissue per pixel (effusion, consolidation, edema...).
/// `span` is the lung's extent on this row ([`lung_span`], computed once per row by the caller).
fn opacity(a: &Anatomy, f: &Findings, side: Side, span: Option<(f64, f64)>, x: f64, y: f64) -> f64 {
    let l = &a.lungs[side.index()];
    let mut o: f64 = 0.0;
    let blob = |c: Pt, r: f64, x: f64, y: f64| {
        let d2 = ((x - c.0).powi(2) + (y - c.1).powi(2)) / (r * r);
        (-d2 * d2).exp()
    };
    if let Some(frac) = f.effusion[side.index()] {
        let lung_h = l.cp_angle.1 - l.apex.1;
        // Meniscus: higher laterally.
        let (lo, hi) = span.unwrap_or((x, x + 1.0));
        let lateral = if side == Side::Right {
            (hi - x) / (hi - lo).max(1.0)
        } else {
            (x - lo) / (hi - lo).max(1.0)
        };
        // From the costophrenic angle up: the lateral fluid climbs highest.
        let level = l.cp_angle.1 - frac * lung_h * (0.45 + 0.75 * lateral.clamp(0.0, 1.0));
        let fill = ((y - level) / 14.0).clamp(0.0, 1.0);
        o = o.max(0.97 * fill);
        if a.view == View::Ap {
            // Supine: fluid layers posteriorly, a veil over the whole hemithorax.
            let t = ((y - l.apex.1) / lung_h).clamp(0.0, 1.0);
            o = o.max(frac * (0.4 + 0.8 * t));
        }
    }
    for c in f.consolidation.iter().filter(|c| c.side == side) {
        o = o.max(0.9 * blob(c.center, c.radius, x, y));
        o = o.max(
            0.75 * blob(
                (c.center.0 + c.radius * 0.6, c.center.1 + c.radius * 0.3),
                c.radius * 0.7,
                x,
                y,
            ),
        );
    }
    for b in f.atelectasis.iter().filter(|b| b.side == side) {
        // A plate: thin, wide, slightly tilted.
        let (dx, dy) = (x - b.center.0, y - b.center.1);
        let tilt = 0.12 * side.sign();
        let u = (dx * tilt.cos() + dy * tilt.sin()) / b.radius;
        let v = (-dx * tilt.sin() + dy * tilt.cos()) / 4.5;
        o = o.max(0.85 * (-(u * u * u * u) - v * v).exp());
    }
    if let Some(e) = f.edema {
        let d = ((x - l.hilum.0).powi(2) / 2.2 + (y - l.hilum.1).powi(2)).sqrt();
        o = o.max(e * 0.55 * (-(d / 55.0).powi(2)).exp());
        o = o.max(e * 0.2);
    }
    o.min(0.97)
}

/// A vessel tree from the hilum: branches thin and shorten towards the periphery.
#[allow(clippy::too_many_arguments)]
fn vessels(
    rng: &mut ChaCha8Rng,
    inside: &dyn Fn(Pt) -> bool,
    start: Pt,
    angle: f64,
    length: f64,
    radius: f64,
    depth: usize,
    out: &mut Vec<Tube>,
) {
    if depth == 0 || radius < 0.35 {
        return;
    }
    let end = (
        start.0 + length * angle.cos(),
        start.1 + length * angle.sin(),
    );
    if !inside(end) {
        return;
    }
    let bend = rng.random_range(-0.15..0.15);
    let mid = (
        (start.0 + end.0) / 2.0 + bend * length * angle.sin(),
        (start.1 + end.1) / 2.0 - bend * length * angle.cos(),
    );
    out.push(Tube {
        points: bezier(start, mid, end, 4),
        r0: radius,
        r1: radius * 0.85,
    });
    let spread = rng.random_range(0.25..0.55);
    for k in [-1.0, 1.0] {
        let a = angle + k * spread * rng.random_range(0.6..1.0);
        let l = length * rng.random_range(0.68..0.85);
        vessels(rng, inside, end, a, l, radius * 0.72, depth - 1, out);
    }
}

/// Renders the anatomy with its findings.
pub fn render(
    rng: &mut ChaCha8Rng,
    a: &Anatomy,
    f: &Findings,
    width: usize,
    height: usize,
    detector: &Detector,
    marker: bool,
) -> Rendered {
    let s = a.width_mm / width as f64;
    let mut mu = Field::new(width, height, s);

    // Body: an elliptic cylinder of soft tissue, narrower at the neck.
    let half_depth = a.body_depth / 2.0;
    for py in 0..height {
        let y = (py as f64 + 0.5) * s;
        let hw = a.body_half_width_at(y);
        for px in 0..width {
            let x = (px as f64 + 0.5) * s;
            let u = (x - a.mid) / hw;
            if u.abs() < 1.0 {
                mu.data[py * width + px] =
                    (MU_SOFT * 2.0 * half_depth * (1.0 - u * u).sqrt()) as f32;
            }
        }
    }
    if let Some(breasts) = &a.breasts {
        for b in breasts {
            b.add(&mut mu, MU_SOFT * 0.6);
        }
    }
    for head in &a.humeral_heads {
        head.add(&mut mu, MU_SOFT + MU_BONE * 0.6);
    }

    // Lungs: air where neither the heart, the great vessels, the hila nor a lesion displace it.
    let mut displace = Field::new(width, height, s);
    {
        // The heart's outline is sharper than an ellipsoid's: a flatter depth profile.
        let h = a.heart;
        displace.for_box(h.bbox(), |v, x, y| {
            let p = h.path(x, y) / (2.0 * h.c);
            *v += (2.0 * h.c * p.sqrt()) as f32;
        });
    }
    a.aortic_knob.add(&mut displace, 1.0);
    for h in &a.hila {
        h.add(&mut displace, 1.0);
    }
    for n in f.nodules.iter().chain(&f.masses) {
        Ellipsoid {
            center: n.center,
            a: n.radius,
            b: n.radius * 0.95,
            c: n.radius,
            angle: 0.0,
        }
        .add(&mut displace, 1.0);
    }
    // Parenchymal texture: smooth random variation of the air content (+-8%).
    let mut texture: Vec<f32> = (0..width * height)
        .map(|_| rng.random_range(-1.0f32..1.0))
        .collect();
    blur(&mut texture, width, height, ((2.5 / s) as usize).max(1));
    let tex_scale = {
        let sd = (texture.iter().map(|v| v * v).sum::<f32>() / texture.len().max(1) as f32).sqrt();
        0.08 / sd.max(1e-6)
    };
    let mut depths = Vec::new();
    for side in Side::BOTH {
        let depth = lung_depth(a, side, width, height, s);
        // Pneumothorax: the lung falls away from the chest wall towards the hilum; the space
        // is pure air (no parenchyma, no vessels).
        let collapsed = f.pneumothorax.filter(|p| p.0 == side).map(|(_, frac)| {
            let l = &a.lungs[side.index()];
            let shrunk: Vec<Pt> = l
                .outline
                .iter()
                .map(|p| {
                    // Air rises: the apex and the lateral wall fall away most, the base least.
                    let up = ((l.cp_angle.1 - p.1) / (l.cp_angle.1 - l.apex.1)).clamp(0.0, 1.0);
                    let k = frac * (0.35 + 0.65 * up);
                    (p.0 + (l.hilum.0 - p.0) * k, p.1 + (l.hilum.1 - p.1) * k)
                })
                .collect();
            (polygon_depth_field(&shrunk, width, height, s), shrunk)
        });
        let bbox = crate::raster::polygon_bbox(&a.lungs[side.index()].outline);
        let (px0, py0) = (
            (bbox[0] / s).max(0.0) as usize,
            (bbox[1] / s).max(0.0) as usize,
        );
        let (px1, py1) = (
            ((bbox[2] / s).ceil() as usize + 1).min(width),
            ((bbox[3] / s).ceil() as usize + 1).min(height),
        );
        for py in py0..py1 {
            let y = (py as f64 + 0.5) * s;
            let span = lung_span(a, side, y);
            for px in px0..px1 {
                let i = py * width + px;
                let l = depth.data[i] as f64;
                if l <= 0.0 {
                    continue;
                }
                let x = (px as f64 + 0.5) * s;
                let air = (l - displace.data[i] as f64).max(0.0);
                let o = opacity(a, f, side, span, x, y);
                let air = air * (1.0 + (texture[i] * tex_scale) as f64);
                let mut d = MU_LUNG_AIR * air * (1.0 - o);
                if let Some((c, _)) = &collapsed {
                    if c.data[i] <= 0.0 {
                        d -= MU_PARENCHYMA * air * (1.0 - o);
                    }
                }
                mu.data[i] += d as f32;
            }
        }
        depths.push((depth, collapsed));
    }

    // Vascular markings, thicker and more prominent upwards when there is edema.
    let edema = f.edema.unwrap_or(0.0);
    for side in Side::BOTH {
        let (depth, collapsed) = &depths[side.index()];
        let inside =
            |p: Pt| depth.at(p) > 2.0 && collapsed.as_ref().is_none_or(|(c, _)| c.at(p) > 2.0);
        let l = &a.lungs[side.index()];
        let mut tubes = Vec::new();
        let outward = if side == Side::Right {
            std::f64::consts::PI
        } else {
            0.0
        };
        let s_sign = side.sign();
        for k in 0..7 {
            // Fan from straight up to straight down through the lateral side.
            let t = k as f64 / 6.0;
            let angle = outward - s_sign * (-1.35 + 2.6 * t);
            let upper = t < 0.4;
            let r = 3.2 * (1.0 + edema * if upper { 0.5 } else { 0.2 });
            let start = (l.hilum.0 + 6.0 * angle.cos(), l.hilum.1 + 6.0 * angle.sin());
            vessels(rng, &inside, start, angle, 34.0, r, 7, &mut tubes);
        }
        // Joints and crossings are counted once: the tree's path is the largest of its branches.
        let mut tree = Field::new(width, height, s);
        for t in &tubes {
            t.raise(&mut tree);
        }
        for (m, v) in mu.data.iter_mut().zip(&tree.data) {
            *m += (4.0 * (MU_SOFT - MU_PARENCHYMA)) as f32 * v;
        }
        if edema > 0.4 {
            // Septal (Kerley B) lines at the lateral bases.
            let z = a.zone_bounds(side);
            for k in 0..(edema * 8.0) as usize {
                let y = z[3] - 12.0 - k as f64 * 7.0;
                if let Some((lo, hi)) = lung_span(a, side, y) {
                    let x0 = if side == Side::Right {
                        lo + 1.0
                    } else {
                        hi - 1.0
                    };
                    Tube {
                        points: vec![(x0, y), (x0 - s_sign * 14.0, y + 0.5)],
                        r0: 0.7,
                        r1: 0.6,
                    }
                    .add(&mut mu, MU_SOFT);
                }
            }
        }
        if let Some((_, shrunk)) = collapsed {
            // The visceral pleural line, where the lung has left the wall.
            let pts: Vec<Pt> = shrunk
                .iter()
                .zip(&l.outline)
                .filter(|(p, q)| ((p.0 - q.0).powi(2) + (p.1 - q.1).powi(2)).sqrt() > 4.0)
                .map(|(p, _)| *p)
                .collect();
            for w in pts.windows(2) {
                Tube {
                    points: vec![w[0], w[1]],
                    r0: 0.6,
                    r1: 0.6,
                }
                .add(&mut mu, 0.09);
            }
        }
    }

    // Airways and the stomach bubble.
    Tube {
        points: a.trachea.clone(),
        r0: a.trachea_radius,
        r1: a.trachea_radius * 0.9,
    }
    .add(&mut mu, MU_AIR * 0.9);
    for b in &a.bronchi {
        Tube {
            points: b.clone(),
            r0: a.trachea_radius * 0.7,
            r1: a.trachea_radius * 0.45,
        }
        .add(&mut mu, MU_AIR * 0.6);
    }
    a.stomach_bubble.add(&mut mu, MU_AIR);

    // Bones: spine, ribs (a cortical shell around a lighter core), clavicles, scapulae.
    for ((c, hh), _) in a.vertebrae.iter().zip(0..) {
        Ellipsoid {
            center: *c,
            a: a.vertebra_half_width,
            b: *hh,
            c: 14.0,
            angle: 0.0,
        }
        .add(&mut mu, MU_BONE * 0.45);
        for side in [-1.0, 1.0] {
            Ellipsoid {
                center: (c.0 + side * a.vertebra_half_width * 0.62, c.1 - hh * 0.35),
                a: 4.5,
                b: 6.5,
                c: 6.0,
                angle: 0.0,
            }
            .add(&mut mu, MU_BONE * 0.3);
        }
        Ellipsoid {
            center: (
                a.mid - (a.spine_x - a.mid) * 0.5 + (a.spine_x - a.mid),
                c.1 + hh * 0.3,
            ),
            a: 3.5,
            b: 7.0,
            c: 8.0,
            angle: 0.0,
        }
        .add(&mut mu, MU_BONE * 0.3);
    }
    for rib in &a.ribs {
        let mut posterior = vec![rib.posterior.clone()];
        if let Some((side, number, t)) = f.rib_fracture {
            if side == rib.side && number == rib.number {
                let cut = ((rib.posterior.len() - 1) as f64 * t) as usize;
                let first = rib.posterior[..=cut].to_vec();
                let offset = (1.5 * rib.side.sign(), 2.5);
                let second: Vec<Pt> = rib.posterior[cut + 1..]
                    .iter()
                    .map(|p| (p.0 + offset.0, p.1 + offset.1))
                    .collect();
                posterior = vec![first, second];
            }
        }
        for part in posterior {
            let outer = Tube {
                points: part.clone(),
                r0: rib.radius,
                r1: rib.radius * 0.9,
            };
            outer.add(&mut mu, MU_BONE);
            Tube {
                points: part,
                r0: rib.radius * 0.62,
                r1: rib.radius * 0.55,
            }
            .add(&mut mu, -MU_BONE * 0.8);
        }
        if rib.number <= 7 {
            Tube {
                points: rib.anterior.clone(),
                r0: rib.radius * 0.9,
                r1: rib.radius * 0.7,
            }
            .add(&mut mu, MU_BONE * 0.35);
        }
    }
    for c in &a.clavicles {
        Tube {
            points: c.clone(),
            r0: 7.5,
            r1: 6.0,
        }
        .add(&mut mu, MU_BONE);
    }
    for sc in &a.scapulae {
        sc.add(&mut mu, MU_BONE * 0.7);
    }

    draw_devices(rng, a, f, &mut mu);
    if marker {
        draw_marker(rng, a, &mut mu);
    }
    let lung: Vec<bool> = depths[0]
        .0
        .data
        .iter()
        .zip(&depths[1].0.data)
        .map(|(r, l)| *r > 30.0 || *l > 30.0)
        .collect();
    detect(rng, a, mu, detector, &lung)
}

fn draw_devices(rng: &mut ChaCha8Rng, a: &Anatomy, f: &Findings, mu: &mut Field) {
    let tube = |pts: Vec<Pt>, r: f64| Tube {
        points: pts,
        r0: r,
        r1: r,
    };
    if f.endotracheal_tube {
        let tip = (a.carina.0, a.carina.1 - rng.random_range(30.0..60.0));
        let pts = vec![(a.trachea[0].0, 0.0), tip];
        tube(pts.clone(), a.trachea_radius * 0.8).add(mu, 0.006);
        tube(pts, 0.8).add(mu, MU_CONTRAST);
    }
    if f.enteric_tube {
        let d = a.lungs[1].dome.1;
        let pts = [
            bezier(
                (a.mid + 4.0, 0.0),
                (a.mid + 10.0, a.carina.1),
                (a.mid + 14.0, d),
                10,
            ),
            bezier(
                (a.mid + 14.0, d),
                (a.mid + 30.0, d + 40.0),
                (a.stomach_bubble.center.0 + 10.0, d + 30.0),
                6,
            ),
        ]
        .concat();
        tube(pts, 2.2).add(mu, MU_CONTRAST * 0.8);
    }
    if let Some(side) = f.central_line {
        let s = side.sign();
        let start = (a.mid + s * 95.0, a.lungs[0].apex.1 - 20.0);
        let (top, cavo) = a.svc;
        let entry = if side == Side::Right {
            top
        } else {
            (a.mid + 12.0, top.1 - 4.0)
        };
        let pts = [
            bezier(start, (a.mid + s * 50.0, start.1 + 4.0), entry, 8),
            bezier(entry, (top.0, (top.1 + cavo.1) / 2.0), cavo, 6),
        ]
        .concat();
        tube(pts, 1.1).add(mu, MU_CONTRAST);
    }
    if let Some(side) = f.chest_tube {
        let l = &a.lungs[side.index()];
        let s = side.sign();
        let z = a.zone_bounds(side);
        let entry = (a.mid + s * (a.thorax_half_width + 20.0), z[2] + 20.0);
        let tip = (l.apex.0 + s * 8.0, l.apex.1 + 25.0);
        let pts = bezier(
            entry,
            (
                a.mid + s * a.thorax_half_width * 0.8,
                (entry.1 + tip.1) / 2.0,
            ),
            tip,
            10,
        );
        tube(pts.clone(), 3.5).add(mu, 0.008);
        tube(pts, 0.7).add(mu, MU_CONTRAST);
    }
    if let Some(side) = f.pacemaker {
        let s = side.sign();
        let gen = Ellipsoid {
            center: (
                a.mid + s * a.thorax_half_width * 0.62,
                a.lungs[0].apex.1 + 28.0,
            ),
            a: 24.0,
            b: 19.0,
            c: 4.0,
            angle: 0.2 * s,
        };
        gen.add(mu, MU_METAL);
        let (top, cavo) = a.svc;
        let apex_of_heart = (
            a.heart.center.0 + a.heart.a * 0.55 * a.heart.angle.cos(),
            a.heart.center.1 + a.heart.a * 0.55 * a.heart.angle.sin(),
        );
        for (k, end) in [cavo, apex_of_heart].into_iter().enumerate() {
            let pts = [
                bezier(
                    gen.center,
                    ((gen.center.0 + top.0) / 2.0, top.1 - 10.0),
                    top,
                    8,
                ),
                bezier(top, (top.0 - 4.0 + k as f64 * 8.0, cavo.1), end, 8),
            ]
            .concat();
            tube(pts, 0.9).add(mu, MU_METAL * 0.5);
        }
    }
}

/// A lead side marker ("R" or "L") in an upper corner, as technologists place them.
fn draw_marker(rng: &mut ChaCha8Rng, a: &Anatomy, mu: &mut Field) {
    let left = rng.random_bool(0.5);
    let x0 = if left {
        a.collimation[2] - 40.0
    } else {
        a.collimation[0] + 20.0
    };
    let y0 = a.collimation[1] + 18.0;
    let (w, h) = (10.0, 16.0);
    let segs: Vec<[Pt; 2]> = if left {
        vec![[(x0, y0), (x0, y0 + h)], [(x0, y0 + h), (x0 + w, y0 + h)]]
    } else {
        vec![
            [(x0, y0), (x0, y0 + h)],
            [(x0, y0), (x0 + w * 0.8, y0)],
            [(x0 + w * 0.8, y0), (x0 + w, y0 + h * 0.25)],
            [(x0 + w, y0 + h * 0.25), (x0 + w * 0.8, y0 + h * 0.5)],
            [(x0 + w * 0.8, y0 + h * 0.5), (x0, y0 + h * 0.5)],
            [(x0 + w * 0.4, y0 + h * 0.5), (x0 + w, y0 + h)],
        ]
    };
    for sgm in segs {
        Tube {
            points: sgm.to_vec(),
            r0: 1.4,
            r1: 1.4,
        }
        .add(mu, MU_METAL * 0.5);
    }
}

fn gaussian(rng: &mut ChaCha8Rng) -> f64 {
    let u1: f64 = rng.random_range(1e-12..1.0);
    let u2: f64 = rng.random_range(0.0..1.0);
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// The detector and its processing. Like a real system's, the grey-scale is set on the anatomy: the
/// darkest lung maps to black (air outside the body saturates), the densest tissue to white.
fn detect(rng: &mut ChaCha8Rng, a: &Anatomy, mu: Field, d: &Detector, lung: &[bool]) -> Rendered {
    let (w, h, s) = (mu.width, mu.height, mu.spacing);
    // Transmission, plus scatter: a broad blur of the primary.
    let mut primary: Vec<f32> = mu.data.iter().map(|m| (-m).exp()).collect();
    let mut scatter = primary.clone();
    let radius = ((40.0 / s) as usize).max(1);
    // Blur at a quarter resolution would be faster; the box blur is linear in the pixel count.
    blur(&mut scatter, w, h, radius);
    let c = a.collimation;
    let mut p = vec![0.0f32; w * h];
    for py in 0..h {
        let y = (py as f64 + 0.5) * s;
        for px in 0..w {
            let x = (px as f64 + 0.5) * s;
            let i = py * w + px;
            let exposed = x >= c[0] && x <= c[2] && y >= c[1] && y <= c[3];
            if !exposed {
                // No dose: processing shows unexposed detector as bright.
                p[i] = f32::NAN;
                continue;
            }
            let t = primary[i] as f64 + d.scatter * scatter[i] as f64 * 0.5;
            let noisy = t + gaussian(rng) * (t / d.photons).sqrt();
            p[i] = (-(noisy.max(1e-5)).ln()) as f32;
        }
    }
    // Edge enhancement (unsharp mask), as detector processing does.
    let mut smooth: Vec<f32> = p
        .iter()
        .map(|v| if v.is_nan() { 0.0 } else { *v })
        .collect();
    blur(&mut smooth, w, h, ((3.0 / s) as usize).max(1));
    for (v, sm) in p.iter_mut().zip(&smooth) {
        if !v.is_nan() {
            *v += (d.sharpen as f32) * (*v - sm);
        }
    }
    primary.clear();
    // Map to stored values: from the darkest lung to the densest tissue.
    let mut body: Vec<f32> = p.iter().copied().filter(|v| !v.is_nan()).collect();
    let mut lungs: Vec<f32> = p
        .iter()
        .zip(lung)
        .filter(|(v, l)| **l && !v.is_nan())
        .map(|(v, _)| *v)
        .collect();
    let quantile = |xs: &mut Vec<f32>, q: f64| -> Option<f32> {
        if xs.is_empty() {
            return None;
        }
        let k = ((xs.len() - 1) as f64 * q) as usize;
        let (_, v, _) = xs.select_nth_unstable_by(k, |a, b| a.total_cmp(b));
        Some(*v)
    };
    let hi = quantile(&mut body, 0.998).unwrap_or(1.0);
    let lo = quantile(&mut lungs, 0.01)
        .map(|v| v * 0.85)
        .or_else(|| quantile(&mut body, 0.005))
        .unwrap_or(0.0)
        .min(hi - 1e-3);
    let max = ((1u32 << d.bits_stored) - 1) as f64;
    let pixels = p
        .iter()
        .map(|v| {
            let t = if v.is_nan() {
                0.97
            } else {
                (((v - lo) / (hi - lo)) as f64)
                    .clamp(0.0, 1.0)
                    .powf(d.gamma)
            };
            (t * max).round() as u16
        })
        .collect();
    Rendered {
        width: w,
        height: h,
        spacing: s,
        pixels,
        bits_stored: d.bits_stored,
    }
}
