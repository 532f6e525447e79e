//! The whole ASG model exported to ONNX (`image.onnx`, `text.onnx`) and run by tract, against
//! Candle: every output element within 1e-4 relative error (1e-5 absolute near zero), on random
//! inputs and on phantom radiographs and their reports.

use asg_trainer::config::Config;
use asg_trainer::data;
use asg_trainer::export::{
    image_onnx, image_outputs, text_inputs, text_onnx, text_outputs, ANATOMY_OUTPUT, IMAGE_OUTPUTS,
    TEXT_OUTPUTS,
};
use asg_trainer::model::{asg, init};
use candle_core::{Device, Tensor};
use std::path::Path;
use tract_onnx::prelude::*;

const RTOL: f32 = 1e-4;
const ATOL: f32 = 1e-5;

fn assert_close(name: &str, candle: &[f32], tract: &[f32]) {
    assert_eq!(candle.len(), tract.len(), "{name}: element counts differ");
    let mut worst = 0.0f32;
    for (i, (&a, &b)) in candle.iter().zip(tract).enumerate() {
        assert!(
            a.is_finite() && b.is_finite(),
            "{name}[{i}]: candle {a}, tract {b}"
        );
        let diff = (a - b).abs();
        let tol = RTOL * a.abs().max(b.abs()) + ATOL;
        assert!(
            diff <= tol,
            "{name}[{i}]: candle {a} vs tract {b} (diff {diff:e} > {tol:e})"
        );
        if a.abs().max(b.abs()) > 1e-3 {
            worst = worst.max(diff / a.abs().max(b.abs()));
        }
    }
    eprintln!(
        "{name}: {} elements, worst relative error {worst:e}",
        candle.len()
    );
}

