//! The layers the image encoders, the BERT and the ASG model share: layer norm, attention,
//! feed-forward, transformer encoder and query-decoder layers, an im2col convolution and a batch
//! norm. On the CPU the convolution, batch norm + ReLU, layer norm and softmax run as ops with
//! their own backward ([`crate::model::conv`], [`crate::model::bn_relu`],
//! [`crate::model::transformer_ops`]; Candle's fused layer norm and softmax have none); elsewhere as
//! composed Candle operations, which those ops are tested equal to.

use crate::model::transformer_ops::{gelu, linear};
use candle_core::{DType, Result, Tensor, D};
use candle_nn::{Linear, VarBuilder};

const LN_EPS: f32 = 1e-5;
pub(crate) const BN_EPS: f64 = 1e-5;
const NORM_EPS: f64 = 1e-6;

/// Rows scaled to unit L2 norm.
pub fn l2_normalize(x: &Tensor) -> Result<Tensor> {
    let norm = (x.sqr()?.sum_keepdim(D::Minus1)?.sqrt()? + NORM_EPS)?;
    x.broadcast_div(&norm)
}

/// 1 / (1 + exp(-x)), written out so that it has a backward pass.
pub fn sigmoid(x: &Tensor) -> Result<Tensor> {
    (x.neg()?.exp()? + 1.0)?.recip()
}

/// Layer normalisation over the last dimension (composed: it trains).
pub struct LayerNorm {
    pub(crate) weight: Tensor,
    pub(crate) bias: Tensor,
    pub(crate) eps: f32,
}

impl LayerNorm {
    pub fn new(dim: usize, vb: VarBuilder) -> Result<Self> {
        Self::new_eps(dim, LN_EPS as f64, vb)
    }

    pub fn new_eps(dim: usize, eps: f64, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            weight: vb.get_with_hints(dim, "weight", candle_nn::Init::Const(1.0))?,
            bias: vb.get_with_hints(dim, "bias", candle_nn::Init::Const(0.0))?,
            eps: eps as f32,
        })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        crate::model::transformer_ops::layer_norm(x, &self.weight, &self.bias, self.eps)
    }
}

/// Multi-head attention; returns the output and the attention weights `[b, heads, tq, tk]`.
pub struct Attention {
    pub(crate) q: Linear,
    pub(crate) k: Linear,
    pub(crate) v: Linear,
    pub(crate) o: Linear,
    pub(crate) heads: usize,
}

impl Attention {
    pub fn new(dim: usize, heads: usize, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            q: candle_nn::linear(dim, dim, vb.pp("q"))?,
            k: candle_nn::linear(dim, dim, vb.pp("k"))?,
            v: candle_nn::linear(dim, dim, vb.pp("v"))?,
            o: candle_nn::linear(dim, dim, vb.pp("o"))?,
            heads,
        })
    }

    /// `query` `[b, tq, d]`, `memory` `[b, tk, d]`, `mask` additive `[b, 1, 1, tk]` (0 or -1e4).
    pub fn forward(
        &self,
        query: &Tensor,
        memory: &Tensor,
        mask: Option<&Tensor>,
    ) -> Result<(Tensor, Tensor)> {
        let (b, tq, d) = query.dims3()?;
        let tk = memory.dim(1)?;
        let h = self.heads;
        let dh = d / h;
        let split = |x: Tensor, t: usize| -> Result<Tensor> {
            x.reshape((b, t, h, dh))?.transpose(1, 2)?.contiguous()
        };
        let q = split(linear(query, &self.q)?, tq)?;
        let k = split(linear(memory, &self.k)?, tk)?;
        let v = split(linear(memory, &self.v)?, tk)?;
        let mut scores = (q.matmul(&k.transpose(2, 3)?.contiguous()?)? / (dh as f64).sqrt())?;
        if let Some(m) = mask {
            scores = scores.broadcast_add(m)?;
        }
        let attn = crate::model::transformer_ops::softmax_last_dim(&scores)?;
        let out = attn
            .matmul(&v)?
            .transpose(1, 2)?
            .contiguous()?
            .reshape((b, tq, d))?;
        Ok((linear(&out, &self.o)?, attn))
    }
}

/// Two linear layers with a GELU between.
pub struct FeedForward {
    pub(crate) a: Linear,
    pub(crate) b: Linear,
}

