//! Batch normalisation (training mode) and ReLU as one Candle op with its own backward, for the
//! CPU: the composed form (three reductions for the mean, a subtraction, a square, three more
//! reductions, a scale, a shift, a ReLU, and as many steps back) reads and writes the feature map
//! a dozen times each way; this one reads it twice and writes it once going forward, and reads
//! three maps and writes one going back. Tested equal, values, gradients and running statistics,
//! to the composed form it replaces (`layers::Bn` + ReLU, kept for inference and other devices).

use candle_core::{CpuStorage, CustomOp3, Layout, Result, Shape, Tensor};
use std::sync::{Arc, Mutex};

/// The batch statistics of one forward pass, per channel.
#[derive(Debug, Clone)]
pub struct BatchStats {
    pub mean: Vec<f32>,
    /// The biased variance (what normalises the batch).
    pub var: Vec<f32>,
    pub(crate) inv_std: Vec<f32>,
    /// Values averaged per channel (batch x height x width).
    pub count: usize,
}

/// A value an op's pass leaves for its caller or for its backward pass (shared by clones).
struct Slot<T>(Arc<Mutex<Option<T>>>);

impl<T: Clone> Slot<T> {
    fn new() -> Self {
        Self(Arc::new(Mutex::new(None)))
    }

    fn share(&self) -> Self {
        Self(self.0.clone())
    }

    fn put(&self, value: T) -> Result<()> {
        *self
            .0
            .lock()
            .map_err(|_| candle_core::Error::Msg("bn_relu: a result lock is poisoned".into()))? =
            Some(value);
        Ok(())
    }

    /// The value, or an error naming what is missing.
    fn get(&self, what: &str) -> Result<T> {
        self.0
            .lock()
            .map_err(|_| candle_core::Error::Msg("bn_relu: a result lock is poisoned".into()))?
            .clone()
            .ok_or_else(|| candle_core::Error::Msg(format!("bn_relu: no {what}")))
    }
}

struct BnRelu {
    eps: f64,
    /// Written by the forward pass; read by the backward pass and by the caller (running stats).
    stats: Slot<BatchStats>,
}

fn contiguous<'a>(storage: &'a CpuStorage, layout: &Layout, what: &str) -> Result<&'a [f32]> {
    let CpuStorage::F32(data) = storage else {
        candle_core::bail!("bn_relu: {what} must be f32");
    };
    let Some((start, end)) = layout.contiguous_offsets() else {
        candle_core::bail!("bn_relu: {what} must be contiguous");
    };
    Ok(&data[start..end])
}

/// The `hw`-long runs of channel `ci` in a contiguous `[b, c, h, w]` buffer.
fn runs(data: &[f32], b: usize, c: usize, hw: usize, ci: usize) -> impl Iterator<Item = &[f32]> {
    (0..b).map(move |bi| &data[(bi * c + ci) * hw..(bi * c + ci + 1) * hw])
}

