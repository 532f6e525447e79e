//! ONNX export of the whole ASG model (`asg-train export`): `image.onnx` with every head the
//! viewer draws and `text.onnx` from token ids to report and sentence embeddings. Written with our
//! own [`GraphBuilder`] (Candle has no exporter).
//!
//! Choices that keep tract and onnxruntime both able to run it (opset 17):
//! - batch norm folded into the convolutions (inference mode);
//! - Candle's tanh GELU written out (ONNX `Gelu` is opset 20);
//! - the first decoder layer's self-attention over the learned queries does not depend on the
//!   image, so it is computed here in Candle and stored as a constant (no `Expand` of the queries
//!   to the batch);
//! - `text.onnx` takes a fixed number of tokens (`max_tokens`, padding masked), so that positions
//!   are a constant.
//!
//! - the anatomy head's upsampling and the boxes read off its masks are products with constant
//!   matrices, clips and max reductions, as in Candle (`model::anatomy`).
//!
//! Supported: the `cnn` image encoder and our text encoder. ResNet, ViT and BERT are refused with
//! a clear error (not written yet).

use crate::export::io::ANATOMY_OUTPUT;
use crate::export::onnx::{Attr, Dim, ExportError, GraphBuilder};
use crate::model::anatomy::{
    derived_regions, linear_matrix, nearest_matrix, scatter_matrix, AnatomyHead, STEEP,
};
use crate::model::asg::{AsgModel, TextEncoder};
use crate::model::backbones::ImageEncoder;
use crate::model::layers::{
    Attention, ConvBn, DecoderLayer, EncoderLayer, FeedForward, LayerNorm, QueryDecoder, BN_EPS,
};
use crate::vocab::anatomy_regions;
use crate::vocab::{FINDINGS, REGIONS};
use candle_core::Tensor;
use candle_nn::{Linear, Module};

const GELU_C: f64 = 0.797_884_560_802_865_4; // sqrt(2 / pi)

/// A graph builder that names nodes itself.
pub(crate) struct Exporter {
    pub(crate) g: GraphBuilder,
    count: usize,
    /// The CNN stages' sides, stage 0 first.
    stage_sides: Vec<usize>,
}

fn values(t: &Tensor) -> Result<Vec<f32>, ExportError> {
    Ok(t.to_dtype(candle_core::DType::F32)?
        .flatten_all()?
        .to_vec1()?)
}

impl Exporter {
    pub(crate) fn new() -> Self {
        Self {
            g: GraphBuilder::new(),
            count: 0,
            stage_sides: Vec::new(),
        }
    }

    pub(crate) fn name(&mut self, hint: &str) -> String {
        self.count += 1;
        format!("{hint}_{}", self.count)
    }

    pub(crate) fn op(
        &mut self,
        op: &str,
        inputs: &[&str],
        attrs: &[(&str, Attr)],
        hint: &str,
    ) -> Result<String, ExportError> {
        let name = self.name(hint);
        self.g.node(op, inputs, attrs, &name)
    }

    pub(crate) fn tensor(&mut self, hint: &str, t: &Tensor) -> Result<String, ExportError> {
        let name = self.name(hint);
        self.g.tensor(&name, t)
    }

    pub(crate) fn scalar(&mut self, hint: &str, v: f32) -> Result<String, ExportError> {
        let name = self.name(hint);
        self.g.floats(&name, &[], &[v])
    }

    pub(crate) fn ints(&mut self, hint: &str, v: &[i64]) -> Result<String, ExportError> {
        let name = self.name(hint);
        self.g.ints(&name, &[v.len()], v)
    }

    pub(crate) fn binary(
        &mut self,
        op: &str,
        a: &str,
        b: &str,
        hint: &str,
    ) -> Result<String, ExportError> {
        self.op(op, &[a, b], &[], hint)
    }

    pub(crate) fn reshape(
        &mut self,
        x: &str,
        shape: &[i64],
        hint: &str,
    ) -> Result<String, ExportError> {
        let s = self.ints(&format!("{hint}.shape"), shape)?;
        self.op("Reshape", &[x, &s], &[], hint)
    }

    fn transpose(&mut self, x: &str, perm: &[i64], hint: &str) -> Result<String, ExportError> {
        self.op(
            "Transpose",
            &[x],
            &[("perm", Attr::Ints(perm.to_vec()))],
            hint,
        )
    }

    /// `x[..., start..end]` along `axis`.
    fn slice(
        &mut self,
        x: &str,
        axis: i64,
        start: i64,
        end: i64,
        hint: &str,
    ) -> Result<String, ExportError> {
        let s = self.ints(&format!("{hint}.starts"), &[start])?;
        let e = self.ints(&format!("{hint}.ends"), &[end])?;
        let a = self.ints(&format!("{hint}.axes"), &[axis])?;
        self.op("Slice", &[x, &s, &e, &a], &[], hint)
    }

    /// A linear layer over the last axis of a tensor of any rank (`x W^T + b`).
    fn linear(&mut self, x: &str, layer: &Linear, hint: &str) -> Result<String, ExportError> {
        let wt = self.tensor(&format!("{hint}.weight_t"), &layer.weight().t()?)?;
        let y = self.op("MatMul", &[x, &wt], &[], hint)?;
        match layer.bias() {
            Some(b) => {
                let b = self.tensor(&format!("{hint}.bias"), b)?;
                self.binary("Add", &y, &b, hint)
            }
            None => Ok(y),
        }
    }

    fn layer_norm(&mut self, x: &str, ln: &LayerNorm, hint: &str) -> Result<String, ExportError> {
        let w = self.tensor(&format!("{hint}.weight"), &ln.weight)?;
        let b = self.tensor(&format!("{hint}.bias"), &ln.bias)?;
        self.op(
            "LayerNormalization",
            &[x, &w, &b],
            &[("axis", Attr::Int(-1)), ("epsilon", Attr::Float(ln.eps))],
            hint,
        )
    }

