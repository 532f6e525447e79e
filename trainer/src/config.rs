//! Training configurations, read from TOML files (`trainer/configs/*.toml`). Every field has a
//! default, so a file only says what differs.

use serde::{Deserialize, Serialize};
use std::path::Path;

/// The normalisation of the model input (as the bundle's manifest states it).
pub const NORMALISATION: asg_dicom::Normalisation = asg_dicom::Normalisation {
    mean: 0.5,
    std: 0.25,
};

/// The model's sizes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModelConfig {
    /// Side of the square model input, pixels.
    pub input_size: usize,
    /// Image encoder: "cnn" (the CPU default), "resnet" (bottleneck ResNet; ResNet-50 with
    /// `resnet_blocks = [3, 4, 6, 3]`, `resnet_width = 64`) or "vit" (ViT-B/16 with patch 16,
    /// dim 768, 12 layers, 12 heads, MLP 3072).
    pub encoder: String,
    /// CNN: output channels of each stride-2 stage (two 3x3 convolutions each).
    pub channels: Vec<usize>,
    pub resnet_blocks: Vec<usize>,
    pub resnet_width: usize,
    pub vit_patch: usize,
    pub vit_dim: usize,
    pub vit_layers: usize,
    pub vit_heads: usize,
    pub vit_mlp: usize,
    /// Text encoder: "ours" (a transformer over a word vocabulary trained on the corpus) or "bert"
    /// (a pretrained BERT from `bert_dir`: config.json, model.safetensors, tokenizer.json or
    /// vocab.txt; its sizes replace text_dim/layers/heads).
    pub text_encoder: String,
    pub bert_dir: Option<String>,
    /// The BERT's sizes, read from `bert_dir` when a run starts (not part of the file).
    #[serde(skip)]
    pub bert: Option<BertConfig>,
    /// Pretrained image-encoder weights to start from (safetensors with torchvision ResNet or
    /// timm ViT/DeiT names), read on a fresh run.
    pub pretrained_image: Option<String>,
    /// Shared embedding space (the paper's 128).
    pub embed_dim: usize,
    /// Text encoder width, layers, heads, feed-forward width, longest report in tokens.
    pub text_dim: usize,
    pub text_layers: usize,
    pub text_heads: usize,
    pub text_ff: usize,
    pub max_tokens: usize,
    /// Vocabulary size of the tokenizer trained on the corpus.
    pub vocab_size: usize,
    /// Query decoders (tags, boxes): width, layers, heads.
    pub decoder_dim: usize,
    pub decoder_layers: usize,
    pub decoder_heads: usize,
    /// An anatomy head (CNN encoder only): masks of the lungs, heart, clavicles and mediastinum
    /// at a quarter of the input's side, from the second to the last stage; at inference the
    /// boxes of those regions are read off the masks (`model::anatomy`).
    pub anatomy_head: bool,
    /// The anatomy head's width.
    pub anatomy_dim: usize,
    /// The first CNN stage the anatomy head reads (its masks have that stage's side: 1, a
    /// quarter of the input's; 0, a half).
    pub anatomy_from_stage: usize,
    /// With the anatomy head: also read the lung zones and apical zones off the lung and
    /// clavicle masks, by the rules the targets follow (`data/masks.rs`).
    pub anatomy_zones: bool,
    /// How the region head pools a region's cells: 0 averages the grid over the box (then one
    /// linear layer); above 0 it is the sharpness `r` of a log-sum-exp over the head's per-cell
    /// logits `l_c` weighted by the box's share `w_c` of each cell,
    /// `(1/r) ln sum_c w_c exp(r l_c)`: between the mean (r -> 0) and the max (r -> inf), so a
    /// finding in a few cells (a nodule, patchy opacity) is not averaged away over its zone.
    pub region_lse: f64,
}

impl ModelConfig {
    /// Side of the image encoder's local feature grid.
    pub fn grid_side(&self) -> usize {
        match self.encoder.as_str() {
            "resnet" => self.input_size / 32,
            "vit" => self.input_size / self.vit_patch.max(1),
            _ => self.input_size >> self.channels.len(),
        }
    }
}

impl Default for ModelConfig {
    fn default() -> Self {
        Self {
            input_size: 224,
            encoder: "cnn".into(),
            channels: vec![32, 64, 128, 256],
            resnet_blocks: vec![3, 4, 6, 3],
            resnet_width: 64,
            vit_patch: 16,
            vit_dim: 768,
            vit_layers: 12,
            vit_heads: 12,
            vit_mlp: 3072,
            pretrained_image: None,
            text_encoder: "ours".into(),
            bert_dir: None,
            bert: None,
            embed_dim: 128,
            text_dim: 128,
            text_layers: 2,
            text_heads: 4,
            text_ff: 256,
            max_tokens: 160,
            vocab_size: 2000,
            decoder_dim: 128,
            decoder_layers: 1,
            decoder_heads: 4,
            anatomy_head: false,
            anatomy_dim: 32,
            anatomy_from_stage: 1,
            anatomy_zones: true,
            region_lse: 0.0,
        }
    }
}

