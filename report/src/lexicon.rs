//! The vocabulary tables (`report/data/*.tsv`), loaded once, and phrase matching over tokens.

use crate::vocabulary::{region_index, FINDINGS};
use std::collections::HashMap;
use std::sync::OnceLock;

const FINDINGS_TSV: &str = include_str!("../data/findings.tsv");
const REGIONS_TSV: &str = include_str!("../data/regions.tsv");
const CUES_TSV: &str = include_str!("../data/cues.tsv");

/// A side named by the text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SideWord {
    Right,
    Left,
    Both,
}

/// Where a place phrase points.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    /// A part that takes a side ("lower lung zone" -> "right lower lung zone").
    Part(&'static str),
    /// A Chest ImaGenome region by index (midline structures, or fused words like "RLL").
    Region(usize),
}

/// A cue's kind (see `data/cues.tsv`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CueKind {
    NegationBefore,
    NegationAfter,
    UncertainBefore,
    UncertainAfter,
    UncertainBoth,
    Pseudo,
    Normal,
    /// Says a structure is enlarged ("the heart is large", "borderline heart size"): asserts
    /// the finding its region implies (cardiomegaly, enlarged cardiomediastinum).
    Enlarged,
    /// Says a structure is at the upper limit of normal: the implied finding is uncertain.
    UpperNormal,
    ScopeEnd,
    /// A clause's verb ("is seen", "there are"): ends a cue's scope but not a place's reach.
    ClauseVerb,
    /// A phrase that contains a finding's word but is not that finding ("pericardial effusion",
    /// "massive"): read as plain words.
    NotAFinding,
}

/// What a matched phrase means.
#[derive(Debug, Clone, PartialEq)]
pub enum Meaning {
    Finding(usize),
    Place {
        side: Option<SideWord>,
        place: Option<Place>,
    },
    Cue(Vec<CueKind>),
}

/// One finding tag's row.
#[derive(Debug, Clone)]
pub struct FindingRow {
    pub tag: &'static str,
    pub phrases: Vec<&'static str>,
    pub chexpert: Option<&'static str>,
    pub imagenome: Vec<&'static str>,
    pub location: Option<Place>,
}

/// The parts that take a side.
pub const PARTS: &[&str] = &[
    "lung",
    "upper lung zone",
    "mid lung zone",
    "lower lung zone",
    "hilar structures",
    "apical zone",
    "costophrenic angle",
    "hemidiaphragm",
    "clavicle",
];

/// The loaded tables.
pub struct Lexicon {
    pub findings: Vec<FindingRow>,
    phrases: HashMap<Vec<String>, Vec<Meaning>>,
    max_len: usize,
}