    /// Rows scaled to unit L2 norm, as [`crate::model::layers::l2_normalize`]: `x / (|x| + 1e-6)`.
    fn l2_normalize(&mut self, x: &str, hint: &str) -> Result<String, ExportError> {
        let norm = self.op(
            "ReduceL2",
            &[x],
            &[("axes", Attr::Ints(vec![-1])), ("keepdims", Attr::Int(1))],
            &format!("{hint}.norm"),
        )?;
        let eps = self.scalar(&format!("{hint}.eps"), 1e-6)?;
        let denom = self.binary("Add", &norm, &eps, hint)?;
        self.binary("Div", x, &denom, hint)
    }

    /// Candle's `gelu` (tanh approximation): 0.5 x (1 + tanh(c (x + 0.044715 x^3))).
    fn gelu(&mut self, x: &str, hint: &str) -> Result<String, ExportError> {
        let x2 = self.binary("Mul", x, x, hint)?;
        let k = self.scalar(&format!("{hint}.k"), 0.044715)?;
        let kx2 = self.binary("Mul", &x2, &k, hint)?;
        let one = self.scalar(&format!("{hint}.one"), 1.0)?;
        let inner = self.binary("Add", &kx2, &one, hint)?;
        let inner = self.binary("Mul", x, &inner, hint)?;
        let c = self.scalar(&format!("{hint}.c"), GELU_C as f32)?;
        let inner = self.binary("Mul", &inner, &c, hint)?;
        let t = self.op("Tanh", &[&inner], &[], hint)?;
        let t = self.binary("Add", &t, &one, hint)?;
        let half = self.scalar(&format!("{hint}.half"), 0.5)?;
        let hx = self.binary("Mul", x, &half, hint)?;
        self.binary("Mul", &hx, &t, hint)
    }

    fn feed_forward(
        &mut self,
        x: &str,
        ff: &FeedForward,
        hint: &str,
    ) -> Result<String, ExportError> {
        let a = self.linear(x, &ff.a, &format!("{hint}.a"))?;
        let a = self.gelu(&a, &format!("{hint}.gelu"))?;
        self.linear(&a, &ff.b, &format!("{hint}.b"))
    }

    /// `[b, t, d]` -> `[b, heads, t, dh]` (or `[b, heads, dh, t]` when `keys`).
    fn heads(
        &mut self,
        x: &str,
        heads: usize,
        dh: usize,
        keys: bool,
        hint: &str,
    ) -> Result<String, ExportError> {
        let r = self.reshape(x, &[0, 0, heads as i64, dh as i64], hint)?;
        let perm: &[i64] = if keys { &[0, 2, 3, 1] } else { &[0, 2, 1, 3] };
        self.transpose(&r, perm, hint)
    }

    /// Multi-head attention; `query_heads` is either a graph value `[b, tq, d]` to project or
    /// an already projected constant `[1, heads, tq, dh]`. Returns (output `[b, tq, d]`,
    /// weights `[b, heads, tq, tk]`).
    fn attention(
        &mut self,
        query: QueryInput,
        memory: &str,
        mask: Option<&str>,
        attn: &Attention,
        hint: &str,
    ) -> Result<(String, String), ExportError> {
        let d = attn.q.weight().dim(0)?;
        let h = attn.heads;
        let dh = d / h;
        let q = match query {
            QueryInput::Value(q) => {
                let p = self.linear(&q, &attn.q, &format!("{hint}.q"))?;
                self.heads(&p, h, dh, false, &format!("{hint}.qh"))?
            }
            QueryInput::Projected(name) => name,
        };
        let k = self.linear(memory, &attn.k, &format!("{hint}.k"))?;
        let k = self.heads(&k, h, dh, true, &format!("{hint}.kh"))?;
        let v = self.linear(memory, &attn.v, &format!("{hint}.v"))?;
        let v = self.heads(&v, h, dh, false, &format!("{hint}.vh"))?;
        let scores = self.binary("MatMul", &q, &k, &format!("{hint}.scores"))?;
        let scale = self.scalar(&format!("{hint}.scale"), (dh as f64).sqrt() as f32)?;
        let mut scores = self.binary("Div", &scores, &scale, &format!("{hint}.scores"))?;
        if let Some(m) = mask {
            scores = self.binary("Add", &scores, m, &format!("{hint}.masked"))?;
        }
        let weights = self.op(
            "Softmax",
            &[&scores],
            &[("axis", Attr::Int(-1))],
            &format!("{hint}.softmax"),
        )?;
        let out = self.binary("MatMul", &weights, &v, &format!("{hint}.mix"))?;
        let out = self.transpose(&out, &[0, 2, 1, 3], &format!("{hint}.merge"))?;
        let out = self.reshape(&out, &[0, 0, d as i64], &format!("{hint}.merge"))?;
        let out = self.linear(&out, &attn.o, &format!("{hint}.o"))?;
        Ok((out, weights))
    }

    fn encoder_layer(
        &mut self,
        x: &str,
        mask: &str,
        layer: &EncoderLayer,
        hint: &str,
    ) -> Result<String, ExportError> {
        let n = self.layer_norm(x, &layer.ln1, &format!("{hint}.ln1"))?;
        let (a, _) = self.attention(
            QueryInput::Value(n.clone()),
            &n,
            Some(mask),
            &layer.attn,
            &format!("{hint}.attn"),
        )?;
        let x = self.binary("Add", x, &a, hint)?;
        let n = self.layer_norm(&x, &layer.ln2, &format!("{hint}.ln2"))?;
        let f = self.feed_forward(&n, &layer.ff, &format!("{hint}.ff"))?;
        self.binary("Add", &x, &f, hint)
    }

