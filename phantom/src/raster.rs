//! Projection primitives: each adds its line integral (attenuation coefficient x path length, per
//! pixel) into a buffer, touching only the pixels under its bounding box. Coordinates are in mm on
//! the detector, x to the right of the image, y down; the buffer has `spacing` mm per pixel.

/// A field of per-pixel values over the detector.
#[derive(Debug, Clone)]
pub struct Field {
    pub width: usize,
    pub height: usize,
    /// mm per pixel.
    pub spacing: f64,
    pub data: Vec<f32>,
}

/// A point in mm.
pub type Pt = (f64, f64);

impl Field {
    pub fn new(width: usize, height: usize, spacing: f64) -> Self {
        Self {
            width,
            height,
            spacing,
            data: vec![0.0; width * height],
        }
    }

    /// The pixel range [x0, x1) x [y0, y1) covering a mm box, clipped to the field.
    fn pixel_box(&self, x0: f64, y0: f64, x1: f64, y1: f64) -> (usize, usize, usize, usize) {
        let s = self.spacing;
        let clip = |v: f64, n: usize| (v.max(0.0) as usize).min(n);
        (
            clip((x0 / s).floor(), self.width),
            clip((y0 / s).floor(), self.height),
            clip((x1 / s).ceil() + 1.0, self.width),
            clip((y1 / s).ceil() + 1.0, self.height),
        )
    }

    /// Calls `f(index, x_mm, y_mm)` for each pixel centre in a mm box.
    pub fn for_box(&mut self, b: [f64; 4], mut f: impl FnMut(&mut f32, f64, f64)) {
        let (px0, py0, px1, py1) = self.pixel_box(b[0], b[1], b[2], b[3]);
        let s = self.spacing;
        for py in py0..py1 {
            let y = (py as f64 + 0.5) * s;
            let row = py * self.width;
            for px in px0..px1 {
                let x = (px as f64 + 0.5) * s;
                f(&mut self.data[row + px], x, y);
            }
        }
    }

    /// Value at a mm point (nearest pixel), 0 outside.
    pub fn at(&self, p: Pt) -> f32 {
        let (x, y) = (p.0 / self.spacing, p.1 / self.spacing);
        if x < 0.0 || y < 0.0 || x >= self.width as f64 || y >= self.height as f64 {
            return 0.0;
        }
        self.data[y as usize * self.width + x as usize]
    }
}

/// An ellipsoid seen along the beam: in-plane semi-axes `a` (along `angle`) and `b`, depth `c`.
#[derive(Debug, Clone, Copy)]
pub struct Ellipsoid {
    pub center: Pt,
    pub a: f64,
    pub b: f64,
    pub c: f64,
    /// Radians, rotation of the `a` axis from the image x axis.
    pub angle: f64,
}

impl Ellipsoid {
    /// Half-extents of the axis-aligned box around the outline.
    pub fn half_extent(&self) -> (f64, f64) {
        let (s, c) = self.angle.sin_cos();
        (
            ((self.a * c).powi(2) + (self.b * s).powi(2)).sqrt(),
            ((self.a * s).powi(2) + (self.b * c).powi(2)).sqrt(),
        )
    }

    /// The path length through the ellipsoid along the beam at (x, y).
    pub fn path(&self, x: f64, y: f64) -> f64 {
        let (s, c) = self.angle.sin_cos();
        let (dx, dy) = (x - self.center.0, y - self.center.1);
        let u = (dx * c + dy * s) / self.a;
        let v = (-dx * s + dy * c) / self.b;
        let q = 1.0 - u * u - v * v;
        if q > 0.0 {
            2.0 * self.c * q.sqrt()
        } else {
            0.0
        }
    }

    pub fn bbox(&self) -> [f64; 4] {
        let (hx, hy) = self.half_extent();
        [
            self.center.0 - hx,
            self.center.1 - hy,
            self.center.0 + hx,
            self.center.1 + hy,
        ]
    }

    /// Adds `mu` x path length into `field`.
    pub fn add(&self, field: &mut Field, mu: f64) {
        let e = *self;
        field.for_box(e.bbox(), |v, x, y| *v += (mu * e.path(x, y)) as f32);
    }
}

