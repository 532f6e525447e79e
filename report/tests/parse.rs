//! The parser on the cases the issue names, and on robustness.

use asg_report::{parse, Existence, Existence::*, UNSPECIFIED};

/// (finding, region, existence) of every triplet in the report, in order.
fn triplets(text: &str) -> Vec<(String, String, Existence)> {
    parse(text)
        .sentences
        .iter()
        .flat_map(|s| {
            s.triplets
                .iter()
                .map(|t| (t.finding.clone(), t.region.clone(), t.existence))
        })
        .collect()
}

fn has(text: &str, finding: &str, region: &str, existence: Existence) {
    let got = triplets(text);
    assert!(
        got.iter()
            .any(|(f, r, e)| f == finding && r == region && *e == existence),
        "{text:?}: wanted ({finding}, {region}, {existence:?}), got {got:?}"
    );
}

fn tag(text: &str, finding: &str) -> Option<Existence> {
    parse(text).tags.get(finding).copied()
}

#[test]
fn negation_scope_covers_a_list() {
    let t = "No effusion or pneumothorax.";
    assert_eq!(tag(t, "pleural effusion"), Some(Negative));
    assert_eq!(tag(t, "pneumothorax"), Some(Negative));
    let t = "No evidence of focal consolidation, pleural effusion, or pneumothorax.";
    assert_eq!(tag(t, "consolidation"), Some(Negative));
    assert_eq!(tag(t, "pleural effusion"), Some(Negative));
    assert_eq!(tag(t, "pneumothorax"), Some(Negative));
}

#[test]
fn pseudo_negation_keeps_the_finding() {
    has(
        "No change in the right effusion.",
        "pleural effusion",
        "right costophrenic angle",
        Positive,
    );
    has(
        "No significant interval change in bibasilar atelectasis.",
        "atelectasis",
        "left lower lung zone",
        Positive,
    );
}

#[test]
fn normal_structures_negate_what_they_imply() {
    assert_eq!(tag("Heart size is normal.", "cardiomegaly"), Some(Negative));
    assert_eq!(tag("The lungs are clear.", "opacity"), Some(Negative));
    has("The lungs are clear.", "opacity", "right lung", Negative);
    assert_eq!(
        tag(
            "Normal cardiomediastinal silhouette.",
            "enlarged cardiomediastinum"
        ),
        Some(Negative)
    );
    assert_eq!(
        tag("The heart is not enlarged.", "cardiomegaly"),
        Some(Negative)
    );
}

#[test]
fn uncertainty_cues() {
    assert_eq!(
        tag("Pneumonia cannot be excluded.", "pneumonia"),
        Some(Uncertain)
    );
    assert_eq!(
        tag("Opacity may represent atelectasis.", "atelectasis"),
        Some(Uncertain)
    );
    let t = "Left basilar opacity, atelectasis versus pneumonia.";
    assert_eq!(tag(t, "atelectasis"), Some(Uncertain));
    assert_eq!(tag(t, "pneumonia"), Some(Uncertain));
    assert_eq!(tag(t, "opacity"), Some(Positive));
    let t = "Minimal patchy airspace disease within the lingula, may reflect atelectasis or consolidation.";
    assert_eq!(tag(t, "opacity"), Some(Positive));
    assert_eq!(tag(t, "atelectasis"), Some(Uncertain));
    assert_eq!(tag(t, "consolidation"), Some(Uncertain));
    has(t, "opacity", "left mid lung zone", Positive);
}

#[test]
fn scope_stops_at_but_however_although_which() {
    let t = "No pneumothorax, but there is a small left effusion.";
    assert_eq!(tag(t, "pneumothorax"), Some(Negative));
    has(t, "pleural effusion", "left costophrenic angle", Positive);
    assert_eq!(
        tag("No consolidation; however, mild edema is present.", "edema"),
        Some(Positive)
    );
    assert_eq!(
        tag(
            "No pneumothorax, although a small effusion persists.",
            "pleural effusion"
        ),
        Some(Positive)
    );
}

#[test]
fn negation_after_the_finding() {
    assert_eq!(
        tag("Pneumothorax is not seen.", "pneumothorax"),
        Some(Negative)
    );
    assert_eq!(
        tag(
            "The previously seen effusion has resolved.",
            "pleural effusion"
        ),
        Some(Negative)
    );
    assert_eq!(
        tag("The endotracheal tube has been removed.", "tube"),
        Some(Negative)
    );
    // A later clause's negation does not reach an earlier, separate finding.
    let t = "Small effusion is present and pneumothorax is not seen.";
    assert_eq!(tag(t, "pleural effusion"), Some(Positive));
    assert_eq!(tag(t, "pneumothorax"), Some(Negative));
}