    /// A decoder layer on graph-valued queries `[b, n, d]`.
    fn decoder_layer(
        &mut self,
        q: &str,
        memory: &str,
        layer: &DecoderLayer,
        hint: &str,
    ) -> Result<(String, String), ExportError> {
        let n = self.layer_norm(q, &layer.ln0, &format!("{hint}.ln0"))?;
        let (s, _) = self.attention(
            QueryInput::Value(n.clone()),
            &n,
            None,
            &layer.self_attn,
            &format!("{hint}.self"),
        )?;
        let q = self.binary("Add", q, &s, hint)?;
        let n = self.layer_norm(&q, &layer.ln1, &format!("{hint}.ln1"))?;
        let (c, weights) = self.attention(
            QueryInput::Value(n),
            memory,
            None,
            &layer.cross,
            &format!("{hint}.cross"),
        )?;
        self.decoder_tail(&q, &c, weights, layer, hint)
    }

    fn decoder_tail(
        &mut self,
        q: &str,
        cross: &str,
        weights: String,
        layer: &DecoderLayer,
        hint: &str,
    ) -> Result<(String, String), ExportError> {
        let q = self.binary("Add", q, cross, hint)?;
        let n = self.layer_norm(&q, &layer.ln2, &format!("{hint}.ln2"))?;
        let f = self.feed_forward(&n, &layer.ff, &format!("{hint}.ff"))?;
        Ok((self.binary("Add", &q, &f, hint)?, weights))
    }

    /// The learned queries through the decoder over `memory` `[b, cells, d]`: (states `[b, n, d]`
    /// after the final norm, cross-attention of the last layer averaged over heads `[b, n, cells]`).
    fn query_decoder(
        &mut self,
        memory: &str,
        dec: &QueryDecoder,
        hint: &str,
    ) -> Result<(String, String), ExportError> {
        let Some((first, rest)) = dec.layers.split_first() else {
            return Err(ExportError::Graph(format!(
                "{hint}: a decoder without layers"
            )));
        };
        // The first layer up to its cross-attention does not depend on the image.
        let q0 = dec.queries.unsqueeze(0)?; // [1, n, d]
        let n0 = first.ln0.forward(&q0)?;
        let q1 = (&q0 + first.self_attn.forward(&n0, &n0, None)?.0)?;
        let qn = first.ln1.forward(&q1)?;
        let (_, n, d) = q1.dims3()?;
        let h = first.cross.heads;
        let projected = first
            .cross
            .q
            .forward(&qn)?
            .reshape((1, n, h, d / h))?
            .transpose(1, 2)?
            .contiguous()?;
        let q1 = self.tensor(&format!("{hint}.layer0.queries"), &q1)?;
        let projected = self.tensor(&format!("{hint}.layer0.cross.q"), &projected)?;
        let (c, mut weights) = self.attention(
            QueryInput::Projected(projected),
            memory,
            None,
            &first.cross,
            &format!("{hint}.layer0.cross"),
        )?;
        let (mut q, w) = self.decoder_tail(&q1, &c, weights, first, &format!("{hint}.layer0"))?;
        weights = w;
        for (i, layer) in rest.iter().enumerate() {
            let (nq, w) =
                self.decoder_layer(&q, memory, layer, &format!("{hint}.layer{}", i + 1))?;
            q = nq;
            weights = w;
        }
        let mean = self.op(
            "ReduceMean",
            &[&weights],
            &[("axes", Attr::Ints(vec![1])), ("keepdims", Attr::Int(0))],
            &format!("{hint}.attention"),
        )?;
        let q = self.layer_norm(&q, &dec.ln, &format!("{hint}.ln"))?;
        Ok((q, mean))
    }

    /// Convolution with its batch norm folded in (inference statistics), then ReLU.
    pub(crate) fn conv_bn(
        &mut self,
        x: &str,
        layer: &ConvBn,
        hint: &str,
    ) -> Result<String, ExportError> {
        let bn = &layer.bn;
        let scale = (&bn.weight / (bn.running_var.as_tensor() + BN_EPS)?.sqrt()?)?;
        let shift = (&bn.bias - (bn.running_mean.as_tensor() * &scale)?)?;
        let rv = values(bn.running_var.as_tensor())?;
        if let Some(v) = rv.iter().find(|v| **v < 0.0) {
            return Err(ExportError::Graph(format!(
                "{hint}: running variance {v} is negative"
            )));
        }
        let cout = scale.dim(0)?;
        let w = layer
            .weight
            .broadcast_mul(&scale.reshape((cout, 1, 1, 1))?)?;
        let k = w.dim(3)? as i64;
        let w = self.tensor(&format!("{hint}.weight"), &w)?;
        let b = self.tensor(&format!("{hint}.bias"), &shift)?;
        let s = layer.stride as i64;
        let y = self.op(
            "Conv",
            &[x, &w, &b],
            &[
                ("kernel_shape", Attr::Ints(vec![k, k])),
                ("pads", Attr::Ints(vec![k / 2; 4])),
                ("strides", Attr::Ints(vec![s, s])),
            ],
            hint,
        )?;
        self.op("Relu", &[&y], &[], hint)
    }

    /// A constant matrix `[rows, cols]`.
    fn matrix(
        &mut self,
        hint: &str,
        rows: usize,
        cols: usize,
        v: &[f32],
    ) -> Result<String, ExportError> {
        let name = self.name(hint);
        self.g.floats(&name, &[rows, cols], v)
    }

    /// [`crate::model::anatomy::resample`] with one matrix for both axes: `M x M^T`.
    fn resample(
        &mut self,
        x: &str,
        m: &[f32],
        out: usize,
        input: usize,
        hint: &str,
    ) -> Result<String, ExportError> {
        let r = self.matrix(&format!("{hint}.rows"), out, input, m)?;
        let t: Vec<f32> = (0..input * out)
            .map(|i| m[(i % out) * input + i / out])
            .collect();
        let c = self.matrix(&format!("{hint}.cols_t"), input, out, &t)?;
        let y = self.binary("MatMul", &r, x, hint)?;
        self.binary("MatMul", &y, &c, hint)
    }

