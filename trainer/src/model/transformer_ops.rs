//! The transformer layers' ops as Candle ops with their own backward, for the CPU: layer
//! normalisation and softmax over the last dimension, a linear layer's bias, and GELU. Candle's
//! fused layer norm and softmax have no backward pass; the composed forms
//! (`candle_nn::ops::layer_norm_slow`, `candle_nn::ops::softmax`, Candle's GELU backward) run five
//! to twelve element-wise ops and row reductions each way, and a bias broadcast over `[b, t, d]`
//! is summed back over two leading dimensions by Candle's slowest reduction, on one core, for
//! every layer of the text encoder and the query decoders. Here each is one pass forward and one
//! back, rows split over Candle's pool. Tested equal, values and gradients, to the composed forms
//! (kept for other devices).

use crate::model::cpu_ops::{contiguous_f32, pieces, run_parts, split, sum_blocks, threads, Slot};
use candle_core::{CpuStorage, CustomOp1, CustomOp2, CustomOp3, Layout, Result, Shape, Tensor, D};

/// Below this many values an op runs on the calling thread alone (waking the pool costs more).
const PARALLEL_FROM: usize = 32 * 1024;

/// Row ranges for `rows` rows of `width` values: one per thread when there is enough work.
fn row_parts(rows: usize, width: usize) -> Vec<std::ops::Range<usize>> {
    let parts = if rows * width >= PARALLEL_FROM {
        threads()
    } else {
        1
    };
    split(rows, parts)
}

/// Per-row statistics a layer-norm forward pass leaves for its backward: (mean, 1 / std).
type RowStats = Vec<(f32, f32)>;

struct LayerNormOp {
    eps: f32,
    stats: Slot<RowStats>,
}

impl CustomOp3 for LayerNormOp {
    fn name(&self) -> &'static str {
        "layer_norm_rows"
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
        let x = contiguous_f32(s1, l1, "layer_norm", "the input")?;
        let weight = contiguous_f32(s2, l2, "layer_norm", "the weight")?;
        let bias = contiguous_f32(s3, l3, "layer_norm", "the bias")?;
        let d = l1.shape().dims().last().copied().unwrap_or(0);
        if d == 0 || weight.len() != d || bias.len() != d {
            candle_core::bail!(
                "layer_norm: rows of {d} values, {} weights, {} biases",
                weight.len(),
                bias.len()
            );
        }
        let rows = x.len() / d;
        let mut y = vec![0f32; x.len()];
        let mut stats = vec![(0f32, 0f32); rows];
        let ranges = row_parts(rows, d);
        let stat_parts: Vec<_> = pieces(&mut stats, ranges.clone(), 1)
            .into_iter()
            .map(|(_, piece)| piece)
            .collect();
        let parts: Vec<_> = pieces(&mut y, ranges, d)
            .into_iter()
            .zip(stat_parts)
            .collect();
        run_parts(parts, |((range, out), st)| {
            for ((row, yr), s) in range.zip(out.chunks_mut(d)).zip(st.iter_mut()) {
                let xr = &x[row * d..(row + 1) * d];
                // As layer_norm_slow: the mean, the mean of the centred squares, 1 / sqrt(+ eps).
                let mean = xr.iter().sum::<f32>() / d as f32;
                let var = xr.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / d as f32;
                let rstd = 1.0 / (var + self.eps).sqrt();
                for (((o, &v), &w), &b) in yr.iter_mut().zip(xr).zip(weight).zip(bias) {
                    *o = (v - mean) * rstd * w + b;
                }
                *s = (mean, rstd);
            }
            Ok(())
        })?;
        self.stats.put(stats)?;
        Ok((CpuStorage::F32(y), l1.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        weight: &Tensor,
        _bias: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let params = Slot::new();
        let dx = x.contiguous()?.apply_op3_no_bwd(
            &weight.contiguous()?,
            &grad_res.contiguous()?,
            &LayerNormBackward {
                stats: self
                    .stats
                    .get("layer_norm statistics from a forward pass")?,
                params: params.share(),
            },
        )?;
        let (dweight, dbias) = params.get("layer_norm weight gradient")?;
        let device = x.device();
        Ok((
            Some(dx),
            Some(Tensor::from_vec(dweight, weight.shape(), device)?),
            Some(Tensor::from_vec(dbias, weight.shape(), device)?),
        ))
    }
}

/// The backward pass of [`LayerNormOp`] over (input, weight, output gradient): the input
/// gradient, with the weight and bias gradients left in `params`.
struct LayerNormBackward {
    stats: RowStats,
    params: Slot<(Vec<f32>, Vec<f32>)>,
}

impl CustomOp3 for LayerNormBackward {
    fn name(&self) -> &'static str {
        "layer_norm_rows_backward"
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
        let x = contiguous_f32(s1, l1, "layer_norm backward", "the input")?;
        let weight = contiguous_f32(s2, l2, "layer_norm backward", "the weight")?;
        let dy = contiguous_f32(s3, l3, "layer_norm backward", "the output gradient")?;
        let d = weight.len();
        if d == 0 || x.len() % d != 0 || dy.len() != x.len() || self.stats.len() * d != x.len() {
            candle_core::bail!("layer_norm backward: shapes do not match");
        }
        let rows = x.len() / d;
        let mut dx = vec![0f32; x.len()];
        let ranges = row_parts(rows, d);
        let n_parts = ranges.len();
        // One (weight, bias) gradient sum per part, added together at the end.
        let mut sums = vec![0f32; n_parts * 2 * d];
        let parts: Vec<_> = pieces(&mut dx, ranges, d)
            .into_iter()
            .zip(sums.chunks_mut(2 * d))
            .collect();
        run_parts(parts, |((range, out), sum)| {
            let (dw, db) = sum.split_at_mut(d);
            for (row, dxr) in range.zip(out.chunks_mut(d)) {
                let (xr, dyr) = (&x[row * d..(row + 1) * d], &dy[row * d..(row + 1) * d]);
                let (mean, rstd) = self.stats[row];
                // g = dy * w; dx = rstd * (g - mean(g) - xhat * mean(g * xhat)).
                let (mut sum_g, mut sum_g_xhat) = (0f32, 0f32);
                for (((&v, &g), &w), (dwi, dbi)) in xr
                    .iter()
                    .zip(dyr)
                    .zip(weight)
                    .zip(dw.iter_mut().zip(db.iter_mut()))
                {
                    let xhat = (v - mean) * rstd;
                    sum_g += g * w;
                    sum_g_xhat += g * w * xhat;
                    *dwi += g * xhat;
                    *dbi += g;
                }
                let (mean_g, mean_g_xhat) = (sum_g / d as f32, sum_g_xhat / d as f32);
                for (((o, &v), &g), &w) in dxr.iter_mut().zip(xr).zip(dyr).zip(weight) {
                    let xhat = (v - mean) * rstd;
                    *o = rstd * (g * w - mean_g - xhat * mean_g_xhat);
                }
            }
            Ok(())
        })?;
        let total = sum_blocks(&sums, 2 * d);
        let (dweight, dbias) = total.split_at(d);
        let (dweight, dbias) = (dweight.to_vec(), dbias.to_vec());
        self.params.put((dweight, dbias))?;
        Ok((CpuStorage::F32(dx), l1.shape().clone()))
    }
}

