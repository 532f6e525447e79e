//! `asg_cxr`: the asg chest X-ray analysis for Python (pyo3, abi3). A thin face over asg-plugin,
//! asg-report and asg-dicom: the same analysis JSON as `asg analyze`, as Python dicts; typed Rust
//! errors as Python exceptions; the GIL released while decoding and running the model.

use asg_dicom::{DicomError as RustDicomError, DicomErrorKind, ReadOptions};
use asg_plugin::batch::{result_json, CheckedReport, ImageDigest};
use asg_plugin::{Analysis, ModelBundle, PluginError};
use numpy::{IntoPyArray, PyArray2};
use pyo3::exceptions::{PyFileNotFoundError, PyOSError, PyPermissionError, PyValueError};
use pyo3::prelude::*;
use std::path::PathBuf;

pyo3::create_exception!(
    asg_cxr,
    AsgError,
    pyo3::exceptions::PyException,
    "Base class of the errors asg_cxr raises (besides OSError for files that cannot be read)."
);
pyo3::create_exception!(
    asg_cxr,
    DicomError,
    AsgError,
    "A DICOM file (or PNG/JPEG picture) that cannot be read or decoded: `source` names it, `kind` says why (e.g. 'not_dicom', 'too_large', 'unsupported_transfer_syntax')."
);
pyo3::create_exception!(
    asg_cxr,
    BundleError,
    AsgError,
    "A model bundle that cannot be loaded: a missing or altered file, a manifest that does not match its ONNX models."
);
pyo3::create_exception!(
    asg_cxr,
    NotARadiographError,
    AsgError,
    "An image of a modality the chest X-ray model does not read (CT, MR, ultrasound...: anything but CR, DX, DR, RG, OT or none): `source` names it, `modality` says which. An archive's other series are skipped on it."
);
pyo3::create_exception!(
    asg_cxr,
    NotAChestError,
    NotARadiographError,
    "A radiograph whose Body Part Examined (0018,0015) is not the chest (HAND, KNEE, ABDOMEN...): `source` names it, `body_part` says which. A NotARadiographError too, so an archive's loop skips it as it skips other modalities."
);
pyo3::create_exception!(
    asg_cxr,
    AnalysisError,
    AsgError,
    "An analysis dict that is not one asg_cxr made (check_report, summarise)."
);

/// Reports are capped as the CLI caps them (16 MiB).
const MAX_REPORT_BYTES: usize = 16 << 20;

fn kind_name(kind: &DicomErrorKind) -> &'static str {
    match kind {
        DicomErrorKind::Io(_) => "io",
        DicomErrorKind::NotDicom(_) => "not_dicom",
        DicomErrorKind::MissingElement { .. } => "missing_element",
        DicomErrorKind::InvalidElement { .. } => "invalid_element",
        DicomErrorKind::TooLarge { .. } => "too_large",
        DicomErrorKind::NotAnImage { .. } => "not_an_image",
        DicomErrorKind::UnsupportedTransferSyntax { .. } => "unsupported_transfer_syntax",
        DicomErrorKind::UnsupportedPhotometric(_) => "unsupported_photometric",
        DicomErrorKind::Decode(_) => "decode",
        DicomErrorKind::InvalidImage(_) => "invalid_image",
    }
}

fn io_error(message: String, e: &std::io::Error) -> PyErr {
    match e.kind() {
        std::io::ErrorKind::NotFound => PyFileNotFoundError::new_err(message),
        std::io::ErrorKind::PermissionDenied => PyPermissionError::new_err(message),
        _ => PyOSError::new_err(message),
    }
}

fn dicom_error(py: Python<'_>, e: RustDicomError) -> PyErr {
    if let DicomErrorKind::Io(io) = &e.kind {
        return io_error(e.to_string(), io);
    }
    let err = DicomError::new_err(e.to_string());
    let value = err.value(py);
    // Attributes for callers that sort failures; setting them on a fresh exception cannot fail
    // in practice, and the message stands on its own if it did.
    let _ = value.setattr("source", e.source_name.as_str());
    let _ = value.setattr("kind", kind_name(&e.kind));
    err
}