    /// [`crate::model::anatomy::AnatomyHead::forward`]: the stage maps -> mask logits.
    fn anatomy_head(
        &mut self,
        stages: &[String],
        head: &AnatomyHead,
    ) -> Result<String, ExportError> {
        let mut sum: Option<(String, usize)> = None;
        for (i, (lateral, (map, side))) in head
            .laterals
            .iter()
            .zip(
                stages
                    .iter()
                    .skip(head.from_stage)
                    .zip(self.stage_sides.clone().into_iter().skip(head.from_stage)),
            )
            .enumerate()
        {
            let hint = format!("anatomy.lateral{}", i + 1);
            let h = self.conv_bn(map, lateral, &hint)?;
            sum = Some(match sum {
                None => (h, side),
                Some((s, top)) => {
                    let up = nearest_matrix(top, side);
                    let h = self.resample(&h, &up, top, side, &hint)?;
                    (self.binary("Add", &s, &h, "anatomy.sum")?, top)
                }
            });
        }
        let Some((sum, _)) = sum else {
            return Err(ExportError::Graph(
                "the anatomy head needs at least two CNN stages".into(),
            ));
        };
        let h = self.conv_bn(&sum, &head.fuse, "anatomy.fuse")?;
        let (c, width) = head.out_weight.dims2()?;
        let w = self.tensor(
            "anatomy.out.weight",
            &head.out_weight.reshape((c, width, 1, 1))?,
        )?;
        let b = self.tensor("anatomy.out.bias", &head.out_bias)?;
        self.op(
            "Conv",
            &[&h, &w, &b],
            &[("kernel_shape", Attr::Ints(vec![1, 1]))],
            "anatomy.out",
        )
    }

