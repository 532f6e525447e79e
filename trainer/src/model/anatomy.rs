//! The anatomy head: masks of the regions in [`ANATOMY`] (lungs, heart, clavicles, mediastinum)
//! at the side of the CNN stage it starts from (`model.anatomy_from_stage`; 1: a quarter of the
//! input's), from that stage on (each through a 3x3 convolution,
//! batch norm and ReLU to a common width, upsampled to the finest and summed, then one more such
//! convolution and a 1x1 to the channels: a small feature pyramid). At inference the boxes of
//! those regions are read off the masks by the rule the targets follow (the mask's box), which a
//! one-query box regression learns only roughly.
//!
//! Upsampling is a product with fixed matrices, the same in Candle and in the ONNX export
//! (`export::asg`), so both compute one function.

use crate::model::layers::ConvBn;
use crate::vocab::{anatomy_regions, ANATOMY, REGIONS};
use candle_core::{Device, Result, Tensor, D};
use candle_nn::VarBuilder;

/// `[out, in]` nearest-neighbour upsampling by an integer factor (`out = in * factor`).
pub fn nearest_matrix(out: usize, input: usize) -> Vec<f32> {
    let input = input.max(1);
    let factor = (out / input).max(1);
    let mut m = vec![0.0f32; out * input];
    for o in 0..out {
        m[o * input + (o / factor).min(input - 1)] = 1.0;
    }
    m
}

/// `[out, in]` linear interpolation between cell centres (half-pixel centres, edges clamped):
/// the weights of a bilinear resize along one axis.
pub fn linear_matrix(out: usize, input: usize) -> Vec<f32> {
    let input = input.max(1);
    let mut m = vec![0.0f32; out * input];
    let scale = input as f64 / out as f64;
    for o in 0..out {
        let s = ((o as f64 + 0.5) * scale - 0.5).clamp(0.0, (input - 1) as f64);
        let i0 = s.floor() as usize;
        let i1 = (i0 + 1).min(input - 1);
        let f = (s - i0 as f64) as f32;
        m[o * input + i0] += 1.0 - f;
        m[o * input + i1] += f;
    }
    m
}

/// `[b, c, h, w]` -> `[b, c, rows.len()/h, cols.len()/w]`: `R x C^T` with `R` `[H, h]`, `C`
/// `[W, w]`.
pub fn resample(x: &Tensor, rows: &Tensor, cols: &Tensor) -> Result<Tensor> {
    rows.broadcast_matmul(x)?
        .broadcast_matmul(&cols.t()?.contiguous()?)
}

/// The head's layers.
pub struct AnatomyHead {
    pub(crate) laterals: Vec<ConvBn>,
    /// The first stage read.
    pub(crate) from_stage: usize,
    pub(crate) fuse: ConvBn,
    /// `[channels, width]` and `[channels]`: the 1x1 output layer.
    pub(crate) out_weight: Tensor,
    pub(crate) out_bias: Tensor,
}

impl AnatomyHead {
    /// A head over CNN stages of `stage_channels` (stage 0 first; stages `from_stage..` are
    /// read).
    pub fn new(
        stage_channels: &[usize],
        from_stage: usize,
        width: usize,
        vb: VarBuilder,
    ) -> Result<Self> {
        if from_stage + 1 >= stage_channels.len() {
            candle_core::bail!(
                "the anatomy head reads from stage {from_stage}, but the CNN has {} stages",
                stage_channels.len()
            );
        }
        let laterals = stage_channels
            .iter()
            .enumerate()
            .skip(from_stage)
            .map(|(i, &c)| ConvBn::new(c, width, 1, vb.pp(format!("lateral{i}"))))
            .collect::<Result<Vec<_>>>()?;
        let bound = (1.0 / width as f64).sqrt();
        Ok(Self {
            laterals,
            from_stage,
            fuse: ConvBn::new(width, width, 1, vb.pp("fuse"))?,
            out_weight: vb.get_with_hints(
                (ANATOMY.len(), width),
                "out.weight",
                candle_nn::Init::Uniform {
                    lo: -bound,
                    up: bound,
                },
            )?,
            // Anatomy covers a minority of the film: start near a probability of 0.1.
            out_bias: vb.get_with_hints(ANATOMY.len(), "out.bias", candle_nn::Init::Const(-2.0))?,
        })
    }

