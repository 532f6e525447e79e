//! Label projections: a parsed report read in the conventions of two established labelers, the
//! 14 findings of ChestX-ray14 (as NegBio labels them) and the 14 observations of the CheXpert
//! labeler (positive, negative, uncertain, not mentioned). The rules are one table,
//! `report/data/labels.tsv`; the ASG vocabulary itself is unchanged.
//!
//! ```
//! use asg_report::{parse, Mention, Scheme};
//! let r = parse("FINDINGS: Calcified granuloma in the right upper lobe. Borderline cardiomegaly.");
//! let labels = r.labels(Scheme::ChestXray14);
//! assert_eq!(labels.get("Nodule"), Some(Mention::NotMentioned));
//! assert_eq!(labels.get("Cardiomegaly"), Some(Mention::Positive));
//! ```

use crate::parse::{counts_for_tags, Existence, ParsedReport, Sentence, Triplet};
use crate::text::tokens;
use serde::{Deserialize, Serialize};
use std::sync::OnceLock;

/// Which labeler's labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scheme {
    /// The 14 ChestX-ray14 findings, in NegBio's convention.
    ChestXray14,
    /// The 14 CheXpert observations, "No Finding" first, as the CheXpert labeler writes them.
    Chexpert,
}

impl Scheme {
    /// The name used in the table and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Scheme::ChestXray14 => "chestxray14",
            Scheme::Chexpert => "chexpert",
        }
    }
}

impl std::str::FromStr for Scheme {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "chestxray14" | "chest-xray14" | "negbio" | "nih" => Ok(Scheme::ChestXray14),
            "chexpert" => Ok(Scheme::Chexpert),
            other => Err(format!(
                "unknown label scheme {other:?}: want chexpert or chestxray14"
            )),
        }
    }
}

/// What a report says of one label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mention {
    Positive,
    Negative,
    Uncertain,
    NotMentioned,
}

impl Mention {
    /// The value's name as JSON writes it.
    pub fn name(self) -> &'static str {
        match self {
            Mention::Positive => "positive",
            Mention::Negative => "negative",
            Mention::Uncertain => "uncertain",
            Mention::NotMentioned => "not_mentioned",
        }
    }

    /// The CheXpert labeler's code: 1, 0, -1, or none (blank) when not mentioned.
    pub fn chexpert_code(self) -> Option<i8> {
        match self {
            Mention::Positive => Some(1),
            Mention::Negative => Some(0),
            Mention::Uncertain => Some(-1),
            Mention::NotMentioned => None,
        }
    }

    fn of(e: Existence) -> Self {
        match e {
            Existence::Positive => Mention::Positive,
            Existence::Negative => Mention::Negative,
            Existence::Uncertain => Mention::Uncertain,
        }
    }
}

/// A report's labels in one scheme, in the scheme's order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Labels {
    pub scheme: Scheme,
    pub values: Vec<(&'static str, Mention)>,
}

impl Labels {
    /// The value of `label` (None for a name the scheme does not have).
    pub fn get(&self, label: &str) -> Option<Mention> {
        self.values.iter().find(|(l, _)| *l == label).map(|v| v.1)
    }
}

/// One row of `labels.tsv`.
#[derive(Debug, Clone)]
pub struct LabelRule {
    pub scheme: Scheme,
    pub label: &'static str,
    /// (ASG tag, a word the mention must contain).
    pub counts: Vec<(&'static str, Option<&'static str>)>,
    /// Words that stop a mention from counting (in it or among the two words before it).
    pub except: Vec<&'static str>,
    pub note: &'static str,
}

const TABLE: &str = include_str!("../data/labels.tsv");

fn load() -> Result<Vec<LabelRule>, String> {
    let mut out = Vec::new();
    for (n, line) in TABLE
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty() && !l.starts_with('#'))
        .skip(1)
    {
        let cols: Vec<&'static str> = line.split('\t').map(str::trim).collect();
        let [scheme, label, counts, except, note] = cols[..] else {
            return Err(format!("labels.tsv line {}: want 5 columns", n + 1));
        };
        let scheme: Scheme = scheme
            .parse()
            .map_err(|e| format!("labels.tsv line {}: {e}", n + 1))?;
        let mut c = Vec::new();
        for item in counts.split('|') {
            let (tag, word) = match item.split_once('~') {
                Some((t, w)) => (t, Some(w)),
                None => (item, None),
            };
            if crate::finding_index(tag).is_none() {
                return Err(format!("labels.tsv line {}: unknown tag {tag:?}", n + 1));
            }
            c.push((tag, word));
        }
        out.push(LabelRule {
            scheme,
            label,
            counts: c,
            except: except.split('|').filter(|w| *w != "-").collect(),
            note,
        });
    }
    Ok(out)
}