    /// [`crate::model::anatomy::replace_boxes`]: the regions read off the anatomy masks replaced
    /// where those are not empty (with `zones`, also the lung and apical zones).
    fn replace_boxes(
        &mut self,
        boxes: &str,
        logits: &str,
        side: usize,
        size: usize,
        zones: bool,
    ) -> Result<String, ExportError> {
        let hint = "anatomy.boxes";
        let up = linear_matrix(size, side);
        let full = self.resample(logits, &up, size, side, hint)?;
        let steep = self.scalar("anatomy.steep", STEEP as f32)?;
        let zero = self.scalar("anatomy.zero", 0.0)?;
        let one = self.scalar("anatomy.one", 1.0)?;
        let full = self.binary("Mul", &full, &steep, hint)?;
        let inside = self.op("Clip", &[&full, &zero, &one], &[], hint)?;
        let cols = self.reduce_max(&inside, 2, false, "anatomy.max")?; // [b, c, size]
        let rows = self.reduce_max(&inside, 3, false, "anatomy.max")?;
        let at = |offset: f32| -> Vec<f32> {
            (0..size)
                .map(|i| (i as f32 + offset) / size as f32)
                .collect()
        };
        let one_minus_lo: Vec<f32> = at(0.0).iter().map(|v| 1.0 - v).collect();
        let lo_name = self.name("anatomy.one_minus_lo");
        let lo = self.g.floats(&lo_name, &[size], &one_minus_lo)?;
        let hi_name = self.name("anatomy.hi");
        let hi = self.g.floats(&hi_name, &[size], &at(1.0))?;
        let centre_name = self.name("anatomy.centre");
        let centre = self.g.floats(&centre_name, &[size], &at(0.5))?;
        let first = |e: &mut Self, occupied: &str| -> Result<String, ExportError> {
            let m = e.binary("Mul", occupied, &lo, hint)?;
            let m = e.reduce_max(&m, -1, true, "anatomy.max")?;
            e.binary("Sub", &one, &m, hint)
        };
        let last = |e: &mut Self, occupied: &str| -> Result<String, ExportError> {
            let m = e.binary("Mul", occupied, &hi, hint)?;
            e.reduce_max(&m, -1, true, "anatomy.max")
        };
        let x1 = first(self, &cols)?;
        let y1 = first(self, &rows)?;
        let x2 = last(self, &cols)?;
        let y2 = last(self, &rows)?;
        let mask_box = self.op(
            "Concat",
            &[&x1, &y1, &x2, &y2],
            &[("axis", Attr::Int(2))],
            hint,
        )?;
        let valid = self.reduce_max(&cols, -1, true, "anatomy.max")?;
        let (read, ok, regions) = if zones {
            let mut all = vec![mask_box.clone()];
            let mut oks = vec![valid.clone()];
            let coord = |e: &mut Self, k: i64, i: i64| -> Result<String, ExportError> {
                let b = e.slice(&mask_box, 1, k, k + 1, hint)?;
                e.slice(&b, 2, i, i + 1, hint)
            };
            let half = self.scalar("anatomy.half", 0.5)?;
            let px = 1.0 / size as f32;
            let three_px = self.scalar("anatomy.three_px", 3.0 * px)?;
            let half_px = self.scalar("anatomy.half_px", 0.5 * px)?;
            let two_size = self.scalar("anatomy.two_size", 2.0 * size as f32)?;
            let three = self.scalar("anatomy.three", 3.0)?;
            let centre_y_name = self.name("anatomy.centre_y");
            let centre_y = self.g.floats(&centre_y_name, &[size, 1], &at(0.5))?;
            let one_minus: Vec<f32> = at(0.5).iter().map(|v| 1.0 - v).collect();
            let one_minus_name = self.name("anatomy.one_minus_centre");
            let one_minus_centre = self.g.floats(&one_minus_name, &[size], &one_minus)?;
            let share = |e: &mut Self, x: &str, v: f32| -> Result<String, ExportError> {
                let k = e.scalar("anatomy.share", v)?;
                e.binary("Mul", x, &k, hint)
            };
            let mut angles = Vec::new();
            let mut domes = Vec::new();
            for (k, lateral_is_left) in [(0i64, true), (1, false)] {
                let (x1, y1, x2) = (coord(self, k, 0)?, coord(self, k, 1)?, coord(self, k, 2)?);
                let width = self.binary("Sub", &x2, &x1, hint)?;
                let mid = self.binary("Add", &x1, &x2, hint)?;
                let mid = self.binary("Mul", &mid, &half, hint)?;
                let toward_lateral = |e: &mut Self, edge: &str| -> Result<String, ExportError> {
                    let d = if lateral_is_left {
                        e.binary("Sub", edge, &centre, hint)?
                    } else {
                        e.binary("Sub", &centre, edge, hint)?
                    };
                    let d = e.binary("Mul", &d, &steep, hint)?;
                    e.op("Clip", &[&d, &zero, &one], &[], hint)
                };
                let lateral = toward_lateral(self, &mid)?;
                let lung = self.slice(&inside, 1, k, k + 1, hint)?;
                let low = self.binary("Mul", &lung, &centre_y, hint)?;
                let low = self.reduce_max(&low, 2, false, "anatomy.max")?; // [b, 1, s]
                let lowest = self.binary("Mul", &low, &lateral, hint)?;
                let lowest = self.reduce_max(&lowest, 2, true, "anatomy.max")?; // [b, 1, 1]
                let at_lowest = self.binary("Sub", &low, &lowest, hint)?;
                let at_lowest = self.binary("Add", &at_lowest, &half_px, hint)?;
                let at_lowest = self.binary("Mul", &at_lowest, &two_size, hint)?;
                let at_lowest = self.op("Clip", &[&at_lowest, &zero, &one], &[], hint)?;
                let at_lowest = self.binary("Mul", &at_lowest, &lateral, hint)?;
                let point_x = if lateral_is_left {
                    let m = self.binary("Mul", &at_lowest, &one_minus_centre, hint)?;
                    let m = self.reduce_max(&m, 2, true, "anatomy.max")?;
                    self.binary("Sub", &one, &m, hint)?
                } else {
                    let m = self.binary("Mul", &at_lowest, &centre, hint)?;
                    self.reduce_max(&m, 2, true, "anatomy.max")?
                };
                let floor = self.binary("Add", &y1, &three_px, hint)?;
                let bottom = self.binary("Max", &lowest, &floor, hint)?;
                let span = self.binary("Sub", &bottom, &y1, hint)?;
                let third = self.binary("Div", &span, &three, hint)?;
                let lung_ok = self.slice(&valid, 1, k, k + 1, hint)?;
                for z in 0..3 {
                    let a = self.scalar("anatomy.zone_start", z as f32)?;
                    let b = self.scalar("anatomy.zone_end", (z + 1) as f32)?;
                    let top = self.binary("Mul", &third, &a, hint)?;
                    let top = self.binary("Add", &y1, &top, hint)?;
                    let end = self.binary("Mul", &third, &b, hint)?;
                    let end = self.binary("Add", &y1, &end, hint)?;
                    all.push(self.op(
                        "Concat",
                        &[&x1, &top, &x2, &end],
                        &[("axis", Attr::Int(2))],
                        hint,
                    )?);
                    oks.push(lung_ok.clone());
                }
                let out = share(self, &width, 0.06)?;
                let inward = share(self, &width, 0.24)?;
                let (left_edge, right_edge) = if lateral_is_left {
                    (
                        self.binary("Sub", &point_x, &out, hint)?,
                        self.binary("Add", &point_x, &inward, hint)?,
                    )
                } else {
                    (
                        self.binary("Sub", &point_x, &inward, hint)?,
                        self.binary("Add", &point_x, &out, hint)?,
                    )
                };
                let rise = share(self, &width, 0.30)?;
                let top = self.binary("Sub", &lowest, &rise, hint)?;
                let pad = share(self, &width, 0.03)?;
                let below = self.binary("Add", &lowest, &pad, hint)?;
                angles.push((
                    self.op(
                        "Concat",
                        &[&left_edge, &top, &right_edge, &below],
                        &[("axis", Attr::Int(2))],
                        hint,
                    )?,
                    lung_ok.clone(),
                ));
                let reach = share(self, &width, 0.75)?;
                let medial_end = if lateral_is_left {
                    self.binary("Add", &x1, &reach, hint)?
                } else {
                    self.binary("Sub", &x2, &reach, hint)?
                };
                let span = toward_lateral(self, &medial_end)?;
                let occupied = self.slice(&cols, 1, k, k + 1, hint)?;
                let span = self.binary("Mul", &span, &occupied, hint)?;
                let high = self.binary("Sub", &one, &low, hint)?;
                let high = self.binary("Mul", &high, &span, hint)?;
                let high = self.reduce_max(&high, 2, true, "anatomy.max")?;
                let dome = self.binary("Sub", &one, &high, hint)?;
                let dome = self.binary("Sub", &dome, &half_px, hint)?;
                let a = self.binary("Min", &medial_end, &point_x, hint)?;
                let b = self.binary("Max", &medial_end, &point_x, hint)?;
                let top = self.binary("Sub", &dome, &pad, hint)?;
                domes.push((
                    self.op(
                        "Concat",
                        &[&a, &top, &b, &below],
                        &[("axis", Attr::Int(2))],
                        hint,
                    )?,
                    lung_ok,
                ));
            }
            let share = self.scalar("anatomy.apical_share", 0.08)?;
            for (lung, clavicle) in [(0i64, 3i64), (1, 4)] {
                let x1 = coord(self, lung, 0)?;
                let y1 = coord(self, lung, 1)?;
                let x2 = coord(self, lung, 2)?;
                let y2 = coord(self, lung, 3)?;
                let width = self.binary("Sub", &x2, &x1, hint)?;
                let width = self.binary("Mul", &width, &share, hint)?;
                let floor = self.binary("Add", &y1, &width, hint)?;
                let low = coord(self, clavicle, 3)?;
                let end = self.binary("Max", &low, &floor, hint)?;
                let end = self.binary("Min", &end, &y2, hint)?;
                all.push(self.op(
                    "Concat",
                    &[&x1, &y1, &x2, &end],
                    &[("axis", Attr::Int(2))],
                    hint,
                )?);
                let a = self.slice(&valid, 1, lung, lung + 1, hint)?;
                let c = self.slice(&valid, 1, clavicle, clavicle + 1, hint)?;
                oks.push(self.binary("Mul", &a, &c, hint)?);
            }
            for (b, v) in angles.into_iter().chain(domes) {
                all.push(b);
                oks.push(v);
            }
            let all: Vec<&str> = all.iter().map(String::as_str).collect();
            let oks: Vec<&str> = oks.iter().map(String::as_str).collect();
            (
                self.op("Concat", &all, &[("axis", Attr::Int(1))], hint)?,
                self.op("Concat", &oks, &[("axis", Attr::Int(1))], hint)?,
                derived_regions(),
            )
        } else {
            (mask_box, valid, anatomy_regions())
        };
        let e = scatter_matrix(&regions, &candle_core::Device::Cpu)?;
        let et = e.t()?.contiguous()?;
        let e = self.tensor("anatomy.scatter", &e)?;
        let et = self.tensor("anatomy.gather", &et)?;
        let regressed = self.binary("MatMul", &et, boxes, hint)?;
        let delta = self.binary("Sub", &read, &regressed, hint)?;
        let delta = self.binary("Mul", &delta, &ok, hint)?;
        let delta = self.binary("MatMul", &e, &delta, hint)?;
        self.binary("Add", boxes, &delta, hint)
    }

