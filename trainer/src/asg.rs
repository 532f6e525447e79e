//! The ASG model in Candle (DESIGN.md, "The model"): a convolutional image encoder giving a global
//! feature and a grid of local features, a transformer text encoder over the report, projection
//! heads into a shared L2-normalised space, a Query2Label tag decoder (learned tag queries
//! cross-attending the grid; its attention is the per-finding heatmap), an anatomy box head (29
//! learned region queries through the same kind of decoder), and a region-finding head over
//! region features pooled from the grid.
//!
//! Everything that trains uses composed operations (softmax, layer norm, sigmoid written out):
//! Candle's fused versions have no backward pass and would silently stop gradients.

use crate::config::ModelConfig;
use candle_core::{DType, Device, Module, Result, Tensor, D};
use candle_nn::{Embedding, Linear, VarBuilder};

/// Number of Chest ImaGenome regions and of finding tags.
pub const REGIONS: usize = 29;
pub const FINDINGS: usize = 40;
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
        candle_nn::ops::layer_norm_slow(x, &self.weight, &self.bias, self.eps)
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
        let q = split(self.q.forward(query)?, tq)?;
        let k = split(self.k.forward(memory)?, tk)?;
        let v = split(self.v.forward(memory)?, tk)?;
        let mut scores = (q.matmul(&k.transpose(2, 3)?.contiguous()?)? / (dh as f64).sqrt())?;
        if let Some(m) = mask {
            scores = scores.broadcast_add(m)?;
        }
        let attn = candle_nn::ops::softmax(&scores, D::Minus1)?;
        let out = attn
            .matmul(&v)?
            .transpose(1, 2)?
            .contiguous()?
            .reshape((b, tq, d))?;
        Ok((self.o.forward(&out)?, attn))
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
        self.b.forward(&self.a.forward(x)?.gelu()?)
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

/// A k x k convolution (no bias) written as im2col + one matrix product: Candle's CPU
/// convolution backward runs a naive transposed convolution; this form's backward is matrix
/// products and copies. Same result as `Tensor::conv2d` (tested), weight layout `[out, in, k, k]`.
pub fn conv2d(x: &Tensor, weight: &Tensor, stride: usize, pad: usize) -> Result<Tensor> {
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
        let momentum = 0.1;
        let rm = ((self.running_mean.as_tensor() * (1.0 - momentum))?
            + (mean.flatten_all()?.detach() * momentum)?)?;
        let rv = ((self.running_var.as_tensor() * (1.0 - momentum))?
            + (var.flatten_all()?.detach() * (momentum * n / (n - 1.0).max(1.0)))?)?;
        self.running_mean.set(&rm)?;
        self.running_var.set(&rv)?;
        let scale = per(&self.weight)?.broadcast_div(&(var + BN_EPS)?.sqrt()?)?;
        xc.broadcast_mul(&scale)?.broadcast_add(&per(&self.bias)?)
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
            .forward_t(&conv3x3(x, &self.weight, self.stride)?, train)?
            .relu()
    }
}

/// What the image side computes.
pub struct ImageOutput {
    /// `[b, embed]`, unit norm.
    pub global: Tensor,
    /// The image encoder's pooled features `[b, channels]` (before projection: what a linear
    /// probe reads).
    pub pooled: Tensor,
    /// Local features `[b, cells, channels]` (cells = grid side squared, row-major).
    pub grid: Tensor,
    /// `[b, findings]`.
    pub tag_logits: Tensor,
    /// The tag decoder's attention over the grid `[b, findings, cells]`.
    pub tag_attention: Tensor,
    /// Region boxes `[b, regions, 4]` as x1, y1, x2, y2 in 0..1 of the model input.
    pub boxes: Tensor,
}

/// What the text side computes.
pub struct TextOutput {
    /// `[b, embed]`, unit norm.
    pub report: Tensor,
    /// Token features `[b, tokens, text_dim]`.
    pub tokens: Tensor,
}