#[test]
fn regions_sides_and_abbreviations() {
    has(
        "RLL consolidation.",
        "consolidation",
        "right lower lung zone",
        Positive,
    );
    has(
        "Consolidation in the right lower lobe.",
        "consolidation",
        "right lower lung zone",
        Positive,
    );
    has(
        "Left apical pneumothorax.",
        "pneumothorax",
        "left apical zone",
        Positive,
    );
    has(
        "Retrocardiac opacity.",
        "opacity",
        "left lower lung zone",
        Positive,
    );
    has(
        "Bibasilar atelectasis.",
        "atelectasis",
        "right lower lung zone",
        Positive,
    );
    has(
        "Bibasilar atelectasis.",
        "atelectasis",
        "left lower lung zone",
        Positive,
    );
    has(
        "Blunting of the costophrenic angles.",
        "blunt",
        "right costophrenic angle",
        Positive,
    );
    has(
        "Small bilateral pleural effusions.",
        "pleural effusion",
        "left costophrenic angle",
        Positive,
    );
    has("Left PTX.", "pneumothorax", "left lung", Positive);
    has(
        "Right perihilar opacities.",
        "opacity",
        "right hilar structures",
        Positive,
    );
    // Bilateral effusions and atelectasis: the second finding inherits the sides.
    has(
        "Bilateral effusions and atelectasis.",
        "atelectasis",
        "left lung",
        Positive,
    );
}

#[test]
fn a_finding_without_a_place_gets_its_implied_region_or_unspecified() {
    has(
        "Cardiomegaly.",
        "cardiomegaly",
        "cardiac silhouette",
        Positive,
    );
    has(
        "Enlarged heart.",
        "cardiomegaly",
        "cardiac silhouette",
        Positive,
    );
    has(
        "Pleural effusion.",
        "pleural effusion",
        UNSPECIFIED,
        Positive,
    );
    has(
        "Lower lobe consolidation.",
        "consolidation",
        UNSPECIFIED,
        Positive,
    );
}

#[test]
fn synonyms_and_inflections() {
    assert_eq!(tag("Bilateral opacities.", "opacity"), Some(Positive));
    assert_eq!(
        tag("Opacification of the left base.", "opacity"),
        Some(Positive)
    );
    assert_eq!(tag("ETT in place.", "tube"), Some(Positive));
    assert_eq!(
        tag("Pleural effusions.", "pleural effusion"),
        Some(Positive)
    );
    assert_eq!(
        tag("NO PNEUMOTHORAX. HEART SIZE NORMAL.", "pneumothorax"),
        Some(Negative)
    );
    assert_eq!(
        tag("NO PNEUMOTHORAX. HEART SIZE NORMAL.", "cardiomegaly"),
        Some(Negative)
    );
}

#[test]
fn indication_does_not_count_towards_tags() {
    let r =
        parse("INDICATION: Evaluate for pneumonia.\nFINDINGS: Lungs are clear. No pneumothorax.");
    assert_eq!(r.tags.get("pneumonia"), None);
    assert_eq!(r.sentences[0].section.as_deref(), Some("indication"));
    assert_eq!(r.tags.get("pneumothorax"), Some(&Negative));
}

#[test]
fn spans_point_at_the_finding_in_the_text() {
    let text = "FINDINGS: Stable cardiomegaly. Small left effusion.";
    let r = parse(text);
    for s in &r.sentences {
        assert_eq!(&text[s.start..s.end], s.text);
        for t in &s.triplets {
            assert!(s.start <= t.start && t.end <= s.end);
        }
    }
    let t = &r.sentences[1].triplets[0];
    assert_eq!(&text[t.start..t.end], "effusion");
}

#[test]
fn tag_vector_follows_the_model_order() {
    let r = parse("Right effusion. Possible pneumonia. No pneumothorax.");
    let v = r.tag_vector(0.5);
    assert_eq!(v.len(), 40);
    assert_eq!(
        v[asg_report::finding_index("pleural effusion").unwrap()],
        1.0
    );
    assert_eq!(v[asg_report::finding_index("pneumonia").unwrap()], 0.5);
    assert_eq!(v[asg_report::finding_index("pneumothorax").unwrap()], 0.0);
    let rf = r.region_findings();
    assert_eq!(rf["right costophrenic angle"]["pleural effusion"], Positive);
}

#[test]
fn any_text_parses_without_panic() {
    let mut big = String::new();
    while big.len() < 1 << 20 {
        big.push_str("No effusion or pneumothorax; however, there is a 1.5 cm nodule in the RUL. ");
        big.push_str("Épanchement pleural gauche 😀 \u{0}\u{7}\u{202e} 肺炎。 ");
    }
    for t in [
        "",
        " ",
        ".",
        "?",
        "no",
        "No.",
        ":",
        "FINDINGS:",
        "1.",
        "(((",
        "\u{feff}",
        big.as_str(),
    ] {
        let r = parse(t);
        for s in &r.sentences {
            assert!(t.is_char_boundary(s.start) && t.is_char_boundary(s.end));
        }
    }
    let r = parse(&big);
    assert!(r.sentences.len() > 5_000);
    assert_eq!(r.tags.get("nodule"), Some(&Positive));
}

/// A regression floor on the two public evaluation sets (the scores themselves are in the
/// crate's README): a vocabulary or scope change that loses ground fails here.
#[test]
fn the_public_evaluation_sets_keep_their_scores() {
    for (file, floor) in [
        (include_str!("../eval/sentences.tsv"), 0.95),
        (include_str!("../eval/chexpert_phrases.tsv"), 0.95),
    ] {
        let examples = asg_report::eval::read_examples(file).unwrap();
        assert!(examples.len() >= 20);
        let e = asg_report::eval::evaluate(&examples);
        assert!(
            e.overall.f1() >= floor,
            "F1 {:.3} < {floor}: {:?}",
            e.overall.f1(),
            e.disagreements
        );
    }
}