    /// ReduceMax over one axis.
    pub(crate) fn reduce_max(
        &mut self,
        x: &str,
        axis: i64,
        keep: bool,
        hint: &str,
    ) -> Result<String, ExportError> {
        self.op(
            "ReduceMax",
            &[x],
            &[
                ("axes", Attr::Ints(vec![axis])),
                ("keepdims", Attr::Int(keep as i64)),
            ],
            hint,
        )
    }

    /// [`crate::model::asg::box_cell_weights`]: `[b, r, 4]` -> `[b, r, g*g]`.
    fn box_cell_weights(&mut self, boxes: &str, g: usize) -> Result<String, ExportError> {
        let hint = "pool";
        let lo: Vec<f32> = (0..g).map(|i| i as f32 / g as f32).collect();
        let hi: Vec<f32> = lo.iter().map(|v| v + 1.0 / g as f32).collect();
        let lo_name = self.name("pool.cell_lo");
        let lo = self.g.floats(&lo_name, &[1, 1, g], &lo)?;
        let hi_name = self.name("pool.cell_hi");
        let hi = self.g.floats(&hi_name, &[1, 1, g], &hi)?;
        let gs = self.scalar("pool.g", g as f32)?;
        let zero = self.scalar("pool.zero", 0.0)?;
        let one = self.scalar("pool.one", 1.0)?;
        let overlap = |e: &mut Self, a: i64, z: i64| -> Result<String, ExportError> {
            let a = e.slice(boxes, 2, a, a + 1, hint)?;
            let z = e.slice(boxes, 2, z, z + 1, hint)?;
            let left = e.binary("Max", &a, &lo, hint)?;
            let right = e.binary("Min", &z, &hi, hint)?;
            let span = e.binary("Sub", &right, &left, hint)?;
            let span = e.binary("Mul", &span, &gs, hint)?;
            e.op("Clip", &[&span, &zero, &one], &[], hint)
        };
        let wx = overlap(self, 0, 2)?;
        let wy = overlap(self, 1, 3)?;
        let ax3 = self.ints("pool.axis3", &[3])?;
        let ax2 = self.ints("pool.axis2", &[2])?;
        let wy = self.op("Unsqueeze", &[&wy, &ax3], &[], hint)?;
        let wx = self.op("Unsqueeze", &[&wx, &ax2], &[], hint)?;
        let w = self.binary("Mul", &wy, &wx, hint)?;
        let w = self.reshape(&w, &[0, 0, (g * g) as i64], hint)?;
        let total = self.op(
            "ReduceSum",
            &[&w, &ax2],
            &[("keepdims", Attr::Int(1))],
            hint,
        )?;
        let eps = self.scalar("pool.eps", 1e-6)?;
        let total = self.binary("Add", &total, &eps, hint)?;
        self.binary("Div", &w, &total, hint)
    }

    /// [`crate::model::asg::region_log_sum_exp`]: per-cell logits `[b, cells, f]` and box
    /// weights `[b, r, cells]` -> `[b, r, f]`.
    fn region_log_sum_exp(
        &mut self,
        cells: &str,
        weights: &str,
        sharpness: f32,
    ) -> Result<String, ExportError> {
        let hint = "regions.lse";
        let ax1 = self.ints("regions.axis1", &[1])?;
        let ax2 = self.ints("regions.axis2", &[2])?;
        let ax3 = self.ints("regions.axis3", &[3])?;
        let cells = self.op("Unsqueeze", &[cells, &ax1], &[], hint)?; // [b, 1, cells, f]
        let zero = self.scalar("regions.zero", 0.0)?;
        let covered = self.binary("Greater", weights, &zero, hint)?;
        let covered = self.op("Cast", &[&covered], &[("to", Attr::Int(1))], hint)?;
        let one = self.scalar("regions.one", 1.0)?;
        let big = self.scalar("regions.outside", 1e4)?;
        let outside = self.binary("Sub", &covered, &one, hint)?;
        let outside = self.binary("Mul", &outside, &big, hint)?;
        let outside = self.op("Unsqueeze", &[&outside, &ax3], &[], hint)?; // [b, r, cells, 1]
        let masked = self.binary("Add", &cells, &outside, hint)?;
        let peak = self.reduce_max(&masked, 2, true, hint)?; // [b, r, 1, f]
        let shifted = self.binary("Sub", &cells, &peak, hint)?;
        let r = self.scalar("regions.sharpness", sharpness)?;
        let shifted = self.binary("Mul", &shifted, &r, hint)?;
        let lo = self.scalar("regions.exp_min", -80.0)?;
        let shifted = self.op("Clip", &[&shifted, &lo, &one], &[], hint)?;
        let e = self.op("Exp", &[&shifted], &[], hint)?;
        let w = self.op("Unsqueeze", &[weights, &ax3], &[], hint)?;
        let e = self.binary("Mul", &e, &w, hint)?;
        let sum = self.op(
            "ReduceSum",
            &[&e, &ax2],
            &[("keepdims", Attr::Int(0))],
            hint,
        )?;
        let tiny = self.scalar("regions.tiny", 1e-30)?;
        let sum = self.binary("Add", &sum, &tiny, hint)?;
        let log = self.op("Log", &[&sum], &[], hint)?;
        let log = self.binary("Div", &log, &r, hint)?;
        let peak = self.op("Squeeze", &[&peak, &ax2], &[], hint)?;
        self.binary("Add", &log, &peak, hint)
    }