/// Layer normalisation of `x` over its last dimension, scaled by `weight` and shifted by `bias`
/// (`[d]`), with a backward pass to all three: one op on the CPU for f32, the composed form
/// elsewhere.
pub fn layer_norm(x: &Tensor, weight: &Tensor, bias: &Tensor, eps: f32) -> Result<Tensor> {
    if !x.device().is_cpu() || x.dtype() != candle_core::DType::F32 {
        return candle_nn::ops::layer_norm_slow(x, weight, bias, eps);
    }
    x.contiguous()?.apply_op3(
        &weight.contiguous()?,
        &bias.contiguous()?,
        LayerNormOp {
            eps,
            stats: Slot::new(),
        },
    )
}

struct SoftmaxOp;

impl CustomOp1 for SoftmaxOp {
    fn name(&self) -> &'static str {
        "softmax_rows"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = contiguous_f32(storage, layout, "softmax", "the input")?;
        let d = layout.shape().dims().last().copied().unwrap_or(0);
        if d == 0 {
            candle_core::bail!("softmax: rows of no values");
        }
        let mut y = vec![0f32; x.len()];
        let parts = pieces(&mut y, row_parts(x.len() / d, d), d);
        run_parts(parts, |(range, out)| {
            for (row, yr) in range.zip(out.chunks_mut(d)) {
                let xr = &x[row * d..(row + 1) * d];
                let max = xr.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let mut sum = 0f32;
                for (o, &v) in yr.iter_mut().zip(xr) {
                    *o = (v - max).exp();
                    sum += *o;
                }
                yr.iter_mut().for_each(|o| *o /= sum);
            }
            Ok(())
        })?;
        Ok((CpuStorage::F32(y), layout.shape().clone()))
    }

    fn bwd(&self, _arg: &Tensor, res: &Tensor, grad_res: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(res.contiguous()?.apply_op2_no_bwd(
            &grad_res.contiguous()?,
            &SoftmaxBackward,
        )?))
    }
}

