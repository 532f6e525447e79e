//! Times the plugin natively: bundle load, DICOM decode + preprocess, and tract inference.
//! Prints one JSON object (medians in ms) for `bench/run.sh`, which sets it beside onnxruntime and
//! pydicom measured in the same run.
//!
//! cargo run --release -p asg-plugin --example bench -- BUNDLE DICOM [RUNS] [REPORT]
//!
//! Also times the whole analysis (`analyze_dicom`: decode, preprocess, inference, regions and
//! heatmaps) and, with a REPORT, the report check; and the peak resident memory (VmHWM).

use asg_dicom::{preprocess_image, read_bytes, Normalisation, ReadOptions};
use asg_plugin::ModelBundle;
use std::time::Instant;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn time<T>(f: impl FnOnce() -> T) -> (T, f64) {
    let t = Instant::now();
    let out = f();
    (out, t.elapsed().as_secs_f64() * 1e3)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        return Err("usage: bench BUNDLE DICOM [RUNS]".into());
    }
    let runs: usize = args.get(3).map(|s| s.parse()).transpose()?.unwrap_or(50);
    let (bundle, load_ms) = time(|| ModelBundle::from_dir(std::path::Path::new(&args[1])));
    let bundle = bundle?;
    let bytes = std::fs::read(&args[2])?;
    let m = &bundle.manifest;
    let norm = Normalisation {
        mean: m.input.mean,
        std: m.input.std,
    };
    let report = match args.get(4) {
        Some(p) => Some(std::fs::read_to_string(p)?),
        None => None,
    };
    let (mut decode, mut prep, mut infer) = (vec![], vec![], vec![]);
    let (mut whole, mut check) = (vec![], vec![]);
    for _ in 0..runs {
        let (image, d) = time(|| read_bytes(&bytes, "bench.dcm", &ReadOptions::default()));
        let image = image?;
        let (input, p) = time(|| preprocess_image(&image, m.input.size, norm));
        let (out, i) = time(|| bundle.image_model.run(input.tensor));
        out?;
        decode.push(d);
        prep.push(p);
        infer.push(i);
        let (analysis, a) =
            time(|| bundle.analyze_dicom(&bytes, "bench.dcm", &ReadOptions::default()));
        let analysis = analysis?;
        whole.push(a);
        if let Some(r) = &report {
            let (c, t) = time(|| bundle.check_report(&analysis, r));
            c?;
            check.push(t);
        }
    }
    // Peak resident set size (Linux), in MB.
    let peak_mb = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| {
                l.split_whitespace()
                    .nth(1)
                    .and_then(|v| v.parse::<f64>().ok())
            })
        })
        .map(|kb| kb / 1024.0);
    println!(
        "{}",
        serde_json::json!({
            "runs": runs,
            "load_ms": load_ms,
            "decode_ms": median(decode),
            "preprocess_ms": median(prep),
            "inference_ms": median(infer),
            "analysis_ms": median(whole),
            "report_check_ms": if check.is_empty() { None } else { Some(median(check)) },
            "peak_rss_mb": peak_mb,
            "file_bytes": bytes.len(),
        })
    );
    Ok(())
}
