//! What batch callers (the CLI, the Python package, the Ray example) write per image and per
//! study: the analysis JSON with its file and report check, and study summaries.

use crate::{Analysis, ReportCheck};
use serde::Serialize;
use std::collections::BTreeMap;
#[cfg(not(target_arch = "wasm32"))]
use std::path::{Path, PathBuf};

/// Where a report checked against an image came from, and the check.
#[derive(Debug, Clone, Copy)]
pub struct CheckedReport<'a> {
    /// The report's file, or how it was given (`--report`).
    pub source: &'a str,
    pub check: &'a ReportCheck,
}

/// The JSON of one image's result, as `asg analyze` writes it: the analysis, with `file` (the
/// input as named), and with a report, `report_file` and `report_check`; the raw model outputs
/// only when `raw_outputs` is set.
pub fn result_json(
    analysis: &Analysis,
    file: &str,
    report: Option<CheckedReport<'_>>,
    raw_outputs: bool,
) -> Result<serde_json::Value, serde_json::Error> {
    let mut v = if raw_outputs {
        serde_json::to_value(analysis)?
    } else {
        serde_json::to_value(analysis.without_outputs())?
    };
    v["file"] = serde_json::Value::String(file.to_string());
    if let Some(r) = report {
        v["report_file"] = serde_json::Value::String(r.source.to_string());
        v["report_check"] = serde_json::to_value(r.check)?;
    }
    Ok(v)
}

/// What a study's images say together.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StudySummary {
    pub study_instance_uid: String,
    pub images: usize,
    /// Findings present in any image, with the highest probability.
    pub findings: BTreeMap<String, f32>,
    /// Report-check verdict counts over its images.
    pub report_check: BTreeMap<String, usize>,
    pub warnings: Vec<String>,
}

/// What a study summary needs of one image's result (so that workers far from the summary can
/// send this instead of the whole analysis). Its JSON has the analysis JSON's shape, trimmed:
/// `image.study_instance_uid`, the present `findings` (name, probability, present), `warnings`
/// and `report_check.counts`; the full analysis JSON reads as a digest too.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct ImageDigest {
    pub image: DigestImage,
    /// The present findings (others are read and ignored).
    pub findings: Vec<DigestFinding>,
    pub warnings: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report_check: Option<DigestCheck>,
}

/// [`ImageDigest`]'s image.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct DigestImage {
    #[serde(default)]
    pub study_instance_uid: String,
}

/// [`ImageDigest`]'s finding.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct DigestFinding {
    pub name: String,
    pub probability: f32,
    pub present: bool,
}

/// [`ImageDigest`]'s report check.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct DigestCheck {
    pub counts: BTreeMap<String, usize>,
}

impl ImageDigest {
    /// The digest of an analysis and its report check.
    pub fn of(analysis: &Analysis, check: Option<&ReportCheck>) -> Self {
        Self {
            image: DigestImage {
                study_instance_uid: analysis.image.study_instance_uid.clone(),
            },
            findings: analysis
                .findings
                .iter()
                .filter(|f| f.present)
                .map(|f| DigestFinding {
                    name: f.name.clone(),
                    probability: f.probability,
                    present: true,
                })
                .collect(),
            warnings: analysis.warnings.clone(),
            report_check: check.map(|c| DigestCheck {
                counts: c.counts.clone(),
            }),
        }
    }
}

/// Groups image results (in input order) by study, ordered by Study Instance UID.
pub fn summarise(digests: impl IntoIterator<Item = ImageDigest>) -> Vec<StudySummary> {
    let mut by: BTreeMap<String, StudySummary> = BTreeMap::new();
    for d in digests {
        let uid = d.image.study_instance_uid;
        let s = by.entry(uid.clone()).or_insert_with(|| StudySummary {
            study_instance_uid: uid,
            images: 0,
            findings: BTreeMap::new(),
            report_check: BTreeMap::new(),
            warnings: Vec::new(),
        });
        s.images += 1;
        for f in d.findings.iter().filter(|f| f.present) {
            let e = s.findings.entry(f.name.clone()).or_insert(0.0);
            *e = e.max(f.probability);
        }
        if let Some(c) = &d.report_check {
            for (k, v) in &c.counts {
                *s.report_check.entry(k.clone()).or_insert(0) += v;
            }
        }
        for w in d.warnings {
            if !s.warnings.contains(&w) {
                s.warnings.push(w);
            }
        }
    }
    by.into_values().collect()
}

/// Output file names for results in input order: `<stem>.json`, and `<stem>-2.json`,
/// `<stem>-3.json`... for later inputs with the same stem (as `asg analyze --json DIR` names them).
pub fn json_names<'a>(stems: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let mut used = std::collections::HashSet::new();
    stems
        .into_iter()
        .map(|stem| {
            let mut name = format!("{stem}.json");
            let mut k = 1;
            while !used.insert(name.clone()) {
                k += 1;
                name = format!("{stem}-{k}.json");
            }
            name
        })
        .collect()
}

