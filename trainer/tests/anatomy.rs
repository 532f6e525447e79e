//! The anatomy head's targets on the real films of ../shared/realcxr (when present): a film's
//! lung and heart masks, resampled into the model input with and without augmentation, have the
//! boxes the loader gives those regions (which move by the augmentation's own rule).

mod common;

use asg_trainer::data::{prepare, realcxr, Split};
use asg_trainer::vocab::{anatomy_regions, anatomy_side, ANATOMY};
use rand::SeedableRng;

/// The box (0..1) of the cells above 0.5 in a `side` x `side` plane.
fn plane_box(plane: &[f32], side: usize) -> Option<[f32; 4]> {
    let mut b = [f32::MAX, f32::MAX, f32::MIN, f32::MIN];
    for (i, v) in plane.iter().enumerate() {
        if *v > 0.5 {
            let (x, y) = ((i % side) as f32, (i / side) as f32);
            b = [
                b[0].min(x),
                b[1].min(y),
                b[2].max(x + 1.0),
                b[3].max(y + 1.0),
            ];
        }
    }
    (b[0] <= b[2]).then(|| b.map(|v| v / side as f32))
}

fn iou(a: &[f32; 4], b: &[f32; 4]) -> f32 {
    let w = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let h = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let inter = w * h;
    let area = |r: &[f32; 4]| (r[2] - r[0]) * (r[3] - r[1]);
    inter / (area(a) + area(b) - inter)
}

#[test]
fn real_masks_land_on_their_boxes_through_letterbox_and_augmentation() {
    let Some(real) = common::real_films() else {
        return;
    };
    let set = realcxr::scan(&real).unwrap();
    let mut config = common::config("real160a.toml");
    config.augment.rotation_deg = 0.0; // boxes move exactly as masks only without rotation
    let tokenizer = common::tiny_tokenizer();
    let side = anatomy_side(config.model.input_size, config.model.anatomy_from_stage);
    let regions = anatomy_regions();
    let mut checked = 0;
    // A few JSRT films (lungs, heart, clavicles) and ieee8023 films (lungs, mediastinum).
    let films = set
        .records
        .iter()
        .filter(|r| r.split == Split::Test && r.anatomy.is_some())
        .step_by(7)
        .take(8);
    for (n, r) in films.enumerate() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(n as u64);
        for augmented in [false, true] {
            let e = prepare(
                r,
                &tokenizer,
                &config,
                if augmented { Some(&mut rng) } else { None },
            )
            .unwrap();
            assert_eq!(e.anatomy.len(), ANATOMY.len() * side * side);
            for (ch, (name, _)) in ANATOMY.iter().enumerate() {
                let known = e.anatomy_known[ch] == 1.0;
                let has_mask = r.anatomy.as_ref().unwrap()[ch].is_some();
                assert_eq!(known, has_mask, "{} {name}", r.image_id);
                if !known || !e.box_present[regions[ch]] || name.ends_with("clavicle") {
                    continue; // clavicles are a cell or two tall at this side
                }
                let plane = &e.anatomy[ch * side * side..(ch + 1) * side * side];
                let from_mask = plane_box(plane, side).unwrap();
                let target = e.boxes[regions[ch]];
                let overlap = iou(&from_mask, &target);
                assert!(
                    overlap > 0.85,
                    "{} {name} (augmented {augmented}): mask box {from_mask:?}, target {target:?}, IoU {overlap}",
                    r.image_id
                );
                checked += 1;
            }
        }
    }
    assert!(checked >= 16, "only {checked} masks checked");
    eprintln!("{checked} masks checked against their boxes");
}

