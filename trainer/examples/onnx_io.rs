//! Writes a random input and what Candle and tract make of it, for outside checks
//! (`bench/onnx_check.py` runs onnxruntime on the same input).
//!
//! cargo run --release -p asg-trainer --example onnx_io -- OUT_DIR [SEED]
//!
//! OUT_DIR gets `image.onnx`, `input.f32` and `candle_<output>.f32` / `tract_<output>.f32`
//! (little-endian f32, row-major) and `shapes.json`.

use anyhow::Context;
use asg_trainer::export::thin::{new_seeded, ThinConfig};
use candle_core::{Device, Tensor};
use std::path::PathBuf;

fn write_f32(path: &std::path::Path, values: &[f32]) -> anyhow::Result<()> {
    let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    std::fs::write(path, bytes).with_context(|| format!("writing {}", path.display()))
}

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let out = PathBuf::from(args.next().context("usage: onnx_io OUT_DIR [SEED]")?);
    let seed: u64 = args.next().map(|s| s.parse()).transpose()?.unwrap_or(1);
    std::fs::create_dir_all(&out)?;
    let config = ThinConfig::default();
    let (model, _vars) = new_seeded(config.clone(), seed)?;
    let s = config.input_size;
    let calib = Tensor::randn(0f32, 1.0, (4, 1, s, s), &Device::Cpu)?.affine(0.7, 0.3)?;
    model.calibrate(&[calib.clone(), calib])?;
    let onnx = model.to_onnx()?;
    std::fs::write(out.join("image.onnx"), &onnx)?;

    let x = Tensor::randn(0f32, 1.0, (1, 1, s, s), &Device::Cpu)?;
    let input: Vec<f32> = x.flatten_all()?.to_vec1()?;
    write_f32(&out.join("input.f32"), &input)?;
    let candle = model.forward(&x, false)?;
    write_f32(
        &out.join("candle_embedding.f32"),
        &candle.embedding.flatten_all()?.to_vec1()?,
    )?;
    write_f32(
        &out.join("candle_finding_logits.f32"),
        &candle.finding_logits.flatten_all()?.to_vec1()?,
    )?;

    let runner = asg_plugin::OnnxModel::from_bytes(&onnx, &[1, 1, s, s])?;
    let outputs = runner.run(input)?;
    for (name, values) in runner.output_names().iter().zip(&outputs) {
        write_f32(&out.join(format!("tract_{name}.f32")), values)?;
    }
    let shapes = serde_json::json!({
        "input": [1, 1, s, s],
        "outputs": runner.output_names().iter().zip(runner.output_shapes()).map(|(n, s)| (n.clone(), s.clone())).collect::<std::collections::BTreeMap<_, _>>(),
    });
    std::fs::write(
        out.join("shapes.json"),
        serde_json::to_string_pretty(&shapes)?,
    )?;
    eprintln!("wrote {}", out.display());
    Ok(())
}
