//! The thin-slice image model: a small CNN (strided 3x3 convolutions, batch norm, ReLU), global
//! average pooling, a projection to an L2-normalised embedding and a linear finding head.
//! It is the first brick of the ASG image encoder; the ASG heads come with the training issue.

use crate::export::onnx::{Attr, Dim, ExportError, ExportOnnx, GraphBuilder};
use candle_core::{DType, Device, Module, ModuleT, Result, Tensor, D};
use candle_nn::{BatchNorm, Conv2d, Linear, VarBuilder};
use serde::{Deserialize, Serialize};

/// Sizes of the thin model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ThinConfig {
    /// Side of the square input.
    pub input_size: usize,
    /// Output channels of each stride-2 convolution stage.
    pub channels: Vec<usize>,
    pub embedding_dim: usize,
    pub findings: usize,
}

impl Default for ThinConfig {
    fn default() -> Self {
        Self {
            input_size: 224,
            channels: vec![16, 32, 64, 128],
            embedding_dim: 128,
            findings: asg_report::FINDINGS.len(),
        }
    }
}

/// Added to the embedding's norm before dividing, in Candle and in the ONNX graph alike.
const NORM_EPS: f32 = 1e-6;
const BN_EPS: f64 = 1e-5;

/// The model's outputs.
pub struct ThinOutput {
    /// `[batch, embedding_dim]`, unit L2 norm per row.
    pub embedding: Tensor,
    /// `[batch, findings]`.
    pub finding_logits: Tensor,
}

/// Small CNN image model (see module docs).
pub struct ThinNet {
    pub config: ThinConfig,
    stages: Vec<(Conv2d, BatchNorm)>,
    projection: Linear,
    finding_head: Linear,
}

impl ThinNet {
    /// Builds the model with parameters from `vb` (fresh random ones for a new `VarMap`).
    pub fn new(config: ThinConfig, vb: VarBuilder) -> Result<Self> {
        let mut stages = Vec::new();
        let mut in_ch = 1;
        for (i, &out_ch) in config.channels.iter().enumerate() {
            let cfg = candle_nn::Conv2dConfig {
                padding: 1,
                stride: 2,
                ..Default::default()
            };
            let conv = candle_nn::conv2d(in_ch, out_ch, 3, cfg, vb.pp(format!("stage{i}.conv")))?;
            let bn = candle_nn::batch_norm(out_ch, BN_EPS, vb.pp(format!("stage{i}.bn")))?;
            stages.push((conv, bn));
            in_ch = out_ch;
        }
        let projection = candle_nn::linear(in_ch, config.embedding_dim, vb.pp("projection"))?;
        let finding_head = candle_nn::linear(in_ch, config.findings, vb.pp("finding_head"))?;
        Ok(Self {
            config,
            stages,
            projection,
            finding_head,
        })
    }

    /// Runs the model on `[batch, 1, size, size]`; `train` uses batch statistics (and updates
    /// the running ones).
    pub fn forward(&self, x: &Tensor, train: bool) -> Result<ThinOutput> {
        let mut h = x.clone();
        for (conv, bn) in &self.stages {
            h = bn.forward_t(&conv.forward(&h)?, train)?.relu()?;
        }
        let pooled = h.mean(D::Minus1)?.mean(D::Minus1)?; // [b, c]
        let projected = self.projection.forward(&pooled)?;
        let norm = (projected.sqr()?.sum_keepdim(1)?.sqrt()? + NORM_EPS as f64)?;
        let embedding = projected.broadcast_div(&norm)?;
        let finding_logits = self.finding_head.forward(&pooled)?;
        Ok(ThinOutput {
            embedding,
            finding_logits,
        })
    }

    /// Updates the batch-norm running statistics by forwarding `batches` in training mode.
    pub fn calibrate(&self, batches: &[Tensor]) -> Result<()> {
        for b in batches {
            self.forward(b, true)?;
        }
        Ok(())
    }

