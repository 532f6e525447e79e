//! The workstation side of `asg` (binary only): the embedded default bundle, analysing many files
//! in parallel with reports, writing JSON, overlays and per-study summaries, the demo, and the
//! report-check measurement.

use anyhow::Context;
use asg_dicom::ReadOptions;
use asg_plugin::{Analysis, ModelBundle, ReportCheck, Verdict};
use serde::Serialize;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

/// Loads `--model DIR` (a bundle folder) or `--model FILE.tar` (one archive), or the embedded
/// default bundle; `threshold` overrides every threshold.
pub fn load_bundle(model: Option<&Path>, threshold: Option<f32>) -> anyhow::Result<ModelBundle> {
    let mut bundle = match model {
        Some(file) if file.is_file() => ModelBundle::from_archive(file)?,
        Some(dir) => ModelBundle::from_dir(dir)?,
        None => ModelBundle::embedded()?,
    };
    if let Some(t) = threshold {
        anyhow::ensure!(
            (0.0..=1.0).contains(&t),
            "--threshold must be a probability in 0..=1, got {t}"
        );
        bundle.set_threshold(t);
    }
    Ok(bundle)
}

/// The files of `--model` (a folder's manifest and listed files, or a tar file's entries) or of
/// the embedded bundle, checked by loading them, for serving to the browser viewer.
pub fn bundle_files(model: Option<&Path>) -> anyhow::Result<Vec<(String, Vec<u8>)>> {
    let bundle = load_bundle(model, None)?;
    let m = &bundle.manifest;
    let mut names = vec![asg_bundle::MANIFEST_FILE.to_string()];
    names.extend(m.files.keys().cloned());
    match model {
        None => Ok(asg_plugin::EMBEDDED_BUNDLE
            .iter()
            .map(|(n, b)| (n.to_string(), b.to_vec()))
            .collect()),
        Some(dir) if dir.is_dir() => names
            .into_iter()
            .map(|n| {
                let p = dir.join(&n);
                std::fs::read(&p)
                    .with_context(|| format!("reading {}", p.display()))
                    .map(|b| (n, b))
            })
            .collect(),
        Some(file) => anyhow::bail!(
            "{}: serving a tar bundle is not supported; unpack it and pass the folder",
            file.display()
        ),
    }
}

/// Where reports are looked up for each image.
pub enum Reports {
    None,
    /// One report for every image.
    One(String),
    /// Reports by file name: `<image stem>.txt`, or `<study folder>.txt` (MIMIC-CXR's layout:
    /// `files/pNN/pNNNNNNNN/sNNNNNNNN.txt` beside the study folder `sNNNNNNNN/`).
    Folder(HashMap<String, PathBuf>),
}

impl Reports {
    /// Indexes the `.txt` files under `dir` by name.
    pub fn folder(dir: &Path) -> anyhow::Result<Self> {
        let mut map = HashMap::new();
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).with_context(|| format!("reading {}", d.display()))? {
                let p = e?.path();
                if p.is_dir() {
                    stack.push(p);
                } else if p.extension().is_some_and(|x| x.eq_ignore_ascii_case("txt")) {
                    if let Some(name) = p.file_name() {
                        map.entry(name.to_string_lossy().to_string()).or_insert(p);
                    }
                }
            }
        }
        Ok(Reports::Folder(map))
    }

    fn for_image(&self, image: &Path) -> anyhow::Result<Option<(String, String)>> {
        match self {
            Reports::None => Ok(None),
            Reports::One(text) => Ok(Some(("--report".into(), text.clone()))),
            Reports::Folder(map) => {
                let stem = image.file_stem().map(|s| s.to_string_lossy().to_string());
                let study = image
                    .parent()
                    .and_then(|p| p.file_name())
                    .map(|s| s.to_string_lossy().to_string());
                for key in [stem, study].into_iter().flatten() {
                    if let Some(p) = map.get(&format!("{key}.txt")) {
                        return Ok(Some((p.display().to_string(), crate::read_report(p)?)));
                    }
                }
                Ok(None)
            }
        }
    }
}

/// One image's result.
pub struct Outcome {
    pub file: PathBuf,
    pub analysis: Analysis,
    pub report_file: Option<String>,
    pub check: Option<ReportCheck>,
    pub overlay: Option<PathBuf>,
    /// The SOP Instance UID of the SR stored back in the PACS (`--dicomweb --store-sr`).
    pub stored_sr: Option<String>,
}

/// Output options (by default: only the analysis).
#[derive(Default)]
pub struct Outputs {
    pub overlay_dir: Option<PathBuf>,
    /// A DICOM SR (TID 1500) per image here.
    pub sr_dir: Option<PathBuf>,
    /// A FHIR R4 DiagnosticReport (JSON) per image here.
    pub fhir_dir: Option<PathBuf>,
    pub read: ReadOptions,
    /// Keep the raw model outputs in the outcome (and its JSON); by default they are dropped
    /// once the report check, SR and overlay are made (~150 KB per image held otherwise).
    pub raw_outputs: bool,
}