/// Loss weights (the paper's by default; the box and region terms are ours).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LossWeights {
    pub ira: f64,
    pub arsa: f64,
    pub tag: f64,
    pub soft: f64,
    pub box_l1: f64,
    pub box_giou: f64,
    pub region: f64,
    /// The anatomy masks (binary cross-entropy plus soft Dice), when the model has the head.
    pub anatomy: f64,
    /// Lesion cells: the region head's per-cell logits against where the experts' lesion masks
    /// lie on the feature grid (binary cross-entropy over the cells of the findings a film's
    /// lesion maps, or its known absences, say everything about; `data::lesions`). 0: off.
    pub lesion: f64,
    /// Lesion attention: minus the log of the tag decoder's attention share on a finding's
    /// lesion cells, for each finding outlined on a film. 0: off.
    pub lesion_attention: f64,
    /// Temperature of the contrastive terms.
    pub temperature: f64,
}

impl Default for LossWeights {
    fn default() -> Self {
        Self {
            ira: 1.0,
            arsa: 1.0,
            tag: 5.0,
            soft: 1.0,
            box_l1: 5.0,
            box_giou: 2.0,
            region: 1.0,
            anatomy: 5.0,
            lesion: 0.0,
            lesion_attention: 0.0,
            temperature: 0.07,
        }
    }
}

/// Optimisation and bookkeeping.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainConfig {
    pub batch_size: usize,
    pub steps: usize,
    pub lr: f64,
    pub weight_decay: f64,
    pub warmup_steps: usize,
    /// Clip the global gradient norm to this (0: no clipping).
    pub grad_clip: f64,
    pub seed: u64,
    pub checkpoint_every: usize,
    pub log_every: usize,
    /// Loader threads.
    pub workers: usize,
    /// Batches prepared ahead of the model.
    pub prefetch: usize,
    /// Films kept decoded and letterboxed in memory during a run, in MiB (0: decode a film
    /// each time it is drawn). A 256 px input is 256 KiB a film.
    pub image_cache_mb: usize,
    /// Uncertain findings count as this in the tag and region targets.
    pub uncertain_as: f32,
    /// Decay of the weights' exponential moving average (0: none; e.g. 0.998, an average over
    /// about the last 500 steps). When set, the run folder's average (`ema.safetensors`) is what
    /// the export and the evaluation use.
    pub ema: f64,
    /// The number type of the convolutions and linear layers in a step: `"f32"` (default) or
    /// `"bf16"` (mixed precision, for CUDA; emulated and slower on the CPU). The weights, the
    /// optimizer and the checkpoints stay `f32` either way.
    pub precision: Precision,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            batch_size: 16,
            steps: 3000,
            lr: 5e-4,
            weight_decay: 0.05,
            warmup_steps: 100,
            grad_clip: 1.0,
            seed: 1,
            checkpoint_every: 500,
            log_every: 10,
            workers: 2,
            prefetch: 4,
            image_cache_mb: 2048,
            uncertain_as: 1.0,
            ema: 0.0,
            precision: Precision::F32,
        }
    }
}

/// The number type of a training step's heavy products (`train.precision`; see
/// [`crate::model::precision`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// Everything in `f32` (the default; what the CPU fused ops run).
    #[default]
    F32,
    /// Convolutions and linear layers in `bfloat16`, the rest in `f32`.
    Bf16,
}

/// The default range of a drawn nodule's peak contrast (`augment.nodule_contrast`), in display
/// units: JSRT's nodules as measured on the realcxr films (the core 0.00-0.10 above the ring
/// around it, median 0.04).
pub const NODULE_CONTRAST: [f64; 2] = [0.02, 0.11];

