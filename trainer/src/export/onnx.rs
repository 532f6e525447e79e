//! An ONNX writer of our own: Candle has no exporter. Graphs are built node by node into the ONNX
//! protobuf structs that tract-onnx exposes (`tract_onnx::pb`, prost messages), weights stored as
//! initializers in little-endian raw data. Node names are unique (tract and onnxruntime refuse
//! duplicates).

use candle_core::Tensor;
use prost::Message;
use tract_onnx::pb;

/// The ONNX opset we write: LayerNormalization and friends are native from 17 on, and tract 0.23 and
/// onnxruntime both load it.
pub const OPSET: i64 = 17;
const IR_VERSION: i64 = 8;

/// Errors from building a graph.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("reading a tensor out of Candle: {0}")]
    Candle(#[from] candle_core::Error),
    #[error("graph is invalid: {0}")]
    Graph(String),
}

/// A dimension of a graph input or output.
#[derive(Debug, Clone)]
pub enum Dim {
    Fixed(usize),
    /// A named free dimension (e.g. "batch").
    Param(&'static str),
}

/// An ONNX attribute value.
#[derive(Debug, Clone)]
pub enum Attr {
    Int(i64),
    Ints(Vec<i64>),
    Float(f32),
}

/// An f32 initializer: `values` in little-endian raw data, of shape `dims`.
pub fn float_initializer(name: &str, dims: &[usize], values: &[f32]) -> pb::TensorProto {
    pb::TensorProto {
        name: name.to_string(),
        dims: dims.iter().map(|&d| d as i64).collect(),
        data_type: pb::tensor_proto::DataType::Float as i32,
        raw_data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        ..Default::default()
    }
}

/// A node without attributes whose single output, and node name, is `output`.
pub fn node_proto(op: &str, inputs: &[&str], output: &str) -> pb::NodeProto {
    pb::NodeProto {
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: vec![output.to_string()],
        name: output.to_string(),
        op_type: op.to_string(),
        ..Default::default()
    }
}

/// A graph under construction.
#[derive(Debug, Default)]
pub struct GraphBuilder {
    nodes: Vec<pb::NodeProto>,
    initializers: Vec<pb::TensorProto>,
    inputs: Vec<pb::ValueInfoProto>,
    outputs: Vec<pb::ValueInfoProto>,
    names: std::collections::HashSet<String>,
}

fn value_info(name: &str, dims: &[Dim]) -> pb::ValueInfoProto {
    value_info_typed(name, dims, pb::tensor_proto::DataType::Float)
}

fn value_info_typed(
    name: &str,
    dims: &[Dim],
    elem_type: pb::tensor_proto::DataType,
) -> pb::ValueInfoProto {
    use pb::tensor_shape_proto::{dimension::Value, Dimension};
    let dim = dims
        .iter()
        .map(|d| Dimension {
            denotation: String::new(),
            value: Some(match d {
                Dim::Fixed(n) => Value::DimValue(*n as i64),
                Dim::Param(p) => Value::DimParam(p.to_string()),
            }),
        })
        .collect();
    pb::ValueInfoProto {
        name: name.to_string(),
        r#type: Some(pb::TypeProto {
            denotation: String::new(),
            value: Some(pb::type_proto::Value::TensorType(pb::type_proto::Tensor {
                elem_type: elem_type as i32,
                shape: Some(pb::TensorShapeProto { dim }),
            })),
        }),
        ..Default::default()
    }
}

/// An initializer's values must fill its shape.
fn check_count(name: &str, dims: &[usize], len: usize) -> Result<(), ExportError> {
    let count: usize = dims.iter().product();
    if count != len {
        return Err(ExportError::Graph(format!(
            "initializer {name}: {len} values for shape {dims:?}"
        )));
    }
    Ok(())
}

