//! Evaluation of the nodule model (`asg-train nodules`) on the held-out JSRT films (the realcxr
//! validation and test splits): a film's score is its more suspicious lung's; AUROC of the
//! nodule films against the non-nodule films, overall, by JSRT subtlety and by lung; the share of
//! nodule lungs whose most suspicious cell lies on the nodule; and nodules drawn into the
//! held-out non-nodule films' lungs (at JSRT's contrast and brighter), each copy against the
//! films as they were. The crops come from the expert lung masks (the product would cut them from
//! its predicted lungs, whose boxes reach IoU 0.91 on these films).

use crate::data::lung_crops::{Disc, LungCrop, CROP_W};
use crate::data::nodules::draw_in_plane;
use crate::data::Split;
use crate::eval::metrics::{auroc, bootstrap_auroc};
use crate::model::nodule_net::{pool, NoduleNet, STRIDE};
use crate::train::nodule_fit::{cell_coverage, normalise, GRID_H, GRID_W};
use candle_core::{Device, Tensor};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use std::collections::BTreeMap;

/// An AUROC with its film counts and 95% bootstrap interval.
#[derive(Debug, Clone, Serialize)]
pub struct Auroc {
    pub value: Option<f64>,
    pub interval: Option<(f64, f64)>,
    pub positives: usize,
    pub negatives: usize,
}

/// What the nodule model scored on held-out films.
#[derive(Debug, Clone, Serialize)]
pub struct NoduleEvaluation {
    pub films: Auroc,
    pub by_subtlety: BTreeMap<String, Auroc>,
    pub lungs: Auroc,
    /// Nodule lungs whose most suspicious cell lies within the nodule's radius plus half a cell.
    pub pointing: (usize, usize),
    /// Nodule films whose nodule lung scores above their other lung (the film held fixed: what
    /// film-level differences between JSRT's nodule and non-nodule films cannot explain).
    pub paired: (usize, usize),
    /// Drawn nodules, per contrast range ("0.04-0.10"): copies against the films as they were.
    pub drawn: BTreeMap<String, Auroc>,
    /// Held-out films of other sources (no nodule labels; COVID-era films, mostly abnormal)
    /// against JSRT's held-out non-nodule films: 0.5 when the model scores them alike, near 1
    /// when it takes their opacities for nodules. None without such crops.
    pub other_sources: Option<Auroc>,
}

fn measure(pos: &[f32], neg: &[f32], seed: u64) -> Auroc {
    let scores: Vec<f32> = pos.iter().chain(neg).copied().collect();
    let labels: Vec<bool> = pos
        .iter()
        .map(|_| true)
        .chain(neg.iter().map(|_| false))
        .collect();
    let groups: Vec<Vec<(f32, bool)>> = scores
        .iter()
        .zip(&labels)
        .map(|(&s, &l)| vec![(s, l)])
        .collect();
    Auroc {
        value: auroc(&scores, &labels),
        interval: bootstrap_auroc(&groups, 2000, seed),
        positives: pos.len(),
        negatives: neg.len(),
    }
}

/// The lung probabilities and cell logits of crops given as (display pixels, mask), in batches.
pub fn score(
    net: &NoduleNet,
    crops: &[(&[f32], &[f32])],
) -> candle_core::Result<Vec<(f32, Vec<f32>)>> {
    let dev = Device::Cpu;
    let mut out = Vec::with_capacity(crops.len());
    for chunk in crops.chunks(16) {
        let b = chunk.len();
        let pixels: Vec<f32> = chunk.iter().flat_map(|&(p, _)| normalise(p)).collect();
        let weights: Vec<f32> = chunk.iter().flat_map(|&(_, m)| cell_coverage(m)).collect();
        let x = Tensor::from_vec(
            pixels,
            (b, 1, crate::data::lung_crops::CROP_H, CROP_W),
            &dev,
        )?;
        let w = Tensor::from_vec(weights, (b, GRID_H, GRID_W), &dev)?;
        let cells = net.cells(&x, false)?;
        let lung = crate::model::layers::sigmoid(&pool(&cells, &w)?)?.to_vec1::<f32>()?;
        let cells = cells.flatten_from(1)?.to_vec2::<f32>()?;
        out.extend(lung.into_iter().zip(cells));
    }
    Ok(out)
}

