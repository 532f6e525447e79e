//! Anatomy outlines: the anatomy head's masks (probabilities over the model input square) traced
//! at 0.5 by marching squares (the `contour` crate, linear interpolation between cell centres)
//! and mapped back to the original image's pixels, for a viewer to draw instead of boxes. Each
//! structure is one piece of anatomy, so specks of the mask are left out: a part smaller than
//! [`MIN_PART_SHARE`] of the structure's largest part, and a hole smaller than
//! [`MIN_HOLE_SHARE`] of its part.

use serde::{Deserialize, Serialize};

/// Parts of a structure's mask smaller than this share of its largest part (by area) are specks,
/// not drawn; a structure broken in two by a weak stretch keeps both halves.
pub const MIN_PART_SHARE: f64 = 0.25;
/// Holes smaller than this share of their part's area are specks, not drawn.
pub const MIN_HOLE_SHARE: f64 = 0.1;

/// One anatomical structure's outline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnatomyOutline {
    /// Chest ImaGenome region name of the structure (e.g. `right lung`).
    pub name: String,
    /// Closed rings (first point repeated last) in the original image's pixels: each part's
    /// border, then the borders of holes in it (specks left out, see [`MIN_PART_SHARE`]). Empty
    /// when the mask has no pixel at 0.5.
    pub rings: Vec<Vec<[f32; 2]>>,
    /// Parts of the mask left out as specks (not in the JSON: the rings show what is kept).
    #[serde(skip)]
    pub specks_left_out: usize,
}

impl AnatomyOutline {
    /// The extent of the kept parts in image pixels `[x1, y1, x2, y2]`; None without rings.
    pub fn extent(&self) -> Option<[f32; 4]> {
        let mut points = self.rings.iter().flatten();
        let first = points.next()?;
        Some(
            points.fold([first[0], first[1], first[0], first[1]], |b, p| {
                [
                    b[0].min(p[0]),
                    b[1].min(p[1]),
                    b[2].max(p[0]),
                    b[3].max(p[1]),
                ]
            }),
        )
    }
}

/// Traces `masks` (`names.len()` channels of `side * side` probabilities, row-major, over the
/// model input square of `size` pixels; cell `(i, j)` covers input pixels `j * size / side ..
/// (j + 1) * size / side` across and likewise down), and `to_image` maps input pixels to the
/// image's. A channel whose values are not finite gets no rings.
pub fn outlines(
    masks: &[f32],
    names: &[String],
    side: usize,
    size: f64,
    to_image: &dyn Fn(f64, f64) -> (f32, f32),
) -> Result<Vec<AnatomyOutline>, String> {
    let cells = side * side;
    if side == 0 || masks.len() != names.len() * cells {
        return Err(format!(
            "anatomy_masks holds {} values for {} structures of {side}x{side}",
            masks.len(),
            names.len()
        ));
    }
    let step = size / side as f64;
    // The crate (a port of d3-contour) puts value (i, j) on the unit square [j, j + 1] x
    // [i, i + 1]: scaled by the cell's side, that is the input pixels the cell covers.
    let builder = contour::ContourBuilder::new(side, side, true)
        .x_step(step)
        .y_step(step);
    let mut out = Vec::with_capacity(names.len());
    for (name, mask) in names.iter().zip(masks.chunks(cells)) {
        let mut rings = Vec::new();
        let mut specks_left_out = 0;
        if mask.iter().all(|v| v.is_finite()) {
            let values: Vec<f64> = mask.iter().map(|&v| v as f64).collect();
            let contours = builder
                .contours(&values, &[0.5])
                .map_err(|e| format!("tracing the {name} mask: {e}"))?;
            let parts: Vec<&geo_types::Polygon<f64>> = contours
                .iter()
                .flat_map(|c| c.geometry().0.iter())
                .collect();
            let areas: Vec<f64> = parts
                .iter()
                .map(|p| ring_area(p.exterior()) - p.interiors().iter().map(ring_area).sum::<f64>())
                .collect();
            let largest = areas.iter().copied().fold(0.0, f64::max);
            specks_left_out = areas
                .iter()
                .filter(|&&a| a < MIN_PART_SHARE * largest)
                .count();
            for (polygon, _) in parts
                .into_iter()
                .zip(&areas)
                .filter(|(_, &a)| a >= MIN_PART_SHARE * largest)
            {
                let outer = ring_area(polygon.exterior());
                let holes = polygon
                    .interiors()
                    .iter()
                    .filter(|h| ring_area(h) >= MIN_HOLE_SHARE * outer);
                for ring in std::iter::once(polygon.exterior()).chain(holes) {
                    let points: Vec<[f32; 2]> = ring
                        .0
                        .iter()
                        .map(|p| {
                            let (x, y) = to_image(p.x, p.y);
                            [x, y]
                        })
                        .collect();
                    if points.len() >= 4 {
                        rings.push(points);
                    }
                }
            }
        }
        out.push(AnatomyOutline {
            name: name.clone(),
            rings,
            specks_left_out,
        });
    }
    Ok(out)
}

