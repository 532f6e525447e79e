//! The bundle's thresholds, chosen on a validation split: per finding the best-F1 probability at
//! image and region level, and the report check's confident (precision 0.9) and doubtful
//! (recall 0.9) bars; then all four raised until the split's normal films, as they are and in
//! copies under acquisition stress, reach none of them (at most 5% may), so that a normal film
//! comes back clean and its normal report unaccused.

use crate::data::{self, Record, Split};
use crate::eval::error::EvalError;
use crate::eval::evaluate::{predict, predict_stressed};
use crate::eval::models::EvalModel;
use crate::export::{ImagePrediction, Thresholds};
use crate::vocab::{FINDINGS, REGIONS};
use std::collections::BTreeMap;
use std::path::Path;

/// The probability with the best F1 over `(logit, label)` pairs (ties: the higher threshold),
/// clamped to 0.01..=0.99; 0.5 when there is no positive.
pub fn best_f1_threshold(mut pairs: Vec<(f32, bool)>) -> f32 {
    let total_pos = pairs.iter().filter(|p| p.1).count();
    if total_pos == 0 {
        return 0.5;
    }
    for p in pairs.iter_mut() {
        p.0 = 1.0 / (1.0 + (-p.0).exp());
    }
    pairs.sort_by(|a, b| b.0.total_cmp(&a.0));
    let (mut tp, mut fp) = (0usize, 0usize);
    let (mut best, mut best_t) = (-1.0f64, 0.5f32);
    for (i, &(p, pos)) in pairs.iter().enumerate() {
        if pos {
            tp += 1;
        } else {
            fp += 1;
        }
        // Only cut between distinct probabilities.
        if pairs.get(i + 1).is_some_and(|n| n.0 == p) {
            continue;
        }
        let f1 = 2.0 * tp as f64 / (2 * tp + fp + (total_pos - tp)) as f64;
        if f1 > best {
            best = f1;
            best_t = p;
        }
    }
    best_t.clamp(0.01, 0.99)
}

/// The lowest probability above which at least `precision` of the pairs are positive (1.0 when
/// no cut reaches it, and without positives: a finding the split cannot vouch for never makes
/// the report check accuse a report).
pub fn precision_threshold(mut pairs: Vec<(f32, bool)>, precision: f64) -> f32 {
    if !pairs.iter().any(|p| p.1) {
        return 1.0;
    }
    for p in pairs.iter_mut() {
        p.0 = 1.0 / (1.0 + (-p.0).exp());
    }
    pairs.sort_by(|a, b| b.0.total_cmp(&a.0));
    let (mut tp, mut n) = (0usize, 0usize);
    let mut best = 1.0f32;
    for (i, &(p, pos)) in pairs.iter().enumerate() {
        n += 1;
        tp += pos as usize;
        if pairs.get(i + 1).is_some_and(|next| next.0 == p) {
            continue;
        }
        if tp as f64 / n as f64 >= precision {
            best = p;
        }
    }
    best
}

/// The probability below which only `miss` of the positives fall (0.0 without positives: a
/// finding never seen positive in the split never makes the report check doubt a report).
pub fn recall_threshold(pairs: Vec<(f32, bool)>, miss: f64) -> f32 {
    let mut pos: Vec<f32> = pairs
        .iter()
        .filter(|p| p.1)
        .map(|p| 1.0 / (1.0 + (-p.0).exp()))
        .collect();
    if pos.is_empty() {
        return 0.0;
    }
    pos.sort_by(|a, b| a.total_cmp(b));
    pos[((pos.len() as f64 * miss).floor() as usize).min(pos.len() - 1)]
}

/// The lowest validation AUROC at which a finding is offered: below it the model does not tell
/// the split's positives from its negatives, and a threshold on its score would flag films at
/// random.
pub const MIN_VALIDATION_AUROC: f64 = 0.6;

/// Whether `(logit, label)` pairs have a positive and an AUROC of at least
/// [`MIN_VALIDATION_AUROC`].
pub fn separates(pairs: &[(f32, bool)]) -> bool {
    let scores: Vec<f32> = pairs.iter().map(|p| p.0).collect();
    let labels: Vec<bool> = pairs.iter().map(|p| p.1).collect();
    crate::eval::metrics::auroc(&scores, &labels).is_some_and(|a| a >= MIN_VALIDATION_AUROC)
}

