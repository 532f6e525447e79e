//! Loading a bundle into tract, checked against its manifest, and running it.

use crate::error::PluginError;
use asg_bundle::Manifest;
use std::sync::Arc;
use tract_onnx::prelude::*;

/// An ONNX model optimised by tract for one fixed input shape; cheap to share across threads.
#[derive(Clone)]
pub struct OnnxModel {
    plan: Arc<TypedRunnableModel>,
    input_shape: Vec<usize>,
    output_names: Vec<String>,
    output_shapes: Vec<Vec<usize>>,
}

impl std::fmt::Debug for OnnxModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OnnxModel")
            .field("input_shape", &self.input_shape)
            .field("output_names", &self.output_names)
            .field("output_shapes", &self.output_shapes)
            .finish()
    }
}

/// Runs a tract step over an untrusted graph with its panics turned into errors. tract panics
/// on some malformed ONNX graphs instead of refusing them (fuzzing found a value name missing
/// from its map in `tract-onnx`'s graph reader, `model.rs:187`); where panics unwind (every
/// native build) such a bundle is then an error like any other bad bundle. Under
/// `panic = "abort"` (WebAssembly) it stays a trap.
fn guarded<T>(step: &str, f: impl FnOnce() -> TractResult<T>) -> TractResult<T> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(result) => result,
        Err(payload) => {
            let why = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "no message".into());
            tract_onnx::tract_core::internal::bail!("tract failed while {step}: {why}")
        }
    }
}

/// Parses ONNX bytes and fixes its inputs to `facts`, after checking it has exactly that many
/// (tract indexes the graph's inputs unchecked: a graph without inputs would panic it).
fn read_with_inputs(bytes: &[u8], facts: Vec<InferenceFact>) -> TractResult<InferenceModel> {
    let onnx = tract_onnx::onnx();
    let proto = guarded("reading the ONNX graph", || {
        onnx.proto_model_for_read(&mut &bytes[..])
    })?;
    check_graph_outputs(&proto)?;
    let mut model = guarded("reading the ONNX graph", || {
        onnx.model_for_proto_model(&proto)
    })?;
    let found = model.input_outlets()?.len();
    if found != facts.len() {
        tract_onnx::tract_core::internal::bail!(
            "the ONNX graph takes {found} input{}, where {} {} expected",
            if found == 1 { "" } else { "s" },
            facts.len(),
            if facts.len() == 1 { "is" } else { "are" }
        );
    }
    for (i, fact) in facts.into_iter().enumerate() {
        model = model.with_input_fact(i, fact)?;
    }
    Ok(model)
}

/// Refuses a graph whose outputs name a value nothing in it gives (no input, initializer or node
/// output of that name): tract-onnx 0.23.9's reader looks such a name up unchecked and panics
/// (`model.rs:187`), which unwinds to [`guarded`] natively but is a trap in WebAssembly.
fn check_graph_outputs(proto: &tract_onnx::pb::ModelProto) -> TractResult<()> {
    let Some(graph) = proto.graph.as_ref() else {
        tract_onnx::tract_core::internal::bail!("the ONNX model has no graph");
    };
    let known: std::collections::HashSet<&str> = graph
        .input
        .iter()
        .map(|i| i.name.as_str())
        .chain(graph.initializer.iter().map(|t| t.name.as_str()))
        .chain(
            graph
                .node
                .iter()
                .flat_map(|n| n.output.iter().chain(&n.input))
                .map(String::as_str)
                .filter(|n| !n.is_empty()),
        )
        .collect();
    if let Some(missing) = graph
        .output
        .iter()
        .find(|o| !known.contains(o.name.as_str()))
    {
        tract_onnx::tract_core::internal::bail!(
            "the ONNX graph's output {:?} is given by none of its inputs, initializers or nodes",
            missing.name
        );
    }
    Ok(())
}

