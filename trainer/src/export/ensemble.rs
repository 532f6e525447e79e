//! Several exported image models merged into one `image.onnx`: the first (the primary) runs on
//! the bundle's input; each other member on that input area-averaged down to its own size (two
//! MatMuls with constant weights, the same averaging as asg-dicom's `area_resize`); the finding
//! and region logits are the members' means, every other output (boxes, heatmaps, embeddings)
//! is the primary's. The bundle keeps one input, one set of outputs and one manifest, so the
//! plugin, the browser and the Python package run it unchanged.

use crate::export::onnx::{float_initializer as floats, node_proto as node, ExportError};
use prost::Message;
use tract_onnx::pb;

/// The outputs averaged over the members; the others are the primary's.
pub const AVERAGED: [&str; 2] = ["finding_logits", "region_logits"];

/// One member: its `image.onnx` bytes and its square input side.
pub struct Member<'a> {
    pub onnx: &'a [u8],
    pub input_size: usize,
}

fn decode(onnx: &[u8], which: &str) -> Result<pb::ModelProto, ExportError> {
    let model = pb::ModelProto::decode(onnx)
        .map_err(|e| ExportError::Graph(format!("{which}: not an ONNX model: {e}")))?;
    if model.graph.is_none() {
        return Err(ExportError::Graph(format!(
            "{which}: the model has no graph"
        )));
    }
    Ok(model)
}

/// Renames every tensor and node of `graph` through `rename` (None: unchanged). Optional inputs
/// left empty ("") stay empty. Graph-valued attributes (If, Loop) are refused: our exports have
/// none, and their inner scopes would need the same renaming.
fn rename_all(
    graph: &mut pb::GraphProto,
    rename: &dyn Fn(&str) -> Option<String>,
) -> Result<(), ExportError> {
    let apply = |s: &mut String| {
        if !s.is_empty() {
            if let Some(n) = rename(s) {
                *s = n;
            }
        }
    };
    for node in &mut graph.node {
        if node
            .attribute
            .iter()
            .any(|a| a.g.is_some() || !a.graphs.is_empty())
        {
            return Err(ExportError::Graph(format!(
                "node {:?} ({}) holds a subgraph: not merged",
                node.name, node.op_type
            )));
        }
        node.input.iter_mut().for_each(apply);
        node.output.iter_mut().for_each(apply);
        apply(&mut node.name);
    }
    graph
        .initializer
        .iter_mut()
        .for_each(|t| apply(&mut t.name));
    graph.input.iter_mut().for_each(|v| apply(&mut v.name));
    graph.output.iter_mut().for_each(|v| apply(&mut v.name));
    graph.value_info.iter_mut().for_each(|v| apply(&mut v.name));
    Ok(())
}

/// The `[to, from]` matrix of 1-D area averaging from `from` samples to `to` (rows sum to 1).
pub fn area_matrix(from: usize, to: usize) -> Vec<f32> {
    let mut m = vec![0f32; to * from];
    for j in 0..from {
        let mut unit = vec![0f32; from];
        unit[j] = 1.0;
        let column = asg_dicom::area_resize(&unit, 1, from as u32, 1, to as u32);
        for (i, v) in column.iter().enumerate() {
            m[i * from + j] = *v;
        }
    }
    m
}

