//! `asg-train`: make phantom data, build and export models.

/// Candle allocates and frees large tensors every step; glibc's allocator returns them to the
/// kernel each time (mmap/munmap), mimalloc keeps them (DESIGN.md: about half the step time).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    /// Write a synthetic study set: frontal chest radiographs (DICOM), reports, Chest
    /// ImaGenome-format scene graphs and full ground truth, laid out as MIMIC-CXR + Chest
    /// ImaGenome. Same seed, same bytes.
    Synth {
        /// Number of studies.
        #[arg(long, default_value_t = 8)]
        n: u64,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Output folder (created).
        #[arg(long)]
        out: PathBuf,
        /// Pixels along the image's longer side (64..=3000).
        #[arg(long, default_value_t = 512)]
        size: u32,
        /// Shares of train:validate:test.
        #[arg(long, default_value = "8:1:1")]
        split: String,
        /// Share of normal studies.
        #[arg(long, default_value_t = 0.3)]
        normal_share: f64,
        /// Also write each report with one injected error (s<study>_with_error.txt) and
        /// report_errors.csv saying what was changed.
        #[arg(long)]
        errors: bool,
        /// One file format for all (explicit VR LE, 12 bits, MONOCHROME2, square) instead of a mix.
        #[arg(long)]
        fixed_format: bool,
        /// Worker threads (0: all cores).
        #[arg(long, default_value_t = 0)]
        threads: usize,
        /// Also write a contact sheet PNG of the first (up to) 12 studies.
        #[arg(long)]
        contact_sheet: Option<PathBuf>,
    },
    /// Train the ASG model on data sets in the Chest ImaGenome + MIMIC-CXR layout (phantoms
    /// too) and in the realcxr layout (real films with expert masks and labels), together.
    Fit {
        /// A data set folder (see trainer/README.md for the layouts), as PATH or PATH:WEIGHT
        /// (its training records count WEIGHT times, 1 to 100); repeat for several.
        #[arg(long, required = true, value_parser = asg_trainer::data::Source::parse)]
        data: Vec<asg_trainer::data::Source>,
        /// A configuration file (trainer/configs/*.toml).
        #[arg(long)]
        config: PathBuf,
        /// The run folder: checkpoints, tokenizer, log, loss curve.
        #[arg(long)]
        out: PathBuf,
        /// Continue the run in --out from its last checkpoint.
        #[arg(long)]
        resume: bool,
        /// Train on the first CUDA GPU (needs a build with --features cuda).
        #[arg(long)]
        cuda: bool,
    },
    /// Evaluate a run (Candle) or an exported bundle (tract) on a split of a data set: finding
    /// AUROC (image, region, zero-shot), anatomy box IoU, pointing game, image <-> report
    /// retrieval, linear probes at 1/10/100% labels. Prints tables; --json writes everything.
    Eval {
        /// A run folder (asg-train fit) or a bundle folder (asg-train export).
        #[arg(long)]
        model: PathBuf,
        /// More models read together with --model as an ensemble: their finding and region
        /// logits averaged with its, everything else (boxes, heatmaps, text, thresholds) from
        /// --model, which must take the largest input.
        #[arg(long = "with")]
        with: Vec<PathBuf>,
        /// The data set folder (Chest ImaGenome layout, or phantoms).
        #[arg(long)]
        data: PathBuf,
        /// train, validate or test, or several joined by "+" and evaluated as one set
        /// (validate+test: the held-out films pooled, for threshold-free measures of a model
        /// whose choice did not look at either; thresholds were chosen on the validation split).
        #[arg(long, default_value = "test")]
        split: String,
        /// Evaluate at most this many studies (0: all).
        #[arg(long, default_value_t = 0)]
        limit: usize,
        /// Skip the linear probes (they need features of the whole training split).
        #[arg(long)]
        no_probe: bool,
        /// Seeds of the 1% and 10% linear probes.
        #[arg(long, default_value_t = 5)]
        probe_seeds: u64,
        #[arg(long)]
        json: Option<PathBuf>,
        /// Also write each film's logits and labels here, one JSON object a line.
        #[arg(long)]
        predictions: Option<PathBuf>,
    },
    /// Choose an exported bundle's operating point again on a data set's validation split (as
    /// `export --data` does: thresholds, the report check's bars, the assessed findings narrowed
    /// to those the split has positives of) without touching its weights, write the bundle to
    /// --out, and evaluate its test split into the manifest's metrics. A site can tune the
    /// operating point on its own films in the realcxr or Chest ImaGenome layout.
    Retune {
        /// The bundle folder.
        #[arg(long)]
        model: PathBuf,
        #[arg(long)]
        data: PathBuf,
        /// Where the retuned bundle goes (a new folder, or the bundle's own).
        #[arg(long)]
        out: PathBuf,
        /// As for export.
        #[arg(long, default_value_t = asg_trainer::eval::STRESS_COPIES)]
        stress_copies: usize,
    },
    /// Withhold findings from an exported bundle: they are no longer offered (the CLI, the
    /// viewer and the report check say "not assessed"), with the reason kept in the manifest's
    /// training notes; weights and thresholds untouched. For a finding a probe showed the model
    /// does not see, though it passed the export's validation rule. With --data, the test split
    /// is evaluated again into the manifest's metrics.
    Withhold {
        /// The bundle folder.
        #[arg(long)]
        model: PathBuf,
        /// A finding to withhold (repeatable).
        #[arg(long = "finding", required = true)]
        findings: Vec<String>,
        /// Why, in a sentence (kept in the manifest).
        #[arg(long)]
        why: String,
        /// Where the bundle goes (a new folder, or the bundle's own).
        #[arg(long)]
        out: PathBuf,
        #[arg(long)]
        data: Option<PathBuf>,
    },
    /// Add a lung-crop nodule model (the nodule.onnx of `asg-train nodules`) to an exported
    /// bundle: the plugin then cuts each lung out of the film around the image model's lung box
    /// and scores nodule with it. With --threshold, nodule is offered (assessed) at that
    /// probability; without, the plugin shows its probability but nodule stays not assessed
    /// (how its threshold is chosen through the plugin itself: scripts/nodule_product.py).
    AttachNodule {
        /// The bundle folder.
        #[arg(long)]
        model: PathBuf,
        /// The nodule.onnx to add.
        #[arg(long, required_unless_present = "untrained")]
        nodule: Option<PathBuf>,
        /// Add a nodule model of random weights instead (for tests of the plumbing: it says
        /// nothing of nodules).
        #[arg(long, conflicts_with = "nodule")]
        untrained: bool,
        /// Where it was trained and how it was measured, in a sentence (kept in the manifest).
        #[arg(long)]
        about: String,
        /// Offer nodule at this image-level probability.
        #[arg(long)]
        threshold: Option<f32>,
        /// Its lung-level (region) threshold; the image-level one where absent.
        #[arg(long, requires = "threshold")]
        region_threshold: Option<f32>,
        /// Where the bundle goes (a new folder, or the bundle's own).
        #[arg(long)]
        out: PathBuf,
    },
    /// Train and evaluate the lung-crop nodule model: each lung of the realcxr layout's JSRT
    /// films cut out at about 1 mm a pixel (2.2 times the whole-film model's resolution), a small CNN with a nodule logit per 8 x 8
    /// pixel cell pooled over the lung, trained on the training split's lungs (nodule-free ones
    /// given a drawn nodule by chance), evaluated on the validation and test films. Writes
    /// nodule.safetensors, evaluation.json and evaluation.md into --out.
    Nodules {
        /// The realcxr layout.
        #[arg(long)]
        data: PathBuf,
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = 1500)]
        steps: u64,
        #[arg(long, default_value_t = 32)]
        batch: usize,
        #[arg(long, default_value_t = 1e-3)]
        lr: f64,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// The chance that a nodule-free training lung gets a drawn nodule.
        #[arg(long, default_value_t = 0.35)]
        drawn: f64,
        /// The drawn nodules' peak contrast range, display units.
        #[arg(long, num_args = 2, default_values_t = [0.03, 0.20])]
        contrast: Vec<f64>,
        /// Evaluate and export the model in this file (a nodule.safetensors of an earlier run)
        /// instead of training one.
        #[arg(long)]
        weights: Option<PathBuf>,
        /// Also write 16 training views as the model sees them (PNG, with the cells the
        /// nodule reaches marked at the right edge's ruler) into this folder, to look at. They
        /// are JSRT pixels: keep them out of the repository.
        #[arg(long)]
        dump: Option<PathBuf>,
        /// Also train on the ieee8023 films' lungs (those with both lung masks) as nodule-free:
        /// half of each batch, so that pneumonia is not taken for nodules; their held-out films
        /// are measured against JSRT's non-nodule films.
        #[arg(long)]
        other_lungs: bool,
        /// With --other-lungs, the share of each batch drawn from JSRT's lungs.
        #[arg(long, default_value_t = 0.5, requires = "other_lungs")]
        jsrt_share: f64,
    },
    /// Merge exported bundles into one: the first's image model on the bundle's input, the
    /// others' on it area-averaged to their sizes, finding and region logits averaged, the rest
    /// (boxes, heatmaps, embeddings, text model, manifest) the first's. The thresholds are the
    /// first's until `asg-train retune` chooses the ensemble's own.
    Ensemble {
        /// The primary bundle (the largest input).
        #[arg(long)]
        model: PathBuf,
        /// The other bundles (one or more).
        #[arg(long = "with", required = true)]
        with: Vec<PathBuf>,
        #[arg(long)]
        out: PathBuf,
    },
    /// Export a run to a model bundle for the plugin: image.onnx, text.onnx, tokenizer.json,
    /// manifest.json. With --data, thresholds are chosen on its validation split (best F1) and
    /// the test split is evaluated through tract into the manifest's metrics.
    Export {
        #[arg(long)]
        run: PathBuf,
        #[arg(long)]
        out: PathBuf,
        /// Bundle name shown to users.
        #[arg(long, default_value = "asg")]
        name: String,
        #[arg(long)]
        data: Option<PathBuf>,
        /// What the model was trained on, for the manifest.
        #[arg(long, default_value = "")]
        data_description: String,
        /// Copies of each normal validation film drawn under acquisition stress (rotation,
        /// display curves, JPEG, markers, collimation) that the thresholds must also leave
        /// clean; 0: the films as they are only.
        #[arg(long, default_value_t = asg_trainer::eval::STRESS_COPIES)]
        stress_copies: usize,
    },
    /// The ablation: train IRA; +ARSA; +tag decoder; +soft labels; +our box and region heads,
    /// each with the configuration's steps, evaluate each on the test split, print the table.
    Ablate {
        #[arg(long)]
        data: PathBuf,
        #[arg(long)]
        config: PathBuf,
        /// Training steps per variant (default: the configuration's).
        #[arg(long)]
        steps: Option<usize>,
        /// Folder for the runs, ablation.json and ablation.md.
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = 3)]
        probe_seeds: u64,
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

