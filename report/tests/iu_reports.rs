//! The label projection on real reports with human labels: `../shared/iu-reports` (1,000 Indiana
//! University reports with the NegBio gold and MeSH codes, a development set; not committed, its
//! licence forbids it). Skipped, with a message saying so, where that folder is absent.

use std::path::PathBuf;

fn data() -> Option<PathBuf> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/iu-reports/reports.jsonl");
    p.is_file().then_some(p)
}

#[test]
fn labels_and_sides_on_the_iu_development_reports() {
    let Some(path) = data() else {
        eprintln!("skipped: ../shared/iu-reports/reports.jsonl is not here (the real-report check needs it)");
        return;
    };
    let text = std::fs::read_to_string(&path).unwrap();
    let reports = asg_report::label_eval::read_jsonl(&text).unwrap();
    assert_eq!(reports.len(), 1000);
    let ev = asg_report::label_eval::evaluate_labels(&reports);
    println!("{ev}");
    // Floors a little under what this development set gives today (README, "Real reports"), so
    // that a change that loses ground fails here.
    assert!(ev.micro.f1() >= 0.92, "micro F1 {:.3}", ev.micro.f1());
    assert!(
        ev.side_recall() >= 0.90,
        "side recall {:.3}",
        ev.side_recall()
    );
}