/// Per finding, the image-level and region-level thresholds with the best F1 on `split`, and the
/// findings the split vouches for: those with positives in it, told from its negatives at image
/// or region level with an AUROC of at least [`MIN_VALIDATION_AUROC`].
pub fn choose_thresholds(
    model: &dyn EvalModel,
    data_root: &Path,
    split: Split,
    batch: usize,
    stress_copies: usize,
) -> Result<Thresholds, EvalError> {
    let dataset = data::scan_any(data_root)?;
    let records: Vec<&Record> = dataset
        .records
        .iter()
        .filter(|r| r.split == split)
        .collect();
    if records.is_empty() {
        return Err(EvalError::Invalid(format!(
            "{}: no studies in the {split:?} split to choose thresholds on",
            data_root.display()
        )));
    }
    let (preds, truths) = predict(model, &records, batch)?;
    let mut out = Thresholds::default();
    let mut check = asg_bundle::CheckThresholds::default();
    let mut validated = std::collections::BTreeSet::new();
    for (f, name) in asg_report::FINDINGS.iter().enumerate() {
        let image: Vec<(f32, bool)> = preds
            .iter()
            .zip(&truths)
            .filter(|(_, t)| t.tag_mask[f] > 0.5)
            .map(|(p, t)| (p.finding_logits[f], t.tags[f] > 0.5))
            .collect();
        let mut region = Vec::new();
        for (p, t) in preds.iter().zip(&truths) {
            for r in 0..REGIONS {
                if t.present[r] && t.region_mask[r * FINDINGS + f] > 0.5 {
                    region.push((
                        p.region_logits[r * FINDINGS + f],
                        t.region_targets[r * FINDINGS + f] > 0.5,
                    ));
                }
            }
        }
        let key = name.to_string();
        if separates(&image) || separates(&region) {
            validated.insert(key.clone());
        }
        check
            .image_confident
            .insert(key.clone(), precision_threshold(image.clone(), 0.9));
        check
            .image_doubtful
            .insert(key.clone(), recall_threshold(image.clone(), 0.1));
        check
            .region_confident
            .insert(key.clone(), precision_threshold(region.clone(), 0.9));
        check
            .region_doubtful
            .insert(key.clone(), recall_threshold(region.clone(), 0.1));
        out.image.insert(key.clone(), best_f1_threshold(image));
        out.region.insert(key, best_f1_threshold(region));
    }
    // Normal films must come back clean, at image level, in every region, and in the report
    // check (a correct normal report must not be accused): raise the thresholds and the
    // confident bars until at most 5% of the split's normal films reach any of them.
    let sigmoid = |l: f32| 1.0 / (1.0 + (-l).exp());
    // The normal films as they are, and `stress_copies` of each under acquisition stress:
    // the normal films of sources we lack are acquired and processed unlike ours.
    let normal_records: Vec<&Record> = records
        .iter()
        .zip(&truths)
        .filter(|(_, t)| t.normal)
        .map(|(r, _)| *r)
        .collect();
    let stressed = predict_stressed(model, &normal_records, stress_copies, batch, 0x7E57)?;
    let normals: Vec<&ImagePrediction> = preds
        .iter()
        .zip(&truths)
        .filter(|(_, t)| t.normal)
        .map(|(p, _)| p)
        .chain(&stressed)
        .collect();
    let image_probs: Vec<Vec<f32>> = normals
        .iter()
        .map(|p| p.finding_logits.iter().map(|&l| sigmoid(l)).collect())
        .collect();
    let region_probs: Vec<Vec<f32>> = normals
        .iter()
        .map(|p| {
            (0..FINDINGS)
                .map(|f| {
                    (0..REGIONS)
                        .filter_map(|r| p.region_logits.get(r * FINDINGS + f))
                        .fold(0.0f32, |m, &l| m.max(sigmoid(l)))
                })
                .collect()
        })
        .collect();
    // The image and the regions together: a normal film flagged in a region is flagged.
    enforce_normal_specificity(
        &mut [
            (&mut out.image, &image_probs),
            (&mut out.region, &region_probs),
        ],
        MAX_FLAGGED_NORMALS,
    );
    enforce_normal_specificity(
        &mut [
            (&mut check.image_confident, &image_probs),
            (&mut check.region_confident, &region_probs),
        ],
        MAX_FLAGGED_NORMALS,
    );
    out.check = Some(check);
    out.validated = Some(validated);
    Ok(out)
}

