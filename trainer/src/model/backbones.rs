//! Image encoders: the configurable CNN for CPUs, ResNet (bottleneck; ResNet-50 with blocks
//! [3, 4, 6, 3]) and ViT (ViT-B/16 with dim 768, 12 layers, 12 heads) for GPUs, each giving a grid
//! of local features and a pooled feature. Parameter names follow torchvision's ResNet and timm's
//! ViT/DeiT under a prefix, so their pretrained safetensors load by name
//! ([`load_pretrained_image`]); the RGB stem is summed over its colours for our one-channel input.

use crate::config::ModelConfig;
use crate::model::layers::{conv2d, subsample, Bn, ConvBn, LayerNorm};
use candle_core::{Module, Result, Tensor};
use candle_nn::{Linear, VarBuilder};

/// A 1x1 convolution (a matrix product over channels), optionally strided.
fn conv1x1(x: &Tensor, w: &Tensor, stride: usize) -> Result<Tensor> {
    let x = subsample(x, stride)?;
    let (b, c, h, wd) = x.dims4()?;
    let cout = w.dim(0)?;
    w.reshape((cout, c))?
        .broadcast_matmul(&x.reshape((b, c, h * wd))?)?
        .reshape((b, cout, h, wd))
}

fn kaiming(vb: &VarBuilder, shape: (usize, usize, usize, usize), name: &str) -> Result<Tensor> {
    let fan_in = shape.1 * shape.2 * shape.3;
    let bound = (6.0 / fan_in as f64).sqrt();
    vb.get_with_hints(
        shape,
        name,
        candle_nn::Init::Uniform {
            lo: -bound,
            up: bound,
        },
    )
}

/// A ResNet bottleneck block (torchvision layout: conv1 1x1, conv2 3x3 with the stride, conv3 1x1,
/// optional downsample).
struct Bottleneck {
    conv1: Tensor,
    bn1: Bn,
    conv2: Tensor,
    bn2: Bn,
    conv3: Tensor,
    bn3: Bn,
    downsample: Option<(Tensor, Bn)>,
    stride: usize,
}

impl Bottleneck {
    fn new(cin: usize, width: usize, stride: usize, vb: VarBuilder) -> Result<Self> {
        let cout = width * 4;
        let downsample = if stride != 1 || cin != cout {
            Some((
                kaiming(&vb, (cout, cin, 1, 1), "downsample.0.weight")?,
                Bn::new(cout, vb.pp("downsample.1"))?,
            ))
        } else {
            None
        };
        Ok(Self {
            conv1: kaiming(&vb, (width, cin, 1, 1), "conv1.weight")?,
            bn1: Bn::new(width, vb.pp("bn1"))?,
            conv2: kaiming(&vb, (width, width, 3, 3), "conv2.weight")?,
            bn2: Bn::new(width, vb.pp("bn2"))?,
            conv3: kaiming(&vb, (cout, width, 1, 1), "conv3.weight")?,
            bn3: Bn::new(cout, vb.pp("bn3"))?,
            downsample,
            stride,
        })
    }

    fn forward(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let h = self
            .bn1
            .forward_t(&conv1x1(x, &self.conv1, 1)?, train)?
            .relu()?;
        let h = self
            .bn2
            .forward_t(&conv2d(&h, &self.conv2, self.stride, 1)?, train)?
            .relu()?;
        let h = self.bn3.forward_t(&conv1x1(&h, &self.conv3, 1)?, train)?;
        let identity = match &self.downsample {
            Some((w, bn)) => bn.forward_t(&conv1x1(x, w, self.stride)?, train)?,
            None => x.clone(),
        };
        (h + identity)?.relu()
    }
}

/// ResNet with bottleneck blocks (stride 32 overall).
pub struct ResNet {
    conv1: Tensor,
    bn1: Bn,
    layers: Vec<Vec<Bottleneck>>,
    pub channels: usize,
}

