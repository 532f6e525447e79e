//! The label projections measured against reports that people labelled, in the layout of the
//! Indiana University (OpenI) set: one JSON object per line with `uid`, `findings`, `impression`,
//! `negbio_gold14` (the NegBio gold standard: 1 when a ChestX-ray14 finding is present) and
//! `mesh_major` (the NLM indexers' codes, e.g. `Opacity/lung/base/left`).
//!
//! Printed: per-label precision, recall and F1 (micro and macro) of our ChestX-ray14 projection
//! against the gold, side recall against the indexers' sided codes (with the naive "side word in
//! the same sentence" labeler beside it), and the confusion of the worst labels.

use crate::eval::Counts;
use crate::labels::{label_names, Mention, Scheme};
use crate::parse::{parse, Existence, ParsedReport, TextSide};
use crate::vocabulary::{region_index, Side, REGIONS};
use std::collections::BTreeMap;
use std::fmt;

/// One report with its human labels.
#[derive(Debug, Clone, PartialEq)]
pub struct LabelledReport {
    pub uid: String,
    /// The findings and impression, as one report text with section headers.
    pub text: String,
    /// ChestX-ray14 label -> present.
    pub gold: BTreeMap<String, bool>,
    pub mesh: Vec<String>,
}

/// The largest line read (a report is a few KB).
const MAX_LINE: usize = 1 << 20;

/// Reads the JSONL layout; errors name the line.
pub fn read_jsonl(text: &str) -> Result<Vec<LabelledReport>, String> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        if line.len() > MAX_LINE {
            return Err(format!("line {}: longer than {MAX_LINE} bytes", n + 1));
        }
        let v: serde_json::Value =
            serde_json::from_str(line).map_err(|e| format!("line {}: {e}", n + 1))?;
        let field = |k: &str| v.get(k).and_then(|x| x.as_str()).unwrap_or("").trim();
        let mut text = String::new();
        for (header, key) in [("FINDINGS", "findings"), ("IMPRESSION", "impression")] {
            let body = field(key);
            if !body.is_empty() {
                text.push_str(&format!("{header}: {body}\n"));
            }
        }
        let gold_v = v
            .get("negbio_gold14")
            .and_then(|g| g.as_object())
            .ok_or_else(|| format!("line {}: no negbio_gold14 object", n + 1))?;
        let mut gold = BTreeMap::new();
        for name in label_names(Scheme::ChestXray14) {
            let x = gold_v
                .get(name)
                .and_then(|x| x.as_i64())
                .ok_or_else(|| format!("line {}: negbio_gold14 has no {name:?}", n + 1))?;
            gold.insert(name.to_string(), x == 1);
        }
        let mesh = v
            .get("mesh_major")
            .and_then(|m| m.as_array())
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        out.push(LabelledReport {
            uid: field("uid").to_string(),
            text,
            gold,
            mesh,
        });
    }
    Ok(out)
}

/// MeSH headings whose sides we check, and the ASG tags that may carry each one's side. A
/// heading not listed (Diaphragm, Spine, Aorta...) names no finding of ours.
const MESH_TAGS: &[(&str, &[&str])] = &[
    ("Opacity", OPACITY),
    ("Density", OPACITY),
    ("Airspace Disease", LUNG),
    ("Infiltrate", LUNG),
    ("Consolidation", LUNG),
    ("Pneumonia", LUNG),
    ("Lung Diseases, Interstitial", LUNG),
    ("Markings", LUNG),
    (
        "Pulmonary Atelectasis",
        &["atelectasis", "collapse", "opacity"],
    ),
    (
        "Cicatrix",
        &["scar", "atelectasis", "opacity", "pleural thicken"],
    ),
    ("Pulmonary Fibrosis", &["scar", "marking"]),
    ("Calcified Granuloma", GRANULOMA),
    ("Granuloma", GRANULOMA),
    ("Granulomatous Disease", GRANULOMA),
    ("Calcinosis", GRANULOMA),
    ("Nodule", &["nodule", "mass", "lesion"]),
    ("Mass", &["mass", "nodule", "lesion"]),
    ("Pleural Effusion", &["pleural effusion", "blunt"]),
    ("Costophrenic Angle", &["blunt", "pleural effusion"]),
    ("Thickening", &["pleural thicken", "scar"]),
    ("Pneumothorax", &["pneumothorax"]),
    ("Fractures, Bone", &["fracture", "deformity"]),
    ("Catheters, Indwelling", &["line", "tube", "tip"]),
    ("Emphysema", &["emphysema"]),
    ("Pulmonary Emphysema", &["emphysema"]),
];
const LUNG: &[&str] = &[
    "opacity",
    "infiltration",
    "consolidation",
    "pneumonia",
    "atelectasis",
    "marking",
    "aspiration",
];
/// A density or opacity may be written as a nodular one, a mass or a scar.
const OPACITY: &[&str] = &[
    "opacity",
    "infiltration",
    "consolidation",
    "pneumonia",
    "atelectasis",
    "marking",
    "aspiration",
    "nodule",
    "mass",
    "scar",
    "calcification",
];
const GRANULOMA: &[&str] = &["nodule", "calcification"];