impl GraphBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    fn claim(&mut self, name: &str) -> Result<(), ExportError> {
        if !self.names.insert(name.to_string()) {
            return Err(ExportError::Graph(format!("name {name:?} used twice")));
        }
        Ok(())
    }

    /// Declares a float graph input.
    pub fn input(&mut self, name: &str, dims: &[Dim]) -> Result<String, ExportError> {
        self.claim(name)?;
        self.inputs.push(value_info(name, dims));
        Ok(name.to_string())
    }

    /// Declares an int64 graph input (token ids).
    pub fn input_i64(&mut self, name: &str, dims: &[Dim]) -> Result<String, ExportError> {
        self.claim(name)?;
        self.inputs.push(value_info_typed(
            name,
            dims,
            pb::tensor_proto::DataType::Int64,
        ));
        Ok(name.to_string())
    }

    /// Stores int64 values (shapes, axes, indices) as an initializer.
    pub fn ints(
        &mut self,
        name: &str,
        dims: &[usize],
        values: &[i64],
    ) -> Result<String, ExportError> {
        check_count(name, dims, values.len())?;
        self.claim(name)?;
        self.initializers.push(pb::TensorProto {
            name: name.to_string(),
            dims: dims.iter().map(|&d| d as i64).collect(),
            data_type: pb::tensor_proto::DataType::Int64 as i32,
            raw_data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
            ..Default::default()
        });
        Ok(name.to_string())
    }

    /// Declares an existing value as a graph output.
    pub fn output(&mut self, name: &str, dims: &[Dim]) {
        self.outputs.push(value_info(name, dims));
    }

    /// Stores a Candle tensor (converted to f32) as an initializer named `name`.
    pub fn tensor(&mut self, name: &str, t: &Tensor) -> Result<String, ExportError> {
        let values: Vec<f32> = t
            .to_dtype(candle_core::DType::F32)?
            .flatten_all()?
            .to_vec1()?;
        self.floats(name, t.dims(), &values)
    }

    /// Stores raw f32 values of the given shape as an initializer.
    pub fn floats(
        &mut self,
        name: &str,
        dims: &[usize],
        values: &[f32],
    ) -> Result<String, ExportError> {
        check_count(name, dims, values.len())?;
        if let Some(bad) = values.iter().find(|v| !v.is_finite()) {
            return Err(ExportError::Graph(format!(
                "initializer {name} holds {bad}"
            )));
        }
        self.claim(name)?;
        self.initializers
            .push(float_initializer(name, dims, values));
        Ok(name.to_string())
    }

    /// Adds a node whose single output is named `output`; its node name is `output` too.
    pub fn node(
        &mut self,
        op: &str,
        inputs: &[&str],
        attrs: &[(&str, Attr)],
        output: &str,
    ) -> Result<String, ExportError> {
        self.claim(output)?;
        let attribute = attrs
            .iter()
            .map(|(name, value)| {
                use pb::attribute_proto::AttributeType as T;
                let mut a = pb::AttributeProto {
                    name: name.to_string(),
                    ..Default::default()
                };
                match value {
                    Attr::Int(i) => {
                        a.r#type = T::Int as i32;
                        a.i = *i;
                    }
                    Attr::Ints(v) => {
                        a.r#type = T::Ints as i32;
                        a.ints = v.clone();
                    }
                    Attr::Float(f) => {
                        a.r#type = T::Float as i32;
                        a.f = *f;
                    }
                }
                a
            })
            .collect();
        let mut node = node_proto(op, inputs, output);
        node.attribute = attribute;
        self.nodes.push(node);
        Ok(output.to_string())
    }

    /// Finishes the model and encodes it as ONNX protobuf bytes.
    pub fn finish(self, graph_name: &str, doc: &str) -> Result<Vec<u8>, ExportError> {
        if self.outputs.is_empty() {
            return Err(ExportError::Graph("no outputs".into()));
        }
        for o in &self.outputs {
            if !self.names.contains(&o.name) {
                return Err(ExportError::Graph(format!(
                    "output {:?} is never produced",
                    o.name
                )));
            }
        }
        let model = pb::ModelProto {
            ir_version: IR_VERSION,
            opset_import: vec![pb::OperatorSetIdProto {
                domain: String::new(),
                version: OPSET,
            }],
            producer_name: "asg-train".into(),
            producer_version: env!("CARGO_PKG_VERSION").into(),
            doc_string: doc.to_string(),
            graph: Some(pb::GraphProto {
                node: self.nodes,
                name: graph_name.to_string(),
                initializer: self.initializers,
                input: self.inputs,
                output: self.outputs,
                ..Default::default()
            }),
            ..Default::default()
        };
        Ok(model.encode_to_vec())
    }
}

