//! Batch normalisation (training mode) and ReLU as one Candle op with its own backward, for the
//! CPU: the composed form (three reductions for the mean, a subtraction, a square, three more
//! reductions, a scale, a shift, a ReLU, and as many steps back) reads and writes the feature map
//! a dozen times each way; this one reads it twice and writes it once going forward, and reads
//! three maps and writes one going back. Tested equal, values, gradients and running statistics,
//! to the composed form it replaces (`layers::Bn` + ReLU, kept for inference and other devices).

use crate::model::cpu_ops::{run_parts, split, threads, Slot};
use candle_core::{CpuStorage, CustomOp3, Layout, Result, Shape, Tensor};

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

struct BnRelu {
    eps: f64,
    /// Written by the forward pass; read by the backward pass and by the caller (running stats).
    stats: Slot<BatchStats>,
}

fn contiguous<'a>(storage: &'a CpuStorage, layout: &Layout, what: &str) -> Result<&'a [f32]> {
    crate::model::cpu_ops::contiguous_f32(storage, layout, "bn_relu", what)
}

/// The `hw`-long runs of channel `ci` in a contiguous `[b, c, h, w]` buffer.
fn runs(data: &[f32], b: usize, c: usize, hw: usize, ci: usize) -> impl Iterator<Item = &[f32]> {
    (0..b).map(move |bi| &data[(bi * c + ci) * hw..(bi * c + ci + 1) * hw])
}

/// Lanes of the per-run sums: eight independent f32 accumulators, which the compiler turns into
/// vector adds (one f64 accumulator is a chain of dependent adds, a few cycles each); each run's
/// lanes are then added in f64.
const LANES: usize = 8;

/// Sums over one run (equal-length slices `a`, `b`, `c`) of `f(a[i], b[i], c[i])`, in f32
/// lanes, returned in f64.
#[inline]
fn lane_sum3(a: &[f32], b: &[f32], c: &[f32], f: impl Fn(f32, f32, f32) -> f32) -> f64 {
    let mut acc = [0f32; LANES];
    let (ac, bc, cc) = (
        a.chunks_exact(LANES),
        b.chunks_exact(LANES),
        c.chunks_exact(LANES),
    );
    let tail: f64 = ac
        .remainder()
        .iter()
        .zip(bc.remainder())
        .zip(cc.remainder())
        .map(|((&x, &y), &z)| f64::from(f(x, y, z)))
        .sum();
    for ((x, y), z) in ac.zip(bc).zip(cc) {
        for l in 0..LANES {
            acc[l] += f(x[l], y[l], z[l]);
        }
    }
    acc.iter().map(|&v| f64::from(v)).sum::<f64>() + tail
}

/// [`lane_sum3`] over one slice.
#[inline]
fn lane_sum(a: &[f32], f: impl Fn(f32) -> f32) -> f64 {
    lane_sum3(a, a, a, |x, _, _| f(x))
}

