//! The lung-crop model in an analysis: each lung cut out of the film around the image model's box
//! of it, its coverage from the image model's lung mask, and the crop model's answer put into the
//! finding it scores (on the image, in the regions, and its heatmap).

use crate::analysis::{
    regions_carrying, sigmoid, smallest_region_at, FindingScore, Heatmap, NamedOutput, RegionResult,
};
use crate::runtime::CropScores;
use asg_bundle::CropModelSpec;
use asg_dicom::{crop_display, CropFrame, Image, Letterbox, Normalisation};

/// Side of the heatmap grid the crop model's cells are drawn into (over the model input square,
/// like the image model's maps; finer, since a cell of the crop model is about 8 mm).
pub const CROP_HEATMAP_GRID: usize = 80;

/// The inputs of the crop model for one image, and where each crop lies in the film.
#[derive(Debug, Clone)]
pub struct CropInputs {
    /// Per lung of the spec: its frame, or None where the image model gave it no usable box.
    pub frames: Vec<Option<CropFrame>>,
    /// Normalised crops, one lung after the other (a lung without a frame is all padding).
    pub crops: Vec<f32>,
    /// The lung's share of each cell, one lung after the other.
    pub coverage: Vec<f32>,
}

/// Bilinear sample of a `side` x `side` plane at continuous cell coordinates (cell centres at
/// integer + 0.5), edges clamped.
fn bilinear(plane: &[f32], side: usize, x: f64, y: f64) -> f32 {
    let fx = (x - 0.5).clamp(0.0, (side - 1) as f64);
    let fy = (y - 0.5).clamp(0.0, (side - 1) as f64);
    let (x0, y0) = (fx.floor() as usize, fy.floor() as usize);
    let (x1, y1) = ((x0 + 1).min(side - 1), (y0 + 1).min(side - 1));
    let (ax, ay) = ((fx - x0 as f64) as f32, (fy - y0 as f64) as f32);
    let at = |x: usize, y: usize| plane[y * side + x];
    let top = at(x0, y0) * (1.0 - ax) + at(x1, y0) * ax;
    let bottom = at(x0, y1) * (1.0 - ax) + at(x1, y1) * ax;
    top * (1.0 - ay) + bottom * ay
}

/// Cuts the crops of `model`'s lungs out of `image`: each around its region's box (image pixels),
/// with its coverage from the `anatomy_masks` channel of the same name (probabilities over the
/// model input square; a crop pixel is lung where the mask reads above one half).
pub fn crop_inputs(
    spec: &CropModelSpec,
    image: &Image,
    letterbox: &Letterbox,
    regions: &[RegionResult],
    anatomy_names: &[String],
    masks: &NamedOutput,
    norm: Normalisation,
) -> Result<CropInputs, String> {
    let mean = norm.mean;
    let (w, h, s) = (
        spec.width as usize,
        spec.height as usize,
        spec.stride as usize,
    );
    let (gw, gh) = (w / s, h / s);
    let side = masks.shape.last().copied().unwrap_or(0);
    let channels = anatomy_names.len();
    if side == 0 || masks.values.len() != channels * side * side {
        return Err(format!(
            "anatomy_masks holds {} values for {channels} structures of side {side}",
            masks.values.len()
        ));
    }
    let std = if norm.std.abs() > f32::EPSILON {
        norm.std
    } else {
        1.0
    };
    let mut out = CropInputs {
        frames: Vec::with_capacity(spec.lungs.len()),
        crops: Vec::with_capacity(spec.lungs.len() * w * h),
        coverage: Vec::with_capacity(spec.lungs.len() * gw * gh),
    };
    for lung in &spec.lungs {
        let frame = regions.iter().find(|r| r.name == *lung).and_then(|r| {
            let b = r.bbox.map(f64::from);
            CropFrame::around(b, spec.margin, w, h)
        });
        let plane = crate::analysis::mask_plane(masks, anatomy_names, lung);
        let (Some(frame), Some(plane)) = (frame, plane) else {
            out.frames.push(None);
            out.crops.extend(std::iter::repeat_n(-mean / std, w * h));
            out.coverage.extend(std::iter::repeat_n(0.0, gw * gh));
            continue;
        };
        out.frames.push(Some(frame));
        out.crops.extend(
            crop_display(image, &frame, w, h)
                .into_iter()
                .map(|v| (v - mean) / std),
        );
        out.coverage
            .extend(lung_coverage(spec, &frame, letterbox, plane, side));
    }
    Ok(out)
}

