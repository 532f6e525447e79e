//! `asg-train`: make phantom data, build and export models.

use anyhow::Context;
use clap::{Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "asg-train",
    version,
    about = "Train and export ASG chest X-ray models"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Write synthetic frontal chest radiographs (DICOM) with their ground truth (JSON).
    Synth {
        #[arg(long, default_value_t = 8)]
        n: u32,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        #[arg(long)]
        out: PathBuf,
        /// Image side in pixels.
        #[arg(long, default_value_t = 512)]
        size: u32,
    },
    /// Write the untrained thin-slice model bundle (random weights, batch norm calibrated on phantoms).
    Init {
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Side of the square model input.
        #[arg(long, default_value_t = 224)]
        size: usize,
        /// Phantoms used to calibrate batch-norm statistics.
        #[arg(long, default_value_t = 16)]
        calibration: u32,
    },
}

/// Errors are printed as one line of causes (no backtrace, whatever RUST_BACKTRACE says).
fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Synth { n, seed, out, size } => {
            anyhow::ensure!(
                (32..=4096).contains(&size),
                "--size must be in 32..=4096, got {size}"
            );
            std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
            for i in 0..n {
                let path = asg_phantom::write_phantom(&out, size, seed, i)?;
                println!("{}", path.display());
            }
        }
        Command::Init {
            out,
            seed,
            size,
            calibration,
        } => {
            anyhow::ensure!(
                (32..=1024).contains(&size) && size % 16 == 0,
                "--size must be a multiple of 16 in 32..=1024, got {size}"
            );
            let manifest = asg_trainer::bundle::init_thin_bundle(&out, seed, size, calibration)?;
            eprintln!(
                "wrote {} ({} findings, input {}x{}) to {}",
                manifest.name,
                manifest.findings.len(),
                size,
                size,
                out.display()
            );
        }
    }
    Ok(())
}