/// Distance from `p` to the segment `a`-`b`, and the position along it (0..1).
pub fn segment_distance(p: Pt, a: Pt, b: Pt) -> (f64, f64) {
    let (dx, dy) = (b.0 - a.0, b.1 - a.1);
    let len2 = dx * dx + dy * dy;
    let t = if len2 > 0.0 {
        (((p.0 - a.0) * dx + (p.1 - a.1) * dy) / len2).clamp(0.0, 1.0)
    } else {
        0.0
    };
    let (qx, qy) = (a.0 + t * dx - p.0, a.1 + t * dy - p.1);
    ((qx * qx + qy * qy).sqrt(), t)
}

/// A tube along a polyline, lying in a plane parallel to the detector: the path length at distance
/// d from its axis is 2 sqrt(r^2 - d^2). The radius goes linearly from `r0` to `r1` along it.
#[derive(Debug, Clone)]
pub struct Tube {
    pub points: Vec<Pt>,
    pub r0: f64,
    pub r1: f64,
}

impl Tube {
    pub fn bbox(&self) -> [f64; 4] {
        let r = self.r0.max(self.r1);
        let mut b = [f64::MAX, f64::MAX, f64::MIN, f64::MIN];
        for p in &self.points {
            b = [
                b[0].min(p.0 - r),
                b[1].min(p.1 - r),
                b[2].max(p.0 + r),
                b[3].max(p.1 + r),
            ];
        }
        b
    }

    /// The path length at (x, y): the largest over the segments (joints are not counted twice).
    pub fn path(&self, x: f64, y: f64, seg_len: &[f64], total: f64) -> f64 {
        let mut best: f64 = 0.0;
        let mut along = 0.0;
        for (i, w) in self.points.windows(2).enumerate() {
            let (d, t) = segment_distance((x, y), w[0], w[1]);
            let frac = if total > 0.0 {
                (along + t * seg_len[i]) / total
            } else {
                0.0
            };
            let r = self.r0 + (self.r1 - self.r0) * frac;
            if d < r {
                best = best.max(2.0 * (r * r - d * d).sqrt());
            }
            along += seg_len[i];
        }
        best
    }

    /// Raises each pixel of `field` to the path length where that is larger.
    pub fn raise(&self, field: &mut Field) {
        self.apply(field, |v, p| *v = v.max(p as f32));
    }

    /// Adds `mu` x path length into `field`.
    pub fn add(&self, field: &mut Field, mu: f64) {
        self.apply(field, |v, p| *v += (mu * p) as f32);
    }

    fn apply(&self, field: &mut Field, mut f: impl FnMut(&mut f32, f64)) {
        if self.points.len() < 2 {
            return;
        }
        let seg_len: Vec<f64> = self
            .points
            .windows(2)
            .map(|w| ((w[1].0 - w[0].0).powi(2) + (w[1].1 - w[0].1).powi(2)).sqrt())
            .collect();
        let total: f64 = seg_len.iter().sum();
        let tube = self;
        field.for_box(self.bbox(), |v, x, y| {
            let p = tube.path(x, y, &seg_len, total);
            if p > 0.0 {
                f(v, p);
            }
        });
    }
}

/// Points of a quadratic Bezier curve.
pub fn bezier(p0: Pt, p1: Pt, p2: Pt, n: usize) -> Vec<Pt> {
    (0..=n)
        .map(|i| {
            let t = i as f64 / n as f64;
            let u = 1.0 - t;
            (
                u * u * p0.0 + 2.0 * u * t * p1.0 + t * t * p2.0,
                u * u * p0.1 + 2.0 * u * t * p1.1 + t * t * p2.1,
            )
        })
        .collect()
}

