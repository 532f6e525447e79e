//! Seeded parameter initialisation (Candle's CPU generator cannot be seeded, and a run must be
//! reproducible): every trainable variable is drawn from a ChaCha generator in name order.

use candle_core::{Result, Tensor};
use rand::{Rng, SeedableRng};

/// Overwrites every parameter of `varmap` (not the batch-norm running statistics): convolution
/// weights Kaiming-uniform (bound sqrt(6 / fan_in)), linear weights and biases uniform in
/// +-1/sqrt(fan_in), norms 1 and 0, embeddings, positions and queries with small uniform noise of
/// the standard deviation their layer asks for, the tag biases and the anatomy head's output biases at -2 (findings are rare, each
/// anatomy mask covers a minority of the film).
pub fn seed_parameters(varmap: &candle_nn::VarMap, seed: u64) -> Result<()> {
    let data = varmap
        .data()
        .lock()
        .map_err(|e| candle_core::Error::Msg(e.to_string()))?;
    let mut names: Vec<&String> = data.keys().filter(|n| !n.contains("running_")).collect();
    names.sort();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    for name in names {
        let var = &data[name];
        let dims = var.dims().to_vec();
        let count: usize = dims.iter().product();
        let (layer, leaf) = name.rsplit_once('.').unwrap_or(("", name));
        let last = layer.rsplit('.').next().unwrap_or("");
        let constant = |v: f32| vec![v; count];
        let values: Vec<f32> = if last == "bn" || last.starts_with("ln") {
            constant(if leaf == "weight" { 1.0 } else { 0.0 })
        } else if name == "tags.group_fc.bias" || name == "anatomy.out.bias" {
            constant(-2.0)
        } else {
            let std_uniform = |std: f64| std * 3f64.sqrt();
            let bound = if name.ends_with("queries") {
                std_uniform(0.5)
            } else if name.ends_with("memory_pos") {
                std_uniform(0.1)
            } else if name.ends_with("position") || name == "text.tokens.weight" {
                std_uniform(0.02)
            } else {
                let weight = data
                    .get(&format!("{layer}.weight"))
                    .map(|w| w.dims().to_vec());
                let w = if leaf == "weight" {
                    Some(dims.clone())
                } else {
                    weight
                };
                let fan_in: usize = w
                    .map(|d| {
                        if d.len() > 1 {
                            d[1..].iter().product()
                        } else {
                            d[0]
                        }
                    })
                    .unwrap_or(1)
                    .max(1);
                if dims.len() == 4 {
                    (6.0 / fan_in as f64).sqrt()
                } else {
                    1.0 / (fan_in as f64).sqrt()
                }
            };
            (0..count)
                .map(|_| rng.random_range(-bound..bound) as f32)
                .collect()
        };
        var.set(&Tensor::from_vec(values, dims, var.device())?)?;
    }
    Ok(())
}
