//! Lesion-cell targets: where the experts' lesion masks (and JSRT nodule discs) lie on the
//! model's feature grid, in the model input's frame (through the letterbox and the
//! augmentation's geometry), for the dense lesion losses (`loss.lesion`, `loss.lesion_attention`).
//!
//! One rule per finding of a film:
//! - the film has lesion maps of the finding (the sources that give them outline every lesion of
//!   their classes: the GeneralBlockchain radiologists, JSRT's one nodule a film): the finding is
//!   known in every cell, present where a map reaches into the cell (any of [`SAMPLES`] x
//!   [`SAMPLES`] points), absent elsewhere;
//! - the finding is known absent from the film: absent from every cell;
//! - otherwise (present but not outlined, as a Brixia zone score, or unknown): no cell target.

use crate::data::augment::Geometry;
use crate::data::imagenome::GivenLabels;
use asg_dicom::Letterbox;

/// Points read per cell along each axis.
pub const SAMPLES: usize = 4;

/// A film's lesion-cell targets.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LesionCells {
    /// `[cells * findings]`, cell-major (the region head's per-cell logits' layout): 1 where the
    /// finding lies in the cell.
    pub targets: Vec<f32>,
    /// `[findings]`: 1 where the finding's cells are known.
    pub known: Vec<f32>,
}

impl LesionCells {
    /// `[findings]`: 1 where the finding lies in at least one cell (so is known and outlined).
    pub fn outlined(&self) -> Vec<f32> {
        let findings = self.known.len();
        let mut out = vec![0.0f32; findings];
        for (i, &t) in self.targets.iter().enumerate() {
            out[i % findings] = out[i % findings].max(t);
        }
        out
    }
}

/// The targets of a film with `given` labels (None: nothing known) on a `grid` x `grid` feature
/// grid over a `size` x `size` input; `findings` is the vocabulary's size.
pub fn cell_targets(
    given: Option<&GivenLabels>,
    letterbox: &Letterbox,
    geometry: Option<&Geometry>,
    size: usize,
    grid: usize,
    findings: usize,
) -> LesionCells {
    let cells = grid * grid;
    let mut out = LesionCells {
        targets: vec![0.0; cells * findings],
        known: vec![0.0; findings],
    };
    let Some(given) = given else {
        return out;
    };
    for (f, known) in out.known.iter_mut().enumerate() {
        *known = if given.lesions.iter().any(|l| l.finding == f)
            || given.tags.get(f).copied().flatten() == Some(0.0)
        {
            1.0
        } else {
            0.0
        };
    }
    if given.lesions.is_empty() {
        return out;
    }
    // Each cell's sample points in film pixels, computed once for every outlined finding.
    let step = size as f64 / grid as f64;
    let offset = |k: usize| (k as f64 + 0.5) / SAMPLES as f64;
    let points: Vec<(f32, f32)> = (0..cells * SAMPLES * SAMPLES)
        .map(|n| {
            let (c, s) = (n / (SAMPLES * SAMPLES), n % (SAMPLES * SAMPLES));
            let u = ((c % grid) as f64 + offset(s % SAMPLES)) * step;
            let v = ((c / grid) as f64 + offset(s / SAMPLES)) * step;
            let (u, v) = geometry.map_or((u, v), |g| g.source(u, v, size));
            let (x, y) = letterbox.to_image(u, v);
            (x as f32, y as f32)
        })
        .collect();
    for l in &given.lesions {
        for (c, cell) in points.chunks(SAMPLES * SAMPLES).enumerate() {
            if cell.iter().any(|&(x, y)| l.contains(x, y)) {
                out.targets[c * findings + l.finding] = 1.0;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::masks::LesionMap;

    fn given(tags: Vec<Option<f32>>, lesions: Vec<LesionMap>) -> GivenLabels {
        GivenLabels {
            text: String::new(),
            tags,
            regions: vec![],
            normal: false,
            lesions,
        }
    }

    /// A 100 x 100 film letterboxed into a 40 x 40 input without padding (0.4 input pixels a
    /// film pixel), a 4 x 4 grid (10 input pixels, 25 film pixels a cell).
    fn square_letterbox() -> Letterbox {
        Letterbox::new(100, 100, 40)
    }

    #[test]
    fn a_disc_marks_the_cells_it_reaches_and_only_those() {
        // Finding 1: a disc of radius 10 at (37, 37) in film pixels: inside cell (1, 1) (film
        // 25..50) and nowhere else. Finding 0 known absent, finding 2 unknown.
        let disc = LesionMap::disc(1, 100, 100, 37.0, 37.0, 10.0).unwrap();
        let g = given(vec![Some(0.0), Some(1.0), None], vec![disc]);
        let t = cell_targets(Some(&g), &square_letterbox(), None, 40, 4, 3);
        assert_eq!(t.known, vec![1.0, 1.0, 0.0]);
        assert_eq!(t.outlined(), vec![0.0, 1.0, 0.0]);
        let cells_of =
            |f: usize| -> Vec<usize> { (0..16).filter(|&c| t.targets[c * 3 + f] == 1.0).collect() };
        assert_eq!(cells_of(1), vec![5]);
        assert!(cells_of(0).is_empty() && cells_of(2).is_empty());
        // A disc across the line between columns 1 and 2 (film x = 50) reaches both.
        let disc = LesionMap::disc(1, 100, 100, 50.0, 37.0, 8.0).unwrap();
        let g = given(vec![None, Some(1.0), None], vec![disc]);
        let t = cell_targets(Some(&g), &square_letterbox(), None, 40, 4, 3);
        let hits: Vec<usize> = (0..16).filter(|&c| t.targets[c * 3 + 1] == 1.0).collect();
        assert_eq!(hits, vec![5, 6]);
    }

    #[test]
    fn the_cells_move_with_the_augmentation() {
        // Shifting the picture 10 input pixels right moves the lesion one cell right.
        let disc = LesionMap::disc(0, 100, 100, 37.0, 37.0, 10.0).unwrap();
        let g = given(vec![Some(1.0)], vec![disc]);
        let shift = Geometry {
            zoom: 1.0,
            angle: 0.0,
            shift: (10.0, 0.0),
        };
        let t = cell_targets(Some(&g), &square_letterbox(), Some(&shift), 40, 4, 1);
        let hits: Vec<usize> = (0..16).filter(|&c| t.targets[c] == 1.0).collect();
        assert_eq!(hits, vec![6]);
    }

    #[test]
    fn a_positive_without_an_outline_and_a_film_without_labels_give_no_target() {
        let g = given(vec![Some(1.0)], vec![]);
        let t = cell_targets(Some(&g), &square_letterbox(), None, 40, 4, 1);
        assert_eq!((t.known[0], t.outlined()[0]), (0.0, 0.0));
        let t = cell_targets(None, &square_letterbox(), None, 40, 4, 1);
        assert_eq!(t.known, vec![0.0]);
        assert_eq!(t.targets.len(), 16);
    }
}