impl FeedForward {
    pub fn new(dim: usize, hidden: usize, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            a: candle_nn::linear(dim, hidden, vb.pp("a"))?,
            b: candle_nn::linear(hidden, dim, vb.pp("b"))?,
        })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        linear(&gelu(&linear(x, &self.a)?)?, &self.b)
    }
}

/// A pre-norm transformer encoder layer.
pub struct EncoderLayer {
    pub(crate) ln1: LayerNorm,
    pub(crate) attn: Attention,
    pub(crate) ln2: LayerNorm,
    pub(crate) ff: FeedForward,
}

impl EncoderLayer {
    pub fn new(dim: usize, heads: usize, ff: usize, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            ln1: LayerNorm::new(dim, vb.pp("ln1"))?,
            attn: Attention::new(dim, heads, vb.pp("attn"))?,
            ln2: LayerNorm::new(dim, vb.pp("ln2"))?,
            ff: FeedForward::new(dim, ff, vb.pp("ff"))?,
        })
    }

    pub fn forward(&self, x: &Tensor, mask: &Tensor) -> Result<Tensor> {
        let n = self.ln1.forward(x)?;
        let x = (x + self.attn.forward(&n, &n, Some(mask))?.0)?;
        &x + self.ff.forward(&self.ln2.forward(&x)?)?
    }
}

/// A query decoder layer (Query2Label / DETR): self-attention among the queries, cross-attention
/// to the image grid, feed-forward. Returns the cross-attention weights too.
pub struct DecoderLayer {
    pub(crate) ln0: LayerNorm,
    pub(crate) self_attn: Attention,
    pub(crate) ln1: LayerNorm,
    pub(crate) cross: Attention,
    pub(crate) ln2: LayerNorm,
    pub(crate) ff: FeedForward,
}

impl DecoderLayer {
    pub fn new(dim: usize, heads: usize, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            ln0: LayerNorm::new(dim, vb.pp("ln0"))?,
            self_attn: Attention::new(dim, heads, vb.pp("self_attn"))?,
            ln1: LayerNorm::new(dim, vb.pp("ln1"))?,
            cross: Attention::new(dim, heads, vb.pp("cross"))?,
            ln2: LayerNorm::new(dim, vb.pp("ln2"))?,
            ff: FeedForward::new(dim, dim * 2, vb.pp("ff"))?,
        })
    }

    pub fn forward(&self, q: &Tensor, memory: &Tensor) -> Result<(Tensor, Tensor)> {
        let n = self.ln0.forward(q)?;
        let q = (q + self.self_attn.forward(&n, &n, None)?.0)?;
        let (c, attn) = self.cross.forward(&self.ln1.forward(&q)?, memory, None)?;
        let q = (q + c)?;
        let q = (&q + self.ff.forward(&self.ln2.forward(&q)?)?)?;
        Ok((q, attn))
    }
}

/// Learned queries through decoder layers over the image grid.
pub struct QueryDecoder {
    pub(crate) queries: Tensor,
    pub(crate) layers: Vec<DecoderLayer>,
    pub(crate) ln: LayerNorm,
}

impl QueryDecoder {
    pub fn new(n: usize, dim: usize, layers: usize, heads: usize, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            queries: vb.get_with_hints(
                (n, dim),
                "queries",
                candle_nn::Init::Randn {
                    mean: 0.0,
                    stdev: 0.5,
                },
            )?,
            layers: (0..layers.max(1))
                .map(|i| DecoderLayer::new(dim, heads, vb.pp(format!("layer{i}"))))
                .collect::<Result<_>>()?,
            ln: LayerNorm::new(dim, vb.pp("ln"))?,
        })
    }

    /// `memory` `[b, cells, dim]` -> query states `[b, n, dim]` and the last layer's
    /// cross-attention averaged over heads `[b, n, cells]`.
    pub fn forward(&self, memory: &Tensor) -> Result<(Tensor, Tensor)> {
        let b = memory.dim(0)?;
        let (n, d) = self.queries.dims2()?;
        let mut q = self
            .queries
            .unsqueeze(0)?
            .broadcast_as((b, n, d))?
            .contiguous()?;
        let mut attn = None;
        for layer in &self.layers {
            let (nq, a) = layer.forward(&q, memory)?;
            q = nq;
            attn = Some(a);
        }
        let attn = match attn {
            Some(a) => a.mean(1)?,
            None => Tensor::zeros((b, n, memory.dim(1)?), DType::F32, memory.device())?,
        };
        Ok((self.ln.forward(&q)?, attn))
    }
}

