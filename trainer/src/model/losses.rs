//! The ASG losses (DESIGN.md) and ours for boxes and regions, each from composed Candle operations
//! (so that every input gets its gradient) and tested against hand-computed cases.

/// The names of the loss terms, in log order.
pub const LOSS_NAMES: [&str; 7] = ["ira", "arsa", "tag", "soft", "box_l1", "box_giou", "region"];

use candle_core::{Result, Tensor, D};

/// Mean over rows of -log softmax(row)[i] at the diagonal: cross-entropy with targets 0..n.
pub fn cross_entropy_diagonal(logits: &Tensor) -> Result<Tensor> {
    let n = logits.dim(0)?;
    let log_p = candle_nn::ops::log_softmax(logits, D::Minus1)?;
    let eye = Tensor::eye(n, log_p.dtype(), log_p.device())?;
    (log_p * eye)?.sum_all()?.neg()? / n as f64
}

/// Image-report alignment: Z = v tᵀ / τ; CE(Z, diag) + CE(Zᵀ, diag). `v`, `t` unit-norm rows.
pub fn ira(v: &Tensor, t: &Tensor, temperature: f64) -> Result<Tensor> {
    let z = (v.matmul(&t.t()?)? / temperature)?;
    cross_entropy_diagonal(&z)? + cross_entropy_diagonal(&z.t()?.contiguous()?)?
}

/// Anatomical region-sentence alignment within one image: `regions` and `sentences` `[k, e]`,
/// row i of each being a region and the sentences about it. 0 when k < 2 (nothing to contrast).
pub fn arsa(regions: &Tensor, sentences: &Tensor, temperature: f64) -> Result<Tensor> {
    if regions.dim(0)? < 2 {
        return Tensor::zeros((), regions.dtype(), regions.device());
    }
    ira(regions, sentences, temperature)
}

/// Soft-label targets from tag vectors `[n, tags]`: ŷ = y/‖y‖, S = ŷŷᵀ,
/// T = rownorm(0.8·I + 0.2·S + 1e-6). Not differentiated (targets).
pub fn soft_targets(tags: &Tensor) -> Result<Tensor> {
    let n = tags.dim(0)?;
    let norm = (tags.sqr()?.sum_keepdim(1)?.sqrt()? + 1e-12)?;
    let y = tags.broadcast_div(&norm)?;
    let s = y.matmul(&y.t()?)?;
    let eye = Tensor::eye(n, tags.dtype(), tags.device())?;
    let t = (((eye * 0.8)? + (s * 0.2)?)? + 1e-6)?;
    let rows = t.sum_keepdim(1)?;
    t.broadcast_div(&rows)?.detach().contiguous()
}

/// Mean over rows of KL(p‖q) + KL(q‖p) for row distributions.
fn symmetric_kl(p: &Tensor, q: &Tensor) -> Result<Tensor> {
    let lp = p.log()?;
    let lq = q.log()?;
    let diff = (lp - lq)?;
    let n = p.dim(0)?;
    ((p - q)? * diff)?.sum_all()? / n as f64
}

/// External soft-label contrast: symmetric KL between T and softmax(Z), and between T and
/// softmax(Zᵀ), Z = v tᵀ / τ.
pub fn soft_label(v: &Tensor, t: &Tensor, tags: &Tensor, temperature: f64) -> Result<Tensor> {
    let target = soft_targets(tags)?;
    let z = (v.matmul(&t.t()?)? / temperature)?;
    let p_rows = candle_nn::ops::softmax(&z, D::Minus1)?;
    let p_cols = candle_nn::ops::softmax(&z.t()?.contiguous()?, D::Minus1)?;
    let eps = 1e-8;
    symmetric_kl(&target, &(p_rows + eps)?)?
        + symmetric_kl(&target.t()?.contiguous()?, &(p_cols + eps)?)?
}

