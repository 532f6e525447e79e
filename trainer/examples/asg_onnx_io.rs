//! Writes the whole ASG model's ONNX files, inputs, and what Candle makes of them, for checks by
//! tools nobody here wrote (`bench/asg_onnx_check.py`: onnx.checker and onnxruntime).
//!
//! asg_onnx_io OUT_DIR [RUN_DIR]
//!
//! Without RUN_DIR the tiny configuration with seeded weights is used (batch-norm statistics moved
//! away from 0 / 1). OUT_DIR gets `image.onnx`, `text.onnx`, `<input>.f32` / `ids.i64` and
//! `candle_<output>.f32` (little-endian, row-major) and `shapes.json`.

use anyhow::Context;
use asg_trainer::export::{
    image_onnx, image_outputs, text_onnx, text_outputs, IMAGE_OUTPUTS, TEXT_OUTPUTS,
};
use asg_trainer::model::{asg, init};
use asg_trainer::{config::Config, train};
use candle_core::{Device, Tensor};
use rand::{Rng, SeedableRng};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn write_f32(path: &Path, t: &Tensor) -> anyhow::Result<Vec<usize>> {
    let values: Vec<f32> = t.flatten_all()?.to_vec1()?;
    let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    std::fs::write(path, bytes).with_context(|| format!("writing {}", path.display()))?;
    Ok(t.dims().to_vec())
}

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let out = PathBuf::from(
        args.next()
            .context("usage: asg_onnx_io OUT_DIR [RUN_DIR]")?,
    );
    std::fs::create_dir_all(&out)?;
    let dev = Device::Cpu;
    let (model, vocab) = match args.next() {
        Some(run) => {
            let r = train::load_run(Path::new(&run), &dev)?;
            let v = r.tokenizer.vocab_size();
            (r.model, v)
        }
        None => {
            let mut c = Config::from_file(
                &Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/tiny.toml"),
            )?;
            c.model.decoder_layers = 2;
            let (m, varmap) = asg::new_model(&c.model, 300, &dev)?;
            init::seed_parameters(&varmap, 5)?;
            let s = c.model.input_size;
            for _ in 0..3 {
                m.image(
                    &Tensor::randn(0f32, 1.0, (4, 1, s, s), &dev)?.affine(0.8, 0.2)?,
                    true,
                )?;
            }
            (m, 300)
        }
    };
    let cfg = model.config.clone();
    std::fs::write(out.join("image.onnx"), image_onnx(&model)?)?;
    std::fs::write(out.join("text.onnx"), text_onnx(&model)?)?;
    let mut shapes: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    let s = cfg.input_size;
    let x = Tensor::randn(0f32, 1.0, (2, 1, s, s), &dev)?;
    shapes.insert("image".into(), write_f32(&out.join("image.f32"), &x)?);
    for ((name, _), t) in IMAGE_OUTPUTS.iter().zip(image_outputs(&model, &x)?) {
        shapes.insert(
            name.to_string(),
            write_f32(&out.join(format!("candle_{name}.f32")), &t)?,
        );
    }
    let t = cfg.max_tokens;
    let (b, k) = (2, 3);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(9);
    let mut ids = vec![0u32; b * t];
    let mut mask = vec![0f32; b * t];
    let mut avg = vec![0f32; b * k * t];
    for i in 0..b {
        let len = rng.random_range(5..t);
        for j in 0..len {
            ids[i * t + j] = rng.random_range(0..vocab as u32);
            mask[i * t + j] = 1.0;
        }
        for r in 0..k {
            let (a, z) = (rng.random_range(0..len / 2), rng.random_range(len / 2..len));
            for j in a..=z {
                avg[(i * k + r) * t + j] = 1.0 / (z - a + 1) as f32;
            }
        }
    }
    let ids64: Vec<u8> = ids.iter().flat_map(|&v| (v as i64).to_le_bytes()).collect();
    std::fs::write(out.join("ids.i64"), ids64)?;
    shapes.insert("ids".into(), vec![b, t]);
    let ids_t = Tensor::from_vec(ids, (b, t), &dev)?;
    let mask_t = Tensor::from_vec(mask, (b, t), &dev)?;
    let avg_t = Tensor::from_vec(avg, (b, k, t), &dev)?;
    shapes.insert("mask".into(), write_f32(&out.join("mask.f32"), &mask_t)?);
    shapes.insert(
        "averaging".into(),
        write_f32(&out.join("averaging.f32"), &avg_t)?,
    );
    for ((name, _), o) in TEXT_OUTPUTS
        .iter()
        .zip(text_outputs(&model, &ids_t, &mask_t, &avg_t)?)
    {
        shapes.insert(
            name.to_string(),
            write_f32(&out.join(format!("candle_{name}.f32")), &o)?,
        );
    }
    let index = serde_json::json!({
        "image_outputs": IMAGE_OUTPUTS.iter().map(|(n, _)| n).collect::<Vec<_>>(),
        "text_outputs": TEXT_OUTPUTS.iter().map(|(n, _)| n).collect::<Vec<_>>(),
        "shapes": shapes,
    });
    std::fs::write(
        out.join("shapes.json"),
        serde_json::to_string_pretty(&index)?,
    )?;
    eprintln!("wrote {}", out.display());
    Ok(())
}