/// Parses "a:b:c" shares.
fn parse_split(text: &str) -> anyhow::Result<[f64; 3]> {
    let parts: Vec<f64> = text
        .split(':')
        .map(|p| p.trim().parse::<f64>())
        .collect::<Result<_, _>>()
        .with_context(|| format!("--split {text:?}: want three numbers as train:validate:test"))?;
    let [a, b, c] = parts[..] else {
        anyhow::bail!("--split {text:?}: want three numbers as train:validate:test");
    };
    anyhow::ensure!(
        a >= 0.0 && b >= 0.0 && c >= 0.0 && a + b + c > 0.0,
        "--split {text:?}: shares must be non-negative and not all zero"
    );
    Ok([a, b, c])
}

fn parse_split_name(text: &str) -> anyhow::Result<asg_trainer::data::Split> {
    use asg_trainer::data::Split;
    Ok(match text {
        "train" => Split::Train,
        "validate" | "validation" | "val" => Split::Validate,
        "test" => Split::Test,
        other => anyhow::bail!("--split {other:?}: want train, validate or test"),
    })
}

/// Errors are printed as one line of causes (no backtrace, whatever RUST_BACKTRACE says).
fn main() -> std::process::ExitCode {
    asg_trainer::model::one_cpu_pool();
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
        Command::Synth {
            n,
            seed,
            out,
            size,
            split,
            normal_share,
            errors,
            fixed_format,
            threads,
            contact_sheet,
        } => {
            anyhow::ensure!(
                (64..=asg_phantom::MAX_SIZE).contains(&size),
                "--size must be in 64..={}, got {size}",
                asg_phantom::MAX_SIZE
            );
            anyhow::ensure!(
                (0.0..=1.0).contains(&normal_share),
                "--normal-share must be in 0..=1, got {normal_share}"
            );
            let shares = parse_split(&split)?;
            std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
            let options = asg_phantom::set::SetOptions {
                n,
                seed,
                image: asg_phantom::Options {
                    size,
                    normal_share,
                    vary_format: !fixed_format,
                },
                split: shares,
                errors,
                threads,
            };
            let bar = indicatif::ProgressBar::new(n);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{bar:40} {pos}/{len} studies  {per_sec}  eta {eta}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            let start = std::time::Instant::now();
            let summary = asg_phantom::set::write_set(&out, &options, &|| bar.inc(1))?;
            bar.finish_and_clear();
            let secs = start.elapsed().as_secs_f64();
            eprintln!(
                "wrote {} studies to {} in {secs:.1} s ({:.1} studies/s): train {}, validate {}, test {}; {} normal{}",
                summary.studies,
                out.display(),
                summary.studies as f64 / secs.max(1e-9),
                summary.per_split[0],
                summary.per_split[1],
                summary.per_split[2],
                summary.normal,
                if errors {
                    format!("; {} reports with an injected error", summary.errors)
                } else {
                    String::new()
                }
            );
            if let Some(sheet) = contact_sheet {
                let studies: Vec<_> = (0..n.min(12))
                    .map(|i| asg_phantom::generate(seed, i, &options.image))
                    .collect();
                asg_phantom::sheet::contact_sheet(&studies, 4, 256)
                    .save(&sheet)
                    .with_context(|| format!("writing {}", sheet.display()))?;
            }
        }
        Command::Fit {
            data,
            config,
            out,
            resume,
            cuda,
        } => {
            let cfg = asg_trainer::config::Config::from_file(&config)?;
            let device = if cuda {
                candle_core::Device::new_cuda(0)
                    .context("opening CUDA device 0 (built with --features cuda?)")?
            } else {
                candle_core::Device::Cpu
            };
            if device.is_cpu() && cfg.train.precision != asg_trainer::config::Precision::F32 {
                eprintln!(
                    "note: train.precision = {:?} on the CPU is emulated and slower than f32 (the fused CPU ops are f32); it is meant for --cuda",
                    cfg.train.precision
                );
            }
            let bar = indicatif::ProgressBar::new(cfg.train.steps as u64);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{bar:30} {pos}/{len} steps  eta {eta}  {msg}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            let mut on_step = |r: &asg_trainer::train::StepReport| {
                bar.set_position(r.step + 1);
                let parts: Vec<String> =
                    r.terms.iter().map(|(n, v)| format!("{n} {v:.3}")).collect();
                bar.set_message(format!(
                    "loss {:.3} ({}) {:.1} img/s",
                    r.loss,
                    parts.join(", "),
                    r.images_per_second
                ));
            };
            let summary = asg_trainer::train::fit(
                &cfg,
                asg_trainer::train::RunOptions {
                    data: &data,
                    out: &out,
                    resume,
                    device,
                    stop_at: None,
                    on_step: &mut on_step,
                },
            )?;
            bar.finish_and_clear();
            eprintln!(
                "trained {} steps ({} parameters, {} training studies); total loss {:.4} -> {:.4}; run in {}",
                summary.steps,
                summary.parameters,
                summary.train_examples,
                summary.first.get("total").copied().unwrap_or(f64::NAN),
                summary.last.get("total").copied().unwrap_or(f64::NAN),
                out.display()
            );
        }
        Command::Eval {
            model,
            with,
            data,
            split,
            limit,
            no_probe,
            probe_seeds,
            json,
            predictions,
        } => {
            let splits = split
                .split('+')
                .map(parse_split_name)
                .collect::<anyhow::Result<Vec<_>>>()?;
            let mut m = asg_trainer::eval::load_model(&model)?;
            if !with.is_empty() {
                let mut members = vec![m];
                for w in &with {
                    members.push(asg_trainer::eval::load_model(w)?);
                }
                m = Box::new(asg_trainer::eval::models::Ensemble::new(members)?);
            }
            let options = asg_trainer::eval::EvalOptions {
                splits,
                limit,
                linear_probe: !no_probe,
                probe_seeds,
                predictions,
                ..Default::default()
            };
            let report =
                asg_trainer::eval::evaluate(m.as_ref(), &data, &options, &|s| eprintln!("{s}"))?;
            println!("{}", report.table());
            if let Some(path) = json {
                std::fs::write(&path, serde_json::to_string_pretty(&report)?)
                    .with_context(|| format!("writing {}", path.display()))?;
            }
        }
        Command::Retune {
            model,
            data,
            out,
            stress_copies,
        } => {
            let bundle = asg_trainer::eval::OnnxBundle::load(&model)?;
            let mut manifest = asg_trainer::eval::retuned_manifest(&bundle, &data, stress_copies)?;
            eprintln!(
                "offering {} findings: {}",
                manifest.assessed.as_ref().map_or(0, |a| a.len()),
                manifest.assessed.as_deref().unwrap_or_default().join(", ")
            );
            write_bundle_as(&model, &out, &manifest)?;
            evaluate_into_manifest(&out, &data, &mut manifest)?;
            eprintln!("wrote the retuned bundle to {}", out.display());
        }
        Command::Withhold {
            model,
            findings,
            why,
            out,
            data,
        } => {
            let mut manifest = read_manifest(&model)?;
            asg_trainer::export::bundle::withhold(&mut manifest, &findings, &why)
                .with_context(|| format!("withholding from {}", model.display()))?;
            write_bundle_as(&model, &out, &manifest)?;
            if let Some(d) = &data {
                evaluate_into_manifest(&out, d, &mut manifest)?;
            }
            eprintln!(
                "offering {} findings: {}; wrote {}",
                manifest.assessed.as_ref().map_or(0, |a| a.len()),
                manifest.assessed.as_deref().unwrap_or_default().join(", "),
                out.display()
            );
        }
        Command::AttachNodule {
            model,
            nodule,
            untrained,
            about,
            threshold,
            region_threshold,
            out,
        } => {
            let mut manifest = read_manifest(&model)?;
            let (onnx, nodule) = match (&nodule, untrained) {
                (Some(path), _) => (
                    std::fs::read(path).with_context(|| format!("reading {}", path.display()))?,
                    path.display().to_string(),
                ),
                (None, _) => {
                    let varmap = candle_nn::VarMap::new();
                    let vb = candle_nn::VarBuilder::from_varmap(
                        &varmap,
                        candle_core::DType::F32,
                        &candle_core::Device::Cpu,
                    );
                    let net = asg_trainer::model::nodule_net::NoduleNet::new(vb)?;
                    let onnx = asg_trainer::export::nodule::nodule_onnx(
                        &net,
                        asg_trainer::data::lung_crops::CROP_H,
                        asg_trainer::data::lung_crops::CROP_W,
                    )?;
                    (onnx, "an untrained nodule model".to_string())
                }
            };
            // The bundle's files first (checked against their digests), then the nodule model
            // and the manifest that lists it.
            let mut original = manifest.clone();
            original
                .files
                .remove(asg_trainer::export::bundle::NODULE_MODEL_FILE);
            original.crop_model = None;
            write_bundle_as(&model, &out, &original)?;
            let offer = threshold.map(|t| (t, region_threshold.unwrap_or(t)));
            asg_trainer::export::bundle::attach_nodule_model(&mut manifest, &onnx, &about, offer)
                .with_context(|| format!("adding {nodule} to {}", model.display()))?;
            asg_trainer::export::bundle::write_atomically(
                &out,
                asg_trainer::export::bundle::NODULE_MODEL_FILE,
                &onnx,
            )?;
            asg_trainer::export::bundle::write_manifest(&out, &manifest)?;
            eprintln!(
                "wrote {} with the nodule model ({})",
                out.display(),
                match offer {
                    Some((t, r)) => format!("nodule offered at {t} / {r}"),
                    None => "nodule not offered".into(),
                }
            );
        }
        Command::Nodules {
            data,
            out,
            steps,
            batch,
            lr,
            seed,
            drawn,
            contrast,
            weights,
            dump,
            other_lungs,
            jsrt_share,
        } => {
            anyhow::ensure!(
                (0.0..=1.0).contains(&jsrt_share),
                "--jsrt-share {jsrt_share}: want 0..=1"
            );
            let options = asg_trainer::train::nodule_fit::NoduleFitOptions {
                jsrt_share,
                steps,
                batch,
                lr,
                seed,
                drawn,
                contrast: match contrast.as_slice() {
                    &[lo, hi] => [lo, hi],
                    _ => anyhow::bail!("--contrast takes two values"),
                },
                ..Default::default()
            };
            nodules(
                &data,
                &out,
                &options,
                weights.as_deref(),
                dump.as_deref(),
                other_lungs,
            )?
        }
        Command::Ensemble { model, with, out } => {
            let read = |dir: &std::path::Path| -> anyhow::Result<(asg_bundle::Manifest, Vec<u8>)> {
                let text = std::fs::read_to_string(dir.join(asg_bundle::MANIFEST_FILE))
                    .with_context(|| format!("reading {}", dir.display()))?;
                let manifest = asg_bundle::Manifest::from_json(&text)
                    .with_context(|| format!("{}", dir.display()))?;
                let image = std::fs::read(dir.join(&manifest.image_model))
                    .with_context(|| format!("reading {}'s image model", dir.display()))?;
                manifest
                    .verify_file(&manifest.image_model, &image)
                    .with_context(|| format!("{}", dir.display()))?;
                Ok((manifest, image))
            };
            let (mut manifest, primary) = read(&model)?;
            let others = with
                .iter()
                .map(|w| read(w))
                .collect::<anyhow::Result<Vec<_>>>()?;
            for ((m, _), w) in others.iter().zip(&with) {
                anyhow::ensure!(
                    m.findings == manifest.findings && m.regions == manifest.regions,
                    "{}: other findings or regions than {}",
                    w.display(),
                    model.display()
                );
                anyhow::ensure!(
                    m.input.mean == manifest.input.mean && m.input.std == manifest.input.std,
                    "{}: another input normalisation than {}",
                    w.display(),
                    model.display()
                );
            }
            let members: Vec<asg_trainer::export::ensemble::Member> = others
                .iter()
                .map(|(m, bytes)| asg_trainer::export::ensemble::Member {
                    onnx: bytes,
                    input_size: m.input.size as usize,
                })
                .collect();
            let merged = asg_trainer::export::ensemble::merge_image_models(
                &asg_trainer::export::ensemble::Member {
                    onnx: &primary,
                    input_size: manifest.input.size as usize,
                },
                &members,
            )?;
            std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
            for name in manifest
                .files
                .keys()
                .filter(|n| **n != manifest.image_model)
            {
                let bytes = std::fs::read(model.join(name))
                    .with_context(|| format!("reading {}", model.join(name).display()))?;
                asg_trainer::export::bundle::write_atomically(&out, name, &bytes)?;
            }
            asg_trainer::export::bundle::write_atomically(&out, &manifest.image_model, &merged)?;
            manifest.files.insert(
                manifest.image_model.clone(),
                asg_bundle::FileDigest::of(&merged),
            );
            let sizes: Vec<String> = std::iter::once(manifest.input.size)
                .chain(others.iter().map(|(m, _)| m.input.size))
                .map(|s| format!("{s} px"))
                .collect();
            manifest.description = format!(
                "Ensemble of {} ASG models ({}): finding and region logits averaged; boxes, heatmaps and embeddings from the first. First: {}",
                sizes.len(),
                sizes.join(", "),
                manifest.description
            );
            manifest.training.notes = format!(
                "asg-train ensemble of {} with {}. {}",
                model.display(),
                with.iter()
                    .map(|w| w.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
                manifest.training.notes
            );
            asg_trainer::export::bundle::write_manifest(&out, &manifest)?;
            eprintln!(
                "wrote the ensemble to {}; its thresholds are still the first bundle's: run asg-train retune",
                out.display()
            );
        }
        Command::Export {
            run,
            out,
            name,
            data,
            data_description,
            stress_copies,
        } => {
            // Loaded once: the thresholds, the export and the manifest all use it.
            let candle = asg_trainer::eval::CandleModel::load(&run)?;
            let state: serde_json::Value = std::fs::read_to_string(run.join("summary.json"))
                .ok()
                .and_then(|t| serde_json::from_str(&t).ok())
                .unwrap_or_default();
            let steps = state.get("steps").and_then(|v| v.as_u64()).unwrap_or(0);
            let thresholds = match &data {
                Some(d) => asg_trainer::eval::choose_thresholds(
                    &candle,
                    d,
                    asg_trainer::data::Split::Validate,
                    16,
                    stress_copies,
                )?,
                None => asg_trainer::eval::Thresholds::half(),
            };
            let training = asg_bundle::Training {
                data: data_description,
                steps,
                seed: candle.config.train.seed,
                notes: format!(
                    "exported from {} by asg-train {}",
                    run.display(),
                    env!("CARGO_PKG_VERSION")
                ),
                metrics: Default::default(),
            };
            // summary.json when the run ended, else positives.json, written when it began.
            let early: serde_json::Value = std::fs::read_to_string(run.join("positives.json"))
                .ok()
                .and_then(|t| serde_json::from_str(&t).ok())
                .unwrap_or_default();
            let trained: Option<std::collections::BTreeMap<String, u64>> = state
                .get("positives")
                .or(Some(&early))
                .and_then(|p| p.as_object())
                .map(|p| {
                    p.iter()
                        .map(|(k, v)| (k.clone(), v.as_u64().unwrap_or(0)))
                        .collect()
                });
            let assessed = asg_trainer::export::bundle::assessed_findings(
                trained.as_ref(),
                thresholds.validated.as_ref(),
            );
            if let (Some(a), Some(_)) = (&assessed, &thresholds.validated) {
                eprintln!(
                    "offering {} findings with positives in training and validation: {}",
                    a.len(),
                    a.join(", ")
                );
            }
            let mut manifest = asg_trainer::export::bundle::write_asg_bundle(
                &candle.model,
                &candle.tokenizer,
                &out,
                &name,
                thresholds,
                assessed,
                training,
            )?;
            if let Some(d) = &data {
                evaluate_into_manifest(&out, d, &mut manifest)?;
            }
            let total: u64 = manifest.files.values().map(|f| f.bytes).sum();
            eprintln!(
                "wrote bundle {} to {} ({} files, {:.2} MB)",
                manifest.name,
                out.display(),
                manifest.files.len() + 1,
                total as f64 / 1e6
            );
        }
        Command::Ablate {
            data,
            config,
            steps,
            out,
            probe_seeds,
        } => {
            let mut cfg = asg_trainer::config::Config::from_file(&config)?;
            if let Some(s) = steps {
                cfg.train.steps = s;
                cfg.train.checkpoint_every = s;
            }
            let options = asg_trainer::eval::EvalOptions {
                probe_seeds,
                ..Default::default()
            };
            let rows = asg_trainer::eval::ablate::ablate(&cfg, &data, &out, &options, &|s| {
                eprintln!("{s}")
            })?;
            let table = asg_trainer::eval::ablate::table(&rows);
            println!("{table}");
            std::fs::write(out.join("ablation.md"), &table)?;
            std::fs::write(
                out.join("ablation.json"),
                serde_json::to_string_pretty(&rows)?,
            )?;
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
            let manifest =
                asg_trainer::export::bundle::init_thin_bundle(&out, seed, size, calibration)?;
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

/// `asg-train nodules`: the lung crops, the training, the evaluation.
fn nodules(
    data: &std::path::Path,
    out: &std::path::Path,
    options: &asg_trainer::train::nodule_fit::NoduleFitOptions,
    weights: Option<&std::path::Path>,
    dump: Option<&std::path::Path>,
    other_lungs: bool,
) -> anyhow::Result<()> {
    use asg_trainer::data::lung_crops::{crops_of, CROP_H, CROP_W};
    let [lo, hi] = options.contrast;
    let (steps, batch, seed, drawn) = (options.steps, options.batch, options.seed, options.drawn);
    anyhow::ensure!(
        (0.0..1.0).contains(&lo) && lo < hi && hi <= 1.0,
        "--contrast {lo} {hi}: want 0 <= low < high <= 1"
    );
    anyhow::ensure!((0.0..=1.0).contains(&drawn), "--drawn {drawn}: want 0..=1");
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let started = std::time::Instant::now();
    let records = asg_trainer::data::realcxr::read_index(data)
        .with_context(|| format!("reading {}", data.display()))?;
    let mut crops = Vec::new();
    for r in &records {
        crops.extend(crops_of(data, r, other_lungs).with_context(|| format!("film {}", r.id))?);
    }
    let train = crops
        .iter()
        .filter(|c| c.split == asg_trainer::data::Split::Train && c.label.is_some())
        .count();
    let jsrt = crops.iter().filter(|c| c.source == "jsrt").count();
    eprintln!(
        "{} lung crops: {jsrt} of JSRT films, {} of other sources' ({train} labelled in the training split), {:.0} s",
        crops.len(),
        crops.len() - jsrt,
        started.elapsed().as_secs_f64()
    );
    let mut varmap = candle_nn::VarMap::new();
    let vb = candle_nn::VarBuilder::from_varmap(
        &varmap,
        candle_core::DType::F32,
        &candle_core::Device::Cpu,
    );
    let net = asg_trainer::model::nodule_net::NoduleNet::new(vb)?;
    if let Some(dir) = dump {
        dump_views(&crops, options, dir)?;
    }
    let t0 = std::time::Instant::now();
    if let Some(file) = weights {
        varmap
            .load(file)
            .with_context(|| format!("loading {}", file.display()))?;
    } else {
        train_nodules(&crops, &net, &varmap, options, out)?;
    }
    let report = asg_trainer::eval::nodule_eval::evaluate_nodules(
        &net,
        &crops,
        &[[0.04, 0.10], [0.15, 0.30]],
        3,
        seed,
    )?;
    // The ONNX export, checked against Candle on held-out crops through tract.
    let onnx = asg_trainer::export::nodule::nodule_onnx(&net, CROP_H, CROP_W)?;
    let onnx_path = out.join("nodule.onnx");
    std::fs::write(&onnx_path, &onnx)
        .with_context(|| format!("writing {}", onnx_path.display()))?;
    let held: Vec<_> = crops
        .iter()
        .filter(|c| c.split != asg_trainer::data::Split::Train)
        .take(16)
        .map(|c| (c.pixels.as_slice(), c.mask.as_slice()))
        .collect();
    let candle = asg_trainer::eval::nodule_eval::score(&net, &held)?;
    let flat: Vec<f32> = held
        .iter()
        .flat_map(|&(p, _)| asg_trainer::train::nodule_fit::normalise(p))
        .collect();
    let cover: Vec<f32> = held
        .iter()
        .flat_map(|&(_, m)| asg_trainer::train::nodule_fit::cell_coverage(m))
        .collect();
    let (tract_p, _) = asg_trainer::export::nodule::run_nodule_onnx(
        &onnx,
        &flat,
        &cover,
        held.len(),
        CROP_H,
        CROP_W,
    )?;
    let worst = candle
        .iter()
        .zip(&tract_p)
        .map(|((p, _), q)| (p - q).abs())
        .fold(0.0f32, f32::max);
    let md = format!(
        "Nodule model (lung crops), {steps} steps of {batch}, seed {seed}, drawn {drawn} at {lo}-{hi}, {}; \
         held-out JSRT films of {} ({:.0} s)\n\n{}\nnodule.onnx through tract against Candle on {} \
         held-out lungs: worst probability difference {worst:.2e}\n",
        if other_lungs {
            format!(
                "other sources' lungs as nodule-free (JSRT {} of each batch)",
                options.jsrt_share
            )
        } else {
            "JSRT lungs only".into()
        },
        data.display(),
        t0.elapsed().as_secs_f64(),
        report.markdown(),
        held.len()
    );
    print!("{md}");
    std::fs::write(out.join("evaluation.md"), &md)
        .with_context(|| format!("writing {}", out.join("evaluation.md").display()))?;
    std::fs::write(
        out.join("evaluation.json"),
        serde_json::to_string_pretty(&report)?,
    )
    .with_context(|| format!("writing {}", out.join("evaluation.json").display()))?;
    Ok(())
}

/// Trains the nodule model, writing its log and weights into `out`.
fn train_nodules(
    crops: &[asg_trainer::data::lung_crops::LungCrop],
    net: &asg_trainer::model::nodule_net::NoduleNet,
    varmap: &candle_nn::VarMap,
    options: &asg_trainer::train::nodule_fit::NoduleFitOptions,
    out: &std::path::Path,
) -> anyhow::Result<()> {
    let steps = options.steps;
    let log_path = out.join("log.jsonl");
    let mut log = String::new();
    let t0 = std::time::Instant::now();
    asg_trainer::train::nodule_fit::fit_nodules(
        crops,
        net,
        varmap,
        options,
        &mut |step, lung, cells| {
            let line = format!(
                "{{\"step\":{step},\"lung\":{lung:.5},\"cells\":{cells:.5},\"elapsed_s\":{:.1}}}",
                t0.elapsed().as_secs_f64()
            );
            if step % 100 == 0 || step == steps {
                eprintln!("{line}");
            }
            log.push_str(&line);
            log.push('\n');
        },
    )?;
    std::fs::write(&log_path, &log).with_context(|| format!("writing {}", log_path.display()))?;
    let weights = out.join("nodule.safetensors");
    varmap
        .save(&weights)
        .with_context(|| format!("writing {}", weights.display()))?;
    Ok(())
}

/// Writes 16 training views of the nodule model as PNGs (display values; the cells a nodule
/// reaches drawn white in a strip on the right).
fn dump_views(
    crops: &[asg_trainer::data::lung_crops::LungCrop],
    options: &asg_trainer::train::nodule_fit::NoduleFitOptions,
    dir: &std::path::Path,
) -> anyhow::Result<()> {
    use asg_trainer::data::lung_crops::{CROP_H, CROP_W};
    use asg_trainer::train::nodule_fit::{augment, GRID_W};
    use rand::SeedableRng;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(options.seed);
    let train: Vec<_> = crops
        .iter()
        .filter(|c| c.split == asg_trainer::data::Split::Train && c.label.is_some())
        .collect();
    let n = asg_trainer::config::NORMALISATION;
    for (k, crop) in train
        .iter()
        .step_by((train.len() / 16).max(1))
        .take(16)
        .enumerate()
    {
        let Some(view) = augment(crop, options, &mut rng) else {
            continue;
        };
        let width = CROP_W * 2;
        let img = image::GrayImage::from_fn(width as u32, CROP_H as u32, |x, y| {
            let (x, y) = (x as usize, y as usize);
            let v = if x < CROP_W {
                view.pixels[y * CROP_W + x] * n.std + n.mean
            } else {
                let (gx, gy) = ((x - CROP_W) / 8, y / 8);
                view.cell_targets[gy * GRID_W + gx] * 0.8
                    + view.cell_weights[gy * GRID_W + gx] * 0.2
            };
            image::Luma([(v.clamp(0.0, 1.0) * 255.0).round() as u8])
        });
        let path = dir.join(format!("view{k:02}_label{}.png", view.label));
        img.save(&path)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// The manifest of the bundle folder `model`, checked.
fn read_manifest(model: &std::path::Path) -> anyhow::Result<asg_bundle::Manifest> {
    let path = model.join(asg_bundle::MANIFEST_FILE);
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    asg_bundle::Manifest::from_json(&text).with_context(|| format!("{}", path.display()))
}

/// Writes the bundle at `model` to `out` (a new folder, or its own) with `manifest` in place of
/// its own: each file the manifest lists copied after its digest is checked, then the manifest.
fn write_bundle_as(
    model: &std::path::Path,
    out: &std::path::Path,
    manifest: &asg_bundle::Manifest,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    for name in manifest.files.keys() {
        let bytes = std::fs::read(model.join(name))
            .with_context(|| format!("reading {}", model.join(name).display()))?;
        manifest
            .verify_file(name, &bytes)
            .with_context(|| format!("{}", model.display()))?;
        asg_trainer::export::bundle::write_atomically(out, name, &bytes)?;
    }
    asg_trainer::export::bundle::write_manifest(out, manifest)
}

/// Evaluates the bundle in `out` on `data`'s test split through tract, prints the table, writes
/// `evaluation.json` beside it and the summary into the manifest's metrics (rewritten).
fn evaluate_into_manifest(
    out: &std::path::Path,
    data: &std::path::Path,
    manifest: &mut asg_bundle::Manifest,
) -> anyhow::Result<()> {
    let bundle = asg_trainer::eval::OnnxBundle::load(out)?;
    let report = asg_trainer::eval::evaluate(
        &bundle,
        data,
        &asg_trainer::eval::EvalOptions::default(),
        &|s| eprintln!("{s}"),
    )?;
    println!("{}", report.table());
    std::fs::write(
        out.join("evaluation.json"),
        serde_json::to_string_pretty(&report)?,
    )?;
    manifest.training.metrics = report.summary();
    asg_trainer::export::bundle::write_manifest(out, manifest)?;
    Ok(())
}