fn plugin_error(py: Python<'_>, e: PluginError) -> PyErr {
    match e {
        PluginError::Dicom(d) => dicom_error(py, d),
        PluginError::Io { ref source, .. } => io_error(e.to_string(), source),
        PluginError::Manifest { .. } | PluginError::Model { .. } => {
            BundleError::new_err(e.to_string())
        }
        PluginError::NoRawOutputs { .. } => AnalysisError::new_err(e.to_string()),
        PluginError::NotARadiograph {
            ref source_name,
            ref modality,
        } => {
            let err = NotARadiographError::new_err(e.to_string());
            let value = err.value(py);
            let _ = value.setattr("source", source_name.as_str());
            let _ = value.setattr("modality", modality.as_str());
            err
        }
        PluginError::NotAChest {
            ref source_name,
            ref body_part,
        } => {
            let err = NotAChestError::new_err(e.to_string());
            let value = err.value(py);
            let _ = value.setattr("source", source_name.as_str());
            let _ = value.setattr("body_part", body_part.as_str());
            err
        }
    }
}

fn to_py<'py>(py: Python<'py>, value: &serde_json::Value) -> PyResult<Bound<'py, PyAny>> {
    pythonize::pythonize(py, value).map_err(PyErr::from)
}

fn json_error(e: serde_json::Error) -> PyErr {
    AsgError::new_err(format!("serialising the result: {e}"))
}

fn check_report_text(text: &str) -> PyResult<()> {
    if text.len() > MAX_REPORT_BYTES {
        return Err(PyValueError::new_err(format!(
            "the report is {} bytes, more than the {MAX_REPORT_BYTES} allowed",
            text.len()
        )));
    }
    Ok(())
}

/// A model bundle loaded once, to analyse many images (thread-safe: analyses release the GIL
/// and may run from several Python threads at once).
///
/// >>> import asg_cxr
/// >>> model = asg_cxr.Model()                    # the embedded default bundle
/// >>> result = model.analyze_file("study.dcm")    # doctest: +SKIP
/// >>> [f["name"] for f in result["findings"] if f["present"]]  # doctest: +SKIP
#[pyclass(frozen, module = "asg_cxr")]
struct Model {
    bundle: ModelBundle,
    read: ReadOptions,
}

impl Model {
    /// Decodes and analyses `bytes` without the GIL, then checks `report` if given.
    fn run<'py>(
        &self,
        py: Python<'py>,
        bytes: &[u8],
        source_name: &str,
        file: Option<&str>,
        report: Option<(&str, &str)>,
        raw_outputs: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        let bundle = &self.bundle;
        let read = &self.read;
        let outcome = py.detach(|| {
            let (analysis, _image) = bundle.analyze_input(bytes, source_name, read)?;
            let check = match report {
                Some((_, text)) => Some(bundle.check_report(&analysis, text)?),
                None => None,
            };
            Ok::<_, PluginError>((analysis, check))
        });
        let (analysis, check) = outcome.map_err(|e| plugin_error(py, e))?;
        let checked = match (report, &check) {
            (Some((source, _)), Some(check)) => Some(CheckedReport { source, check }),
            _ => None,
        };
        let mut value = result_json(&analysis, file.unwrap_or(source_name), checked, raw_outputs)
            .map_err(json_error)?;
        if file.is_none() {
            if let Some(map) = value.as_object_mut() {
                map.remove("file");
            }
        }
        to_py(py, &value)
    }
}

#[pymethods]
impl Model {
    /// Loads a bundle: None for the embedded default, a bundle folder (manifest.json and the
    /// ONNX files it lists) or one tar file of it. `threshold` replaces every per-finding
    /// threshold (a probability in 0..1); `max_pixels` caps Rows x Columns x Frames before
    /// decoding (default 2**28, as the CLI).
    #[new]
    #[pyo3(signature = (bundle=None, *, threshold=None, max_pixels=None))]
    fn new(
        py: Python<'_>,
        bundle: Option<PathBuf>,
        threshold: Option<f32>,
        max_pixels: Option<u64>,
    ) -> PyResult<Self> {
        if let Some(t) = threshold {
            if !(0.0..=1.0).contains(&t) {
                return Err(PyValueError::new_err(format!(
                    "threshold must be a probability in 0..=1, got {t}"
                )));
            }
        }
        let loaded = py.detach(|| match &bundle {
            None => ModelBundle::embedded(),
            Some(path) if path.is_file() => ModelBundle::from_archive(path),
            Some(dir) => ModelBundle::from_dir(dir),
        });
        let mut bundle = loaded.map_err(|e| plugin_error(py, e))?;
        if let Some(t) = threshold {
            bundle.set_threshold(t);
        }
        let mut read = ReadOptions::default();
        if let Some(cap) = max_pixels {
            read.max_pixels = cap;
        }
        Ok(Self { bundle, read })
    }

    /// The bundle's name (from its manifest).
    #[getter]
    fn name(&self) -> &str {
        &self.bundle.manifest.name
    }

