//! Training of the nodule model (`asg-train nodules`): lung crops of the JSRT training films
//! (`data::lung_crops`), some of their nodule-free lungs given a drawn nodule (`data::nodules`,
//! drawn at the crop's resolution), flipped, re-exposed and noised; the lung's pooled logit
//! learns the lung's label and each cell learns whether the nodule's disc reaches it.

use crate::config::NORMALISATION;
use crate::data::lung_crops::{Disc, LungCrop, CROP_H, CROP_W};
use crate::data::nodules::draw_in_plane;
use crate::data::Split;
use crate::model::nodule_net::{pool, weighted_bce, NoduleNet, STRIDE};
use crate::train::error::TrainError;
use crate::train::optim::{learning_rate, AdamW};
use candle_core::{Device, Tensor};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// How a nodule model is trained.
#[derive(Debug, Clone)]
pub struct NoduleFitOptions {
    pub steps: u64,
    pub batch: usize,
    pub lr: f64,
    pub warmup: u64,
    pub seed: u64,
    /// The chance that a nodule-free lung gets a drawn nodule.
    pub drawn: f64,
    /// The drawn nodules' peak contrast, display units.
    pub contrast: [f64; 2],
    /// Weight of the cells' loss beside the lung's.
    pub dense_weight: f64,
    /// Weight of a cell the nodule reaches, beside a cell it does not.
    pub positive_cell_weight: f64,
    /// Steps between reports.
    pub report_every: u64,
    /// The share of each batch drawn from JSRT's lungs when other sources' (nodule-free) lungs
    /// are among the crops; the rest from those.
    pub jsrt_share: f64,
}

impl Default for NoduleFitOptions {
    fn default() -> Self {
        Self {
            steps: 1500,
            batch: 32,
            lr: 1e-3,
            warmup: 50,
            seed: 1,
            drawn: 0.35,
            contrast: [0.03, 0.20],
            dense_weight: 1.0,
            positive_cell_weight: 10.0,
            report_every: 25,
            jsrt_share: 0.5,
        }
    }
}

/// One crop as the model sees it: normalised pixels, the lung's coverage per cell, the cells'
/// targets and the lung's label.
pub struct Prepared {
    pub pixels: Vec<f32>,
    pub cell_weights: Vec<f32>,
    pub cell_targets: Vec<f32>,
    pub label: f32,
}

/// Cells along each axis.
pub const GRID_W: usize = CROP_W / STRIDE;
pub const GRID_H: usize = CROP_H / STRIDE;

/// The lung's mean coverage of each cell.
pub fn cell_coverage(mask: &[f32]) -> Vec<f32> {
    let mut out = vec![0.0f32; GRID_W * GRID_H];
    for y in 0..CROP_H {
        for x in 0..CROP_W {
            out[(y / STRIDE) * GRID_W + x / STRIDE] += mask[y * CROP_W + x];
        }
    }
    let area = (STRIDE * STRIDE) as f32;
    out.iter_mut().for_each(|v| *v /= area);
    out
}

/// 1 for the cells whose centre lies within the disc's radius plus half a cell (so the cell
/// holding the centre is always one), 0 elsewhere.
pub fn cell_targets(disc: Option<Disc>) -> Vec<f32> {
    let mut out = vec![0.0f32; GRID_W * GRID_H];
    if let Some(d) = disc {
        let reach = d.radius + STRIDE as f64 / 2.0;
        for gy in 0..GRID_H {
            for gx in 0..GRID_W {
                let cx = (gx as f64 + 0.5) * STRIDE as f64;
                let cy = (gy as f64 + 0.5) * STRIDE as f64;
                if (cx - d.cx).powi(2) + (cy - d.cy).powi(2) <= reach * reach {
                    out[gy * GRID_W + gx] = 1.0;
                }
            }
        }
    }
    out
}

/// Normalises display values as the whole-film model's input is normalised.
pub fn normalise(pixels: &[f32]) -> Vec<f32> {
    pixels
        .iter()
        .map(|&v| (v - NORMALISATION.mean) / NORMALISATION.std)
        .collect()
}