    /// Writes the model as ONNX (input `image` `[batch, 1, size, size]`; outputs `embedding` and
    /// `finding_logits`), batch norm in inference mode.
    pub fn to_onnx(&self) -> std::result::Result<Vec<u8>, ExportError> {
        let s = self.config.input_size;
        let mut g = GraphBuilder::new();
        let mut h = g.input(
            "image",
            &[
                Dim::Param("batch"),
                Dim::Fixed(1),
                Dim::Fixed(s),
                Dim::Fixed(s),
            ],
        )?;
        for (i, (conv, bn)) in self.stages.iter().enumerate() {
            let c = conv.export(&mut g, &format!("stage{i}.conv"), &h)?;
            let b = bn.export(&mut g, &format!("stage{i}.bn"), &c)?;
            h = g.node("Relu", &[&b], &[], &format!("stage{i}.relu"))?;
        }
        let gap = g.node("GlobalAveragePool", &[&h], &[], "pool")?;
        let pooled = g.node("Flatten", &[&gap], &[("axis", Attr::Int(1))], "pooled")?;
        let projected = self.projection.export(&mut g, "projection", &pooled)?;
        let norm = g.node(
            "ReduceL2",
            &[&projected],
            &[("axes", Attr::Ints(vec![1])), ("keepdims", Attr::Int(1))],
            "embedding.norm",
        )?;
        let eps = g.floats("embedding.eps", &[], &[NORM_EPS])?;
        let denom = g.node("Add", &[&norm, &eps], &[], "embedding.denominator")?;
        g.node("Div", &[&projected, &denom], &[], "embedding")?;
        let logits = self.finding_head.export(&mut g, "finding_head", &pooled)?;
        g.node("Identity", &[&logits], &[], "finding_logits")?;
        g.output(
            "embedding",
            &[Dim::Param("batch"), Dim::Fixed(self.config.embedding_dim)],
        );
        g.output(
            "finding_logits",
            &[Dim::Param("batch"), Dim::Fixed(self.config.findings)],
        );
        g.finish("asg_thin_image", "ASG thin-slice image model")
    }
}

/// A fresh model on the CPU whose parameters are drawn from `seed` (Candle's CPU generator cannot
/// be seeded): weights and biases uniform in +-1/sqrt(fan_in), batch-norm scales in [0.5, 1.5] and
/// shifts in +-0.1. Batch-norm running statistics keep their initial 0 / 1 (they share storage with
/// the model's, and a negative variance would make NaNs).
pub fn new_seeded(config: ThinConfig, seed: u64) -> Result<(ThinNet, candle_nn::VarMap)> {
    use rand::{Rng, SeedableRng};
    let device = Device::Cpu;
    let varmap = candle_nn::VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &device);
    let model = ThinNet::new(config, vb)?;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let data = varmap
        .data()
        .lock()
        .map_err(|e| candle_core::Error::Msg(e.to_string()))?;
    let mut names: Vec<&String> = data.keys().collect();
    names.sort();
    for name in names.into_iter().filter(|n| !n.contains("running_")) {
        let var = &data[name];
        let dims = var.dims().to_vec();
        let count: usize = dims.iter().product();
        let (lo, hi) = if name.contains(".bn.") {
            if name.ends_with("weight") {
                (0.5, 1.5)
            } else {
                (-0.1, 0.1)
            }
        } else {
            // Weights [out, in, ...] and biases share the layer's fan-in.
            let layer = name.rsplit_once('.').map(|(l, _)| l).unwrap_or(name);
            let weight = data
                .get(&format!("{layer}.weight"))
                .map(|w| w.dims().to_vec());
            let fan_in: usize = weight.map(|d| d[1..].iter().product()).unwrap_or(1).max(1);
            let b = 1.0 / (fan_in as f32).sqrt();
            (-b, b)
        };
        let values: Vec<f32> = (0..count).map(|_| rng.random_range(lo..hi)).collect();
        var.set(&Tensor::from_vec(values, dims, &device)?)?;
    }
    drop(data);
    Ok((model, varmap))
}