    /// The stages' maps (stage 0 first) -> mask logits `[b, ANATOMY.len(), side, side]`.
    pub fn forward(&self, stages: &[Tensor], train: bool) -> Result<Tensor> {
        let mut sum: Option<Tensor> = None;
        for (lateral, map) in self
            .laterals
            .iter()
            .zip(stages.iter().skip(self.from_stage))
        {
            let h = lateral.forward(map, train)?;
            let h = match &sum {
                None => h,
                Some(s) => {
                    let (side, small) = (s.dim(2)?, h.dim(2)?);
                    let up =
                        Tensor::from_vec(nearest_matrix(side, small), (side, small), h.device())?;
                    resample(&h, &up, &up)?
                }
            };
            sum = Some(match sum {
                None => h,
                Some(s) => (s + h)?,
            });
        }
        let Some(sum) = sum else {
            candle_core::bail!("the anatomy head needs at least two CNN stages")
        };
        let h = self.fuse.forward(&sum, train)?;
        let (b, c, side, _) = h.dims4()?;
        self.out_weight
            .broadcast_matmul(&h.reshape((b, c, side * side))?)?
            .broadcast_add(&self.out_bias.unsqueeze(1)?)?
            .reshape((b, ANATOMY.len(), side, side))
    }
}

/// The boxes of the anatomy masks `[b, ANATOMY.len(), 4]` (0..1 of the input) and whether each
/// mask has any pixel `[b, ANATOMY.len(), 1]` (0..1): the logits upsampled bilinearly to the
/// input's `size`, a pixel inside where its logit is above 0 (a steep ramp, 1e3 a logit, so the
/// export computes the same), the box from the first to the last row and column with a pixel
/// inside. An empty mask gives the box (1, 1, 0, 0) and validity 0.
pub fn mask_boxes(logits: &Tensor, size: usize) -> Result<(Tensor, Tensor)> {
    let (boxes, valid, _) = mask_boxes_inside(logits, size)?;
    Ok((boxes, valid))
}

/// [`mask_boxes`] and the pixels inside `[b, c, size, size]`.
fn mask_boxes_inside(logits: &Tensor, size: usize) -> Result<(Tensor, Tensor, Tensor)> {
    let side = logits.dim(2)?;
    let dev = logits.device();
    let up = Tensor::from_vec(linear_matrix(size, side), (size, side), dev)?;
    let inside = (resample(logits, &up, &up)? * STEEP)?.clamp(0f32, 1f32)?; // [b, c, s, s]
    let cols = inside.max(2)?; // [b, c, s]: any pixel in each column
    let rows = inside.max(3)?;
    let (lo, hi, _) = edges(size, dev)?;
    let first = |occupied: &Tensor| -> Result<Tensor> {
        // 1 - max((1 - lo) * occupied): the first occupied cell's low edge.
        (1.0 - occupied
            .broadcast_mul(&(1.0 - &lo)?)?
            .max_keepdim(D::Minus1)?)?
        .contiguous()
    };
    let last = |occupied: &Tensor| occupied.broadcast_mul(&hi)?.max_keepdim(D::Minus1);
    let boxes = Tensor::cat(
        &[first(&cols)?, first(&rows)?, last(&cols)?, last(&rows)?],
        2,
    )?;
    let valid = cols.max_keepdim(D::Minus1)?;
    Ok((boxes, valid, inside))
}

/// The slope of the ramp that stands for "logit above 0".
pub const STEEP: f64 = 1e3;