    /// The bundle's version.
    #[getter]
    fn version(&self) -> &str {
        &self.bundle.manifest.version
    }

    /// Where the bundle came from (its path, or "embedded default bundle").
    #[getter]
    fn source(&self) -> &str {
        &self.bundle.source
    }

    /// The findings the network scores, in output order.
    #[getter]
    fn findings(&self) -> Vec<String> {
        self.bundle.manifest.findings.clone()
    }

    /// The findings it was trained to assess (the others are never reported present).
    #[getter]
    fn assessed(&self) -> Vec<String> {
        let m = &self.bundle.manifest;
        m.findings
            .iter()
            .filter(|f| m.is_assessed(f))
            .cloned()
            .collect()
    }

    /// Image-level probability thresholds by finding.
    #[getter]
    fn thresholds(&self) -> std::collections::BTreeMap<String, f32> {
        let m = &self.bundle.manifest;
        m.findings
            .iter()
            .map(|f| (f.clone(), m.threshold(f)))
            .collect()
    }

    /// Analyses a DICOM file (or a PNG/JPEG picture) held in memory and returns the same dict as
    /// `asg analyze` writes as JSON. `name` names the input in errors and becomes the dict's
    /// "file"; with `report` (its text) the dict also has "report_check". `raw_outputs` adds
    /// the model's raw outputs ("outputs": attention maps, finding maps, embeddings, ~150 KB of
    /// numbers), as `asg analyze --raw-outputs`; `check_report` needs them.
    ///
    /// >>> data = open("study.dcm", "rb").read()          # doctest: +SKIP
    /// >>> model.analyze(data, name="study.dcm")["regions"][0]["name"]  # doctest: +SKIP
    #[pyo3(signature = (data, name=None, *, report=None, raw_outputs=false))]
    fn analyze<'py>(
        &self,
        py: Python<'py>,
        data: &[u8],
        name: Option<&str>,
        report: Option<&str>,
        raw_outputs: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        if let Some(text) = report {
            check_report_text(text)?;
        }
        let source = name.unwrap_or("<bytes>");
        if data.len() as u64 > self.read.max_file_bytes {
            return Err(DicomError::new_err(format!(
                "{source}: {} bytes, more than the {} allowed",
                data.len(),
                self.read.max_file_bytes
            )));
        }
        self.run(
            py,
            data,
            source,
            name,
            report.map(|t| ("report", t)),
            raw_outputs,
        )
    }

    /// Reads and analyses one file (DICOM, or a PNG/JPEG picture), as `asg analyze FILE` does;
    /// the file's size is checked before it is read. `report` is a report's text (the dict's
    /// "report_file" is then "report"), `report_file` a report file to read instead;
    /// `raw_outputs` as for `analyze`.
    ///
    /// >>> model.analyze_file("study.dcm", report_file="study.txt")["report_check"]["counts"]  # doctest: +SKIP
    #[pyo3(signature = (path, *, report=None, report_file=None, raw_outputs=false))]
    fn analyze_file<'py>(
        &self,
        py: Python<'py>,
        path: PathBuf,
        report: Option<String>,
        report_file: Option<PathBuf>,
        raw_outputs: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        let name = path.display().to_string();
        let (report_source, report_text) = match (report, report_file) {
            (Some(_), Some(_)) => {
                return Err(PyValueError::new_err(
                    "give report or report_file, not both",
                ))
            }
            (Some(text), None) => ("report".to_string(), Some(text)),
            (None, Some(file)) => {
                let meta = std::fs::metadata(&file)
                    .map_err(|e| io_error(format!("{}: {e}", file.display()), &e))?;
                if meta.len() > MAX_REPORT_BYTES as u64 {
                    return Err(PyValueError::new_err(format!(
                        "{}: larger than {MAX_REPORT_BYTES} bytes",
                        file.display()
                    )));
                }
                let bytes = std::fs::read(&file)
                    .map_err(|e| io_error(format!("{}: {e}", file.display()), &e))?;
                (
                    file.display().to_string(),
                    Some(String::from_utf8_lossy(&bytes).into_owned()),
                )
            }
            (None, None) => (String::new(), None),
        };
        if let Some(text) = &report_text {
            check_report_text(text)?;
        }
        let read = &self.read;
        let bytes = py
            .detach(|| asg_dicom::read_capped(&path, &name, read))
            .map_err(|e| dicom_error(py, e))?;
        let report = report_text
            .as_deref()
            .map(|text| (report_source.as_str(), text));
        self.run(py, &bytes, &name, Some(&name), report, raw_outputs)
    }

    /// Checks a report's text against an analysis this model made (the dict `analyze`
    /// returned) and returns the check: each sentence's verdict with its evidence, the
    /// omissions, and the verdict counts. The dict must hold the raw outputs (`analyze(...,
    /// raw_outputs=True)`); or pass `report=` to `analyze` instead.
    ///
    /// >>> result = model.analyze_file("study.dcm", raw_outputs=True)  # doctest: +SKIP
    /// >>> model.check_report(result, "No pneumothorax.")["counts"]  # doctest: +SKIP
    fn check_report<'py>(
        &self,
        py: Python<'py>,
        analysis: &Bound<'py, PyAny>,
        text: &str,
    ) -> PyResult<Bound<'py, PyAny>> {
        check_report_text(text)?;
        let analysis: Analysis = pythonize::depythonize(analysis)
            .map_err(|e| AnalysisError::new_err(format!("not an analysis made by asg_cxr: {e}")))?;
        if analysis.model.image_sha256 != self.bundle.image_sha256 {
            return Err(AnalysisError::new_err(format!(
                "the analysis was made by model {} {} (image.onnx {}), not by this model ({})",
                analysis.model.name,
                analysis.model.version,
                analysis.model.image_sha256,
                self.bundle.source
            )));
        }
        let bundle = &self.bundle;
        let check = py
            .detach(|| bundle.check_report(&analysis, text))
            .map_err(|e| plugin_error(py, e))?;
        to_py(py, &serde_json::to_value(&check).map_err(json_error)?)
    }

    fn __repr__(&self) -> String {
        format!(
            "Model(name={:?}, version={:?}, source={:?})",
            self.bundle.manifest.name, self.bundle.manifest.version, self.bundle.source
        )
    }
}

