//! Training end to end on phantoms: every parameter gets a gradient, a resumed run equals an
//! uninterrupted one bit for bit, and every loss falls on a tiny configuration.

use asg_trainer::config::Config;
use asg_trainer::train::{fit, RunOptions, StepReport};
use std::path::Path;

fn phantoms(dir: &Path, n: u64) {
    let options = asg_phantom::set::SetOptions {
        n,
        seed: 3,
        image: asg_phantom::Options {
            size: 128,
            normal_share: 0.2,
            vary_format: true,
        },
        split: [8.0, 1.0, 1.0],
        errors: false,
        threads: 2,
    };
    asg_phantom::set::write_set(dir, &options, &|| {}).unwrap();
}

fn tiny(steps: usize) -> Config {
    let mut c = Config::from_file(&Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/tiny.toml"))
        .unwrap();
    c.train.steps = steps;
    c.train.log_every = 1;
    c
}

fn run(config: &Config, data: &Path, out: &Path, resume: bool, stop_at: Option<u64>) {
    let mut quiet = |_: &StepReport| {};
    fit(
        config,
        RunOptions {
            data: &[asg_trainer::data::Source::new(data)],
            out,
            resume,
            device: candle_core::Device::Cpu,
            stop_at,
            on_step: &mut quiet,
        },
    )
    .unwrap();
}

#[test]
fn every_trainable_parameter_receives_a_gradient() {
    let dir = tempfile::tempdir().unwrap();
    phantoms(dir.path(), 24);
    every_parameter_learns(dir.path(), false);
    // With the anatomy head, its targets drawn by hand (phantoms carry no masks), regions
    // pooled by log-sum-exp, and the lesion losses on hand-drawn lesion cells.
    every_parameter_learns(dir.path(), true);
}

fn every_parameter_learns(dir: &Path, anatomy: bool) {
    use asg_trainer::model::asg;
    use asg_trainer::{data, train};
    let mut config = tiny(1);
    config.model.anatomy_head = anatomy;
    // The second pass also pools regions by log-sum-exp (gradients through it, not the mean).
    config.model.region_lse = if anatomy { 3.0 } else { 0.0 };
    if anatomy {
        config.loss.lesion = 1.0;
        config.loss.lesion_attention = 1.0;
    }
    let set = data::scan(dir).unwrap();
    let tokenizer = asg_report::TextTokenizer::Word(
        data::train_tokenizer(&set, config.model.vocab_size).unwrap(),
    );
    let (model, varmap) = asg::new_model(
        &config.model,
        tokenizer.vocab_size(),
        &candle_core::Device::Cpu,
    )
    .unwrap();
    asg_trainer::model::init::seed_parameters(&varmap, 1).unwrap();
    let mut examples: Vec<_> = set.records[..config.train.batch_size]
        .iter()
        .map(|r| data::prepare(r, &tokenizer, &config, None).unwrap())
        .collect();
    if anatomy {
        let side = asg_trainer::vocab::anatomy_side(
            config.model.input_size,
            config.model.anatomy_from_stage,
        );
        for (i, e) in examples.iter_mut().enumerate() {
            for (k, v) in e.anatomy.iter_mut().enumerate() {
                let (x, y) = (k % side, (k / side) % side);
                *v = ((x + i) % side < side / 2 && y > side / 4) as u8 as f32;
            }
            e.anatomy_known.fill(1.0);
            // Phantoms carry no lesion maps (no target): draw finding i's lesion in cell 2i
            // and make every finding known.
            let l = &mut e.lesions;
            let findings = l.known.len();
            assert_eq!(l.targets.len() % findings, 0);
            l.known.fill(1.0);
            let cells = l.targets.len() / findings;
            l.targets[(2 * i % cells) * findings + i % findings] = 1.0;
        }
    }
    assert!(
        examples.iter().any(|e| e.region_sentences.len() >= 2),
        "no example to exercise ARSA"
    );
    let batch = train::collate(
        &examples,
        config.model.input_size,
        &candle_core::Device::Cpu,
    )
    .unwrap();
    let losses = train::compute_losses(&model, &batch, &config, true).unwrap();
    let grads = losses.total.backward().unwrap();
    let opt = train::AdamW::new(&varmap, 0.0).unwrap();
    let data = varmap.data().lock().unwrap();
    let mut dead = Vec::new();
    for name in opt.var_names() {
        let var = &data[name];
        let g = grads.get(var.as_tensor());
        let sum = g
            .map(|g| {
                g.abs()
                    .unwrap()
                    .sum_all()
                    .unwrap()
                    .to_scalar::<f32>()
                    .unwrap()
            })
            .unwrap_or(0.0);
        if !(sum > 0.0 && sum.is_finite()) {
            dead.push(name.to_string());
        }
    }
    assert!(dead.is_empty(), "no gradient reaches: {dead:?}");
    for term in ["anatomy", "lesion", "lesion_attention"] {
        assert_eq!(
            losses.terms.iter().any(|(n, _)| *n == term),
            anatomy,
            "{term}"
        );
    }
    for (name, t) in &losses.terms {
        let v = t.to_scalar::<f32>().unwrap();
        assert!(v.is_finite() && v > 0.0, "{name} = {v}");
    }
}

#[test]
fn a_resumed_run_equals_an_uninterrupted_one() {
    let data = tempfile::tempdir().unwrap();
    phantoms(data.path(), 24);
    let mut config = tiny(6);
    config.train.batch_size = 4;
    config.train.checkpoint_every = 100;
    // With the weights' moving average, which must resume exactly too.
    config.train.ema = 0.9;
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    run(&config, data.path(), a.path(), false, None);
    run(&config, data.path(), b.path(), false, Some(3));
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(b.path().join("state.json")).unwrap()).unwrap();
    assert_eq!(state["step"], 3);
    run(&config, data.path(), b.path(), true, None);
    for f in [
        "model.safetensors",
        "optimizer.safetensors",
        "ema.safetensors",
        "tokenizer.json",
    ] {
        assert!(
            std::fs::read(a.path().join(f)).unwrap() == std::fs::read(b.path().join(f)).unwrap(),
            "{f} differs after resuming"
        );
    }
    // A run folder with a moving average gives the average, not the last weights.
    let loaded = asg_trainer::train::load_run(a.path(), &candle_core::Device::Cpu).unwrap();
    let averaged =
        candle_core::safetensors::load(a.path().join("ema.safetensors"), &candle_core::Device::Cpu)
            .unwrap();
    let last = candle_core::safetensors::load(
        a.path().join("model.safetensors"),
        &candle_core::Device::Cpu,
    )
    .unwrap();
    let vars = loaded.varmap.data().lock().unwrap();
    let name = "proj.image_global.weight";
    let value = vars[name]
        .as_tensor()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    assert_eq!(
        value,
        averaged[name]
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap()
    );
    assert_ne!(
        value,
        last[name].flatten_all().unwrap().to_vec1::<f32>().unwrap()
    );
    drop(vars);
    // Resuming with another configuration is refused with the reason.
    config.train.lr *= 2.0;
    let mut quiet = |_: &StepReport| {};
    let err = fit(
        &config,
        RunOptions {
            data: &[asg_trainer::data::Source::new(data.path())],
            out: b.path(),
            resume: true,
            device: candle_core::Device::Cpu,
            stop_at: None,
            on_step: &mut quiet,
        },
    )
    .err()
    .unwrap();
    assert!(err.to_string().contains("another configuration"), "{err}");
}