/// Each pixel's low edge, high edge and centre in 0..1, `[size]`.
fn edges(size: usize, dev: &Device) -> Result<(Tensor, Tensor, Tensor)> {
    let at = |offset: f32| -> Result<Tensor> {
        let v: Vec<f32> = (0..size)
            .map(|i| (i as f32 + offset) / size as f32)
            .collect();
        Tensor::from_vec(v, size, dev)
    };
    Ok((at(0.0)?, at(1.0)?, at(0.5)?))
}

/// The regions read off the anatomy masks, in the order [`derived_boxes`] gives them: the
/// [`ANATOMY`] channels, the right lung's upper, mid and lower zones, the left's, the right and
/// left apical zones, costophrenic angles and hemidiaphragms.
pub fn derived_regions() -> Vec<usize> {
    let mut names: Vec<String> = ANATOMY.iter().map(|(n, _)| n.to_string()).collect();
    for side in ["right", "left"] {
        for zone in ["upper", "mid", "lower"] {
            names.push(format!("{side} {zone} lung zone"));
        }
    }
    for region in ["apical zone", "costophrenic angle", "hemidiaphragm"] {
        for side in ["right", "left"] {
            names.push(format!("{side} {region}"));
        }
    }
    names
        .iter()
        .map(|n| {
            asg_report::REGIONS
                .iter()
                .position(|r| r.name == n.as_str())
                .unwrap_or(usize::MAX)
        })
        .collect()
}

