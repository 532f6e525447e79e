//! The evaluation metrics, written out by hand (each is a few lines, and each is tested on
//! hand-computed cases): AUROC with ties, box IoU, recall at K with duplicate-aware matching, the
//! pointing game, and an L2-regularised logistic regression (Newton's method) for linear probing.

use std::collections::BTreeMap;

/// The 95% interval of [`auroc`] by the percentile bootstrap over clusters: each of `reps`
/// resamples draws `groups.len()` groups with replacement (a group is the cases of one film,
/// e.g. its six lung zones, so that a film's zones are not counted as independent), seeded so
/// that a report is repeatable. Resamples with one class only are skipped; None if fewer than
/// half of them had both, or if the cases themselves lack a class.
pub fn bootstrap_auroc(groups: &[Vec<(f32, bool)>], reps: usize, seed: u64) -> Option<(f64, f64)> {
    use rand::{Rng, SeedableRng};
    let all: Vec<&(f32, bool)> = groups.iter().flatten().collect();
    let (s, l): (Vec<f32>, Vec<bool>) = all.iter().map(|c| (c.0, c.1)).unzip();
    auroc(&s, &l)?;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut values = Vec::with_capacity(reps);
    let (mut s, mut l) = (Vec::new(), Vec::new());
    for _ in 0..reps {
        s.clear();
        l.clear();
        for _ in 0..groups.len() {
            for &(score, label) in &groups[rng.random_range(0..groups.len())] {
                s.push(score);
                l.push(label);
            }
        }
        if let Some(a) = auroc(&s, &l) {
            values.push(a);
        }
    }
    if values.len() * 2 < reps.max(1) {
        return None;
    }
    values.sort_by(|a, b| a.total_cmp(b));
    let at = |q: f64| values[((values.len() - 1) as f64 * q).round() as usize];
    Some((at(0.025), at(0.975)))
}

/// The Wilson score interval (95%) of a share of `k` in `n`: honest at the ends, where 9 of 9
/// still leaves the true share anywhere above 0.70. None when `n` is 0.
pub fn wilson_interval(k: usize, n: usize) -> Option<(f64, f64)> {
    if n == 0 {
        return None;
    }
    let (n, p, z) = (n as f64, k as f64 / n as f64, 1.959_963_984_540_054_f64);
    let centre = (p + z * z / (2.0 * n)) / (1.0 + z * z / n);
    let half = z / (1.0 + z * z / n) * (p * (1.0 - p) / n + z * z / (4.0 * n * n)).sqrt();
    Some(((centre - half).max(0.0), (centre + half).min(1.0)))
}

/// Area under the ROC curve: the probability that a random positive scores above a random
/// negative, ties counting one half (Mann-Whitney U over average ranks). `None` when there is no
/// positive or no negative (the AUROC is undefined), or when the inputs disagree in length.
pub fn auroc(scores: &[f32], labels: &[bool]) -> Option<f64> {
    if scores.len() != labels.len() {
        return None;
    }
    let positives = labels.iter().filter(|&&l| l).count();
    let negatives = labels.len() - positives;
    if positives == 0 || negatives == 0 {
        return None;
    }
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    // Average ranks (1-based) over runs of equal scores.
    let mut rank_sum_pos = 0.0f64;
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && scores[order[j + 1]] == scores[order[i]] {
            j += 1;
        }
        let avg = (i + j) as f64 / 2.0 + 1.0;
        for &k in &order[i..=j] {
            if labels[k] {
                rank_sum_pos += avg;
            }
        }
        i = j + 1;
    }
    let p = positives as f64;
    let u = rank_sum_pos - p * (p + 1.0) / 2.0;
    Some(u / (p * negatives as f64))
}