/// A training view of a crop: maybe a drawn nodule (nodule-free lungs only), then a mirror, a
/// shift of up to 8 pixels, a display curve, a contrast and brightness change and noise.
pub fn augment(crop: &LungCrop, o: &NoduleFitOptions, rng: &mut ChaCha8Rng) -> Option<Prepared> {
    let mut label = crop.label?;
    let mut pixels = crop.pixels.clone();
    let mut mask = crop.mask.clone();
    let mut disc = crop.nodule;
    if !label && rng.random_bool(o.drawn.clamp(0.0, 1.0)) {
        if let Some((cx, cy, radius, _)) = draw_in_plane(
            &mut pixels,
            CROP_W,
            CROP_H,
            &mask,
            crop.lung_width,
            o.contrast,
            1.0,
            rng,
        ) {
            label = true;
            disc = Some(Disc { cx, cy, radius });
        }
    }
    if rng.random_bool(0.5) {
        for plane in [&mut pixels, &mut mask] {
            plane.chunks_mut(CROP_W).for_each(|row| row.reverse());
        }
        disc = disc.map(|d| Disc {
            cx: CROP_W as f64 - d.cx,
            ..d
        });
    }
    let (dx, dy) = (rng.random_range(-8i64..=8), rng.random_range(-8i64..=8));
    let shift = |plane: &[f32]| -> Vec<f32> {
        let mut out = vec![0.0f32; plane.len()];
        for y in 0..CROP_H as i64 {
            for x in 0..CROP_W as i64 {
                let (sx, sy) = (x - dx, y - dy);
                if sx >= 0 && sy >= 0 && sx < CROP_W as i64 && sy < CROP_H as i64 {
                    out[(y as usize) * CROP_W + x as usize] =
                        plane[(sy as usize) * CROP_W + sx as usize];
                }
            }
        }
        out
    };
    let (mut pixels, mask) = (shift(&pixels), shift(&mask));
    let disc = disc.map(|d| Disc {
        cx: d.cx + dx as f64,
        cy: d.cy + dy as f64,
        ..d
    });
    let gamma = rng.random_range(0.7f32..1.4);
    let gain = rng.random_range(0.9f32..1.1);
    let offset = rng.random_range(-0.05f32..0.05);
    let noise = rng.random_range(0.0f32..0.02);
    for v in pixels.iter_mut() {
        let n: f32 = rng.random_range(-1.0f32..1.0) * noise * 1.7;
        *v = (v.clamp(0.0, 1.0).powf(gamma) * gain + offset + n).clamp(0.0, 1.0);
    }
    Some(Prepared {
        pixels: normalise(&pixels),
        cell_weights: cell_coverage(&mask),
        cell_targets: cell_targets(disc),
        label: if label { 1.0 } else { 0.0 },
    })
}

/// The batch tensors: pixels `(B, 1, H, W)`, cell weights and targets `(B, h, w)`, labels `(B,)`.
pub fn stack(items: &[Prepared], dev: &Device) -> candle_core::Result<[Tensor; 4]> {
    let b = items.len();
    let cat = |f: &dyn Fn(&Prepared) -> &[f32]| -> Vec<f32> {
        items.iter().flat_map(|p| f(p).iter().copied()).collect()
    };
    Ok([
        Tensor::from_vec(cat(&|p| &p.pixels), (b, 1, CROP_H, CROP_W), dev)?,
        Tensor::from_vec(cat(&|p| &p.cell_weights), (b, GRID_H, GRID_W), dev)?,
        Tensor::from_vec(cat(&|p| &p.cell_targets), (b, GRID_H, GRID_W), dev)?,
        Tensor::from_vec(items.iter().map(|p| p.label).collect(), b, dev)?,
    ])
}