/// The backward pass of [`SoftmaxOp`] over (output, output gradient):
/// `dx = y * (dy - sum(dy * y))` per row.
struct SoftmaxBackward;

impl CustomOp2 for SoftmaxBackward {
    fn name(&self) -> &'static str {
        "softmax_rows_backward"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let y = contiguous_f32(s1, l1, "softmax backward", "the output")?;
        let dy = contiguous_f32(s2, l2, "softmax backward", "the output gradient")?;
        let d = l1.shape().dims().last().copied().unwrap_or(0);
        if d == 0 || dy.len() != y.len() {
            candle_core::bail!("softmax backward: shapes do not match");
        }
        let mut dx = vec![0f32; y.len()];
        let parts = pieces(&mut dx, row_parts(y.len() / d, d), d);
        run_parts(parts, |(range, out)| {
            for (row, dxr) in range.zip(out.chunks_mut(d)) {
                let (yr, dyr) = (&y[row * d..(row + 1) * d], &dy[row * d..(row + 1) * d]);
                let dot: f32 = yr.iter().zip(dyr).map(|(a, b)| a * b).sum();
                for ((o, &a), &g) in dxr.iter_mut().zip(yr).zip(dyr) {
                    *o = a * (g - dot);
                }
            }
            Ok(())
        })?;
        Ok((CpuStorage::F32(dx), l1.shape().clone()))
    }
}

/// Softmax over the last dimension, with a backward pass: one op on the CPU for f32, the
/// composed form elsewhere.
pub fn softmax_last_dim(x: &Tensor) -> Result<Tensor> {
    if !x.device().is_cpu() || x.dtype() != candle_core::DType::F32 {
        return candle_nn::ops::softmax(x, D::Minus1);
    }
    x.contiguous()?.apply_op1(SoftmaxOp)
}

/// `x + bias` over the last dimension (a linear layer's bias): the bias gradient is the output
/// gradient's column sums, read row by row.
struct AddBias;

impl CustomOp2 for AddBias {
    fn name(&self) -> &'static str {
        "add_bias_rows"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let x = contiguous_f32(s1, l1, "add_bias", "the input")?;
        let bias = contiguous_f32(s2, l2, "add_bias", "the bias")?;
        let d = bias.len();
        if d == 0 || l1.shape().dims().last() != Some(&d) {
            candle_core::bail!("add_bias: a bias of {d} values for {:?}", l1.shape());
        }
        let mut y = x.to_vec();
        for row in y.chunks_mut(d) {
            row.iter_mut().zip(bias).for_each(|(v, b)| *v += b);
        }
        Ok((CpuStorage::F32(y), l1.shape().clone()))
    }

    fn bwd(
        &self,
        _x: &Tensor,
        bias: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let d = bias.elem_count();
        let g = grad_res.contiguous()?;
        let rows = g.elem_count() / d.max(1);
        let dbias = g.reshape((rows, d))?.apply_op1_no_bwd(&ColumnSums)?;
        Ok((Some(g), Some(dbias.reshape(bias.shape())?)))
    }
}

/// `[rows, d]` -> `[d]`: each column's sum, accumulated row by row in f32.
struct ColumnSums;

impl CustomOp1 for ColumnSums {
    fn name(&self) -> &'static str {
        "column_sums"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = contiguous_f32(storage, layout, "column_sums", "the input")?;
        let (_, d) = layout.shape().dims2()?;
        let mut sums = vec![0f32; d];
        for row in x.chunks(d.max(1)) {
            sums.iter_mut().zip(row).for_each(|(s, v)| *s += v);
        }
        Ok((CpuStorage::F32(sums), Shape::from(d)))
    }
}

/// `x + bias` over the last dimension, with a backward pass to both: one op on the CPU for f32,
/// Candle's broadcast add elsewhere.
pub fn add_bias(x: &Tensor, bias: &Tensor) -> Result<Tensor> {
    if !x.device().is_cpu() || x.dtype() != candle_core::DType::F32 {
        return x.broadcast_add(bias);
    }
    x.contiguous()?.apply_op2(&bias.contiguous()?, AddBias)
}