/// A sided MeSH code: its heading's tags and the sides it names (None for a code without a
/// side or whose heading names no finding of ours).
pub fn sided(code: &str) -> Option<(&'static [&'static str], Vec<Side>)> {
    let mut parts = code.split('/');
    let heading = parts.next()?;
    let tags = MESH_TAGS.iter().find(|(h, _)| *h == heading)?.1;
    let mods: Vec<&str> = parts.collect();
    let sides = if mods.contains(&"bilateral") {
        vec![Side::Right, Side::Left]
    } else if mods.contains(&"right") {
        vec![Side::Right]
    } else if mods.contains(&"left") {
        vec![Side::Left]
    } else {
        return None;
    };
    Some((tags, sides))
}

/// Whether the parser put one of `tags` (present or uncertain) on `side`.
pub fn parser_has_side(r: &ParsedReport, tags: &[&str], side: Side) -> bool {
    r.sentences.iter().flat_map(|s| &s.triplets).any(|t| {
        t.existence != Existence::Negative
            && tags.contains(&t.finding.as_str())
            && (region_index(&t.region).is_some_and(|i| REGIONS[i].side == side)
                || t.side.is_some_and(|s| {
                    s == TextSide::Both
                        || (s == TextSide::Right) == (side == Side::Right) && side != Side::Midline
                }))
    })
}

/// The naive labeler: a sentence with one of `tags` (not negated) and the side's word.
fn naive_has_side(r: &ParsedReport, tags: &[&str], side: Side) -> bool {
    let words: &[&str] = match side {
        Side::Right => &["right", "bilateral", "bibasilar", "both"],
        Side::Left => &["left", "bilateral", "bibasilar", "both"],
        Side::Midline => &[],
    };
    r.sentences.iter().any(|s| {
        let lower = s.text.to_lowercase();
        s.triplets
            .iter()
            .any(|t| t.existence != Existence::Negative && tags.contains(&t.finding.as_str()))
            && words
                .iter()
                .any(|w| lower.split(|c: char| !c.is_alphanumeric()).any(|x| x == *w))
    })
}

/// How one label went wrong.
#[derive(Debug, Clone, Default)]
pub struct Confusion {
    /// Gold present, ours: negative / uncertain / not mentioned.
    pub missed_as_negative: usize,
    pub missed_as_uncertain: usize,
    pub missed_unmentioned: usize,
    /// Gold absent, ours positive (or uncertain, when uncertain counts as present).
    pub false_alarms: usize,
    /// A few report ids of each kind, to look at.
    pub missed_examples: Vec<String>,
    pub false_examples: Vec<String>,
}

/// The result of a label evaluation.
#[derive(Debug, Clone, Default)]
pub struct LabelEvaluation {
    pub reports: usize,
    /// Per label in scheme order.
    pub per_label: Vec<(String, Counts, Confusion)>,
    pub micro: Counts,
    /// Sided MeSH codes checked, found by the parser, found by the naive labeler.
    pub sided_codes: usize,
    pub side_hits: usize,
    pub naive_side_hits: usize,
    /// Sided codes missed by the parser, by heading.
    pub side_misses: BTreeMap<String, usize>,
    pub side_miss_examples: Vec<(String, String)>,
}