/// A Candle module that can write itself into an ONNX graph.
pub trait ExportOnnx {
    /// Appends this module's nodes reading `input`; names start with `prefix`. Returns the name of
    /// the module's output value.
    fn export(
        &self,
        g: &mut GraphBuilder,
        prefix: &str,
        input: &str,
    ) -> Result<String, ExportError>;
}

/// `[input, weight, (bias)]` for a layer, storing its parameters as initializers.
fn weight_inputs(
    g: &mut GraphBuilder,
    prefix: &str,
    input: &str,
    weight: &Tensor,
    bias: Option<&Tensor>,
) -> Result<Vec<String>, ExportError> {
    let mut inputs = vec![
        input.to_string(),
        g.tensor(&format!("{prefix}.weight"), weight)?,
    ];
    if let Some(b) = bias {
        inputs.push(g.tensor(&format!("{prefix}.bias"), b)?);
    }
    Ok(inputs)
}

impl ExportOnnx for candle_nn::Conv2d {
    fn export(
        &self,
        g: &mut GraphBuilder,
        prefix: &str,
        input: &str,
    ) -> Result<String, ExportError> {
        let cfg = self.config();
        let inputs = weight_inputs(g, prefix, input, self.weight(), self.bias())?;
        let (kh, kw) = match self.weight().dims() {
            [_, _, kh, kw] => (*kh as i64, *kw as i64),
            d => {
                return Err(ExportError::Graph(format!(
                    "{prefix}: conv weight of shape {d:?}"
                )))
            }
        };
        let p = cfg.padding as i64;
        let refs: Vec<&str> = inputs.iter().map(String::as_str).collect();
        g.node(
            "Conv",
            &refs,
            &[
                ("kernel_shape", Attr::Ints(vec![kh, kw])),
                ("pads", Attr::Ints(vec![p, p, p, p])),
                ("strides", Attr::Ints(vec![cfg.stride as i64; 2])),
                ("dilations", Attr::Ints(vec![cfg.dilation as i64; 2])),
                ("group", Attr::Int(cfg.groups as i64)),
            ],
            &format!("{prefix}.out"),
        )
    }
}

impl ExportOnnx for candle_nn::BatchNorm {
    fn export(
        &self,
        g: &mut GraphBuilder,
        prefix: &str,
        input: &str,
    ) -> Result<String, ExportError> {
        let mean = self.running_mean();
        let n = mean.dims1()?;
        let (scale, bias) = match self.weight_and_bias() {
            Some((w, b)) => (
                g.tensor(&format!("{prefix}.weight"), w)?,
                g.tensor(&format!("{prefix}.bias"), b)?,
            ),
            None => (
                g.floats(&format!("{prefix}.weight"), &[n], &vec![1.0; n])?,
                g.floats(&format!("{prefix}.bias"), &[n], &vec![0.0; n])?,
            ),
        };
        let mean = g.tensor(&format!("{prefix}.running_mean"), mean)?;
        let running_var: Vec<f32> = self.running_var().flatten_all()?.to_vec1()?;
        if let Some(v) = running_var.iter().find(|&&v| v < 0.0) {
            return Err(ExportError::Graph(format!(
                "{prefix}: running variance {v} is negative (runtimes disagree on the NaN it makes)"
            )));
        }
        let var = g.tensor(&format!("{prefix}.running_var"), self.running_var())?;
        g.node(
            "BatchNormalization",
            &[input, &scale, &bias, &mean, &var],
            &[("epsilon", Attr::Float(self.eps() as f32))],
            &format!("{prefix}.out"),
        )
    }
}

impl ExportOnnx for candle_nn::Linear {
    fn export(
        &self,
        g: &mut GraphBuilder,
        prefix: &str,
        input: &str,
    ) -> Result<String, ExportError> {
        let inputs = weight_inputs(g, prefix, input, self.weight(), self.bias())?;
        let refs: Vec<&str> = inputs.iter().map(String::as_str).collect();
        // Candle's Linear is x W^T + b: Gemm with transB.
        g.node(
            "Gemm",
            &refs,
            &[("transB", Attr::Int(1))],
            &format!("{prefix}.out"),
        )
    }
}