/// The lung's share of each cell of a crop: the share of the cell's pixels whose centres, mapped
/// to the film and into the model input, read above one half on the lung's mask (`side` x
/// `side` probabilities over the model input square, sampled bilinearly).
fn lung_coverage(
    spec: &CropModelSpec,
    frame: &CropFrame,
    letterbox: &Letterbox,
    plane: &[f32],
    side: usize,
) -> Vec<f32> {
    let (w, h, s) = (
        spec.width as usize,
        spec.height as usize,
        spec.stride as usize,
    );
    let gw = w / s;
    let to_mask = side as f64 / letterbox.size as f64;
    let mut cells = vec![0.0f32; gw * (h / s)];
    for v in 0..h {
        for u in 0..w {
            let (x, y) = frame.to_film(u as f64 + 0.5, v as f64 + 0.5);
            let (mx, my) = letterbox.to_model(x, y);
            if bilinear(plane, side, mx * to_mask, my * to_mask) > 0.5 {
                cells[(v / s) * gw + u / s] += 1.0;
            }
        }
    }
    let per_cell = (s * s) as f32;
    cells.into_iter().map(|c| c / per_cell).collect()
}

fn logit(p: f32) -> f32 {
    let p = p.clamp(1e-7, 1.0 - 1e-7);
    (p / (1.0 - p)).ln()
}

/// The lung (its index in `lungs`) whose zone `region` is: "right upper lung zone" and "right
/// apical zone" are zones of "right lung" (Chest ImaGenome's names: the side, then the zone).
fn zone_of(lungs: &[String], region: &str) -> Option<usize> {
    lungs.iter().position(|lung| {
        let side = lung.strip_suffix(" lung").unwrap_or(lung);
        region
            .strip_prefix(side)
            .is_some_and(|rest| rest.starts_with(' ') && rest.ends_with(" zone"))
    })
}

/// One cell of one lung's crop: its probability and its centre in film pixels.
#[derive(Debug, Clone, Copy)]
struct Cell {
    lung: usize,
    probability: f32,
    x: f32,
    y: f32,
}

/// The cells that lie in their lung (coverage above zero), with their centres in the film.
fn lung_cells(spec: &CropModelSpec, inputs: &CropInputs, scores: &CropScores) -> Vec<Cell> {
    let s = spec.stride as usize;
    let (gw, gh) = (spec.width as usize / s, spec.height as usize / s);
    let mut out = Vec::new();
    for (lung, frame) in inputs.frames.iter().enumerate() {
        let Some(frame) = frame else { continue };
        for k in 0..gw * gh {
            let i = lung * gw * gh + k;
            if inputs.coverage.get(i).is_none_or(|&c| c <= 0.0) {
                continue;
            }
            let Some(&l) = scores.cells.get(i) else {
                continue;
            };
            let (u, v) = (
                ((k % gw) as f64 + 0.5) * s as f64,
                ((k / gw) as f64 + 0.5) * s as f64,
            );
            let (x, y) = frame.to_film(u, v);
            out.push(Cell {
                lung,
                probability: sigmoid(l),
                x: x as f32,
                y: y as f32,
            });
        }
    }
    out
}