impl LabelEvaluation {
    /// The mean of the per-label F1 over labels with a gold positive or a prediction.
    pub fn macro_f1(&self) -> f64 {
        let used: Vec<f64> = self
            .per_label
            .iter()
            .filter(|(_, c, _)| c.tp + c.fp + c.fn_ > 0)
            .map(|(_, c, _)| c.f1())
            .collect();
        if used.is_empty() {
            0.0
        } else {
            used.iter().sum::<f64>() / used.len() as f64
        }
    }

    /// Sided codes whose side the parser found.
    pub fn side_recall(&self) -> f64 {
        ratio(self.side_hits, self.sided_codes)
    }
}

fn ratio(a: usize, b: usize) -> f64 {
    if b == 0 {
        1.0
    } else {
        a as f64 / b as f64
    }
}

/// Whether our ChestX-ray14 value counts as "present" against NegBio's gold: positive only (the
/// gold marks what the report says is there; "may represent pneumonia" is not marked).
pub fn present(m: Mention) -> bool {
    m == Mention::Positive
}

/// Scores the ChestX-ray14 projection and the sides on `reports`.
pub fn evaluate_labels(reports: &[LabelledReport]) -> LabelEvaluation {
    let names = label_names(Scheme::ChestXray14);
    let mut per: Vec<(String, Counts, Confusion)> = names
        .iter()
        .map(|n| (n.to_string(), Counts::default(), Confusion::default()))
        .collect();
    let mut ev = LabelEvaluation {
        reports: reports.len(),
        ..Default::default()
    };
    for rep in reports {
        let parsed = parse(&rep.text);
        let labels = parsed.labels(Scheme::ChestXray14);
        for (name, counts, conf) in per.iter_mut() {
            let ours = labels.get(name).unwrap_or(Mention::NotMentioned);
            let gold = rep.gold.get(name.as_str()).copied().unwrap_or(false);
            match (gold, present(ours)) {
                (true, true) => counts.tp += 1,
                (false, true) => {
                    counts.fp += 1;
                    conf.false_alarms += 1;
                    if conf.false_examples.len() < 5 {
                        conf.false_examples.push(rep.uid.clone());
                    }
                }
                (true, false) => {
                    counts.fn_ += 1;
                    match ours {
                        Mention::Negative => conf.missed_as_negative += 1,
                        Mention::Uncertain => conf.missed_as_uncertain += 1,
                        _ => conf.missed_unmentioned += 1,
                    }
                    if conf.missed_examples.len() < 5 {
                        conf.missed_examples.push(rep.uid.clone());
                    }
                }
                (false, false) => {}
            }
        }
        for code in &rep.mesh {
            let Some((tags, sides)) = sided(code) else {
                continue;
            };
            ev.sided_codes += 1;
            if sides.iter().all(|&s| parser_has_side(&parsed, tags, s)) {
                ev.side_hits += 1;
            } else {
                let heading = code.split('/').next().unwrap_or("").to_string();
                *ev.side_misses.entry(heading).or_default() += 1;
                if ev.side_miss_examples.len() < 400 {
                    ev.side_miss_examples.push((rep.uid.clone(), code.clone()));
                }
            }
            if sides.iter().all(|&s| naive_has_side(&parsed, tags, s)) {
                ev.naive_side_hits += 1;
            }
        }
    }
    for (_, c, _) in &per {
        ev.micro.tp += c.tp;
        ev.micro.fp += c.fp;
        ev.micro.fn_ += c.fn_;
    }
    ev.per_label = per;
    ev
}

