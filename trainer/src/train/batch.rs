//! A batch as tensors, and the weighted ASG losses of one forward pass.

use crate::config::Config;
use crate::data::Example;
use crate::model::losses;
use crate::model::AsgModel;
use crate::vocab::{FINDINGS, REGIONS};
use candle_core::{DType, Device, Tensor};

/// A batch as tensors.
pub struct Batch {
    pub images: Tensor,
    pub boxes: Tensor,
    pub box_mask: Tensor,
    pub ids: Tensor,
    pub id_mask: Tensor,
    pub tags: Tensor,
    /// 1 where a tag's target is known.
    pub tag_mask: Tensor,
    pub region_targets: Tensor,
    /// 1 where a region-finding target is known (the box's presence is applied on top).
    pub region_known: Tensor,
    /// Per image: the regions that sentences name, and `[1, k, tokens]` rows averaging the tokens
    /// of those sentences.
    pub arsa: Vec<(Vec<u32>, Tensor)>,
    /// Anatomy mask targets `[b, c, side, side]` and which are known `[b, c]`, when the examples
    /// carry them.
    pub anatomy: Option<(Tensor, Tensor)>,
    /// Lesion-cell targets `[b, cells, findings]` and which findings' cells are known `[b, 1,
    /// findings]` (`data::lesions`), when the examples carry them.
    pub lesions: Option<(Tensor, Tensor)>,
}

/// Stacks examples into a batch.
pub fn collate(examples: &[Example], size: usize, device: &Device) -> candle_core::Result<Batch> {
    let b = examples.len();
    let t = examples.iter().map(|e| e.ids.len()).max().unwrap_or(2);
    let mut images = Vec::with_capacity(b * size * size);
    let mut boxes = Vec::with_capacity(b * REGIONS * 4);
    let mut box_mask = Vec::with_capacity(b * REGIONS);
    let mut ids = Vec::with_capacity(b * t);
    let mut id_mask = Vec::with_capacity(b * t);
    let mut tags = Vec::with_capacity(b * FINDINGS);
    let mut tag_mask = Vec::with_capacity(b * FINDINGS);
    let mut region_targets = Vec::with_capacity(b * REGIONS * FINDINGS);
    let mut region_known = Vec::with_capacity(b * REGIONS * FINDINGS);
    let mut arsa = Vec::with_capacity(b);
    let channels = crate::vocab::ANATOMY.len();
    let with_anatomy = examples
        .iter()
        .all(|e| e.anatomy_known.len() == channels && !e.anatomy.is_empty());
    let mut anatomy = Vec::new();
    let mut anatomy_known = Vec::new();
    let with_lesions = examples
        .iter()
        .all(|e| e.lesions.known.len() == FINDINGS && !e.lesions.targets.is_empty());
    let (mut lesion_targets, mut lesion_known) = (Vec::new(), Vec::new());
    for e in examples {
        if with_lesions {
            lesion_targets.extend_from_slice(&e.lesions.targets);
            lesion_known.extend_from_slice(&e.lesions.known);
        }
        if with_anatomy {
            anatomy.extend_from_slice(&e.anatomy);
            anatomy_known.extend_from_slice(&e.anatomy_known);
        }
        images.extend_from_slice(&e.image);
        for (bx, p) in e.boxes.iter().zip(&e.box_present) {
            boxes.extend_from_slice(bx);
            box_mask.push(if *p { 1.0f32 } else { 0.0 });
        }
        for k in 0..t {
            ids.push(e.ids.get(k).copied().unwrap_or(asg_report::tokenizer::PAD));
            id_mask.push(if k < e.ids.len() { 1.0f32 } else { 0.0 });
        }
        tags.extend_from_slice(&e.tags);
        tag_mask.extend_from_slice(&e.tag_mask);
        region_targets.extend_from_slice(&e.region_targets);
        region_known.extend_from_slice(&e.region_mask);
        let k = e.region_sentences.len();
        let mut avg = vec![0.0f32; k * t];
        for (row, (_, toks)) in e.region_sentences.iter().enumerate() {
            for &tok in toks {
                if tok < t {
                    avg[row * t + tok] = 1.0 / toks.len() as f32;
                }
            }
        }
        let regions: Vec<u32> = e.region_sentences.iter().map(|(r, _)| *r as u32).collect();
        arsa.push((regions, Tensor::from_vec(avg, (1, k, t), device)?));
    }
    let anatomy = if with_anatomy && b > 0 {
        let side = (examples[0].anatomy.len() / channels).isqrt();
        if anatomy.len() != b * channels * side * side {
            candle_core::bail!(
                "anatomy targets of {} values for {b} images of side {side}",
                anatomy.len()
            );
        }
        Some((
            Tensor::from_vec(anatomy, (b, channels, side, side), device)?,
            Tensor::from_vec(anatomy_known, (b, channels), device)?,
        ))
    } else {
        None
    };
    let lesions = if with_lesions && b > 0 {
        let cells = examples[0].lesions.targets.len() / FINDINGS;
        if lesion_targets.len() != b * cells * FINDINGS {
            candle_core::bail!(
                "lesion targets of {} values for {b} images of {cells} cells",
                lesion_targets.len()
            );
        }
        Some((
            Tensor::from_vec(lesion_targets, (b, cells, FINDINGS), device)?,
            Tensor::from_vec(lesion_known, (b, 1, FINDINGS), device)?,
        ))
    } else {
        None
    };
    Ok(Batch {
        anatomy,
        lesions,
        images: Tensor::from_vec(images, (b, 1, size, size), device)?,
        boxes: Tensor::from_vec(boxes, (b, REGIONS, 4), device)?,
        box_mask: Tensor::from_vec(box_mask, (b, REGIONS), device)?,
        ids: Tensor::from_vec(ids, (b, t), device)?,
        id_mask: Tensor::from_vec(id_mask, (b, t), device)?,
        tags: Tensor::from_vec(tags, (b, FINDINGS), device)?,
        tag_mask: Tensor::from_vec(tag_mask, (b, FINDINGS), device)?,
        region_targets: Tensor::from_vec(region_targets, (b, REGIONS, FINDINGS), device)?,
        region_known: Tensor::from_vec(region_known, (b, REGIONS, FINDINGS), device)?,
        arsa,
    })
}

