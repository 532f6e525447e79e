//! The training loop: a fresh or resumed run, steps with the weighted losses, AdamW, gradient
//! clipping, checkpoints, a JSONL log, a progress report per step and the loss curve at the end.

use crate::config::Config;
use crate::data::{self, Dataset, Split};
use crate::model::{new_model, AsgModel};
use crate::train::batch::{collate, compute_losses};
use crate::train::checkpoint::{checkpoint, write_atomic};
use crate::train::ema::Ema;
use crate::train::error::{io, TrainError};
use crate::train::optim::{learning_rate, AdamW};
use crate::train::prefetch::Prefetcher;
use asg_report::TextTokenizer as Tokenizer;
use candle_core::{DType, Device};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

/// Progress reported to the caller each step.
pub struct StepReport<'a> {
    pub step: u64,
    pub total_steps: u64,
    pub loss: f64,
    pub terms: &'a [(String, f64)],
    pub images_per_second: f64,
}

/// Options of a run besides the configuration.
pub struct RunOptions<'a> {
    /// The data sets, each with its weight (records of weight k count k times per epoch).
    pub data: &'a [data::Source],
    pub out: &'a Path,
    pub resume: bool,
    pub device: Device,
    /// Stop (with a checkpoint) after this many steps in total, as an interruption would; the
    /// schedule still runs to `train.steps`.
    pub stop_at: Option<u64>,
    /// Called after every step.
    pub on_step: &'a mut dyn FnMut(&StepReport),
}

/// What a finished run reports.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RunSummary {
    pub steps: u64,
    pub first: BTreeMap<String, f64>,
    pub last: BTreeMap<String, f64>,
    pub parameters: usize,
    pub train_examples: usize,
    pub scan: data::ScanStats,
    /// Per finding, the training records that have it positive (the export offers only
    /// findings with positives).
    pub positives: BTreeMap<String, usize>,
}

