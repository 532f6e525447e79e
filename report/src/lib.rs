//! asg-report: the vocabulary ASG speaks (anatomical regions, finding tags) and report text ->
//! <region, finding, existence> triplets.
//!
//! The vocabulary is data: `report/data/findings.tsv` (tags, synonyms, CheXpert and Chest
//! ImaGenome labels, default locations), `regions.tsv` (the words for places and sides) and
//! `cues.tsv` (negation, uncertainty, pseudo-negation, normality, scope ends).
//!
//! ```
//! let r = asg_report::parse("No effusion or pneumothorax. Right lower lobe consolidation.");
//! assert_eq!(r.tags["pleural effusion"], asg_report::Existence::Negative);
//! assert_eq!(r.sentences[1].triplets[0].region, "right lower lung zone");
//! ```

#![forbid(unsafe_code)]

pub mod eval;
pub mod label_eval;
pub mod labels;
mod lexicon;
mod parse;
pub mod text;
pub mod tokenizer;
mod vocabulary;
pub mod wordpiece;

pub use labels::{label_names, label_rules, LabelRule, Labels, Mention, Scheme};
pub use lexicon::{lexicon, FindingRow, Lexicon};
pub use parse::{parse, Existence, ParsedReport, Sentence, TextSide, Triplet, UNSPECIFIED};
pub use tokenizer::{Encoding, TextTokenizer, Tokenizer, TokenizerError};
pub use vocabulary::{finding_index, region_index, region_parent, Region, Side, FINDINGS, REGIONS};
pub use wordpiece::WordPiece;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tables_have_the_sizes_of_the_paper_and_chest_imagenome() {
        assert_eq!(REGIONS.len(), 29);
        assert_eq!(FINDINGS.len(), 40);
    }

    #[test]
    fn names_are_unique_and_found_by_index() {
        for (i, r) in REGIONS.iter().enumerate() {
            assert_eq!(region_index(r.name), Some(i), "{}", r.name);
        }
        for (i, f) in FINDINGS.iter().enumerate() {
            assert_eq!(finding_index(f), Some(i), "{f}");
        }
        assert_eq!(region_index("left elbow"), None);
    }

    #[test]
    fn sides_pair_up() {
        let right = REGIONS.iter().filter(|r| r.side == Side::Right).count();
        let left = REGIONS.iter().filter(|r| r.side == Side::Left).count();
        assert_eq!(right, left);
        assert_eq!(right, 9); // 8 lung/pleura regions + the clavicle
    }

    #[test]
    fn hierarchy() {
        assert_eq!(region_parent("right lower lung zone"), Some("right lung"));
        assert_eq!(region_parent("left costophrenic angle"), Some("left lung"));
        assert_eq!(region_parent("upper mediastinum"), Some("mediastinum"));
        assert_eq!(region_parent("right lung"), None);
    }
}