/// Today's date and time as DICOM DA and TM (UTC), and as an ISO instant for FHIR.
pub fn now() -> (String, String, String) {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    let (hh, mm, ss) = (rem / 3600, rem % 3600 / 60, rem % 60);
    (
        format!("{y:04}{m:02}{d:02}"),
        format!("{hh:02}{mm:02}{ss:02}"),
        format!("{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}Z"),
    )
}

fn output_stem(file: &Path) -> String {
    file.file_stem()
        .map(|s| s.to_string_lossy().to_string())
        .unwrap_or_else(|| "image".into())
}

/// Analyses one file (decode once: the same decoded image feeds the model and the overlay).
pub fn analyze_file(
    bundle: &ModelBundle,
    file: &Path,
    reports: &Reports,
    out: &Outputs,
) -> anyhow::Result<Outcome> {
    let name = file.display().to_string();
    let bytes = asg_dicom::read_capped(file, &name, &out.read)?;
    analyze_bytes(bundle, file, &bytes, reports, out)
}

/// Analyses one file's bytes (read from disk or retrieved from a PACS). `file` names it in
/// errors, finds its report and names its outputs (`<stem>.png`, `<stem>.sr.dcm`...).
pub fn analyze_bytes(
    bundle: &ModelBundle,
    file: &Path,
    bytes: &[u8],
    reports: &Reports,
    out: &Outputs,
) -> anyhow::Result<Outcome> {
    let name = file.display().to_string();
    if let Some(format) = asg_dicom::picture::picture_format(bytes) {
        anyhow::ensure!(
            out.sr_dir.is_none() && out.fhir_dir.is_none(),
            "a {} picture has no DICOM identity to reference: --sr and --fhir need a DICOM image",
            format.name()
        );
    }
    let (analysis, image) = bundle.analyze_input(bytes, &name, &out.read)?;

    let (report_file, check) = match reports.for_image(file)? {
        Some((path, text)) => (Some(path), Some(bundle.check_report(&analysis, &text)?)),
        None => (None, None),
    };
    if out.sr_dir.is_some() || out.fhir_dir.is_some() {
        let source = asg_dicom::sr::source_image(bytes, &name)?;
        let (date, time, instant) = now();
        if let Some(dir) = &out.sr_dir {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            let path = dir.join(format!("{}.sr.dcm", output_stem(file)));
            let report =
                asg_plugin::results::measurement_report(&analysis, source.clone(), (date, time));
            asg_dicom::sr::write_sr(&path, &report)?;
        }
        if let Some(dir) = &out.fhir_dir {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            let path = dir.join(format!("{}.fhir.json", output_stem(file)));
            let fhir = asg_plugin::results::fhir_report(&analysis, &source.patient_id, &instant);
            std::fs::write(&path, serde_json::to_string_pretty(&fhir)?)
                .with_context(|| format!("writing {}", path.display()))?;
        }
    }
    let overlay = match &out.overlay_dir {
        Some(dir) => {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            let path = dir.join(format!("{}.png", output_stem(file)));
            asg_plugin::overlay::render_overlay(&image, &analysis, check.as_ref(), None)
                .save(&path)
                .with_context(|| format!("writing {}", path.display()))?;
            Some(path)
        }
        None => None,
    };
    let mut analysis = analysis;
    if !out.raw_outputs {
        analysis.outputs = Vec::new();
    }
    Ok(Outcome {
        file: file.to_path_buf(),
        analysis,
        report_file,
        check,
        overlay,
        stored_sr: None,
    })
}

/// Runs `analyze_file` over `files` on `jobs` threads (at most `jobs` images decoded at once),
/// in input order; `tick` after each file.
pub fn analyze_all(
    bundle: &ModelBundle,
    files: &[PathBuf],
    reports: &Reports,
    out: &Outputs,
    jobs: usize,
    tick: &(dyn Fn() + Sync),
) -> Vec<anyhow::Result<Outcome>> {
    let next = AtomicUsize::new(0);
    let slots: Vec<Mutex<Option<anyhow::Result<Outcome>>>> =
        files.iter().map(|_| Mutex::new(None)).collect();
    std::thread::scope(|s| {
        for _ in 0..jobs.clamp(1, files.len().max(1)) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(file) = files.get(i) else { break };
                let r = analyze_file(bundle, file, reports, out);
                if let Ok(mut slot) = slots[i].lock() {
                    *slot = Some(r);
                }
                tick();
            });
        }
    });
    slots
        .into_iter()
        .zip(files)
        .map(|(m, f)| {
            m.into_inner()
                .ok()
                .flatten()
                .unwrap_or_else(|| Err(anyhow::anyhow!("{}: not analysed", f.display())))
        })
        .collect()
}

