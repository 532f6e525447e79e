//! Files -> studies -> series -> instances, by their UIDs (sorted), from the headers alone; what is
//! not an image (structured reports, presentation states, unreadable files) is listed with the
//! reason, not dropped silently.

use crate::read::{read_meta_bytes, ReadOptions};
use crate::DicomErrorKind;
use serde::Serialize;
use std::path::{Path, PathBuf};

/// One image instance.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Instance {
    pub path: PathBuf,
    pub sop_instance_uid: String,
    pub sop_class_uid: String,
    pub rows: u32,
    pub columns: u32,
    pub frames: u32,
    pub modality: Option<String>,
    pub view_position: Option<String>,
}

/// A series and its instances.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Series {
    pub series_instance_uid: String,
    pub instances: Vec<Instance>,
}

/// A study and its series.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Study {
    pub study_instance_uid: String,
    pub series: Vec<Series>,
}

/// A file that is not an image we can read, and why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Skipped {
    pub path: PathBuf,
    pub reason: String,
    /// True for DICOM objects without pixel data (SR, PR, KOS...).
    pub not_an_image: bool,
}

/// The grouped archive.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Index {
    pub studies: Vec<Study>,
    pub skipped: Vec<Skipped>,
}

/// Reads the headers of `files` and groups the images into studies and series (both sorted by
/// UID, instances by SOP Instance UID then path). A file read fails only into `skipped`.
pub fn index(files: &[PathBuf], options: &ReadOptions) -> Index {
    let mut out = Index::default();
    let mut all: Vec<(String, String, Instance)> = Vec::new();
    for path in files {
        let name = path.display().to_string();
        let read = read_header(path, &name, options);
        match read {
            Ok(meta) => all.push((
                meta.study_instance_uid.clone(),
                meta.series_instance_uid.clone(),
                Instance {
                    path: path.clone(),
                    sop_instance_uid: meta.sop_instance_uid,
                    sop_class_uid: meta.sop_class_uid,
                    rows: meta.rows,
                    columns: meta.columns,
                    frames: meta.frames,
                    modality: meta.modality,
                    view_position: meta.view_position,
                },
            )),
            Err(e) => out.skipped.push(Skipped {
                path: path.clone(),
                not_an_image: matches!(e.kind, DicomErrorKind::NotAnImage { .. }),
                reason: e.to_string(),
            }),
        }
    }
    all.sort_by(|a, b| {
        (&a.0, &a.1, &a.2.sop_instance_uid, &a.2.path).cmp(&(
            &b.0,
            &b.1,
            &b.2.sop_instance_uid,
            &b.2.path,
        ))
    });
    for (study, series, inst) in all {
        if out
            .studies
            .last()
            .is_none_or(|s| s.study_instance_uid != study)
        {
            out.studies.push(Study {
                study_instance_uid: study.clone(),
                series: Vec::new(),
            });
        }
        let st = out.studies.last_mut().expect("pushed above");
        if st
            .series
            .last()
            .is_none_or(|s| s.series_instance_uid != series)
        {
            st.series.push(Series {
                series_instance_uid: series.clone(),
                instances: Vec::new(),
            });
        }
        st.series
            .last_mut()
            .expect("pushed above")
            .instances
            .push(inst);
    }
    out
}

fn read_header(
    path: &Path,
    name: &str,
    options: &ReadOptions,
) -> Result<crate::ImageMeta, crate::DicomError> {
    let bytes = crate::read::read_capped(path, name, options)?;
    read_meta_bytes(&bytes, name, options)
}

/// Media Storage Directory Storage: the SOP class of a DICOMDIR.
pub const SOP_CLASS_DICOMDIR: &str = "1.2.840.10008.1.3.10";

/// The files a DICOMDIR refers to (Referenced File ID of every directory record), as paths below
/// the DICOMDIR's folder, in record order without repeats. A component that would leave that
/// folder (`..`, absolute, empty) is an error naming the record.
pub fn dicomdir_files(path: &Path) -> Result<Vec<PathBuf>, crate::DicomError> {
    use dicom_dictionary_std::tags;
    let name = path.display().to_string();
    let err = |reason: String| {
        crate::DicomError::new(
            &name,
            DicomErrorKind::InvalidElement {
                name: "Directory Record Sequence",
                tag: "(0004,1220)".into(),
                reason,
            },
        )
    };
    // Through the same size cap, length pre-walk and value length limit as images.
    let options = crate::ReadOptions::default();
    let bytes = crate::read::read_capped(path, &name, &options)?;
    let obj = crate::read::parse_object(&bytes, &name, &options)?;
    let base = path.parent().unwrap_or(Path::new("."));
    let mut out: Vec<PathBuf> = Vec::new();
    let Some(records) = obj
        .element_opt(tags::DIRECTORY_RECORD_SEQUENCE)
        .ok()
        .flatten()
        .and_then(|e| e.items().map(|i| i.to_vec()))
    else {
        return Err(err("missing: not a DICOMDIR".into()));
    };
    for (k, record) in records.iter().enumerate() {
        let Some(id) = record.element_opt(tags::REFERENCED_FILE_ID).ok().flatten() else {
            continue;
        };
        let parts: Vec<String> = id
            .value()
            .to_multi_str()
            .map(|v| v.iter().map(|s| s.trim().to_string()).collect())
            .map_err(|e| err(format!("record {k}: Referenced File ID: {e}")))?;
        let mut p = base.to_path_buf();
        for part in &parts {
            if part.is_empty()
                || part == ".."
                || part == "."
                || part.contains('/')
                || part.contains('\\')
            {
                return Err(err(format!(
                    "record {k}: Referenced File ID component {part:?} would leave the DICOMDIR's folder"
                )));
            }
            p.push(part);
        }
        if !out.contains(&p) {
            out.push(p);
        }
    }
    Ok(out)
}
