//! The lung-crop model in the product: `asg-train attach-nodule`'s work on the default bundle
//! (with a nodule model of random weights, exported as `asg-train nodules` exports one), read by
//! the plugin on a phantom film: the finding it scores, its regions and heatmap, and a bundle
//! whose crop model does not match its manifest.

use asg_plugin::{asg_dicom::ReadOptions, ModelBundle};
use asg_trainer::data::lung_crops::{CROP_H, CROP_W};
use std::path::Path;

/// The default bundle with a random-weight nodule model attached; `offer` as for attach-nodule.
fn bundle_with_nodule_model(dir: &Path, offer: Option<(f32, f32)>) {
    let default = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/default");
    let text = std::fs::read_to_string(default.join("manifest.json")).unwrap();
    let mut manifest = asg_bundle::Manifest::from_json(&text).unwrap();
    // The default bundle may carry a crop model already: start from the image model alone.
    if let Some(c) = manifest.crop_model.take() {
        manifest.files.remove(&c.file);
    }
    std::fs::create_dir_all(dir).unwrap();
    for name in manifest.files.keys() {
        std::fs::copy(default.join(name), dir.join(name)).unwrap();
    }
    let varmap = candle_nn::VarMap::new();
    let vb = candle_nn::VarBuilder::from_varmap(
        &varmap,
        candle_core::DType::F32,
        &candle_core::Device::Cpu,
    );
    let net = asg_trainer::model::nodule_net::NoduleNet::new(vb).unwrap();
    let onnx = asg_trainer::export::nodule::nodule_onnx(&net, CROP_H, CROP_W).unwrap();
    std::fs::write(dir.join("nodule.onnx"), &onnx).unwrap();
    asg_trainer::export::bundle::attach_nodule_model(&mut manifest, &onnx, "a test", offer)
        .unwrap();
    std::fs::write(dir.join("manifest.json"), manifest.to_json()).unwrap();
}

fn phantom(dir: &Path) -> Vec<u8> {
    asg_phantom::write_phantom(dir, 512, 3, 0).unwrap();
    std::fs::read(dir.join("phantom_00000.dcm")).unwrap()
}

#[test]
fn the_crop_model_scores_its_finding_on_the_image_in_the_lungs_and_their_zones() {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path().join("bundle");
    bundle_with_nodule_model(&dir, Some((0.5, 0.5)));
    let bundle = ModelBundle::from_dir(&dir).unwrap();
    assert!(bundle.crop_model.is_some());
    let bytes = phantom(scratch.path());
    let a = bundle
        .analyze_dicom(&bytes, "phantom", &ReadOptions::default())
        .unwrap();
    let f = bundle
        .manifest
        .findings
        .iter()
        .position(|n| n == "nodule")
        .unwrap();
    let nodule = &a.findings[f];
    assert!(nodule.assessed, "offered by attach-nodule");
    let lung = |name: &str| {
        a.regions
            .iter()
            .find(|r| r.name == name)
            .unwrap()
            .probabilities[f]
    };
    let (right, left) = (lung("right lung"), lung("left lung"));
    // The image's probability is the more suspicious lung's.
    assert_eq!(nodule.probability, right.max(left));
    assert!(right > 0.0 && left > 0.0 && right < 1.0 && left < 1.0);
    assert_eq!(nodule.present, nodule.probability >= 0.5);
    // A zone holds at most its lung's probability; regions outside the lungs none.
    for r in &a.regions {
        let p = r.probabilities[f];
        if r.name.starts_with("right ") && r.name.ends_with(" zone") {
            assert!(p <= right, "{} {p} > {right}", r.name);
        } else if r.name.starts_with("left ") && r.name.ends_with(" zone") {
            assert!(p <= left, "{} {p} > {left}", r.name);
        } else if !r.name.ends_with(" lung") {
            assert_eq!(p, 0.0, "{}", r.name);
        }
        assert_eq!(
            r.findings.iter().any(|n| n == "nodule"),
            p >= 0.5,
            "{}",
            r.name
        );
    }
    // The heatmap is the crop model's cells, its peak a cell of a lung, at least as probable as
    // the pooled lung (the pool is a soft maximum).
    let h = nodule.heatmap.as_ref().unwrap();
    assert_eq!((h.source.as_str(), h.grid), ("crop_cells", 80));
    assert_eq!(h.values.len(), 80 * 80);
    assert!(
        h.max >= nodule.probability - 1e-6,
        "{} {}",
        h.max,
        nodule.probability
    );
    assert!(h.values.iter().all(|v| (0.0..=1.0).contains(v)));
    assert!(h.peak_region.is_some());
    assert!(a.timings.crop_model_ms > 0.0);
    // Without the crop model the image model's own nodule score stands: another number.
    let plain =
        ModelBundle::from_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/default"))
            .unwrap();
    if plain.crop_model.is_none() {
        let b = plain
            .analyze_dicom(&bytes, "phantom", &ReadOptions::default())
            .unwrap();
        assert_ne!(b.findings[f].probability, nodule.probability);
        assert_ne!(
            b.findings[f].heatmap.as_ref().map(|h| h.source.as_str()),
            Some("crop_cells")
        );
    }
}

#[test]
fn a_crop_model_not_offered_is_scored_but_flags_nothing() {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path().join("bundle");
    bundle_with_nodule_model(&dir, None);
    let mut bundle = ModelBundle::from_dir(&dir).unwrap();
    bundle.set_threshold(0.0);
    let a = bundle
        .analyze_dicom(&phantom(scratch.path()), "phantom", &ReadOptions::default())
        .unwrap();
    let nodule = a.findings.iter().find(|f| f.name == "nodule").unwrap();
    assert!(!nodule.assessed && !nodule.present);
    assert!(nodule.probability > 0.0);
    assert!(a
        .regions
        .iter()
        .all(|r| !r.findings.iter().any(|n| n == "nodule")));
}

#[test]
fn a_crop_model_that_does_not_match_its_manifest_is_refused_naming_it() {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path().join("bundle");
    bundle_with_nodule_model(&dir, None);
    let mut bytes = std::fs::read(dir.join("nodule.onnx")).unwrap();
    bytes[100] ^= 1;
    std::fs::write(dir.join("nodule.onnx"), &bytes).unwrap();
    let err = ModelBundle::from_dir(&dir).unwrap_err().to_string();
    assert!(err.contains("nodule.onnx"), "{err}");
    // The text model given as the crop model: the right digest, the wrong graph.
    bundle_with_nodule_model(&dir, None);
    let text = std::fs::read(dir.join("text.onnx")).unwrap();
    let manifest = std::fs::read_to_string(dir.join("manifest.json")).unwrap();
    let mut m = asg_bundle::Manifest::from_json(&manifest).unwrap();
    m.files
        .insert("nodule.onnx".into(), asg_bundle::FileDigest::of(&text));
    std::fs::write(dir.join("nodule.onnx"), &text).unwrap();
    std::fs::write(dir.join("manifest.json"), m.to_json()).unwrap();
    let err = ModelBundle::from_dir(&dir).unwrap_err().to_string();
    assert!(
        err.contains("nodule.onnx does not load in tract") && err.contains("takes 3 inputs"),
        "{err}"
    );
}
