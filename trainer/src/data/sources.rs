//! Several data sets trained on together, each with a weight: the Chest ImaGenome + MIMIC-CXR
//! layout (phantoms too) or the realcxr layout (real films with expert labels), told apart by
//! the realcxr `index.jsonl`.

use crate::data::error::DataError;
use crate::data::imagenome::{self, Dataset, ScanStats};
use crate::data::realcxr;
use std::path::{Path, PathBuf};

/// One data set and how many times its training records count.
#[derive(Debug, Clone, PartialEq)]
pub struct Source {
    pub path: PathBuf,
    pub weight: u32,
}

impl Source {
    /// A source of weight 1.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            weight: 1,
        }
    }

    /// `PATH` or `PATH:WEIGHT` (a whole number from 1 to 100).
    pub fn parse(spec: &str) -> Result<Self, String> {
        if let Some((path, w)) = spec.rsplit_once(':') {
            if let Ok(weight) = w.parse::<u32>() {
                if !(1..=100).contains(&weight) {
                    return Err(format!("{spec}: the weight must be 1 to 100"));
                }
                return Ok(Self {
                    path: path.into(),
                    weight,
                });
            }
        }
        Ok(Self::new(spec))
    }
}

/// Whether `root` is in the realcxr layout.
pub fn is_realcxr(root: &Path) -> bool {
    root.join("index.jsonl").is_file()
}

/// Scans one data set in whichever layout it has.
pub fn scan_any(root: &Path) -> Result<Dataset, DataError> {
    if is_realcxr(root) {
        realcxr::scan(root)
    } else {
        imagenome::scan(root)
    }
}

fn add(a: &mut ScanStats, b: &ScanStats) {
    a.scene_graphs += b.scene_graphs;
    a.records += b.records;
    a.missing_image += b.missing_image;
    a.missing_report += b.missing_report;
    a.not_in_split += b.not_in_split;
    a.boxes += b.boxes;
    a.boxes_negative += b.boxes_negative;
    a.boxes_zero_area += b.boxes_zero_area;
    a.boxes_not_finite += b.boxes_not_finite;
    a.unknown_regions += b.unknown_regions;
    a.boxes_outside_image += b.boxes_outside_image;
}

/// Scans every source and joins them (records keep their source's weight).
pub fn scan_sources(sources: &[Source]) -> Result<Dataset, DataError> {
    let first = sources.first().ok_or_else(|| DataError::Layout {
        path: "--data".into(),
        reason: "no data set given".into(),
    })?;
    let mut all = Dataset {
        root: first.path.clone(),
        records: Vec::new(),
        stats: ScanStats::default(),
    };
    for s in sources {
        let mut d = scan_any(&s.path)?;
        for r in &mut d.records {
            r.weight = s.weight;
        }
        add(&mut all.stats, &d.stats);
        all.records.extend(d.records);
    }
    Ok(all)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse_with_and_without_a_weight() {
        assert_eq!(Source::parse("phantoms").unwrap(), Source::new("phantoms"));
        assert_eq!(
            Source::parse("../shared/realcxr:3").unwrap(),
            Source {
                path: "../shared/realcxr".into(),
                weight: 3
            }
        );
        assert_eq!(Source::parse("a:b").unwrap(), Source::new("a:b"));
        assert!(Source::parse("x:0").is_err());
        assert!(scan_sources(&[]).is_err());
    }
}
