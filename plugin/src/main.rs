//! `asg`: the workstation CLI. Everything runs locally; nothing is sent anywhere.

use anyhow::Context;
use asg_dicom::ReadOptions;
use clap::{Parser, Subcommand};
use std::path::{Path, PathBuf};
use std::time::Instant;

mod normals;
mod pacs;
mod serve;
mod workstation;

#[derive(Parser)]
#[command(
    name = "asg",
    version,
    about = "Anatomy-aware chest X-ray analysis, on this machine only",
    after_help = "Start here:
  asg demo                                   a phantom study analysed and its report checked
  asg analyze study.dcm --report report.txt --overlay out/
  asg analyze archive/ --reports archive/ --json results/ --jobs 2
Nothing is sent anywhere: no network access, no patient identity in logs."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Analyse DICOM files (or folders of them, recursively; PNG and JPEG pictures too, with a
    /// warning that they carry no spacing or identity): anatomical regions, findings per
    /// region and per image with heatmaps, and with a report, the report checked sentence by
    /// sentence. Without --json, prints JSON to standard output (one object for one file, an array
    /// for several). Bad files are reported and skipped; the exit code is non-zero if any failed.
    /// Images of other modalities (CT, MR, ultrasound...) and radiographs whose Body Part
    /// Examined is not the chest (HAND, KNEE, ABDOMEN...) are skipped with a note, and refused
    /// when nothing else is left.
    #[command(after_help = "Examples:
  asg analyze study.dcm                                  (embedded default model)
  asg analyze study.dcm --report report.txt --overlay out/
  asg analyze archive/ --reports archive/ --json results/ --overlay results/ --jobs 2
  asg analyze DICOMDIR --model my-bundle/ --threshold 0.3
  asg analyze study.dcm --sr out/ --fhir out/          (DICOM SR TID 1500 and FHIR R4)
  asg analyze film.png                                   (a PNG/JPEG picture: 8-bit, no spacing)
  asg analyze collection/ --pictures --json results/     (PNG/JPEG inside folders too)
  asg analyze --dicomweb http://pacs:8042/dicom-web --study 1.2.3.4 --store-sr --json results/
  asg analyze --dicomweb https://pacs/dicom-web --header 'Authorization: Bearer TOKEN'")]
    Analyze(AnalyzeArgs),
    /// The main job in one command: make a phantom study (a synthetic chest radiograph and its
    /// report with one injected error), analyse it with the embedded model, check the report,
    /// write the overlay and the JSON, and print the findings and the report check.
    #[command(after_help = "Examples:
  asg demo
  asg demo --out /tmp/demo --seed 5")]
    Demo {
        /// Folder for the study, the overlay and the JSON.
        #[arg(long, default_value = "asg-demo")]
        out: PathBuf,
        /// Analyse the real film built into the binary instead of phantoms: a normal PA chest
        /// film (ieee8023 covid-chestxray-dataset, from the Hannover Medical School
        /// covid-19-image-repository, CC BY 3.0; plugin/demo/README.md), held out of training,
        /// with a correct normal report. It should come back clean.
        #[arg(long)]
        real: bool,
        #[arg(long, default_value_t = 11)]
        seed: u64,
        #[arg(long)]
        model: Option<PathBuf>,
    },
    /// Serve the browser viewer (the built `web/` folder) with the embedded default bundle, on
    /// this machine only (127.0.0.1) unless --host says otherwise.
    #[command(after_help = "Examples:
  asg serve                       then open http://127.0.0.1:8080/
  asg serve --port 9000 --model my-bundle/")]
    Serve {
        #[arg(long, default_value_t = 8080)]
        port: u16,
        #[arg(long, default_value = "127.0.0.1")]
        host: String,
        /// Serve the viewer from this built folder (scripts/build-web.sh) instead of the one built
        /// into the binary (or `web/` when the binary has none).
        #[arg(long)]
        web: Option<PathBuf>,
        /// A bundle folder or tar file to serve instead of the embedded one.
        #[arg(long)]
        model: Option<PathBuf>,
    },
    /// Measure the report check on a phantom set made with `asg-train synth --errors`: precision
    /// and recall per error type (side swapped, finding omitted, negation flipped, finding
    /// invented), over the erroneous reports and their clean originals.
    #[command(after_help = "Example:
  asg-train synth --n 300 --seed 21 --errors --out checkset && asg check-eval checkset")]
    CheckEval {
        /// The phantom set folder (with report_errors.csv).
        data: PathBuf,
        #[arg(long)]
        model: Option<PathBuf>,
        #[arg(long, default_value_t = 2)]
        jobs: usize,
        /// Also write the table as JSON.
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// What a user's normal films get: the films read as normal in a realcxr folder (JSRT's
    /// non-nodule class, ieee8023 "No Finding"), each analysed and checked against a correct
    /// normal report; prints the share with nothing flagged and the share whose report is left
    /// unaccused (no contradiction, laterality mismatch or omission).
    #[command(after_help = "Example:
  asg check-normals ../shared/realcxr
  asg check-normals ../shared/realcxr --model my-bundle/ --json normals.json")]
    CheckNormals {
        /// A folder in the realcxr layout (index.jsonl, images/).
        data: PathBuf,
        #[arg(long)]
        model: Option<PathBuf>,
        #[arg(long, default_value_t = 2)]
        jobs: usize,
        /// The split of the folder's patient groups to measure on (the trainer's): test (the
        /// films a model trained on the folder did not see), validate, train, or all.
        #[arg(long, default_value = "test")]
        split: String,
        /// Also write the result as JSON.
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// Inspect DICOM files: metadata as JSON, or decoded pixels as a NumPy .npy file.
    #[command(after_help = "Examples:
  asg dicom info image.dcm
  asg dicom index archive/ DICOMDIR
  asg dicom pixels image.dcm --npy image.npy --stage display")]
    Dicom {
        #[command(subcommand)]
        command: DicomCommand,
    },
    /// Parse a radiology report (a file, or - for standard input) into sentences and
    /// <region, finding, existence> triplets.
    #[command(after_help = "Examples:
  asg report report.txt
  echo 'FINDINGS: Small left pleural effusion. No pneumothorax.' | asg report -
  asg report report.txt --json
  asg report report.txt --labels chexpert
  asg report report.txt --labels chestxray14 --json
  asg report --eval report/eval/chexpert_phrases.tsv
  asg report --eval ../shared/iu-reports/reports.jsonl")]
    Report {
        /// Report text file, or - for standard input. Not needed with --eval.
        #[arg(required_unless_present = "eval")]
        input: Option<PathBuf>,
        /// Print JSON (sentences with spans and triplets, and the report's tags).
        #[arg(long)]
        json: bool,
        /// Print the report's labels in an established labeler's convention: chexpert (the 14
        /// CheXpert observations: positive, negative, uncertain, not mentioned) or chestxray14
        /// (the 14 ChestX-ray14 findings as NegBio labels them). Rules: report/data/labels.tsv.
        #[arg(long, value_name = "SCHEME")]
        labels: Option<asg_report::Scheme>,
        /// Score the parser and print the table: a labelled sentence TSV (see
        /// report/eval/sentences.tsv), or a JSONL of reports with human labels in the OpenI
        /// layout (negbio_gold14, mesh_major: see report/README.md), scored per label, with side
        /// recall against the MeSH codes.
        #[arg(long, conflicts_with = "input")]
        eval: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum DicomCommand {
    /// Print the image metadata (no patient identity) as JSON, without decoding the pixels.
    #[command(after_help = "Example:\n  asg dicom info image.dcm")]
    Info { file: PathBuf },
    /// Group DICOM files (or folders, recursively) into studies and series by their UIDs, from the
    /// headers alone; non-image objects and unreadable files are listed with the reason. JSON.
    #[command(after_help = "Example:\n  asg dicom index archive/ /media/cd/DICOMDIR")]
    Index {
        #[arg(required = true)]
        inputs: Vec<PathBuf>,
    },
    /// Decode one frame and write it as a NumPy .npy file.
    #[command(
        after_help = "Example:\n  asg dicom pixels image.dcm --npy out.npy --stage modality --frame 0"
    )]
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
                collect_files(input, &mut files, false)?;
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
/// The largest evaluation file `asg report --eval` reads.
const MAX_EVAL_BYTES: u64 = 512 << 20;

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

fn report(
    input: Option<PathBuf>,
    json: bool,
    labels: Option<asg_report::Scheme>,
    eval: Option<PathBuf>,
) -> anyhow::Result<()> {
    if let Some(path) = eval {
        let meta =
            std::fs::metadata(&path).with_context(|| format!("reading {}", path.display()))?;
        anyhow::ensure!(
            meta.len() <= MAX_EVAL_BYTES,
            "{}: larger than {MAX_EVAL_BYTES} bytes",
            path.display()
        );
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        if path
            .extension()
            .is_some_and(|x| x.eq_ignore_ascii_case("jsonl"))
        {
            let reports = asg_report::label_eval::read_jsonl(&text)
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
            print!("{}", asg_report::label_eval::evaluate_labels(&reports));
            return Ok(());
        }
        let examples = asg_report::eval::read_examples(&text)
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        print!("{}", asg_report::eval::evaluate(&examples));
        return Ok(());
    }
    let input = input.context("a report file or - is needed")?;
    let parsed = asg_report::parse(&read_report(&input)?);
    if let Some(scheme) = labels {
        let l = parsed.labels(scheme);
        if json {
            let values: Vec<serde_json::Value> = l
                .values
                .iter()
                .map(|(name, m)| {
                    serde_json::json!({"label": name, "value": m, "code": m.chexpert_code()})
                })
                .collect();
            let out = serde_json::json!({"scheme": scheme, "labels": values});
            println!("{}", serde_json::to_string_pretty(&out)?);
        } else {
            for (name, m) in &l.values {
                let code = m.chexpert_code().map(|c| c.to_string()).unwrap_or_default();
                println!("{name:<28} {:<14} {code}", m.name());
            }
        }
        return Ok(());
    }
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

/// Files named on the command line, folders walked recursively, DICOMDIRs expanded
/// ([`asg_plugin::batch::collect_files`]).
fn collect_files(input: &Path, out: &mut Vec<PathBuf>, pictures: bool) -> anyhow::Result<()> {
    asg_plugin::batch::collect_files(input, out, pictures)?;
    Ok(())
}

/// `asg analyze`'s arguments.
#[derive(clap::Args)]
struct AnalyzeArgs {
    /// DICOM files, folders (searched recursively) or DICOMDIR files.
    #[arg(required_unless_present = "dicomweb", conflicts_with = "dicomweb")]
    inputs: Vec<PathBuf>,
    /// A PACS's DICOMweb root (the URL before /studies): the CR and DX instances of the
    /// --study studies (default: every study it lists) are found with QIDO-RS, retrieved
    /// with WADO-RS and analysed as files are; outputs are named by SOP Instance UID, and
    /// reports looked up as <SOP Instance UID>.txt or <Study Instance UID>.txt.
    #[arg(long, value_name = "URL")]
    dicomweb: Option<String>,
    /// A Study Instance UID to analyse (repeatable; with --dicomweb).
    #[arg(long = "study", value_name = "UID", requires = "dicomweb")]
    studies: Vec<String>,
    /// Store each image's DICOM SR back into its study with STOW-RS (with --dicomweb).
    #[arg(long, requires = "dicomweb")]
    store_sr: bool,
    /// An HTTP header for every DICOMweb request, 'Name: value' (repeatable), e.g.
    /// 'Authorization: Bearer TOKEN'. Never logged.
    #[arg(long = "header", value_name = "HEADER", requires = "dicomweb")]
    headers: Vec<String>,
    /// Seconds one DICOMweb request may take, connecting and reading included.
    #[arg(long, default_value_t = 120)]
    timeout: u64,
    /// Model bundle: a folder (manifest.json + ONNX files) or one tar archive of it;
    /// default: the embedded bundle.
    #[arg(long)]
    model: Option<PathBuf>,
    /// A report to check against every image.
    #[arg(long, conflicts_with = "reports")]
    report: Option<PathBuf>,
    /// A folder of reports: <image name>.txt, or <study folder>.txt (MIMIC-CXR layout).
    #[arg(long)]
    reports: Option<PathBuf>,
    /// Write JSON here instead of standard output: a file for one image, a folder (one
    /// <image>.json each, and summary.json per study) for several.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Write an overlay PNG per image into this folder.
    #[arg(long)]
    overlay: Option<PathBuf>,
    /// Write a DICOM Structured Report (TID 1500 measurement report) per image into this
    /// folder, for PACS and viewers (OHIF, Weasis...).
    #[arg(long)]
    sr: Option<PathBuf>,
    /// Write a FHIR R4 DiagnosticReport (JSON) per image into this folder.
    #[arg(long)]
    fhir: Option<PathBuf>,
    /// One probability threshold for every finding (default: the bundle's, per finding).
    #[arg(long)]
    threshold: Option<f32>,
    /// Images analysed at once (each holds one decoded image in memory).
    #[arg(long, default_value_t = 2)]
    jobs: usize,
    /// Print a readable summary per image instead of JSON on standard output.
    #[arg(long)]
    human: bool,
    /// Largest Rows x Columns x Frames accepted.
    #[arg(long, default_value_t = ReadOptions::default().max_pixels)]
    max_pixels: u64,
    /// Inside folders, also take PNG and JPEG pictures (.png, .jpg, .jpeg); a picture named
    /// on the command line is always read.
    #[arg(long)]
    pictures: bool,
    /// Also write the model's raw outputs (attention maps, finding maps, embeddings: about
    /// 150 KB of numbers per image) in the JSON, as `outputs`.
    #[arg(long)]
    raw_outputs: bool,
}

fn progress_bar(n: usize) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(n as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{bar:30} {pos}/{len} images  {per_sec}  eta {eta}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar
}

fn analyze(args: AnalyzeArgs) -> anyhow::Result<()> {
    use workstation::{analyze_all, load_bundle, outcome_json, Outputs, Reports};
    // (clap's `requires` lets these through without --dicomweb.)
    if args.dicomweb.is_none() {
        for (given, flag) in [
            (!args.studies.is_empty(), "--study"),
            (args.store_sr, "--store-sr"),
            (!args.headers.is_empty(), "--header"),
        ] {
            anyhow::ensure!(!given, "{flag} needs --dicomweb URL");
        }
    }
    let load_start = Instant::now();
    let bundle = load_bundle(args.model.as_deref(), args.threshold)?;
    eprintln!(
        "loaded model {} {} in {:.1} ms",
        bundle.manifest.name,
        bundle.manifest.version,
        load_start.elapsed().as_secs_f64() * 1e3
    );
    let reports = match (&args.report, &args.reports) {
        (Some(r), _) => Reports::One(read_report(r)?),
        (None, Some(dir)) => Reports::folder(dir)?,
        (None, None) => Reports::None,
    };
    let outputs = Outputs {
        overlay_dir: args.overlay.clone(),
        sr_dir: args.sr.clone(),
        fhir_dir: args.fhir.clone(),
        read: ReadOptions {
            max_pixels: args.max_pixels,
            ..ReadOptions::default()
        },
        raw_outputs: args.raw_outputs,
    };
    let results: Vec<(PathBuf, anyhow::Result<workstation::Outcome>)> = match &args.dicomweb {
        Some(url) => {
            let job = pacs::PacsJob {
                url,
                studies: &args.studies,
                headers: &args.headers,
                store_sr: args.store_sr,
                timeout_s: args.timeout,
            };
            let bar = progress_bar(0);
            let r = pacs::analyze_dicomweb(&bundle, &job, &reports, &outputs, &|p| match p {
                pacs::Progress::Found(n) => bar.inc_length(n),
                pacs::Progress::Done => bar.inc(1),
            });
            bar.finish_and_clear();
            r?
        }
        None => {
            let mut files = Vec::new();
            for input in &args.inputs {
                collect_files(input, &mut files, args.pictures)?;
            }
            anyhow::ensure!(!files.is_empty(), "no DICOM files found in the inputs");
            let bar = progress_bar(files.len());
            let results = analyze_all(&bundle, &files, &reports, &outputs, args.jobs, &|| {
                bar.inc(1)
            });
            bar.finish_and_clear();
            files.into_iter().zip(results).collect()
        }
    };
    let inputs = results.len();
    let mut ok = Vec::new();
    let mut failed = Vec::new();
    // Images that are no chest radiograph (a CT or MR series, a hand film in an archive) are
    // skipped, not failed.
    let mut skipped = Vec::new();
    for (file, r) in results {
        match r {
            Ok(o) => ok.push(o),
            Err(e) => match e.downcast_ref::<asg_plugin::PluginError>() {
                Some(
                    asg_plugin::PluginError::NotARadiograph { .. }
                    | asg_plugin::PluginError::NotAChest { .. },
                ) => skipped.push((file, e.to_string())),
                _ => failed.push((file, format!("{e:#}"))),
            },
        }
    }
    let single = inputs == 1 && args.dicomweb.is_none();
    match &args.json {
        Some(path) if single => {
            if let Some(o) = ok.first() {
                std::fs::write(path, serde_json::to_string_pretty(&outcome_json(o)?)?)
                    .with_context(|| format!("writing {}", path.display()))?;
            }
        }
        Some(dir) => {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            let stems: Vec<String> = ok
                .iter()
                .map(|o| match &args.dicomweb {
                    // Named by URL: the SOP Instance UID names the file (its dots are no
                    // extension).
                    Some(_) if !o.analysis.image.sop_instance_uid.is_empty() => {
                        o.analysis.image.sop_instance_uid.clone()
                    }
                    _ => o
                        .file
                        .file_stem()
                        .map(|s| s.to_string_lossy().to_string())
                        .unwrap_or_else(|| "image".into()),
                })
                .collect();
            let names = asg_plugin::batch::json_names(stems.iter().map(String::as_str));
            for (o, name) in ok.iter().zip(names) {
                let path = dir.join(name);
                std::fs::write(&path, serde_json::to_string_pretty(&outcome_json(o)?)?)
                    .with_context(|| format!("writing {}", path.display()))?;
            }
            let refs: Vec<&workstation::Outcome> = ok.iter().collect();
            let summary = workstation::summarise(&refs);
            let path = dir.join("summary.json");
            std::fs::write(&path, serde_json::to_string_pretty(&serde_json::json!({
                "studies": summary,
                "failed": failed.iter().map(|(f, e)| serde_json::json!({"file": f, "error": e})).collect::<Vec<_>>(),
                "skipped": skipped.iter().map(|(f, e)| serde_json::json!({"file": f, "reason": e})).collect::<Vec<_>>(),
            }))?)
            .with_context(|| format!("writing {}", path.display()))?;
        }
        None if args.human => ok.iter().for_each(workstation::print_human),
        None => {
            let values: Vec<serde_json::Value> =
                ok.iter().map(outcome_json).collect::<anyhow::Result<_>>()?;
            match values.as_slice() {
                // One input that did not come through: nothing on standard output, the reason
                // on standard error.
                [] if single => {}
                [one] if single => println!("{}", serde_json::to_string_pretty(one)?),
                _ => println!("{}", serde_json::to_string_pretty(&values)?),
            }
        }
    }
    if args.json.is_some() && args.human {
        ok.iter().for_each(workstation::print_human);
    }
    let refs: Vec<&workstation::Outcome> = ok.iter().collect();
    let studies = workstation::summarise(&refs);
    eprintln!(
        "analysed {} of {} images in {} studies",
        ok.len(),
        inputs,
        studies.len()
    );
    if args.store_sr {
        let stored = ok.iter().filter(|o| o.stored_sr.is_some()).count();
        eprintln!("stored {stored} DICOM SR in the PACS");
    }
    for (_, reason) in &skipped {
        eprintln!("skipped: {reason}");
    }
    for (file, e) in &failed {
        eprintln!("failed: {}: {e}", file.display());
    }
    if !failed.is_empty() {
        anyhow::bail!("{} of {} inputs failed", failed.len(), inputs);
    }
    anyhow::ensure!(
        !ok.is_empty() || skipped.is_empty(),
        "none of the {inputs} inputs is a chest radiograph"
    );
    Ok(())
}

fn demo(out: &Path, seed: u64, model: Option<&Path>) -> anyhow::Result<()> {
    use workstation::{analyze_file, load_bundle, outcome_json, print_human, Outputs, Reports};
    let bundle = load_bundle(model, None)?;
    let data = out.join("study");
    let _ = std::fs::remove_dir_all(&data);
    std::fs::create_dir_all(&data).with_context(|| format!("creating {}", data.display()))?;
    // A few phantoms; the first whose report could take an injected error is shown.
    let options = asg_phantom::set::SetOptions {
        n: 6,
        seed,
        image: asg_phantom::Options {
            size: 1024,
            normal_share: 0.0,
            vary_format: false,
        },
        split: [0.0, 0.0, 1.0],
        errors: true,
        threads: 1,
    };
    asg_phantom::set::write_set(&data, &options, &|| {})?;
    let errors = std::fs::read_to_string(data.join("report_errors.csv"))
        .with_context(|| format!("reading {}", data.join("report_errors.csv").display()))?;
    let first = errors
        .lines()
        .nth(1)
        .context("no phantom study took an injected error; try another --seed")?;
    let cols: Vec<&str> = first.split(',').collect();
    let (Some(dicom_id), Some(study_id)) = (cols.first().copied(), cols.get(1).copied()) else {
        anyhow::bail!("report_errors.csv: malformed line {first:?}");
    };
    let mut files = Vec::new();
    collect_files(&data.join("files"), &mut files, false)?;
    let file = files
        .iter()
        .find(|f| {
            f.file_stem()
                .is_some_and(|s| s.to_string_lossy() == dicom_id)
        })
        .context("the demo study's image is missing")?;
    let report_path = file
        .parent()
        .and_then(|p| p.parent())
        .map(|p| p.join(format!("s{study_id}_with_error.txt")))
        .context("no report folder")?;
    let report = read_report(&report_path)?;
    let outputs = Outputs {
        overlay_dir: Some(out.to_path_buf()),
        ..Default::default()
    };
    let o = analyze_file(&bundle, file, &Reports::One(report.clone()), &outputs)?;
    let json = out.join("analysis.json");
    std::fs::write(&json, serde_json::to_string_pretty(&outcome_json(&o)?)?)
        .with_context(|| format!("writing {}", json.display()))?;
    println!("report ({}):", report_path.display());
    for line in report.lines().filter(|l| !l.trim().is_empty()) {
        println!("  | {line}");
    }
    println!(
        "injected error (the demo's answer key): {} {} {}",
        cols.get(2).unwrap_or(&""),
        cols.get(3).unwrap_or(&""),
        cols.get(4).unwrap_or(&"")
    );
    print_human(&o);
    println!("  json: {}", json.display());
    Ok(())
}

/// The real demo film (plugin/demo/README.md says where it comes from and its licence).
const DEMO_FILM: &[u8] = include_bytes!("../demo/ieee8023-00cfd1c1.jpg");
/// Its attribution, written beside it.
const DEMO_ATTRIBUTION: &str = "Chest film ieee8023-00cfd1c1.jpg: Hannover Medical School, \
Institute for Diagnostic and Interventional Radiology, covid-19-image-repository \
(https://github.com/ml-workgroup/covid-19-image-repository, doi:10.6084/m9.figshare.12275009), \
CC BY 3.0 (https://creativecommons.org/licenses/by/3.0/); taken from the ieee8023 \
covid-chestxray-dataset (images/00cfd1c1.jpg), downscaled from 2000 x 2000 to 1024 x 1024. \
Listed there as \"No Finding\" (PA).\n";

fn demo_real(out: &Path, model: Option<&Path>) -> anyhow::Result<()> {
    use workstation::{analyze_file, load_bundle, outcome_json, print_human, Outputs, Reports};
    let bundle = load_bundle(model, None)?;
    let data = out.join("study");
    std::fs::create_dir_all(&data).with_context(|| format!("creating {}", data.display()))?;
    let film = data.join("ieee8023-00cfd1c1.jpg");
    std::fs::write(&film, DEMO_FILM).with_context(|| format!("writing {}", film.display()))?;
    let credit = data.join("ATTRIBUTION.txt");
    std::fs::write(&credit, DEMO_ATTRIBUTION)
        .with_context(|| format!("writing {}", credit.display()))?;
    let report = normals::NORMAL_REPORT.to_string();
    let outputs = Outputs {
        overlay_dir: Some(out.to_path_buf()),
        ..Default::default()
    };
    let o = analyze_file(&bundle, &film, &Reports::One(report.clone()), &outputs)?;
    let json = out.join("analysis.json");
    std::fs::write(&json, serde_json::to_string_pretty(&outcome_json(&o)?)?)
        .with_context(|| format!("writing {}", json.display()))?;
    print!("{DEMO_ATTRIBUTION}");
    println!("report (a correct normal report):");
    for line in report.lines().filter(|l| !l.trim().is_empty()) {
        println!("  | {line}");
    }
    print_human(&o);
    println!("  json: {}", json.display());
    Ok(())
}

fn check_eval(
    data: &Path,
    model: Option<&Path>,
    jobs: usize,
    json: Option<&Path>,
) -> anyhow::Result<()> {
    use workstation::{
        analyze_all, expected_flag, flags, load_bundle, CheckScore, Outputs, Reports,
    };
    let bundle = load_bundle(model, None)?;
    let csv_path = data.join("report_errors.csv");
    let csv = std::fs::read_to_string(&csv_path).with_context(|| {
        format!(
            "reading {} (make the set with asg-train synth --errors)",
            csv_path.display()
        )
    })?;
    let mut injected: std::collections::HashMap<String, (String, String, String)> =
        std::collections::HashMap::new();
    for line in csv.lines().skip(1) {
        let c: Vec<&str> = line.split(',').collect();
        if c.len() >= 4 {
            injected.insert(
                c[0].to_string(),
                (c[1].to_string(), c[2].to_string(), c[3].to_string()),
            );
        }
    }
    let mut files = Vec::new();
    collect_files(&data.join("files"), &mut files, false)?;
    files.retain(|f| {
        f.file_stem()
            .is_some_and(|s| injected.contains_key(s.to_string_lossy().as_ref()))
    });
    anyhow::ensure!(
        !files.is_empty(),
        "{}: no images with injected errors",
        data.display()
    );
    // The reports are checked after the analyses: the raw outputs (region embeddings) stay.
    let outputs = Outputs {
        raw_outputs: true,
        ..Outputs::default()
    };
    let bar = progress_bar(files.len());
    let results = analyze_all(&bundle, &files, &Reports::None, &outputs, jobs, &|| {
        bar.inc(1)
    });
    bar.finish_and_clear();
    let kinds = [
        "side_swapped",
        "finding_omitted",
        "negation_flipped",
        "finding_invented",
    ];
    let mut scores: std::collections::BTreeMap<&str, CheckScore> =
        kinds.iter().map(|k| (*k, CheckScore::default())).collect();
    let mut images = 0;
    for (file, r) in files.iter().zip(results) {
        let o = r?;
        images += 1;
        let stem = file
            .file_stem()
            .map(|s| s.to_string_lossy().to_string())
            .unwrap_or_default();
        let Some((study, kind, finding)) = injected.get(&stem) else {
            continue;
        };
        let folder = file
            .parent()
            .and_then(|p| p.parent())
            .context("no study folder")?;
        let clean = read_report(&folder.join(format!("s{study}.txt")))?;
        let wrong = read_report(&folder.join(format!("s{study}_with_error.txt")))?;
        let want = expected_flag(kind);
        if let Some(s) = scores.get_mut(kind.as_str()) {
            s.injected += 1;
        }
        let wrong_flags = flags(&bundle.check_report(&o.analysis, &wrong)?);
        let clean_flags = flags(&bundle.check_report(&o.analysis, &clean)?);
        if wrong_flags
            .iter()
            .any(|(k, f)| Some(*k) == want && f == finding)
        {
            if let Some(s) = scores.get_mut(kind.as_str()) {
                s.detected += 1;
            }
        }
        for (k, _) in wrong_flags.iter().chain(&clean_flags) {
            let Some(kind_of_flag) = kinds.iter().find(|x| expected_flag(x) == Some(*k)) else {
                continue;
            };
            let s = scores.get_mut(kind_of_flag).context("score")?;
            s.flagged += 1;
        }
        for (k, f) in &wrong_flags {
            if Some(*k) == want && f == finding {
                if let Some(s) = scores.get_mut(kind.as_str()) {
                    s.correct_flags += 1;
                }
            }
        }
    }
    println!(
        "Report check on {} ({images} images, each with its clean report and one with an injected error)\n",
        data.display()
    );
    println!(
        "| error type | flagged as | injected | detected | recall | flags raised | precision |"
    );
    println!("|---|---|---|---|---|---|---|");
    for (k, s) in &scores {
        let recall = s.detected as f64 / s.injected.max(1) as f64;
        let precision = if s.flagged > 0 {
            format!("{:.3}", s.correct_flags as f64 / s.flagged as f64)
        } else {
            "—".into()
        };
        println!(
            "| {k} | {} | {} | {} | {recall:.3} | {} | {precision} |",
            expected_flag(k).unwrap_or("-"),
            s.injected,
            s.detected,
            s.flagged
        );
    }
    if let Some(path) = json {
        std::fs::write(path, serde_json::to_string_pretty(&scores)?)
            .with_context(|| format!("writing {}", path.display()))?;
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
        Command::Report {
            input,
            json,
            labels,
            eval,
        } => report(input, json, labels, eval)?,
        Command::Dicom { command } => dicom(command)?,
        Command::Analyze(args) => analyze(args)?,
        Command::Demo {
            out,
            seed,
            model,
            real,
        } => {
            if real {
                demo_real(&out, model.as_deref())?
            } else {
                demo(&out, seed, model.as_deref())?
            }
        }
        Command::Serve {
            port,
            host,
            web,
            model,
        } => {
            let files = workstation::bundle_files(model.as_deref())?;
            serve::serve(&serve::Assets::choose(web), &host, port, files)?
        }
        Command::CheckEval {
            data,
            model,
            jobs,
            json,
        } => check_eval(&data, model.as_deref(), jobs, json.as_deref())?,
        Command::CheckNormals {
            data,
            model,
            jobs,
            split,
            json,
        } => {
            use asg_phantom::write::SplitName;
            let split = match split.as_str() {
                "all" => None,
                "train" => Some(SplitName::Train),
                "validate" => Some(SplitName::Validate),
                "test" => Some(SplitName::Test),
                other => anyhow::bail!("--split {other}: expected test, validate, train or all"),
            };
            let bundle = workstation::load_bundle(model.as_deref(), None)?;
            let films = normals::normal_films(&data, split)?;
            anyhow::ensure!(
                !films.is_empty(),
                "{}: no normal films in the {} split",
                data.display(),
                split.map_or("whole", |s| s.name())
            );
            println!(
                "Normal films of {} ({} split of its patient groups).\n",
                data.display(),
                split.map_or("every", |s| s.name())
            );
            let bar = progress_bar(films.len());
            let score = normals::check_normals(&bundle, &films, jobs, &|| bar.inc(1))?;
            bar.finish_and_clear();
            print!("{score}");
            if let Some(path) = json {
                std::fs::write(&path, serde_json::to_string_pretty(&score)?)
                    .with_context(|| format!("writing {}", path.display()))?;
            }
        }
    }
    Ok(())
}