/// The rows of a run's `log.jsonl`, one a step.
fn log_rows(run: &std::path::Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(run.join("log.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn every_loss_falls_on_a_tiny_configuration() {
    let data = tempfile::tempdir().unwrap();
    phantoms(data.path(), 80);
    let out = tempfile::tempdir().unwrap();
    let config = tiny(160);
    run(&config, data.path(), out.path(), false, None);
    let rows = log_rows(out.path());
    assert_eq!(rows.len(), 160);
    let mean = |rs: &[serde_json::Value], k: &str| {
        rs.iter().map(|r| r[k].as_f64().unwrap()).sum::<f64>() / rs.len() as f64
    };
    let mut report = Vec::new();
    let mut rising = Vec::new();
    for k in asg_trainer::train::LOSS_NAMES.iter().chain(&["total"]) {
        let (first, last) = (mean(&rows[..20], k), mean(&rows[rows.len() - 20..], k));
        report.push(format!("{k}: {first:.4} -> {last:.4}"));
        if last >= first * 0.97 {
            rising.push(*k);
        }
    }
    eprintln!("{}", report.join("\n"));
    assert!(
        rising.is_empty(),
        "did not fall: {rising:?}\n{}",
        report.join("\n")
    );
    assert!(out.path().join("loss_curve.png").exists());
    // The training positives per finding, written when the run starts.
    let positives: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.path().join("positives.json")).unwrap())
            .unwrap();
    assert_eq!(positives.as_object().unwrap().len(), 40);
    assert!(out.path().join("summary.json").exists());
}

