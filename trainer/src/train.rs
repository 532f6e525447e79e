//! `asg-train fit`: batches, the weighted ASG losses, AdamW with warm-up + cosine and gradient
//! clipping, checkpoints (safetensors) that resume exactly, a JSONL log, a progress bar and a
//! loss-curve PNG.

use crate::asg::{new_model, AsgModel, FINDINGS, REGIONS};
use crate::config::Config;
use crate::data::{self, Dataset, Example, Split};
use crate::losses;
use asg_report::TextTokenizer as Tokenizer;
use candle_core::{backprop::GradStore, DType, Device, Tensor, Var};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Errors of a training run.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    #[error(transparent)]
    Data(#[from] data::DataError),
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Invalid(String),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> TrainError + '_ {
    move |source| TrainError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// The names of the loss terms, in log order.
pub const LOSS_NAMES: [&str; 7] = ["ira", "arsa", "tag", "soft", "box_l1", "box_giou", "region"];

/// A batch as tensors.
pub struct Batch {
    pub images: Tensor,
    pub boxes: Tensor,
    pub box_mask: Tensor,
    pub ids: Tensor,
    pub id_mask: Tensor,
    pub tags: Tensor,
    pub region_targets: Tensor,
    /// Per image: the regions that sentences name, and `[1, k, tokens]` rows averaging the tokens
    /// of those sentences.
    pub arsa: Vec<(Vec<u32>, Tensor)>,
}

/// Stacks examples into a batch.
pub fn collate(examples: &[Example], size: usize, device: &Device) -> candle_core::Result<Batch> {
    let b = examples.len();
    let t = examples.iter().map(|e| e.ids.len()).max().unwrap_or(2);
    let mut images = Vec::with_capacity(b * size * size);
    let mut boxes = Vec::with_capacity(b * REGIONS * 4);
    let mut box_mask = Vec::with_capacity(b * REGIONS);
    let mut ids = Vec::with_capacity(b * t);
    let mut id_mask = Vec::with_capacity(b * t);
    let mut tags = Vec::with_capacity(b * FINDINGS);
    let mut region_targets = Vec::with_capacity(b * REGIONS * FINDINGS);
    let mut arsa = Vec::with_capacity(b);
    for e in examples {
        images.extend_from_slice(&e.image);
        for (bx, p) in e.boxes.iter().zip(&e.box_present) {
            boxes.extend_from_slice(bx);
            box_mask.push(if *p { 1.0f32 } else { 0.0 });
        }
        for k in 0..t {
            ids.push(e.ids.get(k).copied().unwrap_or(asg_report::tokenizer::PAD));
            id_mask.push(if k < e.ids.len() { 1.0f32 } else { 0.0 });
        }
        tags.extend_from_slice(&e.tags);
        region_targets.extend_from_slice(&e.region_targets);
        let k = e.region_sentences.len();
        let mut avg = vec![0.0f32; k * t];
        for (row, (_, toks)) in e.region_sentences.iter().enumerate() {
            for &tok in toks {
                if tok < t {
                    avg[row * t + tok] = 1.0 / toks.len() as f32;
                }
            }
        }
        let regions: Vec<u32> = e.region_sentences.iter().map(|(r, _)| *r as u32).collect();
        arsa.push((regions, Tensor::from_vec(avg, (1, k, t), device)?));
    }
    Ok(Batch {
        images: Tensor::from_vec(images, (b, 1, size, size), device)?,
        boxes: Tensor::from_vec(boxes, (b, REGIONS, 4), device)?,
        box_mask: Tensor::from_vec(box_mask, (b, REGIONS), device)?,
        ids: Tensor::from_vec(ids, (b, t), device)?,
        id_mask: Tensor::from_vec(id_mask, (b, t), device)?,
        tags: Tensor::from_vec(tags, (b, FINDINGS), device)?,
        region_targets: Tensor::from_vec(region_targets, (b, REGIONS, FINDINGS), device)?,
        arsa,
    })
}

/// The loss terms of a batch (unweighted) and the weighted total.
pub struct Losses {
    pub terms: Vec<(&'static str, Tensor)>,
    pub total: Tensor,
}

/// Runs the model on a batch and computes every loss term.
pub fn compute_losses(
    model: &AsgModel,
    batch: &Batch,
    config: &Config,
    train: bool,
) -> candle_core::Result<Losses> {
    let w = &config.loss;
    let tau = w.temperature;
    let img = model.image(&batch.images, train)?;
    let txt = model.text(&batch.ids, &batch.id_mask)?;
    let ira = losses::ira(&img.global, &txt.report, tau)?;
    let soft = losses::soft_label(&img.global, &txt.report, &batch.tags, tau)?;
    let tag = losses::bce_with_logits(&img.tag_logits, &batch.tags, &batch.tags.ones_like()?)?;
    let b = batch.boxes.dim(0)?;
    let pred = img.boxes.reshape((b * REGIONS, 4))?;
    let target = batch.boxes.reshape((b * REGIONS, 4))?;
    let mask = batch.box_mask.reshape(b * REGIONS)?;
    let box_l1 = losses::box_l1(&pred, &target, &mask)?;
    let box_giou = losses::box_giou(&pred, &target, &mask)?;
    // Regions pooled over the TRUE boxes in training (DESIGN.md).
    let (region_emb, region_logits) = model.regions(&img.grid, &batch.boxes)?;
    let region_mask = batch
        .box_mask
        .unsqueeze(2)?
        .broadcast_as((b, REGIONS, FINDINGS))?
        .contiguous()?;
    let region = losses::bce_with_logits(&region_logits, &batch.region_targets, &region_mask)?;
    let mut arsa_terms = Vec::new();
    for (i, (regions, avg)) in batch.arsa.iter().enumerate() {
        if regions.len() < 2 {
            continue;
        }
        let idx = Tensor::from_vec(regions.clone(), regions.len(), region_emb.device())?;
        let r = region_emb.get(i)?.index_select(&idx, 0)?;
        let s = model
            .sentences(&txt.tokens.narrow(0, i, 1)?, avg)?
            .squeeze(0)?;
        arsa_terms.push(losses::arsa(&r, &s, tau)?);
    }
    let arsa = if arsa_terms.is_empty() {
        Tensor::zeros((), DType::F32, img.global.device())?
    } else {
        let n = arsa_terms.len();
        (Tensor::stack(&arsa_terms, 0)?.sum_all()? / n as f64)?
    };
    let terms = vec![
        ("ira", ira),
        ("arsa", arsa),
        ("tag", tag),
        ("soft", soft),
        ("box_l1", box_l1),
        ("box_giou", box_giou),
        ("region", region),
    ];
    let weights = [w.ira, w.arsa, w.tag, w.soft, w.box_l1, w.box_giou, w.region];
    let mut total = Tensor::zeros((), DType::F32, img.global.device())?;
    for ((_, t), wt) in terms.iter().zip(weights) {
        if wt != 0.0 {
            total = (total + (t * wt)?)?;
        }
    }
    Ok(Losses { terms, total })
}

/// AdamW (decoupled weight decay, not on biases, norms, embeddings' positions or queries), with
/// its moments kept as tensors so that a checkpoint can save and restore them exactly.
pub struct AdamW {
    vars: Vec<(String, Var)>,
    m: Vec<Tensor>,
    v: Vec<Tensor>,
    pub step: u64,
    beta1: f64,
    beta2: f64,
    eps: f64,
    weight_decay: f64,
}

impl AdamW {
    /// The trainable variables of `varmap` (batch-norm running statistics excluded), by name.
    pub fn new(varmap: &candle_nn::VarMap, weight_decay: f64) -> candle_core::Result<Self> {
        let data = varmap
            .data()
            .lock()
            .map_err(|e| candle_core::Error::Msg(e.to_string()))?;
        let mut vars: Vec<(String, Var)> = data
            .iter()
            .filter(|(n, _)| !n.contains("running_"))
            .map(|(n, v)| (n.clone(), v.clone()))
            .collect();
        vars.sort_by(|a, b| a.0.cmp(&b.0));
        let m = vars
            .iter()
            .map(|(_, v)| v.as_tensor().zeros_like())
            .collect::<candle_core::Result<_>>()?;
        let v = vars
            .iter()
            .map(|(_, v)| v.as_tensor().zeros_like())
            .collect::<candle_core::Result<_>>()?;
        Ok(Self {
            vars,
            m,
            v,
            step: 0,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay,
        })
    }

    pub fn var_names(&self) -> impl Iterator<Item = &str> {
        self.vars.iter().map(|(n, _)| n.as_str())
    }

    fn decays(name: &str, rank: usize) -> bool {
        rank >= 2
            && !name.contains("position")
            && !name.contains("queries")
            && !name.contains("memory_pos")
    }

    /// The global L2 norm of the gradients.
    pub fn grad_norm(&self, grads: &GradStore) -> candle_core::Result<f64> {
        let mut sum = 0.0f64;
        for (_, var) in &self.vars {
            if let Some(g) = grads.get(var.as_tensor()) {
                sum += g
                    .sqr()?
                    .sum_all()?
                    .to_dtype(DType::F64)?
                    .to_scalar::<f64>()?;
            }
        }
        Ok(sum.sqrt())
    }

    /// One update with learning rate `lr`; gradients scaled by `scale` first (clipping).
    pub fn update(&mut self, grads: &GradStore, lr: f64, scale: f64) -> candle_core::Result<()> {
        self.step += 1;
        let t = self.step as i32;
        let (b1, b2) = (self.beta1, self.beta2);
        let c1 = 1.0 - b1.powi(t);
        let c2 = 1.0 - b2.powi(t);
        for (i, (name, var)) in self.vars.iter().enumerate() {
            let Some(g) = grads.get(var.as_tensor()) else {
                continue;
            };
            let g = (g * scale)?;
            self.m[i] = ((&self.m[i] * b1)? + (&g * (1.0 - b1))?)?;
            self.v[i] = ((&self.v[i] * b2)? + (g.sqr()? * (1.0 - b2))?)?;
            let m_hat = (&self.m[i] / c1)?;
            let v_hat = (&self.v[i] / c2)?;
            let step = (m_hat / (v_hat.sqrt()? + self.eps)?)?;
            let theta = var.as_tensor();
            let decayed = if Self::decays(name, theta.rank()) {
                (theta * (1.0 - lr * self.weight_decay))?
            } else {
                theta.clone()
            };
            var.set(&(decayed - (step * lr)?)?)?;
        }
        Ok(())
    }

    /// The moments as named tensors (`m.<var>`, `v.<var>`, and the step).
    pub fn state(&self) -> candle_core::Result<HashMap<String, Tensor>> {
        let mut out = HashMap::new();
        for (i, (name, _)) in self.vars.iter().enumerate() {
            out.insert(format!("m.{name}"), self.m[i].clone());
            out.insert(format!("v.{name}"), self.v[i].clone());
        }
        out.insert(
            "step".into(),
            Tensor::new(&[self.step as f64], &Device::Cpu)?,
        );
        Ok(out)
    }

    /// Restores the moments written by [`AdamW::state`].
    pub fn load_state(&mut self, state: &HashMap<String, Tensor>) -> candle_core::Result<()> {
        for (i, (name, var)) in self.vars.iter().enumerate() {
            for (prefix, slot) in [("m", &mut self.m[i]), ("v", &mut self.v[i])] {
                let t = state.get(&format!("{prefix}.{name}")).ok_or_else(|| {
                    candle_core::Error::Msg(format!("optimizer state has no {prefix}.{name}"))
                })?;
                if t.dims() != var.dims() {
                    return Err(candle_core::Error::Msg(format!(
                        "optimizer state {prefix}.{name} has shape {:?}, the model {:?}",
                        t.dims(),
                        var.dims()
                    )));
                }
                *slot = t.to_device(var.device())?;
            }
        }
        let step = state
            .get("step")
            .ok_or_else(|| candle_core::Error::Msg("optimizer state has no step".into()))?;
        self.step = step.to_vec1::<f64>()?.first().copied().unwrap_or(0.0) as u64;
        Ok(())
    }
}

/// Learning rate at `step` (0-based): linear warm-up, then cosine decay to 1% of the peak.
pub fn learning_rate(step: u64, peak: f64, warmup: u64, total: u64) -> f64 {
    if step < warmup {
        return peak * (step + 1) as f64 / warmup as f64;
    }
    let span = total.saturating_sub(warmup).max(1) as f64;
    let progress = ((step - warmup) as f64 / span).min(1.0);
    let floor = 0.01 * peak;
    floor + (peak - floor) * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
}

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
    pub data: &'a Path,
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
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), TrainError> {
    let tmp = path.with_extension("partial");
    std::fs::write(&tmp, bytes).map_err(io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io(path))
}

fn save_tensors(path: &Path, tensors: &HashMap<String, Tensor>) -> Result<(), TrainError> {
    let tmp = path.with_extension("partial");
    candle_core::safetensors::save(tensors, &tmp)?;
    std::fs::rename(&tmp, path).map_err(io(path))
}

fn varmap_tensors(varmap: &candle_nn::VarMap) -> Result<HashMap<String, Tensor>, TrainError> {
    let data = varmap
        .data()
        .lock()
        .map_err(|e| TrainError::Invalid(e.to_string()))?;
    Ok(data
        .iter()
        .map(|(n, v)| (n.clone(), v.as_tensor().clone()))
        .collect())
}

/// Saves the model, the optimizer and the step under `out`.
fn checkpoint(out: &Path, varmap: &candle_nn::VarMap, opt: &AdamW) -> Result<(), TrainError> {
    save_tensors(&out.join("model.safetensors"), &varmap_tensors(varmap)?)?;
    save_tensors(&out.join("optimizer.safetensors"), &opt.state()?)?;
    write_atomic(
        &out.join("state.json"),
        serde_json::json!({ "step": opt.step })
            .to_string()
            .as_bytes(),
    )
}

/// Loads the examples of a step on worker threads, ahead of the model.
struct Prefetcher {
    rx: std::sync::mpsc::Receiver<(u64, Result<Vec<Example>, data::DataError>)>,
    pending: BTreeMap<u64, Result<Vec<Example>, data::DataError>>,
    consumed: Arc<AtomicU64>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    handles: Vec<std::thread::JoinHandle<()>>,
}

impl Prefetcher {
    fn start(
        records: Arc<Vec<data::Record>>,
        tokenizer: Arc<Tokenizer>,
        config: Arc<Config>,
        first: u64,
        last: u64,
    ) -> Self {
        let workers = config.train.workers.max(1);
        let ahead = config.train.prefetch.max(1) as u64;
        let (tx, rx) = std::sync::mpsc::channel();
        let consumed = Arc::new(AtomicU64::new(first));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut handles = Vec::new();
        for w in 0..workers {
            let (tx, records, tokenizer, config, consumed, stop) = (
                tx.clone(),
                records.clone(),
                tokenizer.clone(),
                config.clone(),
                consumed.clone(),
                stop.clone(),
            );
            handles.push(std::thread::spawn(move || {
                let mut step = first + w as u64;
                while step < last && !stop.load(Ordering::Relaxed) {
                    if step >= consumed.load(Ordering::Relaxed) + ahead {
                        std::thread::sleep(std::time::Duration::from_millis(1));
                        continue;
                    }
                    let idx = data::batch_indices(
                        records.len(),
                        config.train.batch_size,
                        config.train.seed,
                        step,
                    );
                    let batch: Result<Vec<Example>, _> = idx
                        .iter()
                        .enumerate()
                        .map(|(slot, &i)| {
                            let mut rng = data::example_rng(config.train.seed, step, slot);
                            data::prepare(&records[i], &tokenizer, &config, Some(&mut rng))
                        })
                        .collect();
                    if tx.send((step, batch)).is_err() {
                        return;
                    }
                    step += workers as u64;
                }
            }));
        }
        Self {
            rx,
            pending: BTreeMap::new(),
            consumed,
            stop,
            handles,
        }
    }

    fn next(&mut self, step: u64) -> Result<Vec<Example>, TrainError> {
        loop {
            if let Some(b) = self.pending.remove(&step) {
                self.consumed.store(step + 1, Ordering::Relaxed);
                return Ok(b?);
            }
            let (s, b) = self
                .rx
                .recv()
                .map_err(|_| TrainError::Invalid("the data loader stopped".into()))?;
            self.pending.insert(s, b);
        }
    }
}

impl Drop for Prefetcher {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for h in self.handles.drain(..) {
            let _ = h.join();
        }
    }
}

