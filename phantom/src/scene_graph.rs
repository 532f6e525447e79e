//! Chest ImaGenome-format scene graphs (`<image id>_SceneGraph.json`): `objects` with `bbox_name`
//! and `original_x1..original_y2` (plus the dataset's 224 x 224 `x1..y2`), and `attributes` per
//! region with the report `phrases` that name it and their "category|yes/no|label" lists.

use crate::report::{Sentence, Triplet};
use crate::Study;
use serde_json::{json, Value};

/// The Chest ImaGenome category of an attribute label.
pub fn category(label: &str) -> &'static str {
    match label {
        "endotracheal tube" | "enteric tube" | "chest tube" | "picc" | "ij line"
        | "subclavian line" | "chest port" | "swan-ganz catheter" | "tracheostomy tube"
        | "mediastinal drain" | "pigtail catheter" => "tubesandlines",
        "cardiac pacer and wires"
        | "prosthetic valve"
        | "intra-aortic balloon pump"
        | "aortic graft/repair"
        | "cabg grafts" => "devices",
        "pneumonia"
        | "fluid overload/heart failure"
        | "copd/emphysema"
        | "lung cancer"
        | "granulomatous disease"
        | "interstitial lung disease"
        | "aspiration"
        | "alveolar hemorrhage" => "disease",
        "low lung volumes" | "rotated" | "artifact" | "breast/nipple shadows" | "skin fold" => {
            "technicalassessment"
        }
        _ => "anatomicalfinding",
    }
}

/// The Chest ImaGenome label for one of our triplets (the device labels depend on where the
/// device is and what the sentence calls it).
pub fn label_for(t: &Triplet, sentence: &str) -> Option<String> {
    let s = sentence.to_lowercase();
    let l = match (t.finding.as_str(), t.region.as_str()) {
        ("tube", "trachea") => "endotracheal tube",
        ("tube", "abdomen") => "enteric tube",
        ("tube", _) => "chest tube",
        ("line", _) if s.contains("subclavian") => "subclavian line",
        ("line", _) if s.contains("picc") => "picc",
        ("line", _) => "ij line",
        ("pacemaker" | "wire", _) => "cardiac pacer and wires",
        (tag, _) => {
            let i = asg_report::finding_index(tag)?;
            return asg_report::lexicon().findings[i]
                .imagenome
                .first()
                .map(|l| l.to_string());
        }
    };
    Some(l.to_string())
}

fn pretty(name: &str) -> String {
    let mut c = name.chars();
    match c.next() {
        Some(f) => f.to_uppercase().collect::<String>() + c.as_str(),
        None => String::new(),
    }
}

/// The regions a triplet is recorded under: "unspecified" statements are about both lungs.
fn regions_of(t: &Triplet) -> Vec<String> {
    if t.region == asg_report::UNSPECIFIED {
        vec!["right lung".into(), "left lung".into()]
    } else {
        vec![t.region.clone()]
    }
}

/// A sentence naming a region, and the attribute labels it states for it.
type Mention<'a> = (&'a Sentence, Vec<String>);

/// The scene graph of a study.
pub fn scene_graph(study: &Study) -> Value {
    let (w, h) = (study.rendered.width as f64, study.rendered.height as f64);
    let objects: Vec<Value> = study
        .regions
        .iter()
        .map(|r| {
            let [x1, y1, x2, y2] = r.bbox;
            let (sx, sy) = (224.0 / w, 224.0 / h);
            json!({
                "object_id": format!("{}_{}", study.image_id, r.name),
                "x1": (x1 * sx).round(), "y1": (y1 * sy).round(),
                "x2": (x2 * sx).round(), "y2": (y2 * sy).round(),
                "width": ((x2 - x1) * sx).round(), "height": ((y2 - y1) * sy).round(),
                "bbox_name": r.name,
                "name": pretty(&r.name),
                "original_x1": x1.round(), "original_y1": y1.round(),
                "original_x2": x2.round(), "original_y2": y2.round(),
                "original_width": (x2 - x1).round(), "original_height": (y2 - y1).round(),
            })
        })
        .collect();
    // Per region: the sentences that name it and the labels each states for it.
    let mut per_region: Vec<(String, Vec<Mention>)> = Vec::new();
    for s in &study.report.sentences {
        for t in &s.triplets {
            let Some(label) = label_for(t, &s.text) else {
                continue;
            };
            let yes = if t.existence == "negative" {
                "no"
            } else {
                "yes"
            };
            let attr = format!("{}|{yes}|{label}", category(&label));
            for region in regions_of(t) {
                let entry = match per_region.iter_mut().position(|(r, _)| *r == region) {
                    Some(i) => &mut per_region[i].1,
                    None => {
                        per_region.push((region.clone(), Vec::new()));
                        &mut per_region.last_mut().expect("just pushed").1
                    }
                };
                match entry.iter_mut().find(|(sent, _)| std::ptr::eq(*sent, s)) {
                    Some((_, attrs)) => {
                        if !attrs.contains(&attr) {
                            attrs.push(attr.clone())
                        }
                    }
                    None => entry.push((s, vec![attr.clone()])),
                }
            }
        }
    }
    let attributes: Vec<Value> = per_region
        .iter()
        .map(|(region, items)| {
            let phrases: Vec<String> = items
                .iter()
                .map(|(s, _)| s.text.replace('\n', " "))
                .collect();
            let attrs: Vec<&Vec<String>> = items.iter().map(|(_, a)| a).collect();
            let severity: Vec<Vec<String>> = items
                .iter()
                .map(|(s, _)| {
                    ["mild", "small", "moderate", "large", "severe", "minimal", "trace"]
                        .iter()
                        .filter(|w| s.text.to_lowercase().split(' ').any(|x| x == **w))
                        .map(|w| w.to_string())
                        .collect()
                })
                .collect();
            let empty: Vec<Vec<String>> = vec![vec![]; items.len()];
            json!({
                region.clone(): true,
                "bbox_name": region,
                "name": pretty(region),
                "attributes": attrs,
                "phrases": phrases,
                "phrase_IDs": items.iter().map(|(s, _)| format!("{}|{}", study.study_id, s.start)).collect::<Vec<_>>(),
                "sections": items.iter().map(|(s, _)| if s.section == "impression" { "impression" } else { "finalreport" }).collect::<Vec<_>>(),
                "comparison_cues": empty,
                "temporal_cues": empty,
                "severity_cues": severity,
                "texture_cues": empty,
                "object_id": format!("{}_{}", study.image_id, region),
            })
        })
        .collect();
    json!({
        "image_id": study.image_id,
        "viewpoint": study.anatomy.view.code(),
        "patient_id": study.subject_id,
        "study_id": study.study_id,
        "gender": if study.anatomy.female { "F" } else { "M" },
        "age_decile": format!("{}-{}", study.anatomy.age / 10 * 10, study.anatomy.age / 10 * 10 + 10),
        "objects": objects,
        "attributes": attributes,
        "relationships": [],
    })
}