impl fmt::Display for LabelEvaluation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} reports; ChestX-ray14 labels (ours: positive; uncertain counts as absent) against the NegBio gold.\n",
            self.reports
        )?;
        writeln!(
            f,
            "| label | TP | FP | FN | precision | recall | F1 |\n|---|---|---|---|---|---|---|"
        )?;
        let row =
            |f: &mut fmt::Formatter<'_>, name: &str, c: &Counts| writeln!(f, "{}", c.row(name));
        for (name, c, _) in &self.per_label {
            row(f, name, c)?;
        }
        row(f, "**micro**", &self.micro)?;
        writeln!(f, "| **macro F1** | | | | | | {:.3} |", self.macro_f1())?;
        writeln!(
            f,
            "\nSides: {} of {} sided MeSH codes found on the right side by the parser (recall {:.3}); the naive \"side word in the same sentence\" labeler: {} ({:.3}).",
            self.side_hits,
            self.sided_codes,
            self.side_recall(),
            self.naive_side_hits,
            ratio(self.naive_side_hits, self.sided_codes)
        )?;
        if !self.side_misses.is_empty() {
            let mut misses: Vec<_> = self.side_misses.iter().collect();
            misses.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
            let list: Vec<String> = misses.iter().map(|(h, n)| format!("{h} {n}")).collect();
            writeln!(f, "Side misses by heading: {}.", list.join(", "))?;
        }
        let mut worst: Vec<&(String, Counts, Confusion)> = self
            .per_label
            .iter()
            .filter(|(_, c, _)| c.fp + c.fn_ > 0)
            .collect();
        worst.sort_by(|a, b| (a.1.fp + a.1.fn_).cmp(&(b.1.fp + b.1.fn_)).reverse());
        if !worst.is_empty() {
            writeln!(
                f,
                "\nThe worst labels (most errors):\n\n| label | missed: we said negative | uncertain | not mentioned | false alarms | missed in | false in |\n|---|---|---|---|---|---|---|"
            )?;
            for (name, _, c) in worst.iter().take(5) {
                writeln!(
                    f,
                    "| {name} | {} | {} | {} | {} | {} | {} |",
                    c.missed_as_negative,
                    c.missed_as_uncertain,
                    c.missed_unmentioned,
                    c.false_alarms,
                    c.missed_examples.join(" "),
                    c.false_examples.join(" ")
                )?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(uid: &str, findings: &str, gold: &[&str], mesh: &[&str]) -> String {
        let mut g = serde_json::Map::new();
        for n in label_names(Scheme::ChestXray14) {
            g.insert(n.into(), (gold.contains(&n) as i64).into());
        }
        serde_json::json!({"uid": uid, "findings": findings, "impression": null,
            "negbio_gold14": g, "mesh_major": mesh})
        .to_string()
    }

    #[test]
    fn a_hand_computed_evaluation() {
        let jsonl = [
            // TP Effusion; side found (left).
            line(
                "a",
                "Small left pleural effusion.",
                &["Effusion"],
                &["Pleural Effusion/left/small"],
            ),
            // FP Nodule? No: a granuloma is not a nodule -> TN. FN Cardiomegaly (gold says yes).
            line(
                "b",
                "Calcified granuloma. Heart size normal.",
                &["Cardiomegaly"],
                &[],
            ),
            // FP Pneumonia (the gold has none); side of the opacity code found on the right.
            line(
                "c",
                "Right lower lobe pneumonia.",
                &[],
                &["Opacity/lung/lower lobe/right"],
            ),
        ]
        .join("\n");
        let reports = read_jsonl(&jsonl).unwrap();
        assert_eq!(reports.len(), 3);
        let ev = evaluate_labels(&reports);
        assert_eq!(
            ev.micro,
            Counts {
                tp: 1,
                fp: 1,
                fn_: 1
            }
        );
        let card = &ev
            .per_label
            .iter()
            .find(|p| p.0 == "Cardiomegaly")
            .unwrap()
            .2;
        assert_eq!(card.missed_as_negative, 1);
        assert_eq!((ev.sided_codes, ev.side_hits), (2, 2));
        // Effusion F1 1, Cardiomegaly 0, Pneumonia 0: macro over the three labels used.
        assert!((ev.macro_f1() - 1.0 / 3.0).abs() < 1e-9);
        let table = ev.to_string();
        assert!(table.contains("| Effusion | 1 | 0 | 0 |"), "{table}");
    }

    #[test]
    fn sides_are_read_from_the_codes() {
        assert_eq!(
            sided("Opacity/lung/base/bilateral").map(|s| s.1),
            Some(vec![Side::Right, Side::Left])
        );
        assert!(sided("Opacity/lung/base").is_none());
        assert!(sided("Spine/degenerative/right").is_none());
    }

    #[test]
    fn bad_lines_name_their_number() {
        assert!(read_jsonl("{}\n").unwrap_err().contains("line 1"));
        assert!(read_jsonl("\nnot json").unwrap_err().contains("line 2"));
    }
}
