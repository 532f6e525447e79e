//! The nodule model (`asg-train nodules`): a small CNN over one lung crop
//! (`data::lung_crops`, 128 x 256 pixels, about 1 mm a pixel), a nodule logit per 8 x 8 pixel cell
//! (its heatmap), and the lung's logit pooled from the cells by a log-sum-exp weighted by the
//! lung's coverage: a nodule is one to four cells, which a mean over the lung would average away.

use crate::model::layers::ConvBn;
use candle_core::{Result, Tensor, D};
use candle_nn::VarBuilder;

/// Channels of the stem and of the three strided stages (output stride 8).
pub const CHANNELS: [usize; 4] = [16, 32, 64, 96];
/// Input pixels per cell along each axis.
pub const STRIDE: usize = 8;
/// The log-sum-exp's sharpness (large: the most suspicious cell; small: the mean).
pub const POOL_SHARPNESS: f64 = 4.0;
/// The cells' logit before training (a nodule in about 5% of cells' worth of prior).
const PRIOR_LOGIT: f64 = -3.0;

/// The nodule CNN.
pub struct NoduleNet {
    pub(crate) layers: Vec<ConvBn>,
    pub(crate) head_weight: Tensor,
    pub(crate) head_bias: Tensor,
}

impl NoduleNet {
    pub fn new(vb: VarBuilder) -> Result<Self> {
        let mut layers = vec![ConvBn::new(1, CHANNELS[0], 1, vb.pp("stem"))?];
        for (i, pair) in CHANNELS.windows(2).enumerate() {
            let stage = vb.pp(format!("stage{}", i + 1));
            layers.push(ConvBn::new(pair[0], pair[1], 2, stage.pp("down"))?);
            layers.push(ConvBn::new(pair[1], pair[1], 1, stage.pp("conv"))?);
        }
        let c = CHANNELS[3];
        let bound = (1.0 / c as f64).sqrt();
        Ok(Self {
            layers,
            head_weight: vb.get_with_hints(
                (1, c),
                "head.weight",
                candle_nn::Init::Uniform {
                    lo: -bound,
                    up: bound,
                },
            )?,
            head_bias: vb.get_with_hints(1, "head.bias", candle_nn::Init::Const(PRIOR_LOGIT))?,
        })
    }

    /// Cell logits `(B, H / 8, W / 8)` of normalised crops `(B, 1, H, W)`.
    pub fn cells(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let mut h = x.clone();
        for layer in &self.layers {
            h = layer.forward(&h, train)?;
        }
        let (b, c, gh, gw) = h.dims4()?;
        self.head_weight
            .broadcast_matmul(&h.reshape((b, c, gh * gw))?)?
            .broadcast_add(&self.head_bias)?
            .reshape((b, gh, gw))
    }
}

/// The lung's logit from its cells `(B, h, w)` and their weights (the lung's coverage of each
/// cell, `(B, h, w)`): `(1/r) ln(sum w exp(r l) / sum w)`, computed stably; `(B,)`.
pub fn pool(cells: &Tensor, weights: &Tensor) -> Result<Tensor> {
    let (b, gh, gw) = cells.dims3()?;
    let l = cells.reshape((b, gh * gw))?;
    let w = weights.reshape((b, gh * gw))?;
    // The shift: the largest cell with weight (cells outside the lung pushed far down), so the
    // largest term of the sum is about 1 and nothing underflows.
    let outside = ((w.gt(0.0)?.to_dtype(l.dtype())? - 1.0)? * 1e4)?;
    let top = (&l + outside)?.max_keepdim(D::Minus1)?.detach();
    let shifted = (l.broadcast_sub(&top)? * POOL_SHARPNESS)?.exp()?;
    let num = (shifted * &w)?.sum_keepdim(D::Minus1)?;
    let den = (w.sum_keepdim(D::Minus1)? + 1e-6)?;
    let pooled = ((num + 1e-30)?.log()? - den.log()?)?;
    ((pooled / POOL_SHARPNESS)? + top)?.squeeze(1)
}

/// Binary cross-entropy with logits, weighted per element, summed over the weights' total.
pub fn weighted_bce(logits: &Tensor, targets: &Tensor, weights: &Tensor) -> Result<Tensor> {
    // max(x, 0) - x t + ln(1 + e^-|x|)
    let per =
        ((logits.relu()? - (logits * targets)?)? + (logits.abs()?.neg()?.exp()? + 1.0)?.log()?)?;
    let total = (weights.sum_all()? + 1e-6)?;
    (per * weights)?.sum_all()?.broadcast_div(&total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};

    #[test]
    fn the_pool_leans_to_the_strongest_cell_inside_the_lung() {
        let dev = Device::Cpu;
        let mut cells = vec![-3.0f32; 16];
        cells[5] = 2.0; // inside the lung
        cells[15] = 9.0; // outside it: weight 0
        let mut weights = vec![1.0f32; 16];
        weights[15] = 0.0;
        let c = Tensor::from_vec(cells.clone(), (1, 4, 4), &dev).unwrap();
        let w = Tensor::from_vec(weights.clone(), (1, 4, 4), &dev).unwrap();
        let got = pool(&c, &w).unwrap().to_vec1::<f32>().unwrap()[0];
        // By hand: (1/4) ln((e^8 + 14 e^-12) / 15).
        let want = ((8.0f64.exp() + 14.0 * (-12.0f64).exp()) / 15.0).ln() / 4.0;
        assert!((got as f64 - want).abs() < 1e-4, "{got} {want}");
        assert!(got > -3.0 && got < 2.0);
        // Equal cells pool to their value.
        let flat = Tensor::full(0.7f32, (1, 4, 4), &dev).unwrap();
        let got = pool(&flat, &w).unwrap().to_vec1::<f32>().unwrap()[0];
        assert!((got - 0.7).abs() < 1e-4);
    }

    #[test]
    fn the_weighted_bce_matches_a_hand_computed_case() {
        let dev = Device::Cpu;
        let x = Tensor::new(&[2.0f32, -1.0, 0.5], &dev).unwrap();
        let t = Tensor::new(&[1.0f32, 0.0, 1.0], &dev).unwrap();
        let w = Tensor::new(&[1.0f32, 3.0, 0.0], &dev).unwrap();
        let got = weighted_bce(&x, &t, &w)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap() as f64;
        let bce = |x: f64, t: f64| {
            -(t * (1.0 / (1.0 + (-x).exp())).ln()
                + (1.0 - t) * (1.0 - 1.0 / (1.0 + (-x).exp())).ln())
        };
        let want = (bce(2.0, 1.0) + 3.0 * bce(-1.0, 0.0)) / 4.0;
        assert!((got - want).abs() < 1e-5, "{got} {want}");
    }

    #[test]
    fn a_crop_gives_one_logit_per_eight_pixel_cell() {
        let dev = Device::Cpu;
        let varmap = candle_nn::VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &dev);
        let net = NoduleNet::new(vb).unwrap();
        let x = Tensor::zeros((2, 1, 64, 32), DType::F32, &dev).unwrap();
        let cells = net.cells(&x, false).unwrap();
        assert_eq!(cells.dims(), &[2, 8, 4]);
    }
}