fn config(decoder_layers: usize) -> Config {
    let mut c = Config::from_file(&Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/tiny.toml"))
        .unwrap();
    c.model.decoder_layers = decoder_layers;
    c
}

/// A model with seeded weights and batch-norm statistics moved away from 0 / 1.
fn model(config: &Config, vocab: usize, seed: u64) -> asg::AsgModel {
    let (model, varmap) = asg::new_model(&config.model, vocab, &Device::Cpu).unwrap();
    init::seed_parameters(&varmap, seed).unwrap();
    let s = config.model.input_size;
    for _ in 0..3 {
        let x = Tensor::randn(0f32, 1.0, (4, 1, s, s), &Device::Cpu)
            .unwrap()
            .affine(0.8, 0.2)
            .unwrap();
        model.image(&x, true).unwrap();
    }
    model
}

fn load(bytes: &[u8], facts: Vec<InferenceFact>) -> std::sync::Arc<TypedRunnableModel> {
    let mut m = tract_onnx::onnx().model_for_read(&mut &bytes[..]).unwrap();
    for (i, f) in facts.into_iter().enumerate() {
        m = m.with_input_fact(i, f).unwrap();
    }
    m.into_optimized().unwrap().into_runnable().unwrap()
}

fn flat(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1().unwrap()
}

/// An image model run by tract on `x`: each output's shape and values, in [`IMAGE_OUTPUTS`] order.
fn run_image_model(onnx: &[u8], x: &Tensor) -> Vec<(Vec<usize>, Vec<f32>)> {
    let dims = x.dims().to_vec();
    let plan = load(onnx, vec![f32::fact(&dims).into()]);
    let input = tract_ndarray::ArrayD::from_shape_vec(dims, flat(x))
        .unwrap()
        .into_tensor();
    let got = plan.run(tvec!(input.into())).unwrap();
    assert!(got.len() >= IMAGE_OUTPUTS.len());
    got.iter()
        .map(|g| {
            let values = g
                .to_plain_array_view::<f32>()
                .unwrap()
                .iter()
                .copied()
                .collect();
            (g.shape().to_vec(), values)
        })
        .collect()
}

fn check_image(model: &asg::AsgModel, x: &Tensor) {
    let got = run_image_model(&image_onnx(model).unwrap(), x);
    let want = image_outputs(model, x).unwrap();
    let mut names: Vec<&str> = IMAGE_OUTPUTS.iter().map(|(n, _)| *n).collect();
    if model.config.anatomy_head {
        names.push(ANATOMY_OUTPUT.0);
    }
    assert_eq!((got.len(), want.len()), (names.len(), names.len()));
    for (name, ((shape, g), w)) in names.iter().zip(got.iter().zip(&want)) {
        assert_eq!(shape.as_slice(), w.dims(), "{name}: shapes differ");
        assert_close(name, &flat(w), g);
    }
}

fn check_text(model: &asg::AsgModel, ids: &[i64], mask: &[f32], avg: &[f32], b: usize, k: usize) {
    let t = model.config.max_tokens;
    let onnx = text_onnx(model).unwrap();
    let plan = load(
        &onnx,
        vec![
            i64::fact([b, t]).into(),
            f32::fact([b, t]).into(),
            f32::fact([b, k, t]).into(),
        ],
    );
    let ids_t = tract_ndarray::ArrayD::from_shape_vec(vec![b, t], ids.to_vec()).unwrap();
    let mask_t = tract_ndarray::ArrayD::from_shape_vec(vec![b, t], mask.to_vec()).unwrap();
    let avg_t = tract_ndarray::ArrayD::from_shape_vec(vec![b, k, t], avg.to_vec()).unwrap();
    let got = plan
        .run(tvec!(
            ids_t.into_tensor().into(),
            mask_t.into_tensor().into(),
            avg_t.into_tensor().into()
        ))
        .unwrap();
    let ids_c = Tensor::from_vec(
        ids.iter().map(|&i| i as u32).collect::<Vec<_>>(),
        (b, t),
        &Device::Cpu,
    )
    .unwrap();
    let mask_c = Tensor::from_vec(mask.to_vec(), (b, t), &Device::Cpu).unwrap();
    let avg_c = Tensor::from_vec(avg.to_vec(), (b, k, t), &Device::Cpu).unwrap();
    let want = text_outputs(model, &ids_c, &mask_c, &avg_c).unwrap();
    for ((name, _), (g, w)) in TEXT_OUTPUTS.iter().zip(got.iter().zip(&want)) {
        assert_eq!(g.shape(), w.dims(), "{name}: shapes differ");
        let g: Vec<f32> = g
            .to_plain_array_view::<f32>()
            .unwrap()
            .iter()
            .copied()
            .collect();
        assert_close(name, &flat(w), &g);
    }
}

#[test]
fn image_and_text_models_match_candle_on_random_inputs() {
    for (layers, seed) in [(1, 11), (2, 12)] {
        let cfg = config(layers);
        let m = model(&cfg, 300, seed);
        let s = cfg.model.input_size;
        for scale in [0.5, 2.0] {
            let x =
                (Tensor::randn(0f32, 1.0, (2, 1, s, s), &Device::Cpu).unwrap() * scale).unwrap();
            check_image(&m, &x);
        }
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let t = cfg.model.max_tokens;
        let (b, k) = (2, 3);
        let mut ids = vec![0i64; b * t];
        let mut mask = vec![0f32; b * t];
        let mut avg = vec![0f32; b * k * t];
        for i in 0..b {
            let len = rng.random_range(5..t);
            for j in 0..len {
                ids[i * t + j] = rng.random_range(0..300);
                mask[i * t + j] = 1.0;
            }
            for r in 0..k {
                let (a, z) = (rng.random_range(0..len / 2), rng.random_range(len / 2..len));
                for j in a..=z {
                    avg[(i * k + r) * t + j] = 1.0 / (z - a + 1) as f32;
                }
            }
        }
        check_text(&m, &ids, &mask, &avg, b, k);
    }
}

/// Standard normal values from a seeded generator (Box-Muller), so a test's inputs are the same
/// on every run: Candle's own `randn` is unseeded on the CPU.
fn seeded_randn(shape: (usize, usize, usize, usize), seed: u64) -> Tensor {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let n = shape.0 * shape.1 * shape.2 * shape.3;
    let values: Vec<f32> = (0..n)
        .map(|_| {
            let (u, v): (f64, f64) = (rng.random_range(1e-12..1.0), rng.random());
            ((-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()) as f32
        })
        .collect();
    Tensor::from_vec(values, shape, &Device::Cpu).unwrap()
}

#[test]
fn an_image_model_with_an_anatomy_head_matches_candle() {
    // From stage 1 (masks a quarter of the input a side) and from stage 0 (a half); with and
    // without the zones read off the lungs.
    // The last also pools regions by log-sum-exp (`region_lse`) instead of averaging them.
    for (from_stage, zones, lse) in [
        (1, true, 0.0),
        (0, true, 0.0),
        (1, false, 0.0),
        (1, true, 3.0),
    ] {
        let mut cfg = config(1);
        cfg.model.anatomy_head = true;
        cfg.model.anatomy_from_stage = from_stage;
        cfg.model.anatomy_zones = zones;
        cfg.model.region_lse = lse;
        let s = cfg.model.input_size;
        let (m, varmap) = asg::new_model(&cfg.model, 300, &Device::Cpu).unwrap();
        init::seed_parameters(&varmap, 21).unwrap();
        // Output biases that leave some masks empty and fill others in part.
        let bias = [-8.0f32, 0.0, -8.0, 0.5, -8.0, 0.0];
        varmap.data().lock().unwrap()["anatomy.out.bias"]
            .set(&Tensor::new(&bias, &Device::Cpu).unwrap())
            .unwrap();
        // Seeded inputs: a box read off a mask moves with the logits through a steep ramp
        // (1e3 per logit), so on about one draw in twenty of unseeded inputs the two runtimes'
        // float orderings put a box edge 4e-5 of the side apart, past the tolerance.
        for k in 0..3 {
            let x = seeded_randn((4, 1, s, s), 100 + k);
            m.image(&x, true).unwrap();
        }
        let x = seeded_randn((2, 1, s, s), 200);
        // The masks are neither empty nor full, so the graph reads boxes off them.
        let logits = m.image(&x, false).unwrap().anatomy.unwrap();
        let (_, valid) = asg_trainer::model::anatomy::mask_boxes(&logits, s).unwrap();
        let valid = flat(&valid);
        assert!(valid.contains(&1.0), "{valid:?}");
        assert!(valid.contains(&0.0), "{valid:?}");
        check_image(&m, &x);
    }
}

#[test]
fn image_and_text_models_match_candle_on_phantom_studies() {
    let dir = tempfile::tempdir().unwrap();
    let options = asg_phantom::set::SetOptions {
        n: 6,
        seed: 5,
        image: asg_phantom::Options {
            size: 160,
            normal_share: 0.2,
            vary_format: true,
        },
        split: [1.0, 0.0, 0.0],
        errors: false,
        threads: 2,
    };
    asg_phantom::set::write_set(dir.path(), &options, &|| {}).unwrap();
    let cfg = config(1);
    let set = data::scan(dir.path()).unwrap();
    let tokenizer =
        asg_report::TextTokenizer::Word(data::train_tokenizer(&set, cfg.model.vocab_size).unwrap());
    let m = model(&cfg, tokenizer.vocab_size(), 21);
    let s = cfg.model.input_size;
    let t = cfg.model.max_tokens;
    for record in set.records.iter().take(3) {
        let e = data::prepare(record, &tokenizer, &cfg, None).unwrap();
        let x = Tensor::from_vec(e.image.clone(), (1, 1, s, s), &Device::Cpu).unwrap();
        check_image(&m, &x);
        let sentences: Vec<Vec<usize>> =
            e.region_sentences.iter().map(|(_, t)| t.clone()).collect();
        let sentences = if sentences.is_empty() {
            vec![vec![0]]
        } else {
            sentences
        };
        let inputs = text_inputs(&e.ids, &sentences, t);
        check_text(
            &m,
            &inputs.ids,
            &inputs.mask,
            &inputs.averaging,
            1,
            inputs.sentences,
        );
    }
}

/// Two models merged into one image.onnx (export::ensemble) and run by tract, against Candle
/// running each on its own input: finding and region logits the mean of the primary's on x and
/// the member's on x area-averaged to its size; boxes, maps and embeddings the primary's.
#[test]
fn an_ensemble_image_model_equals_its_members_run_apart_and_averaged() {
    use asg_trainer::export::ensemble::{merge_image_models, Member};
    let big = config(1);
    let mut small = config(1);
    small.model.input_size = big.model.input_size / 2;
    let a = model(&big, 50, 3);
    let b = model(&small, 50, 4);
    let (s, t) = (big.model.input_size, small.model.input_size);
    let merged = merge_image_models(
        &Member {
            onnx: &image_onnx(&a).unwrap(),
            input_size: s,
        },
        &[Member {
            onnx: &image_onnx(&b).unwrap(),
            input_size: t,
        }],
    )
    .unwrap();
    let n = 2;
    let x = Tensor::randn(0f32, 1.0, (n, 1, s, s), &Device::Cpu).unwrap();
    let pixels = flat(&x);
    let smaller: Vec<f32> = pixels
        .chunks(s * s)
        .flat_map(|img| asg_dicom::area_resize(img, s as u32, s as u32, t as u32, t as u32))
        .collect();
    let y = Tensor::from_vec(smaller, (n, 1, t, t), &Device::Cpu).unwrap();
    let (wa, wb) = (
        image_outputs(&a, &x).unwrap(),
        image_outputs(&b, &y).unwrap(),
    );
    let got = run_image_model(&merged, &x);
    for (i, ((name, _), (_, g))) in IMAGE_OUTPUTS.iter().zip(got.iter()).enumerate() {
        let want: Vec<f32> = if matches!(*name, "finding_logits" | "region_logits") {
            flat(&wa[i])
                .iter()
                .zip(flat(&wb[i]))
                .map(|(p, q)| (p + q) / 2.0)
                .collect()
        } else {
            flat(&wa[i])
        };
        assert_close(name, &want, g);
    }
}