impl CustomOp3 for BnRelu {
    fn name(&self) -> &'static str {
        "bn_relu"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let x = contiguous(s1, l1, "the input")?;
        let (weight, bias) = (
            contiguous(s2, l2, "the weight")?,
            contiguous(s3, l3, "the bias")?,
        );
        let (b, c, h, w) = l1.shape().dims4()?;
        if weight.len() != c || bias.len() != c {
            candle_core::bail!(
                "bn_relu: {c} channels, {} weights, {} biases",
                weight.len(),
                bias.len()
            );
        }
        let hw = h * w;
        let n = b * hw;
        let mut stats = BatchStats {
            mean: vec![0.0; c],
            var: vec![0.0; c],
            inv_std: vec![0.0; c],
            count: n,
        };
        let mut y = vec![0f32; x.len()];
        for ci in 0..c {
            // Two passes (mean, then squared deviations), as the composed form computes them.
            let sum: f64 = runs(x, b, c, hw, ci)
                .map(|r| r.iter().map(|&v| v as f64).sum::<f64>())
                .sum();
            let mean = (sum / n as f64) as f32;
            let sq: f64 = runs(x, b, c, hw, ci)
                .map(|r| {
                    r.iter()
                        .map(|&v| {
                            let d = (v - mean) as f64;
                            d * d
                        })
                        .sum::<f64>()
                })
                .sum();
            let var = (sq / n as f64) as f32;
            let inv_std = (1.0 / (var as f64 + self.eps).sqrt()) as f32;
            let (scale, shift) = (weight[ci] * inv_std, bias[ci]);
            for bi in 0..b {
                let at = (bi * c + ci) * hw;
                for (o, &v) in y[at..at + hw].iter_mut().zip(&x[at..at + hw]) {
                    *o = ((v - mean) * scale + shift).max(0.0);
                }
            }
            stats.mean[ci] = mean;
            stats.var[ci] = var;
            stats.inv_std[ci] = inv_std;
        }
        self.stats.put(stats)?;
        Ok((CpuStorage::F32(y), l1.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        weight: &Tensor,
        _bias: &Tensor,
        res: &Tensor,
        grad_res: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let stats = self.stats.get("statistics from a forward pass")?;
        let sums = Slot::new();
        // The input gradient from the three maps read in place (no copies of them).
        let dx = x.contiguous()?.apply_op3_no_bwd(
            &res.contiguous()?,
            &grad_res.contiguous()?,
            &BnReluBackward {
                stats,
                weight: weight.flatten_all()?.to_vec1()?,
                sums: sums.share(),
            },
        )?;
        let (dweight, dbias) = sums.get("weight gradient")?;
        let device = x.device();
        Ok((
            Some(dx),
            Some(Tensor::from_vec(dweight, weight.shape(), device)?),
            Some(Tensor::from_vec(dbias, weight.shape(), device)?),
        ))
    }
}

/// The weight and bias gradients, per channel.
type ParamGrads = (Vec<f32>, Vec<f32>);

/// The backward pass of [`BnRelu`] over (input, output, output gradient): the input gradient,
/// with the weight and bias gradients left in `sums`.
struct BnReluBackward {
    stats: BatchStats,
    weight: Vec<f32>,
    sums: Slot<ParamGrads>,
}

impl CustomOp3 for BnReluBackward {
    fn name(&self) -> &'static str {
        "bn_relu_backward"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let xs = contiguous(s1, l1, "the input")?;
        let ys = contiguous(s2, l2, "the output")?;
        let gs = contiguous(s3, l3, "the output gradient")?;
        let (b, c, h, w) = l1.shape().dims4()?;
        if ys.len() != xs.len() || gs.len() != xs.len() || self.weight.len() != c {
            candle_core::bail!("bn_relu backward: shapes do not match");
        }
        let hw = h * w;
        let n = (b * hw) as f32;
        let mut dx = vec![0f32; xs.len()];
        let (mut dweight, mut dbias) = (vec![0f32; c], vec![0f32; c]);
        for ci in 0..c {
            let (mean, inv_std) = (self.stats.mean[ci], self.stats.inv_std[ci]);
            // The ReLU passes the gradient where it passed the value.
            let (mut sum_dz, mut sum_dz_xhat) = (0f64, 0f64);
            for bi in 0..b {
                let at = (bi * c + ci) * hw;
                for i in at..at + hw {
                    if ys[i] > 0.0 {
                        let dz = gs[i] as f64;
                        sum_dz += dz;
                        sum_dz_xhat += dz * ((xs[i] - mean) * inv_std) as f64;
                    }
                }
            }
            dbias[ci] = sum_dz as f32;
            dweight[ci] = sum_dz_xhat as f32;
            let (mean_dz, mean_dz_xhat) = ((sum_dz as f32) / n, (sum_dz_xhat as f32) / n);
            let k = self.weight[ci] * inv_std;
            for bi in 0..b {
                let at = (bi * c + ci) * hw;
                for i in at..at + hw {
                    let dz = if ys[i] > 0.0 { gs[i] } else { 0.0 };
                    let xhat = (xs[i] - mean) * inv_std;
                    dx[i] = k * (dz - mean_dz - xhat * mean_dz_xhat);
                }
            }
        }
        self.sums.put((dweight, dbias))?;
        Ok((CpuStorage::F32(dx), l1.shape().clone()))
    }
}

/// ReLU of the batch-normalised `x` (`[b, c, h, w]`, f32, on the CPU; training mode: the batch's
/// own statistics) scaled by `weight` and shifted by `bias` (`[c]`), with a backward pass to all
/// three; and the batch statistics, for the running ones.
pub fn bn_relu(
    x: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    eps: f64,
) -> Result<(Tensor, BatchStats)> {
    let stats = Slot::new();
    let y = x.contiguous()?.apply_op3(
        &weight.contiguous()?,
        &bias.contiguous()?,
        BnRelu {
            eps,
            stats: stats.share(),
        },
    )?;
    Ok((y, stats.get("statistics after the forward pass")?))
}