/// The rules of `labels.tsv` (compiled in and checked by the tests; a bad table is a build
/// defect and panics naming the row).
pub fn label_rules() -> &'static [LabelRule] {
    static RULES: OnceLock<Vec<LabelRule>> = OnceLock::new();
    RULES.get_or_init(|| match load() {
        Ok(r) => r,
        Err(e) => panic!("asg-report label table is invalid: {e}"),
    })
}

/// The label names of a scheme, in order.
pub fn label_names(scheme: Scheme) -> Vec<&'static str> {
    let mut names: Vec<&'static str> = Vec::new();
    if scheme == Scheme::Chexpert {
        names.push(NO_FINDING);
    }
    names.extend(
        label_rules()
            .iter()
            .filter(|r| r.scheme == scheme)
            .map(|r| r.label),
    );
    names
}

/// CheXpert's label for a report with nothing in it.
pub const NO_FINDING: &str = "No Finding";

/// The mention's words, lower case, and the two words before it in its sentence.
fn mention_words(s: &Sentence, t: &Triplet) -> (Vec<String>, Vec<String>) {
    let toks = tokens(&s.text, s.start);
    let inside: Vec<String> = toks
        .iter()
        .filter(|k| k.start >= t.start && k.end <= t.end)
        .map(|k| k.norm.clone())
        .collect();
    let before: Vec<String> = toks
        .iter()
        .filter(|k| k.end <= t.start && k.norm.chars().all(char::is_alphanumeric))
        .map(|k| k.norm.clone())
        .collect();
    let n = before.len();
    (inside, before[n.saturating_sub(2)..].to_vec())
}

/// A finding mention with its words, read once for every rule.
struct MentionWords<'a> {
    triplet: &'a Triplet,
    inside: Vec<String>,
    before: Vec<String>,
    existence: Existence,
}

fn rule_counts(rule: &LabelRule, m: &MentionWords) -> bool {
    let tag_ok = rule
        .counts
        .iter()
        .filter(|(tag, _)| *tag == m.triplet.finding)
        .collect::<Vec<_>>();
    if tag_ok.is_empty() {
        return false;
    }
    let (inside, before) = (&m.inside, &m.before);
    let word_ok = tag_ok.iter().any(|(_, w)| match w {
        None => true,
        Some(w) => inside.iter().any(|x| x.starts_with(w)),
    });
    word_ok
        && !rule
            .except
            .iter()
            .any(|e| inside.iter().chain(before).any(|x| x == e))
}

/// Strong hedges: ChestX-ray14's gold counts "probable atelectasis" and "atelectasis versus
/// scarring" as present.
const LIKELY: &[&str] = &["probable", "probably", "likely", "versus", "vs"];
/// Weak hedges, which keep a mention uncertain even beside a strong one.
const POSSIBLE: &[&str] = &[
    "may",
    "might",
    "could",
    "possible",
    "possibly",
    "question",
    "questionable",
    "cannot",
    "concern",
    "concerning",
    "suspicious",
    "differential",
    "exclude",
    "excluded",
    "perhaps",
    "maybe",
    "equivocal",
    "indeterminate",
    "?",
];

/// The existence a mention has in `scheme`: in ChestX-ray14 an uncertain mention that only
/// strong hedges make uncertain counts as positive.
fn scheme_existence(scheme: Scheme, s: &Sentence, t: &Triplet) -> Existence {
    if scheme != Scheme::ChestXray14 || t.existence != Existence::Uncertain {
        return t.existence;
    }
    let words: Vec<String> = tokens(&s.text, 0).into_iter().map(|k| k.norm).collect();
    let has = |list: &[&str]| words.iter().any(|w| list.contains(&w.as_str()));
    if has(LIKELY) && !has(POSSIBLE) {
        Existence::Positive
    } else {
        Existence::Uncertain
    }
}