/// A linear layer over the last dimension of `x` (`[..., in]` -> `[..., out]`): one matrix
/// product of the rows against the weight (no weight broadcast over the batch, whose gradient
/// Candle sums back afterwards) and [`add_bias`]. Same parameters and result as
/// `candle_nn::Linear::forward`. Inside a mixed-precision scope ([`crate::model::precision`])
/// the product runs in the scope's type.
pub fn linear(x: &Tensor, layer: &candle_nn::Linear) -> Result<Tensor> {
    let w = layer.weight();
    let (out, inp) = w.dims2()?;
    let dims = x.dims();
    if dims.last() != Some(&inp) {
        candle_core::bail!("linear: {:?} into a layer taking {inp} values", x.shape());
    }
    let rows = x.elem_count() / inp.max(1);
    let x = x.reshape((rows, inp))?;
    // Inside a mixed-precision scope the product runs in its type; the bias and what follows
    // stay `f32`.
    let y = match crate::model::precision::cast_operands(&x, w)? {
        Some((x, w)) => x.matmul(&w.t()?)?.to_dtype(candle_core::DType::F32)?,
        None => x.matmul(&w.t()?)?,
    };
    let y = match layer.bias() {
        Some(b) => add_bias(&y, b)?,
        None => y,
    };
    let mut shape = dims.to_vec();
    if let Some(last) = shape.last_mut() {
        *last = out;
    }
    y.reshape(shape)
}

/// GELU (the tanh approximation, as Candle's `gelu`) with its derivative in one pass.
struct Gelu;

const SQRT_2_OVER_PI: f32 = 0.797_884_6;
const GELU_CUBIC: f32 = 0.044_715;

impl CustomOp1 for Gelu {
    fn name(&self) -> &'static str {
        "gelu_tanh"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = contiguous_f32(storage, layout, "gelu", "the input")?;
        let y = x
            .iter()
            .map(|&v| 0.5 * v * (1.0 + (SQRT_2_OVER_PI * v * (1.0 + GELU_CUBIC * v * v)).tanh()))
            .collect();
        Ok((CpuStorage::F32(y), layout.shape().clone()))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad_res: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(arg.contiguous()?.apply_op2_no_bwd(
            &grad_res.contiguous()?,
            &GeluBackward,
        )?))
    }
}

/// The backward pass of [`Gelu`] over (input, output gradient), by the derivative Candle's
/// backward uses: `0.5 + 0.5 tanh(u) + (0.0535161 x³ + 0.398942 x)(1 - tanh(u)²)`.
struct GeluBackward;

impl CustomOp2 for GeluBackward {
    fn name(&self) -> &'static str {
        "gelu_tanh_backward"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let x = contiguous_f32(s1, l1, "gelu backward", "the input")?;
        let dy = contiguous_f32(s2, l2, "gelu backward", "the output gradient")?;
        if dy.len() != x.len() {
            candle_core::bail!("gelu backward: shapes do not match");
        }
        let dx = x
            .iter()
            .zip(dy)
            .map(|(&v, &g)| {
                let cube = v * v * v;
                let t = (0.035_677_4 * cube + 0.797_885 * v).tanh();
                g * (0.5 * t + (0.053_516_1 * cube + 0.398_942 * v) * (1.0 - t * t) + 0.5)
            })
            .collect();
        Ok((CpuStorage::F32(dx), l1.shape().clone()))
    }
}