impl OnnxModel {
    /// Parses ONNX bytes, fixes the single f32 input to `input_shape` and optimises the graph.
    pub fn from_bytes(bytes: &[u8], input_shape: &[usize]) -> TractResult<Self> {
        let model = read_with_inputs(bytes, vec![f32::fact(input_shape).into()])?;
        let model = guarded("optimising the ONNX graph", || model.into_optimized())?;
        let mut output_names = Vec::new();
        let mut output_shapes = Vec::new();
        for outlet in model.output_outlets()? {
            let name = model
                .outlet_label(*outlet)
                .unwrap_or(&model.node(outlet.node).name)
                .to_string();
            let fact = model.outlet_fact(*outlet)?;
            let shape = fact
                .shape
                .as_concrete()
                .map(|s| s.to_vec())
                .ok_or_else(|| {
                    tract_onnx::tract_core::internal::format_err!(
                        "output {name} has a symbolic shape {:?}",
                        fact.shape
                    )
                })?;
            output_names.push(name);
            output_shapes.push(shape);
        }
        let plan = guarded("planning the ONNX graph", || model.into_runnable())?;
        Ok(Self {
            plan,
            input_shape: input_shape.to_vec(),
            output_names,
            output_shapes,
        })
    }

    /// Output names, in the graph's order.
    pub fn output_names(&self) -> &[String] {
        &self.output_names
    }

    /// Output shapes, in the graph's order.
    pub fn output_shapes(&self) -> &[Vec<usize>] {
        &self.output_shapes
    }

    /// Runs the model on row-major input values; returns each output's values (row-major).
    pub fn run(&self, input: Vec<f32>) -> TractResult<Vec<Vec<f32>>> {
        let tensor =
            tract_ndarray::ArrayD::from_shape_vec(self.input_shape.clone(), input)?.into_tensor();
        let outputs = self.plan.run(tvec!(tensor.into()))?;
        outputs
            .iter()
            .map(|o| Ok(o.to_plain_array_view::<f32>()?.iter().copied().collect()))
            .collect()
    }
}

/// The bundle's text model (`text.onnx`, one sentence per run) and its tokenizer.
#[derive(Clone)]
pub struct TextModel {
    plan: Arc<TypedRunnableModel>,
    pub tokenizer: asg_report::TextTokenizer,
    pub max_tokens: usize,
}

impl std::fmt::Debug for TextModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TextModel")
            .field("max_tokens", &self.max_tokens)
            .field("vocab", &self.tokenizer.vocab_size())
            .finish()
    }
}

/// A report's embeddings.
#[derive(Debug, Clone, PartialEq)]
pub struct TextEmbeddings {
    /// The whole report's embedding (unit norm).
    pub report: Vec<f32>,
    /// One per requested byte span (unit norm); empty for a span with no token.
    pub spans: Vec<Vec<f32>>,
}

impl TextModel {
    /// Parses `text.onnx` for a batch of one text and one sentence.
    pub fn from_bytes(
        onnx: &[u8],
        tokenizer: asg_report::TextTokenizer,
        max_tokens: usize,
    ) -> TractResult<Self> {
        let t = max_tokens;
        let model = read_with_inputs(
            onnx,
            vec![
                i64::fact([1, t]).into(),
                f32::fact([1, t]).into(),
                f32::fact([1, 1, t]).into(),
            ],
        )?;
        let plan = guarded("optimising the ONNX graph", || {
            model.into_optimized()?.into_runnable()
        })?;
        Ok(Self {
            plan,
            tokenizer,
            max_tokens,
        })
    }

    fn run(&self, ids: &[i64], mask: &[f32], avg: &[f32]) -> TractResult<(Vec<f32>, Vec<f32>)> {
        let t = self.max_tokens;
        let ids = tract_ndarray::ArrayD::from_shape_vec(vec![1, t], ids.to_vec())?;
        let mask = tract_ndarray::ArrayD::from_shape_vec(vec![1, t], mask.to_vec())?;
        let avg = tract_ndarray::ArrayD::from_shape_vec(vec![1, 1, t], avg.to_vec())?;
        let o = self.plan.run(tvec!(
            ids.into_tensor().into(),
            mask.into_tensor().into(),
            avg.into_tensor().into()
        ))?;
        let get = |i: usize| -> TractResult<Vec<f32>> {
            Ok(o[i].to_plain_array_view::<f32>()?.iter().copied().collect())
        };
        Ok((get(0)?, get(1)?))
    }