/// A bundle's manifest with its operating point chosen again on `data_root`'s validation split
/// by [`choose_thresholds`] (the rule of `asg-train export --data`): the thresholds, the report
/// check's bars, and the assessed findings narrowed to those the split has positives of (of
/// those the bundle offered). The weights are untouched; a note in `training.notes` says so.
pub fn retuned_manifest(
    bundle: &crate::export::OnnxBundle,
    data_root: &Path,
    stress_copies: usize,
) -> Result<asg_bundle::Manifest, EvalError> {
    let thresholds = choose_thresholds(bundle, data_root, Split::Validate, 16, stress_copies)?;
    let mut manifest = bundle.manifest.clone();
    let offered: Option<BTreeMap<String, u64>> = manifest
        .assessed
        .as_ref()
        .map(|a| a.iter().map(|f| (f.clone(), 1)).collect());
    manifest.assessed =
        crate::export::bundle::assessed_findings(offered.as_ref(), thresholds.validated.as_ref());
    let before = manifest.clone();
    manifest.thresholds = thresholds.image;
    manifest.region_thresholds = thresholds.region;
    manifest.check_thresholds = thresholds.check;
    // A crop model's finding keeps its operating point: it was chosen on the crop model's
    // scores through the plugin, which this rule (the image model's scores) does not see.
    if let Some(crop) = &before.crop_model {
        keep_operating_point(&before, &mut manifest, &crop.finding);
    }
    manifest.training.notes = format!(
        "{}; operating point chosen again on the validation split of {} ({stress_copies} stressed copies of each normal film) by asg-train {} retune",
        manifest.training.notes,
        data_root.display(),
        env!("CARGO_PKG_VERSION")
    );
    Ok(manifest)
}

/// Copies `finding`'s thresholds, report-check bars and assessed state from `from` into `to`.
fn keep_operating_point(from: &asg_bundle::Manifest, to: &mut asg_bundle::Manifest, finding: &str) {
    fn copy(from: &BTreeMap<String, f32>, to: &mut BTreeMap<String, f32>, key: &str) {
        match from.get(key) {
            Some(&v) => to.insert(key.to_string(), v),
            None => to.remove(key),
        };
    }
    copy(&from.thresholds, &mut to.thresholds, finding);
    copy(&from.region_thresholds, &mut to.region_thresholds, finding);
    let empty = asg_bundle::CheckThresholds::default();
    let old = from.check_thresholds.as_ref().unwrap_or(&empty);
    let new = to.check_thresholds.get_or_insert_with(Default::default);
    copy(&old.image_confident, &mut new.image_confident, finding);
    copy(&old.image_doubtful, &mut new.image_doubtful, finding);
    copy(&old.region_confident, &mut new.region_confident, finding);
    copy(&old.region_doubtful, &mut new.region_doubtful, finding);
    let offered = from.is_assessed(finding);
    let all = to.findings.clone();
    let list = to.assessed.get_or_insert(all);
    list.retain(|f| f != finding);
    if offered {
        list.push(finding.to_string());
    }
}

/// The largest share of normal validation films allowed to have a finding flagged.
pub const MAX_FLAGGED_NORMALS: f64 = 0.05;

/// How far above the highest probability on a normal validation film a raised threshold goes,
/// in logits (0.5: 0.90 becomes 0.94): the highest of a few dozen normal films underestimates
/// the tail of the normal films a user has.
pub const NORMAL_MARGIN_LOGIT: f32 = 0.5;

/// One level of flags (the image, or the regions) for [`enforce_normal_specificity`]: its
/// thresholds per finding, and each normal film's probabilities in the order of
/// `asg_report::FINDINGS` (for the regions, the highest over the regions).
pub type FlagLevel<'a> = (&'a mut BTreeMap<String, f32>, &'a [Vec<f32>]);