/// GELU (tanh approximation) with a backward pass: one op on the CPU for f32, Candle's `gelu`
/// elsewhere.
pub fn gelu(x: &Tensor) -> Result<Tensor> {
    if !x.device().is_cpu() || x.dtype() != candle_core::DType::F32 {
        return x.gelu();
    }
    x.contiguous()?.apply_op1(Gelu)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};
    use rand::{Rng, SeedableRng};

    fn random(shape: &[usize], rng: &mut rand_chacha::ChaCha8Rng) -> Tensor {
        let n: usize = shape.iter().product();
        let v: Vec<f32> = (0..n).map(|_| rng.random_range(-2.0..3.0)).collect();
        Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
    }

    fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
        assert_eq!(a.dims(), b.dims());
        (a - b)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap()
    }

    #[test]
    fn the_fused_layer_norm_equals_the_composed_one_in_values_and_gradients() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(31);
        // Shapes below and above the size that splits rows over the pool; d == rows among them.
        for shape in [
            vec![3, 5],
            vec![2, 7, 7],
            vec![16, 96, 64],
            vec![4, 1],
            vec![2, 3, 40, 64],
        ] {
            let d = *shape.last().unwrap();
            let x = Var::from_tensor(&random(&shape, &mut rng)).unwrap();
            let w = Var::from_tensor(&random(&[d], &mut rng)).unwrap();
            let b = Var::from_tensor(&random(&[d], &mut rng)).unwrap();
            let weights = random(&shape, &mut rng);
            let fused = layer_norm(x.as_tensor(), w.as_tensor(), b.as_tensor(), 1e-5).unwrap();
            let composed =
                candle_nn::ops::layer_norm_slow(x.as_tensor(), w.as_tensor(), b.as_tensor(), 1e-5)
                    .unwrap();
            let case = format!("{shape:?}");
            assert!(max_diff(&fused, &composed) < 1e-4, "values, {case}");
            let g1 = (&fused * &weights)
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap();
            let g2 = (&composed * &weights)
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap();
            for (name, v) in [("input", &x), ("weight", &w), ("bias", &b)] {
                let (a, e) = (
                    g1.get(v.as_tensor()).unwrap(),
                    g2.get(v.as_tensor()).unwrap(),
                );
                // Weight and bias gradients are sums over every row, added in another order:
                // compared relative to their size.
                let scale = e
                    .abs()
                    .unwrap()
                    .max_all()
                    .unwrap()
                    .to_scalar::<f32>()
                    .unwrap();
                assert!(
                    max_diff(a, e) < 1e-5 * scale.max(1.0) + 1e-4,
                    "{name} gradient, {case}: {} against a scale of {scale}",
                    max_diff(a, e)
                );
            }
        }
    }

    #[test]
    fn the_fused_softmax_equals_the_composed_one_in_values_and_gradients() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(37);
        for shape in [
            vec![3, 5],
            vec![16, 4, 96, 96],
            vec![2, 4, 29, 100],
            vec![5, 1],
        ] {
            let x = Var::from_tensor(&(random(&shape, &mut rng) * 4.0).unwrap()).unwrap();
            let weights = random(&shape, &mut rng);
            let fused = softmax_last_dim(x.as_tensor()).unwrap();
            let composed = candle_nn::ops::softmax(x.as_tensor(), D::Minus1).unwrap();
            let case = format!("{shape:?}");
            assert!(max_diff(&fused, &composed) < 1e-6, "values, {case}");
            let g1 = (&fused * &weights)
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap();
            let g2 = (&composed * &weights)
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap();
            let (a, e) = (
                g1.get(x.as_tensor()).unwrap(),
                g2.get(x.as_tensor()).unwrap(),
            );
            assert!(max_diff(a, e) < 1e-5, "input gradient, {case}");
        }
    }

    #[test]
    fn the_fused_linear_layer_and_gelu_equal_candles_in_values_and_gradients() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(41);
        for (shape, out) in [
            (vec![16, 96, 64], 128),
            (vec![3, 5], 5),
            (vec![2, 3, 4, 7], 2),
        ] {
            let inp = *shape.last().unwrap();
            let x = Var::from_tensor(&random(&shape, &mut rng)).unwrap();
            let w = Var::from_tensor(&random(&[out, inp], &mut rng)).unwrap();
            let b = Var::from_tensor(&random(&[out], &mut rng)).unwrap();
            let layer = candle_nn::Linear::new(w.as_tensor().clone(), Some(b.as_tensor().clone()));
            let ours = gelu(&linear(x.as_tensor(), &layer).unwrap()).unwrap();
            let theirs = candle_core::Module::forward(&layer, x.as_tensor())
                .unwrap()
                .gelu()
                .unwrap();
            let case = format!("{shape:?} -> {out}");
            assert!(max_diff(&ours, &theirs) < 1e-4, "values, {case}");
            let weights = random(ours.dims(), &mut rng);
            let g1 = (&ours * &weights)
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap();
            let g2 = (&theirs * &weights)
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap();
            for (name, v) in [("input", &x), ("weight", &w), ("bias", &b)] {
                let (a, e) = (
                    g1.get(v.as_tensor()).unwrap(),
                    g2.get(v.as_tensor()).unwrap(),
                );
                let scale = e
                    .abs()
                    .unwrap()
                    .max_all()
                    .unwrap()
                    .to_scalar::<f32>()
                    .unwrap();
                assert!(
                    max_diff(a, e) < 1e-5 * scale.max(1.0) + 1e-4,
                    "{name} gradient, {case}: {} against a scale of {scale}",
                    max_diff(a, e)
                );
            }
        }
    }

    #[test]
    fn a_layer_norm_with_mismatched_parameters_is_an_error() {
        let x = Tensor::zeros((2, 4), candle_core::DType::F32, &Device::Cpu).unwrap();
        let w = Tensor::ones(3, candle_core::DType::F32, &Device::Cpu).unwrap();
        assert!(layer_norm(&x, &w, &w, 1e-5).is_err());
    }
}