/// A k x k convolution (no bias) written as im2col + matrix products: Candle's CPU convolution
/// backward runs a naive transposed convolution; this form's backward is matrix products and
/// copies. Same result as `Tensor::conv2d` (tested), weight layout `[out, in, k, k]`. On the CPU
/// it is one op with its own backward ([`crate::model::conv`]); elsewhere (CUDA) it is composed
/// of Candle operations ([`conv2d_composed`]). Inside a mixed-precision scope
/// ([`crate::model::precision`]) it multiplies in the scope's type and returns `f32`.
pub fn conv2d(x: &Tensor, weight: &Tensor, stride: usize, pad: usize) -> Result<Tensor> {
    if let Some((x, weight)) = crate::model::precision::cast_operands(x, weight)? {
        return conv2d_composed(&x, &weight, stride, pad)?.to_dtype(DType::F32);
    }
    if !x.device().is_cpu() || x.dtype() != DType::F32 {
        return conv2d_composed(x, weight, stride, pad);
    }
    crate::model::conv::conv2d(x, weight, stride, pad)
}

/// [`conv2d`] from composed Candle operations (a narrow and a subsample per kernel tap, then a
/// stack): what the fused CPU op is tested against, and the form other devices run.
pub fn conv2d_composed(x: &Tensor, weight: &Tensor, stride: usize, pad: usize) -> Result<Tensor> {
    let (b, c, h, w) = x.dims4()?;
    let (cout, _, k, _) = weight.dims4()?;
    let (oh, ow) = (
        (h + 2 * pad - k) / stride + 1,
        (w + 2 * pad - k) / stride + 1,
    );
    let xp = x.pad_with_zeros(2, pad, pad)?.pad_with_zeros(3, pad, pad)?;
    let mut cols = Vec::with_capacity(k * k);
    for ky in 0..k {
        for kx in 0..k {
            let rows = (oh - 1) * stride + 1;
            let colsn = (ow - 1) * stride + 1;
            cols.push(subsample(
                &xp.narrow(2, ky, rows)?.narrow(3, kx, colsn)?,
                stride,
            )?);
        }
    }
    let cols = Tensor::stack(&cols, 2)?.reshape((b, c * k * k, oh * ow))?;
    let wm = weight.reshape((cout, c * k * k))?;
    wm.broadcast_matmul(&cols)?.reshape((b, cout, oh, ow))
}

/// Every `stride`-th row and column of `[b, c, h, w]`, starting at 0 (a copy for stride 1 is
/// avoided): `[b, c, ceil(h / stride), ceil(w / stride)]`, with a backward pass.
pub fn subsample(x: &Tensor, stride: usize) -> Result<Tensor> {
    if stride <= 1 {
        return Ok(x.clone());
    }
    let (b, c, h, w) = x.dims4()?;
    let (oh, ow) = ((h - 1) / stride + 1, (w - 1) / stride + 1);
    x.pad_with_zeros(2, 0, oh * stride - h)?
        .pad_with_zeros(3, 0, ow * stride - w)?
        .reshape((b, c, oh, stride, ow, stride))?
        .narrow(3, 0, 1)?
        .narrow(5, 0, 1)?
        .reshape((b, c, oh, ow))
}

/// A 3x3 convolution with padding 1 (see [`conv2d`]).
pub fn conv3x3(x: &Tensor, weight: &Tensor, stride: usize) -> Result<Tensor> {
    conv2d(x, weight, stride, 1)
}

/// Batch normalisation over `[b, c, h, w]` without the two transposed copies of Candle's
/// `BatchNorm` (statistics reduced in place; scale and shift folded per channel): the image
/// encoder's step was dominated by them. Same parameters and running statistics, same momentum
/// (0.1) and unbiased running variance (tested against `candle_nn::BatchNorm`).
pub struct Bn {
    pub(crate) weight: Tensor,
    pub(crate) bias: Tensor,
    pub(crate) running_mean: candle_core::Var,
    pub(crate) running_var: candle_core::Var,
}

