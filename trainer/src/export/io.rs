//! The contract of the exported files: `image.onnx`'s outputs and `text.onnx`'s inputs and outputs
//! (names, order, meaning), the same outputs computed by the Candle model (the parity reference),
//! and one image's outputs flattened.

use crate::model::AsgModel;
use candle_core::Tensor;
use candle_nn::Module;

/// The image model's outputs, in graph order, with their shapes (`b` = batch).
pub const IMAGE_OUTPUTS: [(&str, &str); 8] = [
    ("embedding", "[b, embed] global image embedding, unit L2 norm"),
    (
        "image_features",
        "[b, channels] the image encoder's pooled features (linear probing)",
    ),
    (
        "finding_logits",
        "[b, findings] image-level finding logits (tag decoder)",
    ),
    (
        "tag_attention",
        "[b, findings, cells] each finding's attention over the grid (row-major cells): its heatmap",
    ),
    (
        "region_boxes",
        "[b, regions, 4] anatomy boxes x1, y1, x2, y2 in 0..1 of the model input",
    ),
    (
        "region_embeddings",
        "[b, regions, embed] region features pooled over the predicted boxes, unit L2 norm",
    ),
    (
        "region_logits",
        "[b, regions, findings] region-finding logits over the predicted boxes",
    ),
    (
        "finding_maps",
        "[b, findings, cells] the region-finding head applied to each grid cell (logits): a class activation map per finding",
    ),
];

/// The image model's last output, only when the model has an anatomy head (after
/// [`IMAGE_OUTPUTS`]; the manifest's `anatomy` names its channels).
pub const ANATOMY_OUTPUT: (&str, &str) = (
    "anatomy_masks",
    "[b, structures, side, side] each anatomy structure's mask as probabilities over the model input square (the manifest's `anatomy` names the structures)",
);

/// The text model's outputs.
pub const TEXT_OUTPUTS: [(&str, &str); 2] = [
    (
        "report_embedding",
        "[b, embed] the report's embedding (first token), unit L2 norm",
    ),
    (
        "sentence_embeddings",
        "[b, sentences, embed] each `averaging` row's token average, projected, unit L2 norm",
    ),
];

/// One image's outputs, flattened per output.
#[derive(Debug, Clone)]
pub struct ImagePrediction {
    pub embedding: Vec<f32>,
    pub features: Vec<f32>,
    pub finding_logits: Vec<f32>,
    /// `[findings, cells]`.
    pub tag_attention: Vec<f32>,
    /// `[regions, 4]` in 0..1 of the model input.
    pub boxes: Vec<f32>,
    pub region_embeddings: Vec<f32>,
    /// `[regions, findings]`.
    pub region_logits: Vec<f32>,
    /// `[findings, cells]`: the region head per cell (class activation maps).
    pub finding_maps: Vec<f32>,
}

/// The Candle model's image outputs in [`IMAGE_OUTPUTS`] order (then [`ANATOMY_OUTPUT`] with an
/// anatomy head), for parity checks: exactly what `image.onnx` computes (regions pooled over the
/// predicted boxes).
pub fn image_outputs(model: &AsgModel, x: &Tensor) -> candle_core::Result<Vec<Tensor>> {
    let out = model.image(x, false)?;
    let (emb, logits) = model.regions(&out.grid, &out.boxes)?;
    let maps = model
        .region_head
        .forward(&out.grid)?
        .transpose(1, 2)?
        .contiguous()?;
    let mut outputs = vec![
        out.global,
        out.pooled,
        out.tag_logits,
        out.tag_attention,
        out.boxes,
        emb,
        logits,
        maps,
    ];
    if let Some(anatomy) = out.anatomy {
        outputs.push(crate::model::layers::sigmoid(&anatomy)?);
    }
    Ok(outputs)
}

/// The Candle model's text outputs in [`TEXT_OUTPUTS`] order.
pub fn text_outputs(
    model: &AsgModel,
    ids: &Tensor,
    mask: &Tensor,
    averaging: &Tensor,
) -> candle_core::Result<Vec<Tensor>> {
    let out = model.text(ids, mask)?;
    let sentences = model.sentences(&out.tokens, averaging)?;
    Ok(vec![out.report, sentences])
}

/// Inputs of `text.onnx` for one report: ids (padded to `max_tokens`), the mask, and rows
/// averaging the tokens of each `(start, end)` token range (`[k, max_tokens]`, row-major).
#[derive(Debug, Clone, PartialEq)]
pub struct TextInputs {
    pub ids: Vec<i64>,
    pub mask: Vec<f32>,
    pub averaging: Vec<f32>,
    pub sentences: usize,
}

/// Builds [`TextInputs`] from token ids (at most `max_tokens` are kept) and, per sentence, the
/// positions of its tokens (positions past the kept tokens are dropped).
pub fn text_inputs(ids: &[u32], sentences: &[Vec<usize>], max_tokens: usize) -> TextInputs {
    let n = ids.len().min(max_tokens);
    let mut out = TextInputs {
        ids: vec![asg_report::tokenizer::PAD as i64; max_tokens],
        mask: vec![0.0; max_tokens],
        averaging: vec![0.0; sentences.len() * max_tokens],
        sentences: sentences.len(),
    };
    for (k, &id) in ids.iter().take(n).enumerate() {
        out.ids[k] = id as i64;
        out.mask[k] = 1.0;
    }
    for (row, toks) in sentences.iter().enumerate() {
        let kept: Vec<usize> = toks.iter().copied().filter(|&t| t < n).collect();
        for &t in &kept {
            out.averaging[row * max_tokens + t] = 1.0 / kept.len() as f32;
        }
    }
    out
}