    /// Embeds `text` and each byte span `(start, end)` of it (a sentence: its tokens averaged).
    pub fn embed(&self, text: &str, spans: &[(usize, usize)]) -> TractResult<TextEmbeddings> {
        let t = self.max_tokens;
        let enc = self.tokenizer.encode(text, t);
        let n = enc.ids.len().min(t);
        let mut ids = vec![self.tokenizer.pad_id() as i64; t];
        let mut mask = vec![0f32; t];
        for (k, &id) in enc.ids.iter().take(n).enumerate() {
            ids[k] = id as i64;
            mask[k] = 1.0;
        }
        let mut first = vec![0f32; t];
        first[0] = 1.0;
        let mut report = None;
        let mut out = Vec::with_capacity(spans.len());
        for &(start, end) in spans {
            let toks: Vec<usize> = enc
                .tokens_in(start, end)
                .into_iter()
                .filter(|&k| k < n)
                .collect();
            if toks.is_empty() {
                out.push(Vec::new());
                continue;
            }
            let mut avg = vec![0f32; t];
            for &k in &toks {
                avg[k] = 1.0 / toks.len() as f32;
            }
            let (r, s) = self.run(&ids, &mask, &avg)?;
            report.get_or_insert(r);
            out.push(s);
        }
        let report = match report {
            Some(r) => r,
            None => self.run(&ids, &mask, &first)?.0,
        };
        Ok(TextEmbeddings { report, spans: out })
    }
}

/// The bundle's lung-crop model (the manifest's `crop_model`), planned for one crop per lung.
#[derive(Clone)]
pub struct CropModel {
    plan: Arc<TypedRunnableModel>,
    /// What the manifest says of it.
    pub spec: asg_bundle::CropModelSpec,
    cells_output: usize,
    probability_output: usize,
}

impl std::fmt::Debug for CropModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CropModel")
            .field("spec", &self.spec)
            .finish()
    }
}

/// What the crop model says of each lung.
#[derive(Debug, Clone, PartialEq)]
pub struct CropScores {
    /// Each crop's probability, in the order of the spec's lungs.
    pub probabilities: Vec<f32>,
    /// Each crop's cell logits, `(height / stride) * (width / stride)` row-major, one after the
    /// other.
    pub cells: Vec<f32>,
}

impl CropModel {
    /// Parses the crop model's ONNX bytes for a batch of one crop per lung of `spec`, and checks
    /// that it gives `cells` and the spec's probability output in the shapes the spec implies.
    pub fn from_bytes(bytes: &[u8], spec: &asg_bundle::CropModelSpec) -> TractResult<Self> {
        let n = spec.lungs.len();
        let (h, w, s) = (
            spec.height as usize,
            spec.width as usize,
            spec.stride.max(1) as usize,
        );
        let grid = [n, h / s, w / s];
        let model = read_with_inputs(
            bytes,
            vec![f32::fact([n, 1, h, w]).into(), f32::fact(grid).into()],
        )?;
        let model = guarded("optimising the ONNX graph", || model.into_optimized())?;
        let mut named = Vec::new();
        for outlet in model.output_outlets()? {
            let name = model
                .outlet_label(*outlet)
                .unwrap_or(&model.node(outlet.node).name)
                .to_string();
            let shape = model
                .outlet_fact(*outlet)?
                .shape
                .as_concrete()
                .map(|s| s.to_vec());
            named.push((name, shape));
        }
        let find = |want: &str, shape: &[usize]| -> TractResult<usize> {
            match named.iter().position(|(n, _)| n == want) {
                Some(i) if named[i].1.as_deref() == Some(shape) => Ok(i),
                Some(i) => tract_onnx::tract_core::internal::bail!(
                    "output {want:?} has shape {:?}, where {shape:?} is expected",
                    named[i].1
                ),
                None => tract_onnx::tract_core::internal::bail!(
                    "no output {want:?} (it has {:?})",
                    named.iter().map(|(n, _)| n).collect::<Vec<_>>()
                ),
            }
        };
        let cells_output = find("cells", &grid)?;
        let probability_output = find(&spec.probability_output, &[n])?;
        let plan = guarded("planning the ONNX graph", || model.into_runnable())?;
        Ok(Self {
            plan,
            spec: spec.clone(),
            cells_output,
            probability_output,
        })
    }