impl Bn {
    pub fn new(c: usize, vb: VarBuilder) -> Result<Self> {
        let rm = vb.get_with_hints(c, "running_mean", candle_nn::Init::Const(0.0))?;
        let rv = vb.get_with_hints(c, "running_var", candle_nn::Init::Const(1.0))?;
        Ok(Self {
            weight: vb.get_with_hints(c, "weight", candle_nn::Init::Const(1.0))?,
            bias: vb.get_with_hints(c, "bias", candle_nn::Init::Const(0.0))?,
            running_mean: candle_core::Var::from_tensor(&rm)?,
            running_var: candle_core::Var::from_tensor(&rv)?,
        })
    }

    pub fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let (b, c, h, w) = x.dims4()?;
        let per = |t: &Tensor| t.reshape((1, c, 1, 1));
        if !train {
            let scale = (self.weight.clone() / (self.running_var.as_tensor() + BN_EPS)?.sqrt()?)?;
            let shift = (&self.bias - (self.running_mean.as_tensor() * &scale)?)?;
            return x.broadcast_mul(&per(&scale)?)?.broadcast_add(&per(&shift)?);
        }
        let n = (b * h * w) as f64;
        let mean = (x.sum_keepdim(3)?.sum_keepdim(2)?.sum_keepdim(0)? / n)?; // [1, c, 1, 1]
        let xc = x.broadcast_sub(&mean)?;
        let var = (xc.sqr()?.sum_keepdim(3)?.sum_keepdim(2)?.sum_keepdim(0)? / n)?;
        self.update_running(
            &mean.flatten_all()?.detach(),
            &var.flatten_all()?.detach(),
            n,
        )?;
        let scale = per(&self.weight)?.broadcast_div(&(var + BN_EPS)?.sqrt()?)?;
        xc.broadcast_mul(&scale)?.broadcast_add(&per(&self.bias)?)
    }

    /// [`Bn::forward_t`] then ReLU. Training on the CPU runs one fused op with its own backward
    /// ([`crate::model::bn_relu`]); inference and other devices run the composed form.
    pub fn forward_relu(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        if !train || !x.device().is_cpu() || x.dtype() != DType::F32 {
            return self.forward_t(x, train)?.relu();
        }
        let (y, stats) = crate::model::bn_relu::bn_relu(x, &self.weight, &self.bias, BN_EPS)?;
        let c = stats.mean.len();
        self.update_running(
            &Tensor::from_slice(&stats.mean, c, x.device())?,
            &Tensor::from_slice(&stats.var, c, x.device())?,
            stats.count as f64,
        )?;
        Ok(y)
    }

    /// Folds a batch's per-channel mean and (biased) variance over `n` values into the running
    /// statistics: momentum 0.1, the variance made unbiased.
    fn update_running(&self, mean: &Tensor, var: &Tensor, n: f64) -> Result<()> {
        let momentum = 0.1;
        let rm = ((self.running_mean.as_tensor() * (1.0 - momentum))? + (mean * momentum)?)?;
        let rv = ((self.running_var.as_tensor() * (1.0 - momentum))?
            + (var * (momentum * n / (n - 1.0).max(1.0)))?)?;
        self.running_mean.set(&rm)?;
        self.running_var.set(&rv)
    }
}

/// Convolution + batch norm + ReLU.
pub struct ConvBn {
    pub(crate) weight: Tensor,
    pub(crate) stride: usize,
    pub(crate) bn: Bn,
}

impl ConvBn {
    pub fn new(cin: usize, cout: usize, stride: usize, vb: VarBuilder) -> Result<Self> {
        let bound = (6.0 / (cin * 9) as f64).sqrt();
        Ok(Self {
            weight: vb.pp("conv").get_with_hints(
                (cout, cin, 3, 3),
                "weight",
                candle_nn::Init::Uniform {
                    lo: -bound,
                    up: bound,
                },
            )?,
            stride,
            bn: Bn::new(cout, vb.pp("bn"))?,
        })
    }

