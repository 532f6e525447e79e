//! `asg-train eval`, `export` and `ablate` end to end on phantoms: a short run is exported, the
//! bundle (run by tract) and the run (Candle) give the same measurements, and the ablation trains
//! and tabulates each variant.

mod common;

use asg_trainer::config::Config;
use asg_trainer::eval::{evaluate, CandleModel, EvalOptions, OnnxBundle};
use asg_trainer::train::{fit, load_run, RunOptions, StepReport};
use std::path::Path;

fn phantoms(dir: &Path, n: u64) {
    let options = asg_phantom::set::SetOptions {
        n,
        seed: 4,
        image: asg_phantom::Options {
            size: 128,
            normal_share: 0.2,
            vary_format: true,
        },
        split: [6.0, 1.0, 3.0],
        errors: false,
        threads: 2,
    };
    asg_phantom::set::write_set(dir, &options, &|| {}).unwrap();
}

fn tiny(steps: usize) -> Config {
    let mut c = common::config("tiny.toml");
    c.train.steps = steps;
    c.train.checkpoint_every = steps;
    c
}

/// Trains `config` on the phantoms in `data` into `run`, without progress output.
fn fit_quietly(config: &Config, data: &Path, run: &Path) {
    let mut quiet = |_: &StepReport| {};
    fit(
        config,
        RunOptions {
            data: &[asg_trainer::data::Source::new(data)],
            out: run,
            resume: false,
            device: candle_core::Device::Cpu,
            stop_at: None,
            on_step: &mut quiet,
        },
    )
    .unwrap();
}

#[test]
fn a_bundle_run_by_tract_measures_what_its_candle_run_measures() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    phantoms(&data, 40);
    let run = dir.path().join("run");
    fit_quietly(&tiny(30), &data, &run);
    let options = EvalOptions {
        probe_seeds: 2,
        ..Default::default()
    };
    let candle = CandleModel::load(&run).unwrap();
    let a = evaluate(&candle, &data, &options, &|_| {}).unwrap();
    let loaded = load_run(&run, &candle_core::Device::Cpu).unwrap();
    let thresholds = asg_trainer::eval::Thresholds::half();
    let training = asg_bundle::Training {
        data: "test phantoms".into(),
        steps: 30,
        seed: 1,
        notes: String::new(),
        metrics: Default::default(),
    };
    let bundle_dir = dir.path().join("bundle");
    let manifest = asg_trainer::export::bundle::write_asg_bundle(
        &loaded.model,
        &loaded.tokenizer,
        &bundle_dir,
        "t",
        thresholds,
        None,
        training,
    )
    .unwrap();
    assert_eq!(manifest.regions.len(), 29);
    assert!(manifest.text_model.is_some());
    let bundle = OnnxBundle::load(&bundle_dir).unwrap();
    let b = evaluate(&bundle, &data, &options, &|_| {}).unwrap();
    assert_eq!(a.images, b.images);
    assert!(a.images >= 8, "{} test images", a.images);
    let close = |name: &str, x: Option<f64>, y: Option<f64>, tol: f64| {
        let (x, y) = (x.unwrap(), y.unwrap());
        assert!((x - y).abs() <= tol, "{name}: candle {x} vs bundle {y}");
    };
    close("box IoU", a.box_iou.mean, b.box_iou.mean, 1e-4);
    close("image AUROC", a.image_auroc.mean, b.image_auroc.mean, 0.01);
    close(
        "region AUROC",
        a.region_auroc.mean,
        b.region_auroc.mean,
        0.01,
    );
    close(
        "zero-shot AUROC",
        a.zero_shot_auroc.mean,
        b.zero_shot_auroc.mean,
        0.01,
    );
    close("pointing", a.pointing_game.mean, b.pointing_game.mean, 0.05);
    for (p, q) in a.linear_probe.iter().zip(&b.linear_probe) {
        assert!((p.mean - q.mean).abs() < 0.02, "{p:?} vs {q:?}");
    }
    assert_eq!(a.linear_probe.len(), 3);
    // The printed table names every section.
    let t = a.table();
    for needle in [
        "image-level AUROC",
        "box IoU",
        "pointing game",
        "R@10",
        "linear probe 1%",
    ] {
        assert!(t.contains(needle), "{needle} missing from\n{t}");
    }
    // A tampered bundle is refused with the file named.
    let onnx = bundle_dir.join("text.onnx");
    let mut bytes = std::fs::read(&onnx).unwrap();
    bytes[100] ^= 1;
    std::fs::write(&onnx, bytes).unwrap();
    let err = OnnxBundle::load(&bundle_dir).err().unwrap().to_string();
    assert!(
        err.contains("text.onnx") && err.contains("SHA-256"),
        "{err}"
    );
}

