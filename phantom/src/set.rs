//! A whole data set: studies generated in parallel (each from the seed and its index alone, so
//! the files do not depend on the thread count), split into train / validate / test, optionally
//! with reports carrying injected errors, and the index files.

use crate::report::{inject, write_report_with, ErrorKind, InjectedError};
use crate::write::{image_tags, write_atomic_text, PhantomError, SplitName};
use crate::{generate, image_seed, Options};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// What to write.
#[derive(Debug, Clone)]
pub struct SetOptions {
    pub n: u64,
    pub seed: u64,
    pub image: Options,
    /// Shares of train, validate and test (normalised).
    pub split: [f64; 3],
    /// Also write a report with one injected error per study where one can be made.
    pub errors: bool,
    /// Worker threads (0: all cores).
    pub threads: usize,
}

/// What was written.
#[derive(Debug, Clone, Default)]
pub struct SetSummary {
    pub studies: u64,
    pub per_split: [u64; 3],
    pub normal: u64,
    pub errors: u64,
    /// Studies per image tag.
    pub tag_counts: std::collections::BTreeMap<String, u64>,
}

/// The split of study `index`: a seeded draw, so it does not depend on the order of writing.
pub fn split_of(seed: u64, index: u64, shares: [f64; 3]) -> SplitName {
    let total: f64 = shares.iter().sum::<f64>().max(1e-12);
    let u = (image_seed(seed ^ 0x5EED_5917, index) >> 11) as f64 / (1u64 << 53) as f64;
    if u < shares[0] / total {
        SplitName::Train
    } else if u < (shares[0] + shares[1]) / total {
        SplitName::Validate
    } else {
        SplitName::Test
    }
}

/// The split of a named patient group (the realcxr layout's `patient_group`): a fixed hash of
/// the name (FNV-1a 64) taken modulo 100, 0..70 train, 70..85 validate, 85..100 test, so that
/// no patient's films cross splits and the split never depends on which films a set holds. The
/// trainer splits real films by it and `asg check-normals` measures on its test split.
pub fn split_of_group(group: &str) -> SplitName {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in group.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    match h % 100 {
        0..=69 => SplitName::Train,
        70..=84 => SplitName::Validate,
        _ => SplitName::Test,
    }
}

struct Row {
    image_id: String,
    study_id: u64,
    subject_id: u64,
    split: SplitName,
    normal: bool,
    tags: Vec<String>,
    error: Option<InjectedError>,
}