/// The JSON of one outcome: the analysis, its file, the report check, and the overlay's path.
pub fn outcome_json(o: &Outcome) -> anyhow::Result<serde_json::Value> {
    let report = match (&o.report_file, &o.check) {
        (Some(source), Some(check)) => Some(asg_plugin::batch::CheckedReport { source, check }),
        _ => None,
    };
    // `analyze_file` kept the raw outputs only when they were asked for.
    let mut v =
        asg_plugin::batch::result_json(&o.analysis, &o.file.display().to_string(), report, true)?;
    if let Some(p) = &o.overlay {
        v["overlay"] = serde_json::Value::String(p.display().to_string());
    }
    if let Some(uid) = &o.stored_sr {
        v["stored_sr"] = serde_json::Value::String(uid.clone());
    }
    Ok(v)
}

/// Groups outcomes by study.
pub fn summarise(outcomes: &[&Outcome]) -> Vec<asg_plugin::batch::StudySummary> {
    asg_plugin::batch::summarise(
        outcomes
            .iter()
            .map(|o| asg_plugin::batch::ImageDigest::of(&o.analysis, o.check.as_ref())),
    )
}

/// Prints an analysis and its report check for a person.
pub fn print_human(o: &Outcome) {
    let a = &o.analysis;
    println!("{}", o.file.display());
    println!(
        "  {}x{}  {}  model {} {}  {:.0} ms",
        a.image.width,
        a.image.height,
        a.image.view_position.as_deref().unwrap_or("view ?"),
        a.model.name,
        a.model.version,
        a.timings.total_ms
    );
    for w in &a.warnings {
        println!("  warning: {w}");
    }
    let mut present: Vec<_> = a.findings.iter().filter(|f| f.present).collect();
    present.sort_by(|x, y| y.probability.total_cmp(&x.probability));
    if present.is_empty() {
        println!("  findings: none above threshold");
    }
    for f in present {
        println!(
            "  finding {:<28} p={:.2}  regions: {}",
            f.name,
            f.probability,
            if f.regions.is_empty() {
                "-".to_string()
            } else {
                f.regions.join(", ")
            }
        );
    }
    if let Some(c) = &o.check {
        println!(
            "  report check ({}):",
            o.report_file.as_deref().unwrap_or("-")
        );
        for s in &c.sentences {
            if matches!(s.verdict, Verdict::NoClaim | Verdict::NotAssessed) {
                continue;
            }
            println!(
                "    [{:<19}] {}",
                format!("{:?}", s.verdict).to_lowercase(),
                s.text.split_whitespace().collect::<Vec<_>>().join(" ")
            );
            for t in &s.triplets {
                println!("        {}", t.explanation);
            }
        }
        for om in &c.omissions {
            println!(
                "    [omission           ] {} (p={:.2}) in {} is not in the report",
                om.finding,
                om.probability,
                if om.regions.is_empty() {
                    "the image".to_string()
                } else {
                    om.regions.join(", ")
                }
            );
        }
    }
    if let Some(p) = &o.overlay {
        println!("  overlay: {}", p.display());
    }
}

/// Per error type: how the report check fares on phantom reports with one injected error.
#[derive(Debug, Default, Serialize)]
pub struct CheckScore {
    /// Injected errors of this type.
    pub injected: usize,
    /// Injected errors flagged with the matching verdict on the matching finding.
    pub detected: usize,
    /// Flags of this type raised (on erroneous and on clean reports).
    pub flagged: usize,
    /// Flags of this type that point at an injected error.
    pub correct_flags: usize,
}

/// The verdict kind that catches each injected error type.
pub fn expected_flag(kind: &str) -> Option<&'static str> {
    Some(match kind {
        "side_swapped" => "laterality_mismatch",
        "finding_omitted" => "omission",
        "negation_flipped" => "contradicted",
        "finding_invented" => "unsupported",
        _ => return None,
    })
}

/// The flags a report check raises: (kind, finding).
pub fn flags(check: &ReportCheck) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    for s in &check.sentences {
        for t in &s.triplets {
            let kind = match t.verdict {
                Verdict::Contradicted => "contradicted",
                Verdict::LateralityMismatch => "laterality_mismatch",
                Verdict::Unsupported => "unsupported",
                _ => continue,
            };
            if !out.contains(&(kind, t.finding.clone())) {
                out.push((kind, t.finding.clone()));
            }
        }
    }
    for o in &check.omissions {
        out.push(("omission", o.finding.clone()));
    }
    out
}
