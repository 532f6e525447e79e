//! Evaluation of the parser against hand-labelled sentences: precision, recall and F1 per
//! existence class and per finding, over (finding, existence) pairs per sentence.

use crate::parse::{parse, Existence};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// One labelled sentence.
#[derive(Debug, Clone, PartialEq)]
pub struct Example {
    pub source: String,
    pub text: String,
    pub gold: BTreeMap<String, Existence>,
}

/// Reads the evaluation TSV (see `report/eval/sentences.tsv`).
pub fn read_examples(tsv: &str) -> Result<Vec<Example>, String> {
    let mut out = Vec::new();
    for (n, line) in tsv
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty() && !l.starts_with('#'))
        .skip(1)
    {
        let cols: Vec<&str> = line.split('\t').collect();
        let [source, text, labels] = cols[..] else {
            return Err(format!("line {}: {} columns, want 3", n + 1, cols.len()));
        };
        let mut gold = BTreeMap::new();
        for label in labels
            .split(';')
            .map(str::trim)
            .filter(|l| !l.is_empty() && *l != "-")
        {
            let (finding, existence) = label.split_once('=').ok_or_else(|| {
                format!("line {}: label {label:?} is not finding=existence", n + 1)
            })?;
            if crate::finding_index(finding).is_none() {
                return Err(format!("line {}: unknown finding {finding:?}", n + 1));
            }
            let existence = match existence {
                "positive" => Existence::Positive,
                "negative" => Existence::Negative,
                "uncertain" => Existence::Uncertain,
                other => return Err(format!("line {}: unknown existence {other:?}", n + 1)),
            };
            gold.insert(finding.to_string(), existence);
        }
        out.push(Example {
            source: source.to_string(),
            text: text.to_string(),
            gold,
        });
    }
    Ok(out)
}

/// True positives, false positives, false negatives.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub tp: usize,
    pub fp: usize,
    pub fn_: usize,
}

impl Counts {
    /// tp / (tp + fp); 1 when nothing was predicted.
    pub fn precision(&self) -> f64 {
        if self.tp + self.fp == 0 {
            1.0
        } else {
            self.tp as f64 / (self.tp + self.fp) as f64
        }
    }

    /// tp / (tp + fn); 1 when nothing was to be found.
    pub fn recall(&self) -> f64 {
        if self.tp + self.fn_ == 0 {
            1.0
        } else {
            self.tp as f64 / (self.tp + self.fn_) as f64
        }
    }

    /// A markdown table row: `| name | TP | FP | FN | precision | recall | F1 |`.
    pub fn row(&self, name: &str) -> String {
        format!(
            "| {name} | {} | {} | {} | {:.3} | {:.3} | {:.3} |",
            self.tp,
            self.fp,
            self.fn_,
            self.precision(),
            self.recall(),
            self.f1()
        )
    }

    /// Harmonic mean of precision and recall (0 when both are 0).
    pub fn f1(&self) -> f64 {
        let (p, r) = (self.precision(), self.recall());
        if p + r == 0.0 {
            0.0
        } else {
            2.0 * p * r / (p + r)
        }
    }
}

/// The result of an evaluation.
#[derive(Debug, Clone, Default)]
pub struct Evaluation {
    pub sentences: usize,
    pub overall: Counts,
    pub by_existence: BTreeMap<Existence, Counts>,
    pub by_finding: BTreeMap<String, Counts>,
    /// Sentences where prediction and gold differ: (source, text, gold, predicted).
    pub disagreements: Vec<(String, String, String, String)>,
}

fn pairs_text(m: &BTreeMap<String, Existence>) -> String {
    if m.is_empty() {
        return "-".into();
    }
    m.iter()
        .map(|(f, e)| format!("{f}={e:?}").to_lowercase())
        .collect::<Vec<_>>()
        .join(";")
}

/// What the parser says of each finding in `text` (strongest existence per finding).
pub fn predict(text: &str) -> BTreeMap<String, Existence> {
    let mut out: BTreeMap<String, Existence> = BTreeMap::new();
    for s in parse(text).sentences {
        for t in s.triplets {
            let e = out.entry(t.finding).or_insert(t.existence);
            *e = (*e).max(t.existence);
        }
    }
    out
}