/// Writes the set under `out`; `progress` is called once per finished study (from any thread).
pub fn write_set(
    out: &Path,
    options: &SetOptions,
    progress: &(dyn Fn() + Sync),
) -> Result<SetSummary, PhantomError> {
    let threads = if options.threads == 0 {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    } else {
        options.threads
    };
    let next = AtomicU64::new(0);
    let rows: Mutex<Vec<Option<Row>>> = Mutex::new((0..options.n).map(|_| None).collect());
    let failure: Mutex<Option<PhantomError>> = Mutex::new(None);
    std::thread::scope(|scope| {
        for _ in 0..threads.max(1) {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= options.n || failure.lock().map(|f| f.is_some()).unwrap_or(true) {
                    break;
                }
                match one(out, options, i) {
                    Ok(row) => {
                        if let Ok(mut rows) = rows.lock() {
                            rows[i as usize] = Some(row);
                        }
                        progress();
                    }
                    Err(e) => {
                        if let Ok(mut f) = failure.lock() {
                            f.get_or_insert(e);
                        }
                        break;
                    }
                }
            });
        }
    });
    if let Some(e) = failure.into_inner().ok().flatten() {
        return Err(e);
    }
    let rows: Vec<Row> = rows
        .into_inner()
        .unwrap_or_default()
        .into_iter()
        .flatten()
        .collect();
    let mut summary = SetSummary::default();
    let mut split_csv = String::from("dicom_id,study_id,subject_id,split\n");
    let mut errors_csv = String::from("dicom_id,study_id,kind,finding,side\n");
    for r in &rows {
        summary.studies += 1;
        summary.per_split[r.split as usize] += 1;
        summary.normal += r.normal as u64;
        for t in &r.tags {
            *summary.tag_counts.entry(t.clone()).or_default() += 1;
        }
        split_csv.push_str(&format!(
            "{},{},{},{}\n",
            r.image_id,
            r.study_id,
            r.subject_id,
            r.split.name()
        ));
        if let Some(e) = &r.error {
            summary.errors += 1;
            let kind = serde_json::to_value(e.kind)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default();
            errors_csv.push_str(&format!(
                "{},{},{kind},{},{}\n",
                r.image_id,
                r.study_id,
                e.finding,
                e.side.map_or("", |s| s.name())
            ));
        }
    }
    write_atomic_text(&out.join("mimic-cxr-2.0.0-split.csv"), &split_csv)?;
    if options.errors {
        write_atomic_text(&out.join("report_errors.csv"), &errors_csv)?;
    }
    let manifest = serde_json::json!({
        "generator": "asg-phantom",
        "version": env!("CARGO_PKG_VERSION"),
        "seed": options.seed,
        "n": options.n,
        "size": options.image.size,
        "normal_share": options.image.normal_share,
        "vary_format": options.image.vary_format,
        "split": options.split,
        "studies_per_split": {"train": summary.per_split[0], "validate": summary.per_split[1], "test": summary.per_split[2]},
        "normal_studies": summary.normal,
        "studies_per_tag": summary.tag_counts,
        "reports_with_errors": summary.errors,
    });
    write_atomic_text(&out.join("phantom_set.json"), &manifest.to_string())?;
    Ok(summary)
}

fn one(out: &Path, options: &SetOptions, index: u64) -> Result<Row, PhantomError> {
    let study = generate(options.seed, index, &options.image);
    let split = split_of(options.seed, index, options.split);
    let written = crate::write_study(out, &study, split)?;
    let mut error = None;
    if options.errors {
        let mut rng = ChaCha8Rng::seed_from_u64(image_seed(options.seed ^ 0xE440, index));
        let kinds = [
            ErrorKind::SideSwapped,
            ErrorKind::FindingOmitted,
            ErrorKind::NegationFlipped,
            ErrorKind::FindingInvented,
        ];
        let first = (index % 4) as usize;
        for k in 0..4 {
            let kind = kinds[(first + k) % 4];
            if let Some((changed, injected)) =
                inject(&mut rng, &study.anatomy, &study.findings, kind)
            {
                let silent: Vec<&str> = if kind == ErrorKind::FindingOmitted {
                    vec![injected.finding.as_str()]
                } else {
                    vec![]
                };
                let report = write_report_with(
                    &mut ChaCha8Rng::seed_from_u64(study.report_seed),
                    &study.anatomy,
                    &changed,
                    &silent,
                );
                let path = written
                    .report
                    .with_file_name(format!("s{}_with_error.txt", study.study_id));
                write_atomic_text(&path, &report.text)?;
                error = Some(injected);
                break;
            }
        }
    }
    Ok(Row {
        image_id: study.image_id.clone(),
        study_id: study.study_id,
        subject_id: study.subject_id,
        split,
        normal: study.findings.is_normal(),
        tags: image_tags(&study),
        error,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patient_groups_split_by_a_fixed_hash() {
        // FNV-1a 64 modulo 100, computed by hand (Python): jsrt:a 85, jsrt:b 52, g4 74.
        assert_eq!(split_of_group("jsrt:a"), SplitName::Test);
        assert_eq!(split_of_group("jsrt:b"), SplitName::Train);
        assert_eq!(split_of_group("g4"), SplitName::Validate);
        let n = 2000;
        let test = (0..n)
            .filter(|i| split_of_group(&format!("group{i}")) == SplitName::Test)
            .count();
        assert!((200..400).contains(&test), "{test} of {n} in test");
    }
}