#[test]
fn a_cached_film_prepares_exactly_as_a_decoded_one() {
    use asg_trainer::data;
    let dir = tempfile::tempdir().unwrap();
    phantoms(dir.path(), 6);
    let mut config = tiny(1);
    config.augment.rotation_deg = 5.0;
    config.augment.jpeg = 0.5;
    let set = data::scan(dir.path()).unwrap();
    let tokenizer = asg_report::TextTokenizer::Word(
        data::train_tokenizer(&set, config.model.vocab_size).unwrap(),
    );
    let cache = data::ImageCache::new(1 << 30);
    let none = data::ImageCache::new(0);
    for (slot, r) in set.records.iter().enumerate() {
        let rng = || data::example_rng(11, 3, slot);
        let plain = data::prepare(r, &tokenizer, &config, Some(&mut rng())).unwrap();
        // A miss, then a hit, then a cache too small to hold anything.
        for c in [&cache, &cache, &none] {
            let cached =
                data::prepare_cached(r, &tokenizer, &config, Some(&mut rng()), Some(c)).unwrap();
            assert_eq!(cached.image, plain.image);
            assert_eq!(cached.boxes, plain.boxes);
            assert_eq!(cached.tags, plain.tags);
        }
    }
    let side = config.model.input_size;
    assert_eq!(cache.bytes(), set.records.len() * side * side * 4);
    assert_eq!(none.bytes(), 0);
}

/// Mixed precision (`train.precision = "bf16"`): the same run in `bf16` follows the `f32` run
/// within bf16's rounding (its first step's losses, computed before any update, within 2%; the
/// trajectory after a dozen steps within 5%), and the weights it saves are `f32`. The CPU runs
/// the composed ops in `bf16` that CUDA runs, so this checks the CUDA path's arithmetic too.
#[test]
fn a_bf16_run_follows_the_f32_run_and_saves_f32_weights() {
    let data = tempfile::tempdir().unwrap();
    phantoms(data.path(), 24);
    let rows = |precision| {
        let out = tempfile::tempdir().unwrap();
        let mut config = tiny(12);
        config.train.precision = precision;
        run(&config, data.path(), out.path(), false, None);
        let rows = log_rows(out.path());
        let weights = candle_core::safetensors::load(
            out.path().join("model.safetensors"),
            &candle_core::Device::Cpu,
        )
        .unwrap();
        assert!(weights
            .values()
            .all(|t| t.dtype() == candle_core::DType::F32));
        rows
    };
    use asg_trainer::config::Precision;
    let (full, mixed) = (rows(Precision::F32), rows(Precision::Bf16));
    assert_eq!(full.len(), mixed.len());
    let mut report = Vec::new();
    let mut far = Vec::new();
    for k in asg_trainer::train::LOSS_NAMES.iter().chain(&["total"]) {
        for (step, bound) in [(0, 0.02), (full.len() - 1, 0.05)] {
            let (Some(a), Some(b)) = (full[step][k].as_f64(), mixed[step][k].as_f64()) else {
                continue;
            };
            assert!(b.is_finite(), "{k} at step {step}: {b}");
            report.push(format!("{k} step {step}: f32 {a:.5} bf16 {b:.5}"));
            if (a - b).abs() > bound * a.abs().max(1e-3) {
                far.push(format!("{k} step {step}"));
            }
        }
    }
    eprintln!("{}", report.join("\n"));
    assert_ne!(
        full[0]["total"], mixed[0]["total"],
        "bf16 changed nothing: the products did not run in bf16"
    );
    assert!(far.is_empty(), "apart: {far:?}\n{}", report.join("\n"));
}