/// The text encoder: ours (pre-norm transformer over the corpus-trained word vocabulary) or a
/// BERT with Hugging Face names (for Bio_ClinicalBERT).
pub enum TextEncoder {
    Ours {
        token_embedding: Embedding,
        position: Tensor,
        layers: Vec<EncoderLayer>,
        ln: LayerNorm,
    },
    Bert(crate::bert::Bert),
}

/// The whole ASG model.
pub struct AsgModel {
    pub config: ModelConfig,
    pub(crate) encoder: crate::backbones::ImageEncoder,
    pub(crate) image_global: Linear,
    pub(crate) image_local: Linear,
    pub(crate) memory: Linear,
    pub(crate) memory_pos: Tensor,
    pub(crate) tag_decoder: QueryDecoder,
    pub(crate) tag_weight: Tensor,
    pub(crate) tag_bias: Tensor,
    pub(crate) box_decoder: QueryDecoder,
    pub(crate) box_head: Linear,
    pub(crate) region_head: Linear,
    pub(crate) text_encoder: TextEncoder,
    pub(crate) text_global: Linear,
    pub(crate) text_local: Linear,
}

impl AsgModel {
    /// Side of the local feature grid.
    pub fn grid_side(config: &ModelConfig) -> usize {
        crate::backbones::ImageEncoder::grid_side(config)
    }

    pub fn new(config: ModelConfig, vocab_size: usize, vb: VarBuilder) -> Result<Self> {
        let (encoder, cin) = crate::backbones::ImageEncoder::new(&config, vb.clone())?;
        let g = Self::grid_side(&config);
        let dd = config.decoder_dim;
        let td = config.text_dim;
        let e = config.embed_dim;
        Ok(Self {
            image_global: candle_nn::linear(cin, e, vb.pp("proj.image_global"))?,
            image_local: candle_nn::linear(cin, e, vb.pp("proj.image_local"))?,
            memory: candle_nn::linear(cin, dd, vb.pp("decoder.memory"))?,
            memory_pos: vb.get_with_hints(
                (g * g, dd),
                "decoder.memory_pos",
                candle_nn::Init::Randn {
                    mean: 0.0,
                    stdev: 0.1,
                },
            )?,
            tag_decoder: QueryDecoder::new(
                FINDINGS,
                dd,
                config.decoder_layers,
                config.decoder_heads,
                vb.pp("tags"),
            )?,
            tag_weight: vb.get_with_hints(
                (FINDINGS, dd),
                "tags.group_fc.weight",
                candle_nn::Init::Randn {
                    mean: 0.0,
                    stdev: (1.0 / dd as f64).sqrt(),
                },
            )?,
            tag_bias: vb.get_with_hints(
                FINDINGS,
                "tags.group_fc.bias",
                candle_nn::Init::Const(-2.0),
            )?,
            box_decoder: QueryDecoder::new(
                REGIONS,
                dd,
                config.decoder_layers,
                config.decoder_heads,
                vb.pp("boxes"),
            )?,
            box_head: candle_nn::linear(dd, 4, vb.pp("boxes.head"))?,
            region_head: candle_nn::linear(cin, FINDINGS, vb.pp("regions.head"))?,
            text_encoder: match &config.bert {
                Some(bert) => TextEncoder::Bert(crate::bert::Bert::new(bert, vb.pp("text.bert"))?),
                None => TextEncoder::Ours {
                    token_embedding: candle_nn::embedding(vocab_size, td, vb.pp("text.tokens"))?,
                    position: vb.get_with_hints(
                        (config.max_tokens, td),
                        "text.position",
                        candle_nn::Init::Randn {
                            mean: 0.0,
                            stdev: 0.02,
                        },
                    )?,
                    layers: (0..config.text_layers)
                        .map(|i| {
                            EncoderLayer::new(
                                td,
                                config.text_heads,
                                config.text_ff,
                                vb.pp(format!("text.layer{i}")),
                            )
                        })
                        .collect::<Result<_>>()?,
                    ln: LayerNorm::new(td, vb.pp("text.ln"))?,
                },
            },
            text_global: candle_nn::linear(td, e, vb.pp("proj.text_global"))?,
            text_local: candle_nn::linear(td, e, vb.pp("proj.text_local"))?,
            encoder,
            config,
        })
    }