/// Puts the crop model's answer into the analysis: the finding's probability on the image is
/// its most probable lung's; a lung region's is its crop's; a zone of a lung (its upper, mid,
/// lower and apical zones) gets the most probable of that lung's cells inside its box, at most
/// the lung's probability; every other region 0 (the image model's own scores for the finding
/// are replaced everywhere). Region lists, the finding's regions and its heatmap follow.
#[allow(clippy::too_many_arguments)]
pub fn apply_crop_scores(
    spec: &CropModelSpec,
    inputs: &CropInputs,
    scores: &CropScores,
    finding_index: usize,
    findings: &mut [FindingScore],
    regions: &mut [RegionResult],
    letterbox: &Letterbox,
    image: &Image,
    threshold: f32,
    region_threshold: f32,
) {
    let Some(finding) = findings.get_mut(finding_index) else {
        return;
    };
    let lung_probability: Vec<f32> = inputs
        .frames
        .iter()
        .zip(&scores.probabilities)
        .map(|(f, &p)| if f.is_some() { p } else { 0.0 })
        .collect();
    let best = lung_probability.iter().copied().fold(0.0f32, f32::max);
    finding.probability = best;
    finding.logit = logit(best);
    finding.present = finding.assessed && best >= threshold;
    let cells = lung_cells(spec, inputs, scores);
    for region in regions.iter_mut() {
        let p = if let Some(lung) = spec.lungs.iter().position(|n| *n == region.name) {
            lung_probability[lung]
        } else {
            match zone_of(&spec.lungs, &region.name) {
                Some(lung) => {
                    let b = region.bbox;
                    cells
                        .iter()
                        .filter(|c| c.lung == lung)
                        .filter(|c| c.x >= b[0] && c.x <= b[2] && c.y >= b[1] && c.y <= b[3])
                        .map(|c| c.probability)
                        .fold(0.0f32, f32::max)
                        .min(lung_probability[lung])
                }
                None => 0.0,
            }
        };
        if let Some(slot) = region.probabilities.get_mut(finding_index) {
            *slot = p;
        }
        region.findings.retain(|f| *f != finding.name);
        if finding.assessed && p >= region_threshold {
            region.findings.push(finding.name.clone());
        }
    }
    finding.regions = regions_carrying(regions, finding_index, &finding.name);
    finding.heatmap = heatmap(spec, inputs, &cells, scores, regions, letterbox, image);
}

/// The crop model's cells drawn into a [`CROP_HEATMAP_GRID`] grid over the model input square
/// (each grid cell the probability of the crop cell under its centre, the larger where the lungs'
/// crops overlap; 0 outside the lungs), scaled so that its largest value is 1; the peak is the
/// most probable crop cell's centre.
fn heatmap(
    spec: &CropModelSpec,
    inputs: &CropInputs,
    cells: &[Cell],
    scores: &CropScores,
    regions: &[RegionResult],
    letterbox: &Letterbox,
    image: &Image,
) -> Option<Heatmap> {
    let peak = cells
        .iter()
        .max_by(|a, b| a.probability.total_cmp(&b.probability))?;
    let s = spec.stride as usize;
    let (gw, gh) = (spec.width as usize / s, spec.height as usize / s);
    let g = CROP_HEATMAP_GRID;
    let size = letterbox.size as f64;
    let mut values = vec![0.0f32; g * g];
    for (i, value) in values.iter_mut().enumerate() {
        let (mx, my) = (
            ((i % g) as f64 + 0.5) / g as f64 * size,
            ((i / g) as f64 + 0.5) / g as f64 * size,
        );
        let (x, y) = letterbox.to_image(mx, my);
        for (lung, frame) in inputs.frames.iter().enumerate() {
            let Some(frame) = frame else { continue };
            let (u, v) = frame.to_crop(x, y);
            if u < 0.0 || v < 0.0 {
                continue;
            }
            let (cx, cy) = (u as usize / s, v as usize / s);
            if cx >= gw || cy >= gh {
                continue;
            }
            let k = lung * gw * gh + cy * gw + cx;
            if inputs.coverage.get(k).is_some_and(|&c| c > 0.0) {
                if let Some(&l) = scores.cells.get(k) {
                    *value = value.max(sigmoid(l));
                }
            }
        }
    }
    let max = peak.probability.max(1e-12);
    values.iter_mut().for_each(|v| *v = (*v / max).min(1.0));
    let (px, py) = (
        peak.x.clamp(0.0, image.width as f32),
        peak.y.clamp(0.0, image.height as f32),
    );
    let peak_region = smallest_region_at(regions, px, py);
    Some(Heatmap {
        grid: g as u32,
        source: "crop_cells".into(),
        max: peak.probability,
        values,
        peak: [px, py],
        peak_region,
    })
}