/// Intersection over union of two boxes `[x1, y1, x2, y2]` (0 for disjoint boxes; 0 when both
/// are empty).
pub fn iou(a: [f32; 4], b: [f32; 4]) -> f64 {
    let area = |r: [f32; 4]| ((r[2] - r[0]).max(0.0) * (r[3] - r[1]).max(0.0)) as f64;
    let ix = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0) as f64;
    let iy = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0) as f64;
    let inter = ix * iy;
    let union = area(a) + area(b) - inter;
    if union <= 0.0 {
        0.0
    } else {
        inter / union
    }
}

/// Recall at each K of `ks` for retrieval by cosine similarity: `queries` `[n, d]` against
/// `keys` `[n, d]` (row i's true key is key i), both unit norm. A retrieved key counts as correct
/// when its group equals the query's (identical reports are indistinguishable, so they share a
/// group). Returns one recall per K.
pub fn recall_at(
    queries: &[f32],
    keys: &[f32],
    d: usize,
    groups: &[usize],
    ks: &[usize],
) -> Vec<f64> {
    let n = groups.len();
    if n == 0 || d == 0 || queries.len() != n * d || keys.len() != n * d {
        return vec![f64::NAN; ks.len()];
    }
    let mut hits = vec![0usize; ks.len()];
    for i in 0..n {
        let q = &queries[i * d..(i + 1) * d];
        let mut sims: Vec<(f32, usize)> = (0..n)
            .map(|j| {
                let k = &keys[j * d..(j + 1) * d];
                (q.iter().zip(k).map(|(a, b)| a * b).sum::<f32>(), j)
            })
            .collect();
        sims.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        // The rank of the first correct key.
        let first = sims
            .iter()
            .position(|&(_, j)| groups[j] == groups[i])
            .unwrap_or(n);
        for (h, &k) in hits.iter_mut().zip(ks) {
            if first < k {
                *h += 1;
            }
        }
    }
    hits.iter().map(|&h| h as f64 / n as f64).collect()
}

/// The pointing game for one heatmap: the peak cell of `heatmap` (`g * g`, row-major over the
/// model input) falls inside one of `boxes` (0..1 coordinates). `None` when there is no box.
/// The index of a heatmap's largest value (ties: the first).
pub fn peak_cell(heatmap: &[f32]) -> Option<usize> {
    heatmap
        .iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1).then(b.0.cmp(&a.0)))
        .map(|(i, _)| i)
}

/// Hits and cases summed over findings, and their share (None without cases).
pub fn pointing_share(
    per_finding: &BTreeMap<String, (usize, usize)>,
) -> (usize, usize, Option<f64>) {
    let (h, c) = per_finding
        .values()
        .fold((0, 0), |a, v| (a.0 + v.0, a.1 + v.1));
    (h, c, (c > 0).then(|| h as f64 / c as f64))
}

pub fn pointing_hit(heatmap: &[f32], g: usize, boxes: &[[f32; 4]]) -> Option<bool> {
    if boxes.is_empty() || g == 0 || heatmap.len() != g * g {
        return None;
    }
    let peak = peak_cell(heatmap)?;
    let (x, y) = (
        ((peak % g) as f32 + 0.5) / g as f32,
        ((peak / g) as f32 + 0.5) / g as f32,
    );
    Some(
        boxes
            .iter()
            .any(|b| x >= b[0] && x <= b[2] && y >= b[1] && y <= b[3]),
    )
}

/// A binary logistic regression `p = sigmoid(w . x + b)`.
#[derive(Debug, Clone, PartialEq)]
pub struct Logistic {
    pub weights: Vec<f64>,
    pub bias: f64,
}