/// Raises thresholds (greedily, the level and finding that flag the most normal films first, to
/// [`NORMAL_MARGIN_LOGIT`] above its highest probability on them) until at most `max_share` of
/// the normal films have any finding at or above its threshold at any level: a film flagged at
/// the image or in a region is one film flagged. A finding without a threshold is not flagged;
/// every level holds the same films.
pub fn enforce_normal_specificity(levels: &mut [FlagLevel<'_>], max_share: f64) {
    let n = levels.iter().map(|(_, p)| p.len()).max().unwrap_or(0);
    if n == 0 {
        return;
    }
    let names = asg_report::FINDINGS;
    let flags = |f: usize, p: Option<&Vec<f32>>, th: &BTreeMap<String, f32>| {
        th.get(names[f])
            .is_some_and(|&t| p.and_then(|p| p.get(f)).is_some_and(|&v| v >= t))
    };
    for _ in 0..names.len() * levels.len() {
        let flagged = (0..n)
            .filter(|&i| {
                levels
                    .iter()
                    .any(|(th, probs)| (0..names.len()).any(|f| flags(f, probs.get(i), th)))
            })
            .count();
        if flagged as f64 <= max_share * n as f64 {
            return;
        }
        let worst = (0..levels.len())
            .flat_map(|l| (0..names.len()).map(move |f| (l, f)))
            .max_by_key(|&(l, f)| {
                let (th, probs) = &levels[l];
                probs.iter().filter(|p| flags(f, Some(p), th)).count()
            });
        let Some((l, f)) = worst else { return };
        let (th, probs) = &mut levels[l];
        let top = probs
            .iter()
            .filter_map(|p| p.get(f).copied())
            .fold(0.0f32, f32::max);
        let top = top.clamp(1e-6, 1.0 - 1e-6);
        let raised = 1.0 / (1.0 + (-((top / (1.0 - top)).ln() + NORMAL_MARGIN_LOGIT)).exp());
        th.insert(names[f].to_string(), raised.max(top + 1e-4).min(1.0));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_crop_models_finding_keeps_its_operating_point_through_a_retune() {
        let text = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../models/default/manifest.json"),
        )
        .unwrap();
        let mut from = asg_bundle::Manifest::from_json(&text).unwrap();
        from.thresholds.insert("nodule".into(), 0.97);
        from.region_thresholds.insert("nodule".into(), 0.96);
        from.assessed.as_mut().unwrap().push("nodule".into());
        let bars = from.check_thresholds.get_or_insert_with(Default::default);
        bars.image_doubtful.insert("nodule".into(), 0.0);
        let mut to = from.clone();
        to.thresholds.insert("nodule".into(), 0.3);
        to.region_thresholds.remove("nodule");
        to.assessed = Some(vec!["opacity".into()]);
        to.check_thresholds = None;
        keep_operating_point(&from, &mut to, "nodule");
        assert_eq!(to.thresholds["nodule"], 0.97);
        assert_eq!(to.region_thresholds["nodule"], 0.96);
        assert_eq!(
            to.assessed.as_deref().unwrap(),
            ["opacity".to_string(), "nodule".to_string()]
        );
        assert_eq!(
            to.check_thresholds.as_ref().unwrap().image_doubtful["nodule"],
            0.0
        );
        // Not offered before: not offered after.
        from.assessed.as_mut().unwrap().retain(|f| f != "nodule");
        keep_operating_point(&from, &mut to, "nodule");
        assert!(!to.is_assessed("nodule"));
    }

    fn logit(p: f32) -> f32 {
        (p / (1.0 - p)).ln()
    }

    #[test]
    fn normal_films_are_left_clean_by_raising_the_worst_thresholds() {
        let names = asg_report::FINDINGS;
        let mut th: BTreeMap<String, f32> = names.iter().map(|n| (n.to_string(), 0.5)).collect();
        // 10 normal films: finding 0 at 0.6 on four of them, finding 1 at 0.7 on one.
        let mut probs = vec![vec![0.1f32; names.len()]; 10];
        for p in probs.iter_mut().take(4) {
            p[0] = 0.6;
        }
        probs[9][1] = 0.7;
        enforce_normal_specificity(&mut [(&mut th, &probs)], 0.1);
        // Finding 0 had to go above 0.6, to 0.5 logits above it (1 / (1 + e^-(ln 1.5 + 0.5))
        // = 0.7121); one film flagged by finding 1 is within 10%.
        assert!((th[names[0]] - 0.7121).abs() < 1e-3, "{}", th[names[0]]);
        assert_eq!(th[names[1]], 0.5);
        enforce_normal_specificity(&mut [(&mut th, &probs)], 0.0);
        assert!(th[names[1]] > 0.7);
        // A probability near 1 is still exceeded, within the cap.
        probs[0][2] = 0.9999;
        enforce_normal_specificity(&mut [(&mut th, &probs)], 0.0);
        assert!(th[names[2]] > 0.9999 && th[names[2]] <= 1.0);
        // Nothing to do without normal films.
        let before = th.clone();
        enforce_normal_specificity(&mut [(&mut th, &[])], 0.0);
        assert_eq!(th, before);
    }

    #[test]
    fn a_film_flagged_at_the_image_or_in_a_region_counts_once_against_the_share() {
        let names = asg_report::FINDINGS;
        let mut image: BTreeMap<String, f32> = names.iter().map(|n| (n.to_string(), 0.5)).collect();
        let mut region = image.clone();
        // 20 normal films: film 0 flagged at the image (finding 0 at 0.6), film 1 in a region
        // (finding 1 at 0.8): 5% each, 10% together.
        let mut image_probs = vec![vec![0.1f32; names.len()]; 20];
        let mut region_probs = image_probs.clone();
        image_probs[0][0] = 0.6;
        region_probs[1][1] = 0.8;
        enforce_normal_specificity(
            &mut [(&mut image, &image_probs), (&mut region, &region_probs)],
            0.05,
        );
        // One of the two had to go (both flag one film); the other film alone is within 5%.
        let raised = [image[names[0]] > 0.6, region[names[1]] > 0.8];
        assert_eq!(raised.iter().filter(|&&r| r).count(), 1, "{raised:?}");
        assert!([image[names[0]], region[names[1]]].contains(&0.5));
        // Each level alone was within 5%: nothing raised.
        let mut image: BTreeMap<String, f32> = names.iter().map(|n| (n.to_string(), 0.5)).collect();
        enforce_normal_specificity(&mut [(&mut image, &image_probs)], 0.05);
        assert_eq!(image[names[0]], 0.5);
    }

    #[test]
    fn a_finding_is_vouched_for_only_when_the_split_tells_it_apart() {
        let pairs = |v: &[(f32, bool)]| v.to_vec();
        // AUROC 1, 0.75 (3 of 4 pairs ordered), 0.5, and no positive or no negative.
        assert!(separates(&pairs(&[(2.0, true), (0.0, false)])));
        assert!(separates(&pairs(&[
            (2.0, true),
            (0.0, true),
            (1.0, false),
            (-1.0, false)
        ])));
        assert!(!separates(&pairs(&[(1.0, true), (1.0, false)])));
        assert!(!separates(&pairs(&[(1.0, false), (0.0, false)])));
        assert!(!separates(&pairs(&[(1.0, true)])));
    }

    #[test]
    fn the_best_f1_threshold_of_a_hand_case() {
        // Cuts at 0.9: F1 2/3; 0.8: 1/2; 0.7: 4/5; 0.2: 2/3.
        let pairs = vec![
            (logit(0.9), true),
            (logit(0.8), false),
            (logit(0.7), true),
            (logit(0.2), false),
        ];
        assert!((best_f1_threshold(pairs) - 0.7).abs() < 1e-5);
        assert_eq!(best_f1_threshold(vec![(0.0, false), (1.0, false)]), 0.5);
    }

    #[test]
    fn precision_and_recall_bars_of_a_hand_case() {
        // Probabilities 0.9 (+), 0.8 (+), 0.7 (-), 0.6 (+), 0.2 (-).
        let pairs = vec![
            (logit(0.9), true),
            (logit(0.8), true),
            (logit(0.7), false),
            (logit(0.6), true),
            (logit(0.2), false),
        ];
        // Precision at cuts: 0.9 -> 1, 0.8 -> 1, 0.7 -> 2/3, 0.6 -> 3/4, 0.2 -> 3/5.
        assert!((precision_threshold(pairs.clone(), 0.9) - 0.8).abs() < 1e-5);
        assert!((precision_threshold(pairs.clone(), 0.7) - 0.6).abs() < 1e-5);
        assert_eq!(
            precision_threshold(vec![(0.0, false), (2.0, false)], 0.9),
            1.0
        );
        assert_eq!(recall_threshold(vec![(0.0, false), (2.0, false)], 0.1), 0.0);
        assert_eq!(
            precision_threshold(vec![(2.0, false), (0.0, true)], 0.9),
            1.0
        );
        // Positives 0.6, 0.8, 0.9: the lowest third falls below 0.8.
        assert!((recall_threshold(pairs.clone(), 0.1) - 0.6).abs() < 1e-5);
        assert!((recall_threshold(pairs, 0.34) - 0.8).abs() < 1e-5);
    }
}