#[cfg(test)]
mod tests {
    use super::{bilinear, lung_coverage, zone_of};
    use asg_bundle::CropModelSpec;
    use asg_dicom::{CropFrame, Letterbox};

    #[test]
    fn a_cell_is_lung_where_the_image_models_mask_says_so() {
        // A 100 x 100 film in a 160 input (no padding) with a 40 x 40 mask: one mask cell is
        // 2.5 film pixels. The lung: film x 10..40, y 10..90, i.e. mask cells x 4..16, y 4..36.
        let letterbox = Letterbox::new(100, 100, 160);
        let mut plane = vec![0.0f32; 40 * 40];
        for y in 4..36 {
            for x in 4..16 {
                plane[y * 40 + x] = 1.0;
            }
        }
        let spec = CropModelSpec {
            file: "n.onnx".into(),
            finding: "nodule".into(),
            lungs: vec!["right lung".into()],
            width: 32,
            height: 64,
            margin: 0.1,
            stride: 8,
            probability_output: "nodule".into(),
            description: String::new(),
        };
        let frame = CropFrame::around([10.0, 10.0, 40.0, 90.0], 0.1, 32, 64).unwrap();
        let cov = lung_coverage(&spec, &frame, &letterbox, &plane, 40);
        assert_eq!(cov.len(), 4 * 8);
        // The cells in the crop's middle are all lung, those at its margin partly, none wholly
        // outside: the box with its 10% margin fills the crop's height.
        assert_eq!(cov[4 * 4 + 1], 1.0);
        assert_eq!(cov[4 * 4 + 2], 1.0);
        assert!(cov[0] > 0.0 && cov[0] < 1.0, "{}", cov[0]);
        // The lung's area is what the cells hold: 30 x 80 film pixels, scaled into the crop.
        let lung: f32 = cov.iter().sum::<f32>() * 64.0;
        let want = (30.0 * 80.0 * frame.scale * frame.scale) as f32;
        assert!((lung - want).abs() / want < 0.05, "{lung} {want}");
        // Nothing where the mask is empty.
        assert!(
            lung_coverage(&spec, &frame, &letterbox, &vec![0.0; 1600], 40)
                .iter()
                .all(|&c| c == 0.0)
        );
    }

    #[test]
    fn a_lungs_zones_are_its_upper_mid_lower_and_apical_zones() {
        let lungs = ["right lung".to_string(), "left lung".to_string()];
        assert_eq!(zone_of(&lungs, "right upper lung zone"), Some(0));
        assert_eq!(zone_of(&lungs, "right apical zone"), Some(0));
        assert_eq!(zone_of(&lungs, "left lower lung zone"), Some(1));
        for other in [
            "right lung",
            "right hilar structures",
            "left costophrenic angle",
            "cardiac silhouette",
            "rightish zone",
        ] {
            assert_eq!(zone_of(&lungs, other), None, "{other}");
        }
    }

    #[test]
    fn bilinear_sampling_reads_cell_centres_exactly_and_blends_between() {
        let plane = [0.0, 1.0, 2.0, 3.0];
        assert_eq!(bilinear(&plane, 2, 0.5, 0.5), 0.0);
        assert_eq!(bilinear(&plane, 2, 1.5, 1.5), 3.0);
        assert_eq!(bilinear(&plane, 2, 1.0, 0.5), 0.5);
        assert_eq!(bilinear(&plane, 2, 1.0, 1.0), 1.5);
        // Outside the plane: the edge.
        assert_eq!(bilinear(&plane, 2, -4.0, 9.0), 2.0);
    }
}