impl Logistic {
    /// Fits by Newton's method on the mean log loss plus `l2 / 2 |w|^2` (the bias is not
    /// regularised). `x` is `[n, d]` row-major. With a single class in `y` the model predicts
    /// that class's log-odds, clipped (no direction can be learned).
    pub fn fit(x: &[f64], y: &[bool], d: usize, l2: f64, iterations: usize) -> Self {
        let n = y.len();
        let mut w = vec![0.0f64; d + 1]; // last: bias
        if n == 0 || x.len() != n * d {
            return Self {
                weights: vec![0.0; d],
                bias: 0.0,
            };
        }
        let pos = y.iter().filter(|&&v| v).count() as f64;
        if pos == 0.0 || pos == n as f64 {
            let p = (pos / n as f64).clamp(1e-3, 1.0 - 1e-3);
            return Self {
                weights: vec![0.0; d],
                bias: (p / (1.0 - p)).ln(),
            };
        }
        let m = d + 1;
        for _ in 0..iterations {
            let mut grad = vec![0.0f64; m];
            let mut hess = vec![0.0f64; m * m];
            for i in 0..n {
                let row = &x[i * d..(i + 1) * d];
                let z: f64 = row.iter().zip(&w).map(|(a, b)| a * b).sum::<f64>() + w[d];
                let p = 1.0 / (1.0 + (-z).exp());
                let r = p - if y[i] { 1.0 } else { 0.0 };
                let s = (p * (1.0 - p)).max(1e-9);
                for a in 0..m {
                    let xa = if a < d { row[a] } else { 1.0 };
                    grad[a] += r * xa / n as f64;
                    for b in a..m {
                        let xb = if b < d { row[b] } else { 1.0 };
                        hess[a * m + b] += s * xa * xb / n as f64;
                    }
                }
            }
            for a in 0..m {
                for b in 0..a {
                    hess[a * m + b] = hess[b * m + a];
                }
                if a < d {
                    grad[a] += l2 * w[a];
                    hess[a * m + a] += l2;
                }
                hess[a * m + a] += 1e-9;
            }
            let Some(step) = solve_spd(&hess, &grad, m) else {
                break;
            };
            let mut largest = 0.0f64;
            for (wi, si) in w.iter_mut().zip(&step) {
                *wi -= si;
                largest = largest.max(si.abs());
            }
            if largest < 1e-8 {
                break;
            }
        }
        let bias = w[d];
        w.truncate(d);
        Self { weights: w, bias }
    }

    /// The log-odds of each row of `x` (`[n, d]`).
    pub fn decision(&self, x: &[f64]) -> Vec<f64> {
        let d = self.weights.len();
        if d == 0 {
            return Vec::new();
        }
        x.chunks(d)
            .map(|row| {
                row.iter()
                    .zip(&self.weights)
                    .map(|(a, b)| a * b)
                    .sum::<f64>()
                    + self.bias
            })
            .collect()
    }
}

/// Solves `a x = b` for a symmetric positive definite `a` (`[m, m]`) by Cholesky; `None` when
/// it is not positive definite.
fn solve_spd(a: &[f64], b: &[f64], m: usize) -> Option<Vec<f64>> {
    let mut l = vec![0.0f64; m * m];
    for i in 0..m {
        for j in 0..=i {
            let mut s = a[i * m + j];
            for k in 0..j {
                s -= l[i * m + k] * l[j * m + k];
            }
            if i == j {
                if s <= 0.0 {
                    return None;
                }
                l[i * m + i] = s.sqrt();
            } else {
                l[i * m + j] = s / l[j * m + j];
            }
        }
    }
    let mut z = vec![0.0f64; m];
    for i in 0..m {
        let s: f64 = (0..i).map(|k| l[i * m + k] * z[k]).sum();
        z[i] = (b[i] - s) / l[i * m + i];
    }
    let mut x = vec![0.0f64; m];
    for i in (0..m).rev() {
        let s: f64 = (i + 1..m).map(|k| l[k * m + i] * x[k]).sum();
        x[i] = (z[i] - s) / l[i * m + i];
    }
    Some(x)
}