fn points_at(cells: &[f32], d: &Disc) -> bool {
    let Some(peak) = cells
        .iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .map(|(i, _)| i)
    else {
        return false;
    };
    let cx = ((peak % GRID_W) as f64 + 0.5) * STRIDE as f64;
    let cy = ((peak / GRID_W) as f64 + 0.5) * STRIDE as f64;
    let reach = d.radius + STRIDE as f64 / 2.0;
    (cx - d.cx).powi(2) + (cy - d.cy).powi(2) <= reach * reach
}

/// Evaluates `net` on the crops outside the training split; `copies` drawn copies of each
/// non-nodule film per contrast range.
pub fn evaluate_nodules(
    net: &NoduleNet,
    crops: &[LungCrop],
    contrasts: &[[f64; 2]],
    copies: usize,
    seed: u64,
) -> candle_core::Result<NoduleEvaluation> {
    let held: Vec<&LungCrop> = crops
        .iter()
        .filter(|c| c.split != Split::Train && c.source == "jsrt")
        .collect();
    let others: Vec<&LungCrop> = crops
        .iter()
        .filter(|c| c.split != Split::Train && c.source != "jsrt")
        .collect();
    let scored = score(
        net,
        &held
            .iter()
            .map(|c| (c.pixels.as_slice(), c.mask.as_slice()))
            .collect::<Vec<_>>(),
    )?;
    // Films: the more suspicious lung; a film is a nodule film when either lung holds one or
    // its record says it has one (`subtlety`).
    let mut films: BTreeMap<&str, (f32, bool, Option<u8>)> = BTreeMap::new();
    let (mut lung_pos, mut lung_neg) = (Vec::new(), Vec::new());
    let mut pointing = (0, 0);
    for (c, (p, cells)) in held.iter().zip(&scored) {
        let nodule_film = c.subtlety.is_some() || c.label == Some(true);
        let e = films
            .entry(&c.film)
            .or_insert((0.0, nodule_film, c.subtlety));
        e.0 = e.0.max(*p);
        match c.label {
            Some(true) => lung_pos.push(*p),
            Some(false) => lung_neg.push(*p),
            None => {}
        }
        if let (Some(true), Some(d)) = (c.label, &c.nodule) {
            pointing.1 += 1;
            pointing.0 += points_at(cells, d) as usize;
        }
    }
    let mut by_film: BTreeMap<&str, [Option<(f32, bool)>; 2]> = BTreeMap::new();
    for (c, (p, _)) in held.iter().zip(&scored) {
        if let Some(l) = c.label {
            by_film.entry(&c.film).or_default()[c.lung] = Some((*p, l));
        }
    }
    let mut paired = (0, 0);
    for [a, b] in by_film.values() {
        if let (Some(a), Some(b)) = (a, b) {
            if a.1 != b.1 {
                paired.1 += 1;
                let (pos, neg) = if a.1 { (a.0, b.0) } else { (b.0, a.0) };
                paired.0 += (pos > neg) as usize;
            }
        }
    }
    let normal: Vec<f32> = films.values().filter(|f| !f.1).map(|f| f.0).collect();
    let nodule: Vec<f32> = films.values().filter(|f| f.1).map(|f| f.0).collect();
    let mut by_subtlety = BTreeMap::new();
    for s in 1..=5u8 {
        let pos: Vec<f32> = films
            .values()
            .filter(|f| f.1 && f.2 == Some(s))
            .map(|f| f.0)
            .collect();
        if !pos.is_empty() {
            by_subtlety.insert(s.to_string(), measure(&pos, &normal, seed + s as u64));
        }
    }
    // Drawn nodules: each copy of a non-nodule film gets one nodule in one lung; the copy's score
    // is the more suspicious of that lung (drawn) and the other (as it was).
    let mut lungs_of: BTreeMap<&str, Vec<(usize, f32)>> = BTreeMap::new();
    for (i, (c, (p, _))) in held.iter().zip(&scored).enumerate() {
        if c.label == Some(false) && c.subtlety.is_none() {
            lungs_of.entry(&c.film).or_default().push((i, *p));
        }
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut drawn = BTreeMap::new();
    for contrast in contrasts {
        let mut inputs = Vec::new();
        let mut other = Vec::new();
        for lungs in lungs_of.values().filter(|l| l.len() == 2) {
            for k in 0..copies {
                let (i, _) = lungs[k % 2];
                let c = held[i];
                let mut pixels = c.pixels.clone();
                if draw_in_plane(
                    &mut pixels,
                    CROP_W,
                    crate::data::lung_crops::CROP_H,
                    &c.mask,
                    c.lung_width,
                    *contrast,
                    1.0,
                    &mut rng,
                )
                .is_some()
                {
                    inputs.push((pixels, c.mask.as_slice()));
                    other.push(lungs[(k + 1) % 2].1);
                }
            }
        }
        let borrowed: Vec<(&[f32], &[f32])> =
            inputs.iter().map(|(p, m)| (p.as_slice(), *m)).collect();
        let got = score(net, &borrowed)?;
        let copies_scores: Vec<f32> = got
            .iter()
            .zip(&other)
            .map(|((p, _), o)| p.max(*o))
            .collect();
        drawn.insert(
            format!("{:.2}-{:.2}", contrast[0], contrast[1]),
            measure(&copies_scores, &normal, seed + 10),
        );
    }
    let other_sources = if others.is_empty() {
        None
    } else {
        let got = score(
            net,
            &others
                .iter()
                .map(|c| (c.pixels.as_slice(), c.mask.as_slice()))
                .collect::<Vec<_>>(),
        )?;
        let mut by_film: BTreeMap<&str, f32> = BTreeMap::new();
        for (c, (p, _)) in others.iter().zip(&got) {
            let e = by_film.entry(&c.film).or_insert(0.0);
            *e = e.max(*p);
        }
        let films: Vec<f32> = by_film.into_values().collect();
        Some(measure(&films, &normal, seed + 30))
    };
    Ok(NoduleEvaluation {
        other_sources,
        films: measure(&nodule, &normal, seed),
        by_subtlety,
        lungs: measure(&lung_pos, &lung_neg, seed + 20),
        pointing,
        paired,
        drawn,
    })
}

impl NoduleEvaluation {
    /// A markdown table.
    pub fn markdown(&self) -> String {
        let row = |name: &str, a: &Auroc| {
            let v = a.value.map_or("—".into(), |v| format!("{v:.3}"));
            let ci = a
                .interval
                .map_or(String::new(), |(lo, hi)| format!(" ({lo:.2}-{hi:.2})"));
            format!("| {name} | {v}{ci} | {} / {} |\n", a.positives, a.negatives)
        };
        let mut s =
            String::from("| films | AUROC (95% CI) | positives / negatives |\n|---|---|---|\n");
        s += &row("nodule films against non-nodule films", &self.films);
        for (k, a) in &self.by_subtlety {
            s += &row(&format!("subtlety {k}"), a);
        }
        s += &row("lungs with a nodule against lungs without", &self.lungs);
        for (k, a) in &self.drawn {
            s += &row(&format!("drawn nodules, contrast {k}"), a);
        }
        if let Some(a) = &self.other_sources {
            s += &row(
                "other sources' films (no nodule labels) against non-nodule films: lower is better",
                a,
            );
        }
        s += &format!(
            "\nthe most suspicious cell on the nodule: {} of {} nodule lungs\n",
            self.pointing.0, self.pointing.1
        );
        s += &format!(
            "the nodule's lung above the film's other lung: {} of {} nodule films\n",
            self.paired.0, self.paired.1
        );
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_peak_cell_points_at_a_nodule_within_its_radius_and_half_a_cell() {
        let mut cells = vec![0.0f32; GRID_W * GRID_H];
        cells[3 * GRID_W + 5] = 4.0; // the cell centred at (44, 28)
        let near = Disc {
            cx: 50.0,
            cy: 30.0,
            radius: 3.0,
        };
        assert!(points_at(&cells, &near));
        let far = Disc {
            cx: 80.0,
            cy: 30.0,
            radius: 3.0,
        };
        assert!(!points_at(&cells, &far));
    }
}