    /// Runs the model on the lungs' normalised crops and their cell coverage (row-major, one
    /// lung after the other).
    pub fn run(&self, crops: Vec<f32>, coverage: Vec<f32>) -> TractResult<CropScores> {
        let n = self.spec.lungs.len();
        let (h, w, s) = (
            self.spec.height as usize,
            self.spec.width as usize,
            self.spec.stride.max(1) as usize,
        );
        let x = tract_ndarray::ArrayD::from_shape_vec(vec![n, 1, h, w], crops)?;
        let c = tract_ndarray::ArrayD::from_shape_vec(vec![n, h / s, w / s], coverage)?;
        let out = self
            .plan
            .run(tvec!(x.into_tensor().into(), c.into_tensor().into()))?;
        let flat = |i: usize| -> TractResult<Vec<f32>> {
            Ok(out[i]
                .to_plain_array_view::<f32>()?
                .iter()
                .copied()
                .collect())
        };
        Ok(CropScores {
            probabilities: flat(self.probability_output)?,
            cells: flat(self.cells_output)?,
        })
    }
}

/// A model bundle: its manifest and the image model, loaded and checked.
#[derive(Debug, Clone)]
pub struct ModelBundle {
    /// Where the bundle came from (a folder path or the caller's name), for messages.
    pub source: String,
    pub manifest: Manifest,
    pub image_model: OnnxModel,
    /// SHA-256 of image.onnx, as verified.
    pub image_sha256: String,
    /// The text model, for bundles that have one (the report check's region-sentence
    /// similarity needs it).
    pub text_model: Option<TextModel>,
    /// The lung-crop model, for bundles that have one (the manifest's `crop_model`).
    pub crop_model: Option<CropModel>,
}