    pub fn forward(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        self.bn
            .forward_relu(&conv3x3(x, &self.weight, self.stride)?, train)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn the_im2col_convolution_equals_candles() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let k7: Vec<f32> = (0..4 * 3 * 49)
            .map(|_| rng.random_range(-1.0..1.0))
            .collect();
        let k7 = Tensor::from_vec(k7, (4, 3, 7, 7), &Device::Cpu).unwrap();
        let x: Vec<f32> = (0..2 * 3 * 16 * 16)
            .map(|_| rng.random_range(-1.0..1.0))
            .collect();
        let x = Tensor::from_vec(x, (2, 3, 16, 16), &Device::Cpu).unwrap();
        let d = (conv2d(&x, &k7, 2, 3).unwrap() - x.conv2d(&k7, 3, 2, 1, 1).unwrap())
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap();
        assert!(d.to_scalar::<f32>().unwrap() < 1e-4);
        for (h, w, stride) in [(8, 8, 1), (8, 8, 2), (7, 9, 2), (6, 5, 1)] {
            let x: Vec<f32> = (0..2 * 3 * h * w)
                .map(|_| rng.random_range(-1.0..1.0))
                .collect();
            let k: Vec<f32> = (0..4 * 3 * 9)
                .map(|_| rng.random_range(-1.0..1.0))
                .collect();
            let x = Tensor::from_vec(x, (2, 3, h, w), &Device::Cpu).unwrap();
            let k = Tensor::from_vec(k, (4, 3, 3, 3), &Device::Cpu).unwrap();
            let ours = conv3x3(&x, &k, stride).unwrap();
            let theirs = x.conv2d(&k, 1, stride, 1, 1).unwrap();
            assert_eq!(ours.dims(), theirs.dims());
            let diff = (ours - theirs).unwrap().abs().unwrap().max_all().unwrap();
            assert!(diff.to_scalar::<f32>().unwrap() < 1e-5);
        }
    }

    #[test]
    fn our_batch_norm_equals_candles_in_training_and_inference() {
        use candle_core::ModuleT;
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(4);
        let x: Vec<f32> = (0..3 * 5 * 4 * 6)
            .map(|_| rng.random_range(-2.0..3.0))
            .collect();
        let x = Tensor::from_vec(x, (3, 5, 4, 6), &Device::Cpu).unwrap();
        let (ours_map, theirs_map) = (candle_nn::VarMap::new(), candle_nn::VarMap::new());
        let ours = Bn::new(
            5,
            VarBuilder::from_varmap(&ours_map, DType::F32, &Device::Cpu),
        )
        .unwrap();
        let theirs = candle_nn::batch_norm(
            5,
            BN_EPS,
            VarBuilder::from_varmap(&theirs_map, DType::F32, &Device::Cpu),
        )
        .unwrap();
        let close = |a: &Tensor, b: &Tensor| {
            let d = (a - b).unwrap().abs().unwrap().max_all().unwrap();
            assert!(d.to_scalar::<f32>().unwrap() < 1e-4);
        };
        for train in [true, true, false] {
            close(
                &ours.forward_t(&x, train).unwrap(),
                &theirs.forward_t(&x, train).unwrap(),
            );
        }
        close(ours.running_var.as_tensor(), theirs.running_var());
        close(ours.running_mean.as_tensor(), theirs.running_mean());
    }
}

/// What the fused-op tests share: seeded random tensors and the largest difference.
#[cfg(test)]
pub(crate) mod fused_test_support {
    use candle_core::{Device, Tensor};
    use rand::Rng;

    pub fn random(shape: &[usize], lo: f32, hi: f32, rng: &mut rand_chacha::ChaCha8Rng) -> Tensor {
        let n: usize = shape.iter().product();
        let v: Vec<f32> = (0..n).map(|_| rng.random_range(lo..hi)).collect();
        Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
    }

    /// The largest absolute value of `t`.
    pub fn max_abs(t: &Tensor) -> f32 {
        t.abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap()
    }

    pub fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
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
}

/// The fused convolution ([`crate::model::conv`]) against the composed form it replaces.
#[cfg(test)]
mod conv_tests {
    use super::{conv2d, conv2d_composed};
    use candle_core::Tensor;
    use candle_core::{Device, Var};
    use rand::SeedableRng;

    use super::fused_test_support::{max_diff, random};