    pub(crate) fn output(
        &mut self,
        value: &str,
        name: &str,
        dims: &[Dim],
    ) -> Result<(), ExportError> {
        self.g.node("Identity", &[value], &[], name)?;
        self.g.output(name, dims);
        Ok(())
    }
}

/// Queries of an attention: a graph value, or already projected and split into heads.
enum QueryInput {
    Value(String),
    Projected(String),
}

/// Writes the image model: input `image` `[batch, 1, size, size]` (normalised display values),
/// outputs [`IMAGE_OUTPUTS`].
pub fn image_onnx(model: &AsgModel) -> Result<Vec<u8>, ExportError> {
    let cfg = &model.config;
    let ImageEncoder::Cnn(stages) = &model.encoder else {
        return Err(ExportError::Graph(format!(
            "the ONNX export supports the \"cnn\" image encoder; this model's is {:?}",
            cfg.encoder
        )));
    };
    let s = cfg.input_size;
    let g = AsgModel::grid_side(cfg);
    let mut e = Exporter::new();
    let batch = Dim::Param("batch");
    let mut h = e.g.input(
        "image",
        &[batch.clone(), Dim::Fixed(1), Dim::Fixed(s), Dim::Fixed(s)],
    )?;
    let mut c = 1;
    let mut stage_maps = Vec::new();
    let mut side = s;
    for (i, (down, conv)) in stages.iter().enumerate() {
        h = e.conv_bn(&h, down, &format!("image.stage{i}.down"))?;
        h = e.conv_bn(&h, conv, &format!("image.stage{i}.conv"))?;
        c = conv.weight.dim(0)?;
        side = side.div_ceil(down.stride.max(1));
        stage_maps.push(h.clone());
        e.stage_sides.push(side);
    }
    let flat = e.reshape(&h, &[0, c as i64, (g * g) as i64], "grid")?;
    let grid = e.transpose(&flat, &[0, 2, 1], "grid")?;
    let pooled = e.op(
        "ReduceMean",
        &[&grid],
        &[("axes", Attr::Ints(vec![1])), ("keepdims", Attr::Int(0))],
        "pooled",
    )?;
    let global = e.linear(&pooled, &model.image_global, "proj.image_global")?;
    let global = e.l2_normalize(&global, "global")?;
    let memory = e.linear(&grid, &model.memory, "decoder.memory")?;
    let pos = e.tensor("decoder.memory_pos", &model.memory_pos)?;
    let memory = e.binary("Add", &memory, &pos, "decoder.memory")?;

    let (tags, tag_attention) = e.query_decoder(&memory, &model.tag_decoder, "tags")?;
    let tw = e.tensor("tags.group_fc.weight", &model.tag_weight)?;
    let tb = e.tensor("tags.group_fc.bias", &model.tag_bias)?;
    let t = e.binary("Mul", &tags, &tw, "tags.group_fc")?;
    let last = e.ints("tags.axis", &[-1])?;
    let t = e.op(
        "ReduceSum",
        &[&t, &last],
        &[("keepdims", Attr::Int(0))],
        "tags.group_fc",
    )?;
    let tag_logits = e.binary("Add", &t, &tb, "tags.group_fc")?;

    let (regions, _) = e.query_decoder(&memory, &model.box_decoder, "boxes")?;
    let raw = e.linear(&regions, &model.box_head, "boxes.head")?;
    let raw = e.op("Sigmoid", &[&raw], &[], "boxes.sigmoid")?;
    let cx = e.slice(&raw, 2, 0, 1, "boxes.cx")?;
    let cy = e.slice(&raw, 2, 1, 2, "boxes.cy")?;
    let half = e.scalar("boxes.half", 0.5)?;
    let w = e.slice(&raw, 2, 2, 3, "boxes.w")?;
    let w = e.binary("Mul", &w, &half, "boxes.w")?;
    let hh = e.slice(&raw, 2, 3, 4, "boxes.h")?;
    let hh = e.binary("Mul", &hh, &half, "boxes.h")?;
    let x1 = e.binary("Sub", &cx, &w, "boxes.x1")?;
    let y1 = e.binary("Sub", &cy, &hh, "boxes.y1")?;
    let x2 = e.binary("Add", &cx, &w, "boxes.x2")?;
    let y2 = e.binary("Add", &cy, &hh, "boxes.y2")?;
    let boxes = e.op(
        "Concat",
        &[&x1, &y1, &x2, &y2],
        &[("axis", Attr::Int(2))],
        "boxes",
    )?;

    let (boxes, anatomy) = match &model.anatomy {
        Some(head) => {
            let logits = e.anatomy_head(&stage_maps, head)?;
            let side = e.stage_sides.get(head.from_stage).copied().unwrap_or(s);
            let boxes = e.replace_boxes(&boxes, &logits, side, s, cfg.anatomy_zones)?;
            let masks = e.op("Sigmoid", &[&logits], &[], "anatomy.masks")?;
            (boxes, Some((masks, side)))
        }
        None => (boxes, None),
    };
    let weights = e.box_cell_weights(&boxes, g)?;
    let feats = e.binary("MatMul", &weights, &grid, "regions.features")?;
    let region_embeddings = e.linear(&feats, &model.image_local, "proj.image_local")?;
    let region_embeddings = e.l2_normalize(&region_embeddings, "regions.embedding")?;
    // The region head is linear, so applied to each cell it gives maps whose box averages are
    // the mean-pooled region logits (a class activation map per finding); with `region_lse`
    // the region logits are those maps' log-sum-exp over the box instead.
    let cell_logits = e.linear(&grid, &model.region_head, "maps.head")?;
    let region_logits = if cfg.region_lse > 0.0 {
        e.region_log_sum_exp(&cell_logits, &weights, cfg.region_lse as f32)?
    } else {
        e.linear(&feats, &model.region_head, "regions.head")?
    };
    let finding_maps = e.transpose(&cell_logits, &[0, 2, 1], "maps")?;

    let emb = cfg.embed_dim;
    e.output(&global, "embedding", &[batch.clone(), Dim::Fixed(emb)])?;
    e.output(&pooled, "image_features", &[batch.clone(), Dim::Fixed(c)])?;
    e.output(
        &tag_logits,
        "finding_logits",
        &[batch.clone(), Dim::Fixed(FINDINGS)],
    )?;
    e.output(
        &tag_attention,
        "tag_attention",
        &[batch.clone(), Dim::Fixed(FINDINGS), Dim::Fixed(g * g)],
    )?;
    e.output(
        &boxes,
        "region_boxes",
        &[batch.clone(), Dim::Fixed(REGIONS), Dim::Fixed(4)],
    )?;
    e.output(
        &region_embeddings,
        "region_embeddings",
        &[batch.clone(), Dim::Fixed(REGIONS), Dim::Fixed(emb)],
    )?;
    e.output(
        &region_logits,
        "region_logits",
        &[batch.clone(), Dim::Fixed(REGIONS), Dim::Fixed(FINDINGS)],
    )?;
    e.output(
        &finding_maps,
        "finding_maps",
        &[batch.clone(), Dim::Fixed(FINDINGS), Dim::Fixed(g * g)],
    )?;
    if let Some((masks, side)) = anatomy {
        e.output(
            &masks,
            ANATOMY_OUTPUT.0,
            &[
                batch,
                Dim::Fixed(crate::vocab::ANATOMY.len()),
                Dim::Fixed(side),
                Dim::Fixed(side),
            ],
        )?;
    }
    e.g.finish(
        "asg_image",
        "ASG image model: embedding, tags, heatmaps, anatomy boxes, regions",
    )
}

