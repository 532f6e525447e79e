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
use crate::model::layers::{l2_normalize, sigmoid, EncoderLayer, LayerNorm, QueryDecoder};
use crate::model::transformer_ops::linear;
pub use crate::vocab::{FINDINGS, REGIONS};
use candle_core::{DType, Device, Module, Result, Tensor, D};
use candle_nn::{Embedding, Linear, VarBuilder};

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
    /// Region boxes `[b, regions, 4]` as x1, y1, x2, y2 in 0..1 of the model input. At
    /// inference (not `train`) with an anatomy head, the anatomy regions' boxes are read off
    /// their masks.
    pub boxes: Tensor,
    /// Anatomy mask logits `[b, ANATOMY.len(), side, side]`, when the model has the head.
    pub anatomy: Option<Tensor>,
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
    Bert(crate::model::bert::Bert),
}

/// The whole ASG model.
pub struct AsgModel {
    pub config: ModelConfig,
    pub(crate) encoder: crate::model::backbones::ImageEncoder,
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
    pub(crate) anatomy: Option<crate::model::anatomy::AnatomyHead>,
    pub(crate) text_encoder: TextEncoder,
    pub(crate) text_global: Linear,
    pub(crate) text_local: Linear,
}

impl AsgModel {
    /// Side of the local feature grid.
    pub fn grid_side(config: &ModelConfig) -> usize {
        crate::model::backbones::ImageEncoder::grid_side(config)
    }

    pub fn new(config: ModelConfig, vocab_size: usize, vb: VarBuilder) -> Result<Self> {
        let (encoder, cin) = crate::model::backbones::ImageEncoder::new(&config, vb.clone())?;
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
            anatomy: if config.anatomy_head {
                if matches!(config.encoder.as_str(), "resnet" | "vit") {
                    candle_core::bail!(
                        "the anatomy head needs the \"cnn\" encoder; this model's is {:?}",
                        config.encoder
                    );
                }
                Some(crate::model::anatomy::AnatomyHead::new(
                    &config.channels,
                    config.anatomy_from_stage,
                    config.anatomy_dim,
                    vb.pp("anatomy"),
                )?)
            } else {
                None
            },
            text_encoder: match &config.bert {
                Some(bert) => {
                    TextEncoder::Bert(crate::model::bert::Bert::new(bert, vb.pp("text.bert"))?)
                }
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
        let (grid, pooled, stages) = self.encoder.forward_stages(x, train)?; // [b, cells, c], [b, c]
        let global = l2_normalize(&linear(&pooled, &self.image_global)?)?;
        let memory = linear(&grid, &self.memory)?.broadcast_add(&self.memory_pos.unsqueeze(0)?)?;
        let (tags, tag_attention) = self.tag_decoder.forward(&memory)?;
        let tag_logits = tags
            .broadcast_mul(&self.tag_weight.unsqueeze(0)?)?
            .sum(D::Minus1)?
            .broadcast_add(&self.tag_bias.unsqueeze(0)?)?;
        let (regions, _) = self.box_decoder.forward(&memory)?;
        let raw = sigmoid(&linear(&regions, &self.box_head)?)?; // [b, r, 4] cx, cy, w, h
        let cx = raw.narrow(2, 0, 1)?;
        let cy = raw.narrow(2, 1, 1)?;
        let w = (raw.narrow(2, 2, 1)? * 0.5)?;
        let hh = (raw.narrow(2, 3, 1)? * 0.5)?;
        let boxes = Tensor::cat(&[(&cx - &w)?, (&cy - &hh)?, (&cx + &w)?, (&cy + &hh)?], 2)?;
        let anatomy = match &self.anatomy {
            Some(head) => Some(head.forward(&stages, train)?),
            None => None,
        };
        let boxes = match (&anatomy, train) {
            (Some(logits), false) => crate::model::anatomy::replace_boxes(
                &boxes,
                logits,
                self.config.input_size,
                self.config.anatomy_zones,
            )?,
            _ => boxes,
        };
        Ok(ImageOutput {
            global,
            pooled,
            grid,
            tag_logits,
            tag_attention,
            boxes,
            anatomy,
        })
    }

    /// Region embeddings `[b, regions, embed]` (unit norm) of the region features (the grid
    /// averaged over each box, each cell weighted by the area it shares with the box: RoIAlign
    /// with a 1x1 output, sampled exactly), and region-finding logits `[b, regions, findings]`
    /// (the head over those features, or with `region_lse` its per-cell logits pooled over the
    /// same weights). `boxes` `[b, regions, 4]` in 0..1.
    pub fn regions(&self, grid: &Tensor, boxes: &Tensor) -> Result<(Tensor, Tensor)> {
        let g = Self::grid_side(&self.config);
        let weights = box_cell_weights(boxes, g)?; // [b, r, cells]
        let feats = weights.matmul(grid)?;
        let embeddings = l2_normalize(&linear(&feats, &self.image_local)?)?;
        let logits = if self.config.region_lse > 0.0 {
            let cells = linear(grid, &self.region_head)?; // [b, cells, findings]
            region_log_sum_exp(&cells, &weights, self.config.region_lse)?
        } else {
            linear(&feats, &self.region_head)?
        };
        Ok((embeddings, logits))
    }

    /// The region head over every cell of the grid `[b, cells, c]`: per-cell finding logits
    /// `[b, cells, findings]` (the `finding_maps` the export gives, transposed).
    pub fn cell_logits(&self, grid: &Tensor) -> Result<Tensor> {
        linear(grid, &self.region_head)
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
            report: l2_normalize(&linear(&cls, &self.text_global)?)?,
            tokens,
        })
    }

    /// Sentence embeddings (unit norm): `averaging` `[b, k, t]` rows average a sentence's tokens.
    pub fn sentences(&self, tokens: &Tensor, averaging: &Tensor) -> Result<Tensor> {
        l2_normalize(&linear(&averaging.matmul(tokens)?, &self.text_local)?)
    }
}