/// A closed Catmull-Rom spline through `ctrl`, `per` points per span.
pub fn closed_spline(ctrl: &[Pt], per: usize) -> Vec<Pt> {
    let n = ctrl.len();
    let mut out = Vec::with_capacity(n * per);
    for i in 0..n {
        let p0 = ctrl[(i + n - 1) % n];
        let p1 = ctrl[i];
        let p2 = ctrl[(i + 1) % n];
        let p3 = ctrl[(i + 2) % n];
        for k in 0..per {
            let t = k as f64 / per as f64;
            let (t2, t3) = (t * t, t * t * t);
            let f = |a: f64, b: f64, c: f64, d: f64| {
                0.5 * (2.0 * b
                    + (-a + c) * t
                    + (2.0 * a - 5.0 * b + 4.0 * c - d) * t2
                    + (-a + 3.0 * b - 3.0 * c + d) * t3)
            };
            out.push((f(p0.0, p1.0, p2.0, p3.0), f(p0.1, p1.1, p2.1, p3.1)));
        }
    }
    out
}

/// A closed polygon's bounding box.
pub fn polygon_bbox(poly: &[Pt]) -> [f64; 4] {
    let mut b = [f64::MAX, f64::MAX, f64::MIN, f64::MIN];
    for p in poly {
        b = [b[0].min(p.0), b[1].min(p.1), b[2].max(p.0), b[3].max(p.1)];
    }
    b
}

/// The x positions where the horizontal line at `y` crosses the closed polygon's edges (into `xs`,
/// cleared first; unsorted).
pub fn scanline_crossings(poly: &[Pt], y: f64, xs: &mut Vec<f64>) {
    xs.clear();
    let n = poly.len();
    for i in 0..n {
        let (a, b) = (poly[i], poly[(i + 1) % n]);
        if (a.1 <= y && b.1 > y) || (b.1 <= y && a.1 > y) {
            xs.push(a.0 + (y - a.1) / (b.1 - a.1) * (b.0 - a.0));
        }
    }
}

/// The pixel runs inside a closed polygon (mm), by scanlines at pixel centres: `inside(row,
/// first, end)` for each run of pixels `first..end` of `row`.
pub fn polygon_runs(
    poly: &[Pt],
    width: usize,
    height: usize,
    spacing: f64,
    mut inside: impl FnMut(usize, usize, usize),
) {
    let mut xs: Vec<f64> = Vec::new();
    for py in 0..height {
        let y = (py as f64 + 0.5) * spacing;
        scanline_crossings(poly, y, &mut xs);
        xs.sort_by(|a, b| a.total_cmp(b));
        for pair in xs.chunks(2) {
            if let [x0, x1] = pair {
                let p0 = ((x0 / spacing - 0.5).ceil().max(0.0) as usize).min(width);
                let p1 = ((x1 / spacing - 0.5).floor() + 1.0).clamp(0.0, width as f64) as usize;
                inside(py, p0, p1.max(p0));
            }
        }
    }
}

/// Fills a mask (1 inside) of a closed polygon by scanlines, then turns it into the distance to
/// the outline in mm (a two-pass 3-4 chamfer transform), 0 outside.
pub fn polygon_depth_field(poly: &[Pt], width: usize, height: usize, spacing: f64) -> Field {
    let mut f = Field::new(width, height, spacing);
    polygon_runs(poly, width, height, spacing, |py, p0, p1| {
        for v in &mut f.data[py * width + p0..py * width + p1] {
            *v = f32::MAX;
        }
    });
    chamfer(&mut f);
    f
}

/// In place: inside pixels (non-zero) get their distance in mm to the nearest outside pixel.
fn chamfer(f: &mut Field) {
    let (w, h) = (f.width, f.height);
    let big = 1.0e9_f32;
    for v in f.data.iter_mut() {
        *v = if *v > 0.0 { big } else { 0.0 };
    }
    let (a, b) = (1.0_f32, std::f32::consts::SQRT_2);
    let d = &mut f.data;
    for y in 0..h {
        for x in 0..w {
            let i = y * w + x;
            if d[i] == 0.0 {
                continue;
            }
            let mut m = d[i];
            // The image border counts as outside.
            if x == 0 || y == 0 {
                m = m.min(a);
            }
            if x > 0 {
                m = m.min(d[i - 1] + a);
            }
            if y > 0 {
                m = m.min(d[i - w] + a);
                if x > 0 {
                    m = m.min(d[i - w - 1] + b);
                }
                if x + 1 < w {
                    m = m.min(d[i - w + 1] + b);
                }
            }
            d[i] = m;
        }
    }
    for y in (0..h).rev() {
        for x in (0..w).rev() {
            let i = y * w + x;
            if d[i] == 0.0 {
                continue;
            }
            let mut m = d[i];
            if x + 1 == w || y + 1 == h {
                m = m.min(a);
            }
            if x + 1 < w {
                m = m.min(d[i + 1] + a);
            }
            if y + 1 < h {
                m = m.min(d[i + w] + a);
                if x + 1 < w {
                    m = m.min(d[i + w + 1] + b);
                }
                if x > 0 {
                    m = m.min(d[i + w - 1] + b);
                }
            }
            d[i] = m;
        }
    }
    let s = f.spacing as f32;
    for v in f.data.iter_mut() {
        *v *= s;
    }
}