    #[test]
    fn the_fused_convolution_equals_the_composed_one_in_values_and_gradients() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(17);
        // (b, c, h, w, k, stride, pad); C == H == W is a shape Candle's own conv got wrong.
        for (b, c, h, w, k, stride, pad) in [
            (2, 5, 5, 5, 3, 1, 1),
            (2, 5, 5, 5, 3, 2, 1),
            (2, 3, 16, 16, 7, 2, 3),
            (1, 4, 7, 9, 3, 2, 1),
            (3, 2, 6, 5, 3, 1, 1),
            (1, 3, 8, 8, 1, 1, 0),
            (2, 8, 8, 8, 3, 2, 0),
            // The sizes of a real feature map (large sums, many planes).
            (2, 4, 96, 96, 3, 1, 1),
            (2, 4, 97, 95, 3, 2, 1),
        ] {
            let x = Var::from_tensor(&random(&[b, c, h, w], -1.0, 1.0, &mut rng)).unwrap();
            let kernel = Var::from_tensor(&random(&[4, c, k, k], -1.0, 1.0, &mut rng)).unwrap();
            let fused = conv2d(x.as_tensor(), kernel.as_tensor(), stride, pad).unwrap();
            let composed = conv2d_composed(x.as_tensor(), kernel.as_tensor(), stride, pad).unwrap();
            let case = format!("{b}x{c}x{h}x{w} k{k} s{stride} p{pad}");
            assert!(max_diff(&fused, &composed) < 1e-5, "values, {case}");
            // A loss that weighs every output differently, so each gradient element is checked.
            let weights = random(fused.dims(), -1.0, 1.0, &mut rng);
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
            for (name, v) in [("input", &x), ("kernel", &kernel)] {
                let (a, b) = (
                    g1.get(v.as_tensor()).unwrap(),
                    g2.get(v.as_tensor()).unwrap(),
                );
                assert!(max_diff(a, b) < 1e-4, "{name} gradient, {case}");
            }
        }
    }

    #[test]
    fn a_window_larger_than_the_padded_input_is_an_error() {
        let x = Tensor::zeros((1, 1, 2, 2), candle_core::DType::F32, &Device::Cpu).unwrap();
        let k5 = Tensor::zeros((1, 1, 5, 5), candle_core::DType::F32, &Device::Cpu).unwrap();
        let k3 = Tensor::zeros((1, 1, 3, 3), candle_core::DType::F32, &Device::Cpu).unwrap();
        assert!(conv2d(&x, &k5, 1, 1).is_err());
        assert!(conv2d(&x, &k3, 0, 1).is_err());
        // A kernel over the wrong number of channels.
        let k2c = Tensor::zeros((1, 2, 3, 3), candle_core::DType::F32, &Device::Cpu).unwrap();
        assert!(conv2d(&x, &k2c, 1, 1).is_err());
    }
}

/// The fused batch norm + ReLU ([`crate::model::bn_relu`]) against the composed form.
#[cfg(test)]
mod bn_relu_tests {
    use super::Bn;
    use candle_core::{DType, Device, Tensor, Var};
    use candle_nn::VarBuilder;
    use rand::SeedableRng;

    use super::fused_test_support::{max_diff, random};

