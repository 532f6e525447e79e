//! The BERT text encoder: a small randomly initialised checkpoint written here in the Hugging Face
//! format (config.json, model.safetensors with `bert.` names, tokenizer.json with a WordPiece
//! vocabulary) loads by name, every BERT parameter receives a gradient, and `fit` trains with it.

use asg_trainer::config::Config;
use candle_core::{Device, Tensor};
use std::collections::HashMap;
use std::path::Path;

fn bert_dir(dir: &Path, words: &[String]) -> asg_trainer::model::bert::BertConfig {
    let mut vocab: Vec<String> = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    vocab.extend(words.iter().cloned());
    vocab.extend(["##s", "##ed", "##ion"].iter().map(|s| s.to_string()));
    let config = asg_trainer::model::bert::BertConfig {
        vocab_size: vocab.len() + 3,
        hidden_size: 16,
        num_hidden_layers: 2,
        num_attention_heads: 2,
        intermediate_size: 32,
        max_position_embeddings: 64,
        type_vocab_size: 2,
        layer_norm_eps: 1e-12,
    };
    std::fs::write(
        dir.join("config.json"),
        serde_json::to_string(&config).unwrap(),
    )
    .unwrap();
    let map: serde_json::Map<String, serde_json::Value> = vocab
        .iter()
        .enumerate()
        .map(|(i, w)| (w.clone(), serde_json::json!(i)))
        .collect();
    let tj = serde_json::json!({
        "normalizer": {"type": "BertNormalizer", "lowercase": true},
        "model": {"type": "WordPiece", "unk_token": "[UNK]", "continuing_subword_prefix": "##", "vocab": map},
    });
    std::fs::write(dir.join("tokenizer.json"), tj.to_string()).unwrap();
    // Random weights in the BERT layout, under "bert." as BertForPreTraining checkpoints have them,
    // plus a head the loader must skip.
    let model_config = asg_trainer::config::ModelConfig {
        bert: Some(config.clone()),
        text_dim: 16,
        ..tiny().model
    };
    let (_, varmap) =
        asg_trainer::model::asg::new_model(&model_config, config.vocab_size, &Device::Cpu).unwrap();
    asg_trainer::model::init::seed_parameters(&varmap, 99).unwrap();
    let mut tensors: HashMap<String, Tensor> = HashMap::new();
    for (name, var) in varmap.data().lock().unwrap().iter() {
        if let Some(short) = name.strip_prefix("text.bert.") {
            tensors.insert(format!("bert.{short}"), var.as_tensor().clone());
        }
    }
    tensors.insert(
        "cls.predictions.bias".into(),
        Tensor::zeros(config.vocab_size, candle_core::DType::F32, &Device::Cpu).unwrap(),
    );
    candle_core::safetensors::save(&tensors, dir.join("model.safetensors")).unwrap();
    config
}

fn tiny() -> Config {
    Config::from_file(&Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/tiny.toml")).unwrap()
}

#[test]
fn a_hugging_face_bert_checkpoint_loads_trains_and_gets_gradients() {
    let data = tempfile::tempdir().unwrap();
    asg_phantom::set::write_set(
        data.path(),
        &asg_phantom::set::SetOptions {
            n: 20,
            seed: 5,
            image: asg_phantom::Options {
                size: 96,
                normal_share: 0.2,
                vary_format: false,
            },
            split: [1.0, 0.0, 0.0],
            errors: false,
            threads: 2,
        },
        &|| {},
    )
    .unwrap();
    let set = asg_trainer::data::scan(data.path()).unwrap();
    let words = asg_trainer::data::train_tokenizer(&set, 300).unwrap();
    let words: Vec<String> = (5..words.vocab_size() as u32)
        .filter_map(|i| words.word(i).map(str::to_string))
        .filter(|w| w != "[NUM]")
        .collect();
    let bert = tempfile::tempdir().unwrap();
    let bc = bert_dir(bert.path(), &words);

    let mut config = tiny();
    config.model.text_encoder = "bert".into();
    config.model.bert_dir = Some(bert.path().display().to_string());
    config.train.steps = 4;
    let out = tempfile::tempdir().unwrap();
    let mut quiet = |_: &asg_trainer::train::StepReport| {};
    let summary = asg_trainer::train::fit(
        &config,
        asg_trainer::train::RunOptions {
            data: &[asg_trainer::data::Source::new(data.path())],
            out: out.path(),
            resume: false,
            device: Device::Cpu,
            stop_at: None,
            on_step: &mut quiet,
        },
    )
    .unwrap();
    assert!(summary.last["total"].is_finite());
    let saved = std::fs::read_to_string(out.path().join("tokenizer.json")).unwrap();
    assert!(saved.contains("asg-wordpiece"));

    // Loading puts the checkpoint's values in place, and every BERT parameter learns.
    let mut mc = config.model.clone();
    mc.text_dim = bc.hidden_size;
    mc.max_tokens = mc.max_tokens.min(bc.max_position_embeddings);
    mc.bert = Some(bc.clone());
    let (model, varmap) =
        asg_trainer::model::asg::new_model(&mc, bc.vocab_size, &Device::Cpu).unwrap();
    let n = asg_trainer::model::bert::load_pretrained_bert(&varmap, bert.path()).unwrap();
    let file = candle_core::safetensors::load(bert.path().join("model.safetensors"), &Device::Cpu)
        .unwrap();
    assert_eq!(n, file.len() - 1);
    let tokenizer = asg_report::TextTokenizer::WordPiece(
        asg_trainer::model::bert::tokenizer_from_dir(bert.path()).unwrap(),
    );
    let mut cfg = config.clone();
    cfg.model = mc;
    let examples: Vec<_> = set.records[..cfg.train.batch_size]
        .iter()
        .map(|r| asg_trainer::data::prepare(r, &tokenizer, &cfg, None).unwrap())
        .collect();
    let unk: usize = examples
        .iter()
        .map(|e| e.ids.iter().filter(|&&i| i == 1).count())
        .sum();
    let all: usize = examples.iter().map(|e| e.ids.len()).sum();
    assert!(unk * 3 < all, "{unk} of {all} tokens unknown");
    let batch = asg_trainer::train::collate(&examples, cfg.model.input_size, &Device::Cpu).unwrap();
    let losses = asg_trainer::train::compute_losses(&model, &batch, &cfg, true).unwrap();
    let grads = losses.total.backward().unwrap();
    let data = varmap.data().lock().unwrap();
    let dead: Vec<&String> = data
        .iter()
        .filter(|(k, _)| {
            k.starts_with("text.bert.")
                && !k.contains("token_type")
                && !k.contains("position_embeddings")
        })
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
        .map(|(k, _)| k)
        .collect();
    assert!(dead.is_empty(), "no gradient reaches {dead:?}");
    for (key, t) in &file {
        let Some(name) = key.strip_prefix("bert.") else {
            continue;
        };
        let v = &data[&format!("text.bert.{name}")];
        let d = (v.as_tensor() - t)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap();
        assert!(d.to_scalar::<f32>().unwrap() == 0.0, "{key}");
    }
}