/// The rules of `data/masks.rs` on predicted masks, for the regions they derive from the lung
/// and clavicle masks alone (every length in 0..1 of the input):
/// - the costophrenic point: the lowest pixel centre in the lung's lateral half, the most
///   lateral of equals;
/// - the zones: the lung box's width; from the lung's top to the costophrenic point, in thirds
///   (at least 3 input pixels tall);
/// - the apical zones: the lung box above the clavicle's lowest edge, at least 8% of the lung's
///   width tall, within the lung;
/// - the costophrenic angle: 30% of the lung's width wide (a fifth of it lateral to the point),
///   33% of it tall (a tenth of that below the point);
/// - the hemidiaphragm: from the highest lowest-pixel (the dome) over the lateral three
///   quarters of the lung's width to the costophrenic point, padded by 3% of the width.
///
/// `[b, k, 4]` boxes and `[b, k, 1]` validity, k = [`derived_regions`]`.len()`.
pub fn derived_boxes(logits: &Tensor, size: usize) -> Result<(Tensor, Tensor)> {
    let (boxes, valid, inside) = mask_boxes_inside(logits, size)?;
    let (_, _, centre) = edges(size, logits.device())?;
    let centre_y = centre.reshape((size, 1))?;
    let cols = inside.max(2)?; // [b, c, s]
    let px = 1.0 / size as f64;
    let coord = |k: usize, i: usize| boxes.narrow(1, k, 1)?.narrow(2, i, 1); // [b, 1, 1]
    let mut all = vec![boxes.clone()];
    let mut ok = vec![valid.clone()];
    let mut angles = Vec::new();
    let mut domes = Vec::new();
    for (k, lateral_is_left) in [(0usize, true), (1, false)] {
        let (x1, y1, x2) = (coord(k, 0)?, coord(k, 1)?, coord(k, 2)?);
        let width = (&x2 - &x1)?;
        let mid = ((&x1 + &x2)? * 0.5)?; // [b, 1, 1]
                                         // The lateral half: the image's left half of the patient's right lung.
        let toward_lateral = |edge: &Tensor| -> Result<Tensor> {
            let d = if lateral_is_left {
                edge.broadcast_sub(&centre)?
            } else {
                centre.broadcast_sub(edge)?
            };
            (d * STEEP)?.clamp(0f32, 1f32) // [b, 1, s]
        };
        let lateral = toward_lateral(&mid)?;
        // Per column, its lowest pixel's centre (0 where empty).
        let lung = inside.narrow(1, k, 1)?;
        let low = lung.broadcast_mul(&centre_y)?.max(2)?; // [b, 1, s]
        let lowest = (&low * &lateral)?.max_keepdim(2)?; // [b, 1, 1]
        let at_lowest = ((low.broadcast_sub(&lowest)? + 0.5 * px)? * (2.0 * size as f64))?
            .clamp(0f32, 1f32)?
            .mul(&lateral)?;
        let point_x = if lateral_is_left {
            (1.0 - at_lowest.broadcast_mul(&(1.0 - &centre)?)?.max_keepdim(2)?)?
        } else {
            at_lowest.broadcast_mul(&centre)?.max_keepdim(2)?
        };
        let bottom = lowest.maximum(&(&y1 + 3.0 * px)?)?;
        let third = ((&bottom - &y1)? / 3.0)?;
        for z in 0..3 {
            let top = (&y1 + (&third * z as f64)?)?;
            let end = (&y1 + (&third * (z + 1) as f64)?)?;
            all.push(Tensor::cat(&[&x1, &top, &x2, &end], 2)?);
            ok.push(valid.narrow(1, k, 1)?);
        }
        let (out, inward) = ((&width * 0.06)?, (&width * 0.24)?);
        let (left_edge, right_edge) = if lateral_is_left {
            ((&point_x - &out)?, (&point_x + &inward)?)
        } else {
            ((&point_x - &inward)?, (&point_x + &out)?)
        };
        angles.push(Tensor::cat(
            &[
                &left_edge,
                &(&lowest - (&width * 0.30)?)?,
                &right_edge,
                &(&lowest + (&width * 0.03)?)?,
            ],
            2,
        )?);
        // The lateral three quarters of the width, and the dome over them.
        let medial_end = if lateral_is_left {
            (&x1 + (&width * 0.75)?)?
        } else {
            (&x2 - (&width * 0.75)?)?
        };
        let span = toward_lateral(&medial_end)?.mul(&cols.narrow(1, k, 1)?)?;
        let dome = ((1.0 - (1.0 - &low)?.mul(&span)?.max_keepdim(2)?)? - 0.5 * px)?;
        let pad = (&width * 0.03)?;
        domes.push(Tensor::cat(
            &[
                &medial_end.minimum(&point_x)?,
                &(&dome - &pad)?,
                &medial_end.maximum(&point_x)?,
                &(&lowest + &pad)?,
            ],
            2,
        )?);
    }
    for (lung, clavicle) in [(0usize, 3usize), (1, 4)] {
        let (x1, y1, x2, y2) = (
            coord(lung, 0)?,
            coord(lung, 1)?,
            coord(lung, 2)?,
            coord(lung, 3)?,
        );
        let floor = (&y1 + ((&x2 - &x1)? * 0.08)?)?;
        let end = coord(clavicle, 3)?.maximum(&floor)?.minimum(&y2)?;
        all.push(Tensor::cat(&[&x1, &y1, &x2, &end], 2)?);
        ok.push((valid.narrow(1, lung, 1)? * valid.narrow(1, clavicle, 1)?)?);
    }
    for derived in [angles, domes] {
        for (k, b) in derived.into_iter().enumerate() {
            all.push(b);
            ok.push(valid.narrow(1, k, 1)?);
        }
    }
    Ok((Tensor::cat(&all, 1)?, Tensor::cat(&ok, 1)?))
}

/// `[REGIONS, regions.len()]`: 1 where the region is the k-th of `regions`.
pub fn scatter_matrix(regions: &[usize], dev: &Device) -> Result<Tensor> {
    let k = regions.len();
    let mut m = vec![0.0f32; REGIONS * k];
    for (i, &r) in regions.iter().enumerate() {
        if r < REGIONS {
            m[r * k + i] = 1.0;
        }
    }
    Tensor::from_vec(m, (REGIONS, k), dev)
}

