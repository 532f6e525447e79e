//! How the mask rules' region boxes come out on a realcxr folder: per source, how many films get
//! each region's box, and the lung boxes' IoU against the lung boxes an annotation service drew
//! (ieee8023 `lung_boxes`, an independent reference).
//! `cargo run --release -p asg-trainer --example realcxr_boxes -- ../shared/realcxr`

use asg_trainer::data::realcxr::{read_index, targets};
use std::collections::BTreeMap;

fn iou(a: [f32; 4], b: [f32; 4]) -> f64 {
    let w = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0) as f64;
    let h = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0) as f64;
    let inter = w * h;
    let area = |x: [f32; 4]| ((x[2] - x[0]) * (x[3] - x[1])).max(0.0) as f64;
    inter / (area(a) + area(b) - inter).max(1e-9)
}

fn main() -> anyhow::Result<()> {
    let root = std::path::PathBuf::from(
        std::env::args()
            .nth(1)
            .unwrap_or_else(|| "../shared/realcxr".into()),
    );
    let records = read_index(&root)?;
    let mut counts: BTreeMap<(String, String), usize> = BTreeMap::new();
    let mut films: BTreeMap<String, usize> = BTreeMap::new();
    let mut ious: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for r in &records {
        let t = targets(&root, r)?;
        let source = format!(
            "{} ({})",
            r.source,
            r.mask_source
                .get("right_lung")
                .map_or("no lung mask", |s| s.as_str())
        );
        *films.entry(source.clone()).or_default() += 1;
        for name in t.boxes.keys() {
            *counts.entry((source.clone(), name.clone())).or_default() += 1;
        }
        if let Some(lb) = &r.lung_boxes {
            for side in ["right", "left"] {
                if let (Some(a), Some(b)) = (
                    t.boxes.get(&format!("{side} lung")),
                    lb.get(&format!("{side}_lung")),
                ) {
                    ious.entry(source.clone()).or_default().push(iou(*a, *b));
                }
            }
        }
    }
    println!("| source (lung masks) | films | region boxes per film (regions with a box in at least one film) |\n|---|---|---|");
    for (s, n) in &films {
        let regions: Vec<String> = counts
            .iter()
            .filter(|((src, _), _)| src == s)
            .map(|((_, reg), c)| format!("{reg} {c}"))
            .collect();
        println!(
            "| {s} | {n} | {} |",
            if regions.is_empty() {
                "-".into()
            } else {
                regions.join(", ")
            }
        );
    }
    println!("\n| source (lung masks) | lungs with both | mean IoU of the mask rule's lung box vs the annotated lung box | median |\n|---|---|---|---|");
    for (s, v) in &mut ious {
        v.sort_by(f64::total_cmp);
        let mean = v.iter().sum::<f64>() / v.len().max(1) as f64;
        println!("| {s} | {} | {mean:.3} | {:.3} |", v.len(), v[v.len() / 2]);
    }
    Ok(())
}