    /// `[b, 1, size, size]` -> image outputs; `train` uses batch statistics in batch norm.
    pub fn image(&self, x: &Tensor, train: bool) -> Result<ImageOutput> {
        let (grid, pooled) = self.encoder.forward(x, train)?; // [b, cells, c], [b, c]
        let global = l2_normalize(&self.image_global.forward(&pooled)?)?;
        let memory = self
            .memory
            .forward(&grid)?
            .broadcast_add(&self.memory_pos.unsqueeze(0)?)?;
        let (tags, tag_attention) = self.tag_decoder.forward(&memory)?;
        let tag_logits = tags
            .broadcast_mul(&self.tag_weight.unsqueeze(0)?)?
            .sum(D::Minus1)?
            .broadcast_add(&self.tag_bias.unsqueeze(0)?)?;
        let (regions, _) = self.box_decoder.forward(&memory)?;
        let raw = sigmoid(&self.box_head.forward(&regions)?)?; // [b, r, 4] cx, cy, w, h
        let cx = raw.narrow(2, 0, 1)?;
        let cy = raw.narrow(2, 1, 1)?;
        let w = (raw.narrow(2, 2, 1)? * 0.5)?;
        let hh = (raw.narrow(2, 3, 1)? * 0.5)?;
        let boxes = Tensor::cat(&[(&cx - &w)?, (&cy - &hh)?, (&cx + &w)?, (&cy + &hh)?], 2)?;
        Ok(ImageOutput {
            global,
            pooled,
            grid,
            tag_logits,
            tag_attention,
            boxes,
        })
    }

    /// Region features `[b, regions, channels]`: the grid averaged over each box, each cell
    /// weighted by the area it shares with the box (RoIAlign with a 1x1 output, sampled
    /// exactly). `boxes` `[b, regions, 4]` in 0..1.
    pub fn pool_regions(&self, grid: &Tensor, boxes: &Tensor) -> Result<Tensor> {
        let g = Self::grid_side(&self.config);
        let weights = box_cell_weights(boxes, g)?; // [b, r, cells]
        weights.matmul(grid)
    }

    /// Region embeddings `[b, regions, embed]` (unit norm) and region-finding logits
    /// `[b, regions, findings]`.
    pub fn regions(&self, grid: &Tensor, boxes: &Tensor) -> Result<(Tensor, Tensor)> {
        let feats = self.pool_regions(grid, boxes)?;
        Ok((
            l2_normalize(&self.image_local.forward(&feats)?)?,
            self.region_head.forward(&feats)?,
        ))
    }

    /// Token ids `[b, t]` (u32) and mask `[b, t]` (1 for tokens, 0 for padding) -> text outputs.
    pub fn text(&self, ids: &Tensor, mask: &Tensor) -> Result<TextOutput> {
        let (_, t) = ids.dims2()?;
        let tokens = match &self.text_encoder {
            TextEncoder::Bert(bert) => bert.forward(ids, mask)?,
            TextEncoder::Ours {
                token_embedding,
                position,
                layers,
                ln,
            } => {
                let x = token_embedding
                    .forward(ids)?
                    .broadcast_add(&position.narrow(0, 0, t)?.unsqueeze(0)?)?;
                // Additive mask [b, 1, 1, t]: 0 where attended, -1e4 on padding.
                let additive = ((mask.to_dtype(DType::F32)? - 1.0)? * 1e4)?
                    .unsqueeze(1)?
                    .unsqueeze(1)?;
                let mut h = x;
                for layer in layers {
                    h = layer.forward(&h, &additive)?;
                }
                ln.forward(&h)?
            }
        };
        let cls = tokens.narrow(1, 0, 1)?.squeeze(1)?;
        Ok(TextOutput {
            report: l2_normalize(&self.text_global.forward(&cls)?)?,
            tokens,
        })
    }

