//! Training-step throughput of the ASG model in Candle on synthetic batches (data loading
//! excluded), for comparison with the same architecture in PyTorch (`bench/train_torch.py`).
//! `cargo run --release -p asg-trainer --example train_bench -- CONFIG.toml [STEPS]`
//! Prints one JSON line: config, batch, input size, parameters, seconds per step, images/s.
/// Candle allocates and frees large tensors every step; glibc's allocator returns them to the
/// kernel each time (mmap/munmap), mimalloc keeps them (DESIGN.md: about half the step time).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use asg_trainer::config::Config;
use asg_trainer::model::asg::{new_model, FINDINGS, REGIONS};
use asg_trainer::train::{compute_losses, AdamW, Batch};
use candle_core::{Device, Tensor};
use rand::{Rng, SeedableRng};

fn main() {
    // As `asg-train` does (Candle's matrix products and element-wise ops on one pool).
    asg_trainer::model::one_cpu_pool();
    if let Err(e) = run() {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn batch(config: &Config, rng: &mut rand_chacha::ChaCha8Rng) -> candle_core::Result<Batch> {
    let dev = Device::Cpu;
    let (b, s, t) = (
        config.train.batch_size,
        config.model.input_size,
        96usize.min(config.model.max_tokens),
    );
    let images: Vec<f32> = (0..b * s * s)
        .map(|_| rng.random_range(-2.0..2.0))
        .collect();
    let mut boxes = Vec::new();
    for _ in 0..b * REGIONS {
        let (x, y) = (rng.random_range(0.0..0.6f32), rng.random_range(0.0..0.6f32));
        boxes.extend_from_slice(&[x, y, x + 0.3, y + 0.3]);
    }
    let ids: Vec<u32> = (0..b * t)
        .map(|_| rng.random_range(4..config.model.vocab_size as u32))
        .collect();
    let tags: Vec<f32> = (0..b * FINDINGS)
        .map(|_| if rng.random_bool(0.1) { 1.0 } else { 0.0 })
        .collect();
    let region: Vec<f32> = (0..b * REGIONS * FINDINGS)
        .map(|_| if rng.random_bool(0.05) { 1.0 } else { 0.0 })
        .collect();
    let mut arsa = Vec::new();
    for _ in 0..b {
        let k = 4;
        let mut avg = vec![0.0f32; k * t];
        for row in 0..k {
            for tok in 1 + row * 8..1 + row * 8 + 8 {
                avg[row * t + tok] = 1.0 / 8.0;
            }
        }
        arsa.push((
            (0..k as u32).map(|r| r * 3).collect(),
            Tensor::from_vec(avg, (1, k, t), &dev)?,
        ));
    }
    // With an anatomy head: masks of random rectangles, every channel known.
    let anatomy = if config.model.anatomy_head {
        let (c, side) = (
            asg_trainer::vocab::ANATOMY.len(),
            asg_trainer::vocab::anatomy_side(s, config.model.anatomy_from_stage),
        );
        let mut masks = vec![0.0f32; b * c * side * side];
        for plane in masks.chunks_mut(side * side) {
            let (x0, y0) = (rng.random_range(0..side / 2), rng.random_range(0..side / 2));
            for y in y0..y0 + side / 3 {
                for x in x0..x0 + side / 3 {
                    plane[y * side + x] = 1.0;
                }
            }
        }
        Some((
            Tensor::from_vec(masks, (b, c, side, side), &dev)?,
            Tensor::ones((b, c), candle_core::DType::F32, &dev)?,
        ))
    } else {
        None
    };
    Ok(Batch {
        anatomy,
        lesions: None,
        images: Tensor::from_vec(images, (b, 1, s, s), &dev)?,
        boxes: Tensor::from_vec(boxes, (b, REGIONS, 4), &dev)?,
        box_mask: Tensor::ones((b, REGIONS), candle_core::DType::F32, &dev)?,
        ids: Tensor::from_vec(ids, (b, t), &dev)?,
        id_mask: Tensor::ones((b, t), candle_core::DType::F32, &dev)?,
        tags: Tensor::from_vec(tags, (b, FINDINGS), &dev)?,
        tag_mask: Tensor::ones((b, FINDINGS), candle_core::DType::F32, &dev)?,
        region_targets: Tensor::from_vec(region, (b, REGIONS, FINDINGS), &dev)?,
        region_known: Tensor::ones((b, REGIONS, FINDINGS), candle_core::DType::F32, &dev)?,
        arsa,
    })
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let path = args
        .get(1)
        .ok_or("usage: train_bench CONFIG.toml [STEPS]")?;
    let steps: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(10);
    let config = Config::from_file(std::path::Path::new(path))?;
    let (model, varmap) = new_model(&config.model, config.model.vocab_size, &Device::Cpu)?;
    asg_trainer::model::init::seed_parameters(&varmap, 1)?;
    let mut opt = AdamW::new(&varmap, 0.05)?;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
    let batches: Vec<Batch> = (0..3)
        .map(|_| batch(&config, &mut rng))
        .collect::<Result<_, _>>()?;
    let mut step = |i: usize| -> candle_core::Result<f64> {
        let l = compute_losses(&model, &batches[i % batches.len()], &config, true)?;
        let g = l.total.backward()?;
        opt.update(&g, 1e-4, 1.0)?;
        l.total.to_scalar::<f32>().map(|v| v as f64)
    };
    step(0)?; // warm-up
    let start = std::time::Instant::now();
    let mut last = 0.0;
    for i in 0..steps {
        last = step(i + 1)?;
    }
    let per = start.elapsed().as_secs_f64() / steps as f64;
    println!(
        "{}",
        serde_json::json!({
            "framework": "candle 0.11.1",
            "config": path,
            "batch": config.train.batch_size,
            "input": config.model.input_size,
            "parameters": asg_trainer::model::asg::parameter_count(&varmap),
            "seconds_per_step": per,
            "images_per_second": config.train.batch_size as f64 / per,
            "last_loss": last,
        })
    );
    Ok(())
}