/// Parses a radiology report into sentences with byte spans, sections and (finding, existence,
/// region) triplets: the same dict as `asg report --json`.
///
/// >>> import asg_cxr
/// >>> asg_cxr.parse_report("No pneumothorax.")["sentences"][0]["triplets"][0]["finding"]
/// 'pneumothorax'
#[pyfunction]
fn parse_report<'py>(py: Python<'py>, text: &str) -> PyResult<Bound<'py, PyAny>> {
    check_report_text(text)?;
    let parsed = py.detach(|| asg_report::parse(text));
    to_py(py, &serde_json::to_value(&parsed).map_err(json_error)?)
}

/// A report's labels in a labeler's conventions ("chexpert" or "chestxray14"): the same dict as
/// `asg report --labels SCHEME --json`.
///
/// >>> asg_cxr.report_labels("No pneumothorax.", "chexpert")["scheme"]
/// 'chexpert'
#[pyfunction]
#[pyo3(signature = (text, scheme="chexpert"))]
fn report_labels<'py>(py: Python<'py>, text: &str, scheme: &str) -> PyResult<Bound<'py, PyAny>> {
    check_report_text(text)?;
    let scheme: asg_report::Scheme = scheme.parse().map_err(PyValueError::new_err)?;
    let labels = py.detach(|| asg_report::parse(text).labels(scheme));
    let values: Vec<serde_json::Value> = labels
        .values
        .iter()
        .map(|(name, m)| serde_json::json!({"label": name, "value": m, "code": m.chexpert_code()}))
        .collect();
    to_py(py, &serde_json::json!({"scheme": scheme, "labels": values}))
}

/// Decodes a DICOM file held in memory: returns its first frame as a float32 array of shape
/// (rows, columns) — modality values (the rescale or Modality LUT applied; colour converted to
/// grey), or with `display=True` the image as a radiologist sees it, in 0..1, white = dense (the
/// file's window or VOI LUT, MONOCHROME1 inverted) — and the file's metadata as a dict (no
/// patient identity).
///
/// >>> pixels, meta = asg_cxr.read_dicom(open("study.dcm", "rb").read())  # doctest: +SKIP
/// >>> pixels.shape == (meta["rows"], meta["columns"])  # doctest: +SKIP
/// True
#[pyfunction]
#[pyo3(signature = (data, name=None, *, display=false, max_pixels=None))]
fn read_dicom<'py>(
    py: Python<'py>,
    data: &[u8],
    name: Option<&str>,
    display: bool,
    max_pixels: Option<u64>,
) -> PyResult<(Bound<'py, PyArray2<f32>>, Bound<'py, PyAny>)> {
    let source = name.unwrap_or("<bytes>");
    let mut options = ReadOptions::default();
    if let Some(cap) = max_pixels {
        options.max_pixels = cap;
    }
    let image = py
        .detach(|| asg_dicom::read_bytes(data, source, &options))
        .map_err(|e| dicom_error(py, e))?;
    let values = if display {
        image.display()
    } else {
        image.pixels.clone()
    };
    let shape = (image.height as usize, image.width as usize);
    let array = numpy::ndarray::Array2::from_shape_vec(shape, values)
        .map_err(|e| AsgError::new_err(format!("{source}: {e}")))?;
    let meta = serde_json::to_value(&image.meta).map_err(json_error)?;
    Ok((array.into_pyarray(py), to_py(py, &meta)?))
}

