//! `asg`: the workstation CLI. Everything runs locally; nothing is sent anywhere.

use anyhow::Context;
use asg_dicom::ReadOptions;
use asg_plugin::ModelBundle;
use clap::{Parser, Subcommand};
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(Parser)]
#[command(
    name = "asg",
    version,
    about = "Anatomy-aware chest X-ray analysis, on this machine only"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Analyse DICOM files (or folders of them, recursively) and print the analysis as JSON:
    /// one object for one file, an array for several.
    Analyze {
        /// DICOM files or folders.
        #[arg(required = true)]
        inputs: Vec<PathBuf>,
        /// Model bundle folder (manifest.json + ONNX files).
        #[arg(long)]
        model: Option<PathBuf>,
        /// Largest Rows x Columns x Frames accepted.
        #[arg(long, default_value_t = ReadOptions::default().max_pixels)]
        max_pixels: u64,
    },
}

fn collect_files(input: &Path, out: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    if input.is_dir() {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(input)
            .with_context(|| format!("reading folder {}", input.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        entries.sort();
        for e in entries {
            if e.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with('.'))
            {
                continue;
            }
            if e.is_dir() {
                collect_files(&e, out)?;
            } else if e
                .extension()
                .is_none_or(|x| !x.eq_ignore_ascii_case("json"))
            {
                out.push(e);
            }
        }
    } else {
        out.push(input.to_path_buf());
    }
    Ok(())
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Analyze {
            inputs,
            model,
            max_pixels,
        } => {
            let model = model.context(
                "no --model given, and this build embeds no default bundle yet: \
                 make one with `asg-train init --out DIR` and pass --model DIR",
            )?;
            let load_start = Instant::now();
            let bundle = ModelBundle::from_dir(&model)?;
            let load_ms = load_start.elapsed().as_secs_f64() * 1e3;
            eprintln!(
                "loaded model {} {} in {load_ms:.1} ms",
                bundle.manifest.name, bundle.manifest.version
            );
            let mut files = Vec::new();
            for input in &inputs {
                collect_files(input, &mut files)?;
            }
            let options = ReadOptions {
                max_pixels,
                ..ReadOptions::default()
            };
            let mut results = Vec::new();
            let mut failures = 0usize;
            for file in &files {
                let name = file.display().to_string();
                let analysis = std::fs::read(file)
                    .map_err(|e| anyhow::anyhow!("{name}: {e}"))
                    .and_then(|bytes| Ok(bundle.analyze_dicom(&bytes, &name, &options)?));
                match analysis {
                    Ok(a) => {
                        let mut value = serde_json::to_value(&a)?;
                        value["file"] = serde_json::Value::String(name);
                        results.push(value);
                    }
                    Err(e) => {
                        failures += 1;
                        eprintln!("error: {e:#}");
                    }
                }
            }
            let out = match results.len() {
                1 if files.len() == 1 => serde_json::to_string_pretty(&results[0])?,
                _ => serde_json::to_string_pretty(&results)?,
            };
            println!("{out}");
            if failures > 0 {
                anyhow::bail!("{failures} of {} inputs failed", files.len());
            }
        }
    }
    Ok(())
}