impl ResNet {
    pub fn new(blocks: &[usize], width: usize, vb: VarBuilder) -> Result<Self> {
        let conv1 = kaiming(&vb, (width, 1, 7, 7), "conv1.weight")?;
        let bn1 = Bn::new(width, vb.pp("bn1"))?;
        let mut cin = width;
        let mut layers = Vec::new();
        for (i, &n) in blocks.iter().enumerate() {
            let w = width << i;
            let mut layer = Vec::new();
            for j in 0..n {
                let stride = if j == 0 && i > 0 { 2 } else { 1 };
                layer.push(Bottleneck::new(
                    cin,
                    w,
                    stride,
                    vb.pp(format!("layer{}.{j}", i + 1)),
                )?);
                cin = w * 4;
            }
            layers.push(layer);
        }
        Ok(Self {
            conv1,
            bn1,
            layers,
            channels: cin,
        })
    }

    /// `[b, 1, s, s]` -> grid `[b, c, s/32, s/32]`.
    pub fn forward(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let h = self
            .bn1
            .forward_t(&conv2d(x, &self.conv1, 2, 3)?, train)?
            .relu()?;
        // torchvision pools 3x3 with stride 2 and padding 1; Candle's max-pool backward needs the
        // kernel equal to the stride, so this pools 2x2 (same output size for even inputs).
        let mut h = h.max_pool2d(2)?;
        for layer in &self.layers {
            for block in layer {
                h = block.forward(&h, train)?;
            }
        }
        Ok(h)
    }
}

/// A ViT block (timm layout: norm1, attn.qkv fused, attn.proj, norm2, mlp.fc1, mlp.fc2).
struct VitBlock {
    norm1: LayerNorm,
    qkv: Linear,
    proj: Linear,
    norm2: LayerNorm,
    fc1: Linear,
    fc2: Linear,
    heads: usize,
}

impl VitBlock {
    fn new(dim: usize, heads: usize, mlp: usize, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            norm1: LayerNorm::new(dim, vb.pp("norm1"))?,
            qkv: candle_nn::linear(dim, 3 * dim, vb.pp("attn.qkv"))?,
            proj: candle_nn::linear(dim, dim, vb.pp("attn.proj"))?,
            norm2: LayerNorm::new(dim, vb.pp("norm2"))?,
            fc1: candle_nn::linear(dim, mlp, vb.pp("mlp.fc1"))?,
            fc2: candle_nn::linear(mlp, dim, vb.pp("mlp.fc2"))?,
            heads,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (b, t, d) = x.dims3()?;
        let (h, dh) = (self.heads, d / self.heads);
        let qkv = self
            .qkv
            .forward(&self.norm1.forward(x)?)?
            .reshape((b, t, 3, h, dh))?
            .permute((2, 0, 3, 1, 4))?; // [3, b, h, t, dh]
        let q = qkv.get(0)?.contiguous()?;
        let k = qkv.get(1)?.contiguous()?;
        let v = qkv.get(2)?.contiguous()?;
        let scores = (q.matmul(&k.transpose(2, 3)?.contiguous()?)? / (dh as f64).sqrt())?;
        let attn = crate::model::transformer_ops::softmax_last_dim(&scores)?;
        let out = attn
            .matmul(&v)?
            .transpose(1, 2)?
            .contiguous()?
            .reshape((b, t, d))?;
        let x = (x + self.proj.forward(&out)?)?;
        let m = self
            .fc2
            .forward(&self.fc1.forward(&self.norm2.forward(&x)?)?.gelu_erf()?)?;
        x + m
    }
}

/// Vision transformer: patch embedding, class token, learned positions, blocks, final norm.
pub struct Vit {
    patch_weight: Tensor,
    patch_bias: Tensor,
    cls: Tensor,
    pos: Tensor,
    blocks: Vec<VitBlock>,
    norm: LayerNorm,
    patch: usize,
    pub channels: usize,
}

