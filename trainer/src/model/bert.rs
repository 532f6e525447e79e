//! A BERT text encoder with Hugging Face parameter names (under `text.bert.`), so that a
//! pretrained checkpoint such as Bio_ClinicalBERT (`config.json`, `model.safetensors`,
//! `tokenizer.json` or `vocab.txt`) loads by name. Written with composed operations rather than
//! candle-transformers' BERT, whose fused layer norm and softmax have no backward pass: fine-tuning
//! through them would silently train nothing below the last layer norm.

use crate::config::bert_invalid as invalid;
use crate::model::layers::LayerNorm;
use crate::model::transformer_ops::linear;

pub use crate::config::{BertConfig, BertError};
use candle_core::{DType, Module, Result, Tensor};
use candle_nn::{Embedding, Linear, VarBuilder};
use std::path::Path;

/// The WordPiece tokenizer of a BERT folder (`tokenizer.json`, else `vocab.txt`, lower-cased).
pub fn tokenizer_from_dir(dir: &Path) -> std::result::Result<asg_report::WordPiece, BertError> {
    let json = dir.join("tokenizer.json");
    if json.is_file() {
        let text = std::fs::read_to_string(&json).map_err(|e| invalid(&json, e))?;
        return asg_report::WordPiece::from_tokenizer_json(&text).map_err(|e| invalid(&json, e));
    }
    let txt = dir.join("vocab.txt");
    let text = std::fs::read_to_string(&txt).map_err(|e| invalid(&txt, e))?;
    asg_report::WordPiece::from_vocab_txt(&text, true).map_err(|e| invalid(&txt, e))
}

struct Layer {
    query: Linear,
    key: Linear,
    value: Linear,
    attn_out: Linear,
    attn_ln: LayerNorm,
    intermediate: Linear,
    output: Linear,
    out_ln: LayerNorm,
    heads: usize,
}

impl Layer {
    fn new(c: &BertConfig, vb: VarBuilder) -> Result<Self> {
        let h = c.hidden_size;
        Ok(Self {
            query: candle_nn::linear(h, h, vb.pp("attention.self.query"))?,
            key: candle_nn::linear(h, h, vb.pp("attention.self.key"))?,
            value: candle_nn::linear(h, h, vb.pp("attention.self.value"))?,
            attn_out: candle_nn::linear(h, h, vb.pp("attention.output.dense"))?,
            attn_ln: LayerNorm::new_eps(h, c.layer_norm_eps, vb.pp("attention.output.LayerNorm"))?,
            intermediate: candle_nn::linear(h, c.intermediate_size, vb.pp("intermediate.dense"))?,
            output: candle_nn::linear(c.intermediate_size, h, vb.pp("output.dense"))?,
            out_ln: LayerNorm::new_eps(h, c.layer_norm_eps, vb.pp("output.LayerNorm"))?,
            heads: c.num_attention_heads,
        })
    }

    fn forward(&self, x: &Tensor, mask: &Tensor) -> Result<Tensor> {
        let (b, t, d) = x.dims3()?;
        let (h, dh) = (self.heads, d / self.heads);
        let split = |y: Tensor| -> Result<Tensor> {
            y.reshape((b, t, h, dh))?.transpose(1, 2)?.contiguous()
        };
        let q = split(linear(x, &self.query)?)?;
        let k = split(linear(x, &self.key)?)?;
        let v = split(linear(x, &self.value)?)?;
        let scores = (q.matmul(&k.transpose(2, 3)?.contiguous()?)? / (dh as f64).sqrt())?
            .broadcast_add(mask)?;
        let attn = crate::model::transformer_ops::softmax_last_dim(&scores)?;
        let ctx = attn
            .matmul(&v)?
            .transpose(1, 2)?
            .contiguous()?
            .reshape((b, t, d))?;
        let x = self
            .attn_ln
            .forward(&(x + linear(&ctx, &self.attn_out)?)?)?;
        let ff = linear(&linear(&x, &self.intermediate)?.gelu_erf()?, &self.output)?;
        self.out_ln.forward(&(x + ff)?)
    }
}