/// Inside folders, the files taken as DICOM: a .dcm/.dicom/.dic name, no extension (as archives
/// often name them), or the "DICM" mark at byte 128. Reports, JSON, CSV and pictures beside the
/// images are passed over; a file named by the caller is always read.
#[cfg(not(target_arch = "wasm32"))]
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

/// A .png, .jpg or .jpeg name.
#[cfg(not(target_arch = "wasm32"))]
fn is_picture_name(path: &Path) -> bool {
    path.extension().is_some_and(|x| {
        let x = x.to_string_lossy().to_ascii_lowercase();
        matches!(x.as_str(), "png" | "jpg" | "jpeg")
    })
}

#[cfg(not(target_arch = "wasm32"))]
fn is_dicomdir(path: &Path) -> bool {
    path.file_name()
        .is_some_and(|n| n.to_string_lossy().eq_ignore_ascii_case("DICOMDIR"))
}

/// The inputs `asg analyze` takes, in its order: a file named is taken as it is, a folder is
/// walked recursively in name order (hidden entries and a DICOMDIR inside it passed over, DICOM
/// files by [`looks_like_dicom`]'s rule, pictures too with `pictures`), and a DICOMDIR named is
/// expanded into the files its records refer to.
#[cfg(not(target_arch = "wasm32"))]
pub fn collect_files(
    input: &Path,
    out: &mut Vec<PathBuf>,
    pictures: bool,
) -> Result<(), crate::PluginError> {
    if input.is_file() && is_dicomdir(input) {
        out.extend(asg_dicom::index::dicomdir_files(input)?);
        return Ok(());
    }
    if input.is_dir() {
        let io = |source| crate::PluginError::Io {
            path: format!("reading folder {}", input.display()),
            source,
        };
        let mut entries: Vec<PathBuf> = std::fs::read_dir(input)
            .map_err(io)?
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
                collect_files(&e, out, pictures)?;
            } else if (looks_like_dicom(&e) || pictures && is_picture_name(&e)) && !is_dicomdir(&e)
            {
                out.push(e);
            }
        }
    } else {
        out.push(input.to_path_buf());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(
        study: &str,
        present: &[(&str, f32)],
        warnings: &[&str],
        counts: Option<&[(&str, usize)]>,
    ) -> ImageDigest {
        ImageDigest {
            image: DigestImage {
                study_instance_uid: study.into(),
            },
            findings: present
                .iter()
                .map(|&(name, probability)| DigestFinding {
                    name: name.into(),
                    probability,
                    present: true,
                })
                .collect(),
            warnings: warnings.iter().map(|w| w.to_string()).collect(),
            report_check: counts.map(|c| DigestCheck {
                counts: c.iter().map(|&(k, v)| (k.to_string(), v)).collect(),
            }),
        }
    }

    #[test]
    fn studies_take_the_highest_probability_and_add_up_the_counts() {
        let studies = summarise([
            digest(
                "2",
                &[("effusion", 0.7)],
                &["lateral"],
                Some(&[("supported", 2)]),
            ),
            digest("1", &[], &[], None),
            digest(
                "2",
                &[("effusion", 0.9), ("edema", 0.6)],
                &["lateral", "no spacing"],
                Some(&[("supported", 1), ("omission", 1)]),
            ),
        ]);
        assert_eq!(studies.len(), 2);
        assert_eq!(studies[0].study_instance_uid, "1");
        assert_eq!(studies[0].images, 1);
        assert!(studies[0].findings.is_empty());
        let s = &studies[1];
        assert_eq!(s.images, 2);
        assert_eq!(s.findings["effusion"], 0.9);
        assert_eq!(s.findings["edema"], 0.6);
        assert_eq!(s.report_check["supported"], 3);
        assert_eq!(s.report_check["omission"], 1);
        assert_eq!(s.warnings, ["lateral", "no spacing"]);
    }

    #[test]
    fn a_digest_ignores_what_it_does_not_need_and_absent_findings() {
        let json = serde_json::json!({
            "image": {"study_instance_uid": "9", "width": 10},
            "findings": [
                {"name": "a", "probability": 0.2, "present": false, "logit": -1.0},
                {"name": "b", "probability": 0.8, "present": true}
            ],
            "warnings": [],
            "report_check": {"counts": {"supported": 1}, "sentences": []}
        });
        let d: ImageDigest = serde_json::from_value(json).unwrap();
        let s = summarise([d]);
        assert_eq!(s[0].findings.keys().collect::<Vec<_>>(), ["b"]);
        assert_eq!(s[0].report_check["supported"], 1);
    }

    #[test]
    fn repeated_stems_are_numbered_in_input_order() {
        let names = json_names(["a", "b", "a", "a", "a-2"]);
        assert_eq!(
            names,
            ["a.json", "b.json", "a-2.json", "a-3.json", "a-2-2.json"]
        );
    }
}
