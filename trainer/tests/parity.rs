//! The exported ONNX, run by tract (through the plugin's runtime), against Candle: every output
//! element within 1e-4 relative error (1e-6 absolute for values near zero).

use asg_plugin::OnnxModel;
use asg_trainer::export::thin::{new_seeded, ThinConfig};
use candle_core::{Device, Tensor};

const RTOL: f32 = 1e-4;
const ATOL: f32 = 1e-6;

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

fn check(config: ThinConfig, seed: u64, batch: usize) {
    let (model, _vars) = new_seeded(config.clone(), seed).unwrap();
    let s = config.input_size;
    // Move the batch-norm running statistics away from 0/1 so the export of them is exercised.
    let calib = Tensor::randn(0f32, 1.0, (4, 1, s, s), &Device::Cpu)
        .unwrap()
        .affine(0.7, 0.3)
        .unwrap();
    model.calibrate(&[calib.clone(), calib]).unwrap();
    let onnx = model.to_onnx().unwrap();
    let runner = OnnxModel::from_bytes(&onnx, &[batch, 1, s, s]).unwrap();
    assert_eq!(runner.output_names(), ["embedding", "finding_logits"]);
    for trial in 0..3 {
        let x = Tensor::randn(0f32, 1.0, (batch, 1, s, s), &Device::Cpu).unwrap();
        let x = (x * (trial as f64 + 0.5)).unwrap();
        let out = model.forward(&x, false).unwrap();
        let input: Vec<f32> = x.flatten_all().unwrap().to_vec1().unwrap();
        let tract = runner.run(input).unwrap();
        let emb: Vec<f32> = out.embedding.flatten_all().unwrap().to_vec1().unwrap();
        let logits: Vec<f32> = out.finding_logits.flatten_all().unwrap().to_vec1().unwrap();
        assert_eq!(runner.output_shapes()[0], vec![batch, config.embedding_dim]);
        assert_eq!(runner.output_shapes()[1], vec![batch, config.findings]);
        assert_close("embedding", &emb, &tract[0]);
        assert_close("finding_logits", &logits, &tract[1]);
    }
}

#[test]
fn tract_matches_candle_on_the_default_configuration() {
    check(ThinConfig::default(), 11, 1);
}

#[test]
fn tract_matches_candle_with_a_batch_and_other_sizes() {
    let config = ThinConfig {
        input_size: 96,
        channels: vec![8, 24, 40],
        embedding_dim: 32,
        findings: 40,
    };
    check(config, 5, 3);
}

#[test]
fn non_finite_weights_and_negative_variances_are_refused() {
    let mut g = asg_trainer::export::onnx::GraphBuilder::new();
    assert!(g.floats("w", &[2], &[1.0, f32::NAN]).is_err());
    let t = |v: &[f32]| Tensor::new(v, &Device::Cpu).unwrap();
    let bn = candle_nn::BatchNorm::new(
        2,
        t(&[0.0, 0.0]),
        t(&[1.0, -0.5]),
        t(&[1.0, 1.0]),
        t(&[0.0, 0.0]),
        1e-5,
    )
    .unwrap();
    use asg_trainer::export::onnx::ExportOnnx;
    let e = bn.export(&mut g, "bn", "x").unwrap_err();
    assert!(
        e.to_string().contains("running variance -0.5 is negative"),
        "{e}"
    );
}

#[test]
fn a_graph_with_a_duplicate_name_is_refused_before_writing() {
    let mut g = asg_trainer::export::onnx::GraphBuilder::new();
    g.input("x", &[asg_trainer::export::onnx::Dim::Fixed(1)])
        .unwrap();
    assert!(g.node("Relu", &["x"], &[], "x").is_err());
}