/// Region logits `[b, r, findings]` pooled from per-cell logits `cells` `[b, cells, findings]`
/// by a log-sum-exp of sharpness `sharpness` weighted by `weights` `[b, r, cells]` (each row
/// summing to 1, or all 0 for a region without a box): `(1/r) ln sum_c w_c exp(r l_c)`.
///
/// Computed stably: each region's largest logit over the cells it covers is taken out first
/// (without gradient: it cancels), and the exponent is clipped to [-80, 1], which changes
/// nothing where a region covers a cell (the exponent is at most 0 there) and keeps a region
/// without cells finite (about -1e4; such a region takes no part in any loss).
pub fn region_log_sum_exp(cells: &Tensor, weights: &Tensor, sharpness: f64) -> Result<Tensor> {
    let cells = cells.unsqueeze(1)?; // [b, 1, cells, findings]
                                     // 0 on the cells a region covers, -1e4 elsewhere.
    let outside = ((weights.gt(0.0)?.to_dtype(DType::F32)? - 1.0)? * 1e4)?.unsqueeze(3)?;
    let peak = cells.broadcast_add(&outside)?.max_keepdim(2)?.detach(); // [b, r, 1, findings]
    let shifted = (cells.broadcast_sub(&peak)? * sharpness)?.clamp(-80f32, 1f32)?;
    let sum = shifted
        .exp()?
        .broadcast_mul(&weights.unsqueeze(3)?)?
        .sum(2)?; // [b, r, findings]
    ((sum + 1e-30)?.log()? / sharpness)? + peak.squeeze(2)?
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

    /// `(1/r) ln sum_c w_c exp(r l_c)` in f64, written out.
    fn naive_lse(cells: &[f64], weights: &[f64], r: f64) -> f64 {
        let s: f64 = cells
            .iter()
            .zip(weights)
            .map(|(l, w)| w * (r * l).exp())
            .sum();
        s.ln() / r
    }

    #[test]
    fn region_log_sum_exp_matches_the_formula_and_its_gradient() {
        // 4 cells, 2 findings; region 0 covers cells 0-2 unevenly, region 1 only cell 3, region
        // 2 nothing.
        let cells = [1.5f32, -2.0, 0.3, 4.0, -1.0, 0.5, 2.0, -3.0];
        let weights = [
            0.5f32, 0.25, 0.25, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0,
        ];
        let l = candle_core::Var::from_vec(cells.to_vec(), (1, 4, 2), &Device::Cpu).unwrap();
        let w = Tensor::from_vec(weights.to_vec(), (1, 3, 4), &Device::Cpu).unwrap();
        let r = 3.0;
        let out = region_log_sum_exp(l.as_tensor(), &w, r).unwrap();
        let got: Vec<f32> = out.flatten_all().unwrap().to_vec1().unwrap();
        for region in 0..2 {
            for f in 0..2 {
                let ls: Vec<f64> = (0..4).map(|c| cells[c * 2 + f] as f64).collect();
                let ws: Vec<f64> = (0..4).map(|c| weights[region * 4 + c] as f64).collect();
                let want = naive_lse(&ls, &ws, r);
                assert!(
                    (got[region * 2 + f] as f64 - want).abs() < 1e-5,
                    "{got:?} {want}"
                );
            }
        }
        // A region covering nothing is finite and far below any logit.
        assert!(
            got[4].is_finite() && got[4] < -1e3 && got[5] < -1e3,
            "{got:?}"
        );
        // Between the weighted mean and the max of the cells it covers.
        let mean0 = 0.5 * 1.5 + 0.25 * -2.0 + 0.25 * 0.3;
        assert!(got[0] > mean0 && got[0] < 1.5, "{got:?}");
        // The gradient of region 0, finding 0 is the softmax of r l_c weighted by w_c.
        let grads = out
            .get(0)
            .unwrap()
            .get(0)
            .unwrap()
            .get(0)
            .unwrap()
            .backward()
            .unwrap();
        let g: Vec<f32> = grads
            .get(&l)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let z: f64 = (0..3)
            .map(|c| weights[c] as f64 * (r * cells[c * 2] as f64).exp())
            .sum();
        for c in 0..4 {
            let want = weights[c] as f64 * (r * cells[c * 2] as f64).exp() / z;
            assert!((g[c * 2] as f64 - want).abs() < 1e-5, "{g:?}");
            assert_eq!(g[c * 2 + 1], 0.0, "{g:?}");
        }
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