impl Vit {
    pub fn new(config: &ModelConfig, vb: VarBuilder) -> Result<Self> {
        let (p, d) = (config.vit_patch, config.vit_dim);
        let n = (config.input_size / p).pow(2);
        let small = |std: f64| candle_nn::Init::Randn {
            mean: 0.0,
            stdev: std,
        };
        Ok(Self {
            patch_weight: kaiming(&vb, (d, 1, p, p), "patch_embed.proj.weight")?,
            patch_bias: vb.get_with_hints(
                d,
                "patch_embed.proj.bias",
                candle_nn::Init::Const(0.0),
            )?,
            cls: vb.get_with_hints((1, 1, d), "cls_token", small(0.02))?,
            pos: vb.get_with_hints((1, n + 1, d), "pos_embed", small(0.02))?,
            blocks: (0..config.vit_layers)
                .map(|i| {
                    VitBlock::new(
                        d,
                        config.vit_heads,
                        config.vit_mlp,
                        vb.pp(format!("blocks.{i}")),
                    )
                })
                .collect::<Result<_>>()?,
            norm: LayerNorm::new(d, vb.pp("norm"))?,
            patch: p,
            channels: d,
        })
    }

    /// `[b, 1, s, s]` -> (patch tokens `[b, cells, dim]`, class token `[b, dim]`).
    pub fn forward(&self, x: &Tensor) -> Result<(Tensor, Tensor)> {
        let (b, _, h, w) = x.dims4()?;
        let p = self.patch;
        let (gh, gw) = (h / p, w / p);
        let d = self.channels;
        let patches = x
            .reshape((b, gh, p, gw, p))?
            .permute((0, 1, 3, 2, 4))?
            .contiguous()?
            .reshape((b, gh * gw, p * p))?;
        let tokens = patches
            .broadcast_matmul(&self.patch_weight.reshape((d, p * p))?.t()?)?
            .broadcast_add(&self.patch_bias)?;
        let cls = self.cls.broadcast_as((b, 1, d))?.contiguous()?;
        let mut h = Tensor::cat(&[cls, tokens], 1)?.broadcast_add(&self.pos)?;
        for block in &self.blocks {
            h = block.forward(&h)?;
        }
        let h = self.norm.forward(&h)?;
        Ok((h.narrow(1, 1, gh * gw)?, h.get_on_dim(1, 0)?))
    }
}

/// The image encoder chosen by `model.encoder`.
pub enum ImageEncoder {
    Cnn(Vec<(ConvBn, ConvBn)>),
    ResNet(ResNet),
    Vit(Vit),
}

impl ImageEncoder {
    pub fn new(config: &ModelConfig, vb: VarBuilder) -> Result<(Self, usize)> {
        match config.encoder.as_str() {
            "resnet" => {
                let r = ResNet::new(
                    &config.resnet_blocks,
                    config.resnet_width,
                    vb.pp("image.resnet"),
                )?;
                let c = r.channels;
                Ok((Self::ResNet(r), c))
            }
            "vit" => {
                let v = Vit::new(config, vb.pp("image.vit"))?;
                let c = v.channels;
                Ok((Self::Vit(v), c))
            }
            _ => {
                let mut stages = Vec::new();
                let mut cin = 1;
                for (i, &c) in config.channels.iter().enumerate() {
                    let vs = vb.pp(format!("image.stage{i}"));
                    stages.push((
                        ConvBn::new(cin, c, 2, vs.pp("down"))?,
                        ConvBn::new(c, c, 1, vs.pp("conv"))?,
                    ));
                    cin = c;
                }
                Ok((Self::Cnn(stages), cin))
            }
        }
    }

    /// Side of the grid for an input of `config.input_size`.
    pub fn grid_side(config: &ModelConfig) -> usize {
        config.grid_side()
    }

    /// `[b, 1, s, s]` -> (grid `[b, cells, c]`, pooled `[b, c]`).
    pub fn forward(&self, x: &Tensor, train: bool) -> Result<(Tensor, Tensor)> {
        let (grid, pooled, _) = self.forward_stages(x, train)?;
        Ok((grid, pooled))
    }