/// Binary cross-entropy on logits, averaged over the elements where `mask` is 1
/// (max(x,0) - x·y + log(1 + e^-|x|)).
pub fn bce_with_logits(logits: &Tensor, targets: &Tensor, mask: &Tensor) -> Result<Tensor> {
    let per =
        ((logits.relu()? - (logits * targets)?)? + (logits.abs()?.neg()?.exp()? + 1.0)?.log()?)?;
    let count = (mask.sum_all()? + 1e-6)?;
    (per * mask)?.sum_all()?.div(&count)
}

/// Minus the log of the attention share on a finding's lesion cells: `attention`
/// `[b, findings, cells]` (each row a distribution over the cells) summed where `cells`
/// `[b, findings, cells]` is 1, averaged over the (image, finding) pairs where `outlined`
/// `[b, findings]` is 1.
pub fn attention_on(attention: &Tensor, cells: &Tensor, outlined: &Tensor) -> Result<Tensor> {
    let share = (attention * cells)?.sum(2)?; // [b, findings]
    let per = ((share + 1e-4)?.log()? * -1.0)?;
    let count = (outlined.sum_all()? + 1e-6)?;
    (per * outlined)?.sum_all()?.div(&count)
}

/// The anatomy masks' loss: binary cross-entropy over the pixels plus a soft Dice term
/// (1 - (2 sum(p t) + 1) / (sum(p) + sum(t) + 1)), each averaged over the (image, channel) pairs
/// where `known` `[b, c]` is 1; logits and targets `[b, c, h, w]`.
pub fn anatomy(logits: &Tensor, targets: &Tensor, known: &Tensor) -> Result<Tensor> {
    let (b, c, h, w) = logits.dims4()?;
    let logits = logits.reshape((b, c, h * w))?;
    let targets = targets.reshape((b, c, h * w))?;
    let bce = ((logits.relu()? - (&logits * &targets)?)?
        + (logits.abs()?.neg()?.exp()? + 1.0)?.log()?)?
    .mean(2)?;
    let p = crate::model::layers::sigmoid(&logits)?;
    let overlap = (&p * &targets)?.sum(2)?;
    let dice = (1.0 - ((overlap * 2.0)? + 1.0)?.div(&((p.sum(2)? + targets.sum(2)?)? + 1.0)?)?)?;
    let count = (known.sum_all()? + 1e-6)?;
    ((bce + dice)? * known)?.sum_all()?.div(&count)
}

/// Mean absolute difference over the boxes where `mask` `[n]` is 1; boxes `[n, 4]`.
pub fn box_l1(pred: &Tensor, target: &Tensor, mask: &Tensor) -> Result<Tensor> {
    let per = (pred - target)?.abs()?.mean(1)?;
    let count = (mask.sum_all()? + 1e-6)?;
    (per * mask)?.sum_all()?.div(&count)
}