fn rows(tsv: &'static str) -> impl Iterator<Item = Vec<&'static str>> {
    tsv.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .skip(1) // header
        .map(|l| l.split('\t').map(str::trim).collect())
}

fn dash(s: &'static str) -> Option<&'static str> {
    (s != "-" && !s.is_empty()).then_some(s)
}

fn place(name: &'static str) -> Option<Place> {
    if let Some(part) = PARTS.iter().find(|p| **p == name) {
        return Some(Place::Part(part));
    }
    region_index(name).map(Place::Region)
}

/// Plural forms of a phrase's last word, for phrases that do not list them.
fn plural(phrase: &str) -> Option<String> {
    let (head, last) = phrase
        .rsplit_once(' ')
        .map_or(("", phrase), |(h, l)| (h, l));
    if last.len() < 3 {
        return None;
    }
    let p = if last.ends_with('y') && !last.ends_with("ay") && !last.ends_with("ey") {
        format!("{}ies", &last[..last.len() - 1])
    } else if last.ends_with('s')
        || last.ends_with('x')
        || last.ends_with("ch")
        || last.ends_with("sh")
    {
        return None;
    } else {
        format!("{last}s")
    };
    Some(if head.is_empty() {
        p
    } else {
        format!("{head} {p}")
    })
}

/// The tokens of a phrase or a text, lower case (see [`crate::text::tokens`]).
pub fn phrase_tokens(phrase: &str) -> Vec<String> {
    crate::text::tokens(phrase, 0)
        .into_iter()
        .map(|t| t.norm)
        .collect()
}

impl Lexicon {
    fn load() -> Result<Self, String> {
        let mut findings = Vec::new();
        for (i, r) in rows(FINDINGS_TSV).enumerate() {
            let [tag, phrases, chexpert, imagenome, location] = r[..] else {
                return Err(format!(
                    "findings.tsv row {}: {} columns, want 5",
                    i + 2,
                    r.len()
                ));
            };
            if FINDINGS.get(i) != Some(&tag) {
                return Err(format!(
                    "findings.tsv row {}: {tag:?} is not tag {i} ({:?})",
                    i + 2,
                    FINDINGS.get(i)
                ));
            }
            let location = match dash(location) {
                None => None,
                Some(l) => Some(
                    place(l)
                        .ok_or_else(|| format!("findings.tsv: {tag}: unknown location {l:?}"))?,
                ),
            };
            findings.push(FindingRow {
                tag,
                phrases: phrases
                    .split('|')
                    .map(str::trim)
                    .filter(|p| !p.is_empty())
                    .collect(),
                chexpert: dash(chexpert),
                imagenome: dash(imagenome)
                    .map(|s| s.split('|').collect())
                    .unwrap_or_default(),
                location,
            });
        }
        if findings.len() != FINDINGS.len() {
            return Err(format!(
                "findings.tsv has {} tags, want {}",
                findings.len(),
                FINDINGS.len()
            ));
        }
        let mut phrases: HashMap<Vec<String>, Vec<Meaning>> = HashMap::new();
        let mut add = |phrase: &str, meaning: Meaning| {
            let key = phrase_tokens(phrase);
            if key.is_empty() {
                return;
            }
            let slot = phrases.entry(key).or_default();
            if !slot.contains(&meaning) {
                slot.push(meaning);
            }
        };
        for (i, f) in findings.iter().enumerate() {
            for p in &f.phrases {
                add(p, Meaning::Finding(i));
                if let Some(pl) = plural(p) {
                    add(&pl, Meaning::Finding(i));
                }
            }
        }
        for r in rows(REGIONS_TSV) {
            let [phrase, side, place_name] = r[..] else {
                return Err(format!("regions.tsv: row {r:?} does not have 3 columns"));
            };
            let side = match side {
                "right" => Some(SideWord::Right),
                "left" => Some(SideWord::Left),
                "both" => Some(SideWord::Both),
                "-" => None,
                other => return Err(format!("regions.tsv: {phrase}: unknown side {other:?}")),
            };
            let place = match dash(place_name) {
                None => None,
                Some(n) => Some(
                    place(n)
                        .ok_or_else(|| format!("regions.tsv: {phrase}: unknown place {n:?}"))?,
                ),
            };
            add(phrase, Meaning::Place { side, place });
        }
        let mut cues: HashMap<Vec<String>, Vec<CueKind>> = HashMap::new();
        for r in rows(CUES_TSV) {
            let [phrase, kind] = r[..] else {
                return Err(format!("cues.tsv: row {r:?} does not have 2 columns"));
            };
            let kind = match kind {
                "negation-before" => CueKind::NegationBefore,
                "negation-after" => CueKind::NegationAfter,
                "uncertain-before" => CueKind::UncertainBefore,
                "uncertain-after" => CueKind::UncertainAfter,
                "uncertain-both" => CueKind::UncertainBoth,
                "pseudo" => CueKind::Pseudo,
                "normal" => CueKind::Normal,
                "enlarged" => CueKind::Enlarged,
                "upper-normal" => CueKind::UpperNormal,
                "scope-end" => CueKind::ScopeEnd,
                "clause-verb" => CueKind::ClauseVerb,
                "not-finding" => CueKind::NotAFinding,
                other => return Err(format!("cues.tsv: {phrase}: unknown kind {other:?}")),
            };
            cues.entry(phrase_tokens(phrase)).or_default().push(kind);
        }
        for (key, kinds) in cues {
            phrases.entry(key).or_default().push(Meaning::Cue(kinds));
        }
        let max_len = phrases.keys().map(Vec::len).max().unwrap_or(1);
        Ok(Self {
            findings,
            phrases,
            max_len,
        })
    }

    /// The longest phrase starting at token `at`: its length in tokens and meanings.
    pub fn longest_match(&self, tokens: &[String], at: usize) -> Option<(usize, &[Meaning])> {
        let end = tokens.len().min(at + self.max_len);
        (at + 1..=end).rev().find_map(|e| {
            self.phrases
                .get(&tokens[at..e])
                .map(|m| (e - at, m.as_slice()))
        })
    }
}

/// The tables, parsed on first use. They are compiled in and checked by the tests, so a failure
/// here is a build defect: it panics with the table and row at fault.
pub fn lexicon() -> &'static Lexicon {
    static LEXICON: OnceLock<Lexicon> = OnceLock::new();
    LEXICON.get_or_init(|| match Lexicon::load() {
        Ok(l) => l,
        Err(e) => panic!("asg-report vocabulary tables are invalid: {e}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tables_load() {
        Lexicon::load().unwrap();
    }

    #[test]
    fn every_chest_imagenome_label_is_one_the_dataset_has() {
        let known: Vec<&str> = include_str!("../data/imagenome_labels.txt")
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .collect();
        assert_eq!(known.len(), 79);
        for f in &Lexicon::load().unwrap().findings {
            for label in &f.imagenome {
                assert!(
                    known.contains(label),
                    "{}: {label:?} is not a Chest ImaGenome label",
                    f.tag
                );
            }
        }
    }

    #[test]
    fn plurals() {
        assert_eq!(plural("effusion").as_deref(), Some("effusions"));
        assert_eq!(plural("opacity").as_deref(), Some("opacities"));
        assert_eq!(
            plural("airspace opacity").as_deref(),
            Some("airspace opacities")
        );
        assert_eq!(plural("atelectasis"), None);
    }
}
