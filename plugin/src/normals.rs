//! `asg check-normals`: what a user's normal films get. The films read as normal in a realcxr
//! folder (JSRT's non-nodule class, ieee8023 "No Finding"), analysed as the workstation
//! analyses them, with a correct normal report checked against each: the share with nothing
//! flagged, and the share whose normal report is left unaccused (no "contradicted", no
//! "laterality mismatch", no omission).

use crate::workstation::{analyze_all, Outputs, Reports};
use anyhow::Context;
use asg_phantom::set::split_of_group;
use asg_phantom::write::SplitName;
use asg_plugin::ModelBundle;
use asg_plugin::Verdict;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The normal report checked against every normal film.
pub const NORMAL_REPORT: &str = "FINDINGS: The heart size is normal. The lungs are clear. \
No pleural effusion or pneumothorax.\nIMPRESSION: No acute cardiopulmonary abnormality.";

/// The largest `index.jsonl` read.
const MAX_INDEX_BYTES: u64 = 64 << 20;

/// What the normal films got.
#[derive(Debug, Default, serde::Serialize)]
pub struct NormalsScore {
    pub films: usize,
    pub failed: usize,
    /// Films with no finding present (what the viewer, the overlay, the SR, FHIR and the study
    /// summary would flag).
    pub clean: usize,
    /// Films with no finding present in any region either (the JSON's region lists).
    pub clean_in_every_region: usize,
    /// Films whose normal report drew no accusation.
    pub unaccused: usize,
    /// Findings present on normal films, and how often.
    pub flagged_findings: BTreeMap<String, usize>,
    /// Findings behind accusations of the normal report, and how often.
    pub accusing_findings: BTreeMap<String, usize>,
    /// Films per source.
    pub by_source: BTreeMap<String, usize>,
}

/// The normal films of a realcxr folder in `split` (None: all): (image path, source). The split
/// is the trainer's ([`asg_phantom::set::split_of_group`] of the film's `patient_group`), so
/// that a model trained on the folder is measured on films it did not see.
pub fn normal_films(
    root: &Path,
    split: Option<SplitName>,
) -> anyhow::Result<Vec<(PathBuf, String)>> {
    let path = root.join("index.jsonl");
    let meta = std::fs::metadata(&path).with_context(|| format!("reading {}", path.display()))?;
    anyhow::ensure!(
        meta.len() <= MAX_INDEX_BYTES,
        "{}: larger than {MAX_INDEX_BYTES} bytes",
        path.display()
    );
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let mut out = Vec::new();
    for (n, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let v: serde_json::Value = serde_json::from_str(line)
            .with_context(|| format!("{}:{}: not JSON", path.display(), n + 1))?;
        let field = |k: &str| v.get(k).and_then(|x| x.as_str()).unwrap_or("");
        let normal = matches!(
            (field("source"), field("finding")),
            ("jsrt", "normal") | ("ieee8023", "No Finding")
        );
        let image = field("image");
        let group = match field("patient_group") {
            "" => field("patient"),
            g => g,
        };
        let in_split = split.is_none_or(|s| split_of_group(group) == s);
        if normal && in_split && !image.is_empty() && !image.contains("..") {
            out.push((root.join(image), field("source").to_string()));
        }
    }
    Ok(out)
}

/// Analyses `films` (from [`normal_films`]) with the normal report.
pub fn check_normals(
    bundle: &ModelBundle,
    films: &[(PathBuf, String)],
    jobs: usize,
    tick: &(dyn Fn() + Sync),
) -> anyhow::Result<NormalsScore> {
    let files: Vec<PathBuf> = films.iter().map(|(p, _)| p.clone()).collect();
    let results = analyze_all(
        bundle,
        &files,
        &Reports::One(NORMAL_REPORT.to_string()),
        &Outputs::default(),
        jobs,
        tick,
    );
    let mut s = NormalsScore::default();
    for ((_, source), r) in films.iter().zip(results) {
        *s.by_source.entry(source.clone()).or_default() += 1;
        s.films += 1;
        let Ok(o) = r else {
            s.failed += 1;
            continue;
        };
        let present: Vec<&str> = o
            .analysis
            .findings
            .iter()
            .filter(|f| f.present)
            .map(|f| f.name.as_str())
            .collect();
        if present.is_empty() {
            s.clean += 1;
        }
        if o.analysis.flagged_in_regions_too().is_empty() {
            s.clean_in_every_region += 1;
        }
        for f in present {
            *s.flagged_findings.entry(f.to_string()).or_default() += 1;
        }
        let Some(check) = o.check else { continue };
        let mut accusing: Vec<String> = check
            .sentences
            .iter()
            .flat_map(|x| &x.triplets)
            .filter(|t| {
                matches!(
                    t.verdict,
                    Verdict::Contradicted | Verdict::LateralityMismatch
                )
            })
            .map(|t| t.finding.clone())
            .collect();
        accusing.extend(check.omissions.iter().map(|o| o.finding.clone()));
        if accusing.is_empty() {
            s.unaccused += 1;
        }
        accusing.sort();
        accusing.dedup();
        for f in accusing {
            *s.accusing_findings.entry(f).or_default() += 1;
        }
    }
    Ok(s)
}

fn share(a: usize, b: usize) -> String {
    if b == 0 {
        "—".into()
    } else {
        format!("{:.3}", a as f64 / b as f64)
    }
}

fn top(m: &BTreeMap<String, usize>) -> String {
    let mut v: Vec<(&String, &usize)> = m.iter().collect();
    v.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    let list: Vec<String> = v.iter().take(6).map(|(k, n)| format!("{k} {n}")).collect();
    if list.is_empty() {
        "none".into()
    } else {
        list.join(", ")
    }
}

impl std::fmt::Display for NormalsScore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let sources: Vec<String> = self
            .by_source
            .iter()
            .map(|(k, n)| format!("{k} {n}"))
            .collect();
        writeln!(
            f,
            "{} normal films ({}); {} failed to analyse.\n",
            self.films,
            sources.join(", "),
            self.failed
        )?;
        writeln!(f, "| measure | share | films |\n|---|---|---|")?;
        writeln!(
            f,
            "| nothing flagged | {} | {} of {} |",
            share(self.clean, self.films),
            self.clean,
            self.films
        )?;
        writeln!(
            f,
            "| nothing flagged in any region either | {} | {} of {} |",
            share(self.clean_in_every_region, self.films),
            self.clean_in_every_region,
            self.films
        )?;
        writeln!(
            f,
            "| a correct normal report left unaccused | {} | {} of {} |",
            share(self.unaccused, self.films),
            self.unaccused,
            self.films
        )?;
        writeln!(
            f,
            "\nFlagged on normal films: {}.",
            top(&self.flagged_findings)
        )?;
        writeln!(
            f,
            "Behind the accusations: {}.",
            top(&self.accusing_findings)
        )
    }
}