/// Writes the text model: inputs `ids` (int64 `[batch, max_tokens]`), `mask` (`[batch,
/// max_tokens]`, 1 for tokens, 0 for padding) and `averaging` (`[batch, sentences,
/// max_tokens]`, rows averaging each sentence's tokens); outputs [`TEXT_OUTPUTS`].
pub fn text_onnx(model: &AsgModel) -> Result<Vec<u8>, ExportError> {
    let cfg = &model.config;
    let TextEncoder::Ours {
        token_embedding,
        position,
        layers,
        ln,
    } = &model.text_encoder
    else {
        return Err(ExportError::Graph(
            "the ONNX export supports our text encoder, not BERT (not written yet)".into(),
        ));
    };
    let t = cfg.max_tokens;
    let mut e = Exporter::new();
    let batch = Dim::Param("batch");
    let ids = e.g.input_i64("ids", &[batch.clone(), Dim::Fixed(t)])?;
    let mask = e.g.input("mask", &[batch.clone(), Dim::Fixed(t)])?;
    let averaging = e.g.input(
        "averaging",
        &[batch.clone(), Dim::Param("sentences"), Dim::Fixed(t)],
    )?;
    let table = e.tensor("text.tokens", token_embedding.embeddings())?;
    let x = e.op(
        "Gather",
        &[&table, &ids],
        &[("axis", Attr::Int(0))],
        "text.embed",
    )?;
    let pos = e.tensor("text.position", &position.narrow(0, 0, t)?)?;
    let mut h = e.binary("Add", &x, &pos, "text.embed")?;
    let one = e.scalar("text.one", 1.0)?;
    let big = e.scalar("text.big", 1e4)?;
    let additive = e.binary("Sub", &mask, &one, "text.mask")?;
    let additive = e.binary("Mul", &additive, &big, "text.mask")?;
    let additive = e.reshape(&additive, &[0, 1, 1, t as i64], "text.mask")?;
    for (i, layer) in layers.iter().enumerate() {
        h = e.encoder_layer(&h, &additive, layer, &format!("text.layer{i}"))?;
    }
    let tokens = e.layer_norm(&h, ln, "text.ln")?;
    let zero = e.g.ints("text.first", &[], &[0])?;
    let cls = e.op(
        "Gather",
        &[&tokens, &zero],
        &[("axis", Attr::Int(1))],
        "text.cls",
    )?;
    let report = e.linear(&cls, &model.text_global, "proj.text_global")?;
    let report = e.l2_normalize(&report, "report")?;
    let sent = e.binary("MatMul", &averaging, &tokens, "sentences")?;
    let sent = e.linear(&sent, &model.text_local, "proj.text_local")?;
    let sent = e.l2_normalize(&sent, "sentences")?;
    let emb = cfg.embed_dim;
    e.output(
        &report,
        "report_embedding",
        &[batch.clone(), Dim::Fixed(emb)],
    )?;
    e.output(
        &sent,
        "sentence_embeddings",
        &[batch, Dim::Param("sentences"), Dim::Fixed(emb)],
    )?;
    e.g.finish("asg_text", "ASG text model: report and sentence embeddings")
}