fn read_digest(i: usize, r: &Bound<'_, PyAny>) -> PyResult<ImageDigest> {
    pythonize::depythonize(r).map_err(|e| {
        AnalysisError::new_err(format!(
            "result {i} is neither an analysis made by asg_cxr nor its digest: {e}"
        ))
    })
}

/// Groups results by study, as `asg analyze --json DIR` writes them in summary.json's
/// "studies": per study the number of images, the findings present in any image with their
/// highest probability, the report-check counts and the warnings (first seen first). `results`
/// are the dicts `Model.analyze` returns, or their `digest`s, in input order.
#[pyfunction]
fn summarise<'py>(py: Python<'py>, results: Vec<Bound<'py, PyAny>>) -> PyResult<Bound<'py, PyAny>> {
    let digests = results
        .iter()
        .enumerate()
        .map(|(i, r)| read_digest(i, r))
        .collect::<PyResult<Vec<_>>>()?;
    let studies = asg_plugin::batch::summarise(digests);
    to_py(py, &serde_json::to_value(&studies).map_err(json_error)?)
}

/// What `summarise` needs of a result, a few hundred bytes instead of the analysis's ~150 KB:
/// for workers that send their results' digests to one place.
#[pyfunction]
fn digest<'py>(py: Python<'py>, result: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
    let mut d = read_digest(0, result)?;
    d.findings.retain(|f| f.present);
    to_py(py, &serde_json::to_value(&d).map_err(json_error)?)
}

/// The files `asg analyze INPUT...` takes, in its order: files as named, folders walked
/// recursively in name order (DICOM files by extension or the DICM mark; PNG/JPEG pictures too
/// with `pictures`), DICOMDIRs expanded.
#[pyfunction]
#[pyo3(signature = (inputs, *, pictures=false))]
fn find_files(py: Python<'_>, inputs: Vec<PathBuf>, pictures: bool) -> PyResult<Vec<String>> {
    let mut files = Vec::new();
    py.detach(|| {
        inputs
            .iter()
            .try_for_each(|input| asg_plugin::batch::collect_files(input, &mut files, pictures))
    })
    .map_err(|e| plugin_error(py, e))?;
    Ok(files.iter().map(|f| f.display().to_string()).collect())
}

/// The JSON file names `asg analyze --json DIR` gives results in input order: `<stem>.json`,
/// then `<stem>-2.json`... for repeated stems.
#[pyfunction]
fn output_names(files: Vec<PathBuf>) -> Vec<String> {
    let stems: Vec<String> = files
        .iter()
        .map(|f| {
            f.file_stem()
                .map(|s| s.to_string_lossy().to_string())
                .unwrap_or_else(|| "image".into())
        })
        .collect();
    asg_plugin::batch::json_names(stems.iter().map(String::as_str))
}

/// The Python module `asg_cxr`.
#[pymodule]
fn asg_cxr(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add(
        "ANALYSIS_SCHEMA_VERSION",
        asg_plugin::ANALYSIS_SCHEMA_VERSION,
    )?;
    m.add_class::<Model>()?;
    m.add_function(wrap_pyfunction!(parse_report, m)?)?;
    m.add_function(wrap_pyfunction!(report_labels, m)?)?;
    m.add_function(wrap_pyfunction!(read_dicom, m)?)?;
    m.add_function(wrap_pyfunction!(summarise, m)?)?;
    m.add_function(wrap_pyfunction!(digest, m)?)?;
    m.add_function(wrap_pyfunction!(find_files, m)?)?;
    m.add_function(wrap_pyfunction!(output_names, m)?)?;
    m.add("MAX_FILE_BYTES", ReadOptions::default().max_file_bytes)?;
    m.add("AsgError", py.get_type::<AsgError>())?;
    m.add("DicomError", py.get_type::<DicomError>())?;
    m.add("BundleError", py.get_type::<BundleError>())?;
    m.add("AnalysisError", py.get_type::<AnalysisError>())?;
    m.add("NotARadiographError", py.get_type::<NotARadiographError>())?;
    m.add("NotAChestError", py.get_type::<NotAChestError>())?;
    Ok(())
}