/// Trains per `config` on the data set at `options.data`, writing the run to `options.out`.
pub fn fit(config: &Config, options: RunOptions) -> Result<RunSummary, TrainError> {
    let out = options.out;
    std::fs::create_dir_all(out).map_err(io(out))?;
    let dataset: Dataset = data::scan(options.data)?;
    let train: Vec<data::Record> = dataset
        .records
        .iter()
        .filter(|r| r.split == Split::Train)
        .cloned()
        .collect();
    if train.len() < config.train.batch_size {
        return Err(TrainError::Invalid(format!(
            "{}: {} training studies, fewer than one batch of {} (scan: {:?})",
            options.data.display(),
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
                crate::bert::tokenizer_from_dir(Path::new(dir))
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
        let bert = crate::bert::BertConfig::from_dir(Path::new(dir))
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
    crate::init::seed_parameters(&varmap, config.train.seed)?;
    if let (false, Some(p)) = (start, &config.model.pretrained_image) {
        crate::backbones::load_pretrained_image(&varmap, Path::new(p), &config.model)
            .map_err(|e| TrainError::Invalid(e.to_string()))?;
    }
    if let (false, Some(_), Some(dir)) = (start, &config.model.bert, &config.model.bert_dir) {
        crate::bert::load_pretrained_bert(&varmap, Path::new(dir))
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
    let Run {
        config,
        model,
        varmap,
        tokenizer,
        out,
        log_path,
        stop_at,
    } = *run;
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
    let mut first = BTreeMap::new();
    let mut last = BTreeMap::new();
    let started = std::time::Instant::now();
    for step in first_step..end {
        let t0 = std::time::Instant::now();
        let examples = prefetch.next(step)?;
        let batch = collate(&examples, config.model.input_size, &device)?;
        let losses = compute_losses(model, &batch, config, true)?;
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
            checkpoint(out, varmap, opt)?;
        }
    }
    drop(prefetch);
    let summary = RunSummary {
        steps: end,
        first,
        last,
        parameters: crate::asg::parameter_count(varmap),
        train_examples: n_train,
        scan,
    };
    write_atomic(
        &out.join("summary.json"),
        serde_json::to_string_pretty(&summary)
            .unwrap_or_default()
            .as_bytes(),
    )?;
    crate::plot::loss_curve(log_path, &out.join("loss_curve.png"))
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

/// The files of a run folder.
pub fn run_files(out: &Path) -> Vec<PathBuf> {
    [
        "config.toml",
        "tokenizer.json",
        "model.safetensors",
        "optimizer.safetensors",
        "state.json",
        "log.jsonl",
        "summary.json",
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

/// Loads `config.toml`, `tokenizer.json` and `model.safetensors` from a run folder.
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
        let bert = crate::bert::BertConfig::from_dir(Path::new(dir))
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
    varmap.load(&weights)?;
    Ok(LoadedRun {
        config,
        tokenizer,
        model,
        varmap,
    })
}
