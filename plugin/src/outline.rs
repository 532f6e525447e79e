//! Anatomy outlines: the anatomy head's masks (probabilities over the model input square) traced
//! at 0.5 by marching squares (the `contour` crate, linear interpolation between cell centres)
//! and mapped back to the original image's pixels, for a viewer to draw instead of boxes.

use serde::{Deserialize, Serialize};

/// One anatomical structure's outline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnatomyOutline {
    /// Chest ImaGenome region name of the structure (e.g. `right lung`).
    pub name: String,
    /// Closed rings (first point repeated last) in the original image's pixels: each part's
    /// border, then the borders of holes in it. Empty when the mask has no pixel at 0.5.
    pub rings: Vec<Vec<[f32; 2]>>,
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
        if mask.iter().all(|v| v.is_finite()) {
            let values: Vec<f64> = mask.iter().map(|&v| v as f64).collect();
            let contours = builder
                .contours(&values, &[0.5])
                .map_err(|e| format!("tracing the {name} mask: {e}"))?;
            for polygon in contours.iter().flat_map(|c| c.geometry().0.iter()) {
                for ring in std::iter::once(polygon.exterior()).chain(polygon.interiors()) {
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
        });
    }
    Ok(out)
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
    fn sizes_that_disagree_are_an_error_and_bad_values_give_no_rings() {
        let names = vec!["heart".to_string()];
        let id = |x: f64, y: f64| (x as f32, y as f32);
        let e = outlines(&[0.0; 10], &names, 3, 9.0, &id).unwrap_err();
        assert!(e.contains("10 values for 1 structures of 3x3"), "{e}");
        let got = outlines(&[f32::NAN; 9], &names, 3, 9.0, &id).unwrap();
        assert!(got[0].rings.is_empty());
    }
}