#[test]
fn the_ablation_trains_each_variant_and_blanks_untrained_heads() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    phantoms(&data, 30);
    let options = EvalOptions {
        probe_seeds: 1,
        ..Default::default()
    };
    let rows = asg_trainer::eval::ablate::ablate(
        &tiny(4),
        &data,
        &dir.path().join("ab"),
        &options,
        &|_| {},
    )
    .unwrap();
    assert_eq!(rows.len(), 5);
    let table = asg_trainer::eval::ablate::table(&rows);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 7, "{table}");
    // IRA alone: no tag decoder metrics, no box metrics.
    assert!(lines[2].matches('—').count() >= 4, "{}", lines[2]);
    // The full row has every metric.
    assert!(!lines[6].contains('—'), "{}", lines[6]);
    // Each variant's configuration really switched its terms off.
    let cfg: Config =
        toml::from_str(&std::fs::read_to_string(dir.path().join("ab/ira/config.toml")).unwrap())
            .unwrap();
    assert_eq!(
        (cfg.loss.arsa, cfg.loss.tag, cfg.loss.box_l1),
        (0.0, 0.0, 0.0)
    );
}

/// On the real films of ../shared/realcxr (when present): thresholds chosen on its validation
/// split vouch only for findings it has positives of, and leave the normal films and their
/// stressed copies within the 5% allowed; the evaluation counts the stressed copies.
#[test]
fn thresholds_on_real_films_vouch_only_for_what_they_saw_and_hold_under_stress() {
    let Some(real) = common::real_films() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    phantoms(&data, 24);
    let run = dir.path().join("run");
    fit_quietly(&tiny(2), &data, &run);
    let candle = CandleModel::load(&run).unwrap();
    let th = asg_trainer::eval::choose_thresholds(
        &candle,
        &real,
        asg_trainer::data::Split::Validate,
        16,
        2,
    )
    .unwrap();
    let validated = th.validated.clone().unwrap();
    // Brixia zones and ground glass give opacity positives; no film has a pneumothorax mask.
    assert!(validated.contains("opacity"), "{validated:?}");
    assert!(!validated.contains("pneumothorax"), "{validated:?}");
    assert!(!validated.contains("cardiomegaly"), "{validated:?}");
    let predictions = dir.path().join("predictions.jsonl");
    let options = EvalOptions {
        linear_probe: false,
        predictions: Some(predictions.clone()),
        ..Default::default()
    };
    let report = evaluate(&candle, &real, &options, &|_| {}).unwrap();
    let r = report.real_films.unwrap();
    assert!(r.normal_films > 0);
    // The per-film file holds every test film, and its zone labels and logits give the
    // report's zone AUROC again.
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&predictions)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), report.images);
    assert!(lines.iter().all(|l| l["split"] == "test"));
    let opacity = asg_report::finding_index("opacity").unwrap();
    let zones: Vec<usize> = ["upper", "mid", "lower"]
        .iter()
        .flat_map(|z| {
            ["right", "left"].map(|s| asg_report::region_index(&format!("{s} {z} lung zone")))
        })
        .map(|i| i.unwrap())
        .collect();
    let (mut scores, mut labels) = (Vec::new(), Vec::new());
    for l in &lines {
        for label in l["region_labels"].as_array().unwrap() {
            let (region, finding) = (
                label[0].as_u64().unwrap() as usize,
                label[1].as_u64().unwrap(),
            );
            if finding == opacity as u64 && zones.contains(&region) {
                scores.push(l["region_logits"][region][opacity].as_f64().unwrap() as f32);
                labels.push(label[2].as_f64().unwrap() > 0.5);
            }
        }
    }
    assert_eq!(scores.len(), r.zone_opacity_cases);
    let again = asg_trainer::eval::metrics::auroc(&scores, &labels);
    assert_eq!(
        again.map(|a| (a * 1e6).round()),
        r.zone_opacity_auroc.map(|a| (a * 1e6).round())
    );
    assert_eq!(
        r.stressed_normal_films,
        r.normal_films * asg_trainer::eval::STRESS_COPIES
    );
    assert!(r.stressed_normal_clean <= r.stressed_normal_films);
}