impl ParsedReport {
    /// The report's labels in `scheme`, from the sentences that count for tags (findings and
    /// impression; not indication or history).
    pub fn labels(&self, scheme: Scheme) -> Labels {
        let mut values: Vec<(&'static str, Mention)> = Vec::new();
        let mentions: Vec<MentionWords> = self
            .sentences
            .iter()
            .filter(|s| counts_for_tags(s))
            .flat_map(|s| {
                s.triplets.iter().map(move |t| {
                    let (inside, before) = mention_words(s, t);
                    MentionWords {
                        triplet: t,
                        inside,
                        before,
                        existence: scheme_existence(scheme, s, t),
                    }
                })
            })
            .collect();
        for rule in label_rules().iter().filter(|r| r.scheme == scheme) {
            let mut best: Option<Existence> = None;
            for m in mentions.iter().filter(|m| rule_counts(rule, m)) {
                best = Some(best.map_or(m.existence, |b| b.max(m.existence)));
            }
            values.push((rule.label, best.map_or(Mention::NotMentioned, Mention::of)));
        }
        if scheme == Scheme::Chexpert {
            let finding = values.iter().any(|(l, m)| {
                *l != "Support Devices" && matches!(m, Mention::Positive | Mention::Uncertain)
            });
            let no_finding = if finding {
                Mention::NotMentioned
            } else {
                Mention::Positive
            };
            values.insert(0, (NO_FINDING, no_finding));
        }
        Labels { scheme, values }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse;

    #[test]
    fn the_table_loads_with_fourteen_labels_per_scheme() {
        load().unwrap();
        assert_eq!(label_names(Scheme::ChestXray14).len(), 14);
        assert_eq!(label_names(Scheme::Chexpert).len(), 14);
        assert_eq!(label_names(Scheme::Chexpert)[0], NO_FINDING);
    }

    #[test]
    fn granulomas_are_not_nodules_but_nodules_are() {
        let r = parse("FINDINGS: Calcified granuloma in the left upper lobe.");
        assert_eq!(
            r.labels(Scheme::ChestXray14).get("Nodule"),
            Some(Mention::NotMentioned)
        );
        let r = parse("FINDINGS: 1 cm nodule in the left upper lobe.");
        assert_eq!(
            r.labels(Scheme::ChestXray14).get("Nodule"),
            Some(Mention::Positive)
        );
        assert_eq!(
            r.labels(Scheme::Chexpert).get("Lung Lesion"),
            Some(Mention::Positive)
        );
    }

    #[test]
    fn chexpert_values_and_no_finding() {
        let r = parse("FINDINGS: No pleural effusion. Possible left basilar atelectasis.");
        let l = r.labels(Scheme::Chexpert);
        assert_eq!(l.get("Pleural Effusion"), Some(Mention::Negative));
        assert_eq!(l.get("Atelectasis"), Some(Mention::Uncertain));
        assert_eq!(l.get(NO_FINDING), Some(Mention::NotMentioned));
        assert_eq!(l.get("Fracture"), Some(Mention::NotMentioned));
        let r = parse("FINDINGS: Heart size normal. Lungs clear. Right PICC line in place.");
        let l = r.labels(Scheme::Chexpert);
        assert_eq!(l.get(NO_FINDING), Some(Mention::Positive));
        assert_eq!(l.get("Support Devices"), Some(Mention::Positive));
        assert_eq!(l.get("Cardiomegaly"), Some(Mention::Negative));
        assert_eq!(Mention::Uncertain.chexpert_code(), Some(-1));
        assert_eq!(Mention::NotMentioned.chexpert_code(), None);
    }

    #[test]
    fn words_restrict_a_tag_and_hiatal_hernias_are_not_labelled() {
        let r = parse("FINDINGS: Biapical scarring. Small hiatal hernia.");
        let l = r.labels(Scheme::ChestXray14);
        assert_eq!(l.get("Fibrosis"), Some(Mention::NotMentioned));
        assert_eq!(l.get("Hernia"), Some(Mention::NotMentioned));
        let r = parse("FINDINGS: Mild pulmonary fibrosis.");
        assert_eq!(
            r.labels(Scheme::ChestXray14).get("Fibrosis"),
            Some(Mention::Positive)
        );
    }

    #[test]
    fn strong_hedges_count_as_present_in_chestxray14_only() {
        let r = parse("FINDINGS: Bibasilar atelectasis versus scarring.");
        assert_eq!(
            r.labels(Scheme::ChestXray14).get("Atelectasis"),
            Some(Mention::Positive)
        );
        assert_eq!(
            r.labels(Scheme::Chexpert).get("Atelectasis"),
            Some(Mention::Uncertain)
        );
        let r = parse("FINDINGS: Opacity that may represent atelectasis versus pneumonia.");
        assert_eq!(
            r.labels(Scheme::ChestXray14).get("Atelectasis"),
            Some(Mention::Uncertain)
        );
    }

    #[test]
    fn indication_sentences_do_not_count() {
        let r = parse("INDICATION: Pneumonia?\nFINDINGS: Lungs are clear.");
        assert_eq!(
            r.labels(Scheme::ChestXray14).get("Pneumonia"),
            Some(Mention::NotMentioned)
        );
    }

    #[test]
    fn schemes_parse_by_name() {
        assert_eq!("chexpert".parse::<Scheme>(), Ok(Scheme::Chexpert));
        assert_eq!("ChestXray14".parse::<Scheme>(), Ok(Scheme::ChestXray14));
        assert!("mimic".parse::<Scheme>().is_err());
    }
}