/// Merges `primary` and `others` into one image model (see the module text). Every member must
/// take one input, produce the primary's outputs, share its opset, and take an input no larger
/// than the primary's.
pub fn merge_image_models(primary: &Member, others: &[Member]) -> Result<Vec<u8>, ExportError> {
    let mut model = decode(primary.onnx, "the primary model")?;
    let Some(graph) = model.graph.as_mut() else {
        return Err(ExportError::Graph("the primary model has no graph".into()));
    };
    let [input] = graph.input.as_slice() else {
        return Err(ExportError::Graph(
            "the primary model must have exactly one input".into(),
        ));
    };
    let input = input.name.clone();
    let outputs = graph.output.clone();
    for name in AVERAGED {
        if !outputs.iter().any(|o| o.name == name) {
            return Err(ExportError::Graph(format!(
                "the primary model has no output {name:?}"
            )));
        }
    }
    // The primary's averaged outputs become members' values; the means take their names.
    rename_all(graph, &|n| AVERAGED.contains(&n).then(|| format!("m0/{n}")))?;
    graph.output = outputs;
    let opset = model.opset_import.clone();
    let graph = model.graph.get_or_insert_with(Default::default);
    for (k, member) in others.iter().enumerate() {
        let k = k + 1;
        let which = format!("member {k}");
        let m = decode(member.onnx, &which)?;
        if m.opset_import != opset {
            return Err(ExportError::Graph(format!(
                "{which} imports other opsets than the primary"
            )));
        }
        if member.input_size > primary.input_size || member.input_size == 0 {
            return Err(ExportError::Graph(format!(
                "{which} takes {} px; the primary {}: members must not be larger",
                member.input_size, primary.input_size
            )));
        }
        let Some(mut g) = m.graph else {
            return Err(ExportError::Graph(format!("{which} has no graph")));
        };
        let [member_input] = g.input.as_slice() else {
            return Err(ExportError::Graph(format!(
                "{which} must have exactly one input"
            )));
        };
        let member_input = member_input.name.clone();
        for name in AVERAGED {
            if !g.output.iter().any(|o| o.name == name) {
                return Err(ExportError::Graph(format!(
                    "{which} has no output {name:?}"
                )));
            }
        }
        let prefix = format!("m{k}/");
        rename_all(&mut g, &|n| Some(format!("{prefix}{n}")))?;
        let fed = format!("{prefix}{member_input}");
        let (s, t) = (primary.input_size, member.input_size);
        if s == t {
            graph.node.push(node("Identity", &[&input], &fed));
        } else {
            let rows = area_matrix(s, t);
            let mut columns = vec![0f32; s * t];
            for i in 0..t {
                for j in 0..s {
                    columns[j * t + i] = rows[i * s + j];
                }
            }
            let (r, c, half) = (
                format!("{prefix}downscale_rows"),
                format!("{prefix}downscale_columns"),
                format!("{prefix}{member_input}_rows_averaged"),
            );
            graph.initializer.push(floats(&r, &[t, s], &rows));
            graph.initializer.push(floats(&c, &[s, t], &columns));
            // [t, s] @ [b, 1, s, s] -> [b, 1, t, s]; then @ [s, t] -> [b, 1, t, t].
            graph.node.push(node("MatMul", &[&r, &input], &half));
            graph.node.push(node("MatMul", &[&half, &c], &fed));
        }
        graph.node.extend(g.node);
        graph.initializer.extend(g.initializer);
    }
    let count = others.len() + 1;
    graph.initializer.push(floats(
        "ensemble/one_over_members",
        &[],
        &[1.0 / count as f32],
    ));
    for name in AVERAGED {
        let parts: Vec<String> = (0..count).map(|k| format!("m{k}/{name}")).collect();
        let parts: Vec<&str> = parts.iter().map(|s| s.as_str()).collect();
        let sum = format!("ensemble/{name}_sum");
        graph.node.push(node("Sum", &parts, &sum));
        graph
            .node
            .push(node("Mul", &[&sum, "ensemble/one_over_members"], name));
    }
    graph.value_info.clear();
    model.doc_string = format!(
        "ensemble of {count} ASG image models: finding and region logits averaged, the rest from the first. {}",
        model.doc_string
    );
    Ok(model.encode_to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_area_matrix_averages_as_area_resize_does() {
        let m = area_matrix(5, 4);
        // Rows sum to 1; 5 -> 4 covers 1.25 source samples per output.
        for i in 0..4 {
            let s: f32 = m[i * 5..(i + 1) * 5].iter().sum();
            assert!((s - 1.0).abs() < 1e-6, "row {i} sums to {s}");
        }
        // First output: all of sample 0 and a quarter of sample 1, over 1.25.
        assert!(
            (m[0] - 0.8).abs() < 1e-6 && (m[1] - 0.2).abs() < 1e-6,
            "{m:?}"
        );
        let src = [1.0, 2.0, 3.0, 4.0, 5.0];
        let direct = asg_dicom::area_resize(&src, 1, 5, 1, 4);
        for i in 0..4 {
            let via: f32 = (0..5).map(|j| m[i * 5 + j] * src[j]).sum();
            assert!((via - direct[i]).abs() < 1e-5);
        }
    }
}
