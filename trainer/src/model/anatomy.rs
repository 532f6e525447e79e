//! The anatomy head: masks of the regions in [`ANATOMY`] (lungs, heart, clavicles, mediastinum)
//! at a quarter of the input's side, from the CNN's stages 1.. (each through a 3x3 convolution,
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
    let factor = (out / input.max(1)).max(1);
    let mut m = vec![0.0f32; out * input];
    for o in 0..out {
        m[o * input + (o / factor).min(input - 1)] = 1.0;
    }
    m
}

/// `[out, in]` linear interpolation between cell centres (half-pixel centres, edges clamped):
/// the weights of a bilinear resize along one axis.
pub fn linear_matrix(out: usize, input: usize) -> Vec<f32> {
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
    pub(crate) fuse: ConvBn,
    /// `[channels, width]` and `[channels]`: the 1x1 output layer.
    pub(crate) out_weight: Tensor,
    pub(crate) out_bias: Tensor,
}

impl AnatomyHead {
    /// A head over CNN stages of `stage_channels` (stage 0 first; stages 1.. are read).
    pub fn new(stage_channels: &[usize], width: usize, vb: VarBuilder) -> Result<Self> {
        let laterals = stage_channels
            .iter()
            .enumerate()
            .skip(1)
            .map(|(i, &c)| ConvBn::new(c, width, 1, vb.pp(format!("lateral{i}"))))
            .collect::<Result<Vec<_>>>()?;
        let bound = (1.0 / width as f64).sqrt();
        Ok(Self {
            laterals,
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
        for (lateral, map) in self.laterals.iter().zip(stages.iter().skip(1)) {
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
    let side = logits.dim(2)?;
    let dev = logits.device();
    let up = Tensor::from_vec(linear_matrix(size, side), (size, side), dev)?;
    let inside = (resample(logits, &up, &up)? * 1e3)?.clamp(0f32, 1f32)?; // [b, c, s, s]
    let cols = inside.max(2)?; // [b, c, s]: any pixel in each column
    let rows = inside.max(3)?;
    let (lo, hi) = edges(size, dev)?;
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
    Ok((boxes, valid))
}

/// Each pixel's low and high edge in 0..1, `[size]`.
fn edges(size: usize, dev: &Device) -> Result<(Tensor, Tensor)> {
    let lo: Vec<f32> = (0..size).map(|i| i as f32 / size as f32).collect();
    let hi: Vec<f32> = (1..=size).map(|i| i as f32 / size as f32).collect();
    Ok((
        Tensor::from_vec(lo, size, dev)?,
        Tensor::from_vec(hi, size, dev)?,
    ))
}

/// `[REGIONS, ANATOMY.len()]`: 1 where the region is the channel's.
pub fn region_of_channel(dev: &Device) -> Result<Tensor> {
    let mut m = vec![0.0f32; REGIONS * ANATOMY.len()];
    for (ch, r) in anatomy_regions().into_iter().enumerate() {
        if r < REGIONS {
            m[r * ANATOMY.len() + ch] = 1.0;
        }
    }
    Tensor::from_vec(m, (REGIONS, ANATOMY.len()), dev)
}

/// The regressed boxes `[b, REGIONS, 4]` with the anatomy regions' replaced by their masks'
/// boxes where the mask is not empty.
pub fn replace_boxes(boxes: &Tensor, logits: &Tensor, size: usize) -> Result<Tensor> {
    let (mask_box, valid) = mask_boxes(logits, size)?;
    let e = region_of_channel(boxes.device())?;
    let regressed = e.t()?.contiguous()?.broadcast_matmul(boxes)?; // [b, c, 4]
    let delta = (mask_box - regressed)?.broadcast_mul(&valid)?;
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
        let out: Vec<Vec<f32>> = replace_boxes(&regressed, &logits, 32)?
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
