//! The anatomy head's targets on the real films of ../shared/realcxr (when present): a film's
//! lung and heart masks, resampled into the model input with and without augmentation, have the
//! boxes the loader gives those regions (which move by the augmentation's own rule).

use asg_trainer::config::Config;
use asg_trainer::data::{prepare, realcxr, Split};
use asg_trainer::vocab::{anatomy_regions, anatomy_side, ANATOMY};
use rand::SeedableRng;
use std::path::Path;

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
    let real = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/realcxr");
    if !real.join("index.jsonl").is_file() {
        eprintln!(
            "skipped: {} not found (the real films are not on this machine)",
            real.display()
        );
        return;
    }
    let set = realcxr::scan(&real).unwrap();
    let mut config =
        Config::from_file(&Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/real160a.toml"))
            .unwrap();
    config.augment.rotation_deg = 0.0; // boxes move exactly as masks only without rotation
    let tokenizer = asg_report::TextTokenizer::Word(asg_report::Tokenizer::train(
        ["the lungs are clear"],
        50,
        1,
    ));
    let side = anatomy_side(config.model.input_size);
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