/// The area a closed ring encloses (the shoelace formula), whatever its winding.
fn ring_area(ring: &geo_types::LineString<f64>) -> f64 {
    let twice: f64 = ring
        .0
        .windows(2)
        .map(|w| w[0].x * w[1].y - w[1].x * w[0].y)
        .sum();
    twice.abs() / 2.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_square_blob_is_traced_halfway_between_inside_and_outside_cells() {
        // 8 x 8 cells over a 16-pixel input (2 px a cell); cells 2..=5 of rows 3..=4 are 1.
        let side = 8;
        let mut mask = vec![0.0f32; side * side * 2];
        for i in 3..=4 {
            for j in 2..=5 {
                mask[i * side + j] = 1.0;
            }
        }
        let names = vec!["right lung".to_string(), "left lung".to_string()];
        let double = |x: f64, y: f64| ((2.0 * x) as f32, (2.0 * y) as f32);
        let got = outlines(&mask, &names, side, 16.0, &double).unwrap();
        assert_eq!(got.len(), 2);
        assert!(got[1].rings.is_empty(), "an empty mask has no outline");
        assert_eq!(got[0].rings.len(), 1);
        let ring = &got[0].rings[0];
        assert_eq!(ring.first(), ring.last(), "closed");
        let xs: Vec<f32> = ring.iter().map(|p| p[0]).collect();
        let ys: Vec<f32> = ring.iter().map(|p| p[1]).collect();
        let min = |v: &[f32]| v.iter().copied().fold(f32::MAX, f32::min);
        let max = |v: &[f32]| v.iter().copied().fold(f32::MIN, f32::max);
        // Inside cells cover input x 4..12, y 6..10; the 0.5 level between a 1 and a 0 lies on
        // their border, then doubled by `to_image`.
        assert_eq!((min(&xs), max(&xs)), (8.0, 24.0));
        assert_eq!((min(&ys), max(&ys)), (12.0, 20.0));
    }

    #[test]
    fn specks_of_the_mask_are_left_out_and_a_structure_in_two_halves_kept() {
        // 20 x 20 cells, 1 px each: a 10 x 10 part with a 1-cell hole and a 4 x 4 hole, a
        // 1-cell speck, and a 5 x 6 part (30% of the largest part's 84 cells).
        let side = 20;
        let mut mask = vec![0.0f32; side * side];
        for i in 2..12 {
            for j in 2..12 {
                mask[i * side + j] = 1.0;
            }
        }
        mask[4 * side + 4] = 0.0;
        for i in 6..10 {
            for j in 6..10 {
                mask[i * side + j] = 0.0;
            }
        }
        mask[16 * side + 2] = 1.0;
        for i in 14..19 {
            for j in 10..16 {
                mask[i * side + j] = 1.0;
            }
        }
        let names = vec!["left clavicle".to_string()];
        let id = |x: f64, y: f64| (x as f32, y as f32);
        let got = outlines(&mask, &names, side, side as f64, &id).unwrap();
        let mut areas: Vec<f64> = got[0]
            .rings
            .iter()
            .map(|r| {
                let line = geo_types::LineString::from(
                    r.iter()
                        .map(|p| (p[0] as f64, p[1] as f64))
                        .collect::<Vec<_>>(),
                );
                ring_area(&line)
            })
            .collect();
        areas.sort_by(f64::total_cmp);
        // The 0.5 level lies on the cells' borders, each corner cut by a triangle of 1/8: the
        // big part's border (100 - 0.5), its 4 x 4 hole (16 - 0.5) and the second part
        // (30 - 0.5); the speck and the 1-cell hole (0.5 each) are gone.
        assert_eq!(areas, vec![15.5, 29.5, 99.5]);
        // One speck left out; the extent is the two kept parts': x 2..16, y 2..19 (the
        // corners cut halfway along each border cell's side).
        assert_eq!(got[0].specks_left_out, 1);
        assert_eq!(got[0].extent(), Some([2.0, 2.0, 16.0, 19.0]));
    }

    #[test]
    fn the_area_of_a_ring_whatever_its_winding() {
        let square = [(0.0, 0.0), (2.0, 0.0), (2.0, 3.0), (0.0, 3.0), (0.0, 0.0)];
        let forward = geo_types::LineString::from(square.to_vec());
        let backward =
            geo_types::LineString::from(square.iter().rev().copied().collect::<Vec<_>>());
        assert_eq!(ring_area(&forward), 6.0);
        assert_eq!(ring_area(&backward), 6.0);
    }

    #[test]
    fn sizes_that_disagree_are_an_error_and_bad_values_give_no_rings() {
        let names = vec!["heart".to_string()];
        let id = |x: f64, y: f64| (x as f32, y as f32);
        let e = outlines(&[0.0; 10], &names, 3, 9.0, &id).unwrap_err();
        assert!(e.contains("10 values for 1 structures of 3x3"), "{e}");
        let got = outlines(&[f32::NAN; 9], &names, 3, 9.0, &id).unwrap();
        assert!(got[0].rings.is_empty());
    }
}