/// Scores the parser on `examples`.
pub fn evaluate(examples: &[Example]) -> Evaluation {
    let mut ev = Evaluation {
        sentences: examples.len(),
        ..Default::default()
    };
    for ex in examples {
        let pred = predict(&ex.text);
        let gold: BTreeSet<(&String, &Existence)> = ex.gold.iter().collect();
        let got: BTreeSet<(&String, &Existence)> = pred.iter().collect();
        for &(f, e) in gold.union(&got) {
            let (tp, fp, fn_) = match (gold.contains(&(f, e)), got.contains(&(f, e))) {
                (true, true) => (1, 0, 0),
                (false, true) => (0, 1, 0),
                _ => (0, 0, 1),
            };
            for c in [
                &mut ev.overall,
                ev.by_existence.entry(*e).or_default(),
                ev.by_finding.entry(f.clone()).or_default(),
            ] {
                c.tp += tp;
                c.fp += fp;
                c.fn_ += fn_;
            }
        }
        if gold != got {
            ev.disagreements.push((
                ex.source.clone(),
                ex.text.clone(),
                pairs_text(&ex.gold),
                pairs_text(&pred),
            ));
        }
    }
    ev
}

impl fmt::Display for Evaluation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let row =
            |f: &mut fmt::Formatter<'_>, name: &str, c: &Counts| writeln!(f, "{}", c.row(name));
        writeln!(
            f,
            "{} sentences; scored over (finding, existence) pairs per sentence.\n",
            self.sentences
        )?;
        writeln!(
            f,
            "| existence | TP | FP | FN | precision | recall | F1 |\n|---|---|---|---|---|---|---|"
        )?;
        for (e, c) in &self.by_existence {
            row(f, &format!("{e:?}").to_lowercase(), c)?;
        }
        row(f, "**all**", &self.overall)?;
        writeln!(
            f,
            "\n| finding | TP | FP | FN | precision | recall | F1 |\n|---|---|---|---|---|---|---|"
        )?;
        for (name, c) in &self.by_finding {
            row(f, name, c)?;
        }
        if !self.disagreements.is_empty() {
            writeln!(f, "\nDisagreements (source | sentence | gold | ours):")?;
            for (s, t, g, p) in &self.disagreements {
                writeln!(f, "- {s} | {t} | {g} | {p}")?;
            }
        }
        Ok(())
    }
}

/// The committed evaluation set.
pub const SENTENCES_TSV: &str = include_str!("../eval/sentences.tsv");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_match_hand_computed_values() {
        let c = Counts {
            tp: 3,
            fp: 1,
            fn_: 2,
        };
        assert!((c.precision() - 0.75).abs() < 1e-12);
        assert!((c.recall() - 0.6).abs() < 1e-12);
        assert!((c.f1() - 2.0 * 0.75 * 0.6 / 1.35).abs() < 1e-12);
        let none = Counts::default();
        assert_eq!((none.precision(), none.recall()), (1.0, 1.0));
        assert_eq!(
            Counts {
                tp: 0,
                fp: 2,
                fn_: 1
            }
            .f1(),
            0.0
        );
    }

    #[test]
    fn evaluation_counts_pairs() {
        // Gold: effusion negative, pneumothorax negative. Ours on this text: both negative -> 2 TP.
        // Gold says cardiomegaly positive where the text denies it -> 1 FP (negative), 1 FN (positive).
        let tsv = "source\tsentence\tlabels\nt\tNo effusion or pneumothorax.\tpleural effusion=negative;pneumothorax=negative\nt\tHeart size is normal.\tcardiomegaly=positive\n";
        let ev = evaluate(&read_examples(tsv).unwrap());
        assert_eq!(
            ev.overall,
            Counts {
                tp: 2,
                fp: 1,
                fn_: 1
            }
        );
        assert_eq!(
            ev.by_existence[&Existence::Negative],
            Counts {
                tp: 2,
                fp: 1,
                fn_: 0
            }
        );
        assert_eq!(
            ev.by_existence[&Existence::Positive],
            Counts {
                tp: 0,
                fp: 0,
                fn_: 1
            }
        );
        assert_eq!(ev.disagreements.len(), 1);
    }

    #[test]
    fn the_committed_set_reads() {
        let ex = read_examples(SENTENCES_TSV).unwrap();
        assert!(ex.len() >= 20);
    }

    #[test]
    fn bad_rows_are_reported_with_their_line() {
        assert!(read_examples("h\th\th\ns\tx\tnonsense=positive\n")
            .unwrap_err()
            .contains("unknown finding"));
        assert!(read_examples("h\th\th\ns\tx\n")
            .unwrap_err()
            .contains("columns"));
    }
}