/// The `hw`-long runs of a contiguous `[b, c, h, w]` buffer, grouped by channel range: one group
/// per range, each holding its channels' runs (batch-major), so that the groups can be written
/// from different threads.
fn runs_by_channels<'a>(
    data: &'a mut [f32],
    c: usize,
    hw: usize,
    ranges: &[std::ops::Range<usize>],
) -> Vec<Vec<&'a mut [f32]>> {
    let mut groups: Vec<Vec<&mut [f32]>> = ranges.iter().map(|_| Vec::new()).collect();
    for (i, run) in data.chunks_mut(hw.max(1)).enumerate() {
        let ci = i % c;
        if let Some(g) = ranges.iter().position(|r| r.contains(&ci)) {
            groups[g].push(run);
        }
    }
    groups
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
        let mut y = vec![0f32; x.len()];
        let ranges = split(c, threads());
        let groups = runs_by_channels(&mut y, c, hw, &ranges);
        // Per channel: (mean, biased variance, 1 / std), written by the part that owns it.
        let per_channel = std::sync::Mutex::new(vec![(0f32, 0f32, 0f32); c]);
        let parts: Vec<_> = ranges.iter().cloned().zip(groups).collect();
        run_parts(parts, |(channels, mut outs)| {
            let width = channels.len();
            let mut mine = Vec::with_capacity(width);
            for ci in channels.clone() {
                // Two passes (mean, then squared deviations), as the composed form computes them.
                let sum: f64 = runs(x, b, c, hw, ci).map(|r| lane_sum(r, |v| v)).sum();
                let mean = (sum / n as f64) as f32;
                let sq: f64 = runs(x, b, c, hw, ci)
                    .map(|r| {
                        lane_sum(r, |v| {
                            let d = v - mean;
                            d * d
                        })
                    })
                    .sum();
                let var = (sq / n as f64) as f32;
                let inv_std = (1.0 / (var as f64 + self.eps).sqrt()) as f32;
                let (scale, shift) = (weight[ci] * inv_std, bias[ci]);
                let local = ci - channels.start;
                for (bi, xr) in runs(x, b, c, hw, ci).enumerate() {
                    for (o, &v) in outs[bi * width + local].iter_mut().zip(xr) {
                        *o = ((v - mean) * scale + shift).max(0.0);
                    }
                }
                mine.push((mean, var, inv_std));
            }
            let mut all = per_channel
                .lock()
                .map_err(|_| candle_core::Error::Msg("bn_relu: a lock is poisoned".into()))?;
            all[channels].copy_from_slice(&mine);
            Ok(())
        })?;
        let per_channel = per_channel
            .into_inner()
            .map_err(|_| candle_core::Error::Msg("bn_relu: a lock is poisoned".into()))?;
        let stats = BatchStats {
            mean: per_channel.iter().map(|s| s.0).collect(),
            var: per_channel.iter().map(|s| s.1).collect(),
            inv_std: per_channel.iter().map(|s| s.2).collect(),
            count: n,
        };
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
        let ranges = split(c, threads());
        let groups = runs_by_channels(&mut dx, c, hw, &ranges);
        let grads = std::sync::Mutex::new((vec![0f32; c], vec![0f32; c]));
        let parts: Vec<_> = ranges.iter().cloned().zip(groups).collect();
        run_parts(parts, |(channels, mut outs)| {
            let width = channels.len();
            let mut mine = Vec::with_capacity(width);
            for ci in channels.clone() {
                let (mean, inv_std) = (self.stats.mean[ci], self.stats.inv_std[ci]);
                let run = |bi: usize| (bi * c + ci) * hw;
                // The ReLU passes the gradient where it passed the value.
                let (mut sum_dz, mut sum_dz_xhat) = (0f64, 0f64);
                for bi in 0..b {
                    let (xr, yr, gr) = (
                        &xs[run(bi)..run(bi) + hw],
                        &ys[run(bi)..run(bi) + hw],
                        &gs[run(bi)..run(bi) + hw],
                    );
                    let dz = |y: f32, g: f32| if y > 0.0 { g } else { 0.0 };
                    sum_dz += lane_sum3(yr, gr, gr, |y, g, _| dz(y, g));
                    sum_dz_xhat +=
                        lane_sum3(xr, yr, gr, |x, y, g| dz(y, g) * ((x - mean) * inv_std));
                }
                let (mean_dz, mean_dz_xhat) = ((sum_dz as f32) / n, (sum_dz_xhat as f32) / n);
                let k = self.weight[ci] * inv_std;
                let local = ci - channels.start;
                for bi in 0..b {
                    let at = run(bi);
                    let (xr, yr, gr) = (&xs[at..at + hw], &ys[at..at + hw], &gs[at..at + hw]);
                    for (((d, &x), &y), &g) in
                        outs[bi * width + local].iter_mut().zip(xr).zip(yr).zip(gr)
                    {
                        let dz = if y > 0.0 { g } else { 0.0 };
                        let xhat = (x - mean) * inv_std;
                        *d = k * (dz - mean_dz - xhat * mean_dz_xhat);
                    }
                }
                mine.push((sum_dz_xhat as f32, sum_dz as f32));
            }
            let mut all = grads
                .lock()
                .map_err(|_| candle_core::Error::Msg("bn_relu: a lock is poisoned".into()))?;
            for (ci, (dw, db)) in channels.zip(mine) {
                all.0[ci] = dw;
                all.1[ci] = db;
            }
            Ok(())
        })?;
        let (dweight, dbias) = grads
            .into_inner()
            .map_err(|_| candle_core::Error::Msg("bn_relu: a lock is poisoned".into()))?;
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