/// Trains per `config` on the data sets of `options.data`, writing the run to `options.out`.
pub fn fit(config: &Config, options: RunOptions) -> Result<RunSummary, TrainError> {
    let out = options.out;
    std::fs::create_dir_all(out).map_err(io(out))?;
    let dataset: Dataset = data::scan_sources(options.data)?;
    // A record of weight k stands k times in the training order.
    let train: Vec<data::Record> = dataset
        .records
        .iter()
        .filter(|r| r.split == Split::Train)
        .flat_map(|r| std::iter::repeat_n(r.clone(), r.weight.max(1) as usize))
        .collect();
    if train.len() < config.train.batch_size {
        return Err(TrainError::Invalid(format!(
            "{}: {} training studies, fewer than one batch of {} (scan: {:?})",
            options
                .data
                .iter()
                .map(|s| s.path.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
            train.len(),
            config.train.batch_size,
            dataset.stats
        )));
    }
    let config_text = toml::to_string(config).map_err(|e| TrainError::Invalid(e.to_string()))?;
    let tok_path = out.join("tokenizer.json");
    let (tokenizer, start) = if options.resume {
        let saved = std::fs::read_to_string(out.join("config.toml"))
            .map_err(io(&out.join("config.toml")))?;
        if saved != config_text {
            return Err(TrainError::Invalid(format!(
                "{}: the run was made with another configuration; resume with the same file",
                out.join("config.toml").display()
            )));
        }
        let t = Tokenizer::from_json(&std::fs::read_to_string(&tok_path).map_err(io(&tok_path))?)
            .map_err(|e| TrainError::Invalid(format!("{}: {e}", tok_path.display())))?;
        (t, true)
    } else {
        let t = match &config.model.bert_dir {
            Some(dir) if config.model.text_encoder == "bert" => Tokenizer::WordPiece(
                crate::model::bert::tokenizer_from_dir(Path::new(dir))
                    .map_err(|e| TrainError::Invalid(e.to_string()))?,
            ),
            _ => Tokenizer::Word(data::train_tokenizer(&dataset, config.model.vocab_size)?),
        };
        write_atomic(&tok_path, t.to_json().as_bytes())?;
        write_atomic(&out.join("config.toml"), config_text.as_bytes())?;
        (t, false)
    };
    // With a pretrained BERT, its sizes replace the text encoder's.
    let mut effective = config.clone();
    let mut vocab = tokenizer.vocab_size();
    if let (true, Some(dir)) = (config.model.text_encoder == "bert", &config.model.bert_dir) {
        let bert = crate::model::bert::BertConfig::from_dir(Path::new(dir))
            .map_err(|e| TrainError::Invalid(e.to_string()))?;
        if tokenizer.vocab_size() > bert.vocab_size {
            return Err(TrainError::Invalid(format!(
                "{dir}: the tokenizer has {} tokens, the model's embedding {}",
                tokenizer.vocab_size(),
                bert.vocab_size
            )));
        }
        vocab = bert.vocab_size;
        effective.model.text_dim = bert.hidden_size;
        effective.model.max_tokens = config.model.max_tokens.min(bert.max_position_embeddings);
        effective.model.bert = Some(bert);
    }
    let config = &effective;
    let device = options.device;
    let (model, varmap) = new_model(&config.model, vocab, &device)?;
    crate::model::init::seed_parameters(&varmap, config.train.seed)?;
    if let (false, Some(p)) = (start, &config.model.pretrained_image) {
        crate::model::backbones::load_pretrained_image(&varmap, Path::new(p), &config.model)
            .map_err(|e| TrainError::Invalid(e.to_string()))?;
    }
    if let (false, Some(_), Some(dir)) = (start, &config.model.bert, &config.model.bert_dir) {
        crate::model::bert::load_pretrained_bert(&varmap, Path::new(dir))
            .map_err(|e| TrainError::Invalid(e.to_string()))?;
    }
    let mut opt = AdamW::new(&varmap, config.train.weight_decay)?;
    let log_path = out.join("log.jsonl");
    if start {
        let mut vm = varmap;
        vm.load(out.join("model.safetensors"))?;
        let state = candle_core::safetensors::load(out.join("optimizer.safetensors"), &device)?;
        opt.load_state(&state)?;
        let run = Run {
            config,
            model: &model,
            varmap: &vm,
            tokenizer: &tokenizer,
            out,
            log_path: &log_path,
            stop_at: options.stop_at,
        };
        return run_loop(&run, &mut opt, train, dataset.stats, options.on_step);
    }
    let _ = std::fs::remove_file(&log_path);
    let run = Run {
        config,
        model: &model,
        varmap: &varmap,
        tokenizer: &tokenizer,
        out,
        log_path: &log_path,
        stop_at: options.stop_at,
    };
    run_loop(&run, &mut opt, train, dataset.stats, options.on_step)
}

/// What the loop works with.
struct Run<'a> {
    config: &'a Config,
    model: &'a AsgModel,
    varmap: &'a candle_nn::VarMap,
    tokenizer: &'a Tokenizer,
    out: &'a Path,
    log_path: &'a Path,
    stop_at: Option<u64>,
}

