//! The ResNet and ViT encoders: shapes, gradients to every parameter, and pretrained weights in
//! torchvision / timm naming loaded by name (small random checkpoints written here in those
//! formats).

use asg_trainer::config::ModelConfig;
use asg_trainer::model::asg::new_model;
use asg_trainer::model::backbones::load_pretrained_image;
use candle_core::{DType, Device, Tensor};
use std::collections::HashMap;

fn small(encoder: &str) -> ModelConfig {
    ModelConfig {
        input_size: 64,
        encoder: encoder.into(),
        resnet_blocks: vec![1, 1, 1, 1],
        resnet_width: 4,
        vit_patch: 16,
        vit_dim: 32,
        vit_layers: 2,
        vit_heads: 2,
        vit_mlp: 64,
        embed_dim: 16,
        text_dim: 16,
        text_layers: 1,
        text_heads: 2,
        text_ff: 32,
        max_tokens: 16,
        vocab_size: 32,
        decoder_dim: 16,
        decoder_layers: 1,
        decoder_heads: 2,
        ..ModelConfig::default()
    }
}

#[test]
fn resnet_and_vit_give_their_grids_and_every_parameter_learns() {
    for (encoder, grid, channels) in [("resnet", 4, 4 * 8 * 4), ("vit", 16, 32)] {
        let config = small(encoder);
        let (model, varmap) = new_model(&config, 32, &Device::Cpu).unwrap();
        asg_trainer::model::init::seed_parameters(&varmap, 1).unwrap();
        let x = Tensor::randn(0f32, 1.0, (2, 1, 64, 64), &Device::Cpu).unwrap();
        let out = model.image(&x, true).unwrap();
        assert_eq!(out.grid.dims(), &[2, grid, channels], "{encoder}");
        let boxes = Tensor::from_vec(
            [0.1f32, 0.1, 0.6, 0.8].repeat(2 * 29),
            (2, 29, 4),
            &Device::Cpu,
        )
        .unwrap();
        let (emb, logits) = model.regions(&out.grid, &boxes).unwrap();
        let loss = (out.global.sum_all().unwrap()
            + out.tag_logits.sqr().unwrap().sum_all().unwrap()
            + out.boxes.sum_all().unwrap()
            + emb.sum_all().unwrap()
            + logits.sum_all().unwrap())
        .unwrap();
        let grads = loss.backward().unwrap();
        let data = varmap.data().lock().unwrap();
        let dead: Vec<&String> = data
            .iter()
            .filter(|(n, _)| n.starts_with("image.") && !n.contains("running_"))
            .filter(|(_, v)| {
                grads
                    .get(v.as_tensor())
                    .map(|g| {
                        g.abs()
                            .unwrap()
                            .sum_all()
                            .unwrap()
                            .to_scalar::<f32>()
                            .unwrap()
                            == 0.0
                    })
                    .unwrap_or(true)
            })
            .map(|(n, _)| n)
            .collect();
        assert!(dead.is_empty(), "{encoder}: no gradient reaches {dead:?}");
    }
}

/// Writes the image encoder's parameters of a fresh model under the outside naming (our prefix
/// removed), with an RGB stem as the outside checkpoints have, plus tensors a loader must skip.
fn outside_checkpoint(
    encoder: &str,
    prefix: &str,
    stem: &str,
    dir: &std::path::Path,
) -> (std::path::PathBuf, HashMap<String, Tensor>) {
    let config = small(encoder);
    let (_, varmap) = new_model(&config, 32, &Device::Cpu).unwrap();
    asg_trainer::model::init::seed_parameters(&varmap, 7).unwrap();
    let mut out = HashMap::new();
    for (name, var) in varmap.data().lock().unwrap().iter() {
        if let Some(short) = name.strip_prefix(prefix) {
            let t = var.as_tensor().clone();
            let t = if short == stem {
                // Three colour channels whose sum is the grey kernel.
                let third = (t.clone() / 3.0).unwrap();
                Tensor::cat(&[&third, &third, &third], 1).unwrap()
            } else {
                t
            };
            out.insert(short.to_string(), t);
        }
    }
    out.insert(
        "fc.weight".into(),
        Tensor::zeros((10, 3), DType::F32, &Device::Cpu).unwrap(),
    );
    out.insert(
        "head.weight".into(),
        Tensor::zeros((10, 3), DType::F32, &Device::Cpu).unwrap(),
    );
    let path = dir.join(format!("{encoder}.safetensors"));
    candle_core::safetensors::save(&out, &path).unwrap();
    (path, out)
}

#[test]
fn torchvision_and_timm_checkpoints_load_by_name() {
    let dir = tempfile::tempdir().unwrap();
    for (encoder, prefix, stem) in [
        ("resnet", "image.resnet.", "conv1.weight"),
        ("vit", "image.vit.", "patch_embed.proj.weight"),
    ] {
        let (path, written) = outside_checkpoint(encoder, prefix, stem, dir.path());
        let config = small(encoder);
        let (_, varmap) = new_model(&config, 32, &Device::Cpu).unwrap();
        asg_trainer::model::init::seed_parameters(&varmap, 1).unwrap();
        let n = load_pretrained_image(&varmap, &path, &config).unwrap();
        assert_eq!(n, written.len() - 2, "{encoder}");
        let data = varmap.data().lock().unwrap();
        for (name, t) in &written {
            let Some(var) = data.get(&format!("{prefix}{name}")) else {
                continue;
            };
            let want = if name == stem {
                t.sum_keepdim(1).unwrap()
            } else {
                t.clone()
            };
            let d = (var.as_tensor() - want)
                .unwrap()
                .abs()
                .unwrap()
                .max_all()
                .unwrap();
            assert!(d.to_scalar::<f32>().unwrap() < 1e-6, "{encoder} {name}");
        }
        drop(data);
        // A checkpoint for another size names the tensor that does not fit.
        let mut other = small(encoder);
        other.resnet_width = 8;
        other.vit_dim = 64;
        other.vit_mlp = 128;
        let (_, vm) = new_model(&other, 32, &Device::Cpu).unwrap();
        let err = load_pretrained_image(&vm, &path, &other)
            .unwrap_err()
            .to_string();
        assert!(err.contains("shape") && err.contains("tensor"), "{err}");
    }
}

#[test]
fn the_paper_configurations_build_resnet50_and_vitb16() {
    // torchvision's resnet50 has 23,508,032 parameters without `fc`; a one-channel stem has
    // 2 x 64 x 49 fewer. timm's vit_base_patch16_224 has 85,798,656 without `head`; a one-channel
    // patch embedding has 2 x 768 x 256 fewer.
    for (file, want) in [
        ("resnet50_paper.toml", 23_508_032 - 2 * 64 * 49),
        ("vitb16_paper.toml", 85_798_656 - 2 * 768 * 256),
    ] {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("configs")
            .join(file);
        let config = asg_trainer::config::Config::from_file(&path).unwrap();
        let (_, varmap) = new_model(&config.model, 5000, &Device::Cpu).unwrap();
        let image: usize = varmap
            .data()
            .lock()
            .unwrap()
            .iter()
            .filter(|(n, _)| n.starts_with("image.") && !n.contains("running_"))
            .map(|(_, v)| v.elem_count())
            .sum();
        assert_eq!(image, want, "{file}: image-encoder parameters");
    }
}