/// The loss of a batch: the lungs' BCE plus `dense_weight` times the cells' (cells weighted by the
/// lung's coverage, cells the nodule reaches by `positive_cell_weight` more).
pub fn loss(
    net: &NoduleNet,
    batch: &[Tensor; 4],
    o: &NoduleFitOptions,
    train: bool,
) -> candle_core::Result<(Tensor, Tensor, Tensor)> {
    let [x, weights, targets, labels] = batch;
    let cells = net.cells(x, train)?;
    let lung = pool(&cells, weights)?;
    let lung_loss = weighted_bce(&lung, labels, &labels.ones_like()?)?;
    let cell_w = (weights * ((targets * (o.positive_cell_weight - 1.0))? + 1.0)?)?;
    let cell_loss = weighted_bce(&cells, targets, &cell_w)?;
    let total = (&lung_loss + (&cell_loss * o.dense_weight)?)?;
    Ok((total, lung_loss, cell_loss))
}

/// Trains `net` (its variables in `varmap`) on the training split's labelled crops; `report` is
/// called every `report_every` steps with the step, the lung loss and the cell loss (means since the last
/// call).
pub fn fit_nodules(
    crops: &[LungCrop],
    net: &NoduleNet,
    varmap: &candle_nn::VarMap,
    o: &NoduleFitOptions,
    report: &mut dyn FnMut(u64, f64, f64),
) -> Result<(), TrainError> {
    let labelled = |c: &&LungCrop| c.split == Split::Train && c.label.is_some();
    let train: Vec<&LungCrop> = crops
        .iter()
        .filter(labelled)
        .filter(|c| c.source == "jsrt")
        .collect();
    let others: Vec<&LungCrop> = crops
        .iter()
        .filter(labelled)
        .filter(|c| c.source != "jsrt")
        .collect();
    if train.is_empty() {
        return Err(TrainError::Invalid(
            "no labelled lung crop in the training split (JSRT films with lung masks)".into(),
        ));
    }
    if o.batch == 0 || o.steps == 0 {
        return Err(TrainError::Invalid(
            "batch and steps must be at least 1".into(),
        ));
    }
    let dev = Device::Cpu;
    let mut rng = ChaCha8Rng::seed_from_u64(o.seed);
    let mut opt = AdamW::new(varmap, 1e-4)?;
    let (mut lung_sum, mut cell_sum, mut n) = (0.0, 0.0, 0u32);
    for step in 0..o.steps {
        let items: Vec<Prepared> = (0..o.batch)
            .filter_map(|_| {
                // JSRT-only runs draw exactly as before other sources could be added.
                let pool = if !others.is_empty() && rng.random::<f64>() >= o.jsrt_share {
                    &others
                } else {
                    &train
                };
                augment(pool[rng.random_range(0..pool.len())], o, &mut rng)
            })
            .collect();
        let batch = stack(&items, &dev)?;
        let (total, lung_loss, cell_loss) = loss(net, &batch, o, true)?;
        let grads = total.backward()?;
        let norm = opt.grad_norm(&grads)?;
        let scale = if norm > 5.0 { 5.0 / norm } else { 1.0 };
        opt.update(&grads, learning_rate(step, o.lr, o.warmup, o.steps), scale)?;
        lung_sum += lung_loss.to_scalar::<f32>()? as f64;
        cell_sum += cell_loss.to_scalar::<f32>()? as f64;
        n += 1;
        if (step + 1) % o.report_every.max(1) == 0 || step + 1 == o.steps {
            report(step + 1, lung_sum / n as f64, cell_sum / n as f64);
            (lung_sum, cell_sum, n) = (0.0, 0.0, 0);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn crop(label: Option<bool>, nodule: Option<Disc>) -> LungCrop {
        // A lung filling the crop's middle, a bright square where the nodule is.
        let mask: Vec<f32> = (0..CROP_W * CROP_H)
            .map(|i| {
                let (x, y) = (i % CROP_W, i / CROP_W);
                ((16..112).contains(&x) && (16..240).contains(&y)) as u8 as f32
            })
            .collect();
        LungCrop {
            source: "jsrt".into(),
            film: "f".into(),
            lung: 0,
            split: Split::Train,
            pixels: mask.iter().map(|m| 0.3 * m).collect(),
            lung_width: 96.0,
            mask,
            nodule,
            label,
            subtlety: None,
        }
    }

    #[test]
    fn cells_the_disc_reaches_are_targets_and_the_centre_cell_always() {
        let t = cell_targets(Some(Disc {
            cx: 60.0,
            cy: 100.0,
            radius: 1.0,
        }));
        assert_eq!(t.iter().sum::<f32>(), 1.0);
        assert_eq!(t[(100 / STRIDE) * GRID_W + 60 / STRIDE], 1.0);
        let t = cell_targets(Some(Disc {
            cx: 64.0,
            cy: 128.0,
            radius: 12.0,
        }));
        // Centres within 16 px of (64, 128): the 4 x 4 block around it less its corners.
        assert_eq!(t.iter().sum::<f32>(), 12.0);
        assert_eq!(cell_targets(None).iter().sum::<f32>(), 0.0);
    }

    #[test]
    fn coverage_is_the_share_of_each_cell_in_the_lung() {
        let c = crop(Some(false), None);
        let cov = cell_coverage(&c.mask);
        assert_eq!(cov[0], 0.0);
        assert_eq!(cov[2 * GRID_W + 2], 1.0);
        assert!((cov.iter().sum::<f32>() - (96.0 * 224.0) / 64.0).abs() < 1e-3);
    }

    #[test]
    fn augmentation_keeps_the_label_and_moves_the_disc_with_the_pixels() {
        let o = NoduleFitOptions {
            drawn: 0.0,
            ..Default::default()
        };
        let c = crop(
            Some(true),
            Some(Disc {
                cx: 30.0,
                cy: 60.0,
                radius: 6.0,
            }),
        );
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        for _ in 0..8 {
            let p = augment(&c, &o, &mut rng).unwrap();
            assert_eq!(p.label, 1.0);
            assert!(p.cell_targets.iter().sum::<f32>() >= 1.0);
            assert_eq!(p.pixels.len(), CROP_W * CROP_H);
        }
        // An unlabelled lung is not trained on; a nodule-free one gets a drawn nodule when asked.
        assert!(augment(&crop(None, None), &o, &mut rng).is_none());
        let always = NoduleFitOptions {
            drawn: 1.0,
            ..Default::default()
        };
        let p = augment(&crop(Some(false), None), &always, &mut rng).unwrap();
        assert_eq!(p.label, 1.0);
        assert!(p.cell_targets.iter().sum::<f32>() >= 1.0);
    }

    #[test]
    fn a_few_steps_on_a_plain_task_lower_the_loss() {
        // Lungs with a bright disc against lungs without: the loss must fall.
        let mut crops = Vec::new();
        for i in 0..8 {
            let mut c = crop(Some(i % 2 == 0), None);
            if i % 2 == 0 {
                let d = Disc {
                    cx: 40.0 + 4.0 * i as f64,
                    cy: 80.0 + 8.0 * i as f64,
                    radius: 8.0,
                };
                for y in 0..CROP_H {
                    for x in 0..CROP_W {
                        if (x as f64 - d.cx).powi(2) + (y as f64 - d.cy).powi(2) < 64.0 {
                            c.pixels[y * CROP_W + x] = 0.9;
                        }
                    }
                }
                c.nodule = Some(d);
            }
            crops.push(c);
        }
        let varmap = candle_nn::VarMap::new();
        let vb = candle_nn::VarBuilder::from_varmap(&varmap, candle_core::DType::F32, &Device::Cpu);
        let net = NoduleNet::new(vb).unwrap();
        let o = NoduleFitOptions {
            steps: 16,
            batch: 4,
            drawn: 0.0,
            warmup: 2,
            report_every: 4,
            ..Default::default()
        };
        let mut losses = Vec::new();
        fit_nodules(&crops, &net, &varmap, &o, &mut |_, l, c| losses.push(l + c)).unwrap();
        assert!(
            losses.last().unwrap() < losses.first().unwrap(),
            "{losses:?}"
        );
    }
}
