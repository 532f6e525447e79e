//! Times parts of a training step (forward and backward of the image and text sides).
use asg_trainer::config::Config;
use asg_trainer::model::asg::new_model;
use candle_core::{Device, Tensor};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn t<F: FnMut() -> candle_core::Result<()>>(name: &str, mut f: F) -> candle_core::Result<()> {
    f()?;
    let s = std::time::Instant::now();
    for _ in 0..3 {
        f()?;
    }
    println!("{name}: {:.3} s", s.elapsed().as_secs_f64() / 3.0);
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args()
        .nth(1)
        .unwrap_or("trainer/configs/default.toml".into());
    let config = Config::from_file(std::path::Path::new(&path))?;
    let (model, _vm) = new_model(&config.model, config.model.vocab_size, &Device::Cpu)?;
    let (b, s) = (config.train.batch_size, config.model.input_size);
    let x = Tensor::randn(0f32, 1.0, (b, 1, s, s), &Device::Cpu)?;
    let ids = Tensor::zeros((b, 96), candle_core::DType::U32, &Device::Cpu)?;
    let mask = Tensor::ones((b, 96), candle_core::DType::F32, &Device::Cpu)?;
    if std::env::var_os("PROFILE_TEXT_ONLY").is_some() {
        // For a profiler: the text side alone, many times.
        for _ in 0..40 {
            let o = model.text(&ids, &mask)?;
            o.report.sum_all()?.backward()?;
        }
        return Ok(());
    }
    t("image forward", || model.image(&x, true).map(|_| ()))?;
    t("image forward+backward (global)", || {
        let o = model.image(&x, true)?;
        o.global.sum_all()?.backward().map(|_| ())
    })?;
    t("image forward+backward (tags+boxes)", || {
        let o = model.image(&x, true)?;
        (o.tag_logits.sum_all()? + o.boxes.sum_all()?)?
            .backward()
            .map(|_| ())
    })?;
    t("text forward+backward", || {
        let o = model.text(&ids, &mask)?;
        o.report.sum_all()?.backward().map(|_| ())
    })?;
    Ok(())
}
