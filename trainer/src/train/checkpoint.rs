//! Checkpoints: the model, the optimizer and the step written atomically as safetensors + JSON,
//! and a run folder loaded back (configuration, tokenizer, weights).

use crate::config::Config;
use crate::model::{new_model, AsgModel};
use crate::train::ema::Ema;
use crate::train::error::{io, TrainError};
use crate::train::optim::AdamW;
use asg_report::TextTokenizer as Tokenizer;
use candle_core::{Device, Tensor};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), TrainError> {
    let tmp = path.with_extension("partial");
    std::fs::write(&tmp, bytes).map_err(io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io(path))
}

pub(crate) fn save_tensors(
    path: &Path,
    tensors: &HashMap<String, Tensor>,
) -> Result<(), TrainError> {
    let tmp = path.with_extension("partial");
    candle_core::safetensors::save(tensors, &tmp)?;
    std::fs::rename(&tmp, path).map_err(io(path))
}

pub(crate) fn varmap_tensors(
    varmap: &candle_nn::VarMap,
) -> Result<HashMap<String, Tensor>, TrainError> {
    let data = varmap
        .data()
        .lock()
        .map_err(|e| TrainError::Invalid(e.to_string()))?;
    Ok(data
        .iter()
        .map(|(n, v)| (n.clone(), v.as_tensor().clone()))
        .collect())
}

/// Saves the model, the optimizer, the weights' moving average if there is one, and the step
/// under `out`.
pub(crate) fn checkpoint(
    out: &Path,
    varmap: &candle_nn::VarMap,
    opt: &AdamW,
    ema: Option<&Ema>,
) -> Result<(), TrainError> {
    save_tensors(&out.join("model.safetensors"), &varmap_tensors(varmap)?)?;
    if let Some(e) = ema {
        save_tensors(&out.join("ema.safetensors"), &e.tensors())?;
    }
    save_tensors(&out.join("optimizer.safetensors"), &opt.state()?)?;
    write_atomic(
        &out.join("state.json"),
        serde_json::json!({ "step": opt.step })
            .to_string()
            .as_bytes(),
    )
}

/// The files of a run folder.
pub fn run_files(out: &Path) -> Vec<PathBuf> {
    [
        "config.toml",
        "tokenizer.json",
        "model.safetensors",
        "optimizer.safetensors",
        "ema.safetensors",
        "state.json",
        "log.jsonl",
        "summary.json",
        "positives.json",
        "loss_curve.png",
    ]
    .iter()
    .map(|f| out.join(f))
    .collect()
}

/// A trained run loaded back: its configuration (with BERT sizes filled in), tokenizer and
/// model (inference only).
pub struct LoadedRun {
    pub config: Config,
    pub tokenizer: Tokenizer,
    pub model: AsgModel,
    pub varmap: candle_nn::VarMap,
}

/// Loads `config.toml`, `tokenizer.json` and the weights from a run folder: the moving average
/// (`ema.safetensors`) when the run kept one (`train.ema`), `model.safetensors` otherwise.
pub fn load_run(out: &Path, device: &Device) -> Result<LoadedRun, TrainError> {
    let config_path = out.join("config.toml");
    let text = std::fs::read_to_string(&config_path).map_err(io(&config_path))?;
    let mut config: Config = toml::from_str(&text)
        .map_err(|e| TrainError::Invalid(format!("{}: {e}", config_path.display())))?;
    let tok_path = out.join("tokenizer.json");
    let tokenizer =
        Tokenizer::from_json(&std::fs::read_to_string(&tok_path).map_err(io(&tok_path))?)
            .map_err(|e| TrainError::Invalid(format!("{}: {e}", tok_path.display())))?;
    let mut vocab = tokenizer.vocab_size();
    if let (true, Some(dir)) = (config.model.text_encoder == "bert", &config.model.bert_dir) {
        let bert = crate::model::bert::BertConfig::from_dir(Path::new(dir))
            .map_err(|e| TrainError::Invalid(e.to_string()))?;
        vocab = bert.vocab_size;
        config.model.text_dim = bert.hidden_size;
        config.model.max_tokens = config.model.max_tokens.min(bert.max_position_embeddings);
        config.model.bert = Some(bert);
    }
    let (model, mut varmap) = new_model(&config.model, vocab, device)?;
    let weights = out.join("model.safetensors");
    if !weights.is_file() {
        return Err(TrainError::Invalid(format!(
            "{}: no model.safetensors (is this a run folder from asg-train fit?)",
            out.display()
        )));
    }
    let averaged = out.join("ema.safetensors");
    if config.train.ema > 0.0 && averaged.is_file() {
        varmap.load(&averaged)?;
    } else {
        varmap.load(&weights)?;
    }
    Ok(LoadedRun {
        config,
        tokenizer,
        model,
        varmap,
    })
}