/// Mean and sample standard deviation of the finite values (NaN when none).
pub fn mean_std(values: &[f64]) -> (f64, f64) {
    let v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    let m = v.iter().sum::<f64>() / v.len() as f64;
    let s = if v.len() > 1 {
        (v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (v.len() - 1) as f64).sqrt()
    } else {
        0.0
    };
    (m, s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wilson_intervals_of_hand_computed_shares() {
        let (lo, hi) = wilson_interval(9, 9).unwrap();
        assert!(
            (lo - 0.7009).abs() < 1e-4 && (hi - 1.0).abs() < 1e-9,
            "{lo} {hi}"
        );
        let (lo, hi) = wilson_interval(5, 10).unwrap();
        assert!(
            (lo - 0.2366).abs() < 1e-4 && (hi - 0.7634).abs() < 1e-4,
            "{lo} {hi}"
        );
        let (lo, hi) = wilson_interval(0, 4).unwrap();
        assert!(lo < 1e-9 && (hi - 0.4899).abs() < 1e-4, "{lo} {hi}");
        assert_eq!(wilson_interval(0, 0), None);
    }

    #[test]
    fn bootstrap_intervals_hold_the_estimate_and_repeat_by_seed() {
        // Perfectly separated films: every resample with both classes gives 1.
        let separated: Vec<Vec<(f32, bool)>> = (0..10).map(|i| vec![(i as f32, i >= 5)]).collect();
        assert_eq!(bootstrap_auroc(&separated, 200, 1), Some((1.0, 1.0)));
        // One class only: no interval.
        let one: Vec<Vec<(f32, bool)>> = (0..10).map(|i| vec![(i as f32, true)]).collect();
        assert_eq!(bootstrap_auroc(&one, 200, 1), None);
        // Mixed films of two cases each: the interval holds the estimate and is repeatable.
        let mixed: Vec<Vec<(f32, bool)>> = (0..30)
            .map(|i| {
                vec![
                    ((i * 7 % 11) as f32, i % 3 == 0),
                    ((i * 5 % 13) as f32, i % 4 == 0),
                ]
            })
            .collect();
        let (s, l): (Vec<f32>, Vec<bool>) = mixed.iter().flatten().copied().unzip();
        let point = auroc(&s, &l).unwrap();
        let (lo, hi) = bootstrap_auroc(&mixed, 500, 7).unwrap();
        assert!(
            lo < point && point < hi && hi - lo > 0.05,
            "{lo} {point} {hi}"
        );
        assert_eq!(bootstrap_auroc(&mixed, 500, 7), Some((lo, hi)));
    }

    #[test]
    fn auroc_of_hand_computed_cases() {
        // Perfect, inverted, and chance.
        assert_eq!(
            auroc(&[0.1, 0.2, 0.8, 0.9], &[false, false, true, true]),
            Some(1.0)
        );
        assert_eq!(
            auroc(&[0.9, 0.8, 0.2, 0.1], &[false, false, true, true]),
            Some(0.0)
        );
        // Ties: positives {0.5, 0.7}, negatives {0.5, 0.3}. Pairs: (0.5 vs 0.5) = 1/2,
        // (0.5 vs 0.3) = 1, (0.7 vs 0.5) = 1, (0.7 vs 0.3) = 1 -> 3.5 / 4.
        assert_eq!(
            auroc(&[0.5, 0.7, 0.5, 0.3], &[true, true, false, false]),
            Some(0.875)
        );
        // All scores equal: 0.5.
        assert_eq!(
            auroc(&[1.0; 5], &[true, false, true, false, false]),
            Some(0.5)
        );
        // One positive above two of three negatives: 2/3.
        let a = auroc(&[0.4, 0.1, 0.2, 0.9], &[true, false, false, false]).unwrap();
        assert!((a - 2.0 / 3.0).abs() < 1e-12);
        // An empty class: undefined.
        assert_eq!(auroc(&[0.1, 0.2], &[false, false]), None);
        assert_eq!(auroc(&[0.1, 0.2], &[true, true]), None);
        assert_eq!(auroc(&[], &[]), None);
    }

    #[test]
    fn iou_of_disjoint_nested_and_overlapping_boxes() {
        assert_eq!(iou([0.0, 0.0, 1.0, 1.0], [2.0, 2.0, 3.0, 3.0]), 0.0);
        // Touching edges share no area.
        assert_eq!(iou([0.0, 0.0, 1.0, 1.0], [1.0, 0.0, 2.0, 1.0]), 0.0);
        // Nested: a quarter-area box inside.
        assert_eq!(iou([0.0, 0.0, 2.0, 2.0], [0.0, 0.0, 1.0, 1.0]), 0.25);
        assert_eq!(iou([0.0, 0.0, 2.0, 2.0], [0.0, 0.0, 2.0, 2.0]), 1.0);
        // Half-overlapping squares: 1 / (2 + 2 - 1).
        assert!((iou([0.0, 0.0, 2.0, 1.0], [1.0, 0.0, 3.0, 1.0]) - 1.0 / 3.0).abs() < 1e-12);
        assert_eq!(iou([0.0; 4], [0.0; 4]), 0.0);
    }

    #[test]
    fn recall_counts_identical_reports_as_one_group() {
        // Three items in 1-d: query 0 is closest to key 1 (another group), then key 0.
        let q = [1.0, 1.0, -1.0];
        let k = [0.5, 0.9, -1.0];
        let r = recall_at(&q, &k, 1, &[0, 1, 2], &[1, 2]);
        // Query 0: ranks key 1 (0.9) first, key 0 second -> miss at 1, hit at 2.
        // Query 1: same ranking -> hit at 1. Query 2: key 2 first -> hit at 1.
        assert_eq!(r, vec![2.0 / 3.0, 1.0]);
        // If items 0 and 1 have identical reports, query 0's first result is correct.
        assert_eq!(recall_at(&q, &k, 1, &[0, 0, 2], &[1]), vec![1.0]);
    }

    #[test]
    fn pointing_game_uses_the_peak_cell_centre() {
        // 2x2 grid, peak at cell (x=1, y=0): centre (0.75, 0.25).
        let h = [0.1, 0.9, 0.3, 0.2];
        assert_eq!(pointing_hit(&h, 2, &[[0.5, 0.0, 1.0, 0.5]]), Some(true));
        assert_eq!(pointing_hit(&h, 2, &[[0.0, 0.5, 1.0, 1.0]]), Some(false));
        assert_eq!(pointing_hit(&h, 2, &[]), None);
    }

    #[test]
    fn logistic_regression_separates_and_matches_a_hand_case() {
        // One feature, symmetric data: the bias is 0 and the weight positive.
        let x = [-2.0, -1.0, 1.0, 2.0, -0.5, 0.5];
        let y = [false, false, true, true, true, false];
        let m = Logistic::fit(&x, &y, 1, 1e-3, 50);
        assert!(m.bias.abs() < 1e-6, "{m:?}");
        assert!(m.weights[0] > 0.5, "{m:?}");
        // At the optimum the mean residual is zero (the bias's gradient).
        let p: Vec<f64> = m
            .decision(&x)
            .iter()
            .map(|z| 1.0 / (1.0 + (-z).exp()))
            .collect();
        let mean_r: f64 = p
            .iter()
            .zip(&y)
            .map(|(p, &y)| p - y as u8 as f64)
            .sum::<f64>()
            / 6.0;
        assert!(mean_r.abs() < 1e-9);
        // One class only: constant log-odds, no direction.
        let m = Logistic::fit(&x, &[false; 6], 1, 1e-3, 50);
        assert_eq!(m.weights, vec![0.0]);
        assert!(m.bias < -5.0);
    }

    #[test]
    fn mean_and_spread() {
        let (m, s) = mean_std(&[1.0, 2.0, 3.0, f64::NAN]);
        assert_eq!(m, 2.0);
        assert_eq!(s, 1.0);
    }
}