impl ModelBundle {
    /// Loads a bundle folder (`manifest.json` and the files it lists).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn from_dir(dir: &std::path::Path) -> Result<Self, PluginError> {
        let read = |name: &str| {
            let path = dir.join(name);
            std::fs::read(&path).map_err(|source| PluginError::Io {
                path: path.display().to_string(),
                source,
            })
        };
        let manifest_bytes = read(asg_bundle::MANIFEST_FILE)?;
        let manifest_text = String::from_utf8_lossy(&manifest_bytes);
        let source = dir.display().to_string();
        let manifest =
            Manifest::from_json(&manifest_text).map_err(|source_err| PluginError::Manifest {
                bundle: source.clone(),
                source: source_err,
            })?;
        let image = read(&manifest.image_model)?;
        let mut bundle = Self::from_parts(&source, &manifest_text, &image)?;
        if let Some(spec) = &manifest.crop_model {
            bundle = bundle.with_crop_model(&read(&spec.file)?)?;
        }
        match &manifest.text_model {
            Some(spec) => {
                let text = read(&spec.file)?;
                let tokenizer = read(&spec.tokenizer)?;
                bundle.with_text(&text, &tokenizer)
            }
            None => Ok(bundle),
        }
    }

    /// Loads a bundle packed in one tar file (`tar -cf bundle.tar -C BUNDLE_DIR .`, or with the
    /// folder itself at the top): the manifest and the files it lists are read into memory,
    /// each capped at 1 GiB before reading, then checked as [`ModelBundle::from_files`] does.
    #[cfg(feature = "archive")]
    pub fn from_archive(path: &std::path::Path) -> Result<Self, PluginError> {
        let source = path.display().to_string();
        let file = std::fs::File::open(path).map_err(|e| PluginError::Io {
            path: source.clone(),
            source: e,
        })?;
        Self::from_archive_reader(&source, file)
    }

    /// Loads a bundle from tar bytes read from `reader` ([`ModelBundle::from_archive`]'s work;
    /// `source` names it in errors).
    #[cfg(feature = "archive")]
    pub fn from_archive_reader(
        source: &str,
        reader: impl std::io::Read,
    ) -> Result<Self, PluginError> {
        const MAX_ENTRY: u64 = 1 << 30;
        let source = source.to_string();
        let io_err = |e: std::io::Error| PluginError::Io {
            path: source.clone(),
            source: e,
        };
        let mut archive = tar::Archive::new(reader);
        let mut files: Vec<(String, Vec<u8>)> = Vec::new();
        for entry in archive.entries().map_err(io_err)? {
            let mut entry = entry.map_err(io_err)?;
            if !entry.header().entry_type().is_file() {
                continue;
            }
            let name = entry
                .path()
                .map_err(io_err)?
                .file_name()
                .map(|n| n.to_string_lossy().to_string())
                .unwrap_or_default();
            let size = entry.header().size().map_err(io_err)?;
            if size > MAX_ENTRY {
                return Err(PluginError::Model {
                    bundle: source.clone(),
                    reason: format!("{name} is {size} bytes, more than the {MAX_ENTRY} allowed"),
                });
            }
            if files.iter().any(|(n, _)| *n == name) {
                return Err(PluginError::Model {
                    bundle: source.clone(),
                    reason: format!("{name} appears twice in the archive"),
                });
            }
            // The header's size is a claim: reserve at most 1 MiB up front, grow as bytes arrive.
            let mut bytes = Vec::with_capacity(size.min(1 << 20) as usize);
            std::io::Read::read_to_end(&mut entry, &mut bytes).map_err(io_err)?;
            files.push((name, bytes));
        }
        let refs: Vec<(&str, &[u8])> = files
            .iter()
            .map(|(n, b)| (n.as_str(), b.as_slice()))
            .collect();
        Self::from_files(&source, &refs)
    }

    /// Loads a bundle from named files held in memory (`manifest.json` and the files it lists),
    /// e.g. a bundle embedded in a binary.
    pub fn from_files(source: &str, files: &[(&str, &[u8])]) -> Result<Self, PluginError> {
        let get = |name: &str| -> Result<&[u8], PluginError> {
            files
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, b)| *b)
                .ok_or_else(|| PluginError::Model {
                    bundle: source.to_string(),
                    reason: format!("file {name} is missing"),
                })
        };
        let manifest_text = String::from_utf8_lossy(get(asg_bundle::MANIFEST_FILE)?).to_string();
        let manifest = Manifest::from_json(&manifest_text).map_err(|e| PluginError::Manifest {
            bundle: source.to_string(),
            source: e,
        })?;
        let mut bundle = Self::from_parts(source, &manifest_text, get(&manifest.image_model)?)?;
        if let Some(spec) = &manifest.crop_model {
            bundle = bundle.with_crop_model(get(&spec.file)?)?;
        }
        match &manifest.text_model {
            Some(spec) => bundle.with_text(get(&spec.file)?, get(&spec.tokenizer)?),
            None => Ok(bundle),
        }
    }

    /// Adds the text model (`text.onnx` bytes and the tokenizer file), checked against the
    /// manifest's digests.
    pub fn with_text(
        mut self,
        text_onnx: &[u8],
        tokenizer_json: &[u8],
    ) -> Result<Self, PluginError> {
        let manifest_err = |e| PluginError::Manifest {
            bundle: self.source.clone(),
            source: e,
        };
        let Some(spec) = self.manifest.text_model.clone() else {
            return Err(PluginError::Model {
                bundle: self.source.clone(),
                reason: "the manifest names no text model".into(),
            });
        };
        self.manifest
            .verify_file(&spec.file, text_onnx)
            .map_err(manifest_err)?;
        self.manifest
            .verify_file(&spec.tokenizer, tokenizer_json)
            .map_err(manifest_err)?;
        let tokenizer =
            asg_report::TextTokenizer::from_json(&String::from_utf8_lossy(tokenizer_json))
                .map_err(|e| PluginError::Model {
                    bundle: self.source.clone(),
                    reason: format!("{}: {e}", spec.tokenizer),
                })?;
        let model =
            TextModel::from_bytes(text_onnx, tokenizer, spec.max_tokens as usize).map_err(|e| {
                PluginError::Model {
                    bundle: self.source.clone(),
                    reason: format!("{} does not load in tract: {e:#}", spec.file),
                }
            })?;
        self.text_model = Some(model);
        Ok(self)
    }

    /// Adds the lung-crop model (its ONNX bytes), checked against the manifest's digest and
    /// loaded by tract for one crop per lung.
    pub fn with_crop_model(mut self, onnx: &[u8]) -> Result<Self, PluginError> {
        let Some(spec) = self.manifest.crop_model.clone() else {
            return Err(PluginError::Model {
                bundle: self.source.clone(),
                reason: "the manifest names no crop model".into(),
            });
        };
        self.manifest
            .verify_file(&spec.file, onnx)
            .map_err(|e| PluginError::Manifest {
                bundle: self.source.clone(),
                source: e,
            })?;
        let model = CropModel::from_bytes(onnx, &spec).map_err(|e| PluginError::Model {
            bundle: self.source.clone(),
            reason: format!("{} does not load in tract: {e:#}", spec.file),
        })?;
        self.crop_model = Some(model);
        Ok(self)
    }

    /// Replaces every image- and region-level threshold by `t` (`--threshold`, `threshold=`).
    pub fn set_threshold(&mut self, t: f32) {
        let m = &mut self.manifest;
        let all: std::collections::BTreeMap<String, f32> =
            m.findings.iter().map(|f| (f.clone(), t)).collect();
        m.thresholds = all.clone();
        m.region_thresholds = all;
    }

    /// Loads a bundle from its manifest text and image-model bytes (the browser's path).
    pub fn from_parts(
        source: &str,
        manifest_json: &str,
        image_onnx: &[u8],
    ) -> Result<Self, PluginError> {
        let manifest_err = |e| PluginError::Manifest {
            bundle: source.to_string(),
            source: e,
        };
        let model_err = |reason: String| PluginError::Model {
            bundle: source.to_string(),
            reason,
        };
        let manifest = Manifest::from_json(manifest_json).map_err(manifest_err)?;
        manifest
            .verify_file(&manifest.image_model, image_onnx)
            .map_err(manifest_err)?;
        let s = manifest.input.size as usize;
        let image_model = OnnxModel::from_bytes(image_onnx, &[1, 1, s, s]).map_err(|e| {
            model_err(format!(
                "{} does not load in tract: {e:#}",
                manifest.image_model
            ))
        })?;
        for spec in &manifest.outputs {
            let Some(i) = image_model
                .output_names()
                .iter()
                .position(|n| *n == spec.name)
            else {
                return Err(model_err(format!(
                    "{} has no output {:?} (it has {:?})",
                    manifest.image_model,
                    spec.name,
                    image_model.output_names()
                )));
            };
            let shape = &image_model.output_shapes()[i];
            if *shape != spec.shape {
                return Err(model_err(format!(
                    "{} output {:?} has shape {shape:?}, the manifest says {:?}",
                    manifest.image_model, spec.name, spec.shape
                )));
            }
        }
        let image_sha256 = asg_bundle::sha256_hex(image_onnx);
        Ok(Self {
            source: source.to_string(),
            manifest,
            image_model,
            image_sha256,
            text_model: None,
            crop_model: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn default_model(name: &str) -> Vec<u8> {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../models/default")
            .join(name);
        std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    #[test]
    fn a_graph_with_the_wrong_number_of_inputs_is_an_error_not_a_panic() {
        // The bundle_loader fuzz campaign's crash: two bytes that parse as an ONNX model whose
        // graph has no inputs (tract indexed its inputs unchecked and panicked).
        let err = OnnxModel::from_bytes(b":\0", &[1, 1, 32, 32]).unwrap_err();
        assert!(
            err.to_string()
                .contains("takes 0 inputs, where 1 is expected"),
            "{err}"
        );
        // The text model (3 inputs) given as the image model, and the other way round.
        let err = OnnxModel::from_bytes(&default_model("text.onnx"), &[1, 1, 32, 32]).unwrap_err();
        assert!(err.to_string().contains("takes 3 inputs"), "{err}");
        let tokenizer = asg_report::TextTokenizer::Word(asg_report::Tokenizer::train(
            ["the lungs are clear"],
            50,
            1,
        ));
        let err = TextModel::from_bytes(&default_model("image.onnx"), tokenizer, 8).unwrap_err();
        assert!(
            err.to_string()
                .contains("takes 1 input, where 3 are expected"),
            "{err}"
        );
    }

    #[test]
    fn a_graph_that_panics_tract_is_refused_before_tract_reads_it() {
        // The second crash of that campaign: a graph naming an output no value is recorded for
        // (tract-onnx 0.23.9 panics looking it up). Refused by our own check first, so it is an
        // error in WebAssembly too, where a panic cannot be caught.
        let bytes = b":\x08r\0b\0r\0\n\0";
        let err = OnnxModel::from_bytes(bytes, &[1, 1, 32, 32]).unwrap_err();
        assert!(
            err.to_string()
                .contains("is given by none of its inputs, initializers or nodes"),
            "{err}"
        );
    }

    #[test]
    fn a_panic_inside_a_guarded_step_is_an_error_naming_the_step() {
        let err = guarded::<()>("optimising the ONNX graph", || {
            panic!("index out of bounds")
        })
        .unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("tract failed while optimising the ONNX graph")
                && text.contains("index out of bounds"),
            "{text}"
        );
    }
}
