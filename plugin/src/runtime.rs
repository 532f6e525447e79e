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

impl OnnxModel {
    /// Parses ONNX bytes, fixes the single f32 input to `input_shape` and optimises the graph.
    pub fn from_bytes(bytes: &[u8], input_shape: &[usize]) -> TractResult<Self> {
        let model = tract_onnx::onnx()
            .model_for_read(&mut &bytes[..])?
            .with_input_fact(0, f32::fact(input_shape).into())?
            .into_optimized()?;
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
        let plan = model.into_runnable()?;
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

/// A model bundle: its manifest and the image model, loaded and checked.
#[derive(Debug, Clone)]
pub struct ModelBundle {
    /// Where the bundle came from (a folder path or the caller's name), for messages.
    pub source: String,
    pub manifest: Manifest,
    pub image_model: OnnxModel,
    /// SHA-256 of image.onnx, as verified.
    pub image_sha256: String,
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
        Self::from_parts(&source, &manifest_text, &image)
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
        })
    }
}