    /// Sentence embeddings (unit norm): `averaging` `[b, k, t]` rows average a sentence's tokens.
    pub fn sentences(&self, tokens: &Tensor, averaging: &Tensor) -> Result<Tensor> {
        l2_normalize(&self.text_local.forward(&averaging.matmul(tokens)?)?)
    }
}

/// Per box, the share of each grid cell's area inside it, normalised to sum to 1:
/// `[b, r, 4]` (0..1 coordinates) -> `[b, r, g*g]`.
pub fn box_cell_weights(boxes: &Tensor, g: usize) -> Result<Tensor> {
    let (b, r, _) = boxes.dims3()?;
    let dev = boxes.device();
    let edges: Vec<f32> = (0..g).map(|i| i as f32 / g as f32).collect();
    let lo = Tensor::from_vec(edges.clone(), (1, 1, g), dev)?;
    let hi = (&lo + 1.0 / g as f64)?;
    let overlap = |a: &Tensor, z: &Tensor| -> Result<Tensor> {
        // [b, r, 1] box sides against [1, 1, g] cell sides -> [b, r, g] in cell units.
        let left = a.broadcast_maximum(&lo)?;
        let right = z.broadcast_minimum(&hi)?;
        ((right - left)? * g as f64)?.clamp(0f32, 1f32)
    };
    let x1 = boxes.narrow(2, 0, 1)?;
    let y1 = boxes.narrow(2, 1, 1)?;
    let x2 = boxes.narrow(2, 2, 1)?;
    let y2 = boxes.narrow(2, 3, 1)?;
    let wx = overlap(&x1, &x2)?; // [b, r, g]
    let wy = overlap(&y1, &y2)?;
    let w = wy
        .unsqueeze(3)?
        .broadcast_mul(&wx.unsqueeze(2)?)?
        .reshape((b, r, g * g))?;
    let total = (w.sum_keepdim(2)? + 1e-6)?;
    w.broadcast_div(&total)
}

/// Counts the trainable parameters (batch-norm running statistics excluded).
pub fn parameter_count(varmap: &candle_nn::VarMap) -> usize {
    varmap
        .data()
        .lock()
        .map(|d| {
            d.iter()
                .filter(|(n, _)| !n.contains("running_"))
                .map(|(_, v)| v.elem_count())
                .sum()
        })
        .unwrap_or(0)
}

/// A fresh model on `device` with parameters initialised by Candle's defaults.
pub fn new_model(
    config: &ModelConfig,
    vocab_size: usize,
    device: &Device,
) -> Result<(AsgModel, candle_nn::VarMap)> {
    let varmap = candle_nn::VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, device);
    let model = AsgModel::new(config.clone(), vocab_size, vb)?;
    Ok((model, varmap))
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn a_box_covering_two_cells_of_four_weighs_them_equally() {
        let boxes = Tensor::from_vec(vec![0.0f32, 0.0, 1.0, 0.5], (1, 1, 4), &Device::Cpu).unwrap();
        let w = box_cell_weights(&boxes, 2).unwrap().flatten_all().unwrap();
        let w: Vec<f32> = w.to_vec1().unwrap();
        for (got, want) in w.iter().zip([0.5, 0.5, 0.0, 0.0]) {
            assert!((got - want).abs() < 1e-5, "{w:?}");
        }
        // A box over a quarter of one cell and three quarters of the next.
        let boxes =
            Tensor::from_vec(vec![0.375f32, 0.0, 0.875, 0.5], (1, 1, 4), &Device::Cpu).unwrap();
        let w: Vec<f32> = box_cell_weights(&boxes, 2)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        for (got, want) in w.iter().zip([0.25, 0.75, 0.0, 0.0]) {
            assert!((got - want).abs() < 1e-5, "{w:?}");
        }
    }
}
