//! Lesion-cell targets on the real films of ../shared/realcxr (when present): each JSRT nodule's
//! centre, carried into the model input by the letterbox and the augmentation's own geometry,
//! lies in a cell marked for it, and a nodule marks only the few cells around it; a non-nodule
//! JSRT film knows the nodule absent from every cell; an ieee8023 film outlined by the
//! GeneralBlockchain radiologists marks its opacities.

mod common;

use asg_trainer::data::{prepare, realcxr, Split};
use asg_trainer::vocab::FINDINGS;
use rand::SeedableRng;
use std::collections::HashMap;

#[test]
fn real_lesions_mark_the_cells_they_lie_in() {
    let Some(real) = common::real_films() else {
        return;
    };
    let set = realcxr::scan(&real).unwrap();
    let index: HashMap<String, realcxr::RealRecord> = realcxr::read_index(&real)
        .unwrap()
        .into_iter()
        .map(|r| (r.id.clone(), r))
        .collect();
    let config = common::config("real160d.toml");
    let tokenizer = common::tiny_tokenizer();
    let grid = config.model.grid_side();
    let nodule = asg_report::finding_index("nodule").unwrap();
    let opacity = asg_report::finding_index("opacity").unwrap();
    let (mut nodules, mut normals, mut opacities) = (0, 0, 0);
    for (n, r) in set
        .records
        .iter()
        .filter(|r| r.split == Split::Test)
        .enumerate()
    {
        let raw = &index[&r.image_id];
        // Every test film of JSRT, and ieee8023 films until five outlined opacities are seen.
        if raw.source != "jsrt" && opacities >= 5 {
            continue;
        }
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(n as u64);
        let e = prepare(r, &tokenizer, &config, Some(&mut rng)).unwrap();
        let cells = &e.lesions;
        assert_eq!(cells.targets.len(), grid * grid * FINDINGS);
        let marked = |f: usize| -> Vec<usize> {
            (0..grid * grid)
                .filter(|&c| cells.targets[c * FINDINGS + f] == 1.0)
                .collect()
        };
        let jsrt_nodules = raw.nodules.clone().unwrap_or_default();
        if raw.source == "jsrt" && jsrt_nodules.len() == 1 && jsrt_nodules[0].size_mm <= 30.0 {
            // The centre's cell, found independently: the nodule's centre moved like the boxes
            // the loader moves (a zero-size box at the centre).
            let c = jsrt_nodules[0].center;
            let mut probe = r.clone();
            probe.boxes =
                vec![Some([c[0] - 1.0, c[1] - 1.0, c[0] + 1.0, c[1] + 1.0]); probe.boxes.len()];
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(n as u64);
            let p = prepare(&probe, &tokenizer, &config, Some(&mut rng)).unwrap();
            let Some(at) = p.boxes.iter().zip(&p.box_present).find(|(_, &k)| k) else {
                continue; // the centre left the picture
            };
            let (x, y) = (
                (at.0[0] + at.0[2]) / 2.0 * grid as f32,
                (at.0[1] + at.0[3]) / 2.0 * grid as f32,
            );
            let hits = marked(nodule);
            assert_eq!(cells.known[nodule], 1.0, "{}", r.image_id);
            let cell = (y as usize).min(grid - 1) * grid + (x as usize).min(grid - 1);
            assert!(
                hits.contains(&cell),
                "{}: centre in cell {cell}, marked {hits:?}",
                r.image_id
            );
            assert!(hits.len() <= 6, "{}: {} cells", r.image_id, hits.len());
            nodules += 1;
        } else if raw.source == "jsrt" && raw.finding.as_deref() == Some("normal") {
            assert_eq!(cells.known[nodule], 1.0, "{}", r.image_id);
            assert!(marked(nodule).is_empty(), "{}", r.image_id);
            normals += 1;
        } else if cells.outlined()[opacity] == 1.0 {
            assert!(!marked(opacity).is_empty());
            opacities += 1;
        }
    }
    assert!(
        nodules >= 5 && normals >= 3 && opacities >= 3,
        "checked {nodules} nodules, {normals} normal films, {opacities} outlined opacities"
    );
    eprintln!("checked {nodules} nodules, {normals} normal films, {opacities} outlined opacities");
}