/// Augmentation: moves the boxes with the image.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AugmentConfig {
    /// Zoom range (1: none).
    pub scale: [f64; 2],
    /// Largest shift, as a fraction of the side.
    pub shift: f64,
    /// Largest contrast change (fraction).
    pub contrast: f64,
    /// Standard deviation of added noise (model input units).
    pub noise: f64,
    /// Largest rotation about the centre, in degrees (0: none).
    pub rotation_deg: f64,
    /// Range of the display curve's exponent (display^gamma, drawn log-uniformly; [1, 1]:
    /// none): the exposure and processing curves of real acquisition.
    pub gamma: [f64; 2],
    /// Chance of an 8-bit JPEG round trip at quality 40..95 (films that reach us as JPEG).
    pub jpeg: f64,
    /// Chance of burned-in text and side markers (bright strokes near the border).
    pub markers: f64,
    /// Chance of a collimation band (a dark or bright strip along an edge, up to 12% wide).
    pub collimation: f64,
    /// Chance of edge enhancement as digital radiography's processing applies it (an unsharp
    /// mask: radius 1-4% of the side, amount 0.3-1.5).
    pub sharpen: f64,
    /// Chance of a percentile window (display values stretched from their 0.5 to their 99.5
    /// percentile): what the plugin shows of a DICOM film without a VOI window, e.g. a picture
    /// turned into DICOM by img2dcm, while the same picture as PNG is read as it is.
    pub rewindow: f64,
    /// Chance of a synthetic nodule drawn into a real film's lung (`data::nodules`): films with
    /// given labels and a lung mask, none with a nodule or mass already; the nodule is then
    /// labelled present on the film, in its lung and its lung zone, and named in the text.
    pub nodules: f64,
    /// The range of a drawn nodule's peak contrast, in display units (0..1; JSRT's nodules: the
    /// core 0.00-0.10 above the ring around it).
    pub nodule_contrast: [f64; 2],
    /// Chance that a film read as normal (a real film given as normal: JSRT's non-nodule class,
    /// ieee8023's "No Finding") is zoomed in by `zoom_in_scale` instead of `scale`, about its
    /// centre: a tight crop of a normal chest, which must stay clean (magnified, the chest's
    /// edges read as devices). Only normal films, so that no label is cropped out of view.
    pub zoom_in: f64,
    /// The zoom range of those films (2: the central quarter).
    pub zoom_in_scale: [f64; 2],
}

impl Default for AugmentConfig {
    fn default() -> Self {
        Self {
            scale: [0.9, 1.1],
            shift: 0.05,
            contrast: 0.15,
            noise: 0.03,
            rotation_deg: 0.0,
            gamma: [1.0, 1.0],
            jpeg: 0.0,
            markers: 0.0,
            collimation: 0.0,
            sharpen: 0.0,
            rewindow: 0.0,
            nodules: 0.0,
            nodule_contrast: NODULE_CONTRAST,
            zoom_in: 0.0,
            zoom_in_scale: [1.3, 2.0],
        }
    }
}

/// A whole configuration file.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub model: ModelConfig,
    pub loss: LossWeights,
    pub train: TrainConfig,
    pub augment: AugmentConfig,
}

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Parse {
        path: String,
        source: toml::de::Error,
    },
    #[error("{path}: {reason}")]
    Invalid { path: String, reason: String },
}