/// Mean of 1 - GIoU over the boxes where `mask` is 1; boxes `[n, 4]` as x1, y1, x2, y2.
pub fn box_giou(pred: &Tensor, target: &Tensor, mask: &Tensor) -> Result<Tensor> {
    let c = |t: &Tensor, i: usize| t.narrow(1, i, 1).and_then(|x| x.squeeze(1));
    let (px1, py1, px2, py2) = (c(pred, 0)?, c(pred, 1)?, c(pred, 2)?, c(pred, 3)?);
    let (tx1, ty1, tx2, ty2) = (c(target, 0)?, c(target, 1)?, c(target, 2)?, c(target, 3)?);
    let area = |x1: &Tensor, y1: &Tensor, x2: &Tensor, y2: &Tensor| -> Result<Tensor> {
        (x2 - x1)?.relu()?.mul(&(y2 - y1)?.relu()?)
    };
    let inter = area(
        &px1.maximum(&tx1)?,
        &py1.maximum(&ty1)?,
        &px2.minimum(&tx2)?,
        &py2.minimum(&ty2)?,
    )?;
    let union = ((area(&px1, &py1, &px2, &py2)? + area(&tx1, &ty1, &tx2, &ty2)?)? - &inter)?;
    let iou = inter.div(&(&union + 1e-7)?)?;
    let hull = area(
        &px1.minimum(&tx1)?,
        &py1.minimum(&ty1)?,
        &px2.maximum(&tx2)?,
        &py2.maximum(&ty2)?,
    )?;
    let giou = (iou - ((&hull - &union)? / (&hull + 1e-7)?)?)?;
    let per = (1.0 - giou)?;
    let count = (mask.sum_all()? + 1e-6)?;
    (per * mask)?.sum_all()?.div(&count)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn t(v: &[f32], shape: &[usize]) -> Tensor {
        Tensor::from_vec(v.to_vec(), shape, &Device::Cpu).unwrap()
    }

    fn scalar(x: Tensor) -> f64 {
        x.to_dtype(candle_core::DType::F64)
            .unwrap()
            .to_scalar::<f64>()
            .unwrap()
    }

    #[test]
    fn ira_on_two_orthogonal_pairs() {
        // v = t = I: Z = I/τ. Row CE = -log(e^(1/τ) / (e^(1/τ) + 1)), the same for columns.
        let eye = t(&[1.0, 0.0, 0.0, 1.0], &[2, 2]);
        let tau = 0.5;
        let row = -(f64::exp(2.0) / (f64::exp(2.0) + 1.0)).ln();
        let got = scalar(ira(&eye, &eye, tau).unwrap());
        assert!((got - 2.0 * row).abs() < 1e-5, "{got}");
    }

    #[test]
    fn attention_on_takes_the_share_on_the_lesion_cells_of_outlined_findings_only() {
        // One image, two findings, three cells. Finding 0: attention 0.5, 0.3, 0.2 with the
        // lesion on cells 1 and 2 (share 0.5); finding 1 not outlined (its row ignored).
        let attention = t(&[0.5, 0.3, 0.2, 0.1, 0.1, 0.8], &[1, 2, 3]);
        let cells = t(&[0.0, 1.0, 1.0, 1.0, 0.0, 0.0], &[1, 2, 3]);
        let outlined = t(&[1.0, 0.0], &[1, 2]);
        let got = scalar(attention_on(&attention, &cells, &outlined).unwrap());
        let want = -(0.5f64 + 1e-4).ln();
        assert!((got - want).abs() < 1e-5, "{got} against {want}");
        // Both outlined: the mean of the two.
        let both = t(&[1.0, 1.0], &[1, 2]);
        let got = scalar(attention_on(&attention, &cells, &both).unwrap());
        let want = (want - (0.1f64 + 1e-4).ln()) / 2.0;
        assert!((got - want).abs() < 1e-5, "{got} against {want}");
    }

    #[test]
    fn arsa_needs_two_regions() {
        let one = t(&[1.0, 0.0], &[1, 2]);
        assert_eq!(scalar(arsa(&one, &one, 0.1).unwrap()), 0.0);
    }

    #[test]
    fn soft_targets_by_hand() {
        // Tags [1,0] and [1,0]: S = all ones; T row = (0.8 + 0.2 + 1e-6, 0.2 + 1e-6) / sum.
        let tags = t(&[1.0, 0.0, 1.0, 0.0], &[2, 2]);
        let got: Vec<Vec<f32>> = soft_targets(&tags).unwrap().to_vec2().unwrap();
        let (a, b) = (1.0 + 1e-6, 0.2 + 1e-6);
        assert!((got[0][0] as f64 - a / (a + b)).abs() < 1e-6);
        assert!((got[0][1] as f64 - b / (a + b)).abs() < 1e-6);
        // A study with no tags only matches itself (its row of S is 0).
        let tags = t(&[0.0, 0.0, 1.0, 0.0], &[2, 2]);
        let got: Vec<Vec<f32>> = soft_targets(&tags).unwrap().to_vec2().unwrap();
        assert!(
            (got[0][0] - 0.8 / (0.8 + 2e-6) as f32).abs() < 1e-5,
            "{got:?}"
        );
    }

    #[test]
    fn bce_by_hand_and_masked() {
        let x = t(&[0.0, 2.0, -1.0], &[3]);
        let y = t(&[1.0, 0.0, 0.0], &[3]);
        let m = t(&[1.0, 1.0, 0.0], &[3]);
        let want = (f64::ln(2.0) + (2.0 + (1.0 + f64::exp(-2.0)).ln())) / 2.0;
        let got = scalar(bce_with_logits(&x, &y, &m).unwrap());
        assert!((got - want).abs() < 1e-5, "{got} {want}");
    }

    #[test]
    fn anatomy_loss_by_hand_and_masked() {
        // One image, two channels of 1 x 2 pixels; the second channel unknown. Channel 0:
        // logits (0, 0) -> p = 0.5 each, targets (1, 0): BCE ln 2 on both pixels (mean ln 2),
        // Dice 1 - (2 * 0.5 + 1) / (1 + 1 + 1) = 1/3.
        let x = t(&[0.0, 0.0, 5.0, -5.0], &[1, 2, 1, 2]);
        let y = t(&[1.0, 0.0, 0.0, 1.0], &[1, 2, 1, 2]);
        let known = t(&[1.0, 0.0], &[1, 2]);
        let want = f64::ln(2.0) + 1.0 / 3.0;
        let got = scalar(anatomy(&x, &y, &known).unwrap());
        assert!((got - want).abs() < 1e-5, "{got} {want}");
        // Nothing known: no loss.
        let none = t(&[0.0, 0.0], &[1, 2]);
        assert_eq!(scalar(anatomy(&x, &y, &none).unwrap()), 0.0);
    }

    #[test]
    fn giou_and_l1_by_hand() {
        // Pred [0,0,1,1], target [1,0,2,1]: IoU 0, hull 2, union 2 -> GIoU 0, loss 1.
        // Pred [0,0,2,2], target [1,1,2,2]: IoU 1/4, hull = union -> loss 0.75.
        let p = t(&[0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 2.0, 2.0], &[2, 4]);
        let g = t(&[1.0, 0.0, 2.0, 1.0, 1.0, 1.0, 2.0, 2.0], &[2, 4]);
        let m = t(&[1.0, 1.0], &[2]);
        let got = scalar(box_giou(&p, &g, &m).unwrap());
        assert!((got - (1.0 + 0.75) / 2.0).abs() < 1e-5, "{got}");
        let l1 = scalar(box_l1(&p, &g, &m).unwrap());
        assert!((l1 - (0.5 + 0.5) / 2.0).abs() < 1e-6, "{l1}");
        // Disjoint boxes further apart cost more than 1.
        let far = t(&[0.0, 0.0, 1.0, 1.0], &[1, 4]);
        let away = t(&[3.0, 0.0, 4.0, 1.0], &[1, 4]);
        let got = scalar(box_giou(&far, &away, &t(&[1.0], &[1])).unwrap());
        assert!((got - 1.5).abs() < 1e-5, "{got}");
    }

    #[test]
    fn soft_label_is_zero_only_when_the_distributions_match() {
        let v = t(&[1.0, 0.0, 0.0, 1.0], &[2, 2]);
        let tags = t(&[1.0, 0.0, 0.0, 1.0], &[2, 2]);
        let a = scalar(soft_label(&v, &v, &tags, 0.07).unwrap());
        let swapped = t(&[0.0, 1.0, 1.0, 0.0], &[2, 2]);
        let b = scalar(soft_label(&v, &swapped, &tags, 0.07).unwrap());
        assert!(a >= 0.0 && b > a + 1.0, "{a} {b}");
    }
}