/// The regressed boxes `[b, REGIONS, 4]` with the regions read off the anatomy masks replaced
/// where their masks are not empty: the [`ANATOMY`] regions, and with `zones` the lung zones and
/// apical zones ([`derived_boxes`]).
pub fn replace_boxes(boxes: &Tensor, logits: &Tensor, size: usize, zones: bool) -> Result<Tensor> {
    let (read, valid, regions) = if zones {
        let (b, v) = derived_boxes(logits, size)?;
        (b, v, derived_regions())
    } else {
        let (b, v) = mask_boxes(logits, size)?;
        (b, v, anatomy_regions())
    };
    let e = scatter_matrix(&regions, boxes.device())?;
    let regressed = e.t()?.contiguous()?.broadcast_matmul(boxes)?; // [b, k, 4]
    let delta = (read - regressed)?.broadcast_mul(&valid)?;
    boxes + e.broadcast_matmul(&delta)?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_resampling_matrices_are_nearest_and_linear() {
        assert_eq!(
            nearest_matrix(4, 2),
            vec![1.0, 0.0, 1.0, 0.0, 0.0, 1.0, 0.0, 1.0]
        );
        // Out 4 from 2: centres at 0.25, 0.75 (in input cells: -0.25 -> 0, 0.25, 0.75, 1.25 -> 1).
        let m = linear_matrix(4, 2);
        assert_eq!(&m[0..2], &[1.0, 0.0]);
        assert_eq!(&m[2..4], &[0.75, 0.25]);
        assert_eq!(&m[4..6], &[0.25, 0.75]);
        assert_eq!(&m[6..8], &[0.0, 1.0]);
        // Rows sum to 1.
        let m = linear_matrix(160, 40);
        for r in m.chunks(40) {
            assert!((r.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        }
    }

    #[test]
    fn a_mask_gives_its_box_and_an_empty_one_keeps_the_regressed_box() -> Result<()> {
        // 8 x 8 logits for a 32 px input: channel 0 (right lung) has cells 2..5 x 1..7 inside
        // (+5), all else outside (-5); the other channels are empty.
        let dev = Device::Cpu;
        let mut l = vec![-5.0f32; ANATOMY.len() * 64];
        for y in 1..7 {
            for x in 2..5 {
                l[y * 8 + x] = 5.0;
            }
        }
        let logits = Tensor::from_vec(l, (1, ANATOMY.len(), 8, 8), &dev)?;
        let (b, valid) = mask_boxes(&logits, 32)?;
        let b: Vec<Vec<f32>> = b.squeeze(0)?.to_vec2()?;
        // Cells of 4 px; the zero crossing lies halfway between a +5 and a -5 cell centre, on
        // the cell edge: x 8..20, y 4..28 px.
        let want = [8.0 / 32.0, 4.0 / 32.0, 20.0 / 32.0, 28.0 / 32.0];
        for (g, w) in b[0].iter().zip(want) {
            assert!((g - w).abs() < 1.5 / 32.0, "{:?} {want:?}", b[0]);
        }
        let valid: Vec<f32> = valid.flatten_all()?.to_vec1()?;
        assert_eq!(valid[0], 1.0);
        assert!(valid[1..].iter().all(|v| *v == 0.0));
        // Replacement: the right lung takes the mask's box, every other region keeps its own.
        let regressed = Tensor::full(0.3f32, (1, REGIONS, 4), &dev)?;
        let out: Vec<Vec<f32>> = replace_boxes(&regressed, &logits, 32, false)?
            .squeeze(0)?
            .to_vec2()?;
        let right_lung = anatomy_regions()[0];
        for (r, bx) in out.iter().enumerate() {
            if r == right_lung {
                assert!((bx[0] - want[0]).abs() < 1.5 / 32.0, "{bx:?}");
            } else {
                assert_eq!(bx, &vec![0.3f32; 4], "region {r}");
            }
        }
        Ok(())
    }
}