impl Config {
    /// Reads and checks a TOML file.
    pub fn from_file(path: &std::path::Path) -> Result<Self, ConfigError> {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: name.clone(),
            source,
        })?;
        Self::from_toml(&text, &name)
    }

    /// Parses and checks TOML text; `name` is used in errors.
    pub fn from_toml(text: &str, name: &str) -> Result<Self, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|source| ConfigError::Parse {
            path: name.to_string(),
            source,
        })?;
        config.check().map_err(|reason| ConfigError::Invalid {
            path: name.to_string(),
            reason,
        })?;
        Ok(config)
    }

    /// The sizes and values that make sense.
    pub fn check(&self) -> Result<(), String> {
        let m = &self.model;
        let stride = match m.encoder.as_str() {
            "cnn" => {
                if m.channels.is_empty() || m.channels.contains(&0) {
                    return Err("model.channels must be non-empty and positive".into());
                }
                1usize << m.channels.len()
            }
            "resnet" => {
                if m.resnet_blocks.len() != 4 || m.resnet_blocks.contains(&0) || m.resnet_width == 0
                {
                    return Err("model.resnet_blocks must be four positive counts and resnet_width positive".into());
                }
                32
            }
            "vit" => {
                if m.vit_patch == 0
                    || m.vit_dim == 0
                    || m.vit_heads == 0
                    || !m.vit_dim.is_multiple_of(m.vit_heads)
                    || m.vit_mlp == 0
                {
                    return Err("model.vit_dim must be a positive multiple of vit_heads; vit_patch and vit_mlp positive".into());
                }
                m.vit_patch
            }
            other => {
                return Err(format!(
                    "model.encoder {other:?}: want \"cnn\", \"resnet\" or \"vit\""
                ))
            }
        };
        match (m.text_encoder.as_str(), &m.bert_dir) {
            ("ours", _) | ("bert", Some(_)) => {}
            ("bert", None) => return Err("model.text_encoder \"bert\" needs model.bert_dir".into()),
            (other, _) => {
                return Err(format!(
                    "model.text_encoder {other:?}: want \"ours\" or \"bert\""
                ))
            }
        }
        if m.input_size == 0 || !m.input_size.is_multiple_of(stride) || m.input_size / stride < 2 {
            return Err(format!(
                "model.input_size {} must be a multiple of {stride} (the {} encoder's stride) and leave a grid of at least 2x2",
                m.input_size, m.encoder
            ));
        }
        for (name, dim, heads) in [
            ("text", m.text_dim, m.text_heads),
            ("decoder", m.decoder_dim, m.decoder_heads),
        ] {
            if heads == 0 || dim == 0 || !dim.is_multiple_of(heads) {
                return Err(format!(
                    "model.{name}_dim {dim} must be a positive multiple of model.{name}_heads {heads}"
                ));
            }
        }
        if !(0.0..1.0).contains(&self.train.ema) {
            return Err(format!(
                "train.ema {} must be in [0, 1) (0: no moving average)",
                self.train.ema
            ));
        }
        if m.max_tokens < 8 || m.vocab_size < 16 || m.embed_dim == 0 || m.text_ff == 0 {
            return Err(
                "model.max_tokens >= 8, vocab_size >= 16, embed_dim and text_ff > 0".into(),
            );
        }
        let t = &self.train;
        if t.batch_size < 2 {
            return Err(
                "train.batch_size must be at least 2 (the contrastive losses need negatives)"
                    .into(),
            );
        }
        if !(t.lr > 0.0 && t.lr.is_finite()) || t.steps == 0 {
            return Err("train.lr must be positive and train.steps at least 1".into());
        }
        if self.loss.temperature <= 0.0 {
            return Err("loss.temperature must be positive".into());
        }
        let a = &self.augment;
        if !(a.scale[0] > 0.0 && a.scale[0] <= a.scale[1]) {
            return Err("augment.scale must be [low, high] with 0 < low <= high".into());
        }
        if !(0.0..=1.0).contains(&a.zoom_in) {
            return Err("augment.zoom_in is a chance in 0..=1".into());
        }
        if !(a.zoom_in_scale[0] > 0.0 && a.zoom_in_scale[0] <= a.zoom_in_scale[1]) {
            return Err("augment.zoom_in_scale must be [low, high] with 0 < low <= high".into());
        }
        Ok(())
    }
}

/// The fields of a Hugging Face BERT `config.json` that the encoder needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BertConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    pub max_position_embeddings: usize,
    #[serde(default = "two")]
    pub type_vocab_size: usize,
    #[serde(default = "eps")]
    pub layer_norm_eps: f64,
}

fn two() -> usize {
    2
}
fn eps() -> f64 {
    1e-12
}

/// Errors reading a pretrained BERT folder.
#[derive(Debug, thiserror::Error)]
pub enum BertError {
    #[error("{path}: {reason}")]
    Invalid { path: String, reason: String },
}

pub(crate) fn bert_invalid(path: &Path, reason: impl std::fmt::Display) -> BertError {
    BertError::Invalid {
        path: path.display().to_string(),
        reason: reason.to_string(),
    }
}

impl BertConfig {
    /// Reads `DIR/config.json` and checks the sizes.
    pub fn from_dir(dir: &Path) -> std::result::Result<Self, BertError> {
        let path = dir.join("config.json");
        let text = std::fs::read_to_string(&path).map_err(|e| bert_invalid(&path, e))?;
        let c: BertConfig = serde_json::from_str(&text).map_err(|e| bert_invalid(&path, e))?;
        if c.num_attention_heads == 0 || !c.hidden_size.is_multiple_of(c.num_attention_heads) {
            return Err(bert_invalid(
                &path,
                "hidden_size must be a multiple of num_attention_heads",
            ));
        }
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_configs_parse() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("configs");
        let mut n = 0;
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "toml") {
                Config::from_file(&p).unwrap();
                n += 1;
            }
        }
        assert!(n >= 4);
    }

    #[test]
    fn bad_configs_are_named() {
        let e = Config::from_toml("[model]\ninput_size = 100\n", "x.toml").unwrap_err();
        assert!(
            e.to_string().starts_with("x.toml: model.input_size 100"),
            "{e}"
        );
        let e = Config::from_toml("[train]\nbatchsize = 3\n", "y.toml").unwrap_err();
        assert!(e.to_string().contains("unknown field"), "{e}");
    }
}