/// Box blur (three passes approximate a Gaussian of standard deviation ~ `radius` px / 1.7).
pub fn blur(data: &mut [f32], width: usize, height: usize, radius: usize) {
    if radius == 0 || width == 0 || height == 0 {
        return;
    }
    let mut tmp = vec![0.0f32; data.len()];
    for _ in 0..3 {
        box_pass(data, &mut tmp, width, height, radius, true);
        box_pass(&tmp, data, width, height, radius, false);
    }
}

fn box_pass(src: &[f32], dst: &mut [f32], w: usize, h: usize, r: usize, horizontal: bool) {
    let (outer, inner) = if horizontal { (h, w) } else { (w, h) };
    let idx = |o: usize, i: usize| if horizontal { o * w + i } else { i * w + o };
    let norm = 1.0 / (2 * r + 1) as f32;
    for o in 0..outer {
        // Edges are extended (clamped).
        let at = |i: isize| src[idx(o, i.clamp(0, inner as isize - 1) as usize)];
        let mut acc: f32 = (-(r as isize)..=r as isize).map(at).sum();
        for i in 0..inner {
            dst[idx(o, i)] = acc * norm;
            acc += at(i as isize + r as isize + 1) - at(i as isize - r as isize);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ellipsoid_path_is_twice_the_depth_at_the_centre_and_zero_outside() {
        let e = Ellipsoid {
            center: (50.0, 50.0),
            a: 20.0,
            b: 10.0,
            c: 7.0,
            angle: 0.3,
        };
        assert!((e.path(50.0, 50.0) - 14.0).abs() < 1e-9);
        assert_eq!(e.path(80.0, 50.0), 0.0);
    }

    #[test]
    fn tube_path_is_the_chord_through_a_cylinder() {
        let t = Tube {
            points: vec![(0.0, 10.0), (100.0, 10.0)],
            r0: 3.0,
            r1: 3.0,
        };
        let mut f = Field::new(100, 20, 1.0);
        t.add(&mut f, 1.0);
        // Pixel centre (50.5, 10.5) lies 0.5 mm off the axis.
        let expect = 2.0 * (9.0f64 - 0.25).sqrt();
        assert!((f.data[10 * 100 + 50] as f64 - expect).abs() < 1e-5);
        assert_eq!(f.data[100 + 50], 0.0);
    }

    #[test]
    fn polygon_depth_is_the_distance_to_the_outline() {
        let sq = [(10.0, 10.0), (90.0, 10.0), (90.0, 90.0), (10.0, 90.0)];
        let f = polygon_depth_field(&sq, 100, 100, 1.0);
        assert_eq!(f.data[5 * 100 + 50], 0.0);
        let centre = f.data[50 * 100 + 50];
        assert!((centre - 40.0).abs() < 2.0, "{centre}");
        let near = f.data[50 * 100 + 12];
        assert!((near - 2.0).abs() < 1.01, "{near}");
    }

    #[test]
    fn blur_keeps_the_mean() {
        let mut d: Vec<f32> = (0..400).map(|i| (i % 7) as f32).collect();
        let mean = d.iter().sum::<f32>() / 400.0;
        blur(&mut d, 20, 20, 2);
        let after = d.iter().sum::<f32>() / 400.0;
        assert!((mean - after).abs() < 0.2);
    }
}