    /// [`Self::forward`], with the CNN's stage maps (stage 0 first; empty for other encoders).
    pub fn forward_stages(&self, x: &Tensor, train: bool) -> Result<(Tensor, Tensor, Vec<Tensor>)> {
        let mut maps = Vec::new();
        let map = match self {
            Self::Vit(v) => {
                let (grid, pooled) = v.forward(x)?;
                return Ok((grid, pooled, maps));
            }
            Self::ResNet(r) => r.forward(x, train)?,
            Self::Cnn(stages) => {
                let mut h = x.clone();
                for (down, conv) in stages {
                    h = conv.forward(&down.forward(&h, train)?, train)?;
                    maps.push(h.clone());
                }
                h
            }
        };
        let (b, c, gh, gw) = map.dims4()?;
        let grid = map
            .reshape((b, c, gh * gw))?
            .transpose(1, 2)?
            .contiguous()?;
        let pooled = grid.mean(1)?;
        Ok((grid, pooled, maps))
    }
}

/// Errors loading pretrained image weights.
#[derive(Debug, thiserror::Error)]
pub enum PretrainedError {
    #[error("{path}: {source}")]
    Read {
        path: String,
        source: candle_core::Error,
    },
    #[error("{path}: tensor {name}: {reason}")]
    Tensor {
        path: String,
        name: String,
        reason: String,
    },
    #[error("{path}: no tensor matches the {encoder} encoder's parameters (torchvision ResNet or timm ViT/DeiT names expected)")]
    NothingLoaded { path: String, encoder: String },
}

/// Loads a torchvision ResNet or timm ViT/DeiT safetensors file into the image encoder's
/// variables (by name, under `image.resnet.` / `image.vit.`). The RGB stem (`conv1.weight`,
/// `patch_embed.proj.weight`) is summed over its input colours; classifier heads, distillation
/// tokens and `num_batches_tracked` are ignored. A shape that differs is an error naming the
/// tensor. Returns how many tensors were loaded.
pub fn load_pretrained_image(
    varmap: &candle_nn::VarMap,
    path: &std::path::Path,
    config: &ModelConfig,
) -> std::result::Result<usize, PretrainedError> {
    let name = path.display().to_string();
    let tensors =
        candle_core::safetensors::load(path, &candle_core::Device::Cpu).map_err(|source| {
            PretrainedError::Read {
                path: name.clone(),
                source,
            }
        })?;
    let prefix = match config.encoder.as_str() {
        "resnet" => "image.resnet.",
        "vit" => "image.vit.",
        _ => "image.",
    };
    let data = varmap.data().lock().map_err(|e| PretrainedError::Read {
        path: name.clone(),
        source: candle_core::Error::Msg(e.to_string()),
    })?;
    let mut loaded = 0;
    let mut keys: Vec<&String> = tensors.keys().collect();
    keys.sort();
    for key in keys {
        if key.ends_with("num_batches_tracked")
            || key.starts_with("fc.")
            || key.starts_with("head")
            || key.starts_with("dist_token")
        {
            continue;
        }
        let Some(var) = data.get(&format!("{prefix}{key}")) else {
            continue;
        };
        let err = |reason: String| PretrainedError::Tensor {
            path: name.clone(),
            name: key.clone(),
            reason,
        };
        let mut t = tensors[key]
            .to_dtype(candle_core::DType::F32)
            .map_err(|e| err(e.to_string()))?;
        let stem = key == "conv1.weight" || key == "patch_embed.proj.weight";
        if stem && t.rank() == 4 && t.dim(1).unwrap_or(1) != 1 {
            t = t.sum_keepdim(1).map_err(|e| err(e.to_string()))?;
        }
        if t.dims() != var.dims() {
            return Err(err(format!(
                "shape {:?}, the model's is {:?} (check the configuration's sizes)",
                t.dims(),
                var.dims()
            )));
        }
        var.set(&t.to_device(var.device()).map_err(|e| err(e.to_string()))?)
            .map_err(|e| err(e.to_string()))?;
        loaded += 1;
    }
    if loaded == 0 {
        return Err(PretrainedError::NothingLoaded {
            path: name,
            encoder: config.encoder.clone(),
        });
    }
    Ok(loaded)
}
