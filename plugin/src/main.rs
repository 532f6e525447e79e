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
    /// Inspect DICOM files: metadata as JSON, or decoded pixels as a NumPy .npy file.
    Dicom {
        #[command(subcommand)]
        command: DicomCommand,
    },
    /// Parse a radiology report (a file, or - for standard input) into sentences and
    /// <region, finding, existence> triplets.
    Report {
        /// Report text file, or - for standard input. Not needed with --eval.
        #[arg(required_unless_present = "eval")]
        input: Option<PathBuf>,
        /// Print JSON (sentences with spans and triplets, and the report's tags).
        #[arg(long)]
        json: bool,
        /// Score the parser on a labelled TSV (see report/eval/sentences.tsv) and print the table.
        #[arg(long, conflicts_with = "input")]
        eval: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum DicomCommand {
    /// Print the image metadata (no patient identity) as JSON, without decoding the pixels.
    Info { file: PathBuf },
    /// Group DICOM files (or folders, recursively) into studies and series by their UIDs, from the
    /// headers alone; non-image objects and unreadable files are listed with the reason. JSON.
    Index {
        #[arg(required = true)]
        inputs: Vec<PathBuf>,
    },
    /// Decode one frame and write it as a NumPy .npy file.
    Pixels {
        file: PathBuf,
        #[arg(long)]
        npy: PathBuf,
        /// Frame to decode (0-based).
        #[arg(long, default_value_t = 0)]
        frame: u32,
        /// stored: raw stored values with their signedness (as pydicom's pixel_array);
        /// modality: after rescale / modality LUT (f32); display: after the VOI window and
        /// MONOCHROME1 inversion, in [0, 1] (f32).
        #[arg(long, value_enum, default_value_t = Stage::Stored)]
        stage: Stage,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum Stage {
    Stored,
    Modality,
    Display,
}

fn dicom(command: DicomCommand) -> anyhow::Result<()> {
    use asg_dicom::npy::{encode, NpyType};
    match command {
        DicomCommand::Index { inputs } => {
            let mut files = Vec::new();
            for input in &inputs {
                collect_files(input, &mut files)?;
            }
            let index = asg_dicom::index::index(&files, &asg_dicom::ReadOptions::default());
            println!("{}", serde_json::to_string_pretty(&index)?);
        }
        DicomCommand::Info { file } => {
            let name = file.display().to_string();
            let bytes = std::fs::read(&file).with_context(|| format!("reading {name}"))?;
            let meta = asg_dicom::read_meta_bytes(&bytes, &name, &ReadOptions::default())?;
            println!("{}", serde_json::to_string_pretty(&meta)?);
        }
        DicomCommand::Pixels {
            file,
            npy,
            frame,
            stage,
        } => {
            let options = ReadOptions {
                frame,
                keep_stored: matches!(stage, Stage::Stored),
                ..ReadOptions::default()
            };
            let image = asg_dicom::read_file(&file, &options)?;
            let shape = [image.height as usize, image.width as usize];
            let bytes = match stage {
                Stage::Stored => {
                    let stored = image.stored.as_deref().unwrap_or_default();
                    // Colour: rows x columns x samples, as pydicom's pixel_array gives it.
                    let samples = image.meta.samples_per_pixel as usize;
                    let colour_shape = [shape[0], shape[1], samples];
                    let shape: &[usize] = if samples > 1 { &colour_shape } else { &shape };
                    let ty = NpyType::for_stored(
                        image.meta.bits_allocated,
                        image.meta.pixel_representation == 1,
                    );
                    encode(shape, ty, stored.iter().map(|&v| v as f64))
                }
                Stage::Modality => {
                    encode(&shape, NpyType::F32, image.pixels.iter().map(|&v| v as f64))
                }
                Stage::Display => encode(
                    &shape,
                    NpyType::F32,
                    image.display().into_iter().map(f64::from),
                ),
            };
            let dir = npy
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            let tmp = dir.join(format!(
                ".{}.partial",
                npy.file_name()
                    .map(|f| f.to_string_lossy().into_owned())
                    .unwrap_or_default()
            ));
            std::fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
            std::fs::rename(&tmp, &npy)
                .with_context(|| format!("renaming into {}", npy.display()))?;
        }
    }
    Ok(())
}

/// Largest report accepted (a report is a few KB; this is far beyond any real one).
const MAX_REPORT_BYTES: u64 = 16 << 20;

fn read_report(input: &Path) -> anyhow::Result<String> {
    use std::io::Read;
    let mut bytes = Vec::new();
    if input.as_os_str() == "-" {
        std::io::stdin()
            .take(MAX_REPORT_BYTES + 1)
            .read_to_end(&mut bytes)
            .context("reading standard input")?;
    } else {
        let file =
            std::fs::File::open(input).with_context(|| format!("opening {}", input.display()))?;
        file.take(MAX_REPORT_BYTES + 1)
            .read_to_end(&mut bytes)
            .with_context(|| format!("reading {}", input.display()))?;
    }
    anyhow::ensure!(
        bytes.len() as u64 <= MAX_REPORT_BYTES,
        "{}: larger than {MAX_REPORT_BYTES} bytes",
        input.display()
    );
    // Invalid UTF-8 (a report saved in Latin-1, say) is read with replacement characters.
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

fn report(input: Option<PathBuf>, json: bool, eval: Option<PathBuf>) -> anyhow::Result<()> {
    if let Some(path) = eval {
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        let examples = asg_report::eval::read_examples(&text)
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        print!("{}", asg_report::eval::evaluate(&examples));
        return Ok(());
    }
    let input = input.context("a report file or - is needed")?;
    let parsed = asg_report::parse(&read_report(&input)?);
    if json {
        println!("{}", serde_json::to_string_pretty(&parsed)?);
        return Ok(());
    }
    for s in &parsed.sentences {
        let section = s
            .section
            .as_deref()
            .map(|x| format!("[{x}] "))
            .unwrap_or_default();
        println!(
            "{section}{}",
            s.text.split_whitespace().collect::<Vec<_>>().join(" ")
        );
        for t in &s.triplets {
            println!(
                "    {:<26} {:<10} {}",
                t.finding,
                format!("{:?}", t.existence).to_lowercase(),
                t.region
            );
        }
    }
    if !parsed.tags.is_empty() {
        println!(
            "tags: {}",
            parsed
                .tags
                .iter()
                .map(|(f, e)| format!("{f}={e:?}").to_lowercase())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    Ok(())
}

/// Inside folders, the files taken as DICOM: a .dcm/.dicom/.dic name, no extension (as archives
/// often name them), or the "DICM" mark at byte 128. Reports, JSON, CSV and pictures beside the
/// images are passed over; a file named on the command line is always read.
fn looks_like_dicom(path: &Path) -> bool {
    match path
        .extension()
        .map(|x| x.to_string_lossy().to_ascii_lowercase())
    {
        None => true,
        Some(x) if matches!(x.as_str(), "dcm" | "dicom" | "dic") => true,
        Some(_) => {
            use std::io::Read;
            let mut head = [0u8; 132];
            std::fs::File::open(path)
                .and_then(|mut f| f.read_exact(&mut head))
                .is_ok_and(|()| &head[128..] == b"DICM")
        }
    }
}

fn is_dicomdir(path: &Path) -> bool {
    path.file_name()
        .is_some_and(|n| n.to_string_lossy().eq_ignore_ascii_case("DICOMDIR"))
}

/// Files named on the command line, folders walked recursively (a DICOMDIR inside a folder is
/// passed over: the folder's files are walked anyway), and a DICOMDIR named on the command line
/// expanded into the files its records refer to.
fn collect_files(input: &Path, out: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    if input.is_file() && is_dicomdir(input) {
        out.extend(asg_dicom::index::dicomdir_files(input)?);
        return Ok(());
    }
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
            } else if looks_like_dicom(&e) && !is_dicomdir(&e) {
                out.push(e);
            }
        }
    } else {
        out.push(input.to_path_buf());
    }
    Ok(())
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
        Command::Report { input, json, eval } => report(input, json, eval)?,
        Command::Dicom { command } => dicom(command)?,
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