/// The loss terms of a batch (unweighted) and the weighted total.
pub struct Losses {
    pub terms: Vec<(&'static str, Tensor)>,
    pub total: Tensor,
}

/// Runs the model on a batch and computes every loss term.
pub fn compute_losses(
    model: &AsgModel,
    batch: &Batch,
    config: &Config,
    train: bool,
) -> candle_core::Result<Losses> {
    let w = &config.loss;
    let tau = w.temperature;
    let img = model.image(&batch.images, train)?;
    let txt = model.text(&batch.ids, &batch.id_mask)?;
    let ira = losses::ira(&img.global, &txt.report, tau)?;
    let soft = losses::soft_label(&img.global, &txt.report, &batch.tags, tau)?;
    let tag = losses::bce_with_logits(&img.tag_logits, &batch.tags, &batch.tag_mask)?;
    let b = batch.boxes.dim(0)?;
    let pred = img.boxes.reshape((b * REGIONS, 4))?;
    let target = batch.boxes.reshape((b * REGIONS, 4))?;
    let mask = batch.box_mask.reshape(b * REGIONS)?;
    let box_l1 = losses::box_l1(&pred, &target, &mask)?;
    let box_giou = losses::box_giou(&pred, &target, &mask)?;
    // Regions pooled over the TRUE boxes in training (DESIGN.md).
    let (region_emb, region_logits) = model.regions(&img.grid, &batch.boxes)?;
    let region_mask = batch
        .box_mask
        .unsqueeze(2)?
        .broadcast_as((b, REGIONS, FINDINGS))?
        .mul(&batch.region_known)?
        .contiguous()?;
    let region = losses::bce_with_logits(&region_logits, &batch.region_targets, &region_mask)?;
    let mut arsa_terms = Vec::new();
    for (i, (regions, avg)) in batch.arsa.iter().enumerate() {
        if regions.len() < 2 {
            continue;
        }
        let idx = Tensor::from_vec(regions.clone(), regions.len(), region_emb.device())?;
        let r = region_emb.get(i)?.index_select(&idx, 0)?;
        let s = model
            .sentences(&txt.tokens.narrow(0, i, 1)?, avg)?
            .squeeze(0)?;
        arsa_terms.push(losses::arsa(&r, &s, tau)?);
    }
    let arsa = if arsa_terms.is_empty() {
        Tensor::zeros((), DType::F32, img.global.device())?
    } else {
        let n = arsa_terms.len();
        (Tensor::stack(&arsa_terms, 0)?.sum_all()? / n as f64)?
    };
    let mut terms = vec![
        ("ira", ira),
        ("arsa", arsa),
        ("tag", tag),
        ("soft", soft),
        ("box_l1", box_l1),
        ("box_giou", box_giou),
        ("region", region),
    ];
    let mut weights = vec![w.ira, w.arsa, w.tag, w.soft, w.box_l1, w.box_giou, w.region];
    if let (Some(logits), Some((targets, known))) = (&img.anatomy, &batch.anatomy) {
        terms.push(("anatomy", losses::anatomy(logits, targets, known)?));
        weights.push(w.anatomy);
    }
    if let Some((targets, known)) = &batch.lesions {
        if w.lesion != 0.0 {
            let cells = model.cell_logits(&img.grid)?; // [b, cells, findings]
            let mask = known.broadcast_as(cells.shape())?.contiguous()?;
            terms.push(("lesion", losses::bce_with_logits(&cells, targets, &mask)?));
            weights.push(w.lesion);
        }
        if w.lesion_attention != 0.0 {
            // A finding is outlined on a film where any of its cells is marked.
            let outlined = targets.max(1)?; // [b, findings]
            terms.push((
                "lesion_attention",
                losses::attention_on(&img.tag_attention, &targets.transpose(1, 2)?, &outlined)?,
            ));
            weights.push(w.lesion_attention);
        }
    }
    let mut total = Tensor::zeros((), DType::F32, img.global.device())?;
    for ((_, t), wt) in terms.iter().zip(weights) {
        if wt != 0.0 {
            total = (total + (t * wt)?)?;
        }
    }
    Ok(Losses { terms, total })
}