/// The zones, apical zones, costophrenic angles and hemidiaphragms the model reads off its
/// masks follow the rules the targets are made by (`data/masks.rs`), here on lungs with sloping
/// bases whose lowest lateral point is not the box's bottom.
#[test]
fn zones_read_off_predicted_masks_follow_the_target_rules() {
    use asg_trainer::data::masks::{apical_zone, lung_regions, LungSide, Mask};
    use asg_trainer::model::anatomy::{derived_boxes, derived_regions};
    use candle_core::{Device, Tensor};
    let (side, size) = (16usize, 64usize);
    // Cells (x, y) of a 16 x 16 grid: the right lung (image left) in columns 2..7, its base
    // falling from row 12 (medial) to row 14 (lateral); the left lung in 9..14, its base
    // lowest medially (row 13) and at row 11 laterally; clavicles in rows 2..4.
    let right = |x: usize, y: usize| {
        (2..7).contains(&x) && y >= 2 && y < 15 - (x.saturating_sub(2) / 2).min(2)
    };
    let left = |x: usize, y: usize| (9..14).contains(&x) && y >= 2 && y < 14 - (x - 9) / 2;
    let right_clavicle = |x: usize, y: usize| (2..7).contains(&x) && (2..4).contains(&y);
    let left_clavicle = |x: usize, y: usize| (9..14).contains(&x) && (2..5).contains(&y);
    let planes: [&dyn Fn(usize, usize) -> bool; 4] =
        [&right, &left, &right_clavicle, &left_clavicle];
    let channel_of = [0usize, 1, 3, 4];
    let mut logits = vec![-5.0f32; ANATOMY.len() * side * side];
    for (plane, &ch) in planes.iter().zip(&channel_of) {
        for y in 0..side {
            for x in 0..side {
                if plane(x, y) {
                    logits[ch * side * side + y * side + x] = 5.0;
                }
            }
        }
    }
    // The same masks at the input's 64 px (4 px a cell), for the data rules.
    let scale = size / side;
    let mask = |f: &dyn Fn(usize, usize) -> bool| Mask {
        width: size,
        height: size,
        data: (0..size * size)
            .map(|i| f((i % size) / scale, (i / size) / scale))
            .collect(),
    };
    let logits = Tensor::from_vec(logits, (1, ANATOMY.len(), side, side), &Device::Cpu).unwrap();
    let (boxes, valid) = derived_boxes(&logits, size).unwrap();
    let boxes: Vec<Vec<f32>> = boxes.squeeze(0).unwrap().to_vec2().unwrap();
    let valid: Vec<f32> = valid.flatten_all().unwrap().to_vec1().unwrap();
    let names: Vec<&str> = derived_regions()
        .into_iter()
        .map(|r| asg_report::REGIONS[r].name)
        .collect();
    let mut want = std::collections::BTreeMap::new();
    for (f, s) in [
        (&right as &dyn Fn(usize, usize) -> bool, LungSide::Right),
        (&left, LungSide::Left),
    ] {
        let m = mask(f);
        for (name, b) in lung_regions(&m, s) {
            want.insert(name, b);
        }
        let c = mask(if s == LungSide::Right {
            &right_clavicle
        } else {
            &left_clavicle
        });
        want.insert(
            format!("{} apical zone", s.name()),
            apical_zone(&m, &c).unwrap(),
        );
    }
    let mut compared = 0;
    for (k, name) in names.iter().enumerate() {
        let Some(w) = want.get(*name) else { continue };
        assert_eq!(valid[k], 1.0, "{name}");
        for (g, w) in boxes[k].iter().zip(w) {
            assert!(
                (g * size as f32 - w).abs() <= 1.0,
                "{name}: read {:?}, rule {w:?}",
                boxes[k].iter().map(|v| v * size as f32).collect::<Vec<_>>()
            );
        }
        compared += 1;
    }
    assert_eq!(compared, 14, "{names:?}");
}

/// Phantoms carry anatomy masks too (`anatomy/<image id>/`): the loader reads them, and each
/// lands on the region box of the phantom's scene graph.
#[test]
fn phantom_masks_land_on_their_scene_graph_boxes() {
    let dir = tempfile::tempdir().unwrap();
    let options = asg_phantom::set::SetOptions {
        n: 6,
        seed: 9,
        image: asg_phantom::Options {
            size: 256,
            normal_share: 0.3,
            vary_format: true,
        },
        split: [4.0, 1.0, 1.0],
        errors: false,
        threads: 2,
    };
    asg_phantom::set::write_set(dir.path(), &options, &|| {}).unwrap();
    let set = asg_trainer::data::scan(dir.path()).unwrap();
    let config = common::config("real160a.toml");
    let tokenizer = common::tiny_tokenizer();
    let side = anatomy_side(config.model.input_size, config.model.anatomy_from_stage);
    let regions = anatomy_regions();
    let mut checked = 0;
    for r in &set.records {
        let masks = r.anatomy.as_ref().expect("a phantom without anatomy masks");
        // Lungs, heart and clavicles; no cardiomediastinum.
        let has: Vec<bool> = masks.iter().map(Option::is_some).collect();
        assert_eq!(has, [true, true, true, true, true, false], "{}", r.image_id);
        let e = prepare(r, &tokenizer, &config, None).unwrap();
        for (ch, &region) in regions.iter().enumerate().take(3) {
            let plane = &e.anatomy[ch * side * side..(ch + 1) * side * side];
            let overlap = iou(&plane_box(plane, side).unwrap(), &e.boxes[region]);
            // Cells of 4 input pixels: a phantom lung is about 10 cells wide.
            assert!(overlap > 0.8, "{} channel {ch}: IoU {overlap}", r.image_id);
            checked += 1;
        }
    }
    assert_eq!(checked, 18);
}