fn run_loop(
    run: &Run,
    opt: &mut AdamW,
    train: Vec<data::Record>,
    scan: data::ScanStats,
    on_step: &mut dyn FnMut(&StepReport),
) -> Result<RunSummary, TrainError> {
    use std::io::Write;
    // Each record once (a weighted record stands several times in `train`).
    let mut seen = std::collections::BTreeSet::new();
    let unique: Vec<data::Record> = train
        .iter()
        .filter(|r| seen.insert(r.image_id.clone()))
        .cloned()
        .collect();
    let positives: BTreeMap<String, usize> = asg_report::FINDINGS
        .iter()
        .map(|f| f.to_string())
        .zip(data::positive_counts(
            &unique,
            run.config.train.uncertain_as,
        )?)
        .collect();
    let Run {
        config,
        model,
        varmap,
        tokenizer,
        out,
        log_path,
        stop_at,
    } = *run;
    // Written at the start, so that a checkpoint exported before the end knows them too.
    write_atomic(
        &out.join("positives.json"),
        serde_json::to_string_pretty(&positives)
            .unwrap_or_default()
            .as_bytes(),
    )?;
    let total_steps = config.train.steps as u64;
    let end = stop_at.unwrap_or(total_steps).min(total_steps);
    let first_step = opt.step;
    let n_train = train.len();
    let device = model_device(varmap)?;
    let mut prefetch = Prefetcher::start(
        Arc::new(train),
        Arc::new(tokenizer.clone()),
        Arc::new(config.clone()),
        first_step,
        end,
    );
    let mut log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log_path)
        .map_err(io(log_path))?;
    // The weights' moving average (train.ema), resumed from its file when the run resumes.
    let mut ema = if config.train.ema > 0.0 {
        let mut e = Ema::new(varmap, config.train.ema)?;
        let saved = out.join("ema.safetensors");
        if first_step > 0 && saved.is_file() {
            e.load(&candle_core::safetensors::load(&saved, &device)?)?;
        }
        Some(e)
    } else {
        None
    };
    let mut first = BTreeMap::new();
    let mut last = BTreeMap::new();
    let started = std::time::Instant::now();
    for step in first_step..end {
        let t0 = std::time::Instant::now();
        let examples = prefetch.next(step)?;
        let batch = collate(&examples, config.model.input_size, &device)?;
        // The forward pass in `train.precision` (the backward follows the types it recorded).
        let losses = {
            let _precision = crate::model::precision::autocast(config.train.precision);
            compute_losses(model, &batch, config, true)?
        };
        let grads = losses.total.backward()?;
        let norm = opt.grad_norm(&grads)?;
        let clip = config.train.grad_clip;
        let scale = if clip > 0.0 && norm > clip {
            clip / norm
        } else {
            1.0
        };
        let lr = learning_rate(
            step,
            config.train.lr,
            config.train.warmup_steps as u64,
            total_steps,
        );
        opt.update(&grads, lr, scale)?;
        if let Some(e) = ema.as_mut() {
            e.update(step)?;
        }
        let mut terms: Vec<(String, f64)> = Vec::new();
        for (name, t) in &losses.terms {
            terms.push((
                name.to_string(),
                t.to_dtype(DType::F64)?.to_scalar::<f64>()?,
            ));
        }
        let total = losses.total.to_dtype(DType::F64)?.to_scalar::<f64>()?;
        if !total.is_finite() {
            return Err(TrainError::Invalid(format!(
                "step {step}: the loss is {total} ({terms:?}); lower train.lr or check the data"
            )));
        }
        let ips = examples.len() as f64 / t0.elapsed().as_secs_f64().max(1e-9);
        let mut row: BTreeMap<String, f64> = terms.iter().cloned().collect();
        row.insert("total".into(), total);
        if step == first_step {
            first = row.clone();
        }
        last = row.clone();
        on_step(&StepReport {
            step,
            total_steps,
            loss: total,
            terms: &terms,
            images_per_second: ips,
        });
        let every = config.train.log_every.max(1) as u64;
        if step % every == 0 || step + 1 == total_steps {
            let mut line = serde_json::json!({
                "step": step,
                "lr": lr,
                "grad_norm": norm,
                "images_per_second": ips,
                "elapsed_s": started.elapsed().as_secs_f64(),
            });
            for (k, v) in &row {
                line[k] = serde_json::json!(v);
            }
            writeln!(log, "{line}").map_err(io(log_path))?;
        }
        let ck = config.train.checkpoint_every.max(1) as u64;
        if (step + 1) % ck == 0 || step + 1 == end {
            checkpoint(out, varmap, opt, ema.as_ref())?;
        }
    }
    drop(prefetch);
    let summary = RunSummary {
        steps: end,
        first,
        last,
        parameters: crate::model::asg::parameter_count(varmap),
        train_examples: n_train,
        scan,
        positives,
    };
    write_atomic(
        &out.join("summary.json"),
        serde_json::to_string_pretty(&summary)
            .unwrap_or_default()
            .as_bytes(),
    )?;
    crate::train::plot::loss_curve(log_path, &out.join("loss_curve.png"))
        .map_err(|e| TrainError::Invalid(format!("loss curve: {e}")))?;
    Ok(summary)
}

fn model_device(varmap: &candle_nn::VarMap) -> Result<Device, TrainError> {
    let data = varmap
        .data()
        .lock()
        .map_err(|e| TrainError::Invalid(e.to_string()))?;
    Ok(data
        .values()
        .next()
        .map(|v| v.device().clone())
        .unwrap_or(Device::Cpu))
}