    #[test]
    fn the_fused_batch_norm_and_relu_equal_the_composed_ones() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(23);
        // C == H == W among them (a shape Candle's own conv got wrong).
        // The last has the sizes of a real feature map (sums over 18,432 values).
        for shape in [
            [3, 5, 4, 6],
            [2, 6, 6, 6],
            [1, 3, 7, 5],
            [4, 2, 1, 1],
            [2, 5, 96, 96],
        ] {
            let c = shape[1];
            let x = Var::from_tensor(&random(&shape, -2.0, 3.0, &mut rng)).unwrap();
            let gamma = random(&[c], 0.5, 1.5, &mut rng);
            let beta = random(&[c], -0.5, 0.5, &mut rng);
            let weights = random(&shape, -1.0, 1.0, &mut rng);
            let mut results = vec![];
            for fused in [true, false] {
                let mut map = candle_nn::VarMap::new();
                let bn =
                    Bn::new(c, VarBuilder::from_varmap(&map, DType::F32, &Device::Cpu)).unwrap();
                map.set_one("weight", &gamma).unwrap();
                map.set_one("bias", &beta).unwrap();
                let y = if fused {
                    bn.forward_relu(x.as_tensor(), true).unwrap()
                } else {
                    bn.forward_t(x.as_tensor(), true).unwrap().relu().unwrap()
                };
                let grads = (&y * &weights)
                    .unwrap()
                    .sum_all()
                    .unwrap()
                    .backward()
                    .unwrap();
                results.push((
                    y,
                    grads.get(x.as_tensor()).unwrap().clone(),
                    grads.get(&bn.weight).unwrap().clone(),
                    grads.get(&bn.bias).unwrap().clone(),
                    bn.running_mean.as_tensor().clone(),
                    bn.running_var.as_tensor().clone(),
                ));
            }
            let (a, b) = (&results[0], &results[1]);
            let case = format!("{shape:?}");
            assert!(max_diff(&a.0, &b.0) < 1e-5, "values, {case}");
            assert!(max_diff(&a.1, &b.1) < 1e-4, "input gradient, {case}");
            // The weight and bias gradients are sums over b * h * w values: the composed form
            // adds them in f32, the fused op in f64, so they are compared relative to their size.
            let scale = |t: &Tensor| super::fused_test_support::max_abs(t).max(1.0);
            assert!(
                max_diff(&a.2, &b.2) < 1e-5 * scale(&b.2) + 1e-4,
                "weight gradient, {case}"
            );
            assert!(
                max_diff(&a.3, &b.3) < 1e-5 * scale(&b.3) + 1e-4,
                "bias gradient, {case}"
            );
            assert!(max_diff(&a.4, &b.4) < 1e-6, "running mean, {case}");
            assert!(max_diff(&a.5, &b.5) < 1e-5, "running variance, {case}");
        }
    }
}

/// Mixed precision ([`crate::model::precision`]) in the convolution and the linear layer.
#[cfg(test)]
mod precision_tests {
    use super::fused_test_support::{max_abs, max_diff, random};
    use crate::model::precision::{autocast, Precision};
    use candle_core::{DType, Var};
    use rand::SeedableRng;

    /// A convolution and a linear layer under `bf16` against `f32`: values within bf16's
    /// rounding (8 bits of mantissa over sums of a few hundred products), gradients in `f32` and
    /// close.
    #[test]
    fn bf16_products_match_f32_within_rounding_and_give_f32_gradients() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
        let x = random(&[2, 8, 12, 12], -1.0, 1.0, &mut rng);
        let w = Var::from_tensor(&random(&[16, 8, 3, 3], -0.2, 0.2, &mut rng)).unwrap();
        let lw = Var::from_tensor(&random(&[5, 16], -0.3, 0.3, &mut rng)).unwrap();
        let lb = Var::from_tensor(&random(&[5], -0.1, 0.1, &mut rng)).unwrap();
        let run = |p: Precision| {
            let _scope = autocast(p);
            let y = super::conv2d(&x, w.as_tensor(), 1, 1).unwrap();
            assert_eq!(y.dtype(), DType::F32);
            let pooled = y.mean(3).unwrap().mean(2).unwrap();
            let layer =
                candle_nn::Linear::new(lw.as_tensor().clone(), Some(lb.as_tensor().clone()));
            let z = crate::model::transformer_ops::linear(&pooled, &layer).unwrap();
            assert_eq!(z.dtype(), DType::F32);
            let loss = z.sqr().unwrap().sum_all().unwrap();
            let grads = loss.backward().unwrap();
            let gw = grads.get(w.as_tensor()).unwrap().clone();
            let glw = grads.get(lw.as_tensor()).unwrap().clone();
            (y, z, gw, glw)
        };
        let (y32, z32, gw32, glw32) = run(Precision::F32);
        let (y16, z16, gw16, glw16) = run(Precision::Bf16);
        assert_eq!(gw16.dtype(), DType::F32);
        assert_eq!(glw16.dtype(), DType::F32);
        for (a, b, what) in [
            (&y32, &y16, "convolution"),
            (&z32, &z16, "linear"),
            (&gw32, &gw16, "convolution weight gradient"),
            (&glw32, &glw16, "linear weight gradient"),
        ] {
            let d = max_diff(a, b);
            let s = max_abs(a);
            assert!(d <= 0.02 * s, "{what}: differs by {d} at scale {s}");
            assert!(
                d > 0.0,
                "{what}: bf16 changed nothing: the cast did not happen"
            );
        }
    }
}