/// BERT (post-norm), Hugging Face layout.
pub struct Bert {
    word: Embedding,
    position: Embedding,
    token_type: Embedding,
    ln: LayerNorm,
    layers: Vec<Layer>,
}

impl Bert {
    pub fn new(c: &BertConfig, vb: VarBuilder) -> Result<Self> {
        let h = c.hidden_size;
        Ok(Self {
            word: candle_nn::embedding(c.vocab_size, h, vb.pp("embeddings.word_embeddings"))?,
            position: candle_nn::embedding(
                c.max_position_embeddings,
                h,
                vb.pp("embeddings.position_embeddings"),
            )?,
            token_type: candle_nn::embedding(
                c.type_vocab_size,
                h,
                vb.pp("embeddings.token_type_embeddings"),
            )?,
            ln: LayerNorm::new_eps(h, c.layer_norm_eps, vb.pp("embeddings.LayerNorm"))?,
            layers: (0..c.num_hidden_layers)
                .map(|i| Layer::new(c, vb.pp(format!("encoder.layer.{i}"))))
                .collect::<Result<_>>()?,
        })
    }

    /// Token ids `[b, t]` and mask `[b, t]` (1 = token) -> hidden states `[b, t, hidden]`.
    pub fn forward(&self, ids: &Tensor, mask: &Tensor) -> Result<Tensor> {
        let (b, t) = ids.dims2()?;
        let positions = Tensor::arange(0u32, t as u32, ids.device())?
            .unsqueeze(0)?
            .broadcast_as((b, t))?
            .contiguous()?;
        let types = Tensor::zeros((b, t), DType::U32, ids.device())?;
        let x = (self.word.forward(ids)? + self.position.forward(&positions)?)?
            .add(&self.token_type.forward(&types)?)?;
        let mut h = self.ln.forward(&x)?;
        let additive = ((mask.to_dtype(DType::F32)? - 1.0)? * 1e4)?
            .unsqueeze(1)?
            .unsqueeze(1)?;
        for layer in &self.layers {
            h = layer.forward(&h, &additive)?;
        }
        Ok(h)
    }
}

/// Loads `DIR/model.safetensors` into the `text.bert.` variables by name (a `bert.` prefix and
/// TensorFlow-era `gamma`/`beta` names are accepted; heads and the pooler are skipped). Returns
/// how many tensors were loaded; a shape that differs is an error naming the tensor.
pub fn load_pretrained_bert(
    varmap: &candle_nn::VarMap,
    dir: &Path,
) -> std::result::Result<usize, BertError> {
    let path = dir.join("model.safetensors");
    let tensors = candle_core::safetensors::load(&path, &candle_core::Device::Cpu)
        .map_err(|e| invalid(&path, e))?;
    let data = varmap.data().lock().map_err(|e| invalid(&path, e))?;
    let mut loaded = 0;
    for (key, t) in &tensors {
        let name = key.strip_prefix("bert.").unwrap_or(key);
        let name = name
            .replace("LayerNorm.gamma", "LayerNorm.weight")
            .replace("LayerNorm.beta", "LayerNorm.bias");
        let Some(var) = data.get(&format!("text.bert.{name}")) else {
            continue;
        };
        let t = t.to_dtype(DType::F32).map_err(|e| invalid(&path, e))?;
        if t.dims() != var.dims() {
            return Err(invalid(
                &path,
                format!(
                    "tensor {key}: shape {:?}, the model's is {:?}",
                    t.dims(),
                    var.dims()
                ),
            ));
        }
        var.set(&t.to_device(var.device()).map_err(|e| invalid(&path, e))?)
            .map_err(|e| invalid(&path, e))?;
        loaded += 1;
    }
    if loaded == 0 {
        return Err(invalid(&path, "no tensor has a BERT parameter's name"));
    }
    Ok(loaded)
}
